"""Each pixel's confidence (max softmax probability, float16) and predicted class at label resolution,
from a teacher's native-stride logits: the one computation every pseudo-label rule runs on, done once per
teacher by the confidence stage.

The whole-image computation is upsample (bilinear, align_corners=False) → / T → max → exp(z − max) →
1 / sum → float16. At one torch thread on the CPU it runs by bands of label rows (half the CPU time, see
BAND_ROWS), upsampled separably (see _upsampled_band), bit-identical to the whole-image result. That
equality rests on torch kernel internals (torch 2.x on the CPU: the summation blocks of the class-dimension
sum, the small-output kernel switch of bilinear upsampling, plain-copy upsampling of equal sizes, the
rounding of its bilinear kernel); each is named where the code relies on it, and tests/pseudo_label/test_pseudo_label.py
compares banded and whole-image results bit for bit over sizes and scales, so a torch upgrade that breaks
it fails there, not silently.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from pipeline_lib.errors import UserError
from pipeline_lib.predict.upsample import checked_size, logits_tensor, upsample_logits


def validate_temperature(temperature: float) -> float:
    """A softmax temperature T, checked to be a positive finite number."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"temperature must be a positive number, got {temperature!r}")
    return value




# confidence_and_prediction works on bands of this many label rows (19 classes x 64 x 2048 float32 is
# 10 MB, inside a 32 MB L3 cache) instead of one (C, H, W) tensor (160 MB at Cityscapes size): the
# softmax steps then re-read cached memory, and no large buffer is page-faulted in for every image.
BAND_ROWS = 64
# torch's CPU sum over the class dimension treats the image's pixels, flattened, in blocks (of 64 on
# AVX-512) and the few left over at the very end in another summation order. Band boundaries at
# multiples of this many pixels (and a last band of at least this many) put every pixel in the same
# kind of block as in a whole-image sum, so the float sums — and thus the confidences — are
# bit-identical to the whole-image computation.
_SUM_ALIGN_PIXELS = 256
# torch's CPU bilinear upsampling switches to another kernel, which rounds differently, when the
# output's height + width is at most 128 (torch 2.x). Labels at least this wide are banded: a band's
# width pass (a few rows by the label's width) then runs the kernel a whole image runs; narrower images
# are upsampled whole.
_MIN_UPSAMPLED_EXTENT = 256


@dataclass(frozen=True)
class _RowBand:
    """Label rows [start, stop), whose bilinear neighbours are logit rows [input_start, input_stop)."""

    start: int
    stop: int
    input_start: int = 0
    input_stop: int = 0


def _power_of_two_factor(label_height: int, logit_height: int) -> int | None:
    """k where label_height = k * logit_height with k a power of two (1 included), else None."""
    if label_height % logit_height:
        return None
    factor = label_height // logit_height
    return factor if factor & (factor - 1) == 0 and label_height < 1 << 20 else None


def _row_bands(label_size: tuple[int, int], logit_height: int, band_rows: int,
               factor: int | None) -> list[_RowBand]:
    """Split the label rows into bands whose separate computation equals the whole-image one.

    With ``factor`` = k (label height = k * logit height, k a power of two) each band is upsampled on
    its own from the logit rows it needs: torch computes label row y from the source coordinate
    (y + 0.5) / k - 0.5, exact in float32 for such k, so a band meets the same neighbours and weights
    as the whole image. ``factor=None`` means the caller upsamples the whole image and the bands only
    slice it.
    """
    height, width = label_size
    # Band starts at multiples of ``unit`` rows: aligned for the sum, whole logit rows for the upsampling.
    unit = _SUM_ALIGN_PIXELS // math.gcd(_SUM_ALIGN_PIXELS, width)
    offset = 0
    if factor is not None:
        unit = math.lcm(unit, factor)
        # A band starting half a logit row past a logit row starts a run of k label rows between the
        # same two logit rows: a band is then whole runs, one broadcast op each (see _upsampled_band).
        if factor > 1 and (factor // 2 * width) % _SUM_ALIGN_PIXELS == 0:
            offset = factor // 2
    step = unit * max(1, band_rows // unit)
    starts = [0] + list(range(offset + step, height, step))
    if len(starts) > 1 and (height - starts[-1]) * width < _SUM_ALIGN_PIXELS:
        # The sum takes yet another path over a band of only a few pixels; a last band holding at
        # least one aligned block before the leftover pixels is summed as the whole image's end is.
        starts.pop()
    stops = starts[1:] + [height]
    if factor is None:
        return [_RowBand(start, stop) for start, stop in zip(starts, stops)]
    return [_RowBand(start, stop, *_source_rows(start, stop - 1, logit_height, factor))
            for start, stop in zip(starts, stops)]


def _source_row_and_weight(y: int, logit_height: int, factor: int) -> tuple[int, int, float]:
    """Label row y's two logit rows and the upper one's weight, as torch's bilinear kernel computes them
    (align_corners=False): source (y + 0.5) / k - 0.5 clamped at 0, lower row its floor (at most the last
    row), upper row the next one (the same at the last row), weight the fraction. Exact for k a power of
    two (dyadic fractions in a double equal those in torch's float32)."""
    source = max(0.0, (y + 0.5) / factor - 0.5)
    lower = min(int(source), logit_height - 1)
    return lower, lower + 1 if lower < logit_height - 1 else lower, min(max(source - lower, 0.0), 1.0)


def _source_rows(first: int, last: int, logit_height: int, factor: int) -> tuple[int, int]:
    """The logit rows [start, stop) that label rows first..last read."""
    return _source_row_and_weight(first, logit_height, factor)[0], \
        _source_row_and_weight(last, logit_height, factor)[1] + 1


@dataclass(frozen=True)
class _Run:
    """Label rows [start, start + runs * length): ``runs`` runs of ``length`` rows, run j reading logit rows
    lower + j and upper + j with the same per-row weights (upper_weights for the upper row)."""

    start: int
    length: int
    runs: int
    lower: int
    upper: int
    upper_weights: tuple[float, ...]


def _runs(band: _RowBand, logit_height: int, factor: int) -> list[_Run]:
    """The band's label rows grouped into runs between the same two logit rows, equal runs joined."""
    rows = [(y, *_source_row_and_weight(y, logit_height, factor)) for y in range(band.start, band.stop)]
    runs: list[_Run] = []
    for (lower, upper), group in itertools.groupby(rows, key=lambda row: row[1:3]):
        group = list(group)
        start, weights = group[0][0], tuple(row[3] for row in group)
        last = runs[-1] if runs else None
        if last is not None and last.upper_weights == weights and lower == last.lower + last.runs \
                and upper == last.upper + last.runs:  # the next run of the same shape: one op for both
            runs[-1] = _Run(last.start, last.length, last.runs + 1, last.lower, last.upper, weights)
        else:
            runs.append(_Run(start, len(group), 1, lower, upper, weights))
    return runs


def _upsampled_band(tensor: torch.Tensor, band: _RowBand, width: int, factor: int,
                    workspace: torch.Tensor) -> torch.Tensor:
    """Float32 (C, stop - start, W) rows of ``upsample_logits(tensor, (H, W))``, computed for this band
    only into the flat float32 ``workspace`` (reused by every band: no fresh buffer to page in).

    Separably, as torch's kernel computes each label pixel from its two rows' interpolations along the
    width: first torch's own kernel along the width over the band's logit rows (their height kept: a plain
    copy along it), then the two rows combined by hand as that kernel rounds, fma(lower, 1 - λ, upper · λ)
    (``addcmul`` reproduces it; tests compare with torch's whole-image upsampling bit for bit). Each run of
    label rows between the same two logit rows is one broadcast op, and the width interpolation is done
    once per logit row instead of once per label row: 2.3x less time than torch upsampling the band whole
    (measured at 1024x2048, one thread)."""
    channels, rows = tensor.shape[0], band.stop - band.start
    out = workspace[:channels * rows * width].view(channels, rows, width)
    if factor == 1 and tensor.shape[2] == width:  # no resizing at all
        return out.copy_(tensor[:, band.start:band.stop])
    source = tensor[None, :, band.input_start:band.input_stop].float()
    wide = torch.ops.aten.upsample_bilinear2d(source, [source.shape[2], width], False, None, None)[0]
    for run in _runs(band, tensor.shape[1], factor):
        local = run.start - band.start
        target = out[:, local:local + run.runs * run.length].view(channels, run.runs, run.length, width)
        lower = wide[:, run.lower - band.input_start:run.lower - band.input_start + run.runs, None]
        upper = wide[:, run.upper - band.input_start:run.upper - band.input_start + run.runs, None]
        upper_weight = torch.tensor(run.upper_weights, dtype=torch.float32).view(1, 1, -1, 1)
        torch.mul(upper, upper_weight, out=target)
        target.addcmul_(lower, 1 - upper_weight)
    return out


def _softmax_max_into(band: torch.Tensor, temperature: float, confidence: torch.Tensor,
                      prediction: torch.Tensor, few_ops: bool) -> None:
    """Write max softmax and argmax (uint8) of ``band`` (C, rows, W) float32, which is overwritten.

    ``few_ops`` takes torch's max(dim=0) for the argmax: one op, but slow on a CPU thread."""
    with torch.no_grad():
        if temperature != 1.0:
            band.div_(temperature)
        if few_ops:
            top, argmax = band.max(dim=0)
            prediction.copy_(argmax)
        else:
            top = band.amax(dim=0)
            # argmax with ties to the lowest class = how many leading classes lie strictly below the
            # max: three cheap passes per class, several times faster than max(dim=0) with indices.
            prediction.zero_()
            all_below = torch.ones_like(top, dtype=torch.bool)
            below = torch.empty_like(all_below)
            for c in range(band.shape[0] - 1):
                torch.lt(band[c], top, out=below)
                all_below.logical_and_(below)
                prediction.add_(all_below)
        # max softmax = exp(0) / sum_c exp(z_c - max), in place: no softmax tensor.
        band.sub_(top).exp_()
        confidence.copy_(band.sum(dim=0).reciprocal_())


def confidence_and_prediction(logits: np.ndarray | torch.Tensor, label_size: tuple[int, int], temperature: float = 1.0,
                              *, band_rows: int = BAND_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Max softmax probability (float16) and argmax class (uint8) at label resolution.

    ``logits`` is (C, h, w) at the model's native stride, any float dtype; it is bilinearly
    upsampled (align_corners=False) to ``label_size`` = (H, W), divided by ``temperature`` and
    softmaxed in float32. Ties in the argmax go to the lowest class index. Torch tensors are
    processed on their own device; the results are always numpy arrays.

    With torch at one thread (as the pseudo-label stage runs its workers) the work is done
    ``band_rows`` label rows at a time, a speed knob only: the results equal, bit for bit, the
    whole-image computation ``upsample_logits`` → ``/ temperature`` → max → exp(z − max) → 1 / sum →
    float16, which is what runs with more torch threads or on a GPU. NaN logits give NaN confidences,
    which the histogram refuses.
    """
    confidence, prediction = _max_softmax_and_argmax(logits, label_size, temperature, band_rows, torch.float16)
    return confidence.cpu().numpy(), prediction.cpu().numpy()


def _max_softmax_and_argmax(logits: np.ndarray | torch.Tensor, label_size: tuple[int, int], temperature: float,
                            band_rows: int, confidence_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`confidence_and_prediction` as tensors, the confidence in ``confidence_dtype`` (float32 lets
    tests see every bit of the float32 computation, which float16 rounding would mostly hide)."""
    temperature = validate_temperature(temperature)
    height, width = checked_size(label_size)
    if band_rows < 1:
        raise ValueError(f"band_rows must be >= 1, got {band_rows}")
    tensor = logits_tensor(logits)
    if not 1 <= tensor.shape[0] <= 255:
        raise ValueError(f"logits must have 1..255 classes (255 = ignore), got {tensor.shape[0]}")
    # Bands mean many small torch ops; with intra-op threads each one waits on the other threads, which
    # on busy cores costs a scheduler slice per op (measured: 10 s instead of 0.15 s per Cityscapes
    # image on a loaded 2-core machine). So bands only at one torch thread; otherwise the whole image.
    banded = tensor.device.type == "cpu" and torch.get_num_threads() == 1
    factor = _power_of_two_factor(height, tensor.shape[1]) if banded and width >= _MIN_UPSAMPLED_EXTENT else None
    confidence = torch.empty((height, width), dtype=confidence_dtype, device=tensor.device)
    prediction = torch.empty((height, width), dtype=torch.uint8, device=tensor.device)
    with torch.no_grad():
        if factor is None:
            # Not banded (several threads, a GPU), or a scale whose coordinates are not exact under a
            # shift of rows: upsample the whole image at once; at one thread still softmax it by bands.
            upsampled = upsample_logits(tensor, (height, width))
            bands = _row_bands((height, width), tensor.shape[1], band_rows, None) if banded else [_RowBand(0, height)]
            for band in bands:
                _softmax_max_into(upsampled[:, band.start:band.stop], temperature,
                                  confidence[band.start:band.stop], prediction[band.start:band.stop], not banded)
        else:
            bands = _row_bands((height, width), tensor.shape[1], band_rows, factor)
            workspace = torch.empty(tensor.shape[0] * max(b.stop - b.start for b in bands) * width)
            for band in bands:
                _softmax_max_into(_upsampled_band(tensor, band, width, factor, workspace), temperature,
                                  confidence[band.start:band.stop], prediction[band.start:band.stop], False)
    return confidence, prediction
