"""The pseudo-label step of a round: fit the temperature if asked, then the two-pass run over the teacher's
logits, with the unlabelled split's ground truth (where the dataset has it) to measure accuracy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline_lib.checksum import checkpoint_sha256
from pipeline_lib.data.prepared import load_class_distribution, load_label, load_spec, read_split
from pipeline_lib.layout import RoundPaths
from pipeline_lib.pseudo_label.run import run_pseudo_labeling
from pipeline_lib.pseudo_label.temperature import fit_temperature
from pipeline_lib.settings import PseudoLabelSettings
from pipeline_lib.stores.logits_store import LogitsStore


def pseudo_label_round(round_name: str, teacher: str, settings: PseudoLabelSettings, prepared: Path, outputs: Path,
                       report: Callable[[str], None] = print) -> dict:
    """Write ``outputs/<round>/pseudo_labels.zarr``, pseudo_label_stats.json, pseudo_label_metrics.json and
    class_distribution.csv;
    returns the stats. The logits must be those of ``teacher``'s model.pt. ``report`` receives the fitted
    temperature."""
    spec = load_spec(prepared)
    paths = RoundPaths.of(outputs, round_name)
    class_names = list(spec.classes.names)
    unlabeled = {s.id: s for s in read_split(prepared, "unlabeled", spec)}
    # The logits' own problems first (missing, damaged, other images), then whose they are.
    LogitsStore.open(paths.logits, expect_classes=class_names, expect_image_ids=list(unlabeled))
    teacher_sha256 = checkpoint_sha256(RoundPaths.of(outputs, teacher).model)

    temperature = 1.0
    if settings.temperature_scaling:
        labeled = read_split(prepared, "labeled", spec)
        store = LogitsStore.open(paths.labeled_logits, expect_classes=class_names,
                                 expect_image_ids=[s.id for s in labeled], expect_checkpoint=teacher_sha256)
        # Lazy sequences: one image's logits and label in memory at a time.
        temperature = fit_temperature(LazySequence(len(store), store.logits),
                                      LazySequence(len(labeled), lambda i: load_label(labeled[i].label, spec)))
        report(f"fitted temperature T = {temperature:.4f} on {len(labeled)} labelled images")

    def ground_truth(image_id: str) -> np.ndarray | None:
        sample = unlabeled.get(image_id)
        return None if sample is None or sample.label is None else load_label(sample.label, spec)

    return run_pseudo_labeling(
        paths.logits, paths.pseudo_labels, paths.pseudo_label_stats, paths.pseudo_label_metrics,
        paths.class_distribution_plot, labeled_distribution=load_class_distribution(prepared), method=settings.method,
        labeling_ratio=settings.labeling_ratio, seed=settings.seed, temperature=temperature,
        ground_truth=ground_truth, workers=settings.workers, expect_classes=class_names,
        expect_image_ids=list(unlabeled), expect_checkpoint=teacher_sha256)


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
