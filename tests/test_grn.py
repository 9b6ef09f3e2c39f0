"""Networks from attention on real PBMC cells with a tiny random-init model: the Q̄K̄ network against a brute-force
recomputation from the model's own q/k, the per-cell variant, memory independent of the number of cells,
per-group networks, filters, atomic files and bad inputs."""

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _tasks_support import CONTEXT, pbmc, run_grn, run_grn_file, tiny_bundle

import grnformer.networks.dispatch as dispatch_mod
import grnformer.networks.network_file as network_file_mod
from grnformer import InputError
from grnformer.bench.grnformer_method import benchmark_method
from grnformer.data.genes import tf_symbols
from grnformer.data.input.prepare import prepare
from grnformer.inference.outputs import write_h5ad


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    return pbmc(48)


def brute_force(bundle, adata, gene_ids, direction="kq", centre_q=True):
    """Mean over cells of each gene's q and k, taken one cell and one context at a time straight from the
    model, then softmax(Q̄K̄ᵀ/√d) per head (Q̄ centred over the genes, the default correction), averaged over all
    heads."""
    prepared, _ = prepare(adata, vocab=bundle.vocab)
    x = prepared[:, list(gene_ids)].X.toarray()
    depth = np.asarray(prepared.X.sum(axis=1)).ravel()
    tokens = bundle.vocab.index(gene_ids)
    chunks = np.array_split(np.arange(len(tokens)), math.ceil(len(tokens) / bundle.config.context_length))
    c = bundle.config
    q_sum = torch.zeros(c.n_layers, c.n_heads, len(tokens), c.d_head, dtype=torch.float64)
    k_sum = torch.zeros_like(q_sum)
    with torch.no_grad():
        for i in range(prepared.n_obs):
            for chunk in chunks:
                out = bundle.model(torch.as_tensor(tokens[chunk])[None], torch.as_tensor(x[i, chunk])[None],
                                   torch.tensor([depth[i]], dtype=torch.float32), return_qk=True)
                for layer, (q, k) in enumerate(out.qk):
                    q_sum[layer][:, chunk] += q[0].double()
                    k_sum[layer][:, chunk] += k[0].double()
    q_bar, k_bar = q_sum / prepared.n_obs, k_sum / prepared.n_obs
    if centre_q:
        q_bar = q_bar - q_bar.mean(dim=2, keepdim=True)
    maps = torch.softmax(q_bar @ k_bar.transpose(-1, -2) / math.sqrt(c.d_head), dim=-1)
    net = maps.mean(dim=(0, 1)).numpy()
    return net.T if direction == "kq" else net


@pytest.mark.parametrize("n_genes", [40, 100])  # one context, then two contexts of 50 genes (context 64)
def test_mean_qk_network_equals_brute_force(bundle, cells, n_genes):
    cells = cells[:20].copy()
    net = run_grn(bundle, cells, genes="hvg", n_genes=n_genes, batch_size=8, correction="centre_q", progress=False)
    assert net.varp["GRN"].shape == (n_genes, n_genes) and net.n_obs == cells.n_obs
    assert net.uns["grn"]["n_contexts_per_cell"] == math.ceil(n_genes / CONTEXT)
    expected = brute_force(bundle, cells, net.var["gene_id"].to_numpy())
    np.testing.assert_allclose(net.varp["GRN"], expected, rtol=1e-4, atol=1e-7)
    # 'qk' is the transpose; each query row of a softmax map sums to one, so 'qk' rows sum to one
    qk = run_grn(bundle, cells, genes=list(net.var["gene_id"]), direction="qk", correction="centre_q", progress=False)
    np.testing.assert_allclose(qk.varp["GRN"], expected.T, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(qk.varp["GRN"].sum(axis=1), 1.0, rtol=1e-5)
    raw = run_grn(bundle, cells, genes=list(net.var["gene_id"]), progress=False)  # the default: no correction
    raw_expected = brute_force(bundle, cells, net.var["gene_id"].to_numpy(), centre_q=False)
    np.testing.assert_allclose(raw.varp["GRN"], raw_expected, rtol=1e-4, atol=1e-7)
    assert not np.allclose(raw_expected, expected, rtol=1e-3)  # the correction changes the network
    assert raw.uns["grn"]["correction"] == "none" and net.uns["grn"]["correction"] == "centre_q"


def test_network_annotations(bundle, cells):
    net = run_grn(bundle, cells, genes="hvg", n_genes=60, progress=False)
    symbols = net.var["symbol"].to_numpy()
    assert list(net.var_names) == list(symbols)  # PBMC symbols are unique among these genes
    assert net.var["gene_id"].str.startswith("ENSG").all()
    np.testing.assert_array_equal(net.var["is_tf"], np.isin(symbols, list(tf_symbols("human"))))
    assert (net.var["n_cells"] == cells.n_obs).all()
    raw = prepare(cells)[0][:, list(net.var["gene_id"])].X.toarray()
    np.testing.assert_array_equal(net.X.toarray(), raw)  # X: the cells' counts of the network genes
    assert net.uns["grn"]["direction"] == "kq" and net.uns["grn"]["heads"] == "mean"


def test_per_cell_variant_matches_on_one_cell_and_differs_on_many(bundle, cells):
    genes = list(run_grn(bundle, cells, genes="most_expressed", n_genes=30, progress=False).var["gene_id"])
    one = cells[:1].copy()
    a = run_grn(bundle, one, genes=genes, method="mean_qk", progress=False).varp["GRN"]
    b = run_grn(bundle, one, genes=genes, method="per_cell", progress=False).varp["GRN"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    many_mean = run_grn(bundle, cells, genes=genes, method="mean_qk", progress=False).varp["GRN"]
    many_cell = run_grn(bundle, cells, genes=genes, method="per_cell", direction="qk", progress=False).varp["GRN"]
    np.testing.assert_allclose(many_cell.sum(axis=1), 1.0, rtol=1e-5)  # an average of softmax rows
    assert not np.allclose(many_mean, many_cell.T, rtol=1e-3)  # averaging maps != map of averages
    with pytest.raises(InputError, match="per_cell"):
        run_grn(bundle, cells, genes="hvg", n_genes=CONTEXT + 1, method="per_cell", progress=False)


@pytest.fixture
def accumulators(monkeypatch):
    """Every MeanQK accumulator grn() creates during the test, in creation order."""
    made = []

    class Spy(dispatch_mod.MeanQK):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(dispatch_mod, "MeanQK", Spy)
    return made


def test_accumulator_memory_does_not_grow_with_cells(bundle, accumulators):
    made = accumulators
    small, large = pbmc(8, seed=1), pbmc(96, seed=2)
    genes = list(run_grn(bundle, small, genes="most_expressed", n_genes=50, progress=False).var["gene_id"])
    made.clear()
    for adata in (small, large):
        run_grn(bundle, adata, genes=genes, batch_size=8, progress=False)
    sizes = [[tuple(t.shape) for t in (m.q_sum, m.k_sum, m.n_cells)] for m in made]
    assert sizes[0] == sizes[1] == [(2, 2, 50, 16), (2, 2, 50, 16), (50,)]
    assert made[0].n_cells.max() == 8 and made[1].n_cells.max() == 96


def test_random_expressed_counts_cells_per_gene(bundle, cells):
    # contexts of 64 genes drawn among ~800 expressed genes: each network gene is seen in a few cells only
    net = run_grn(bundle, cells, genes="random_expressed", n_genes=80, progress=False)
    n = net.var["n_cells"].to_numpy()
    m = net.varp["GRN"]
    assert m.shape == (80, 80) and n.max() < cells.n_obs and n.sum() > 80
    seen = n > 0
    assert (m[~seen] == 0).all() and (m[:, ~seen] == 0).all()  # genes never drawn have no edges
    np.testing.assert_allclose(m[:, seen].sum(axis=0), 1.0, rtol=1e-5)  # 'kq': columns are softmax rows


def test_per_group_networks_equal_networks_of_each_subset(bundle, cells):
    adata = cells.copy()
    adata.obs["half"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 3 == 0, "A", "B"), ["A", "B", "C"])
    nets = run_grn(bundle, adata, genes="hvg", n_genes=40, groupby="half", progress=False)
    assert set(nets) == {"A", "B"}  # the unused category C has no cells and no network
    genes = nets["A"].var["gene_id"].to_numpy()  # any sequence of names, numpy arrays included
    assert list(genes) == list(nets["B"].var["gene_id"])  # genes are chosen once over all cells
    for g, net in nets.items():
        subset = adata[adata.obs["half"] == g].copy()
        assert net.n_obs == subset.n_obs and net.uns["grn"]["group"] == g
        alone = run_grn(bundle, subset, genes=genes, progress=False)
        np.testing.assert_allclose(net.varp["GRN"], alone.varp["GRN"], rtol=1e-5, atol=1e-8)
    assert not np.allclose(nets["A"].varp["GRN"], nets["B"].varp["GRN"])


def three_groups(cells):
    """Groups A, B, C by row, and a few cells in no group (NaN)."""
    adata = cells.copy()
    labels = np.array(["A", "B", "C"], dtype=object)[np.arange(adata.n_obs) % 3]
    labels[:4] = None
    adata.obs["type"] = pd.Categorical(labels, ["A", "B", "C"])
    return adata


@pytest.mark.parametrize("method, n_genes, max_cells", [("mean_qk", 100, None), ("mean_qk", 40, 6),
                                                        ("per_cell", 40, None)])
def test_one_pass_equals_group_by_group_and_all_equals_ungrouped(bundle, cells, method, n_genes, max_cells):
    adata = three_groups(cells)
    kw = dict(genes="hvg", n_genes=n_genes, method=method, max_cells=max_cells, batch_size=8, progress=False)
    apart = run_grn(bundle, adata, groupby="type", groups=["C", "A"], **kw)
    together = run_grn(bundle, adata, groupby="type", groups=["C", "A"], include_all=True, **kw)
    assert list(together) == ["C", "A", "all"]
    for g in ("C", "A"):
        assert list(together[g].obs_names) == list(apart[g].obs_names)  # max_cells draws the same cells
        np.testing.assert_allclose(together[g].varp["GRN"], apart[g].varp["GRN"], rtol=1e-5, atol=1e-8)
        assert together[g].n_obs == (max_cells or {"C": 15, "A": 14}[g])
    # 'all': C, A and the cells in neither (B and the unlabelled ones; at most max_cells of those)
    everyone = together["all"]
    assert everyone.n_obs == (3 * max_cells if max_cells else cells.n_obs)
    assert everyone.uns["grn"]["group"] == "all" and everyone.uns["grn"]["n_cells"] == everyone.n_obs
    alone = run_grn(bundle, adata[everyone.obs_names].copy(), **{**kw, "genes": list(everyone.var["gene_id"]),
                                                              "max_cells": None})
    np.testing.assert_allclose(everyone.varp["GRN"], alone.varp["GRN"], rtol=1e-5, atol=1e-8)
    np.testing.assert_array_equal(everyone.var["n_cells"], alone.var["n_cells"])


def test_include_all_with_no_group_selected_gives_the_all_cells_network(bundle, cells):
    """The demo asks for the types with enough cells; on a small input there may be none."""
    kw = dict(genes="hvg", n_genes=20, batch_size=8, progress=False)
    nets = run_grn(bundle, three_groups(cells), groupby="type", groups=[], include_all=True, **kw)
    assert list(nets) == ["all"] and nets["all"].n_obs == cells.n_obs
    np.testing.assert_allclose(nets["all"].varp["GRN"], run_grn(bundle, cells, **kw).varp["GRN"], rtol=1e-5, atol=1e-8)


def test_one_pass_keeps_one_accumulator_per_group(bundle, cells, accumulators):
    made = accumulators
    nets = run_grn(bundle, three_groups(cells), genes="hvg", n_genes=20, groupby="type", one_pass=True, progress=False)
    assert sorted(nets) == ["A", "B", "C"] and len(made) == 3
    assert [int(m.n_cells.max()) for m in made] == [net.n_obs for net in nets.values()]  # groups in order met
    with pytest.raises(InputError, match="needs groupby"):
        run_grn(bundle, cells, genes="hvg", n_genes=20, include_all=True, progress=False)
    adata = cells.copy()
    adata.obs["type"] = np.where(np.arange(adata.n_obs) < 10, "all", "other")
    with pytest.raises(InputError, match="group named 'all'"):
        run_grn(bundle, adata, genes="hvg", n_genes=20, groupby="type", include_all=True, progress=False)


def counted_networks(monkeypatch, fail_at=None):
    """Count the networks grn_file computes; with ``fail_at``, that one (1-based) dies like a killed job."""
    calls = []
    real = dispatch_mod.form_network

    def network(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == fail_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatch_mod, "form_network", network)
    return calls


def test_interrupted_grouped_run_resumes_with_only_the_missing_groups(bundle, cells, tmp_path, monkeypatch):
    src = tmp_path / "in.h5ad"
    three_groups(cells).write_h5ad(src)
    out = tmp_path / "nets"
    kw = dict(groupby="type", genes="hvg", n_genes=30, max_cells=10, csv=True, progress=False)
    expected = run_grn(bundle, three_groups(cells), groupby="type", genes="hvg", n_genes=30, max_cells=10,
                   progress=False)
    counted_networks(monkeypatch, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_grn_file(bundle, src, out, **kw)
    # groups run in the order met in obs (B, C, A): B is complete, C died, A never started; no .part files
    assert sorted(p.name for p in out.iterdir()) == ["B.csv", "B.h5ad"]
    first = (out / "B.h5ad").stat().st_mtime_ns
    calls = counted_networks(monkeypatch)
    paths = run_grn_file(bundle, src, out, **kw)
    assert calls == ["C", "A"] and (out / "B.h5ad").stat().st_mtime_ns == first
    assert sorted(p.name for p in paths) == sorted(p.name for p in out.iterdir()) == \
        ["A.csv", "A.h5ad", "B.csv", "B.h5ad", "C.csv", "C.h5ad"]
    for g, net in expected.items():  # the resumed groups are the networks an uninterrupted run makes
        stored = ad.read_h5ad(out / f"{g}.h5ad")
        assert list(stored.obs_names) == list(net.obs_names)
        np.testing.assert_allclose(stored.varp["GRN"], net.varp["GRN"], rtol=1e-6)
    run_grn_file(bundle, src, out, **kw)
    assert calls == ["C", "A"]  # nothing left to do


def test_resume_refuses_other_settings_unless_overwrite(bundle, cells, tmp_path, monkeypatch):
    src = tmp_path / "in.h5ad"
    three_groups(cells).write_h5ad(src)
    out = tmp_path / "nets"
    kw = dict(groupby="type", genes="hvg", n_genes=20, progress=False)
    run_grn_file(bundle, src, out, **kw)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    calls = counted_networks(monkeypatch)
    for other, says in ((dict(direction="qk"), "direction: kq there, qk now"),
                        (dict(n_genes=25), "n_genes: 20 there, 25 now; the network genes"),
                        (dict(keep_heads=True), "keep_heads: False there, True now"),
                        (dict(max_cells=5), "n_cells: 15 there, 5 now")):
        with pytest.raises(InputError, match=f"B.h5ad' holds a network made with other settings .*{says}.*"
                                             f"--overwrite"):
            run_grn_file(bundle, src, out, **{**kw, **other})
    assert calls == [] and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    run_grn_file(bundle, src, out, csv=True, **kw)  # same networks, CSVs missing: made now
    assert calls == ["B", "C", "A"] and len(list(out.glob("*.csv"))) == 3
    run_grn_file(bundle, src, out, overwrite=True, **{**kw, "direction": "qk"})
    assert calls == ["B", "C", "A"] * 2 and ad.read_h5ad(out / "B.h5ad").uns["grn"]["direction"] == "qk"
    ad.AnnData(np.ones((2, 2), dtype=np.float32)).write_h5ad(tmp_path / "plain.h5ad")
    with pytest.raises(InputError, match="not a grnformer network"):
        run_grn_file(bundle, src, tmp_path / "plain.h5ad", genes="hvg", n_genes=20, progress=False)


def test_filters_and_symmetrise(bundle, cells):
    kw = dict(genes="hvg", n_genes=40, progress=False)
    dense = run_grn(bundle, cells, **kw).varp["GRN"]
    top = run_grn(bundle, cells, filter="topk", top_k=5, **kw).varp["GRN"]
    assert sp.issparse(top) and (np.diff(top.indptr) == 5).all()
    np.testing.assert_allclose(top.toarray().max(axis=1), dense.max(axis=1), rtol=1e-6)
    kth = np.sort(dense, axis=1)[:, -5]
    assert (top.toarray()[top.toarray() > 0] >= np.repeat(kth, 5) - 1e-9).all()
    above = run_grn(bundle, cells, filter="above_uniform", **kw)
    assert above.uns["grn"]["uniform_level"] == pytest.approx(1 / 40)
    np.testing.assert_allclose(above.varp["GRN"].toarray(), np.where(dense > 1 / 40, dense, 0), rtol=1e-6)
    sym = run_grn(bundle, cells, symmetrise=True, **kw).varp["GRN"]
    np.testing.assert_allclose(sym, (dense + dense.T) / 2, rtol=1e-5)


def test_keep_heads_cube_averages_to_the_network(bundle, cells):
    net = run_grn(bundle, cells, genes="hvg", n_genes=30, keep_heads=True, progress=False)
    cube = net.uns["grn_heads"]
    assert cube.shape == (4, 30, 30) and net.uns["grn_head_names"] == ["L0H0", "L0H1", "L1H0", "L1H1"]
    np.testing.assert_allclose(cube.mean(axis=0), net.varp["GRN"], rtol=1e-5)


def test_grn_file_writes_readable_h5ad_and_sorted_csv(bundle, cells, tmp_path):
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    out = tmp_path / "net.h5ad"
    paths = run_grn_file(bundle, src, out, csv=True, genes="hvg", n_genes=30, filter="topk", top_k=4, progress=False)
    assert sorted(p.name for p in paths) == ["net.csv", "net.h5ad"]
    net = ad.read_h5ad(out)
    assert net.varp["GRN"].shape == (30, 30) and net.var["is_tf"].dtype == bool
    assert net.uns["grn"]["top_k"] == 4 and net.uns["grn"]["groupby"] == "none"
    edges = pd.read_csv(tmp_path / "net.csv")
    assert list(edges.columns) == ["regulator", "target", "score"]
    assert (np.diff(edges["score"].to_numpy()) <= 0).all() and len(edges) <= 30 * 4
    assert not (edges["regulator"] == edges["target"]).any()
    m = net.varp["GRN"].toarray()
    names = list(net.var_names)
    r = edges.iloc[0]
    assert m[names.index(r.regulator), names.index(r.target)] == pytest.approx(r.score, rel=1e-5)
    assert not list(tmp_path.glob("*.part"))
    # per group: one file per group in a directory, names made file-safe
    adata = cells.copy()
    adata.obs["type"] = np.where(np.arange(adata.n_obs) < 20, "CL:0000236", "T cell/NK")
    adata.write_h5ad(src)
    paths = run_grn_file(bundle, src, tmp_path / "groups", groupby="type", genes="hvg", n_genes=20, progress=False)
    assert sorted(p.name for p in paths) == ["CL_0000236.h5ad", "T_cell_NK.h5ad"]


def test_failure_mid_write_leaves_no_output(bundle, cells, tmp_path, monkeypatch):
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)

    def broken_csv(net, max_edges):
        def write(part):
            part.write_text("regulator,target,score\nA,B,")  # half a file, then the disk "fills up"
            raise OSError("No space left on device")
        return write

    monkeypatch.setattr(network_file_mod, "csv_writer", broken_csv)
    with pytest.raises(OSError, match="No space"):
        run_grn_file(bundle, src, tmp_path / "net.h5ad", csv=True, genes="hvg", n_genes=20, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]  # neither the h5ad nor any .part


def test_write_h5ad_is_atomic(tmp_path, monkeypatch):
    adata = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    write_h5ad(adata, tmp_path / "a.h5ad")
    before = (tmp_path / "a.h5ad").read_bytes()
    adata.uns["bad"] = object()  # h5py cannot store it: the write fails after the part file was opened
    with pytest.raises(Exception):
        write_h5ad(adata, tmp_path / "a.h5ad")
    assert (tmp_path / "a.h5ad").read_bytes() == before and not list(tmp_path.glob("*.part"))


def test_bad_inputs_raise_input_error_before_writing(bundle, cells, tmp_path):
    with pytest.raises(InputError, match="NOTAGENE1, NOTAGENE2"):
        run_grn(bundle, cells, genes=["CD3E", "NOTAGENE1", "NOTAGENE2"], progress=False)
    with pytest.raises(InputError, match="groupby column 'celltype'"):
        run_grn(bundle, cells, genes="hvg", n_genes=20, groupby="celltype", progress=False)
    adata = cells.copy()
    adata.obs["type"] = "T"
    with pytest.raises(InputError, match="no cells.*B cell"):
        run_grn(bundle, adata, genes="hvg", n_genes=20, groupby="type", groups=["T", "B cell"], progress=False)
    adata.obs["type"] = np.nan
    with pytest.raises(InputError, match="all missing"):
        run_grn(bundle, adata, genes="hvg", n_genes=20, groupby="type", progress=False)
    for bad in (dict(direction="up"), dict(filter="top"), dict(method="exact"), dict(genes="variable"),
                dict(filter="topk", top_k=0), dict(n_genes=1), dict(correction="apc")):
        with pytest.raises(InputError):
            run_grn(bundle, cells, **{"genes": "hvg", "n_genes": 20, "progress": False, **bad})
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    with pytest.raises(InputError, match="NOTAGENE"):
        run_grn_file(bundle, src, tmp_path / "net.h5ad", csv=True, genes="CD3E,NOTAGENE,NOTAGENE2", progress=False)
    with pytest.raises(InputError, match="does not exist"):
        run_grn_file(bundle, tmp_path / "missing.h5ad", tmp_path / "net.h5ad", progress=False)
    with pytest.raises(InputError, match="does not exist"):
        run_grn_file(bundle, src, tmp_path / "no" / "net.h5ad", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]


def test_benchmark_method_restricts_rows_to_regulators(bundle, cells):
    genes = ["CD3E", "LYZ", "MS4A1", "CD14", "NKG7", "SPI1"]
    full = run_grn(bundle, cells, genes=genes, progress=False)
    net = benchmark_method(cells, genes, regulators=["SPI1", "NOT_IN_NETWORK"], checkpoint=bundle, method="mean_qk")
    assert list(net.var_names) == genes and net.var["is_regulator"].tolist() == [False] * 5 + [True]
    np.testing.assert_allclose(net.varp["GRN"][5], full.varp["GRN"][5], rtol=1e-6)
    assert (net.varp["GRN"][:5] == 0).all()


def test_contrast_is_each_group_minus_the_all_cells_network(bundle, cells, tmp_path):
    adata = three_groups(cells)
    kw = dict(genes="hvg", n_genes=30, groupby="type", groups=["A", "C"], batch_size=8)
    plain = run_grn(bundle, adata, include_all=True, **kw)
    contrast = run_grn(bundle, adata, contrast=True, **kw)
    assert list(contrast) == ["A", "C"] and contrast["A"].uns["grn"]["contrast"] is True
    for g in ("A", "C"):
        np.testing.assert_allclose(contrast[g].varp["GRN"], plain[g].varp["GRN"] - plain["all"].varp["GRN"],
                                   rtol=1e-5, atol=1e-7)
    above = run_grn(bundle, adata, contrast=True, filter="above_uniform", **kw)["A"].varp["GRN"].toarray()
    np.testing.assert_array_equal(above > 0, contrast["A"].varp["GRN"] > 0)  # kept: stronger in the group
    src = tmp_path / "in.h5ad"
    adata.write_h5ad(src)
    paths = run_grn_file(bundle, src, tmp_path / "nets", contrast=True, **kw)
    stored = ad.read_h5ad(paths[0])
    np.testing.assert_allclose(stored.varp["GRN"], contrast["A"].varp["GRN"], rtol=1e-6)
    for bad in (dict(groupby=None, groups=None), dict(method="perturb"), dict(n_bootstrap=2), dict(keep_heads=True)):
        with pytest.raises(InputError, match="contrast"):
            run_grn(bundle, adata, contrast=True, **{**kw, **bad})


def test_regulators_default_to_the_organisms_tfs(bundle, cells):
    """Without being asked, only TFs regulate: non-TF rows are zero, the TF rows are the all-rows network's."""
    from grnformer.networks.grn import GRNOptions, grn

    genes = ["CD3E", "LYZ", "MS4A1", "SPI1", "PAX5", "NKG7", "TCF7"]
    every = run_grn(bundle, cells, genes=genes, method=GRNOptions().method)
    net = grn(bundle, cells, GRNOptions(genes=genes), progress=False)
    tf = net.var["is_tf"].to_numpy()
    assert net.uns["grn"]["regulators"] == "tfs" and tf.tolist() == [False, False, False, True, True, False, True]
    assert (net.var["is_regulator"].to_numpy() == tf).all()
    assert (net.varp["GRN"][~tf] == 0).all() and (net.varp["GRN"][tf] > 0).any()
    np.testing.assert_allclose(net.varp["GRN"][tf], every.varp["GRN"][tf], rtol=1e-6)
    named = grn(bundle, cells, GRNOptions(genes=genes, regulators=["lyz", "PAX5"]), progress=False)
    assert named.var_names[named.var["is_regulator"].to_numpy()].tolist() == ["LYZ", "PAX5"]


def test_regulators_that_cannot_be_rows_are_refused(bundle, cells):
    from grnformer.networks.grn import GRNOptions, grn

    with pytest.raises(InputError, match="transcription factor"):
        grn(bundle, cells, GRNOptions(genes=["CD3E", "LYZ", "MS4A1"]), progress=False)
    with pytest.raises(InputError, match="given regulators"):
        grn(bundle, cells, GRNOptions(genes=["CD3E", "LYZ", "SPI1"], regulators=["GATA1"]), progress=False)


def test_hvg_plus_tfs_adds_the_variable_tfs(bundle, cells):
    from grnformer.data.genes import tf_symbols
    from grnformer.inference.gene_sets import select_genes
    from grnformer.inference.prepared import prepare_input

    prep = prepare_input(bundle, cells)
    hvg = select_genes(prep, "hvg", 300)
    both = select_genes(prep, "hvg+tfs", 300)
    symbols = prep.adata.var["symbol"].astype(str).to_numpy()
    extra = both[300:]
    assert (both[:300] == hvg).all() and len(extra) > 0
    assert set(symbols[extra]) <= tf_symbols(prep.organism)
    assert set(extra) <= set(select_genes(prep, "hvg", 600)[300:])


def test_a_long_gene_list_on_the_cli_is_names_not_a_file():
    from grnformer.inference.gene_sets import parse_gene_option

    names = [f"GENE{i}" for i in range(400)]
    assert parse_gene_option(",".join(names), ("hvg",)) == names
