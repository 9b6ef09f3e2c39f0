"""Self-contained model bundles: weights plus everything needed to rebuild and use the model.

A bundle is one `torch.save` file holding plain Python containers and tensors only (so it loads with
`weights_only=True`): the model configuration, the gene vocabulary, the label encoders, versions, a format
version and the state dict. A Lightning checkpoint written by `PretrainPlan` carries the same metadata under
the key `grnformer`, so either file can be loaded with `load_bundle`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

import grnformer
from grnformer.atomic import atomic_path
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.genes import ORGANISMS, GeneVocab
from grnformer.errors import InputError
from grnformer.interop.scprint_checkpoint import convert_scprint, is_scprint, safe_load
from grnformer.model import GRNFormer, ModelConfig
from grnformer.model.scprint import (
    ARCHITECTURE,
    ScPrintModel,
    ScPrintNetwork,
    ScPrintSpec,
)
from grnformer.model.scprint_v2 import ARCHITECTURE_V2, ScPrintV2Model

FORMAT = "grnformer-bundle"
FORMAT_VERSION = 1
SHIPPED_NAME = "shipped"  # checkpoint name that means grnformer/checkpoints/small.pt
META_KEY = "grnformer"  # where a Lightning checkpoint keeps the bundle metadata
SCPRINT_SOURCE = "scprint-checkpoint"  # meta["read_from"] of a scPRINT file converted in memory (not saved)
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Bundle:
    """A loaded model (eval mode) with its configuration, vocabulary, label encoders and metadata."""

    model: GRNFormer | ScPrintNetwork
    config: ModelConfig
    vocab: GeneVocab
    labels: LabelSet
    meta: dict[str, Any]


def bundle_metadata(config: ModelConfig, vocab: GeneVocab, label_set: LabelSet) -> dict[str, Any]:
    """Everything but the weights: what `load_bundle` needs to rebuild the model, plus versions."""
    if len(vocab) != config.vocab_size:
        raise InputError(f"vocabulary has {len(vocab)} genes but the model expects {config.vocab_size}.")
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(),
            "vocab": vocab.to_dict(), "labels": label_set.to_dict(),
            "versions": {"grnformer": grnformer.__version__, "torch": str(torch.__version__)}}


def save_bundle(model: GRNFormer | ScPrintNetwork, config: ModelConfig, vocab: GeneVocab, label_set: LabelSet,
                path: str | Path, dtype: torch.dtype | str | None = None,
                history: dict[str, Any] | None = None) -> Path:
    """Write a bundle atomically. `dtype` (float16 / bfloat16) casts floating weights to halve the file;
    ``history`` (e.g. {"adaptation": summary}) is kept in its metadata, so the file says how it was made."""
    dtype = _dtype(dtype) if dtype is not None else torch.float32
    meta = bundle_metadata(config, vocab, label_set)
    meta["dtype"] = str(dtype).removeprefix("torch.")
    if isinstance(model, ScPrintNetwork):
        meta["architecture"] = {"name": model.architecture, "spec": model.spec.to_dict()}
    if history:
        meta["history"] = history
    state = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as part:
        torch.save({**meta, "state_dict": state}, part)
    return path


def load_bundle(path: str | Path, map_location: str | torch.device = "cpu") -> Bundle:
    """Load a bundle or a Lightning checkpoint of `PretrainPlan`; the model comes back in eval mode, in fp32."""
    meta, state = read_checkpoint(path, map_location)
    config = ModelConfig.from_dict(meta["config"])
    vocab = GeneVocab.from_dict(meta["vocab"])
    labels = LabelSet.from_dict(meta["labels"])
    if len(vocab) != config.vocab_size:
        raise InputError(f"{path}: its vocabulary has {len(vocab)} genes but its model expects "
                         f"{config.vocab_size}; the file is inconsistent.")
    if dict(labels.sizes) != config.label_sizes:
        raise InputError(f"{path}: label classes {dict(labels.sizes)} do not match the model's "
                         f"{config.label_sizes}.")
    model = _build(meta, config, vocab, state, path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise InputError(f"{path} does not match this version of grnformer ({grnformer.__version__}): "
                         f"missing weights {_few(missing)}, unexpected weights {_few(extra)}.")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items()
             if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        raise InputError(f"{path}: weight shapes differ from the configuration: {_few(wrong)}.")
    model.load_state_dict(state)
    model.to(map_location).eval()
    return Bundle(model, config, vocab, labels, meta)


def _build(meta: dict[str, Any], config: ModelConfig, vocab: GeneVocab, state: dict[str, torch.Tensor],
           path: str | Path) -> GRNFormer | ScPrintNetwork:
    """The network the metadata names: grnformer's own, or scPRINT's layers for a converted scPRINT model."""
    arch = meta.get("architecture")
    if arch is None:
        emb = state.get("gene_encoder.frozen.weight")
        return GRNFormer(config, torch.as_tensor(vocab.positions), None if emb is None else emb.float())
    if isinstance(arch, dict) and arch.get("name") in (ARCHITECTURE, ARCHITECTURE_V2):
        network = ScPrintV2Model if arch["name"] == ARCHITECTURE_V2 else ScPrintModel
        return network(config, ScPrintSpec.from_dict(arch["spec"]))
    raise InputError(f"{path} names a network this grnformer ({grnformer.__version__}) does not know: {arch}.")


def describe(path: str | Path) -> str:
    """Human-readable summary for `grnformer info`: parameters, context, vocabulary, labels, versions."""
    return describe_bundle(load_bundle(path), path)


def describe_bundle(b: Bundle, path: str | Path) -> str:
    """`describe` of a loaded bundle (the model object's info()); ``path`` names where it came from."""
    trainable = b.model.get_num_params(trainable_only=True)
    total = b.model.get_num_params()
    c = b.config
    organisms = Counter(b.vocab.table["organism"])
    orgs = ", ".join(f"{ORGANISMS.get(o, o)} {n:,}" for o, n in organisms.items())
    lines = [
        f"checkpoint      {path}",
        f"format          {b.meta['format']} v{b.meta['format_version']}, weights stored as "
        f"{b.meta.get('dtype', 'float32')}",
        "versions        " + ", ".join(f"{k} {v}" for k, v in b.meta["versions"].items()),
        f"model           {_scprint_layers(b.model)}d_model "
        f"{c.d_model}, {c.n_layers} layers, {c.n_heads} heads, mlp x{c.mlp_ratio}, expression "
        f"{b.model.spec.normalization if isinstance(b.model, ScPrintNetwork) else c.expr_encoding}",
        f"parameters      {total:,} ({trainable:,} trainable, {total - trainable:,} frozen)",
        f"context length  {c.context_length} genes",
        f"vocabulary      {len(b.vocab):,} genes ({orgs}), {c.n_positions:,} position tokens",
        "gene embeddings " + ("the checkpoint's gene table (frozen)" if isinstance(b.model, ScPrintNetwork)
                               else "learned" if c.gene_embedding_dim is None
                               else f"frozen external, width {c.gene_embedding_dim}"),
        "label classes   " + (", ".join(f"{k} {v}" for k, v in c.label_sizes.items()) or "none"),
    ]
    if "training" in b.meta:
        t = b.meta["training"]
        lines.append(f"training        step {t.get('global_step')}, epoch {t.get('epoch')}")
    if "scprint_import" in b.meta.get("history", {}):
        card = b.meta["history"]["scprint_import"]
        lines.append(f"converted from  scPRINT {card['layout']} checkpoint {card['source']} (sha256 "
                     f"{card['source_sha256'][:12]}…), input normalisation '{card['input_normalisation']}', "
                     f"{card['genes']['not_in_grnformer_vocabulary']:,} of its genes outside the vocabulary")
    if "adaptation" in b.meta.get("history", {}):
        a = b.meta["history"]["adaptation"]
        lines.append("adapted         " + ", ".join(f"{k} {v}" for k, v in a.items() if not isinstance(v, dict)))
    return "\n".join(lines)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint path; the name ``shipped`` means the small model inside the package."""
    if str(path) == SHIPPED_NAME:
        shipped = Path(str(resources.files("grnformer") / "checkpoints" / "small.pt"))
        if not shipped.is_file():
            raise InputError(f"this installation has no shipped checkpoint ({shipped}); pass a checkpoint path "
                             f"(train one with `grnformer pretrain`, see docs/TRAINING.md).")
        return shipped
    return Path(path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, model state dict) of a bundle, a Lightning checkpoint, or a scPRINT checkpoint (converted in
    memory, `interop.scprint_checkpoint`), validated but not built; the file is read as data only (`safe_load`).

    ``path`` may be ``shipped`` (see `resolve_checkpoint`)."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    obj = safe_load(path, map_location)
    if not isinstance(obj, dict):
        raise InputError(f"{path} is not a grnformer checkpoint (it holds a {type(obj).__name__}).")
    if obj.get("format") == FORMAT:
        meta, state = {k: v for k, v in obj.items() if k != "state_dict"}, obj.get("state_dict")
    elif isinstance(obj.get(META_KEY), dict) and "state_dict" in obj:
        meta = dict(obj[META_KEY])
        state = {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
    elif is_scprint(obj):
        c = convert_scprint(obj, path)
        meta = {**bundle_metadata(c.config, c.vocab, c.labels), "architecture": {"name": c.card["architecture"],
                "spec": c.spec.to_dict()}, "history": {"scprint_import": c.card}, "read_from": SCPRINT_SOURCE}
        state = c.state
    else:
        raise InputError(f"{path} is not a grnformer checkpoint: neither a bundle, a Lightning checkpoint "
                         f"written by grnformer's pre-training, nor a scPRINT checkpoint.")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"{path} has checkpoint format version {version}; this grnformer "
                         f"({grnformer.__version__}) reads versions up to {FORMAT_VERSION}. Upgrade grnformer.")
    for key in ("config", "vocab", "labels", "versions"):
        if key not in meta:
            raise InputError(f"{path} is an incomplete grnformer checkpoint: '{key}' is missing.")
    if not isinstance(state, dict) or not state:
        raise InputError(f"{path} holds no model weights.")
    return meta, state


# ------------------------------------------------------------------------------------------------ helpers

def _scprint_layers(model: GRNFormer | ScPrintNetwork) -> str:
    if not isinstance(model, ScPrintNetwork):
        return ""
    spec = model.spec
    if spec.layout == "v1":
        return "scPRINT v1 layers, "
    kv = f"{spec.n_heads_kv} key/value heads, " if spec.n_heads_kv else ""
    return (f"scPRINT v2 layers ({kv}{spec.cell_layers} cell-specific layers, depth "
            f"{'in the decoder' if spec.depth_in_decoder else 'token'}), ")


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    name = str(dtype).removeprefix("torch.")
    if name not in _DTYPES:
        raise InputError(f"bundle weights can be stored as {', '.join(_DTYPES)}; got '{dtype}'.")
    return _DTYPES[name]


def _few(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
