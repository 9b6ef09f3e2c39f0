"""Controls of diffnet's statistics with a known answer. The model is stubbed where its attention comes out: q and
k of every cell are noise, except that gene R's key always points along one direction and gene T's query points
along it in proportion to log1p of T's count in that cell. Two groups of real PBMC3k cells that differ only in T's
counts then differ in exactly one planted edge, R -> T (regulator rows are keys under the default direction kq):
diffnet must find it, first and significant, and must find nothing on a random split of cells that all share one
condition. A diffnet whose p-values were 1 everywhere fails the first test; one that calls noise fails the second.
One cell per block: with b blocks per group, a permutation z-score cannot exceed about sqrt(2b - 1) (3.9 for the
default 4 cells per block here, too coarse for 380 edges), so 32 blocks per group let the planted edge stand out.
The real forward pass still runs (the stub wraps it), so the plan, collators, gene slots, blocks, permutations and
q-values are diffnet's own."""

import numpy as np
import pytest
import torch
from _tasks_support import tiny_bundle

from grnformer.data.corpus import datasets
from grnformer.networks import diffnet as diffnet_module
from grnformer.networks.diffnet import diffnet
from grnformer.networks.grn_options import DiffNetOptions

GENES = ["LYZ", "S100A9", "CD74", "HLA-DRA", "CD3D", "IL7R", "MS4A1", "CD79A", "NKG7", "GNLY", "FCGR3A", "CST3",
         "FTL", "FTH1", "TMSB4X", "B2M", "CD8A", "GZMB", "CD14", "LTB"]
R, T = "MS4A1", "NKG7"
OPTS = dict(genes=GENES, regulators="all", max_cells=None, n_permutations=200, cells_per_block=1, batch_size=16,
            fdr=0.1)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    full = datasets.load("pbmc3k")
    rows = np.sort(np.random.default_rng(0).choice(full.n_obs, 64, replace=False))
    return full[rows].copy()


def _planted(bundle, monkeypatch, strength: float = 1.0):
    """Replace the q/k that diffnet reads by the planted ones (see the module docstring)."""
    real = diffnet_module.run_model
    r_token, t_token = (int(bundle.vocab.index([g])[0]) for g in
                        (bundle.vocab.ids[list(bundle.vocab.symbols).index(R)],
                         bundle.vocab.ids[list(bundle.vocab.symbols).index(T)]))

    def run_model(*args, **kwargs):
        for rows, c, batch, out in real(*args, **kwargs):
            genes, counts = batch["genes"], batch["counts"].float()
            qk = []
            for layer, (q, k) in enumerate(out.qk):
                B, H, L, d = q.shape
                u = torch.ones(d) / d ** 0.5
                noise = []
                for row in rows:  # noise fixed per cell, whatever its group or batch
                    g = torch.Generator().manual_seed(int(row) * 100 + layer)
                    noise.append(torch.randn(2, H, L, d, generator=g))
                noise = torch.stack(noise)
                q_new, k_new = noise[:, 0].clone(), noise[:, 1].clone()
                at_r, at_t = genes == r_token, genes == t_token  # [B, L]
                k_new += strength * 1.3 * at_r[:, None, :, None] * u
                q_new += strength * 1.3 * (at_t * torch.log1p(counts))[:, None, :, None] * u
                qk.append((q_new.to(q.dtype), k_new.to(k.dtype)))
            out.qk = qk
            yield rows, c, batch, out

    monkeypatch.setattr(diffnet_module, "run_model", run_model)


def _with_t_counts(cells, groups: np.ndarray, t_counts: dict[str, int]):
    a = cells.copy()
    a.obs["group"] = groups
    x = a.X.toarray() if hasattr(a.X, "toarray") else np.array(a.X)
    col = list(a.var_names).index(T)
    for group, n in t_counts.items():
        x[a.obs["group"].to_numpy() == group, col] = n
    a.X = x.astype(np.float32)
    return a


def test_diffnet_finds_a_planted_edge_first_and_significant(bundle, cells, monkeypatch):
    _planted(bundle, monkeypatch)
    groups = np.where(np.arange(cells.n_obs) % 2, "a", "b")
    adata = _with_t_counts(cells, groups, {"a": 30, "b": 0})  # only T's counts differ between the groups
    table, summary = diffnet(bundle, adata, "group", "a", "b", DiffNetOptions(**OPTS), progress=False)
    assert summary["edges_tested"] == 20 * 19
    top = table.iloc[0]
    assert (top.regulator, top.target) == (R, T), table.head()
    assert top["diff"] > 0 and top.q_value < 1e-6 and top.p_permutation <= 2 / 201
    assert top["diff"] == table["diff"].abs().max()  # the largest change too
    reverse = table[(table.regulator == T) & (table.target == R)].iloc[0]
    assert reverse.q_value > OPTS["fdr"]  # the direction is kept: T -> R did not change
    changed = table[table.q_value <= OPTS["fdr"]]
    # what else may change is what T's query and R's key touch (T's row of the softmax; the mean query of centre_q);
    # the rest are noise, which a false discovery rate of fdr allows in about that share of the discoveries
    touched = (changed.target == T) | (changed.regulator == R)
    assert (~touched).sum() <= max(1, round(OPTS["fdr"] * len(changed))), changed
    assert len(changed) < 0.15 * len(table)


def test_diffnet_finds_nothing_on_a_null_split_with_the_same_plant(bundle, cells, monkeypatch):
    _planted(bundle, monkeypatch)
    groups = np.where(np.random.default_rng(1).permutation(cells.n_obs) % 2, "a", "b")
    adata = _with_t_counts(cells, groups, {"a": 30, "b": 30})  # the plant is there, in both groups alike
    table, summary = diffnet(bundle, adata, "group", "a", "b", DiffNetOptions(**OPTS), progress=False)
    assert summary["changed_edges"] == 0 and table.q_value.min() > OPTS["fdr"]
    planted = table[(table.regulator == R) & (table.target == T)].iloc[0]
    assert min(planted.score_a, planted.score_b) > 2.5 / 19  # strong in both networks (uniform: 1/19), not changed
