"""The pseudo-label store: one hard label mask per unlabelled image, as one zarr v3 group.

Layout (a directory)::

    <store>/zarr.json      attributes: classes, images, sizes and how the labels were made
    <store>/labels/...     (N, H_max, W_max) uint8 train ids, 255 = ignore (and padding),
                           one chunk per image, shards of images

Image i's mask is ``labels[i, :H_i, :W_i]`` with ``(H_i, W_i) = label_sizes[i]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.errors import UserError
from pipeline_lib.stores.sharded_stack import MADE_BY, SingleWriter, StackReader, StoreLike, StoreWriters, write_store

# Version 2: the teacher's checkpoint under the attribute every store names it by (version 1 said
# source_checkpoint_sha256); a version-1 store is refused with the stage to rerun.
FORMAT_VERSION = 2
KIND = "pseudo-label store"
ARRAY = "labels"
PROVENANCE_ATTRS = ("method", "labeling_ratio", "temperature", "seed", MADE_BY)
REQUIRED_ATTRS = ("format_version", "class_names", "image_ids", "label_sizes", *PROVENANCE_ATTRS)


def write_label_store(path: str | os.PathLike, image_ids: Sequence[str], label_sizes: Sequence[tuple[int, int]],
                      class_names: Sequence[str], labels: Iterable[np.ndarray], attrs: dict[str, Any],
                      images_per_shard: int = 16, writers: StoreWriters = SingleWriter()) -> None:
    """Write the masks yielded by ``labels`` (in image order, ``(H_i, W_i)`` uint8 each), atomically.

    ``labels`` is consumed lazily, one shard of images at a time. ``attrs`` must give the provenance keys
    method, labeling_ratio, temperature, seed and checkpoint_sha256 (the teacher's). With several ``writers``
    (processes, each calling this with the same arguments), ``labels`` yields only the masks of the images
    this writer owns (``sharded_stack.owned_images``); the store is the same whatever the number of writers.
    """
    num_classes = len(class_names)

    def checked(owned: list[int]) -> Iterator[np.ndarray]:
        for index, mask in zip(owned, labels):
            mask = np.asarray(mask)
            if mask.dtype != np.uint8:
                raise ValueError(f"pseudo label of {image_ids[index]!r} is {mask.dtype}, expected uint8")
            if int(mask.max(initial=0)) >= num_classes and bool(((mask >= num_classes) & (mask != IGNORE_INDEX)).any()):
                raise ValueError(f"pseudo label of {image_ids[index]!r} holds values beyond {num_classes} classes")
            yield mask

    write_store(path, PseudoLabelStore, image_ids, label_sizes, class_names, attrs, checked, lead_shape=(),
                dtype="uint8", fill_value=IGNORE_INDEX, compressor=ZstdCodec(level=3),
                images_per_shard=images_per_shard, writers=writers, desc="pseudo labels")


class PseudoLabelStore(StackReader):
    """Read side of the pseudo-label store. Open it with :meth:`open` (``sharded_stack.StackReader.open``)."""

    kind, array_name, producer = KIND, ARRAY, "pseudo_label"
    format_version, required_attrs = FORMAT_VERSION, REQUIRED_ATTRS

    def __init__(self, group: zarr.Group, array: zarr.Array, where: str, store: StoreLike) -> None:
        super().__init__(group, array, where, store)
        self._index = {image_id: i for i, image_id in enumerate(self.image_ids)}

    def check_array(self) -> None:
        shape = tuple(self._array.shape)
        if len(shape) != 3 or shape[0] != len(self.image_ids) or self._array.dtype != np.uint8:
            raise UserError(f"{self.where}: array '{ARRAY}' is {self._array.dtype} of shape {shape}, expected uint8 "
                            f"({len(self.image_ids)}, H, W)")
        if any(h > shape[1] or w > shape[2] for h, w in self.label_sizes):
            raise UserError(f"{self.where}: a label size exceeds the array's {shape[1]}x{shape[2]}")

    def index_of(self, image_id: str) -> int:
        try:
            return self._index[image_id]
        except KeyError:
            some = ", ".join(self.image_ids[:5])
            raise UserError(f"{self.where}: no pseudo label for image {image_id!r} "
                            f"(the store has {len(self)} images, e.g. {some})") from None

    def label(self, index: int) -> np.ndarray:
        """Image ``index``'s mask, ``(H_i, W_i)`` uint8, 255 = ignore."""
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range 0..{len(self) - 1}")
        h, w = self.label_sizes[index]
        return self.read(index, slice(0, h), slice(0, w))

    def iter_labels(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, mask)`` for every image in order, reading one shard at a time."""
        for first, block in self.iter_blocks():
            for offset, padded in enumerate(block):
                h, w = self.label_sizes[first + offset]
                yield first + offset, padded[:h, :w]
