"""confidence: the teacher's per-pixel confidences and their histogram, once per teacher, for every rule and α."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import OUTPUTS, PREPARED, own_arguments, run_standalone


def confidence(
    round_name: str = typer.Option(..., "--round", help="The round (r1, r2…) whose pseudo labels these confidences "
                                   "feed; its teacher's logits make them."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads rounds.<round>.teacher, "
                                "pseudo_label.temperature_scaling, distributed.processes)."),
    prepared: Path = PREPARED,
    outputs: Path = OUTPUTS,
) -> None:
    """Write outputs/<round>/confidences.zarr: each unlabelled pixel's max softmax probability and predicted class,
    and their histogram, from outputs/<round>/logits.zarr.

    Runs on the GPU when there is one (DARS_DEVICE=cpu to keep it on the CPU). With distributed.processes N > 1
    it runs as N processes under torchrun, each on whole shards; the store is the same whatever N (on the CPU).
    """
    arguments = dict(locals())  # the options as given, for a relaunch under torchrun
    from pipeline_lib.params import Params
    from pipeline_lib.settings import ConfidenceSettings, distributed_processes, round_teacher

    p = Params.load(params)
    settings, teacher = ConfidenceSettings.from_params(p), round_teacher(p, round_name)

    from pipeline_lib.distributed import run_in_processes
    from pipeline_lib.confidence.round import confidence_round

    def work(run) -> str:
        temperature = confidence_round(run, round_name, teacher, settings, prepared, outputs, report=typer.echo)
        return (f"{round_name}: teacher {teacher}'s confidences (T = {temperature:.4g}, {run.device}) → "
                f"{outputs / round_name / 'confidences.zarr'}")

    run_in_processes(distributed_processes(p), own_arguments("confidence", confidence, arguments), work, typer.echo)


if __name__ == "__main__":
    run_standalone(confidence)
