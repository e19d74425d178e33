"""The one reader of image and mask files, for every dataset kind, training, inference and predict: pixels as a
viewer shows them, or one line saying why not.

- EXIF orientation is applied (to masks as well), so a phone portrait and the mask drawn on it agree.
- 16-bit greyscale (PIL's ``I;16`` modes, and ``I`` holding 0..65535) becomes 8-bit by its real range (the high
  byte), not clipped: PIL's ``convert("RGB")`` turns a mean of 42 into 242. 32-bit and floating-point images are
  refused: their range is not known.
- An empty, truncated or unidentifiable file, and one over PIL's decompression-bomb limit
  (``Image.MAX_IMAGE_PIXELS``, 178,956,970 pixels by default; set it in code to read larger images), is a
  UserError naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline_lib.errors import UserError

# EXIF orientations 5..8 are a quarter turn (with or without a mirror): the displayed image is the stored one
# with width and height swapped.
QUARTER_TURNS = (5, 6, 7, 8)
EXIF_ORIENTATION = 0x0112
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


@contextmanager
def _opened(path: Path, what: str) -> Iterator[Image.Image]:
    try:
        with Image.open(path) as im:
            yield im
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except Image.DecompressionBombError as exc:
        raise UserError(f"{path}: {what} too large to read ({exc})") from None
    except OSError as exc:  # empty, truncated, not an image (UnidentifiedImageError)
        reason = "empty file" if Path(path).is_file() and Path(path).stat().st_size == 0 else str(exc)
        raise UserError(f"{path}: cannot read {what} ({reason})") from None


def _orientation(im: Image.Image, header_only: bool = False) -> int:
    """The EXIF orientation (1: as stored). ``header_only``: from what opening the file read, without decoding
    pixels (a JPEG's EXIF, a PNG's eXIf chunk before its pixel data; PIL's getexif() would decode a PNG to look
    for one after them, 23 ms for a 2048x1024 image against 0.1)."""
    if header_only and "exif" not in im.info:
        return 1
    try:
        return int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, ValueError, TypeError):  # a damaged EXIF block: show the pixels as stored
        return 1


def _displayed(im: Image.Image) -> Image.Image:
    """The pixels decoded and turned as EXIF says (exif_transpose decodes them; a plain load otherwise)."""
    if _orientation(im) != 1:
        return ImageOps.exif_transpose(im)
    im.load()
    return im


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image as displayed (EXIF orientation applied), from its header only: no pixel is decoded."""
    with _opened(path, "image") as im:
        height, width = im.height, im.width
        return (width, height) if _orientation(im, header_only=True) in QUARTER_TURNS else (height, width)


def load_image(path: Path) -> np.ndarray:
    """An image as (H, W, 3) uint8 RGB, as displayed."""
    with _opened(path, "image") as im:
        im = _displayed(im)
        if im.mode in SIXTEEN_BIT_MODES or im.mode == "I":
            values = np.asarray(im, dtype=np.int64)
            if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
                raise UserError(f"{path}: {im.mode} image values outside 0..65535; convert it to 8 or 16 bits")
            grey = (values >> 8).astype(np.uint8)
            return np.repeat(grey[:, :, None], 3, axis=2)
        if im.mode == "F":
            raise UserError(f"{path}: floating-point image (mode F); its range is not known: convert it to 8 or "
                            "16 bits")
        return np.asarray(im.convert("RGB"))


def load_mask_values(path: Path) -> np.ndarray:
    """A mask's values as (H, W) int64, as displayed: a single-channel or palette image (palette: its indices)."""
    with _opened(path, "label") as im:
        if im.mode not in ("L", "P", "I", *SIXTEEN_BIT_MODES):
            raise UserError(f"{path}: label must be a single-channel or palette PNG, got mode {im.mode}")
        return np.asarray(_displayed(im), dtype=np.int64)
