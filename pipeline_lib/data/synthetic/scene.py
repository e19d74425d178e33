"""One image: which objects stand where in the street, drawn far to near."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pipeline_lib.data.synthetic.classes import BUS, CAR, FENCE, TRAIN, TRUCK, VEGETATION, WALL
from pipeline_lib.data.synthetic.objects import (
    draw_clutter,
    draw_ego_vehicle,
    draw_person,
    draw_pole,
    draw_tree,
    draw_two_wheeler,
    draw_vehicle,
)
from pipeline_lib.data.synthetic.render import Camera, Canvas, finish_photometry
from pipeline_lib.data.synthetic.street import (
    Street,
    draw_backdrop,
    draw_barrier,
    draw_facades,
    draw_ground,
    draw_sky,
    sample_camera,
    sample_street,
)

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
