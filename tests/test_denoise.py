"""Denoised counts on real PBMC cells (raw, gene symbols) with a tiny random-init model (context 64), recomputed
by hand from the model's ZINB outputs on the context each value comes from."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _tasks_support import CONTEXT, pbmc, tiny_bundle

from grnformer import InputError
from grnformer.inference.prepared import prepare_input
from grnformer.tasks.denoise import LAYER, denoise, denoise_file
from grnformer.tasks.task_options import DenoiseOptions

GENES = ["CD3E", "MS4A1", "LYZ", "NKG7"]


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def _top_genes_only(cells, keep):
    """Real cells cut down to their ``keep`` highest counts, so a whole cell fits one context of the tiny model."""
    x = sp.csr_matrix(cells.X).toarray()
    for row in x:
        row[np.argsort(-row, kind="stable")[keep:]] = 0
    out = cells.copy()
    out.X = sp.csr_matrix(x)
    return out


def _by_hand(bundle, prep, cell, tokens, counts, m):
    """(1 - pi) mu of the model on one cell's context: depth token = m x library, means share m x context counts."""
    depth = torch.tensor([prep.adata.X[cell].sum() * m], dtype=torch.float32)
    c = torch.as_tensor(counts, dtype=torch.float32)[None]
    with torch.no_grad():
        out = bundle.model(torch.as_tensor(tokens)[None], c, depth, scale=c.sum(1) * m)
    return ((1 - torch.sigmoid(out.pi_logit)) * out.mu)[0].numpy()


def _values(layer, cells, prep, cell, tokens):
    cols = prep.user_var_columns(cells)
    col_of = {tok: np.flatnonzero(cols == k)[0] for k, tok in enumerate(prep.tokens)}
    return np.array([layer[prep.obs_rows[cell], col_of[t]] for t in tokens])


def test_listed_genes_are_shared_out_with_the_cells_own_genes(bundle):
    cells = _top_genes_only(pbmc(3, seed=7), keep=30)
    layer = denoise(bundle, cells, DenoiseOptions(genes=GENES, depth_multiplier=2.0, batch_size=1), progress=False)
    assert layer.nnz == 3 * 4 and (layer.data > 0).all()  # every listed gene, expressed or not
    prep = prepare_input(bundle, cells)
    listed = prep.tokens[[list(prep.adata.var["symbol"]).index(g) for g in GENES]]
    for cell in range(3):
        r = prep.cells[cell]
        others = ~np.isin(r.genes, listed)  # 30 genes < 64 - 4: every other expressed gene is an anchor
        counts = [r.counts[r.genes == t].sum() for t in listed]
        tokens = np.concatenate([listed, r.genes[others]])
        expected = _by_hand(bundle, prep, cell, tokens, np.concatenate([counts, r.counts[others]]), 2.0)[:4]
        np.testing.assert_allclose(_values(layer, cells, prep, cell, listed), expected, rtol=1e-4)


def test_all_expressed_genes_in_one_context_when_they_fit(bundle):
    cells = _top_genes_only(pbmc(4, seed=3), keep=40)
    layer = denoise(bundle, cells, DenoiseOptions(batch_size=1), progress=False)
    prep = prepare_input(bundle, cells)
    for cell in range(4):
        r = prep.cells[cell]
        expected = _by_hand(bundle, prep, cell, r.genes, r.counts, 1.0)  # order does not matter to the model
        np.testing.assert_allclose(_values(layer, cells, prep, cell, r.genes), expected, rtol=1e-4)
    assert layer.nnz == sum(len(prep.cells[i].genes) for i in range(4))


def test_large_cells_are_split_into_bounded_contexts(bundle):
    cells = pbmc(12, seed=7)
    prep = prepare_input(bundle, cells)
    sizes = [len(prep.cells[i].genes) for i in range(12)]
    assert min(sizes) > 3 * CONTEXT  # real PBMC cells: several contexts each
    contexts = []
    model = bundle.model
    hook = model.register_forward_hook(lambda mod, args, out: contexts.append(tuple(args[0].shape)))
    try:
        layer = denoise(bundle, cells, DenoiseOptions(depth_multiplier=2.0, batch_size=6), progress=False)
    finally:
        hook.remove()
    assert all(L <= CONTEXT for _, L in contexts)
    assert sum(b for b, _ in contexts) == sum(-(-n // CONTEXT) for n in sizes)
    x = sp.csr_matrix(cells.X)
    mapped = prep.user_var_columns(cells) >= 0
    expressed_mapped = x[:, mapped] > 0
    assert layer.nnz == expressed_mapped.sum() and (layer.data > 0).all()  # each expressed gene once
    assert layer[:, ~mapped].nnz == 0 and (layer.multiply(x > 0)).nnz == layer.nnz


def test_a_pass_holds_at_most_batch_size_contexts_and_the_values_do_not_depend_on_it(bundle):
    cells = pbmc(10, seed=5)
    prep = prepare_input(bundle, cells)
    per_cell = [-(-len(prep.cells[i].genes) // CONTEXT) for i in range(10)]
    passes = []
    hook = bundle.model.register_forward_hook(lambda mod, args, out: passes.append(args[0].shape[0]))
    try:
        grouped = denoise(bundle, cells, DenoiseOptions(batch_size=2 * max(per_cell)), progress=False)
    finally:
        hook.remove()
    assert sum(passes) == sum(per_cell) and len(passes) < len(per_cell)  # several cells share a pass...
    assert max(passes) <= 2 * max(per_cell)  # ...but never more contexts than the batch size
    single = denoise(bundle, cells, DenoiseOptions(batch_size=1), progress=False)  # a pass per cell
    np.testing.assert_allclose(grouped.toarray(), single.toarray(), rtol=1e-4, atol=1e-6)


def test_denoise_file_and_bad_inputs(bundle, tmp_path):
    cells = pbmc(12, seed=9)
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    denoise_file(bundle, src, tmp_path / "out.h5ad", DenoiseOptions(genes="CD3E,MS4A1,LYZ"), progress=False)
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    cols = [list(out.var_names).index(g) for g in ("CD3E", "MS4A1", "LYZ")]
    assert out.layers[LAYER].shape == cells.shape and out.layers[LAYER].nnz == 12 * 3
    assert (out.layers[LAYER][:, cols].toarray() > 0).all()
    with pytest.raises(InputError, match="NOTAGENE"):
        denoise(bundle, cells, DenoiseOptions(genes=["CD3E", "NOTAGENE", "NOTAGENE2"]), progress=False)
    whole = denoise(bundle, cells, DenoiseOptions(genes=GENES), progress=False)
    parts = denoise(bundle, cells, DenoiseOptions(genes=GENES, max_listed_per_context=2), progress=False)
    assert whole.nnz == parts.nnz == 12 * 4 and not np.allclose(whole.data, parts.data)  # contexts differ
    for bad in (0, CONTEXT):
        with pytest.raises(InputError, match="max_listed"):
            denoise(bundle, cells, DenoiseOptions(genes="hvg", max_listed_per_context=bad), progress=False)
    with pytest.raises(InputError, match="depth_multiplier"):
        denoise(bundle, cells, DenoiseOptions(depth_multiplier=0), progress=False)
    with pytest.raises(InputError, match="'variable'"):
        denoise(bundle, cells, DenoiseOptions(genes="variable"), progress=False)
    with pytest.raises(InputError, match="NOTAGENE"):
        denoise_file(bundle, src, tmp_path / "bad.h5ad", DenoiseOptions(genes="CD3E,NOTAGENE,NOTAGENE2"),
                     progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "out.h5ad"]
