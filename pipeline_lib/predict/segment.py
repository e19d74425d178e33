"""Segmenting new images with a trained model (``dars predict``): a label PNG and a colour overlay per image.

Not a pipeline step: it reads any checkpoint and any images, and writes nothing DVC tracks.

Classes, colours and ids. A checkpoint names its classes (the model predicts exactly those, one per
output channel) but keeps neither their colours nor its dataset. The class set is therefore that of a
prepared dataset when one is given (its names must be the checkpoint's), else the known set with the
checkpoint's names (Cityscapes, Pascal VOC), else the checkpoint's names in the VOC palette (the folder
dataset's default colours). A dataset's own label ids follow from its class set: the 19 Cityscapes
classes (of Cityscapes or the synthetic dataset) have Cityscapes labelIds; the masks of every other
dataset (VOC, folder) hold the train ids themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline_lib.atomic import atomic_path
from pipeline_lib.data.classes import CITYSCAPES, VOC, ClassSet, cityscapes_train_id_to_label_id_lut, voc_palette_color
from pipeline_lib.data.image_files import load_image
from pipeline_lib.data.prepared import load_spec
from pipeline_lib.device import pick_device, resolve_precision
from pipeline_lib.errors import UserError
from pipeline_lib.drawing.panels import blend_overlay
from pipeline_lib.models.checkpoint import load_checkpoint
from pipeline_lib.models.normalization import normalize_image
from pipeline_lib.predict.inference import predict_labels
from pipeline_lib.progress import track
from pipeline_lib.settings import InferenceSettings

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ID_KINDS = ("train", "dataset")
OVERLAY_SUFFIX = "_overlay"


@dataclass(frozen=True)
class Segmented:
    """What ``segment_images`` did: the number of images it wrote, and why it skipped each one it skipped."""

    written: int
    skipped: tuple[str, ...]  # one message per unreadable image, naming it


def find_images(source: Path, out: Path) -> list[tuple[Path, Path]]:
    """(image, its outputs' path relative to ``out``, without suffix) for every image to segment.

    ``source`` is a folder (its image files at any depth, sorted; hidden files and folders, and ``out`` when it
    is a subfolder, are left out), one image file, or a list file (one image path a line, relative to the list's
    folder; a second field, such as a label, is ignored; in list order). Outputs mirror each image's path
    relative to the folder, for a list relative to the deepest folder that holds every listed image.
    """
    source, out = Path(source), Path(out)
    if source.is_dir():
        base, images = source, _scan(source, out)
        if not images:
            raise UserError(f"{source}: no images found (no {' '.join(IMAGE_EXTENSIONS)} file at any depth)")
    elif source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS:
        base, images = source.parent, [source]
    elif source.is_file():
        images = _read_list(source)
        base = Path(os.path.commonpath([os.path.abspath(image.parent) for image in images]))
    else:
        raise UserError(f"{source}: not found; give a folder of images, an image or a list file of image paths")
    return [(image, Path(os.path.abspath(image)).relative_to(os.path.abspath(base)).with_suffix(""))
            for image in images]


def _read_list(path: Path) -> list[Path]:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UserError(f"{path}: neither an image ({' '.join(IMAGE_EXTENSIONS)}) nor a list file of image "
                        "paths") from None
    images = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        # A line is one image path (names may hold spaces); after a tab, or after a space where the whole line
        # names no file (the field's `image_path label_path` lists), a second field is ignored.
        listed = line.split("\t")[0]
        image = Path(listed) if Path(listed).is_absolute() else path.parent / listed
        if "\t" not in line and not image.exists() and len(line.split()) == 2:
            listed = line.split()[0]
            image = Path(listed) if Path(listed).is_absolute() else path.parent / listed
        images.append(image)
    if not images:
        raise UserError(f"{path}: the list names no images")
    return images


def _scan(folder: Path, out: Path) -> list[Path]:
    # Outputs in a subfolder of the input folder must not be read back as images by the next run. (--out
    # being the folder itself is left to the clash check: then the outputs lie beside the images.)
    out = Path(os.path.abspath(out))
    below_out = out != Path(os.path.abspath(folder))
    images = []
    for path in folder.rglob("*"):
        if (path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
                and not any(part.startswith(".") for part in path.relative_to(folder).parts)
                and not (below_out and out in Path(os.path.abspath(path)).parents)):
            images.append(path)
    return sorted(images, key=lambda path: path.relative_to(folder).as_posix())


def output_paths(out: Path, stem: Path) -> tuple[Path, Path]:
    """The label PNG and the overlay PNG of the image whose outputs go to ``out / stem``."""
    return out / stem.parent / f"{stem.name}.png", out / stem.parent / f"{stem.name}{OVERLAY_SUFFIX}.png"


def _refuse_clashes(jobs: list[tuple[Path, Path]], out: Path, overlay: bool) -> None:
    """Refuse before anything is written: an output onto an input image, or two images onto one output
    (``a.png`` and ``a.jpg``; or ``a_overlay.png``, whose label is ``a.png``'s overlay)."""
    inputs = {os.path.abspath(image) for image, _ in jobs}
    writer: dict[str, Path] = {}
    for image, stem in jobs:
        for path in output_paths(out, stem)[:2 if overlay else 1]:
            key = os.path.abspath(path)
            if key in inputs:
                raise UserError(f"{path}: an output would overwrite this input image; choose another --out")
            if key in writer:
                raise UserError(f"{writer[key]} and {image} would both write {path}; rename one of them")
            writer[key] = image


def class_set_named(names: list[str] | tuple[str, ...]) -> ClassSet:
    """The known class set with these names (Cityscapes, VOC), else these names in the VOC palette."""
    names = tuple(names)
    known = next((classes for classes in (CITYSCAPES, VOC) if classes.names == names), None)
    return known or ClassSet(names, tuple(voc_palette_color(i) for i in range(len(names))))


def dataset_id_table(classes: ClassSet) -> np.ndarray:
    """(256,) uint8 map from train ids to the dataset's own label ids (see the module docstring)."""
    if classes.names == CITYSCAPES.names:
        return cityscapes_train_id_to_label_id_lut()
    return np.arange(256, dtype=np.uint8)


def _write_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")  # the temporary name has no suffix to tell the format


def segment_images(source: Path, model_path: Path, out: Path, inference: InferenceSettings, ids: str = "train",
                   overlay: bool = True, prepared: Path | None = None,
                   skip_unreadable: bool = False) -> Segmented:
    """Segment every image of ``source`` (see ``find_images``) with the checkpoint at ``model_path``.

    Writes, for each, ``<stem>.png`` (mode L, the image's size: the argmax class of every pixel, so never 255;
    train ids, or with ``ids="dataset"`` the dataset's own ids) and, with ``overlay``, ``<stem>_overlay.png``
    (RGB: the image blended with the class colours), each atomically. ``prepared``: a prepared-dataset folder
    whose dataset.json gives the class set (its classes must be the checkpoint's). An unreadable image is a
    UserError, or with ``skip_unreadable`` a message in the result; every image unreadable is a UserError.
    """
    if ids not in ID_KINDS:
        raise UserError(f"unknown --ids {ids!r}; expected one of {', '.join(ID_KINDS)}")
    jobs = find_images(source, out)
    _refuse_clashes(jobs, out, overlay)
    spec = load_spec(prepared) if prepared is not None else None
    model, checkpoint = load_checkpoint(model_path, expect_classes=None if spec is None else list(spec.classes.names))
    classes = spec.classes if spec is not None else class_set_named(checkpoint["class_names"])
    table = dataset_id_table(classes) if ids == "dataset" else None
    colours = np.asarray(classes.colors, np.uint8)
    device = pick_device()
    model = model.to(device).eval()
    inference = replace(inference, precision=resolve_precision(device, inference.precision, checkpoint["arch"]))
    written, skipped = 0, []
    for image_path, stem in track(jobs, desc="predict", unit="img"):
        try:
            image = load_image(image_path)
        except UserError as exc:
            if not skip_unreadable:
                raise
            skipped.append(str(exc))
            continue
        labels = predict_labels(model, normalize_image(image).to(device), image.shape[:2], **inference.as_kwargs())
        label_path, overlay_path = output_paths(out, stem)
        _write_png(label_path, labels if table is None else table[labels])
        if overlay:
            _write_png(overlay_path, blend_overlay(image, labels, colours))
        written += 1
    if not written:
        raise UserError(f"{source}: none of its {len(jobs)} images could be read; the first: {skipped[0]}")
    return Segmented(written, tuple(skipped))
