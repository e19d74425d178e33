"""The synthetic dataset on disk: generation into a prepared directory, and the report of target vs
generated class shares. Its parameters are checked by ``pipeline_lib.settings.SyntheticSettings``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline_lib.atomic import write_json
from pipeline_lib.data.classes import CITYSCAPES
from pipeline_lib.data.prepared import Sample, write_prepared
from pipeline_lib.data.synthetic.classes import IGNORE, TARGET_SHARES
from pipeline_lib.data.synthetic.scene import generate_scene
from pipeline_lib.progress import track
from pipeline_lib.settings import SyntheticSettings


def prepare_synthetic(out_dir: Path, settings: SyntheticSettings, num_labeled: int) -> None:
    """Generate the dataset into ``out_dir`` (images/, labels/) and write its prepared-dataset files.

    Splits: ``labeled`` = the first ``num_labeled`` training images, ``unlabeled`` = the rest (listed with
    their labels, as ground truth for pseudo-label accuracy), ``val``. ``generated_distribution.json``
    compares the target shares with the generated ones. The caller makes ``out_dir`` atomic (it is normally a
    temporary directory).
    """
    seed, num_train_images, num_val_images = settings.seed, settings.num_train_images, settings.num_val_images
    height, width = settings.image_size
    out_dir = Path(out_dir)
    images, labels = out_dir / "images", out_dir / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    jobs = [(f"train_{i:05d}", i) for i in range(num_train_images)]
    # Validation images use indices after the training ones, so they never repeat a training scene.
    jobs += [(f"val_{i:05d}", num_train_images + i) for i in range(num_val_images)]
    counts = {"train": np.zeros(256, np.int64), "labeled": np.zeros(256, np.int64), "val": np.zeros(256, np.int64)}
    samples = []
    for position, (sample_id, index) in enumerate(track(jobs, desc="synthetic dataset",
                                                                       unit="img")):
        image, label = generate_scene(seed, index, height, width)
        Image.fromarray(image).save(images / f"{sample_id}.png")
        Image.fromarray(label).save(labels / f"{sample_id}.png")  # 2-D uint8 -> single-channel 'L'
        histogram = np.bincount(label.ravel(), minlength=256)
        if position < num_train_images:
            counts["train"] += histogram
            if position < num_labeled:
                counts["labeled"] += histogram
        else:
            counts["val"] += histogram
        samples.append(Sample(sample_id, images / f"{sample_id}.png", labels / f"{sample_id}.png"))
    splits = {"labeled": samples[:num_labeled], "unlabeled": samples[num_labeled:num_train_images],
              "val": samples[num_train_images:]}
    # The dataset root is the prepared directory itself; pass it relative so that dataset.json
    # stores "." and keeps working after the caller renames the temporary directory into place.
    write_prepared(out_dir, "synthetic", Path(os.path.relpath(out_dir)), CITYSCAPES, splits)
    write_json(out_dir / "generated_distribution.json", distribution_report(counts))


def distribution_report(counts: dict[str, np.ndarray]) -> dict:
    """Per class: the target share and the generated shares (of valid pixels) in each subset."""
    num_classes = CITYSCAPES.num_classes
    shares = {name: histogram[:num_classes] / max(int(histogram[:num_classes].sum()), 1)
              for name, histogram in counts.items()}
    return {
        "shares_of_valid_pixels": {
            class_name: {"target": round(float(TARGET_SHARES[c]), 6),
                         **{name: round(float(share[c]), 6) for name, share in shares.items()}}
            for c, class_name in enumerate(CITYSCAPES.names)},
        "ignored_share": {name: round(float(h[IGNORE] / max(int(h.sum()), 1)), 6) for name, h in counts.items()},
        "pixels": {name: int(h.sum()) for name, h in counts.items()},
    }
