"""The train step of a round: round 0 on the labelled split, round k ≥ 1 on labelled + round k's pseudo labels
(or, with ``self_training.pseudo_fraction`` 0, the labelled-only control), saved with its provenance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from pipeline_lib.data.prepared import load_spec, read_split
from pipeline_lib.device import resolve_precision
from pipeline_lib.distributed import DistributedRun
from pipeline_lib.errors import UserError
from pipeline_lib.layout import RoundPaths, file_sha256
from pipeline_lib.models.build import build_model
from pipeline_lib.models.checkpoint import load_checkpoint, save_checkpoint
from pipeline_lib.settings import BASELINE_ROUND, ModelSettings, RoundSchedule, TrainSettings
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore
from pipeline_lib.train.images import TrainingImages
from pipeline_lib.train.loop import train
from pipeline_lib.train.provenance import base_provenance, resume_fingerprint


def train_round(run: DistributedRun, round_name: str, settings: TrainSettings, model_settings: ModelSettings,
                schedule: RoundSchedule | None, sync_batchnorm: bool, prepared: Path, outputs: Path,
                resume_dir: Path, report: Callable[[str], None] = print) -> Path:
    """Train and (on rank 0) save ``outputs/<round>/model.pt``; returns its path. ``schedule`` is None for r0.

    The work of one process (of several under torchrun, where only rank 0 writes)."""
    spec = load_spec(prepared)
    paths = RoundPaths.of(outputs, round_name)
    arch = model_settings.arch
    class_names = list(spec.classes.names)
    labeled = TrainingImages(read_split(prepared, "labeled", spec), spec, settings.labeled_augmentation,
                             settings.crop_size)
    provenance = base_provenance(round_name, settings, arch, prepared)
    # train.precision auto asks for the device's faster precision, so the same params train in bf16 on one machine
    # and fp32 on another, with other numbers (README, "Which machine"): the checkpoint says which it was.
    precision = resolve_precision(run.device, settings.precision, arch)
    provenance["trained_with"] = {"device": run.device.type, "precision": precision}

    pseudo, momentum = None, None
    torch.manual_seed(settings.seed)  # random initialisation draws from the global generator
    if round_name == BASELINE_ROUND:
        model = build_model(arch, len(class_names), pretrained_backbone=model_settings.pretrained_backbone)
        provenance["pretrained_backbone"] = model_settings.pretrained_backbone
    else:
        teacher = RoundPaths.of(outputs, schedule.teacher).model
        if schedule.init == "teacher":
            model, teacher_checkpoint = load_checkpoint(teacher, expect_classes=class_names)
            arch = teacher_checkpoint["arch"]
            if settings.optimizer_state == "teacher":
                momentum = teacher_checkpoint.get("optimizer_state")
                if not isinstance(momentum, dict):
                    raise UserError(f"{teacher}: holds no optimiser state to carry over (saved by an earlier "
                                    f"version); retrain it, or set rounds.{round_name}.optimizer_state to fresh")
        else:
            model = build_model(arch, len(class_names), model_settings.pretrained_backbone)
        teacher_sha256 = file_sha256(teacher)
        provenance.update(teacher=schedule.teacher, init=schedule.init, teacher_sha256=teacher_sha256)
        if settings.pseudo_fraction > 0:
            unlabeled = read_split(prepared, "unlabeled", spec)
            store_metadata = paths.pseudo_labels / "zarr.json"  # attributes: method, α, seed, thresholds, teacher
            if not store_metadata.is_file():
                raise UserError(f"{paths.pseudo_labels}: pseudo labels not found; "
                                f"run `dvc repro pseudo_label@{round_name}`")
            # Checked here, once: complete, of this split and classes, and drawn from this round's teacher.
            PseudoLabelStore.open(paths.pseudo_labels, expect_classes=class_names,
                                  expect_image_ids=[s.id for s in unlabeled], expect_checkpoint=teacher_sha256)
            pseudo = TrainingImages(unlabeled, spec, settings.pseudo_augmentation, settings.crop_size,
                                    pseudo_label_store=paths.pseudo_labels)
            provenance["pseudo_labels_sha256"] = file_sha256(store_metadata)
        # else: the labelled-only control (self_training.pseudo_fraction = 0): this round's schedule and
        # iterations without pseudo labels, to tell their gain from that of training longer.

    if run.world_size > 1:
        # Batch statistics differ with the number of processes; a single-process run keeps its old fingerprint.
        provenance["distributed"] = {"processes": run.world_size, "backend": run.backend,
                                     "sync_batchnorm": sync_batchnorm}
    if run.is_main:
        where = f"{run.world_size} × {run.device.type} ({run.backend})" if run.world_size > 1 else str(run.device)
        report(f"training {round_name}: {arch} on {where} ({precision}), "
               f"{settings.iterations} iterations, batch {settings.batch_split(pseudo is not None)} (labelled, pseudo)")
    model, momentum = train(model, labeled, pseudo, replace(settings, precision=precision), run.device, resume_dir / round_name,
                            resume_fingerprint(provenance), paths.train_log, run=run, sync_batchnorm=sync_batchnorm,
                            momentum=momentum)
    if run.is_main:
        save_checkpoint(paths.model, model, arch, class_names, provenance, optimizer_state=momentum)
    return paths.model
