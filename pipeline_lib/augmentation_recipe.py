"""The augmentation recipe grammar of params.yaml: one line per source, e.g. ``scale 0.25-1.0, flip``, parsed into
the settings that pipeline_lib.train.augmentation applies. Torch-free, like every settings reader."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PADDINGS = ("corner", "centre")


@dataclass(frozen=True)
class AugmentationSettings:
    """One source's training augmentation (pipeline_lib.train.augmentation applies it, in this order).

    Written in params.yaml as one line, so that each (round, source) is one `dvc exp show` column, e.g. the
    authors' Cityscapes round 0: ``scale 0.25-1.0, rotate 10 p0.5, blur 5x5 p0.5, flip, pad centre``.
    Parts (each at most once, comma-separated, any order; a part left out is off): ``scale A-B`` (random
    scale factor), ``rotate D`` or ``rotate D pP`` (angle uniform in ±D degrees, with probability P, default
    1), ``blur KxK pP`` (K×K Gaussian kernel, σ as OpenCV derives it from K) or ``blur radius R pP`` (PIL
    Gaussian of radius uniform in [0.1, R]), ``flip`` or ``flip pP`` (horizontal, default P 0.5), ``jitter A``
    (brightness, contrast, saturation factors uniform in [1 − A, 1 + A]), ``pad centre`` (images smaller than
    the crop padded on all sides with the mean colour, as the authors) or ``pad corner`` (bottom/right, grey;
    the default). ``none`` is the crop alone; ``beta B`` is the shorthand kept from earlier versions (one
    strength scaling all of them, see README) and reproduces their draws exactly.
    """

    scale: tuple[float, float] | None = None
    rotation: float = 0.0
    rotation_p: float = 1.0
    blur_kernel: int | None = None
    blur_radius: float | None = None
    blur_p: float = 0.0
    jitter: float = 0.0
    flip_p: float = 0.0
    padding: str = "corner"

    @classmethod
    def from_beta(cls, beta: float) -> AugmentationSettings:
        """The single-strength recipe of earlier versions (expressions kept as they were: same floats)."""
        if beta == 0:
            return cls()
        return cls(scale=(max(0.25, 1.0 - 0.5 * beta), 1.0 + 0.5 * beta), rotation=10.0 * beta,
                   blur_radius=max(0.1, beta), blur_p=min(0.5, 0.5 * beta), jitter=0.3 * beta, flip_p=0.5)

    @classmethod
    def parse(cls, text: str) -> AugmentationSettings:
        """The recipe a params.yaml line describes; ValueError (a phrase naming the bad part) otherwise."""
        parts = [part.strip() for part in text.split(",")]
        if parts == ["none"]:
            return cls()
        words = parts[0].split()
        if len(parts) == 1 and len(words) == 2 and words[0] == "beta":
            beta = _number(words[1], parts[0])
            if beta < 0:
                raise ValueError(f"has '{parts[0]}': β must be >= 0")
            return cls.from_beta(beta)
        fields: dict[str, Any] = {}
        named: set[str] = set()
        for part in parts:
            words = part.split()
            name = words[0] if words else ""
            if name in named:
                raise ValueError(f"names '{name}' twice")
            named.add(name)
            if name == "scale" and len(words) == 2 and words[1].count("-") == 1:
                low, high = (_number(value, part) for value in words[1].split("-"))
                if not 0 < low <= high:
                    raise ValueError(f"has '{part}': need 0 < low <= high")
                fields["scale"] = (low, high)
            elif name == "rotate" and len(words) in (2, 3):
                fields["rotation"] = _number(words[1], part)
                fields["rotation_p"] = _probability(words[2:], part, 1.0)
                if fields["rotation"] < 0:
                    raise ValueError(f"has '{part}': the angle must be >= 0")
            elif name == "blur" and len(words) in (2, 3) and "x" in words[1]:
                sides = words[1].split("x")
                if len(sides) != 2 or sides[0] != sides[1] or not sides[0].isdigit() or int(sides[0]) % 2 == 0 \
                        or int(sides[0]) < 3:
                    raise ValueError(f"has '{part}': the kernel must be square and odd, like 5x5")
                fields["blur_kernel"], fields["blur_p"] = int(sides[0]), _probability(words[2:], part, None)
            elif name == "blur" and len(words) in (3, 4) and words[1] == "radius":
                fields["blur_radius"], fields["blur_p"] = _number(words[2], part), _probability(words[3:], part, None)
                if fields["blur_radius"] <= 0:
                    raise ValueError(f"has '{part}': the radius must be > 0")
            elif name == "flip" and len(words) in (1, 2):
                fields["flip_p"] = _probability(words[1:], part, 0.5)
            elif name == "jitter" and len(words) == 2:
                fields["jitter"] = _number(words[1], part)
                if not 0 <= fields["jitter"] < 1:
                    raise ValueError(f"has '{part}': the amount must be in [0, 1)")
            elif name == "pad" and len(words) == 2 and words[1] in PADDINGS:
                fields["padding"] = words[1]
            else:
                raise ValueError(f"has '{part}', which is none of: scale A-B, rotate D [pP], blur KxK pP, "
                                 "blur radius R pP, flip [pP], jitter A, pad centre|corner (or: none, beta B)")
        return cls(**fields)


def _number(text: str, part: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"has '{part}': {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"has '{part}': {text!r} is not finite")
    return value


def _probability(words: list[str], part: str, default: float | None) -> float:
    if not words:
        if default is None:
            raise ValueError(f"has '{part}' without its probability (pP)")
        return default
    if len(words) != 1 or not words[0].startswith("p"):
        raise ValueError(f"has '{part}': the probability is written pP, like p0.5")
    value = _number(words[0][1:], part)
    if not 0 < value <= 1:
        raise ValueError(f"has '{part}': the probability must be in (0, 1]")
    return value
