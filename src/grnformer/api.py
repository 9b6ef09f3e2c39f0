"""The model object: one loaded model and the zero-shot tasks as its methods, for use from Python.

    import grnformer as gf
    model = gf.load("shipped")
    model.embed(adata)                       # obsm['X_grnformer'], as `grnformer embed`
    nets = model.grn(adata, groupby="grnformer_cell_type", n_genes=500)

A thin layer above `tasks`: each method calls the function the CLI calls, with the same option names and
defaults. Methods that have an options dataclass (`tasks.options`: GRNOptions, DenoiseOptions, AdaptOptions) take
one as ``options`` and/or its fields as keywords (keywords win), so a field added to the dataclass is a keyword
here without editing this module; their docstrings list the fields' own help. embed and classify forward their
keywords to `tasks.embed.embed` / `tasks.classify.classify`, whose parameters their docstrings list. The tasks
are imported when a method first runs, so ``import grnformer`` stays fast.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from grnformer.errors import InputError
from grnformer.networks.options import GRNOptions
from grnformer.tasks.options import AdaptOptions, DenoiseOptions

if TYPE_CHECKING:
    import numpy as np
    from anndata import AnnData

    from grnformer.train.checkpoint import Bundle

# Parameters of a task function that the model object supplies itself.
_OWN = ("bundle", "adata", "device", "progress")


# ----------------------------------------------------------------------------------------- documentation

def _field_docs(cls: type) -> str:
    """One line per option field: name, default and its help (the CLI's flag help comes from the same text)."""
    lines = []
    for f in dataclasses.fields(cls):
        if f.init and "help" in f.metadata:
            lines.append(f"            {f.name} = {f.default!r}: {f.metadata['help']}")
    return "\n".join(lines)


def _signature_docs(module: str, function: str) -> str:
    """The keyword parameters of a task function and their defaults, read from its source without importing it
    (importing a task loads torch, and the docstring is built when this module is imported)."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    args = fn.args.args + fn.args.kwonlyargs
    defaults = [None] * (len(fn.args.args) - len(fn.args.defaults)) + list(fn.args.defaults) + \
        list(fn.args.kw_defaults)
    return "\n".join(f"            {a.arg} = {ast.unparse(d)}" for a, d in zip(args, defaults)
                     if d is not None and a.arg not in _OWN)


def _documented(text: str):
    """Decorator: the method's docstring with ``{fields:Class}`` / ``{signature:module:function}`` filled in."""
    def fill(method):
        doc = text
        for cls in (GRNOptions, DenoiseOptions, AdaptOptions):
            doc = doc.replace(f"{{fields:{cls.__name__}}}", _field_docs(cls))
        for module, function in (("grnformer.tasks.embed", "embed"), ("grnformer.tasks.classify", "classify")):
            doc = doc.replace(f"{{signature:{function}}}", _signature_docs(module, function))
        method.__doc__ = doc
        return method
    return fill


# ------------------------------------------------------------------------------------------------ options

def options_from(cls: type, options: Any = None, keywords: Mapping[str, Any] | None = None):
    """``options`` (an instance of ``cls`` or None for the defaults) with ``keywords`` replacing its fields;
    an unknown keyword or an options object of another class is an InputError."""
    keywords = dict(keywords or {})
    if options is not None and not isinstance(options, cls):
        raise InputError(f"options must be a {cls.__name__}; got {type(options).__name__}.")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(keywords) - set(names))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)}; {cls.__name__} has {', '.join(names)}.")
    return dataclasses.replace(options if options is not None else cls(), **keywords)


def _task_keywords(function, keywords: Mapping[str, Any]) -> dict[str, Any]:
    """``keywords`` checked against a task function's parameters (the model supplies bundle, data, device)."""
    params = [p for p in inspect.signature(function).parameters if p not in _OWN]
    unknown = sorted(set(keywords) - set(params))
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(unknown)} for {function.__name__}; it takes "
                         f"{', '.join(params)}.")
    return dict(keywords)


# ------------------------------------------------------------------------------------------------- model

class Model:
    """A loaded grnformer model (`load`). Each method runs one zero-shot task on an AnnData of raw counts,
    writing its results into that AnnData as the CLI writes them into the output file, and returns them."""

    def __init__(self, bundle: Bundle, source: str = "(in memory)", device: Any = None, progress: bool = True):
        self._bundle = bundle
        self.source = str(source)
        self.device = device
        self.progress = progress
        self.adaptation: dict | None = None  # the run's summary, on a model made by adapt()

    @property
    def bundle(self) -> Bundle:
        """The underlying bundle (model, config, vocabulary, label encoders, metadata)."""
        return self._bundle

    def __repr__(self) -> str:
        c = self._bundle.config
        return (f"grnformer.Model({self.source!r}: d_model {c.d_model}, {c.n_layers} layers, {c.n_heads} heads, "
                f"context {c.context_length})")

    def _progress(self, progress: bool | None) -> bool:
        return self.progress if progress is None else progress

    @_documented("""Cell embeddings into adata.obsm['X_grnformer'] (and obsm['X_umap'] with umap=True), as
        `grnformer embed`; returns the embeddings of the cells prepare() kept.

        Keywords (those of `grnformer.tasks.embed.embed`, same defaults):
{signature:embed}""")
    def embed(self, adata: AnnData, *, progress: bool | None = None, **options: Any) -> np.ndarray:
        from grnformer.tasks.embed import embed

        return embed(self._bundle, adata, device=self.device, progress=self._progress(progress),
                     **_task_keywords(embed, options))

    @_documented("""Predicted labels into adata.obs['grnformer_<class>'] (+ '_prob'), as `grnformer classify`;
        returns the metrics against the labels obs already holds (empty when none).

        Keywords (those of `grnformer.tasks.classify.classify`, same defaults):
{signature:classify}""")
    def classify(self, adata: AnnData, *, progress: bool | None = None, **options: Any) -> dict[str, dict]:
        from grnformer.tasks.classify import classify

        return classify(self._bundle, adata, device=self.device, progress=self._progress(progress),
                        **_task_keywords(classify, options))

    @_documented("""Denoised counts into adata.layers['grnformer_denoised'], as `grnformer denoise`; returns them.

        options: a DenoiseOptions; its fields may also be given as keywords (keywords win):
{fields:DenoiseOptions}""")
    def denoise(self, adata: AnnData, options: DenoiseOptions | None = None, *, progress: bool | None = None,
                **keywords: Any):
        from grnformer.tasks.denoise import denoise

        return denoise(self._bundle, adata, options_from(DenoiseOptions, options, keywords), device=self.device,
                       progress=self._progress(progress))

    @_documented("""Gene network(s) of adata's cells, as `grnformer grn`: one network AnnData (varp['GRN'], rows
        = regulators, var['is_tf']), or {group: network} with groupby.

        options: a GRNOptions; its fields may also be given as keywords (keywords win):
{fields:GRNOptions}""")
    def grn(self, adata: AnnData, options: GRNOptions | None = None, *, progress: bool | None = None,
            **keywords: Any):
        from grnformer.networks.grn import grn

        return grn(self._bundle, adata, options_from(GRNOptions, options, keywords), device=self.device,
                   progress=self._progress(progress))

    @_documented("""In-silico knock-outs: `grn` with method='perturb' (`grnformer grn --method perturb`). The
        network's varp['GRN_effect'] holds the signed effects (positive: the regulator's loss lowers the target),
        varp['GRN'] their size. Options as for `grn`; the network genes must fit one context.""")
    def perturb(self, adata: AnnData, options: GRNOptions | None = None, *, progress: bool | None = None,
                **keywords: Any):
        if keywords.get("method", "perturb") != "perturb":
            raise InputError(f"perturb runs method 'perturb'; got method '{keywords['method']}' (use grn).")
        opts = options_from(GRNOptions, options, {**keywords, "method": "perturb"})
        return self.grn(adata, opts, progress=progress)

    @_documented("""A new Model fine-tuned on adata's cells, self-supervised (`grnformer adapt`); this one is
        untouched. The run's summary (held-out losses before and after) is the new model's `adaptation`.

        options: an AdaptOptions; its fields may also be given as keywords (keywords win):
{fields:AdaptOptions}""")
    def adapt(self, adata: AnnData, options: AdaptOptions | None = None, **keywords: Any) -> Model:
        from grnformer.tasks.adapt import adapt_bundle

        bundle, summary = adapt_bundle(self._bundle, adata, options_from(AdaptOptions, options, keywords),
                                       device=self.device)
        model = Model(bundle, f"{self.source}, adapted", self.device, self.progress)
        model.adaptation = summary
        return model

    def save(self, path: str | Path) -> Path:
        """Write the model as a bundle, atomically (usable as CKPT by every command and by `load`); weights keep
        the dtype they were loaded with (the shipped model: float16)."""
        from grnformer.inference.outputs import check_writable
        from grnformer.train.checkpoint import save_bundle

        check_writable(path)
        b = self._bundle
        return save_bundle(b.model, b.config, b.vocab, b.labels, path, dtype=b.meta.get("dtype", "float32"))

    def info(self) -> str:
        """What `grnformer info` prints for this model."""
        from grnformer.train.checkpoint import describe_bundle

        return describe_bundle(self._bundle, self.source)

    def export(self, network: AnnData | str | Path, path: str | Path, format: str = "decoupler",
               top_k: int | None = None, regulators: str = "auto") -> Path:
        """A network's edge table for the next tool (`networks.exports`, `grnformer export`): format 'decoupler'
        (source, target, weight; signed for perturb networks) or 'scenic' (TF, target, importance), each
        regulator's top_k targets (default 50), written atomically (.csv: commas, else tabs)."""
        from grnformer.networks.exports import DEFAULT_TOP_K, read_network, write_edges

        net = read_network(network) if isinstance(network, (str, Path)) else network
        return write_edges(net, path, format, DEFAULT_TOP_K if top_k is None else top_k, regulators)

    def explorer(self, networks: AnnData | Mapping[str, AnnData], path: str | Path, top_k: int | None = None,
                 title: str = "grnformer network explorer") -> Path:
        """One self-contained HTML page to explore the network(s) in a browser (`networks.explorer`): a network or
        {name: network} (e.g. what grn returns with groupby); each regulator's top_k targets (default 10)."""
        from anndata import AnnData as _AnnData

        from grnformer.networks.explorer import (
            DEFAULT_TOP_K,
            network_label,
            readable,
            write_explorer,
        )

        if isinstance(networks, _AnnData):
            networks = {network_label(networks, "network"): networks}
        else:  # {group: network}, as grn returns them: Cell Ontology terms named by their labels
            networks = {readable(str(name)): net for name, net in networks.items()}
        return write_explorer(networks, path, title, DEFAULT_TOP_K if top_k is None else top_k)


def load(checkpoint: str | Path = "shipped", device: Any = None, progress: bool = True) -> Model:
    """The model of a checkpoint (a bundle or a Lightning checkpoint; 'shipped' for the small model inside the
    package) on ``device`` (default: CUDA when available). ``progress``: the tasks' progress bars."""
    from grnformer.inference.device import load_task_bundle
    from grnformer.train.checkpoint import resolve_checkpoint

    bundle, dev = load_task_bundle(checkpoint, device)
    source = "shipped" if str(checkpoint) == "shipped" else str(resolve_checkpoint(checkpoint))
    return Model(bundle, source, dev, progress)
