"""predict: segment new images with a trained model — a label PNG and a colour overlay per image.

Not a pipeline stage (it writes nothing DVC tracks): it reads any round's model or any checkpoint, and any images.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline_lib.errors import UserError
from stages import run_standalone


def predict(
    images: Path = typer.Argument(..., help="A folder of images (.png .jpg .jpeg .bmp .tif .tiff, at any depth; "
                                  "hidden ones and any under --out left out), one image, or a list file: one image "
                                  "path a line (spaces allowed), relative to the list's folder (a second field "
                                  "after a tab or a space, e.g. a label, is ignored)."),
    out: Path = typer.Option(..., "--out", help="Output folder. It mirrors the images' paths: relative to the "
                             "folder, for a list relative to the deepest folder holding every listed image."),
    round_name: str | None = typer.Option(None, "--round", help="Segment with outputs/<round>/model.pt (r0, r1…)."),
    model: Path | None = typer.Option(None, "--model", help="Segment with this checkpoint instead (any DARS "
                                      "model.pt)."),
    ids: str = typer.Option("train", "--ids", help="What <stem>.png holds. train: the train ids 0..C-1. dataset: "
                            "the dataset's own ids: the Cityscapes labelIds its evaluation server expects, for a "
                            "model of the 19 Cityscapes classes (Cityscapes or synthetic); for any other dataset "
                            "(VOC, folder) the train ids, which are what its masks hold."),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Also write <stem>_overlay.png, the image "
                                 "blended with its class colours."),
    prepared: Path | None = typer.Option(None, help="A prepared dataset whose dataset.json colours the classes (its "
                                         "classes must be the model's). Default: the colours of the known class set "
                                         "with the checkpoint's class names (Cityscapes, VOC), else the VOC "
                                         "palette, the folder datasets' default."),
    skip_unreadable: bool = typer.Option(False, "--skip-unreadable", help="On an unreadable image print a "
                                         "warning and go on; the summary counts the skipped ones and the exit "
                                         "status is 0 unless every image was unreadable. Default: stop with an "
                                         "error naming it."),
    mode: str | None = typer.Option(None, help="Inference mode, whole or sliding (default: inference.mode)."),
    crop_size: int | None = typer.Option(None, min=1, help="Sliding-window crop (default: inference.crop_size, "
                                         "else train.crop_size)."),
    stride: int | None = typer.Option(None, min=1, help="Sliding-window step (default: inference.stride, else "
                                      "2/3 of the crop)."),
    flip: bool | None = typer.Option(None, "--flip/--no-flip", help="Average with the prediction of the mirrored "
                                     "image (default: inference.flip)."),
    params: Path = typer.Option(Path("params.yaml"), help="Parameter file (reads inference.*, and train.crop_size "
                                "when a sliding crop is unset)."),
    outputs: Path = typer.Option(Path("outputs"), help="Root of the per-round output directories (for --round)."),
) -> None:
    """Write <out>/…/<stem>.png for every image: single-channel 8-bit class ids at the image's size (every pixel
    its most likely class, so never 255), and <stem>_overlay.png."""
    if (round_name is None) == (model is None):
        raise UserError("give either --round (its outputs/<round>/model.pt) or --model PATH")
    from pipeline_lib.layout import RoundPaths
    from pipeline_lib.params import Params
    from pipeline_lib.settings import InferenceSettings

    p = Params.load(params)
    overrides = {key: value for key, value in (("mode", mode), ("crop_size", crop_size), ("stride", stride),
                                               ("flip", flip)) if value is not None}
    if overrides:  # through from_params: checked like the file's values, and a sliding crop falls back alike
        p = Params({**p.data, "inference": {**(p.raw("inference", None) or {}), **overrides}},
                   f"{params} with the command-line options")
    inference = InferenceSettings.from_params(p)
    model_path = model if model is not None else RoundPaths.of(outputs, round_name).model

    from pipeline_lib.predict.segment import segment_images

    result = segment_images(images, model_path, out, inference, ids, overlay, prepared, skip_unreadable)
    for message in result.skipped:
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    skipped = f" (skipped {len(result.skipped)} unreadable)" if result.skipped else ""
    typer.echo(f"{model_path}: {result.written} images segmented → {out}{skipped}")


if __name__ == "__main__":
    run_standalone(predict)
