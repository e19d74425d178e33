"""Cityscapes (fine annotations) as a prepared dataset.

Expected layout (as unpacked from ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``)::

    <root>/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (optional)

Labels: ``*_gtFine_labelTrainIds.png`` (made by cityscapesscripts' ``createTrainIdLabelImgs``) are used
as they are when every image has one; otherwise ``*_gtFine_labelIds.png`` are used and mapped to the
19 train ids on the fly by the lookup table of cityscapesscripts' ``helpers/labels.py`` (void and
ignored classes -> 255). ``label_kind`` forces either ("trainIds" / "labelIds").

Splits: *labelled* and *unlabelled* come from the train split (2,975 images) -- either generated from
``labeled_fraction`` and ``seed`` (see ``splits.split_labeled_unlabeled``; 1/8 -> 372 images) or
read from the user's list files, which then take precedence (paths or ids, e.g. a published ``1_8``
list; a leading ``/`` means the root; the label named on a line is ignored in favour of the label kind
chosen above); *val* is the val split (500 images).

Unlabelled samples keep their label path: it is ground truth for measuring pseudo-label accuracy
only. The pseudo-labelling and training code must never train on it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.data.classes import CITYSCAPES, cityscapes_label_id_lut
from pipeline_lib.data.prepared import Sample, write_prepared
from pipeline_lib.data.splits import read_list_ids, select_by_ids, split_training_pool
from pipeline_lib.errors import UserError

IMAGE_SUFFIX = "_leftImg8bit"
LABEL_SUFFIXES = {"trainIds": "_gtFine_labelTrainIds.png", "labelIds": "_gtFine_labelIds.png"}
LABEL_KINDS = ("auto", "trainIds", "labelIds")


def _scan_images(root: Path, split: str) -> list[Path]:
    folder = root / "leftImg8bit" / split
    if not folder.is_dir():
        raise UserError(f"{folder}: not found; expected Cityscapes images in "
                        f"<root>/leftImg8bit/{split}/<city>/<city>_<seq>_<frame>_leftImg8bit.png "
                        "(from leftImg8bit_trainvaltest.zip)")
    images = sorted(p for p in folder.glob(f"*/*{IMAGE_SUFFIX}.png") if not p.name.startswith("."))
    if not images:
        raise UserError(f"{folder}: no images found (expected <city>/*{IMAGE_SUFFIX}.png files)")
    return images


def _label_path(root: Path, split: str, image: Path, kind: str) -> Path:
    city = image.parent.name
    stem = image.name[: -len(f"{IMAGE_SUFFIX}.png")]
    return root / "gtFine" / split / city / f"{stem}{LABEL_SUFFIXES[kind]}"


def _choose_label_kind(root: Path, images: dict[str, list[Path]], label_kind: str) -> str:
    """The label kind every image has (trainIds preferred under "auto"); UserError if none fits."""
    if label_kind not in LABEL_KINDS:
        raise UserError(f"label_kind must be one of {', '.join(LABEL_KINDS)}; got {label_kind!r}")
    gt = root / "gtFine"
    if not gt.is_dir():
        raise UserError(f"{gt}: not found; expected Cityscapes labels in <root>/gtFine/{{train,val}}/<city>/ "
                        "(from gtFine_trainvaltest.zip)")
    candidates = ["trainIds", "labelIds"] if label_kind == "auto" else [label_kind]
    for kind in candidates:
        missing = next((_label_path(root, split, image, kind) for split, paths in images.items()
                        for image in paths if not _label_path(root, split, image, kind).is_file()), None)
        if missing is None:
            return kind
    # Report the most useful missing file: the labelIds one (always shipped) unless trainIds were forced.
    raise UserError(f"{missing}: label not found (every image needs its *{LABEL_SUFFIXES[kind]}"
                    + (" or *_gtFine_labelTrainIds.png" if label_kind == "auto" else "") + ")")


def _from_list(path: Path, train: list[Sample]) -> list[Sample]:
    entries = read_list_ids(path)
    # Accept bare "<city>_<seq>_<frame>" ids as well as image paths.
    known = {s.id for s in train}
    entries = [(n, i if i in known or i + IMAGE_SUFFIX not in known else i + IMAGE_SUFFIX) for n, i in entries]
    return select_by_ids(train, entries, path, "the Cityscapes train split (leftImg8bit/train)")


def prepare_cityscapes(out_dir: Path, root: Path, labeled_fraction: float | None, seed: int,
                       labeled_list: Path | None = None, unlabeled_list: Path | None = None,
                       label_kind: str = "auto", labeled_count: int | None = None) -> None:
    """Write the prepared dataset for Cityscapes under ``out_dir`` (the caller makes it atomic); the labelled
    and unlabelled splits are drawn from train as ``splits.split_training_pool`` says."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: Cityscapes root directory not found")
    images = {split: _scan_images(root, split) for split in ("train", "val")}
    kind = _choose_label_kind(root, images, label_kind)
    samples = {split: [Sample(p.stem, p, _label_path(root, split, p, kind)) for p in paths]
               for split, paths in images.items()}
    train = samples["train"]

    labeled, unlabeled = split_training_pool(train, labeled_fraction, labeled_count, seed, labeled_list,
                                             unlabeled_list, lambda path: _from_list(path, train), "Cityscapes")

    write_prepared(Path(out_dir), "cityscapes", root, CITYSCAPES,
                   {"labeled": labeled, "unlabeled": unlabeled, "val": samples["val"]},
                   label_lut=cityscapes_label_id_lut() if kind == "labelIds" else None)
