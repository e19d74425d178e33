"""One round's artifacts, from the workspace or from any git revision / DVC experiment (read through
:class:`pipeline_lib.artifact_source.ArtifactSource`).

:func:`open_round` gathers what ``dars inspect`` needs of one round: the dataset spec and unlabelled split,
the pseudo-label store, the confidence store the labels were drawn from (its per-pixel confidences, as
stored: nothing is recomputed) when it is there and consistent, and the stats.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline_lib.artifact_source import ArtifactSource, load_params
from pipeline_lib.data.image_files import load_image
from pipeline_lib.data.prepared import DatasetSpec, Sample, load_label, load_spec, read_split
from pipeline_lib.errors import UserError
from pipeline_lib.layout import RoundPaths
from pipeline_lib.settings import self_training_round
from pipeline_lib.stores.confidence_store import ConfidenceStore
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore
from pipeline_lib.stores.sharded_stack import MADE_BY

# Files of a prepared-dataset directory that inspection reads (see pipeline_lib/data/prepared.py).
PREPARED_FILES = ("dataset.json", "class_distribution.json", "splits/unlabeled.txt")


def read_stats(source: ArtifactSource, outputs: str | os.PathLike, round_name: str) -> dict | None:
    """The round's pseudo_label_stats.json, or None when the source has none."""
    return source.read_json_object(RoundPaths.of(Path(outputs), round_name).pseudo_label_stats)


@dataclass
class RoundArtifacts:
    """One round's pseudo labels and everything needed to look at them."""

    round_name: str
    source: ArtifactSource
    spec: DatasetSpec
    samples: dict[str, Sample]  # the unlabelled split, by image id
    labels: PseudoLabelStore
    confidences: ConfidenceStore | None  # None: confidence maps cannot be drawn (see confidence_note)
    confidence_note: str | None
    stats: dict | None
    labeled_distribution: np.ndarray  # (C,) labelled-set class shares

    @property
    def image_ids(self) -> list[str]:
        return self.labels.image_ids

    def pseudo_label(self, image_id: str) -> np.ndarray:
        return np.asarray(self.labels.label(self.labels.index_of(image_id)))

    def label_size(self, image_id: str) -> tuple[int, int]:
        return self.labels.label_sizes[self.labels.index_of(image_id)]

    def image(self, image_id: str) -> np.ndarray:
        return load_image(self.source.localize(self._sample(image_id).image))

    def ground_truth(self, image_id: str) -> np.ndarray | None:
        sample = self._sample(image_id)
        if sample.label is None:
            return None
        return load_label(self.source.localize(sample.label), self.spec, self.label_size(image_id))

    def confidence(self, image_id: str) -> np.ndarray | None:
        """The teacher's max softmax probability at label resolution, as the confidence store holds it (the
        float16 values the labels were drawn from, at the temperature they were drawn with)."""
        if self.confidences is None:
            return None
        confidence, _ = self.confidences.maps(self.confidences.image_ids.index(image_id))
        return confidence.astype(np.float32)

    def pseudo_distribution(self) -> np.ndarray:
        """(C,) pseudo-labelled pixels per class: from the stats, else counted over the whole store."""
        if self.stats and isinstance(self.stats.get("per_class"), dict):
            per_class = self.stats["per_class"]
            if all(name in per_class for name in self.labels.class_names):
                return np.array([per_class[name]["final_count"] for name in self.labels.class_names], np.float64)
        counts = np.zeros(len(self.labels.class_names), np.int64)
        for _, mask in self.labels.iter_labels():
            counts += np.bincount(np.asarray(mask).ravel(), minlength=256)[: len(counts)]
        return counts.astype(np.float64)

    def _sample(self, image_id: str) -> Sample:
        self.labels.index_of(image_id)  # refuses unknown ids, listing some that exist
        return self.samples[image_id]


def open_round(source: ArtifactSource, round_name: str, params_path: str | os.PathLike = "params.yaml",
               prepared: str | os.PathLike = "data/prepared",
               outputs: str | os.PathLike = "outputs") -> RoundArtifacts:
    """Open round ``round_name``'s pseudo labels (and what goes with them) from ``source``."""
    params = load_params(source, params_path)
    self_training_round(params, round_name)
    paths = RoundPaths.of(Path(outputs), round_name)
    if not source.exists(paths.pseudo_labels):
        raise UserError(f"{paths.pseudo_labels}: not found at {source.description}; make it with "
                        f"`dvc repro pseudo_label@{round_name}` (or fetch it with `dvc pull`)")
    prepared_dir = source.local_dir(prepared, PREPARED_FILES)
    spec = load_spec(prepared_dir)
    samples = {s.id: s for s in read_split(prepared_dir, "unlabeled", spec)}
    labels = PseudoLabelStore.open(source.zarr_store(paths.pseudo_labels), expect_classes=spec.classes.names,
                                   expect_image_ids=list(samples))
    confidences, note = _open_matching_confidences(source, paths, labels, spec)
    distribution_file = prepared_dir / "class_distribution.json"
    if not distribution_file.is_file():
        raise UserError(f"{Path(prepared) / 'class_distribution.json'}: not found at {source.description}")
    labeled = np.asarray(json.loads(distribution_file.read_text())["shares"], np.float64)
    return RoundArtifacts(round_name, source, spec, samples, labels, confidences, note,
                          read_stats(source, outputs, round_name), labeled)


def _open_matching_confidences(source: ArtifactSource, paths: RoundPaths, labels: PseudoLabelStore,
                               spec: DatasetSpec) -> tuple[ConfidenceStore | None, str | None]:
    """The confidences the labels were drawn from, or None and why (confidence maps are optional)."""
    if not source.exists(paths.confidences):
        return None, f"{paths.confidences} is not available at {source.description}: no confidence maps"
    confidences = ConfidenceStore.open(source.zarr_store(paths.confidences), expect_classes=spec.classes.names)
    drawn_from = (labels.attrs[MADE_BY], float(labels.attrs["temperature"]))
    if (confidences.attrs[MADE_BY], confidences.temperature) != drawn_from:
        return None, (f"{paths.confidences} comes from another model or temperature than the pseudo labels "
                      "(rerun `dvc repro`): no confidence maps")
    missing = set(labels.image_ids) - set(confidences.image_ids)
    if missing:
        return None, f"{paths.confidences} lacks {len(missing)} of the labelled images: no confidence maps"
    return confidences, None
