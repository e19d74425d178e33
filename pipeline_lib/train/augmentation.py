"""Training augmentation as plain functions: strength-scaled random scale, rotation, crop, blur, colour jitter
and flip of an (image, label) pair."""

from __future__ import annotations

import numpy as np


def scale_range(strength: float) -> tuple[float, float]:
    return max(0.25, 1.0 - 0.5 * strength), 1.0 + 0.5 * strength


def augment(image: np.ndarray, label: np.ndarray, rng: np.random.Generator, strength: float,
            crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, rotation, crop, blur, colour jitter and flip of an (image, label) pair."""
    from PIL import Image, ImageFilter

    angle = 0.0
    if strength > 0:
        low, high = scale_range(strength)
        scale = rng.uniform(low, high)
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
        angle = rng.uniform(-10.0 * strength, 10.0 * strength)
    # Rotate only a window just large enough to hold the rotated crop, and blur / jitter only the crop:
    # on full-resolution frames (Cityscapes) doing them on the whole frame dominated the step time.
    radians = np.deg2rad(angle)
    window = crop_size if angle == 0 else int(np.ceil(crop_size * (abs(np.cos(radians)) + abs(np.sin(radians))))) + 2
    image, label = random_crop(image, label, rng, window)
    if angle != 0:
        offset = (window - crop_size) // 2
        box = (offset, offset, offset + crop_size, offset + crop_size)
        image = np.asarray(Image.fromarray(image).rotate(angle, Image.BILINEAR, fillcolor=(124, 116, 104)).crop(box))
        label = np.asarray(Image.fromarray(label).rotate(angle, Image.NEAREST, fillcolor=255).crop(box))
    if strength > 0 and rng.random() < min(0.5, 0.5 * strength):
        radius = rng.uniform(0.1, max(0.1, strength))
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    image = image.astype(np.float32)
    if strength > 0:
        image = colour_jitter(image, rng, 0.3 * strength)
    if strength > 0 and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    return np.ascontiguousarray(image.clip(0, 255).astype(np.uint8)), np.ascontiguousarray(label)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness, contrast and saturation factors drawn from [1 - amount, 1 + amount]."""
    brightness, contrast, saturation = rng.uniform(max(0.0, 1 - amount), 1 + amount, size=3)
    image = image * brightness
    gray = image.mean(axis=2, keepdims=True)
    image = gray + (image - gray) * saturation
    return image.mean() + (image - image.mean()) * contrast


def random_crop(image: np.ndarray, label: np.ndarray, rng: np.random.Generator,
                crop_size: int) -> tuple[np.ndarray, np.ndarray]:
    """A crop_size² window; images smaller than the crop are padded (label 255, image grey)."""
    height, width = label.shape
    pad_h, pad_w = max(0, crop_size - height), max(0, crop_size - width)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=124)
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=255)
        height, width = label.shape
    top = int(rng.integers(0, height - crop_size + 1))
    left = int(rng.integers(0, width - crop_size + 1))
    return (image[top:top + crop_size, left:left + crop_size],
            label[top:top + crop_size, left:left + crop_size])
