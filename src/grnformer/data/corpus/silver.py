"""Silver-standard labels for the real datasets that ship without ontology labels.

Only the retina set carries CELLxGENE labels. To give the classifier immune and pancreatic cell types to learn,
we label the other training sets ourselves, and say so everywhere these labels are used:
- PBMC sets: cells are clustered (k-means on PCA of log-normalised counts) and each cluster gets the Cell
  Ontology term whose canonical marker genes score highest in it (markers below, textbook PBMC biology);
  clusters where no marker set stands out stay 'unknown' and weigh nothing in training.
Sets that carry the authors' own labels are mapped to Cell Ontology in `author_labels` instead; assay and disease
come from each dataset's documentation there too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from sklearn.cluster import KMeans

from grnformer.data.corpus import author_labels
from grnformer.data.corpus.author_labels import CELL_TYPE_COLUMN, UNKNOWN

# The two monocyte classes, as leaves of Cell Ontology: neither is an ancestor of the other. ('CD14-positive
# monocyte', CL:0001054, is an ancestor of the CD16 term, so it cannot name the classical ones.)
CLASSICAL_MONOCYTE = "CL:0002057"  # CD14-positive, CD16-negative classical monocyte
CD16_MONOCYTE = "CL:0002396"  # CD14-low, CD16-positive monocyte

PBMC_MARKERS: dict[str, list[str]] = {
    "CL:0000084": ["CD3E", "CD3D", "CD2", "CD3G"],  # T cell (split into CD4/CD8 below)
    "CL:0000236": ["MS4A1", "CD79A", "CD79B", "CD19"],  # B cell
    CLASSICAL_MONOCYTE: ["CD14", "LYZ", "S100A8", "S100A9"],
    CD16_MONOCYTE: ["FCGR3A", "MS4A7", "CDKN1C"],
    "CL:0000623": ["GNLY", "NKG7", "KLRD1", "PRF1"],  # natural killer cell
    "CL:0000451": ["FCER1A", "CLEC10A", "CD1C"],  # dendritic cell
    "CL:0000784": ["LILRA4", "IL3RA", "CLEC4C"],  # plasmacytoid dendritic cell
    "CL:0000233": ["PPBP", "PF4"],  # platelet
}

T_CELL_SUBTYPES: dict[str, list[str]] = {
    "CL:0000624": ["CD4", "IL7R", "CCR7", "TCF7"],  # CD4-positive, alpha-beta T cell
    "CL:0000625": ["CD8A", "CD8B", "GZMK"],  # CD8-positive, alpha-beta T cell
}

# PBMC sets without the authors' cell types (zheng2017_sorted_pbmc_facs has FACS labels: data.corpus.author_labels)
PBMC_SETS = ("pbmc3k", "pbmc_soupx", "pbmc_10x_v2_1k", "pbmc_10x_v3_1k", "pbmc_10x_5prime_1k", "pbmc_ifnb",
             "celltypist_sample", "pisces_pbmc_10x_1k", "zheng2017_frozen_pbmc_donorA_10x")


def pbmc_cell_types(adata: AnnData, n_clusters: int = 14, min_margin: float = 0.25, seed: int = 0) -> pd.Series:
    """Cell Ontology term per cell from marker scores of k-means clusters; 'unknown' where no set stands out.

    T-cell clusters are split into CD4 / CD8 by a second marker comparison and keep the coarse 'T cell' term
    when neither wins clearly (the hierarchical loss learns from coarse terms too).

    ``adata`` holds raw counts with gene symbols in ``var['symbol']`` (prepared data) or as var_names.
    """
    symbols = adata.var["symbol"].astype(str) if "symbol" in adata.var else adata.var_names.astype(str)
    work = AnnData(adata.X.copy(), obs=pd.DataFrame(index=adata.obs_names.copy()),
                   var=pd.DataFrame(index=pd.Index(symbols).astype(str)))
    work.var_names_make_unique()
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    sc.pp.highly_variable_genes(work, n_top_genes=min(2000, work.n_vars))
    pca = sc.pp.pca(work[:, work.var["highly_variable"]].copy(), n_comps=min(30, work.n_obs - 1), copy=True)
    clusters = KMeans(n_clusters=min(n_clusters, work.n_obs), n_init=4, random_state=seed).fit_predict(
        pca.obsm["X_pca"])
    table = _cluster_scores(work, PBMC_MARKERS, clusters, seed)
    subtypes = _cluster_scores(work, T_CELL_SUBTYPES, clusters, seed)
    labels = np.full(work.n_obs, UNKNOWN, dtype=object)
    for cluster, row in table.iterrows():
        best = _clear_winner(row, min_margin)
        if best == "CL:0000623" and row.get("CL:0000084", 0) > 0.5 * row[best]:
            best = "CL:0000084"  # cytotoxic CD8 T cells share NK markers; CD3 expression decides
        if best == "CL:0000084" and cluster in subtypes.index:
            best = _clear_winner(subtypes.loc[cluster], min_margin) or best
        if best:
            labels[clusters == cluster] = best
    return pd.Series(labels, index=adata.obs_names, name="cell_type_ontology_term_id")


def _cluster_scores(work: AnnData, markers: dict[str, list[str]], clusters: np.ndarray, seed: int) -> pd.DataFrame:
    """Mean marker-set score (scanpy's score_genes) per cluster; columns = terms with any marker present."""
    scores = {}
    for term, genes in markers.items():
        present = [g for g in genes if g in work.var_names]
        if present:
            sc.tl.score_genes(work, present, score_name="_score", random_state=seed)
            scores[term] = work.obs["_score"].to_numpy()
    return pd.DataFrame(scores).groupby(clusters).mean()


def _clear_winner(row: pd.Series, min_margin: float) -> str | None:
    """The top term when it is positive and ahead of the runner-up by ``min_margin`` of its score."""
    ranked = row.sort_values(ascending=False)
    top = ranked.iloc[0]
    if top > 0 and (len(ranked) == 1 or top - ranked.iloc[1] >= min_margin * abs(top)):
        return str(ranked.index[0])
    return None


def add_training_labels(name: str, adata: AnnData) -> AnnData:
    """Return a copy of a named dataset with ontology label columns filled: the data's own columns first, then
    the authors' labels mapped to Cell Ontology (`author_labels`), then silver labels for unlabelled PBMC sets.
    uns['grnformer_label_source'] says which."""
    out = adata.copy()
    for column, values in author_labels.metadata_columns(name, out.obs).items():
        if column not in out.obs:
            out.obs[column] = values
    source = "dataset"
    if CELL_TYPE_COLUMN not in out.obs:
        authors = author_labels.cell_types(name, out.obs)
        if authors is not None:
            out.obs[CELL_TYPE_COLUMN], source = authors, "authors"
        elif name in PBMC_SETS:
            out.obs[CELL_TYPE_COLUMN], source = pbmc_cell_types(out), "silver"
        else:
            source = "none"
    out.uns["grnformer_label_source"] = source
    return out
