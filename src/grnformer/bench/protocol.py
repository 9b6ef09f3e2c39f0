"""The network protocol: which data × truth pairs, which genes, which split, and how scores and their intervals are
computed. It decides every network default: methods, weights and thresholds are chosen on the DEVELOPMENT pairs
only; the EVALUATION pairs (other datasets) are only reported. A choice read off an evaluation pair is a defect.

Pairs. PBMC3k × Omnipath / ENCODE (TF rows) and Liu hESC × McCalla hESC truths are development; Chen hESC ×
McCalla knock-down and ChIP ∩ knock-down, Semrau mESC × McCalla ChIP, knock-down and ChIP ∩ knock-down, and the
Papalexi THP-1 CRISPR knock-out screen (networks on its control cells; truth: knocked-out gene → genes that shift
versus control) are evaluation. The hESC ChIP union is not in the shared copy (a file over 4 MiB), so Chen has no
ChIP-only pair.
McCalla and perturbation pairs score the truth's regulators as rows (McCalla's and BEELINE's convention).

Genes: BEELINE's 'TFs + N' (`GRNOptions.genes = 'hvg+tfs'`: the N most variable genes plus the TFs among the
next N) for N = 500 and 1,000, and all cells. The Papalexi set holds 299 genes: all of them.

Intervals: a bootstrap over the scored regulators (rows), with replacement, `N_BOOT` replicates; each method's
difference from GENIE3 and from Pearson is computed on the same resamples (paired), with its 95% interval. The
resampling, intervals, seeds, version and checkpoint digest are `bench.toolkit`'s, shared by every benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Pair:
    dataset: str
    truth: str
    universe: str  # 'tf' (the organism's TFs) or 'truth_regulators'
    split: str

    @property
    def name(self) -> str:
        return f"{self.dataset} × {self.truth}"


PAIRS: tuple[Pair, ...] = (
    Pair("pbmc3k", "omnipath", "tf", DEVELOPMENT),
    Pair("pbmc3k", "encode_chip", "tf", DEVELOPMENT),
    Pair("liu_hesc", "mccalla_hesc_kd", "truth_regulators", DEVELOPMENT),
    Pair("liu_hesc", "mccalla_hesc_chip_kd", "truth_regulators", DEVELOPMENT),
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


def bootstrap(scores: dict[str, np.ndarray], truth: np.ndarray, valid: np.ndarray, n_boot: int = N_BOOT,
              seed: int = SEED, references: tuple[str, ...] = ("genie3", "pearson")) -> dict[str, dict]:
    """AUPRC ratio (AUPRC / random precision) and EPR of each method's [R, G] ``scores`` on the candidates
    ``valid`` [R, G] against ``truth`` [R, G], with 95% intervals from a bootstrap over regulator rows (with
    replacement, `toolkit.bootstrap`) and, on the same resamples, the paired difference from each reference
    method present."""

    def ratios(s: np.ndarray) -> Callable[[np.ndarray], tuple[float, float]]:
        def stat(rows: np.ndarray) -> tuple[float, float]:
            v = valid[rows]
            r = rank_metrics(s[rows][v], truth[rows][v])
            if not r["random_precision"] > 0:  # a resample without a true edge has no ratio
                return np.nan, np.nan
            return r["auprc"] / r["random_precision"], r["epr"]
        return stat

    boot = toolkit.bootstrap({m: ratios(s) for m, s in scores.items()}, truth.shape[0], n_boot, seed)
    out = {}
    for m in scores:
        row = {"ratio": float(boot.point[m][0]), "ratio_ci": boot.interval(m, 0),
               "epr": float(boot.point[m][1]), "epr_ci": boot.interval(m, 1)}
        for ref in references:
            if ref in scores and ref != m:
                row[f"minus_{ref}"], row[f"minus_{ref}_ci"] = boot.difference(m, ref)
        out[m] = row
    return out
