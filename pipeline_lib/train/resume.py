"""Exact resume of an interrupted training: the resume state (weights, optimiser, loss scaler, iteration, every
rank's generators) saved every ``checkpoint_every`` iterations under a fingerprint of the inputs, settings and
library code, and loaded back only under the same fingerprint; the logged curves cut back to the state's step."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

from pipeline_lib.atomic import atomic_path, write_text
from pipeline_lib.distributed import DistributedRun
from pipeline_lib.errors import UserError
from pipeline_lib.models.checkpoint import first_line


def load_resume_state(state_path: Path, fingerprint: str, model, optimizer, scaler, device: torch.device,
           run: DistributedRun) -> tuple[int, list[dict] | None]:
    """Load the resume state at ``state_path`` into model, optimiser and scaler if it was saved under
    ``fingerprint``, and make its folder ready to write: returns (the iteration to start from, the saved
    generators or None). A state of other inputs is moved aside, not deleted."""
    work_dir = state_path.parent
    start, rng_states, superseded = 0, None, None
    if state_path.is_file():
        try:  # plain data only (see models/checkpoint.py): a state file cannot run code when read
            state = torch.load(state_path, map_location=device, weights_only=True)
        except Exception as exc:
            raise UserError(f"{state_path}: not a resume state of this training ({first_line(exc)}); delete it "
                            "to train from the start") from None
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            start = int(state["iteration"])
            rng_states = state.get("rng")
            if run.is_main:
                print(f"resuming from iteration {start} ({state_path})")
        else:
            superseded = int(state.get("iteration", 0))
    run.barrier()  # every rank has read the resume state before rank 0 may clear it
    if run.is_main:
        if superseded is not None:
            # Hours of training may be in it, and an edit anywhere in the library changes the fingerprint:
            # kept (one per round), so that reverting the edit and moving it back resumes it.
            kept = work_dir.with_name(f"{work_dir.name}.superseded")
            shutil.rmtree(kept, ignore_errors=True)
            work_dir.rename(kept)
            print(f"warning: {state_path} (iteration {superseded}) was saved by other inputs, settings or library "
                  f"code: moved to {kept}; training from iteration 0", file=sys.stderr)
        elif start == 0:
            shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True, exist_ok=True)
    return start, rng_states


def forget_metrics_after(metrics_dir: Path, step: int) -> None:
    """Drop the rows logged after ``step`` from dvclive's ``.tsv`` curves: a run resumed from ``step`` logs
    those steps again, and the curves would otherwise hold them twice."""
    for tsv in metrics_dir.rglob("*.tsv"):
        header, *rows = tsv.read_text().splitlines(keepends=True) or [""]
        columns = header.rstrip("\n").split("\t")
        if "step" not in columns:
            continue
        kept = [row for row in rows if int(row.split("\t")[columns.index("step")]) <= step]
        if len(kept) < len(rows):
            write_text(tsv, header + "".join(kept))


def rng_state(device: torch.device) -> dict:
    """The torch generators this process draws from: the CPU one and, on a GPU, that device's."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(states: list[dict], rank: int, device: torch.device) -> None:
    """Put this rank's generators back as saved (a state saved by another number of ranks is ignored)."""
    if not isinstance(states, list) or rank >= len(states):
        return
    torch.set_rng_state(states[rank]["cpu"])
    if device.type == "cuda" and "cuda" in states[rank]:
        torch.cuda.set_rng_state(states[rank]["cuda"], device)


def save_resume_state(path: Path, model, optimizer, scaler, iteration: int, fingerprint: str,
                      rng: list[dict]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "iteration": iteration, "fingerprint": fingerprint, "rng": rng}, tmp)
