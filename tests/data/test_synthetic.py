"""The embedded synthetic street-scene dataset: determinism, long-tailed statistics, layout, preparation."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline_lib.atomic import atomic_path
from pipeline_lib.data import prepared as datasets
from pipeline_lib.data.image_files import load_image
from pipeline_lib.data.classes import CITYSCAPES, class_shares
from pipeline_lib.data.synthetic.classes import TARGET_SHARES
from pipeline_lib.data.synthetic.dataset import prepare_synthetic
from pipeline_lib.data.synthetic.render import CAMERA_HEIGHT, Camera, billboard
from pipeline_lib.data.synthetic.scene import generate_scene
from pipeline_lib.errors import UserError
from pipeline_lib.settings import SyntheticSettings
from pipeline_project import REPO

NUM_CLASSES = CITYSCAPES.num_classes
SAMPLE_SIZE = (64, 128)  # small but with Cityscapes' 1:2 aspect
SAMPLE_IMAGES = 200
HEAD = [i for i in range(NUM_CLASSES) if TARGET_SHARES[i] >= 0.04]  # road, sidewalk, building, vegetation, sky, car
TAIL = [i for i in range(NUM_CLASSES) if TARGET_SHARES[i] < 0.04]
NAMES = CITYSCAPES.names


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) images and (N, H, W) labels of a fixed sample of the dataset (seed 0)."""
    pairs = [generate_scene(0, i, *SAMPLE_SIZE) for i in range(SAMPLE_IMAGES)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def valid_shares(labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels.ravel(), minlength=256)[:NUM_CLASSES]
    return counts / counts.sum()


# --- Determinism ------------------------------------------------------------------------------------

def test_same_seed_and_index_give_identical_bytes() -> None:
    first = generate_scene(7, 3, 64, 128)
    generate_scene(7, 4, 64, 128)  # whatever comes in between must not matter
    second = generate_scene(7, 3, 64, 128)
    assert first[0].tobytes() == second[0].tobytes()
    assert first[1].tobytes() == second[1].tobytes()


def test_different_seed_or_index_gives_different_images() -> None:
    base = generate_scene(7, 3, 64, 128)
    for other in (generate_scene(8, 3, 64, 128), generate_scene(7, 4, 64, 128)):
        assert not np.array_equal(base[0], other[0])
        assert not np.array_equal(base[1], other[1])


def test_parallel_generation_matches_serial() -> None:
    indices = [5, 0, 3, 1]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = list(pool.map(lambda i: generate_scene(11, i, 64, 96), indices))
    for i, (image, label) in zip(indices, parallel):
        serial_image, serial_label = generate_scene(11, i, 64, 96)
        assert np.array_equal(image, serial_image) and np.array_equal(label, serial_label)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, 10**6),
       height=st.integers(64, 96), width=st.integers(64, 160))
def test_any_scene_is_well_formed(seed: int, index: int, height: int, width: int) -> None:
    image, label = generate_scene(seed, index, height, width)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    assert label.shape == (height, width) and label.dtype == np.uint8
    values = np.unique(label)
    assert np.all((values < NUM_CLASSES) | (values == 255)), values
    # Ignore (ego-vehicle bonnet, unlabelled clutter) stays a small part of any image.
    assert (label != 255).mean() >= 0.85
    # The image is not a flat colour: there is structure to learn.
    assert image.std() > 10


# --- Long-tailed class statistics --------------------------------------------------------------------

def test_class_shares_follow_the_cityscapes_long_tail(sample) -> None:
    """Average shares of valid pixels over 200 images are near Cityscapes' shares.

    Tolerances come from the spread of 200-image averages (bench/bench_synthetic.py --images 3000
    --size 64 128): head classes (>= 4 %) vary by at most ~6 % relative (car), so +-30 % relative
    covers 5 standard deviations plus the calibration bias (<= 10 %). Tail classes are a few rare
    instances each: their averages vary by up to 0.13 percentage points (train), so they get an
    absolute +-0.4 pp (> 3 sd), still well below every head class's share.
    """
    shares = valid_shares(sample[1])
    for c in HEAD:
        assert abs(shares[c] - TARGET_SHARES[c]) <= 0.3 * TARGET_SHARES[c], (NAMES[c], shares[c], TARGET_SHARES[c])
    for c in TAIL:
        assert abs(shares[c] - TARGET_SHARES[c]) <= 0.004, (NAMES[c], shares[c], TARGET_SHARES[c])
    # The ordering is Cityscapes': rank correlation of generated and target shares.
    ranks = np.argsort(np.argsort(shares)), np.argsort(np.argsort(TARGET_SHARES))
    assert np.corrcoef(*ranks)[0, 1] > 0.9


def test_every_class_appears_and_rare_ones_are_rare_per_image(sample) -> None:
    labels = sample[1]
    present = np.stack([(labels == c).any(axis=(1, 2)) for c in range(NUM_CLASSES)], axis=1).mean(axis=0)
    assert (present > 0).all(), [NAMES[c] for c in np.flatnonzero(present == 0)]
    for name in ("truck", "bus", "train", "motorcycle", "rider"):  # absent from most images, like real data
        assert present[NAMES.index(name)] < 0.35, (name, present[NAMES.index(name)])
    for name in ("road", "building", "vegetation", "pole"):
        assert present[NAMES.index(name)] > 0.9, (name, present[NAMES.index(name)])


def test_ignore_share_is_small(sample) -> None:
    assert 0.001 < (sample[1] == 255).mean() < 0.1


def test_colour_alone_does_not_separate_the_classes(sample) -> None:
    """The best colour-only classifier (majority class per RGB bin, fitted on half of the sample)
    gets the head classes partly right but almost never a tail class."""
    images, labels = sample
    rgb = images.reshape(len(images), -1, 3).astype(np.int64) // 16
    bins = rgb[..., 0] * 256 + rgb[..., 1] * 16 + rgb[..., 2]
    flat = labels.reshape(len(labels), -1).astype(np.int64)
    half = len(images) // 2
    fit = flat[:half] < NUM_CLASSES
    table = np.bincount(bins[:half][fit] * NUM_CLASSES + flat[:half][fit], minlength=4096 * NUM_CLASSES)
    predicted = table.reshape(4096, NUM_CLASSES).argmax(axis=1)[bins[half:]]
    truth = flat[half:]
    valid = truth < NUM_CLASSES
    accuracy = (predicted[valid] == truth[valid]).mean()
    tail_recall = np.mean([(predicted[truth == c] == c).mean() for c in TAIL if (truth == c).any()])
    assert 0.3 < accuracy < 0.8, accuracy
    assert tail_recall < 0.15, tail_recall


# --- Layout and perspective --------------------------------------------------------------------------

def test_street_layout_sky_above_buildings_above_road(sample) -> None:
    labels = sample[1]
    rows = np.arange(labels.shape[1])[None, :, None]

    def mean_row(name: str) -> float:
        mask = labels == NAMES.index(name)
        return float((rows * mask).sum() / mask.sum())

    assert mean_row("sky") < mean_row("building") < mean_row("sidewalk") < mean_row("road")
    bottom = labels[:, -labels.shape[1] // 8:]
    assert (bottom == NAMES.index("road")).mean() > 0.5  # the camera drives on the road


def test_nearer_objects_are_bigger_and_lower() -> None:
    cam = Camera(height=128, width=256, focal=280.0, horizon=50.0, center_x=128.0)
    near = billboard(cam, 1.0, 10.0, -0.3, 0.3, 0.0, 1.8)
    far = billboard(cam, 1.0, 20.0, -0.3, 0.3, 0.0, 1.8)
    height = lambda w: w.rows.stop - w.rows.start  # noqa: E731
    assert abs(height(near) / height(far) - 2.0) < 0.15
    assert near.rows.stop > far.rows.stop  # feet lower in the image
    # A point at camera height lies on the horizon at any depth.
    eye = billboard(cam, 0.0, 15.0, -0.1, 0.1, CAMERA_HEIGHT - 0.05, CAMERA_HEIGHT + 0.05)
    assert eye.rows.start <= cam.horizon <= eye.rows.stop


# --- prepare_synthetic --------------------------------------------------------------------------------

def test_prepare_round_trip(tmp_path: Path) -> None:
    final = tmp_path / "prepared"
    with atomic_path(final) as out_dir:  # as the prepare stage does
        prepare_synthetic(out_dir, SyntheticSettings(seed=3, num_train_images=8, num_val_images=3, image_size=(64, 96)),
                          num_labeled=2)
    spec = datasets.load_spec(final)
    assert spec.name == "synthetic" and spec.classes == CITYSCAPES
    labeled = datasets.read_split(final, "labeled", spec)
    unlabeled = datasets.read_split(final, "unlabeled", spec)
    val = datasets.read_split(final, "val", spec)
    assert [s.id for s in labeled] == ["train_00000", "train_00001"]
    assert [s.id for s in unlabeled] == [f"train_{i:05d}" for i in range(2, 8)]
    assert [s.id for s in val] == ["val_00000", "val_00001", "val_00002"]
    assert all(s.label is not None for s in unlabeled)  # ground truth for pseudo-label accuracy

    for position, s in enumerate(labeled + unlabeled + val):
        image = load_image(s.image)
        label = datasets.load_label(s.label, spec, image.shape[:2])
        with Image.open(s.label) as png:
            assert png.mode == "L"
        expected_image, expected_label = generate_scene(3, position, 64, 96)  # val continues the indices
        assert np.array_equal(image, expected_image) and np.array_equal(label, expected_label)

    report = json.loads((final / "generated_distribution.json").read_text())
    per_class = report["shares_of_valid_pixels"]
    assert list(per_class) == list(NAMES)
    assert per_class["road"]["target"] == pytest.approx(TARGET_SHARES[0], abs=1e-6)
    labeled_labels = np.stack([datasets.load_label(s.label, spec) for s in labeled])
    assert [per_class[n]["labeled"] for n in NAMES] == pytest.approx(valid_shares(labeled_labels).tolist(), abs=1e-6)
    assert sum(per_class[n]["train"] for n in NAMES) == pytest.approx(1.0, abs=1e-4)
    assert report["pixels"] == {"train": 8 * 64 * 96, "labeled": 2 * 64 * 96, "val": 3 * 64 * 96}
    assert class_shares(datasets.load_class_distribution(final)) == pytest.approx(valid_shares(labeled_labels),
                                                                         abs=1e-9)


@pytest.mark.parametrize("overrides, key", [
    ({"labeled_fraction": 0.0}, "data.labeled_fraction"),
    ({"labeled_fraction": 1.0}, "data.labeled_fraction"),
    ({"labeled_fraction": "half"}, "data.labeled_fraction"),
    ({"labeled_fraction": 0.01}, "data.labeled_fraction"),  # rounds to no labelled image
    ({"labeled_fraction": 0.99}, "data.labeled_fraction"),  # rounds to no unlabelled image
    ({"labeled_count": 10}, "data.labeled_count"),  # no unlabelled image
    ({"image_size": (32, 128)}, "synthetic.image_size"),
    ({"image_size": (64,)}, "synthetic.image_size"),
    ({"image_size": (64.5, 128)}, "synthetic.image_size"),
    ({"num_train_images": 1}, "synthetic.num_train_images"),
    ({"num_val_images": 0}, "synthetic.num_val_images"),
    ({"seed": -1}, "synthetic.seed"),
    ({"seed": 1.5}, "synthetic.seed"),
])
def test_prepare_rejects_bad_parameters(tmp_path: Path, overrides: dict, key: str) -> None:
    from stages.prepare import prepare

    synthetic = {"seed": 0, "num_train_images": 10, "num_val_images": 2, "image_size": [64, 64]}
    data = {"dataset": "synthetic", "root": str(REPO / "pipeline_lib" / "data" / "synthetic"), "labeled_fraction": 0.2,
            "split_seed": 0}
    for name, value in overrides.items():
        (data if name.startswith("labeled_") else synthetic)[name] = list(value) if isinstance(value, tuple) else value
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": data, "synthetic": synthetic}))
    with pytest.raises(UserError, match=f"'{key}'"):
        prepare(params=params, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # validated before anything is written


def test_synthetic_dataset_honours_labeled_count(tmp_path: Path) -> None:
    from stages.prepare import prepare

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"dataset": "synthetic", "root": str(REPO / "pipeline_lib" / "data" / "synthetic"),
                 "labeled_fraction": 0.5, "labeled_count": 3, "split_seed": 0},
        "synthetic": {"seed": 0, "num_train_images": 8, "num_val_images": 1, "image_size": [64, 64]}}))
    prepare(params=params, out=tmp_path / "out")
    assert len(datasets.read_split(tmp_path / "out", "labeled")) == 3
    assert len(datasets.read_split(tmp_path / "out", "unlabeled")) == 5
