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
from pipeline_lib.stores.sharded_stack import MADE_BY, SingleWriter, StackReader, StoreLike, StoreWriters, write_store

FORMAT_VERSION = 1
KIND = "confidence store"
ARRAY = "maps"
HISTOGRAM = "histogram"
FLOAT16_PATTERNS = 1 << 16
REQUIRED_ATTRS = ("format_version", "class_names", "image_ids", "label_sizes", "temperature", MADE_BY)
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
    num_classes = len(class_names)

    def create_histogram(group: zarr.Group) -> None:
        group.create_array(HISTOGRAM, shape=(num_classes, FLOAT16_PATTERNS), dtype="int64",
                           chunks=(num_classes, FLOAT16_PATTERNS), fill_value=0,
                           compressors=[ZstdCodec(level=3), Crc32cCodec()])

    def planes(owned: list[int]) -> Iterator[np.ndarray]:  # ``maps`` yields exactly the owned images' maps
        for confidence, prediction in maps:
            if confidence.dtype != np.float16 or prediction.dtype != np.uint8:
                raise ValueError(f"maps must be float16 confidences and uint8 classes, got {confidence.dtype}, "
                                 f"{prediction.dtype}")
            yield np.stack([np.ascontiguousarray(confidence).view(np.uint16), prediction])

    def write_histogram(tmp: Path) -> None:
        histogram = np.asarray(total_histogram(), np.int64)
        if histogram.shape != (num_classes, FLOAT16_PATTERNS):
            raise ValueError(f"histogram has shape {histogram.shape}, expected ({num_classes}, {FLOAT16_PATTERNS})")
        if writers.rank == 0:
            zarr.open_array(str(tmp), path=HISTOGRAM, mode="r+", zarr_format=3)[...] = histogram

    # No map chunk can equal the fill value (a confidence is at least 1/C, never 0), so zarr's check of every
    # chunk against it before writing (a fifth of the write's CPU time here) is skipped: write_empty_chunks.
    write_store(path, ConfidenceStore, image_ids, label_sizes, class_names, attrs, planes, lead_shape=(2,),
                dtype="uint16", fill_value=0, compressor=MAPS_COMPRESSOR, images_per_shard=images_per_shard,
                writers=writers, desc="confidences", create_more=create_histogram, write_empty_chunks=True,
                finish=write_histogram)


class ConfidenceStore(StackReader):
    """Read side of the confidence store. Open it with :meth:`open` (``sharded_stack.StackReader.open``)."""

    kind, array_name, producer = KIND, ARRAY, "confidence"
    format_version, required_attrs = FORMAT_VERSION, REQUIRED_ATTRS

    def __init__(self, group: zarr.Group, array: zarr.Array, where: str, store: StoreLike) -> None:
        super().__init__(group, array, where, store)
        self._group = group

    def check_array(self) -> None:
        shape = tuple(self._array.shape)
        if len(shape) != 4 or shape[:2] != (len(self), 2) or self._array.dtype != np.uint16:
            raise UserError(f"{self.where}: array '{ARRAY}' is {self._array.dtype} of shape {shape}, expected uint16 "
                            f"({len(self)}, 2, H, W)")
        if any(h > shape[2] or w > shape[3] for h, w in self.label_sizes):
            raise UserError(f"{self.where}: a label size exceeds the array's {shape[2]}x{shape[3]}")

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

