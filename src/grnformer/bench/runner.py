"""The benchmark matrix: methods × datasets → networks (cached) → scores against every applicable ground truth.

A method is a function ``(adata, genes, regulators, **options) -> network AnnData``; the baselines are registered
here and other layers add theirs with `register_method` (the tasks layer registers 'grnformer'). Each dataset is
prepared once, reduced to a benchmark gene set (`baselines.select_genes`: the most variable TFs ∪ the most variable
genes) and every method sees the same genes. Networks are cached as h5ad under ``out_dir/networks`` by a hash of
everything that determines them (method, its version and options, data, genes, seed), so re-running a report only
recomputes what changed. A truth is scored only on datasets of its organism; the 'tf' universe uses the
organism's TF list for every method, whatever its network marks.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from grnformer.bench import baselines
from grnformer.bench.metrics import UNIVERSES, score_network
from grnformer.bench.truths import GroundTruth, available_truths, load_truth
from grnformer.data.genes import tf_symbols
from grnformer.errors import InputError

NetworkFn = Callable[..., ad.AnnData]


@dataclass
class Method:
    """A registered network-inference method; ``version`` enters the cache key."""

    fn: NetworkFn
    version: str
    defaults: dict


_METHODS: dict[str, Method] = {}


def register_method(name: str, fn: NetworkFn, version: str = "", defaults: Mapping | None = None) -> None:
    """Make ``fn(adata, genes, regulators, **options) -> network AnnData`` available to the runner as ``name``."""
    _METHODS[name] = Method(fn, version, dict(defaults or {}))


def _baseline(method: str) -> NetworkFn:
    def run(adata: ad.AnnData, genes: Sequence[str], regulators: Sequence[str] | None, **options) -> ad.AnnData:
        return baselines.infer(method, adata, genes=genes, regulators=regulators, **options)

    run.__name__ = method
    return run


for _name in baselines.METHODS:
    register_method(_name, _baseline(_name), baselines.method_version(_name))


def available_methods() -> list[str]:
    """Names the runner accepts (the tasks layer's 'grnformer' once it has registered itself)."""
    _load_grnformer_method()
    return sorted(_METHODS)


def _load_grnformer_method() -> None:
    """Register `bench.grnformer_method` as method 'grnformer' (needs option `checkpoint`)."""
    if "grnformer" not in _METHODS:
        import grnformer
        from grnformer.bench.grnformer_method import benchmark_method

        register_method("grnformer", benchmark_method, version=f"grnformer {grnformer.__version__}")


# ---------------------------------------------------------------------------------------------------- inputs


def _organism(adata: ad.AnnData) -> str:
    col = adata.obs.get("organism_ontology_term_id")
    if col is None or not len(col):
        raise InputError("a benchmark dataset needs obs['organism_ontology_term_id'] (prepare() sets it)")
    return str(col.iloc[0])


def resolve_datasets(datasets: Sequence[str] | Mapping[str, ad.AnnData]) -> dict[str, ad.AnnData]:
    """Named datasets (loaded and prepared) or ``{name: AnnData}`` as given."""
    if isinstance(datasets, Mapping):
        return dict(datasets)
    from grnformer.data.datasets import load

    return {name: load(name, prepared=True) for name in datasets}


def resolve_truths(truths: Sequence[str] | Mapping[str, GroundTruth]) -> dict[str, GroundTruth]:
    """Registered truth names (loaded) or ``{name: GroundTruth}`` as given; unknown names fail before any work."""
    if isinstance(truths, Mapping):
        return dict(truths)
    unknown = [t for t in truths if t not in available_truths()]
    if unknown:
        raise InputError(f"unknown ground truth(s) {unknown}; known: {', '.join(available_truths())}")
    return {name: load_truth(name) for name in truths}


def _fingerprint(adata: ad.AnnData) -> str:
    """Hash of the count matrix and gene names (what a network depends on)."""
    h = hashlib.sha1()
    x = adata.X.tocsr() if sp.issparse(adata.X) else sp.csr_matrix(np.asarray(adata.X))
    for arr in (x.indptr, x.indices, np.asarray(x.data, dtype=np.float32)):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\0".join(baselines.gene_symbols(adata)).encode())
    h.update(str(adata.uns.get("transform", "counts")).encode())
    return h.hexdigest()


def _cache_key(method: str, options: dict, data_hash: str, genes: Sequence[str], regulators, seed: int) -> str:
    payload = json.dumps({"method": method, "version": _METHODS[method].version, "options": options,
                          "data": data_hash, "genes": list(genes), "seed": seed,
                          "regulators": None if regulators is None else list(regulators)}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _write_h5ad(net: ad.AnnData, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    net.write_h5ad(tmp)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------- the matrix


def run_bench(methods: Sequence[str], datasets: Sequence[str] | Mapping[str, ad.AnnData],
              truths: Sequence[str] | Mapping[str, GroundTruth], out_dir: str | Path, n_genes: int = 1000,
              n_tfs: int = 500, min_frac: float = 0.01, universes: Iterable[str] = ("all", "tf"),
              regulators: str = "all", seed: int = 0, n_jobs: int = 2,
              method_options: Mapping[str, dict] | None = None, progress: bool = True, report: bool = True) -> dict:
    """Run every method on every dataset, score against every truth of the dataset's organism, write the results.

    ``regulators``: 'all' (every benchmark gene may regulate) or 'tf' (only TFs). ``method_options``: per-method
    keyword arguments (e.g. ``{"genie3": {"n_estimators": 50}}``). Writes ``metrics.json``, ``results.md``, PR-curve
    PNGs and ``report.html`` in ``out_dir`` (with ``report=True``) and returns the results dict.
    """
    _load_grnformer_method()
    unknown = [m for m in methods if m not in _METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; known: {', '.join(sorted(_METHODS))}")
    universes = list(universes)
    bad = [u for u in universes if u not in UNIVERSES]
    if bad:
        raise InputError(f"unknown universe(s) {bad}; known: {UNIVERSES}")
    if regulators not in ("all", "tf"):
        raise InputError(f"regulators must be 'all' or 'tf', not {regulators!r}")
    method_options = {m: dict(method_options.get(m, {})) if method_options else {} for m in methods}
    truth_objs = resolve_truths(truths)
    data = resolve_datasets(datasets)
    out = Path(out_dir)
    (out / "networks").mkdir(parents=True, exist_ok=True)

    setups = {}
    for dname, adata in data.items():
        org = _organism(adata)
        genes = baselines.select_genes(adata, n_genes=n_genes, n_tfs=n_tfs, min_frac=min_frac)
        regs = [g for g in genes if g in tf_symbols(org)] if regulators == "tf" else None
        setups[dname] = (adata, org, genes, regs, _fingerprint(adata))

    records, curves, timings = [], {}, []
    jobs = [(m, d) for d in data for m in methods]
    bar = tqdm(jobs, desc="bench", disable=not progress)
    for method, dname in bar:
        bar.set_postfix_str(f"{method} on {dname}")
        adata, org, genes, regs, data_hash = setups[dname]
        options = {**_METHODS[method].defaults, **method_options[method]}
        if method in baselines.METHODS:
            options.setdefault("seed", seed)
            options.setdefault("n_jobs", n_jobs)
        key = _cache_key(method, options, data_hash, genes, regs, seed)
        path = out / "networks" / f"{method}__{dname}__{key}.h5ad"
        cached = path.exists()
        if cached:
            net = ad.read_h5ad(path)
        else:
            start = time.perf_counter()
            net = _METHODS[method].fn(adata, genes, regs, **options)
            net.uns.setdefault("grn", {})["wall_seconds"] = time.perf_counter() - start
            _write_h5ad(net, path)
        timings.append({"method": method, "dataset": dname, "seconds": float(net.uns["grn"]["wall_seconds"]),
                        "cached": cached, "network": str(path.relative_to(out)), "n_genes": len(genes),
                        "n_cells": int(adata.n_obs)})
        for tname, truth in truth_objs.items():
            if truth.organism != org:
                continue
            for universe in universes:
                res = score_network(net, truth, universe=universe, tfs=tf_symbols(org), curve=True)
                curves[(dname, tname, universe, method)] = (res.pop("recall"), res.pop("precision"))
                res.pop("fpr"), res.pop("tpr")
                records.append({"method": method, "dataset": dname, "truth": tname, **res,
                                "seconds": timings[-1]["seconds"]})
    results = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "settings": {"n_genes": n_genes, "n_tfs": n_tfs, "min_frac": min_frac, "universes": universes,
                     "regulators": regulators, "seed": seed, "n_jobs": n_jobs, "method_options": method_options},
        "methods": {m: _METHODS[m].version for m in methods},
        "datasets": {d: {"organism": s[1], "n_cells": int(s[0].n_obs), "n_genes": len(s[2])} for d, s in setups.items()},
        "truths": {t: {"organism": g.organism, "edges": len(g), "provenance": g.provenance} for t, g in truth_objs.items()},
        "timings": timings,
        "records": records,
    }
    if report:
        from grnformer.bench.report import write_report

        write_report(results, curves, out)
    return results


def bench_main(methods: list[str], datasets: list[str], truths: list[str], out_dir: str | Path,
               n_genes: int = 1000, checkpoint: str | None = None, **kw) -> dict:
    """The `grnformer bench` command: ``checkpoint`` goes to the 'grnformer' method; other keywords to
    `run_bench`. Prints where the report is."""
    options = dict(kw.pop("method_options", {}) or {})
    if checkpoint is not None:
        if "grnformer" not in methods:
            raise InputError("--checkpoint is only used by the 'grnformer' method; add it to --methods")
        options.setdefault("grnformer", {})["checkpoint"] = checkpoint
    results = run_bench(methods, datasets, truths, out_dir, n_genes=n_genes, method_options=options, **kw)
    print(f"{len(results['records'])} scores; report: {Path(out_dir) / 'report.html'}")
    return results
