"""Every command reads the files people have: PBMC3k's counts written as h5ad, 10x HDF5 (v3 and v2), 10x MTX
directories (gzipped or not), loom, CSV and TSV in both orientations, read back to the same cells, genes, gene IDs
and counts; broken files get one InputError naming the format tried, and nothing is written."""

import gzip
import re
import shutil
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from grnformer import InputError
from grnformer.cli import main as cli_main
from grnformer.data.corpus.datasets import load
from grnformer.data.input.prepare import prepare
from grnformer.data.input.read import read_cells


@pytest.fixture(scope="module")
def cells() -> ad.AnnData:
    """200 PBMC3k cells and the genes they express (symbols as var_names, Ensembl IDs in var['gene_ids'])."""
    pbmc = load("pbmc3k")[:200]
    x = sp.csr_matrix(pbmc.X, dtype=np.float32)
    keep = np.asarray((x > 0).sum(axis=0)).ravel() > 0
    return ad.AnnData(x[:, keep], obs=pd.DataFrame(index=pbmc.obs_names.astype(str)),
                      var=pd.DataFrame({"gene_ids": pbmc.var["gene_ids"].astype(str).to_numpy()[keep]},
                                       index=pbmc.var_names.astype(str)[keep]))


def _dense(a: ad.AnnData) -> np.ndarray:
    return a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)


def _same(read: ad.AnnData, cells: ad.AnnData, ids: bool = True) -> None:
    assert list(read.obs_names) == list(cells.obs_names)
    assert list(read.var_names) == list(cells.var_names)
    np.testing.assert_array_equal(_dense(read), _dense(cells))
    if ids:
        assert list(read.var["gene_ids"]) == list(cells.var["gene_ids"])


# ------------------------------------------------------------------------------------------------- writers

def _strings(values) -> np.ndarray:
    return np.array([str(v).encode() for v in values], dtype="S")


def write_10x_h5_v3(path, a: ad.AnnData, antibodies: int = 0) -> None:
    """Cell Ranger 3+ layout: /matrix with a CSC genes × cells matrix (= CSR cells × genes) and /matrix/features.
    ``antibodies`` extra 'Antibody Capture' features, which the reader leaves out."""
    x = sp.hstack([a.X, sp.csr_matrix(np.ones((a.n_obs, antibodies), dtype=np.float32))], format="csr")
    ids = list(a.var["gene_ids"]) + [f"AB{i}" for i in range(antibodies)]
    names = list(a.var_names) + [f"CD{i}_TotalSeqB" for i in range(antibodies)]
    types = ["Gene Expression"] * a.n_vars + ["Antibody Capture"] * antibodies
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = _strings(a.obs_names)
        m["data"] = x.data.astype(np.int32)
        m["indices"] = x.indices.astype(np.int64)
        m["indptr"] = x.indptr.astype(np.int64)
        m["shape"] = np.array([x.shape[1], x.shape[0]], dtype=np.int32)
        feats = m.create_group("features")
        feats["id"], feats["name"], feats["feature_type"] = _strings(ids), _strings(names), _strings(types)
        feats["genome"] = _strings(["GRCh38"] * len(ids))
        feats["_all_tag_keys"] = _strings(["genome"])


def write_10x_h5_v2(path, a: ad.AnnData, genomes=("hg19",)) -> None:
    """Cell Ranger 2 layout: one group per genome with barcodes, data, indices, indptr, shape, genes, gene_names."""
    with h5py.File(path, "w") as f:
        for genome in genomes:
            g = f.create_group(genome)
            g["barcodes"] = _strings(a.obs_names)
            g["data"] = a.X.data.astype(np.int32)
            g["indices"], g["indptr"] = a.X.indices.astype(np.int64), a.X.indptr.astype(np.int64)
            g["shape"] = np.array([a.n_vars, a.n_obs], dtype=np.int32)
            g["genes"], g["gene_names"] = _strings(a.var["gene_ids"]), _strings(a.var_names)


def write_mtx_dir(directory, a: ad.AnnData, layout: str, gz: bool, prefix: str = "") -> None:
    """A 10x MTX directory: v3 (features.tsv with a type column) or v2 (genes.tsv), every file gzipped or not."""
    directory.mkdir(parents=True)
    genes = pd.DataFrame({"id": a.var["gene_ids"], "name": a.var_names})
    if layout == "v3":
        genes["type"] = "Gene Expression"
    files = {"matrix.mtx": None, ("features.tsv" if layout == "v3" else "genes.tsv"): genes,
             "barcodes.tsv": pd.DataFrame({"barcode": a.obs_names})}
    for name, table in files.items():
        path = directory / f"{prefix}{name}"
        if table is None:
            scipy.io.mmwrite(str(path), sp.coo_matrix(a.X.T.astype(np.int64)))
        else:
            table.to_csv(path, sep="\t", header=False, index=False)
        if gz:
            with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            path.unlink()


def write_table(path, a: ad.AnnData, genes_as_rows: bool, id_column: bool = False) -> None:
    sep = "," if ".csv" in path.name else "\t"
    values = _dense(a).astype(np.int64)
    if genes_as_rows:
        table = pd.DataFrame(values.T, index=pd.Index(a.var_names, name="gene"), columns=a.obs_names)
        if id_column:
            table.insert(0, "ensembl", a.var["gene_ids"].to_numpy())
    else:
        table = pd.DataFrame(values, index=pd.Index(a.obs_names, name="cell"), columns=a.var_names)
    table.to_csv(path, sep=sep)  # pandas compresses a .gz name


# ---------------------------------------------------------------------------------------------- round trips

def test_h5ad(tmp_path, cells):
    cells.write_h5ad(tmp_path / "cells.h5ad")
    a = read_cells(tmp_path / "cells.h5ad")
    _same(a, cells)
    assert a.uns["grnformer_read"]["format"] == "h5ad"


def test_10x_h5_v3_keeps_gene_ids_and_only_gene_expression(tmp_path, cells):
    write_10x_h5_v3(tmp_path / "filtered_feature_bc_matrix.h5", cells, antibodies=3)
    a = read_cells(tmp_path / "filtered_feature_bc_matrix.h5")
    _same(a, cells)
    assert a.uns["grnformer_read"] == {"format": "10x_h5", "path": str(tmp_path / "filtered_feature_bc_matrix.h5"),
                                       "layout": "v3"}


def test_10x_h5_v2(tmp_path, cells):
    write_10x_h5_v2(tmp_path / "filtered_gene_bc_matrices_h5.h5", cells)
    a = read_cells(tmp_path / "filtered_gene_bc_matrices_h5.h5")
    _same(a, cells)
    assert a.uns["grnformer_read"]["layout"] == "v2"


@pytest.mark.parametrize("layout,gz,prefix", [("v3", True, ""), ("v3", False, ""), ("v2", False, ""),
                                              ("v2", True, ""), ("v3", True, "GSM123_")])
def test_10x_mtx_directory(tmp_path, cells, layout, gz, prefix):
    directory = tmp_path / "filtered_feature_bc_matrix"
    write_mtx_dir(directory, cells, layout, gz, prefix)
    _same(read_cells(directory), cells)
    matrix = directory / f"{prefix}matrix.mtx{'.gz' if gz else ''}"
    _same(read_cells(matrix), cells)  # the matrix file itself names its directory


def test_loom_anndata_and_loompy_conventions(tmp_path, cells):
    cells.write_loom(tmp_path / "anndata.loom")  # row/column attributes 'var_names', 'obs_names', 'gene_ids'
    _same(read_cells(tmp_path / "anndata.loom"), cells)
    import loompy

    loompy.create(str(tmp_path / "velocyto.loom"), {"": cells.X.T.tocsr(), "spliced": cells.X.T.tocsr()},
                  row_attrs={"Gene": np.asarray(cells.var_names), "Accession": cells.var["gene_ids"].to_numpy()},
                  col_attrs={"CellID": np.asarray(cells.obs_names)})
    a = read_cells(tmp_path / "velocyto.loom")  # the main matrix is X, whatever other layers there are
    _same(a, cells)
    assert a.uns["grnformer_read"]["var_names"] == "Gene"


@pytest.mark.parametrize("name,genes_as_rows", [("cells.csv", False), ("cells.csv.gz", True),
                                                ("cells.tsv", True), ("cells.tsv.gz", False)])
def test_tables_in_either_orientation(tmp_path, cells, name, genes_as_rows):
    write_table(tmp_path / name, cells, genes_as_rows)
    with pytest.warns(UserWarning, match="genes × cells.*transposed" if genes_as_rows else "read as cells × genes"):
        a = read_cells(tmp_path / name)
    _same(a, cells, ids=False)
    record = a.uns["grnformer_read"]
    assert record["orientation"] == ("genes × cells" if genes_as_rows else "cells × genes")
    assert "known gene names" in record["reason"]


def test_table_gene_id_column_is_kept_and_prepare_maps_by_it(tmp_path, cells):
    write_table(tmp_path / "genes.csv", cells, genes_as_rows=True, id_column=True)
    with pytest.warns(UserWarning, match="genes × cells"):
        a = read_cells(tmp_path / "genes.csv")
    _same(a, cells)  # the Ensembl column became var['gene_ids']
    assert list(a.var["ensembl"]) == list(cells.var["gene_ids"])
    _, report = prepare(a)
    assert report.gene_source in ("var_names", 'var["gene_ids"]') and report.n_genes_mapped > 5000


def test_10x_mtx_maps_through_its_ensembl_ids(tmp_path):
    """Symbols repeat or go out of date; on every gene of PBMC3k the IDs the 10x files carry map more genes than
    the symbols, so prepare maps by them (it takes whichever of var_names and var['gene_ids'] maps more)."""
    pbmc = load("pbmc3k")[:100]
    full = ad.AnnData(sp.csr_matrix(pbmc.X, dtype=np.float32), obs=pd.DataFrame(index=pbmc.obs_names.astype(str)),
                      var=pd.DataFrame({"gene_ids": pbmc.var["gene_ids"].astype(str).to_numpy()},
                                       index=pbmc.var_names.astype(str)))
    write_mtx_dir(tmp_path / "mtx", full, "v3", gz=True)
    _, report = prepare(read_cells(tmp_path / "mtx"))
    assert report.gene_source == 'var["gene_ids"]' and report.id_type == "ensembl"


def test_table_whose_names_are_not_genes_is_taken_as_cells_by_rows_and_says_so(tmp_path):
    table = pd.DataFrame(np.arange(12).reshape(4, 3), index=[f"cell_{i}" for i in range(4)],
                         columns=["feature_1", "feature_2", "feature_3"])
    table.to_csv(tmp_path / "odd.csv")
    with pytest.warns(UserWarning, match="neither axis is clearly genes; assumed rows are cells"):
        a = read_cells(tmp_path / "odd.csv")
    assert a.shape == (4, 3) and list(a.obs_names) == [f"cell_{i}" for i in range(4)]


# ---------------------------------------------------------------------------------------------- bad files

def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_bad_files_name_the_format_tried(tmp_path, cells):
    cases = []
    (tmp_path / "text.h5ad").write_text("cell,CD3E\nc1,1\n")  # a table named like an h5ad
    cases.append((tmp_path / "text.h5ad", r"as an h5ad file: it is not an HDF5 file"))
    cells.write_h5ad(tmp_path / "cut.h5ad")
    _truncate(tmp_path / "cut.h5ad")
    cases.append((tmp_path / "cut.h5ad", r"could not read '.*cut.h5ad' as an h5ad file"))
    write_10x_h5_v3(tmp_path / "cut.h5", cells)
    _truncate(tmp_path / "cut.h5")
    cases.append((tmp_path / "cut.h5", r"could not read '.*cut.h5' as a 10x HDF5 file"))
    write_table(tmp_path / "cut.csv.gz", cells, genes_as_rows=False)
    _truncate(tmp_path / "cut.csv.gz")
    cases.append((tmp_path / "cut.csv.gz", r"could not read '.*cut.csv.gz' as a CSV table"))
    pd.DataFrame({"cell": ["a", "b"], "CD3E": [1, "x"], "MS4A1": [0, 2]}).to_csv(tmp_path / "words.csv", index=False)
    cases.append((tmp_path / "words.csv", r"as a CSV table of counts: column\(s\) \['CD3E'\] .*\(e.g. 'x'\)"))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["weights"] = np.zeros(3)
    cases.append((tmp_path / "other.h5", r"as a 10x HDF5 file: it is an HDF5 file but its layout is none"))
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", r"as a 10x MTX directory: the directory is empty"))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    cases.append((tmp_path / "notes", r"expected one matrix.mtx\[.gz\], found none"))
    write_mtx_dir(tmp_path / "nobarcodes", cells, "v3", gz=True)
    (tmp_path / "nobarcodes" / "barcodes.tsv.gz").unlink()
    cases.append((tmp_path / "nobarcodes", r"no barcodes.tsv\[.gz\] \(cell barcodes\)"))
    (tmp_path / "cells.xlsx").write_bytes(b"PK\x03\x04")
    cases.append((tmp_path / "cells.xlsx", r"unknown format \(suffix '.xlsx'\)"))
    cases.append((tmp_path / "missing.h5ad", r"'.*missing.h5ad' does not exist"))
    write_10x_h5_v2(tmp_path / "two.h5", cells, genomes=("hg19", "mm10"))
    cases.append((tmp_path / "two.h5", r"several genomes \(hg19, mm10\)"))
    for path, message in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                read_cells(path)
            except InputError as err:
                assert re.search(message, str(err)), (path.name, str(err))
            else:
                pytest.fail(f"{path.name} was read without an error")


# ----------------------------------------------------------------------------------------- every command

def test_embed_command_reads_a_10x_directory(tmp_path, cells, capsys):
    directory = tmp_path / "filtered_feature_bc_matrix"
    write_mtx_dir(directory, cells[:60], "v3", gz=True)
    out = tmp_path / "embedded.h5ad"
    assert cli_main(["embed", "shipped", str(directory), str(out), "--device", "cpu"]) in (0, None)
    a = ad.read_h5ad(out)
    assert a.obsm["X_grnformer"].shape[0] == 60 and list(a.obs_names) == list(cells.obs_names[:60])
    assert "gene_ids" in a.var


def test_commands_refuse_a_broken_file_and_write_nothing(tmp_path, cells, capsys):
    write_table(tmp_path / "cut.csv.gz", cells, genes_as_rows=False)
    _truncate(tmp_path / "cut.csv.gz")
    for command in (["embed", "shipped"], ["classify", "shipped"], ["denoise", "shipped"], ["grn", "shipped"]):
        out = tmp_path / f"{command[0]}.h5ad"
        assert cli_main([*command, str(tmp_path / "cut.csv.gz"), str(out)]) == 2
        assert "as a CSV table" in capsys.readouterr().err and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.csv.gz"]


def test_datasets_and_prepare_take_a_path(tmp_path, cells):
    """`bench --datasets` and `demo --adata` load through these: a file of cells is a dataset named by its stem."""
    write_10x_h5_v3(tmp_path / "donor1.h5", cells)
    a = load(str(tmp_path / "donor1.h5"), prepared=True)
    assert a.uns["grnformer_dataset"] == "donor1" and a.n_obs == cells.n_obs
    from grnformer.bench.runner import resolve_datasets

    write_mtx_dir(tmp_path / "donor2", cells[:50], "v2", gz=False)
    resolved = resolve_datasets([str(tmp_path / "donor2")])
    assert list(resolved) == ["donor2"] and resolved["donor2"].n_obs == 50
    with pytest.raises(InputError, match="unknown dataset 'nothing.h5ad' \\(and no such file\\).*10x MTX"):
        load("nothing.h5ad")
