"""EpochSampler: order fixed by (seed, epoch), rank shards, skip = tail of the epoch."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from learnkit.data.sampler import EpochSampler, mix_seed


def epoch_order(sampler: EpochSampler, epoch: int, skip: int = 0) -> list[int]:
    sampler.set_epoch(epoch, skip)
    return list(sampler)


def test_order_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    # b goes through other epochs first: epoch 2 must not care
    for e in (7, 0, 5):
        epoch_order(b, e)
    assert epoch_order(a, 2) == epoch_order(b, 2)
    assert sorted(epoch_order(a, 2)) == list(range(50))
    assert epoch_order(a, 2) != epoch_order(a, 3)
    assert epoch_order(a, 2) != epoch_order(EpochSampler(50, seed=4), 2)


def test_order_ignores_the_global_rng():
    s = EpochSampler(30, seed=1)
    torch.manual_seed(0)
    first = epoch_order(s, 1)
    torch.manual_seed(123)
    torch.rand(10)
    assert epoch_order(s, 1) == first


def test_seed_and_epoch_do_not_collide():
    assert mix_seed(0, 1) != mix_seed(1, 0)
    assert epoch_order(EpochSampler(40, seed=0), 1) != epoch_order(EpochSampler(40, seed=1), 0)


def test_no_shuffle_is_in_order():
    s = EpochSampler(7, shuffle=False)
    assert epoch_order(s, 4) == list(range(7))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 120),
    world_size=st.integers(1, 5),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 1000),
    shuffle=st.booleans(),
)
def test_rank_shards_cover_every_index_with_equal_counts(n, world_size, seed, epoch, shuffle):
    shards = [
        epoch_order(EpochSampler(n, shuffle, seed, rank, world_size), epoch) for rank in range(world_size)
    ]
    expected = math.ceil(n / world_size)
    assert all(len(shard) == expected for shard in shards)
    assert set().union(*map(set, shards)) == set(range(n))
    # only the padding repeats indices, and it is at most world_size - 1 of them
    assert expected * world_size - n < world_size
    # the shards are a strided split of the single-process order
    whole = epoch_order(EpochSampler(n, shuffle, seed), epoch)
    interleaved = [shards[i % world_size][i // world_size] for i in range(n)]
    assert interleaved == whole


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 100), world_size=st.integers(1, 4), seed=st.integers(0, 1000))
def test_drop_last_and_no_pad_give_no_duplicates(n, world_size, seed):
    dropped = [
        epoch_order(EpochSampler(n, True, seed, r, world_size, drop_last=True), 0) for r in range(world_size)
    ]
    assert all(len(s) == n // world_size for s in dropped)
    flat = [i for s in dropped for i in s]
    assert len(flat) == len(set(flat))
    uneven = [
        epoch_order(EpochSampler(n, False, seed, r, world_size, pad=False), 0) for r in range(world_size)
    ]
    assert sorted(i for s in uneven for i in s) == list(range(n))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 80), skip=st.integers(0, 90), epoch=st.integers(0, 50), world_size=st.integers(1, 3))
def test_skip_is_the_tail_of_the_full_epoch(n, skip, epoch, world_size):
    s = EpochSampler(n, seed=9, world_size=world_size)
    full = epoch_order(s, epoch)
    tail = epoch_order(s, epoch, skip=skip)
    assert tail == full[skip:]
    assert len(s) == len(tail)


def test_bad_arguments():
    with pytest.raises(ValueError):
        EpochSampler(5, rank=2, world_size=2)
    with pytest.raises(ValueError):
        EpochSampler(-1)
    with pytest.raises(ValueError):
        EpochSampler(5).set_epoch(0, skip=-1)
