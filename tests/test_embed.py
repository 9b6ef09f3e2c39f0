"""Cell embeddings on real PBMC cells with a tiny random-init model: where they go, which token they come from,
reproducibility, cells prepare() drops, UMAP, the file entry and bad inputs."""

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _tasks_support import pbmc, tiny_bundle

from grnformer import InputError
from grnformer.data.collate import Collator
from grnformer.data.corpus.store import AnnDataCells
from grnformer.data.input.prepare import prepare
from grnformer.tasks.embed import embed, embed_file
from grnformer.tasks.task_options import EmbedOptions


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def test_embeddings_are_the_model_tokens(bundle):
    cells = pbmc(40)
    emb = embed(bundle, cells, batch_size=16, progress=False)
    assert emb.shape == (40, 32) and cells.obsm["X_grnformer"].shape == (40, 32)
    assert np.isfinite(emb).all()
    # the same cells through the collator and the model by hand (same seeded contexts) give the cell token
    prepared, _ = prepare(cells, vocab=bundle.vocab)
    records = AnnDataCells(prepared, bundle.vocab, bundle.labels)
    batch = Collator(bundle.vocab, bundle.config.context_length, "random-expressed", seed=0)(
        [records[i] for i in range(16)])
    with torch.no_grad():
        out = bundle.model(batch["genes"], batch["counts"], batch["depth"])
    np.testing.assert_allclose(emb[:16], out.cell_emb.numpy(), rtol=1e-4, atol=1e-5)
    ct = embed(bundle, cells, source="cell_type", batch_size=16, progress=False)
    np.testing.assert_allclose(ct[:16], out.label_emb[:, 0].numpy(), rtol=1e-4, atol=1e-5)
    mean = embed(bundle, cells, EmbedOptions(source="mean", batch_size=16), progress=False)
    np.testing.assert_allclose(mean, (emb + ct) / 2, rtol=1e-4, atol=1e-5)
    # an options object and keywords together: the keywords win, the object is left as it was
    options = EmbedOptions(source="mean", batch_size=16)
    np.testing.assert_array_equal(embed(bundle, cells, options, source="cell_type", progress=False), ct)
    assert options.source == "mean" and cells.uns["grnformer_embed"]["source"] == "cell_type"
    again = embed(bundle, cells, batch_size=8, progress=False)  # batching does not change a cell's context
    np.testing.assert_allclose(again, emb, rtol=1e-4, atol=1e-5)


def test_dropped_cells_get_nan_rows_and_umap(bundle):
    cells = pbmc(30, seed=3)
    x = cells.X.tolil()
    x[[4, 17]] = 0  # two empty cells: prepare() drops them with a warning
    cells.X = sp.csr_matrix(x)
    with pytest.warns(UserWarning, match="dropped 2"):
        emb = embed(bundle, cells, umap=True, progress=False)
    assert emb.shape == (28, 32)
    stored = cells.obsm["X_grnformer"]
    assert np.isnan(stored[[4, 17]]).all() and np.isfinite(np.delete(stored, [4, 17], axis=0)).all()
    umap = cells.obsm["X_umap"]
    assert umap.shape == (30, 2) and np.isnan(umap[[4, 17]]).all()
    assert np.isfinite(np.delete(umap, [4, 17], axis=0)).all()


def test_embed_file_and_bad_inputs(bundle, tmp_path):
    cells = pbmc(20, seed=4)
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    embed_file(bundle, src, tmp_path / "out.h5ad", source="cell", progress=False)
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert out.obsm["X_grnformer"].shape == (20, 32) and out.uns["grnformer_embed"]["source"] == "cell"
    assert out.shape == cells.shape  # the user's data comes back whole, with the embedding added
    with pytest.raises(InputError, match="source"):
        embed(bundle, cells, source="gene", progress=False)
    with pytest.raises(InputError, match="source must be one of cell, cell_type, mean"):  # before reading the input
        embed_file(bundle, tmp_path / "nope.h5ad", tmp_path / "o4.h5ad", EmbedOptions(source="gene"))
    with pytest.raises(InputError, match="unknown option.*umpa.*EmbedOptions has source, umap"):
        embed_file(bundle, src, tmp_path / "o5.h5ad", umpa=True, progress=False)
    with pytest.raises(InputError, match="does not exist"):
        embed_file(bundle, tmp_path / "nope.h5ad", tmp_path / "o2.h5ad")
    with pytest.raises(InputError, match="directory"):
        embed_file(bundle, src, tmp_path)
    with pytest.raises(InputError, match="batch_size"):
        embed_file(bundle, src, tmp_path / "o3.h5ad", batch_size=0, progress=False)
    with pytest.raises(InputError, match="device"):
        embed(bundle, cells, device="cuda:7" if not torch.cuda.is_available() else "tpu", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "out.h5ad"]
