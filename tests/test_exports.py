"""Edge tables for decoupler and pySCENIC (`networks.exports`, `grnformer export`), and decoupler reading one.

The lineage check runs decoupler's ULM on PBMC cells typed by `grnformer classify`. Measured on all of PBMC3k
(benchmarks/bench_decoupler_lineage.py, RESULTS.md "decoupler lineage"), the shipped model's networks do NOT make
SPI1 more active in monocytes or PAX5 in B cells, while GENIE3's and Omnipath's do. So this test asserts what is
true: the exported table round-trips, decoupler scores the grnformer network's lineage TFs, and the same chain
(export → TSV → decoupler) finds the lineage with a network that holds it (Omnipath exported through the same
writer) — so a failed lineage check of a grnformer network says something about the network, not the chain.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _tasks_support import pbmc
from bench_decoupler_lineage import (
    cell_groups,
    decoupler_activities,
    lineage_scores,
    network_genes,
    omnipath_table,
)

import grnformer as gf
from grnformer.cli import main
from grnformer.networks.exports import edge_table, export_file, top_edges, write_edges
from grnformer.networks.network_file import write_network

torch.set_num_threads(1)
TOP_K = 20


@pytest.fixture(scope="module")
def typed_cells():
    adata = pbmc(500, seed=1)
    model = gf.load("shipped", device="cpu", progress=False)
    model.classify(adata)
    return model, adata, cell_groups(adata)


@pytest.fixture(scope="module")
def network(typed_cells, tmp_path_factory):
    model, adata, _ = typed_cells
    genes = network_genes(adata, 200)
    net = model.grn(adata, genes=genes, n_genes=None)
    path = tmp_path_factory.mktemp("net") / "net.h5ad"
    write_network(net, path)
    return path


def _dense(m):
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def test_decoupler_table_round_trips(network, tmp_path):
    net = ad.read_h5ad(network)
    tfs = set(net.var_names[net.var["is_tf"].to_numpy(bool)])
    out = write_edges(net, tmp_path / "net.tsv", "decoupler", TOP_K, regulators="tfs")
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == ["source", "target", "weight"]
    assert set(table["source"]) <= tfs and (table["source"] != table["target"]).all()
    assert table.groupby("source").size().max() == TOP_K
    grn = _dense(net.varp["GRN"])
    idx = pd.Index(net.var_names)
    np.testing.assert_allclose(table["weight"], grn[idx.get_indexer(table["source"]), idx.get_indexer(table["target"])],
                               rtol=1e-5)
    for tf, rows in table.groupby("source"):  # each TF's kept targets are its strongest ones
        r = idx.get_loc(tf)
        scores = np.delete(grn[r], r)
        assert rows["weight"].min() >= np.sort(scores)[-TOP_K] * (1 - 1e-5)
    scenic = edge_table(net, "scenic", TOP_K, regulators="tfs")
    assert list(scenic.columns) == ["TF", "target", "importance"]
    np.testing.assert_allclose(scenic["importance"].to_numpy(), table["weight"].to_numpy(), rtol=1e-5)  # 6 digits


def test_perturb_exports_signed_weights(typed_cells, tmp_path):
    model, adata, _ = typed_cells
    ko = model.perturb(adata[:120].copy(), n_genes=60, max_regulators=3)
    edges = top_edges(ko, 10)
    effect = _dense(ko.varp["GRN_effect"])[edges.rows, edges.cols]
    table = edge_table(ko, "decoupler", 10)
    np.testing.assert_allclose(table["weight"], effect, rtol=1e-6)
    assert (table["weight"] < 0).any() and (table["weight"] > 0).any()  # the sign survives
    np.testing.assert_allclose(edge_table(ko, "scenic", 10)["importance"], np.abs(effect), rtol=1e-6)


def test_decoupler_scores_the_lineage_tfs(typed_cells, network, tmp_path):
    _, adata, groups = typed_cells
    assert {"monocyte", "B cell"} <= set(groups)
    path = export_file(network, tmp_path / "grnformer.tsv", "decoupler", TOP_K, "tfs")[0]
    scores = lineage_scores(decoupler_activities(adata, pd.read_csv(path, sep="\t")), groups)
    for tf in ("SPI1", "PAX5"):  # scored (>= 5 targets) and finite; whether they rise in their type: RESULTS.md
        assert scores[tf]["scored"] and np.isfinite([scores[tf]["mean_own"], scores[tf]["auroc"]]).all()
    print("grnformer network:", scores)

    # The chain finds the lineage when the network holds it: Omnipath through the same writer.
    net = ad.read_h5ad(network)
    truth = omnipath_table(net.var_names.tolist())
    idx = pd.Index(net.var_names)
    matrix = np.zeros((net.n_vars, net.n_vars), dtype=np.float32)
    matrix[idx.get_indexer(truth["source"]), idx.get_indexer(truth["target"])] = 1.0
    control = ad.AnnData(var=net.var.drop(columns=["is_regulator"], errors="ignore"), varp={"GRN": matrix})
    table = pd.read_csv(write_edges(control, tmp_path / "omnipath.tsv", "decoupler", 1000, "all"), sep="\t")
    assert len(table) == len(truth[truth["source"] != truth["target"]].drop_duplicates(["source", "target"]))
    spi1 = lineage_scores(decoupler_activities(adata, table), groups)["SPI1"]
    print("Omnipath control, SPI1:", spi1)
    assert spi1["mean_own"] > spi1["mean_rest"] and spi1["auroc"] > 0.75, spi1


def test_bad_inputs_leave_no_output(network, tmp_path):
    out = tmp_path / "out.tsv"
    for kwargs, message in ((dict(format="gmt"), "unknown export format 'gmt'"),
                            (dict(top_k=0), "top_k must be a whole number >= 1"),
                            (dict(top_k=2.5), "top_k must be a whole number"),
                            (dict(regulators="some"), "regulators must be one of")):
        with pytest.raises(gf.InputError, match=message):
            export_file(network, out, **{"format": "decoupler", "top_k": 5, **kwargs})
    with pytest.raises(gf.InputError, match="network file not found"):
        export_file(tmp_path / "missing.h5ad", out)
    plain = tmp_path / "plain.h5ad"
    ad.AnnData(np.ones((2, 3), dtype=np.float32)).write_h5ad(plain)
    with pytest.raises(gf.InputError, match=r"varp\['GRN'\] is missing"):
        export_file(plain, out)
    with pytest.raises(gf.InputError, match="does not exist"):
        export_file(network, tmp_path / "no" / "out.tsv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.h5ad"]


def test_cli_export(network, tmp_path, capsys):
    assert main(["export", str(network), str(tmp_path / "adj.csv"), "--format", "scenic", "--top-k", "3"]) == 0
    table = pd.read_csv(tmp_path / "adj.csv")
    assert list(table.columns) == ["TF", "target", "importance"] and table.groupby("TF").size().max() == 3
    assert main(["export", str(network), str(tmp_path / "x.tsv"), "--format", "bogus"]) == 2
    assert "unknown export format 'bogus'" in capsys.readouterr().err
    # a directory of per-group networks gives a directory of tables
    groups = tmp_path / "groups"
    groups.mkdir()
    for name in ("a", "b"):
        (groups / f"{name}.h5ad").write_bytes(network.read_bytes())
    assert main(["export", str(groups), str(tmp_path / "tables")]) == 0
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["a.tsv", "b.tsv"]
    assert not (tmp_path / "x.tsv").exists()
