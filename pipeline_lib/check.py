"""The whole params.yaml, checked before DVC builds its graph (``dars check``; ``./run.sh pipeline`` runs it first).

Each stage checks only the keys it reads, when it runs; under ``dvc repro`` a missing or cyclic teacher, an
empty ``rounds`` or an empty file would surface first as DVC's own messages about paths and templates.
"""

from __future__ import annotations

import difflib

import numpy as np

from pipeline_lib.data.classes import known_class_set
from pipeline_lib.errors import UserError
from pipeline_lib.evaluation.metrics import tail_classes_from_shares
from pipeline_lib.models.build import ARCHITECTURES  # torch-free: the model modules load only on build
from pipeline_lib.params import Params
from pipeline_lib.settings import (
    BASELINE_ROUND,
    ConfidenceSettings,
    DataSettings,
    DistributedSettings,
    EvaluateSettings,
    InferenceSettings,
    ModelSettings,
    PseudoLabelSettings,
    TrainSettings,
    images_per_shard,
    round_schedule,
)

SECTIONS = ("seed", "data", "model", "train", "inference", "evaluate", "pseudo_label", "self_training", "rounds")


def check_params(params: Params) -> list[str]:
    """Check every key of every section the way the stages will read it; returns the rounds (r0 first)."""
    if not params.data:
        raise UserError(f"{params.source}: empty; it must define {', '.join(SECTIONS)}")
    missing = [name for name in SECTIONS if name not in params.data]
    if missing:
        raise UserError(f"{params.source}: missing section{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    rounds = params.raw("rounds")
    if not isinstance(rounds, dict) or not rounds:
        raise params.fail("rounds", "must define at least one self-training round, e.g. "
                                    "{r1: {teacher: r0, init: teacher, labeling_ratio: 0.2}}")
    schedule = round_schedule(params)
    data = DataSettings.from_params(params)
    model = ModelSettings.from_params(params)
    if model.arch not in ARCHITECTURES:
        raise params.fail("model.arch", f"must be one of {', '.join(ARCHITECTURES)}")
    distributed = DistributedSettings.from_params(params)
    for round_name in (BASELINE_ROUND, *schedule):
        TrainSettings.from_params(params, round_name).check_processes(distributed.processes)
    ConfidenceSettings.from_params(params)
    for round_name in schedule:
        PseudoLabelSettings.from_params(params, round_name)
    InferenceSettings.from_params(params)
    images_per_shard(params)
    evaluate = EvaluateSettings.from_params(params)
    classes = known_class_set(data.dataset)
    if classes is not None and evaluate.tail_classes is not None:
        # A misspelt name would otherwise stop the pipeline at evaluate_r0, after round 0 has trained.
        try:
            tail_classes_from_shares(np.zeros(classes.num_classes), None, evaluate.tail_classes, classes.names)
        except UserError as exc:
            raise params.fail("evaluate.tail_classes", f"names no {data.dataset} class ({exc})") from None
    params.raw("synthetic", None)  # the embedded dataset's section, read only when data.dataset is synthetic
    unread = params.unread_keys()
    if unread:  # every reader has run: a key none of them read is misspelt or stale, and would be ignored
        nearest = difflib.get_close_matches(unread[0], sorted(params.read), n=1, cutoff=0.6)
        raise UserError(f"{params.source}: unknown key '{unread[0]}'"
                        + (f"; did you mean '{nearest[0]}'?" if nearest else "") + " No stage reads it")
    return [BASELINE_ROUND, *schedule]
