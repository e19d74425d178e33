"""Upright objects standing on the ground: trees, poles, signs, traffic lights, people and riders,
two-wheelers, vehicles, street clutter and the ego-vehicle bonnet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline_lib.data.synthetic.classes import (
    BICYCLE,
    BUS,
    CAR,
    IGNORE,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    TRAFFIC_LIGHT,
    TRAFFIC_SIGN,
    TRAIN,
    TRUCK,
    VEGETATION,
)
from pipeline_lib.data.synthetic.palettes import CLOTHES, LEAF_GREENS, SKIN, VEHICLE_PAINTS
from pipeline_lib.data.synthetic.render import (
    EVERYWHERE,
    Canvas,
    Window,
    billboard,
    box_mask,
    disk_mask,
    jitter,
    pick,
    ring_mask,
    segment_mask,
    shade,
    side_plane,
    wrap,
)

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
