"""The training loop shared by every round: supervised (round 0) and labelled + pseudo-labelled (rounds k ≥ 1).

Each iteration's batch is drawn from a generator seeded by (seed, iteration), so a run resumed from a
checkpoint sees exactly the batches the uninterrupted run would have seen. With several processes
(DistributedDataParallel) each rank takes every ``world_size``-th image of that same batch, so the global
batch, each image's augmentation and the loss normalisation are those of the single-process run.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from pipeline_lib.atomic import atomic_path, write_text
from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.device import autocast_context, resolve_precision
from pipeline_lib.distributed import DistributedRun, rank_seed
from pipeline_lib.errors import UserError
from pipeline_lib.models.build import parameter_groups
from pipeline_lib.models.checkpoint import first_line
from pipeline_lib.models.normalization import normalize_batch
from pipeline_lib.progress import track
from pipeline_lib.settings import TrainSettings
from pipeline_lib.train.images import MixedSources, TrainingImages, load_at_idle_priority
from pipeline_lib.train.loss import PerSourceForward, per_source_loss, segmentation_loss, source_counts


class IterationBatches(Sampler):
    """Batch keys ``(source, index, augmentation_seed)`` for iterations start..total-1.

    Rank ``rank`` of ``world_size`` gets every ``world_size``-th key of each global batch, from ``rank``:
    interleaved, so every rank's share mixes labelled and pseudo-labelled images as the whole batch does.
    """

    def __init__(self, source_sizes: list[int], per_batch: list[int], seed: int, start: int, total: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.source_sizes, self.per_batch = source_sizes, per_batch
        self.seed, self.start, self.total = seed, start, total
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.total - self.start

    def __iter__(self):
        for iteration in range(self.start, self.total):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, iteration]))
            keys = [(source, int(rng.integers(size)), int(rng.integers(2**31)))
                    for source, (size, count) in enumerate(zip(self.source_sizes, self.per_batch))
                    for _ in range(count)]
            yield keys[self.rank::self.world_size]


def poly_lr(initial_lr: float, iteration: int, total: int, power: float) -> float:
    return initial_lr * (1 - iteration / total) ** power


def train(model: torch.nn.Module, labeled: TrainingImages, pseudo: TrainingImages | None, config: TrainSettings,
          device: torch.device, work_dir: Path, fingerprint: str, log_dir: Path,
          run: DistributedRun = DistributedRun(), sync_batchnorm: bool = False,
          momentum: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """Train ``model`` in place for ``config.iterations`` iterations, resuming from ``work_dir`` if possible.

    ``momentum``: SGD momentum buffers to start from (the teacher's, with ``optimizer_state: teacher``), as
    returned by an earlier call, which returns ``(model, momentum)``.

    ``work_dir`` holds the resume state (``state.pt``) and the dvclive log while training runs; ``fingerprint``
    identifies the inputs and settings, and a state saved under another fingerprint is ignored. On success the
    log is moved to ``log_dir`` and ``work_dir`` is deleted.

    Under a process group (``run``) every rank calls this; the model is wrapped in DistributedDataParallel
    (its BatchNorm layers synchronised across GPUs if ``sync_batchnorm``), each rank trains on its share of
    every batch, and only rank 0 logs and writes the resume state. The model returned is the unwrapped one.
    """
    from dvclive import Live

    torch.manual_seed(rank_seed(config.seed, run.rank))
    distributed = run.world_size > 1
    if distributed and sync_batchnorm:  # checked for GPUs by DistributedSettings.check_sync_batchnorm
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # No channels_last: measured here (LR-ASPP, CPU) it made training steps 4-6x slower, not faster.
    model.to(device)
    groups = parameter_groups(model, config.base_lr, config.head_lr_multiplier)
    optimizer = torch.optim.SGD(groups, lr=config.base_lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)

    # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(device, config.precision) == "fp16")
    if momentum is not None:
        load_momentum(optimizer, momentum)  # a resume state below replaces it with the interrupted run's

    state_path = work_dir / "state.pt"
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

    per_batch = list(config.batch_split(pseudo is not None))
    per_source = config.loss == "per_source" and len(per_batch) > 1 and per_batch[1] > 0
    forward = PerSourceForward(model) if per_source else model
    if run.in_group:
        # An aux head whose loss is switched off gets no gradient; DDP must be told to expect that.
        unused_aux = config.aux_weight == 0 and bool(getattr(model, "has_aux_head", False))
        forward = torch.nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused_aux)

    sources = [labeled] + ([pseudo] if pseudo is not None else [])
    counts = source_counts(per_batch, run.rank, run.world_size)
    batches = IterationBatches([len(s) for s in sources], per_batch, config.seed, start, config.iterations,
                               run.rank, run.world_size)
    loader = DataLoader(MixedSources(sources), batch_sampler=batches, num_workers=config.num_workers,
                        persistent_workers=False, pin_memory=device.type == "cuda",
                        worker_init_fn=load_at_idle_priority if device.type == "cpu" else None)

    live = None
    if run.is_main:
        if start > 0:
            forget_metrics_after(work_dir / "live" / "plots" / "metrics", start)
        live = Live(dir=str(work_dir / "live"), resume=start > 0, save_dvc_exp=False, dvcyaml=None,
                    report=None)
    model.train()
    running_loss, running_count, seen, started = 0.0, 0, 0, time.perf_counter()
    # Making the batch iterator draws the DataLoader's base seed from the global generator, as the
    # uninterrupted run did before its first step; only then is a resumed run's generator put back where the
    # interrupted one left it, so dropout (PSPNet's head) draws the same numbers. The workers' own seeds
    # derive from that base seed but draw nothing: augmentation is seeded per image and iteration.
    batch_iterator = iter(loader)
    if rng_states is not None:
        restore_rng_state(rng_states, run.rank, device)
    bar = track(batch_iterator, total=len(batches), desc=f"train [{start}→{config.iterations}]", unit="it",
                enabled=run.is_main)
    for iteration, (images, targets) in enumerate(bar, start):
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(group["initial_lr"], iteration, config.iterations, config.poly_power)
        images = normalize_batch(images.to(device, non_blocking=True))
        targets = targets.to(device, non_blocking=True).long()
        if per_source:
            valid = [float((part != IGNORE_INDEX).sum()) for part in targets.split(counts)]
            if distributed:
                valid = run.sum_over_ranks(valid)
            with autocast_context(device, config.precision):
                outputs = forward(images, counts)
            loss = per_source_loss(outputs, targets, counts, valid, config.aux_weight, run.world_size)
        else:
            pixel_normalizer = None
            if distributed:
                # DDP averages the ranks' gradients, so dividing each rank's pixel-summed loss by (the batch's
                # non-ignored pixels / world size) gives exactly the gradient of the whole batch's pixel mean.
                valid = run.sum_over_ranks([float((targets != IGNORE_INDEX).sum())])[0]
                pixel_normalizer = max(valid, 1.0) / run.world_size
            with autocast_context(device, config.precision):
                outputs = forward(images)
            loss = segmentation_loss(outputs, targets, config.aux_weight, pixel_normalizer)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss became {loss.item()} at iteration {iteration}; lower train.base_lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        running_loss += loss.item()
        running_count += 1
        seen += sum(per_batch)
        done = iteration + 1
        if done % config.log_every == 0 or done == config.iterations:
            # The mean over ranks of their normalised losses is the whole batch's loss.
            mean_loss = run.sum_over_ranks([running_loss])[0] / run.world_size / running_count
            if live is not None:
                live.step = done
                live.log_metric("train/loss", mean_loss)
                live.log_metric("train/lr", optimizer.param_groups[0]["lr"])
                live.log_metric("train/images_per_second", seen / max(time.perf_counter() - started, 1e-9))
            bar.set_postfix(loss=f"{mean_loss:.3f}")
            running_loss, running_count = 0.0, 0
        if done % config.checkpoint_every == 0 and done < config.iterations:
            rng = run.gather(rng_state(device))  # every rank's generators (their dropout streams differ)
            if run.is_main:
                save_resume_state(state_path, model, optimizer, scaler, done, fingerprint, rng)
    if live is not None:
        live.end()
        with atomic_path(log_dir) as tmp:  # the curves only: dvc plots reads every file it is given
            shutil.copytree(work_dir / "live" / "plots" / "metrics", tmp)
        shutil.rmtree(work_dir, ignore_errors=True)
    return model, optimizer.state_dict()["state"]


def load_momentum(optimizer: torch.optim.Optimizer, momentum: dict) -> None:
    """Put saved SGD momentum buffers into ``optimizer``, keeping its own learning rates and settings.

    ``momentum`` maps parameter positions (in parameter-group order) to ``{"momentum_buffer": tensor}``; a
    parameter that never had a gradient (an aux head switched off) has none and starts from zero."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    buffers = {int(index): entry.get("momentum_buffer") for index, entry in momentum.items()}
    if not buffers or any(not 0 <= index < len(params) or buffer is None or buffer.shape != params[index].shape
                          for index, buffer in buffers.items()):
        raise UserError(f"the teacher's optimiser state ({len(buffers)} momentum buffers) does not match this "
                        f"model's {len(params)} parameters; set the round's optimizer_state to fresh")
    state = optimizer.state_dict()
    # Copies: SGD updates its buffers in place, and the caller's must stay as they were.
    state["state"] = {index: {"momentum_buffer": buffer.clone()} for index, buffer in buffers.items()}
    optimizer.load_state_dict(state)


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
