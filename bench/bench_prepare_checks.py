"""What prepare's file checks cost at Cityscapes scale: every image opened for its header, every mask decoded.

prepare (``prepared.check_files``) opens each image of every split it writes (header only: readable, displayed
size) and decodes each mask (values against the classes, size against the image). This writes ``--files``
Cityscapes-sized pairs (2048x1024 RGB PNG, single-channel mask PNG of blocky class ids) into a temporary folder,
times both reads per file (median over the files, after one warm-up), and prints the whole check for Cityscapes'
prepared splits: 3,475 images and 3,475 masks (train 2,975 + val 500; every train image has its mask).

    python -m bench.bench_prepare_checks --files 40
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.bench_training_loop import cpu_name
from pipeline_lib.data.classes import CITYSCAPES
from pipeline_lib.data.image_files import image_size
from pipeline_lib.data.prepared import DatasetSpec, load_label

CITYSCAPES_FILES = 3475  # train 2,975 + val 500, each an image and a mask


def write_pairs(folder: Path, count: int) -> list[tuple[Path, Path]]:
    rng = np.random.default_rng(0)
    pairs = []
    for index in range(count):
        grid = rng.integers(0, 19, size=(1024 // 32, 2048 // 32)).astype(np.uint8)
        label = np.kron(grid, np.ones((32, 32), np.uint8))
        image = (CITYSCAPES.palette()[label].astype(np.int16) + rng.integers(-20, 21, (1024, 2048, 3)))
        pair = folder / f"{index:04d}_leftImg8bit.png", folder / f"{index:04d}_gtFine_labelTrainIds.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(pair[0])
        Image.fromarray(label).save(pair[1])
        pairs.append(pair)
    return pairs


def per_file_seconds(read, paths: list[Path]) -> float:
    read(paths[0])  # warm-up: imports, caches
    times = []
    for path in paths:
        start = time.perf_counter()
        read(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40, help="Cityscapes-sized image/mask pairs to time")
    args = parser.parse_args()
    spec = DatasetSpec("cityscapes", Path("."), CITYSCAPES, None)
    with tempfile.TemporaryDirectory() as folder:
        pairs = write_pairs(Path(folder), args.files)
        header = per_file_seconds(image_size, [image for image, _ in pairs])
        mask = per_file_seconds(lambda path: load_label(path, spec, (1024, 2048)), [label for _, label in pairs])
    print(f"{cpu_name()}; {args.files} pairs of 2048x1024, median per file")
    print(f"image header  {1000 * header:8.2f} ms")
    print(f"mask decode   {1000 * mask:8.2f} ms")
    total = CITYSCAPES_FILES * (header + mask)
    print(f"Cityscapes ({CITYSCAPES_FILES} images + {CITYSCAPES_FILES} masks): {total:.0f} s "
          f"({CITYSCAPES_FILES * header:.1f} s headers, {CITYSCAPES_FILES * mask:.0f} s masks)")


if __name__ == "__main__":
    main()
