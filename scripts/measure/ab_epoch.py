"""A/B: one training epoch of mlp_xp at a given commit's tree vs another, in alternating processes.

usage: python ab_epoch.py TREE_A TREE_B OPTIMIZER HIDDEN BATCH ROUNDS
Each process imports mlp_xp from its tree, trains one warm-up epoch and times the next two;
prints per-round best epoch seconds and the median ratio B/A.
"""

import json
import statistics
import subprocess
import sys

CHILD = r"""
import sys, time, json
sys.path.insert(0, sys.argv[1])
import numpy as np, mlp_xp as mx
opt, hidden, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (60000, 784), dtype=np.uint8); y = rng.integers(0, 10, 60000)
b = mx.get_backend("numpy")
m = mx.make_mlp(784, [hidden], 10).init(b, seed=0)
o = mx.Adam(m, lr=1e-3) if opt == "adam" else mx.SGD(m, lr=0.1)
ld = mx.DeviceLoader(x, y, b, batch_size=batch, num_classes=10)
loss = mx.SoftmaxCrossEntropy(check_labels=False)
times = []
for e in range(3):
    t = time.perf_counter()
    h = mx.fit(m, loss, o, ld, epochs=e + 1, start_epoch=e, progress=False, log=None)
    times.append(time.perf_counter() - t)
print(json.dumps({"best": min(times[1:]), "loss": h.last["train_loss"], "file": mx.__file__}))
"""

a, b, opt, hidden, batch, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
results = {a: [], b: []}
for r in range(rounds):
    for tree in (a, b) if r % 2 == 0 else (b, a):
        out = subprocess.run([sys.executable, "-c", CHILD, tree, opt, hidden, batch], capture_output=True, text=True)
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        results[tree].append(rec)
ratios = [rb["best"] / ra["best"] for ra, rb in zip(results[a], results[b])]
print(f"{opt} 784-{hidden}-10 B{batch}, {rounds} rounds")
for tree in (a, b):
    ts = [r["best"] for r in results[tree]]
    print(
        f"  {tree}: best epoch {min(ts):.3f} s, median {statistics.median(ts):.3f} s, loss {results[tree][-1]['loss']:.6f}"
    )
print(
    f"  ratio B/A (median of per-round ratios): {statistics.median(ratios):.3f}; min/min {min(r['best'] for r in results[b]) / min(r['best'] for r in results[a]):.3f}"
)
