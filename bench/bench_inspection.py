"""Time what `dars inspect` does per image, at Cityscapes size (1024x2048 labels, 19 classes, stride 8).

    .venv/bin/python bench/bench_inspection.py [--repeats 3]

Prints the median seconds of each step on one synthetic image: colouring the mask, the overlay, the
confidence map (upsample + softmax, then the colormap) and writing the five PNG panels.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.confidence.maps import confidence_and_prediction
from pipeline_lib.data.classes import CITYSCAPES  # noqa: E402
from pipeline_lib.drawing.panels import blend_overlay, colorize_labels, confidence_to_rgb  # noqa: E402
from pipeline_lib.inspection.round_report import PNG_COMPRESS_LEVEL  # noqa: E402


def median_seconds(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    size = (1024, 2048)
    palette = np.asarray(CITYSCAPES.colors, np.uint8)
    # Blocky labels and a smooth image compress like real ones; pure noise would be the worst case.
    label = np.kron(rng.integers(0, 19, size=(64, 128)), np.ones((16, 16), np.int64)).astype(np.uint8)
    label[rng.random(size) < 0.3] = 255
    image = np.clip(palette[np.where(label == 255, 0, label)].astype(np.int16)
                    + rng.integers(-10, 11, size=(*size, 3)), 0, 255).astype(np.uint8)
    logits = rng.normal(0, 3, size=(19, size[0] // 8, size[1] // 8)).astype(np.float16)
    confidence = confidence_and_prediction(logits, size)[0]
    panels = [image, colorize_labels(label, palette), blend_overlay(image, label, palette),
              confidence_to_rgb(confidence), colorize_labels(label, palette)]

    with tempfile.TemporaryDirectory() as folder:
        def write_pngs() -> None:
            for k, panel in enumerate(panels):
                Image.fromarray(panel).save(Path(folder) / f"{k}.png", compress_level=PNG_COMPRESS_LEVEL)

        steps = {
            "colour mask": lambda: colorize_labels(label, palette),
            "overlay": lambda: blend_overlay(image, label, palette),
            "confidence (upsample+softmax)": lambda: confidence_and_prediction(logits, size),
            "confidence colormap": lambda: confidence_to_rgb(confidence),
            "write 5 PNG panels": write_pngs,
        }
        total = 0.0
        for name, step in steps.items():
            seconds = median_seconds(step, args.repeats)
            total += seconds
            print(f"{name:32s} {seconds:7.3f} s")
    print(f"{'per image, all steps':32s} {total:7.3f} s")


if __name__ == "__main__":
    main()
