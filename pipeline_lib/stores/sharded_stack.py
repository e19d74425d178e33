"""The store contract: per-image arrays of varying (h, w) stacked in one sharded zarr v3 array, written by one
writer and opened by one checked reader; the three stage stores (logits, confidences, pseudo labels) keep only
their shapes.

Every store is a zarr v3 group whose attributes name its classes, its images and their label sizes, its format
version and the teacher checkpoint it was made from (``checkpoint_sha256``), over an ``(N, *lead, H_max, W_max)``
array with one chunk per image, padded with a fill value beyond each image's own size, and with images grouped
``images_per_shard`` to a shard file. Grouping matters: DVC hashes every file, so a store must be a
few hundred files, not one per chunk. A shard is rewritten whole on every write into it, so writers
buffer one shard's images and write its region at once.

Several processes may write one store together (multi-GPU inference): each owns whole shards
(:func:`shards_of_writer`), so no shard file ever has two writers, and :func:`atomic_store_dir` keeps the
store atomic across them (rank 0 creates the metadata and moves the finished store into place).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from pipeline_lib.atomic import atomic_path
from pipeline_lib.errors import UserError
from pipeline_lib.progress import track

StoreLike = str | os.PathLike | zarr.abc.store.Store
# The attribute every store names the checkpoint it was made from by: the teacher's sha256.
MADE_BY = "checkpoint_sha256"


def describe_store(store: StoreLike) -> str:
    """A short name for messages: the path, or the store's own description."""
    return str(store)


def open_group_readonly(store: StoreLike, kind: str) -> zarr.Group:
    """Open a zarr v3 group read-only, or raise UserError naming ``store`` and saying what it is not."""
    if isinstance(store, (str, os.PathLike)):
        path = Path(store)
        if not path.exists():
            raise UserError(f"{path}: {kind} not found")
        if not path.is_dir():
            raise UserError(f"{path}: not a {kind} (expected a zarr directory, found a file)")
        store = str(path)
    try:
        return zarr.open_group(store, mode="r", zarr_format=3)
    except Exception as exc:  # zarr raises several unrelated types for "nothing usable here"
        raise UserError(f"{describe_store(store)}: not a {kind} (no readable zarr v3 group: "
                        f"{type(exc).__name__})") from None


def require_attrs(attrs: dict[str, Any], keys: Sequence[str], where: str, kind: str) -> None:
    missing = [k for k in keys if k not in attrs]
    if missing:
        raise UserError(f"{where}: not a {kind} (attributes missing: {', '.join(missing)})")


def open_stack(store: StoreLike, kind: str, array_name: str, required_attrs: Sequence[str],
               format_version: int, producer: str) -> tuple[zarr.Group, zarr.Array, str]:
    """Open a stage store read-only: its group, its stacked array and a name for messages.

    Raises UserError naming the store when it is not a ``kind`` (no group, attributes or array) or has
    another format version than ``format_version`` (then ``producer``, the stage that writes it, must rerun).
    """
    where = describe_store(store)
    group = open_group_readonly(store, kind)
    attrs = dict(group.attrs)
    # The version first: a store of another version may name its attributes otherwise.
    if "format_version" in attrs and attrs["format_version"] != format_version:
        missing = ", ".join(k for k in required_attrs if k not in attrs)
        raise UserError(f"{where}: not a {kind} this code reads (format version {attrs['format_version']!r}, this "
                        f"code reads version {format_version}{'; attributes missing: ' + missing if missing else ''}); "
                        f"rerun the {producer} stage")
    require_attrs(attrs, required_attrs, where, kind)
    if array_name not in group or not isinstance(group[array_name], zarr.Array):
        raise UserError(f"{where}: not a {kind} (no '{array_name}' array)")
    return group, group[array_name], where


def create_stack(group: zarr.Group, name: str, count: int, lead_shape: tuple[int, ...],
                 max_size: tuple[int, int], dtype: str, fill_value: int | float, images_per_shard: int,
                 compressor: Any) -> zarr.Array:
    """An empty ``(count, *lead_shape, *max_size)`` array: one chunk per image, ``images_per_shard`` per shard."""
    if images_per_shard < 1:
        raise ValueError(f"images_per_shard must be >= 1, got {images_per_shard}")
    item_shape = (*lead_shape, *max_size)
    per_shard = max(1, min(images_per_shard, count))
    # A crc32c after the compressor: a damaged chunk fails its checksum when read instead of decoding to
    # wrong values (zstd and blosc check nothing by themselves). Costs ~1 % of the read time.
    return group.create_array(
        name, shape=(count, *item_shape), dtype=dtype, chunks=(1, *item_shape),
        shards=(per_shard, *item_shape), fill_value=fill_value, compressors=[compressor, Crc32cCodec()])


def write_stack(array: zarr.Array, items: Iterable[np.ndarray], sizes: Sequence[tuple[int, int]],
                ids: Sequence[str], desc: str, shards: Sequence[int] | None = None) -> None:
    """Write ``items`` (image i has shape ``(*lead, *sizes[i])``) into ``array``, one shard region at a time.

    ``shards`` (default: every shard) limits the writing to those shard indices; ``items`` then yields
    exactly their images, in order. ``items`` is consumed lazily, so at most one shard of images is held here.
    """
    count, *item_shape = array.shape
    lead = tuple(item_shape[:-2])
    per_shard = array.shards[0] if array.shards else 1
    shard_count = -(-count // per_shard)
    shards = range(shard_count) if shards is None else list(shards)
    if any(not 0 <= shard < shard_count for shard in shards):
        raise ValueError(f"{desc}: shard indices must lie in 0..{shard_count - 1}, got {list(shards)}")
    regions = [(shard * per_shard, min((shard + 1) * per_shard, count)) for shard in shards]
    expected_count = sum(stop - first for first, stop in regions)
    fill = array.fill_value
    block = np.full((per_shard, *item_shape), fill, dtype=array.dtype)
    iterator = iter(items)
    written = 0
    with track(total=expected_count, desc=desc, unit="img") as bar:
        for first, stop in regions:
            block.fill(fill)
            for index in range(first, stop):
                try:
                    item = next(iterator)
                except StopIteration:
                    raise ValueError(f"{desc}: got {written} images, expected {expected_count}") from None
                expected = (*lead, *sizes[index])
                if tuple(item.shape) != expected:
                    raise ValueError(f"{desc}: image {ids[index]!r} has shape {tuple(item.shape)}, "
                                     f"expected {expected}")
                h, w = sizes[index]
                block[index - first, ..., :h, :w] = item
                written += 1
                bar.update(1)
            array[first:stop] = block[: stop - first]
    if next(iterator, None) is not None:
        raise ValueError(f"{desc}: more images than the {expected_count} expected")


def write_store(path: str | os.PathLike, reader: type["StackReader"], image_ids: Sequence[str],
                label_sizes: Sequence[tuple[int, int]], class_names: Sequence[str], attrs: dict[str, Any],
                items: Callable[[list[int]], Iterable[np.ndarray]], *, lead_shape: tuple[int, ...], dtype: str,
                fill_value: int | float, compressor: Any, images_per_shard: int, writers: "StoreWriters",
                desc: str, item_sizes: Sequence[tuple[int, int]] | None = None,
                more_attrs: dict[str, Any] | None = None,
                create_more: Callable[[zarr.Group], None] | None = None,
                write_empty_chunks: bool = False, finish: Callable[[Path], None] | None = None) -> None:
    """Write a store of ``reader``'s kind at ``path``, atomically, with its attributes (``attrs`` first, then the
    format version, classes, image ids, label sizes and ``more_attrs``) checked against ``reader.required_attrs``.

    ``items(owned)`` yields the ``(*lead_shape, *item_sizes[i])`` array of each image index in ``owned`` (the
    images whose shards this writer owns, in order; every image for a single writer); ``item_sizes`` default to
    the label sizes. ``create_more(group)`` adds arrays beside the stack; ``finish(tmp)`` runs on every writer
    once its images are written, before the store moves into place. Several ``writers`` (processes, each calling
    this with the same arguments) write the same store as one."""
    count = len(image_ids)
    if len(label_sizes) != count or (item_sizes is not None and len(item_sizes) != count):
        raise ValueError(f"{count} image ids, {len(label_sizes)} label sizes"
                         + ("" if item_sizes is None else f", {len(item_sizes)} item sizes"))
    if len(set(image_ids)) != count:
        raise ValueError("image ids must be unique")
    group_attrs = {**attrs, "format_version": reader.format_version, "class_names": list(class_names),
                   "image_ids": list(image_ids), "label_sizes": [[int(h), int(w)] for h, w in label_sizes],
                   **(more_attrs or {})}
    missing = [k for k in reader.required_attrs if k not in group_attrs]
    if missing:
        raise ValueError(f"attrs lack {', '.join(missing)}")
    sizes = [(int(h), int(w)) for h, w in (label_sizes if item_sizes is None else item_sizes)]

    def create(tmp: Path) -> None:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3, attributes=group_attrs)
        create_stack(group, reader.array_name, count, lead_shape, max_size(sizes), dtype, fill_value,
                     images_per_shard, compressor)
        if create_more is not None:
            create_more(group)

    with atomic_store_dir(path, writers, create) as tmp:
        array = zarr.open_array(str(tmp), path=reader.array_name, mode="r+", zarr_format=3)
        if write_empty_chunks:
            array = array.with_config({"write_empty_chunks": True})
        per_shard = array.shards[0] if array.shards else 1
        shards = shards_of_writer(count, per_shard, writers.rank, writers.world_size)
        write_stack(array, items(shard_images(shards, count, per_shard)), sizes, image_ids, desc=desc, shards=shards)
        if finish is not None:
            finish(tmp)


def shards_of_writer(count: int, images_per_shard: int, rank: int, world_size: int) -> list[int]:
    """The shard indices that writer ``rank`` of ``world_size`` owns: every ``world_size``-th, from ``rank``.

    Whole shards, never parts of one: zarr rewrites a shard file whole on every write into it, so two
    processes writing images of one shard would each overwrite the other's.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    return list(range(rank, -(-count // images_per_shard), world_size))


def shard_images(shards: Sequence[int], count: int, images_per_shard: int) -> list[int]:
    """The image indices held by ``shards``, in order."""
    return [index for shard in shards
            for index in range(shard * images_per_shard, min((shard + 1) * images_per_shard, count))]


def owned_images(count: int, images_per_shard: int, writers: "StoreWriters") -> list[int]:
    """The images whose shards writer ``writers.rank`` owns (see :func:`shards_of_writer`), in order: the ones a
    store writer of several expects its items for."""
    per_shard = max(1, min(images_per_shard, count))
    return shard_images(shards_of_writer(count, per_shard, writers.rank, writers.world_size), count, per_shard)


class StoreWriters(Protocol):
    """The processes writing one store together (``pipeline_lib.distributed.DistributedRun`` is one)."""

    rank: int
    world_size: int

    def barrier(self) -> None: ...

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, returned on every rank."""

    def sum_counts(self, counts: np.ndarray) -> np.ndarray:
        """Element-wise int64 sum of every rank's ``counts``, returned on every rank."""


@dataclass(frozen=True)
class SingleWriter:
    """One process writes the whole store."""

    rank: int = 0
    world_size: int = 1

    def barrier(self) -> None:
        pass

    def broadcast(self, value: Any) -> Any:
        return value

    def sum_counts(self, counts: np.ndarray) -> np.ndarray:
        return np.asarray(counts, np.int64)


@contextmanager
def atomic_store_dir(final: str | os.PathLike, writers: StoreWriters,
                     create: Callable[[Path], None]) -> Iterator[Path]:
    """``atomic_path`` for a store directory that ``writers`` fill together.

    Rank 0 makes the temporary directory and calls ``create(tmp)`` (group and array metadata); every rank
    then gets ``tmp`` to write its own shards into; once all have finished, rank 0 moves it onto ``final``.
    On exit the store is at ``final`` for every rank. If rank 0 fails, the temporary directory is removed;
    if another rank fails, the launcher (torchrun) stops them all and ``final`` is left as it was.
    """
    if writers.rank == 0:
        with atomic_path(final) as tmp:
            create(tmp)
            writers.broadcast(str(tmp))  # collective: the others start only once the metadata exists
            yield tmp
            writers.barrier()  # every rank has written its shards
        writers.barrier()  # the store is in place
    else:
        tmp = Path(writers.broadcast(None))
        yield tmp
        writers.barrier()
        writers.barrier()


class StackReader:
    """The read side every stage store shares: one checked :meth:`open`, the common attributes, and reads that
    refuse a damaged store.

    zarr reads a missing shard file as fill values (zeros for logits, 255 for pseudo labels) and a truncated
    or corrupted one as a checksum error deep in its codecs. Opening a store on disk checks that every shard
    file is there (``dars inspect``'s DVC-cache reader checks its own); every read turns a failure to decode
    into one message naming the shard file and how to restore or remake it. Subclasses set ``kind``,
    ``array_name``, ``producer`` (the dvc.yaml stage that writes the store), ``format_version`` and
    ``required_attrs``, and check their array's shape in :meth:`check_array`.
    """

    kind = "store"
    array_name = ""
    producer = ""
    format_version = 0
    required_attrs: tuple[str, ...] = ()

    @classmethod
    def open(cls, store: StoreLike, expect_classes: Sequence[str] | None = None,
             expect_image_ids: Sequence[str] | None = None, expect_checkpoint: str | None = None):
        """Open a store (a path or any zarr store, e.g. an ``FsspecStore``), checking it fits its use.

        Raises UserError naming the store, what does not fit and how to remake it when it is not one of this
        kind, has another format version, lacks a shard, or holds other classes, other images (in order) than
        ``expect_image_ids``, or what another checkpoint than ``expect_checkpoint`` (a sha256) made."""
        group, array, where = open_stack(store, cls.kind, cls.array_name, cls.required_attrs, cls.format_version,
                                         cls.producer)
        opened = cls(group, array, where, store)
        opened.check_array()
        opened.check_complete()
        if expect_classes is not None:
            opened.check_classes(list(expect_classes))
        if expect_image_ids is not None:
            check_same_ids(opened.image_ids, expect_image_ids, where, "its image list")
        if expect_checkpoint is not None:
            opened.check_made_by(expect_checkpoint)
        return opened

    def check_array(self) -> None:
        """Refuse an array whose shape or dtype the attributes do not describe."""

    def check_classes(self, expected: list[str]) -> None:
        found = self.class_names
        if len(found) != len(expected):
            raise UserError(f"{self.where}: the {self.kind} has {len(found)} classes, the dataset {len(expected)} "
                            f"({', '.join(expected[:5])}{', …' if len(expected) > 5 else ''}); {self.remedy()}")
        differ = [(f, e) for f, e in zip(found, expected) if f != e]
        if differ:
            raise UserError(f"{self.where}: the {self.kind}'s class names differ from the dataset's "
                            f"(e.g. {differ[0][0]!r} where {differ[0][1]!r} is expected); {self.remedy()}")

    def check_made_by(self, checkpoint_sha256: str) -> None:
        """Refuse a store another checkpoint than the one of sha256 ``checkpoint_sha256`` (the teacher) made."""
        made_by = str(self.attrs[MADE_BY])
        if made_by != checkpoint_sha256:
            raise UserError(f"{self.where}: the {self.kind} was made by another model (checkpoint sha256 "
                            f"{made_by[:12]}…; this round's teacher has sha256 {checkpoint_sha256[:12]}…); "
                            f"remake it with `dvc repro {self.producer}@{self.round_name}`")

    def __init__(self, group: zarr.Group, array: zarr.Array, where: str, store: StoreLike) -> None:
        self.where = where
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.image_ids: list[str] = [str(i) for i in self.attrs["image_ids"]]
        self.class_names: list[str] = [str(c) for c in self.attrs["class_names"]]
        self.label_sizes = check_sizes(self.attrs["label_sizes"], len(self.image_ids), "label_sizes", where)
        self._array = array
        self._directory = Path(store) if isinstance(store, (str, os.PathLike)) else None

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def images_per_shard(self) -> int:
        return self._array.shards[0] if self._array.shards else 1

    def shard_file(self, shard: int) -> str:
        key = self._array.metadata.encode_chunk_key((shard, *([0] * (self._array.ndim - 1))))
        return f"{self.where}/{self.array_name}/{key}"

    @property
    def round_name(self) -> str:
        return Path(self.where).parent.name or "<round>"

    def remedy(self) -> str:
        return (f"restore it with `dvc checkout {self.where}` or remake it with "
                f"`dvc repro {self.producer}@{self.round_name}`")

    def check_complete(self) -> None:
        """Refuse a store on disk that lacks a shard file (zarr would read its images as fill values)."""
        if self._directory is None:
            return
        per_shard = self.images_per_shard
        for shard in range(-(-len(self) // per_shard)):
            key = self._array.metadata.encode_chunk_key((shard, *([0] * (self._array.ndim - 1))))
            if not (self._directory / self.array_name / key).is_file():
                first, last = shard * per_shard, min((shard + 1) * per_shard, len(self)) - 1
                raise UserError(f"{self.shard_file(shard)}: missing shard of the {self.kind} (images {first}–{last},"
                                f" e.g. {self.image_ids[first]!r}); {self.remedy()}")

    def read(self, index: int | slice, *within: slice) -> np.ndarray:
        """``array[index, *within]``, refusing a shard that does not decode."""
        first = index.start if isinstance(index, slice) else index
        try:
            return self._array[(index, *within)]
        except Exception as exc:  # zarr and its codecs raise many types for damaged bytes
            message = (str(exc).strip().splitlines() or [""])[0]
            raise UserError(f"{self.shard_file(first // self.images_per_shard)}: damaged shard of the {self.kind} "
                            f"({type(exc).__name__}: {message[:120]}); {self.remedy()}") from None

    def iter_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_index, padded block)`` for each shard in order; one shard is read at a time."""
        per_shard = self.images_per_shard
        for first in range(0, len(self), per_shard):
            yield first, self.read(slice(first, min(first + per_shard, len(self))))

    def iter_padded(self, images: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, padded item)`` for every image in order, or for ``images`` only, in ascending order.

        One image (one inner chunk of its shard) is read at a time: measured on the confidence store (8 MB per
        image), a whole-shard read cost 34 CPU-ms per image against 10 for image by image, zarr assembling
        the shard's chunks into one fresh 134 MB array."""
        indices = range(len(self)) if images is None else sorted(set(images))
        if len(indices) and not (0 <= indices[0] and indices[-1] < len(self)):
            raise IndexError(f"image indices must lie in 0..{len(self) - 1}")
        for index in indices:
            yield index, self.read(index)


def check_sizes(value: Any, count: int, name: str, where: str) -> list[tuple[int, int]]:
    """Validate an attribute holding ``count`` ``[h, w]`` pairs of positive ints."""
    try:
        sizes = [(int(h), int(w)) for h, w in value]
    except (TypeError, ValueError):
        raise UserError(f"{where}: attribute {name} must be a list of [height, width] pairs") from None
    if len(sizes) != count:
        raise UserError(f"{where}: attribute {name} has {len(sizes)} entries for {count} images")
    if any(h < 1 or w < 1 for h, w in sizes):
        raise UserError(f"{where}: attribute {name} holds a non-positive size")
    return sizes


def check_same_ids(found: Sequence[str], expected: Sequence[str], where: str, what: str) -> None:
    """Refuse when ``found`` (the store's ids) is not exactly ``expected`` (the split's), in order."""
    if list(found) == list(expected):
        return
    found_set, expected_set = set(found), set(expected)
    missing = [i for i in expected if i not in found_set]
    extra = [i for i in found if i not in expected_set]
    parts = []
    if missing:
        parts.append(f"{len(missing)} images of the split are missing (e.g. {', '.join(missing[:5])})")
    if extra:
        parts.append(f"{len(extra)} images are not in the split (e.g. {', '.join(extra[:5])})")
    if not parts:
        parts.append("the images are the same but in another order")
    raise UserError(f"{where}: {what} does not match the split: {'; '.join(parts)}; "
                    "rerun the stage that makes it")


def max_size(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    if not sizes:
        raise ValueError("a store needs at least one image")
    return max(h for h, _ in sizes), max(w for _, w in sizes)


def fsspec_store(fs: Any, path: str) -> zarr.abc.store.Store:
    """A read-only zarr store over any fsspec filesystem, e.g. ``dvc.api.DVCFileSystem`` (DVC's cache).

    zarr's FsspecStore needs an async filesystem; synchronous ones are wrapped.
    """
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
    from zarr.storage import FsspecStore

    if not getattr(fs, "async_impl", False):
        fs = AsyncFileSystemWrapper(fs, asynchronous=True)
    return FsspecStore(fs, path=path, read_only=True)
