"""The typed, frozen settings of ``params.yaml``, per section, each key checked here and only here.

Each section's ``from_params`` reads its keys with :meth:`pipeline_lib.params.Params.get` (one message form for a
bad value). Code below this module takes the typed settings and trusts them (no re-validation on per-image
paths).

This module imports neither torch nor numpy: the ``dars`` command checks parameters before any of them load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.errors import UserError
from pipeline_lib.params import (
    Params,
    at_least,
    fraction,
    fraction_below_one,
    non_negative,
    one_of,
    open_fraction,
    positive,
)
from pipeline_lib.augmentation_recipe import AugmentationSettings

BASELINE_ROUND = "r0"  # the supervised model trained on the labelled split only
DATASETS = ("synthetic", "cityscapes", "camvid", "voc", "folder")
METHODS: tuple[str, ...] = ("st", "cbst", "da", "dars")  # the pseudo-label rules (pipeline_lib.pseudo_label.rules)
INFERENCE_MODES = ("whole", "sliding")
LOSSES = ("per_source", "pixel_mean")  # train.loss: see TrainSettings.loss
# train.precision, for training, inference and evaluation alike: auto = the faster one on the device
# (pipeline_lib.device.resolve_precision), or one of the others forced.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# What a round's entry may say; the keys after the first three are optional (absent: train.*'s value).
ROUND_KEYS = ("teacher", "init", "labeling_ratio", "iterations", "batch_size", "pseudo_fraction", "base_lr",
              "optimizer_state", "augmentation")
MIN_SYNTHETIC_SIDE = 64  # the street renderer's smallest image side


# --- augmentation ----------------------------------------------------------------------------------------

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
        # labeled_count, when given, overrides labeled_fraction (params.yaml documents it so); the fraction is
        # checked all the same, and so read: `dars check` would otherwise call it unknown.
        fraction = params.get("data.labeled_fraction", float, open_fraction, default=None)
        labeled_fraction = None if count is not None else fraction
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
