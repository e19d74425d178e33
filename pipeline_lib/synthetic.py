"""The embedded default dataset: procedurally generated, long-tailed street scenes.

Every image is rendered from a small 3-D street model seen by a pinhole camera 1.3 m above flat
ground: a road flanked by sidewalks (sometimes grass strips), façades of buildings or trees on both
sides, an optional backdrop closing the street, and upright objects standing on the ground (trees,
poles with signs or lights, people, riders, bicycles, motorcycles, cars, trucks, buses, trams).
Objects are simple shapes whose sizes are given in metres, so perspective comes for free: things
lower in the image are nearer and bigger, and textures anchored to surfaces get finer with depth.

The 19 classes are Cityscapes' (train ids, colours; 255 = ignore). How often each object family
appears is set so that the average pixel shares follow Cityscapes' long tail (``TARGET_SHARES``);
tail classes are absent from most images, as in real data. Tail classes are made to look like
their head-class neighbours, with weaker cues that still separate them:

* rider ~ person: same body and clothing model, but seated on a bicycle/motorcycle;
* truck / bus / train ~ car: one shared paint palette; they differ in size, aspect, window bands,
  ribbed cargo boxes, rails under trams;
* terrain ~ vegetation: overlapping greens; terrain is flat ground with fine grain, vegetation is
  upright with coarse leafy blobs;
* wall / fence ~ building: building paints; walls are low with fine brick courses, fences a fine
  grid (see-through) instead of windows;
* sidewalk ~ road: overlapping greys; sidewalks have tile joints and a kerb, roads lane marks;
* motorcycle ~ bicycle, traffic sign / light ~ pole: attached to or shaped like each other.

Per-instance colour jitter, per-image lighting (gain, contrast, colour cast), cast shadows, blur
and Gaussian noise make colour alone insufficient. 30 % of the images have an ego-vehicle
bonnet at the bottom and some have unlabelled street clutter, both labelled 255 (ignore).

Image ``i`` depends only on ``(seed, i)``, so any subset can be generated in any order.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from .atomic import write_json
from .classes import CITYSCAPES
from .datasets import Sample, write_prepared
from .errors import UserError

_ID = {name: index for index, name in enumerate(CITYSCAPES.names)}
ROAD, SIDEWALK, BUILDING, WALL, FENCE = (_ID[n] for n in ("road", "sidewalk", "building", "wall", "fence"))
POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN = (_ID[n] for n in ("pole", "traffic light", "traffic sign"))
VEGETATION, TERRAIN, SKY = (_ID[n] for n in ("vegetation", "terrain", "sky"))
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN = (_ID[n] for n in ("person", "rider", "car", "truck", "bus", "train"))
MOTORCYCLE, BICYCLE = _ID["motorcycle"], _ID["bicycle"]
IGNORE = CITYSCAPES.ignore_index

# Shares of the valid pixels of the Cityscapes fine train set, in percent, in train-id order.
CITYSCAPES_SHARES_PERCENT = (36.9, 6.1, 22.8, 0.66, 0.88, 1.23, 0.21, 0.55, 15.9, 1.16, 4.0, 1.22, 0.13,
                             7.0, 0.27, 0.23, 0.23, 0.10, 0.41)
TARGET_SHARES = np.asarray(CITYSCAPES_SHARES_PERCENT) / sum(CITYSCAPES_SHARES_PERCENT)

CAMERA_HEIGHT = 1.3  # metres above the road, roughly a windscreen camera
MIN_IMAGE_SIDE = 64

# --- Palettes (RGB). Shared palettes are what makes look-alike classes look alike. ----------------
VEHICLE_PAINTS = ((232, 232, 228), (178, 180, 184), (112, 114, 120), (38, 38, 42), (34, 48, 92),
                  (150, 32, 30), (62, 84, 66), (198, 188, 160), (196, 160, 40))
BUILDING_PAINTS = ((198, 188, 168), (168, 164, 160), (150, 108, 88), (214, 204, 188), (122, 120, 124),
                   (180, 150, 118), (160, 170, 176))
LEAF_GREENS = ((58, 92, 40), (76, 110, 50), (46, 74, 38), (92, 118, 60))
GRASS_GREENS = ((88, 116, 52), (112, 124, 66), (126, 120, 78), (80, 104, 50))
CLOTHES = ((30, 30, 36), (64, 64, 74), (150, 34, 34), (32, 52, 112), (205, 205, 200), (122, 100, 72),
           (70, 92, 62), (184, 150, 64), (96, 40, 80))
SKIN = ((228, 192, 162), (196, 146, 114), (146, 100, 74), (96, 66, 50))


# --- Camera and pixel windows ---------------------------------------------------------------------

@dataclass(frozen=True)
class Camera:
    """A level pinhole camera: ground point (lateral X, depth Z) -> column cx + f X / Z."""

    height: int
    width: int
    focal: float  # pixels
    horizon: float  # row of the horizon (continuous pixel coordinates, pixel centres at +0.5)
    center_x: float  # column of the vanishing point

    def near_depth(self) -> float:
        """Depth of the ground seen at the bottom edge of the image."""
        return self.focal * CAMERA_HEIGHT / (self.height - self.horizon)

    def row(self, elevation: float, depth: float) -> float:
        return self.horizon + self.focal * (CAMERA_HEIGHT - elevation) / depth


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels and the surface coordinates (metres) of their centres.

    ``u`` runs along the surface (lateral offset for camera-facing planes, depth beyond the near
    end for planes parallel to the street) and ``b`` is the elevation above the ground.
    """

    rows: slice
    cols: slice
    u: np.ndarray  # (1, w)
    b: np.ndarray  # (h, 1) or (h, w)
    inside: np.ndarray | None  # (h, w) pixels that lie on the surface, None = all

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.stop - self.rows.start, self.cols.stop - self.cols.start


def _pixel_range(lo: float, hi: float, size: int) -> tuple[int, int]:
    """The pixels whose centres (i + 0.5) lie in [lo, hi]: shapes are sampled at pixel centres, which keeps
    their expected area exact at any resolution (a 0.4 px wide pole shows in 40% of the columns)."""
    return max(0, math.ceil(lo - 0.5)), min(size, math.floor(hi - 0.5) + 1)


def billboard(cam: Camera, lateral: float, depth: float, u0: float, u1: float, b0: float, b1: float
              ) -> Window | None:
    """Pixels of an upright plane facing the camera at ground point (lateral, depth): local box [u0,u1]x[b0,b1]."""
    scale = cam.focal / depth
    c0, c1 = _pixel_range(cam.center_x + scale * (lateral + u0), cam.center_x + scale * (lateral + u1), cam.width)
    r0, r1 = _pixel_range(cam.row(b1, depth), cam.row(b0, depth), cam.height)
    if c0 >= c1 or r0 >= r1:
        return None
    u = (np.arange(c0, c1, dtype=np.float32) + 0.5 - cam.center_x) / scale - lateral
    b = CAMERA_HEIGHT - (np.arange(r0, r1, dtype=np.float32) + 0.5 - cam.horizon) / scale
    return Window(slice(r0, r1), slice(c0, c1), u[None, :], b[:, None], None)


def side_plane(cam: Camera, lateral: float, z0: float, z1: float, b0: float, b1: float) -> Window | None:
    """Pixels of an upright plane parallel to the street at ``lateral``, depths [z0,z1], elevations [b0,b1]."""
    x_near = cam.center_x + cam.focal * lateral / z0
    x_far = cam.center_x + cam.focal * lateral / z1
    c0, c1 = _pixel_range(min(x_near, x_far), max(x_near, x_far), cam.width)
    top = min(cam.row(b1, z0), cam.row(b1, z1))
    bottom = max(cam.row(b0, z0), cam.row(b0, z1))
    r0, r1 = _pixel_range(top, bottom, cam.height)
    if c0 >= c1 or r0 >= r1:
        return None
    offset = np.arange(c0, c1, dtype=np.float32) + 0.5 - cam.center_x
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = cam.focal * lateral / offset
    on_plane = (depth >= z0) & (depth <= z1)
    depth = np.where(on_plane, depth, z0).astype(np.float32)
    rows = np.arange(r0, r1, dtype=np.float32) + 0.5 - cam.horizon
    b = CAMERA_HEIGHT - rows[:, None] * depth[None, :] / cam.focal
    inside = on_plane[None, :] & (b >= b0) & (b <= b1)
    return Window(slice(r0, r1), slice(c0, c1), (depth - z0)[None, :], b, inside)


# --- Drawing primitives ---------------------------------------------------------------------------

class Canvas:
    """Image and label being painted back to front (painter's algorithm)."""

    def __init__(self, cam: Camera, rng: np.random.Generator) -> None:
        self.cam = cam
        self.image = np.zeros((cam.height, cam.width, 3), np.float32)
        self.label = np.full((cam.height, cam.width), IGNORE, np.uint8)
        # Each image reads the shared noise texture at its own offset.
        self.noise_offset = rng.uniform(0, NOISE_CELLS, 2).astype(np.float32) + 64 * NOISE_CELLS

    def paint(self, win: Window, mask: np.ndarray, color: np.ndarray, class_id: int) -> None:
        if win.inside is not None:
            mask = mask & win.inside
        np.copyto(self.image[win.rows, win.cols], color, where=mask[..., None])
        np.copyto(self.label[win.rows, win.cols], np.uint8(class_id), where=mask)

    def noise(self, u: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
        """Smooth noise (zero mean, unit std, one blob per unit of u and v) at surface coordinates.

        A table look-up into a precomputed texture: ~4x cheaper than interpolating a lattice here.
        """
        texture = noise_texture()
        size = texture.shape[0]  # a power of two: "& (size - 1)" wraps around
        iu = ((np.asarray(u, np.float32) + self.noise_offset[0]) * NOISE_SUBSTEPS).astype(np.int32) & (size - 1)
        iv = ((np.asarray(v, np.float32) + self.noise_offset[1]) * NOISE_SUBSTEPS).astype(np.int32) & (size - 1)
        return np.take(texture, iv * size + iu)  # a flat take is ~3x faster than texture[iv, iu]

    def smooth_noise(self, u: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
        """Like ``noise`` but interpolated: for coarse patterns whose thresholded edges must not show texels."""
        return value_noise(noise_texture(), (np.asarray(u, np.float32) + self.noise_offset[0]) * NOISE_SUBSTEPS,
                           (np.asarray(v, np.float32) + self.noise_offset[1]) * NOISE_SUBSTEPS)

    def backdrop(self, win: Window) -> np.ndarray:
        return self.image[win.rows, win.cols]


NOISE_CELLS = 64  # lattice cells per period of the noise texture
NOISE_SUBSTEPS = 16  # texels per lattice cell


@functools.cache
def noise_texture() -> np.ndarray:
    """A fixed, periodic, smooth noise texture (1024 x 1024 texels), normalised to unit std."""
    lattice = np.random.default_rng(2021).standard_normal((NOISE_CELLS, NOISE_CELLS)).astype(np.float32)
    t = (np.arange(NOISE_CELLS * NOISE_SUBSTEPS, dtype=np.float32) + 0.5) / NOISE_SUBSTEPS
    texture = value_noise(lattice, t[None, :], t[:, None])
    return ((texture - texture.mean()) / texture.std()).astype(np.float32)


def value_noise(lattice: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear interpolation (smoothstep-eased) of a periodic square lattice at real coordinates.

    The lattice side must be a power of two (indices wrap with a bit mask).
    """
    n = lattice.shape[0]
    u = np.asarray(u, np.float32)
    v = np.asarray(v, np.float32)
    fu, fv = np.floor(u), np.floor(v)
    tu, tv = u - fu, v - fv
    tu = tu * tu * (3 - 2 * tu)
    tv = tv * tv * (3 - 2 * tv)
    i0 = fu.astype(np.int64) & (n - 1)
    j0 = (fv.astype(np.int64) & (n - 1)) * n
    i1, j1 = (i0 + 1) & (n - 1), (j0 + n) & (n * n - 1)
    top = np.take(lattice, j0 + i0) * (1 - tu) + np.take(lattice, j0 + i1) * tu
    bottom = np.take(lattice, j1 + i0) * (1 - tu) + np.take(lattice, j1 + i1) * tu
    return top * (1 - tv) + bottom * tv


EVERYWHERE = np.ones((1, 1), bool)  # a mask that broadcasts over any window


def segment_mask(u: np.ndarray, b: np.ndarray, p: tuple[float, float], q: tuple[float, float],
                 radius: float) -> np.ndarray:
    """Pixels within ``radius`` of the segment p-q (a limb, a bicycle tube)."""
    du, db = q[0] - p[0], q[1] - p[1]
    pu, pb = u - p[0], b - p[1]
    t = np.clip((pu * du + pb * db) / max(du * du + db * db, 1e-9), 0.0, 1.0)
    return (pu - t * du) ** 2 + (pb - t * db) ** 2 <= radius * radius


def disk_mask(u: np.ndarray, b: np.ndarray, center: tuple[float, float], radius: float) -> np.ndarray:
    return (u - center[0]) ** 2 + (b - center[1]) ** 2 <= radius * radius


def ring_mask(u: np.ndarray, b: np.ndarray, center: tuple[float, float], radius: float,
              thickness: float) -> np.ndarray:
    distance = np.sqrt((u - center[0]) ** 2 + (b - center[1]) ** 2)
    return np.abs(distance - radius) <= thickness / 2


def box_mask(u: np.ndarray, b: np.ndarray, u0: float, u1: float, b0: float, b1: float) -> np.ndarray:
    return (u >= u0) & (u <= u1) & (b >= b0) & (b <= b1)


def jitter(rng: np.random.Generator, rgb: tuple[int, int, int] | np.ndarray, spread: float = 0.1) -> np.ndarray:
    """A per-instance colour: overall brightness and per-channel gains drawn around ``rgb``."""
    gains = rng.uniform(-1.0, 1.0, 4) * (spread, spread / 2, spread / 2, spread / 2) + 1.0
    return np.asarray(rgb, np.float32) * (gains[0] * gains[1:]).astype(np.float32)


def pick(rng: np.random.Generator, palette: tuple) -> tuple[int, int, int]:
    return palette[rng.integers(len(palette))]


def wrap(x: np.ndarray, period: float | np.ndarray) -> np.ndarray:
    """``x % period`` (in [0, period)) for stripes and grids; several times faster than ``%`` on floats."""
    return x - np.floor(x / period) * period


def shade(color: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """``color`` (3,) or (h, w, 3) scaled per pixel by ``factor`` (h, w)."""
    return color * np.asarray(factor, np.float32)[..., None]


# --- The street: layout shared by every drawing function -------------------------------------------

@dataclass(frozen=True)
class Street:
    """Lateral extents in metres from the camera (positive on both sides, index 0 = left) and the far end.

    Across each side: road | grass verge (optional) | sidewalk | grass strip (optional) | paving | façade.
    """

    road: tuple[float, float]  # distance to the kerb
    verge: tuple[float, float]  # width of a grass verge along the kerb (0 = none)
    sidewalk: tuple[float, float]  # widths
    terrain: tuple[float, float]  # width of a grass strip beyond the sidewalk (0 = none)
    facade: tuple[float, float]  # distance to the façades
    far_depth: float  # where the street ends (a backdrop, or far enough to vanish)
    has_backdrop: bool
    lane_width: float
    shadow: bool

    def kerb(self, side: int) -> float:
        return self.road[side > 0]

    def sidewalk_start(self, side: int) -> float:
        return self.road[side > 0] + self.verge[side > 0]

    def pavement_end(self, side: int) -> float:
        """Where the ground objects may stand ends: beyond it only walls, fences, hedges and façades."""
        i = int(side > 0)
        return self.road[i] + self.verge[i] + self.sidewalk[i] + self.terrain[i]

    def grass(self, side: int) -> list[tuple[float, float]]:
        """(start, end) lateral distances of the grass on one side."""
        i = int(side > 0)
        strips = [(self.road[i], self.road[i] + self.verge[i])]
        start = self.sidewalk_start(side) + self.sidewalk[i]
        strips.append((start, start + self.terrain[i]))
        return [(a, b) for a, b in strips if b > a]


def sample_camera(rng: np.random.Generator, height: int, width: int) -> Camera:
    # Focal length ~1.1 image widths, as Cityscapes' 2262 px at 2048 px.
    return Camera(height, width, focal=width * rng.uniform(1.0, 1.2), horizon=height * rng.uniform(0.36, 0.46),
                  center_x=width * rng.uniform(0.42, 0.58))


def sample_street(rng: np.random.Generator) -> Street:
    road = (rng.uniform(3.0, 7.0), rng.uniform(2.0, 5.0))
    if rng.random() < 0.5:
        road = road[::-1]
    verge = tuple(float(rng.uniform(1.0, 2.5)) if rng.random() < 0.12 else 0.0 for _ in range(2))
    sidewalk = (rng.uniform(3.0, 6.5), rng.uniform(3.0, 6.5))
    terrain = tuple(float(rng.uniform(2.5, 7.0)) if rng.random() < 0.5 else 0.0 for _ in range(2))
    extra = rng.uniform(0.3, 3.0, 2)
    facade = tuple(road[i] + verge[i] + sidewalk[i] + terrain[i] + extra[i] for i in range(2))
    has_backdrop = bool(rng.random() < 0.8)
    far_depth = rng.uniform(45.0, 160.0) if has_backdrop else 400.0
    return Street(road, verge, sidewalk, terrain, facade, far_depth, has_backdrop,
                  lane_width=rng.uniform(2.9, 3.6), shadow=bool(rng.random() < 0.4))


# --- Sky, ground ----------------------------------------------------------------------------------

def first_ground_row(cam: Camera) -> int:
    """The first pixel row whose centre lies below the horizon."""
    return min(cam.height, max(0, math.floor(cam.horizon - 0.5) + 1))


def draw_sky(canvas: Canvas, rng: np.random.Generator) -> None:
    cam = canvas.cam
    if rng.random() < 0.6:  # overcast, the common case in Cityscapes
        top = jitter(rng, (186, 194, 204), 0.1)
        low = top * rng.uniform(1.0, 1.12)
    else:
        top = jitter(rng, (96, 146, 214), 0.12)
        low = jitter(rng, (182, 200, 224), 0.08)
    rows = np.arange(first_ground_row(cam), dtype=np.float32) + 0.5  # the ground covers the rest
    cols = np.arange(cam.width, dtype=np.float32) + 0.5
    t = np.clip(rows / max(cam.horizon, 1.0), 0, 1)[:, None, None]
    clouds = canvas.noise(cols[None, :] / (cam.width / 6) + 7.5, rows[:, None] / (cam.height / 8) + 3.1)
    canvas.image[: len(rows)] = (top * (1 - t) + low * t) * (1 + 0.05 * clouds)[..., None]
    canvas.label[: len(rows)] = SKY


def draw_ground(canvas: Canvas, street: Street, rng: np.random.Generator, rails: list[float]) -> None:
    """Road (lane marks, crossings, tram rails), kerbs, tiled sidewalks and grass strips."""
    cam = canvas.cam
    r0 = first_ground_row(cam)
    if r0 >= cam.height:
        return
    dy = np.arange(r0, cam.height, dtype=np.float32) + 0.5 - cam.horizon
    depth = (cam.focal * CAMERA_HEIGHT / dy)[:, None]
    lateral = (np.arange(cam.width, dtype=np.float32) + 0.5 - cam.center_x)[None, :] * (CAMERA_HEIGHT / dy)[:, None]
    left, right = -street.road[0], street.road[1]
    road = (lateral >= left) & (lateral <= right)
    terrain = np.zeros(road.shape, bool)
    for side in (-1, 1):
        for start, end in street.grass(side):
            terrain |= (side * lateral > start) & (side * lateral <= end)
    sidewalk = ~road & ~terrain
    label = np.full(road.shape, SIDEWALK, np.uint8)
    label[road] = ROAD
    label[terrain] = TERRAIN

    asphalt = jitter(rng, (92, 92, 96), 0.16)
    paving = jitter(rng, (122, 118, 114), 0.16)  # overlaps asphalt on purpose
    grass = jitter(rng, pick(rng, GRASS_GREENS), 0.12)
    grain = canvas.noise(lateral / 0.12 + 11.0, depth / 0.12)
    factor = 1 + 0.045 * grain + 0.05 * canvas.noise(lateral / 3.0 + 31.7, depth / 6.0 + 17.3)
    # Sidewalks: tile joints and a lighter kerb stone along the road edge.
    tile = rng.uniform(0.3, 0.8)
    joints = (wrap(lateral, tile) < 0.05) | (wrap(depth, tile) < 0.05)
    kerb = (np.abs(lateral - left) < 0.2) | (np.abs(lateral - right) < 0.2)
    factor[sidewalk] = ((1 + 0.05 * grain[sidewalk]) * np.where(joints[sidewalk], 0.84, 1.0)
                        * np.where(kerb[sidewalk], 1.18, 1.0))
    # Grass: a finer, stronger grain.
    depth_full = np.broadcast_to(depth, road.shape)
    factor[terrain] = 1 + 0.15 * canvas.noise(lateral[terrain] / 0.05 + 3.3, depth_full[terrain] / 0.05 + 5.1)
    base = np.empty(road.shape + (3,), np.float32)
    base[road], base[sidewalk], base[terrain] = asphalt, paving, grass
    image = shade(base, factor)

    # Lane marks (dashed) and an occasional zebra crossing are painted on the road: still road.
    marks = np.zeros(road.shape, bool)
    dashes = wrap(depth, 9.0) < 3.0
    k = math.ceil((left + 0.6) / street.lane_width - 0.5)
    while (boundary := (k + 0.5) * street.lane_width) < right - 0.6:
        marks |= (np.abs(lateral - boundary) < 0.07) & dashes
        k += 1
    if rng.random() < 0.15:
        z_cross = rng.uniform(cam.near_depth() * 1.3, 25.0)
        marks |= (depth >= z_cross) & (depth <= z_cross + 4.0) & (wrap(lateral, 1.0) < 0.5)
    for rail in rails:  # tram tracks: two thin dark grooves per track
        for offset in (-0.72, 0.72):
            image[road & (np.abs(lateral - rail - offset) < 0.05)] *= 0.55
    image[road & marks] = jitter(rng, (208, 208, 204), 0.05)

    if street.shadow:  # cast shadows of unseen buildings: same label, darker
        shadow = canvas.smooth_noise(lateral / 6.0 + 50.0, depth / 12.0 + 9.0) > rng.uniform(-0.35, 0.5)
        image[shadow] *= rng.uniform(0.5, 0.7)
    canvas.image[r0:] = image
    canvas.label[r0:] = label


# --- Buildings and vegetation lining the street ------------------------------------------------------

@dataclass(frozen=True)
class FacadeRow:
    """A row of façade segments along a coordinate ``u``: buildings or masses of trees."""

    bounds: np.ndarray  # (n+1,) segment starts/ends along u
    is_vegetation: np.ndarray  # (n,)
    height: np.ndarray  # (n,) metres
    paint: np.ndarray  # (n, 3)
    window_color: np.ndarray  # (n, 3)
    floor_height: np.ndarray  # (n,)
    bay_width: np.ndarray  # (n,)


def sample_facade_row(rng: np.random.Generator, start: float, stop: float, lengths: tuple[float, float],
                      p_vegetation: float, building_heights: tuple[float, float]) -> FacadeRow:
    bounds = [start]
    while bounds[-1] < stop:
        bounds.append(bounds[-1] + rng.uniform(*lengths))
    n = len(bounds) - 1
    vegetation = rng.random(n) < p_vegetation
    height = np.where(vegetation, rng.uniform(6.0, 14.0, n), rng.uniform(*building_heights, n))
    paint = np.stack([jitter(rng, pick(rng, LEAF_GREENS) if v else pick(rng, BUILDING_PAINTS), 0.12)
                      for v in vegetation])
    window = np.stack([jitter(rng, (58, 66, 78), 0.3) for _ in range(n)])
    return FacadeRow(np.asarray(bounds, np.float32), vegetation, height.astype(np.float32), paint, window,
                     rng.uniform(2.8, 3.6, n).astype(np.float32), rng.uniform(2.4, 4.5, n).astype(np.float32))


def paint_facade_row(canvas: Canvas, win: Window, along: np.ndarray, row: FacadeRow) -> None:
    """Paint a façade row onto ``win``; ``along`` (1, w) is each column's position along the row."""
    n = len(row.height)
    seg = np.clip(np.searchsorted(row.bounds, along, side="right") - 1, 0, n - 1)
    b = np.broadcast_to(win.b, win.shape)
    vegetation = row.is_vegetation[seg]
    # Tree masses get a ragged top; buildings a straight roof line.
    top = row.height[seg] + np.where(vegetation, 1.2 * canvas.smooth_noise(along / 2.5 + 20.0, 0.5), 0.0)
    inside = b <= top
    floor = wrap(b, row.floor_height[seg]) / row.floor_height[seg]
    bay = wrap(along - row.bounds[seg], row.bay_width[seg]) / row.bay_width[seg]
    windows = (np.abs(floor - 0.525) < 0.225) & (np.abs(bay - 0.5) < 0.25) & (b > 3.2) & (b < top - 0.8)
    shop = (np.abs(bay - 0.5) < 0.4) & (row.bay_width[seg] > 3.4) & (np.abs(b - 1.5) < 1.1)  # shop fronts
    windows = (windows | shop) & ~vegetation
    # One texture: faint grain on walls, strong leafy blobs on trees.
    texture = canvas.noise(along / 0.45 + 40.0, b / 0.45 + 13.0)
    surface = shade(row.paint[seg], 1 + np.where(vegetation, 0.2, 0.04) * texture)
    glass = row.window_color[seg] * (1 + 0.25 * (wrap(b, 1.7) > 0.9))[..., None]
    color = np.where(windows[..., None], glass, surface)
    canvas.paint(win, inside & ~vegetation, color, BUILDING)
    canvas.paint(win, inside & vegetation, color, VEGETATION)


def draw_facades(canvas: Canvas, street: Street, rng: np.random.Generator) -> None:
    cam = canvas.cam
    for side in (-1, 1):
        distance = street.facade[side > 0]
        edge_offset = cam.center_x if side < 0 else cam.width - cam.center_x
        z_near = 0.98 * cam.focal * distance / edge_offset
        if z_near >= street.far_depth:
            continue
        row = sample_facade_row(rng, z_near, street.far_depth, (6.0, 24.0), 0.2, (15.0, 40.0))
        win = side_plane(cam, side * distance, z_near, street.far_depth, 0.0, float(row.height.max()) + 4.0)
        if win is not None:
            paint_facade_row(canvas, win, win.u + z_near, row)


def draw_backdrop(canvas: Canvas, street: Street, rng: np.random.Generator) -> None:
    """Buildings or trees across the far end of the street."""
    if not street.has_backdrop:
        return
    u0, u1 = -street.facade[0] - 8.0, street.facade[1] + 8.0
    row = sample_facade_row(rng, u0, u1, (4.0, 16.0), 0.3, (8.0, 28.0))
    win = billboard(canvas.cam, 0.0, street.far_depth, u0, u1, 0.0, float(row.height.max()) + 4.0)
    if win is not None:
        paint_facade_row(canvas, win, win.u, row)


def draw_barrier(canvas: Canvas, rng: np.random.Generator, kind: int, lateral: float, z0: float, z1: float,
                 height: float) -> None:
    """A wall, fence or hedge along the street: a low plane parallel to it."""
    win = side_plane(canvas.cam, lateral, z0, z1, 0.0, height + 0.4)
    if win is None:
        return
    u, b = win.u, np.broadcast_to(win.b, win.shape)
    if kind == WALL:  # building paint, fine brick courses instead of windows, a lighter coping
        paint = jitter(rng, pick(rng, BUILDING_PAINTS), 0.12)
        course = rng.uniform(0.18, 0.4)
        factor = np.where(wrap(b, course) < 0.035, 0.86, 1.0) * (1 + 0.03 * canvas.noise(u / 0.5, b / 0.5))
        factor = np.where(b > height - 0.12, 1.12, factor)
        canvas.paint(win, b <= height, shade(paint, factor), WALL)
    elif kind == FENCE:  # a see-through grid: whatever is behind shows darkened between the bars
        paint = jitter(rng, pick(rng, BUILDING_PAINTS), 0.15) * rng.uniform(0.6, 1.0)
        mesh = rng.uniform(0.12, 0.3)
        grid = (wrap(u, mesh) < 0.35 * mesh) | (wrap(b, mesh) < 0.35 * mesh)
        bars = grid | (b > height - 0.08) | (wrap(u, 2.5) < 0.1)  # plus a top rail and posts
        color = np.where(bars[..., None], paint, canvas.backdrop(win) * 0.65 + paint * 0.2)
        canvas.paint(win, b <= height, color, FENCE)
    else:  # hedge
        paint = jitter(rng, pick(rng, LEAF_GREENS), 0.12)
        top = height + 0.12 * canvas.smooth_noise(u / 0.6 + 60.0, 1.5)
        canvas.paint(win, b <= top, shade(paint, 1 + 0.2 * canvas.noise(u / 0.35 + 3.0, b / 0.35)), VEGETATION)


# --- Upright objects -------------------------------------------------------------------------------

def draw_tree(canvas: Canvas, rng: np.random.Generator, lateral: float, depth: float) -> None:
    radius = rng.uniform(1.4, 3.4)
    half_height = radius * rng.uniform(0.8, 1.2)
    crown_base = rng.uniform(1.8, 3.2)
    center = crown_base + half_height
    win = billboard(canvas.cam, lateral, depth, -1.35 * radius, 1.35 * radius, 0.0, center + 1.35 * half_height)
    if win is None:
        return
    u, b = win.u, win.b
    offset = rng.uniform(0, 64)
    ragged = 0.27 * canvas.noise(u / 0.6 + offset, b / 0.6)
    crown = (u / radius) ** 2 + ((b - center) / half_height) ** 2 + ragged < 1.0
    trunk = (np.abs(u) < rng.uniform(0.09, 0.2)) & (b < center)
    canvas.paint(win, trunk, jitter(rng, (84, 72, 60), 0.15), VEGETATION)
    leaves = jitter(rng, pick(rng, LEAF_GREENS), 0.12)
    canvas.paint(win, crown, shade(leaves, 1 + 0.21 * canvas.noise(u / 0.25 + offset, b / 0.25 + 7.0)), VEGETATION)


def draw_pole(canvas: Canvas, rng: np.random.Generator, lateral: float, depth: float, furniture: str) -> None:
    """A pole, optionally carrying a traffic sign or a traffic light (the paint of each is its own class)."""
    height = rng.uniform(3.0, 4.2) if furniture != "none" else rng.uniform(4.0, 9.0)
    width = rng.uniform(0.13, 0.3)
    win = billboard(canvas.cam, lateral, depth, -width / 2, width / 2, 0.0, height)
    if win is not None:
        metal = jitter(rng, (118, 120, 122), 0.25)
        canvas.paint(win, EVERYWHERE, shade(metal, 1 - 0.25 * np.abs(win.u) / width), POLE)
    if furniture == "sign":
        draw_sign(canvas, rng, lateral, depth - 0.05, height - rng.uniform(0.1, 1.0))
    elif furniture == "light":
        draw_traffic_light(canvas, rng, lateral, depth - 0.05, height)


def draw_sign(canvas: Canvas, rng: np.random.Generator, lateral: float, depth: float, top: float) -> None:
    shape = rng.choice(["disk", "triangle", "panel"], p=[0.45, 0.2, 0.35])
    size = rng.uniform(0.7, 1.2)
    win = billboard(canvas.cam, lateral, depth, -size / 2, size / 2, top - size, top)
    if win is None:
        return
    u, b = win.u, win.b - (top - size / 2)  # centred coordinates
    half = size / 2
    white, red = jitter(rng, (226, 226, 222), 0.06), jitter(rng, (190, 32, 36), 0.1)
    blue = jitter(rng, (30, 76, 160), 0.1)
    if shape == "disk":
        face = u ** 2 + b ** 2 <= half ** 2
        inner = u ** 2 + b ** 2 <= (0.75 * half) ** 2
        fill, rim = (white, red) if rng.random() < 0.6 else (blue, white)
    elif shape == "triangle":
        face = (b >= -half) & (np.abs(u) <= (half - b) / 1.732)
        inner = (b >= -0.7 * half) & (np.abs(u) <= (0.6 * half - b) / 1.732)
        fill, rim = white, red
    else:
        face = EVERYWHERE & (np.abs(b) <= 0.7 * half)
        inner = (np.abs(u) <= 0.85 * half) & (np.abs(b) <= 0.55 * half)
        fill = jitter(rng, pick(rng, ((30, 76, 160), (226, 188, 40), (226, 226, 222), (30, 110, 60))), 0.1)
        rim = white
    color = np.where(np.broadcast_to(inner, win.shape)[..., None], fill, rim)
    canvas.paint(win, face, color, TRAFFIC_SIGN)


def draw_traffic_light(canvas: Canvas, rng: np.random.Generator, lateral: float, depth: float, top: float) -> None:
    width, height = rng.uniform(0.35, 0.5), rng.uniform(1.0, 1.3)
    win = billboard(canvas.cam, lateral, depth, -width / 2, width / 2, top - height, top)
    if win is None:
        return
    housing = jitter(rng, (40, 42, 40), 0.3)
    color = np.broadcast_to(housing, win.shape + (3,)).copy()
    if rng.random() < 0.65:  # seen from the front: three lamps, one lit
        lit = rng.integers(3)
        for lamp, rgb in enumerate(((230, 40, 30), (240, 170, 30), (40, 220, 110))):
            center = (0.0, top - height * (0.2 + 0.3 * lamp))
            glow = np.asarray(rgb, np.float32) * (1.0 if lamp == lit else 0.25)
            color[np.broadcast_to(disk_mask(win.u, win.b, center, 0.3 * width), win.shape)] = glow
    canvas.paint(win, EVERYWHERE, color, TRAFFIC_LIGHT)


@dataclass(frozen=True)
class Outfit:
    skin: np.ndarray
    hair: np.ndarray  # or a helmet
    top: np.ndarray
    trousers: np.ndarray


def sample_outfit(rng: np.random.Generator, helmet: bool = False) -> Outfit:
    hair = jitter(rng, pick(rng, CLOTHES), 0.15) if helmet else jitter(rng, (48, 38, 30), 0.4)
    return Outfit(jitter(rng, pick(rng, SKIN), 0.1), hair, jitter(rng, pick(rng, CLOTHES), 0.15),
                  jitter(rng, pick(rng, CLOTHES[:4] + CLOTHES[5:6]), 0.15))


def draw_body(canvas: Canvas, win: Window, outfit: Outfit, class_id: int,
              joints: dict[str, tuple[float, float]], limb: float) -> None:
    """A stick-and-blob human from named joints: shared by pedestrians and riders."""
    u, b = win.u, win.b
    head = joints["head"]
    legs = (segment_mask(u, b, joints["hip"], joints["knee"], limb * 1.15)
            | segment_mask(u, b, joints["knee"], joints["foot"], limb)
            | segment_mask(u, b, joints["hip2"], joints["knee2"], limb * 1.15)
            | segment_mask(u, b, joints["knee2"], joints["foot2"], limb))
    torso = segment_mask(u, b, joints["hip"], joints["neck"], limb * 2.3)
    arms = (segment_mask(u, b, joints["shoulder"], joints["hand"], limb * 0.8)
            | segment_mask(u, b, joints["shoulder2"], joints["hand2"], limb * 0.8))
    face = disk_mask(u, b, head, 0.11)
    hair = face & (b > head[1] + 0.02)
    canvas.paint(win, legs, outfit.trousers, class_id)
    canvas.paint(win, torso | arms, outfit.top, class_id)
    canvas.paint(win, face, outfit.skin, class_id)
    canvas.paint(win, hair, outfit.hair, class_id)


def draw_person(canvas: Canvas, rng: np.random.Generator, lateral: float, depth: float) -> None:
    height = rng.uniform(1.5, 1.95)
    win = billboard(canvas.cam, lateral, depth, -0.45, 0.45, 0.0, height)
    if win is None:
        return
    stride = rng.uniform(-0.3, 0.3)
    hip, neck = 0.53 * height, 0.83 * height
    spread = rng.uniform(0.05, 0.1)
    joints = {"head": (0.0, height - 0.12), "neck": (0.0, neck), "hip": (-spread, hip), "hip2": (spread, hip),
              "knee": (-spread + stride / 2, 0.28 * height), "foot": (-spread + stride, 0.04),
              "knee2": (spread - stride / 2, 0.28 * height), "foot2": (spread - stride, 0.04),
              "shoulder": (-0.17, neck - 0.04), "hand": (-0.22 - 0.4 * abs(stride), hip),
              "shoulder2": (0.17, neck - 0.04), "hand2": (0.22 + 0.4 * abs(stride), hip)}
    draw_body(canvas, win, sample_outfit(rng), PERSON, joints, limb=0.065)


def draw_two_wheeler(canvas: Canvas, rng: np.random.Generator, lateral: float, depth: float, motor: bool,
                     ridden: bool) -> None:
    """A bicycle or motorcycle in side view, optionally with its rider (the rider is its own class)."""
    direction = 1.0 if rng.random() < 0.5 else -1.0
    win = billboard(canvas.cam, lateral, depth, -1.1, 1.1, 0.0, 1.85 if ridden else 1.2)
    if win is None:
        return
    u, b = win.u * direction, win.b  # mirrored so that it may face either way
    paint = jitter(rng, pick(rng, VEHICLE_PAINTS), 0.15)
    tyre = jitter(rng, (30, 30, 32), 0.2)
    if motor:
        radius, hub = 0.32, 0.7
        rear, front = (-hub, radius), (hub, radius)
        wheels = disk_mask(u, b, rear, radius) | disk_mask(u, b, front, radius)
        rims = disk_mask(u, b, rear, 0.14) | disk_mask(u, b, front, 0.14)
        body = ((u / 0.55) ** 2 + ((b - 0.62) / 0.24) ** 2 <= 1.0) | segment_mask(u, b, front, (0.52, 1.02), 0.05)
        engine = box_mask(u, b, -0.25, 0.2, 0.25, 0.5)
        saddle = segment_mask(u, b, (-0.55, 0.86), (-0.05, 0.86), 0.06)
        canvas.paint(win, wheels, tyre, MOTORCYCLE)
        canvas.paint(win, rims, tyre * 3.5, MOTORCYCLE)
        canvas.paint(win, body, paint, MOTORCYCLE)
        canvas.paint(win, engine | saddle, tyre * 1.6, MOTORCYCLE)
        seat, bar, pedal = (-0.3, 0.9), (0.45, 1.05), (0.05, 0.42)
    else:
        radius, hub = 0.34, 0.52
        rear, front = (-hub, radius), (hub, radius)
        crank, seat, stem = (0.0, 0.32), (-0.14, 0.86), (0.38, 0.92)
        tubes = (segment_mask(u, b, rear, seat, 0.025) | segment_mask(u, b, seat, crank, 0.028)
                 | segment_mask(u, b, rear, crank, 0.022) | segment_mask(u, b, seat, stem, 0.025)
                 | segment_mask(u, b, stem, crank, 0.028) | segment_mask(u, b, stem, front, 0.022)
                 | segment_mask(u, b, (seat[0] - 0.1, seat[1] + 0.03), (seat[0] + 0.1, seat[1] + 0.03), 0.03)
                 | segment_mask(u, b, stem, (stem[0] - 0.05, stem[1] + 0.1), 0.022))
        # Like Cityscapes' polygons, the label covers the whole wheel; the scene shows through the spokes.
        wheels = disk_mask(u, b, rear, radius + 0.03) | disk_mask(u, b, front, radius + 0.03)
        tyres = ring_mask(u, b, rear, radius, 0.06) | ring_mask(u, b, front, radius, 0.06)
        canvas.paint(win, wheels, canvas.backdrop(win) * 0.8 + tyre * 0.2, BICYCLE)
        canvas.paint(win, tyres, tyre, BICYCLE)
        canvas.paint(win, tubes, paint, BICYCLE)
        bar, pedal = (stem[0] - 0.05, stem[1] + 0.1), (0.05, 0.3)
    if not ridden:
        return
    # The rider: the pedestrian body model, seated and leaning towards the handlebar.
    saddle_top = (seat[0] * direction, seat[1] + 0.1)
    lean = rng.uniform(0.15, 0.35)
    neck = (saddle_top[0] + direction * lean, saddle_top[1] + 0.55)
    head = (neck[0] + direction * 0.08, neck[1] + 0.17)
    knee = (saddle_top[0] + direction * 0.38, saddle_top[1] - 0.05)
    hand = (bar[0] * direction, bar[1])
    foot = (pedal[0] * direction, pedal[1])
    joints = {"head": head, "neck": neck, "hip": saddle_top, "hip2": saddle_top, "knee": knee, "foot": foot,
              "knee2": (knee[0] - direction * 0.08, knee[1] - 0.05),
              "foot2": (foot[0] - direction * 0.15, foot[1] + 0.05),
              "shoulder": (neck[0], neck[1] - 0.05), "hand": hand, "shoulder2": (neck[0], neck[1] - 0.05),
              "hand2": (hand[0] - direction * 0.05, hand[1] - 0.03)}
    draw_body(canvas, win, sample_outfit(rng, helmet=motor or rng.random() < 0.3), RIDER, joints, limb=0.065)


# Vehicle families share one paint palette: size, aspect and details tell them apart.
VEHICLE_SIZES = {  # width, height range, length range (metres)
    CAR: (1.8, (1.4, 1.6), (3.8, 4.8)),
    TRUCK: (2.5, (2.8, 3.6), (6.0, 9.0)),
    BUS: (2.55, (3.0, 3.3), (11.0, 18.0)),
    TRAIN: (2.65, (3.3, 3.7), (25.0, 40.0)),
}


def draw_vehicle(canvas: Canvas, rng: np.random.Generator, kind: int, lateral: float, depth: float,
                 facing_us: bool) -> None:
    """A car, truck, bus or tram: its long side (when visible) and its near end, facing the camera."""
    width, heights, lengths = VEHICLE_SIZES[kind]
    width *= rng.uniform(0.94, 1.06)
    height, length = rng.uniform(*heights), rng.uniform(*lengths)
    paint = jitter(rng, pick(rng, VEHICLE_PAINTS), 0.1)
    glass = jitter(rng, (52, 62, 74), 0.25)
    dark = jitter(rng, (28, 28, 30), 0.2)
    near_side = abs(lateral) - width / 2
    if near_side > 0.2:
        side = side_plane(canvas.cam, math.copysign(near_side, lateral), depth, depth + length, 0.0, height)
        if side is not None:
            paint_vehicle_side(canvas, rng, side, kind, length, height, paint, glass, dark)
    end = billboard(canvas.cam, lateral, depth, -width / 2, width / 2, 0.0, height)
    if end is not None:
        paint_vehicle_end(canvas, rng, end, kind, width, height, paint, glass, dark, facing_us)


def paint_vehicle_side(canvas: Canvas, rng: np.random.Generator, win: Window, kind: int, length: float,
                       height: float, paint: np.ndarray, glass: np.ndarray, dark: np.ndarray) -> None:
    u, b = win.u, np.broadcast_to(win.b, win.shape)
    reflection = shade(glass, 1 + 0.35 * (b > 0.5 * height + 0.6 * wrap(u, 2.0)))
    if kind == CAR:
        waist = 0.6 * height
        body = (u >= 0.05) & (u <= length - 0.05) & (b >= 0.28) & (b <= waist)
        rise = b - waist  # the pillars slant: the cabin narrows upwards
        cabin = (b > waist) & (b <= height) & (u > 0.22 * length + 0.8 * rise) & (u < 0.82 * length - 1.2 * rise)
        windows = cabin & (b < height - 0.06) & (u > 0.25 * length + 0.8 * rise) & (u < 0.79 * length - 1.2 * rise)
        canvas.paint(win, body | cabin, paint, CAR)
        canvas.paint(win, windows, reflection, CAR)
        wheel_at, wheel_r = (0.18 * length, 0.8 * length), 0.33
    elif kind == TRUCK:  # ribbed cargo box, cab at the far end
        box = (u <= 0.72 * length) & (b >= 0.8)
        ribs = wrap(u, 0.45) < 0.07
        cab = (u >= 0.74 * length) & (b >= 0.5) & (b <= 2.8)
        cab_window = (u >= 0.82 * length) & (b >= 1.7) & (b <= 2.5)
        chassis = (b >= 0.45) & (b <= 0.8)
        canvas.paint(win, chassis, dark, TRUCK)
        canvas.paint(win, box, shade(paint, np.where(ribs, 0.8, 1.0)), TRUCK)
        canvas.paint(win, cab, paint * 0.92, TRUCK)
        canvas.paint(win, cab_window, reflection, TRUCK)
        wheel_at, wheel_r = (0.1 * length, 0.26 * length, 0.88 * length), 0.48
    elif kind == BUS:  # a long band of windows, doors
        pillar = rng.uniform(1.2, 1.6)
        band = (b >= 1.25) & (b <= height - 0.35) & (wrap(u, pillar) > 0.16)
        doors = (((np.abs(u - 0.2 * length) < 0.6) | (np.abs(u - 0.55 * length) < 0.6))
                 & (b >= 0.35) & (b <= height - 0.35))
        canvas.paint(win, b >= 0.3, paint, BUS)
        canvas.paint(win, band | doors, reflection, BUS)
        wheel_at, wheel_r = (0.15 * length, 0.75 * length), 0.5
    else:  # tram: longer still, wider window spacing, a skirt instead of wheels, joints between cars
        spacing = rng.uniform(1.8, 2.4)
        band = (b >= 1.3) & (b <= height - 0.8) & (wrap(u, spacing) > 0.4)
        skirt = (b <= 0.7) | (wrap(u, 8.5) < 0.12)
        roof = b >= height - 0.3
        canvas.paint(win, b >= 0.35, paint, TRAIN)
        canvas.paint(win, band, reflection, TRAIN)
        canvas.paint(win, (skirt & (b >= 0.35)) | roof, paint * 0.7, TRAIN)
        return
    wheels = np.zeros(win.shape, bool)
    hubs = np.zeros(win.shape, bool)
    for at in wheel_at:
        wheels |= disk_mask(u, b, (at, wheel_r), wheel_r)
        hubs |= disk_mask(u, b, (at, wheel_r), 0.45 * wheel_r)
    canvas.paint(win, wheels, dark, kind)
    canvas.paint(win, hubs, dark * 3.5, kind)


def paint_vehicle_end(canvas: Canvas, rng: np.random.Generator, win: Window, kind: int, width: float,
                      height: float, paint: np.ndarray, glass: np.ndarray, dark: np.ndarray, facing_us: bool) -> None:
    u, b = win.u, win.b
    half = width / 2
    lamp_color = np.asarray((236, 232, 210) if facing_us else (200, 30, 30), np.float32)
    if kind == CAR:
        waist = 0.6 * height
        inset = (b - waist) / (height - waist) * 0.3 * width
        body = box_mask(u, b, -half, half, 0.28, waist) & ~((np.abs(u) > half - 0.08) & (b > waist - 0.08))
        cabin = (b > waist) & (b <= height) & (np.abs(u) <= half - 0.08 - inset)
        sill = waist + (0.04 if facing_us else 0.1)  # windscreens reach lower than rear windows
        screen = cabin & (b < height - 0.06) & (np.abs(u) <= half - 0.16 - inset) & (b > sill)
        wheels = (np.abs(u) >= half - 0.3) & (np.abs(u) <= half - 0.05) & (b < 0.3)
        canvas.paint(win, wheels, dark, CAR)
        canvas.paint(win, body | cabin, paint, CAR)
        canvas.paint(win, screen, shade(glass, 1 + 0.3 * (b > height - 0.2)), CAR)
        lamps = (np.abs(u) >= half - 0.35) & (np.abs(u) <= half - 0.06) & (b >= waist - 0.22) & (b <= waist - 0.08)
        plate = (np.abs(u) <= 0.26) & (b >= 0.34) & (b <= 0.45)
        canvas.paint(win, lamps, lamp_color, CAR)
        canvas.paint(win, plate, np.asarray((220, 220, 214), np.float32), CAR)
        return
    bottom = {TRUCK: 0.55, BUS: 0.3, TRAIN: 0.4}[kind]
    shell = box_mask(u, b, -half, half, bottom, height) & ~((np.abs(u) > half - 0.15) & (b > height - 0.15))
    if kind == TRUCK and not facing_us:  # cargo doors with ribs and a seam
        color = shade(paint, np.where((wrap(u, 0.35) < 0.05) | (np.abs(u) < 0.03), 0.8, 1.0))
        glass_area = np.zeros((1, 1), bool)
    elif kind == TRUCK:
        color = np.broadcast_to(paint, win.shape + (3,))
        glass_area = (np.abs(u) <= half - 0.2) & (b >= 1.6) & (b <= 2.5)
    else:
        color = np.broadcast_to(paint, win.shape + (3,))
        low = 1.0 if facing_us else (1.9 if kind == BUS else 1.6)
        glass_area = (np.abs(u) <= half - 0.18) & (b >= low) & (b <= height - 0.35)
    wheels = (np.abs(u) >= half - 0.4) & (np.abs(u) <= half - 0.05) & (b < bottom + 0.05)
    lamps = (np.abs(u) >= half - 0.35) & (np.abs(u) <= half - 0.1) & (b >= bottom + 0.2) & (b <= bottom + 0.4)
    canvas.paint(win, wheels, dark, kind)
    canvas.paint(win, shell, color, kind)
    canvas.paint(win, glass_area & shell, shade(glass, 1 + 0.3 * (b > height - 0.7)), kind)
    canvas.paint(win, lamps & shell, lamp_color, kind)


def draw_clutter(canvas: Canvas, rng: np.random.Generator, lateral: float, depth: float) -> None:
    """Unlabelled street furniture (bins, boxes, advertising pillars): ignore, like Cityscapes' void classes."""
    if rng.random() < 0.7:
        width, height = rng.uniform(0.4, 0.8), rng.uniform(0.6, 1.2)
    else:
        width, height = 1.0, rng.uniform(2.2, 2.8)
    win = billboard(canvas.cam, lateral, depth, -width / 2, width / 2, 0.0, height)
    if win is not None:
        color = jitter(rng, rng.uniform(40, 200, 3), 0.1)
        canvas.paint(win, EVERYWHERE, shade(color, 1 - 0.3 * np.abs(win.u) / width), IGNORE)


def draw_ego_vehicle(canvas: Canvas, rng: np.random.Generator) -> None:
    """The recording car's bonnet at the bottom edge: ignore, as in Cityscapes."""
    cam = canvas.cam
    rise = rng.uniform(0.03, 0.07) * cam.height
    cols = (np.arange(cam.width, dtype=np.float32) + 0.5 - rng.uniform(0.4, 0.6) * cam.width) / (0.7 * cam.width)
    edge = cam.height - rise * np.clip(1 - cols ** 2, 0, 1)
    rows = np.arange(cam.height, dtype=np.float32)[:, None] + 0.5
    mask = rows >= edge[None, :]
    paint = jitter(rng, pick(rng, VEHICLE_PAINTS), 0.1) * 0.8
    color = shade(paint, 1 + 0.4 * np.exp(-((rows - edge[None, :]) / 2.0) ** 2))
    win = Window(slice(0, cam.height), slice(0, cam.width), cols[None, :], rows, None)
    canvas.paint(win, mask, color, IGNORE)


# --- Which objects stand in the street ---------------------------------------------------------------

def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Depths: uniform in log-depth, so that near (big) and far (small) instances both occur."""
    return float(np.exp(rng.uniform(math.log(low), math.log(high))))


def sidewalk_lateral(rng: np.random.Generator, street: Street, side: int) -> float:
    return side * (street.sidewalk_start(side) + rng.uniform(0.3, max(0.4, street.sidewalk[side > 0] - 0.3)))


def lane_lateral(rng: np.random.Generator, street: Street) -> float:
    """The centre of a random lane (lane 0 is the camera's)."""
    lanes = [k * street.lane_width for k in range(-8, 9)
             if -street.road[0] + 1.0 <= k * street.lane_width <= street.road[1] - 1.0]
    return float(lanes[rng.integers(len(lanes))]) if lanes else 0.0


# A placed object: (depth for the far-to-near drawing order, draw function, its arguments after the canvas).
Placed = tuple[float, Callable[..., None], tuple]

# Barriers stand behind everything on the pavement: sort them before (farther than) all objects.
BARRIER_ORDER = 1e6


def random_side(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def place_kerbside(rng: np.random.Generator, street: Street, near: float, far: float, side: int) -> list[Placed]:
    """Rows of trees, poles (lamps, signs, traffic lights) and parked cars; walls, fences, hedges."""
    i = int(side > 0)
    placed: list[Placed] = []
    if rng.random() < 0.55:  # trees along the kerb, or on the grass if there is some
        depth, spacing, grass = rng.uniform(0.5, 1.0) * near, rng.uniform(7.0, 16.0), street.grass(side)
        while depth < far:
            lateral = sum(grass[0]) / 2 if grass else street.road[i] + rng.uniform(0.5, 1.2)
            placed.append((depth, draw_tree, (rng, side * lateral, depth)))
            depth += spacing * rng.uniform(0.8, 1.2)
    if rng.random() < 0.9:  # poles along the kerb
        depth, spacing = rng.uniform(0.5, 1.5) * near, rng.uniform(9.0, 22.0)
        while depth < far:
            furniture = str(rng.choice(["none", "sign", "light"], p=[0.28, 0.45, 0.27]))
            lateral = side * (street.road[i] + rng.uniform(0.3, 0.6))
            placed.append((depth, draw_pole, (rng, lateral, depth, furniture)))
            depth += spacing * rng.uniform(0.7, 1.3)
    if rng.random() < 0.22:  # a row of parked cars, with gaps
        depth = rng.uniform(0.6, 1.6) * near
        while depth < far:
            if rng.random() < 0.85:
                placed.append((depth, draw_vehicle, (rng, CAR, side * (street.road[i] - 1.1), depth, False)))
            depth += rng.uniform(5.0, 8.0)
    for kind, p in ((WALL, 0.45), (FENCE, 0.62), (VEGETATION, 0.2)):  # VEGETATION: a hedge
        if rng.random() < p:
            z0 = rng.uniform(0.5, 2.0) * near
            lateral = side * rng.uniform(street.pavement_end(side), street.facade[i])
            height = rng.uniform(1.0, 3.0) if kind != FENCE else rng.uniform(1.0, 2.4)
            args = (rng, kind, lateral, z0, z0 + rng.uniform(8.0, 40.0), height)
            placed.append((BARRIER_ORDER + abs(lateral), draw_barrier, args))
    return placed


def place_traffic(rng: np.random.Generator, street: Street, near: float, far: float
                  ) -> tuple[list[Placed], list[float]]:
    """Cars in the lanes, and the rare trucks, buses and trams; returns the trams' rails too."""
    placed: list[Placed] = []
    rails: list[float] = []
    for _ in range(rng.poisson(rng.gamma(0.8, 1.0))):  # gamma-Poisson: empty and busy streets
        depth, lateral = log_uniform(rng, 0.9 * near, far), lane_lateral(rng, street)
        placed.append((depth, draw_vehicle, (rng, CAR, lateral, depth, lateral < -0.5 and rng.random() < 0.7)))
    for kind, p, nearest in ((TRUCK, 0.14, 3.0), (BUS, 0.08, 2.5), (TRAIN, 0.045, 2.0)):
        if rng.random() < p:  # rare and, like in real data, seldom right in front of the camera
            depth, lateral = log_uniform(rng, nearest * near, 80.0), lane_lateral(rng, street)
            if kind == TRAIN:
                rails.append(lateral)
            placed.append((depth, draw_vehicle, (rng, kind, lateral, depth, lateral < -0.5 and rng.random() < 0.7)))
    return placed, rails


def place_people(rng: np.random.Generator, street: Street, near: float, far: float) -> list[Placed]:
    """Pedestrians, riders, parked bicycles and motorcycles, and unlabelled clutter."""
    placed: list[Placed] = []
    for _ in range(rng.poisson(rng.gamma(0.8, 7.5))):  # mostly on the sidewalks, some crossing
        depth, side = log_uniform(rng, 0.9 * near, far), random_side(rng)
        on_road = rng.random() < 0.15
        lateral = rng.uniform(-street.road[0], street.road[1]) if on_road else sidewalk_lateral(rng, street, side)
        placed.append((depth, draw_person, (rng, lateral, depth)))
    if rng.random() < 0.2:  # riders on the road near the kerb
        for _ in range(1 + rng.poisson(0.4)):
            depth, side = log_uniform(rng, 0.9 * near, far), random_side(rng)
            lateral = side * (street.kerb(side) - rng.uniform(0.5, 1.5))
            placed.append((depth, draw_two_wheeler, (rng, lateral, depth, bool(rng.random() < 0.3), True)))
    if rng.random() < 0.7:  # parked bicycles, often several in a row
        depth, side = log_uniform(rng, 0.9 * near, far), random_side(rng)
        lateral = sidewalk_lateral(rng, street, side)
        for k in range(1 + rng.poisson(2.5)):
            at = depth + 0.8 * k
            placed.append((at, draw_two_wheeler, (rng, lateral + rng.uniform(-0.3, 0.3), at, False, False)))
    if rng.random() < 0.1:  # a parked motorcycle
        depth, side = log_uniform(rng, 0.9 * near, far), random_side(rng)
        placed.append((depth, draw_two_wheeler, (rng, sidewalk_lateral(rng, street, side), depth, True, False)))
    if rng.random() < 0.35:  # bins, boxes, advertising pillars
        for _ in range(1 + rng.poisson(0.8)):
            depth, side = log_uniform(rng, 2.5 * near, far), random_side(rng)
            placed.append((depth, draw_clutter, (rng, sidewalk_lateral(rng, street, side), depth)))
    return placed


def sample_objects(rng: np.random.Generator, cam: Camera, street: Street) -> tuple[list[Placed], list[float]]:
    """Every upright object of a scene, plus the laterals of tram rails (painted on the road).

    The rates in the place_* functions set how often each family appears; together with the object
    sizes (metres) they are calibrated (bench/bench_synthetic.py) so that the average pixel shares
    follow Cityscapes'. They are not tuned for any method.
    """
    near = cam.near_depth()
    far = min(street.far_depth, 80.0)
    placed = place_kerbside(rng, street, near, far, -1) + place_kerbside(rng, street, near, far, 1)
    traffic, rails = place_traffic(rng, street, near, far)
    return placed + traffic + place_people(rng, street, near, far), rails


# --- Photometry --------------------------------------------------------------------------------------

def blur(image: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge replication (slices instead of np.pad, which is slow)."""
    for axis in (0, 1):
        image = np.moveaxis(image, axis, 0)
        out = image * 2
        out[1:] += image[:-1]
        out[:-1] += image[1:]
        out[0] += image[0]
        out[-1] += image[-1]
        image = np.moveaxis(out, 0, axis)
    image *= 1 / 16
    return image


def finish_photometry(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-image lighting (gain, contrast, colour cast), optional blur, sensor noise -> uint8."""
    gain, contrast = rng.uniform(0.6, 1.25), rng.uniform(0.75, 1.2)
    cast = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    passes, sigma = int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15])), rng.uniform(2.0, 8.0)
    mean = float(image.mean())
    # ((image - mean) * contrast + mean) * gain * cast, in place.
    image *= contrast * gain * cast
    image += mean * (1 - contrast) * gain * cast
    for _ in range(passes):
        image = blur(image)
    # Luminance noise (one value per pixel): a third of the random draws of per-channel noise.
    noise = rng.standard_normal(image.shape[:2] + (1,), dtype=np.float32)
    noise *= sigma
    image += noise
    np.clip(image, 0, 255, out=image)
    image += 0.5  # round half up on the cast below
    return image.astype(np.uint8)


# --- Public API -------------------------------------------------------------------------------------

def generate_scene(seed: int, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of the dataset ``seed``: (H, W, 3) uint8 RGB and (H, W) uint8 train ids (255 = ignore).

    Depends only on (seed, index, height, width), never on what was generated before.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    cam = sample_camera(rng, height, width)
    street = sample_street(rng)
    objects, rails = sample_objects(rng, cam, street)
    canvas = Canvas(cam, rng)
    draw_sky(canvas, rng)
    draw_ground(canvas, street, rng, rails)
    draw_backdrop(canvas, street, rng)
    draw_facades(canvas, street, rng)
    # Painter's algorithm: far to near. The sort is stable, so ties keep their sampling order.
    for _, draw, args in sorted(objects, key=lambda item: -item[0]):
        draw(canvas, *args)
    if rng.random() < 0.3:
        draw_ego_vehicle(canvas, rng)
    return finish_photometry(canvas.image, rng), canvas.label


def validate_synthetic_params(seed: int, num_train_images: int, num_val_images: int,
                              image_size: tuple[int, int] | list[int], labeled_fraction: float) -> tuple[int, int]:
    """Check the ``synthetic.*`` parameters; returns (height, width)."""
    def integer(key: str, value: object, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise UserError(f"'synthetic.{key}' must be an integer >= {minimum}, got {value!r}")
        return int(value)

    integer("seed", seed, 0)
    integer("num_train_images", num_train_images, 2)
    integer("num_val_images", num_val_images, 1)
    if not isinstance(image_size, (tuple, list)) or len(image_size) != 2:
        raise UserError(f"'synthetic.image_size' must be [height, width], got {image_size!r}")
    height, width = (integer("image_size", side, MIN_IMAGE_SIDE) for side in image_size)
    if isinstance(labeled_fraction, bool) or not isinstance(labeled_fraction, (int, float)) \
            or not 0 < labeled_fraction < 1:
        raise UserError(f"'synthetic.labeled_fraction' must be in (0, 1), got {labeled_fraction!r}")
    labeled = round(labeled_fraction * num_train_images)
    if not 1 <= labeled < num_train_images:
        raise UserError(f"'synthetic.labeled_fraction' {labeled_fraction} of {num_train_images} training images "
                        f"gives {labeled} labelled; need at least one labelled and one unlabelled image")
    return height, width


def prepare_synthetic(out_dir: Path, seed: int, num_train_images: int, num_val_images: int,
                      image_size: tuple[int, int], labeled_fraction: float) -> None:
    """Generate the dataset into ``out_dir`` (images/, labels/) and write its prepared-dataset files.

    Splits: ``labeled`` = the first round(labeled_fraction * num_train_images) training images,
    ``unlabeled`` = the rest (listed with their labels, as ground truth for pseudo-label accuracy),
    ``val``. ``generated_distribution.json`` compares the target shares with the generated ones.
    The caller makes ``out_dir`` atomic (it is normally a temporary directory).
    """
    height, width = validate_synthetic_params(seed, num_train_images, num_val_images, image_size, labeled_fraction)
    out_dir = Path(out_dir)
    images, labels = out_dir / "images", out_dir / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    num_labeled = round(labeled_fraction * num_train_images)
    jobs = [(f"train_{i:05d}", i) for i in range(num_train_images)]
    # Validation images use indices after the training ones, so they never repeat a training scene.
    jobs += [(f"val_{i:05d}", num_train_images + i) for i in range(num_val_images)]
    counts = {"train": np.zeros(256, np.int64), "labeled": np.zeros(256, np.int64), "val": np.zeros(256, np.int64)}
    samples = []
    for position, (sample_id, index) in enumerate(tqdm(jobs, desc="synthetic dataset", unit="img")):
        image, label = generate_scene(seed, index, height, width)
        Image.fromarray(image).save(images / f"{sample_id}.png")
        Image.fromarray(label).save(labels / f"{sample_id}.png")  # 2-D uint8 -> single-channel 'L'
        histogram = np.bincount(label.ravel(), minlength=256)
        if position < num_train_images:
            counts["train"] += histogram
            if position < num_labeled:
                counts["labeled"] += histogram
        else:
            counts["val"] += histogram
        samples.append(Sample(sample_id, images / f"{sample_id}.png", labels / f"{sample_id}.png"))
    splits = {"labeled": samples[:num_labeled], "unlabeled": samples[num_labeled:num_train_images],
              "val": samples[num_train_images:]}
    # The dataset root is the prepared directory itself; pass it relative so that dataset.json
    # stores "." and keeps working after the caller renames the temporary directory into place.
    write_prepared(out_dir, "synthetic", Path(os.path.relpath(out_dir)), CITYSCAPES, splits)
    write_json(out_dir / "generated_distribution.json", distribution_report(counts))


def distribution_report(counts: dict[str, np.ndarray]) -> dict:
    """Per class: the target share and the generated shares (of valid pixels) in each subset."""
    num_classes = CITYSCAPES.num_classes
    shares = {name: histogram[:num_classes] / max(int(histogram[:num_classes].sum()), 1)
              for name, histogram in counts.items()}
    return {
        "shares_of_valid_pixels": {
            class_name: {"target": round(float(TARGET_SHARES[c]), 6),
                         **{name: round(float(share[c]), 6) for name, share in shares.items()}}
            for c, class_name in enumerate(CITYSCAPES.names)},
        "ignored_share": {name: round(float(h[IGNORE] / max(int(h.sum()), 1)), 6) for name, h in counts.items()},
        "pixels": {name: int(h.sum()) for name, h in counts.items()},
    }
