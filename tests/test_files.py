"""``write_atomically``, through which every checkpoint, export, metrics JSON and figure is written."""

import os
import stat
import threading

import pytest

from mlp_xp.files import write_atomically


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_gets_the_permissions_open_would_give(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        write_atomically(tmp_path / "model.onnx", b"new")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "model.onnx") == expected
    assert (tmp_path / "model.onnx").read_bytes() == b"new"


def test_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "run.safetensors"
    path.write_bytes(b"old")
    path.chmod(0o640)
    write_atomically(path, b"new")
    assert _mode(path) == 0o640
    assert path.read_bytes() == b"new"


def test_symbolic_link_is_written_through(tmp_path):
    (tmp_path / "runs").mkdir()
    real = tmp_path / "runs" / "metrics.json"
    real.write_bytes(b"old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    write_atomically(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path / "runs")) == ["metrics.json"]


def test_fifo_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    try:
        write_atomically(fifo, b"through the pipe")
        reader.join(timeout=10)
    finally:
        if reader.is_alive():  # nothing opened the FIFO for writing: release the reader
            with open(fifo, "wb"):
                pass
            reader.join(timeout=10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert received == [b"through the pipe"]


def test_directory_is_refused_and_nothing_is_left(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        write_atomically(tmp_path / "out", b"data")
    assert os.listdir(tmp_path / "out") == []
    assert os.listdir(tmp_path) == ["out"]
