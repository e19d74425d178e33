"""Training augmentation as plain functions: random scale, rotation, crop, blur, colour jitter and flip of an
(image, label) pair, as one source's recipe (settings.AugmentationSettings) says.

The random draws happen in a fixed order (scale, rotation, crop, blur, jitter, flip) and a transform that is
off draws nothing, so the ``beta B`` shorthand reproduces the draws of the single-strength versions exactly.
"""

from __future__ import annotations

import numpy as np

from pipeline_lib.augmentation_recipe import AugmentationSettings

GREY = 124  # corner padding of the image (one value for all channels, as earlier versions)
MEAN_COLOUR = (124, 116, 104)  # the ImageNet mean in 0-255: rotation fill and centred padding


def augment(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, recipe: AugmentationSettings,
            crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, rotation, crop, blur, colour jitter and flip of an (image, label) pair."""
    from PIL import Image, ImageFilter

    angle = 0.0
    if recipe.scale is not None:
        scale = rng.uniform(*recipe.scale)
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
    if recipe.rotation > 0 and (recipe.rotation_p >= 1 or rng.random() < recipe.rotation_p):
        angle = rng.uniform(-recipe.rotation, recipe.rotation)
    # Rotate only a window just large enough to hold the rotated crop, and blur / jitter only the crop:
    # on full-resolution frames (Cityscapes) doing them on the whole frame dominated the step time.
    radians = np.deg2rad(angle)
    window = crop_size if angle == 0 else int(np.ceil(crop_size * (abs(np.cos(radians)) + abs(np.sin(radians))))) + 2
    image, label = random_crop(image, label, rng, window, recipe.padding)
    if angle != 0:
        offset = (window - crop_size) // 2
        box = (offset, offset, offset + crop_size, offset + crop_size)
        image = np.asarray(Image.fromarray(image).rotate(angle, Image.BILINEAR, fillcolor=MEAN_COLOUR).crop(box))
        label = np.asarray(Image.fromarray(label).rotate(angle, Image.NEAREST, fillcolor=255).crop(box))
    if recipe.blur_p > 0 and rng.random() < recipe.blur_p:
        if recipe.blur_kernel is not None:
            image = gaussian_blur(image, recipe.blur_kernel)
        else:
            radius = rng.uniform(0.1, max(0.1, recipe.blur_radius))
            image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    if recipe.jitter > 0:  # without it, uint8 → float32 → clip → uint8 gave back the same bytes: skipped
        image = colour_jitter(image.astype(np.float32), rng, recipe.jitter)
        image = np.clip(image, 0, 255, out=image).astype(np.uint8)
    if recipe.flip_p > 0 and rng.random() < recipe.flip_p:
        image, label = image[:, ::-1], label[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def gaussian_kernel(size: int) -> np.ndarray:
    """OpenCV's 1-D Gaussian for a ``size`` kernel and σ = 0 (σ derived from the size: 1.1 for 5)."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size) - (size - 1) / 2
    weights = np.exp(-x**2 / (2 * sigma**2))
    return weights / weights.sum()


def gaussian_blur(image: np.ndarray, size: int) -> np.ndarray:
    """A ``size``×``size`` Gaussian blur (separable, mirrored border as OpenCV's default), rounded to uint8."""
    kernel = gaussian_kernel(size)
    half = size // 2
    padded = np.pad(image.astype(np.float64), ((half, half), (half, half), (0, 0)), mode="reflect")
    rows = sum(kernel[i] * padded[i:i + image.shape[0]] for i in range(size))
    out = sum(kernel[i] * rows[:, i:i + image.shape[1]] for i in range(size))
    return np.rint(out).clip(0, 255).astype(np.uint8)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness, contrast and saturation factors drawn from [1 - amount, 1 + amount]."""
    brightness, contrast, saturation = rng.uniform(max(0.0, 1 - amount), 1 + amount, size=3)
    # gray + (image - gray)·s, then mean + (image - mean)·c, in place: the same float64 operations in the same
    # order (an addition's operands commute exactly), without a new array per step or a second mean.
    image = image * brightness
    # The channel mean as mean(axis=2) computes it, ((r + g) + b) / 3, bit for bit (tests/train compare them),
    # without numpy's reduction machinery over an axis of three: 0.05 against 0.42 ms for a 128² crop.
    gray = image[..., 0:1] + image[..., 1:2]
    gray += image[..., 2:3]
    gray /= 3
    image -= gray
    image *= saturation
    image += gray
    mean = image.mean()
    image -= mean
    image *= contrast
    image += mean
    return image


def random_crop(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, crop_size: int,
                padding: str = "corner") -> tuple[np.ndarray, np.ndarray]:
    """A crop_size² window; images smaller than the crop are padded (label 255): ``corner`` at the bottom and
    right with grey, ``centre`` on both sides (the extra pixel after) with the mean colour, as the authors."""
    height, width = label.shape
    pad_h, pad_w = max(0, crop_size - height), max(0, crop_size - width)
    if pad_h or pad_w:
        before_h, before_w = (pad_h // 2, pad_w // 2) if padding == "centre" else (0, 0)
        spans = ((before_h, pad_h - before_h), (before_w, pad_w - before_w))
        if padding == "centre":
            image = np.stack([np.pad(image[..., c], spans, constant_values=MEAN_COLOUR[c]) for c in range(3)], -1)
        else:
            image = np.pad(image, (*spans, (0, 0)), constant_values=GREY)
        label = np.pad(label, spans, constant_values=255)
        height, width = label.shape
    top = int(rng.integers(0, height - crop_size + 1))
    left = int(rng.integers(0, width - crop_size + 1))
    return (image[top:top + crop_size, left:left + crop_size],
            label[top:top + crop_size, left:left + crop_size])
