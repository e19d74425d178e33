"""infer: the teacher's soft predictions (native-stride float16 logits) for the unlabelled and labelled splits."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import own_arguments, run_standalone


def infer(
    round_name: str = typer.Option(..., "--round", help="The round whose pseudo labels these predictions feed "
                                   "(r1, r2…); its teacher's model makes them."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads rounds.<round>.teacher, inference.*, "
                                "distributed.processes)."),
    prepared: Path = typer.Option(Path("data/prepared"), help="Prepared-dataset directory."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories."),
) -> None:
    """Write outputs/<round>/labeled_logits.zarr (labelled split) and logits.zarr (unlabelled split, with the
    temperature fitted on the labelled one).

    With distributed.processes N > 1 it runs as N processes under torchrun, each predicting whole shards of
    images; the stores are the same whatever N (on CPU: given the same threads per process).
    """
    arguments = dict(locals())  # the options as given, for a relaunch under torchrun
    from pipeline_lib.params import Params
    from pipeline_lib.settings import InferenceSettings, distributed_processes, images_per_shard, round_teacher

    p = Params.load(params)
    teacher = round_teacher(p, round_name)
    settings, shard_size = InferenceSettings.from_params(p), images_per_shard(p)

    from pipeline_lib.distributed import process_group, relaunch_under_torchrun
    from pipeline_lib.infer.round import infer_round

    if relaunch_under_torchrun(distributed_processes(p), own_arguments("infer", infer, arguments)):
        return
    with process_group() as run:
        stores, temperature = infer_round(run, round_name, teacher, settings, shard_size, prepared, outputs)
        if run.is_main:
            typer.echo(f"{round_name}: teacher {teacher}'s logits → {', '.join(map(str, stores))} "
                       f"(fitted temperature T = {temperature:.4f} on the labelled split)")


if __name__ == "__main__":
    run_standalone(infer)
