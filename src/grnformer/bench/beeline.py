"""BEELINE-format benchmark directories as bench datasets, scored in BEELINE's convention.

A BEELINE directory holds ``ExpressionData.csv`` (genes × cells, first column the gene names; BEELINE's real data
sets hold log2 values of normalised expression, not counts), ``refNetwork.csv`` (columns Gene1, Gene2 and
optionally Type: the reference edges, regulator → target) and optionally ``PseudoTime.csv`` (cells × lineages).
On the command line it is ``beeline:DIR`` or ``beeline:DIR:mouse`` (BEELINE upper-cases mouse genes, so the
organism guessed from gene names would be human; name it).

Every method sees the genes of the expression file. Baselines read its values as given (``uns['transform'] =
'given'``, as BEELINE runs them); grnformer reads pseudo-counts rebuilt from them
(`data.input.pseudo_counts.with_pseudo_counts`, layer 'counts'). Gene names are normalised to current symbols
(`data.input.gene_names`), the same way as the reference. The files are read by `bench.truths.beeline_files`, the
one reader of BEELINE directories (the 'beeline' ground truth reads its reference network there too).

Scoring follows BEELINE: candidate edges are the reference's regulators that are genes of the data × every gene of
the data, self-edges excluded; a gene a method left out of its network scores lowest. EPR and AUPRC ratio are
score_network's ``epr`` (precision among the top K, K = reference edges, over the candidates' density) and
``auprc`` / ``random_precision``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.bench.network_scores import score_network
from grnformer.bench.truths import GroundTruth
from grnformer.bench.truths.beeline_files import (
    EXPRESSION,
    LAYOUTS,
    PSEUDOTIME,
    REFERENCE,
    layout,
    read_expression,
    read_reference,
    read_table,
)
from grnformer.data.genes import HUMAN, MOUSE, ORGANISMS, organism_id
from grnformer.data.input.gene_names import current_symbols, match_names
from grnformer.data.input.prepare import ORGANISM_COLUMN
from grnformer.data.input.pseudo_counts import DEFAULT_PSEUDO_DEPTH, with_pseudo_counts
from grnformer.errors import InputError

PREFIX = "beeline:"
UNIVERSE = "beeline"  # the records' universe: reference regulators × all genes
COUNTS_FROM = "log2p1"


def is_spec(name: str) -> bool:
    """Whether a bench dataset name is a BEELINE directory (``beeline:DIR[:organism]``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def is_beeline(adata: AnnData) -> bool:
    return "beeline" in adata.uns


def _parse(spec: str) -> tuple[Path, str | None]:
    rest = spec[len(PREFIX):]
    head, _, tail = rest.rpartition(":")
    if head:
        try:
            return Path(head), organism_id(tail)
        except InputError:
            pass  # a colon inside the path
    return Path(rest), None


def _guess_organism(names: list[str], path: Path) -> str:
    exact = {org: match_names(names, org).count("exact") for org in (HUMAN, MOUSE)}
    best = max(exact, key=exact.get)
    warnings.warn(f"{path}: organism not given; guessed {ORGANISMS[best]} from exact-case symbols "
                  f"({exact[HUMAN]} human, {exact[MOUSE]} mouse). BEELINE writes mouse genes upper-case: use "
                  f"beeline:{path}:mouse for mouse data.", stacklevel=3)
    return best


def load(spec: str | Path, organism: str | None = None, depth: float = DEFAULT_PSEUDO_DEPTH) -> AnnData:
    """A BEELINE directory as a bench dataset: cells × genes AnnData with X = the expression values as given,
    layer 'counts' = pseudo-counts, var_names = current symbols (var['beeline_name'] as written), obs with the
    organism and any pseudotime columns, uns['beeline'] = name, directory and reference edges."""
    path, org = _parse(spec) if isinstance(spec, str) and is_spec(spec) else (Path(spec), None)
    org = organism_id(organism) if organism is not None else org
    files = layout(path)
    if files is None:
        missing = [f for f in LAYOUTS[0] if not (path / f).is_file()]
        raise InputError(f"{path} is no BEELINE directory: {', '.join(missing)} missing (or, as BEELINE "
                         f"distributes its sets, {' and '.join(LAYOUTS[1])}).")
    expression_file, reference_file = files
    table = read_expression(path, expression_file)
    names = table.index.tolist()
    org = org or _guess_organism(names, path)
    symbols, _ = current_symbols(names, org)
    symbols = pd.Series(symbols, dtype=object)
    clash = symbols.duplicated(keep="first").to_numpy()
    symbols[clash] = np.asarray(names, dtype=object)[clash]  # two names of one gene: the later keeps its own
    ref, _ = read_reference(path, reference_file)
    ref_genes = pd.unique(ref[["Gene1", "Gene2"]].astype(str).to_numpy().ravel())
    ref_symbols = dict(zip(ref_genes, current_symbols(ref_genes, org)[0]))
    edges = pd.DataFrame({"regulator": ref["Gene1"].astype(str).map(ref_symbols),
                          "target": ref["Gene2"].astype(str).map(ref_symbols)})
    obs = pd.DataFrame(index=table.columns)
    if (path / PSEUDOTIME).is_file():
        pt = read_table(path / PSEUDOTIME, "pseudotime table", index_col=0)
        pt.index = pt.index.astype(str)
        obs = obs.join(pt.add_prefix("beeline_"))
    obs[ORGANISM_COLUMN] = org
    adata = AnnData(sp.csr_matrix(table.to_numpy(dtype=np.float32).T), obs=obs,
                    var=pd.DataFrame({"beeline_name": names}, index=pd.Index(symbols.to_numpy(), name="gene")))
    name = f"beeline_{path.resolve().name}"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*counts_from=")  # said in the dataset's provenance instead
        adata = with_pseudo_counts(adata, COUNTS_FROM, depth, source=str(path / expression_file))
    adata.uns["transform"] = "given"
    adata.uns["beeline"] = {"name": name, "dir": str(path), "organism": org, "counts_from": COUNTS_FROM,
                            "depth": float(depth), "n_reference_edges": int(len(ref)),
                            "reference_file": reference_file,
                            "regulator": edges["regulator"].to_numpy(dtype=str),
                            "target": edges["target"].to_numpy(dtype=str)}
    return adata


def genes(adata: AnnData) -> list[str]:
    """The benchmark genes of a BEELINE data set: every gene of its expression file."""
    return adata.var_names.astype(str).tolist()


def reference(adata: AnnData) -> GroundTruth:
    """The reference network of a BEELINE data set (current symbols), with its provenance."""
    b = adata.uns["beeline"]
    edges = pd.DataFrame({"regulator": b["regulator"], "target": b["target"]})
    edges = edges[edges["regulator"] != edges["target"]]
    return GroundTruth(edges, f"{b['name']}_reference", b["organism"],
                       {"source_file": str(Path(b["dir"]) / b.get("reference_file", REFERENCE)),
                        "rows": b["n_reference_edges"],
                        "convention": "BEELINE: reference regulators × all genes, self-edges excluded"})


def score(net: AnnData, truth: GroundTruth, all_genes: list[str], curve: bool = False) -> dict:
    """score_network over BEELINE's candidates: reference regulators among ``all_genes`` × ``all_genes``.

    A gene missing from ``net`` (e.g. outside the model's vocabulary) scores lowest (NaN) on all its pairs, so
    every method is scored on the same candidates. Adds ``auprc_ratio`` = auprc / random_precision."""
    grn = net.varp["GRN"]
    grn = grn.toarray() if sp.issparse(grn) else np.asarray(grn)
    names = net.var["symbol"].astype(str) if "symbol" in net.var else net.var_names.astype(str)
    full = pd.DataFrame(grn, index=names.to_numpy(), columns=names.to_numpy())
    full = full.loc[~full.index.duplicated(), ~full.columns.duplicated()]
    regs = [g for g in all_genes if g in set(truth.regulators)]
    pred = full.reindex(index=regs, columns=all_genes)
    res = score_network(pred, truth, universe="all", curve=curve)
    res["universe"] = UNIVERSE
    rp = res["random_precision"]
    res["auprc_ratio"] = float(res["auprc"] / rp) if rp and np.isfinite(rp) else float("nan")
    res["n_genes_missing_from_network"] = int(len(set(all_genes) - set(full.columns)))
    return res


def write_dir(path: str | Path, counts: AnnData, truth: GroundTruth, n_regulators: int = 8, n_genes: int = 60,
              n_cells: int = 60, upper_case: bool = False, pseudotime: bool = False) -> Path:
    """Write a small BEELINE directory from raw counts and a ground truth of the same genes' names.

    Genes: the ``n_regulators`` best-expressed regulators of the truth, then their best-expressed targets, up to
    ``n_genes``; cells: the first ``n_cells`` with more than 5 of those genes detected. ExpressionData.csv holds
    log2(x+1) of the counts (genes × cells); refNetwork.csv the truth's edges among the genes (Type '+');
    ``upper_case`` writes every name upper-case, as BEELINE does for mouse; ``pseudotime`` adds a PseudoTime.csv
    of evenly spaced values. For building benchmark sets from data that has counts and a reference."""
    path = Path(path)
    x = counts.X.toarray() if sp.issparse(counts.X) else np.asarray(counts.X)
    names = counts.var_names.astype(str)
    ranked = pd.Series(x.mean(0), index=names).sort_values(ascending=False, kind="stable").index
    regulators = set(truth.regulators)
    regs = [g for g in ranked if g in regulators][:n_regulators]
    targets = set(truth.edges.loc[truth.edges["regulator"].isin(regs), "target"])
    chosen = regs + [g for g in ranked if g in targets and g not in set(regs)][: n_genes - len(regs)]
    if len(regs) == 0 or len(chosen) < 2:
        raise InputError("the ground truth's regulators and targets are not among the data's genes.")
    cols = names.get_indexer(chosen)
    cells = np.flatnonzero((x[:, cols] > 0).sum(1) > 5)[:n_cells]
    values = np.log2(x[np.ix_(cells, cols)] + 1).T
    write = (lambda s: s.str.upper()) if upper_case else (lambda s: s)
    path.mkdir(parents=True, exist_ok=False)
    pd.DataFrame(values, index=write(pd.Index(chosen)), columns=counts.obs_names[cells]).to_csv(path / EXPRESSION)
    e = truth.edges[truth.edges["regulator"].isin(chosen) & truth.edges["target"].isin(chosen)]
    e = e[e["regulator"] != e["target"]]
    pd.DataFrame({"Gene1": write(e["regulator"]), "Gene2": write(e["target"]), "Type": "+"}) \
        .to_csv(path / REFERENCE, index=False)
    if pseudotime:
        pd.DataFrame({"PseudoTime": np.linspace(0, 1, len(cells))}, index=counts.obs_names[cells]) \
            .to_csv(path / PSEUDOTIME)
    return path
