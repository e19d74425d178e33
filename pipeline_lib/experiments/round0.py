"""Round 0 trained ahead in a clone of the repository that shares its DVC cache, so that the grid or the curve
here restores it from DVC's run cache instead of training it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from pipeline_lib.atomic import write_text
from pipeline_lib.check import check_params
from pipeline_lib.errors import UserError
from pipeline_lib.experiments.dvc_git import dvc_cache_dir, git, run_dvc, same_tree
from pipeline_lib.experiments.grid import seed_values, with_values
from pipeline_lib.layout import RoundPaths
from pipeline_lib.params import Params
from pipeline_lib.settings import BASELINE_ROUND, DataSettings

# The stages that make a round 0 (dvc.yaml's names), trained ahead in a clone by `dars ablation round0`.
ROUND0_STAGES = ("prepare", "train_r0", "evaluate_r0")


def round0_code(dvc_yaml: dict) -> list[str]:
    """The files and folders of code and data in the repository that the round-0 stages read (their ``deps``,
    without another stage's outputs and templated paths): a round 0 trained elsewhere is restored from DVC's run
    cache only where each of these is byte for byte the same."""
    stages = dvc_yaml.get("stages") or {}
    produced = {str(out if isinstance(out, str) else next(iter(out)))
                for stage in stages.values() for out in stage.get("outs") or []}
    return sorted({dep for name in ROUND0_STAGES for dep in (stages.get(name) or {}).get("deps") or []
                   if isinstance(dep, str) and "${" not in dep and dep not in produced})


def train_round0_in_clone(seed: int, clone: Path, iterations: int | None, params: Path,
                          report: Callable[[str], None] = print) -> dict:
    """Train round 0 of replicate ``seed`` (at ``iterations``, default the file's) with the settings of the
    parameter file ``params`` in ``clone``: made (a git clone of this repository's commit, sharing its DVC cache)
    if it does not exist, else resumed. Refuses what would train a round 0 that could not be restored here:
    uncommitted changes to the code round 0 runs, a relative ``data.root`` outside git, a clone whose code or
    settings differ. Returns round 0's summary metrics."""
    loaded = Params.load(params)
    check_params(loaded)
    data = DataSettings.from_params(loaded)
    values = seed_values(seed, data.dataset) | ({"train.iterations": iterations} if iterations else {})
    wanted = yaml.safe_dump(with_values(loaded, values), sort_keys=False)
    root = Path(str(data.root))
    if not root.is_absolute() and not git("ls-files", "--", str(root)).strip():
        raise UserError(f"{params}: data.root {str(root)!r} is not in git, so not in a clone of it; give it as an "
                        "absolute path")
    code = round0_code(yaml.safe_load(Path("dvc.yaml").read_text()))
    code += [] if root.is_absolute() else [str(root)]
    changed = git("status", "--porcelain", "--untracked-files=no", "--", *code).splitlines()
    if changed:
        raise UserError(f"uncommitted changes to what round 0 runs ({', '.join(line[3:] for line in changed)}): "
                        "the clone would train the committed code, whose round 0 this workspace would not "
                        "restore; commit them first")
    cache = dvc_cache_dir()
    if cache is None:
        raise UserError("no DVC project here: run `dars ablation round0` at the repository's root")
    if not clone.exists():
        git("clone", "-q", ".", str(clone))
        run_dvc("cache", "dir", "--local", str(cache), cwd=clone, report=report)
    elif not (clone / "dvc.yaml").is_file() or dvc_cache_dir(clone) != cache:
        raise UserError(f"{clone}: not a clone made by this command (no dvc.yaml, or another DVC cache than "
                        f"{cache}); name another --clone")
    else:
        different = [path for path in code if not same_tree(Path(path), clone / path)]
        if different:
            raise UserError(f"{clone}: other code than here ({', '.join(different)}), whose round 0 would not be "
                            "restored here; remove the clone (its training so far is lost) or name another")
        if (clone / "params.yaml").read_text() != wanted:
            raise UserError(f"{clone}: trains another round 0 (its params.yaml is not {params} with seed {seed}"
                            f"{f' and {iterations} iterations' if iterations else ''}); name another --clone")
    write_text(clone / "params.yaml", wanted)
    run_dvc("repro", ROUND0_STAGES[-1], cwd=clone, report=report)
    return json.loads(RoundPaths.of(clone / "outputs", BASELINE_ROUND).metrics.read_text())
