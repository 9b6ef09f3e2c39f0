"""Sampler statistics on the real retina label combinations, rank sharding, determinism and memory layout."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from grnformer import InputError
from grnformer.data.corpus import datasets
from grnformer.data.corpus.sampler import (
    LabelBalancedSampler,
    ShardedEpochSampler,
    combination_key,
)

COLUMNS = ["cell_type_ontology_term_id", "sex_ontology_term_id", "disease_ontology_term_id"]


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    """Label codes of the 1,000 retina cells (cell type × sex × disease; factorised, -1 for missing)."""
    obs = datasets.load("retina").obs
    return np.stack([pd.factorize(obs[c])[0] for c in COLUMNS], axis=1)


def _expected_group_probability(codes: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    _, group, n = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    mass = n * s / (n + s)
    return group.ravel(), mass / mass.sum()


@pytest.mark.parametrize("s", [5.0, 100.0])
def test_frequencies_match_weights(codes, s):
    group, expected = _expected_group_probability(codes, s)
    assert len(expected) >= 8 and np.bincount(group).max() > 10 * np.bincount(group).min()
    draws = np.fromiter(LabelBalancedSampler(codes, num_samples=200_000, s=s, seed=0), dtype=np.int64)
    observed = np.bincount(group[draws], minlength=len(expected))
    assert stats.chisquare(observed, expected * len(draws)).pvalue > 1e-3
    # cells inside one combination are drawn uniformly
    big = np.flatnonzero(group == np.argmax(np.bincount(group)))
    per_cell = np.bincount(draws, minlength=len(codes))[big]
    assert stats.chisquare(per_cell).pvalue > 1e-3
    weights = LabelBalancedSampler(codes, num_samples=1, s=s).weights()
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.bincount(group, weights=weights), expected, rtol=1e-5)


def test_balancing_flattens_the_label_distribution(codes):
    group, _ = _expected_group_probability(codes, 1.0)
    natural = np.bincount(group) / len(group)
    draws = np.fromiter(LabelBalancedSampler(codes, num_samples=50_000, s=1.0, seed=1), dtype=np.int64)
    balanced = np.bincount(group[draws]) / len(draws)
    assert natural.max() / natural.min() > 30
    assert balanced.max() / balanced.min() < 1.5  # s << n_c: every combination about equally likely


def test_ranks_draw_disjoint_streams(codes):
    samplers = [LabelBalancedSampler(codes, num_samples=10_001, s=50, seed=3, rank=r, world_size=4)
                for r in range(4)]
    draws = [np.fromiter(sm, dtype=np.int64) for sm in samplers]
    assert [len(d) for d in draws] == [len(sm) for sm in samplers] == [2_501] * 4
    for a in range(4):
        for b in range(a + 1, 4):
            assert (draws[a] != draws[b]).mean() > 0.99  # independent streams, not copies or shifts
    again = np.fromiter(LabelBalancedSampler(codes, 10_001, s=50, seed=3, rank=2, world_size=4), dtype=np.int64)
    np.testing.assert_array_equal(again, draws[2])
    samplers[2].set_epoch(1)
    assert (np.fromiter(samplers[2], dtype=np.int64) != draws[2]).mean() > 0.99


def test_without_replacement_partitions_one_weighted_sample(codes):
    samplers = [LabelBalancedSampler(codes, num_samples=600, s=20, seed=0, rank=r, world_size=3,
                                     replacement=False) for r in range(3)]
    draws = [np.fromiter(sm, dtype=np.int64) for sm in samplers]
    union = np.concatenate(draws)
    assert len(union) == 600 and len(np.unique(union)) == 600  # disjoint across ranks, no repeats
    group, _ = _expected_group_probability(codes, 20)
    sizes = np.bincount(group)
    taken = np.bincount(group[union], minlength=len(sizes)) / sizes
    # rare combinations are taken more completely than the largest one
    assert taken[np.argmin(sizes)] > 2 * taken[np.argmax(sizes)]
    full = np.fromiter(LabelBalancedSampler(codes, len(codes), replacement=False), dtype=np.int64)
    assert sorted(full.tolist()) == list(range(len(codes)))
    with pytest.raises(InputError, match="without replacement"):
        LabelBalancedSampler(codes, len(codes) + 1, replacement=False)


def test_combination_key_paths_agree(codes):
    key, n = combination_key(codes)
    assert key.dtype == np.int32 and n == len(np.unique(codes, axis=0))
    wide = codes.astype(np.int64) * np.array([1, 10**7, 10**9])  # radix too large for a dense table
    key_wide, n_wide = combination_key(wide)
    assert n_wide == n
    assert len(pd.crosstab(key, key_wide)) == n and (pd.crosstab(key, key_wide) > 0).sum(1).max() == 1
    huge = codes.astype(np.int64) * np.array([1, 10**12, 10**12])  # radix beyond int64: row-wise unique
    key_huge, n_huge = combination_key(huge)
    assert n_huge == n and (pd.crosstab(key, key_huge) > 0).sum(1).max() == 1
    sampler = LabelBalancedSampler(codes, 10)
    assert sampler.order.dtype == np.int32


def test_sharded_epoch_gives_each_cell_to_one_rank():
    n, ws = 1_003, 4
    exact = [list(ShardedEpochSampler(n, seed=0, rank=r, world_size=ws, even=False)) for r in range(ws)]
    assert sorted(sum(exact, [])) == list(range(n))
    even = [list(ShardedEpochSampler(n, seed=0, rank=r, world_size=ws)) for r in range(ws)]
    assert {len(e) for e in even} == {251}
    seen = np.bincount(sum(even, []), minlength=n)
    assert seen.min() == 1 and (seen == 2).sum() == 251 * ws - n  # only the padding repeats
    first = ShardedEpochSampler(n, seed=0, rank=1, world_size=ws)
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0
    first.set_epoch(0)
    assert list(first) == epoch0
    subset = np.arange(10, 2_000, 7)
    got = sum((list(ShardedEpochSampler(subset, rank=r, world_size=3, even=False)) for r in range(3)), [])
    assert sorted(got) == subset.tolist()
    assert list(ShardedEpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_bad_arguments(codes):
    with pytest.raises(InputError, match="rank"):
        ShardedEpochSampler(10, rank=2, world_size=2)
    with pytest.raises(InputError, match="integers"):
        LabelBalancedSampler(codes.astype(float), 10)
    with pytest.raises(InputError, match="positive"):
        LabelBalancedSampler(codes, 10, s=0)
