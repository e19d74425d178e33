"""The street that every drawing function shares: its layout, sky and ground, the façades of buildings
and trees lining it, the backdrop and the barriers (walls, fences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline_lib.data.synthetic.classes import BUILDING, FENCE, ROAD, SIDEWALK, SKY, TERRAIN, VEGETATION, WALL
from pipeline_lib.data.synthetic.palettes import BUILDING_PAINTS, GRASS_GREENS, LEAF_GREENS
from pipeline_lib.data.synthetic.render import (
    CAMERA_HEIGHT,
    Camera,
    Canvas,
    Window,
    billboard,
    jitter,
    pick,
    shade,
    side_plane,
    wrap,
)

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
