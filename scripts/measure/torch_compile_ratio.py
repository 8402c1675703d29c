"""mlp_xp on torch CPU: compiled (torch.compile) vs eager epochs, interleaved (the compiled fit drives;
after each of its epochs the eager one runs an epoch).
usage: python torch_compile_ratio.py H[,H...] B ROUNDS [DROPOUT]   e.g. 256,256 256 6 0.5"""

import statistics
import sys

import numpy as np

import mlp_xp as mx

H, B, R = [int(h) for h in sys.argv[1].split(",")], int(sys.argv[2]), int(sys.argv[3])
P = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
rng = np.random.default_rng(0)
X8 = rng.integers(0, 256, (60000, 784), dtype=np.uint8)
Y = rng.integers(0, 10, 60000)


def parts():
    b = mx.get_backend("torch")
    m = mx.make_mlp(784, H, 10, init="normal", init_std=0.01, dropout=P).init(b, seed=0)
    return (
        m,
        mx.SGD(m, lr=0.1),
        mx.DeviceLoader(X8, Y, b, batch_size=B, num_classes=10),
        mx.SoftmaxCrossEntropy(check_labels=False),
    )


eager, eager_times = parts(), []


class Driver:
    def on_epoch_end(self, epoch, stats, model):
        m, o, l, f = eager
        eager_times.append(
            mx.fit(m, f, o, l, epochs=epoch + 1, start_epoch=epoch, progress=False, log=None).last["seconds"]
        )


m, o, l, f = parts()
h = mx.fit(m, f, o, l, epochs=R + 1, progress=False, log=None, compile=True, callbacks=[Driver()])
comp = h["seconds"]
ratios = [c / e for c, e in zip(comp[1:], eager_times[1:])]
print(
    f"torch CPU 784-{'-'.join(map(str, H))}-10 B{B} dropout {P}: compiled/eager epoch median {statistics.median(ratios):.3f}, min/min "
    f"{min(comp[1:]) / min(eager_times[1:]):.3f}; compiled best {min(comp[1:]):.3f} s, eager best {min(eager_times[1:]):.3f} s; "
    f"first compiled epoch (compile + run) {comp[0]:.1f} s"
)
