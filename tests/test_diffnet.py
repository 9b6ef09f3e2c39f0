"""Differential networks on real control / interferon-beta PBMCs with a tiny model: the two networks are grn()'s,
q-values are Benjamini-Hochberg of the p-values, a random split of one condition finds nothing, files and CLI,
bad inputs."""

import numpy as np
import pandas as pd
import pytest
from _tasks_support import run_grn, tiny_bundle
from scipy.stats import false_discovery_control

from grnformer import InputError
from grnformer.cli import main
from grnformer.data.corpus import datasets
from grnformer.networks.diffnet import diffnet, diffnet_file
from grnformer.networks.grn_options import DiffNetOptions


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    full = datasets.load("pbmc_ifnb")
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(full.obs["condition"] == c), 24, replace=False)
                           for c in ("control", "interferon-beta")])
    return full[np.sort(rows)].copy()


def test_diffnet_networks_are_grn_networks_and_q_values_are_bh(bundle, cells):
    opts = DiffNetOptions(n_genes=20, max_cells=None, n_permutations=30, cells_per_block=3, batch_size=8,
                          regulators="all")
    table, summary = diffnet(bundle, cells, "condition", "control", "interferon-beta", opts, progress=False)
    assert len(table) == 20 * 19 == summary["edges_tested"] and summary["blocks_a"] == 8
    for group, column in (("control", "score_a"), ("interferon-beta", "score_b")):
        net = run_grn(bundle, cells[cells.obs["condition"] == group].copy(),
                      genes=list(run_grn(bundle, cells, genes="hvg", n_genes=20).var["gene_id"]))
        names = list(net.var_names)
        got = net.varp["GRN"][[names.index(r) for r in table.regulator], [names.index(t) for t in table.target]]
        np.testing.assert_allclose(table[column], got, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(table["diff"], table.score_a - table.score_b, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(table["q_value"], false_discovery_control(table["p_value"]))
    assert (np.diff(table["p_value"]) >= 0).all()
    assert ((table.p_permutation >= 1 / 31) & (table.p_permutation <= 1)).all()


def test_random_split_of_one_condition_changes_nothing(bundle, cells):
    control = cells[cells.obs["condition"] == "control"].copy()
    control.obs["half"] = np.where(np.arange(control.n_obs) % 2, "x", "y")
    table, summary = diffnet(bundle, control, "half", "x", "y",
                             DiffNetOptions(n_genes=20, n_permutations=50, cells_per_block=1, regulators="all"),
                             progress=False)
    assert summary["max_attainable_z"] > 4.5  # enough blocks that an edge could pass: the null has teeth
    assert summary["changed_edges"] == 0 and table["q_value"].min() > 0.1


def test_diffnet_files_cli_and_bad_inputs(bundle, cells, tmp_path, capsys):
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    opts = DiffNetOptions(n_genes=20, n_permutations=20, regulators="all")
    paths = diffnet_file(bundle, src, tmp_path / "out", "condition", "control", "interferon-beta", opts,
                         progress=False)
    assert sorted(p.name for p in paths) == ["edges.csv", "report.html"]
    edges = pd.read_csv(tmp_path / "out" / "edges.csv")
    assert list(edges.columns[:5]) == ["regulator", "target", "score_a", "score_b", "diff"] and len(edges) == 380
    assert "<img" in (tmp_path / "out" / "report.html").read_text() or "No edge to draw" in \
        (tmp_path / "out" / "report.html").read_text()
    for args, says in (((src, tmp_path / "o2", "condition", "control", "control"), "must differ"),
                       ((src, tmp_path / "o3", "condition", "control", "IFN"), "IFN"),
                       ((src, tmp_path / "o4", "cond", "control", "interferon-beta"), "cond")):
        with pytest.raises(InputError, match=says):
            diffnet_file(bundle, *args, opts, progress=False)
        assert not args[1].exists()
    with pytest.raises(InputError, match="fdr"):
        DiffNetOptions(fdr=1.5).validate()
    code = main(["diffnet", "shipped", str(src), "--groupby", "condition", "control", "interferon-beta", "--out",
                 str(tmp_path / "cli"), "--n-genes", "20", "--n-permutations", "10", "--fdr", "2"])
    assert code == 2 and "fdr" in capsys.readouterr().err and not (tmp_path / "cli").exists()


def test_diffnet_tests_only_regulator_rows(bundle, cells):
    """By default only the organism's TFs are tested as regulators, as grn's rows."""
    genes = ["ISG15", "IFI6", "MX1", "LYZ", "CD74", "STAT1", "IRF7", "SPI1", "CD3E", "NKG7"]
    table, summary = diffnet(bundle, cells, "condition", "control", "interferon-beta",
                             DiffNetOptions(genes=genes, n_permutations=20), progress=False)
    assert set(table["regulator"]) == {"STAT1", "IRF7", "SPI1"} and summary["n_regulators"] == 3
    assert len(table) == 3 * 9 == summary["edges_tested"]


def test_diffnet_says_when_no_edge_can_pass(bundle, cells):
    """Two blocks per group: the permutation z cannot exceed √3, so no edge can pass BH; the user is told."""
    with pytest.warns(UserWarning, match="largest attainable z"):
        _, summary = diffnet(bundle, cells, "condition", "control", "interferon-beta",
                             DiffNetOptions(n_genes=20, max_cells=4, cells_per_block=2, n_permutations=10,
                                            regulators="all"), progress=False)
    assert summary["max_attainable_z"] == pytest.approx(3 ** 0.5) and summary["changed_edges"] == 0
