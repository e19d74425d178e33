"""The confidence step of a round: its teacher's logits on the unlabelled split → the confidence store, divided
by the temperature infer fitted on the labelled split when temperature scaling is on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline_lib.confidence.run import run_confidences
from pipeline_lib.data.prepared import load_spec, read_split
from pipeline_lib.distributed import DistributedRun
from pipeline_lib.errors import UserError
from pipeline_lib.layout import RoundPaths, checkpoint_sha256
from pipeline_lib.settings import ConfidenceSettings
from pipeline_lib.stores.logits_store import LogitsStore


def confidence_round(run: DistributedRun, round_name: str, teacher: str, settings: ConfidenceSettings,
                     prepared: Path, outputs: Path, report: Callable[[str], None] = print) -> float:
    """Write ``outputs/<round>/confidences.zarr``; returns the temperature used. The logits must be those of
    ``teacher``'s model.pt. The work of one process; under torchrun each writes its own shards."""
    spec = load_spec(prepared)
    paths = RoundPaths.of(outputs, round_name)
    class_names = list(spec.classes.names)
    image_ids = [s.id for s in read_split(prepared, "unlabeled", spec)]
    # The logits' own problems first (missing, damaged, other images), then whose they are.
    logits = LogitsStore.open(paths.logits, expect_classes=class_names, expect_image_ids=image_ids)
    teacher_sha256 = checkpoint_sha256(RoundPaths.of(outputs, teacher).model)
    temperature = 1.0
    if settings.temperature_scaling:
        if "fitted_temperature" not in logits.attrs:
            raise UserError(f"{paths.logits}: no fitted temperature (made by an older infer); "
                            f"remake it with `dvc repro infer@{round_name}`")
        temperature = float(logits.attrs["fitted_temperature"])
        if run.is_main:
            report(f"temperature T = {temperature:.4f} (fitted by infer on the labelled split)")
    run_confidences(paths.logits, paths.confidences, temperature=temperature, device=run.device,
                    writers=run, expect_classes=class_names, expect_image_ids=image_ids,
                    expect_checkpoint=teacher_sha256)
    return temperature
