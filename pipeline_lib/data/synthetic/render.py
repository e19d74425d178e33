"""Rendering primitives: the pinhole camera, pixel windows of planes in the street, the canvas with its
label mask, procedural textures and masks, and the final photometry (lighting, blur, noise).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from pipeline_lib.data.synthetic.classes import IGNORE

CAMERA_HEIGHT = 1.3  # metres above the road, roughly a windscreen camera


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
