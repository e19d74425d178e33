"""What a round's checkpoint records about where it came from, and the fingerprint a resume state must match."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pipeline_lib
from pipeline_lib.settings import TrainSettings


def base_provenance(round_name: str, settings: TrainSettings, arch: str, prepared: Path) -> dict:
    """Round, training settings, architecture and the split lists' hashes (more keys are added per round)."""
    return {"round": round_name, "train": asdict(settings), "arch": arch,
            "split_hashes": json.loads((prepared / "split_hashes.json").read_text())}


def library_code_hash() -> str:
    """sha256 over every module of the library, subpackages included, each named by its relative path."""
    library = Path(pipeline_lib.__file__).parent
    code = hashlib.sha256()
    for module in sorted(library.rglob("*.py")):
        code.update(module.relative_to(library).as_posix().encode() + b"\0" + module.read_bytes())
    return code.hexdigest()


def resume_fingerprint(provenance: dict) -> str:
    """A resume state is only valid for the same inputs, settings and library code."""
    return hashlib.sha256(json.dumps({**provenance, "code": library_code_hash()}, sort_keys=True,
                                     default=str).encode()).hexdigest()
