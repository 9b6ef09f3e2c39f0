"""Every named dataset loads as raw integer counts with its organism; shared data is found or clearly missing."""

import gzip

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from grnformer import InputError, ResourceError
from grnformer.data import shared
from grnformer.data.corpus.datasets import available, load
from grnformer.data.genes import HUMAN, MOUSE
from grnformer.data.shared import ENV_VAR, shared_files, shared_path

# name -> (cells, genes, organism, a gene known to be in it)
EXPECTED = {
    "pbmc3k": (2700, 32738, HUMAN, "CD3E"),
    "retina": (1000, 70116, HUMAN, "ENSG00000163914"),  # RHO, rhodopsin
    "celltypist_sample": (559, 32786, HUMAN, "CD3E"),
    "chen_hesc": (385, 8595, HUMAN, "POU5F1"),
    "semrau_mesc": (384, 10243, MOUSE, "Nanog"),
    "pbmc_soupx": (2170, 33694, HUMAN, "CD3E"),
    "pbmc_ifnb": (2000, 9015, HUMAN, "ISG15"),
    "pbmc_10x_v2_1k": (954, 12518, HUMAN, "CD3E"),
    "pbmc_10x_v3_1k": (906, 14688, HUMAN, "CD3E"),
    "pbmc_10x_5prime_1k": (1000, 17890, HUMAN, "CD3E"),
    "mouse_pancreas_e155": (3696, 2000, MOUSE, "Ins1"),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_loader_gives_raw_counts(name):
    n_cells, n_genes, organism, gene = EXPECTED[name]
    a = load(name)
    assert a.shape == (n_cells, n_genes)
    assert (a.obs["organism_ontology_term_id"] == organism).all()
    values = a.X.data if sp.issparse(a.X) else np.asarray(a.X)
    assert np.all(values >= 0) and np.all(values == np.rint(values)) and values.max() >= 1
    assert gene in a.var_names
    assert a.uns["grnformer_dataset"] == name


def test_retina_split_is_disjoint_stratified_and_fixed():
    full, train, test = load("retina"), load("retina_train"), load("retina_test")
    assert train.n_obs + test.n_obs == full.n_obs and not set(train.obs_names) & set(test.obs_names)
    column = "cell_type_ontology_term_id"
    share = test.obs[column].value_counts() / full.obs[column].value_counts()
    assert share.dropna().between(0.2, 0.4).all() and set(test.obs[column]) == set(full.obs[column])
    assert list(load("retina_test").obs_names) == list(test.obs_names)


def test_available_lists_every_set_with_a_description():
    names = available()
    assert set(EXPECTED) <= set(names)
    shared_path("counts")  # skipped (with how to supply it) where no copy of the shared data is here
    assert {p.stem for p in shared_files("counts", "*.h5ad").values()} <= set(names)
    assert all(isinstance(d, str) and d and "\n" not in d for d in names.values())


def test_mccalla_log_values_become_exact_counts():
    """The McCalla files hold log2 twice; one inversion leaves log2(3)-like values, two give integers."""
    for name in ("chen_hesc", "semrau_mesc"):
        record = load(name).uns["log2_conversion"]
        assert record["n_inversions"] == 2 and record["n_non_integral"] == 0
        assert record["max_deviation"] < 1e-6 and record["n_non_integral_after_one_inversion"] > 1000


def _write_log_table(path, counts: np.ndarray, times: int) -> None:
    values = counts.astype(float)
    for _ in range(times):
        values = np.log2(values + 1)
    table = pd.DataFrame(values.T, index=[f"G{i}" for i in range(counts.shape[1])],
                         columns=[f"c{j}" for j in range(counts.shape[0])])
    with gzip.open(path, "wt") as f:
        table.to_csv(f, sep="\t")


@pytest.mark.parametrize("times", [1, 2])
def test_log_inversion_recovers_counts_either_way(tmp_path, monkeypatch, times):
    rng = np.random.default_rng(0)
    counts = rng.negative_binomial(2, 0.3, size=(20, 30))
    (tmp_path / "mccalla" / "scRNA").mkdir(parents=True)
    _write_log_table(tmp_path / "mccalla" / "scRNA" / "chen_rna_filtered_log2.tsv.gz", counts, times)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    a = load("chen_hesc")
    np.testing.assert_array_equal(a.X.toarray(), counts)
    assert a.uns["log2_conversion"]["n_inversions"] == times
    assert list(a.var_names[:2]) == ["G0", "G1"] and list(a.obs_names[:2]) == ["c0", "c1"]


def test_missing_shared_data_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    monkeypatch.setattr(shared, "_beside_repository", lambda: None)
    monkeypatch.setenv("GRNFORMER_CACHE", str(tmp_path / "cache"))  # no resource is loaded here
    for name in ("pbmc_ifnb", "semrau_mesc"):
        with pytest.raises(ResourceError, match=ENV_VAR):
            load(name)


def test_extra_counts_file_is_found(tmp_path, monkeypatch):
    (tmp_path / "counts").mkdir()
    extra = ad.AnnData(sp.csr_matrix(np.eye(3, dtype=np.float32)), obs=pd.DataFrame(index=["a", "b", "c"]),
                       var=pd.DataFrame(index=["CD3E", "CD3D", "GNLY"]))
    extra.write_h5ad(tmp_path / "counts" / "my_cells.h5ad")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert "my_cells" in available()
    assert load("my_cells").shape == (3, 3)


def test_unknown_name():
    with pytest.raises(InputError, match="unknown dataset 'pbmc4k'.*pbmc3k"):
        load("pbmc4k")


def test_prepared_convenience():
    a = load("pbmc_ifnb", prepared=True)
    assert a.uns["grnformer_prepare"]["n_genes_mapped"] == a.n_vars > 7000
    assert all(g.startswith("ENSG") for g in a.var_names) and a.uns["grnformer_dataset"] == "pbmc_ifnb"
    assert "condition" in a.obs  # the authors' metadata travels along


def test_count_csv_parser_matches_pandas(tmp_path):
    from grnformer.data.corpus.datasets import _read_count_csv

    frame = pd.DataFrame(np.random.default_rng(1).poisson(0.7, size=(6, 9)),
                         index=[f"cell{i}" for i in range(6)], columns=[f"G{j}" for j in range(9)])
    frame.to_csv(tmp_path / "cells.csv")
    a = _read_count_csv(tmp_path / "cells.csv")
    np.testing.assert_array_equal(a.X.toarray(), frame.to_numpy())
    assert list(a.obs_names) == list(frame.index) and list(a.var_names) == list(frame.columns)
