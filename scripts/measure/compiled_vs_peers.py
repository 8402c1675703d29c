"""mlp_xp compiled on JAX vs a hand-written jax.jit + lax.scan epoch vs mlp_xp NumPy eager (and torch
eager/compiled), interleaved: the compiled JAX fit drives; after each of its epochs the others run one.
usage: python compiled_vs_peers.py H1[,H2] B ROUNDS [--torch]"""

import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import mlp_xp as mx

hidden = tuple(int(h) for h in sys.argv[1].split(","))
B = int(sys.argv[2])
R = int(sys.argv[3])
N, D, C, LR = 60000, 784, 10, 0.1
rng = np.random.default_rng(0)
X8 = rng.integers(0, 256, (N, D), dtype=np.uint8)
Y = rng.integers(0, C, N)


def package(spec, compile):
    b = mx.get_backend(spec)
    m = mx.make_mlp(D, hidden, C, init="normal", init_std=0.01).init(b, seed=0)
    return (
        m,
        mx.SGD(m, lr=LR),
        mx.DeviceLoader(X8, Y, b, batch_size=B, num_classes=C),
        mx.SoftmaxCrossEntropy(check_labels=False),
    )


class Eager:
    def __init__(self, spec):
        self.m, self.o, self.l, self.f = package(spec, False)
        self.e = 0
        self.t = []

    def epoch(self):
        h = mx.fit(self.m, self.f, self.o, self.l, epochs=self.e + 1, start_epoch=self.e, progress=False, log=None)
        self.e += 1
        self.t.append(h.last["seconds"])


class HandScan:
    """jax.jit over lax.scan of the epoch: same init, same per-epoch order, same math (SGD, softmax CE)."""

    def __init__(self):
        init = mx.make_mlp(D, hidden, C, init="normal", init_std=0.01).init("numpy", seed=0)
        self.p = [jnp.asarray(np.array(l.params[k])) for l in init.layers for k in ("weight", "bias") if l.params]
        self.X, self.Y = jax.device_put(X8), jax.device_put(Y)

        def loss_fn(p, x, y):
            h = x
            for i in range(0, len(p) - 2, 2):
                h = jnp.maximum(h @ p[i] + p[i + 1], 0)
            z = h @ p[-2] + p[-1]
            return jnp.mean(jax.nn.logsumexp(z, 1) - jnp.take_along_axis(z, y[:, None], 1)[:, 0])

        def step(p, idx):
            x = self.X[idx].astype(jnp.float32) * (1 / 255)
            l, g = jax.value_and_grad(loss_fn)(p, x, self.Y[idx])
            return [a - LR * b for a, b in zip(p, g)], l

        full = N // B

        @jax.jit
        def epoch(p, perm):
            p, losses = jax.lax.scan(step, p, perm[: full * B].reshape(full, B))
            return p, losses

        self.run, self.e, self.t = epoch, 0, []

    def epoch(self):
        perm = jnp.asarray(mx.backends.host_rng((0, self.e)).permutation(N))
        t = time.perf_counter()
        self.p, l = self.run(self.p, perm)
        jax.block_until_ready(self.p)
        self.t.append(time.perf_counter() - t)
        self.e += 1


others = {"numpy eager": Eager("numpy"), "hand jax scan": HandScan()}
if "--torch" in sys.argv:
    others["torch eager"] = Eager("torch")
for o in others.values():
    o.epoch()  # warm-up / compile
m, o, l, f = package("jax", True)


class Driver:
    def on_epoch_end(self, epoch, stats, model):
        for other in others.values():
            other.epoch()


t0 = time.perf_counter()
h = mx.fit(m, f, o, l, epochs=R + 1, progress=False, log=None, compile=True, callbacks=[Driver()])
comp = h["seconds"]
print(
    f"784-{'-'.join(map(str, hidden))}-10 B{B}, {R} rounds (after warm-up); mlp_xp jax compiled first epoch (compile+run) {comp[0]:.2f} s"
)
jaxc = comp[1:]
for name, other in others.items():
    ts = other.t[1:]
    ratios = [a / b for a, b in zip(jaxc, ts)]
    print(
        f"  mlp_xp jax compiled / {name}: median {statistics.median(ratios):.3f}, min/min {min(jaxc) / min(ts):.3f}  ({name} best {min(ts):.3f} s)"
    )
print(
    f"  mlp_xp jax compiled best epoch {min(jaxc):.3f} s = {N / min(jaxc):,.0f} samples/s; compile ≈ {comp[0] - statistics.median(jaxc):.2f} s"
)
