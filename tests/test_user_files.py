"""Files that are fine but not tidy: gene lists with a few unknown names, repeated cell names, normalised values,
names written by other tools. Each is handled and said, not refused."""

import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from _tasks_support import pbmc, run_grn, run_grn_file, tiny_bundle

from grnformer import InputError
from grnformer.tasks.embed import embed_file


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    return pbmc(40)


def _listed_genes(cells, n):
    """The n symbols expressed in most cells (all map to the vocabulary)."""
    from grnformer.data.input.prepare import prepare

    prepared = prepare(cells)[0]
    order = np.argsort(-np.bincount(prepared.X.indices, minlength=prepared.n_vars), kind="stable")
    return list(prepared.var["symbol"].to_numpy()[order[:n]])


def test_gene_list_with_a_few_unknown_names_gives_the_network_of_the_others(bundle, cells):
    known = _listed_genes(cells, 30)
    unknown = ["NOTAGENE1", "NOTAGENE2", "ENSG99999999999"]
    with pytest.warns(UserWarning, match=r"3 of 33 listed genes .* NOTAGENE1, NOTAGENE2, ENSG99999999999"):
        net = run_grn(bundle, cells, genes=known[:15] + unknown + known[15:], progress=False)
    assert list(net.var["symbol"]) == known
    assert net.uns["grn"]["genes_not_found"] == unknown
    reference = run_grn(bundle, cells, genes=known, progress=False)
    np.testing.assert_allclose(net.varp["GRN"], reference.varp["GRN"], rtol=1e-5, atol=1e-7)
    assert reference.uns["grn"]["genes_not_found"] == []
    # the share that may be missing is an option
    with pytest.raises(InputError, match="3 of 33 genes are not among.*more than 5%"):
        run_grn(bundle, cells, genes=known + unknown, max_missing=0.05, progress=False)
    with pytest.raises(InputError, match="more than 50%"):
        run_grn(bundle, cells, genes=known[:2] + unknown, progress=False)


def test_gene_list_names_by_outdated_symbol_or_other_case(bundle, cells):
    """A list may name genes the way another table does: upper/lower case, Ensembl IDs with versions."""
    known = _listed_genes(cells, 10)
    from grnformer.data.input.prepare import prepare

    prepared = prepare(cells)[0]
    ids = prepared.var.index[prepared.var["symbol"].isin(known[5:])].tolist()
    names = [g.lower() for g in known[:5]] + [f"{g}.3" for g in ids] + ["TCEB2"]  # ELOB's previous symbol
    net = run_grn(bundle, cells, genes=names, progress=False)
    assert set(net.var["symbol"]) == set(known) | {"ELOB"}
    assert net.uns["grn"]["genes_not_found"] == []


def test_more_genes_asked_than_expressed_says_how_many_are_used(bundle, cells):
    with pytest.warns(UserWarning, match=r"n_genes=50,000 asked for, but only [\d,]+ of the data's [\d,]+ "
                                         r"vocabulary genes are expressed in >= 3 of its 40 cells"):
        net = run_grn(bundle, cells[:, :3000].copy(), genes="hvg", n_genes=50_000, progress=False)
    assert net.n_vars > 100


def test_repeated_cell_names_are_made_unique_in_outputs(bundle, cells, tmp_path):
    rep = cells.copy()
    names = list(rep.obs_names)
    names[3] = names[2]
    rep.obs_names = names
    src = tmp_path / "rep.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep.write_h5ad(src)
    with pytest.warns(UserWarning, match="1 cell names repeat"):
        out = embed_file(bundle, src, tmp_path / "emb.h5ad", progress=False)
    result = ad.read_h5ad(out)
    assert result.obs_names.is_unique and result.obs_names[3] == f"{names[2]}-1"
    assert np.isfinite(result.obsm["X_grnformer"]).all()
    # through the API the same: prepare makes them unique and the tasks map results onto the right rows
    with pytest.warns(UserWarning, match="repeat"):
        net = run_grn(bundle, rep, genes=_listed_genes(cells, 12), progress=False)
    assert net.obs_names.is_unique and net.n_obs == rep.n_obs


def test_grn_file_on_normalised_values_with_pseudo_counts(bundle, cells, tmp_path):
    """log2(x+1) values (as BEELINE ships them) run once their counts are rebuilt; refused without."""
    from grnformer.data.input.pseudo_counts import with_pseudo_counts

    x = cells.X.toarray().astype(np.float64)
    logged = ad.AnnData(sp.csr_matrix(np.log2(x / x.sum(1, keepdims=True) * 1e4 + 1).astype(np.float32)),
                        obs=cells.obs.copy(), var=cells.var.copy())
    genes = _listed_genes(cells, 12)
    with pytest.raises(InputError, match="not normalised, log-transformed"):
        run_grn(bundle, logged, genes=genes, progress=False)
    with pytest.warns(UserWarning, match="trained on raw counts"):
        pseudo = with_pseudo_counts(logged, "log2p1")
    paths = run_grn_file(bundle, pseudo, tmp_path / "net.h5ad", genes=genes, progress=False)
    net = ad.read_h5ad(paths[0])
    assert list(net.var["symbol"]) == genes and np.isfinite(net.varp["GRN"]).all()


def test_cli_counts_from_on_prepare_and_a_task(cells, tmp_path, capsys):
    from grnformer.cli import main

    x = cells.X.toarray().astype(np.float64)
    logged = ad.AnnData(sp.csr_matrix(np.log1p(x / x.sum(1, keepdims=True) * 1e4).astype(np.float32)),
                        obs=cells.obs.copy(), var=cells.var.copy())
    src = tmp_path / "log.h5ad"
    logged.write_h5ad(src)
    assert main(["prepare", str(src)]) == 2 and "not normalised, log-transformed" in capsys.readouterr().err
    assert main(["prepare", str(src), "--counts-from", "log1p", "--counts-depth", "2000"]) == 0
    assert "pseudo-counts rebuilt from log1p values (scaled to 2,000 per cell" in capsys.readouterr().out
    assert main(["prepare", str(src), "--counts-depth", "2000"]) == 2
    assert "needs --counts-from" in capsys.readouterr().err
    out = tmp_path / "emb.h5ad"
    assert main(["embed", "shipped", str(src), str(out), "--counts-from", "log1p", "--device", "cpu"]) == 0
    result = ad.read_h5ad(out)
    np.testing.assert_allclose(result.X.toarray(), logged.X.toarray())  # the user's values, as given
    assert result.obsm["X_grnformer"].shape[0] == cells.n_obs and "counts" in result.layers
    assert result.uns["grnformer_counts_from"]["transform"] == "log1p"


def test_reading_a_file_with_repeated_gene_names_is_quiet(cells, tmp_path):
    from grnformer.inference.prepared import read_input

    rep = cells.copy()
    names = list(rep.var_names)
    names[1] = names[0]
    rep.var_names = names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep.write_h5ad(tmp_path / "rep.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adata = read_input(tmp_path / "rep.h5ad")
    assert adata.n_vars == rep.n_vars


def test_demo_network_gene_choice_prints_no_anndata_warning(cells):
    """Prepared genes may share a symbol; the demo's gene choice used to print anndata's 'not unique' warning."""
    from grnformer.data.input.prepare import prepare
    from grnformer.demo import _network_genes

    prepared = prepare(cells)[0]
    assert prepared.var["symbol"].duplicated().any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(_network_genes(prepared, 20)) == 20


def test_cli_grn_max_missing(cells, tmp_path, capsys):
    from grnformer.cli import main

    src = tmp_path / "in.h5ad"
    cells[:8].copy().write_h5ad(src)
    genes = ",".join(_listed_genes(cells, 10) + ["NOTAGENE1"])
    assert main(["grn", "shipped", str(src), str(tmp_path / "net.h5ad"), "--genes", genes, "--max-missing", "0.05",
                 "--device", "cpu"]) == 2
    assert "1 of 11 genes are not among" in capsys.readouterr().err and not (tmp_path / "net.h5ad").exists()
    assert main(["grn", "shipped", str(src), str(tmp_path / "net.h5ad"), "--genes", genes, "--device", "cpu",
                 "--regulators", "all"]) == 0
    net = ad.read_h5ad(tmp_path / "net.h5ad")
    assert net.n_vars == 10 and list(net.uns["grn"]["genes_not_found"]) == ["NOTAGENE1"]
