"""Bootstrap edge stability on real PBMC cells with a tiny model: weighted sums equal duplicated cells, the
main network is unchanged by the replicates, stability is a top-k share per regulator, the 'stable' filter."""

import numpy as np
import pytest
import torch
from _tasks_support import pbmc, run_grn, tiny_bundle

from grnformer import InputError
from grnformer.networks.attention import MeanQK


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    return pbmc(40, seed=7)


@pytest.mark.parametrize("same_context", [True, False])
def test_weighted_cells_count_like_duplicated_cells(same_context):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g)
    slots = torch.tensor([[0, 1, 2, 3, -1]] * 3) if same_context else torch.tensor([[0, 1, 2, 3, -1],
                                                                                     [4, 3, 2, -1, 1],
                                                                                     [1, 0, 4, 2, 3]])
    weighted, duplicated = MeanQK(1, 2, 4, 5, torch.device("cpu")), MeanQK(1, 2, 4, 5, torch.device("cpu"))
    weighted.add(slots, [(q, k)], same_context, weights=torch.tensor([2.0, 0.0, 1.0]))
    rows = torch.tensor([0, 0, 2])
    duplicated.add(slots[rows], [(q[rows], k[rows])], same_context)
    torch.testing.assert_close(weighted.q_sum, duplicated.q_sum)
    torch.testing.assert_close(weighted.k_sum, duplicated.k_sum)
    torch.testing.assert_close(weighted.n_cells, duplicated.n_cells)


def test_stability_is_a_top_k_share_and_filters(bundle, cells):
    kw = dict(genes="hvg", n_genes=30, batch_size=8, top_k=5)
    plain = run_grn(bundle, cells, **kw)
    boot = run_grn(bundle, cells, n_bootstrap=8, **kw)
    np.testing.assert_allclose(boot.varp["GRN"], plain.varp["GRN"], rtol=1e-6)   # replicates leave it alone
    stab = boot.varp["GRN_stability"]
    assert stab.shape == (30, 30) and (stab >= 0).all() and (stab <= 1).all()
    np.testing.assert_allclose(stab.sum(axis=1), 5.0)                            # 5 targets per replicate
    assert (np.diag(stab) == 0).all() and boot.uns["grn"]["n_bootstrap"] == 8
    # resampling cells moves some edges in and out of the top 5, but not all of them
    assert 0 < ((stab > 0) & (stab < 1)).sum() and (stab == 1).any()
    # a regulator's strongest target is more stable than its typical one
    net = plain.varp["GRN"].copy()
    np.fill_diagonal(net, -np.inf)
    best = stab[np.arange(30), net.argmax(axis=1)]
    assert best.mean() > stab[~np.eye(30, dtype=bool)].mean() + 0.3
    kept = run_grn(bundle, cells, n_bootstrap=8, filter="stable", min_stability=0.75, **kw)
    np.testing.assert_array_equal(kept.varp["GRN"].toarray() != 0, (stab >= 0.75) & (plain.varp["GRN"] != 0))
    for bad, says in ((dict(filter="stable"), "needs n_bootstrap"), (dict(n_bootstrap=2, method="per_cell"), "mean_qk"),
                      (dict(n_bootstrap=2, min_stability=0.0), "min_stability"), (dict(n_bootstrap=-1), "n_bootstrap")):
        with pytest.raises(InputError, match=says):
            run_grn(bundle, cells, **{**kw, **bad})
