"""Classical network-inference baselines behind one interface: ``infer(method, adata, genes, regulators)``.

Input is a cells × genes AnnData of raw counts (as `data.input.prepare` returns it; genes named by ``var['symbol']``
when present, else ``var_names``). Counts are normalised to 10,000 per cell over all genes, then log1p, then the
requested genes are kept — every method sees the same matrix. An AnnData whose ``uns['transform'] == 'given'`` (e.g. a
BEELINE ExpressionData table, already normalised) is used as is.

The result is a network AnnData (no cells): ``varp['GRN']`` genes × genes, rows = regulators, columns = targets
(rows of genes that are not regulators are 0), ``var_names`` symbols, ``var['is_tf']``, ``var['is_regulator']``,
and ``uns['grn']`` with the method, its parameters, its version and wall time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import inspect
import io
import math
import sys
import time
import types
from collections.abc import Callable, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import Parallel, delayed

from grnformer.data.genes import tf_symbols
from grnformer.data.input.expression import log_per_10k, organism_of
from grnformer.errors import InputError
from grnformer.inference.gene_sets import variable_genes

MethodFn = Callable[..., np.ndarray]


# ---------------------------------------------------------------------------------------------------- input


def gene_symbols(adata: ad.AnnData) -> np.ndarray:
    """Gene symbols of an AnnData: ``var['symbol']`` when present, else ``var_names``."""
    return (adata.var["symbol"] if "symbol" in adata.var else adata.var_names.to_series()).astype(str).to_numpy()


def log_normalised(adata: ad.AnnData, columns: np.ndarray | None = None) -> np.ndarray:
    """Dense float32 log1p(counts / depth × 1e4) of the given gene columns (depth over all genes)."""
    x = adata.X
    if adata.uns.get("transform") == "given":
        out = x[:, columns] if columns is not None else x
        return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)
    x = x.tocsr() if sp.issparse(x) else sp.csr_matrix(np.asarray(x))
    if x.nnz and (x.data < 0).any():
        raise InputError("X has negative values: give raw counts (or set uns['transform'] = 'given')")
    logx = log_per_10k(x, allow_empty=False)
    return (logx[:, columns] if columns is not None else logx).toarray().astype(np.float32)


def select_genes(adata: ad.AnnData, n_genes: int = 1000, n_tfs: int = 500, organism: str | None = None,
                 min_frac: float = 0.01) -> list[str]:
    """A benchmark gene set: the ``n_tfs`` most variable TFs, then the most variable genes, ``n_genes`` in total.

    Genes must be detected in at least ``min_frac`` of cells; variability and the TFs-first rule are
    `inference.gene_sets.variable_genes`' (the one owner of that choice), on the matrix every method sees
    (`log_normalised`). Deterministic.
    """
    org = organism_of(adata, organism)
    tfs = tf_symbols(org) if org is not None and n_tfs > 0 else frozenset()
    min_cells = max(1, math.ceil(min_frac * adata.n_obs))
    return variable_genes(log_normalised(adata), gene_symbols(adata), n_genes, tfs, n_tfs, min_cells)


# ---------------------------------------------------------------------------------------------------- methods


def _correlation(x: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """|Pearson r| between every regulator column and every gene column (the one rule: `abs_correlation`)."""
    from grnformer.networks.from_data import abs_correlation

    return abs_correlation(x)[reg]


def pearson(x: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Absolute Pearson correlation: the sign (activation or repression) is not what the truths record."""
    return _correlation(x, reg)


def spearman(x: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Absolute Spearman correlation (Pearson on per-gene ranks, ties averaged; `abs_spearman`)."""
    from grnformer.networks.from_data import abs_spearman

    return abs_spearman(x)[reg]


def _tree_importance(trees) -> np.ndarray:
    """Summed unnormalised impurity decrease per feature: in units of the target's variance, so comparable across
    targets (normalised sklearn importances would give every target the same total)."""
    return np.sum([t.tree_.compute_feature_importances(normalize=False) for t in trees], axis=0)


def _fit_targets(kind: str, x: np.ndarray, reg: np.ndarray, targets: np.ndarray, seed: int, params: dict):
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingRegressor,
        RandomForestRegressor,
    )

    out = np.zeros((len(targets), len(reg)), dtype=np.float32)
    for row, j in enumerate(targets):
        feats = reg != j
        y = x[:, j].astype(np.float64)
        sd = y.std()
        if sd == 0:
            continue
        y = (y - y.mean()) / sd
        state = seed + int(j)
        if kind == "genie3":
            cls = ExtraTreesRegressor if params["tree_method"] == "et" else RandomForestRegressor
            cap = params["max_samples"]
            model = cls(n_estimators=params["n_estimators"], max_features=params["max_features"],
                        max_samples=None if cap is None or cap >= len(y) else int(cap),
                        bootstrap=params["tree_method"] == "rf" or (cap is not None and cap < len(y)),
                        random_state=state, n_jobs=1).fit(x[:, reg[feats]], y)
            imp = _tree_importance(model.estimators_) / len(model.estimators_)
        else:
            model = GradientBoostingRegressor(
                learning_rate=params["learning_rate"], n_estimators=params["n_estimators"],
                max_depth=params["max_depth"], max_features=params["max_features"], subsample=params["subsample"],
                n_iter_no_change=params["n_iter_no_change"], validation_fraction=params["validation_fraction"],
                random_state=state).fit(x[:, reg[feats]], y)
            imp = _tree_importance(model.estimators_[:, 0]) * params["learning_rate"]
        out[row, feats] = imp
    return targets, out


def _per_target(kind: str, x: np.ndarray, reg: np.ndarray, seed: int, n_jobs: int, params: dict) -> np.ndarray:
    """Fit one regressor per target (every gene), in parallel chunks; each target's seed is ``seed + index`` so the
    result does not depend on ``n_jobs``."""
    n = x.shape[1]
    chunks = np.array_split(np.arange(n), max(1, min(n, 8 * max(n_jobs, 1))))
    results = Parallel(n_jobs=n_jobs)(delayed(_fit_targets)(kind, x, reg, c, seed, params) for c in chunks if len(c))
    scores = np.zeros((len(reg), n), dtype=np.float32)
    for targets, imp in results:
        scores[:, targets] = imp.T
    return scores


def genie3(x: np.ndarray, reg: np.ndarray, seed: int = 0, n_jobs: int = 1, n_estimators: int = 100,
           max_features: str | float = "sqrt", tree_method: str = "rf", max_samples: int | None = None) -> np.ndarray:
    """GENIE3 (Huynh-Thu et al. 2010): per target, a random forest (``tree_method='rf'``) or extra-trees (``'et'``)
    on the regulators, √p features per split; edge score = the regulator's importance for that target.
    ``max_samples`` caps the cells each tree draws (bootstrap of that size) so large data sets stay affordable."""
    if tree_method not in ("rf", "et"):
        raise InputError(f"tree_method must be 'rf' or 'et', not {tree_method!r}")
    return _per_target("genie3", x, reg, seed, n_jobs,
                       {"n_estimators": n_estimators, "max_features": max_features, "tree_method": tree_method,
                        "max_samples": max_samples})


def grnboost2(x: np.ndarray, reg: np.ndarray, seed: int = 0, n_jobs: int = 1, n_estimators: int = 500,
              learning_rate: float = 0.01, max_depth: int = 3, max_features: float = 0.1, subsample: float = 0.9,
              n_iter_no_change: int = 25, validation_fraction: float = 0.1) -> np.ndarray:
    """GRNBoost2-style (Moerman et al. 2019): per target, stochastic gradient boosting of shallow trees with early
    stopping on a held-out fraction; edge score = the regulator's total squared-error reduction × learning rate."""
    return _per_target("grnboost2", x, reg, seed, n_jobs,
                       {"n_estimators": n_estimators, "learning_rate": learning_rate, "max_depth": max_depth,
                        "max_features": max_features, "subsample": subsample, "n_iter_no_change": n_iter_no_change,
                        "validation_fraction": validation_fraction})


def boosted(x: np.ndarray, reg: np.ndarray, seed: int = 0, n_jobs: int = 1, learning_rate: float | None = None,
            max_iter: int | None = None, max_leaf_nodes: int | None = None, max_features: float | None = None,
            max_bins: int | None = None, importance: str | None = None) -> np.ndarray:
    """The GRNBoost2-class booster `grn --method boosted` runs (`networks.boosted_trees`: per target, scikit-learn's
    histogram gradient boosting with early stopping, score = summed split gain); options left None keep its
    defaults."""
    from grnformer.networks.boosted_trees import boosted_importance

    given = {"learning_rate": learning_rate, "max_iter": max_iter, "max_leaf_nodes": max_leaf_nodes,
             "max_features": max_features, "max_bins": max_bins, "importance": importance}
    return boosted_importance(x, reg, seed=seed, n_jobs=n_jobs, **{k: v for k, v in given.items() if v is not None})


def _import_regdiffusion():
    """regdiffusion, or an ImportError saying how to install it without pulling another torch build."""
    if importlib.util.find_spec("regdiffusion") is None:
        raise ImportError("the 'regdiffusion' baseline needs the regdiffusion package: "
                          "`pip install --no-deps regdiffusion==0.2.3` (its other needs — torch, scanpy, "
                          "scikit-learn, h5py, tqdm — are grnformer's own; --no-deps keeps your torch build)")
    if "pyvis" not in sys.modules and importlib.util.find_spec("pyvis") is None:
        # regdiffusion's package __init__ imports pyvis (and through it IPython, jinja2, jsonpickle) only to offer an
        # interactive plot we never call: a stand-in module lets it import without those packages.
        stub = types.ModuleType("pyvis")
        stub.network = types.SimpleNamespace(Network=object)
        sys.modules["pyvis"] = stub
    import regdiffusion

    return regdiffusion


def regdiffusion(x: np.ndarray, reg: np.ndarray, seed: int = 0, n_steps: int = 1000,
                 device: str | None = None) -> np.ndarray:
    """RegDiffusion (Zhu & Slonim 2024): a diffusion model whose learned gene×gene adjacency is the network
    (its rows are regulators). Trained on the log-normalised matrix, without the cells that are constant over the
    chosen genes; CUDA when available, else CPU."""
    rd = _import_regdiffusion()
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # it min-max scales each cell over the given genes: a cell constant over them (often all zero) would be NaN
    varying = x.max(1) > x.min(1)
    if varying.sum() < 2:
        raise InputError("regdiffusion needs at least two cells that vary over the chosen genes")
    x = x[varying]
    trainer = rd.RegDiffusionTrainer(x, n_steps=n_steps, device=device, seed=seed,
                                     batch_size=min(128, x.shape[0]))
    with contextlib.redirect_stderr(io.StringIO()):  # its per-step progress bar would flood the runner's output
        trainer.train()
    return np.asarray(trainer.get_adj(), dtype=np.float32)[reg]


METHODS: dict[str, MethodFn] = {"genie3": genie3, "grnboost2": grnboost2, "boosted": boosted, "pearson": pearson,
                                "spearman": spearman, "regdiffusion": regdiffusion}


def method_version(method: str) -> str:
    """Version of the code behind a method (the external package's for regdiffusion, sklearn's for the trees)."""
    pkg = {"regdiffusion": "regdiffusion", "genie3": "scikit-learn", "grnboost2": "scikit-learn",
           "boosted": "scikit-learn"}.get(method)
    if pkg is None:
        return "numpy " + np.__version__
    try:
        return f"{pkg} {importlib.metadata.version(pkg)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{pkg} not installed"


# ---------------------------------------------------------------------------------------------------- interface


def network_anndata(scores: np.ndarray, genes: Sequence[str], regulators: Sequence[str],
                    tfs: frozenset[str] | set[str] | None, uns: dict | None = None) -> ad.AnnData:
    """The network convention: square ``varp['GRN']`` (rows = regulators, zero for non-regulators)."""
    genes = list(genes)
    grn = np.zeros((len(genes), len(genes)), dtype=np.float32)
    rows = pd.Index(genes).get_indexer(list(regulators))
    grn[rows] = scores
    var = pd.DataFrame({"is_tf": [g in (tfs or ()) for g in genes],
                        "is_regulator": np.isin(genes, list(regulators))}, index=pd.Index(genes, name="symbol"))
    net = ad.AnnData(X=sp.csr_matrix((0, len(genes)), dtype=np.float32), var=var)
    net.varp["GRN"] = grn
    net.uns["grn"] = uns or {}
    return net


def infer(method: str, adata: ad.AnnData, genes: Sequence[str] | None = None,
          regulators: Sequence[str] | None = None, organism: str | None = None, seed: int = 0, n_jobs: int = 1,
          **kw) -> ad.AnnData:
    """Infer a network with a baseline ``method`` (genie3, grnboost2, pearson, spearman, regdiffusion).

    ``genes``: symbols to include (default: all, first occurrence of duplicated symbols); ``regulators``: symbols
    allowed as regulators (default: every gene; those not among ``genes`` are ignored). Keyword arguments go to the
    method (e.g. ``n_estimators``).
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; baselines: {', '.join(METHODS)}")
    symbols = gene_symbols(adata)
    index = pd.Index(symbols)
    first = ~index.duplicated()
    if genes is None:
        cols = np.flatnonzero(first)
    else:
        genes = list(dict.fromkeys(genes))
        pos = pd.Index(symbols[first]).get_indexer(genes)
        missing = [g for g, p in zip(genes, pos) if p < 0]
        if len(missing) == len(genes):
            raise InputError(f"none of the {len(genes)} requested genes is in the data (e.g. {missing[:5]})")
        cols = np.flatnonzero(first)[pos[pos >= 0]]
    names = symbols[cols]
    if len(names) < 2:
        raise InputError("a network needs at least two genes")
    reg_names = names if regulators is None else names[np.isin(names, list(regulators))]
    if len(reg_names) == 0:
        raise InputError("none of the requested regulators is among the network's genes")
    reg = pd.Index(names).get_indexer(reg_names)
    x = log_normalised(adata, cols)
    org = organism_of(adata, organism)
    tfs = tf_symbols(org) if org in ("NCBITaxon:9606", "NCBITaxon:10090") else None
    fn = METHODS[method]
    accepted = inspect.signature(fn).parameters
    unknown = [k for k in kw if k not in accepted]
    if unknown:
        raise InputError(f"{method} has no option(s) {unknown}; "
                         f"options: {[p for p in accepted if p not in ('x', 'reg')]}")
    common = {k: v for k, v in {"seed": seed, "n_jobs": n_jobs}.items() if k in accepted}
    start = time.perf_counter()
    scores = fn(x, reg, **common, **kw)
    seconds = time.perf_counter() - start
    scores[np.arange(len(reg)), reg] = 0.0
    uns = {"method": method, "version": method_version(method), "seconds": seconds, "n_cells": int(x.shape[0]),
           "n_genes": int(len(names)), "n_regulators": int(len(reg)), "seed": seed, "n_jobs": n_jobs,
           "transform": "given" if adata.uns.get("transform") == "given" else "log1p(counts/depth*1e4)",
           "params": {k: v for k, v in kw.items() if isinstance(v, (int, float, str, bool))}}
    return network_anndata(scores, names, reg_names, tfs, uns)
