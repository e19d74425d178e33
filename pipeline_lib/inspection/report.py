"""A static HTML page per round of pseudo labels: gallery, per-class statistics, distribution plot.

The page is one self-contained ``index.html`` next to the PNGs it shows; every link is relative, there
is no script and nothing is fetched from the network, so it opens from disk (file://) in any browser and
can be copied or archived with its folder.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from pipeline_lib.atomic import write_text

# Gallery columns: (key in GalleryRow.panels, column heading).
PANELS: tuple[tuple[str, str], ...] = (
    ("image", "image"),
    ("pseudo", "pseudo label"),
    ("overlay", "overlay"),
    ("confidence", "confidence"),
    ("truth", "ground truth"),
)
PANEL_WIDTH = 256  # CSS pixels: the most a gallery panel is shown at; narrower windows shrink it

# Per-class table: (key in the stats' per_class entry, heading, how to show the value).
CLASS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("target_count", "target count n<sub>j</sub>", "count"),
    ("threshold", "threshold t<sub>j</sub>", "threshold"),
    ("above_threshold", "above threshold", "count"),
    ("keep_probability", "kept share s<sub>j</sub>", "ratio"),
    ("final_count", "final count", "count"),
    ("labeled_share", "labelled share", "percent"),
    ("pseudo_share", "pseudo share", "percent"),
    ("accuracy", "accuracy", "percent"),
)

SUMMARY_KEYS: tuple[tuple[str, str, str], ...] = (
    ("method", "method", "text"),
    ("labeling_ratio", "labelling ratio α", "ratio"),
    ("temperature", "temperature T", "ratio"),
    ("seed", "sampling seed", "text"),
    ("images", "unlabelled images", "count"),
    ("pixels", "unlabelled pixels", "count"),
    ("pseudo_labeled_pixels", "pseudo-labelled pixels", "count"),
    ("fraction_labeled", "share pseudo-labelled", "percent"),
    ("kl_divergence", "KL(labelled ‖ pseudo) [nats]", "ratio"),
    ("pseudo_label_accuracy", "pseudo-label accuracy", "percent"),
    ("ground_truth_images", "images with ground truth", "count"),
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
/* The gallery is a grid, not a table: its panel columns (see _gallery) share what the window leaves beside
   the id column, so the panels shrink with the window, keeping their aspect, instead of the page scrolling
   sideways; how far images in a table's cells shrink differs between browsers. The gap shows the grey
   background as the cells' borders. */
.gallery { display: grid; width: fit-content; max-width: 100%; box-sizing: border-box; gap: 1px;
           background: #ccc; border: 1px solid #ccc; }
.gallery > div { background: #fff; padding: 3px 7px; }  /* 14 px across, as _gallery counts */
.gallery > .head { font-weight: bold; text-align: center; }
.gallery > .id { white-space: nowrap; }  /* "kept 11.6 %" stays whole */
.gallery img { display: block; width: 100%; height: auto; image-rendering: pixelated; }
/* Legend, colour bar, plot: natural size, scaled down only in a window narrower than they are. */
img { max-width: 100%; height: auto; }
.swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #555; vertical-align: middle; }
.note { color: #a04000; }
.muted { color: #777; }
"""


@dataclass(frozen=True)
class GalleryRow:
    """One inspected image: its panels' PNG paths (relative to the page; None = not available)."""

    image_id: str
    panels: dict[str, str | None]
    kept_share: float
    accuracy: float | None = None


@dataclass(frozen=True)
class ReportContent:
    round_name: str
    source: str  # where the artifacts were read from, e.g. "the workspace"
    class_names: Sequence[str]
    class_colors: Sequence[Sequence[int]]
    rows: Sequence[GalleryRow]
    stats: dict | None
    distribution_plot: str | None  # relative PNG path
    legend: str | None
    colorbar: str | None
    notes: Sequence[str] = field(default_factory=tuple)


def _format(value: object, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "text" or isinstance(value, str):
        return html.escape(str(value))
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        return html.escape(str(number))
    if kind == "count":
        return f"{int(number):,}"
    if kind == "percent":
        return f"{100 * number:.3g} %"
    if kind == "threshold":
        return f"{number:.4f}"
    return f"{number:.4g}"


def _link(path: str) -> str:
    """A relative URL for a path (folder separators kept, anything else escaped)."""
    return quote(path.replace(os.sep, "/"))


def _image_cell(path: str | None, alt: str) -> str:
    if path is None:
        return '<div class="muted">not available</div>'
    url = _link(path)
    return f'<div><a href="{url}"><img src="{url}" alt="{html.escape(alt)}"></a></div>'


def _gallery(rows: Sequence[GalleryRow]) -> str:
    """The gallery grid (see STYLE): a heading row, then per image its id and facts and one cell per PANELS
    entry, in order; each panel links to its PNG at full size.

    The id column is as wide as its content; each panel column takes an equal share of the rest, from 0 up
    to PANEL_WIDTH plus the cell's padding.
    """
    columns = f"max-content repeat({len(PANELS)}, minmax(0, calc({PANEL_WIDTH}px + 14px)))"
    heads = "".join(f'<div class="head">{html.escape(title)}</div>' for _, title in PANELS)
    lines = [f'<div class="gallery" style="grid-template-columns: {columns}"><div class="head">image id</div>{heads}']
    for row in rows:
        facts = f"kept {_format(row.kept_share, 'percent')}"
        if row.accuracy is not None:
            facts += f"<br>accuracy {_format(row.accuracy, 'percent')}"
        cells = "".join(_image_cell(row.panels.get(key), f"{row.image_id}: {title}") for key, title in PANELS)
        lines.append(f'<div class="id"><code>{html.escape(row.image_id)}</code><br><span class=muted>{facts}</span>'
                     f"</div>{cells}")
    lines.append("</div>")
    return "\n".join(lines)


def _summary(stats: dict) -> str:
    rows = [f"<tr><th>{html.escape(title)}</th><td class=num>{_format(stats.get(key), kind)}</td></tr>"
            for key, title, kind in SUMMARY_KEYS if key in stats]
    return "<table>" + "".join(rows) + "</table>"


def _class_table(stats: dict, class_names: Sequence[str], class_colors: Sequence[Sequence[int]]) -> str:
    per_class = stats.get("per_class") or {}
    has_accuracy = any(isinstance(e, dict) and "accuracy" in e for e in per_class.values())
    columns = [c for c in CLASS_COLUMNS if c[0] != "accuracy" or has_accuracy]
    heads = "".join(f"<th>{title}</th>" for _, title, _ in columns)
    lines = [f"<table><tr><th>class</th>{heads}</tr>"]
    for j, name in enumerate(class_names):
        entry = per_class.get(name)
        if not isinstance(entry, dict):
            continue
        r, g, b = (int(v) for v in class_colors[j])
        swatch = f'<span class="swatch" style="background: rgb({r}, {g}, {b})"></span>'
        cells = "".join(f"<td class=num>{_format(entry.get(key), kind)}</td>" for key, _, kind in columns)
        lines.append(f"<tr><td>{swatch} {html.escape(name)}</td>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def render_report(content: ReportContent) -> str:
    """The page as an HTML string."""
    title = f"Pseudo labels of round {content.round_name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Read from {html.escape(content.source)}. {len(content.rows)} unlabelled images shown.</p>",
    ]
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in content.notes]
    parts.append("<h2>Legend</h2><p>Pseudo label and ground truth: class colours; a white/grey checkerboard "
                 "marks ignored pixels (255, no pseudo label). Overlay: the image blended with the class colour "
                 "where a pixel is pseudo-labelled, the plain image where it is ignored. Confidence: the "
                 "teacher's maximum softmax probability at label resolution, on the colour bar's fixed 0–1 "
                 "scale.</p>")
    for image in (content.legend, content.colorbar):
        if image:
            parts.append(f'<p><img src="{_link(image)}" alt="legend"></p>')
    parts.append("<h2>Gallery</h2>")
    parts.append(_gallery(content.rows))
    parts.append("<h2>Per-class statistics</h2>")
    if content.stats:
        parts.append(_summary(content.stats))
        parts.append("<p>n<sub>j</sub>: pixels class j should receive; t<sub>j</sub>: its confidence threshold; "
                     "s<sub>j</sub>: the share of pixels above t<sub>j</sub> that random sampling keeps (DARS; "
                     "1 otherwise); shares are of the labelled (resp. pseudo-labelled) pixels; accuracy: "
                     "against the ground truth where the unlabelled images have one.</p>")
        parts.append(_class_table(content.stats, content.class_names, content.class_colors))
    else:
        parts.append('<p class="note">No pseudo_label_stats.json for this round.</p>')
    if content.distribution_plot:
        parts.append("<h2>Class distribution</h2>")
        parts.append("<p>Labelled set vs pseudo labels, classes ordered by labelled frequency, log scale.</p>")
        parts.append(f'<p><img src="{_link(content.distribution_plot)}" alt="class distribution"></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(path: str | os.PathLike, content: ReportContent) -> None:
    """Write the page at ``path`` (normally ``<report dir>/index.html``), atomically."""
    write_text(path, render_report(content))
