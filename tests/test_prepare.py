"""prepare() on real data: counts found where they are, genes mapped and summed, every bad input a clear InputError."""

import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from grnformer import InputError
from grnformer.data.corpus.datasets import load
from grnformer.data.genes import HUMAN, MOUSE, GeneVocab
from grnformer.data.input.prepare import MappingReport, prepare

CD3E = "ENSG00000198851"


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    """Real 10x PBMC (954 cells, symbols), cut to 300 cells to stay quick."""
    return load("pbmc_10x_v2_1k")[:300].copy()


@pytest.fixture(scope="module")
def pbmc_prepared(pbmc):
    return prepare(pbmc)


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _assert_same(a: ad.AnnData, b: ad.AnnData) -> None:
    assert list(a.var_names) == list(b.var_names) and list(a.obs_names) == list(b.obs_names)
    assert (a.X != b.X).nnz == 0


def test_symbols_map_to_vocabulary_with_counts_intact(pbmc, pbmc_prepared):
    out, report = pbmc_prepared
    vocab = GeneVocab.default()
    assert sp.isspmatrix_csr(out.X) or isinstance(out.X, sp.csr_array)
    assert out.X.dtype == np.float32 and np.all(out.X.data == np.rint(out.X.data)) and out.X.data.min() > 0
    assert (vocab.index(out.var_names) >= 0).all() and out.var_names.is_unique
    assert all(g.startswith("ENSG") for g in out.var_names)
    assert list(out.var["symbol"]) == list(vocab.symbols[vocab.index(out.var_names)])
    assert (out.obs["organism_ontology_term_id"] == HUMAN).all()
    # a known gene carries exactly the input column's counts
    np.testing.assert_array_equal(_dense(out[:, CD3E].X).ravel(), _dense(pbmc[:, "CD3E"].X).ravel())
    # per-cell totals = sum of the input columns that mapped
    mapped_cols = pbmc.var_names.isin(out.var["input_name"])
    np.testing.assert_allclose(np.asarray(out.X.sum(1)).ravel(), np.asarray(pbmc.X[:, mapped_cols].sum(1)).ravel())
    assert isinstance(report, MappingReport)
    assert report.id_type == "symbol" and report.count_source == "X" and report.gene_source == "var_names"
    assert report.organism == HUMAN and report.organism_source == "obs"
    assert report.n_cells_in == report.n_cells_kept == 300 and report.n_zero_cells_dropped == 0
    assert report.n_genes_in == pbmc.n_vars and report.n_genes_mapped == out.n_vars
    assert report.n_genes_mapped + report.n_duplicates_summed + report.n_not_in_vocab + report.n_unrecognised \
        + len(report.ambiguous) == pbmc.n_vars
    assert 0.85 < report.fraction_counts_kept < 1.0
    assert 0 < len(report.unmapped_examples) <= 10
    assert out.uns["grnformer_prepare"]["n_genes_mapped"] == out.n_vars
    text = report.summary()
    assert f"{out.n_vars:,} vocabulary genes" in text and "300 kept of 300" in text


def test_input_left_untouched(pbmc, pbmc_prepared):
    before = load("pbmc_10x_v2_1k")[:300]
    assert list(pbmc.var_names) == list(before.var_names) and list(pbmc.obs.columns) == list(before.obs.columns)
    assert (pbmc.X != before.X).nnz == 0
    assert "grnformer_prepare" not in pbmc.uns


def test_ensembl_ids_with_versions_and_gene_id_column():
    retina = load("retina")[:200].copy()
    plain, report = prepare(retina)
    assert report.id_type == "ensembl" and report.n_genes_mapped > 19_000
    versioned = retina.copy()
    versioned.var_names = [f"{g}.7" for g in retina.var_names]
    _assert_same(prepare(versioned)[0], plain)
    # pbmc3k names var_names by symbol and var['gene_ids'] by Ensembl ID: the column mapping more genes wins
    pbmc3k = load("pbmc3k")[:200].copy()
    out, report = prepare(pbmc3k)
    assert report.gene_source == 'var["gene_ids"]' and report.id_type == "ensembl"
    assert report.organism_source == "obs" and CD3E in out.var_names
    by_symbol, sym_report = prepare(pbmc3k, gene_column="gene_symbols")
    assert sym_report.id_type == "symbol" and sym_report.n_genes_mapped < report.n_genes_mapped


def test_path_input_and_written_output(tmp_path, pbmc, pbmc_prepared):
    path = tmp_path / "pbmc.h5ad"
    pbmc.write_h5ad(path)
    out, report = prepare(str(path))
    assert report.source == str(path)
    _assert_same(out, pbmc_prepared[0])
    out.write_h5ad(tmp_path / "prepared.h5ad")
    back = ad.read_h5ad(tmp_path / "prepared.h5ad")
    assert back.uns["grnformer_prepare"]["organism"] == HUMAN and back.n_vars == out.n_vars


def _lognorm(x) -> sp.csr_matrix:
    x = sp.csr_matrix(x, dtype=np.float32)
    scaled = sp.diags(1e4 / np.asarray(x.sum(1)).ravel()) @ x
    return sp.csr_matrix(scaled).log1p()


def test_counts_layer_and_raw_used_when_x_is_normalised(pbmc, pbmc_prepared):
    layered = pbmc.copy()
    layered.layers["counts"] = pbmc.X.copy()
    layered.X = _lognorm(pbmc.X)
    out, report = prepare(layered)
    assert report.count_source == 'layers["counts"]' and "counts: layers" in report.summary()
    _assert_same(out, pbmc_prepared[0])

    with_raw = pbmc.copy()
    with_raw.raw = pbmc.copy()
    with_raw.X = _lognorm(pbmc.X)
    out, report = prepare(with_raw)
    assert report.count_source == "raw"
    _assert_same(out, pbmc_prepared[0])


def test_lognormalised_x_names_values_and_suggests_layer(pbmc):
    bad = pbmc.copy()
    bad.layers["spliced"] = pbmc.X.copy()
    bad.X = _lognorm(pbmc.X)
    with pytest.raises(InputError) as err:
        prepare(bad)
    msg = str(err.value)
    assert "non-integer" in msg and "layers['spliced']" in msg
    first_cell = bad.obs_names[0]  # the first stored value is in cell 0
    assert f"cell '{first_cell}'" in msg and "gene '" in msg


@pytest.mark.parametrize("value, word", [(-3.0, "negative"), (np.nan, "non-finite"), (np.inf, "non-finite")])
def test_bad_values_say_what_and_where(pbmc, value, word):
    bad = pbmc.copy()
    x = bad.X.toarray()
    x[7, 11] = value
    bad.X = x  # dense, to check positions there too
    with pytest.raises(InputError) as err:
        prepare(bad)
    msg = str(err.value)
    assert f"1 {word}" in msg
    assert f"cell '{bad.obs_names[7]}'" in msg and f"gene '{bad.var_names[11]}'" in msg
    assert "No layer holds them" in msg


def test_integer_and_dense_matrices_accepted(pbmc, pbmc_prepared):
    dense = pbmc.copy()
    dense.X = pbmc.X.toarray().astype(np.int32)
    _assert_same(prepare(dense)[0], pbmc_prepared[0])


def test_unmapped_names_list_examples_and_id_type(pbmc):
    bad = pbmc.copy()
    bad.var_names = [f"feature_{i}" for i in range(bad.n_vars)]
    with pytest.raises(InputError) as err:
        prepare(bad)
    msg = str(err.value)
    assert "only 0 of" in msg and "gene symbols" in msg and "feature_0, feature_1" in msg


def test_too_few_genes_threshold(pbmc):
    small = pbmc[:, :150].copy()
    with pytest.raises(InputError, match="at least 200 needed"):  # 129 of 150 names map: no clean panel
        prepare(small)
    out, report = prepare(small, min_mapped=50)
    assert report.n_genes_in == 150 and out.n_vars == report.n_genes_mapped >= 50


def test_organism_errors(pbmc):
    with pytest.raises(InputError, match="unknown organism 'zebrafish'"):
        prepare(pbmc, organism="zebrafish")
    fish = pbmc.copy()
    fish.obs["organism_ontology_term_id"] = "NCBITaxon:7955"
    with pytest.raises(InputError, match="NCBITaxon:7955"):
        prepare(fish)
    mixed = pbmc.copy()
    mixed.obs["organism_ontology_term_id"] = [HUMAN] * 200 + [MOUSE] * 100
    with pytest.raises(InputError, match="mixes organisms"):
        prepare(mixed)
    with pytest.raises(InputError, match="contradicts"):
        prepare(pbmc, organism="mouse")


def test_organism_inferred_or_checked_against_gene_names():
    pancreas = load("mouse_pancreas_e155")[:300].copy()
    del pancreas.obs["organism_ontology_term_id"]
    out, report = prepare(pancreas)
    assert report.organism == MOUSE and report.organism_source == "gene names"
    assert all(g.startswith("ENSMUSG") for g in out.var_names)
    # mouse symbols said to be human by obs match only ignoring case (Actb vs ACTB): refused, not silently mapped
    declared = pancreas.copy()
    declared.obs["organism_ontology_term_id"] = HUMAN
    with pytest.raises(InputError, match="organism is probably mouse.*organism='human' explicitly"):
        prepare(declared)
    # ... but an explicit organism argument wins: mapped ignoring case, and the report says so
    out, report = prepare(pancreas, organism="human")
    assert report.organism == HUMAN and report.n_case_insensitive > out.n_vars / 2
    assert "(organism given explicitly)" in report.summary()


def test_empty_matrices(pbmc):
    with pytest.raises(InputError, match="empty"):
        prepare(pbmc[:0].copy())
    with pytest.raises(InputError, match="empty"):
        prepare(pbmc[:, :0].copy())


def test_unreadable_files(tmp_path, pbmc):
    good = tmp_path / "good.h5ad"
    pbmc.write_h5ad(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.h5ad"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated.h5ad.*truncated"):
        prepare(truncated)
    text = tmp_path / "notes.h5ad"
    text.write_text("cell,gene\n")
    with pytest.raises(InputError, match="could not read"):
        prepare(text)
    with pytest.raises(InputError, match="does not exist"):
        prepare(tmp_path / "missing.h5ad")


def test_duplicates_summed(pbmc, pbmc_prepared):
    dup = pbmc.copy()
    names = list(dup.var_names)
    second = names.index("CD3D")
    names[second] = "CD3E"  # two columns now claim CD3E
    dup.var_names = names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata warns about non-unique names
        out, report = prepare(dup)
    expected = _dense(pbmc[:, "CD3E"].X).ravel() + _dense(pbmc[:, "CD3D"].X).ravel()
    np.testing.assert_array_equal(_dense(out[:, CD3E].X).ravel(), expected)
    assert report.n_duplicates_summed == 1 and report.duplicate_examples == ["CD3E"]
    assert out.n_vars == pbmc_prepared[0].n_vars - 1  # CD3D is gone
    assert "duplicates: 1 columns summed" in report.summary()


def test_zero_count_cells_dropped_with_warning(pbmc, pbmc_prepared):
    zeroed = pbmc.copy()
    x = zeroed.X.toarray()
    x[[5, 17, 200]] = 0
    zeroed.X = sp.csr_matrix(x)
    with pytest.warns(UserWarning, match="dropped 3 of 300 cells"):
        out, report = prepare(zeroed)
    assert report.n_zero_cells_dropped == 3 and report.n_cells_kept == out.n_obs == 297
    assert not {pbmc.obs_names[i] for i in (5, 17, 200)} & set(out.obs_names)
    with pytest.raises(InputError, match="no cell"):
        empty = pbmc.copy()
        empty.X = sp.csr_matrix(pbmc.shape, dtype=np.float32)
        prepare(empty)


def test_case_insensitive_fallback_and_obs_kept(pbmc, pbmc_prepared):
    lowered = pbmc.copy()
    lowered.var_names = [n.lower() if n in ("CD3E", "GNLY", "MS4A1") else n for n in pbmc.var_names]
    lowered.obs["batch"] = "b1"
    lowered.obsm["X_test"] = np.arange(lowered.n_obs * 2).reshape(-1, 2)
    out, report = prepare(lowered)
    assert report.n_case_insensitive == 3 and "3 symbols matched only ignoring case" in report.summary()
    _assert_same(out, pbmc_prepared[0])
    assert (out.obs["batch"] == "b1").all() and out.obsm["X_test"].shape == (300, 2)
    assert out.var.loc[CD3E, "input_name"] == "cd3e"



def test_repeated_obs_columns_are_an_input_error():
    import anndata as ad
    import numpy as np
    import pandas as pd
    import pytest
    import scipy.sparse as sp

    from grnformer.data.input.prepare import prepare
    from grnformer.data.resources import resource_path
    from grnformer.errors import InputError

    raw = ad.read_h5ad(resource_path("pbmc3k"))[:20]
    obs = pd.DataFrame(np.zeros((20, 2)), index=raw.obs_names, columns=["batch", "batch"])
    bad = ad.AnnData(sp.csr_matrix(raw.X), obs=obs, var=raw.var)
    with pytest.raises(InputError, match="repeated column names"):
        prepare(bad, organism="human")


# ------------------------------------------------------------------------------- names as real files write them

def test_upper_case_mouse_symbols_map_with_explicit_organism():
    """BEELINE and many tables write mouse genes upper-case (SOX2, POU5F1): with organism='mouse' they map."""
    pancreas = load("mouse_pancreas_e155")[:300].copy()
    own, own_report = prepare(pancreas)
    upper = pancreas.copy()
    upper.var_names = [n.upper() for n in pancreas.var_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # upper-casing makes a few names repeat
        out, report = prepare(upper, organism="mouse")
    assert report.organism == MOUSE and report.organism_source == "argument"
    assert out.n_vars >= 0.95 * own.n_vars
    assert report.n_case_insensitive > 0.9 * own.n_vars and "organism given explicitly" in report.summary()
    assert all(g.startswith("ENSMUSG") for g in out.var_names)
    # the same genes: every upper-cased gene that mapped maps to the gene its own name maps to
    assert set(out.var_names) <= set(own.var_names)


def test_outdated_human_symbols_map_through_hgnc():
    """10x's hg19 reference (PBMC3k) names genes by previous HGNC symbols; one-to-one ones map, ambiguous are listed."""
    pbmc3k = load("pbmc3k")
    by_id = prepare(pbmc3k, gene_column="gene_ids")[1]
    symbols_only = pbmc3k.copy()
    symbols_only.var = symbols_only.var[[]]
    out, report = prepare(symbols_only)
    assert report.gene_source == "var_names" and report.id_type == "symbol"
    assert report.n_genes_mapped >= 0.97 * by_id.n_genes_mapped
    for old, new in [("TCEB2", "ELOB"), ("WARS", "WARS1"), ("SEPP1", "SELENOP"), ("KIAA0101", "PCLAF"),
                     ("AES", "TLE5"), ("HIST1H1E", "H1-4"), ("PTRF", "CAVIN1"), ("FAM64A", "PIMREG"),
                     ("SGOL1", "SGO1")]:
        assert report.remapped[old] == new
        assert out.var.loc[out.var["input_name"] == old, "symbol"].tolist() == [new]
    # the remapped gene carries the counts of the old name's column
    gene = out.var.index[out.var["input_name"] == "TCEB2"][0]
    np.testing.assert_array_equal(_dense(out[:, gene].X).ravel(), _dense(pbmc3k[:, "TCEB2"].X).ravel())
    # QARS was the previous symbol of both EPRS1 and QARS1: left out, listed
    assert "QARS" in report.ambiguous and "QARS" not in report.remapped
    assert "outdated symbols" in report.summary() and "ambiguous" in report.summary()
    # a gene named both by its current and an outdated symbol is not summed: the outdated name is left out
    both = symbols_only[:, ["TCEB2", "CD3E", "CD3D"] + list(symbols_only.var_names[:400])].copy()
    both.var_names = ["TCEB2", "CD3E", "ELOB"] + list(both.var_names[3:])
    report2 = prepare(both, min_mapped=10)[1]
    assert "TCEB2" in report2.ambiguous and "TCEB2" not in report2.remapped


def test_outdated_mouse_symbols_map_through_mgi():
    """MGI synonyms of genes of a real mouse set, none of them a current symbol, map back to those genes."""
    from grnformer.data.input.gene_names import match_names, synonym_table

    pancreas = load("mouse_pancreas_e155")[:200].copy()

    syn = synonym_table("mouse")
    ids = prepare(pancreas)[0].var_names
    candidates = syn[syn["gene_id"].isin(ids)]
    unique_names = candidates.groupby("name")["gene_id"].transform("nunique") == 1
    candidates = candidates[unique_names]
    current = set(n.upper() for n in pancreas.var_names)
    candidates = candidates[~candidates["name"].isin(current)].drop_duplicates("gene_id")
    match = match_names(list(candidates["name"][:20]), "mouse")
    assert (match.how == "synonym").sum() >= 15
    assert set(match.gene_id[match.how == "synonym"]) <= set(candidates["gene_id"][:20])


def test_repeated_cell_names_made_unique_and_reported(pbmc):
    rep = pbmc.copy()
    names = list(rep.obs_names)
    names[1] = names[0]
    names[2] = names[0]
    rep.obs_names = names
    with pytest.warns(UserWarning, match="2 cell names repeat"):
        out, report = prepare(rep)
    assert out.obs_names.is_unique and report.n_obs_names_made_unique == 2
    assert list(out.obs_names[:3]) == [names[0], f"{names[0]}-1", f"{names[0]}-2"]
    assert "2 repeated names made unique" in report.summary()


# ------------------------------------------------------------------------- normalised values → pseudo-counts

@pytest.mark.parametrize("transform", ["log2p1", "log1p", "tpm"])
def test_counts_from_normalised_values(pbmc, transform):
    x = _dense(pbmc.X).astype(np.float64)
    scaled = x / x.sum(1, keepdims=True) * (1e6 if transform == "tpm" else 1e4)
    values = {"log2p1": np.log2(scaled + 1), "log1p": np.log1p(scaled), "tpm": scaled}[transform]
    norm = ad.AnnData(sp.csr_matrix(values.astype(np.float32)), obs=pbmc.obs.copy(), var=pbmc.var.copy())
    with pytest.raises(InputError, match="not normalised, log-transformed"):
        prepare(norm)  # refused by default
    with pytest.warns(UserWarning, match="trained on raw counts"):
        out, report = prepare(norm, counts_from=transform, counts_depth=5000)
    assert report.count_source == 'layers["counts"]'
    assert report.counts_from["transform"] == transform and report.counts_from["depth"] == 5000
    assert "pseudo-counts rebuilt from" in report.summary()
    assert np.all(out.X.data == np.rint(out.X.data)) and out.X.data.min() > 0
    # each cell's pseudo-counts are the original counts rescaled to 5000 (to rounding), genes unchanged
    ref = prepare(pbmc)[0]
    assert list(out.var_names) == list(ref.var_names)
    a, b = _dense(out.X), _dense(ref.X) * 5000 / x.sum(1, keepdims=True)
    assert np.abs(a - b).max() <= 0.5 + 1e-3
    assert "grnformer_counts_from" not in norm.uns  # the input is untouched


def test_counts_from_bad_values(pbmc):
    neg = pbmc.copy()
    neg.X = sp.csr_matrix(_dense(pbmc.X) - 1.0)
    with pytest.raises(InputError, match="non-negative finite values"):
        prepare(neg, counts_from="log1p")
    with pytest.raises(InputError, match="counts_from must be one of"):
        prepare(pbmc, counts_from="zscore")
    big = pbmc.copy()
    big.X = sp.csr_matrix(_dense(pbmc.X) * 100.0)
    with pytest.raises(InputError, match="too large for log2p1"):
        prepare(big, counts_from="log2p1")
    with pytest.raises(InputError, match="depth must be > 0"):
        prepare(pbmc, counts_from="tpm", counts_depth=0)


def test_report_with_remaps_survives_h5ad(tmp_path):
    pbmc3k = load("pbmc3k")[:50].copy()
    pbmc3k.var = pbmc3k.var[[]]
    out, report = prepare(pbmc3k)
    out.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad").uns["grnformer_prepare"]
    assert dict(zip(back["remapped"]["old"], back["remapped"]["new"])) == report.remapped
    assert back["n_genes_mapped"] == report.n_genes_mapped
