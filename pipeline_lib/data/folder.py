"""Your own data: a folder of images and PNG masks.

Put a ``classes.yaml`` and two folders, ``images/`` and ``masks/``, under one root::

    <root>/classes.yaml
    <root>/images/...       .png / .jpg / .jpeg (any case)
    <root>/masks/...        .png only, named like their image (``street_01.jpg`` -> ``street_01.png``)

``classes.yaml``::

    names: [road, car, person]            # train id i is names[i]
    colors: [[128, 64, 128], [0, 0, 142], [220, 20, 60]]   # optional; default: the VOC palette
    ignore_index: 255                     # optional; the mask value meaning "not labelled"

Masks are single-channel (or palette) PNGs of the same size as their image, holding class ids
0..len(names)-1 or ``ignore_index``. Any other value is an error.

Two layouts, chosen by what is under ``images/``:

1. **Split folders** -- ``images/labeled/``, ``images/unlabeled/``, ``images/val/`` (all three) with
   ``masks/labeled/`` and ``masks/val/`` holding a mask for every one of their images.
   ``masks/unlabeled/`` is optional: unlabelled images need no masks; any that exist are used only to
   measure pseudo-label accuracy, never to train on. ``labeled_fraction`` and ``val_fraction`` are
   ignored: the folders are the split.
2. **Flat** -- all images directly in ``images/``, masks directly in ``masks/``. Images without a mask
   are unlabelled. Of the images *with* a mask, ``val_fraction`` (required, e.g. 0.2) go to val; of the
   rest, ``labeled_fraction`` go to labelled (unset = all of them) and the others to unlabelled
   (keeping their masks as ground truth only). Both draws are seeded and reproducible, and depend
   only on the file names (see ``splits.split_labeled_unlabeled``).

Rules for both: file names (without extension) must be unique across the dataset; files starting
with ``.`` and non-image files are skipped; sub-folders other than the three split folders are an
error; a mask without an image, or a non-PNG mask, is an error; every image and mask is checked when the
dataset is prepared (``prepared.check_files``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline_lib.data.classes import ClassSet, voc_palette_color
from pipeline_lib.data.prepared import SPLITS, Sample, write_prepared
from pipeline_lib.data.splits import check_unique_ids, split_labeled_unlabeled
from pipeline_lib.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CLASSES_KEYS = ("names", "colors", "ignore_index")


def load_classes_yaml(path: Path) -> ClassSet:
    """The class set of a ``classes.yaml`` (colours default to the VOC palette)."""
    if not path.is_file():
        raise UserError(f"{path}: not found; it must list the class names (names: [background, ...])")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: must be a mapping with keys {', '.join(CLASSES_KEYS)}")
    unknown = sorted(set(map(str, data)) - set(CLASSES_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key(s) {unknown}; expected {', '.join(CLASSES_KEYS)}")
    names = data.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise UserError(f"{path}: 'names' must be a non-empty list of class names")
    if len(set(names)) != len(names):
        raise UserError(f"{path}: 'names' repeats a class name")
    colors = data.get("colors")
    if colors is None:
        colors = [list(voc_palette_color(i)) for i in range(len(names))]
    elif not isinstance(colors, list) or len(colors) != len(names):
        raise UserError(f"{path}: 'colors' must list one [r, g, b] per name ({len(names)})")
    ignore = data.get("ignore_index", 255)
    if isinstance(ignore, bool) or not isinstance(ignore, int) or not 0 <= ignore <= 255:
        raise UserError(f"{path}: 'ignore_index' must be an integer in 0..255; got {ignore!r}")
    try:
        return ClassSet.from_dict({"names": names, "colors": colors, "ignore_index": ignore}, source=str(path))
    except UserError as exc:
        message = str(exc)
        # ClassSet's own checks (e.g. ignore value colliding with a class id) do not know the file.
        raise UserError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def _files(folder: Path, what: str, allow_dirs: tuple[str, ...] = ()) -> list[Path]:
    """The visible files directly in ``folder``; sub-folders other than ``allow_dirs`` are an error."""
    files = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if p.name not in allow_dirs:
                raise UserError(f"{p}: unexpected folder in {what}; the only sub-folders allowed are "
                                f"{', '.join(SPLITS)} (or none: all files directly in the folder)")
            continue
        files.append(p)
    return files


def _images(folder: Path) -> list[Path]:
    images = [p for p in _files(folder, "the images") if p.suffix.lower() in IMAGE_EXTENSIONS]
    seen: dict[str, Path] = {}
    for p in images:
        if p.stem in seen:
            raise UserError(f"{p}: same name as {seen[p.stem]}; image names must be unique")
        seen[p.stem] = p
    return images


def _masks(folder: Path, images: list[Path]) -> dict[str, Path]:
    """Masks in ``folder`` by stem; each must be a PNG and belong to one of ``images``."""
    if not folder.is_dir():
        return {}
    stems = {p.stem for p in images}
    masks = {}
    for p in _files(folder, "the masks"):
        if p.stem not in stems and p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # a README or similar
        if p.suffix.lower() != ".png":
            raise UserError(f"{p}: masks must be PNG files (JPEG compression changes label values)")
        if p.stem not in stems:
            raise UserError(f"{p}: mask has no image of the same name in {folder.parent.parent / 'images'}"
                            f"{'/' + folder.name if folder.name in SPLITS else ''}")
        masks[p.stem] = p
    return masks


def _samples(images: list[Path], masks: dict[str, Path]) -> list[Sample]:
    return [Sample(p.stem, p, masks.get(p.stem)) for p in images]


def _split_folders(root: Path) -> dict[str, list[Sample]]:
    splits = {}
    for split in SPLITS:
        folder = root / "images" / split
        if not folder.is_dir():
            raise UserError(f"{folder}: not found; the split-folder layout needs images/labeled, "
                            "images/unlabeled and images/val")
        images = _images(folder)
        if not images:
            raise UserError(f"{folder}: no images (.png, .jpg, .jpeg) found")
        samples = _samples(images, _masks(root / "masks" / split, images))
        if split != "unlabeled":
            missing = next((s for s in samples if s.label is None), None)
            if missing is not None:
                raise UserError(f"{root / 'masks' / split / (missing.id + '.png')}: mask not found for "
                                f"{split} image {missing.image}")
        splits[split] = samples
    return splits


def _flat(root: Path, labeled_fraction: float | None, val_fraction: float | None,
          seed: int, labeled_count: int | None) -> dict[str, list[Sample]]:
    images = _images(root / "images")
    if not images:
        raise UserError(f"{root / 'images'}: no images (.png, .jpg, .jpeg) found")
    samples = _samples(images, _masks(root / "masks", images))
    masked = [s for s in samples if s.label is not None]
    if not masked:
        raise UserError(f"{root / 'masks'}: no masks found; labelled and val images need PNG masks "
                        "named like their images")
    if val_fraction is None:
        raise UserError("val_fraction is required for a flat folder dataset (e.g. 0.2 of the masked "
                        "images), or use images/{labeled,unlabeled,val}/ folders")
    try:
        val, train = split_labeled_unlabeled(masked, labeled_fraction=val_fraction, seed=seed)
    except UserError as exc:
        raise UserError(f"val_fraction over the {len(masked)} masked images: {exc}") from None
    if labeled_count is not None:
        labeled_fraction = None  # the more specific setting wins
    if labeled_fraction is None and labeled_count is None:
        labeled, spare = train, []
    else:
        # Same seeded ranking as the val draw: val took the first ranks, labelled takes the next.
        labeled, spare = split_labeled_unlabeled(train, labeled_fraction, labeled_count, seed)
    unlabeled = sorted(spare + [s for s in samples if s.label is None], key=lambda s: s.id)
    if not unlabeled:
        raise UserError(f"{root}: no unlabelled images; add images without masks or set labeled_fraction < 1")
    return {"labeled": labeled, "unlabeled": unlabeled, "val": val}


def prepare_folder(out_dir: Path, root: Path, labeled_fraction: float | None = None,
                   val_fraction: float | None = None, seed: int = 0, labeled_count: int | None = None) -> None:
    """Write the prepared dataset for a folder dataset under ``out_dir`` (the caller makes it atomic)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: dataset root directory not found")
    classes = load_classes_yaml(root / "classes.yaml")
    if not (root / "images").is_dir():
        raise UserError(f"{root / 'images'}: not found; put the images in images/ (and masks in masks/)")
    split_mode = any((root / "images" / split).is_dir() for split in SPLITS)
    if split_mode:
        loose = [p for p in _files(root / "images", "the images", SPLITS)
                 if p.suffix.lower() in IMAGE_EXTENSIONS]
        if loose:
            raise UserError(f"{loose[0]}: images must be inside images/labeled, images/unlabeled or "
                            "images/val when those folders exist")
        if (root / "masks").is_dir():
            _files(root / "masks", "the masks", SPLITS)  # rejects stray sub-folders
        if labeled_count is not None:
            raise UserError(f"{root / 'images'}: labeled_count {labeled_count} cannot apply: the images/labeled "
                            "and images/unlabeled folders already say which images are labelled")
        splits = _split_folders(root)
    else:
        splits = _flat(root, labeled_fraction, val_fraction, seed, labeled_count)
    check_unique_ids([s for samples in splits.values() for s in samples], f"{root / 'images'}")
    write_prepared(Path(out_dir), "folder", root, classes, splits)
