"""The one benchmark toolkit: percentile intervals, a bootstrap over units with paired differences, seeds, and the
result record every script in ``benchmarks/`` writes.

Why one module: each script used to carry its own resampling loop and JSON dump, so two tables could differ in
how they drew resamples or what a record said about its provenance. Here a unit is whatever a truth or a label is
built from (a network's regulator rows, a dataset's cells); every statistic of every method is computed on the
same resamples, so a difference between two methods has a paired interval. A record is written atomically
(`grnformer.atomic`) with the date, machine, command, protocol version, method version and checkpoint digest, so
a number on the results page can always be traced to what produced it.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from grnformer.atomic import write_text
from grnformer.data.resources import file_sha256

PROTOCOL_VERSION = "1"
N_BOOT = 200
SEED = 0
LEVEL = 0.95
RESULTS_DIR = Path("benchmarks") / "results"

Statistic = Callable[[np.ndarray], "float | Sequence[float]"]


def rng(seed: int = SEED) -> np.random.Generator:
    """The generator every benchmark draws from (one seed convention for all scripts)."""
    return np.random.default_rng(seed)


def percentile_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> list[float | None]:
    """[low, high] percentile interval of the finite ``values``; [None, None] when none is finite (a resample
    without a true edge has no AUPRC ratio, so such replicates are left out rather than biasing the interval)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return [None, None]
    tail = (100 - 100 * level) / 2  # written so that 0.95 gives exactly 2.5 and 97.5
    return [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))]


def resamples(n_units: int, n_boot: int = N_BOOT, seed: int = SEED) -> list[np.ndarray]:
    """``n_boot`` draws of ``n_units`` unit indices with replacement, in a fixed order (the protocol's draws)."""
    if n_units < 1:
        raise ValueError("a bootstrap needs at least one unit")
    g = rng(seed)
    return [g.integers(0, n_units, n_units) for _ in range(n_boot)]


@dataclass(frozen=True)
class Bootstrap:
    """Each method's statistics on all units (``point``, [k]) and on every resample (``replicates``,
    [n_boot, k]); the resamples are shared by every method, which is what makes differences paired."""

    point: dict[str, np.ndarray]
    replicates: dict[str, np.ndarray]

    def interval(self, method: str, k: int = 0, level: float = LEVEL) -> list[float | None]:
        """Percentile interval of statistic ``k`` of ``method``."""
        return percentile_interval(self.replicates[method][:, k], level)

    def estimate(self, method: str, k: int = 0, level: float = LEVEL) -> list[float | None]:
        """[estimate, low, high] of statistic ``k`` of ``method``."""
        return [float(self.point[method][k]), *self.interval(method, k, level)]

    def differences(self, method: str, reference: str, k: int = 0) -> np.ndarray:
        """``method`` minus ``reference`` on each resample (statistic ``k``)."""
        return self.replicates[method][:, k] - self.replicates[reference][:, k]

    def difference(self, method: str, reference: str, k: int = 0,
                   level: float = LEVEL) -> tuple[float, list[float | None]]:
        """(point difference, its paired percentile interval) of ``method`` minus ``reference``."""
        point = float(self.point[method][k] - self.point[reference][k])
        return point, percentile_interval(self.differences(method, reference, k), level)


def bootstrap(statistics: Mapping[str, Statistic], n_units: int, n_boot: int = N_BOOT,
              seed: int = SEED) -> Bootstrap:
    """Every ``statistic(units) -> value or values`` on all ``n_units`` units and on the same ``n_boot``
    resamples with replacement (units: regulator rows of a network, or cells)."""
    picks = resamples(n_units, n_boot, seed)
    everything = np.arange(n_units)
    point = {m: np.atleast_1d(np.asarray(f(everything), dtype=np.float64)) for m, f in statistics.items()}
    reps = {m: np.array([np.atleast_1d(np.asarray(f(p), dtype=np.float64)) for p in picks]).reshape(n_boot, -1)
            for m, f in statistics.items()}
    return Bootstrap(point, reps)


def interval(statistic: Statistic, n_units: int, n_boot: int = N_BOOT, seed: int = SEED) -> list[float | None]:
    """[estimate, low, high] of one scalar statistic over units (a cell-level score's interval)."""
    return bootstrap({"s": statistic}, n_units, n_boot, seed).estimate("s")


# ---------------------------------------------------------------------------------------------------- clusters

# Which optimum k-means reaches depends on its start: for one embedding of the 300 retina_test cells, ARI with the
# true types ranged 0.66-0.76 over 10 seeds (2026-12-04), more than most effects a benchmark measures. So a
# clustering figure is the mean over partitions from KMEANS_SEEDS starts, never one draw.
KMEANS_SEEDS = 10


def kmeans_partitions(rep: np.ndarray, k: int, seeds: int = KMEANS_SEEDS) -> list[np.ndarray]:
    """k-means labels of ``rep`` (cells × dims) into ``k`` clusters from ``seeds`` random starts (10 inits each)."""
    from sklearn.cluster import KMeans

    return [KMeans(n_clusters=k, n_init=10, random_state=s).fit_predict(rep) for s in range(seeds)]


def partition_score(score: Callable[[np.ndarray, np.ndarray], float], truth: np.ndarray,
                    partitions: Sequence[np.ndarray]) -> Statistic:
    """A statistic of resampled cells: the mean over ``partitions`` of ``score(truth, partition)`` on those cells
    (``score``: sklearn's adjusted_rand_score, normalized_mutual_info_score...)."""
    return lambda cells: float(np.mean([score(truth[cells], p[cells]) for p in partitions]))


# ---------------------------------------------------------------------------------------------------- records


def checkpoint_digest(path: str | Path) -> str:
    """First 12 hex digits of the checkpoint file's SHA-256: results and caches are keyed by it, so new weights
    never reuse old numbers (a checkpoint rewritten in place under the same name included)."""
    return file_sha256(path)[:12]


def machine() -> str:
    """What ran it: architecture, processor, cores and the thread limit the benchmarks are asked to keep."""
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"{platform.machine()}, {platform.processor() or 'cpu'}, {os.cpu_count()} cores, OMP_NUM_THREADS={threads}"


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as it was typed (script path and arguments), for the record and the results page."""
    script = Path(sys.argv[0]).as_posix() if sys.argv and sys.argv[0] else "python"
    return " ".join([script, *(sys.argv[1:] if argv is None else argv)])


def method_version(description: str | Mapping[str, Any]) -> dict[str, Any]:
    """The package version plus what the script ran (method names, options), so a record says which code made it."""
    from grnformer import __version__

    return {"grnformer": __version__, "method": description}


def results_path(name: str) -> Path:
    """``benchmarks/results/NAME.json`` (relative to the repository root the scripts run from)."""
    return RESULTS_DIR / f"{name}.json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"a benchmark record cannot hold {type(value).__name__}: {value!r:.80}")


def record(body: Mapping[str, Any], *, method: str | Mapping[str, Any], checkpoint: str | Path | None = None,
           digest: str | None = None, command: str | None = None, machine_name: str | None = None,
           protocol_version: str = PROTOCOL_VERSION) -> dict[str, Any]:
    """The provenance fields every record carries, then ``body``. ``checkpoint`` is named as given ('shipped');
    its digest is computed from the resolved file unless ``digest`` is given; both None when no model ran."""
    if checkpoint is not None and digest is None:
        from grnformer.bundle.checkpoint import resolve_checkpoint

        digest = checkpoint_digest(resolve_checkpoint(str(checkpoint)))
    head = {"date": date.today().isoformat(), "machine": machine_name or machine(),
            "command": command or command_line(), "protocol_version": protocol_version,
            "method_version": method_version(method),
            "checkpoint": None if checkpoint is None else str(checkpoint), "checkpoint_digest": digest}
    clash = sorted(set(head) & set(body))
    if clash:
        raise ValueError(f"the record's body must not set its provenance fields {clash}")
    return {**head, **body}


def write_record(path: str | Path, body: Mapping[str, Any], *, indent: int | None = 1, **provenance: Any) -> Path:
    """Write `record(body, **provenance)` as JSON to ``path`` (a bare name goes to `results_path`), atomically:
    the text is built first and published whole, so a failure leaves the old file (or none), never a part."""
    path = Path(path)
    if path.suffix != ".json" and path.parent == Path("."):
        path = results_path(path.name)
    text = json.dumps(record(body, **provenance), indent=indent, default=_jsonable)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text + "\n")
