"""Models that travel, measured on Fashion-MNIST's 10,000 test images.

For each checkpoint given (written by ``mlp-xp train --save``): mlp_xp → torch → mlp_xp and
mlp_xp → ONNX Runtime, comparing argmax and logits with mlp_xp's own NumPy forward. Then a
torch ``nn.Sequential`` trained for one epoch in torch is imported with ``from_torch`` and
evaluated on NumPy and array-api-strict; and onnxruntime (CPU) is timed against mlp_xp's NumPy
forward at batch 1 and 1000, interleaved round by round in this one process.

    python scripts/travel.py A.safetensors [B.safetensors ...] [--time A.safetensors]

Needs torch, onnx and onnxruntime (``pip install -e ".[torch,onnx]"``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

import mlp_xp
from mlp_xp.mlp import make_mlp


def load(path: str) -> mlp_xp.Sequential:
    checkpoint = mlp_xp.load_checkpoint(path)
    model = make_mlp(**checkpoint.meta["model_config"]).init("numpy", dtype=checkpoint.meta["dtype"])
    mlp_xp.restore(checkpoint, model)
    return model.eval()


def compare(name: str, logits: np.ndarray, reference: np.ndarray) -> None:
    same = int((logits.argmax(1) == reference.argmax(1)).sum())
    scale = float(np.abs(reference).max())
    worst = float(np.abs(logits - reference).max())
    print(f"  {name:<32} argmax identical {same}/{len(reference)}; max |Δlogit| {worst / scale:.1e} × max|logit|")


def round_trips(path: str, x: np.ndarray, workdir: Path) -> None:
    model = load(path)
    reference = model.forward(x)
    print(f"{path}: {' → '.join(repr(layer) for layer in model.layers)}")
    seq = mlp_xp.to_torch(model)
    with torch.no_grad():
        compare("mlp_xp → torch", seq(torch.from_numpy(x)).numpy(), reference)
    back = mlp_xp.from_torch(seq, backend="numpy")
    compare("mlp_xp → torch → mlp_xp", back.forward(x), reference)
    onnx_path = workdir / f"{Path(path).stem}.onnx"
    nodes = mlp_xp.export_onnx(model, onnx_path).graph.node
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    compare(f"mlp_xp → ONNX Runtime ({len(nodes)} nodes)", session.run(None, {"input": x})[0], reference)
    print(f"  ONNX nodes: {' → '.join(node.op_type for node in nodes)}")


def torch_trained_import(data: mlp_xp.Dataset) -> None:
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    optimizer = torch.optim.Adam(seq.parameters(), 1e-3)
    x = torch.from_numpy(data.x_train.astype(np.float32) / 255)
    y = torch.from_numpy(data.y_train.astype(np.int64))
    for index in torch.randperm(len(x)).split(256):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(seq(x[index]), y[index]).backward()
        optimizer.step()
    x_test = data.x_test.astype(np.float32) / 255
    with torch.no_grad():
        torch_acc = float((seq(torch.from_numpy(x_test)).argmax(1).numpy() == data.y_test).mean())
    print(f"torch nn.Sequential 784-256-10, 1 epoch Adam in torch: test accuracy {torch_acc:.4f} in torch")
    for spec in ("numpy", "array-api-strict"):
        model = mlp_xp.from_torch(seq, backend=spec)
        test = mlp_xp.DeviceLoader(data.x_test, data.y_test, model.backend, batch_size=1000, shuffle=False)
        accuracy = mlp_xp.evaluate(model, mlp_xp.SoftmaxCrossEntropy(), test)["acc"]
        print(f"  from_torch on {spec:<17} test accuracy {accuracy:.4f}")


def timing(path: str, x: np.ndarray, workdir: Path, rounds: int = 7) -> None:
    model = load(path)
    onnx_path = workdir / "timed.onnx"
    nodes = mlp_xp.export_onnx(model, onnx_path).graph.node
    options = onnxruntime.SessionOptions()  # idle ORT threads must not spin while NumPy runs in between
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    runners = {"onnxruntime": lambda b: session.run(None, {"input": b}), "mlp_xp numpy": model.forward}
    calls = {1: 2000, 1000: 20}
    seconds: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):  # interleaved: machine drift hits both alike
        for batch, count in calls.items():
            for name, run in runners.items():
                run(x[:batch])
                started = time.perf_counter()
                for i in range(count):
                    run(x[(i * batch) % 9000 : (i * batch) % 9000 + batch])
                seconds.setdefault((name, batch), []).append((time.perf_counter() - started) / count)
    print(f"timing {path} ({len(nodes)} ONNX nodes), per call, best and median of {rounds} interleaved rounds:")
    for batch in calls:
        times = {name: np.array(seconds[(name, batch)]) * 1e6 for name in runners}
        cells = [f"{name} {t.min():7.0f} µs (median {statistics.median(t):.0f})" for name, t in times.items()]
        print(f"  batch {batch:>4}: " + "   ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--time", metavar="CKPT", help="checkpoint to time in onnxruntime vs NumPy")
    args = parser.parse_args()
    data = mlp_xp.load_dataset("fashion-mnist")
    x = data.x_test.astype(np.float32) / np.float32(255)
    print(f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as workdir:
        for path in args.checkpoints:
            round_trips(path, x, Path(workdir))
        torch_trained_import(data)
        if args.time:
            timing(args.time, x, Path(workdir))


if __name__ == "__main__":
    main()
