from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import make_folder_fixture
from pipeline_lib.data.classes import VOC
from pipeline_lib.data.folder import prepare_folder
from pipeline_lib.data.prepared import load_label, load_spec, read_split
from pipeline_lib.errors import UserError


def ids(prepared: Path, split: str) -> list[str]:
    return [s.id for s in read_split(prepared, split)]


def test_split_folders_without_unlabelled_masks(tmp_path):
    root = make_folder_fixture(tmp_path / "data", layout="split", labeled=3, unlabeled=4, val=2)
    prepare_folder(tmp_path / "p", root, labeled_fraction=0.125, val_fraction=0.5)  # ignored: folders are the split
    assert ids(tmp_path / "p", "labeled") == ["labeled_000", "labeled_001", "labeled_002"]
    assert ids(tmp_path / "p", "val") == ["val_007", "val_008"]
    unlabeled = read_split(tmp_path / "p", "unlabeled")
    assert len(unlabeled) == 4 and all(s.label is None for s in unlabeled)
    assert {s.image.suffix for s in read_split(tmp_path / "p", "labeled")} == {".png", ".jpg"}
    spec = load_spec(tmp_path / "p")
    assert spec.classes.names == ("background", "road", "car")
    assert json.loads((tmp_path / "p" / "split_hashes.json").read_text())["unlabeled"]["images"] == 4


def test_split_folders_keep_unlabelled_masks_as_ground_truth(tmp_path):
    root = make_folder_fixture(tmp_path / "data", layout="split", unlabeled_masks=True)
    prepare_folder(tmp_path / "p", root)
    assert all(s.label is not None and s.label.is_file() for s in read_split(tmp_path / "p", "unlabeled"))


def test_flat_layout_draws_val_and_labelled_from_the_masked_images(tmp_path):
    root = make_folder_fixture(tmp_path / "data", layout="flat", labeled=8, unlabeled=3, val=2)
    prepare_folder(tmp_path / "a", root, labeled_fraction=None, val_fraction=0.2, seed=5)
    val, labeled, unlabeled = (ids(tmp_path / "a", s) for s in ("val", "labeled", "unlabeled"))
    assert (len(val), len(labeled)) == (2, 8)  # round(0.2 * 10) val, all other masked images labelled
    assert unlabeled == ["unlabeled_008", "unlabeled_009", "unlabeled_010"]
    assert all(s.label is None for s in read_split(tmp_path / "a", "unlabeled"))

    prepare_folder(tmp_path / "b", root, labeled_fraction=0.25, val_fraction=0.2, seed=5)
    labeled_b, unlabeled_b = ids(tmp_path / "b", "labeled"), read_split(tmp_path / "b", "unlabeled")
    assert ids(tmp_path / "b", "val") == val and len(labeled_b) == 2 and set(labeled_b) < set(labeled)
    assert len(unlabeled_b) == 9 and sum(s.label is not None for s in unlabeled_b) == 6  # masks kept as truth

    prepare_folder(tmp_path / "c", root, labeled_fraction=0.25, val_fraction=0.2, seed=5)
    for name in ("splits/labeled.txt", "splits/unlabeled.txt", "splits/val.txt", "class_distribution.json"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes()
    prepare_folder(tmp_path / "d", root, labeled_fraction=None, val_fraction=0.2, seed=6)
    assert ids(tmp_path / "d", "val") != val


def test_flat_layout_needs_val_fraction_and_unlabelled_images(tmp_path):
    root = make_folder_fixture(tmp_path / "data", layout="flat", labeled=4, unlabeled=0, val=1)
    with pytest.raises(UserError, match="val_fraction is required"):
        prepare_folder(tmp_path / "p", root)
    with pytest.raises(UserError, match="no unlabelled images"):
        prepare_folder(tmp_path / "p", root, val_fraction=0.2)
    with pytest.raises(UserError, match=r"val_fraction over the 5 masked images"):
        prepare_folder(tmp_path / "p", root, val_fraction=0.01)
    prepare_folder(tmp_path / "p", root, labeled_fraction=0.5, val_fraction=0.2)
    assert len(ids(tmp_path / "p", "labeled")) == 2


def test_ignore_index_other_than_255_is_remapped(tmp_path):
    root = make_folder_fixture(tmp_path / "data", ignore_index=9)
    prepare_folder(tmp_path / "p", root)
    spec = load_spec(tmp_path / "p")
    sample = read_split(tmp_path / "p", "labeled", spec)[0]
    raw = np.asarray(Image.open(sample.label))
    label = load_label(sample.label, spec)
    assert 9 in raw
    np.testing.assert_array_equal(label, np.where(raw == 9, 255, raw))


def test_colors_default_to_the_voc_palette(tmp_path):
    root = make_folder_fixture(tmp_path / "data", colors=False)
    prepare_folder(tmp_path / "p", root)
    assert load_spec(tmp_path / "p").classes.colors == VOC.colors[:3]


@pytest.mark.parametrize("text, message", [
    ("names: [a, b\n", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping"),
    ("names: [a, b]\ncolours: [[1, 2, 3], [4, 5, 6]]\n", r"unknown key\(s\) \['colours'\]"),
    ("names: a\n", "'names' must be a non-empty list"),
    ("names: []\n", "'names' must be a non-empty list"),
    ("names: [a, a]\n", "repeats a class name"),
    ("names: [a, b]\ncolors: [[1, 2, 3]]\n", "one \\[r, g, b\\] per name"),
    ("names: [a, b]\ncolors: [[1, 2, 3], [4, 5, 300]]\n", "three integers in 0..255"),
    ("names: [a, b]\nignore_index: 1\n", "collides with a class id"),
    ("names: [a, b]\nignore_index: -1\n", "'ignore_index' must be an integer in 0..255"),
])
def test_classes_yaml_errors_name_the_file(tmp_path, text, message):
    root = make_folder_fixture(tmp_path / "data")
    (root / "classes.yaml").write_text(text)
    with pytest.raises(UserError, match=message) as info:
        prepare_folder(tmp_path / "p", root)
    assert "classes.yaml" in str(info.value)


def test_missing_classes_yaml_and_root(tmp_path):
    root = make_folder_fixture(tmp_path / "data")
    (root / "classes.yaml").unlink()
    with pytest.raises(UserError, match="classes.yaml: not found"):
        prepare_folder(tmp_path / "p", root)
    with pytest.raises(UserError, match="nowhere: dataset root directory not found"):
        prepare_folder(tmp_path / "p", tmp_path / "nowhere")


def break_split(root: Path, how: str) -> str:
    """Damage a split-layout fixture; return the expected error pattern."""
    masks, images = root / "masks", root / "images"
    if how == "missing val mask":
        (masks / "val" / "val_007.png").unlink()
        return r"masks/val/val_007.png: mask not found for val image"
    if how == "mask without image":
        Image.new("L", (32, 24)).save(masks / "labeled" / "ghost.png")
        return "ghost.png: mask has no image of the same name"
    if how == "jpeg mask":
        Image.new("L", (32, 24)).save(masks / "labeled" / "labeled_001.jpg")
        return "labeled_001.jpg: masks must be PNG"
    if how == "duplicate stem":
        Image.new("RGB", (32, 24)).save(images / "unlabeled" / "unlabeled_003.png")
        return "unlabeled_003.* same name as .*unlabeled_003"
    if how == "same name in two splits":
        Image.new("RGB", (32, 24)).save(images / "unlabeled" / "val_007.png")
        return "image name 'val_007' occurs twice"
    if how == "stray folder":
        (images / "labelled").mkdir()
        return "images/labelled: unexpected folder .* labeled, unlabeled, val"
    if how == "loose image":
        Image.new("RGB", (32, 24)).save(images / "loose.png")
        return "loose.png: images must be inside images/labeled"
    if how == "missing split folder":
        for p in (images / "unlabeled").iterdir():
            p.unlink()
        (images / "unlabeled").rmdir()
        return "images/unlabeled: not found"
    if how == "empty split folder":
        for p in (images / "val").iterdir():
            p.unlink()
        return r"images/val: no images"
    if how == "wrong mask size":
        Image.new("L", (10, 10)).save(masks / "val" / "val_008.png")
        return "val_008.png: label size 10x10 differs from its image size 32x24"
    if how == "mask value out of range":
        Image.fromarray(np.full((24, 32), 7, np.uint8)).save(masks / "val" / "val_008.png")
        return r"val_008.png: label values \[7\] exceed the 3 classes"
    if how == "rgb mask":
        Image.new("RGB", (32, 24)).save(masks / "labeled" / "labeled_000.png")
        return "labeled_000.png: label must be a single-channel"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing val mask", "mask without image", "jpeg mask", "duplicate stem",
                                 "same name in two splits", "stray folder", "loose image", "missing split folder",
                                 "empty split folder", "wrong mask size", "mask value out of range", "rgb mask"])
def test_layout_errors_name_the_file(tmp_path, how):
    root = make_folder_fixture(tmp_path / "data", layout="split", size=(24, 32))
    pattern = break_split(root, how)
    with pytest.raises(UserError, match=pattern):
        prepare_folder(tmp_path / "p", root)
    assert not (tmp_path / "p").exists() or not (tmp_path / "p" / "dataset.json").exists()


def test_flat_layout_errors(tmp_path):
    root = make_folder_fixture(tmp_path / "data", layout="flat")
    (root / "images" / "train").mkdir()
    with pytest.raises(UserError, match="images/train: unexpected folder"):
        prepare_folder(tmp_path / "p", root, val_fraction=0.5)
    (root / "images" / "train").rmdir()
    for mask in (root / "masks").iterdir():
        mask.unlink()
    with pytest.raises(UserError, match="masks: no masks found"):
        prepare_folder(tmp_path / "p", root, val_fraction=0.5)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "classes.yaml").write_text("names: [a, b]\n")
    with pytest.raises(UserError, match="images: no images"):
        prepare_folder(tmp_path / "p", empty, val_fraction=0.5)


def test_hidden_and_non_image_files_are_skipped(tmp_path):
    root = make_folder_fixture(tmp_path / "data", layout="flat", labeled=3, unlabeled=2, val=1)
    for folder in (root / "images", root / "masks"):
        (folder / "notes.txt").write_text("skipped")
        (folder / ".DS_Store").write_text("skipped")
    prepare_folder(tmp_path / "p", root, val_fraction=0.25)
    assert sum(len(ids(tmp_path / "p", s)) for s in ("labeled", "unlabeled", "val")) == 6
