"""The one home of ``params.yaml``: typed, frozen settings per section, each key checked here and only here.

:meth:`Params.get` reads one key and refuses a bad value with one message form,
``<file>: '<key>' <problem>, got <value>``; each section's ``from_params`` reads its keys with it. Code
below this module takes the typed settings and trusts them (no re-validation on per-image paths).

This module imports neither torch nor numpy: the ``dars`` command checks parameters before any of them load.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline_lib.errors import UserError

_MISSING = object()

BASELINE_ROUND = "r0"  # the supervised model trained on the labelled split only
DATASETS = ("synthetic", "cityscapes", "camvid", "voc", "folder")
METHODS: tuple[str, ...] = ("st", "cbst", "da", "dars")  # the pseudo-label rules (pipeline_lib.pseudo_label.rules)
INFERENCE_MODES = ("whole", "sliding")
LOSSES = ("per_source", "pixel_mean")  # train.loss: see TrainSettings.loss
# train.precision, for training, inference and evaluation alike: auto = the faster one on the device
# (pipeline_lib.device.resolve_precision), or one of the others forced.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PADDINGS = ("corner", "centre")
# What a round's entry may say; the keys after the first three are optional (absent: train.*'s value).
ROUND_KEYS = ("teacher", "init", "labeling_ratio", "iterations", "batch_size", "pseudo_fraction", "base_lr",
              "optimizer_state", "augmentation")
MIN_SYNTHETIC_SIDE = 64  # the street renderer's smallest image side


class Params:
    """A loaded ``params.yaml``; ``get("train.base_lr", float, positive)`` reads one checked value."""

    def __init__(self, data: dict, source: str = "params.yaml") -> None:
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a mapping at the top level")
        self.data = data
        self.source = source
        # Every dotted key looked up, outside `unrecorded` blocks: what a stage's settings read (tests compare it
        # with the stage's dvc.yaml params) and, after every reader ran, what no reader knows (`dars check`).
        self.read: set[str] = set()
        self._recording = True

    @classmethod
    def load(cls, path: str | os.PathLike = "params.yaml") -> Params:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: parameter file not found")
        return cls.parse(path.read_text(), str(path))

    @classmethod
    def parse(cls, text: str, source: str) -> Params:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise UserError(f"{source}{where}: not valid YAML ({problem})") from None
        return cls(data, source)

    def unread_keys(self) -> list[str]:
        """The dotted keys of the file (its leaves) that no lookup so far has read, in file order: after every
        reader has run (``dars check``), the keys nothing reads, such as a misspelt one."""
        def leaves(node: Any, prefix: str) -> Iterator[str]:
            if isinstance(node, dict) and node:
                for name, value in node.items():
                    yield from leaves(value, f"{prefix}.{name}" if prefix else str(name))
            else:
                yield prefix

        return [key for key in leaves(self.data, "")
                if not any(key == read or key.startswith(read + ".") for read in self.read)]

    @contextmanager
    def unrecorded(self) -> Iterator[None]:
        """Look-ups inside the block are not recorded: checks of keys that do not feed the caller's work (a round's
        teacher graph, validated whole by every stage that names a round)."""
        recording, self._recording = self._recording, False
        try:
            yield
        finally:
            self._recording = recording

    def note(self, key: str) -> None:
        """Record ``key`` as read: the part of an unrecorded check's result that the caller does use."""
        if self._recording:
            self.read.add(key)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.note(key)
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is _MISSING:
                    near = difflib.get_close_matches(part, [str(k) for k in node], n=1) \
                        if isinstance(node, dict) else []
                    raise UserError(f"{self.source}: missing key '{key}'"
                                    + (f" ('{near[0]}' is there: misspelt?)" if near else ""))
                return default
            node = node[part]
        return node

    def get(self, key: str, kind: type, *checks: Callable[[Any], str | None], default: Any = _MISSING) -> Any:
        """Value at dotted ``key`` converted to ``kind``; each check returns an error phrase or None."""
        value = self.raw(key, default)
        if value is None and default is None:
            return None
        try:
            if kind is bool:
                if not isinstance(value, bool):
                    raise TypeError
                converted = value
            elif kind in (int, float) and isinstance(value, bool):
                raise TypeError
            elif kind is int and isinstance(value, float) and not value.is_integer():
                raise TypeError
            elif kind is str and not isinstance(value, str):
                raise TypeError
            else:
                converted = kind(value)
        except (TypeError, ValueError):
            raise UserError(f"{self.source}: '{key}' must be a {kind.__name__}, got {value!r}") from None
        if isinstance(converted, float) and not math.isfinite(converted):
            raise UserError(f"{self.source}: '{key}' must be finite, got {value!r}")
        for check in checks:
            problem = check(converted)
            if problem:
                raise UserError(f"{self.source}: '{key}' {problem}, got {value!r}")
        return converted

    def fail(self, key: str, problem: str) -> UserError:
        """The one message form for a value that passed its type but not a check across keys."""
        return UserError(f"{self.source}: '{key}' {problem}, got {self.raw(key, None)!r}")


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


def at_least(minimum: int) -> Callable[[float], str | None]:
    return lambda value: None if value >= minimum else f"must be >= {minimum}"


def fraction(value: float) -> str | None:
    """In (0, 1]."""
    return None if 0 < value <= 1 else "must be in (0, 1]"


def fraction_below_one(value: float) -> str | None:
    """In [0, 1)."""
    return None if 0 <= value < 1 else "must be in [0, 1)"


def open_fraction(value: float) -> str | None:
    """In (0, 1)."""
    return None if 0 < value < 1 else "must be in (0, 1)"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"
    return check


# --- augmentation ----------------------------------------------------------------------------------------

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


def augmentation_at(params: Params, key: str) -> AugmentationSettings:
    """The recipe written at ``key`` (one line, see AugmentationSettings), checked."""
    text = params.get(key, str)
    try:
        return AugmentationSettings.parse(text)
    except ValueError as exc:
        raise params.fail(key, str(exc)) from None


# --- rounds --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RoundSchedule:
    """A round's entry in ``rounds``; None = train.*'s value (read by TrainSettings)."""

    name: str
    teacher: str  # round whose model makes this round's pseudo labels
    init: str  # "teacher" (continue from the teacher's weights, as the paper) or "scratch"
    labeling_ratio: float  # α_k
    depth: int  # 1 + the teacher's (r0: 0): the round's place in the schedule ``base_lr: continue`` spans
    iterations: int | None = None  # this round's training length
    batch_size: int | None = None
    pseudo_fraction: float | None = None
    base_lr: float | str | None = None  # a number, or "continue" (see TrainSettings.from_params)
    optimizer_state: str = "fresh"  # "teacher": SGD momentum carried over from the teacher's checkpoint
    labeled_augmentation: AugmentationSettings | None = None
    pseudo_augmentation: AugmentationSettings | None = None


def round_schedule(params: Params) -> dict[str, RoundSchedule]:
    """The ``rounds`` mapping, checked: each teacher is the baseline or an earlier round, no unknown key. Reads
    nothing on the record: a caller notes the entries it uses."""
    with params.unrecorded():
        return _round_schedule(params)


def _round_schedule(params: Params) -> dict[str, RoundSchedule]:
    rounds = params.raw("rounds", {}) or {}
    if not isinstance(rounds, dict):
        raise UserError(f"{params.source}: 'rounds' must be a mapping like {{r1: {{labeling_ratio: 0.2, ...}}}}")
    schedule: dict[str, RoundSchedule] = {}
    for name, entry in rounds.items():
        if name == BASELINE_ROUND or not str(name).isidentifier():
            raise UserError(f"{params.source}: round name {name!r} is reserved or not a plain name")
        key = f"rounds.{name}"
        if not isinstance(entry, dict):
            raise params.fail(key, "must be a mapping like {teacher: r0, init: teacher, labeling_ratio: 0.2}")
        unknown = [k for k in entry if k not in ROUND_KEYS]
        if unknown:
            hint = " (replaced by augmentation: 'beta B', see params.yaml)" if unknown[0] == "aug_strength" else ""
            raise params.fail(f"{key}.{unknown[0]}", f"is not a round setting{hint}; a round may set "
                                                     f"{', '.join(ROUND_KEYS)}")
        teacher = params.get(f"{key}.teacher", str)
        if teacher != BASELINE_ROUND and teacher not in schedule:
            raise UserError(f"{params.source}: '{key}.teacher' is {teacher!r}; it must be {BASELINE_ROUND} or a "
                            f"round listed before {name} ({', '.join(schedule) or 'none'})")
        init = params.get(f"{key}.init", str, one_of("teacher", "scratch"))
        base_lr = params.raw(f"{key}.base_lr", None)
        if isinstance(base_lr, str) and base_lr != "continue":
            raise params.fail(f"{key}.base_lr", "must be a number or continue")
        if base_lr != "continue":
            base_lr = params.get(f"{key}.base_lr", float, positive, default=None)
        optimizer_state = params.get(f"{key}.optimizer_state", str, one_of("fresh", "teacher"), default="fresh")
        for setting, value in (("base_lr", "continue"), ("optimizer_state", "teacher")):
            if entry.get(setting) == value and init != "teacher":
                raise params.fail(f"{key}.{setting}", f"'{value}' carries on from the teacher's training, so "
                                                      f"'{key}.init' must be teacher")
        labeled_aug, pseudo_aug = _round_augmentation(params, key)
        schedule[name] = RoundSchedule(
            name=name, teacher=teacher, init=init,
            labeling_ratio=params.get(f"{key}.labeling_ratio", float, fraction),
            depth=1 + (schedule[teacher].depth if teacher in schedule else 0),
            iterations=params.get(f"{key}.iterations", int, positive, default=None),
            batch_size=params.get(f"{key}.batch_size", int, at_least(2), default=None),
            pseudo_fraction=params.get(f"{key}.pseudo_fraction", float, fraction_below_one, default=None),
            base_lr=base_lr, optimizer_state=optimizer_state,
            labeled_augmentation=labeled_aug, pseudo_augmentation=pseudo_aug,
        )
    return schedule


def _round_augmentation(params: Params, key: str) -> tuple[AugmentationSettings | None, AugmentationSettings | None]:
    """``augmentation``: one line for both sources, or {labeled: ..., pseudo: ...} (a source left out: train's)."""
    value = params.raw(f"{key}.augmentation", None)
    if value is None:
        return None, None
    if isinstance(value, dict):
        unknown = [k for k in value if k not in ("labeled", "pseudo")]
        if unknown:
            raise params.fail(f"{key}.augmentation.{unknown[0]}", "is not a source; the sources are labeled, pseudo")
        return tuple(augmentation_at(params, f"{key}.augmentation.{source}") if source in value else None
                     for source in ("labeled", "pseudo"))
    both = augmentation_at(params, f"{key}.augmentation")
    return both, both


def check_round(params: Params, round_name: str) -> None:
    """Refuse a round that params.yaml does not define (r0 always exists)."""
    rounds = [BASELINE_ROUND, *round_schedule(params)]
    if round_name not in rounds:
        raise UserError(f"unknown round {round_name!r}; {params.source} defines {', '.join(rounds)}")


def self_training_round(params: Params, round_name: str) -> RoundSchedule:
    """The schedule of a round with pseudo labels; refuses r0 and rounds params.yaml does not define. Notes
    nothing as read (see ``round_teacher``)."""
    schedule = round_schedule(params)
    listed = ", ".join(schedule) or "none"
    if round_name == BASELINE_ROUND:
        raise UserError(f"round {BASELINE_ROUND} is the supervised baseline and has no pseudo labels; rounds "
                        f"with pseudo labels in {params.source}: {listed}")
    if round_name not in schedule:
        raise UserError(f"unknown round {round_name!r}; rounds with pseudo labels in {params.source}: {listed}")
    return schedule[round_name]


def round_teacher(params: Params, round_name: str) -> str:
    """The teacher of a round with pseudo labels (checked as ``self_training_round``), noted as read."""
    teacher = self_training_round(params, round_name).teacher
    params.note(f"rounds.{round_name}.teacher")
    return teacher


# --- data ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticSettings:
    seed: int
    num_train_images: int
    num_val_images: int
    image_size: tuple[int, int]  # height, width

    @classmethod
    def from_params(cls, params: Params) -> SyntheticSettings:
        size = params.raw("synthetic.image_size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise params.fail("synthetic.image_size", "must be [height, width]")
        sides = []
        for side in size:
            if isinstance(side, bool) or not isinstance(side, int) or side < MIN_SYNTHETIC_SIDE:
                raise params.fail("synthetic.image_size", f"must be two integers >= {MIN_SYNTHETIC_SIDE}")
            sides.append(side)
        return cls(seed=params.get("synthetic.seed", int, non_negative),
                   num_train_images=params.get("synthetic.num_train_images", int, at_least(2)),
                   num_val_images=params.get("synthetic.num_val_images", int, positive),
                   image_size=(sides[0], sides[1]))

    def labeled_count(self, labeled_fraction: float | None, labeled_count: int | None) -> int:
        """How many of the training images keep their labels: the count, or round(fraction × images)."""
        return labeled_count if labeled_count is not None else round(labeled_fraction * self.num_train_images)


@dataclass(frozen=True)
class DataSettings:
    dataset: str  # one of DATASETS
    root: Path  # the dataset's directory (synthetic: its generator's package), a tracked input of prepare
    labeled_fraction: float | None  # exactly one of the two is set
    labeled_count: int | None
    val_fraction: float | None  # folder datasets without a val/ folder
    split_seed: int
    labeled_list: Path | None
    unlabeled_list: Path | None
    synthetic: SyntheticSettings | None

    @classmethod
    def from_params(cls, params: Params) -> DataSettings:
        dataset = params.get("data.dataset", str, one_of(*DATASETS))
        count = params.get("data.labeled_count", int, positive, default=None)
        # labeled_count, when given, overrides labeled_fraction (params.yaml documents it so).
        labeled_fraction = None if count is not None else \
            params.get("data.labeled_fraction", float, open_fraction, default=None)
        lists = {key: None if value is None else Path(value) for key in ("labeled_list", "unlabeled_list")
                 for value in [params.get(f"data.{key}", str, default=None)]}
        # Every kind names a directory: dvc.yaml tracks data.root as an input of prepare.
        root_text = params.get("data.root", str, default=None)
        if root_text is None:
            raise UserError(f"{params.source}: 'data.root' must name the {dataset} dataset's directory, which DVC "
                            "tracks as an input of prepare (synthetic: pipeline_lib/data/synthetic, its generator)")
        root = Path(root_text)
        if not root.is_dir():
            raise params.fail("data.root", "is not a directory")
        if dataset == "synthetic":
            synthetic = SyntheticSettings.from_params(params)
            if count is None and labeled_fraction is None:
                raise params.fail("data.labeled_fraction", "(or 'data.labeled_count') must say how many synthetic "
                                                           "training images keep their labels")
            labeled = synthetic.labeled_count(labeled_fraction, count)
            if not 1 <= labeled < synthetic.num_train_images:
                key = "data.labeled_count" if count is not None else "data.labeled_fraction"
                raise params.fail(key, f"gives {labeled} labelled of the {synthetic.num_train_images} "
                                       "synthetic training images; need at least one labelled and one unlabelled")
            for key, value in lists.items():
                if value is not None:
                    raise params.fail(f"data.{key}", "is for cityscapes, camvid and voc; the synthetic split is "
                                                     "generated")
        else:
            synthetic = None
            if dataset == "folder":
                for key, value in lists.items():
                    if value is not None:
                        raise params.fail(f"data.{key}", "is for cityscapes, camvid and voc; a folder dataset "
                                                         "has its own labelled/ and unlabelled/ folders or is "
                                                         "split here")
        return cls(dataset=dataset, root=root, labeled_fraction=labeled_fraction, labeled_count=count,
                   val_fraction=params.get("data.val_fraction", float, open_fraction, default=None),
                   split_seed=params.get("data.split_seed", int), labeled_list=lists["labeled_list"],
                   unlabeled_list=lists["unlabeled_list"], synthetic=synthetic)


# --- training ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSettings:
    arch: str  # checked against the architectures by models.build.build_model
    pretrained_backbone: str | None  # a local torchvision state-dict file, or None

    @classmethod
    def from_params(cls, params: Params) -> ModelSettings:
        pretrained = params.get("model.pretrained_backbone", str, default=None)
        return cls(arch=params.get("model.arch", str), pretrained_backbone=pretrained)


@dataclass(frozen=True)
class TrainSettings:
    """How one round trains: train.* with the round's own entries (rounds.rK.*) taking precedence."""

    iterations: int
    batch_size: int
    crop_size: int
    base_lr: float  # this round's: the poly schedule decays from it over ``iterations``
    head_lr_multiplier: float
    momentum: float
    weight_decay: float
    poly_power: float
    aux_weight: float
    # "per_source" (the authors'): one forward pass per source (each its own BatchNorm batch) and the sum of
    # each source's mean over its valid pixels; "pixel_mean": one pass over the mixed batch, one mean over all
    # valid pixels (the pseudo half then weighs by its share of valid pixels: about α/(α + 0.88) here).
    loss: str
    optimizer_state: str  # "fresh" or "teacher" (momentum carried over from the teacher's checkpoint)
    labeled_augmentation: AugmentationSettings
    pseudo_augmentation: AugmentationSettings
    # Share of each batch taken from pseudo-labelled images: 0 in round 0, and in a self-training round
    # the labelled-only control (the same schedule and iterations without pseudo labels).
    pseudo_fraction: float
    checkpoint_every: int
    log_every: int
    num_workers: int
    precision: str  # one of PRECISIONS, resolved per device by pipeline_lib.device.resolve_precision
    seed: int

    @classmethod
    def from_params(cls, params: Params, round_name: str) -> TrainSettings:
        check_round(params, round_name)
        get = params.get
        if params.raw("train.aug_strength", None) is not None:
            raise params.fail("train.aug_strength", "was replaced by train.augmentation (e.g. 'beta 1.0')")
        labeled_aug = augmentation_at(params, "train.augmentation")
        base_lr = get("train.base_lr", float, positive)
        power = get("train.poly_power", float, non_negative)
        rounds = round_schedule(params)
        if round_name in rounds:
            params.note(f"rounds.{round_name}")  # the whole entry shapes the round's training
        entry = rounds.get(round_name) or RoundSchedule(round_name, BASELINE_ROUND, "scratch", 1.0, depth=0)
        if entry.base_lr == "continue":
            # The authors resume the teacher's optimiser and epoch counter on a poly schedule spanning
            # rounds 0..k, each as long (in their epochs) as round 0: round k's step t is at (k·E + t') of
            # (k+1)·E, so lr = base·(1 − (k + t/T)/(k+1))^p = base·(1/(k+1))^p·(1 − t/T)^p — round k's own
            # poly decay from base·(1/(k+1))^p: 0.536× in round 1, 0.372× in round 2 at p = 0.9.
            base_lr = base_lr * (1 / (entry.depth + 1)) ** power
        elif entry.base_lr is not None:
            base_lr = entry.base_lr
        pseudo_fraction = 0.0
        if round_name != BASELINE_ROUND:
            # self_training.pseudo_fraction 0 is the labelled-only control of every round (`dars ablation`
            # sets it so), whatever share a round's own entry gives.
            pseudo_fraction = get("self_training.pseudo_fraction", float, fraction_below_one)
            if pseudo_fraction > 0 and entry.pseudo_fraction is not None:
                pseudo_fraction = entry.pseudo_fraction
        return cls(
            iterations=entry.iterations or get("train.iterations", int, positive),
            batch_size=entry.batch_size or get("train.batch_size", int, at_least(2)),
            crop_size=get("train.crop_size", int, positive),
            base_lr=base_lr,
            head_lr_multiplier=get("train.head_lr_multiplier", float, positive),
            momentum=get("train.momentum", float, non_negative),
            weight_decay=get("train.weight_decay", float, non_negative),
            poly_power=power,
            aux_weight=get("train.aux_weight", float, non_negative),
            loss=get("train.loss", str, one_of(*LOSSES)),
            optimizer_state=entry.optimizer_state,
            labeled_augmentation=entry.labeled_augmentation or labeled_aug,
            pseudo_augmentation=entry.pseudo_augmentation or labeled_aug,
            pseudo_fraction=pseudo_fraction,
            checkpoint_every=get("train.checkpoint_every", int, positive),
            log_every=get("train.log_every", int, positive),
            num_workers=get("train.num_workers", int, non_negative),
            precision=train_precision(params),
            seed=get("seed", int),
        )

    def batch_split(self, has_pseudo: bool) -> tuple[int, int]:
        """(labelled, pseudo-labelled) images per batch."""
        if not has_pseudo:
            return self.batch_size, 0
        pseudo = min(self.batch_size - 1, max(1, round(self.batch_size * self.pseudo_fraction)))
        return self.batch_size - pseudo, pseudo

    def check_processes(self, processes: int, has_pseudo: bool = True) -> None:
        """Refuse a batch too small to share among ``processes``: each needs two images per forward pass, as
        BatchNorm does (PSPNet's 1x1 pyramid-pooling bin has one value per image and channel); with the
        per-source loss each source is its own pass."""
        if self.batch_size < 2 * processes:
            raise UserError(f"train.batch_size {self.batch_size} is too small for {processes} processes "
                            f"(distributed.processes): each process needs at least 2 images per batch")
        if self.loss == "per_source" and has_pseudo and self.pseudo_fraction > 0:
            smallest = min(self.batch_split(True))
            if smallest < 2 * processes:
                raise UserError(f"train.loss per_source runs each source as its own forward pass, and the batch "
                                f"{self.batch_split(True)} (labelled, pseudo) gives one of them {smallest} "
                                f"image(s) for {processes} process(es); each needs at least 2 per process")


@dataclass(frozen=True)
class DistributedSettings:
    """params.yaml's ``distributed`` section; without one, a single process."""

    processes: int = 1  # processes per stage, one per GPU (gloo processes on CPU when there is no GPU)
    sync_batchnorm: bool = False  # training: BatchNorm statistics over the whole batch (GPUs only)

    @classmethod
    def from_params(cls, params: Params) -> DistributedSettings:
        return cls(processes=distributed_processes(params),
                   sync_batchnorm=params.get("distributed.sync_batchnorm", bool, default=False))

    def check_sync_batchnorm(self, on_gpus: bool, processes: int | None = None) -> None:
        """Refuse synchronised BatchNorm over several CPU processes (torch implements it for GPUs only).

        ``on_gpus``: whether the processes run on GPUs (the stages' device, DARS_DEVICE included, not whether
        the machine has one); ``processes`` (default: the setting's) lets a process already in a group check
        the group it is in."""
        processes = self.processes if processes is None else processes
        if not (self.sync_batchnorm and processes > 1):
            return
        if not on_gpus:
            raise UserError("distributed.sync_batchnorm needs GPUs (torch synchronises BatchNorm on GPUs only); "
                            "set it to false for several CPU processes")


def distributed_processes(params: Params) -> int:
    """``distributed.processes``: all that the stages that do not train read of the section."""
    return params.get("distributed.processes", int, positive, default=1)


# --- inference, evaluation, pseudo-labelling -------------------------------------------------------------

@dataclass(frozen=True)
class InferenceSettings:
    """The ``inference`` section, shared by the infer and evaluate stages."""

    mode: str  # "whole" or "sliding"
    crop_size: int | None
    stride: int | None
    flip: bool
    base_size: int | None  # the long side images are resized to before inference (None: as they are)
    precision: str  # train.precision: a model is evaluated and pseudo-labelled in the precision it trained in

    @classmethod
    def from_params(cls, params: Params) -> InferenceSettings:
        mode = params.get("inference.mode", str, one_of(*INFERENCE_MODES))
        crop = params.get("inference.crop_size", int, positive, default=None)
        if mode == "sliding" and crop is None:
            crop = params.get("train.crop_size", int, positive)
        stride = params.get("inference.stride", int, positive, default=None)
        if mode == "sliding" and stride is not None and stride > crop:
            raise params.fail("inference.stride", f"must be at most the sliding-window crop ({crop}): a longer "
                                                  "step leaves pixels that no window covers")
        return cls(mode=mode, crop_size=crop, stride=stride,
                   flip=params.get("inference.flip", bool),
                   base_size=params.get("inference.base_size", int, positive, default=None),
                   precision=train_precision(params))

    def as_kwargs(self) -> dict:
        return {"mode": self.mode, "crop_size": self.crop_size, "stride": self.stride, "flip": self.flip,
                "base_size": self.base_size, "precision": self.precision}


def train_precision(params: Params) -> str:
    """``train.precision``; the boolean ``train.autocast`` it replaced is refused with its equivalent."""
    old = params.raw("train.autocast", None)
    if old is not None:
        equivalent = {True: "auto", False: "fp32"}.get(old, "auto | fp32 | bf16 | fp16")
        raise params.fail("train.autocast", f"was replaced by train.precision; write `precision: {equivalent}`")
    # A params file for `dars predict` alone may hold only its inference section: auto then.
    return params.get("train.precision", str, one_of(*PRECISIONS), default="auto")


def images_per_shard(params: Params) -> int:
    """``inference.images_per_shard``: images per zarr shard file of the logits stores."""
    return params.get("inference.images_per_shard", int, positive)


@dataclass(frozen=True)
class EvaluateSettings:
    tail_share_threshold: float  # tail classes: labelled pixel share below this
    tail_classes: tuple[str, ...] | None  # or these class names

    @classmethod
    def from_params(cls, params: Params) -> EvaluateSettings:
        explicit = params.raw("evaluate.tail_classes", None)
        if explicit is not None:
            explicit = tuple(explicit) if isinstance(explicit, list) else (explicit,)
        return cls(tail_share_threshold=params.get("evaluate.tail_share_threshold", float, fraction),
                   tail_classes=explicit)


@dataclass(frozen=True)
class ConfidenceSettings:
    """What the confidence stage reads: whether to divide the logits by the teacher's fitted temperature."""

    temperature_scaling: bool

    @classmethod
    def from_params(cls, params: Params) -> ConfidenceSettings:
        return cls(temperature_scaling=params.get("pseudo_label.temperature_scaling", bool))


@dataclass(frozen=True)
class PseudoLabelSettings:
    method: str  # one of METHODS
    seed: int  # seeds DARS's random sampling
    labeling_ratio: float  # α_k of the round

    @classmethod
    def from_params(cls, params: Params, round_name: str) -> PseudoLabelSettings:
        schedule = self_training_round(params, round_name)
        params.note(f"rounds.{round_name}.labeling_ratio")
        return cls(method=params.get("pseudo_label.method", str, one_of(*METHODS)),
                   seed=params.get("pseudo_label.seed", int, non_negative),
                   labeling_ratio=schedule.labeling_ratio)
