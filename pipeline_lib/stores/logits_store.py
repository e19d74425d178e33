"""The logits store: a model's logits on every image of a split, as one zarr v3 group.

Layout (a directory)::

    <store>/zarr.json          group attributes: everything needed to use the logits correctly
    <store>/logits/...         (N, C, h_max, w_max) float16, one chunk per image, shards of images

Image i's logits are ``logits[i, :, :h_i, :w_i]`` with ``(h_i, w_i) = logit_sizes[i]``; the rest is zero
padding. ``label_sizes[i]`` is the resolution the logits are upsampled to before use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from pipeline_lib.errors import UserError
from pipeline_lib.stores.sharded_stack import (SingleWriter, StackReader, StoreLike, StoreWriters, check_sizes,
                                              write_store)

FORMAT_VERSION = 1
KIND = "logits store"
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
    def items(owned: list[int]):
        return (_checked_logits(predict, index, image_ids[index]) for index in owned)

    write_store(path, LogitsStore, image_ids, label_sizes, class_names, attrs, items,
                more_attrs={"logit_sizes": [[int(h), int(w)] for h, w in logit_sizes]},
                lead_shape=(len(class_names),), dtype="float16", fill_value=0, compressor=LOGITS_COMPRESSOR,
                images_per_shard=images_per_shard, writers=writers, desc="logits", item_sizes=logit_sizes)


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
    """Read side of the logits store. Open it with :meth:`open` (``sharded_stack.StackReader.open``)."""

    kind, array_name, producer = KIND, ARRAY, "infer"
    format_version, required_attrs = FORMAT_VERSION, REQUIRED_ATTRS

    def __init__(self, group: zarr.Group, array: zarr.Array, where: str, store: StoreLike) -> None:
        super().__init__(group, array, where, store)
        self.logit_sizes = check_sizes(self.attrs["logit_sizes"], len(self.image_ids), "logit_sizes", where)

    def check_array(self) -> None:
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
