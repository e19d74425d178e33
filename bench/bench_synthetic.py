"""Speed and class statistics of the synthetic street-scene generator.

    .venv/bin/python bench/bench_synthetic.py --images 2000 --size 128 256 --block 200 --sheet /tmp/synthetic.png

Prints milliseconds per image (best of several repeats: the machine may be shared), then per class
the target share, the generated share over all images, how much 200-image averages spread (the
tolerances of tests/data/test_synthetic.py are set from these), and the fraction of images containing the class.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_lib.data.classes import CITYSCAPES  # noqa: E402
from pipeline_lib.data.synthetic.classes import TARGET_SHARES  # noqa: E402
from pipeline_lib.data.synthetic.scene import generate_scene  # noqa: E402


def time_generation(size: tuple[int, int], images: int, repeats: int) -> float:
    generate_scene(0, 0, *size)  # warm-up (builds the noise texture)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(images):
            generate_scene(0, index, *size)
        best = min(best, (time.perf_counter() - start) / images)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="images for the statistics")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block", type=int, default=200, help="images per block for the spread of averages")
    parser.add_argument("--sheet", type=Path, help="also save the first 6 images | coloured labels here")
    args = parser.parse_args()
    size = tuple(args.size)

    for timing_size in ((128, 256), (256, 512), size):
        print(f"{timing_size[0]}x{timing_size[1]}: {time_generation(timing_size, 30, 3):.1f} ms/image (best of 3 x 30)")

    histograms = np.zeros((args.images, 256), np.int64)
    sheet = []
    palette = CITYSCAPES.palette()
    for index in range(args.images):
        image, label = generate_scene(args.seed, index, *size)
        histograms[index] = np.bincount(label.ravel(), minlength=256)
        if index < 6 and args.sheet:
            sheet.append(np.concatenate([image, palette[label]], axis=1))
    if args.sheet:
        from PIL import Image
        Image.fromarray(np.concatenate(sheet, axis=0)).save(args.sheet)

    classes = CITYSCAPES.num_classes
    shares = histograms[:, :classes].sum(0) / histograms[:, :classes].sum()
    blocks = [histograms[i:i + args.block, :classes].sum(0) for i in range(0, args.images - args.block + 1, args.block)]
    block_shares = np.stack([b / b.sum() for b in blocks]) if len(blocks) > 1 else None
    present = (histograms[:, :classes] > 0).mean(0)
    valid = histograms[:, :classes].sum(1) / histograms.sum(1)
    ignored = 1 - histograms[:, :classes].sum() / histograms.sum()
    print(f"\n{args.images} images of {size[0]}x{size[1]}, seed {args.seed}: ignore share {ignored:.4f}, "
          f"lowest valid share in an image {valid.min():.3f}")
    header = f"{'class':14s} {'target%':>8s} {'got%':>7s} {'ratio':>6s}"
    if block_shares is not None:
        header += f" {'sd' + str(args.block) + ' pp':>9s} {'rel':>5s}"
    print(header + f" {'in images':>9s}")
    for c, name in enumerate(CITYSCAPES.names):
        line = f"{name:14s} {100 * TARGET_SHARES[c]:8.2f} {100 * shares[c]:7.2f} {shares[c] / TARGET_SHARES[c]:6.2f}"
        if block_shares is not None:
            sd = block_shares[:, c].std(ddof=1)
            line += f" {100 * sd:9.3f} {sd / TARGET_SHARES[c]:5.2f}"
        print(line + f" {present[c]:9.2f}")


if __name__ == "__main__":
    main()
