"""inspect: look at a round's cached pseudo labels — PNG panels, a class-distribution plot and an HTML report.

Not a pipeline stage (it writes nothing DVC tracks); it reads the round's artifacts from the workspace or,
with --rev, from any git revision or DVC experiment whose outputs are in the DVC cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from PIL import Image
from tqdm import tqdm

from pipeline_lib.atomic import atomic_path
from pipeline_lib.errors import UserError
from pipeline_lib.inspection.artifacts import (
    ArtifactSource,
    RoundArtifacts,
    check_pseudo_label_round,
    load_params,
    open_round,
    read_stats,
)
from pipeline_lib.inspection.panels import (
    blend_overlay,
    colorbar_image,
    colorize_labels,
    confidence_to_rgb,
    label_agreement,
    legend_image,
    resize_image,
    select_image_ids,
)
from pipeline_lib.inspection.plots import plot_class_distributions
from pipeline_lib.inspection.report import GalleryRow, ReportContent, write_report
from pipeline_lib.stores.pseudo_label_store import PseudoLabelStore

from . import run_standalone

DEFAULT_RANDOM_IMAGES = 8
REPORT_MARKER = ".dars-inspect-report"  # a folder holding this may be replaced whole by the next run
EXPORT_MARKER = ".dars-exported-labels"


def inspect(
    round_name: str = typer.Option(..., "--round", help="The round whose pseudo labels to look at (r1, r2…)."),
    rev: str | None = typer.Option(None, "--rev", help="Read the round from this git revision or DVC "
                                   "experiment instead of the workspace (its outputs must be in the DVC cache)."),
    images: str | None = typer.Option(None, "--images", help="Comma-separated unlabelled image ids to show."),
    random_count: int | None = typer.Option(None, "--random", help="Show this many randomly chosen unlabelled "
                                            f"images (the default, with {DEFAULT_RANDOM_IMAGES})."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random choice of images."),
    out: Path | None = typer.Option(None, "--out", help="Report folder (default reports/<round>); a previous "
                                    "report there is replaced whole."),
    export_labels: Path | None = typer.Option(None, "--export-labels", help="Also write every pseudo label of "
                                              "the round to this folder as <image_id>.png (single-channel uint8 "
                                              "train ids, 255 = ignore)."),
    compare: str | None = typer.Option(None, "--compare", help="More pseudo-label series for the distribution "
                                       "plot: comma-separated rounds (r2) or REV:ROUND (e.g. cbst-exp:r1)."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads rounds), relative to --repo."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory, relative to --repo."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round outputs, relative to --repo."),
    repo: Path = typer.Option(Path("."), help="The project's repository root."),
) -> None:
    """Render pseudo label, overlay, confidence and ground truth of some unlabelled images into an HTML report."""
    if images is not None and random_count is not None:
        raise UserError("give either --images or --random, not both")
    requested = [i.strip() for i in images.split(",") if i.strip()] if images is not None else None
    if requested is not None and not requested:
        raise UserError("--images is empty; give comma-separated image ids")
    out = out if out is not None else Path("reports") / round_name
    _check_replaceable(out, REPORT_MARKER, "--out")
    if export_labels is not None:
        _check_replaceable(export_labels, EXPORT_MARKER, "--export-labels")

    with ArtifactSource(repo, rev) as source:
        artifacts = open_round(source, round_name, params, prepared, outputs)
        chosen = select_image_ids(artifacts.image_ids, requested,
                                  random_count if random_count is not None else DEFAULT_RANDOM_IMAGES, seed)
        series = {_series_name(round_name, None, artifacts.labels.attrs): artifacts.pseudo_distribution()}
        series.update(_comparison_series(compare, source, repo, params, outputs, artifacts.labels.class_names))
        notes = [artifacts.confidence_note] if artifacts.confidence_note else []
        with atomic_path(out) as tmp:
            _write_report(tmp, artifacts, chosen, series, notes)
        if export_labels is not None:
            exported = export_pseudo_labels(artifacts.labels, export_labels)
            typer.echo(f"exported {exported} pseudo labels → {export_labels}")
    for note in notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"{round_name} ({source.description}): {len(chosen)} images → {out / 'index.html'}")


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
            check_pseudo_label_round(load_params(other, params), round_name)
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
    for image_id in tqdm(chosen, desc="rendering", unit="img", leave=False, disable=None):
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
    if artifacts.logits is not None:
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
        for index, mask in tqdm(store.iter_labels(), total=len(store), desc="exporting", unit="img", leave=False,
                                disable=None):
            _save_png(tmp / f"{store.image_ids[index]}.png", np.asarray(mask, np.uint8))
    return len(store)


if __name__ == "__main__":
    run_standalone(inspect)
