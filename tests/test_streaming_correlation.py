"""Data networks streamed from an h5ad file (`networks.streaming_correlation`) equal the in-memory ones for the same
cells, genes and normalisation; the grn file entry switches to streaming above a size and says so; a damaged
file is one clear error and leaves nothing behind; a killed run's scratch is cleared with a word."""

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from _tasks_support import pbmc, tiny_bundle
from anndata import read_h5ad
from scipy.stats import rankdata

from grnformer import InputError
from grnformer.data.input.backed import BackedCells
from grnformer.data.input.expression import log_per_10k
from grnformer.data.input.prepare import prepare
from grnformer.inference.gene_sets import select_genes
from grnformer.inference.prepared import prepare_input
from grnformer.networks import streaming_correlation as sc
from grnformer.networks.files import grn_file
from grnformer.networks.from_data import abs_correlation, abs_spearman
from grnformer.networks.grn import GRNOptions, grn


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    """400 PBMC3k cells and 3 cells without counts (prepare drops them; so must the stream)."""
    a = pbmc(403, seed=3)
    x = a.X.tolil()
    x[[5, 200, 401]] = 0
    a.X = sp.csr_matrix(x)
    return a


@pytest.fixture(scope="module")
def path(cells, tmp_path_factory):
    p = tmp_path_factory.mktemp("stream") / "cells.h5ad"
    cells.write_h5ad(p)
    return p


def test_ranks_and_sums_equal_the_in_memory_rules(tmp_path):
    x = sp.random(300, 40, density=0.3, random_state=1, format="csr", dtype=np.float32)
    x.data = np.round(x.data * 4).astype(np.float32)  # many ties, stored zeros included
    x = x.tolil()
    x[:, 7] = 0  # a constant gene scores 0
    x = sp.csr_matrix(x)
    blocks = sc.gene_blocks(np.bincount(x.indices, minlength=40), 500)
    assert len(blocks) > 2
    store = sc.RankStore(tmp_path, 40, blocks)
    sums = sc.CorrelationSums(40)
    for lo in range(0, 300, 70):
        store.append(x[lo:lo + 70])
        sums.add(x[lo:lo + 70])
    store.rank()
    ranks = sp.vstack(list(store.read())).toarray()
    store.close()
    dense = x.toarray()
    zero_rank = ((dense == 0).sum(0) + 1) / 2  # what rankdata gives every zero of a gene
    assert np.allclose(ranks, rankdata(dense, axis=0) - zero_rank, atol=1e-9)
    assert np.abs(sums.abs_r() - abs_correlation(x.toarray())).max() < 1e-6
    rank_sums = sc.CorrelationSums(40)
    rank_sums.add(ranks)
    assert np.abs(rank_sums.abs_r() - abs_spearman(x.toarray())).max() < 1e-6


def test_chunks_are_mapped_as_prepare_maps_them(bundle, cells, tmp_path):
    mapped = prepare(cells, vocab=bundle.vocab)[0].var["input_name"].tolist()
    twice = cells.copy()  # one gene named by two columns, whichever names prepare reads (symbols or IDs)
    twice.var_names = [mapped[0] if n == mapped[1] else n for n in cells.var_names]
    for column in twice.var.columns:
        twice.var[column] = twice.var[column].astype(str).replace(mapped[1], mapped[0])
    for name, source in (("once", cells), ("twice", twice)):
        source.write_h5ad(tmp_path / f"{name}.h5ad")
        backed = BackedCells.open(tmp_path / f"{name}.h5ad", vocab=bundle.vocab)
        assert (backed.gene_of is None) == (name == "twice")  # summed columns need the product, others a renaming
        got = sp.vstack([counts for _, counts, _ in backed.chunks(97)])
        assert (got != prepare(source, vocab=bundle.vocab)[0].X).nnz == 0


def test_streamed_genes_and_networks_equal_in_memory(bundle, cells, path):
    _, stream, cols = sc.streamed_cells(bundle, path, "hvg", 120, chunk_cells=97, progress=False)
    prep = prepare_input(bundle, cells)
    assert len(stream.kept_rows) == prep.n_cells == 400
    assert np.array_equal(cols, select_genes(prep, "hvg", 120))
    rows = np.sort(np.random.default_rng(1).choice(prep.n_cells, 250, replace=False))
    logx = np.asarray(log_per_10k(prep.adata.X[rows])[:, cols].toarray(), dtype=np.float32)
    stream.rank_budget = 3_000  # several gene blocks of the rank store
    assert np.abs(stream.abs_correlation("pearson", rows, cols) - abs_correlation(logx)).max() < 1e-6
    assert np.abs(stream.abs_correlation("spearman", rows, cols) - abs_spearman(logx)).max() < 1e-6
    assert stream.passes == ["pearson: cells", "spearman 1/3: values"]


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_grn_file_streams_above_the_size_and_says_so(bundle, cells, path, tmp_path, monkeypatch, capsys, method):
    opts = GRNOptions(method=method, n_genes=100, max_cells=300, top_k=10, filter="topk")
    monkeypatch.setattr(sc, "STREAM_ABOVE_BYTES", 300 * 100 * 8 - 1)
    out = tmp_path / "net.h5ad"
    grn_file(bundle, path, out, opts, progress=True)
    assert "streaming the file in chunks" in capsys.readouterr().err
    got, ref = read_h5ad(out), grn(bundle, cells, opts, progress=False)
    assert got.n_obs == 0 and got.uns["grn"]["n_cells"] == ref.uns["grn"]["n_cells"] == 300
    assert list(got.var_names) == list(ref.var_names)
    assert np.array_equal(got.var["is_regulator"], ref.var["is_regulator"])
    assert np.abs(got.varp["GRN"].toarray() - ref.varp["GRN"].toarray()).max() < 1e-6
    grn_file(bundle, path, out, opts, progress=True)  # the same command again keeps the network
    assert "kept 1 network(s)" in capsys.readouterr().err
    monkeypatch.setattr(sc, "STREAM_ABOVE_BYTES", 10 ** 12)
    assert not sc.streams(path, method, "hvg", 100, grouped=False)


def test_damaged_file_is_one_error_naming_it_and_leaves_nothing(bundle, cells, tmp_path):
    bad = tmp_path / "damaged.h5ad"
    cells.write_h5ad(bad)
    with h5py.File(bad, "r+") as f:  # the second half of the matrix is gone
        n = f["X/indptr"][200]
        data = f["X/data"][:n]
        del f["X/data"]
        f["X/data"] = data
    out = tmp_path / "net.h5ad"
    with pytest.raises(InputError, match=r"could not read cells .* of '.*damaged.h5ad'"):
        sc.streamed_cells(bundle, bad, "hvg", 50, chunk_cells=150, progress=False)
    sc.STREAM_ABOVE_BYTES, before = 0, sc.STREAM_ABOVE_BYTES
    try:
        with pytest.raises(InputError, match="damaged.h5ad"):
            grn_file(bundle, bad, out, GRNOptions(method="spearman", n_genes=50), progress=False)
    finally:
        sc.STREAM_ABOVE_BYTES = before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.h5ad"]


def test_scratch_of_a_killed_run_is_cleared_and_said(bundle, cells, path, tmp_path, capsys):
    _, stream, cols = sc.streamed_cells(bundle, path, "hvg", 60, progress=False)
    stale = tmp_path / "net.h5ad.part"
    stale.mkdir()
    (stale / "data.bin").write_bytes(b"left by a killed run")
    stream.scratch = tmp_path / "net.h5ad"
    rows = np.arange(len(stream.kept_rows))
    net = stream.abs_correlation("spearman", rows, cols)
    assert "starting clean" in capsys.readouterr().err
    assert not stale.exists()
    prep = prepare_input(bundle, cells)
    logx = np.asarray(log_per_10k(prep.adata.X)[:, cols].toarray(), dtype=np.float32)
    assert np.abs(net - abs_spearman(logx)).max() < 1e-6
