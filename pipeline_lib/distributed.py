"""Running a stage as several processes (one per GPU): torchrun's environment → a process group.

A stage runs as one process unless params.yaml's ``distributed.processes`` asks for more. Then
:func:`relaunch_under_torchrun` re-executes the same stage command as

    python -m torch.distributed.run --standalone --nproc_per_node N -m stages.cli <stage> <options>

and each of those processes enters :func:`process_group`, which reads the variables torchrun sets
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), gives the process the GPU ``LOCAL_RANK`` (or
the CPU when there is no GPU) and joins the group with the backend for that device: NCCL on GPUs,
gloo on CPU. A stage started by torchrun directly (e.g. several nodes) joins whatever group torchrun set up;
one started by ``srun`` maps SLURM's variables onto torchrun's (see :func:`launcher_environment`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from pipeline_lib.device import pick_device, uses_gpu
from pipeline_lib.errors import UserError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedRun:
    """This process's place in the run. The default is a single process with no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None  # "nccl" | "gloo"; None when there is no process group

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, saves and renames outputs into place."""
        return self.rank == 0

    @property
    def in_group(self) -> bool:
        return self.backend is not None

    def barrier(self) -> None:
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])  # NCCL needs this rank's GPU, or it guesses (and warns)
        elif self.in_group:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), returned on every rank."""
        if not self.in_group:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (any picklable object), in rank order, returned on every rank."""
        if not self.in_group:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def sum_counts(self, counts: np.ndarray) -> np.ndarray:
        """Element-wise sum of every rank's int64 ``counts`` (exact, any shape), returned on every rank."""
        counts = np.asarray(counts, np.int64)
        if not self.in_group:
            return counts
        tensor = torch.from_numpy(counts.copy()).to(self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def sum_over_ranks(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of every rank's ``values`` (float64), returned on every rank."""
        if not self.in_group:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()


SLURM_VARIABLES = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")


def launcher_environment(env: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """torchrun's five variables for this process, or None when no launcher started several processes.

    torchrun's own variables win; otherwise ``srun`` with more than one task counts too, its variables mapped as
    torchrun's (SLURM_PROCID → RANK, SLURM_NTASKS → WORLD_SIZE, SLURM_LOCALID → LOCAL_RANK; MASTER_ADDR and
    MASTER_PORT from the batch script, see docs/multi_gpu.md).
    """
    if all(name in env for name in TORCHRUN_VARIABLES):
        return {name: env[name] for name in TORCHRUN_VARIABLES}
    if not all(name in env for name in SLURM_VARIABLES) or int(env["SLURM_NTASKS"]) <= 1:
        return None
    if "MASTER_ADDR" not in env:
        raise UserError(f"srun started {env['SLURM_NTASKS']} tasks but MASTER_ADDR is not set; export the first "
                        "node's address in the batch script (see docs/multi_gpu.md, SLURM)")
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": env["SLURM_NTASKS"], "LOCAL_RANK": env["SLURM_LOCALID"],
            "MASTER_ADDR": env["MASTER_ADDR"], "MASTER_PORT": env.get("MASTER_PORT", "29500")}


def under_torchrun(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is one of several started by torchrun (or srun, see :func:`launcher_environment`)."""
    return launcher_environment(env) is not None


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def die_with_parent(parent: int) -> None:
    """Have Linux send this process SIGTERM when its parent ``parent`` exits, however it ends (SIGKILL too). The
    launcher's torchrun and torchrun's workers ask it: torchrun starts its workers in sessions of their own, so
    killing ``dvc repro``, the ``dars`` launcher or their process group would otherwise leave the workers
    running (holding GPUs) and renaming their store into place after the kill, racing a rerun."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent was gone before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def process_group(env: Mapping[str, str] = os.environ) -> Iterator[DistributedRun]:
    """This process's :class:`DistributedRun`; under torchrun, joined to the process group until exit."""
    launched = launcher_environment(env)
    if launched is None:
        yield DistributedRun(device=pick_device(0))
        return
    if env is os.environ:
        die_with_parent(os.getppid())
    rank, world_size, local_rank = int(launched["RANK"]), int(launched["WORLD_SIZE"]), int(launched["LOCAL_RANK"])
    device = pick_device(local_rank)
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if env is os.environ:  # under srun: torch's env:// initialisation reads torchrun's names
        for name, value in launched.items():
            os.environ.setdefault(name, value)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                            device_id=device if device.type == "cuda" else None)
    try:
        yield DistributedRun(rank, world_size, local_rank, device, backend)
    finally:
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """A seed per rank for the random draws inside the model (dropout): rank 0 keeps ``seed``, so a
    single-process run is unchanged; other ranks get independent streams rather than copies of rank 0's."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint32)[0])


def torchrun_command(processes: int, stage_args: Sequence[str]) -> list[str]:
    """The command that runs ``dars <stage_args>`` as ``processes`` processes on this machine."""
    # --standalone: a rendezvous on a free local port, so concurrent runs never collide.
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "stages.cli", *stage_args]


def relaunch_under_torchrun(processes: int, stage_args: Sequence[str]) -> bool:
    """Run ``dars <stage_args>`` as ``processes`` processes when more than one is asked for and this process
    is not already one of them. Returns True when it did (the caller has nothing left to do), False when
    this process should do the work itself. Raises UserError if a process failed (its own message, and
    torchrun's report, come before).
    """
    if processes == 1 or under_torchrun():
        return False
    if uses_gpu() and processes > torch.cuda.device_count():
        raise UserError(f"distributed.processes is {processes} but this machine has "
                        f"{torch.cuda.device_count()} GPU(s); use at most one process per GPU")
    command = torchrun_command(processes, stage_args)
    env = dict(os.environ)
    # torchrun would give each process 1 CPU thread; share the cores instead (a value set by the user wins).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    # `-m stages.cli` must find this checkout's stages even when the stage was started from elsewhere.
    checkout = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([checkout, *filter(None, [env.get("PYTHONPATH")])])
    print(f"running {processes} processes: {shlex.join(command)}", flush=True)
    launcher = subprocess.Popen(command, env=env, preexec_fn=functools.partial(die_with_parent, os.getpid()))
    try:
        status = launcher.wait()
    except BaseException:  # e.g. Ctrl-C: torchrun stops its processes on SIGTERM (a SIGKILL would orphan them)
        launcher.terminate()
        launcher.wait()
        raise
    if status != 0:
        raise UserError(f"the {processes}-process run failed (torchrun exit status {status}); "
                        "the failing process's own error is above torchrun's report")
    return True


def run_in_processes(processes: int, stage_args: Sequence[str], work: Callable[[DistributedRun], str | None],
                     report: Callable[[str], None] = print) -> None:
    """A distributed stage's frame: with ``processes`` > 1 (and not already under torchrun) rerun the stage
    (``dars <stage_args>``) as that many processes under torchrun; otherwise run ``work(run)`` in this process's
    group, the main rank reporting the line it returns."""
    if relaunch_under_torchrun(processes, stage_args):
        return
    with process_group() as run:
        line = work(run)
        if run.is_main and line:
            report(line)
