"""The infer step of a round: its teacher's native-stride logits on the labelled and unlabelled splits, in two
logits stores, and the teacher's temperature fitted on the labelled split's logits (recorded with the unlabelled
logits, for the confidence stage to use when temperature scaling is on)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pipeline_lib.data.image_files import image_size, load_image
from pipeline_lib.data.prepared import DatasetSpec, Sample, load_label, load_spec, read_split
from pipeline_lib.device import resolve_precision
from pipeline_lib.distributed import DistributedRun
from pipeline_lib.infer.temperature import fit_temperature
from pipeline_lib.layout import RoundPaths, file_sha256
from pipeline_lib.models.checkpoint import load_checkpoint
from pipeline_lib.models.normalization import normalize_image
from pipeline_lib.predict.inference import predict_logits
from pipeline_lib.settings import InferenceSettings
from pipeline_lib.stores.logits_store import LogitsStore, write_logits_store


def infer_round(run: DistributedRun, round_name: str, teacher: str, settings: InferenceSettings,
                images_per_shard: int, prepared: Path, outputs: Path) -> tuple[list[Path], float]:
    """Write ``outputs/<round>/labeled_logits.zarr`` and ``logits.zarr``, the soft predictions of the round's
    ``teacher``; returns their paths and the fitted temperature.

    The work of one process; under torchrun each writes its own shards of both stores, and rank 0 fits the
    temperature (between the two, so that it is recorded in the unlabelled store's attributes)."""
    teacher_path = RoundPaths.of(outputs, teacher).model
    spec = load_spec(prepared)
    model, checkpoint = load_checkpoint(teacher_path, expect_classes=list(spec.classes.names))
    device = run.device
    model.to(device).eval()
    settings = replace(settings, precision=resolve_precision(device, settings.precision, checkpoint["arch"]))
    paths = RoundPaths.of(outputs, round_name)
    attrs = {"checkpoint_sha256": file_sha256(teacher_path), "model_arch": checkpoint["arch"],
             "output_stride": int(model.output_stride), "teacher_round": teacher,
             "inference": settings.as_kwargs()}
    labeled = read_split(prepared, "labeled", spec)
    write_split_logits(model, labeled, spec, device, settings, paths.labeled_logits, {**attrs, "split": "labeled"},
                       images_per_shard, run)
    # Fitted whether or not the pseudo labels use it: cheap, and it says how calibrated the teacher is.
    temperature = run.broadcast(fit_labeled_temperature(paths.labeled_logits, labeled, spec) if run.is_main else None)
    write_split_logits(model, read_split(prepared, "unlabeled", spec), spec, device, settings, paths.logits,
                       {**attrs, "split": "unlabeled", "fitted_temperature": temperature}, images_per_shard, run)
    return [paths.labeled_logits, paths.logits], temperature


def fit_labeled_temperature(store: Path, labeled: list[Sample], spec: DatasetSpec) -> float:
    """The temperature of the labelled split's logits in ``store`` against their labels (see ``fit_temperature``);
    one image's logits and label in memory at a time."""
    logits = LogitsStore.open(store, expect_image_ids=[s.id for s in labeled])
    return fit_temperature(LazySequence(len(logits), logits.logits),
                           LazySequence(len(labeled), lambda i: load_label(labeled[i].label, spec)))


class LazySequence(Sequence):
    """``items[i]`` computed on access, so a long list of arrays never sits in memory at once."""

    def __init__(self, length: int, item: Callable[[int], np.ndarray]) -> None:
        self.length, self.item = length, item

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return self.item(index)


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
