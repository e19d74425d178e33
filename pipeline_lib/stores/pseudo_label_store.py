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
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.errors import UserError
from pipeline_lib.stores.sharded_stack import (
    SingleWriter,
    StackReader,
    StoreLike,
    StoreWriters,
    atomic_store_dir,
    check_same_ids,
    create_stack,
    max_size,
    open_stack,
    owned_images,
    shards_of_writer,
    write_stack,
)

FORMAT_VERSION = 1
KIND = "pseudo-label store"
ARRAY = "labels"
PROVENANCE_ATTRS = ("method", "labeling_ratio", "temperature", "seed", "source_checkpoint_sha256")
REQUIRED_ATTRS = ("format_version", "class_names", "image_ids", "label_sizes", *PROVENANCE_ATTRS)


def write_label_store(path: str | os.PathLike, image_ids: Sequence[str], label_sizes: Sequence[tuple[int, int]],
                      class_names: Sequence[str], labels: Iterable[np.ndarray], attrs: dict[str, Any],
                      images_per_shard: int = 16, writers: StoreWriters = SingleWriter()) -> None:
    """Write the masks yielded by ``labels`` (in image order, ``(H_i, W_i)`` uint8 each), atomically.

    ``labels`` is consumed lazily, one shard of images at a time. ``attrs`` must give the provenance keys
    method, labeling_ratio, temperature, seed and source_checkpoint_sha256. With several ``writers``
    (processes, each calling this with the same arguments), ``labels`` yields only the masks of the images
    this writer owns (``sharded_stack.owned_images``); the store is the same whatever the number of writers.
    """
    count = len(image_ids)
    if len(label_sizes) != count:
        raise ValueError(f"{count} image ids but {len(label_sizes)} label sizes")
    if len(set(image_ids)) != count:
        raise ValueError("image ids must be unique")
    missing = [k for k in PROVENANCE_ATTRS if k not in attrs]
    if missing:
        raise ValueError(f"attrs lack {', '.join(missing)}")
    sizes = [(int(h), int(w)) for h, w in label_sizes]
    group_attrs = {**attrs, "format_version": FORMAT_VERSION, "class_names": list(class_names),
                   "image_ids": list(image_ids), "label_sizes": [list(s) for s in sizes]}
    num_classes = len(class_names)

    def checked(items: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for index, mask in zip(owned_images(count, images_per_shard, writers), items):
            mask = np.asarray(mask)
            if mask.dtype != np.uint8:
                raise ValueError(f"pseudo label of {image_ids[index]!r} is {mask.dtype}, expected uint8")
            if int(mask.max(initial=0)) >= num_classes and bool(((mask >= num_classes) & (mask != IGNORE_INDEX)).any()):
                raise ValueError(f"pseudo label of {image_ids[index]!r} holds values beyond {num_classes} classes")
            yield mask

    def create(tmp: Path) -> None:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes=group_attrs)
        create_stack(group, ARRAY, count, (), max_size(sizes), "uint8", IGNORE_INDEX, images_per_shard,
                     ZstdCodec(level=3))

    with atomic_store_dir(path, writers, create) as tmp:
        array = zarr.open_array(str(tmp), path=ARRAY, mode="r+", zarr_format=3)
        per_shard = array.shards[0] if array.shards else 1
        write_stack(array, checked(labels), sizes, image_ids, desc="pseudo labels",
                    shards=shards_of_writer(count, per_shard, writers.rank, writers.world_size))


class PseudoLabelStore(StackReader):
    """Read side of the pseudo-label store. Open it with :meth:`open`."""

    kind, array_name, producer = KIND, ARRAY, "pseudo_label"

    def __init__(self, group: zarr.Group, array: zarr.Array, where: str, store: StoreLike) -> None:
        super().__init__(group, array, where, store)
        self._index = {image_id: i for i, image_id in enumerate(self.image_ids)}

    @classmethod
    def open(cls, store: StoreLike, expect_classes: Sequence[str] | None = None,
             expect_image_ids: Sequence[str] | None = None) -> "PseudoLabelStore":
        """Open a store (a path or any zarr store), refusing with UserError when it does not fit."""
        group, array, where = open_stack(store, KIND, ARRAY, REQUIRED_ATTRS, FORMAT_VERSION, "pseudo-label")
        opened = cls(group, array, where, store)
        shape = tuple(opened._array.shape)
        if len(shape) != 3 or shape[0] != len(opened.image_ids) or opened._array.dtype != np.uint8:
            raise UserError(f"{where}: array '{ARRAY}' is {opened._array.dtype} of shape {shape}, expected uint8 "
                            f"({len(opened.image_ids)}, H, W)")
        if any(h > shape[1] or w > shape[2] for h, w in opened.label_sizes):
            raise UserError(f"{where}: a label size exceeds the array's {shape[1]}x{shape[2]}")
        if expect_classes is not None and opened.class_names != list(expect_classes):
            raise UserError(f"{where}: pseudo labels are for classes {opened.class_names[:5]}… "
                            f"({len(opened.class_names)}), the dataset has {list(expect_classes)[:5]}… "
                            f"({len(expect_classes)})")
        if expect_image_ids is not None:
            check_same_ids(opened.image_ids, expect_image_ids, where, "its image list")
        opened.check_complete()
        return opened

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
