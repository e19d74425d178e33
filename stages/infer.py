"""infer: the teacher's soft predictions (native-stride float16 logits) for the unlabelled and labelled splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer

from pipeline_lib.config import RoundPaths, round_schedule
from pipeline_lib.data.prepared import DatasetSpec, Sample, image_size, load_image, load_spec, read_split
from pipeline_lib.data.transforms import normalize_image
from pipeline_lib.distributed import DistributedRun, DistributedSettings, process_group, relaunch_under_torchrun
from pipeline_lib.errors import UserError
from pipeline_lib.inference_settings import InferenceSettings
from pipeline_lib.models.checkpoint import file_sha256, load_checkpoint
from pipeline_lib.params import Params, positive
from pipeline_lib.predict.inference import predict_logits
from pipeline_lib.stores.logits_store import write_logits_store

from . import run_standalone


def infer(
    round_name: str = typer.Option(..., "--round", help="The round whose pseudo labels these predictions feed "
                                   "(r1, r2…); its teacher's model makes them."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads rounds.<round>.teacher, inference.*, "
                                "distributed.processes)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
) -> None:
    """Write outputs/<round>/logits.zarr (unlabelled split) and labeled_logits.zarr (labelled split, used to fit
    the temperature).

    With distributed.processes N > 1 it runs as N processes under torchrun, each predicting whole shards of
    images; the stores are the same whatever N (on CPU: given the same threads per process).
    """
    p = Params.load(params)
    schedule = round_schedule(p)
    if round_name not in schedule:
        raise UserError(f"unknown round {round_name!r}; {p.source} defines rounds {', '.join(schedule) or 'none'}")
    settings = InferenceSettings.from_params(p)
    images_per_shard = p.get("inference.images_per_shard", int, positive)
    processes = DistributedSettings.from_params(p).processes
    if relaunch_under_torchrun(processes, ["infer", "--round", round_name, "--params", str(params),
                                          "--prepared", str(prepared), "--outputs", str(outputs)]):
        return
    with process_group() as run:
        infer_in_process(run, p, settings, images_per_shard, round_name, prepared, outputs)


def infer_in_process(run: DistributedRun, p: Params, settings: InferenceSettings, images_per_shard: int,
                     round_name: str, prepared: Path, outputs: Path) -> None:
    """The work of one process (of several under torchrun: each writes its own shards of both stores)."""
    schedule = round_schedule(p)
    teacher_path = RoundPaths.of(outputs, schedule[round_name].teacher).model
    spec = load_spec(prepared)
    model, checkpoint = load_checkpoint(teacher_path, expect_classes=list(spec.classes.names))
    device = run.device
    model.to(device).eval()
    paths = RoundPaths.of(outputs, round_name)
    attrs = {"checkpoint_sha256": file_sha256(teacher_path), "model_arch": checkpoint["arch"],
             "output_stride": int(model.output_stride), "teacher_round": schedule[round_name].teacher,
             "inference": settings.as_kwargs()}
    for split, store in (("unlabeled", paths.logits), ("labeled", paths.labeled_logits)):
        write_split_logits(model, read_split(prepared, split, spec), spec, device, settings, store,
                           {**attrs, "split": split}, images_per_shard, run)
        if run.is_main:
            typer.echo(f"wrote {store}")


def write_split_logits(model, samples: list[Sample], spec: DatasetSpec, device: torch.device,
                       settings: InferenceSettings, store: Path, attrs: dict, images_per_shard: int,
                       run: DistributedRun = DistributedRun()) -> None:
    label_sizes = [image_size(s.image) for s in samples]
    logit_size_of: dict[tuple[int, int], tuple[int, int]] = {}

    def predict(index: int) -> np.ndarray:
        image = normalize_image(load_image(samples[index].image)).to(device)
        logits = predict_logits(model, image, **settings.as_kwargs())
        return logits.float().cpu().numpy().astype(np.float16)

    def logit_size(size: tuple[int, int]) -> tuple[int, int]:
        # The native-stride size depends only on the image size: probe once per distinct size.
        if size not in logit_size_of:
            probe = torch.zeros(3, *size, device=device)
            logit_size_of[size] = tuple(predict_logits(model, probe, **settings.as_kwargs()).shape[-2:])
        return logit_size_of[size]

    write_logits_store(store, [s.id for s in samples], label_sizes, [logit_size(s) for s in label_sizes],
                       list(spec.classes.names), predict, attrs, images_per_shard=images_per_shard, writers=run)


if __name__ == "__main__":
    run_standalone(infer)
