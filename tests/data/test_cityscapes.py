from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import make_cityscapes_fixture
from pipeline_lib.data.cityscapes import prepare_cityscapes
from pipeline_lib.data.classes import cityscapes_label_id_lut
from pipeline_lib.data.prepared import load_label, load_spec, read_split
from pipeline_lib.errors import UserError


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory) -> Path:
    return make_cityscapes_fixture(tmp_path_factory.mktemp("cs") / "cityscapes")


@pytest.fixture(scope="module")
def cityscapes_label_ids_only(tmp_path_factory) -> Path:
    return make_cityscapes_fixture(tmp_path_factory.mktemp("cs_ids") / "cityscapes", train_ids=False)


def copy_of(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


def test_label_id_lut_maps_to_train_ids_and_ignore():
    lut = cityscapes_label_id_lut()
    assert lut[7] == 0 and lut[8] == 1 and lut[26] == 13 and lut[33] == 18  # road, sidewalk, car, bicycle
    assert all(lut[i] == 255 for i in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255))
    assert sorted(set(lut.tolist()) - {255}) == list(range(19))


def test_label_ids_are_mapped_on_the_fly(cityscapes_label_ids_only, tmp_path):
    prepare_cityscapes(tmp_path / "p", cityscapes_label_ids_only, 0.25, seed=0)
    spec = load_spec(tmp_path / "p")
    assert spec.label_lut is not None
    sample = read_split(tmp_path / "p", "labeled", spec)[0]
    assert sample.label.name.endswith("_gtFine_labelIds.png")
    raw = np.asarray(Image.open(sample.label))
    label = load_label(sample.label, spec)
    np.testing.assert_array_equal(label, cityscapes_label_id_lut()[raw])
    assert (label != raw).any() and 255 in label  # really mapped, void ids included


def test_label_ids_and_train_ids_give_the_same_labels(cityscapes, tmp_path):
    prepare_cityscapes(tmp_path / "ids", cityscapes, 0.25, seed=0, label_kind="labelIds")
    prepare_cityscapes(tmp_path / "train", cityscapes, 0.25, seed=0, label_kind="trainIds")
    spec_ids, spec_train = load_spec(tmp_path / "ids"), load_spec(tmp_path / "train")
    for a, b in zip(read_split(tmp_path / "ids", "val", spec_ids), read_split(tmp_path / "train", "val", spec_train)):
        assert a.id == b.id
        ids = load_label(a.label, spec_ids)
        np.testing.assert_array_equal(ids, load_label(b.label, spec_train))
        assert 255 in ids and ids[ids != 255].max() <= 18


def test_train_ids_are_preferred_when_present(cityscapes, tmp_path):
    prepare_cityscapes(tmp_path / "p", cityscapes, 0.25, seed=0)
    assert load_spec(tmp_path / "p").label_lut is None
    for split in ("labeled", "unlabeled", "val"):
        assert all(s.label.name.endswith("_gtFine_labelTrainIds.png") for s in read_split(tmp_path / "p", split))


def test_falls_back_to_label_ids_when_some_train_ids_are_missing(cityscapes, tmp_path):
    root = copy_of(cityscapes, tmp_path)
    next((root / "gtFine" / "val").glob("*/*_labelTrainIds.png")).unlink()
    prepare_cityscapes(tmp_path / "p", root, 0.25, seed=0)
    assert load_spec(tmp_path / "p").label_lut is not None
    with pytest.raises(UserError, match="labelTrainIds.png: label not found"):
        prepare_cityscapes(tmp_path / "q", root, 0.25, seed=0, label_kind="trainIds")


def test_generated_split_sizes_reproducibility_and_outputs(cityscapes, tmp_path):
    prepare_cityscapes(tmp_path / "a", cityscapes, 0.25, seed=1)
    prepare_cityscapes(tmp_path / "b", cityscapes, 0.25, seed=1)
    labeled, unlabeled, val = (read_split(tmp_path / "a", s) for s in ("labeled", "unlabeled", "val"))
    assert (len(labeled), len(unlabeled), len(val)) == (2, 6, 3)  # 8 train images at 1/4, 3 val
    assert {s.id for s in labeled}.isdisjoint(s.id for s in unlabeled)
    assert all("/train/" in s.image.as_posix() for s in labeled + unlabeled)
    assert all("/val/" in s.image.as_posix() for s in val)
    assert all(s.label is not None and s.label.is_file() for s in unlabeled)  # ground truth kept
    for name in ("dataset.json", "splits/labeled.txt", "splits/unlabeled.txt", "splits/val.txt",
                 "split_hashes.json", "class_distribution.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    hashes = json.loads((tmp_path / "a" / "split_hashes.json").read_text())
    assert [hashes[s]["images"] for s in ("labeled", "unlabeled", "val")] == [2, 6, 3]
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["root"] == str(cityscapes)  # absolute stays


def test_list_files_with_leading_slashes_and_other_label_kinds(cityscapes_label_ids_only, tmp_path):
    root = cityscapes_label_ids_only
    images = sorted((root / "leftImg8bit" / "train").glob("*/*.png"))
    # Published lists name labelTrainIds files; this root has only labelIds, which must be used instead.
    lines = [f"/{p.relative_to(root).as_posix()} /gtFine/x/{p.stem}_gtFine_labelTrainIds.png" for p in images[:3]]
    (tmp_path / "labeled.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "unlabeled.txt").write_text("\n".join(p.stem.removesuffix("_leftImg8bit") for p in images[3:6]))
    prepare_cityscapes(tmp_path / "p", root, 0.125, seed=0, labeled_list=tmp_path / "labeled.txt",
                       unlabeled_list=tmp_path / "unlabeled.txt")
    labeled, unlabeled = read_split(tmp_path / "p", "labeled"), read_split(tmp_path / "p", "unlabeled")
    assert [s.image for s in labeled] == images[:3]
    assert [s.image for s in unlabeled] == images[3:6]
    assert all(s.label.name.endswith("_gtFine_labelIds.png") for s in labeled)

    prepare_cityscapes(tmp_path / "q", root, None, seed=0, labeled_list=tmp_path / "labeled.txt")
    assert len(read_split(tmp_path / "q", "unlabeled")) == len(images) - 3  # the rest of train
    prepare_cityscapes(tmp_path / "r", root, None, seed=0, unlabeled_list=tmp_path / "unlabeled.txt")
    assert len(read_split(tmp_path / "r", "labeled")) == len(images) - 3


def test_list_file_errors(cityscapes, tmp_path):
    val_image = next((cityscapes / "leftImg8bit" / "val").glob("*/*.png"))
    train_image = next((cityscapes / "leftImg8bit" / "train").glob("*/*.png"))
    (tmp_path / "val.txt").write_text(f"{train_image.stem}\n{val_image.relative_to(cityscapes)}\n")
    with pytest.raises(UserError, match=r"val.txt:2: image 'frankfurt_.*' is not in the Cityscapes train split"):
        prepare_cityscapes(tmp_path / "p", cityscapes, None, 0, labeled_list=tmp_path / "val.txt")
    (tmp_path / "a.txt").write_text(f"{train_image.stem}\n")
    with pytest.raises(UserError, match="share images"):
        prepare_cityscapes(tmp_path / "p", cityscapes, None, 0, labeled_list=tmp_path / "a.txt",
                           unlabeled_list=tmp_path / "a.txt")
    with pytest.raises(UserError, match="missing.txt: list file not found"):
        prepare_cityscapes(tmp_path / "p", cityscapes, None, 0, labeled_list=tmp_path / "missing.txt")


def test_input_errors_name_the_path(cityscapes, tmp_path):
    with pytest.raises(UserError, match="nowhere: Cityscapes root directory not found"):
        prepare_cityscapes(tmp_path / "p", tmp_path / "nowhere", 0.125, 0)
    (tmp_path / "empty" / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(UserError, match=r"leftImg8bit/train: no images found"):
        prepare_cityscapes(tmp_path / "p", tmp_path / "empty", 0.125, 0)
    with pytest.raises(UserError, match=r"leftImg8bit/val: not found"):
        prepare_cityscapes(tmp_path / "p", copy_of_without(cityscapes, tmp_path, "leftImg8bit/val"), 0.125, 0)
    with pytest.raises(UserError, match=r"gtFine: not found"):
        prepare_cityscapes(tmp_path / "p", copy_of_without(cityscapes, tmp_path, "gtFine"), 0.125, 0)
    with pytest.raises(UserError, match="labeled_fraction"):
        prepare_cityscapes(tmp_path / "p", cityscapes, None, 0)
    with pytest.raises(UserError, match="label_kind"):
        prepare_cityscapes(tmp_path / "p", cityscapes, 0.125, 0, label_kind="color")


def test_image_without_label_is_named(cityscapes, tmp_path):
    root = copy_of(cityscapes, tmp_path)
    victim = next((root / "gtFine" / "train").glob("*/*_labelIds.png"))
    victim.unlink()
    victim.with_name(victim.name.replace("labelIds", "labelTrainIds")).unlink()
    with pytest.raises(UserError, match=f"{victim.name}: label not found"):
        prepare_cityscapes(tmp_path / "p", root, 0.125, 0)


def copy_of_without(root: Path, tmp_path: Path, part: str) -> Path:
    target = tmp_path / f"without_{part.replace('/', '_')}"
    shutil.copytree(root, target)
    shutil.rmtree(target / part)
    return target
