"""The model object: one loaded model and the zero-shot tasks as its methods, for use from Python.

    import grnformer as gf
    model = gf.load("shipped")
    model.embed(adata)                       # obsm['X_grnformer'], as `grnformer embed`
    nets = model.grn(adata, groupby="grnformer_cell_type", n_genes=500)

A thin layer above `tasks`: each method calls the function the CLI calls, with the same option names and
defaults. Each task method takes its options dataclass (`tasks.task_options`, `networks.grn_options`) as ``options``
and/or its fields as keywords (keywords win; `inference.option_fields.options_from`), so a field added to a dataclass
is a keyword here without editing this module; the docstrings list the fields' own help. The tasks are imported
when a method first runs, so ``import grnformer`` stays fast.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from grnformer.errors import InputError
from grnformer.inference.option_fields import options_from
from grnformer.networks.grn_options import GRNOptions
from grnformer.tasks.task_options import (
    AdaptOptions,
    ClassifyOptions,
    DenoiseOptions,
    EmbedOptions,
)

if TYPE_CHECKING:
    import numpy as np
    from anndata import AnnData

    from grnformer.bundle.checkpoint import Bundle

# ----------------------------------------------------------------------------------------- documentation

def _field_docs(cls: type) -> str:
    """One line per option field: name, default and its help (the CLI's flag help comes from the same text)."""
    lines = []
    for f in dataclasses.fields(cls):
        if f.init and "help" in f.metadata:
            lines.append(f"            {f.name} = {f.default!r}: {f.metadata['help']}")
    return "\n".join(lines)


def _documented(text: str):
    """Decorator: the method's docstring with ``{fields:Class}`` filled in."""
    def fill(method):
        doc = text
        for cls in (EmbedOptions, ClassifyOptions, GRNOptions, DenoiseOptions, AdaptOptions):
            doc = doc.replace(f"{{fields:{cls.__name__}}}", _field_docs(cls))
        method.__doc__ = doc
        return method
    return fill


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

        options: an EmbedOptions; its fields may also be given as keywords (keywords win):
{fields:EmbedOptions}""")
    def embed(self, adata: AnnData, options: EmbedOptions | None = None, *, progress: bool | None = None,
              **keywords: Any) -> np.ndarray:
        from grnformer.tasks.embed import embed

        return embed(self._bundle, adata, options_from(EmbedOptions, options, keywords), device=self.device,
                     progress=self._progress(progress))

    @_documented("""Predicted labels into adata.obs['grnformer_<class>'] (+ '_prob'), as `grnformer classify`;
        returns the metrics against the labels obs already holds (empty when none).

        options: a ClassifyOptions; its fields may also be given as keywords (keywords win):
{fields:ClassifyOptions}""")
    def classify(self, adata: AnnData, options: ClassifyOptions | None = None, *, progress: bool | None = None,
                 **keywords: Any) -> dict[str, dict]:
        from grnformer.tasks.classify import classify

        return classify(self._bundle, adata, options_from(ClassifyOptions, options, keywords), device=self.device,
                        progress=self._progress(progress))

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
        from grnformer.bundle.checkpoint import save_bundle
        from grnformer.inference.outputs import check_writable

        check_writable(path)
        b = self._bundle
        return save_bundle(b.model, b.config, b.vocab, b.labels, path, dtype=b.meta.get("dtype", "float32"),
                           history=b.meta.get("history"))

    def info(self) -> str:
        """What `grnformer info` prints for this model."""
        from grnformer.bundle.checkpoint import describe_bundle

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
    """The model of a checkpoint (a bundle, a Lightning checkpoint, or a scPRINT checkpoint, converted in memory;
    'shipped' for the small model inside the package) on ``device`` (default: CUDA when available).
    ``progress``: the tasks' progress bars."""
    from grnformer.bundle.checkpoint import resolve_checkpoint
    from grnformer.inference.device import load_task_bundle

    bundle, dev = load_task_bundle(checkpoint, device)
    source = "shipped" if str(checkpoint) == "shipped" else str(resolve_checkpoint(checkpoint))
    return Model(bundle, source, dev, progress)


def import_scprint(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Convert a scPRINT checkpoint into a grnformer bundle ``out`` and its card ``out`` with suffix .json (what
    `grnformer import-scprint` does); both are written together or not at all. Returns the card."""
    import json

    from grnformer.bundle.checkpoint import SCPRINT_SOURCE, load_bundle, save_bundle
    from grnformer.inference.outputs import check_writable, write_many

    out = Path(out)
    card_path = out.with_suffix(".json")
    if out.suffix == ".json":
        raise InputError(f"output '{out}' would collide with its card; give the bundle another suffix (e.g. .pt).")
    for path in (out, card_path):
        check_writable(path, overwrite)
    b = load_bundle(checkpoint)
    if b.meta.get("read_from") != SCPRINT_SOURCE:
        raise InputError(f"{checkpoint} is a grnformer checkpoint, not a scPRINT one: nothing to import.")
    card = {**b.meta["history"]["scprint_import"], "bundle": out.name}
    write_many({out: lambda part: save_bundle(b.model, b.config, b.vocab, b.labels, part,
                                              history=b.meta["history"]),
                card_path: lambda part: part.write_text(json.dumps(card, indent=1) + "\n")})
    return card
