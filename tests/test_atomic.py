"""Atomic outputs: whole or absent, and what a killed writer left behind is swept by the next write."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline_lib.atomic import atomic_path, write_text


def test_a_failed_block_leaves_the_old_output(tmp_path):
    write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert (tmp_path / "out.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_temporaries_of_dead_writers_are_swept_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(dead.stdout), os.getppid()
    (tmp_path / f".store.zarr.tmp-{dead_pid}").mkdir()
    (tmp_path / f".store.zarr.tmp-{dead_pid}" / "chunk").write_bytes(b"partial")
    (tmp_path / f".store.zarr.tmp-{live_pid}").mkdir()
    (tmp_path / ".other.zarr.tmp-1").mkdir()  # another output's: not this write's to judge
    with atomic_path(tmp_path / "store.zarr") as tmp:
        tmp.mkdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.zarr.tmp-1", f".store.zarr.tmp-{live_pid}", "store.zarr"]
