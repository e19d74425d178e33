"""The training losses: per-source means (the authors'), the mixed-batch pixel mean, and their split over ranks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from pipeline_lib.train.loop import IterationBatches
from pipeline_lib.train.loss import PerSourceForward, per_source_loss, segmentation_loss, source_counts

IGNORED = 255


def two_sources():
    """Logits (0, ln 3) everywhere: p(class 1) = 3/4, so a pixel of class 0 costs ln 4 and one of class 1 ln 4/3.
    Source A: one image, one valid pixel of class 0. Source B: one image, two valid pixels of class 1."""
    logits = torch.zeros(2, 2, 1, 2)
    logits[:, 1] = math.log(3)
    targets = torch.tensor([[[0, IGNORED]], [[1, 1]]])
    return {"out": logits}, targets


def test_per_source_loss_is_the_sum_of_each_sources_mean():
    outputs, targets = two_sources()
    parts = [{"out": outputs["out"][:1]}, {"out": outputs["out"][1:]}]
    loss = per_source_loss(parts, targets, [1, 1], valid_pixels=[1.0, 2.0], aux_weight=0.4)
    assert loss.item() == pytest.approx(math.log(4) + math.log(4 / 3))
    # The pixel mean over the mixed batch weighs the pseudo source by its share of valid pixels instead.
    mean = segmentation_loss(outputs, targets, aux_weight=0.4)
    assert mean.item() == pytest.approx((math.log(4) + 2 * math.log(4 / 3)) / 3)


def test_aux_adds_its_weight_per_source_and_an_all_ignored_source_adds_nothing():
    outputs, targets = two_sources()
    parts = [{"out": outputs["out"][:1], "aux": outputs["out"][:1]}, {"out": outputs["out"][1:]}]
    loss = per_source_loss(parts, targets, [1, 1], valid_pixels=[1.0, 2.0], aux_weight=0.4)
    assert loss.item() == pytest.approx(1.4 * math.log(4) + math.log(4 / 3))
    targets[1] = IGNORED
    loss = per_source_loss([{"out": outputs["out"][:1]}, {"out": outputs["out"][1:]}], targets, [1, 1],
                           valid_pixels=[1.0, 0.0], aux_weight=0.4)
    assert loss.item() == pytest.approx(math.log(4))


def test_rank_shares_average_to_the_whole_batch_loss():
    """DDP averages gradients over ranks: the ranks' losses, each normalised by (valid / world size), average
    to the single-process loss, so the gradient is exactly the whole batch's."""
    torch.manual_seed(0)
    per_batch, world = [4, 2], 2
    logits = torch.randn(6, 3, 4, 4)
    targets = torch.randint(0, 3, (6, 8, 8))
    targets[targets == 2] = IGNORED
    whole_counts = per_batch
    valid = [float((part != IGNORED).sum()) for part in targets.split(whole_counts)]
    whole = per_source_loss([{"out": p} for p in logits.split(whole_counts)], targets, whole_counts, valid, 0.0)
    ranks = []
    for rank in range(world):
        counts = source_counts(per_batch, rank, world)
        rows = list(range(6))[rank::world]
        share = per_source_loss([{"out": p} for p in logits[rows].split(counts)], targets[rows], counts, valid,
                                0.0, world)
        ranks.append(share)
    assert (sum(ranks) / world).item() == pytest.approx(whole.item(), rel=1e-6)


@given(per_batch=st.lists(st.integers(0, 9), min_size=1, max_size=3), world=st.integers(1, 4),
       seed=st.integers(0, 99))
def test_source_counts_are_those_of_the_ranks_keys(per_batch, world, seed):
    keys = next(iter(IterationBatches([10] * len(per_batch), per_batch, seed, 0, 1)))
    for rank in range(world):
        share = keys[rank::world]
        assert source_counts(per_batch, rank, world) == [sum(1 for k in share if k[0] == source)
                                                         for source in range(len(per_batch))]


def test_per_source_forward_gives_each_source_its_own_batchnorm_batch():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    images = torch.cat([torch.randn(2, 3, 5, 5), 10 + torch.randn(3, 3, 5, 5)])
    first, second = PerSourceForward(model)(images, [2, 3])
    torch.testing.assert_close(first, model(images[:2]))
    torch.testing.assert_close(second, model(images[2:]))
    assert not torch.allclose(torch.cat([first, second]), model(images))  # one batch of both would differ
