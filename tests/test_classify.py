"""Label prediction: the hierarchical decision rule and the strict / ontology-aware scores on hand-made cases,
then the whole task on real retina cells (true CELLxGENE labels) with a tiny random-init model."""

import anndata as ad
import numpy as np
import pytest
from _tasks_support import retina, tiny_bundle
from sklearn.metrics import f1_score

from grnformer import InputError
from grnformer.data.corpus.labels import LabelEncoder
from grnformer.tasks.classify import (
    classify,
    classify_file,
    hierarchical_predict,
    score_predictions,
)
from grnformer.tasks.task_options import ClassifyOptions

# leaves a b c d; coarse X = {a, b} and Y = {a, b, c} (X lies under Y)
ENC = LabelEncoder("cell_type", ["a", "b", "c", "d"], ["X", "Y"],
                   np.array([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=bool))


def test_prediction_stops_at_the_most_specific_confident_ancestor():
    probs = np.array([
        [0.70, 0.10, 0.10, 0.10],  # confident leaf
        [0.30, 0.25, 0.20, 0.25],  # X holds 0.55: X (more specific than Y, 0.75)
        [0.30, 0.15, 0.30, 0.25],  # X holds 0.45 < 0.5, Y 0.75: Y
        [0.10, 0.10, 0.35, 0.45],  # top leaf d has no ancestor: d, uncertain
        [0.05, 0.30, 0.40, 0.25],  # top leaf c: only Y is its ancestor (0.75); X (0.35) is not
    ])
    codes, conf = hierarchical_predict(probs, ENC, threshold=0.5)
    np.testing.assert_array_equal(codes, [0, 4, 5, 3, 5])
    np.testing.assert_allclose(conf, [0.70, 0.55, 0.75, 0.45, 0.75], rtol=1e-6)
    # threshold 0 always names the top leaf (no residual leaves here)
    leaves, p = hierarchical_predict(probs, ENC, threshold=0.0)
    np.testing.assert_array_equal(leaves, probs.argmax(1))
    np.testing.assert_allclose(p, probs.max(1))


def test_a_residual_leaf_is_reported_as_its_coarse_term():
    """Leaf 'X' is X's residual leaf (data.corpus.labels): predicting it names X, which scores as a true X label."""
    enc = LabelEncoder("cell_type", ["X", "a", "d"], ["X"], np.array([[1, 1, 0]], dtype=bool))
    probs = np.array([[0.8, 0.1, 0.1],    # confident residual leaf: X
                      [0.45, 0.3, 0.25],  # residual top but uncertain: X holds 0.75, still X
                      [0.1, 0.8, 0.1]])   # the descendant a
    codes, _ = hierarchical_predict(probs, enc, threshold=0.5)
    assert codes.tolist() == [3, 3, 1] and codes.tolist() == hierarchical_predict(probs, enc, 0.0)[0].tolist()
    true = enc.codes(["X", "X", "X"])
    assert score_predictions(codes, true, enc)["accuracy"] == pytest.approx(2 / 3)


def test_strict_and_ontology_scores():
    # true:  a  X  X  Y  X  b  unknown     (codes: leaves 0-3, X = 4, Y = 5)
    true = np.array([0, 4, 4, 5, 4, 1, -1])
    pred = np.array([0, 0, 4, 4, 5, 0, 2])
    # strict: a=a, a!=X, X=X, X!=Y, Y!=X, a!=b -> 2/6; ontology also counts a under X and X under Y -> 4/6;
    # Y predicted for X (an ancestor) and a for b stay wrong
    m = score_predictions(pred, true, ENC)
    assert m["n_scored"] == 6
    assert m["accuracy"] == pytest.approx(2 / 6) and m["accuracy_ontology"] == pytest.approx(4 / 6)
    assert m["macro_f1"] == pytest.approx(f1_score(true[:6], pred[:6], average="macro"))
    onto_pred = np.array([0, 4, 4, 5, 5, 0])
    assert m["macro_f1_ontology"] == pytest.approx(f1_score(true[:6], onto_pred, average="macro"))
    assert score_predictions(pred[:1], np.array([-1]), ENC) == {"n_scored": 0}


def test_classify_retina_cells(tmp_path):
    bundle = tiny_bundle()
    cells = retina(80)
    metrics = classify(bundle, cells, threshold=0.0, batch_size=32, progress=False)
    assert set(metrics) == {"cell_type", "sex", "assay"}
    enc = bundle.labels.encoders["cell_type"]
    pred = cells.obs["grnformer_cell_type"].astype(str).to_numpy()
    assert set(pred) <= set(enc.leaves)  # threshold 0: always a leaf
    prob = cells.obs["grnformer_cell_type_prob"].to_numpy()
    assert ((prob >= 1 / enc.n_leaves - 1e-6) & (prob <= 1)).all()  # the top of 10 leaf probabilities
    truth = cells.obs["cell_type_ontology_term_id"].astype(str).to_numpy()
    m = metrics["cell_type"]
    assert m["n_scored"] == 80 and m["accuracy"] == pytest.approx(np.mean(pred == truth))
    assert m["accuracy_ontology"] >= m["accuracy"] and m["macro_f1_ontology"] >= m["macro_f1"] - 1e-12
    assert metrics["assay"]["accuracy"] == 1.0  # one assay leaf: nothing else can be predicted
    assert cells.uns["grnformer_classify"]["threshold"] == 0.0

    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    classify_file(bundle, src, tmp_path / "out.h5ad", classes=["cell_type"], progress=False)
    out = ad.read_h5ad(tmp_path / "out.h5ad")
    assert {"grnformer_cell_type", "grnformer_cell_type_prob"} <= set(out.obs.columns)
    assert set(out.uns["grnformer_classify"]["metrics"]) == {"cell_type"}
    with pytest.raises(InputError, match="disease"):
        classify_file(bundle, src, tmp_path / "bad.h5ad", classes=["disease"], progress=False)
    with pytest.raises(InputError, match="threshold"):
        classify(bundle, cells, threshold=1.5, progress=False)
    with pytest.raises(InputError, match="threshold"):  # checked before the input is read
        classify_file(bundle, tmp_path / "missing.h5ad", tmp_path / "bad.h5ad", ClassifyOptions(threshold=-0.1))
    with pytest.raises(InputError, match="unknown option.*treshold.*ClassifyOptions has classes, threshold"):
        classify(bundle, cells, treshold=0.2, progress=False)
    assert not (tmp_path / "bad.h5ad").exists() and not list(tmp_path.glob("*.part"))


def test_classify_takes_an_options_object_keywords_or_both():
    """Keywords replace the object's fields (the object itself unchanged); one class may be named alone."""
    bundle = tiny_bundle()
    cells = retina(24, seed=2)
    options = ClassifyOptions(classes=["cell_type", "sex"], threshold=0.0, batch_size=8)
    both = classify(bundle, cells, options, classes="sex", progress=False)
    assert set(both) == {"sex"} and options.classes == ["cell_type", "sex"]
    assert "grnformer_cell_type" not in cells.obs and cells.uns["grnformer_classify"]["threshold"] == 0.0
    by_object = classify(bundle, cells, options, progress=False)
    by_keywords = classify(bundle, cells, classes=["cell_type", "sex"], threshold=0.0, batch_size=8, progress=False)
    assert set(by_object) == {"cell_type", "sex"} and by_object == by_keywords
    with pytest.raises(InputError, match="must be a ClassifyOptions"):
        classify(bundle, cells, {"threshold": 0.0}, progress=False)
