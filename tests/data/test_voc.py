from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import make_voc_fixture
from pipeline_lib.data.prepared import load_label, load_spec, read_split
from pipeline_lib.data.voc import prepare_voc
from pipeline_lib.errors import UserError


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return make_voc_fixture(tmp_path_factory.mktemp("voc") / "VOC2012", train=5, val=3, extra=7)


def ids(prepared: Path, split: str) -> list[str]:
    return [s.id for s in read_split(prepared, split)]


def list_ids(path: Path) -> list[str]:
    return path.read_text().split()


def test_default_split_is_fine_train_labelled_rest_of_aug_unlabelled(voc, tmp_path):
    prepare_voc(tmp_path / "p", voc, None, None, seed=0)
    sets = voc / "ImageSets" / "Segmentation"
    assert ids(tmp_path / "p", "labeled") == sorted(list_ids(sets / "train.txt"))
    assert ids(tmp_path / "p", "unlabeled") == sorted(set(list_ids(sets / "train_aug.txt"))
                                                      - set(list_ids(sets / "train.txt")))
    assert ids(tmp_path / "p", "val") == sorted(list_ids(sets / "val.txt"))
    assert all(s.label.parent.name == "SegmentationClassAug" for s in read_split(tmp_path / "p", "labeled"))
    assert (tmp_path / "p" / "split_hashes.json").is_file()


def test_palette_and_single_channel_masks_give_the_same_train_ids(voc, tmp_path):
    prepare_voc(tmp_path / "aug", voc, None, None, 0, mask_dir="SegmentationClassAug")
    prepare_voc(tmp_path / "pal", voc, None, None, 0, mask_dir="SegmentationClass")
    spec = load_spec(tmp_path / "pal")
    pairs = list(zip(read_split(tmp_path / "aug", "val"), read_split(tmp_path / "pal", "val")))
    assert pairs
    for aug, pal in pairs:
        assert Image.open(pal.label).mode == "P" and Image.open(aug.label).mode == "L"
        palette_ids = load_label(pal.label, spec)
        np.testing.assert_array_equal(palette_ids, load_label(aug.label, spec))
        assert 255 in palette_ids and palette_ids[palette_ids != 255].max() <= 20
    # Official masks exist for train and val only: extra aug images are unlabelled without ground truth.
    assert all(s.label is None for s in read_split(tmp_path / "pal", "unlabeled"))


def test_only_official_masks_without_aug_list(tmp_path):
    root = make_voc_fixture(tmp_path / "VOC2012", train=6, val=2, extra=0, aug_masks=False, train_aug_list=False)
    with pytest.raises(UserError, match="unlabelled split is empty: add .*train_aug.txt"):
        prepare_voc(tmp_path / "p", root, None, None, 0)
    prepare_voc(tmp_path / "p", root, None, 2, 0)  # a count drawn from train.txt, the rest unlabelled
    assert (len(ids(tmp_path / "p", "labeled")), len(ids(tmp_path / "p", "unlabeled"))) == (2, 4)


def test_count_and_fraction_draw_from_the_chosen_pool(voc, tmp_path):
    sets = voc / "ImageSets" / "Segmentation"
    aug, fine = set(list_ids(sets / "train_aug.txt")), set(list_ids(sets / "train.txt"))
    prepare_voc(tmp_path / "a", voc, None, 4, seed=0)
    labeled, unlabeled = ids(tmp_path / "a", "labeled"), ids(tmp_path / "a", "unlabeled")
    assert len(labeled) == 4 and set(labeled) | set(unlabeled) == aug and not set(labeled) & set(unlabeled)
    prepare_voc(tmp_path / "b", voc, 0.5, 4, seed=0)  # the count wins over the fraction
    assert ids(tmp_path / "b", "labeled") == labeled
    prepare_voc(tmp_path / "c", voc, 0.25, None, seed=0)
    assert len(ids(tmp_path / "c", "labeled")) == 3  # round(0.25 * 12)
    prepare_voc(tmp_path / "d", voc, None, 2, seed=0, labeled_pool="train")
    assert set(ids(tmp_path / "d", "labeled")) <= fine
    assert set(ids(tmp_path / "d", "unlabeled")) == aug - set(ids(tmp_path / "d", "labeled"))
    with pytest.raises(UserError, match="labeled_pool"):
        prepare_voc(tmp_path / "e", voc, None, 2, 0, labeled_pool="trainval")


def test_list_files_with_paths_or_ids(voc, tmp_path):
    sets = voc / "ImageSets" / "Segmentation"
    aug = sorted(list_ids(sets / "train_aug.txt"))
    (tmp_path / "l.txt").write_text("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in aug[:2]))
    (tmp_path / "u.txt").write_text("\n".join(aug[2:5]))
    prepare_voc(tmp_path / "p", voc, 0.125, None, 0, labeled_list=tmp_path / "l.txt", unlabeled_list=tmp_path / "u.txt")
    assert ids(tmp_path / "p", "labeled") == aug[:2] and ids(tmp_path / "p", "unlabeled") == aug[2:5]
    val_id = list_ids(sets / "val.txt")[0]
    (tmp_path / "bad.txt").write_text(f"{aug[0]}\n{val_id}\n")
    with pytest.raises(UserError, match=rf"bad.txt:2: image '{val_id}' is not in the training pool"):
        prepare_voc(tmp_path / "q", voc, None, None, 0, labeled_list=tmp_path / "bad.txt")
    with pytest.raises(UserError, match="share images"):
        prepare_voc(tmp_path / "q", voc, None, None, 0, labeled_list=tmp_path / "l.txt", unlabeled_list=tmp_path / "l.txt")


def test_relative_root_stays_relative(voc, tmp_path, monkeypatch):
    shutil.copytree(voc, tmp_path / "data" / "VOC2012")
    monkeypatch.chdir(tmp_path)
    prepare_voc(Path("out/prepared"), Path("data/VOC2012"), None, None, 0)
    assert load_spec("out/prepared").root == Path("out/prepared/../../data/VOC2012")
    assert all(s.image.is_file() for s in read_split("out/prepared", "val"))


def test_input_errors_name_the_path(voc, tmp_path):
    with pytest.raises(UserError, match="nowhere: VOC root directory not found"):
        prepare_voc(tmp_path / "p", tmp_path / "nowhere", None, None, 0)
    devkit = tmp_path / "VOCdevkit"
    shutil.copytree(voc, devkit / "VOC2012")
    with pytest.raises(UserError, match="did you mean root .*VOCdevkit/VOC2012"):
        prepare_voc(tmp_path / "p", devkit, None, None, 0)
    root = devkit / "VOC2012"
    with pytest.raises(UserError, match="mask_dir"):
        prepare_voc(tmp_path / "p", root, None, None, 0, mask_dir="masks")
    sets = root / "ImageSets" / "Segmentation"
    val_id = list_ids(sets / "val.txt")[1]
    (root / "SegmentationClassAug" / f"{val_id}.png").unlink()
    with pytest.raises(UserError, match=f"{val_id}.png: mask not found for val image"):
        prepare_voc(tmp_path / "p", root, None, None, 0)
    (root / "JPEGImages" / f"{val_id}.jpg").unlink()
    with pytest.raises(UserError, match=rf"val.txt:2: image .*{val_id}.jpg not found"):
        prepare_voc(tmp_path / "p", root, None, None, 0)


def test_val_ids_in_the_training_pool_are_rejected(voc, tmp_path):
    root = Path(shutil.copytree(voc, tmp_path / "VOC2012"))
    sets = root / "ImageSets" / "Segmentation"
    with (sets / "train_aug.txt").open("a") as handle:
        handle.write(list_ids(sets / "val.txt")[0] + "\n")
    with pytest.raises(UserError, match="train_aug.txt and .*val.txt share images"):
        prepare_voc(tmp_path / "p", root, None, None, 0)
