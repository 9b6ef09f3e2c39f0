"""A network as an AnnData readable by plain anndata (and GRnnData): the genes' names, the provenance a resumed
run compares (uns['grn']) and the AnnData itself, the same for every method."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

import grnformer
from grnformer.bundle.checkpoint import Bundle
from grnformer.data.genes import tf_symbols
from grnformer.inference.prepared import Prepared
from grnformer.networks.grn_options import GRNOptions
from grnformer.networks.heads import head_names
from grnformer.networks.methods import get_method


def provenance(bundle: Bundle, prep: Prepared, opts: GRNOptions, group: str, n_cells: int, n_contexts: int
               ) -> dict[str, Any]:
    """uns['grn'] of a network, less its uniform level (a result): what a resumed run compares (RESUME_KEYS)."""
    return {
        **opts.recorded(bundle),
        "rows": "knocked-out regulators" if get_method(opts.method).accumulates == "knockout" else
        "keys (regulators whose values the targets read)" if opts.direction == "kq" else "queries",
        "genes_not_found": list(prep.genes_not_found), "group": group, "n_cells": n_cells,
        "n_contexts_per_cell": n_contexts, "organism": prep.organism,
        "model": {k: bundle.config.to_dict()[k] for k in ("d_model", "n_layers", "n_heads", "context_length")},
        "grnformer_version": grnformer.__version__,
    }


def network_names(prep: Prepared, cols: np.ndarray) -> pd.Series:
    """The network genes' names: symbols, the Ensembl ID where a symbol is missing, both where symbols repeat."""
    var = prep.adata.var.iloc[cols]
    gene_id = var.index.to_numpy().astype(str)
    symbol = var["symbol"].astype(object).where(var["symbol"].notna() & (var["symbol"].astype(str) != ""))
    names = pd.Series(np.where(symbol.isna(), gene_id, symbol.astype(str)))
    dup = names.duplicated(keep=False).to_numpy()
    names[dup] = names[dup] + "_" + gene_id[dup]
    return names


def network_adata(grn_matrix: np.ndarray | sp.csr_matrix, prep: Prepared, cols: np.ndarray, rows: np.ndarray,
                  n_cells: np.ndarray, uns: dict[str, Any], cube: np.ndarray | None = None,
                  n_layers: int = 0, n_heads: int = 0, regulators: np.ndarray | None = None) -> AnnData:
    """The network as an AnnData readable by plain anndata (and GRnnData): var_names = symbols."""
    var = prep.adata.var.iloc[cols]
    gene_id = var.index.to_numpy().astype(str)
    names = network_names(prep, cols)
    tfs = tf_symbols(prep.organism)
    out_var = pd.DataFrame({"gene_id": gene_id, "symbol": var["symbol"].astype(str).to_numpy(),
                            "is_tf": np.isin(var["symbol"].astype(str).to_numpy(), list(tfs)),
                            "is_regulator": np.ones(len(cols), dtype=bool) if regulators is None else regulators,
                            "n_cells": n_cells.astype(np.int64)}, index=pd.Index(names.to_numpy(), name="gene"))
    x = prep.adata.X[rows][:, cols]
    net = AnnData(X=sp.csr_matrix(x, dtype=np.float32), obs=prep.adata.obs.iloc[rows].copy(), var=out_var)
    net.varp["GRN"] = grn_matrix.astype(np.float32) if isinstance(grn_matrix, np.ndarray) else grn_matrix
    net.uns["grn"] = uns
    if cube is not None:
        net.uns["grn_heads"] = cube
        net.uns["grn_head_names"] = head_names(n_layers, n_heads)
    return net
