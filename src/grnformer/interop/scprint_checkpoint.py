"""Checkpoint files read without running their code, and scPRINT's Lightning checkpoints turned into grnformer's.

A checkpoint is a pickle, and a pickle can run any code. Every checkpoint grnformer opens goes through
`safe_load`: torch's ``weights_only`` loader with an explicit allow-list (`ALLOWED`: plain containers and tensors,
which torch allows by itself, plus Lightning's AttributeDict, numpy scalars / dtypes and paths, all rebuilt as
plain data). A file naming any other type is refused before loading, with the types named.

`convert_scprint` maps a scPRINT checkpoint (``state_dict`` + ``hyper_parameters``) onto grnformer's weights and
metadata: the gene table restricted to the genes grnformer's vocabulary holds (the rest counted and listed, never
dropped in silence), label classes with their ontology hierarchy, and a card saying what was and was not carried
over. The layout decision reads ``hyper_parameters`` and the weight names: v1 (scPRINT 1.x, and 2.x's class with
its v1 settings) becomes `model.scprint.ScPrintModel`; v2 (2.x "simpler_flash" settings, base_v2.yml: grouped-query
attention, depth given to the expression decoder, cell-specific cross-attention layers) becomes
`model.scprint_v2.ScPrintV2Model`. Features neither reproduces (a metacell token, quantised class embeddings, an
attention bias, other encodings) and other models' checkpoints are refused with one message each.
"""

from __future__ import annotations

import pathlib
import pickle
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from grnformer.data.collate import CONTEXT_LENGTH
from grnformer.data.corpus.labels import LabelEncoder, LabelSet
from grnformer.data.genes import ORGANISMS, GeneVocab
from grnformer.data.resources import file_sha256
from grnformer.errors import InputError
from grnformer.model.config import ModelConfig
from grnformer.model.scprint import ARCHITECTURE, ScPrintSpec
from grnformer.model.scprint_v2 import ARCHITECTURE_V2

# Lightning's AttributeDict (hyper-parameters of older checkpoints; a dict with attribute access) is rebuilt as a
# plain ordered dict: torch's safe unpickler fills only dict types.
ALLOWED: list[tuple[Any, str]] = [
    (OrderedDict, "lightning.fabric.utilities.data.AttributeDict"),
    (OrderedDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (OrderedDict, "lightning.pytorch.utilities.parsing.AttributeDict"),
    (pathlib.PosixPath, "pathlib.PosixPath"),
    (pathlib.PurePosixPath, "pathlib.PurePosixPath"),
    (np.dtype, "numpy.dtype"),
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
    (np._core.multiarray.scalar, "numpy._core.multiarray.scalar"),
] + [(getattr(np.dtypes, n), f"numpy.dtypes.{n}") for n in
     ("BoolDType", "Int32DType", "Int64DType", "Float32DType", "Float64DType", "StrDType")]
_ALLOWED_NAMES = {name for _, name in ALLOWED}

SUFFIX = "_ontology_term_id"  # scPRINT names label classes by their obs column
# Weights a scPRINT checkpoint may hold that grnformer's tasks do not use (training-only heads).
NOT_CARRIED = {"grad_reverse_discriminator_loss.": "the adversarial batch discriminator (training only)",
               "mvc_decoder.": "the MVC expression decoder from the cell embedding (training only)"}
# Features of scPRINT 2.x that no grnformer network reproduces, by the weights that show them.
REFUSED_WEIGHTS = {"metacell_encoder.": "a metacell token", "bottleneck_mlps.": "quantised class embeddings"}
UNUSED_CROSS = "the gene transformer's cross-attention blocks (built by scPRINT v2, never run)"


def _damaged(path: Path) -> InputError:
    return InputError(f"{path} is not a grnformer checkpoint: it is damaged (e.g. truncated) or another kind of "
                      f"file. Pass a bundle, a checkpoint written by grnformer, a scPRINT checkpoint, or 'shipped'.")


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The object a checkpoint file holds, loaded as data only (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (ValueError, RuntimeError, OSError):  # no zip archive (legacy format, damaged, not torch's): load decides
        unsafe = []
    refused = sorted(set(unsafe) - _ALLOWED_NAMES)
    if refused:
        raise _outside_allow_list(path, refused)
    try:
        with torch.serialization.safe_globals(ALLOWED):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:  # damaged, or a type the
        # scan above could not see (legacy format)
        named = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        raise (_outside_allow_list(path, sorted(set(named))) if named else _damaged(path)) from exc


def _outside_allow_list(path: Path, types: list[str]) -> InputError:
    return InputError(f"{path} is not a grnformer checkpoint a safe load can read: it holds Python objects of "
                      f"types outside grnformer's allow-list ({', '.join(types)}). grnformer loads weights as "
                      f"data only and never runs code from a file. If you trust the file and those objects sit "
                      f"outside the model (a data module's settings, a callback), load it on a machine you trust "
                      f"and keep only what the model needs: "
                      f"torch.save({{k: ckpt[k] for k in ('state_dict', 'hyper_parameters')}}, 'clean.ckpt').")


def is_scprint(obj: Any) -> bool:
    """Whether a loaded checkpoint is a scPRINT Lightning checkpoint (its hyper-parameters list the genes)."""
    return (isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict)
            and isinstance(obj.get("hyper_parameters"), dict) and "genes" in obj["hyper_parameters"]
            and any(k.startswith(("gene_encoder.", "expr_decoder.")) for k in obj["state_dict"]))


# ------------------------------------------------------------------------------------------------- layout

def layout(hp: dict[str, Any], state: dict[str, torch.Tensor]) -> str:
    """'v1' or 'v2' (see the module docstring) when every part of the checkpoint is one a grnformer network
    reproduces; otherwise an InputError naming each feature it does not."""
    found = [what for prefix, what in REFUSED_WEIGHTS.items() if any(k.startswith(prefix) for k in state)]
    if hp.get("use_metacell_token"):
        found.append("a metacell token")
    if hp.get("compress_class_dim"):
        found.append("quantised class embeddings")
    if found:
        raise InputError(f"this scPRINT checkpoint uses {', '.join(sorted(set(found)))}, which grnformer does not "
                         f"reproduce (it converts scPRINT's v1 layout and the v2 layout of base_v2.yml: grouped-query "
                         f"attention, depth in the decoder, cell-specific layers). Nothing was written.")
    other = {"attn_bias": "none", "expr_emb_style": "continuous", "zinb": True}
    differ = [f"{k}={hp[k]!r}" for k, v in other.items() if k in hp and hp[k] != v]
    if hp.get("transformer", "flash") not in ("flash", "normal"):
        differ.append(f"transformer={hp['transformer']!r}")
    if hp.get("normalization", "sum") not in ("sum", "log"):
        differ.append(f"normalization={hp['normalization']!r}")
    if differ:
        raise InputError(f"this scPRINT checkpoint has settings grnformer does not reproduce: {', '.join(differ)}. "
                         f"Nothing was written.")
    v2 = (hp.get("cell_specific_blocks") or hp.get("num_heads_kv") not in (None, hp.get("nhead"))
          or hp.get("depth_atinput", True) is False or any(k.startswith("cell_transformer.") for k in state))
    return "v2" if v2 else "v1"


# Checkpoint weight name -> ScPrintModel weight name (regex, replacement); the class tables are handled apart.
_RENAMES = [
    (r"gene_encoder\.embeddings?\.weight", "gene_encoder.weight"),
    (r"pos_encoder\.pe", "gene_position_vectors"),
    (r"(expr|depth)_encoder\.encoder\.(\d+)\.(weight|bias)", r"\1_encoder.\2.\3"),
    (r"class_encoder\.embedding\.weight", "special.weight"),
    (r"transformer\.blocks\.(\d+)\.mixer\.Wqkv\.(weight|bias)", r"blocks.\1.attn.qkv.\2"),
    (r"transformer\.blocks\.(\d+)\.mixer\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"transformer\.blocks\.(\d+)\.norm1\.(weight|bias)", r"blocks.\1.ln_1.\2"),
    (r"transformer\.blocks\.(\d+)\.norm2\.(weight|bias)", r"blocks.\1.ln_2.\2"),
    (r"transformer\.blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"blocks.\1.mlp.0.0.\2"),
    (r"transformer\.blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"blocks.\1.mlp.0.2.\2"),
    (r"transformer\.norm\.(weight|bias)", r"ln_f.\1"),
    (r"expr_decoder\.fc\.(\d+)\.(weight|bias)", r"expr_decoder.\1.\2"),
    (r"expr_decoder\.pred_var_zero\.(weight|bias)", r"zinb_head.\1"),
]


# Parts of a v2 block (simpler-flash names -> `model.scprint_v2.GroupedBlock` names), gene and cell layers alike.
_V2_BLOCK_PARTS = {"mixer.Wqkv": "attn.qkv", "mixer.Wq": "attn.q", "mixer.Wkv": "attn.kv",
                   "mixer.out_proj": "attn.proj", "norm1": "ln_1", "norm2": "ln_2", "mlp.fc1": "mlp.0",
                   "mlp.fc2": "mlp.2"}
_V2_BLOCK = re.compile(r"(transformer|cell_transformer)\.blocks\.(\d+)\.(" + "|".join(
    re.escape(k) for k in _V2_BLOCK_PARTS) + r")\.(weight|bias)")


def _rename_v2(key: str, gene_cross: bool) -> str | None:
    """v2 names; None for a weight outside the layout. ``gene_cross``: the gene transformer interleaves unused
    cross-attention blocks (even indices) with its self-attention blocks (odd), as scPRINT builds it with
    cell-specific layers."""
    m = _V2_BLOCK.fullmatch(key)
    if m:
        where, index, part, kind = m.group(1), int(m.group(2)), _V2_BLOCK_PARTS[m.group(3)], m.group(4)
        if where == "cell_transformer":
            return f"cell_blocks.{index}.{part}.{kind}"
        return f"blocks.{index // 2 if gene_cross else index}.{part}.{kind}"
    if key.startswith("cell_transformer.norm."):
        return "cell_ln_f." + key.removeprefix("cell_transformer.norm.")
    return None


def _rename(key: str, n_hidden: int, v2: bool = False, gene_cross: bool = False) -> str | None:
    if v2 and (key.startswith("cell_transformer.") or re.match(r"transformer\.blocks\.", key)):
        return _rename_v2(key, gene_cross)
    for pattern, replacement in _RENAMES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    m = re.fullmatch(r"cls_decoders\.(.+)\.(decoder\.(\d+)|out_layer)\.(weight|bias)", key)
    if m:
        index = m.group(3) if m.group(3) is not None else str(4 * n_hidden)
        return f"label_heads.{_class_name(m.group(1))}.{index}.{m.group(4)}"
    return None


def _class_name(scprint_class: str) -> str:
    return scprint_class.removesuffix(SUFFIX)


# -------------------------------------------------------------------------------------------- conversion

@dataclass
class Converted:
    """A scPRINT checkpoint in grnformer's terms: what `bundle.checkpoint` needs to build and save the model."""

    config: ModelConfig
    spec: ScPrintSpec
    vocab: GeneVocab
    labels: LabelSet
    state: dict[str, torch.Tensor]  # `ScPrintModel` weight names
    card: dict[str, Any]  # where it came from, shapes, genes, labels, what was not carried over


def convert_scprint(obj: dict[str, Any], path: str | Path) -> Converted:
    """A loaded scPRINT checkpoint (see `is_scprint`) as `ScPrintModel` weights, vocabulary, labels and card."""
    hp, state = dict(obj["hyper_parameters"]), {k: v for k, v in obj["state_dict"].items()}
    path = Path(path)
    v = layout(hp, state)
    d, n_layers, n_heads = int(hp.get("d_model", 0)), int(hp.get("nlayers", 0)), int(hp.get("nhead", 0))
    if "gene_encoder.embeddings.weight" not in state and "gene_encoder.embedding.weight" not in state:
        raise InputError(f"{path}: scPRINT checkpoint without a gene table (gene_encoder); unsupported layout.")
    label_sizes, classes = _label_sizes(hp, state, path)
    spec = _spec(hp, state, v, path)
    # with cell-specific layers, scPRINT's gene transformer holds a cross-attention block before each of its own
    gene_cross = v == "v2" and spec.cell_layers > 0
    left_out, weights = {}, {}
    for key, tensor in state.items():
        dropped = next((what for prefix, what in NOT_CARRIED.items() if key.startswith(prefix)), None)
        m = re.match(r"transformer\.blocks\.(\d+)\.", key)
        if gene_cross and m and int(m.group(1)) % 2 == 0:
            dropped = UNUSED_CROSS
        if dropped:
            left_out[dropped] = left_out.get(dropped, 0) + tensor.numel()
            continue
        new = _rename(key, len(spec.layers_cls), v == "v2", gene_cross)
        if new is None:
            raise InputError(f"{path}: weight '{key}' is not part of scPRINT's {v} layout as grnformer knows it; "
                             f"unsupported checkpoint. Nothing was written.")
        weights[new] = tensor.float()
    vocab, kept, genes_card = _genes(list(hp["genes"]), path)
    if "gene_position_vectors" not in weights:  # trained without gene_pos_enc: no position term
        weights["gene_position_vectors"] = torch.zeros_like(weights["gene_encoder.weight"])
    for key in ("gene_encoder.weight", "gene_position_vectors"):
        if weights[key].numel() != len(hp["genes"]) * d:
            raise InputError(f"{path}: its gene table ({key}) does not hold one {d}-wide row per gene of its "
                             f"{len(hp['genes']):,} genes; the checkpoint is inconsistent.")
        weights[key] = weights[key].reshape(len(hp["genes"]), d)[torch.as_tensor(kept)].contiguous()
    fc1 = "blocks.0.mlp.0.weight" if v == "v2" else "blocks.0.mlp.0.0.weight"
    mlp_hidden = weights[fc1].shape[0] if fc1 in weights else 4 * d
    config = ModelConfig(vocab_size=len(vocab), n_positions=vocab.n_positions, d_model=d, n_layers=n_layers,
                         n_heads=n_heads, mlp_ratio=max(1, mlp_hidden // max(d, 1)),
                         dropout=float(hp.get("dropout", 0.1)), context_length=_context_length(vocab),
                         label_sizes=label_sizes)
    labels = _labels(hp, classes, label_sizes, path)
    shapes = {"d_model": d, "n_layers": n_layers, "n_heads": n_heads, "mlp_hidden": int(mlp_hidden),
              "n_parameters_carried": int(sum(t.numel() for t in weights.values()))}
    if v == "v2":
        shapes.update(n_heads_kv=spec.n_heads_kv or n_heads, cell_layers=spec.cell_layers,
                      depth="given to the expression decoder" if spec.depth_in_decoder else "input token")
    card = {"source": path.name, "source_sha256": file_sha256(path), "layout": v,
            "architecture": ARCHITECTURE_V2 if v == "v2" else ARCHITECTURE, "shapes": shapes,
            "input_normalisation": spec.normalization, "genes": genes_card,
            "labels": {c: {"leaves": enc.leaves, "coarse": {term: [enc.leaves[i] for i in np.flatnonzero(row)]
                                                             for term, row in zip(enc.coarse, enc.descendants)}}
                       for c, enc in labels.encoders.items()},
            "not_carried_over": [f"{what}: {n:,} weights" for what, n in left_out.items()]
            + ["training state (optimizer, schedulers, loops, callbacks)"],
            "versions": {"pytorch-lightning": str(obj.get("pytorch-lightning_version", "unknown"))}}
    return Converted(config, spec, vocab, labels, weights, card)


def _spec(hp: dict[str, Any], state: dict[str, torch.Tensor], v: str, path: Path) -> ScPrintSpec:
    """The network's settings; for v2, checked against the weight shapes (a mismatch is an inconsistent file)."""
    common = {"normalization": hp.get("normalization", "sum"),
              "expr_encoder_layers": int(hp.get("expr_encoder_layers", 2)),
              "layers_cls": tuple(hp.get("layers_cls") or ())}
    if v == "v1":
        return ScPrintSpec(**common)
    d, heads = int(hp.get("d_model", 0)), int(hp.get("nhead", 0))
    kv = int(hp.get("num_heads_kv") or heads)
    if heads < 1 or d % heads or heads % max(kv, 1) or kv < 1:
        raise InputError(f"{path}: {heads} attention heads over {kv} key/value heads at width {d} is not a valid "
                         f"scPRINT v2 shape; the checkpoint is inconsistent.")
    cell_layers = len({k.split(".")[2] for k in state if k.startswith("cell_transformer.blocks.")}) // 2
    if bool(hp.get("cell_specific_blocks")) != (cell_layers > 0):
        raise InputError(f"{path}: cell_specific_blocks={hp.get('cell_specific_blocks')} but the checkpoint holds "
                         f"{cell_layers} cell-specific layers; the checkpoint is inconsistent.")
    depth_in_decoder = hp.get("depth_atinput", True) is False
    checks = {"expr_decoder.fc.0.weight": (d, d + 1 if depth_in_decoder else d)}
    for key in state:
        if key.endswith("mixer.Wqkv.weight"):
            checks[key] = (d + 2 * kv * (d // heads), d)
        elif key.endswith("mixer.Wkv.weight"):
            checks[key] = (2 * kv * (d // heads), d)
    wrong = [f"{k} {tuple(state[k].shape)} (expected {shape})" for k, shape in checks.items()
             if k in state and tuple(state[k].shape) != shape]
    if wrong:
        raise InputError(f"{path}: weight shapes do not match its settings (d_model {d}, {heads} heads, "
                         f"num_heads_kv {kv}, depth_atinput {not depth_in_decoder}): {', '.join(wrong[:3])}; the "
                         f"checkpoint is inconsistent.")
    return ScPrintSpec(**common, n_heads_kv=kv if kv != heads else 0, depth_in_decoder=depth_in_decoder,
                       cell_layers=cell_layers)


def _context_length(vocab: GeneVocab) -> int:
    """grnformer's context (2,200, scPRINT's too), or half the genes of the best-covered organism when a reduced
    gene table (a test fixture) holds fewer: contexts are padded with genes the cell does not express."""
    most = int(vocab.table["organism"].value_counts().max())
    return min(CONTEXT_LENGTH, max(1, most // 2))


def _label_sizes(hp: dict[str, Any], state: dict[str, torch.Tensor], path: Path
                 ) -> tuple[dict[str, int], list[str]]:
    """Leaves per class (grnformer names), from the classifier weights, in scPRINT's class order."""
    classes = list(hp.get("classes") or [])  # a dict (1.x: name -> leaves) or a list of names (2.x)
    sizes = {}
    for c in classes:
        bias = state.get(f"cls_decoders.{c}.out_layer.bias")
        if bias is None:
            raise InputError(f"{path}: label class '{c}' has no classifier weights; the checkpoint is inconsistent.")
        sizes[_class_name(c)] = int(bias.shape[0])
    if state.get("class_encoder.embedding.weight") is None or \
            state["class_encoder.embedding.weight"].shape[0] != 1 + len(classes):
        raise InputError(f"{path}: the class token table does not hold one token per label class plus the cell "
                         f"token; unsupported layout.")
    return sizes, classes


def _labels(hp: dict[str, Any], classes: list[str], sizes: dict[str, int], path: Path) -> LabelSet:
    """Label encoders from scPRINT's label_decoders (index -> term) and labels_hierarchy (coarse -> leaves)."""
    decoders = hp.get("label_decoders") or {}
    hierarchy = hp.get("labels_hierarchy") or {}
    encoders = {}
    for c in classes:
        name, n = _class_name(c), sizes[_class_name(c)]
        terms = {int(i): str(t) for i, t in (decoders.get(c) or {}).items()}
        missing = [i for i in range(n) if i not in terms]
        if missing:
            raise InputError(f"{path}: label class '{c}' names {n - len(missing)} of its {n} classifier outputs; "
                             f"the checkpoint's label_decoders are incomplete.")
        coarse_codes = sorted(int(k) for k in (hierarchy.get(c) or {}))
        leaves = [terms[i] for i in range(n)]
        coarse = [terms.get(k, f"{c}:{k}") for k in coarse_codes]
        descendants = np.zeros((len(coarse), n), dtype=bool)
        for j, k in enumerate(coarse_codes):
            members = [int(i) for i in hierarchy[c][k]]
            if any(not 0 <= i < n for i in members):
                raise InputError(f"{path}: labels_hierarchy of '{c}' points outside its {n} leaves.")
            descendants[j, members] = True
        encoders[name] = LabelEncoder(name, leaves, coarse, descendants)
    return LabelSet(encoders)


def _genes(genes: list[str], path: Path) -> tuple[GeneVocab, np.ndarray, dict[str, Any]]:
    """The converted vocabulary (the checkpoint's genes grnformer's vocabulary holds, in the checkpoint's order),
    their rows in the checkpoint, and counts of what did not map either way."""
    full = GeneVocab.default()
    rows = full.index(genes)
    first = ~pd.Index(rows).duplicated() | (rows < 0)
    kept = np.flatnonzero((rows >= 0) & first)
    if not len(kept):
        raise InputError(f"{path}: none of the checkpoint's {len(genes):,} genes is in grnformer's vocabulary "
                         f"(Ensembl IDs of human and mouse protein-coding genes expected).")
    vocab = GeneVocab(full.table.iloc[rows[kept]].copy())
    outside = [genes[i] for i in np.flatnonzero(rows < 0)]
    covered = Counter(full.table["organism"].to_numpy()[rows[kept]])
    totals = Counter(full.table["organism"].to_numpy())
    card = {"in_checkpoint": len(genes), "converted": len(kept),
            "not_in_grnformer_vocabulary": len(outside), "not_in_grnformer_vocabulary_examples": outside[:20],
            "duplicates": int(((rows >= 0) & ~first).sum()),
            "vocabulary_genes_without_checkpoint_vector": {ORGANISMS.get(o, o): int(totals[o] - covered.get(o, 0))
                                                           for o in totals}}
    return vocab, kept, card
