"""confidence: the teacher's per-pixel confidences and their histogram, once per teacher, for every rule and α."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import own_arguments, run_standalone


def confidence(
    round_name: str = typer.Option(..., "--round", help="The round (r1, r2…) whose pseudo labels these confidences "
                                   "feed; its teacher's logits make them."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads rounds.<round>.teacher, "
                                "pseudo_label.temperature_scaling, distributed.processes)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
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

    from pipeline_lib.confidence.round import confidence_round
    from pipeline_lib.distributed import process_group, relaunch_under_torchrun

    if relaunch_under_torchrun(distributed_processes(p),
                               own_arguments("confidence", confidence, arguments)):
        return
    with process_group() as run:
        temperature = confidence_round(run, round_name, teacher, settings, prepared, outputs, report=typer.echo)
        if run.is_main:
            typer.echo(f"{round_name}: teacher {teacher}'s confidences (T = {temperature:.4g}, {run.device}) → "
                       f"{outputs / round_name / 'confidences.zarr'}")


if __name__ == "__main__":
    run_standalone(confidence)
