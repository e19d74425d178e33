"""Where each round's artifacts live: ``outputs/<round>/`` (dvc.yaml names the same paths)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    per_class_iou = property(lambda self: self.root / "per_class_iou.csv")
    logits = property(lambda self: self.root / "logits.zarr")
    labeled_logits = property(lambda self: self.root / "labeled_logits.zarr")
    pseudo_labels = property(lambda self: self.root / "pseudo_labels.zarr")
    pseudo_label_stats = property(lambda self: self.root / "pseudo_label_stats.json")  # per class too
    pseudo_label_metrics = property(lambda self: self.root / "pseudo_label_metrics.json")  # DVC metrics
    class_distribution_plot = property(lambda self: self.root / "class_distribution.csv")
