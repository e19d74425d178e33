"""train: round 0 trains on the labelled split; round k ≥ 1 on labelled + round k's pseudo labels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import typer

import pipeline_lib
from pipeline_lib.config import BASELINE_ROUND, RoundPaths, round_schedule, train_config
from pipeline_lib.data.prepared import load_spec, read_split
from pipeline_lib.distributed import DistributedRun, DistributedSettings, process_group, relaunch_under_torchrun
from pipeline_lib.errors import UserError
from pipeline_lib.models.build import build_model
from pipeline_lib.models.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from pipeline_lib.params import Params
from pipeline_lib.train.loop import TrainConfig, TrainingImages, config_dict
from pipeline_lib.train.loop import train as train_loop

from . import run_standalone


def train(
    round_name: str = typer.Option(BASELINE_ROUND, "--round", help="r0 = supervised baseline; r1, r2… = rounds "
                                   "from params.yaml's `rounds`."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads seed, model.*, train.*, "
                                "distributed.*, and for rounds ≥ 1 rounds.<round>.* and self_training.*)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
    resume_dir: Path = typer.Option(Path(".dars_resume"), help="Where interrupted runs keep their resume state."),
) -> None:
    """Train the round's model and write outputs/<round>/model.pt and its training log.

    An interrupted run resumes from its last checkpoint when rerun with the same inputs and settings.
    With distributed.processes N > 1 it runs as N processes under torchrun (one per GPU, DDP).
    """
    p = Params.load(params)
    config = train_config(p, round_name)
    distributed = DistributedSettings.from_params(p)
    config.check_processes(distributed.processes)
    distributed.check_sync_batchnorm()
    if relaunch_under_torchrun(distributed.processes, [
            "train", "--round", round_name, "--params", str(params), "--prepared", str(prepared),
            "--outputs", str(outputs), "--resume-dir", str(resume_dir)]):
        return
    with process_group() as run:
        config.check_processes(run.world_size)  # torchrun may have been started by hand with its own count
        train_in_process(run, p, config, distributed.sync_batchnorm, round_name, prepared, outputs, resume_dir)


def train_in_process(run: DistributedRun, p: Params, config: TrainConfig, sync_batchnorm: bool, round_name: str,
                     prepared: Path, outputs: Path, resume_dir: Path) -> None:
    """The work of one process (of several under torchrun, where only rank 0 writes)."""
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
        provenance.update(teacher=schedule.teacher, init=schedule.init, teacher_sha256=file_sha256(teacher))
        if config.pseudo_fraction > 0:
            pseudo = TrainingImages(read_split(prepared, "unlabeled", spec), spec, config.pseudo_aug_strength,
                                    config.crop_size, pseudo_label_store=paths.pseudo_labels)
            store_metadata = paths.pseudo_labels / "zarr.json"  # attributes: method, α, seed, thresholds, teacher
            if not store_metadata.is_file():
                raise UserError(f"{paths.pseudo_labels}: pseudo labels not found; "
                                f"run `dvc repro pseudo_label@{round_name}`")
            provenance["pseudo_labels_sha256"] = file_sha256(store_metadata)
        # else: the labelled-only control (self_training.pseudo_fraction = 0): this round's schedule and
        # iterations without pseudo labels, to tell their gain from that of training longer.

    if run.world_size > 1:
        # Batch statistics differ with the number of processes; a single-process run keeps its old fingerprint.
        provenance["distributed"] = {"processes": run.world_size, "backend": run.backend,
                                     "sync_batchnorm": sync_batchnorm}
    # A resume state is only valid for the same inputs, settings and code.
    library = Path(pipeline_lib.__file__).parent
    code = hashlib.sha256()
    for module in sorted(library.rglob("*.py")):  # every module of every subpackage, named and read
        code.update(module.relative_to(library).as_posix().encode() + b"\0" + module.read_bytes())
    fingerprint = hashlib.sha256(json.dumps({**provenance, "code": code.hexdigest()}, sort_keys=True,
                                            default=str).encode()).hexdigest()
    if run.is_main:
        where = f"{run.world_size} × {run.device.type} ({run.backend})" if run.world_size > 1 else str(run.device)
        typer.echo(f"training {round_name}: {arch} on {where}, {config.iterations} iterations, "
                   f"batch {config.batch_split(pseudo is not None)} (labelled, pseudo)")
    model = train_loop(model, labeled, pseudo, config, run.device, resume_dir / round_name, fingerprint,
                       paths.train_log, run=run, sync_batchnorm=sync_batchnorm)
    if run.is_main:
        save_checkpoint(paths.model, model, arch, class_names, provenance)
        typer.echo(f"wrote {paths.model}")


if __name__ == "__main__":
    run_standalone(train)
