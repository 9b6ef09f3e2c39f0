"""Head selection: recovers planted informative heads on a synthetic cube and beats the mean of heads on held-out
edges; JSON round trip; reuse through grn(heads=...) on a real tiny model; bad inputs."""

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from _tasks_support import pbmc, run_grn, tiny_bundle
from sklearn.metrics import average_precision_score

from grnformer import InputError
from grnformer.edge_metrics import read_edge_list
from grnformer.networks.grn import GRNOptions
from grnformer.networks.grn_options import (
    SELECTION_FIXED,
    SELECTION_FREE,
    SELECTION_REFUSES,
    SELECTION_WARNS,
)
from grnformer.networks.heads import (
    HeadSelection,
    load_heads,
    select_heads,
    truth_matrix,
)
from grnformer.networks.heads_file import select_heads_file

G, N_LAYERS, N_HEADS = 80, 2, 4
INFORMATIVE, DECOY = (2, 5), 7


def planted_cube(seed=0):
    """8 heads of random scores; heads 2 and 5 score true edges higher, head 7 scores them lower."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((G, G)) < 0.04) & ~np.eye(G, dtype=bool)
    cube = rng.random((N_LAYERS * N_HEADS, G, G)).astype(np.float32)
    for h in INFORMATIVE:
        cube[h] += 0.6 * truth
    cube[DECOY] -= 0.6 * truth
    cube[4] *= 5  # a loud uninformative head: it dominates the plain mean
    return cube, truth


@pytest.mark.parametrize("split", ["edges", "regulators"])
def test_recovers_planted_heads_and_beats_the_mean_on_held_out_edges(split):
    cube, truth = planted_cube()
    sel = select_heads(cube, truth, N_LAYERS, N_HEADS, "kq", split=split, seed=1)
    w = sel.weights.ravel()
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert w[list(INFORMATIVE)].sum() > 0.9 and w[DECOY] == 0
    assert {(l * N_HEADS + h) for l, h, _ in sel.selected()} >= set(INFORMATIVE)
    m = sel.metrics
    assert m["split"] == split and m["n_test_positive"] > 0
    assert m["selected"]["auprc"] > m["mean_of_heads"]["auprc"] + 0.2
    assert m["mean_of_heads"]["auprc"] > m["test_random_precision"]
    # the reported held-out numbers are what the weights give on pairs outside the training split
    rng = np.random.default_rng(1)
    if split == "edges":
        train = (rng.random((G, G)) < 0.5) & ~np.eye(G, dtype=bool)
        test = ~train & ~np.eye(G, dtype=bool)
        combined = np.tensordot(w, cube, axes=1)
        ap = average_precision_score(truth[test], combined[test])
        assert m["selected"]["ap"] == pytest.approx(ap, rel=1e-6)


def test_regulator_split_holds_out_whole_rows():
    cube, truth = planted_cube(seed=3)
    sel = select_heads(cube, truth, N_LAYERS, N_HEADS, "kq", split="regulators", train_fraction=0.5, seed=0)
    m = sel.metrics
    n_regs = int(truth.any(axis=1).sum())
    # half the regulators (with their whole rows) are held out: about half the true edges are in the test split
    assert 0.3 * truth.sum() < m["n_test_positive"] < 0.7 * truth.sum() and n_regs > 10
    assert m["n_test_pairs"] + m["n_train_positive"] + m["n_train_negative_used"] <= G * (G - 1)


def test_edge_list_truth_and_json_round_trip(tmp_path):
    cube, truth = planted_cube()
    genes = [f"G{i}" for i in range(G)]
    r, t = np.nonzero(truth)
    edges = pd.DataFrame({"regulator": np.array(genes)[r], "target": np.array(genes)[t]})
    assert (truth_matrix(edges, genes) == truth).all()
    assert (truth_matrix(list(zip(edges.regulator.str.lower(), edges.target)), genes) == truth).all()
    edges.to_csv(tmp_path / "truth.tsv", sep="\t", index=False)
    assert (truth_matrix(read_edge_list(tmp_path / "truth.tsv"), genes) == truth).all()
    sel = select_heads(cube, edges, N_LAYERS, N_HEADS, "qk", genes=genes, seed=1)
    path = sel.save(tmp_path / "heads.json")
    back = load_heads(path)
    np.testing.assert_allclose(back.weights, sel.weights)
    assert back.direction == "qk" and back.metrics == json.loads(path.read_text())["metrics"]


def test_bad_head_inputs():
    cube, truth = planted_cube()
    with pytest.raises(InputError, match="no true edges"):
        select_heads(cube, np.zeros((G, G), bool), N_LAYERS, N_HEADS, "kq")
    with pytest.raises(InputError, match="expected"):
        select_heads(cube, truth, 3, N_HEADS, "kq")
    with pytest.raises(InputError, match="gene names"):
        select_heads(cube, [("G1", "G2")], N_LAYERS, N_HEADS, "kq")
    with pytest.raises(InputError, match="split"):
        select_heads(cube, truth, N_LAYERS, N_HEADS, "kq", split="cells")
    with pytest.raises(InputError, match="non-negative"):
        HeadSelection(1, 2, "kq", np.array([[1.0, -0.5]]))
    with pytest.raises(InputError, match="not a grnformer head selection"):
        load_heads({"heads": []})
    with pytest.raises(InputError, match="not found"):
        load_heads("/nonexistent/heads.json")


def test_selected_heads_reused_by_grn_on_real_cells(tmp_path):
    bundle = tiny_bundle()
    cells = pbmc(24, seed=5)
    kw = dict(genes="hvg", n_genes=40, progress=False)
    full = run_grn(bundle, cells, keep_heads=True, **kw)
    cube = full.uns["grn_heads"]
    sel = HeadSelection(2, 2, "kq", np.array([[0.0, 3.0], [1.0, 0.0]]))
    with pytest.warns(UserWarning, match="does not record the correction, method, context_length, genes, "
                      "adapt_steps it was fitted with"):  # made by hand: nothing to check against
        net = run_grn(bundle, cells, heads=sel, **kw)
    np.testing.assert_allclose(net.varp["GRN"], 0.75 * cube[1] + 0.25 * cube[2], rtol=1e-5)
    path = sel.save(tmp_path / "heads.json")
    with pytest.warns(UserWarning, match="does not record"):
        net = run_grn(bundle, cells, heads=str(path), **kw)
    assert net.uns["grn"]["heads"] == {"L0H1": 0.75, "L1H0": 0.25}
    with pytest.raises(InputError, match="direction"), pytest.warns(UserWarning, match="does not record"):
        run_grn(bundle, cells, heads=path, direction="qk", **kw)
    with pytest.raises(InputError, match="3 layers"):
        run_grn(bundle, cells, heads=HeadSelection(3, 2, "kq", np.ones((3, 2))), **kw)

    # end to end from files: a truth made of one head's strongest edges is found again
    src = tmp_path / "cells.h5ad"
    cells.write_h5ad(src)
    names = np.asarray(full.var_names)
    planted = cube[3] * ~np.eye(40, dtype=bool)
    r, t = np.unravel_index(np.argsort(planted, axis=None)[::-1][:80], planted.shape)
    pd.DataFrame({"regulator": names[r], "target": names[t]}).to_csv(tmp_path / "truth.csv", index=False)
    opts = GRNOptions(genes="hvg", n_genes=40, method="mean_qk")
    out = select_heads_file(bundle, src, tmp_path / "truth.csv", tmp_path / "fitted.json", opts, progress=False)
    fitted = load_heads(out)
    assert fitted.weights.ravel().argmax() == 3
    assert fitted.metrics["selected"]["auprc"] > fitted.metrics["mean_of_heads"]["auprc"]
    recorded = json.loads(out.read_text())["fitted_with"]  # the settings of the maps it was fitted on
    assert {k: recorded[k] for k in ("method", "correction", "context_length", "genes", "adapt_steps", "n_genes")} \
        == {"method": "mean_qk", "correction": "none", "context_length": bundle.config.context_length,
            "genes": "hvg", "adapt_steps": 0, "n_genes": 40}
    with warnings.catch_warnings():  # applied as fitted, to other genes of the same kind: nothing to say
        warnings.simplefilter("error")
        GRNOptions(heads=str(out), method="mean_qk", genes=list(names[:10])).validate(bundle)
    with pytest.warns(UserWarning, match="context_length '64' but context_length '128'"):
        GRNOptions(heads=str(out), method="mean_qk", context_length=128).validate(bundle)
    with pytest.raises(InputError, match="filter"):
        select_heads_file(bundle, src, tmp_path / "truth.csv", tmp_path / "x.json",
                          GRNOptions(genes="hvg", n_genes=40, method="mean_qk", filter="topk"), progress=False)


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def _recorded_selection(bundle, **fitted_with):
    """A selection as select-heads writes it: fitted on mean_qk, no correction, the model's context, 'hvg', no
    adapting."""
    c = bundle.config
    record = {"method": "mean_qk", "correction": "none", "context_length": c.context_length, "genes": "hvg",
              "adapt_steps": 0, **fitted_with}
    return HeadSelection(c.n_layers, c.n_heads, "kq", np.ones((c.n_layers, c.n_heads)), fitted_with=record)


# For each option a selection records: another value, and whether grn refuses (InputError) or warns.
OTHER_VALUE = {"direction": ("qk", "refused"), "correction": ("centre_q", "refused"), "method": ("per_cell", "refused"),
               "context_length": (128, "warned"), "genes": ("random_expressed", "warned"),
               "adapt_steps": (5, "warned")}


def test_every_recorded_option_is_checked_here():
    assert set(OTHER_VALUE) == set(SELECTION_REFUSES) | set(SELECTION_WARNS)
    assert {n for n, (_, how) in OTHER_VALUE.items() if how == "refused"} == set(SELECTION_REFUSES)


@pytest.mark.parametrize("name", list(OTHER_VALUE))
def test_a_selection_applied_under_another_recorded_option_is_refused_or_warned(name, bundle):
    value, how = OTHER_VALUE[name]
    sel = _recorded_selection(bundle)
    with warnings.catch_warnings():  # the settings it was fitted with: no warning, no error
        warnings.simplefilter("error")
        assert GRNOptions(heads=sel, method="mean_qk").validate(bundle).direction == "kq"
    options = GRNOptions(**{"heads": sel, "method": "mean_qk", name: value})
    if how == "refused":
        with pytest.raises(InputError, match=f"fitted with {name} '[^']+' but {name} '{value}'"):
            options.validate(bundle)
    else:
        with pytest.warns(UserWarning, match=f"fitted with {name} .* but {name} '{value}'"):
            options.validate(bundle)


def test_settings_are_compared_by_what_they_change(bundle):
    """fused reads mean_qk's maps and a gene list is the same kind of contexts as 'hvg': no mismatch; a selection
    fitted on per_cell maps is refused on mean_qk's."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GRNOptions(heads=_recorded_selection(bundle), method="fused", genes=["CD74", "LYZ"]).validate(bundle)
        GRNOptions(heads=_recorded_selection(bundle, genes="list"), method="mean_qk").validate(bundle)
    with pytest.raises(InputError, match="method 'per_cell' but method 'mean_qk'"):
        GRNOptions(heads=_recorded_selection(bundle, method="per_cell"), method="mean_qk").validate(bundle)
    with pytest.raises(InputError, match="reads no attention"):
        GRNOptions(heads=_recorded_selection(bundle), method="pearson").validate(bundle)


def test_older_selection_files_load_and_check_what_they_record(tmp_path, bundle):
    """Version 1 recorded the correction alone (or nothing, before it): the rest is not checked, with a warning."""
    c = bundle.config
    heads = [{"layer": 0, "head": 1, "weight": 1.0}]
    v1 = {"format": "grnformer-heads", "format_version": 1, "n_layers": c.n_layers, "n_heads": c.n_heads,
          "direction": "kq", "correction": "centre_q", "heads": heads, "metrics": {}}
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(v1))
    assert load_heads(path).fitted_with == {"correction": "centre_q"}
    with pytest.warns(UserWarning, match="does not record the method, context_length, genes, adapt_steps"):
        GRNOptions(heads=str(path), method="mean_qk", correction="centre_q", context_length=128).validate(bundle)
    with pytest.raises(InputError, match="correction 'centre_q' but correction 'none'"), pytest.warns(UserWarning):
        GRNOptions(heads=str(path), method="mean_qk", correction="none").validate(bundle)
    path.write_text(json.dumps({**v1, "correction": None}))  # from before the correction was recorded
    with pytest.warns(UserWarning, match="does not record the correction, method"):
        GRNOptions(heads=str(path), method="mean_qk", correction="none").validate(bundle)


def test_every_network_option_has_one_role_in_head_selection():
    """Recorded, free or fixed, exactly once: a new GRNOptions field cannot slip past select-heads unclassified."""
    roles = [*SELECTION_REFUSES, *SELECTION_WARNS, *SELECTION_FREE, *SELECTION_FIXED]
    fields = [f.name for f in dataclasses.fields(GRNOptions) if f.init]
    assert sorted(roles) == sorted(fields)


# A value other than the default for every option select-heads refuses.
FIXED_VALUES = {"groupby": "cell_type", "groups": ["A"], "heads": "h.json", "filter": "topk", "top_k": 5,
                "n_bootstrap": 2, "min_stability": 0.9, "symmetrise": True, "keep_heads": True,
                "fusion_weights": "attention:1", "max_regulators": 3, "contrast": True, "one_pass": True,
                "include_all": True, "specificity": "share", "prior": "prior.tsv", "prior_weight": 0.5}


@pytest.mark.parametrize("name", SELECTION_FIXED)
def test_select_heads_refuses_options_that_act_after_the_heads_are_weighed(name, tmp_path):
    options = GRNOptions(method="mean_qk", **{name: FIXED_VALUES[name]})
    with pytest.raises(InputError, match=f"drop the options \\['{name}'\\]"):  # before any file is read
        select_heads_file("no-such.pt", tmp_path / "no.h5ad", tmp_path / "no.csv", tmp_path / "h.json", options)
    assert not list(tmp_path.iterdir())
