"""`dars inspect`: pure rendering, the distribution plot, the HTML report, and the command on a tiny real
pipeline state, read from the workspace and from git revisions / DVC experiments."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from inspection_state import (
    CLASSES,
    SIZE,
    UNLABELED_IDS,
    UNLABELED_WITHOUT_TRUTH,
    build_project,
    run_inspect,
    write_params,
)
from pipeline_lib.data.classes import CITYSCAPES
from pipeline_lib.data.image_files import load_image
from pipeline_lib.data.prepared import load_label, load_spec
from pipeline_lib.errors import UserError
from pipeline_lib.drawing.panels import (
    CHECKER_COLORS,
    blend_overlay,
    checkerboard,
    colorbar_image,
    colorize_labels,
    colormap_table,
    confidence_to_rgb,
    legend_image,
)
from pipeline_lib.inspection.selection import label_agreement, select_image_ids
from pipeline_lib.drawing.class_shares import order_by_labeled_share, plot_class_distributions, to_shares
from pipeline_lib.inspection.report import GalleryRow, ReportContent, render_report
from pipeline_lib.stores.confidence_store import ConfidenceStore
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore

PALETTE = np.asarray(CLASSES.colors, np.uint8)
masks = arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20)),
               elements=st.sampled_from([0, 1, 2, 3, 255]))


# ---------------------------------------------------------------------------------------------------------------
# pure rendering

def test_checkerboard_alternates_cells_of_the_given_size():
    board = checkerboard(5, 7, cell=2)
    assert board.shape == (5, 7, 3) and board.dtype == np.uint8
    assert tuple(board[0, 0]) == CHECKER_COLORS[0] and tuple(board[1, 1]) == CHECKER_COLORS[0]
    assert tuple(board[0, 2]) == CHECKER_COLORS[1] and tuple(board[2, 0]) == CHECKER_COLORS[1]
    assert tuple(board[2, 2]) == CHECKER_COLORS[0]


@given(masks)
def test_colorize_draws_class_colours_and_a_checkerboard_where_ignored(mask):
    out = colorize_labels(mask, PALETTE)
    assert out.shape == (*mask.shape, 3) and out.dtype == np.uint8
    labelled = mask != 255
    np.testing.assert_array_equal(out[labelled], PALETTE[mask[labelled]])
    np.testing.assert_array_equal(out[~labelled], checkerboard(*mask.shape)[~labelled])


def test_ignored_pixels_look_unlike_any_class_and_show_both_checker_colours():
    out = colorize_labels(np.full((16, 16), 255, np.uint8), PALETTE)
    colours = {tuple(c) for c in out.reshape(-1, 3)}
    assert colours == set(CHECKER_COLORS)
    assert not colours & {tuple(c) for c in PALETTE}


def test_colorize_refuses_values_beyond_the_classes():
    with pytest.raises(ValueError, match="neither one of the 4 classes"):
        colorize_labels(np.array([[0, 7]], np.uint8), PALETTE)


@settings(max_examples=40)
@given(masks, st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
def test_overlay_blends_labelled_pixels_and_keeps_the_image_where_ignored(mask, alpha, seed):
    image = np.random.default_rng(seed).integers(0, 256, size=(*mask.shape, 3), dtype=np.uint8)
    out = blend_overlay(image, mask, PALETTE, alpha=alpha)
    labelled = mask != 255
    np.testing.assert_array_equal(out[~labelled], image[~labelled])
    expected = np.rint((1 - alpha) * image[labelled].astype(np.float32) + alpha * PALETTE[mask[labelled]])
    assert np.abs(out[labelled].astype(np.int32) - expected).max(initial=0) <= 1


def test_overlay_extremes_and_size_check():
    image = np.full((2, 3, 3), 10, np.uint8)
    mask = np.array([[0, 1, 255], [2, 3, 255]], np.uint8)
    np.testing.assert_array_equal(blend_overlay(image, mask, PALETTE, alpha=0.0), image)
    full = blend_overlay(image, mask, PALETTE, alpha=1.0)
    np.testing.assert_array_equal(full[mask != 255], PALETTE[mask[mask != 255]])
    with pytest.raises(ValueError, match="differ in size"):
        blend_overlay(image, mask[:, :2], PALETTE)


def test_confidence_colormap_spans_the_fixed_range_and_clips():
    table = colormap_table("viridis")
    confidence = np.array([[0.0, 1.0, -0.5, 1.5, np.nan, 0.5]], np.float32)
    out = confidence_to_rgb(confidence)
    assert out.shape == (1, 6, 3) and out.dtype == np.uint8
    for column, row in ((0, 0), (1, 255), (2, 0), (3, 255), (4, 0), (5, 128)):
        np.testing.assert_array_equal(out[0, column], table[row])
    # A narrower range stretches: 0.5 is now the top colour.
    np.testing.assert_array_equal(confidence_to_rgb(np.array([[0.5]]), vmin=0.25, vmax=0.5)[0, 0], table[255])
    with pytest.raises(ValueError, match="must exceed"):
        confidence_to_rgb(confidence, vmin=1.0, vmax=1.0)
    with pytest.raises(UserError, match="unknown colormap"):
        colormap_table("no-such-map")


def test_confidence_colormap_is_monotone_in_brightness():
    rgb = confidence_to_rgb(np.linspace(0, 1, 50)[None, :]).astype(np.float64)[0]
    brightness = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(brightness) >= -1.0)  # viridis: dark → bright


def test_label_agreement_counts_only_pixels_labelled_in_both():
    pseudo = np.array([[0, 1, 255, 2]], np.uint8)
    truth = np.array([[0, 2, 1, 255]], np.uint8)
    assert label_agreement(pseudo, truth) == {"kept_share": 0.75, "accuracy": 0.5}
    assert label_agreement(pseudo, None) == {"kept_share": 0.75, "accuracy": None}


def test_select_image_ids_requested_random_and_unknown():
    ids = [f"img{i}" for i in range(30)]
    assert select_image_ids(ids, ["img3", "img1", "img3"]) == ["img3", "img1"]
    first = select_image_ids(ids, random_count=5, seed=1)
    assert first == select_image_ids(ids, random_count=5, seed=1)
    assert first != select_image_ids(ids, random_count=5, seed=2)
    assert len(first) == 5 and first == sorted(first, key=ids.index)
    assert select_image_ids(ids[:3], random_count=10) == ids[:3]
    with pytest.raises(UserError) as error:
        select_image_ids(ids, ["img1", "nope"])
    assert "'nope'" in str(error.value) and "30 images" in str(error.value) and "img0" in str(error.value)


def test_legend_shows_every_class_colour_and_the_colorbar_renders():
    legend = legend_image(CLASSES.names, PALETTE)
    assert legend.ndim == 3 and legend.shape[2] == 3
    present = {tuple(c) for c in legend.reshape(-1, 3)}
    assert all(tuple(c) in present for c in PALETTE)
    bar = colorbar_image().reshape(-1, 3).astype(np.int32)
    for colour in colormap_table()[[0, 128, 255]].astype(np.int32):  # both ends and the middle, ±rendering
        assert np.abs(bar - colour).sum(axis=1).min() <= 4


# Wider, in each font below, than the 960 pixels the legend's width was once fixed at.
LONG_NAME = ("a class whose name is far longer than any dataset's, so long that in any of the fonts tried here it "
             "does not fit the legend's former fixed width")


@pytest.mark.parametrize("family", ["DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono"])
@pytest.mark.parametrize("names", [CITYSCAPES.names, ["road", LONG_NAME]], ids=["cityscapes", "long name"])
def test_legend_is_wide_enough_for_its_longest_label_in_any_font(family, names):
    """Cityscapes' 19 classes put the ignored entry in the last column, at the image's edge; a long name
    outgrows any fixed width. Pillow measures the longest label in the same font, independently."""
    from matplotlib import font_manager, rc_context
    from PIL import ImageFont

    with rc_context({"font.family": family}):
        legend = legend_image(names, np.asarray(CITYSCAPES.colors, np.uint8)[: len(names)])
        font_file = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    font = ImageFont.truetype(font_file, size=9 * 100 / 72)  # the legend's 9 pt at its 100 dpi, in pixels
    longest = max(font.getlength(text) for text in [*names, "ignored (255): no pseudo label"])
    assert legend.shape[1] >= longest + 30  # the label beside its swatch
    ink = np.flatnonzero((legend != 255).any(axis=(0, 2)))  # columns with anything but white background
    assert legend.shape[1] - 1 - ink.max() >= 8  # a margin after the widest column: no label cut at the edge


# ---------------------------------------------------------------------------------------------------------------
# distribution plot and report page

def test_distribution_order_and_shares():
    assert order_by_labeled_share([0.1, 0.5, 0.1, 0.3]) == [1, 3, 0, 2]
    np.testing.assert_allclose(to_shares([2, 6, 0]), [0.25, 0.75, 0.0])
    np.testing.assert_array_equal(to_shares([0, 0]), [0, 0])
    with pytest.raises(ValueError):
        to_shares([1, -1])


def test_distribution_plot_writes_a_png_and_refuses_mismatched_series(tmp_path):
    path = tmp_path / "plot.png"
    plot_class_distributions(path, CLASSES.names, [0.6, 0.3, 0.1, 0.0],
                             {"r1 (dars)": [500, 300, 90, 10], "r1 (cbst)": [700, 300, 0, 0]})
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300
    with pytest.raises(ValueError, match="3 classes"):
        plot_class_distributions(tmp_path / "bad.png", CLASSES.names, [0.5, 0.3, 0.1, 0.1], {"x": [1, 2, 3]})
    assert not (tmp_path / "bad.png").exists()


def _content(**changes) -> ReportContent:
    stats = {"method": "dars", "labeling_ratio": 0.2, "fraction_labeled": 0.2, "pseudo_label_accuracy": 0.9,
             "per_class": {"road": {"target_count": 1200, "threshold": 0.93, "above_threshold": 1500,
                                    "keep_probability": 0.8, "final_count": 1200, "labeled_share": 0.6,
                                    "pseudo_share": 0.6, "accuracy": 0.95},
                           "car": {"target_count": 5, "threshold": None, "above_threshold": 0,
                                   "keep_probability": 1.0, "final_count": 0, "labeled_share": 0.4,
                                   "pseudo_share": 0.0, "accuracy": None}}}
    fields = dict(round_name="r1", source="the workspace", class_names=["road", "car"],
                  class_colors=[(1, 2, 3), (4, 5, 6)],
                  rows=[GalleryRow("a<b", {"image": "images/a<b_image.png", "truth": None}, 0.5, None)],
                  stats=stats, distribution_plot="class_distribution.png", legend="legend.png", colorbar=None)
    fields.update(changes)
    return ReportContent(**fields)


def test_report_escapes_ids_uses_relative_links_and_fills_the_class_table():
    page = render_report(_content())
    assert "<code>a&lt;b</code>" in page and 'src="images/a%3Cb_image.png"' in page
    for link in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert not link.startswith(("/", "file:", "http")), link
    assert "not available" in page  # the ground-truth panel of this row
    road = page[page.index("road</td>"):].split("</tr>")[0]
    assert "1,200" in road and "0.9300" in road and "0.8" in road and "60 %" in road and "95 %" in road
    car = page[page.index("car</td>"):].split("</tr>")[0]
    assert "–" in car  # no threshold: the class keeps nothing
    assert "rgb(1, 2, 3)" in page


def test_report_without_stats_says_so():
    page = render_report(_content(stats=None, notes=["no logits"]))
    assert "No pseudo_label_stats.json" in page and "no logits" in page


# ---------------------------------------------------------------------------------------------------------------
# the command on a real (tiny) pipeline state

@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return build_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def report(project, tmp_path_factory) -> tuple[Path, Path]:
    """One full run: every unlabelled image shown, every label exported."""
    out = tmp_path_factory.mktemp("runs") / "report"
    exported = out.parent / "exported"
    code, output = run_inspect("--round", "r1", "--repo", project, "--out", out, "--random", "100",
                               "--export-labels", exported)
    assert code == 0, output
    return out, exported


def test_report_has_every_panel_of_every_image(report, project):
    out, _ = report
    page = (out / "index.html").read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all((out / s).is_file() for s in sources)
    for image_id in UNLABELED_IDS:
        for panel in ("image", "pseudo", "overlay", "confidence"):
            with Image.open(out / "images" / f"{image_id}_{panel}.png") as image:
                assert image.size == (SIZE[1], SIZE[0]) and image.mode == "RGB"
        assert (out / "images" / f"{image_id}_truth.png").exists() == (image_id != UNLABELED_WITHOUT_TRUTH)
    for name in ("legend.png", "confidence_colorbar.png", "class_distribution.png"):
        assert name in sources
    assert "kept share s<sub>j</sub>" in page and "sign</td>" in page


def test_panels_show_the_stored_labels_and_confidences(report, project):
    """The confidence panel is the confidence store's map, the one the labels were drawn from."""
    out, _ = report
    store = PseudoLabelStore.open(project / "outputs/r1/pseudo_labels.zarr")
    confidences = ConfidenceStore.open(project / "outputs/r1/confidences.zarr")
    spec = load_spec(project / "data/prepared")
    image_id = UNLABELED_IDS[2]
    index = store.index_of(image_id)
    label = store.label(index)
    assert (label == 255).any() and (label != 255).any()
    np.testing.assert_array_equal(load_image(out / "images" / f"{image_id}_pseudo.png"),
                                  colorize_labels(label, PALETTE))
    image = load_image(spec.root / "images" / f"{image_id}.png")
    np.testing.assert_array_equal(load_image(out / "images" / f"{image_id}_overlay.png"),
                                  blend_overlay(image, label, PALETTE))
    truth = load_label(spec.root / "labels" / f"{image_id}.png", spec)
    np.testing.assert_array_equal(load_image(out / "images" / f"{image_id}_truth.png"),
                                  colorize_labels(truth, PALETTE))
    confidence, _ = confidences.maps(confidences.image_ids.index(image_id))
    np.testing.assert_array_equal(load_image(out / "images" / f"{image_id}_confidence.png"),
                                  confidence_to_rgb(confidence))


def test_exported_labels_round_trip(report, project):
    _, exported = report
    store = PseudoLabelStore.open(project / "outputs/r1/pseudo_labels.zarr")
    assert sorted(p.stem for p in exported.glob("*.png")) == sorted(store.image_ids)
    for index, image_id in enumerate(store.image_ids):
        with Image.open(exported / f"{image_id}.png") as image:
            assert image.mode == "L"
            np.testing.assert_array_equal(np.asarray(image), store.label(index))


def test_rerun_is_deterministic_and_replaces_its_own_report(project, report, tmp_path):
    out = tmp_path / "again"
    for _ in range(2):
        code, output = run_inspect("--round", "r1", "--repo", project, "--out", out, "--random", "3",
                                   "--seed", "5")
        assert code == 0, output
        first = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
        if _ == 0:
            kept = first
    assert first == kept and len(first) >= 3 * 4
    code, _ = run_inspect("--round", "r1", "--repo", project, "--out", out, "--images", UNLABELED_IDS[0])
    assert code == 0
    assert sorted(p.name.split("_image")[0] for p in (out / "images").glob("*_image.png")) == [UNLABELED_IDS[0]]


def test_default_report_folder_and_chosen_images(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output = run_inspect("--round", "r1", "--repo", project, "--images", f"{UNLABELED_IDS[4]},{UNLABELED_IDS[1]}")
    assert code == 0, output
    page = (tmp_path / "reports/r1/index.html").read_text()
    assert page.index(UNLABELED_IDS[4]) < page.index(UNLABELED_IDS[1])
    assert len(list((tmp_path / "reports/r1/images").glob("*_image.png"))) == 2


@pytest.mark.parametrize(("args", "message"), [
    (("--round", "r1", "--images", "unl_00,nope"), "no pseudo label for image id(s) 'nope'; the round has 6 images"),
    (("--round", "r7"), "unknown round 'r7'; rounds with pseudo labels in"),
    (("--round", "r0"), "round r0 is the supervised baseline and has no pseudo labels"),
    (("--round", "r2"), "outputs/r2/pseudo_labels.zarr: not found at the workspace; make it with `dvc repro "
                        "pseudo_label@r2`"),
    (("--round", "r1", "--images", "unl_00", "--random", "2"), "either --images or --random"),
    (("--round", "r1", "--compare", "r2"), "--compare r2: no pseudo_label_stats.json"),
])
def test_user_errors_are_one_line_with_what_exists(project, tmp_path, args, message):
    code, output = run_inspect(*args, "--repo", project, "--out", tmp_path / "out")
    assert code == 2, output
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "out").exists()


def test_refuses_to_replace_a_folder_it_did_not_write(project, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    code, output = run_inspect("--round", "r1", "--repo", project, "--out", tmp_path / "mine")
    assert code == 2 and "not written by `dars inspect`" in output
    code, output = run_inspect("--round", "r1", "--repo", project, "--out", tmp_path / "ok",
                               "--export-labels", tmp_path / "mine")
    assert code == 2 and "--export-labels" in output
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_without_confidences_the_report_omits_them_and_says_why(project, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    shutil.rmtree(copy / "outputs/r1/confidences.zarr")
    code, output = run_inspect("--round", "r1", "--repo", copy, "--out", tmp_path / "out", "--random", "2")
    assert code == 0, output
    assert "no confidence maps" in output
    page = (tmp_path / "out/index.html").read_text()
    assert "no confidence maps" in page and "confidence_colorbar.png" not in page
    assert not list((tmp_path / "out/images").glob("*_confidence.png"))


# ---------------------------------------------------------------------------------------------------------------
# a revision that is only in git + the DVC cache

def _run(cwd: Path, *command: str) -> None:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)


def test_inspects_a_git_revision_and_an_experiment_from_the_dvc_cache(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    dvc = (sys.executable, "-m", "dvc")
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "config", "user.email", "test@example.com")
    _run(repo, "git", "config", "user.name", "test")
    _run(repo, *dvc, "init", "-q")
    write_params(repo)
    tests_dir, project_dir = Path(__file__).parents[1], Path(__file__).parents[2]
    (repo / "make_state.py").write_text(
        f"import sys\nfrom pathlib import Path\nsys.path[:0] = [{str(tests_dir)!r}, {str(project_dir)!r}]\n"
        "from inspection_state import build_state\n"
        "build_state(Path('.'), variant=int(Path('variant.txt').read_text()), driver=False)\n")
    (repo / "variant.txt").write_text("0\n")
    (repo / "dvc.yaml").write_text(
        f"stages:\n  make:\n    cmd: {sys.executable} make_state.py\n    deps: [make_state.py, variant.txt]\n"
        "    outs: [data/prepared, outputs/r1/logits.zarr, outputs/r1/confidences.zarr,\n"
        "           outputs/r1/pseudo_labels.zarr]\n")
    _run(repo, *dvc, "repro", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-q", "-m", "variant 0")
    code, output = run_inspect("--round", "r1", "--repo", repo, "--out", tmp_path / "before",
                               "--export-labels", tmp_path / "labels_before")
    assert code == 0, output

    # Change the teacher and rerun as a DVC experiment: the workspace now holds the experiment's outputs,
    # and the first commit's are only in the DVC cache.
    (repo / "variant.txt").write_text("1\n")
    _run(repo, *dvc, "exp", "run", "-q", "-n", "teacher-1")
    code, output = run_inspect("--round", "r1", "--repo", repo, "--out", tmp_path / "after",
                               "--export-labels", tmp_path / "labels_after")
    assert code == 0, output

    def labels(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in folder.glob("*.png")}

    assert labels(tmp_path / "labels_before") != labels(tmp_path / "labels_after")
    for rev, expected in (("HEAD", "labels_before"), ("teacher-1", "labels_after")):
        code, output = run_inspect("--round", "r1", "--repo", repo, "--rev", rev, "--out", tmp_path / f"at_{rev}",
                                   "--export-labels", tmp_path / f"labels_at_{rev}", "--random", "100")
        assert code == 0, output
        assert f"revision '{rev}'" in output
        assert labels(tmp_path / f"labels_at_{rev}") == labels(tmp_path / expected)
        page = (tmp_path / f"at_{rev}" / "index.html").read_text()
        assert all((tmp_path / f"at_{rev}" / s).is_file() for s in re.findall(r'src="([^"]+)"', page))
        assert "no confidence maps" not in page  # the confidence store was read from the cache too
    before = (tmp_path / "before" / "images" / f"{UNLABELED_IDS[0]}_pseudo.png").read_bytes()
    assert (tmp_path / "at_HEAD" / "images" / f"{UNLABELED_IDS[0]}_pseudo.png").read_bytes() == before

    code, output = run_inspect("--round", "r1", "--repo", repo, "--rev", "no-such-rev", "--out", tmp_path / "x")
    assert code == 2 and "--rev 'no-such-rev': not a git revision or DVC experiment" in output
    shutil.rmtree(repo / ".dvc" / "cache")  # e.g. after `dvc gc`: git still knows the revision, DVC has no data
    code, output = run_inspect("--round", "r1", "--repo", repo, "--rev", "HEAD", "--out", tmp_path / "x")
    assert code == 2 and "not in the local DVC cache; fetch it with `dvc fetch --rev HEAD`" in output
    assert not (tmp_path / "x").exists()
