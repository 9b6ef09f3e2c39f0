"""Silver labels on real PBMC3k: each labelled group must express its own markers more than the rest."""

import anndata as ad
import numpy as np

from grnformer.data.corpus.silver import (
    CLASSICAL_MONOCYTE,
    add_training_labels,
    pbmc_cell_types,
)
from grnformer.data.resources import resource_path


def _pbmc3k() -> ad.AnnData:
    a = ad.read_h5ad(resource_path("pbmc3k"))
    a.X = a.X.astype(np.float32)
    return a


def test_pbmc_silver_labels_follow_markers():
    a = _pbmc3k()
    labels = pbmc_cell_types(a)
    counts = labels.value_counts()
    # PBMC3k: CD4 T cells are the largest population, then CD14 monocytes (published composition).
    assert counts.index[0] == "CL:0000624"
    assert {"CL:0000236", CLASSICAL_MONOCYTE, "CL:0000623"} <= set(counts.index)
    x = a.X.tocsc()
    for term, gene in [("CL:0000236", "MS4A1"), (CLASSICAL_MONOCYTE, "LYZ"), ("CL:0000623", "GNLY"),
                       ("CL:0000625", "CD8A")]:
        col = np.asarray(x[:, a.var_names.get_loc(gene)].todense()).ravel()
        inside = (labels == term).to_numpy()
        assert col[inside].mean() > 3 * col[~inside].mean(), (term, gene)


def test_training_columns(tmp_path):
    a = _pbmc3k()[:400].copy()
    out = add_training_labels("pbmc3k", a)
    assert "cell_type_ontology_term_id" not in a.obs  # input untouched
    assert (out.obs["assay_ontology_term_id"] == "EFO:0009901").all()
    assert out.uns["grnformer_label_source"] == "silver"
