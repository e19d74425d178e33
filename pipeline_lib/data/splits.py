"""Labelled/unlabelled splits and published split lists: reproducible and order-independent.

A generated split ranks every sample by ``sha256("<seed>:<id>")`` and labels the lowest-ranked
ones. That makes the split

* reproducible on any machine and Python/NumPy version (no RNG stream is involved),
* independent of the order in which files were listed (only ids matter),
* nested: with the same seed, the 1/16 labelled set is a subset of the 1/8 labelled set.

Published split lists (``image_path [label_path]`` a line, or bare ids, as the DARS and VOC lists are
written) are read for their image ids, each path's stem, whatever root they were written against.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from pathlib import Path

from pipeline_lib.data.prepared import Sample, list_entries
from pipeline_lib.errors import UserError


def labeled_size(total: int, labeled_fraction: float | None, labeled_count: int | None) -> int:
    """How many of ``total`` samples to label: ``round(fraction * total)`` (halves up) or the count."""
    if (labeled_fraction is None) == (labeled_count is None):
        raise UserError("give exactly one of labeled_fraction and labeled_count "
                        f"(got labeled_fraction={labeled_fraction!r}, labeled_count={labeled_count!r})")
    if labeled_fraction is not None:
        if isinstance(labeled_fraction, bool) or not 0.0 < float(labeled_fraction) < 1.0:
            raise UserError(f"labeled_fraction must be in (0, 1), e.g. 0.125 for 1/8; got {labeled_fraction!r}")
        # The small epsilon keeps 0.1 * 30 = 3.0000000000000004-style noise from changing the result.
        size = math.floor(float(labeled_fraction) * total + 0.5 + 1e-9)
        what = f"labeled_fraction={labeled_fraction}"
    else:
        if isinstance(labeled_count, bool) or not isinstance(labeled_count, int):
            raise UserError(f"labeled_count must be an integer; got {labeled_count!r}")
        size = labeled_count
        what = f"labeled_count={labeled_count}"
    if not 1 <= size <= total - 1:
        raise UserError(f"{what} of {total} images gives {size} labelled; need 1..{total - 1} so that "
                        "both the labelled and the unlabelled split are non-empty")
    return size


def _rank(seed: int, sample_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()


def split_labeled_unlabeled(samples: list[Sample], labeled_fraction: float | None = None,
                            labeled_count: int | None = None,
                            seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Split ``samples`` into (labelled, unlabelled), both sorted by id.

    Exactly one of ``labeled_fraction`` (e.g. 0.125) and ``labeled_count`` (e.g. 1464) is given.
    Same ids + same seed -> same split, whatever the input order.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"seed must be an integer; got {seed!r}")
    check_unique_ids(samples, "the images to split")
    size = labeled_size(len(samples), labeled_fraction, labeled_count)
    ranked = sorted(samples, key=lambda s: (_rank(seed, s.id), s.id))
    labeled_ids = {s.id for s in ranked[:size]}
    ordered = sorted(samples, key=lambda s: s.id)
    return ([s for s in ordered if s.id in labeled_ids], [s for s in ordered if s.id not in labeled_ids])


def check_unique_ids(samples: Iterable[Sample], what: str) -> None:
    seen: dict[str, Sample] = {}
    for s in samples:
        if s.id in seen:
            raise UserError(f"{what}: image name {s.id!r} occurs twice ({seen[s.id].image} and {s.image}); "
                            "image file names must be unique")
        seen[s.id] = s


def read_list_ids(path: Path) -> list[tuple[int, str]]:
    """(line number, image id) for each line of a list file: a bare id, or a path whose stem is the id.

    Accepts VOC-style id lists (``2007_000032``) and path lists (``/JPEGImages/2007_000032.jpg ...``);
    labels named on a line are ignored (the dataset's own label files are used).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: list file not found")
    entries = [(number, Path(fields[0]).stem) for number, fields in
               list_entries(path.read_text(), str(path), "'image [label]' or an image id")]
    if not entries:
        raise UserError(f"{path}: list file names no images")
    return entries


def select_by_ids(samples: list[Sample], entries: list[tuple[int, str]], source: Path,
                  pool_name: str) -> list[Sample]:
    """The samples named by ``entries`` (from ``read_list_ids``), sorted by id.

    Every named id must be in ``samples`` (described as ``pool_name`` in errors) and appear once.
    """
    by_id = {s.id: s for s in samples}
    chosen: dict[str, int] = {}
    for number, sample_id in entries:
        if sample_id not in by_id:
            raise UserError(f"{source}:{number}: image {sample_id!r} is not in {pool_name}")
        if sample_id in chosen:
            raise UserError(f"{source}:{number}: image {sample_id!r} repeats line {chosen[sample_id]}")
        chosen[sample_id] = number
    return sorted((by_id[i] for i in chosen), key=lambda s: s.id)


def check_disjoint(first: list[Sample], second: list[Sample], first_name: str, second_name: str) -> None:
    shared = sorted({s.id for s in first} & {s.id for s in second})
    if shared:
        more = f" and {len(shared) - 5} more" if len(shared) > 5 else ""
        raise UserError(f"{first_name} and {second_name} share images {shared[:5]}{more}; "
                        "the splits must be disjoint")


def split_training_pool(pool: list[Sample], labeled_fraction: float | None, labeled_count: int | None, seed: int,
                        labeled_list: Path | None, unlabeled_list: Path | None,
                        select: Callable[[Path], list[Sample]], dataset: str) -> tuple[list[Sample], list[Sample]]:
    """(labelled, unlabelled) drawn from a dataset's training ``pool`` (Cityscapes', CamVid's train split).

    List files take precedence over ``labeled_fraction`` / ``labeled_count`` (which are then ignored); ``select``
    reads one into the pool's samples. With ``labeled_list``: labelled = its images, unlabelled =
    ``unlabeled_list``'s images or else the rest of the pool. With only ``unlabeled_list``: labelled = the rest of
    the pool. Without lists the split is generated from ``labeled_count`` (if given) or ``labeled_fraction``, and
    ``seed``.
    """
    if labeled_list is None and unlabeled_list is None:
        if labeled_count is not None:
            labeled_fraction = None  # the more specific setting wins
        if labeled_fraction is None and labeled_count is None:
            raise UserError(f"{dataset} needs labeled_fraction (e.g. 0.125 for 1/8), labeled_count or a labeled_list")
        return split_labeled_unlabeled(pool, labeled_fraction, labeled_count, seed)
    labeled = select(Path(labeled_list)) if labeled_list is not None else None
    unlabeled = select(Path(unlabeled_list)) if unlabeled_list is not None else None
    if labeled is not None and unlabeled is not None:
        check_disjoint(labeled, unlabeled, str(labeled_list), str(unlabeled_list))
    elif labeled is not None:
        taken = {s.id for s in labeled}
        unlabeled = [s for s in pool if s.id not in taken]
    else:
        taken = {s.id for s in unlabeled}
        labeled = [s for s in pool if s.id not in taken]
    if not labeled or not unlabeled:
        raise UserError(f"the list files leave the {'labelled' if not labeled else 'unlabelled'} split "
                        "empty; both must hold images")
    return labeled, unlabeled
