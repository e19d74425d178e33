"""What tracking the dataset root costs `dvc status`: a Cityscapes-sized root (5,000 image + label pairs) as
a dependency of the prepare stage, hashed once, then checked with nothing changed.

    .venv/bin/python bench/bench_root_tracking.py [--pairs 5000] [--side 64]

Prints the seconds of the first `dvc status` (DVC hashes every file), of the no-op ones after it (DVC checks
each file's size and mtime against its state database), and of one after an edited label. Files are small
PNGs: the no-op cost is per file, not per byte; the first hashing of a real root reads all of its bytes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def dvc(project: Path, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--side", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = scratch / "cityscapes"
        rng = np.random.default_rng(0)
        for index in range(args.pairs):
            city = root / ("train" if index < 2975 else "val") / f"city{index % 18:02d}"
            city.mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 255, (args.side, 2 * args.side, 3), np.uint8)
            Image.fromarray(image).save(city / f"x_{index:06d}_leftImg8bit.png")
            Image.fromarray(image[..., 0] % 19).save(city / f"x_{index:06d}_gtFine_labelTrainIds.png")
        project = scratch / "project"
        project.mkdir()
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
        subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
        (project / "dvc.yaml").write_text(f"stages:\n  prepare:\n    cmd: echo prepared > out.txt\n"
                                          f"    deps:\n      - {root}\n    outs:\n      - out.txt\n")
        dvc(project, "repro")
        first = dvc(project, "status")  # the repro hashed the root; this status reads the state database
        noop = [dvc(project, "status") for _ in range(3)]
        label = next(root.rglob("*_gtFine_labelTrainIds.png"))
        Image.fromarray(np.zeros((args.side, 2 * args.side), np.uint8)).save(label)
        changed = dvc(project, "status")
        print(f"{2 * args.pairs} files ({args.pairs} pairs, {args.side}x{2 * args.side} PNGs)")
        print(f"dvc status after the repro that hashed them: {first:.2f} s")
        print(f"no-op dvc status: {min(noop):.2f} / {sorted(noop)[1]:.2f} / {max(noop):.2f} s (min / median / max)")
        print(f"dvc status after editing one label: {changed:.2f} s")


if __name__ == "__main__":
    main()
