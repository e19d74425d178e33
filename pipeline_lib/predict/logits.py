"""The infer step of a round: its teacher's native-stride logits on the unlabelled and labelled splits, in two
logits stores (the labelled one is what temperature scaling is fitted on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline_lib.checksum import file_sha256
from pipeline_lib.data.prepared import DatasetSpec, Sample, image_size, load_image, load_spec, read_split
from pipeline_lib.distributed import DistributedRun
from pipeline_lib.layout import RoundPaths
from pipeline_lib.models.checkpoint import load_checkpoint
from pipeline_lib.models.normalization import normalize_image
from pipeline_lib.predict.inference import predict_logits
from pipeline_lib.settings import InferenceSettings, RoundSchedule
from pipeline_lib.stores.logits_store import write_logits_store


def infer_round(run: DistributedRun, schedule: RoundSchedule, settings: InferenceSettings, images_per_shard: int,
                prepared: Path, outputs: Path) -> list[Path]:
    """Write ``outputs/<round>/logits.zarr`` and ``labeled_logits.zarr``; returns their paths.

    The work of one process; under torchrun each writes its own shards of both stores."""
    teacher_path = RoundPaths.of(outputs, schedule.teacher).model
    spec = load_spec(prepared)
    model, checkpoint = load_checkpoint(teacher_path, expect_classes=list(spec.classes.names))
    device = run.device
    model.to(device).eval()
    paths = RoundPaths.of(outputs, schedule.name)
    attrs = {"checkpoint_sha256": file_sha256(teacher_path), "model_arch": checkpoint["arch"],
             "output_stride": int(model.output_stride), "teacher_round": schedule.teacher,
             "inference": settings.as_kwargs()}
    stores = []
    for split, store in (("unlabeled", paths.logits), ("labeled", paths.labeled_logits)):
        write_split_logits(model, read_split(prepared, split, spec), spec, device, settings, store,
                           {**attrs, "split": split}, images_per_shard, run)
        stores.append(store)
    return stores


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
