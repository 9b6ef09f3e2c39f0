"""Options of a benchmark run (`bench.runner.run_bench`), documented once; the `grnformer bench` flags come from
them. Standard library only, like `inference.option_fields`, so that the CLI's parser stays instant to build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from grnformer.inference.option_fields import option


@dataclass
class BenchOptions:
    """What a benchmark matrix can be asked for; each field is documented once, here."""

    n_genes: int = option(1000, "benchmark genes per dataset, every method sees the same: the most variable TFs ∪ "
                          "the most variable genes")
    n_tfs: int = option(500, "of those, at most this many TFs (the most variable)")
    min_frac: float = option(0.01, "a benchmark gene is detected in at least this share of cells")
    universes: Sequence[str] = option(("all", "tf"), "scored universes: all (every gene may regulate), tf (rows = "
                                      "the organism's TFs), truth_regulators (rows the truth names)", kind="list")
    regulators: str = option("all", "genes a method may use as regulators: all benchmark genes, or only TFs",
                             choices=("all", "tf"))
    seed: int = option(0, "the methods' random draws; part of each network's cache key")
    n_jobs: int = option(2, "worker processes of the baselines that run in parallel (GENIE3, GRNBoost2)")
    method_options: Mapping[str, dict] | None = option(
        None, "per-method keyword arguments, e.g. {'genie3': {'n_estimators': 50}}", cli=False)
