"""The registry of network read-out methods: each method is one `NetworkMethod` that declares its name, help and
traits (constraints, what it accumulates over cells, which correlation it is, the settings only it reads) and how
it forms the network. `networks.dispatch` runs a method from these traits alone, so no other module branches on a
method's name.

Light at import (standard library only): `networks.grn_options` takes its method names and help from here and the CLI
must stay instant; the maths (`from_data`, `boosted_trees`) are imported when a method runs. Nothing it imports
imports it back, not even for annotations: what a method's ``form`` reads is declared here (`MethodInputs`) and
`networks.network_context` gives it.

Methods that use the model and the cells together (issue 18): independent benchmarks put large foundation models
below the data's own correlation and tree ensembles on networks, so the model's read-outs are also offered fused
with a data network (`fused`), and the data networks on their own ('pearson', and 'denoised': correlation of the
model's denoised expression), so that every method is measured on the same genes, cells and candidate edges.

Rank fusion: each component's scores are turned into ranks over the candidate edges (regulator rows × all
columns, self-pairs excluded), scaled to (0, 1]; the network is the weighted mean of those ranks. Ranks, not
scores, because the components live on different scales (softmax weights, |r|, cosines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

if TYPE_CHECKING:
    import numpy as np


class MethodInputs(Protocol):
    """What a method's ``form`` may read of one network: its regulator rows, seed and fusion weights, and the
    cells' and the model's views of its genes."""

    @property
    def regulators(self) -> np.ndarray: ...

    @property
    def seed(self) -> int: ...

    @property
    def fusion_weights(self) -> dict[str, float]: ...

    def log_expression(self) -> np.ndarray: ...

    def correlation(self, kind: str) -> np.ndarray: ...

    def log_denoised(self) -> np.ndarray: ...

    def gene_embeddings(self) -> np.ndarray: ...


@dataclass(frozen=True)
class NetworkMethod:
    """One read-out method.

    accumulates: 'mean_qk' (running q/k sums, any number of genes), 'per_cell' (per-cell maps, one context),
    'knockout' (its own forward passes) or None (no attention read: the network comes from ``form`` alone).
    correlation: 'pearson' or 'spearman' when the network is that correlation of the cells (it can stream a file
    larger than memory, and specificity 'share' can split it). own_settings: options only this method reads
    (recorded as None under the others). form: (attention network or None, inputs) -> network [G, G], rows =
    regulators (None: the method forms its network itself, a knock-out)."""

    name: str
    help: str
    accumulates: str | None
    one_context: bool = False  # every network gene in one context (so per-cell maps cover every pair)
    fixed_contexts: bool = False  # contexts hold the network genes, not random draws of expressed genes
    bootstrap: bool = False
    correlation: str | None = None
    own_settings: tuple[str, ...] = ()
    form: Callable[[np.ndarray | None, MethodInputs], np.ndarray] | None = None

    @property
    def reads_attention(self) -> bool:
        return self.accumulates in ("mean_qk", "per_cell")

    @property
    def attention_only(self) -> bool:
        """The network is the attention read-out itself (nothing fused): a uniform level and a contrast apply."""
        return self.reads_attention and self.form is _attention


def _attention(net: np.ndarray | None, ctx: MethodInputs) -> np.ndarray:
    return net


def _pearson(net: np.ndarray | None, ctx: MethodInputs) -> np.ndarray:
    return ctx.correlation("pearson")


def _spearman(net: np.ndarray | None, ctx: MethodInputs) -> np.ndarray:
    return ctx.correlation("spearman")


def _denoised(net: np.ndarray | None, ctx: MethodInputs) -> np.ndarray:
    from grnformer.networks.from_data import abs_correlation

    return abs_correlation(ctx.log_denoised())


def _embedding(net: np.ndarray | None, ctx: MethodInputs) -> np.ndarray:
    from grnformer.networks.from_data import abs_cosine

    return abs_cosine(ctx.gene_embeddings())


def _boosted(net: np.ndarray | None, ctx: MethodInputs) -> np.ndarray:
    import numpy as np

    from grnformer.networks.boosted_trees import boosted_importance

    x, rows = ctx.log_expression(), np.flatnonzero(ctx.regulators)
    out = np.zeros((x.shape[1], x.shape[1]), dtype=np.float32)
    out[rows] = boosted_importance(x, rows, seed=ctx.seed)
    return out


_COMPONENTS = {"attention": _attention, "pearson": _pearson, "spearman": _spearman, "embedding": _embedding,
               "denoised": _denoised, "boosted": _boosted}


def _fused(net: np.ndarray | None, ctx: MethodInputs) -> np.ndarray:
    from grnformer.networks.from_data import fuse_ranks

    weights = ctx.fusion_weights
    parts = {name: _COMPONENTS[name](net, ctx) for name, w in weights.items() if w > 0}
    return fuse_ranks(parts, weights, ctx.regulators)


METHODS: dict[str, NetworkMethod] = {m.name: m for m in (
    NetworkMethod("mean_qk", "softmax of the cells' mean q·k (any number of genes)", "mean_qk", bootstrap=True,
                  form=_attention),
    NetworkMethod("per_cell", "mean of per-cell attention maps (genes in one context: see context_length)",
                  "per_cell", one_context=True, fixed_contexts=True, form=_attention),
    NetworkMethod("perturb", "in-silico knock-out of each regulator, signed effects on every gene's predicted "
                  "mean (more genes than one context: each context holds the knocked-out regulators and a chunk "
                  "of the other genes)", "knockout", fixed_contexts=True, own_settings=("max_regulators",)),
    NetworkMethod("fused", "rank fusion of the model's attention (mean_qk) with the cells' correlation (and, if "
                  "weighted, the model's gene-embedding similarity or denoised correlation), by fusion_weights",
                  "mean_qk", own_settings=("fusion_weights",), form=_fused),
    NetworkMethod("pearson", "|Pearson r| of the cells' log-normalised expression (no model: the data's own "
                  "network, for comparison and fusion)", None, correlation="pearson", form=_pearson),
    NetworkMethod("spearman", "|Spearman rho| of the cells' expression (no model)", None, correlation="spearman",
                  form=_spearman),
    NetworkMethod("boosted", "GRNBoost2-class gradient-boosted trees per target on the regulators' expression, "
                  "early stopping, score = summed split gain (no model; every core)", None, form=_boosted),
    NetworkMethod("denoised", "|Pearson r| of the model's denoised expression of the cells (one denoising pass)",
                  None, form=_denoised),
    NetworkMethod("embedding", "|cosine| of the model's gene embeddings (what the model learned of the genes "
                  "from its training cells; the same for any cells)", None, form=_embedding),
)}


def method_help() -> str:
    """One line per method, for the option's help."""
    return "; ".join(f"{m.name}: {m.help}" for m in METHODS.values())


def get_method(name: str) -> NetworkMethod:
    """The registered method called ``name`` (InputError naming the known ones otherwise)."""
    from grnformer.errors import InputError

    if name not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}; got '{name}'.")
    return METHODS[name]
