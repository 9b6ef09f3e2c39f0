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
difference from GENIE3 and from Pearson is computed on the same resamples (paired), with its 95% interval.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.metrics import rank_metrics

PROTOCOL_VERSION = "1"
N_BOOT = 200
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


def checkpoint_digest(path: str | Path) -> str:
    """First 12 hex digits of the checkpoint file's SHA-256: results are keyed by it, so new weights never reuse
    old numbers."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


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
              seed: int = 0, references: tuple[str, ...] = ("genie3", "pearson")) -> dict[str, dict]:
    """AUPRC ratio (AUPRC / random precision) and EPR of each method's [R, G] ``scores`` on the candidates
    ``valid`` [R, G] against ``truth`` [R, G], with 95% intervals from a bootstrap over regulator rows (with
    replacement) and, on the same resamples, the paired difference from each reference method present."""
    R = truth.shape[0]
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, R, R) for _ in range(n_boot)]

    def ratios(s: np.ndarray, rows: np.ndarray | None) -> tuple[float, float]:
        rows = np.arange(R) if rows is None else rows
        v = valid[rows]
        r = rank_metrics(s[rows][v], truth[rows][v])
        if not r["random_precision"] > 0:  # a resample without a true edge has no ratio
            return np.nan, np.nan
        return r["auprc"] / r["random_precision"], r["epr"]

    point = {m: ratios(s, None) for m, s in scores.items()}
    boots = {m: np.array([ratios(s, p) for p in picks]) for m, s in scores.items()}
    out = {}
    for m in scores:
        b = boots[m]
        ok = np.isfinite(b[:, 0])
        row = {"ratio": point[m][0], "ratio_ci": _ci(b[ok, 0]), "epr": point[m][1], "epr_ci": _ci(b[ok, 1])}
        for ref in references:
            if ref in boots and ref != m:
                d = b[:, 0] - boots[ref][:, 0]
                row[f"minus_{ref}"] = point[m][0] - point[ref][0]
                row[f"minus_{ref}_ci"] = _ci(d[np.isfinite(d)])
        out[m] = row
    return out


def _ci(values: np.ndarray) -> list[float | None]:
    if len(values) == 0:
        return [None, None]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
