"""Label encoders on the real retina labels, checked against the Cell Ontology through the parser's own API."""

import json

import numpy as np
import pandas as pd
import pytest

from grnformer.data.corpus.datasets import load
from grnformer.data.corpus.labels import (
    LABEL_CLASSES,
    LabelEncoder,
    LabelSet,
    column,
    ontology_parser,
)

ON_BIPOLAR, ROD_BIPOLAR, OFF_BIPOLAR = "CL:0000749", "CL:0000751", "CL:0000750"


@pytest.fixture(scope="module")
def retina():
    return load("retina")


@pytest.fixture(scope="module")
def labels(retina) -> LabelSet:
    return LabelSet.fit(retina)


def test_leaves_and_coarse_follow_the_ontology(retina, labels):
    parser = ontology_parser()
    enc = labels.encoders["cell_type"]
    observed = set(retina.obs["cell_type_ontology_term_id"].astype(str))
    assert set(enc.leaves) == observed and set(enc.coarse) <= observed  # every term has a leaf
    for j, term in enumerate(enc.coarse):
        below = set(parser.get_term_descendants(term)) & observed
        assert below, term  # a coarse term has an observed descendant
        # its leaves: its observed descendants and its own residual leaf
        assert {enc.leaves[i] for i in np.flatnonzero(enc.descendants[j])} == below | {term}
        assert enc.residual[enc.leaves.index(term)] == enc.n_leaves + j
    for leaf in set(enc.leaves) - set(enc.coarse):  # no observed term lies below a plain leaf
        assert not set(parser.get_term_descendants(leaf)) & observed, leaf
        assert enc.residual[enc.leaves.index(leaf)] == -1
    # concretely: rod bipolar cells are ON-bipolar cells, so ON-bipolar is the one coarse term, with a residual leaf
    assert enc.coarse == [ON_BIPOLAR] and enc.n_leaves == 11
    assert enc.descendants.shape == (1, 11) and enc.descendants.sum() == 2
    assert enc.descendants[0, enc.leaves.index(ROD_BIPOLAR)] and enc.descendants[0, enc.leaves.index(ON_BIPOLAR)]
    assert enc.labels()[enc.leaves.index(ROD_BIPOLAR)] == "rod bipolar cell"
    assert enc.labels()[enc.n_leaves] == "ON-bipolar cell"


def test_a_coarse_term_with_one_observed_descendant_keeps_its_own_leaf():
    """CD14 monocytes labelled 'CD14-positive monocyte' beside CD16 monocytes, a descendant term in CL: before
    residual leaves the classifier could only call the CD14 ones CD16 monocytes."""
    cd14, cd16 = "CL:0001054", "CL:0002396"
    enc = LabelEncoder.fit("cell_type", [cd14, cd16, "CL:0000236"])
    assert enc.coarse == [cd14] and set(enc.leaves) == {cd14, cd16, "CL:0000236"}
    assert enc.codes([cd14, cd16]).tolist() == [enc.n_leaves, enc.leaves.index(cd16)]  # a CD14 label: the union
    assert enc.residual[enc.leaves.index(cd14)] == enc.n_leaves


def test_encode_retina(retina, labels):
    codes = labels.encode(retina)
    assert codes.shape == (1000, len(LABEL_CLASSES)) and codes.dtype == np.int64
    assert labels.classes == LABEL_CLASSES
    enc = labels.encoders["cell_type"]
    terms = retina.obs["cell_type_ontology_term_id"].astype(str).to_numpy()
    decoded = np.array(enc.leaves + enc.coarse)[codes[:, 0]]
    np.testing.assert_array_equal(decoded, terms)
    on_bipolar = terms == ON_BIPOLAR
    assert (codes[on_bipolar, 0] == enc.n_leaves).all() and (codes[~on_bipolar, 0] < enc.n_leaves).all()
    # every retina cell is 'unknown' ethnicity: no leaves, all -1; the other classes have one term each
    assert labels.sizes == {"cell_type": 11, "disease": 1, "assay": 1, "sex": 1, "self_reported_ethnicity": 0,
                            "organism": 1}
    assert (codes[:, LABEL_CLASSES.index("self_reported_ethnicity")] == -1).all()
    assert (codes[:, 1:4] == 0).all() and (codes[:, 5] == 0).all()


def test_missing_and_unseen_terms(labels):
    enc = labels.encoders["cell_type"]
    parser = ontology_parser()
    # never seen, below a leaf: that leaf
    sensu_mus = "CL:0008027"
    assert ROD_BIPOLAR in parser.get_term_ancestors(sensu_mus)
    # never seen, below the coarse term only: the coarse term
    other_on = next(t for t in parser.get_term_descendants(ON_BIPOLAR)
                    if ROD_BIPOLAR not in parser.get_term_ancestors(t) and t != ROD_BIPOLAR)
    codes = enc.codes([sensu_mus, other_on, "CL:0000236", None, np.nan, "unknown", "na", "", "FOO:1", "free text"])
    assert codes.tolist() == [enc.leaves.index(ROD_BIPOLAR), enc.n_leaves, -1, -1, -1, -1, -1, -1, -1, -1]
    # a categorical column with missing values encodes the same
    series = pd.Series([ROD_BIPOLAR, None, OFF_BIPOLAR], dtype="category")
    assert enc.codes(series).tolist() == [enc.leaves.index(ROD_BIPOLAR), -1, enc.leaves.index(OFF_BIPOLAR)]


def test_terms_outside_the_ontologies_do_not_crash():
    enc = LabelEncoder.fit("self_reported_ethnicity", ["unknown", "na", "HANCESTRO:0005",
                                                       "HANCESTRO:0005,HANCESTRO:0014", "multiethnic",
                                                       "HANCESTRO:0004", None])
    assert enc.leaves == ["HANCESTRO:0004", "HANCESTRO:0005", "HANCESTRO:0005,HANCESTRO:0014", "multiethnic"]
    assert enc.coarse == ["HANCESTRO:0004"]  # European ancestry is an ancestry category
    assert enc.descendants.tolist() == [[True, True, False, False]]
    assert enc.labels()[1] == "European ancestry" and enc.labels()[3] == "multiethnic"
    sex = LabelEncoder.fit("sex", ["PATO:0000384", "PATO:0000383", "unknown"])
    assert sex.n_leaves == 2 and sex.n_coarse == 0
    organism = LabelEncoder.fit("organism", ["NCBITaxon:9606", "NCBITaxon:10090"])
    assert organism.labels() == ["Mus musculus", "Homo sapiens"]


def test_round_trip(retina, labels):
    d = json.loads(json.dumps(labels.to_dict()))  # plain JSON, as in a checkpoint
    back = LabelSet.from_dict(d)
    np.testing.assert_array_equal(back.encode(retina), labels.encode(retina))
    for c in LABEL_CLASSES:
        a, b = labels.encoders[c], back.encoders[c]
        assert (a.leaves, a.coarse) == (b.leaves, b.coarse)
        np.testing.assert_array_equal(a.descendants, b.descendants)
        assert a.descendants.shape == b.descendants.shape


def test_fit_over_several_frames(retina):
    other = pd.DataFrame({column("cell_type"): ["CL:0000236", "CL:0000084", "CL:0000624", "unknown"],
                          column("organism"): ["NCBITaxon:10090"] * 4})
    labels = LabelSet.fit([retina.obs, other])
    enc = labels.encoders["cell_type"]
    assert {"CL:0000236", "CL:0000624"} <= set(enc.leaves) and "CL:0000084" in enc.coarse  # T cell above CD4 T
    assert labels.sizes["organism"] == 2
    codes = labels.encode(other)
    assert codes[3, 0] == -1 and codes[2, 0] == enc.leaves.index("CL:0000624")
    # classes absent from a frame encode as -1
    assert (codes[:, LABEL_CLASSES.index("disease")] == -1).all()
    empty = LabelSet.fit(pd.DataFrame(index=range(3)))
    assert set(empty.sizes.values()) == {0}
    assert (empty.encode(other) == -1).all()
