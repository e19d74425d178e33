"""The soft-prediction store: a model's logits on every image of a split, as one zarr v3 group.

Layout (a directory)::

    <store>/zarr.json          group attributes: everything needed to use the logits correctly
    <store>/logits/...         (N, C, h_max, w_max) float16, one chunk per image, shards of images

Image i's logits are ``logits[i, :, :h_i, :w_i]`` with ``(h_i, w_i) = logit_sizes[i]``; the rest is zero
padding. ``label_sizes[i]`` is the resolution the logits are upsampled to before use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline_lib.errors import UserError
from pipeline_lib.stores.sharded_stack import (
    SingleWriter,
    StackReader,
    StoreLike,
    StoreWriters,
    atomic_store_dir,
    check_same_ids,
    check_sizes,
    create_stack,
    max_size,
    open_stack,
    shard_images,
    shards_of_writer,
    write_stack,
)

FORMAT_VERSION = 1
KIND = "soft-prediction store"
ARRAY = "logits"
REQUIRED_ATTRS = ("format_version", "class_names", "image_ids", "label_sizes", "logit_sizes", "output_stride",
                  "checkpoint_sha256", "model_arch", "split")
# Byte-shuffled zstd packs float16 logits ~15 % tighter than plain zstd at the same speed (bench on this machine).
LOGITS_COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=2)


def write_logits_store(path: str | os.PathLike, image_ids: Sequence[str], label_sizes: Sequence[tuple[int, int]],
                       logit_sizes: Sequence[tuple[int, int]], class_names: Sequence[str],
                       predict: Callable[[int], np.ndarray], attrs: dict[str, Any],
                       images_per_shard: int = 16, writers: StoreWriters = SingleWriter()) -> None:
    """Write ``predict(i)`` (image i's ``(C, h_i, w_i)`` logits) for every image, atomically.

    ``attrs`` must give ``output_stride``, ``checkpoint_sha256``, ``model_arch`` and ``split`` (any other keys
    are stored too). The store appears at ``path`` only once every image is written. With several
    ``writers`` (processes, each calling this with the same arguments), each predicts and writes only the
    images of its own shards; the store is the same whatever the number of writers.
    """
    count = len(image_ids)
    if not (len(label_sizes) == len(logit_sizes) == count):
        raise ValueError(f"{count} image ids, {len(label_sizes)} label sizes, {len(logit_sizes)} logit sizes")
    if len(set(image_ids)) != count:
        raise ValueError("image ids must be unique")
    group_attrs = {
        **attrs,
        "format_version": FORMAT_VERSION,
        "class_names": list(class_names),
        "image_ids": list(image_ids),
        "label_sizes": [[int(h), int(w)] for h, w in label_sizes],
        "logit_sizes": [[int(h), int(w)] for h, w in logit_sizes],
    }
    missing = [k for k in REQUIRED_ATTRS if k not in group_attrs]
    if missing:
        raise ValueError(f"attrs lack {', '.join(missing)}")
    sizes = [(int(h), int(w)) for h, w in logit_sizes]

    def create(tmp: Path) -> None:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes=group_attrs)
        create_stack(group, ARRAY, count, (len(class_names),), max_size(sizes), "float16", 0,
                     images_per_shard, LOGITS_COMPRESSOR)

    with atomic_store_dir(path, writers, create) as tmp:
        array = zarr.open_array(str(tmp), path=ARRAY, mode="r+", zarr_format=3)
        per_shard = array.shards[0] if array.shards else 1
        shards = shards_of_writer(count, per_shard, writers.rank, writers.world_size)
        write_stack(array, (_checked_logits(predict, i, image_ids[i]) for i in shard_images(shards, count, per_shard)),
                    sizes, image_ids, desc="logits", shards=shards)


def _checked_logits(predict: Callable[[int], np.ndarray], index: int, image_id: str) -> np.ndarray:
    logits = np.asarray(predict(index))
    with np.errstate(over="ignore"):  # overflow is reported below, naming the image
        half = logits.astype(np.float16, copy=False)
    # A NaN or an overflow to inf would silently poison every threshold downstream.
    if not np.isfinite(half).all():
        raise ValueError(f"logits of image {image_id!r} are not finite in float16 "
                         f"(max |value| {float(np.nanmax(np.abs(logits))):.3g})")
    return half


class LogitsStore(StackReader):
    """Read side of the soft-prediction store. Open it with :meth:`open`."""

    kind, array_name, producer = KIND, ARRAY, "infer"

    def __init__(self, group: zarr.Group, array: zarr.Array, where: str, store: StoreLike) -> None:
        super().__init__(group, array, where, store)
        self.logit_sizes = check_sizes(self.attrs["logit_sizes"], len(self.image_ids), "logit_sizes", where)

    @classmethod
    def open(cls, store: StoreLike, expect_classes: Sequence[str] | None = None,
             expect_checkpoint: str | None = None,
             expect_image_ids: Sequence[str] | None = None) -> "LogitsStore":
        """Open a store (a path or any zarr store, e.g. an ``FsspecStore``), checking it fits its use.

        Raises UserError naming the store when it is not one, has another format version, other classes,
        other images than ``expect_image_ids``, or was made by another checkpoint than ``expect_checkpoint``.
        """
        group, array, where = open_stack(store, KIND, ARRAY, REQUIRED_ATTRS, FORMAT_VERSION, "infer")
        store_obj = cls(group, array, where, store)
        store_obj._check_array()
        store_obj.check_complete()
        if expect_classes is not None:
            _check_classes(store_obj.class_names, list(expect_classes), where)
        if expect_checkpoint is not None and store_obj.attrs["checkpoint_sha256"] != expect_checkpoint:
            raise UserError(f"{where}: store was made by another model (checkpoint sha256 "
                            f"{str(store_obj.attrs['checkpoint_sha256'])[:12]}…; this round's teacher has sha256 "
                            f"{expect_checkpoint[:12]}…); remake it with "
                            f"`dvc repro infer@{Path(where).parent.name or '<round>'}`")
        if expect_image_ids is not None:
            check_same_ids(store_obj.image_ids, expect_image_ids, where, "its image list")
        return store_obj

    def _check_array(self) -> None:
        shape = tuple(self._array.shape)
        count, classes = len(self.image_ids), len(self.class_names)
        if len(shape) != 4 or shape[0] != count or shape[1] != classes:
            raise UserError(f"{self.where}: array '{ARRAY}' has shape {shape}, but the attributes describe "
                            f"{count} images of {classes} classes")
        if self._array.dtype != np.float16:
            raise UserError(f"{self.where}: array '{ARRAY}' is {self._array.dtype}, expected float16")
        too_big = [i for i, (h, w) in enumerate(self.logit_sizes) if h > shape[2] or w > shape[3]]
        if too_big:
            raise UserError(f"{self.where}: logit size of image {self.image_ids[too_big[0]]!r} exceeds the "
                            f"array's {shape[2]}x{shape[3]}")

    def crop(self, index: int, padded: np.ndarray) -> np.ndarray:
        """Image ``index``'s logits cut out of its padded ``(C, h_max, w_max)`` slot."""
        h, w = self.logit_sizes[index]
        return padded[:, :h, :w]

    def logits(self, index: int) -> np.ndarray:
        """Image ``index``'s logits, ``(C, h_i, w_i)`` float16, padding cropped off."""
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range 0..{len(self) - 1}")
        h, w = self.logit_sizes[index]
        return self.read(index, slice(None), slice(0, h), slice(0, w))

    def iter_shards(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_index, block)`` per shard, block ``(k, C, h_max, w_max)`` padded; crop with :meth:`crop`."""
        return self.iter_blocks()

    def iter_logits(self, images: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, logits)`` for every image in order, or for ``images`` only, reading one image at a time."""
        for index, padded in self.iter_padded(images):
            yield index, self.crop(index, padded)


def _check_classes(found: list[str], expected: list[str], where: str) -> None:
    if len(found) != len(expected):
        raise UserError(f"{where}: store has {len(found)} classes, expected {len(expected)} "
                        f"({', '.join(expected[:5])}{', …' if len(expected) > 5 else ''})")
    if found != expected:
        differ = [(f, e) for f, e in zip(found, expected) if f != e]
        raise UserError(f"{where}: store's class names differ from the dataset's "
                        f"(e.g. {differ[0][0]!r} where {differ[0][1]!r} is expected)")
