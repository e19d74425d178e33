from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_lib.data.prepared import Sample
from pipeline_lib.data.splits import labeled_size, read_list_ids, select_by_ids, split_labeled_unlabeled
from pipeline_lib.errors import UserError


def samples_for(ids) -> list[Sample]:
    return [Sample(i, Path(f"img/{i}.png"), Path(f"lbl/{i}.png")) for i in ids]


ids_strategy = st.lists(st.text("abcdefghij_0123456789", min_size=1, max_size=8), min_size=2, max_size=60,
                        unique=True)


@settings(max_examples=80, deadline=None)
@given(ids=ids_strategy, fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**31), data=st.data())
def test_split_is_exact_disjoint_sorted_and_order_independent(ids, fraction, seed, data):
    expected = int(fraction * len(ids) + 0.5)
    if not 1 <= expected <= len(ids) - 1:
        with pytest.raises(UserError, match="labeled_fraction"):
            split_labeled_unlabeled(samples_for(ids), labeled_fraction=fraction, seed=seed)
        return
    labeled, unlabeled = split_labeled_unlabeled(samples_for(ids), labeled_fraction=fraction, seed=seed)
    assert len(labeled) == expected
    assert {s.id for s in labeled}.isdisjoint(s.id for s in unlabeled)
    assert sorted(s.id for s in labeled + unlabeled) == sorted(ids)
    assert [s.id for s in labeled] == sorted(s.id for s in labeled)
    assert [s.id for s in unlabeled] == sorted(s.id for s in unlabeled)
    shuffled = data.draw(st.permutations(ids))
    assert split_labeled_unlabeled(samples_for(shuffled), labeled_fraction=fraction, seed=seed) == (labeled, unlabeled)


@settings(max_examples=40, deadline=None)
@given(ids=ids_strategy, seed=st.integers(0, 1000), data=st.data())
def test_smaller_labelled_sets_nest_in_larger_ones(ids, seed, data):
    small = data.draw(st.integers(1, len(ids) - 1))
    large = data.draw(st.integers(small, len(ids) - 1))
    a, _ = split_labeled_unlabeled(samples_for(ids), labeled_count=small, seed=seed)
    b, _ = split_labeled_unlabeled(samples_for(ids), labeled_count=large, seed=seed)
    assert {s.id for s in a} <= {s.id for s in b}


def test_split_is_reproducible_and_seed_dependent():
    samples = samples_for(f"city_{i:06d}" for i in range(200))
    first = split_labeled_unlabeled(samples, labeled_fraction=0.125, seed=3)
    assert first == split_labeled_unlabeled(list(reversed(samples)), labeled_fraction=0.125, seed=3)
    assert first[0] != split_labeled_unlabeled(samples, labeled_fraction=0.125, seed=4)[0]


def test_split_is_pinned_across_versions():
    # The ranking is sha256("<seed>:<id>"), not an RNG stream: these values must never change.
    labeled, _ = split_labeled_unlabeled(samples_for("abcdefghij"), labeled_count=3, seed=0)
    assert [s.id for s in labeled] == ["f", "g", "h"]


def test_paper_split_sizes():
    assert labeled_size(2975, 0.125, None) == 372  # Cityscapes 1/8
    assert labeled_size(2975, 1 / 4, None) == 744
    assert labeled_size(10582, 1 / 8, None) == 1323  # VOC aug 1/8
    assert labeled_size(30, 0.1, None) == 3
    assert labeled_size(10582, None, 1464) == 1464


@pytest.mark.parametrize("fraction, count, message", [
    (None, None, "exactly one"), (0.5, 3, "exactly one"), (0.0, None, r"\(0, 1\)"), (1.0, None, r"\(0, 1\)"),
    (1.5, None, r"\(0, 1\)"), (None, 0, "need 1..9"), (None, 10, "need 1..9"), (None, 2.5, "integer"),
    (0.01, None, "gives 0 labelled"),
])
def test_bad_split_sizes_are_user_errors(fraction, count, message):
    with pytest.raises(UserError, match=message):
        split_labeled_unlabeled(samples_for("abcdefghij"), fraction, count, seed=0)


def test_duplicate_ids_and_bad_seed_are_user_errors():
    with pytest.raises(UserError, match="'a' occurs twice"):
        split_labeled_unlabeled(samples_for("aab"), labeled_count=1)
    with pytest.raises(UserError, match="seed"):
        split_labeled_unlabeled(samples_for("abc"), labeled_count=1, seed="1")


def make_files(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_read_list_ids_and_select_by_ids(tmp_path):
    listing = tmp_path / "ids.txt"
    listing.write_text("2007_000032\n/JPEGImages/2007_000039.jpg /SegmentationClassAug/2007_000039.png\n")
    entries = read_list_ids(listing)
    assert entries == [(1, "2007_000032"), (2, "2007_000039")]
    pool = samples_for(["2007_000039", "2007_000032", "2007_000046"])
    assert [s.id for s in select_by_ids(pool, entries, listing, "the pool")] == ["2007_000032", "2007_000039"]
    with pytest.raises(UserError, match=r"ids.txt:3: image 'zzz' is not in the pool"):
        select_by_ids(pool, entries + [(3, "zzz")], listing, "the pool")
    with pytest.raises(UserError, match=r"ids.txt:4: image '2007_000032' repeats line 1"):
        select_by_ids(pool, entries + [(4, "2007_000032")], listing, "the pool")


