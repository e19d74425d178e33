"""Every image a user has, read as a viewer shows it or refused at prepare in one line: 16-bit, EXIF-rotated,
empty, truncated and over-limit files (image_files.py), names with spaces (the prepared lists), and the same
folder through a real `dvc repro`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fixtures import make_folder_fixture
from pipeline_lib.data.folder import prepare_folder
from pipeline_lib.data.image_files import image_size, load_image, load_mask_values
from pipeline_lib.data.prepared import LIST_HEADER, load_label, load_spec, parse_list, read_split
from pipeline_lib.errors import UserError
from pipeline_project import REPO, dvc, make_project

ROTATED_CLOCKWISE = 6  # EXIF orientation: the displayed image is the stored one turned 90° clockwise


def save_with_orientation(path: Path, array: np.ndarray, orientation: int = ROTATED_CLOCKWISE) -> None:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


def test_sixteen_bit_greyscale_keeps_its_range(tmp_path):
    grey = np.random.default_rng(0).integers(0, 85, size=(12, 10)).astype(np.uint16)  # mean about 42
    Image.fromarray(grey * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = load_image(tmp_path / "deep.png")
    assert image.shape == (12, 10, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, :, 0], grey)  # not whitened: PIL's convert("RGB") clips to 255
    assert abs(float(image.mean()) - float(grey.mean())) < 1e-9


def test_float_images_are_refused(tmp_path):
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(UserError, match=r"float\.tif: floating-point image \(mode F\)"):
        load_image(tmp_path / "float.tif")


@pytest.mark.parametrize("shape", [(8, 12), (10, 10)], ids=["portrait", "square"])
def test_exif_orientation_is_applied_to_images_masks_and_sizes(tmp_path, shape):
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    save_with_orientation(tmp_path / "photo.png", stored)
    displayed = np.rot90(stored, k=-1)
    np.testing.assert_array_equal(load_image(tmp_path / "photo.png"), displayed)
    assert image_size(tmp_path / "photo.png") == displayed.shape[:2]
    mask = rng.integers(0, 3, size=shape, dtype=np.uint8)
    save_with_orientation(tmp_path / "mask.png", mask)
    np.testing.assert_array_equal(load_mask_values(tmp_path / "mask.png"), np.rot90(mask, k=-1))


@pytest.mark.parametrize("content, reason", [(b"", "empty file"), (b"not an image", "cannot identify"),
                                             ("truncated", "truncated")])
def test_unreadable_files_are_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    if content == "truncated":
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(UserError, match=rf"{path}: cannot read image \(.*{reason}") as caught:
        load_image(path)
    assert "\n" not in str(caught.value)


def test_an_image_over_the_decompression_limit_is_refused(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 pixels: over twice the limit
    for read in (load_image, image_size):
        with pytest.raises(UserError, match=r"huge\.png: image too large to read"):
            read(tmp_path / "huge.png")


def test_lists_hold_names_with_spaces_and_refuse_the_old_format(tmp_path):
    root = make_folder_fixture(tmp_path / "data")
    for path in sorted((root / "images").rglob("*_00[0-4].*")):  # a labelled, an unlabelled and a val image
        mask = root / "masks" / path.parent.name / f"{path.stem}.png"
        spaced = f"my photo #{path.stem}"
        path.rename(path.with_name(spaced + path.suffix))
        if mask.is_file():
            mask.rename(mask.with_name(spaced + ".png"))
    prepare_folder(tmp_path / "prepared", root)
    spec = load_spec(tmp_path / "prepared")
    samples = [s for split in ("labeled", "unlabeled", "val") for s in read_split(tmp_path / "prepared", split, spec)]
    assert sum(" " in s.image.name for s in samples) >= 3
    for s in samples:
        assert s.image.is_file() and (s.label is None or s.label.is_file()) and s.id == s.image.stem
    old = (tmp_path / "prepared" / "splits" / "val.txt").read_text().split("\n", 1)[1].replace("\t", " ")
    with pytest.raises(UserError, match="not a split list of this version .* prepare again: dvc repro prepare"):
        parse_list(old, root, "val.txt")
    assert parse_list(f"{LIST_HEADER}\na b.png\tc d.png\n", root, "x")[0].label == root / "c d.png"


def prepare_cli(tmp_path: Path, root: Path) -> subprocess.CompletedProcess:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(dataset="folder", root=str(root))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, "-m", "stages.cli", "prepare", "--params", "params.yaml", "--out",
                           "prepared"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("split", ["labeled", "unlabeled", "val"])
def test_prepare_refuses_an_empty_image_of_any_split_in_one_line(tmp_path, split):
    root = make_folder_fixture(tmp_path / "data")
    empty = sorted((root / "images" / split).iterdir())[0]
    empty.write_bytes(b"")
    result = prepare_cli(tmp_path, root)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: {empty}: cannot read image (empty file)"
    assert not (tmp_path / "prepared").exists()


def test_prepare_refuses_a_mask_drawn_on_the_stored_not_the_displayed_image(tmp_path):
    root = make_folder_fixture(tmp_path / "data")
    image = sorted((root / "images" / "val").glob("*.png"))[0]
    save_with_orientation(image, np.asarray(Image.open(image)))  # stored 32 wide, 24 high: displayed 24 x 32
    result = prepare_cli(tmp_path, root)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {root / 'masks' / 'val' / image.name}: label size 32x24 differs from "
                                     "its image size 24x32")


@pytest.mark.slow
def test_the_pipeline_trains_and_pseudo_labels_spaced_rotated_and_sixteen_bit_images(tmp_path_factory):
    root = make_folder_fixture(tmp_path_factory.mktemp("data") / "my data", size=(32, 32))
    for split in ("labeled", "unlabeled", "val"):
        image = sorted((root / "images" / split).glob("*.png"))[0]
        mask = root / "masks" / split / image.name
        spaced = image.with_name(f"phone photo {image.name}")
        pixels = np.asarray(Image.open(image))
        save_with_orientation(spaced, np.rot90(pixels, k=1))  # stored turned back: displayed as the mask
        image.unlink()
        if mask.is_file():
            mask.rename(mask.with_name(spaced.name))
        jpeg = sorted((root / "images" / split).glob("*.jpg"))[0]  # becomes a 16-bit greyscale PNG
        Image.fromarray(np.asarray(Image.open(jpeg).convert("L")).astype(np.uint16) * 257).save(
            jpeg.with_suffix(".png"))
        jpeg.unlink()
    project = make_project(tmp_path_factory.mktemp("spaced"), {
        "data": {"dataset": "folder", "root": str(root)}, "train": {"iterations": 2, "crop_size": 32},
        "rounds": {"r1": {"teacher": "r0", "init": "teacher", "labeling_ratio": 0.5, "iterations": 2}}})
    dvc(project, "repro", "evaluate@r1")
    prepared = project / "data" / "prepared"
    assert any(" " in s.image.name for s in read_split(prepared, "unlabeled"))
    labels = [load_label(s.label, load_spec(prepared)) for s in read_split(prepared, "val")]
    assert all(label.shape == (32, 32) for label in labels)
    assert (project / "outputs" / "r1" / "metrics.json").is_file()


def test_prepare_refuses_an_image_over_the_pixel_limit_in_one_line(tmp_path, monkeypatch):
    root = make_folder_fixture(tmp_path / "data")  # 24x32 images: 768 pixels
    big = sorted((root / "images" / "unlabeled").glob("*.png"))[0]
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 pixels: over twice the limit, the others under it
    with pytest.raises(UserError, match=rf"{big}: image too large to read") as caught:
        prepare_folder(tmp_path / "prepared", root)
    assert "\n" not in str(caught.value) and not (tmp_path / "prepared").exists()
