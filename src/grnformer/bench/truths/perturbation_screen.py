"""A ground truth derived from a perturbation screen: perturbed gene → genes whose expression shifts versus the
control cells (registered in `bench.truths` as 'perturbation')."""

from __future__ import annotations

import numpy as np
import pandas as pd

from grnformer.bench.truths.ground_truth import (
    GroundTruth,
    finish_truth,
    normalise_edges,
)
from grnformer.data.genes import HUMAN, MOUSE
from grnformer.data.input.expression import counts_per_10k, organism_of
from grnformer.errors import InputError


def perturbation(adata, perturbation_key: str, control: str, test: str = "mannwhitney", fdr: float = 0.05,
                 min_abs_log2fc: float = 0.25, min_cells: int = 20, min_frac_expressed: float = 0.05,
                 organism: str | None = None) -> GroundTruth:
    """Edges perturbed gene → gene whose expression shifts versus the control cells.

    Expression is log1p of counts normalised to 10,000 per cell. Per perturbation (with at least ``min_cells``
    cells), genes expressed in at least ``min_frac_expressed`` of the tested cells are tested against the controls
    (two-sided Mann–Whitney U, or Welch's t-test with ``test="ttest"``); p-values are Benjamini–Hochberg corrected
    within each perturbation; an edge needs FDR < ``fdr`` and |log2 fold change of mean normalised expression| ≥
    ``min_abs_log2fc``. The perturbed gene itself is not an edge; whether it went down is reported (on-target).
    Symbols are normalised when the organism (``organism=`` or obs['organism_ontology_term_id']) is human or mouse.
    """
    from scipy import stats

    if perturbation_key not in adata.obs:
        raise InputError(f"obs has no column {perturbation_key!r}; columns: {list(adata.obs.columns)}")
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    if control not in set(labels):
        raise InputError(f"control label {control!r} not in obs[{perturbation_key!r}]")
    if test not in ("mannwhitney", "ttest"):
        raise InputError(f"test must be 'mannwhitney' or 'ttest', not {test!r}")
    org = organism_of(adata, organism) or "unknown"
    symbols = (adata.var["symbol"] if "symbol" in adata.var else adata.var_names.to_series()).astype(str).to_numpy()
    x = counts_per_10k(adata.X, allow_empty=False)
    ctrl = labels == control
    xc = x[ctrl].toarray()
    prov = {"source_file": "AnnData in memory", "perturbation_key": perturbation_key, "control": control,
            "control_cells": int(ctrl.sum()), "test": test, "correction": "Benjamini-Hochberg per perturbation",
            "fdr": fdr, "min_abs_log2fc": min_abs_log2fc, "min_cells": min_cells,
            "min_frac_expressed": min_frac_expressed, "normalisation": "log1p(counts / depth * 1e4)",
            "perturbations": {}, "skipped_too_few_cells": [], "skipped_not_a_gene": []}
    sym_index = pd.Index(symbols)
    rows = []
    for pert in sorted(set(labels) - {control}):
        cells = labels == pert
        if cells.sum() < min_cells:
            prov["skipped_too_few_cells"].append(pert)
            continue
        xp = x[cells].toarray()
        expressed = np.concatenate([xp, xc]).astype(bool).mean(0) >= min_frac_expressed
        lp, lc = np.log1p(xp[:, expressed]), np.log1p(xc[:, expressed])
        if test == "mannwhitney":
            p = stats.mannwhitneyu(lp, lc, axis=0, alternative="two-sided", method="asymptotic").pvalue
        else:
            p = stats.ttest_ind(lp, lc, axis=0, equal_var=False).pvalue
        q = stats.false_discovery_control(np.nan_to_num(p, nan=1.0))
        lfc = np.log2((xp[:, expressed].mean(0) + 1e-9) / (xc[:, expressed].mean(0) + 1e-9))
        hits = (q < fdr) & (np.abs(lfc) >= min_abs_log2fc)
        genes = symbols[expressed]
        info = {"cells": int(cells.sum()), "genes_tested": int(expressed.sum()), "significant": int(hits.sum())}
        loc = sym_index.get_indexer([pert])[0]
        if loc >= 0:
            info["on_target_log2fc"] = float(np.log2((xp[:, loc].mean() + 1e-9) / (xc[:, loc].mean() + 1e-9)))
        else:
            prov["skipped_not_a_gene"].append(pert)
        prov["perturbations"][pert] = info
        hit_genes = genes[hits]
        rows.append(pd.DataFrame({"regulator": pert, "target": hit_genes[hit_genes != pert]}))
    edges = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["regulator", "target"])
    if org in (HUMAN, MOUSE) and len(edges):
        edges = normalise_edges(edges, org, prov)
    return finish_truth(edges, f"perturbation_{perturbation_key}", org, prov)
