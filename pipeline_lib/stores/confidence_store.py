"""The confidence store: a teacher's per-pixel confidence and predicted class at label resolution on every
unlabelled image, and the histogram of them all, as one zarr v3 group.

Layout (a directory)::

    <store>/zarr.json          attributes: classes, images, sizes, the temperature and whose logits they are
    <store>/maps/...           (N, 2, H_max, W_max) uint16, one chunk per image, shards of images:
                               plane 0 the float16 confidence's bit pattern (the histogram's bins), plane 1
                               the predicted class; zero padding beyond each image's size
    <store>/histogram/...      (C, 65536) int64: pixels per (predicted class, float16 confidence bit pattern)

It is what every pseudo-label rule reads: the histogram gives the thresholds of any method and α, the maps
the pixels to keep, so the labelling pass computes no softmax. A missing shard or histogram file is refused,
not read as zeros, and the histogram must count exactly the pixels of the images it describes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

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
    shards_of_writer,
    write_stack,
)

FORMAT_VERSION = 1
KIND = "confidence store"
ARRAY = "maps"
HISTOGRAM = "histogram"
FLOAT16_PATTERNS = 1 << 16
REQUIRED_ATTRS = ("format_version", "class_names", "image_ids", "label_sizes", "temperature", "checkpoint_sha256")
# zstd level 1: measured on a 1024x2048 map pair here, 1.67 bytes per pixel in 15 ms (level 3: 1.62 in 64 ms;
# blosc's byte shuffle made it larger and slower).
MAPS_COMPRESSOR = ZstdCodec(level=1)

Maps = tuple[np.ndarray, np.ndarray]  # (H, W) float16 confidence, (H, W) uint8 predicted class


def write_confidence_store(path: str | os.PathLike, image_ids: Sequence[str], label_sizes: Sequence[tuple[int, int]],
                           class_names: Sequence[str], maps: Iterable[Maps], total_histogram: Callable[[], np.ndarray],
                           attrs: dict[str, Any], images_per_shard: int = 16,
                           writers: StoreWriters = SingleWriter()) -> None:
    """Write the store atomically: ``maps`` yields the (confidence, prediction) of the images this writer owns
    (``sharded_stack.owned_images``; every image for a single writer) in order; ``total_histogram()``, called on every
    writer once its maps are written, returns the (C, 65536) int64 counts over all images (under several
    writers a collective sum), which rank 0 stores. ``attrs`` must give ``temperature`` and
    ``checkpoint_sha256``."""
    count = len(image_ids)
    if len(label_sizes) != count or len(set(image_ids)) != count:
        raise ValueError(f"{count} image ids (unique?) for {len(label_sizes)} label sizes")
    group_attrs = {**attrs, "format_version": FORMAT_VERSION, "class_names": list(class_names),
                   "image_ids": list(image_ids), "label_sizes": [[int(h), int(w)] for h, w in label_sizes]}
    missing = [k for k in REQUIRED_ATTRS if k not in group_attrs]
    if missing:
        raise ValueError(f"attrs lack {', '.join(missing)}")
    sizes = [(int(h), int(w)) for h, w in label_sizes]
    num_classes = len(class_names)

    def create(tmp: Path) -> None:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes=group_attrs)
        create_stack(group, ARRAY, count, (2,), max_size(sizes), "uint16", 0, images_per_shard, MAPS_COMPRESSOR)
        group.create_array(HISTOGRAM, shape=(num_classes, FLOAT16_PATTERNS), dtype="int64",
                           chunks=(num_classes, FLOAT16_PATTERNS), fill_value=0,
                           compressors=[ZstdCodec(level=3), Crc32cCodec()])

    def planes(items: Iterable[Maps]) -> Iterator[np.ndarray]:
        for confidence, prediction in items:
            if confidence.dtype != np.float16 or prediction.dtype != np.uint8:
                raise ValueError(f"maps must be float16 confidences and uint8 classes, got {confidence.dtype}, "
                                 f"{prediction.dtype}")
            yield np.stack([np.ascontiguousarray(confidence).view(np.uint16), prediction])

    with atomic_store_dir(path, writers, create) as tmp:
        # No map chunk can equal the fill value (a confidence is at least 1/C, never 0), so zarr's check of
        # every chunk against it before writing (a fifth of the write's CPU time here) is skipped.
        array = zarr.open_array(str(tmp), path=ARRAY, mode="r+", zarr_format=3).with_config(
            {"write_empty_chunks": True})
        per_shard = array.shards[0] if array.shards else 1
        write_stack(array, planes(maps), sizes, image_ids, desc="confidences",
                    shards=shards_of_writer(count, per_shard, writers.rank, writers.world_size))
        histogram = np.asarray(total_histogram(), np.int64)
        if histogram.shape != (num_classes, FLOAT16_PATTERNS):
            raise ValueError(f"histogram has shape {histogram.shape}, expected ({num_classes}, {FLOAT16_PATTERNS})")
        if writers.rank == 0:
            zarr.open_array(str(tmp), path=HISTOGRAM, mode="r+", zarr_format=3)[...] = histogram


class ConfidenceStore(StackReader):
    """Read side of the confidence store. Open it with :meth:`open`."""

    kind, array_name, producer = KIND, ARRAY, "confidence"

    def __init__(self, group: zarr.Group, array: zarr.Array, where: str, store: StoreLike) -> None:
        super().__init__(group, array, where, store)
        self._group = group

    @classmethod
    def open(cls, store: StoreLike, expect_classes: Sequence[str] | None = None,
             expect_image_ids: Sequence[str] | None = None,
             expect_checkpoint: str | None = None) -> "ConfidenceStore":
        """Open a store (a path or any zarr store), refusing with UserError when it is not one, lacks a piece, or
        is for other classes, images or another teacher than expected."""
        group, array, where = open_stack(store, KIND, ARRAY, REQUIRED_ATTRS, FORMAT_VERSION, "confidence")
        opened = cls(group, array, where, store)
        shape = tuple(array.shape)
        if len(shape) != 4 or shape[:2] != (len(opened), 2) or array.dtype != np.uint16:
            raise UserError(f"{where}: array '{ARRAY}' is {array.dtype} of shape {shape}, expected uint16 "
                            f"({len(opened)}, 2, H, W)")
        if any(h > shape[2] or w > shape[3] for h, w in opened.label_sizes):
            raise UserError(f"{where}: a label size exceeds the array's {shape[2]}x{shape[3]}")
        if expect_classes is not None and opened.class_names != list(expect_classes):
            raise UserError(f"{where}: confidences are for classes {opened.class_names[:5]}… "
                            f"({len(opened.class_names)}), the dataset has {list(expect_classes)[:5]}… "
                            f"({len(expect_classes)})")
        if expect_image_ids is not None:
            check_same_ids(opened.image_ids, expect_image_ids, where, "its image list")
        if expect_checkpoint is not None and opened.attrs["checkpoint_sha256"] != expect_checkpoint:
            raise UserError(f"{where}: made from another model's logits (checkpoint sha256 "
                            f"{str(opened.attrs['checkpoint_sha256'])[:12]}…, this round's teacher "
                            f"{expect_checkpoint[:12]}…); {opened.remedy()}")
        opened.check_complete()
        return opened

    @property
    def temperature(self) -> float:
        return float(self.attrs["temperature"])

    def histogram_counts(self) -> np.ndarray:
        """The (C, 65536) int64 histogram, refused when its file is missing or damaged or when it does not count
        exactly the pixels of the store's images."""
        where = f"{self.where}/{HISTOGRAM}"
        try:
            array = self._group[HISTOGRAM]
        except Exception:  # absent, or metadata that does not parse
            array = None
        if not isinstance(array, zarr.Array):
            raise UserError(f"{where}: histogram missing from the {self.kind} (or its metadata unreadable); "
                            f"{self.remedy()}")
        if tuple(array.shape) != (len(self.class_names), FLOAT16_PATTERNS) or array.dtype != np.int64:
            raise UserError(f"{where}: histogram is {array.dtype} of shape {tuple(array.shape)}, expected int64 "
                            f"({len(self.class_names)}, {FLOAT16_PATTERNS}); {self.remedy()}")
        if self._directory is not None:
            key = array.metadata.encode_chunk_key((0, 0))
            if not (self._directory / HISTOGRAM / key).is_file():
                raise UserError(f"{where}/{key}: histogram file missing (zarr would read zeros); {self.remedy()}")
        try:
            counts = np.asarray(array[...])
        except Exception as exc:  # zarr and its codecs raise many types for damaged bytes
            raise UserError(f"{where}: damaged histogram ({type(exc).__name__}); {self.remedy()}") from None
        pixels = sum(h * w for h, w in self.label_sizes)
        if (counts < 0).any() or int(counts.sum()) != pixels:
            raise UserError(f"{where}: histogram counts {int(counts.sum())} pixels, the images have {pixels}; "
                            f"{self.remedy()}")
        return counts

    def maps(self, index: int) -> Maps:
        """Image ``index``'s (confidence float16, predicted class uint8), each ``(H_i, W_i)``."""
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range 0..{len(self) - 1}")
        h, w = self.label_sizes[index]
        return _split(self.read(index, slice(None), slice(0, h), slice(0, w)))

    def iter_maps(self, images: Sequence[int] | None = None) -> Iterator[tuple[int, Maps]]:
        """``(index, maps)`` for every image in order, or for ``images`` only, reading one image at a time."""
        for index, padded in self.iter_padded(images):
            h, w = self.label_sizes[index]
            yield index, _split(padded[:, :h, :w])


def _split(planes: np.ndarray) -> Maps:
    return np.ascontiguousarray(planes[0]).view(np.float16), planes[1].astype(np.uint8)

