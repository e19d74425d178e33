"""Driving `dvc` and `git` for the experiments: one command each, its failure one UserError line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline_lib.errors import UserError


def run_dvc(*args: str, cwd: Path | None = None, report: Callable[[str], None] = print) -> None:
    """Run DVC here, or in the checkout ``cwd`` (whose stages run its own code: see stages/cli.py), its output
    shown as it comes."""
    report("$ dvc " + " ".join(args) + (f"   (in {cwd})" if cwd else ""))
    # The stages' commands (`dars …`) are found beside this interpreter, also when its environment is not
    # activated: DVC runs them, or its queue's workers do, through PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env).returncode != 0:
        raise UserError(f"`dvc {' '.join(args)}` failed (see its output above)")


def git(*args: str, cwd: Path | None = None) -> str:
    """The output of a git command; UserError with git's last message line if it fails."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"`git {' '.join(args)}` failed: {last}")
    return result.stdout


def dvc_cache_dir(cwd: Path | None = None) -> Path | None:
    """The DVC cache of the project at ``cwd`` (None if it is not one)."""
    result = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=cwd, capture_output=True, text=True)
    return Path(result.stdout.strip()).resolve() if result.returncode == 0 else None


def same_tree(here: Path, there: Path) -> bool:
    """Whether a file or folder holds the same bytes in both places (compiled-bytecode caches aside)."""
    if here.is_file() or there.is_file():
        return here.is_file() and there.is_file() and here.read_bytes() == there.read_bytes()

    def files(root: Path) -> set[Path]:
        return {path.relative_to(root) for path in root.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}

    names = files(here)
    return names == files(there) and all((here / name).read_bytes() == (there / name).read_bytes() for name in names)


ACTIVE_STATES = ("Queued", "Running")  # `dvc exp show` States of an experiment a queue worker has yet to run


def run_queued(names: Sequence[str], jobs: int, states: Callable[[], dict[str, str]],
               report: Callable[[str], None] = print, poll_seconds: float = 15.0) -> None:
    """Run the queued experiments ``names``, ``jobs`` at a time, and return once none of them is queued or running
    any more (``states`` gives each experiment's ``dvc exp show`` State). `dvc exp run --run-all` alone is not
    enough: when a queue worker of an earlier call is still alive it takes the tasks and the command returns at
    once, before they have run (seen with two curve points run back to back)."""
    run_dvc("exp", "run", "--run-all", "-j", str(jobs), report=report)
    waiting = set(names)
    while True:
        current = states()
        waiting = {name for name in waiting if current.get(name) in ACTIVE_STATES}
        if not waiting:
            # A queue worker stops itself once the queue is empty, from a monitor thread that a race in kombu's
            # file transport can kill (JSONDecodeError on a half-written message; DVC issues 10398 and 10428,
            # seen here with the machine's other core busy): that worker then idles for ever, holding the output
            # of the command that started it. When nothing else is queued or running, the workers are told to stop.
            if not any(state in ACTIVE_STATES for state in current.values()):
                run_dvc("queue", "stop", report=report)
            return
        report(f"waiting for {', '.join(sorted(waiting))} (a DVC queue worker runs them)")
        time.sleep(poll_seconds)
