"""Command-line options shared by the example scripts (no training code lives here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parser(description: str, *, dataset: bool = False) -> argparse.ArgumentParser:
    """``--device``, ``--quick``, ``--out``, ``--seed`` (and ``--dataset``/``--data-dir`` for image data)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, torch, torch:cuda, array-api-strict")
    p.add_argument("--quick", action="store_true", help="small data and few epochs (CI smoke run, seconds)")
    p.add_argument("--out", default="figures", metavar="DIR", help="directory for the PNG figures")
    p.add_argument("--seed", type=int, default=0)
    if dataset:
        p.add_argument("--dataset", choices=("fashion-mnist", "mnist"), default="fashion-mnist")
        p.add_argument("--data-dir", help="directory with the four IDX files (default: the usual search places)")
    return p


def figure_path(args: argparse.Namespace, name: str) -> Path:
    """``<--out>/<name>``."""
    return Path(args.out) / name


def show_progress() -> bool:
    """Progress bars only on an interactive terminal."""
    return sys.stderr.isatty()
