"""bf16 autocast against fp32 for the zero-shot tasks on CPU: what it changes, and whether 'auto' should use it.

    .venv/bin/python benchmarks/bench_precision.py [--checkpoint shipped] [--threads 1]

Decision, per task, on the DEVELOPMENT sets only (two training-corpus sets, none of the benchmark sets below):
bf16 may be a task's CPU default when on each set its outputs agree with fp32's, with bounds fixed before the run
(AGREEMENT): the same label for at least 99% of cells; a median cosine of at least 0.99 between a cell's two
embeddings; a median per-cell Spearman of at least 0.99 between its two denoised profiles; for the attention
network (mean_qk) a Spearman of at least 0.99 between the two edge weights and 90% of the top 1,000 edges shared;
for the knock-out network (perturb, 10 regulators) a Spearman of at least 0.95 between the two effect rows. Its
speed counts only with that.
Report, on the EVALUATION sets (the held-out benchmark sets of bench_checkpoints, with its protocols):
retina_test accuracy and macro-F1, retina_test and Paul 2015 k-means ARI and NMI (mean over 10 starts), PBMC3k
denoising Spearman, at each precision, and the paired difference bf16 - fp32 with its 95% bootstrap interval over
cells (the same resampled cells for both). Each task is timed at both precisions in the same run: the ratio is
the figure.
Record: benchmarks/results/precision.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import anndata as ad
import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checkpoints import CELL_TYPE, EMBEDDING_SETS, thinned_pbmc3k  # noqa: E402
from bench_tasks_quality import KEEP  # noqa: E402

from grnformer.bench import toolkit  # noqa: E402
from grnformer.bundle.checkpoint import load_bundle, resolve_checkpoint  # noqa: E402
from grnformer.data.corpus import datasets  # noqa: E402
from grnformer.networks.grn import grn  # noqa: E402
from grnformer.networks.grn_options import GRNOptions  # noqa: E402
from grnformer.tasks.classify import classify  # noqa: E402
from grnformer.tasks.denoise import denoise  # noqa: E402
from grnformer.tasks.embed import embed  # noqa: E402
from grnformer.tasks.task_options import ClassifyOptions, DenoiseOptions, EmbedOptions  # noqa: E402

PRECISIONS = ("fp32", "bf16")
# Development: sets the campaign trains on (scripts/campaign.py), never a benchmark set; cells drawn per set.
DEVELOPMENT = {"zheng2017_sorted_pbmc_facs": 600, "baron2016_mouse_pancreas": 600}
DEV_DENOISE_CELLS = 200
DENOISE_CELLS = 500  # PBMC3k cells for the evaluation's denoising (2,000 listed genes: 16 contexts a cell)
DEV_NETWORK_CELLS, TOP_EDGES = 300, 1000  # the attention network (mean_qk, grn's default genes): its top edges
AGREEMENT = {"classify": {"labels_same": 0.99}, "embed": {"embedding_cosine_median": 0.99},
             "denoise": {"denoise_spearman_median": 0.99},
             "grn attention (mean_qk)": {"network_spearman": 0.99, "network_top_edges_shared": 0.9},
             "grn knock-outs (perturb)": {"perturb_spearman": 0.95}}
# the in-silico knock-out network: small differences of two forward passes, where bf16's rounding weighs most
PERTURB_GENES, PERTURB_CELLS = 500, 100


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _draw(name: str, n: int) -> ad.AnnData:
    adata = datasets.load(name)
    rng = np.random.default_rng(toolkit.SEED)
    return adata[np.sort(rng.choice(adata.n_obs, min(n, adata.n_obs), replace=False))].copy()


def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman of each row of ``a`` with the same row of ``b`` over the entries either holds."""
    out = []
    for x, y in zip(a, b):
        on = (x != 0) | (y != 0)
        if on.sum() >= 10:
            out.append(spearmanr(x[on], y[on]).statistic)
    return np.asarray(out)


def development(bundle, name: str, n: int) -> dict[str, Any]:
    """How far bf16's labels, embeddings, denoised counts and attention network are from fp32's on one
    development set."""
    adata = _draw(name, n)
    runs: dict[str, dict[str, Any]] = {}
    for p in PRECISIONS:
        cells = adata.copy()
        _, t_classify = timed(lambda: classify(bundle, cells, ClassifyOptions(precision=p), progress=False))
        emb, t_embed = timed(lambda: embed(bundle, adata.copy(), EmbedOptions(precision=p), progress=False))
        den, t_denoise = timed(lambda: denoise(bundle, adata[:DEV_DENOISE_CELLS].copy(),
                                               DenoiseOptions(precision=p), progress=False))
        runs[p] = {"labels": cells.obs["grnformer_cell_type"].astype(str).to_numpy(), "embedding": emb,
                   "denoised": den.toarray(), "seconds": {"classify": t_classify, "embed": t_embed,
                                                          "denoise": t_denoise}}
    a, b = runs["fp32"], runs["bf16"]
    nets = [grn(bundle, adata.copy(), GRNOptions(method="mean_qk", max_cells=DEV_NETWORK_CELLS, precision=p),
                progress=False).varp["GRN"] for p in PRECISIONS]
    nets = [n.toarray() if hasattr(n, "toarray") else np.asarray(n) for n in nets]
    top = [set(np.argsort(-n.ravel())[:TOP_EDGES]) for n in nets]
    knockouts = [grn(bundle, adata.copy(), GRNOptions(method="perturb", n_genes=PERTURB_GENES, max_regulators=10,
                                                      max_cells=PERTURB_CELLS, precision=p), progress=False)
                 for p in PRECISIONS]
    ko_rows = [np.asarray(k.varp["GRN"])[np.abs(np.asarray(k.varp["GRN"])).sum(1) > 0] for k in knockouts]
    keep = np.isfinite(a["embedding"]).all(axis=1)
    ea, eb = a["embedding"][keep], b["embedding"][keep]
    cosine = (ea * eb).sum(1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
    rel = np.abs(b["denoised"] - a["denoised"])[a["denoised"] > 0] / a["denoised"][a["denoised"] > 0]
    return {"cells": int(adata.n_obs), "denoise_cells": int(min(DEV_DENOISE_CELLS, adata.n_obs)),
            "labels_same": float(np.mean(a["labels"] == b["labels"])),
            "embedding_cosine_median": float(np.median(cosine)), "embedding_cosine_min": float(cosine.min()),
            "denoise_spearman_median": float(np.median(_row_spearman(a["denoised"], b["denoised"]))),
            "denoise_relative_difference_median": float(np.median(rel)),
            "network_spearman": float(spearmanr(nets[0].ravel(), nets[1].ravel()).statistic),
            "network_top_edges_shared": len(top[0] & top[1]) / TOP_EDGES,
            "perturb_spearman": float(spearmanr(ko_rows[0].ravel(), ko_rows[1].ravel()).statistic),
            "speedup": {task: a["seconds"][task] / b["seconds"][task] for task in a["seconds"]}}


def _paired(stat: Callable[[str, np.ndarray], float], n: int) -> dict[str, list[float]]:
    """Each precision's statistic and bf16 - fp32, each [estimate, low, high] over the same resampled cells
    (`toolkit.bootstrap`: one set of resamples for both, so the difference is paired)."""
    boot = toolkit.bootstrap({p: (lambda i, p=p: stat(p, i)) for p in PRECISIONS}, n)
    point, interval = boot.difference("bf16", "fp32")
    return {**{p: boot.estimate(p) for p in PRECISIONS}, "bf16 - fp32": [point, *interval]}


def evaluation(bundle) -> dict[str, Any]:
    out: dict[str, Any] = {}
    test = datasets.load("retina_test")
    truth = test.obs[CELL_TYPE].astype(str).to_numpy()
    pred, seconds = {}, {}
    for p in PRECISIONS:
        cells = test.copy()
        _, seconds[p] = timed(lambda: classify(bundle, cells, ClassifyOptions(precision=p), progress=False))
        pred[p] = cells.obs["grnformer_cell_type"].astype(str).to_numpy()
    out["labels / retina_test"] = {
        "accuracy": _paired(lambda p, i: float(np.mean(pred[p][i] == truth[i])), len(truth)),
        "macro_f1": _paired(lambda p, i: float(f1_score(truth[i], pred[p][i], average="macro")), len(truth)),
        "speedup": seconds["fp32"] / seconds["bf16"]}
    for name, label in EMBEDDING_SETS.items():
        adata = datasets.load(name)
        truth = adata.obs[label].astype(str).to_numpy()
        scores, seconds = {}, {}
        for p in PRECISIONS:
            emb, seconds[p] = timed(lambda: embed(bundle, adata.copy(), EmbedOptions(precision=p), progress=False))
            keep = np.isfinite(emb).all(axis=1)  # the same cells at both precisions: embed drops none here
            found = toolkit.kmeans_partitions(emb[keep], len(np.unique(truth)))
            scores[p] = {m: toolkit.partition_score(f, truth[keep], found)
                         for m, f in (("ari", adjusted_rand_score), ("nmi", normalized_mutual_info_score))}
        out[f"embedding / {name}"] = {m: _paired(lambda p, i: scores[p][m](i), int(keep.sum())) for m in ("ari", "nmi")}
        out[f"embedding / {name}"]["speedup"] = seconds["fp32"] / seconds["bf16"]
    noisy, genes, score = thinned_pbmc3k(DENOISE_CELLS)
    rho, seconds = {}, {}
    for p in PRECISIONS:
        layer, seconds[p] = timed(lambda: denoise(bundle, noisy.copy(), DenoiseOptions(
            genes=genes, depth_multiplier=1 / KEEP, precision=p), progress=False))
        rho[p] = score(layer)
    out["denoising / PBMC3k"] = {"spearman": _paired(lambda p, i: float(rho[p][i].mean()), len(rho["fp32"])),
                                 "speedup": seconds["fp32"] / seconds["bf16"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="shipped")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the whole run")
    parser.add_argument("--out", type=Path, default=toolkit.results_path("precision"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    bundle = load_bundle(resolve_checkpoint(args.checkpoint), map_location="cpu")
    dev = {name: development(bundle, name, n) for name, n in DEVELOPMENT.items()}
    agree = {task: all(r[k] >= bound for r in dev.values() for k, bound in bounds.items())
             for task, bounds in AGREEMENT.items()}
    record = {"development": dev, "agreement_bounds": AGREEMENT,
              "bf16_may_be_cpu_default": agree, "evaluation": evaluation(bundle),
              "torch_threads": torch.get_num_threads(), "cpu_bf16_native": torch.ops.mkldnn._is_mkldnn_bf16_supported()}
    print(f"wrote {toolkit.write_record(args.out, record, method='bf16 autocast vs fp32', checkpoint=args.checkpoint)}")
    for name, r in dev.items():
        print(f"development {name}: {r}")
    for key, r in record["evaluation"].items():
        print(f"{key}: {r}")
    print(f"bf16 may be the CPU default: {agree}")


if __name__ == "__main__":
    main()
