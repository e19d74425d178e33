"""The training loop shared by every round: supervised (round 0) and labelled + pseudo-labelled (rounds k ≥ 1).

Each iteration's batch is drawn from a generator seeded by (seed, iteration), so a run resumed from a
checkpoint sees exactly the batches the uninterrupted run would have seen. With several processes
(DistributedDataParallel) each rank takes every ``world_size``-th image of that same batch, so the global
batch, each image's augmentation and the loss normalisation are those of the single-process run.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from pipeline_lib.atomic import atomic_path
from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.device import autocast_context, resolve_precision
from pipeline_lib.distributed import DistributedRun, rank_seed
from pipeline_lib.errors import UserError
from pipeline_lib.models.build import parameter_groups
from pipeline_lib.models.normalization import normalize_batch
from pipeline_lib.progress import track
from pipeline_lib.settings import TrainSettings
from pipeline_lib.train.images import MixedSources, TrainingImages, load_at_idle_priority
from pipeline_lib.train.loss import PerSourceForward, per_source_loss, segmentation_loss, source_counts
from pipeline_lib.train.resume import (forget_metrics_after, load_resume_state, restore_rng_state, rng_state,
                                       save_resume_state)


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
    torch.manual_seed(rank_seed(config.seed, run.rank))
    if run.world_size > 1 and sync_batchnorm:  # checked for GPUs by DistributedSettings.check_sync_batchnorm
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
    start, rng_states = load_resume_state(state_path, fingerprint, model, optimizer, scaler, device, run)

    per_batch = list(config.batch_split(pseudo is not None))
    step_loss = BatchLoss(model, per_batch, config, device, run)
    sources = [labeled] + ([pseudo] if pseudo is not None else [])
    batches = IterationBatches([len(s) for s in sources], per_batch, config.seed, start, config.iterations,
                               run.rank, run.world_size)
    loader = DataLoader(MixedSources(sources), batch_sampler=batches, num_workers=config.num_workers,
                        persistent_workers=False, pin_memory=device.type == "cuda",
                        worker_init_fn=load_at_idle_priority if device.type == "cpu" else None)
    log = TrainingLog(work_dir, start, config, sum(per_batch), run)
    model.train()
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
        loss = step_loss(images, targets)
        loss_value = loss.item()  # one host sync per step, for the check and the log both
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at iteration {iteration}; lower train.base_lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        done = iteration + 1
        log.step(done, loss_value, optimizer.param_groups[0]["lr"], bar)
        if done % config.checkpoint_every == 0 and done < config.iterations:
            rng = run.gather(rng_state(device))  # every rank's generators (their dropout streams differ)
            if run.is_main:
                save_resume_state(state_path, model, optimizer, scaler, done, fingerprint, rng)
    log.finish(log_dir)
    return model, optimizer.state_dict()["state"]


class BatchLoss:
    """One step's loss of a batch from the loader: normalised and moved to the device, the model run on it
    (once, or once per source with ``loss: per_source``) under the training precision, and the loss normalised
    so that, over several processes, DDP's gradient average is exactly the whole batch's gradient."""

    def __init__(self, model: torch.nn.Module, per_batch: list[int], config: TrainSettings,
                 device: torch.device, run: DistributedRun) -> None:
        self.per_source = config.loss == "per_source" and len(per_batch) > 1 and per_batch[1] > 0
        self.forward = PerSourceForward(model) if self.per_source else model
        if run.in_group:
            # An aux head whose loss is switched off gets no gradient; DDP must be told to expect that.
            unused_aux = config.aux_weight == 0 and bool(getattr(model, "has_aux_head", False))
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.forward, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=unused_aux)
        self.counts = source_counts(per_batch, run.rank, run.world_size)
        self.config, self.device, self.run = config, device, run

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        config, device, run = self.config, self.device, self.run
        images = normalize_batch(images.to(device, non_blocking=True))
        targets = targets.to(device, non_blocking=True).long()
        distributed = run.world_size > 1
        if self.per_source:
            valid = [float((part != IGNORE_INDEX).sum()) for part in targets.split(self.counts)]
            if distributed:
                valid = run.sum_over_ranks(valid)
            with autocast_context(device, config.precision):
                outputs = self.forward(images, self.counts)
            return per_source_loss(outputs, targets, self.counts, valid, config.aux_weight, run.world_size)
        pixel_normalizer = None
        if distributed:
            # DDP averages the ranks' gradients, so dividing each rank's pixel-summed loss by (the batch's
            # non-ignored pixels / world size) gives exactly the gradient of the whole batch's pixel mean.
            valid = run.sum_over_ranks([float((targets != IGNORE_INDEX).sum())])[0]
            pixel_normalizer = max(valid, 1.0) / run.world_size
        with autocast_context(device, config.precision):
            outputs = self.forward(images)
        return segmentation_loss(outputs, targets, config.aux_weight, pixel_normalizer)


class TrainingLog:
    """The dvclive curves (loss, lr, images per second) every ``log_every`` iterations, on rank 0, and the
    progress bar's loss: kept in the resume folder while training runs, its curves copied to ``log_dir`` at the
    end. A resumed run first drops what the interrupted one logged after its last resume state."""

    def __init__(self, work_dir: Path, start: int, config: TrainSettings, batch_images: int,
                 run: DistributedRun) -> None:
        from dvclive import Live

        self.work_dir, self.config, self.batch_images, self.run = work_dir, config, batch_images, run
        self.live = None
        if run.is_main:
            if start > 0:
                forget_metrics_after(work_dir / "live" / "plots" / "metrics", start)
            self.live = Live(dir=str(work_dir / "live"), resume=start > 0, save_dvc_exp=False, dvcyaml=None,
                             report=None)
        self.running_loss, self.running_count, self.seen, self.started = 0.0, 0, 0, time.perf_counter()

    def step(self, done: int, loss: float, lr: float, bar) -> None:
        self.running_loss += loss
        self.running_count += 1
        self.seen += self.batch_images
        if done % self.config.log_every == 0 or done == self.config.iterations:
            # The mean over ranks of their normalised losses is the whole batch's loss.
            mean_loss = self.run.sum_over_ranks([self.running_loss])[0] / self.run.world_size / self.running_count
            if self.live is not None:
                self.live.step = done
                self.live.log_metric("train/loss", mean_loss)
                self.live.log_metric("train/lr", lr)
                self.live.log_metric("train/images_per_second",
                                     self.seen / max(time.perf_counter() - self.started, 1e-9))
            bar.set_postfix(loss=f"{mean_loss:.3f}")
            self.running_loss, self.running_count = 0.0, 0

    def finish(self, log_dir: Path) -> None:
        if self.live is None:
            return
        self.live.end()
        with atomic_path(log_dir) as tmp:  # the curves only: dvc plots reads every file it is given
            shutil.copytree(self.work_dir / "live" / "plots" / "metrics", tmp)
        shutil.rmtree(self.work_dir, ignore_errors=True)


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
