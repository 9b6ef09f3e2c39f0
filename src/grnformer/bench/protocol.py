"""The network protocol: which data × truth pairs, which genes, which split, how scores and their intervals are
computed, and the rule that chooses the network defaults. Methods, weights and thresholds are chosen on the
DEVELOPMENT pairs only; the EVALUATION pairs (other datasets) are only reported. A choice read off an evaluation
pair is a defect.

Pairs (version 2). Development: PBMC3k × Omnipath / ENCODE (TF rows), Liu hESC × McCalla hESC truths, and the two
BEELINE real-data sets (hHEP, human; mHSC-L, mouse) × their cell-type ChIP, non-specific ChIP and STRING truths, at
BEELINE's own TFs+500 and TFs+1000 gene sets. Evaluation: Chen hESC × McCalla knock-down and ChIP ∩ knock-down,
Semrau mESC × McCalla ChIP, knock-down and ChIP ∩ knock-down, and the Papalexi THP-1 CRISPR knock-out screen
(networks on its control cells; truth: knocked-out gene → genes that shift versus control). The hESC ChIP union
is not in the shared copy (a file over 4 MiB), so Chen has no ChIP-only pair. Liu (development) and Chen
(evaluation) share the McCalla hESC truths: the truths are not independent of development, only the cells are.
McCalla, BEELINE and perturbation pairs score the truth's regulators as rows (McCalla's and BEELINE's convention).
On BEELINE pairs every method may use the gene set's TFs (BEELINE's TF.csv) as regulators, not only the truth's.

Genes: BEELINE's 'TFs + N' for N = 500 and 1,000 (`GRNOptions.genes = 'hvg+tfs'`: the N most variable genes plus
the TFs among the next N; the BEELINE sets ship theirs), and all cells. The Papalexi set holds 299 genes: all.

One figure per dataset × truth: the mean over its gene-set sizes (the two sizes share most genes, so counting each
would count a pair twice). Pairs with fewer than `REGULATOR_FLOOR` scored regulators are reported, marked, and
never aggregated: at 2 regulators a row bootstrap has 3 distinct resamples and one regulator is half the score.
A split's aggregate is the median of its dataset × truth figures.

The rule (`choose_default`): every grn setting in one grid (pure methods and fusions); candidates must cost at
most a tenth of GENIE3's time at TFs+1000; the best `robust_scores` (a method's worst aggregate when any one
development dataset is left out) wins, and a cheaper candidate within `TIE` of it wins over it. The plain median
chose a fusion that led through one dataset and changed whenever another was dropped (RESULTS.md, protocol v2).
`leave_one_out` repeats the whole rule without each development dataset.

Intervals: a bootstrap over the scored regulators (rows), with replacement, `N_BOOT` replicates; each method's
difference from GENIE3 and from Pearson is computed on the same resamples (paired), with its 95% interval. The
resampling, intervals, seeds, version and checkpoint digest are `bench.toolkit`'s, shared by every benchmark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.bench import toolkit
from grnformer.bench.toolkit import N_BOOT, PROTOCOL_VERSION, SEED, checkpoint_digest  # noqa: F401  (re-exported)
from grnformer.edge_metrics import rank_metrics

GENE_SET_SIZES = (500, 1000)
DEVELOPMENT, EVALUATION = "development", "evaluation"
PAPALEXI = "papalexi_thp1"
VERSION = "2"  # the network protocol's own version (pairs, aggregation, rule); cache keys and the record carry it
REGULATOR_FLOOR = 10  # fewer scored regulators: reported, marked, never aggregated
TIE = 0.01  # AUPRC ratio: a cheaper candidate this close to the best development aggregate wins
SPEED = 10  # a default costs at most 1/SPEED of GENIE3's time at TFs+1000


@dataclass(frozen=True)
class Pair:
    dataset: str
    truth: str
    universe: str  # 'tf' (the organism's TFs) or 'truth_regulators'
    split: str

    @property
    def name(self) -> str:
        return f"{self.dataset} × {self.truth}"


# BEELINE real-data sets (shared/data/beeline): dataset name → (folder, organism); their truths are folders.
BEELINE_SETS = {"beeline_hhep": ("hHEP", "human"), "beeline_mhsc_l": ("mHSC-L", "mouse")}
BEELINE_TRUTHS = ("cell_type_chip", "non_specific_chip", "string")
BEELINE_UNIVERSE = "beeline_tfs"

PAIRS: tuple[Pair, ...] = (
    Pair("pbmc3k", "omnipath", "tf", DEVELOPMENT),
    Pair("pbmc3k", "encode_chip", "tf", DEVELOPMENT),
    Pair("liu_hesc", "mccalla_hesc_kd", "truth_regulators", DEVELOPMENT),
    Pair("liu_hesc", "mccalla_hesc_chip_kd", "truth_regulators", DEVELOPMENT),
    *(Pair(name, truth, BEELINE_UNIVERSE, DEVELOPMENT) for name in BEELINE_SETS for truth in BEELINE_TRUTHS),
    Pair("chen_hesc", "mccalla_hesc_kd", "truth_regulators", EVALUATION),
    Pair("chen_hesc", "mccalla_hesc_chip_kd", "truth_regulators", EVALUATION),
    Pair("semrau_mesc", "mccalla_mesc_chip", "truth_regulators", EVALUATION),
    Pair("semrau_mesc", "mccalla_mesc_kd", "truth_regulators", EVALUATION),
    Pair("semrau_mesc", "mccalla_mesc_chip_kd", "truth_regulators", EVALUATION),
    Pair(PAPALEXI, "perturbation", "truth_regulators", EVALUATION),
)


def pairs(split: str | None = None) -> list[Pair]:
    """The protocol's pairs, or those of one split."""
    return [p for p in PAIRS if split is None or p.split == split]


def load_papalexi() -> tuple[AnnData, AnnData]:
    """(control cells, every cell) of the Papalexi et al. 2021 THP-1 ECCITE-seq knock-out screen."""
    import anndata

    from grnformer.data.shared import shared_path

    path = shared_path("perturb/papalexi2021_thp1_eccite_crisprko_299genes.h5ad", "the Papalexi THP-1 screen")
    screen = anndata.read_h5ad(path)
    return screen[screen.obs["perturbation"].astype(str) == "control"].copy(), screen


def dense_rows(net: AnnData | np.ndarray, names: np.ndarray, regulators: np.ndarray) -> np.ndarray:
    """[len(regulators), G] scores of the given regulator rows of a network (AnnData or square matrix over
    ``names``)."""
    m = net.varp["GRN"] if isinstance(net, AnnData) else net
    m = m.toarray() if sp.issparse(m) else np.asarray(m)
    rows = pd.Index(names).get_indexer(regulators)
    if (rows < 0).any():
        raise ValueError(f"regulators missing from the network: {list(np.asarray(regulators)[rows < 0][:5])}")
    return np.asarray(m, dtype=np.float64)[rows]


def ratio_statistics(scores: dict[str, np.ndarray], truth: np.ndarray, valid: np.ndarray
                     ) -> dict[str, Callable[[np.ndarray], tuple[float, float]]]:
    """Each method's (AUPRC ratio, EPR) on a subset of regulator rows of its [R, G] ``scores``, over the
    candidates ``valid`` [R, G] against ``truth`` [R, G]: the statistics `bootstrap` resamples."""

    def ratios(s: np.ndarray) -> Callable[[np.ndarray], tuple[float, float]]:
        def stat(rows: np.ndarray) -> tuple[float, float]:
            v = valid[rows]
            r = rank_metrics(s[rows][v], truth[rows][v])
            if not r["random_precision"] > 0:  # a resample without a true edge has no ratio
                return np.nan, np.nan
            return r["auprc"] / r["random_precision"], r["epr"]
        return stat

    return {m: ratios(s) for m, s in scores.items()}


def summarise(boot: toolkit.Bootstrap, references: tuple[str, ...] = ("genie3", "pearson")) -> dict[str, dict]:
    """One row per method of a `ratio_statistics` bootstrap: ratio and EPR with 95% intervals, and the paired
    difference from each reference method present."""
    out = {}
    for m in boot.point:
        row = {"ratio": float(boot.point[m][0]), "ratio_ci": boot.interval(m, 0),
               "epr": float(boot.point[m][1]), "epr_ci": boot.interval(m, 1)}
        for ref in references:
            if ref in boot.point and ref != m:
                row[f"minus_{ref}"], row[f"minus_{ref}_ci"] = boot.difference(m, ref)
        out[m] = row
    return out


def bootstrap(scores: dict[str, np.ndarray], truth: np.ndarray, valid: np.ndarray, n_boot: int = N_BOOT,
              seed: int = SEED, references: tuple[str, ...] = ("genie3", "pearson")) -> dict[str, dict]:
    """AUPRC ratio (AUPRC / random precision) and EPR of each method's [R, G] ``scores`` on the candidates
    ``valid`` [R, G] against ``truth`` [R, G], with 95% intervals from a bootstrap over regulator rows (with
    replacement, `toolkit.bootstrap`) and, on the same resamples, the paired difference from each reference
    method present."""
    boot = toolkit.bootstrap(ratio_statistics(scores, truth, valid), truth.shape[0], n_boot, seed)
    return summarise(boot, references)


# ------------------------------------------------------------------------------------------------ BEELINE sets


def beeline_dir(dataset: str, truth: str, size: int) -> Path:
    """The shared BEELINE folder of a dataset, truth and gene-set size (`data.shared`, the one resolver)."""
    from grnformer.bench.truths.beeline_files import LAYOUTS
    from grnformer.data.shared import shared_path

    folder = BEELINE_SETS[dataset][0]
    return shared_path(f"beeline/{folder}/{truth}/TFs+{size}/{LAYOUTS[1][0]}", f"BEELINE {folder}").parent


def load_beeline(dataset: str, size: int) -> AnnData:
    """A BEELINE set's cells at one gene-set size (the same cells and genes in each truth's folder), X as given
    (log2 values), layer 'counts' the pseudo-counts `bench.beeline.load` rebuilds (its one rule)."""
    from grnformer.bench import beeline

    return beeline.load(beeline_dir(dataset, BEELINE_TRUTHS[0], size), organism=BEELINE_SETS[dataset][1])


def beeline_truth(dataset: str, truth: str, size: int):
    """The truth of a BEELINE folder (current symbols of the set's organism)."""
    from grnformer.bench.truths.beeline_files import LAYOUTS, beeline

    return beeline(beeline_dir(dataset, truth, size), LAYOUTS[1][1], BEELINE_SETS[dataset][1])


def beeline_tfs(dataset: str, size: int) -> set[str]:
    """The TFs BEELINE lists for a set's gene set (TF.csv), as current symbols."""
    from grnformer.bench.truths.beeline_files import read_table
    from grnformer.data.input.gene_names import current_symbols

    table = read_table(beeline_dir(dataset, BEELINE_TRUTHS[0], size) / "TF.csv.gz", "BEELINE TF list")
    return set(current_symbols(table["TF"].astype(str).tolist(), BEELINE_SETS[dataset][1])[0])


# ------------------------------------------------------------------------------------------------ aggregation


def content_hash(*parts: object) -> str:
    """First 16 hex digits of a SHA-256 over arrays (their bytes) and text: the record's hashes of data, truths
    and gene lists, so a record says exactly what it scored."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).tobytes() if part.dtype != object else "\n".join(map(str, part)
                                                                                                   ).encode())
        else:
            h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def code_version(*modules: str) -> str:
    """A hash of the source files of ``modules`` (dotted names): what computed a network, for cache keys and the
    record (a change in that code never reuses an old network)."""
    import importlib.util

    h = hashlib.sha256()
    for name in modules:
        h.update(Path(importlib.util.find_spec(name).origin).read_bytes())
    return h.hexdigest()[:12]


def pair_figures(rows: list[dict], split: str, floor: int = REGULATOR_FLOOR) -> list[dict]:
    """One figure per dataset × truth × method of ``split``: the mean AUPRC ratio over its gene-set sizes, the
    fewest regulators it was scored on, and whether that is below ``floor`` (reported, never aggregated)."""
    by: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        if r.get("split") == split and r.get("method") and np.isfinite(r.get("ratio", np.nan)):
            by.setdefault((r["dataset"], r["truth"], r["method"]), []).append(r)
    return [{"dataset": d, "truth": t, "method": m, "ratio": float(np.mean([r["ratio"] for r in rs])),
             "regulators": int(min(r["regulators"] for r in rs)), "sizes": sorted(r["tfs_plus"] for r in rs),
             "below_floor": bool(min(r["regulators"] for r in rs) < floor)}
            for (d, t, m), rs in sorted(by.items())]


def aggregate(figures: list[dict], without: str | None = None) -> dict[str, float]:
    """Each method's median over the dataset × truth figures above the floor (leaving out dataset ``without``),
    best first."""
    by: dict[str, list[float]] = {}
    for f in figures:
        if not f["below_floor"] and f["dataset"] != without:
            by.setdefault(f["method"], []).append(f["ratio"])
    return dict(sorted(((m, float(np.median(v))) for m, v in by.items()), key=lambda kv: -kv[1]))


def robust_scores(figures: list[dict]) -> dict[str, float]:
    """Each method's worst `aggregate` when any one development dataset is left out: a method that leads only
    through one dataset cannot win (with one dataset, the plain aggregate)."""
    datasets = sorted({f["dataset"] for f in figures if not f["below_floor"]})
    per = [aggregate(figures, without=d) for d in datasets] if len(datasets) > 1 else [aggregate(figures)]
    methods = set().union(*per)
    return dict(sorted(((m, min(a.get(m, -np.inf) for a in per)) for m in methods), key=lambda kv: -kv[1]))


def choose_default(scores: dict[str, float], cost: dict[str, float], genie3_cost: float) -> str:
    """The rule on `robust_scores`: among candidates costing at most 1/SPEED of GENIE3's time, the best score, or
    the cheapest candidate within TIE of it."""
    fast = {m: v for m, v in scores.items() if m in cost and cost[m] <= genie3_cost / SPEED}
    if not fast:
        raise ValueError("no candidate is fast enough to be a default")
    best = max(fast.values())
    return min((m for m, v in fast.items() if v >= best - TIE), key=lambda m: (cost[m], -fast[m]))


def leave_one_out(figures: list[dict], cost: dict[str, float], genie3_cost: float, chosen: str,
                  candidates: set[str] | None = None) -> dict[str, dict]:
    """The whole rule again without each development dataset (among ``candidates``, default every method): what
    it chooses then, and the scores of that pick and of the full choice."""
    out = {}
    for dataset in sorted({f["dataset"] for f in figures}):
        scores = robust_scores([f for f in figures if f["dataset"] != dataset])
        scores = {m: v for m, v in scores.items() if candidates is None or m in candidates}
        pick = choose_default(scores, cost, genie3_cost)
        out[dataset] = {"chosen": pick, "same": pick == chosen, "chosen_score": scores.get(pick),
                        "full_choice_score": scores.get(chosen)}
    return out
