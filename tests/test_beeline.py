"""BEELINE-format directories built from real data (McCalla's Chen hESC / Semrau mESC counts and gold standards),
benched end to end through the CLI with a baseline and the shipped model, scored in BEELINE's convention."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from grnformer import InputError
from grnformer.bench import beeline
from grnformer.bench.truths import load_truth
from grnformer.cli import main
from grnformer.data.corpus.datasets import load
from grnformer.data.genes import HUMAN, MOUSE


def write_beeline_dir(path, dataset: str, truth: str, upper: bool = False, pseudotime: bool = False):
    """A small BEELINE directory (8 regulators, 60 genes, 60 cells) of real counts and their gold standard."""
    gt = load_truth(truth)
    beeline.write_dir(path, load(dataset), gt, upper_case=upper, pseudotime=pseudotime)
    table = pd.read_csv(path / "ExpressionData.csv", index_col=0)
    genes = [g for g in load(dataset).var_names if g.upper() in set(table.index.str.upper())]
    order = {g.upper(): i for i, g in enumerate(table.index)}
    genes = sorted(genes, key=lambda g: order[g.upper()])
    edges = gt.edges[gt.edges["regulator"].isin(genes) & gt.edges["target"].isin(genes)]
    return path, genes, edges[edges["regulator"] != edges["target"]]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("beeline")
    hesc = write_beeline_dir(root / "hESC", "chen_hesc", "mccalla_hesc_chip_kd", pseudotime=True)
    mesc = write_beeline_dir(root / "mESC", "semrau_mesc", "mccalla_mesc_chip_kd", upper=True)
    return hesc, mesc


def test_load_reads_values_as_given_and_rebuilds_counts(dirs):
    (h_path, h_genes, h_edges), (m_path, m_genes, _) = dirs
    h = beeline.load(f"beeline:{h_path}")
    assert h.uns["transform"] == "given" and h.obs["organism_ontology_term_id"].iloc[0] == HUMAN
    table = pd.read_csv(h_path / "ExpressionData.csv", index_col=0)
    np.testing.assert_allclose(h.X.toarray(), table.to_numpy().T, rtol=1e-6)   # baselines read these values
    assert list(h.var_names) == h_genes and "beeline_PseudoTime" in h.obs
    assert np.all(h.layers["counts"].data == np.rint(h.layers["counts"].data))   # grnformer reads pseudo-counts
    ref = beeline.reference(h)
    assert len(ref) == len(h_edges) and set(ref.regulators) <= set(h_genes)
    # upper-cased mouse genes with the organism named: current symbols (Pou5f1, not POU5F1), same edges
    m = beeline.load(f"beeline:{m_path}:mouse")
    assert m.obs["organism_ontology_term_id"].iloc[0] == MOUSE
    assert list(m.var_names) == m_genes and list(m.var["beeline_name"]) == [g.upper() for g in m_genes]
    assert set(beeline.reference(m).genes) <= set(m_genes)


def test_scoring_follows_beeline_convention(dirs):
    (h_path, h_genes, h_edges), _ = dirs
    h = beeline.load(f"beeline:{h_path}")
    truth = beeline.reference(h)
    # a perfect network: every reference edge scores 1, all else 0
    import anndata as ad

    g = len(h_genes)
    perfect = truth.to_matrix(h_genes, h_genes).astype(np.float32)
    net = ad.AnnData(np.zeros((0, g), dtype=np.float32), var=pd.DataFrame(index=h_genes))
    net.varp["GRN"] = perfect
    res = beeline.score(net, truth, h_genes)
    n_regs = len(set(truth.regulators))
    assert res["universe"] == "beeline" and res["n_regulators"] == n_regs
    assert res["n_candidates"] == n_regs * g - n_regs        # regulators × all genes, self-edges out
    assert res["auprc"] == pytest.approx(1.0) and res["epr"] == pytest.approx(1 / res["random_precision"])
    assert res["auprc_ratio"] == pytest.approx(1 / res["random_precision"])
    # a gene missing from a network scores lowest, on the same candidates
    keep = [i for i, s in enumerate(h_genes) if s != h_genes[-1]]
    part = net[:, keep].copy()
    part.varp["GRN"] = perfect[np.ix_(keep, keep)]
    res2 = beeline.score(part, truth, h_genes)
    assert res2["n_candidates"] == res["n_candidates"] and res2["n_genes_missing_from_network"] == 1


def test_bench_cli_on_beeline_dirs_with_a_baseline_and_the_shipped_model(dirs, tmp_path):
    (h_path, h_genes, _), (m_path, m_genes, _) = dirs
    out = tmp_path / "bench"
    rc = main(["bench", "--methods", "pearson", "grnformer", "--datasets", f"beeline:{h_path}",
               f"beeline:{m_path}:mouse", "--out", str(out), "--checkpoint", "shipped"])
    assert rc == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["datasets"]["beeline_hESC"]["organism"] == HUMAN
    assert result["datasets"]["beeline_mESC"]["n_genes"] == len(m_genes)
    records = [r for r in result["records"] if r["universe"] == "beeline"]
    assert {(r["method"], r["dataset"]) for r in records} == {
        (m, d) for m in ("pearson", "grnformer") for d in ("beeline_hESC", "beeline_mESC")}
    for r in records:
        assert r["n_true"] > 0 and np.isfinite(float(r["epr"])) and np.isfinite(float(r["auprc_ratio"]))
    # every method is scored on the same candidates of a data set
    for d in ("beeline_hESC", "beeline_mESC"):
        assert len({r["n_candidates"] for r in records if r["dataset"] == d}) == 1
    assert "beeline_hESC_reference" in result["truths"]
    assert "universe `beeline`" in (out / "results.md").read_text()


def test_bad_beeline_dirs_are_input_errors(tmp_path, capsys):
    with pytest.raises(InputError, match="does not exist"):
        beeline.load(f"beeline:{tmp_path / 'nope'}")
    (tmp_path / "half").mkdir()
    pd.DataFrame({"c1": [1.0]}, index=["SOX2"]).to_csv(tmp_path / "half" / "ExpressionData.csv")
    with pytest.raises(InputError, match="refNetwork.csv missing"):
        beeline.load(f"beeline:{tmp_path / 'half'}")
    pd.DataFrame({"from": ["SOX2"], "to": ["NANOG"]}).to_csv(tmp_path / "half" / "refNetwork.csv", index=False)
    with pytest.raises(InputError, match="Gene1"):
        beeline.load(f"beeline:{tmp_path / 'half'}:human")
    rc = main(["bench", "--methods", "pearson", "--datasets", f"beeline:{tmp_path / 'nope'}", "--out",
               str(tmp_path / "o")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
