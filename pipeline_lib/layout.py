"""Where each round's artifacts live (``outputs/<round>/``; dvc.yaml names the same paths), and how one artifact
names the model it was made from: the sha256 of its model.pt."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.errors import UserError


@dataclass(frozen=True)
class RoundPaths:
    """Every artifact of one round under ``outputs/<round>/``."""

    root: Path

    @classmethod
    def of(cls, outputs: Path, round_name: str) -> RoundPaths:
        return cls(Path(outputs) / round_name)

    model = property(lambda self: self.root / "model.pt")
    train_log = property(lambda self: self.root / "train_log")
    metrics = property(lambda self: self.root / "metrics.json")  # DVC metrics: the summary only
    evaluation = property(lambda self: self.root / "evaluation.json")  # the whole evaluation, per class too
    test_evaluation = property(lambda self: self.root / "test_evaluation.json")  # on request; no DVC output
    per_class_iou = property(lambda self: self.root / "per_class_iou.csv")
    logits = property(lambda self: self.root / "logits.zarr")
    labeled_logits = property(lambda self: self.root / "labeled_logits.zarr")
    confidences = property(lambda self: self.root / "confidences.zarr")  # per-pixel maps + histogram
    pseudo_labels = property(lambda self: self.root / "pseudo_labels.zarr")
    pseudo_label_stats = property(lambda self: self.root / "pseudo_label_stats.json")  # per class too
    pseudo_label_metrics = property(lambda self: self.root / "pseudo_label_metrics.json")  # DVC metrics
    class_distribution_plot = property(lambda self: self.root / "class_distribution.csv")


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: Path) -> str:
    """The sha256 that stores made from ``path``'s model record; refuses a missing checkpoint."""
    if not Path(path).is_file():
        raise UserError(f"{path}: model checkpoint not found; run the stage that trains it first")
    return file_sha256(path)
