"""The confidence pass (logits store → confidence store) and the labelling pass (confidence store → pseudo labels
and statistics), end to end on a tiny logits store."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline_lib.confidence.histogram import ConfidenceHistogram
from pipeline_lib.confidence.maps import confidence_and_prediction
from pipeline_lib.confidence.run import run_confidences
from pipeline_lib.errors import UserError
from pipeline_lib.pseudo_label.rules import assign_pseudo_labels, compute_thresholds
from pipeline_lib.pseudo_label.run import run_pseudo_labeling
from pipeline_lib.pseudo_label.statistics import KL_EPSILON, kl_divergence
from pipeline_lib.stores.confidence_store import ConfidenceStore
from pipeline_lib.stores.logits_store import LogitsStore, write_logits_store
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore

CLASSES = ["road", "car", "sky", "person"]
SHARES = np.array([0.5, 0.25, 0.2, 0.05])
LOGIT_SIZES = [(6, 8), (7, 5), (6, 8), (4, 9), (8, 8), (5, 6), (6, 7)]
STRIDE = 4
LABEL_SIZES = [(STRIDE * h, STRIDE * w) for h, w in LOGIT_SIZES]
IDS = [f"u{i}" for i in range(len(LOGIT_SIZES))]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    logits = [(rng.normal(0, 2.5, (len(CLASSES), h, w)) + np.array([1.0, 0.3, 0.0, -1.0])[:, None, None])
              .astype(np.float16) for h, w in LOGIT_SIZES]
    path = tmp_path_factory.mktemp("soft") / "logits.zarr"
    write_logits_store(path, IDS, LABEL_SIZES, LOGIT_SIZES, CLASSES, lambda i: logits[i],
                       {"output_stride": STRIDE, "checkpoint_sha256": "a" * 64, "model_arch": "toy",
                        "split": "unlabeled"}, images_per_shard=3)
    return path


def run(store: Path, out: Path, method="dars", ratio=0.3, seed=7, workers=2, temperature=1.0, ground_truth=None):
    """Both passes, as the confidence and pseudo_label stages run them."""
    out.mkdir(parents=True, exist_ok=True)
    run_confidences(store, out / "confidences.zarr", temperature=temperature, workers=workers)
    return label(out, method, ratio, seed, ground_truth)


def label(out: Path, method="dars", ratio=0.3, seed=7, ground_truth=None):
    """The labelling pass alone, from ``out``'s confidence store."""
    return run_pseudo_labeling(out / "confidences.zarr", out / "labels.zarr", out / "stats.json", out / "metrics.json",
                               out / "classes.csv", SHARES, method, ratio, seed, ground_truth=ground_truth)


def output_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_outputs_identical_for_any_worker_count_and_on_rerun(store, tmp_path):
    run(store, tmp_path / "w1", workers=1)
    run(store, tmp_path / "w2", workers=2)
    run(store, tmp_path / "w3", workers=3)
    run(store, tmp_path / "again", workers=2)
    reference = output_bytes(tmp_path / "w1")
    assert {"labels.zarr/zarr.json", "confidences.zarr/zarr.json", "stats.json", "classes.csv"} <= set(reference)
    for name in ("w2", "w3", "again"):
        assert output_bytes(tmp_path / name) == reference


def test_the_labelling_pass_reports_its_progress_once(store, tmp_path, capsys):
    run(store, tmp_path / "out", workers=1)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pseudo labels:")]
    # The store's writer consumes the labels as they are drawn, so its count is the labelling's progress.
    assert len(lines) == len(IDS) and lines[-1].startswith(f"pseudo labels: {len(IDS)}/{len(IDS)} img (100 %)")


@pytest.mark.parametrize("method", ["st", "cbst", "da", "dars"])
def test_labels_equal_the_pure_rules_applied_image_by_image(store, tmp_path, method):
    stats = run(store, tmp_path, method=method, temperature=1.5)
    logits = LogitsStore.open(store)
    maps = [confidence_and_prediction(logits.logits(i), LABEL_SIZES[i], 1.5) for i in range(len(IDS))]
    histogram = ConfidenceHistogram(len(CLASSES))
    for confidence, prediction in maps:
        histogram.add(confidence, prediction)
    thresholds = compute_thresholds(histogram.counts, method, 0.3, SHARES)
    stored = ConfidenceStore.open(tmp_path / "confidences.zarr", expect_classes=CLASSES, expect_image_ids=IDS)
    assert np.array_equal(stored.histogram_counts(), histogram.counts) and stored.temperature == 1.5
    for i, (confidence, prediction) in enumerate(maps):
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(stored.maps(i), maps[i]))
    labels = PseudoLabelStore.open(tmp_path / "labels.zarr", expect_classes=CLASSES, expect_image_ids=IDS)
    for i, (confidence, prediction) in enumerate(maps):
        expected = assign_pseudo_labels(confidence, prediction, thresholds, 7, i)
        assert np.array_equal(labels.label(i), expected)
    assert labels.attrs["method"] == method and labels.attrs["seed"] == 7 and labels.attrs["temperature"] == 1.5
    assert labels.attrs["checkpoint_sha256"] == "a" * 64
    for j, name in enumerate(CLASSES):
        assert stats["per_class"][name]["target_count"] == int(thresholds.target_count[j])
        assert stats["per_class"][name]["above_threshold"] == int(thresholds.above_threshold[j])


def test_stats_are_consistent_with_the_label_store(store, tmp_path):
    stats = run(store, tmp_path, method="dars", ratio=0.3)
    assert stats == json.loads((tmp_path / "stats.json").read_text())
    labels = PseudoLabelStore.open(tmp_path / "labels.zarr")
    counts = np.zeros(len(CLASSES), np.int64)
    for _, mask in labels.iter_labels():
        counts += np.bincount(mask.ravel(), minlength=256)[: len(CLASSES)]
    total = sum(h * w for h, w in LABEL_SIZES)
    per_class = stats["per_class"]
    assert [per_class[c]["final_count"] for c in CLASSES] == counts.tolist()
    assert stats["pseudo_labeled_pixels"] == counts.sum() and stats["pixels"] == total
    assert stats["images"] == len(IDS)
    # DARS keeps its per-class targets up to per-image flooring, so the kept fraction is about alpha.
    assert stats["fraction_labeled"] == pytest.approx(0.3, abs=len(CLASSES) * len(IDS) / total)
    assert stats["fraction_labeled"] == counts.sum() / total
    assert sum(per_class[c]["pseudo_share"] for c in CLASSES) == pytest.approx(1.0)
    assert [per_class[c]["labeled_share"] for c in CLASSES] == pytest.approx(SHARES / SHARES.sum())
    assert 0 <= stats["kl_divergence"] < 0.01
    assert "pseudo_label_accuracy" not in stats and "accuracy" not in per_class["road"]
    for c in CLASSES:
        assert 0 < per_class[c]["keep_probability"] <= 1
        assert per_class[c]["final_count"] <= per_class[c]["above_threshold"]


def test_class_plot_is_long_format_ordered_by_labelled_share(store, tmp_path):
    run(store, tmp_path, method="da")
    rows = list(csv.DictReader((tmp_path / "classes.csv").open()))
    assert list(rows[0]) == ["class", "source", "share"]
    # Per class, most frequent labelled class first: its labelled share, then its pseudo-label share.
    assert [(r["class"], r["source"]) for r in rows] == [
        (name, source) for name in ["road", "car", "sky", "person"] for source in ("labelled", "pseudo labels")]
    assert [float(r["share"]) for r in rows[0::2]] == pytest.approx([0.5, 0.25, 0.2, 0.05])
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [float(r["share"]) for r in rows[1::2]] == pytest.approx(
        [stats["per_class"][r["class"]]["pseudo_share"] for r in rows[1::2]], rel=1e-5)


def test_metrics_file_is_the_stats_summary(store, tmp_path):
    run(store, tmp_path / "without", method="dars")
    run(store, tmp_path / "with", method="dars", ground_truth=_truth_from_prediction(store))
    for out, keys in ((tmp_path / "without", ["fraction_labeled", "kl_divergence"]),
                      (tmp_path / "with", ["fraction_labeled", "kl_divergence", "pseudo_label_accuracy"])):
        stats = json.loads((out / "stats.json").read_text())
        metrics = json.loads((out / "metrics.json").read_text())
        assert sorted(metrics) == sorted(keys)
        assert metrics == {key: stats[key] for key in keys}


def _truth_from_prediction(store: Path, wrong_class_for: set[str] = frozenset()):
    """Ground truth = the model's argmax (so kept pixels are all correct), except that images in
    ``wrong_class_for`` get class (prediction + 1) and images named 'u6' have no ground truth."""
    logits = LogitsStore.open(store)

    def ground_truth(image_id: str):
        if image_id == "u6":
            return None
        i = logits.image_ids.index(image_id)
        _, prediction = confidence_and_prediction(logits.logits(i), LABEL_SIZES[i])
        truth = prediction.copy()
        if image_id in wrong_class_for:
            truth = ((truth + 1) % len(CLASSES)).astype(np.uint8)
        truth[:2, :] = 255  # some ignore pixels are not judged
        return truth

    return ground_truth


def test_accuracy_is_computed_where_ground_truth_exists(store, tmp_path):
    perfect = run(store, tmp_path / "perfect", ground_truth=_truth_from_prediction(store))
    assert perfect["pseudo_label_accuracy"] == 1.0 and perfect["ground_truth_images"] == len(IDS) - 1
    assert all(perfect["per_class"][c]["accuracy"] in (1.0, None) for c in CLASSES)

    stats = run(store, tmp_path / "half", ground_truth=_truth_from_prediction(store, {"u0", "u1", "u2"}))
    labels = PseudoLabelStore.open(tmp_path / "half" / "labels.zarr")
    judged = {i: int((labels.label(i)[2:] != 255).sum()) for i in range(6)}  # u6 has no truth, rows 0-1 ignored
    expected = sum(judged[i] for i in (3, 4, 5)) / sum(judged.values())
    assert stats["pseudo_label_accuracy"] == pytest.approx(expected)
    assert 0 < stats["pseudo_label_accuracy"] < 1


def test_ground_truth_of_wrong_size_is_refused(store, tmp_path):
    with pytest.raises(UserError, match="ground truth of image 'u0' is 3x2"):
        run(store, tmp_path, ground_truth=lambda image_id: np.zeros((2, 3), np.uint8))


def test_interrupted_run_leaves_no_output_and_keeps_old_one(store, tmp_path):
    run(store, tmp_path, method="da")
    before = output_bytes(tmp_path)

    def crashing_truth(image_id: str):
        if image_id == "u5":
            raise KeyboardInterrupt
        return None

    with pytest.raises(KeyboardInterrupt):
        run(store, tmp_path, method="dars", ground_truth=crashing_truth)
    assert output_bytes(tmp_path) == before  # old outputs untouched, no temporaries left
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        run(store, fresh, ground_truth=crashing_truth)
    assert [p.name for p in fresh.iterdir()] == ["confidences.zarr"]  # the finished first pass stays


def test_bad_inputs_are_refused(store, tmp_path):
    with pytest.raises(UserError, match="unknown pseudo-label method 'best'"):
        run(store, tmp_path, method="best")
    with pytest.raises(UserError, match="labeling_ratio"):
        run(store, tmp_path, ratio=1.5)
    with pytest.raises(UserError, match="temperature"):
        run(store, tmp_path, temperature=0.0)
    with pytest.raises(UserError, match=r"shape \(3,\), the store has 4 classes"):
        run_pseudo_labeling(tmp_path / "confidences.zarr", tmp_path / "l", tmp_path / "s.json", tmp_path / "m.json",
                            tmp_path / "c.csv", SHARES[:3], "dars", 0.2, 0)
    with pytest.raises(UserError, match="not a confidence store"):
        run_pseudo_labeling(store, tmp_path / "l", tmp_path / "s.json", tmp_path / "m.json", tmp_path / "c.csv",
                            SHARES, "dars", 0.2, 0)
    with pytest.raises(UserError, match="not found"):
        run(tmp_path / "no_store", tmp_path)
    assert not (tmp_path / "labels.zarr").exists() and not (tmp_path / "stats.json").exists()


def test_kl_divergence():
    shares = np.array([0.5, 0.3, 0.2, 0.0])
    assert kl_divergence(shares, np.array([50, 30, 20, 0])) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(shares, np.array([50, 30, 20, 40])) > 0
    missing_class = kl_divergence(shares, np.array([50, 30, 0, 0]))
    assert np.isfinite(missing_class)
    assert missing_class > 0.2 * np.log(0.2 / KL_EPSILON) - 1


def test_banded_workers_write_the_bytes_of_whole_image_ones(tmp_path, monkeypatch):
    # Labels large enough for banded upsampling (stride 8; and one size off the stride's multiple). On a
    # 2-core machine, 1 worker runs torch at 2 threads (whole image) and 2 or 3 workers at 1 (bands).
    logit_sizes, label_sizes = [(40, 32), (36, 40), (13, 20)], [(320, 256), (288, 320), (100, 157)]
    rng = np.random.default_rng(5)
    logits = [rng.normal(0, 2.5, (len(CLASSES), h, w)).astype(np.float16) for h, w in logit_sizes]
    logits[0][3] = logits[0][1]  # a tied class
    path = tmp_path / "logits.zarr"
    write_logits_store(path, ["a", "b", "c"], label_sizes, logit_sizes, CLASSES, lambda i: logits[i],
                       {"output_stride": 8, "checkpoint_sha256": "b" * 64, "model_arch": "toy", "split": "unlabeled"},
                       images_per_shard=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for workers in (1, 2, 3):
            run(path, tmp_path / f"w{workers}", method="dars", workers=workers, temperature=1.3)
    finally:
        torch.set_num_threads(threads)
    assert output_bytes(tmp_path / "w2") == output_bytes(tmp_path / "w1") == output_bytes(tmp_path / "w3")


def test_changing_the_rule_reads_the_confidences_only(store, tmp_path):
    run(store, tmp_path / "both", method="dars", ratio=0.3)
    (tmp_path / "again").mkdir()
    shutil.copytree(tmp_path / "both" / "confidences.zarr", tmp_path / "again" / "confidences.zarr")
    label(tmp_path / "again", method="dars", ratio=0.3)  # no logits store in sight
    assert output_bytes(tmp_path / "again") == output_bytes(tmp_path / "both")
    other = label(tmp_path / "again", method="cbst", ratio=0.5)
    assert other == run(store, tmp_path / "cbst", method="cbst", ratio=0.5)

