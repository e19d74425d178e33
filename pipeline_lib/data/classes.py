"""Class sets: names, colours and the ignore value of a dataset's label space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline_lib.errors import UserError

IGNORE_INDEX = 255


def class_shares(values) -> np.ndarray:
    """(C,) float64 ``values`` / their sum: the one normalisation of per-class pixel counts or shares into a
    distribution (all zeros when the sum is 0, e.g. a rule that labelled nothing)."""
    array = np.asarray(values, np.float64)
    total = array.sum()
    return array / total if total > 0 else np.zeros_like(array)


@dataclass(frozen=True)
class ClassSet:
    """The label space of a dataset: train id ``i`` is ``names[i]``, drawn in ``colors[i]``."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.names) != len(self.colors):
            raise UserError(f"class set has {len(self.names)} names but {len(self.colors)} colours")
        if not 1 <= len(self.names) <= 255:
            raise UserError(f"class set must have 1..255 classes, got {len(self.names)}")
        if 0 <= self.ignore_index < len(self.names):
            raise UserError(f"ignore value {self.ignore_index} collides with a class id")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self, ignore_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
        """A (256, 3) uint8 lookup table: ``palette[mask]`` colours a label mask."""
        table = np.zeros((256, 3), np.uint8)
        table[: self.num_classes] = np.asarray(self.colors, np.uint8)
        if 0 <= self.ignore_index < 256:
            table[self.ignore_index] = ignore_color
        return table

    def to_dict(self) -> dict:
        return {"names": list(self.names), "colors": [list(c) for c in self.colors],
                "ignore_index": self.ignore_index}

    @classmethod
    def from_dict(cls, data: dict, source: str = "class set") -> "ClassSet":
        try:
            names = tuple(str(n) for n in data["names"])
            colors = tuple(tuple(int(v) for v in c) for c in data["colors"])
            ignore = int(data.get("ignore_index", IGNORE_INDEX))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: needs 'names' and 'colors' lists ({exc})") from None
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors):
            raise UserError(f"{source}: every colour must be three integers in 0..255")
        return cls(names, colors, ignore)


def _cityscapes() -> ClassSet:
    # The official table (cityscapesscripts/helpers/labels.py) is stdlib-only to import.
    from cityscapesscripts.helpers.labels import labels

    train = sorted((l for l in labels if 0 <= l.trainId < IGNORE_INDEX), key=lambda l: l.trainId)
    return ClassSet(tuple(l.name for l in train), tuple(tuple(l.color) for l in train))


def cityscapes_label_id_lut() -> np.ndarray:
    """(256,) uint8 map from Cityscapes labelIds to trainIds (everything else -> 255)."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < IGNORE_INDEX:
            lut[label.id] = label.trainId
    return lut


def cityscapes_train_id_to_label_id_lut() -> np.ndarray:
    """(256,) uint8 map from Cityscapes trainIds back to labelIds, the inverse of ``cityscapes_label_id_lut``
    (each trainId 0..18 is one labelId's); 255 and every other value -> 0, "unlabeled", which the Cityscapes
    evaluation ignores."""
    forward = cityscapes_label_id_lut()
    label_ids = np.flatnonzero(forward != IGNORE_INDEX)
    lut = np.zeros(256, np.uint8)
    lut[forward[label_ids]] = label_ids
    return lut


CITYSCAPES = _cityscapes()

# Pascal VOC 2012: 21 classes with the standard bit-interleaved palette.
_VOC_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
              "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
              "sheep", "sofa", "train", "tvmonitor")


def voc_palette_color(index: int) -> tuple[int, int, int]:
    r = g = b = 0
    for bit in range(8):
        r |= ((index >> 0) & 1) << (7 - bit)
        g |= ((index >> 1) & 1) << (7 - bit)
        b |= ((index >> 2) & 1) << (7 - bit)
        index >>= 3
    return (r, g, b)


VOC = ClassSet(_VOC_NAMES, tuple(voc_palette_color(i) for i in range(len(_VOC_NAMES))))

# CamVid in the SegNet tutorial's 11-class version: its class ids and colours; 11 is void (not labelled).
CAMVID = ClassSet(
    ("sky", "building", "pole", "road", "pavement", "tree", "sign-symbol", "fence", "car", "pedestrian",
     "bicyclist"),
    ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
     (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
    ignore_index=11)


def known_class_set(dataset: str) -> ClassSet | None:
    """The class set a ``data.dataset`` kind always has (None where it comes from the data: folder, synthetic)."""
    return {"cityscapes": CITYSCAPES, "camvid": CAMVID, "voc": VOC}.get(dataset)
