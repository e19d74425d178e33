"""Temperature scaling recovers the temperature that generated the labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline_lib.errors import UserError
from pipeline_lib.infer.temperature import MAX_TEMPERATURE, MIN_TEMPERATURE, fit_temperature, sample_valid_pixels

NUM_CLASSES = 5
NATIVE = (16, 16)
LABEL_SIZE = (64, 64)


def calibrated_data(num_images: int = 8, seed: int = 0, ignore_fraction: float = 0.1
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """True logits z at native stride, and labels drawn from softmax(upsampled z) at label size."""
    generator = torch.Generator().manual_seed(seed)
    logits, labels = [], []
    for _ in range(num_images):
        z = torch.randn(NUM_CLASSES, *NATIVE, generator=generator) * 2.0
        up = F.interpolate(z[None], size=LABEL_SIZE, mode="bilinear", align_corners=False)[0]
        probabilities = torch.softmax(up, dim=0).permute(1, 2, 0).reshape(-1, NUM_CLASSES)
        label = torch.multinomial(probabilities, 1, generator=generator)[:, 0].reshape(LABEL_SIZE).numpy()
        label = label.astype(np.uint8)
        label[torch.rand(LABEL_SIZE, generator=generator).numpy() < ignore_fraction] = 255
        logits.append(z.numpy())
        labels.append(label)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [3.0, 0.5])
def test_fit_recovers_a_known_temperature(true_temperature):
    logits, labels = calibrated_data()
    # Logits scaled by T are calibrated again once divided by T.
    fitted = fit_temperature([z * true_temperature for z in logits], labels)
    assert fitted == pytest.approx(true_temperature, rel=0.06)


def test_calibrated_logits_give_temperature_near_one():
    logits, labels = calibrated_data(seed=1)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.06)


def test_fit_is_deterministic_and_the_subsample_is_seeded():
    logits, labels = calibrated_data(num_images=4)
    scaled = [z * 2.0 for z in logits]
    first = fit_temperature(scaled, labels, max_pixels=3000, seed=5)
    assert first == fit_temperature(scaled, labels, max_pixels=3000, seed=5)
    assert first != fit_temperature(scaled, labels, max_pixels=3000, seed=6)
    assert first == pytest.approx(2.0, rel=0.2)


def test_subsample_respects_max_pixels_and_skips_ignored_pixels():
    logits, labels = calibrated_data(num_images=3, ignore_fraction=0.5)
    sample, targets = sample_valid_pixels(logits, labels, max_pixels=1000, seed=0)
    assert 1000 - 3 <= sample.shape[0] <= 1000  # per-image quotas are floored
    assert sample.shape == (targets.shape[0], NUM_CLASSES)
    assert int(targets.max()) < NUM_CLASSES  # 255 never sampled
    everything, all_targets = sample_valid_pixels(logits, labels, max_pixels=10**9, seed=0)
    assert everything.shape[0] == sum(int(np.count_nonzero(label != 255)) for label in labels)
    # Without subsampling the rows are the upsampled logits of the valid pixels, in raster order.
    first = F.interpolate(torch.from_numpy(logits[0])[None], size=LABEL_SIZE, mode="bilinear",
                          align_corners=False)[0].reshape(NUM_CLASSES, -1)
    valid = np.flatnonzero(labels[0].ravel() != 255)
    torch.testing.assert_close(everything[: valid.size], first[:, valid].T)


def test_fit_is_clipped_to_the_allowed_range():
    logits, labels = calibrated_data(num_images=2)
    # Labels unrelated to huge logits: the best temperature is beyond the upper clip.
    shuffled = [np.roll(label, 17, axis=1) for label in labels]
    assert fit_temperature([z * 50 for z in logits], shuffled) == MAX_TEMPERATURE
    # Labels that always match the argmax: sharper is always better, down to the lower clip.
    argmax_labels = [F.interpolate(torch.from_numpy(z)[None], size=LABEL_SIZE, mode="bilinear",
                                   align_corners=False)[0].argmax(0).numpy().astype(np.uint8) for z in logits]
    assert fit_temperature(logits, argmax_labels) == MIN_TEMPERATURE


def test_fit_refuses_labels_without_valid_pixels_and_mismatched_inputs():
    logits, labels = calibrated_data(num_images=2)
    with pytest.raises(UserError, match="labelled pixels"):
        fit_temperature(logits, [np.full(LABEL_SIZE, 255, np.uint8) for _ in labels])
    with pytest.raises(ValueError):
        fit_temperature(logits, labels[:1])
    bad = labels[0].copy()
    bad[0, 0] = NUM_CLASSES
    with pytest.raises(ValueError, match="classes"):
        fit_temperature(logits[:1], [bad])


class LazyLabels:
    """A sequence that builds each label on access, like labels read from disk one at a time."""

    def __init__(self, labels: list[np.ndarray]) -> None:
        self.labels = labels
        self.reads = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> np.ndarray:
        self.reads += 1
        return self.labels[index].copy()


def test_lazy_label_sequences_give_the_same_fit():
    logits, labels = calibrated_data(num_images=3)
    lazy = LazyLabels(labels)
    assert fit_temperature(logits, lazy, max_pixels=5000) == fit_temperature(logits, labels, max_pixels=5000)
    assert lazy.reads == 2 * len(labels)  # counted once, sampled once
