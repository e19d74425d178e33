"""train: round 0 trains on the labelled split; round k ≥ 1 on labelled + round k's pseudo labels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import typer

from pipeline_lib.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from pipeline_lib.config import BASELINE_ROUND, RoundPaths, round_schedule, train_config
from pipeline_lib.datasets import load_spec, read_split
from pipeline_lib.errors import UserError
from pipeline_lib.models import build_model
from pipeline_lib.params import Params
from pipeline_lib.training import TrainingImages, config_dict, pick_device, train as train_loop

from . import run_standalone


def train(
    round_name: str = typer.Option(BASELINE_ROUND, "--round", help="r0 = supervised baseline; r1, r2… = rounds "
                                   "from params.yaml's `rounds`."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads seed, model.*, train.*, "
                                "and for rounds ≥ 1 rounds.<round>.* and self_training.*)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
    resume_dir: Path = typer.Option(Path(".dars_resume"), help="Where interrupted runs keep their resume state."),
) -> None:
    """Train the round's model and write outputs/<round>/model.pt and its training log.

    An interrupted run resumes from its last checkpoint when rerun with the same inputs and settings.
    """
    p = Params.load(params)
    config = train_config(p, round_name)
    spec = load_spec(prepared)
    paths = RoundPaths.of(outputs, round_name)
    arch = p.get("model.arch", str)
    class_names = list(spec.classes.names)
    labeled = TrainingImages(read_split(prepared, "labeled", spec), spec, config.labeled_aug_strength,
                             config.crop_size)
    provenance = {"round": round_name, "train": config_dict(config), "arch": arch,
                  "split_hashes": json.loads((prepared / "split_hashes.json").read_text())}

    pseudo = None
    torch.manual_seed(config.seed)  # random initialisation draws from the global generator
    if round_name == BASELINE_ROUND:
        pretrained = p.get("model.pretrained_backbone", str, default=None)
        model = build_model(arch, len(class_names), pretrained_backbone=pretrained)
        provenance["pretrained_backbone"] = pretrained
    else:
        schedule = round_schedule(p)[round_name]
        teacher = RoundPaths.of(outputs, schedule.teacher).model
        if schedule.init == "teacher":
            model, teacher_checkpoint = load_checkpoint(teacher, expect_classes=class_names)
            arch = teacher_checkpoint["arch"]
        else:
            model = build_model(arch, len(class_names), p.get("model.pretrained_backbone", str, default=None))
        pseudo = TrainingImages(read_split(prepared, "unlabeled", spec), spec, config.pseudo_aug_strength,
                                config.crop_size, pseudo_label_store=paths.pseudo_labels)
        store_metadata = paths.pseudo_labels / "zarr.json"  # attributes: method, α, seed, thresholds, teacher
        if not store_metadata.is_file():
            raise UserError(f"{paths.pseudo_labels}: pseudo labels not found; run `dvc repro pseudo_label@{round_name}`")
        provenance.update(teacher=schedule.teacher, init=schedule.init, teacher_sha256=file_sha256(teacher),
                          pseudo_labels_sha256=file_sha256(store_metadata))

    fingerprint = hashlib.sha256(json.dumps(provenance, sort_keys=True, default=str).encode()).hexdigest()
    device = pick_device()
    typer.echo(f"training {round_name}: {arch} on {device}, {config.iterations} iterations, "
               f"batch {config.batch_split(pseudo is not None)} (labelled, pseudo)")
    model = train_loop(model, labeled, pseudo, config, device, resume_dir / round_name, fingerprint,
                       paths.train_log)
    save_checkpoint(paths.model, model, arch, class_names, provenance)
    typer.echo(f"wrote {paths.model}")


if __name__ == "__main__":
    run_standalone(train)
