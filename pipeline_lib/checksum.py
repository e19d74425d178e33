"""sha256 of artifact files: how a store or a checkpoint names the model it was made from."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline_lib.errors import UserError


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: Path) -> str:
    """The sha256 that stores made from ``path``'s model record; refuses a missing checkpoint."""
    if not Path(path).is_file():
        raise UserError(f"{path}: model checkpoint not found; run the stage that trains it first")
    return file_sha256(path)
