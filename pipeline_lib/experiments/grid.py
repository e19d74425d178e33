"""The paper's Table 4 ablation on the current dataset: experiment names, their -S overrides, and the table.

Each variant is a pseudo-labelling method with or without temperature scaling ("cbst+ts"), or the
labelled-only control ("supervised": every round's iterations without pseudo labels, which tells the pseudo
labels' gain from that of training longer); each runs as a DVC experiment named
``<variant>[-ts]-s<seed>-<grid key>``, the key naming the grid's settings (:func:`grid_key`). Finished
experiments are copied into a committed record (:mod:`pipeline_lib.experiments.record`), which the table and the
figure read: the first round (k = 1) and the last round (iterative training), against the supervised baseline
(round r0). The round-0 curve (the baseline against its training budget) tells whether that baseline has
converged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pipeline_lib.errors import UserError
from pipeline_lib.experiments.dvc_git import run_dvc, run_queued
from pipeline_lib.params import Params
from pipeline_lib.settings import METHODS

T = TypeVar("T")

PAPER_VARIANTS = ("st", "st+ts", "cbst", "cbst+ts", "da+ts", "dars")
CONTROL = "supervised"
# What `dars ablation` runs unless told otherwise: the paper's rows and the labelled-only control, without which
# the pseudo labels' gain cannot be told from that of training the rounds' iterations at all.
DEFAULT_VARIANTS = (*PAPER_VARIANTS, CONTROL)


@dataclass(frozen=True)
class Variant:
    method: str
    temperature_scaling: bool

    @classmethod
    def parse(cls, text: str) -> "Variant":
        method, _, suffix = text.strip().lower().partition("+")
        if method == CONTROL and not suffix:
            return cls(CONTROL, False)
        if method not in METHODS or suffix not in ("", "ts"):
            raise UserError(f"unknown variant {text!r}; use a method ({', '.join(METHODS)}) optionally with "
                            f"'+ts', or {CONTROL!r} (the labelled-only control)")
        return cls(method, suffix == "ts")

    @property
    def label(self) -> str:
        if self.method == CONTROL:
            return "labelled only, same iterations"
        return self.method.upper() + ("+TS" if self.temperature_scaling else "")

    @property
    def name(self) -> str:
        """How ``--variants`` spells it (``cbst+ts``), and the record too."""
        return self.method + ("+ts" if self.temperature_scaling else "")

    def experiment_name(self, seed: int, grid: str) -> str:
        return f"{self.method}{'-ts' if self.temperature_scaling else ''}-s{seed}-{grid}"

    def overrides(self, seed: int, dataset: str) -> list[str]:
        """``dvc exp run -S`` arguments for this variant and seed (a whole replicate, see seed_overrides)."""
        seeds = seed_overrides(seed, dataset)
        if self.method == CONTROL:
            return ["-S", "self_training.pseudo_fraction=0", *seeds]
        return ["-S", f"pseudo_label.method={self.method}",
                "-S", f"pseudo_label.temperature_scaling={str(self.temperature_scaling).lower()}", *seeds]


def parse_variants(text: str) -> list[Variant]:
    return [Variant.parse(v) for v in text.split(",") if v.strip()]


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {text!r}") from None


# The keys a variant or a seed sets (see Variant.overrides); every other parameter is the grid's.
VARIANT_AND_SEED_KEYS = ("pseudo_label.method", "pseudo_label.temperature_scaling", "seed", "pseudo_label.seed",
                         "data.split_seed", "synthetic.seed")
KEY_LENGTH = 8


def params_without(params: Params, keys: tuple[str, ...]) -> dict:
    """A copy of ``params`` without the dotted ``keys`` (whole sections or single keys)."""
    data = json.loads(json.dumps(params.data))
    for key in keys:
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return data


def hash_without(params: Params, keys: tuple[str, ...]) -> str:
    """A short hash of ``params`` without the dotted ``keys``; comments and key order do not change it."""
    text = json.dumps(params_without(params, keys), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def grid_key(params: Params) -> str:
    """A short hash of the parameters a grid's experiments share: all of them but the keys a variant or a seed
    sets (VARIANT_AND_SEED_KEYS). Experiment names and record rows carry it, so runs of different settings (a
    longer round 0, another dataset) are never queued as done or averaged together."""
    return hash_without(params, VARIANT_AND_SEED_KEYS)


_EXPERIMENT_NAME = re.compile(r"^(?P<method>[a-z]+)(?P<ts>-ts)?-s(?P<seed>\d+)-(?P<grid>[0-9a-f]+)$")


def parse_experiment_name(name: str) -> tuple[Variant, int, str] | None:
    """(variant, seed, grid key) of a grid experiment's name; None for any other name."""
    match = _EXPERIMENT_NAME.match(name)
    if not match or (match["method"] not in METHODS and not (match["method"] == CONTROL and not match["ts"])):
        return None
    return Variant(match["method"], bool(match["ts"])), int(match["seed"]), match["grid"]


def batches_sharing_round0(experiments_by_seed: dict[int, list[T]]) -> list[list[T]]:
    """The order in which a grid's experiments (any per-experiment item) run when several run at once: first one
    experiment per seed, whose stages all of that seed's variants share (prepare, round 0, the first round's
    inference and confidences) then sit in DVC's run cache; then every other one, which restores those stages
    from it instead of training the same round 0 at the same time as its siblings."""
    first = [items[0] for items in experiments_by_seed.values() if items]
    rest = [item for items in experiments_by_seed.values() for item in items[1:]]
    return [batch for batch in (first, rest) if batch]


def _hydra_value(value: object, key: str) -> str:
    """``value`` in the override grammar DVC's ``-S`` parses (Hydra's): strings quoted, so that spaces, colons
    and numbers-as-text survive."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if "'" in value and '"' in value:
            raise UserError(f"{key}: a value with both quote characters cannot be passed to `dvc exp run -S`")
        quote = '"' if "'" in value else "'"
        return quote + value + quote
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(item, key) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{name}:{_hydra_value(item, key)}" for name, item in value.items()) + "}"
    raise UserError(f"{key}: a value of type {type(value).__name__} cannot be passed to `dvc exp run -S`")


def settings_overrides(workspace: Params, settings: Params, skip: tuple[str, ...] = ()) -> list[str]:
    """``dvc exp run -S`` arguments that turn ``workspace`` (the params.yaml an experiment starts from) into
    ``settings`` (another full parameter file: a benchmark's), key by key: changed values, added keys (``+``)
    and removed ones (``~``). Keys under ``skip`` (what a variant or a seed sets) are left to those."""
    overrides: list[str] = []

    def walk(old: dict, new: dict, prefix: str) -> None:
        for name, value in new.items():
            key = prefix + str(name)
            if key in skip:
                continue
            if name not in old:
                overrides.extend(["-S", f"+{key}={_hydra_value(value, key)}"])
            elif isinstance(value, dict) and isinstance(old[name], dict):
                walk(old[name], value, key + ".")
            elif old[name] is not None and isinstance(value, dict) != isinstance(old[name], dict):
                # a section for a value or back: OmegaConf assigns neither over the other
                overrides.extend(["-S", f"~{key}", "-S", f"+{key}={_hydra_value(value, key)}"])
            elif value != old[name] or type(value) is not type(old[name]):
                overrides.extend(["-S", f"{key}={_hydra_value(value, key)}"])
        for name in old:
            key = prefix + str(name)
            if name in new or key in skip:
                continue
            if old[name] is None:  # Hydra finds no value to delete
                raise UserError(f"{settings.source}: lacks '{key}', which {workspace.source} sets to null; "
                                f"add it ({key}: null) to {settings.source}")
            overrides.extend(["-S", f"~{key}"])

    walk(workspace.data, settings.data, "")
    return overrides


def seed_values(seed: int, dataset: str) -> dict[str, int]:
    """The keys one replicate sets: the training and sampling seeds, the labelled/unlabelled split and, for the
    embedded dataset (``dataset`` "synthetic"), the images themselves; one split and one set of images would
    leave their share of the spread unseen."""
    values = {"seed": seed, "pseudo_label.seed": seed, "data.split_seed": seed}
    return values | ({"synthetic.seed": seed} if dataset == "synthetic" else {})


def seed_overrides(seed: int, dataset: str) -> list[str]:
    """``-S`` arguments of one replicate (:func:`seed_values`)."""
    return [arg for key, value in seed_values(seed, dataset).items() for arg in ("-S", f"{key}={value}")]


def with_values(params: Params, values: dict[str, object]) -> dict:
    """A copy of ``params``' data with the dotted keys of ``values`` set (each key must exist: a replicate or a
    budget changes a value, it adds none)."""
    data = json.loads(json.dumps(params.data))
    for key, value in values.items():
        params.raw(key)  # a UserError names the file and a key it lacks
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[last] = value
    return data


# Experiments hang off the commit they were queued from; look a few commits back so that committing
# (say, the README) after queueing does not hide them.
COMMITS_SEARCHED = 20
# The parameter file DVC experiments start from; a grid's own file is applied to it as -S overrides.
WORKSPACE_PARAMS = "params.yaml"


def load_grid(params: Path) -> tuple[Params, str, list[str]]:
    """The grid's parameter file (checked whole), its grid key and its self-training rounds."""
    from pipeline_lib.check import check_params

    loaded = Params.load(params)
    rounds = check_params(loaded)[1:]  # (it refuses a file without self-training rounds)
    return loaded, grid_key(loaded), rounds


def experiment_overrides(workspace: Params, settings: Params, own: list[str]) -> list[str]:
    """``-S`` arguments of one experiment: what turns the workspace's params.yaml into the settings file (none when
    it is params.yaml), then the experiment's ``own`` (a variant's, a seed's, a budget's), which set their keys."""
    keys = tuple(arg.split("=", 1)[0].lstrip("+~") for arg in own[1::2])
    return [*settings_overrides(workspace, settings, skip=keys), *own]


def pending_experiments(variants: Sequence[Variant], seeds: Sequence[int], params: Path,
                        report: Callable[[str], None] = print) -> dict[int, list[tuple[str, list[str]]]]:
    """Per seed, the name and ``-S`` overrides of each of the grid's experiments that does not exist yet (those
    that do are named and skipped: the key changes with any parameter but the variant's and the seed's)."""
    from pipeline_lib.experiments.comparison import experiment_names
    from pipeline_lib.settings import DataSettings

    loaded, grid, _ = load_grid(params)
    dataset = DataSettings.from_params(loaded).dataset
    existing = set(experiment_names(COMMITS_SEARCHED))
    workspace = Params.load(WORKSPACE_PARAMS)
    pending: dict[int, list[tuple[str, list[str]]]] = {}
    for seed in seeds:
        for variant in variants:
            name = variant.experiment_name(seed, grid)
            if name in existing:
                report(f"{name}: exists, skipped (remove it with `dvc exp remove {name}` to rerun)")
            else:
                overrides = experiment_overrides(workspace, loaded, variant.overrides(seed, dataset))
                pending.setdefault(seed, []).append((name, overrides))
    return pending


def queue_grid(variants: Sequence[Variant], seeds: Sequence[int], params: Path,
               report: Callable[[str], None] = print) -> None:
    """Queue one DVC experiment per variant and seed that does not exist yet."""
    for experiments in pending_experiments(variants, seeds, params, report).values():
        for name, overrides in experiments:
            run_dvc("exp", "run", "--queue", "-n", name, *overrides, report=report)


def run_grid(variants: Sequence[Variant], seeds: Sequence[int], jobs: int, params: Path,
             report: Callable[[str], None] = print) -> None:
    """Queue and run the grid's missing experiments, ``jobs`` at a time, one experiment per seed first, so that
    the stages a seed's variants share are computed once and restored from DVC's run cache by the others."""
    from pipeline_lib.experiments.comparison import experiment_states

    for batch in batches_sharing_round0(pending_experiments(variants, seeds, params, report)):
        for name, overrides in batch:
            run_dvc("exp", "run", "--queue", "-n", name, *overrides, report=report)
        run_queued([name for name, _ in batch], min(jobs, len(batch)), lambda: experiment_states(COMMITS_SEARCHED),
                   report=report)
