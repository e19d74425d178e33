"""Pure rendering of masks, overlays and confidences: arrays in, RGB ``(H, W, 3)`` uint8 arrays out. `dars inspect`,
`dars predict` and the experiment figures draw with these.

Conventions shared by every panel (and stated in the legend the report shows):

- a label mask is drawn in the dataset's class colours; **ignored pixels (255) are a white/grey
  checkerboard**, the usual "nothing here" pattern. Black would be ambiguous: it is VOC's background
  colour.
- an overlay blends the image with the class colour where a pixel has a label; ignored pixels show
  the image unchanged, so what the pseudo label leaves out stays visible.
- confidence (max softmax probability) goes through a perceptually uniform colormap over a fixed
  range, 0..1 by default, so maps of different images and rounds compare directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

import numpy as np

from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.errors import UserError

CHECKER_CELL = 8  # pixels per checkerboard square
CHECKER_COLORS = ((255, 255, 255), (191, 191, 191))
CONFIDENCE_COLORMAP = "viridis"
OVERLAY_ALPHA = 0.5
LEGEND_DPI = 100
LEGEND_FONT_SIZE = 9.0  # points
# Legend layout, in pixels: the swatch, the gap from swatch to label, the space after each column's widest
# label, the margin left of the first column (and, split in two, above and below the rows), the height a row
# adds to its tallest content.
LEGEND_SWATCH = (18, 30)  # (height, width)
LEGEND_GAP = 8
LEGEND_COLUMN_SPACING = 16
LEGEND_MARGIN = 10
LEGEND_ROW_SPACING = 10


def checkerboard(height: int, width: int, cell: int = CHECKER_CELL,
                 colors: tuple[tuple[int, int, int], tuple[int, int, int]] = CHECKER_COLORS) -> np.ndarray:
    """(H, W, 3) uint8 checkerboard of ``cell``-pixel squares; the top-left square has ``colors[0]``."""
    if cell < 1:
        raise ValueError(f"cell must be >= 1, got {cell}")
    rows = (np.arange(height) // cell)[:, None]
    cols = (np.arange(width) // cell)[None, :]
    parity = (rows + cols) % 2
    return np.asarray(colors, np.uint8)[parity]


def _check_mask(mask: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a label mask must be (H, W), got shape {mask.shape}")
    if mask.dtype.kind not in "ui":
        raise ValueError(f"a label mask must hold integers, got {mask.dtype}")
    bad = ((mask >= num_classes) & (mask != ignore_index)) | (mask < 0)
    if bad.any():
        raise ValueError(f"label values {sorted(set(np.unique(mask[bad]).tolist()))[:5]} are neither one of "
                         f"the {num_classes} classes nor the ignore value {ignore_index}")
    return mask


def _class_colors(palette: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    colors = np.asarray(palette)
    if colors.ndim != 2 or colors.shape[1] != 3 or colors.shape[0] < 1:
        raise ValueError(f"palette must be (C, 3), got shape {colors.shape}")
    return colors.astype(np.uint8)


def colorize_labels(mask: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]],
                    ignore_index: int = IGNORE_INDEX, cell: int = CHECKER_CELL) -> np.ndarray:
    """(H, W, 3) uint8: each pixel its class colour, ignored pixels a checkerboard.

    ``palette`` is (C, 3): row ``j`` is class ``j``'s colour; a (256, 3) table such as
    ``ClassSet.palette()`` works too, with C = 256 (then only ``ignore_index`` is special).
    """
    colors = _class_colors(palette)
    mask = _check_mask(mask, len(colors) if len(colors) < 256 else 256, ignore_index)
    ignored = mask == ignore_index
    safe = np.where(ignored, 0, mask)
    out = colors[safe]
    if ignored.any():
        board = checkerboard(*mask.shape, cell=cell)
        out[ignored] = board[ignored]
    return out


def blend_overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray | Sequence[Sequence[int]],
                  alpha: float = OVERLAY_ALPHA, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W, 3) uint8: ``(1 - alpha)·image + alpha·colour`` where labelled, the image itself where ignored."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.dtype} {image.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colors = _class_colors(palette)
    mask = _check_mask(mask, len(colors) if len(colors) < 256 else 256, ignore_index)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    labelled = mask != ignore_index
    colour = colors[np.where(labelled, mask, 0)].astype(np.float32)
    blended = np.rint((1.0 - alpha) * image.astype(np.float32) + alpha * colour).astype(np.uint8)
    return np.where(labelled[..., None], blended, image)


def colormap_table(name: str = CONFIDENCE_COLORMAP) -> np.ndarray:
    """(256, 3) uint8 samples of a matplotlib colormap, from its low end to its high end."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        raise UserError(f"unknown colormap {name!r}; e.g. viridis, magma, inferno, plasma, cividis") from None
    return np.rint(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def confidence_to_rgb(confidence: np.ndarray, vmin: float = 0.0, vmax: float = 1.0,
                      colormap: str = CONFIDENCE_COLORMAP) -> np.ndarray:
    """(H, W, 3) uint8: ``confidence`` clipped to [vmin, vmax] and mapped through ``colormap``.

    ``vmin`` takes the colormap's first colour and ``vmax`` its last; NaN is drawn as ``vmin``.
    """
    if not vmax > vmin:
        raise ValueError(f"vmax ({vmax}) must exceed vmin ({vmin})")
    values = np.asarray(confidence, np.float32)
    if values.ndim != 2:
        raise ValueError(f"a confidence map must be (H, W), got shape {values.shape}")
    scaled = (np.nan_to_num(values, nan=vmin) - vmin) / (vmax - vmin)
    index = np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    return colormap_table(colormap)[index]


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W, 3) uint8 resized bilinearly to ``size`` = (H', W'); unchanged if already that size."""
    from PIL import Image

    height, width = (int(v) for v in size)
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _figure_to_rgb(figure) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _text_widths_and_height(texts: Sequence[str], size: float, dpi: float) -> tuple[list[float], float]:
    """Each text's width and the tallest's height (with descent), in pixels, as Agg draws them in the current
    matplotlib font: measured by the renderer itself, so any font, size or script fits."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    renderer = FigureCanvasAgg(Figure(dpi=dpi)).get_renderer()
    font = FontProperties(size=size)
    sizes = [renderer.get_text_width_height_descent(text, font, ismath=False) for text in texts]
    return [width for width, _, _ in sizes], max((height for _, height, _ in sizes), default=0.0)


def legend_image(class_names: Sequence[str], palette: np.ndarray | Sequence[Sequence[int]],
                 ignore_label: str = "ignored (255): no pseudo label", columns: int = 4) -> np.ndarray:
    """(H, W, 3) uint8 legend on white: a swatch per class, plus the checkerboard swatch for ignored pixels.

    The entries fill rows of ``columns``, left to right. Each column is as wide as its widest label as the
    current matplotlib font renders it (measured), plus spacing, so every label shows whole (none is cut at the
    image's edge or runs into the next column), whatever the font and the names.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    colors = _class_colors(palette)[: len(class_names)] / 255.0
    texts = [*class_names, ignore_label]
    widths, text_height = _text_widths_and_height(texts, LEGEND_FONT_SIZE, LEGEND_DPI)
    columns = min(columns, len(texts))
    rows = -(-len(texts) // columns)
    swatch_height, swatch_width = LEGEND_SWATCH
    column_widths = [swatch_width + LEGEND_GAP + max(widths[c::columns]) + LEGEND_COLUMN_SPACING
                     for c in range(columns)]
    lefts = list(accumulate(column_widths[:-1], initial=LEGEND_MARGIN))
    row_height = max(swatch_height, text_height) + LEGEND_ROW_SPACING
    width = math.ceil(lefts[-1] + column_widths[-1])
    height = math.ceil(rows * row_height + LEGEND_MARGIN)
    # Agg truncates the figure's size to whole pixels: half a pixel more keeps it from losing one.
    figure = Figure(figsize=((width + 0.5) / LEGEND_DPI, (height + 0.5) / LEGEND_DPI), dpi=LEGEND_DPI)
    axes = figure.add_axes((0, 0, 1, 1))  # one data unit = one pixel, y downwards
    axes.axis("off")
    for k, text in enumerate(texts):
        x = lefts[k % columns]
        middle = LEGEND_MARGIN / 2 + (k // columns + 0.5) * row_height
        top = middle - swatch_height / 2
        if k < len(class_names):
            axes.add_patch(Rectangle((x, top), swatch_width, swatch_height, facecolor=colors[k],
                                     edgecolor="black", linewidth=0.5))
        else:
            board = checkerboard(swatch_height, swatch_width, cell=6) / 255.0
            axes.imshow(board, extent=(x, x + swatch_width, top + swatch_height, top), interpolation="nearest")
            axes.add_patch(Rectangle((x, top), swatch_width, swatch_height, fill=False, edgecolor="black",
                                     linewidth=0.5))
        # parse_math=False: a "$" in a name is text, as measured, not the start of a formula.
        axes.text(x + swatch_width + LEGEND_GAP, middle, text, va="center", fontsize=LEGEND_FONT_SIZE,
                  parse_math=False)
    # After imshow, which may set the limits to its extent and the aspect to equal.
    axes.set_xlim(0, width + 0.5)
    axes.set_ylim(height + 0.5, 0)
    axes.set_aspect("auto")
    return _figure_to_rgb(figure)


def colorbar_image(vmin: float = 0.0, vmax: float = 1.0, colormap: str = CONFIDENCE_COLORMAP,
                   label: str = "confidence (max softmax probability)") -> np.ndarray:
    """(H, W, 3) uint8 horizontal colour bar with ticks, matching :func:`confidence_to_rgb`."""
    from matplotlib import colormaps
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.figure import Figure

    colormap_table(colormap)  # refuses unknown names with a UserError
    figure = Figure(figsize=(5.0, 0.9), dpi=100)
    axes = figure.add_axes((0.05, 0.55, 0.9, 0.3))
    ColorbarBase(axes, cmap=ListedColormap(colormaps[colormap](np.linspace(0, 1, 256))),
                 norm=Normalize(vmin, vmax), orientation="horizontal").set_label(label, fontsize=9)
    axes.tick_params(labelsize=8)
    return _figure_to_rgb(figure)
