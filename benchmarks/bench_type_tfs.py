"""Do per-type networks differ where cell types differ? Lineage TFs on PBMC3k's predicted types (issue 18.6).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_type_tfs.py [--methods mean_qk fused pearson] \
        [--out benchmarks/results/type_tfs.json]

Cells: PBMC3k, typed by `grnformer classify` with the shipped model and pooled into four lineages (monocytes,
B cells, NK cells, T cells). Genes: TFs + 500 (`hvg+tfs`) plus the eight lineage TFs. One network per lineage
and method, TF rows (the default). For every lineage TF and lineage network:
- its rank by out-strength (sum of its row) among the network's TF rows (1 = the strongest regulator);
- the AUROC of its row against its Omnipath targets among the network genes, with a 95% interval from 200
  bootstrap resamples of the targets (with replacement, `bench.toolkit`).
Expected if the networks are type-specific: each TF ranks higher, and scores its targets better, in its own
lineage than in the others. PBMC3k is a development dataset of the protocol (`bench.protocol`).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from grnformer.bench import toolkit
from grnformer.bench.toolkit import checkpoint_digest
from grnformer.bench.truths import load_truth
from grnformer.bundle.checkpoint import resolve_checkpoint
from grnformer.data.corpus import datasets
from grnformer.inference.device import load_task_bundle
from grnformer.inference.gene_sets import select_genes
from grnformer.inference.prepared import prepare_input
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.network_adata import network_names
from grnformer.tasks.classify import classify

LINEAGE_TFS = {"monocyte": ["SPI1", "CEBPB"], "B cell": ["PAX5", "EBF1"], "NK cell": ["TBX21", "EOMES"],
               "T cell": ["TCF7", "LEF1"]}
LINEAGE_OF = {"CL:0002057": "monocyte", "CL:0002396": "monocyte", "CL:0000576": "monocyte",
              "CL:0000236": "B cell", "CL:0000623": "NK cell"}
T_CELLS = ("CL:0000084", "CL:0000624", "CL:0000625", "CL:0000895", "CL:0000897", "CL:0000900", "CL:0000815")


def _lineage(term: str) -> str:
    return "T cell" if term in T_CELLS else LINEAGE_OF.get(term, "other")


def _auroc_ci(scores: np.ndarray, labels: np.ndarray, n_boot: int = toolkit.N_BOOT) -> list[float | None]:
    """95% interval of a row's AUROC over its targets (the unit), `bench.toolkit`'s bootstrap; a resample with
    one class only has no AUROC and is left out."""

    def auroc(pick: np.ndarray) -> float:
        y = labels[pick]
        return float(roc_auc_score(y, scores[pick])) if y.any() and not y.all() else np.nan

    return toolkit.bootstrap({"auroc": auroc}, len(labels), n_boot).interval("auroc")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["mean_qk", "fused", "pearson"])
    ap.add_argument("--checkpoint", default="shipped")
    ap.add_argument("--out", default="benchmarks/results/type_tfs.json")
    args = ap.parse_args(argv)
    path = resolve_checkpoint(args.checkpoint)
    bundle, _ = load_task_bundle(path)
    adata = datasets.load("pbmc3k")
    classify(bundle, adata, progress=False)
    adata.obs["lineage"] = [_lineage(t) for t in adata.obs["grnformer_cell_type"].astype(str)]
    prep = prepare_input(bundle, adata)
    genes = list(dict.fromkeys(network_names(prep, select_genes(prep, "hvg+tfs", 500)).tolist()
                               + [tf for tfs in LINEAGE_TFS.values() for tf in tfs]))
    omnipath = load_truth("omnipath")
    lineages = list(LINEAGE_TFS)
    counts = adata.obs["lineage"].value_counts().to_dict()
    rows = []
    for method in args.methods:
        t0 = time.perf_counter()
        nets = grn(bundle, adata, GRNOptions(genes=genes, method=method, groupby="lineage", groups=lineages),
                   progress=False)
        seconds = time.perf_counter() - t0
        for lineage, net in nets.items():
            names = net.var_names.to_numpy()
            m = np.asarray(net.varp["GRN"], dtype=np.float64).copy()
            np.fill_diagonal(m, 0)
            tf_rows = np.flatnonzero(net.var["is_regulator"].to_numpy())
            strength = m.sum(axis=1)
            order = tf_rows[np.argsort(-strength[tf_rows], kind="stable")]
            for own, tfs in LINEAGE_TFS.items():
                for tf in tfs:
                    if tf not in set(names):
                        continue
                    i = int(np.flatnonzero(names == tf)[0])
                    targets = omnipath.to_matrix([tf], names)[0]
                    keep = names != tf
                    auroc = roc_auc_score(targets[keep], m[i, keep]) if 0 < targets[keep].sum() < keep.sum() \
                        else None
                    rows.append({"method": method, "network": lineage, "tf": tf, "tf_lineage": own,
                                 "own": own == lineage, "rank": int(np.flatnonzero(order == i)[0]) + 1,
                                 "n_tf_rows": int(len(tf_rows)), "auroc": auroc,
                                 "auroc_ci": _auroc_ci(m[i, keep], targets[keep]) if auroc is not None
                                 else [None, None], "omnipath_targets": int(targets[keep].sum()),
                                 "seconds_all_networks": seconds})
        print(method, f"{seconds:.0f} s", flush=True)
        for tf in [t for tfs in LINEAGE_TFS.values() for t in tfs]:
            mine = [r for r in rows if r["method"] == method and r["tf"] == tf]
            if mine:
                print("  ", tf, " ".join(f"{r['network']}: rank {r['rank']} auroc "
                                          f"{r['auroc'] if r['auroc'] is None else round(r['auroc'], 2)}"
                                          for r in mine), flush=True)
    out = toolkit.write_record(args.out, {"cells_per_lineage": counts, "genes": len(genes), "rows": rows},
                               method={"methods": args.methods, "genes": "hvg+tfs 500 + lineage TFs",
                                       "groupby": "lineage"},
                               checkpoint=args.checkpoint, digest=checkpoint_digest(path),
                               command=toolkit.command_line(argv))
    print("wrote", out)


if __name__ == "__main__":
    main()
