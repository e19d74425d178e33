"""Pascal VOC 2012 (+ the SBD "aug" masks) as a prepared dataset.

Expected layout (``<root>`` is the ``VOCdevkit/VOC2012`` folder)::

    <root>/JPEGImages/<id>.jpg
    <root>/SegmentationClassAug/<id>.png     single-channel class indices, 255 = border/ignore (SBD aug)
    <root>/SegmentationClass/<id>.png        palette PNGs (the official masks; read as their indices)
    <root>/ImageSets/Segmentation/train.txt  the 1,464 finely labelled training ids
    <root>/ImageSets/Segmentation/val.txt    the 1,449 validation ids
    <root>/ImageSets/Segmentation/train_aug.txt   optional: the 10,582 training ids of the aug set

``mask_dir``: "auto" uses ``SegmentationClassAug`` when present, else ``SegmentationClass``; or name
either. Both give the same train ids (a palette PNG's pixel values are its indices).

Splits (id lists may hold bare ids or ``/JPEGImages/<id>.jpg [mask]`` lines):

* training pool = ``train_aug.txt`` when present, else ``train.txt``; it must not share ids with val.
* labelled = ``labeled_list``'s ids; else ``labeled_count`` (or else ``labeled_fraction``) ids drawn from
  ``labeled_pool`` ("train_aug": the whole pool, the CPS-style 1/8 = 1,323; "train": the 1,464 fine
  ids, the classic 92/183/366/732 subsets) with ``seed``; else all 1,464 ``train.txt`` ids (as in DARS).
  The most specific setting wins: a list over a count over a fraction.
* unlabelled = ``unlabeled_list``'s ids, else the rest of the pool. Their masks are kept when they
  exist, as ground truth for pseudo-label accuracy only -- never to train on.
* val = ``val.txt``.

Labelled and val images need masks; unlabelled ones do not.
"""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.data.classes import VOC
from pipeline_lib.data.prepared import Sample, write_prepared
from pipeline_lib.data.splits import check_disjoint, read_list_ids, select_by_ids, split_labeled_unlabeled
from pipeline_lib.errors import UserError

MASK_DIRS = ("SegmentationClassAug", "SegmentationClass")
LABELED_POOLS = ("train_aug", "train")


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise UserError(f"{root}: VOC root directory not found")
    if not (root / "JPEGImages").is_dir():
        for inner in (root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
            if (inner / "JPEGImages").is_dir():
                raise UserError(f"{root / 'JPEGImages'}: not found; did you mean root {inner}?")
        raise UserError(f"{root / 'JPEGImages'}: not found; root must be the VOCdevkit/VOC2012 folder")


def _choose_mask_dir(root: Path, mask_dir: str) -> Path:
    if mask_dir == "auto":
        for name in MASK_DIRS:
            if (root / name).is_dir():
                return root / name
        raise UserError(f"{root}: neither SegmentationClassAug/ nor SegmentationClass/ found")
    if mask_dir not in MASK_DIRS:
        raise UserError(f"mask_dir must be auto, {' or '.join(MASK_DIRS)}; got {mask_dir!r}")
    if not (root / mask_dir).is_dir():
        raise UserError(f"{root / mask_dir}: mask directory not found")
    return root / mask_dir


def _read_ids(path: Path, root: Path) -> list[Sample]:
    """Samples for the ids of an id list; every image must exist. Masks are attached later."""
    samples, seen = [], {}
    for number, sample_id in read_list_ids(path):
        if sample_id in seen:
            raise UserError(f"{path}:{number}: image {sample_id!r} repeats line {seen[sample_id]}")
        seen[sample_id] = number
        image = root / "JPEGImages" / f"{sample_id}.jpg"
        if not image.is_file():
            raise UserError(f"{path}:{number}: image {image} not found")
        samples.append(Sample(sample_id, image, None))
    return sorted(samples, key=lambda s: s.id)


def _with_masks(samples: list[Sample], masks: Path, required: str | None) -> list[Sample]:
    """Attach ``<masks>/<id>.png``; a missing mask is an error when ``required`` names the split."""
    out = []
    for s in samples:
        mask = masks / f"{s.id}.png"
        if not mask.is_file():
            if required:
                raise UserError(f"{mask}: mask not found for {required} image {s.id!r}")
            mask = None
        out.append(Sample(s.id, s.image, mask))
    return out


def prepare_voc(out_dir: Path, root: Path, labeled_fraction: float | None, labeled_count: int | None, seed: int,
                labeled_list: Path | None = None, unlabeled_list: Path | None = None, mask_dir: str = "auto",
                labeled_pool: str = "train_aug") -> None:
    """Write the prepared dataset for Pascal VOC 2012 under ``out_dir`` (the caller makes it atomic)."""
    root = Path(root)
    _check_root(root)
    masks = _choose_mask_dir(root, mask_dir)
    if labeled_pool not in LABELED_POOLS:
        raise UserError(f"labeled_pool must be {' or '.join(LABELED_POOLS)}; got {labeled_pool!r}")
    sets = root / "ImageSets" / "Segmentation"
    fine = _read_ids(sets / "train.txt", root)
    val = _read_ids(sets / "val.txt", root)
    aug_list = sets / "train_aug.txt"
    pool = _read_ids(aug_list, root) if aug_list.is_file() else fine
    check_disjoint(pool, val, str(aug_list if aug_list.is_file() else sets / "train.txt"), str(sets / "val.txt"))

    if labeled_count is not None:
        labeled_fraction = None  # the more specific setting wins
    if labeled_list is not None:
        labeled = select_by_ids(pool, read_list_ids(Path(labeled_list)), Path(labeled_list),
                                f"the training pool ({aug_list.name if aug_list.is_file() else 'train.txt'})")
    elif labeled_fraction is not None or labeled_count is not None:
        source = pool if labeled_pool == "train_aug" else fine
        labeled, _ = split_labeled_unlabeled(source, labeled_fraction, labeled_count, seed)
    else:
        labeled = fine

    if unlabeled_list is not None:
        unlabeled = _read_ids(Path(unlabeled_list), root)
        check_disjoint(labeled, unlabeled, "the labelled split", str(unlabeled_list))
        check_disjoint(unlabeled, val, str(unlabeled_list), str(sets / "val.txt"))
    else:
        taken = {s.id for s in labeled}
        unlabeled = [s for s in pool if s.id not in taken]
    if not unlabeled:
        raise UserError(f"the unlabelled split is empty: add {aug_list} (the SBD train_aug ids) or give "
                        "unlabeled_list, labeled_fraction or labeled_count")

    write_prepared(Path(out_dir), "voc", root, VOC, {
        "labeled": _with_masks(labeled, masks, "labelled"),
        "unlabeled": _with_masks(unlabeled, masks, None),
        "val": _with_masks(val, masks, "val"),
    })
