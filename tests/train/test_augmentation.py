"""Augmentation recipes: the one-line form in params.yaml, the β shorthand, and each transform as stated."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_lib.errors import UserError
from pipeline_lib.params import Params
from pipeline_lib.settings import TrainSettings
from pipeline_lib.augmentation_recipe import AugmentationSettings
from pipeline_lib.train.augmentation import (MEAN_COLOUR, augment, colour_jitter, gaussian_blur, gaussian_kernel,
                                             random_crop)
from pipeline_project import REPO

AUTHORS_ROUND_0 = "scale 0.25-1.0, rotate 10 p0.5, blur 5x5 p0.5, flip, pad centre"


def test_the_authors_recipe_reads_as_written():
    recipe = AugmentationSettings.parse(AUTHORS_ROUND_0)
    assert recipe == AugmentationSettings(scale=(0.25, 1.0), rotation=10.0, rotation_p=0.5, blur_kernel=5,
                                          blur_p=0.5, jitter=0.0, flip_p=0.5, padding="centre")
    # Order and spacing do not matter; a part left out is off.
    assert AugmentationSettings.parse("pad centre,flip ,blur 5x5 p0.5, rotate 10 p0.5,scale 0.25-1.0") == recipe
    assert AugmentationSettings.parse("flip p1") == AugmentationSettings(flip_p=1.0)


def test_beta_is_the_one_strength_recipe():
    assert AugmentationSettings.parse("beta 1.5") == AugmentationSettings(
        scale=(0.25, 1.75), rotation=15.0, blur_radius=1.5, blur_p=0.5, jitter=0.3 * 1.5, flip_p=0.5)
    assert AugmentationSettings.parse("beta 0") == AugmentationSettings.parse("none") == AugmentationSettings()


@pytest.mark.parametrize("text, problem", [
    ("scale 1.0-0.5", "need 0 < low <= high"),
    ("rotate 10 0.5", "written pP"),
    ("blur 4x4 p0.5", "square and odd"),
    ("blur 5x5", "without its probability"),
    ("flip p1.5", r"in \(0, 1\]"),
    ("jitter 1.2", r"in \[0, 1\)"),
    ("flip, flip", "names 'flip' twice"),
    ("colour 0.3", "none of: scale A-B"),
    ("beta -1", "β must be >= 0"),
    ("scale 0.5-x", "'x' is not a number"),
])
def test_a_bad_recipe_is_one_line_naming_the_key_and_part(text, problem):
    data = yaml_params()
    data["train"]["augmentation"] = text
    with pytest.raises(UserError, match=rf"params\.yaml: 'train\.augmentation' .*{problem}.*, got '{text}'"):
        TrainSettings.from_params(Params(data), "r0")


def test_old_strength_keys_are_refused_with_their_replacement():
    data = yaml_params()
    data["train"]["aug_strength"] = 1.0
    with pytest.raises(UserError, match="'train.aug_strength' was replaced by train.augmentation"):
        TrainSettings.from_params(Params(data), "r0")
    data = yaml_params()
    data["rounds"]["r1"]["aug_strength"] = 1.0
    with pytest.raises(UserError, match="'rounds.r1.aug_strength' is not a round setting .*augmentation"):
        TrainSettings.from_params(Params(data), "r1")


def test_a_round_sets_one_recipe_for_both_sources_or_one_per_source():
    data = yaml_params()
    data["rounds"]["r1"]["augmentation"] = AUTHORS_ROUND_0
    both = TrainSettings.from_params(Params(data), "r1")
    assert both.labeled_augmentation == both.pseudo_augmentation == AugmentationSettings.parse(AUTHORS_ROUND_0)
    data["rounds"]["r1"]["augmentation"] = {"pseudo": "beta 2"}
    split = TrainSettings.from_params(Params(data), "r1")
    assert split.labeled_augmentation == AugmentationSettings.parse(data["train"]["augmentation"])
    assert split.pseudo_augmentation == AugmentationSettings.from_beta(2.0)
    data["rounds"]["r1"]["augmentation"] = {"unlabeled": "none"}
    with pytest.raises(UserError, match="'rounds.r1.augmentation.unlabeled' is not a source"):
        TrainSettings.from_params(Params(data), "r1")


def test_kernel_blur_is_opencvs_5x5_gaussian():
    kernel = gaussian_kernel(5)  # OpenCV: σ = 0.3·((5 − 1)·0.5 − 1) + 0.8 = 1.1
    expected = np.exp(-np.arange(-2, 3) ** 2 / (2 * 1.1**2))
    np.testing.assert_allclose(kernel, expected / expected.sum())
    image = np.zeros((9, 9, 3), np.uint8)
    image[4, 4] = 200
    expected = np.zeros((9, 9), np.uint8)
    expected[2:7, 2:7] = np.rint(200 * np.outer(kernel, kernel))  # an impulse spreads to the kernel itself
    np.testing.assert_array_equal(gaussian_blur(image, 5)[..., 0], expected)
    flat = np.full((6, 7, 3), 90, np.uint8)  # mirrored borders: a flat image stays flat
    np.testing.assert_array_equal(gaussian_blur(flat, 5), flat)


def test_centre_padding_puts_the_image_in_the_middle_on_the_mean_colour():
    image = np.full((4, 6, 3), 7, np.uint8)
    label = np.full((4, 6), 3, np.uint8)
    out_image, out_label = random_crop(image, label, np.random.default_rng(0), 10, "centre")
    assert out_image.shape == (10, 10, 3)
    np.testing.assert_array_equal(out_label[3:7, 2:8], 3)  # 6 rows and 4 columns of padding, split evenly
    assert (out_label == 255).sum() == 100 - 24
    np.testing.assert_array_equal(out_image[0, 0], MEAN_COLOUR)
    _, corner = random_crop(image, label, np.random.default_rng(0), 10, "corner")
    np.testing.assert_array_equal(corner[:4, :6], 3)


def test_rotation_probability_rotates_about_that_share():
    image = np.full((40, 40, 3), 50, np.uint8)
    label = np.zeros((40, 40), np.uint8)
    recipe = AugmentationSettings.parse("rotate 30 p0.5")
    rotated = [(augment(image, label, np.random.default_rng(seed), recipe, 40)[1] == 255).any()
               for seed in range(400)]  # a rotated full-size crop has ignored corners
    assert 0.4 < np.mean(rotated) < 0.6


def test_each_transform_draws_only_when_on():
    """Off transforms draw nothing: the β shorthand keeps the draws of the one-strength versions."""
    image = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    label = np.zeros((50, 70), np.uint8)
    crop_only = augment(image, label, np.random.default_rng(9), AugmentationSettings(), 32)
    rng = np.random.default_rng(9)
    top, left = int(rng.integers(0, 50 - 32 + 1)), int(rng.integers(0, 70 - 32 + 1))
    np.testing.assert_array_equal(crop_only[0], image[top:top + 32, left:left + 32])


def test_colour_jitter_is_bit_for_bit_the_textbook_formula():
    """The jitter's channel mean, summed by hand, gives numpy's mean(axis=2) bits: training's batches stay what
    they were."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 256, (33, 47, 3)).astype(np.float32)
        b, c, s = np.random.default_rng(seed + 100).uniform(0.6, 1.4, size=3)
        expected = image * b
        gray = expected.mean(axis=2, keepdims=True)
        expected = gray + (expected - gray) * s
        mean = expected.mean()
        expected = mean + (expected - mean) * c
        np.testing.assert_array_equal(colour_jitter(image, np.random.default_rng(seed + 100), 0.4), expected)


def test_without_jitter_the_crop_keeps_its_bytes():
    image = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    label = np.zeros((40, 40), np.uint8)
    out, _ = augment(image, label, np.random.default_rng(0), AugmentationSettings.parse("flip p1.0"), 40)
    np.testing.assert_array_equal(out, image[:, ::-1])
    assert out.flags.c_contiguous and out.flags.writeable


def yaml_params() -> dict:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())
