"""The pseudo-label step of a round: the labelling pass over the teacher's confidence store, with the unlabelled
split's ground truth (where the dataset has it) to measure accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline_lib.data.prepared import load_class_distribution, load_label, load_spec, read_split
from pipeline_lib.layout import RoundPaths, checkpoint_sha256
from pipeline_lib.pseudo_label.run import run_pseudo_labeling
from pipeline_lib.settings import PseudoLabelSettings
from pipeline_lib.stores.confidence_store import ConfidenceStore
from pipeline_lib.stores.sharded_stack import SingleWriter, StoreWriters


def pseudo_label_round(round_name: str, teacher: str, settings: PseudoLabelSettings, prepared: Path, outputs: Path,
                       writers: StoreWriters = SingleWriter()) -> dict:
    """Write ``outputs/<round>/pseudo_labels.zarr``, pseudo_label_stats.json, pseudo_label_metrics.json and
    class_distribution.csv; returns the stats. The confidences must be those of ``teacher``'s model.pt. The work
    of one process; under torchrun each writes its own shards."""
    spec = load_spec(prepared)
    paths = RoundPaths.of(outputs, round_name)
    unlabeled = {s.id: s for s in read_split(prepared, "unlabeled", spec)}
    # The store's own problems first (missing, damaged, other images), then whose it is.
    ConfidenceStore.open(paths.confidences, expect_classes=list(spec.classes.names), expect_image_ids=list(unlabeled))
    teacher_sha256 = checkpoint_sha256(RoundPaths.of(outputs, teacher).model)

    def ground_truth(image_id: str) -> np.ndarray | None:
        sample = unlabeled.get(image_id)
        return None if sample is None or sample.label is None else load_label(sample.label, spec)

    return run_pseudo_labeling(
        paths.confidences, paths.pseudo_labels, paths.pseudo_label_stats, paths.pseudo_label_metrics,
        paths.class_distribution_plot, labeled_distribution=load_class_distribution(prepared), method=settings.method,
        labeling_ratio=settings.labeling_ratio, seed=settings.seed, ground_truth=ground_truth, writers=writers,
        expect_classes=list(spec.classes.names), expect_image_ids=list(unlabeled),
        expect_checkpoint=teacher_sha256)
