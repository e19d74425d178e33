"""infer: the teacher's soft predictions (native-stride float16 logits) for the unlabelled and labelled splits."""

from __future__ import annotations

from pathlib import Path

import typer

from stages import OUTPUTS, PREPARED, own_arguments, run_standalone


def infer(
    round_name: str = typer.Option(..., "--round", help="The round whose pseudo labels these predictions feed "
                                   "(r1, r2…); its teacher's model makes them."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads rounds.<round>.teacher, inference.*, "
                                "distributed.processes)."),
    prepared: Path = PREPARED,
    outputs: Path = OUTPUTS,
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

    from pipeline_lib.distributed import run_in_processes
    from pipeline_lib.infer.round import infer_round

    def work(run) -> str:
        stores, temperature = infer_round(run, round_name, teacher, settings, shard_size, prepared, outputs)
        return (f"{round_name}: teacher {teacher}'s logits → {', '.join(map(str, stores))} "
                f"(fitted temperature T = {temperature:.4f} on the labelled split)")

    run_in_processes(distributed_processes(p), own_arguments("infer", infer, arguments), work, typer.echo)


if __name__ == "__main__":
    run_standalone(infer)
