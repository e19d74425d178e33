"""Logits and pseudo-label zarr stores: round trips, refusals, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_lib.errors import UserError
from pipeline_lib.stores.logits_store import LogitsStore, write_logits_store
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore, write_label_store
from pipeline_lib.stores.sharded_stack import fsspec_store

CLASSES = ["road", "car", "sky"]
CHECKPOINT = "c" * 64
ATTRS = {"output_stride": 4, "checkpoint_sha256": CHECKPOINT, "model_arch": "toy", "split": "unlabeled"}
LOGIT_SIZES = [(5, 7), (8, 6), (3, 3), (8, 8), (2, 5)]
IDS = [f"img{i}" for i in range(len(LOGIT_SIZES))]
LABEL_SIZES = [(4 * h, 4 * w) for h, w in LOGIT_SIZES]


def make_logits(sizes=LOGIT_SIZES, classes=len(CLASSES), seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 4, (classes, h, w)).astype(np.float16) for h, w in sizes]


def write_store(path: Path, logits=None, ids=IDS, images_per_shard=2, attrs=ATTRS) -> list[np.ndarray]:
    logits = make_logits() if logits is None else logits
    write_logits_store(path, ids, LABEL_SIZES, LOGIT_SIZES, CLASSES, lambda i: logits[i], attrs,
                       images_per_shard=images_per_shard)
    return logits


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_logits_round_trip_values_padding_attrs_and_shards(tmp_path):
    store_path = tmp_path / "logits.zarr"
    logits = write_store(store_path)
    store = LogitsStore.open(store_path, expect_classes=CLASSES, expect_checkpoint=CHECKPOINT,
                             expect_image_ids=IDS)
    assert len(store) == 5 and store.image_ids == IDS and store.class_names == CLASSES
    assert store.label_sizes == LABEL_SIZES and store.logit_sizes == LOGIT_SIZES
    assert store.attrs["output_stride"] == 4 and store.attrs["model_arch"] == "toy"
    assert store.attrs["format_version"] == 1 and store.attrs["split"] == "unlabeled"
    for i, expected in enumerate(logits):
        got = store.logits(i)
        assert got.dtype == np.float16 and np.array_equal(got, expected)
    # Padding beyond each image's own size is zero.
    raw = zarr.open_group(str(store_path), mode="r")["logits"]
    assert raw.shape == (5, 3, 8, 8) and raw.chunks == (1, 3, 8, 8) and raw.shards == (2, 3, 8, 8)
    padded = raw[:]
    for i, (h, w) in enumerate(LOGIT_SIZES):
        assert not padded[i, :, h:, :].any() and not padded[i, :, :, w:].any()
    # Shards, one per two images, not one file per image: 3 shards + 2 metadata files.
    assert len(files_under(store_path)) == 3 + 2
    blocks = list(store.iter_shards())
    assert [first for first, _ in blocks] == [0, 2, 4] and [b.shape[0] for _, b in blocks] == [2, 2, 1]
    assert all(np.array_equal(a, logits[i]) for i, a in store.iter_logits())
    with pytest.raises(IndexError):
        store.logits(5)


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=6),
       images_per_shard=st.integers(1, 4), classes=st.integers(1, 3))
def test_logits_round_trip_any_sizes(tmp_path_factory, sizes, images_per_shard, classes):
    path = tmp_path_factory.mktemp("prop") / "s.zarr"
    logits = make_logits(sizes, classes, seed=len(sizes))
    ids = [f"i{k}" for k in range(len(sizes))]
    write_logits_store(path, ids, sizes, sizes, CLASSES[:classes], lambda i: logits[i], ATTRS,
                       images_per_shard=images_per_shard)
    store = LogitsStore.open(path)
    assert all(np.array_equal(store.logits(i), logits[i]) for i in range(len(sizes)))
    assert [i for i, _ in store.iter_logits()] == list(range(len(sizes)))


def test_writing_twice_gives_identical_files(tmp_path):
    write_store(tmp_path / "a")
    write_store(tmp_path / "b")
    files_a, files_b = files_under(tmp_path / "a"), files_under(tmp_path / "b")
    assert [p.relative_to(tmp_path / "a") for p in files_a] == [p.relative_to(tmp_path / "b") for p in files_b]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files_a, files_b))


def test_exception_in_predict_leaves_no_store_and_no_temp_dir(tmp_path):
    logits = make_logits()

    def predict(i):
        if i == 3:
            raise RuntimeError("model crashed")
        return logits[i]

    with pytest.raises(RuntimeError, match="model crashed"):
        write_logits_store(tmp_path / "s.zarr", IDS, LABEL_SIZES, LOGIT_SIZES, CLASSES, predict, ATTRS, 2)
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_the_previous_store(tmp_path):
    path = tmp_path / "s.zarr"
    logits = write_store(path)
    with pytest.raises(ValueError):
        write_store(path, logits=[np.zeros((3, 1, 1), np.float16)] * 5)
    assert np.array_equal(LogitsStore.open(path).logits(0), logits[0])
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]


def test_predict_with_wrong_shape_or_non_finite_values_is_refused(tmp_path):
    bad_shape = make_logits()
    bad_shape[1] = bad_shape[1][:2]
    with pytest.raises(ValueError, match="img1"):
        write_store(tmp_path / "a", logits=bad_shape)
    not_finite = make_logits()
    not_finite[2] = np.full_like(not_finite[2], 1e6, dtype=np.float32)  # overflows float16
    with pytest.raises(ValueError, match="img2.*not finite"):
        write_store(tmp_path / "b", logits=not_finite)
    assert list(tmp_path.iterdir()) == []


def test_refuses_wrong_classes(tmp_path):
    write_store(tmp_path / "s")
    with pytest.raises(UserError, match=r"s: the logits store has 3 classes, the dataset 2"):
        LogitsStore.open(tmp_path / "s", expect_classes=["road", "car"])
    with pytest.raises(UserError, match="'sky' where 'person' is expected"):
        LogitsStore.open(tmp_path / "s", expect_classes=["road", "car", "person"])


def test_refuses_missing_or_extra_images(tmp_path):
    write_store(tmp_path / "s")
    with pytest.raises(UserError, match=r"1 images of the split are missing \(e.g. img9\)"):
        LogitsStore.open(tmp_path / "s", expect_image_ids=IDS + ["img9"])
    with pytest.raises(UserError, match=r"1 images are not in the split \(e.g. img4\)"):
        LogitsStore.open(tmp_path / "s", expect_image_ids=IDS[:4])
    with pytest.raises(UserError, match="another order"):
        LogitsStore.open(tmp_path / "s", expect_image_ids=IDS[::-1])


def test_refuses_store_of_another_checkpoint(tmp_path):
    write_store(tmp_path / "s")
    with pytest.raises(UserError, match="made by another model"):
        LogitsStore.open(tmp_path / "s", expect_checkpoint="d" * 64)


def test_refuses_what_is_not_a_store(tmp_path):
    with pytest.raises(UserError, match=r"nothing: logits store not found"):
        LogitsStore.open(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="file: not a logits store"):
        LogitsStore.open(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: not a logits store"):
        LogitsStore.open(tmp_path / "empty")
    zarr.open_group(str(tmp_path / "bare"), mode="w", attributes={"format_version": 1})
    with pytest.raises(UserError, match="attributes missing: class_names"):
        LogitsStore.open(tmp_path / "bare")


def _edit_attrs(store_path: Path, **changes) -> None:
    meta_path = store_path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"].update(changes)
    meta_path.write_text(json.dumps(meta))


def test_refuses_other_format_version_and_inconsistent_shape(tmp_path):
    write_store(tmp_path / "v")
    _edit_attrs(tmp_path / "v", format_version=2)
    with pytest.raises(UserError, match="format version 2"):
        LogitsStore.open(tmp_path / "v")
    write_store(tmp_path / "c")
    _edit_attrs(tmp_path / "c", class_names=["a", "b"])
    with pytest.raises(UserError, match=r"shape \(5, 3, 8, 8\).*5 images of 2 classes"):
        LogitsStore.open(tmp_path / "c")
    write_store(tmp_path / "n")
    _edit_attrs(tmp_path / "n", label_sizes=LABEL_SIZES[:2])
    with pytest.raises(UserError, match="label_sizes has 2 entries for 5 images"):
        LogitsStore.open(tmp_path / "n")


def test_readable_through_an_fsspec_filesystem(tmp_path):
    logits = write_store(tmp_path / "s")
    store = LogitsStore.open(fsspec_store(fsspec.filesystem("file"), str(tmp_path / "s")), expect_classes=CLASSES)
    assert np.array_equal(store.logits(3), logits[3])
    with pytest.raises(UserError, match="not a logits store"):
        LogitsStore.open(fsspec_store(fsspec.filesystem("file"), str(tmp_path / "missing")))


# ---- pseudo-label store ----

LABEL_ATTRS = {"method": "dars", "labeling_ratio": 0.2, "temperature": 1.0, "seed": 0,
               "checkpoint_sha256": CHECKPOINT}


def make_labels(seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = [rng.integers(0, len(CLASSES), size).astype(np.uint8) for size in LABEL_SIZES]
    for label in labels:
        label[rng.random(label.shape) < 0.3] = 255
    return labels


def test_label_store_round_trip(tmp_path):
    labels = make_labels()
    write_label_store(tmp_path / "p", IDS, LABEL_SIZES, CLASSES, iter(labels), LABEL_ATTRS, images_per_shard=2)
    store = PseudoLabelStore.open(tmp_path / "p", expect_classes=CLASSES, expect_image_ids=IDS)
    assert store.image_ids == IDS and store.label_sizes == LABEL_SIZES and len(store) == 5
    assert {k: store.attrs[k] for k in LABEL_ATTRS} == LABEL_ATTRS
    for i, expected in enumerate(labels):
        assert store.label(i).dtype == np.uint8 and np.array_equal(store.label(i), expected)
    assert all(np.array_equal(mask, labels[i]) for i, mask in store.iter_labels())
    padded = zarr.open_group(str(tmp_path / "p"), mode="r")["labels"][:]
    for i, (h, w) in enumerate(LABEL_SIZES):
        assert (padded[i, h:, :] == 255).all() and (padded[i, :, w:] == 255).all()
    assert len(files_under(tmp_path / "p")) == 3 + 2
    assert store.index_of("img3") == 3


def test_label_store_index_of_unknown_image_lists_some_ids(tmp_path):
    write_label_store(tmp_path / "p", IDS, LABEL_SIZES, CLASSES, make_labels(), LABEL_ATTRS)
    with pytest.raises(UserError, match=r"no pseudo label for image 'other'.*5 images, e.g. img0, img1"):
        PseudoLabelStore.open(tmp_path / "p").index_of("other")


def test_label_store_refusals(tmp_path):
    with pytest.raises(UserError, match="pseudo-label store not found"):
        PseudoLabelStore.open(tmp_path / "none")
    write_label_store(tmp_path / "p", IDS, LABEL_SIZES, CLASSES, make_labels(), LABEL_ATTRS)
    with pytest.raises(UserError, match="missing"):
        PseudoLabelStore.open(tmp_path / "p", expect_image_ids=IDS + ["x"])
    with pytest.raises(UserError, match="classes"):
        PseudoLabelStore.open(tmp_path / "p", expect_classes=CLASSES[:2])
    write_store(tmp_path / "s")
    with pytest.raises(UserError, match="not a pseudo-label store.*method"):
        PseudoLabelStore.open(tmp_path / "s")


def test_label_store_rejects_bad_masks_atomically(tmp_path):
    labels = make_labels()
    labels[3] = labels[3].copy()
    labels[3][0, 0] = 7  # beyond 3 classes and not 255
    with pytest.raises(ValueError, match="img3"):
        write_label_store(tmp_path / "p", IDS, LABEL_SIZES, CLASSES, labels, LABEL_ATTRS)
    with pytest.raises(ValueError, match="lack checkpoint_sha256"):
        write_label_store(tmp_path / "p", IDS, LABEL_SIZES, CLASSES, make_labels(),
                          {k: v for k, v in LABEL_ATTRS.items() if k != "checkpoint_sha256"})
    with pytest.raises(ValueError, match="got 4 images, expected 5"):
        write_label_store(tmp_path / "p", IDS, LABEL_SIZES, CLASSES, make_labels()[:4], LABEL_ATTRS)
    assert list(tmp_path.iterdir()) == []


def test_a_label_store_of_format_1_is_refused_with_the_stage_to_rerun(tmp_path):
    """Version 1 named the teacher source_checkpoint_sha256; every store now names it checkpoint_sha256."""
    write_label_store(tmp_path / "p", IDS, LABEL_SIZES, CLASSES, make_labels(), LABEL_ATTRS)
    meta = json.loads((tmp_path / "p" / "zarr.json").read_text())
    meta["attributes"]["source_checkpoint_sha256"] = meta["attributes"].pop("checkpoint_sha256")
    (tmp_path / "p" / "zarr.json").write_text(json.dumps(meta))
    _edit_attrs(tmp_path / "p", format_version=1)
    expected = (r"p: not a pseudo-label store this code reads \(format version 1, this code reads version 2; "
                r"attributes missing: checkpoint_sha256\); rerun the pseudo_label stage")
    with pytest.raises(UserError, match=expected):
        PseudoLabelStore.open(tmp_path / "p")


def test_every_store_names_its_teacher_by_one_attribute_and_refuses_another(tmp_path):
    write_label_store(tmp_path / "r1" / "p", IDS, LABEL_SIZES, CLASSES, make_labels(), LABEL_ATTRS)
    assert PseudoLabelStore.open(tmp_path / "r1" / "p", expect_checkpoint=CHECKPOINT).attrs["checkpoint_sha256"] \
        == CHECKPOINT
    with pytest.raises(UserError, match=r"r1/p: the pseudo-label store was made by another model \(checkpoint "
                                        rf"sha256 {CHECKPOINT[:12]}…; this round's teacher has sha256 "
                                        r"eeeeeeeeeeee…\); remake it with `dvc repro pseudo_label@r1`"):
        PseudoLabelStore.open(tmp_path / "r1" / "p", expect_checkpoint="e" * 64)
