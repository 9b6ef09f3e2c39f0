"""The benchmark matrix: methods × datasets → networks (cached) → scores against every applicable ground truth.

A method is a function ``(adata, genes, regulators, **options) -> network AnnData``; the baselines are registered
here and other layers add theirs with `register_method` (the tasks layer registers 'grnformer'). Each dataset is
prepared once, reduced to a benchmark gene set (`baselines.select_genes`: the most variable TFs ∪ the most variable
genes) and every method sees the same genes. Networks are cached as h5ad under ``out_dir/networks`` by a hash of
everything that determines them (`cache_key`: protocol version, method, its version and options, the checkpoint's
weights, data, genes, regulators, seed), so re-running a report only recomputes what changed and never reuses a
network made under another protocol or other options. A truth is scored only on datasets of its organism; the 'tf'
universe uses the organism's TF list for every method, whatever its network marks.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from grnformer.bench import baselines, beeline
from grnformer.bench.bench_options import BenchOptions
from grnformer.bench.network_scores import UNIVERSES, score_network
from grnformer.bench.toolkit import PROTOCOL_VERSION, checkpoint_digest
from grnformer.bench.truths import GroundTruth, available_truths, load_truth
from grnformer.data.genes import organism_id, tf_symbols
from grnformer.data.input.expression import organism_of
from grnformer.errors import InputError
from grnformer.networks.network_file import write_network

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


def resolve_datasets(datasets: Sequence[str] | Mapping[str, ad.AnnData]) -> dict[str, ad.AnnData]:
    """Named datasets or files of cells in any format `data.input.read` reads (loaded and prepared), BEELINE directories
    (``beeline:DIR[:organism]``, see `bench.beeline`) or ``{name: AnnData}`` as given."""
    if isinstance(datasets, Mapping):
        return dict(datasets)
    from grnformer.data.corpus.datasets import load

    out = {}
    for name in datasets:
        adata = beeline.load(name) if beeline.is_spec(name) else load(name, prepared=True)
        out[adata.uns["beeline"]["name"] if beeline.is_beeline(adata) else adata.uns["grnformer_dataset"]] = adata
    return out


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


# Options that say how a network is computed, not what it is (parallel workers): left out of the cache key, so
# rerunning with more workers reuses the networks.
RUN_ONLY = frozenset({"n_jobs"})


def _weights_digest(checkpoint: Any) -> str:
    """What a 'checkpoint' option means for a network: the weights. A name ('shipped') or path by the file's
    digest, so weights rewritten in place under the same name never reuse an old network; a loaded bundle by
    its tensors."""
    if isinstance(checkpoint, (str, Path)):
        from grnformer.bundle.checkpoint import resolve_checkpoint

        return checkpoint_digest(resolve_checkpoint(checkpoint))
    h = hashlib.sha256()
    for name, tensor in checkpoint.model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:12]


def cache_key(method: str, options: Mapping[str, Any], data_hash: str, genes: Sequence[str],
              regulators: Sequence[str] | None, seed: int) -> str:
    """Key of a cached network: the protocol version, the method and its version, the options that change a
    network (a checkpoint by its weights), the data, the gene set, the regulators and the seed. Anything else
    changed means a new key, so an old network is never scored under a new protocol or new options."""
    kept = {k: v for k, v in options.items() if k not in RUN_ONLY}
    if "checkpoint" in kept:
        kept["checkpoint"] = _weights_digest(kept["checkpoint"])
    payload = json.dumps({"protocol": PROTOCOL_VERSION, "method": method, "version": _METHODS[method].version,
                          "options": kept, "data": data_hash, "genes": list(genes), "seed": seed,
                          "regulators": None if regulators is None else list(regulators)}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------- the matrix


def score_networks(networks: Mapping[str, ad.AnnData], truths: Mapping[str, GroundTruth], organism: str,
                   universes: Iterable[str] = ("all", "tf")) -> tuple[list[dict], dict]:
    """Score every network against every truth of ``organism`` ('human', 'mouse' or the NCBITaxon term; truths of
    other organisms are skipped) in every universe.

    The 'tf' universe uses the organism's TF list for every method, whatever its network marks. Returns the
    records (truth, method, universe and `score_network`'s metrics), truth → universe → method order, and the PR
    curves ``{(truth, universe, method): (recall, precision)}``.
    """
    records, curves = [], {}
    organism = organism_id(organism)  # 'human' or its NCBITaxon term, as truths record it
    tfs = tf_symbols(organism)
    for tname, truth in truths.items():
        if truth.organism != organism:
            continue
        for universe in universes:
            for method, net in networks.items():
                res = score_network(net, truth, universe=universe, tfs=tfs, curve=True)
                curves[(tname, universe, method)] = (res.pop("recall"), res.pop("precision"))
                res.pop("fpr"), res.pop("tpr")
                records.append({"method": method, "truth": tname, **res})
    return records, curves



def run_bench(methods: Sequence[str], datasets: Sequence[str] | Mapping[str, ad.AnnData],
              truths: Sequence[str] | Mapping[str, GroundTruth], out_dir: str | Path,
              options: BenchOptions | None = None, *, progress: bool = True, report: bool = True) -> dict:
    """Run every method on every dataset, score against every truth of the dataset's organism, write the results.

    ``options``: see `BenchOptions`. Writes ``metrics.json``, ``results.md``, PR-curve PNGs and ``report.html`` in
    ``out_dir`` (with ``report=True``) and returns the results dict.
    """
    o = options or BenchOptions()
    _load_grnformer_method()
    unknown = [m for m in methods if m not in _METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; known: {', '.join(sorted(_METHODS))}")
    universes = list(o.universes)
    bad = [u for u in universes if u not in UNIVERSES]
    if bad:
        raise InputError(f"unknown universe(s) {bad}; known: {UNIVERSES}")
    if o.regulators not in ("all", "tf"):
        raise InputError(f"regulators must be 'all' or 'tf', not {o.regulators!r}")
    method_options = {m: dict(o.method_options.get(m, {})) if o.method_options else {} for m in methods}
    truth_objs = resolve_truths(truths)
    data = resolve_datasets(datasets)
    own_truths = {d: beeline.reference(a) for d, a in data.items() if beeline.is_beeline(a)}
    if not truth_objs and not own_truths:
        raise InputError("no ground truth to score against: name --truths, or bench a BEELINE directory "
                         "(beeline:DIR), which brings its reference network")
    out = Path(out_dir)
    (out / "networks").mkdir(parents=True, exist_ok=True)

    setups = {}
    for dname, adata in data.items():
        org = organism_of(adata, required=True)
        genes = beeline.genes(adata) if beeline.is_beeline(adata) else \
            baselines.select_genes(adata, n_genes=o.n_genes, n_tfs=o.n_tfs, min_frac=o.min_frac)
        regs = [g for g in genes if g in tf_symbols(org)] if o.regulators == "tf" else None
        setups[dname] = (adata, org, genes, regs, _fingerprint(adata))

    records, curves, timings = [], {}, []
    jobs = [(m, d) for d in data for m in methods]
    bar = tqdm(jobs, desc="bench", disable=not progress)
    for method, dname in bar:
        bar.set_postfix_str(f"{method} on {dname}")
        adata, org, genes, regs, data_hash = setups[dname]
        net, path, cached = _method_network(method, method_options[method], o, dname, adata, genes, regs,
                                            data_hash, out)
        timings.append({"method": method, "dataset": dname, "seconds": float(net.uns["grn"]["wall_seconds"]),
                        "cached": cached, "network": str(path.relative_to(out)), "n_genes": len(genes),
                        "n_cells": int(adata.n_obs)})
        scored, pr = score_networks({method: net}, truth_objs, org, universes)
        records += [{"method": method, "dataset": dname, **r, "seconds": timings[-1]["seconds"]} for r in scored]
        curves.update({(dname, *key): curve for key, curve in pr.items()})
        if dname in own_truths:  # BEELINE's convention on the directory's own reference
            truth = own_truths[dname]
            res = beeline.score(net, truth, genes, curve=True)
            curves[(dname, truth.name, beeline.UNIVERSE, method)] = (res.pop("recall"), res.pop("precision"))
            res.pop("fpr"), res.pop("tpr")
            records.append({"method": method, "dataset": dname, "truth": truth.name, **res,
                            "seconds": timings[-1]["seconds"]})
    results = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "settings": {**asdict(o), "universes": universes, "method_options": method_options},
        "methods": {m: _METHODS[m].version for m in methods},
        "datasets": {d: {"organism": s[1], "n_cells": int(s[0].n_obs), "n_genes": len(s[2])}
                     for d, s in setups.items()},
        "truths": {t: {"organism": g.organism, "edges": len(g), "provenance": g.provenance}
                   for t, g in {**truth_objs, **{g.name: g for g in own_truths.values()}}.items()},
        "timings": timings,
        "records": records,
    }
    if report:
        from grnformer.bench.report import write_report

        write_report(results, curves, out)
    return results


def _method_network(method: str, method_options: dict, o: BenchOptions, dname: str, adata: ad.AnnData,
                    genes: Sequence[str], regs: Sequence[str] | None, data_hash: str,
                    out: Path) -> tuple[ad.AnnData, Path, bool]:
    """One method's network on one dataset: read from ``out/networks`` when the same inputs ran before, else
    inferred (timed) and written there. Returns (network, its file, whether it came from the cache)."""
    options = {**_METHODS[method].defaults, **method_options}
    if method in baselines.METHODS:
        options.setdefault("seed", o.seed)
        options.setdefault("n_jobs", o.n_jobs)
    key = cache_key(method, options, data_hash, genes, regs, o.seed)
    path = out / "networks" / f"{method}__{dname}__{key}.h5ad"
    if path.exists():
        return ad.read_h5ad(path), path, True
    start = time.perf_counter()
    net = _METHODS[method].fn(adata, genes, regs, **options)
    net.uns.setdefault("grn", {})["wall_seconds"] = time.perf_counter() - start
    write_network(net, path)
    return net, path, False


def bench_main(methods: list[str], datasets: list[str], truths: list[str], out_dir: str | Path,
               options: BenchOptions | None = None, checkpoint: str | None = None, progress: bool = True) -> dict:
    """The `grnformer bench` command: ``checkpoint`` goes to the 'grnformer' method's options. Prints where the
    report is."""
    options = options or BenchOptions()
    if checkpoint is not None:
        if "grnformer" not in methods:
            raise InputError("--checkpoint is only used by the 'grnformer' method; add it to --methods")
        per_method = {m: dict(o) for m, o in (options.method_options or {}).items()}
        per_method.setdefault("grnformer", {})["checkpoint"] = checkpoint
        options = replace(options, method_options=per_method)
    results = run_bench(methods, datasets, truths, out_dir, options, progress=progress)
    print(f"{len(results['records'])} scores; report: {Path(out_dir) / 'report.html'}")
    return results
