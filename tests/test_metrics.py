"""score_network against scikit-learn, hand-computed cases, a numerical integral, and a real network."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from grnformer import InputError
from grnformer.bench.baselines import infer, select_genes
from grnformer.bench.network_scores import score_network
from grnformer.bench.truths import load_truth
from grnformer.data.corpus.datasets import load


def _named(n_rows: int, n_cols: int) -> tuple[list[str], list[str]]:
    return [f"r{i}" for i in range(n_rows)], [f"c{i}" for i in range(n_cols)]


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_ap_and_auroc_equal_sklearn_on_random_networks(decimals):
    rng = np.random.default_rng(1)
    s = rng.random((40, 70))
    if decimals is not None:
        s = np.round(s, decimals)                       # heavy ties (decimals=0: two distinct scores)
    y = rng.random((40, 70)) < 0.03 + 0.15 * rng.random((40, 70)) * (s > 0.5)
    rows, cols = _named(40, 70)
    r = score_network(s, y, regulators=rows, targets=cols)
    assert r["ap"] == pytest.approx(average_precision_score(y.ravel(), s.ravel()), abs=1e-12)
    assert r["auroc"] == pytest.approx(roc_auc_score(y.ravel(), s.ravel()), abs=1e-12)
    assert r["n_true"] == int(y.sum()) and r["n_candidates"] == y.size
    assert r["random_precision"] == pytest.approx(y.mean())


def _numeric_interpolated_area(scores: np.ndarray, labels: np.ndarray, steps: int = 20_000) -> float:
    """The same curve as `auprc`, integrated numerically: walk each tied block along a straight TP/FP line."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    n_pos = y.sum()
    tp = fp = 0.0
    area = 0.0
    for value in np.unique(s)[::-1]:
        block = s == value
        t, f = y[block].sum(), (~y[block]).sum()
        if t:
            u = (np.arange(steps) + 0.5) / steps        # midpoint rule along the block
            prec = (tp + u * t) / (tp + fp + u * (t + f))
            area += prec.mean() * t / n_pos
        tp, fp = tp + t, fp + f
    return float(area)


def test_auprc_is_the_interpolated_area_in_closed_form():
    rng = np.random.default_rng(2)
    s = np.round(rng.random(600), 1)
    y = rng.random(600) < 0.1 + 0.3 * s
    r = score_network(s[None, :], y[None, :], regulators=["a"], targets=[f"t{i}" for i in range(600)])
    assert r["auprc"] == pytest.approx(_numeric_interpolated_area(s, y), rel=1e-6)
    assert abs(r["auprc"] - r["ap"]) < 0.02                # same curve up to interpolation inside blocks


def test_hand_computed_tiny_case():
    # ranking: TP, FP, TP, FP (no ties); 2 positives among 4
    s = np.array([[0.9, 0.8, 0.7, 0.6]])
    y = np.array([[True, False, True, False]])
    r = score_network(s, y, regulators=["a"], targets=["w", "x", "y", "z"], curve=True)
    assert r["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # interpolated: first TP contributes 1·½; second goes from (1 TP, 2 pairs) to (2, 3): ½·∫₀¹ (1+x)/(2+x) dx
    assert r["auprc"] == pytest.approx(0.5 + 0.5 * (1 - math.log(1.5)))
    assert r["precision_at_k"] == 0.5 and r["epr"] == 1.0 and r["random_precision"] == 0.5
    assert r["odds_ratio"] == 1.0                          # 1 TP, 1 FP, 1 FN, 1 TN
    assert r["auroc"] == 0.75
    assert list(r["recall"]) == [0, 0.5, 0.5, 1, 1] and r["precision"][-1] == 0.5


def test_perfect_and_empty_predictions():
    rows = [f"g{i}" for i in range(6)]
    truth = np.zeros((6, 6), dtype=bool)
    truth[0, 1:4] = truth[2, 5] = True
    perfect = score_network(truth.astype(float), truth, regulators=rows, targets=rows)
    assert perfect["auprc"] == perfect["ap"] == perfect["auroc"] == perfect["precision_at_k"] == 1.0
    assert perfect["epr"] == pytest.approx(30 / 4) and perfect["odds_ratio"] == math.inf
    for constant in (0.0, 3.0):
        flat = score_network(np.full((6, 6), constant), truth, regulators=rows, targets=rows)
        assert flat["n_candidates"] == 30 and flat["n_true"] == 4      # diagonal excluded
        assert flat["auprc"] == flat["ap"] == flat["random_precision"] == pytest.approx(4 / 30)
        assert flat["auroc"] == 0.5 and flat["epr"] == pytest.approx(1.0)
        assert flat["odds_ratio"] == pytest.approx(1.0)
    none_true = score_network(np.ones((3, 3)), np.zeros((3, 3), dtype=bool))
    assert none_true["n_true"] == 0 and math.isnan(none_true["auprc"])


def test_ties_straddling_k_count_their_expected_positives():
    # top block of 4 tied pairs holds 1 positive; K = 2 true edges → expected TP in top 2 = 2 · 1/4
    s = np.array([[5, 5, 5, 5, 1, 1]], dtype=float)
    y = np.array([[True, False, False, False, True, False]])
    r = score_network(s, y, regulators=["a"], targets=list("uvwxyz"))
    assert r["precision_at_k"] == pytest.approx(0.25)
    assert r["epr"] == pytest.approx(0.25 / (2 / 6))
    moved = y[:, [3, 1, 2, 0, 4, 5]]                        # the positive moves inside the tied block
    assert score_network(s, moved, regulators=["a"], targets=list("uvwxyz")) == r


def test_nan_scores_rank_last():
    s = np.array([[np.nan, 0.1, 0.2]])
    y = np.array([[True, False, False]])
    r = score_network(s, y, regulators=["a"], targets=["x", "y", "z"])
    assert r["auroc"] == 0.0 and r["ap"] == pytest.approx(1 / 3)


def test_self_pairs_and_universes_on_an_anndata_network():
    import anndata as ad

    genes = ["TF1", "TF2", "G1", "G2"]
    grn = np.array([[0, 9, 8, 1], [7, 0, 1, 6], [5, 5, 0, 5], [4, 4, 4, 0]], dtype=np.float32)
    net = ad.AnnData(np.zeros((0, 4), dtype=np.float32), var=pd.DataFrame(index=genes))
    net.varp["GRN"] = grn
    net.var["is_tf"] = [True, True, False, False]
    truth = pd.DataFrame({"regulator": ["TF1", "TF2", "G1"], "target": ["G1", "G2", "G2"]})
    from grnformer.bench.truths import as_truth

    t = as_truth(truth)
    all_ = score_network(net, t)
    assert all_["n_candidates"] == 12 and all_["self_pairs_excluded"] == 4 and all_["n_true"] == 3
    tf = score_network(net, t, universe="tf")
    assert tf["n_regulators"] == 2 and tf["n_candidates"] == 6 and tf["n_true"] == 2
    regs = score_network(net, t, universe="truth_regulators")
    assert regs["n_regulators"] == 3
    # a DataFrame whose rows are a subset of its columns: only the shared genes lose their self-pair
    df = pd.DataFrame(grn[:2], index=genes[:2], columns=genes)
    r = score_network(df, t)
    assert r["n_candidates"] == 6 and r["self_pairs_excluded"] == 2
    assert score_network(df, t, universe="tf", tfs=["TF2"])["n_regulators"] == 1


def test_input_errors():
    with pytest.raises(InputError):
        score_network(np.ones((2, 3)), np.ones((3, 2), dtype=bool))
    with pytest.raises(InputError):
        score_network(np.ones((2, 2)), np.eye(2, dtype=bool), universe="genome")
    with pytest.raises(InputError):
        score_network(np.ones((2, 2)), np.eye(2, dtype=bool), universe="tf")   # no TF list anywhere
    import anndata as ad

    with pytest.raises(InputError, match="varp"):
        score_network(ad.AnnData(np.zeros((1, 2), dtype=np.float32)), np.eye(2, dtype=bool))


def test_real_network_matches_sklearn_on_the_candidate_vector():
    chen = load("chen_hesc", prepared=True)
    genes = select_genes(chen, n_genes=300, n_tfs=150)
    net = infer("pearson", chen, genes=genes)
    truth = load_truth("omnipath_tf")
    r = score_network(net, truth, universe="tf", curve=True)
    names = np.asarray(net.var_names)
    rows = np.flatnonzero(net.var["is_tf"].to_numpy())
    y = truth.to_matrix(names[rows], names)
    s = net.varp["GRN"][rows]
    keep = names[rows][:, None] != names[None, :]
    assert r["n_true"] == int(y[keep].sum()) > 50
    assert r["ap"] == pytest.approx(average_precision_score(y[keep], s[keep]), abs=1e-10)
    assert r["auroc"] == pytest.approx(roc_auc_score(y[keep], s[keep]), abs=1e-10)
    assert r["precision"][-1] == pytest.approx(r["random_precision"]) and r["recall"][-1] == 1.0


def test_a_truth_differing_only_in_case_scores_the_same_in_every_path():
    """Head selection (`edge_matrix`) and score_network (`GroundTruth.to_matrix`, the universes) locate a truth's
    genes among a network's by one rule, `gene_names.positions`: the McCalla mESC truth written upper-case (as
    BEELINE writes mouse genes) scores exactly like the truth in the network's own case. Before, head selection
    matched it ignoring case and score_network found no true edge."""
    from grnformer.bench.truths import as_truth
    from grnformer.data.genes import MOUSE
    from grnformer.data.input.gene_names import edge_matrix

    gold = load_truth("mccalla_mesc_chip_kd")
    regs = list(gold.regulators[:6])
    targets = list(dict.fromkeys(gold.edges.loc[gold.edges["regulator"].isin(regs), "target"]))[:60]
    names = list(dict.fromkeys(regs + targets))
    assert any(n != n.upper() for n in names)                      # mouse case: the test means something
    scores = pd.DataFrame(np.random.default_rng(0).random((len(names), len(names))), index=names, columns=names)
    same = as_truth(gold.restrict(names).edges, "mesc", MOUSE)
    upper = as_truth(same.edges.apply(lambda c: c.str.upper()), "mesc_upper", MOUSE)
    assert (edge_matrix(upper.edges, names) == same.to_matrix(names, names)).all()
    assert same.to_matrix(names, names).any()
    assert (upper.to_matrix(names, names) == same.to_matrix(names, names)).all()
    for universe in ("all", "tf", "truth_regulators"):
        a, b = score_network(scores, same, universe=universe), score_network(scores, upper, universe=universe)
        assert a["n_true"] > 0 and a["n_regulators"] > 0
        keys = ("n_true", "n_candidates", "auprc")
        assert [a[k] for k in keys] == [b[k] for k in keys]
    upper_net = scores.rename(index=str.upper, columns=str.upper)  # a network in upper case, the TF list in mouse case
    tf_rows = score_network(scores, same, universe="tf")["n_regulators"]
    assert tf_rows > 0 and score_network(upper_net, same, universe="tf")["n_regulators"] == tf_rows
