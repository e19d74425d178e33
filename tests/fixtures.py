"""Tiny datasets in the exact on-disk layouts of Cityscapes, CamVid (SegNet), Pascal VOC (+SBD aug) and the folder
dataset.

Labels are blocky (a coarse random grid of class ids) and each image is its label's class colour plus
noise, so a model can actually learn them; everything is seeded, so two calls give identical bytes.
Import from tests as ``from fixtures import make_cityscapes_fixture`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from pipeline_lib.data.classes import CAMVID, CITYSCAPES, VOC, cityscapes_label_id_lut

CITYSCAPES_LABEL_IDS = tuple(range(34))  # 0..33: the valid ones and the void/ignored ones
GREY = (128, 128, 128)


def block_labels(rng: np.random.Generator, size: tuple[int, int], values: list[int] | np.ndarray,
                 cell: int = 8) -> np.ndarray:
    """(H, W) uint8: a grid of ``cell``-pixel blocks, each one value drawn from ``values``."""
    height, width = size
    grid = rng.choice(np.asarray(values), size=(-(-height // cell), -(-width // cell)))
    return np.kron(grid, np.ones((cell, cell), np.int64))[:height, :width].astype(np.uint8)


def image_for(train_ids: np.ndarray, palette: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8: each pixel its class colour (grey for ignore) plus a little noise."""
    colours = palette[train_ids].astype(np.int16)
    noise = rng.integers(-20, 21, size=colours.shape)
    return np.clip(colours + noise, 0, 255).astype(np.uint8)


def make_cityscapes_fixture(root: Path, cities: tuple[str, ...] = ("aachen", "bochum"),
                            images_per_city: int = 4, size: tuple[int, int] = (32, 64), seed: int = 0,
                            val_cities: tuple[str, ...] = ("frankfurt",), val_images_per_city: int = 3,
                            train_ids: bool = True) -> Path:
    """A Cityscapes tree under ``root``: leftImg8bit + gtFine (labelIds, color, instanceIds, polygons
    and, when ``train_ids``, labelTrainIds) for train (``cities``) and val (``val_cities``)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    lut = cityscapes_label_id_lut()
    palette = CITYSCAPES.palette(ignore_color=GREY)
    for split, split_cities, count in (("train", cities, images_per_city), ("val", val_cities, val_images_per_city)):
        for city in split_cities:
            (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
            (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                stem = f"{city}_{index:06d}_{19 + 7 * index:06d}"
                label_ids = block_labels(rng, size, CITYSCAPES_LABEL_IDS)
                trains = lut[label_ids]
                Image.fromarray(image_for(trains, palette, rng)).save(
                    root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
                gt = root / "gtFine" / split / city
                Image.fromarray(label_ids).save(gt / f"{stem}_gtFine_labelIds.png")
                if train_ids:
                    Image.fromarray(trains).save(gt / f"{stem}_gtFine_labelTrainIds.png")
                Image.fromarray(palette[trains]).save(gt / f"{stem}_gtFine_color.png")
                Image.fromarray(label_ids.astype(np.uint16) * 1000).save(gt / f"{stem}_gtFine_instanceIds.png")
                (gt / f"{stem}_gtFine_polygons.json").write_text(
                    json.dumps({"imgHeight": size[0], "imgWidth": size[1], "objects": []}))
    return root


def make_camvid_fixture(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = (24, 32),
                        seed: int = 0, lists: bool = True) -> Path:
    """CamVid as the SegNet tutorial ships it, under ``root``: ``<split>/`` RGB PNGs, ``<split>annot/``
    single-channel class ids 0..10 with 11 = void, and (when ``lists``) ``<split>.txt`` naming both by the
    authors' absolute paths (/SegNet/CamVid/...). ``counts``: images per split (default 16 train, 3 val, 2 test)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    palette = CAMVID.palette(ignore_color=GREY)
    sequences = ("0001TP", "0006R0", "0016E5")
    for split, count in (counts or {"train": 16, "val": 3, "test": 2}).items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(count):
            name = f"{sequences[index % 3]}_{len(split) * 1000 + 30 * index:06d}.png"
            label = block_labels(rng, size, list(range(12)))  # 11: void
            Image.fromarray(image_for(label, palette, rng)).save(root / split / name)
            Image.fromarray(label).save(root / f"{split}annot" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        if lists:
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def voc_ids(count: int, start: int = 0) -> list[str]:
    """VOC-style ids (``2007_000032``), deterministic and sortable."""
    return [f"{2007 + (i % 5)}_{32 + 7 * i:06d}" for i in range(start, start + count)]


def make_voc_fixture(root: Path, train: int = 5, val: int = 3, extra: int = 6, size: tuple[int, int] = (32, 48),
                     seed: int = 0, aug_masks: bool = True, palette_masks: bool = True,
                     train_aug_list: bool = True) -> Path:
    """A ``VOCdevkit/VOC2012``-like tree at ``root``: JPEGImages, ImageSets/Segmentation/{train,val}.txt,
    SegmentationClass (palette PNGs, train + val only, as shipped), SegmentationClassAug (single-channel,
    train + extra + val) and train_aug.txt (train + extra ids)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    palette = VOC.palette(ignore_color=GREY)
    ids = voc_ids(train + extra + val)
    train_ids, extra_ids, val_ids = ids[:train], ids[train:train + extra], ids[train + extra:]
    sets = root / "ImageSets" / "Segmentation"
    for folder in (root / "JPEGImages", sets):
        folder.mkdir(parents=True, exist_ok=True)
    if aug_masks:
        (root / "SegmentationClassAug").mkdir(exist_ok=True)
    if palette_masks:
        (root / "SegmentationClass").mkdir(exist_ok=True)
    voc_palette = [int(v) for v in VOC.palette(ignore_color=(224, 224, 192)).ravel()]
    for sample_id in ids:
        label = block_labels(rng, size, list(range(21)))
        label[::8, :] = 255  # thin ignore borders, like VOC's object outlines
        Image.fromarray(image_for(label, palette, rng)).save(root / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        if aug_masks:
            Image.fromarray(label).save(root / "SegmentationClassAug" / f"{sample_id}.png")
        if palette_masks and sample_id not in extra_ids:
            mask = Image.fromarray(label)
            mask.putpalette(voc_palette)  # an "L" image becomes "P" with its values kept as indices
            mask.save(root / "SegmentationClass" / f"{sample_id}.png")
    (sets / "train.txt").write_text("\n".join(train_ids) + "\n")
    (sets / "val.txt").write_text("\n".join(val_ids) + "\n")
    if train_aug_list:
        (sets / "train_aug.txt").write_text("\n".join(sorted(train_ids + extra_ids)) + "\n")
    return root


def make_folder_fixture(root: Path, layout: str = "split", labeled: int = 3, unlabeled: int = 4, val: int = 2,
                        unlabeled_masks: bool = False, size: tuple[int, int] = (24, 32), seed: int = 0,
                        names: tuple[str, ...] = ("background", "road", "car"), ignore_index: int = 255,
                        colors: bool = True) -> Path:
    """A folder dataset at ``root``: classes.yaml plus images/ and masks/, in the "split" layout
    (images/{labeled,unlabeled,val}/) or the "flat" one (labelled and val images have masks, unlabelled
    ones do not, unless ``unlabeled_masks``). Images alternate .png and .jpg."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    classes = {"names": list(names), "ignore_index": ignore_index}
    if colors:
        classes["colors"] = [list(VOC.colors[i % 21]) for i in range(len(names))]
    (root / "classes.yaml").write_text(yaml.safe_dump(classes))
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(names)] = [VOC.colors[i % 21] for i in range(len(names))]
    palette[ignore_index] = GREY
    counter = 0
    for split, count in (("labeled", labeled), ("unlabeled", unlabeled), ("val", val)):
        sub = split if layout == "split" else ""
        (root / "images" / sub).mkdir(parents=True, exist_ok=True)
        has_masks = split != "unlabeled" or unlabeled_masks
        if has_masks:
            (root / "masks" / sub).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            stem = f"{split}_{counter:03d}"
            extension = ".png" if counter % 2 == 0 else ".jpg"
            counter += 1
            label = block_labels(rng, size, list(range(len(names))) + [ignore_index])
            Image.fromarray(image_for(label, palette, rng)).save(root / "images" / sub / f"{stem}{extension}")
            if has_masks:
                Image.fromarray(label).save(root / "masks" / sub / f"{stem}.png")
    return root
