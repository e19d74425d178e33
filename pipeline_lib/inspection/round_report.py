"""A round's inspection report: choose images, render their panels and the class-distribution plot, write
index.html — all into one folder that appears whole — and optionally export every pseudo label as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline_lib.atomic import atomic_path
from pipeline_lib.errors import UserError
from pipeline_lib.artifact_source import ArtifactSource, load_params
from pipeline_lib.inspection.artifacts import RoundArtifacts, open_round, read_stats
from pipeline_lib.drawing.panels import (
    blend_overlay,
    colorbar_image,
    colorize_labels,
    confidence_to_rgb,
    legend_image,
    resize_image,
)
from pipeline_lib.drawing.class_shares import plot_class_distributions
from pipeline_lib.inspection.selection import label_agreement, select_image_ids
from pipeline_lib.inspection.report import GalleryRow, ReportContent, write_report
from pipeline_lib.progress import track
from pipeline_lib.settings import self_training_round
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore

REPORT_MARKER = ".dars-inspect-report"  # a folder holding this may be replaced whole by the next run
EXPORT_MARKER = ".dars-exported-labels"


def inspect_round(round_name: str, rev: str | None, requested: list[str] | None, random_count: int,
                  seed: int, out: Path, export_labels: Path | None, compare: str | None, params: Path,
                  prepared: Path, outputs: Path, repo: Path, echo=print) -> tuple[str, int, list[str]]:
    """Write the report folder ``out`` showing the ``requested`` images, or ``random_count`` drawn with ``seed``
    (and the exported labels); returns (source description, images shown,
    notes for the user). ``echo`` receives progress lines."""
    _check_replaceable(out, REPORT_MARKER, "--out")
    if export_labels is not None:
        _check_replaceable(export_labels, EXPORT_MARKER, "--export-labels")

    with ArtifactSource(repo, rev) as source:
        artifacts = open_round(source, round_name, params, prepared, outputs)
        chosen = select_image_ids(artifacts.image_ids, requested, random_count, seed)
        series = {_series_name(round_name, None, artifacts.labels.attrs): artifacts.pseudo_distribution()}
        series.update(_comparison_series(compare, source, repo, params, outputs, artifacts.labels.class_names))
        notes = [artifacts.confidence_note] if artifacts.confidence_note else []
        with atomic_path(out) as tmp:
            _write_report(tmp, artifacts, chosen, series, notes)
        if export_labels is not None:
            exported = export_pseudo_labels(artifacts.labels, export_labels)
            echo(f"exported {exported} pseudo labels → {export_labels}")
        return source.description, len(chosen), notes


def _check_replaceable(path: Path, marker: str, option: str) -> None:
    """Refuse to replace anything but an empty folder or one this command wrote (it is replaced whole)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise UserError(f"{option} {path}: exists and is not a folder")
    if any(path.iterdir()) and not (path / marker).exists():
        raise UserError(f"{option} {path}: folder is not empty and was not written by `dars inspect`; "
                        "it would be replaced whole, so choose another folder")


def _series_name(round_name: str, rev: str | None, attrs: dict) -> str:
    where = f"{round_name}@{rev}" if rev else round_name
    method = attrs.get("method")
    ratio = attrs.get("labeling_ratio")
    details = ", ".join(p for p in (str(method) if method else "", f"α={ratio:g}" if ratio is not None else "") if p)
    return f"{where} ({details})" if details else where


def _comparison_series(compare: str | None, source: ArtifactSource, repo: Path, params: Path, outputs: Path,
                       class_names: list[str]) -> dict[str, np.ndarray]:
    """Per-class pseudo-label counts of the --compare rounds, from their stats files."""
    series: dict[str, np.ndarray] = {}
    for item in (compare or "").split(","):
        item = item.strip()
        if not item:
            continue
        rev, _, round_name = item.rpartition(":")
        other = ArtifactSource(repo, rev) if rev else source
        try:
            self_training_round(load_params(other, params), round_name)
            stats = read_stats(other, outputs, round_name)
            if stats is None or not isinstance(stats.get("per_class"), dict):
                raise UserError(f"--compare {item}: no pseudo_label_stats.json for {round_name} at "
                                f"{other.description}")
            if list(stats["per_class"]) != list(class_names):
                raise UserError(f"--compare {item}: its classes differ from those of the inspected round")
            counts = np.array([stats["per_class"][name].get("final_count", 0) for name in class_names], np.float64)
            series[_series_name(round_name, rev or None, stats)] = counts
        finally:
            if other is not source:
                other.close()
    return series


# zlib level 1: ~4x faster than PIL's default 6 on full-size Cityscapes panels, files ~15 % larger
# (bench/bench_inspection.py); PNG writing dominates the time per image.
PNG_COMPRESS_LEVEL = 1


def _save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


def _write_report(folder: Path, artifacts: RoundArtifacts, chosen: list[str], series: dict[str, np.ndarray],
                  notes: list[str]) -> None:
    """Every PNG and the index.html of the report, into ``folder`` (a fresh temporary directory)."""
    classes = artifacts.spec.classes
    palette = np.asarray(classes.colors, np.uint8)
    (folder / "images").mkdir(parents=True)
    (folder / REPORT_MARKER).write_text("written by `dars inspect`; this folder is replaced on the next run\n")
    rows = []
    for image_id in track(chosen, desc="rendering", unit="img"):
        label = artifacts.pseudo_label(image_id)
        image = resize_image(artifacts.image(image_id), label.shape)
        truth = artifacts.ground_truth(image_id)
        confidence = artifacts.confidence(image_id)
        drawn = {"image": image, "pseudo": colorize_labels(label, palette),
                 "overlay": blend_overlay(image, label, palette),
                 "confidence": None if confidence is None else confidence_to_rgb(confidence),
                 "truth": None if truth is None else colorize_labels(truth, palette)}
        panels: dict[str, str | None] = {}
        for key, array in drawn.items():
            if array is None:
                panels[key] = None
                continue
            relative = f"images/{image_id}_{key}.png"
            _save_png(folder / relative, array)
            panels[key] = relative
        agreement = label_agreement(label, truth)
        rows.append(GalleryRow(image_id, panels, agreement["kept_share"], agreement["accuracy"]))

    _save_png(folder / "legend.png", legend_image(classes.names, palette))
    colorbar = None
    if artifacts.confidences is not None:
        colorbar = "confidence_colorbar.png"
        _save_png(folder / colorbar, colorbar_image())
    plot_class_distributions(folder / "class_distribution.png", classes.names, artifacts.labeled_distribution,
                             series, title=f"Class distribution: labelled set vs pseudo labels "
                                           f"({artifacts.source.description})")
    write_report(folder / "index.html", ReportContent(
        round_name=artifacts.round_name, source=artifacts.source.description, class_names=classes.names,
        class_colors=classes.colors, rows=rows, stats=artifacts.stats, distribution_plot="class_distribution.png",
        legend="legend.png", colorbar=colorbar, notes=notes))


def export_pseudo_labels(store: PseudoLabelStore, folder: Path) -> int:
    """Write every mask of ``store`` as ``<folder>/<image_id>.png`` (mode L, train ids, 255 = ignore), atomically."""
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        (tmp / EXPORT_MARKER).write_text("written by `dars inspect --export-labels`; replaced on the next run\n")
        for index, mask in track(store.iter_labels(), total=len(store), desc="exporting", unit="img"):
            _save_png(tmp / f"{store.image_ids[index]}.png", np.asarray(mask, np.uint8))
    return len(store)
