"""SIGKILL children at random moments of repeated checkpoint writes; check what each kill leaves.

Run by ``tests/test_faults.py`` in a fresh interpreter (so that the forks come from a process
without other threads): ``python tests/kill_checkpoint_writes.py DIR KILLS SEED``. Prints one JSON
object: ``kills``, ``saves`` (saves the children reported complete), ``mid_write`` (kills that left
a temporary file: the child died inside a write), ``save_ms`` and ``problems`` (one line per kill
after which the checkpoint was unreadable, lost a reported save, or mixed two saves).

Uses the public API only (``save_checkpoint``, ``load_checkpoint``) and assumes nothing about the
file format: a save of epoch E sets every parameter and buffer to E first.
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np

import mlp_xp


def model_at(epoch: int):
    """A 64-256-10 MLP with BatchNorm whose every parameter and buffer equals ``epoch``."""
    backend = mlp_xp.get_backend("numpy")
    model = mlp_xp.make_mlp(64, [256], 10, batchnorm=True).init(backend, seed=0)
    fill(model, epoch)
    return model


def fill(model, value: float) -> None:
    backend = model.backend
    model.load_state({k: backend.asarray(np.full(v.shape, value, np.float32), "float32")
                      for k, v in model.state().items()})


def save_forever(path: Path, epoch: int, report_fd: int) -> None:
    """Save epochs ``epoch``, ``epoch + 1``, ... to ``path``, reporting each completed save."""
    model = model_at(epoch)
    optimizer = mlp_xp.SGD(model, 0.1)
    while True:
        fill(model, epoch)
        mlp_xp.save_checkpoint(path, model, optimizer, epoch=epoch)
        os.write(report_fd, struct.pack("<q", epoch))
        epoch += 1


def spawn(path: Path, epoch: int) -> tuple[int, int]:
    """Fork a child running ``save_forever``; (pid, read end of its report pipe)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            save_forever(path, epoch, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    return pid, read_fd


def read_reports(read_fd: int, first_only: bool) -> list[int]:
    """The epochs a child reported: its first (waiting for it), or all until its pipe closes."""
    data = b""
    while not (first_only and len(data) >= 8):
        chunk = os.read(read_fd, 8 if first_only else 4096)
        if not chunk:
            break
        data += chunk
    return [value for (value,) in struct.iter_unpack("<q", data[: len(data) // 8 * 8])]


def check(path: Path, reported: list[int]) -> tuple[int | None, str | None]:
    """(epoch saved at ``path``, problem or None) after a kill."""
    try:
        checkpoint = mlp_xp.load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        return None, f"unreadable after the kill: {type(exc).__name__}: {exc}"
    saved = checkpoint.meta["epoch"]
    if not reported[-1] <= saved <= reported[-1] + 1:
        return saved, f"holds epoch {saved}, but the child had reported saving epoch {reported[-1]}"
    if not all(np.all(array == saved) for array in checkpoint.model.values()):
        return saved, f"epoch {saved} holds arrays of another save"
    return saved, None


def main(directory: Path, kills: int, seed: int) -> dict:
    path = directory / "run.ckpt"
    started = time.perf_counter()
    for epoch in range(5):
        mlp_xp.save_checkpoint(path, model_at(epoch), epoch=epoch)
    save_seconds = (time.perf_counter() - started) / 5
    rng = random.Random(seed)
    epoch, saves, mid_write, problems = 5, 0, 0, []
    for kill in range(kills):
        pid, read_fd = spawn(path, epoch)
        reported = read_reports(read_fd, first_only=True)
        if not reported:
            problems.append(f"kill {kill}: the writer died before its first save")
            break
        time.sleep(rng.uniform(0, 2 * save_seconds))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        reported += read_reports(read_fd, first_only=False)
        os.close(read_fd)
        saved, problem = check(path, reported)
        if problem:
            problems.append(f"kill {kill}: {problem}")
        strays = [p for p in directory.iterdir() if p != path]
        mid_write += bool(strays)
        for stray in strays:
            stray.unlink()
        saves += len(reported)
        epoch = (saved if saved is not None else reported[-1]) + 1
    return {"kills": kills, "saves": saves, "mid_write": mid_write, "save_ms": save_seconds * 1e3,
            "problems": problems}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
