"""Denoised counts on real PBMC cells (raw, gene symbols) with a tiny random-init model, recomputed by hand from
the model's ZINB outputs, for each cell's own genes and for a fixed gene set split over two contexts."""

import math

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _tasks_support import CONTEXT, pbmc, tiny_bundle

from grnformer import InputError
from grnformer.data.collate import CellRecord, Collator
from grnformer.data.corpus import AnnDataCells
from grnformer.data.prepare import prepare
from grnformer.tasks.denoise import LAYER, denoise, denoise_file
from grnformer.tasks.inference import prepare_input, select_genes


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def _user_column(cells, gene_id, prepared):
    """Column of the raw AnnData holding a prepared gene (PBMC3k: prepare() maps its var['gene_ids'])."""
    assert prepared.uns["grnformer_prepare"]["gene_source"] == 'var["gene_ids"]'
    return list(cells.var["gene_ids"]).index(prepared.var.loc[gene_id, "input_name"])


def test_all_expressed_genes_match_the_zinb_mean(bundle):
    cells = pbmc(12, seed=7)
    layer = denoise(bundle, cells, depth_multiplier=2.0, batch_size=12, progress=False)
    assert sp.issparse(layer) and layer.shape == cells.shape and cells.layers[LAYER] is layer
    x = sp.csr_matrix(cells.X)
    pattern = layer.copy()
    pattern.data[:] = 1
    assert (pattern.multiply(x > 0).sum() == pattern.sum())  # only genes the cell expressed get a value
    prepared, _ = prepare(cells, vocab=bundle.vocab)
    records = AnnDataCells(prepared, bundle.vocab, bundle.labels)
    batch = Collator(bundle.vocab, CONTEXT, "all", seed=0)([records[i] for i in range(12)])
    with torch.no_grad():
        out = bundle.model(batch["genes"], batch["counts"], batch["depth"] * 2.0)
    expected = ((1 - torch.sigmoid(out.pi_logit)) * out.mu).numpy()  # the context holds all counts: share 1
    ids = bundle.vocab.ids
    for cell in (0, 5, 11):
        for pos in np.flatnonzero(batch["target"][cell].numpy() > 0)[:20]:
            col = _user_column(cells, ids[batch["genes"][cell, pos]], prepared)
            assert layer[cell, col] == pytest.approx(expected[cell, pos], rel=1e-4)
    unmapped = np.flatnonzero(~cells.var["gene_ids"].isin(prepared.var["input_name"]).to_numpy())
    assert len(unmapped) > 10_000  # non-coding genes are outside the vocabulary
    assert layer[:, unmapped].nnz == 0


def test_gene_set_over_two_contexts_is_imputed_within_each_cells_genes(bundle):
    cells = pbmc(16, seed=8)
    layer = denoise(bundle, cells, genes="hvg", n_genes=100, max_listed_per_context=CONTEXT, batch_size=16,
                    progress=False)
    filled = np.flatnonzero(np.diff(layer.tocsc().indptr) > 0)
    assert len(filled) == 100 and layer.nnz == 16 * 100 and (layer.data > 0).all()  # unexpressed genes too
    # by hand: 100 ranked genes in two parts of 50 (at most 64 per context); each joins every cell's own genes
    prep = prepare_input(bundle, cells)
    tokens = prep.tokens[select_genes(prep, "hvg", 100)]
    records = [prep.cells[i] for i in range(16)]
    collator = Collator(bundle.vocab, CONTEXT, "all", seed=0)
    ids = bundle.vocab.ids
    for chunk in np.array_split(tokens, math.ceil(100 / CONTEXT)):  # as chunk_genes splits
        extended = [CellRecord(np.concatenate([r.genes, chunk[~np.isin(chunk, r.genes)]]),
                               np.concatenate([r.counts, np.zeros((~np.isin(chunk, r.genes)).sum(), np.float32)]),
                               r.labels, r.organism) for r in records]
        batch = collator(extended)
        assert (batch["depth"].numpy() == [r.counts.sum() for r in records]).all()  # added genes add no counts
        with torch.no_grad():
            out = bundle.model(batch["genes"], batch["counts"], batch["depth"])
        expected = ((1 - torch.sigmoid(out.pi_logit)) * out.mu).numpy()
        for cell in (0, 9):
            for pos in np.flatnonzero(np.isin(batch["genes"][cell].numpy(), chunk))[:15]:
                col = _user_column(cells, ids[batch["genes"][cell, pos]], prep.adata)
                assert layer[cell, col] == pytest.approx(expected[cell, pos], rel=1e-4)


def test_denoise_file_and_bad_inputs(bundle, tmp_path):
    cells = pbmc(12, seed=9)
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    denoise_file(bundle, src, tmp_path / "out.h5ad", genes="CD3E,MS4A1,LYZ", progress=False)
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    cols = [list(out.var_names).index(g) for g in ("CD3E", "MS4A1", "LYZ")]
    assert out.layers[LAYER].shape == cells.shape and out.layers[LAYER].nnz == 12 * 3
    assert (out.layers[LAYER][:, cols].toarray() > 0).all()
    with pytest.raises(InputError, match="NOTAGENE"):
        denoise(bundle, cells, genes=["CD3E", "NOTAGENE"], progress=False)
    whole = denoise(bundle, cells, genes=["CD3E", "MS4A1", "LYZ", "NKG7"], progress=False)
    parts = denoise(bundle, cells, genes=["CD3E", "MS4A1", "LYZ", "NKG7"], max_listed_per_context=2, progress=False)
    assert whole.nnz == parts.nnz == 12 * 4 and not np.allclose(whole.data, parts.data)  # contexts differ
    with pytest.raises(InputError, match="max_listed"):
        denoise(bundle, cells, genes="hvg", max_listed_per_context=0, progress=False)
    with pytest.raises(InputError, match="depth_multiplier"):
        denoise(bundle, cells, depth_multiplier=0, progress=False)
    with pytest.raises(InputError, match="'variable'"):
        denoise(bundle, cells, genes="variable", progress=False)
    with pytest.raises(InputError, match="NOTAGENE"):
        denoise_file(bundle, src, tmp_path / "bad.h5ad", genes="CD3E,NOTAGENE", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "out.h5ad"]
