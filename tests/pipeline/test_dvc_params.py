"""dvc.yaml lists, for every stage, exactly the params keys its command reads: the params counterpart of
test_dvc_deps.py.

A key read but not listed is a caching hole: changing it would not rerun the stage. A key listed but read by
nothing reruns a stage for a change that cannot touch it. What a stage reads is measured, not kept by hand:
the stage command runs its own parsing on each shipped parameter file (params.yaml and configs/*), with the
library call it then makes replaced by a stop, and ``Params`` records every key looked up. Keys read only
under some settings (the sliding-window crop falling back to ``train.crop_size``) count when any file reads
them.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml

from pipeline_lib.params import Params
from pipeline_lib.settings import round_schedule
from pipeline_project import REPO

# dvc.yaml stage -> (stage module and command, the library call that follows the parsing)
STAGES = {
    "prepare": ("stages.prepare", "prepare", "pipeline_lib.data.prepare", "prepare_dataset"),
    "train_r0": ("stages.train", "train", "pipeline_lib.train.round", "train_round"),
    "evaluate_r0": ("stages.evaluate", "evaluate", "pipeline_lib.evaluation.round", "evaluate_round"),
    "infer": ("stages.infer", "infer", "pipeline_lib.infer.round", "infer_round"),
    "confidence": ("stages.confidence", "confidence", "pipeline_lib.confidence.round", "confidence_round"),
    "pseudo_label": ("stages.pseudo_label", "pseudo_label", "pipeline_lib.pseudo_label.round", "pseudo_label_round"),
    "train": ("stages.train", "train", "pipeline_lib.train.round", "train_round"),
    "evaluate": ("stages.evaluate", "evaluate", "pipeline_lib.evaluation.round", "evaluate_round"),
}
PARAM_FILES = [REPO / "params.yaml", *sorted((REPO / "configs").glob("*.yaml"))]
# Settings no shipped file has, whose reads differ: (name, change to params.yaml's data).
VARIANTS = {"sliding-without-crop": lambda data: data["inference"].update(mode="sliding", crop_size=None)}


class Parsed(Exception):
    """Raised in place of the stage's library call: the parsing is done."""


def listed_params(stage: str, round_name: str) -> list[str]:
    entry = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    params = (entry.get("do", entry)).get("params", [])
    return [str(key).replace("${key}", round_name) for key in params]


def keys_read(stage: str, path: Path, round_name: str, tmp_path: Path, monkeypatch,
              change=None) -> tuple[set[str], dict]:
    """The dotted keys the stage's command looks up in the parameter file ``path`` (``change``d), and its data."""
    data = yaml.safe_load(path.read_text())
    if change is not None:
        change(data)
    data["data"]["root"] = str(tmp_path)  # the configs name roots on other machines; any directory will do
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    loaded: list[Params] = []
    original = Params.load.__func__

    def load(cls, source="params.yaml"):
        loaded.append(original(cls, source))
        return loaded[-1]

    def stop(*args, **kwargs):
        raise Parsed

    monkeypatch.setattr(Params, "load", classmethod(load))
    module, command, library, call = STAGES[stage]
    monkeypatch.setattr(importlib.import_module(library), call, stop)
    function = getattr(importlib.import_module(module), command)
    arguments = {name: parameter.default.default for name, parameter in inspect.signature(function).parameters.items()}
    arguments |= {"params": tmp_path / "params.yaml"}
    if stage != "prepare":
        arguments |= {"round_name": round_name, "prepared": tmp_path, "outputs": tmp_path}
    with pytest.raises(Parsed):
        function(**arguments)
    assert len(loaded) == 1
    return loaded[0].read, data


def present(data: dict, key: str) -> bool:
    node = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def covers(listed: str, key: str) -> bool:
    return key == listed or key.startswith(listed + ".")


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_lists_exactly_the_params_it_reads(stage, tmp_path, monkeypatch):
    read_by_entry: dict[str, set[str]] = {}
    cases = [(path, path.stem, None) for path in PARAM_FILES]
    cases += [(REPO / "params.yaml", name, change) for name, change in VARIANTS.items()]
    for path, name, change in cases:
        schedule = list(round_schedule(Params.load(path)))
        rounds = ["r0"] if stage in ("prepare", "train_r0", "evaluate_r0") else schedule
        for round_name in rounds:
            folder = tmp_path / f"{name}-{round_name}"
            folder.mkdir()
            with monkeypatch.context() as patch:
                read, data = keys_read(stage, path, round_name, folder, patch, change)
            listed = listed_params(stage, round_name)
            # Keys absent from the file (an optional key's default, a replaced key checked for) are not DVC's.
            unlisted = sorted(key for key in read if present(data, key)
                              and not any(covers(entry, key) for entry in listed))
            assert not unlisted, f"{name}: dvc.yaml stage {stage!r} ({round_name}) reads but does not list " \
                                 f"{unlisted}"
            for entry in listed:
                generic = entry.replace(round_name, "${key}") if entry.startswith("rounds.") else entry
                read_by_entry.setdefault(generic, set()).update(
                    key for key in read if covers(entry, key) or covers(key, entry))
    stale = sorted(entry for entry, keys in read_by_entry.items() if not keys)
    assert not stale, f"dvc.yaml stage {stage!r} lists params that no shipped parameter file makes it read: {stale}"


def test_the_check_stage_tracks_the_whole_file_and_runs_before_every_other_stage():
    """A bad value must stop `dvc repro` / `dvc exp run` before DVC deletes any stage's outputs: the check stage
    reads every key (`dars check` refuses a key it did not read), so it tracks the whole file, and every other
    stage depends on its output, through prepare's output."""
    declared = {name: stage.get("do", stage) for name, stage in
                yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()}
    assert declared["check"]["params"] == [{"params.yaml": None}]
    [check_output] = [next(iter(out)) for out in declared["check"]["outs"]]
    [prepared] = declared["prepare"]["outs"]
    assert check_output in declared["prepare"]["deps"]
    assert all(prepared in stage["deps"] for name, stage in declared.items() if name not in ("check", "prepare"))
