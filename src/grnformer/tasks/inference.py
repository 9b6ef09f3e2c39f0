"""The loop every zero-shot task shares: validated data → cell records → collated contexts → model outputs.

Tasks differ only in which genes make up a cell's context and what they keep from each output, so this module
owns the rest once: where the model runs (CUDA when present) and in which precision (bf16 autocast on GPUs that
support it, fp32 on CPU where bf16 attention is not faster), batching with a progress bar, choosing gene sets
(a user list, highly variable, most expressed, expressed in most cells) and mapping results back onto the
user's own AnnData (prepare() may drop cells with no counts and renames genes to Ensembl IDs).
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from tqdm.auto import tqdm

from grnformer.data.collate import CellRecord, Collator
from grnformer.data.corpus import AnnDataCells
from grnformer.data.expression import log_per_10k
from grnformer.data.gene_names import match_names
from grnformer.data.genes import GeneVocab, tf_symbols
from grnformer.data.prepare import ORGANISM_COLUMN, MappingReport, n_repeated_obs_names, prepare, unique_names
from grnformer.data.read import read_cells
from grnformer.errors import InputError
from grnformer.model import ModelOutput
from grnformer.tasks.options import (  # noqa: F401 (re-exported)
    DEFAULT_BATCH_SIZE, GENE_SETS, MAX_MISSING_GENES, PRECISIONS,
)
from grnformer.train.checkpoint import Bundle, load_bundle


# ------------------------------------------------------------------------------------------ device, precision

def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or CUDA when available, else CPU; an unavailable device is an InputError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise InputError(f"unknown device '{device}' (use cpu, cuda, cuda:1 …).") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{device}' requested but this torch has no usable CUDA GPU; use --device cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device '{device}' does not exist: {torch.cuda.device_count()} GPU(s) visible.")
    return dev


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast on a bf16-capable GPU for 'auto', always for 'bf16'; plain fp32 otherwise."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got '{precision}'.")
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda"
                                       and torch.cuda.is_bf16_supported())
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def load_task_bundle(checkpoint: str | Path | Bundle, device: str | torch.device | None = None
                     ) -> tuple[Bundle, torch.device]:
    """A bundle (loaded from a path, or as given) with its model on the resolved device, in eval mode."""
    dev = resolve_device(device)
    bundle = checkpoint if isinstance(checkpoint, Bundle) else load_bundle(checkpoint, map_location="cpu")
    bundle.model.to(dev).eval()
    return bundle, dev


# ------------------------------------------------------------------------------------------------ input

@dataclass
class Prepared:
    """A user's AnnData after prepare(), with what the tasks need to run the model and map results back."""

    adata: AnnData        # vocabulary genes (Ensembl IDs), CSR raw counts, zero-count cells dropped
    report: MappingReport
    tokens: np.ndarray    # int64 token id of each prepared gene
    obs_rows: np.ndarray  # row of each prepared cell in the user's AnnData
    organism: str
    cells: AnnDataCells   # records of the prepared cells, with true label codes where obs has them
    vocab: GeneVocab | None = None  # the bundle's vocabulary (gene-name matching breaks ties with it)
    genes_not_found: list[str] = field(default_factory=list)  # names of the last gene list that did not map

    @property
    def n_cells(self) -> int:
        return self.adata.n_obs

    def records(self, rows: np.ndarray) -> list[CellRecord]:
        return self.cells.__getitems__([int(r) for r in rows])

    def user_var_columns(self, user: AnnData) -> np.ndarray:
        """Prepared-gene column of each column of ``user`` (-1 for genes that did not map).

        Genes are matched by the names prepare() read (var_names or a gene-ID column). When several input
        columns were summed into one gene, the first of them carries the gene's values."""
        match = re.fullmatch(r'var\["(.+)"\]', self.report.gene_source)
        names = user.var[match.group(1)] if match and match.group(1) in user.var else user.var_names
        names = pd.Index(np.asarray(names).astype(str))
        first = pd.Series(np.arange(self.adata.n_vars), index=self.adata.var["input_name"].astype(str).to_numpy())
        cols = first.reindex(names).fillna(-1).to_numpy(dtype=np.int64)
        cols[names.duplicated()] = -1
        return cols

    def to_user_rows(self, values: np.ndarray, n_obs: int) -> np.ndarray:
        """Per-cell results placed on the user's rows; cells prepare() dropped get NaN (numbers) or None."""
        values = np.asarray(values)
        if np.issubdtype(values.dtype, np.number):
            out = np.full((n_obs,) + values.shape[1:], np.nan, dtype=np.float32)
        else:
            out = np.full((n_obs,) + values.shape[1:], None, dtype=object)
        out[self.obs_rows] = values
        return out


def read_input(path: str | Path | AnnData) -> AnnData:
    """A file of cells as AnnData (an AnnData is passed through): h5ad, 10x h5 or MTX directory, loom, CSV/TSV —
    `data.read.read_cells`; a missing or unreadable file is an InputError.

    Repeated cell names are made unique here (warned), so that no output holds two cells of one name."""
    if isinstance(path, AnnData):
        return path
    adata = read_cells(path)
    n_repeated = n_repeated_obs_names(adata.obs_names)
    if n_repeated:
        warnings.warn(f"{path}: {n_repeated:,} cell names repeat an earlier one; made them unique with a suffix "
                      f"(-1, -2 …) in the outputs", stacklevel=2)
        adata.obs_names = unique_names(adata.obs_names)
    return adata


def prepare_input(bundle: Bundle, adata: AnnData, organism: str | None = None) -> Prepared:
    """Validate and map ``adata`` to the bundle's vocabulary (InputError on bad input)."""
    if not isinstance(adata, AnnData):
        raise InputError(f"expected an AnnData, got {type(adata).__name__}.")
    prepared, report = prepare(adata, organism=organism, vocab=bundle.vocab)
    if prepared.n_obs == adata.n_obs:
        obs_rows = np.arange(adata.n_obs)
    elif adata.obs_names.is_unique:
        obs_rows = adata.obs_names.get_indexer(prepared.obs_names)
    else:
        obs_rows = _kept_rows(adata, prepared)
    return Prepared(prepared, report, bundle.vocab.index(prepared.var_names), np.asarray(obs_rows, dtype=np.int64),
                    str(prepared.obs[ORGANISM_COLUMN].iloc[0]), AnnDataCells(prepared, bundle.vocab, bundle.labels),
                    bundle.vocab)


def _kept_rows(user: AnnData, prepared: AnnData) -> np.ndarray:
    """Rows prepare() kept when obs names repeat: it made them unique the same way and keeps order, so a greedy
    walk over the user's names made unique recovers them."""
    names = prepared.obs_names.to_numpy()
    rows, j = [], 0
    for i, name in enumerate(unique_names(user.obs_names)):
        if j < len(names) and name == names[j]:
            rows.append(i)
            j += 1
    return np.asarray(rows)


def cells_in_groups(prep: Prepared, groupby: str | None, groups: Sequence[str] | None = None
                    ) -> dict[str, np.ndarray]:
    """Prepared rows of each group of obs[``groupby``] (all cells under 'all' when groupby is None)."""
    if groupby is None:
        if groups is not None:
            raise InputError("groups were given without groupby.")
        return {"all": np.arange(prep.n_cells)}
    if groupby not in prep.adata.obs:
        cols = ", ".join(map(str, prep.adata.obs.columns[:30])) or "none"
        raise InputError(f"groupby column '{groupby}' is not in obs; obs columns: {cols}.")
    values = prep.adata.obs[groupby]
    present = values.dropna().astype(str)
    if len(present) == 0:
        raise InputError(f"obs['{groupby}'] holds no values (all missing).")
    out = {str(g): np.flatnonzero((values.astype(str) == g).to_numpy() & values.notna().to_numpy())
           for g in pd.unique(present)}
    if groups is not None:
        empty = [str(g) for g in groups if str(g) not in out]
        if empty:
            raise InputError(f"groups with no cells in obs['{groupby}']: {', '.join(empty)}; present: "
                             f"{', '.join(sorted(out)[:30])}.")
        out = {str(g): out[str(g)] for g in groups}
    return out


# ----------------------------------------------------------------------------------------------- gene sets

def resolve_gene_names(prep: Prepared, names: Sequence[str], max_missing: float = MAX_MISSING_GENES
                       ) -> np.ndarray:
    """Prepared columns of genes named by the data's own names, Ensembl IDs or symbols (`gene_names` rules).

    Names that are not among the prepared genes are left out with a warning that lists them, and recorded in
    ``prep.genes_not_found`` (the tasks put them in their outputs' uns). More than ``max_missing`` (a share) of the
    list missing is an InputError: that list was probably meant for other data."""
    if not 0 <= max_missing < 1:
        raise InputError(f"max_missing must be a share in [0, 1) (got {max_missing}).")
    names = [str(n).strip() for n in names]
    if not names:
        raise InputError("the gene list is empty.")
    var = prep.adata.var
    own = pd.Series(np.arange(prep.adata.n_vars), index=var["input_name"].astype(str).to_numpy())
    own = own[~own.index.duplicated()]
    col_of_id = pd.Series(np.arange(prep.adata.n_vars), index=var.index.astype(str))
    cols = own.reindex(names).to_numpy(dtype=np.float64)
    todo = np.flatnonzero(np.isnan(cols))
    if len(todo):
        match = match_names([names[i] for i in todo], prep.organism, prep.vocab)
        ids = pd.Index([g if g is not None else "" for g in match.gene_id])
        cols[todo] = col_of_id.reindex(ids).to_numpy(dtype=np.float64)
    missing = [names[i] for i in np.flatnonzero(np.isnan(cols))]
    prep.genes_not_found = missing
    if len(missing) > max_missing * len(names):
        raise InputError(f"{len(missing)} of {len(names)} genes are not among the {prep.adata.n_vars:,} genes of "
                         f"the data that map to the model's vocabulary (more than {max_missing:.0%} of the list; "
                         f"max_missing sets this): {', '.join(missing[:50])}{' …' if len(missing) > 50 else ''}.")
    if missing:
        warnings.warn(f"{len(missing)} of {len(names)} listed genes are not among the {prep.adata.n_vars:,} genes "
                      f"of the data that map to the model's vocabulary; using the other {len(names) - len(missing)} "
                      f"(left out: {', '.join(missing[:50])}{' …' if len(missing) > 50 else ''}).", stacklevel=3)
    found = cols[~np.isnan(cols)].astype(np.int64)
    return np.asarray(list(dict.fromkeys(found.tolist())), dtype=np.int64)  # a gene named twice: keep the first


def select_genes(prep: Prepared, genes: Sequence[str] | str, n_genes: int | None,
                 max_missing: float = MAX_MISSING_GENES) -> np.ndarray:
    """Prepared columns of a gene set, in rank order.

    A list names the genes. 'hvg': the most variable genes (Seurat-style normalised dispersion of log-normalised
    counts, genes seen in at least 3 cells). 'most_expressed': highest mean log-normalised expression.
    'hvg+tfs': 'hvg' plus the transcription factors among the next n_genes most variable genes (so every TF
    among the 2·n_genes most variable is in). 'random_expressed': the genes expressed in the most cells (the network genes of a genome-wide run whose
    contexts are drawn at random among each cell's expressed genes)."""
    if not isinstance(genes, str):
        return resolve_gene_names(prep, list(genes), max_missing)
    prep.genes_not_found = []
    if genes not in GENE_SETS:
        raise InputError(f"genes must be a list of gene names or one of {', '.join(GENE_SETS)}; got '{genes}'.")
    x = prep.adata.X
    n_cells_expr = np.bincount(x.indices, minlength=prep.adata.n_vars)
    candidates = np.flatnonzero(n_cells_expr >= min(3, prep.n_cells))
    if n_genes is None or n_genes < 2:
        raise InputError(f"n_genes must be at least 2 (got {n_genes}).")
    if n_genes > len(candidates):
        warnings.warn(f"n_genes={n_genes:,} asked for, but only {len(candidates):,} of the data's "
                      f"{prep.adata.n_vars:,} vocabulary genes are expressed in >= 3 of its {prep.n_cells:,} cells: "
                      f"using those {len(candidates):,}.", stacklevel=3)
    n = min(n_genes, len(candidates))
    if genes == "random_expressed":
        order = np.argsort(-n_cells_expr[candidates], kind="stable")
        return candidates[order[:n]]
    logx = log_per_10k(x[:, candidates])
    mean = np.asarray(logx.mean(axis=0)).ravel()
    if genes == "most_expressed":
        return candidates[np.argsort(-mean, kind="stable")[:n]]
    ranked = candidates[_dispersion_rank(logx, mean)]
    if genes == "hvg+tfs":  # BEELINE's 'TFs + N': the TFs among the next n variable genes join the top n
        symbols = prep.adata.var["symbol"].astype(str).to_numpy()
        nxt = ranked[n:2 * n]
        return np.concatenate([ranked[:n], nxt[np.isin(symbols[nxt], list(tf_symbols(prep.organism)))]])
    return ranked[:n]


def _dispersion_rank(logx: sp.csr_matrix, mean: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Genes by normalised dispersion: variance/mean of expm1 values, z-scored within 20 bins of mean."""
    expm1 = logx.copy()
    expm1.data = np.expm1(expm1.data)
    m = np.asarray(expm1.mean(axis=0)).ravel()
    var = np.asarray(expm1.multiply(expm1).mean(axis=0)).ravel() - m ** 2
    disp = np.log(np.maximum(var, 1e-12) / np.maximum(m, 1e-12))
    bins = pd.cut(mean, bins=n_bins, labels=False)
    z = np.zeros_like(disp)
    for b in np.unique(bins):
        sel = bins == b
        sd = disp[sel].std(ddof=1) if sel.sum() > 1 else 0.0
        z[sel] = (disp[sel] - disp[sel].mean()) / sd if sd > 0 else 0.0
    return np.argsort(-z, kind="stable")


def parse_gene_option(value: Sequence[str] | str | None, keywords: Sequence[str]) -> Sequence[str] | str | None:
    """A CLI gene option: a keyword, a file of names (one per line or comma-separated), or 'A,B,C'."""
    if not isinstance(value, str) or value in keywords:
        return value
    try:
        is_file = Path(value).is_file()
    except OSError:  # a long comma-separated list is no file name the system accepts
        is_file = False
    text = Path(value).read_text() if is_file else value
    names = [g.strip() for g in re.split(r"[,\s]+", text) if g.strip()]
    if not names:
        raise InputError(f"no gene names in '{value}'.")
    return names


def chunk_genes(tokens: np.ndarray, size: int) -> list[np.ndarray]:
    """Split a gene list into the fewest near-equal parts of at most ``size`` genes (one context each)."""
    return list(np.array_split(tokens, max(1, math.ceil(len(tokens) / size))))


# ----------------------------------------------------------------------------------------------- the loop

def run_model(bundle: Bundle, prep: Prepared, rows: np.ndarray,
              collators: Sequence[Callable[[list[CellRecord]], dict[str, torch.Tensor]]],
              device: torch.device, batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "auto",
              return_qk: bool = False, progress: bool = True, desc: str = "cells", depth_scale: float = 1.0
              ) -> Iterator[tuple[np.ndarray, int, dict[str, torch.Tensor], ModelOutput]]:
    """Yield (prepared rows, collator index, batch on device, output) for every batch of ``rows`` and every
    collator (a `Collator` or any function of records to a batch; one per gene chunk, or a single one).
    Gradients off, model in eval mode. The model is told ``depth_scale`` × each cell's depth (depth token), and
    its means share out ``depth_scale`` × the counts each context holds (what a context of that cell would hold
    at that depth)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1 (got {batch_size}).")
    model = bundle.model.eval()
    with tqdm(total=len(rows) * len(collators), unit="cell", desc=desc, disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch_rows = rows[start:start + batch_size]
            records = prep.records(batch_rows)
            for c, collator in enumerate(collators):
                batch = {k: v.to(device, non_blocking=True) for k, v in collator(records).items()}
                with torch.inference_mode(), autocast(device, precision):
                    out = model(batch["genes"], batch["counts"], batch["depth"] * depth_scale,
                                scale=batch["counts"].sum(dim=-1) * depth_scale, return_qk=return_qk)
                yield batch_rows, c, batch, out
                bar.update(len(batch_rows))


def context_collator(bundle: Bundle, mode: str = "random-expressed", gene_tokens: np.ndarray | None = None,
                     context_length: int | None = None, seed: int = 0) -> Collator:
    """A collator without down-sampling (inference sees the counts as measured), seeded for reproducibility."""
    return Collator(bundle.vocab, context_length or bundle.config.context_length, mode=mode,
                    gene_list=gene_tokens, downsample=None, seed=seed)
