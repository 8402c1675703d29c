#!/usr/bin/env bash
# Install mlp-xp into ./.venv and train an MLP on real Fashion-MNIST (device: auto).
#   1. the data: Debian's dataset-fashion-mnist package where apt exists; elsewhere mlp-xp
#      downloads the official files on first use and checks their MD5s;
#   2. pip install -e ".[plot]" (add [cuda12] / [cuda13] for a GPU);
#   3. mlp-xp train ... with any extra arguments passed through (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq dataset-fashion-mnist || { $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist; }
fi
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q -e ".[plot]"
mlp-xp train --dataset fashion-mnist --device auto --plot fashion-mnist-curves.png --metrics-json fashion-mnist.json "$@"
