"""The prepared-dataset layout that every dataset (synthetic, folder, Cityscapes, VOC) is read through.

A ``prepare`` stage writes a *prepared directory*::

    <prepared>/dataset.json             name, root, classes, optional label_lut
    <prepared>/splits/labeled.txt       LIST_HEADER, then one sample a line: "<image>\t<label>", paths relative
                                        to root (tab-separated: any file name but one with a tab or line break)
    <prepared>/splits/unlabeled.txt     "<image>" or "<image>\t<label>" (ground truth is optional)
    <prepared>/splits/val.txt           "<image>\t<label>"
    <prepared>/splits/test.txt          "<image>\t<label>", only where the dataset has a test split (CamVid)
    <prepared>/class_distribution.json  labelled-set pixel counts and shares (see class_distribution)
    <prepared>/split_hashes.json        sha256 of each split list, for provenance

``root`` is stored relative to the prepared directory (or absolute). Labels are single-channel PNGs
of train ids with 255 = ignore; ``label_lut`` (256 ints), when present, maps raw label values to
train ids on the fly (e.g. Cityscapes labelIds). Palette PNGs are read as their indices.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline_lib.atomic import write_json, write_text
from pipeline_lib.data.classes import IGNORE_INDEX, ClassSet, class_shares
from pipeline_lib.data.image_files import image_size, load_mask_values
from pipeline_lib.errors import UserError

# The first line of a prepared split list. Lists written before it (space-separated, which split "my photo.png" in
# two) are refused with a request to prepare again rather than read in a way that cannot hold every name.
LIST_HEADER = "# dars split list 2: image<TAB>label (or image alone) a line, relative to the dataset root"
SPLITS = ("labeled", "unlabeled", "val")  # every prepared dataset has these
OPTIONAL_SPLITS = ("test",)  # scored only on request (`dars evaluate --split test`), never chosen on


@dataclass(frozen=True)
class Sample:
    id: str  # the image file's stem; unique within a dataset
    image: Path
    label: Path | None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    root: Path  # resolved
    classes: ClassSet
    label_lut: np.ndarray | None  # (256,) uint8 or None


def load_spec(prepared: str | os.PathLike) -> DatasetSpec:
    prepared = Path(prepared)
    path = prepared / "dataset.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; run the prepare stage first (dvc repro prepare)")
    try:
        data = json.loads(path.read_text())
        root = Path(data["root"])
        lut = data.get("label_lut")
        spec = DatasetSpec(
            name=str(data["name"]),
            root=root if root.is_absolute() else (prepared / root),
            classes=ClassSet.from_dict(data["classes"], source=str(path)),
            label_lut=None if lut is None else np.asarray(lut, np.uint8),
        )
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: malformed ({exc!r})") from None
    if spec.label_lut is not None and spec.label_lut.shape != (256,):
        raise UserError(f"{path}: label_lut must hold 256 values")
    return spec


def read_split(prepared: str | os.PathLike, split: str, spec: DatasetSpec | None = None) -> list[Sample]:
    """The samples of one split, in list-file order."""
    if split not in SPLITS + OPTIONAL_SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS + OPTIONAL_SPLITS)}")
    prepared = Path(prepared)
    spec = spec or load_spec(prepared)
    path = prepared / "splits" / f"{split}.txt"
    if not path.is_file():
        if split in OPTIONAL_SPLITS and (prepared / "splits" / "labeled.txt").is_file():
            raise UserError(f"{path}: the {spec.name} dataset was prepared without a {split} split (prepare "
                            f"writes one where the dataset's layout has it, e.g. CamVid's {split}/ folder)")
        raise UserError(f"{path}: split list not found; run the prepare stage first")
    return parse_list(path.read_text(), spec.root, source=str(path))


def list_entries(text: str, source: str, expected: str = "'image [label]'") -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-empty line of a user's list file in the common ``image_path
    [label_path]`` format, whitespace-separated (published split lists, CamVid's lists): the one parser of them.
    Prepared split lists have their own format (``parse_list``)."""
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2:
            raise UserError(f"{source}:{number}: expected {expected}, got {line.strip()!r}")
        yield number, fields


def parse_list(text: str, root: Path, source: str) -> list[Sample]:
    """The samples of a prepared split list (paths relative to ``root``)."""
    lines = text.split("\n")  # not splitlines(): it also breaks at characters a file name may hold (U+2028)
    if not lines or lines[0] != LIST_HEADER:
        raise UserError(f"{source}: not a split list of this version (an earlier prepare wrote them "
                        "space-separated); prepare again: dvc repro prepare")
    samples, seen = [], {}
    for number, line in enumerate(lines[1:], 2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) > 2 or not all(fields):
            raise UserError(f"{source}:{number}: expected image<TAB>label or an image, got {line!r}")
        image = root / fields[0]
        label = root / fields[1] if len(fields) == 2 else None
        sample_id = Path(fields[0]).stem
        if sample_id in seen:
            raise UserError(f"{source}:{number}: image name {sample_id!r} repeats line {seen[sample_id]}; "
                            "image file names must be unique")
        seen[sample_id] = number
        samples.append(Sample(sample_id, image, label))
    return samples


def format_list(samples: list[Sample], root: Path) -> str:
    """A prepared split list (see parse_list); UserError for a path that no line could hold."""
    lines = [LIST_HEADER]
    for s in samples:
        paths = [os.path.relpath(path, root) for path in (s.image, s.label) if path is not None]
        for path in paths:
            if "\t" in path or "\n" in path:
                raise UserError(f"{Path(root) / path}: a file name with a tab or line break cannot be listed; "
                                "rename it")
        lines.append("\t".join(paths))
    return "\n".join(lines) + "\n"


def load_label(path: Path, spec: DatasetSpec, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """A label mask as (H, W) uint8 train ids (255 = ignore), validated against the class set."""
    raw = load_mask_values(path)
    if raw.min(initial=0) < 0 or raw.max(initial=0) > 255:
        raise UserError(f"{path}: label values up to {raw.max()} do not fit 0..255")
    label = raw.astype(np.uint8)
    if spec.label_lut is not None:
        label = spec.label_lut[label]
    invalid = (label >= spec.classes.num_classes) & (label != spec.classes.ignore_index)
    if invalid.any():
        bad = sorted(set(np.unique(label[invalid]).tolist()))[:8]
        raise UserError(f"{path}: label values {bad} exceed the {spec.classes.num_classes} classes "
                        f"(valid: 0..{spec.classes.num_classes - 1}, ignore {spec.classes.ignore_index})")
    if spec.classes.ignore_index != IGNORE_INDEX:
        label = np.where(label == spec.classes.ignore_index, IGNORE_INDEX, label).astype(np.uint8)
    if image_shape is not None and label.shape != tuple(image_shape):
        raise UserError(f"{path}: label size {label.shape[1]}x{label.shape[0]} differs from its image "
                        f"size {image_shape[1]}x{image_shape[0]}")
    return label


def check_files(splits: dict[str, list[Sample]], spec: DatasetSpec) -> None:
    """Open every image of the splits (its header: readable, its displayed size) and every mask (decoded: its
    values and size against its image's), so that a bad file is refused at prepare, before any training."""
    for samples in splits.values():
        for s in samples:
            size = image_size(s.image)
            if s.label is not None:
                load_label(s.label, spec, size)


def class_distribution(samples: list[Sample], spec: DatasetSpec) -> dict:
    """Pixel counts per class over the samples' labels; shares are of the valid (non-ignore) pixels."""
    counts = np.zeros(spec.classes.num_classes, np.int64)
    ignored = 0
    for s in samples:
        if s.label is None:
            raise UserError(f"{s.image}: labelled sample has no label path")
        label = load_label(s.label, spec)
        hist = np.bincount(label.ravel(), minlength=256)
        counts += hist[: spec.classes.num_classes]
        ignored += int(hist[IGNORE_INDEX])
    valid = int(counts.sum())
    if valid == 0:
        raise UserError("the labelled split has no labelled pixels")
    return {
        "classes": list(spec.classes.names),
        "pixel_counts": counts.tolist(),
        "ignored_pixels": ignored,
        "valid_pixels": valid,
        "shares": class_shares(counts).tolist(),
    }


def load_class_distribution(prepared: str | os.PathLike) -> np.ndarray:
    """(C,) int64 pixels per class of the labelled split: integer counts, so that rules built on the class
    shares (DA's n_j) can be exact; ``classes.class_shares`` turns them into shares."""
    path = Path(prepared) / "class_distribution.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; run the prepare stage first")
    return np.asarray(json.loads(path.read_text())["pixel_counts"], np.int64)


def write_prepared(prepared: Path, name: str, root: Path, classes: ClassSet,
                   splits: dict[str, list[Sample]], label_lut: np.ndarray | None = None) -> None:
    """Write dataset.json, the split lists, their hashes and the labelled class distribution.

    ``prepared`` is expected to be a temporary directory that the caller renames into place. ``splits`` holds
    every one of SPLITS and may hold the OPTIONAL_SPLITS.
    """
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise UserError(f"dataset {name!r} has no {', '.join(missing)} split")
    unknown = sorted(set(splits) - set(SPLITS + OPTIONAL_SPLITS))
    if unknown:
        raise ValueError(f"unknown splits {unknown}")
    check_files(splits, DatasetSpec(name, Path(root), classes, label_lut))
    prepared.mkdir(parents=True, exist_ok=True)
    # Relative roots stay relative (the project can move); absolute ones stay absolute.
    root_rel = str(root) if Path(root).is_absolute() else os.path.relpath(root, prepared)
    write_json(prepared / "dataset.json", {
        "name": name, "root": root_rel, "classes": classes.to_dict(),
        "label_lut": None if label_lut is None else [int(v) for v in label_lut]})
    hashes = {}
    for split in [s for s in SPLITS + OPTIONAL_SPLITS if s in splits]:
        text = format_list(splits[split], root)
        write_text(prepared / "splits" / f"{split}.txt", text)
        hashes[split] = {"sha256": hashlib.sha256(text.encode()).hexdigest(), "images": len(splits[split])}
    write_json(prepared / "split_hashes.json", hashes)
    spec = load_spec(prepared)
    write_json(prepared / "class_distribution.json", class_distribution(read_split(prepared, "labeled", spec), spec))
