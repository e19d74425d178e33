"""The images a round trains on: labels from PNGs or from a pseudo-label store, augmented reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline_lib.data.image_files import load_image
from pipeline_lib.data.prepared import DatasetSpec, Sample, load_label
from pipeline_lib.augmentation_recipe import AugmentationSettings
from pipeline_lib.train.augmentation import augment

# Decoding is a third of an image's loading time (the default's PNGs: 1.1 of 3.0 ms, the rest augmentation), and a
# round draws each image hundreds of times: every loading process keeps the decoded arrays up to this size
# (CamVid's 367 training images: 254 MB; a Cityscapes frame, 8 MB, fills it after 61).
DECODED_CACHE_BYTES = 512 * 2**20


class TrainingImages(Dataset):
    """Images with labels from PNGs, or from a pseudo-label store; augmented on request.

    Items are addressed by ``(index, augmentation_seed)`` so augmentation is reproducible; an item is the
    augmented (H, W, 3) uint8 image and (H, W) uint8 label.
    """

    def __init__(self, samples: list[Sample], spec: DatasetSpec, augmentation: AugmentationSettings, crop_size: int,
                 pseudo_label_store: Path | None = None) -> None:
        self.samples = samples
        self.spec = spec
        self.augmentation = augmentation
        self.crop_size = crop_size
        self.pseudo_label_store = pseudo_label_store
        self._store = None  # opened lazily, once per DataLoader worker
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._decoded_bytes = 0

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

    def decoded(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and label of sample ``index``, decoded once and kept (read-only) while the cache has room."""
        cached = self._decoded.get(index)
        if cached is not None:
            return cached
        image = load_image(self.samples[index].image)
        label = self.label(index, image.shape[:2])
        if self._decoded_bytes + image.nbytes + label.nbytes <= DECODED_CACHE_BYTES:
            image.setflags(write=False)
            label.setflags(write=False)
            self._decoded[index] = image, label
            self._decoded_bytes += image.nbytes + label.nbytes
        return image, label

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, aug_seed = key
        image, label = self.decoded(index)
        image, label = augment(image, label, np.random.default_rng(aug_seed), self.augmentation, self.crop_size)
        # uint8 both: a third of float32's bytes between processes; the training loop normalises the batch
        # (models/normalization.normalize_batch) and widens the labels on the device.
        return _tensor(image), _tensor(label)


def _tensor(array: np.ndarray) -> torch.Tensor:
    # An untransformed crop can be a view of a cached, read-only array: torch needs its own copy then.
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def load_at_idle_priority(worker_id: int) -> None:
    """DataLoader ``worker_init_fn`` for training on the CPU: the loading processes run only on what the compute
    threads leave idle. At normal priority a worker takes a core from one of torch's threads, and the other
    waits for it at every parallel region's end: measured on a 2-core EPYC (bench/bench_training_loop.py, fp32),
    one normal worker gave the loop 0.73-0.81 of the pure step's rate and loading in the main process 0.85; two
    idle-priority workers (their prefetched batches bridge the busy stretches) with the decoded cache and uint8
    batches 0.84 in the median of three pairs (0.88-0.92 in single runs)."""
    import os

    if hasattr(os, "sched_setscheduler"):  # Linux
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)


class MixedSources(Dataset):
    """Items ``(source, index, seed)`` of several TrainingImages: one batch mixes labelled and pseudo-labelled."""

    def __init__(self, sources: list[TrainingImages]) -> None:
        self.sources = sources

    def __getitem__(self, key: tuple[int, int, int]):
        source, index, seed = key
        return self.sources[source][(index, seed)]
