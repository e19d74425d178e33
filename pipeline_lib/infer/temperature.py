"""Temperature scaling: the single T > 0 that makes softmax(logits / T) best calibrated (lowest NLL).

The negative log-likelihood as a function of β = 1/T, mean(logsumexp(β·z) − β·z_y), is convex, its
derivative mean(E_softmax(β·z)[z] − z_y) increases with β and its second derivative is the mean
softmax variance of z. So a Newton iteration on β, safeguarded by bisection on the sign of the
derivative, finds the optimum in a handful of deterministic passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline_lib.data.classes import IGNORE_INDEX
from pipeline_lib.errors import UserError
from pipeline_lib.predict.upsample import upsample_logits

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
_CHUNK_PIXELS = 1 << 16  # rows evaluated at a time, in float64, to bound temporaries
_MAX_ITERATIONS = 100


def sample_valid_pixels(logits: Sequence[np.ndarray], labels: Sequence[np.ndarray], max_pixels: int,
                        seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, C) float32 upsampled logits and (M,) int64 labels of at most ``max_pixels`` valid pixels.

    Each image contributes in proportion to its valid pixels, drawn without replacement by a
    generator seeded with (seed, image_index), so the sample is reproducible. ``labels`` (and
    ``logits``) may be lazy sequences: labels are read twice (to count, then to sample) rather than
    all held in memory at once.
    """
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} logits for {len(labels)} labels")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    valid_counts = []
    for index in range(len(labels)):
        label = np.asarray(labels[index])
        if label.ndim != 2:
            raise ValueError(f"label {index} must be (H, W), got shape {label.shape}")
        valid_counts.append(int(np.count_nonzero(label != IGNORE_INDEX)))
    total_valid = sum(valid_counts)
    if total_valid == 0:
        raise UserError("temperature fitting needs labelled pixels, but every label pixel is 255 (ignore)")

    sampled_logits, sampled_labels = [], []
    for index, valid in enumerate(valid_counts):
        quota = valid if total_valid <= max_pixels else (max_pixels * valid) // total_valid
        if quota == 0:
            continue
        label = np.asarray(labels[index])
        upsampled = upsample_logits(logits[index], label.shape)
        num_classes = upsampled.shape[0]
        flat_label = label.reshape(-1).astype(np.int64)
        positions = np.flatnonzero(flat_label != IGNORE_INDEX)
        if int(flat_label[positions].max()) >= num_classes:
            raise ValueError(f"label {index} has value {int(flat_label[positions].max())} but the logits "
                             f"have {num_classes} classes")
        if quota < positions.size:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), index])))
            positions = positions[np.sort(rng.choice(positions.size, size=quota, replace=False))]
        index_tensor = torch.from_numpy(positions).to(upsampled.device)
        sampled_logits.append(upsampled.reshape(num_classes, -1)[:, index_tensor].T.contiguous().cpu())
        sampled_labels.append(torch.from_numpy(flat_label[positions]))
    return torch.cat(sampled_logits), torch.cat(sampled_labels)


def nll_derivatives(logits: torch.Tensor, labels: torch.Tensor, inverse_temperature: float) -> tuple[float, float]:
    """First and second derivative of the mean NLL with respect to β = 1/T.

    Per-pixel terms are computed in float32 (several times faster than float64 here) and summed
    in float64, which keeps the totals accurate to ~1e-9 relative.
    """
    gradient = 0.0
    curvature = 0.0
    with torch.no_grad():
        for start in range(0, logits.shape[0], _CHUNK_PIXELS):
            z = logits[start:start + _CHUNK_PIXELS]
            y = labels[start:start + _CHUNK_PIXELS]
            probabilities = torch.softmax(z * inverse_temperature, dim=1)
            expected = (probabilities * z).sum(dim=1)
            gradient += float((expected - z.gather(1, y[:, None])[:, 0]).sum(dtype=torch.float64))
            centred = z - expected[:, None]
            curvature += float((probabilities * centred * centred).sum(dim=1).sum(dtype=torch.float64))
    count = logits.shape[0]
    return gradient / count, curvature / count


def minimise_nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The β = 1/T in [1/MAX_TEMPERATURE, 1/MIN_TEMPERATURE] minimising the mean NLL.

    Newton steps from β = 1. A step that leaves the bracket known to hold the minimum first checks
    the bracket's end (the optimum may lie beyond the clip range), then falls back to bisection.
    """
    low, high = 1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE
    low_checked = high_checked = False
    beta = 1.0
    for _ in range(_MAX_ITERATIONS):
        gradient, curvature = nll_derivatives(logits, labels, beta)
        if gradient == 0:
            return beta
        if gradient > 0:
            high, high_checked = beta, True
        else:
            low, low_checked = beta, True
        candidate = beta - gradient / curvature if curvature > 0 else (low if gradient > 0 else high)
        if candidate <= low and not low_checked:
            if nll_derivatives(logits, labels, low)[0] >= 0:
                return low
            low_checked = True
        elif candidate >= high and not high_checked:
            if nll_derivatives(logits, labels, high)[0] <= 0:
                return high
            high_checked = True
        if not low < candidate < high:
            candidate = 0.5 * (low + high)
        if abs(candidate - beta) <= 1e-9 * beta:
            return candidate
        beta = candidate
    return beta


def fit_temperature(logits: Sequence[np.ndarray], labels: Sequence[np.ndarray], max_pixels: int = 2_000_000,
                    seed: int = 0) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) on labelled pixels.

    Fit it on images the model was not trained on where possible: on its own training images a
    model is over-confident by less than on unseen ones, so T comes out too low.

    ``logits`` are per image (C, h, w) at the model's native stride, upsampled to their label's
    (H, W) like pseudo-labelling does; ``labels`` are (H, W) with 255 = ignore. At most
    ``max_pixels`` valid pixels are used (a seeded subsample). T is clipped to
    [MIN_TEMPERATURE, MAX_TEMPERATURE] and rounded to 6 significant digits, so that float noise
    from a different thread count cannot change the value a later stage depends on.
    """
    sample, targets = sample_valid_pixels(logits, labels, max_pixels, seed)
    temperature = 1.0 / minimise_nll(sample, targets)
    return float(f"{min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE):.6g}")
