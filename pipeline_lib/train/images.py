"""The images a round trains on: labels from PNGs or from a pseudo-label store, augmented reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline_lib.data.prepared import DatasetSpec, Sample, load_image, load_label
from pipeline_lib.models.normalization import normalize_image
from pipeline_lib.settings import AugmentationSettings
from pipeline_lib.train.augmentation import augment


class TrainingImages(Dataset):
    """Images with labels from PNGs, or from a pseudo-label store; augmented on request.

    Items are addressed by ``(index, augmentation_seed)`` so augmentation is reproducible.
    """

    def __init__(self, samples: list[Sample], spec: DatasetSpec, augmentation: AugmentationSettings, crop_size: int,
                 pseudo_label_store: Path | None = None) -> None:
        self.samples = samples
        self.spec = spec
        self.augmentation = augmentation
        self.crop_size = crop_size
        self.pseudo_label_store = pseudo_label_store
        self._store = None  # opened lazily, once per DataLoader worker

    def __len__(self) -> int:
        return len(self.samples)

    def label(self, index: int, image_shape: tuple[int, int]) -> np.ndarray:
        sample = self.samples[index]
        if self.pseudo_label_store is None:
            return load_label(sample.label, self.spec, image_shape)
        if self._store is None:
            from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore

            self._store = PseudoLabelStore.open(self.pseudo_label_store)
        return self._store.label(self._store.index_of(sample.id))

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, aug_seed = key
        image = load_image(self.samples[index].image)
        label = self.label(index, image.shape[:2])
        image, label = augment(image, label, np.random.default_rng(aug_seed), self.augmentation, self.crop_size)
        return normalize_image(image), torch.from_numpy(label.astype(np.int64))


class MixedSources(Dataset):
    """Items ``(source, index, seed)`` of several TrainingImages: one batch mixes labelled and pseudo-labelled."""

    def __init__(self, sources: list[TrainingImages]) -> None:
        self.sources = sources

    def __getitem__(self, key: tuple[int, int, int]):
        source, index, seed = key
        return self.sources[source][(index, seed)]
