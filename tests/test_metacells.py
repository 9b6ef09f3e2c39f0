"""kNN-pooled expression (networks/metacells.py): pooling stays within a cell's neighbourhood, recovers a
co-expressed pair that dropout hides in few cells, and refuses a k it cannot use."""

import numpy as np
import pytest

from grnformer.errors import InputError
from grnformer.networks.from_data import abs_spearman
from grnformer.networks.metacells import pooled_expression


def _cells(n_cells: int, seed: int) -> tuple[np.ndarray, int, int, int]:
    """Log-normalised counts of ``n_cells`` cells along a differentiation trajectory: 200 genes of which 120 follow
    the cell's position, a lowly expressed regulator → target pair that rises along it (Poisson mean 0.1 → 3.1,
    30% extra dropout: most of its counts are zeros), and genes of pure noise."""
    g = np.random.default_rng(seed)
    t = g.uniform(0, 1, n_cells)
    rates = np.full((n_cells, 200), 0.5)
    rates[:, :120] = np.exp(np.outer(t - 0.5, g.normal(0, 2, 120))) * 2
    reg, target, noise = 160, 161, 162
    rates[:, [reg, target]] = (0.1 + 3 * t)[:, None]
    counts = g.poisson(rates).astype(float)
    counts[:, [reg, target]] *= g.random((n_cells, 2)) > 0.3
    depth = np.maximum(counts.sum(1, keepdims=True), 1)
    return np.log1p(counts / depth * 1e4), reg, target, noise


def test_pooling_recovers_a_coexpressed_pair_hidden_by_dropout():
    gains, noise_pooled = [], []
    for seed in range(5):
        x, reg, target, noise = _cells(100, seed)
        raw = abs_spearman(x)[reg, target]
        pooled = abs_spearman(pooled_expression(x, k=10, seed=seed))
        gains.append(pooled[reg, target] - raw)
        noise_pooled.append(pooled[reg, noise])
    assert min(gains) > 0.2, gains  # raw |rho| 0.16-0.31 under dropout, pooled 0.54-0.74
    assert max(noise_pooled) < 0.4, noise_pooled  # a gene that ignores the trajectory stays weakly correlated


def test_each_cell_is_pooled_with_its_own_neighbourhood_only():
    g = np.random.default_rng(0)
    centres = np.zeros((2, 20))
    centres[1] = 8.0
    x = np.concatenate([centres[0] + g.normal(0, 0.1, (6, 20)), centres[1] + g.normal(0, 0.1, (6, 20))])
    pooled = pooled_expression(x, k=5)
    assert pooled.shape == x.shape and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[:6], np.broadcast_to(x[:6].mean(0), (6, 20)), atol=1e-5)
    np.testing.assert_allclose(pooled[6:], np.broadcast_to(x[6:].mean(0), (6, 20)), atol=1e-5)


@pytest.mark.parametrize("k", [0, 12, 2.5, True, -1])
def test_a_k_the_cells_cannot_give_is_refused(k):
    x = np.random.default_rng(1).random((12, 5))
    with pytest.raises(InputError, match="from 1 to 11"):
        pooled_expression(x, k=k)


def test_non_finite_or_flat_input_is_refused():
    x = np.random.default_rng(1).random((12, 5))
    x[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pooled_expression(x, k=3)
    with pytest.raises(InputError, match="cells × genes"):
        pooled_expression(np.ones(12), k=3)
