"""Unfamiliar tissue: does adapting the model on a user's own cells close its gap to PCA? (issue 21, part 2)

    .venv/bin/python benchmarks/bench_adapt.py [--checkpoint shipped] [--steps 0 100 300 1000]

Paul 2015 (mouse myeloid progenitors, MARS-seq) is held out of training (scripts/campaign.py HELD_OUT) and is a
protocol and a tissue stage the model sees little of. For each number of adaptation steps, each run from the same
starting weights as a user's `--adapt-steps N` would be (0 = zero-shot): `tasks.adapt.adapt_bundle` with its
defaults (AdamW lr 1e-4, batch 16, denoising + bottleneck on all of Paul's cells; no label is read), then `embed`.
- clustering: k-means (k = the 7 types of obs['cell_type2']) on the embedding vs on 50 PCs: ARI and NMI, the mean over
  10 k-means starts (`bench.toolkit.kmeans_partitions`; the records of 2026-12-04 predate this and used one);
- label transfer: a 15-NN classifier on the embedding fitted on a random half of the cells (seed 0), scored on the
  other half, vs the same on 50 PCs: accuracy and macro-F1.
Intervals: 95% percentile bootstrap over cells (200 resamples with replacement), and the paired difference from
PCA on the same resamples. Cost: wall seconds of each adaptation and of embedding. Nothing is chosen here: every
setting is the adapt command's default, so this set only reports.
Record: benchmarks/results/adapt_paul2015.json (`bench.toolkit.write_record`: checkpoint digest, command, machine,
date).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tasks_quality import _pcs  # noqa: E402

from grnformer.bench.toolkit import (  # noqa: E402
    N_BOOT,
    bootstrap,
    kmeans_partitions,
    partition_score,
    results_path,
    write_record,
)
from grnformer.bundle.checkpoint import load_bundle, resolve_checkpoint  # noqa: E402
from grnformer.data.corpus import datasets  # noqa: E402
from grnformer.data.input.prepare import prepare  # noqa: E402
from grnformer.tasks.adapt import adapt_bundle  # noqa: E402
from grnformer.tasks.embed import embed  # noqa: E402
from grnformer.tasks.task_options import AdaptOptions  # noqa: E402

DATASET, LABEL = "paul2015_mouse_myeloid_progenitors_marsseq", "cell_type2"
OUT = results_path("adapt_paul2015")


def paired(stats: dict[str, Callable[[np.ndarray], float]], n: int) -> dict[str, dict]:
    """Each statistic of cell indices on all n cells with its 95% bootstrap interval (`bench.toolkit`) and, for
    every method but 'PCA', the paired difference from 'PCA' on the same resamples."""
    boot = bootstrap(stats, n)
    out = {}
    for m in stats:
        row = {"value": float(boot.point[m][0]), "ci": boot.interval(m)}
        if m != "PCA" and "PCA" in stats:
            row["minus_PCA"], row["minus_PCA_ci"] = boot.difference(m, "PCA")
        out[m] = row
    return out


def scores(reps: dict[str, np.ndarray], truth: np.ndarray, seed: int = 0) -> dict[str, dict]:
    """Clustering (ARI, NMI over all cells) and label transfer (accuracy, macro-F1 over the held-out half) of each
    representation."""
    k = len(np.unique(truth))
    found = {m: kmeans_partitions(r, k) for m, r in reps.items()}
    half = np.random.default_rng(seed).permutation(len(truth))
    fit, test = half[: len(truth) // 2], half[len(truth) // 2:]
    pred = {m: KNeighborsClassifier(n_neighbors=15).fit(r[fit], truth[fit]).predict(r[test]) for m, r in reps.items()}
    t = truth[test]
    return {
        "ari": paired({m: partition_score(adjusted_rand_score, truth, f) for m, f in found.items()},
                      len(truth)),
        "nmi": paired({m: partition_score(normalized_mutual_info_score, truth, f) for m, f in found.items()},
                      len(truth)),
        "transfer_accuracy": paired({m: (lambda i, p=p: float(np.mean(p[i] == t[i]))) for m, p in pred.items()},
                                    len(t)),
        "transfer_macro_f1": paired({m: (lambda i, p=p: f1_score(t[i], p[i], average="macro")) for m, p in
                                     pred.items()}, len(t)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="shipped")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 100, 300, 1000])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if any(s < 0 for s in args.steps):
        parser.error("--steps must be >= 0")
    adata = datasets.load(DATASET)
    prepared, _ = prepare(adata)
    truth = prepared.obs[LABEL].astype(str).to_numpy()
    pca = _pcs(prepared.X)
    base = load_bundle(resolve_checkpoint(args.checkpoint), map_location="cpu")
    runs = []
    for steps in args.steps:
        t0 = time.perf_counter()
        if steps:
            bundle, summary = adapt_bundle(base, adata, AdaptOptions(steps=steps), device="cpu")
        else:
            bundle, summary = base, None
        adapt_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cells = adata[prepared.obs_names].copy()
        emb = embed(bundle, cells, progress=False)
        embed_s = time.perf_counter() - t0
        keep = np.isfinite(emb).all(axis=1)
        if not keep.all():
            raise SystemExit(f"{(~keep).sum()} cells without an embedding")
        row = {"steps": steps, "adapt_seconds": round(adapt_s, 1), "embed_seconds": round(embed_s, 1),
               "adapt_summary": summary, "scores": scores({"grnformer": emb, "PCA": pca}, truth)}
        runs.append(row)
        s = row["scores"]
        print(f"steps {steps:5d}  adapt {adapt_s:7.1f} s  ARI {s['ari']['grnformer']['value']:.3f} "
              f"(PCA {s['ari']['PCA']['value']:.3f})  NMI {s['nmi']['grnformer']['value']:.3f} "
              f"(PCA {s['nmi']['PCA']['value']:.3f})  transfer acc {s['transfer_accuracy']['grnformer']['value']:.3f} "
              f"(PCA {s['transfer_accuracy']['PCA']['value']:.3f})", flush=True)
    body = {"dataset": DATASET, "label": LABEL, "n_cells": int(len(truth)), "n_types": int(len(np.unique(truth))),
            "n_boot": N_BOOT, "runs": runs}
    path = write_record(args.out, body, method="adapt (AdaptOptions defaults) then embed", checkpoint=args.checkpoint)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
