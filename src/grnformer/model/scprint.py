"""scPRINT's network (v1 layout) in grnformer's terms, so that its published checkpoints run every grnformer task.

Where scPRINT differs from `GRNFormer` (facts read from scPRINT 2.3.8 / simpler-flash 1.0.7; no code carried over):
- Gene identity is a table of per-gene vectors (pooled ESM2 protein embeddings in the published models), and the
  genomic position is a per-gene sinusoid of its location bin, stored with the weights (`gene_position_vectors`).
- The count enters as its share of the context's counts ("sum"; zeros for a context without counts, where scPRINT
  divides by zero) or log2(1 + count) ("log"), clamped to [0, 1e5], through an MLP: Linear(1, d), then per extra
  layer LayerNorm, ReLU, dropout, Linear(d, d).
- Special tokens, in order: depth (the same kind of MLP on log2(1 + depth)), the cell token, one per label class
  (2.3.8's order; 1.6.4 puts the cell token first: they carry no position, so the order changes no output).
- Transformer blocks are pre-LayerNorm with eps 1e-6 (`GRNFormer`'s own `Block`, so attention has one owner).
- The expression decoder is an MLP (Linear, LayerNorm, LeakyReLU, dropout, Linear, LayerNorm, LeakyReLU) then a
  Linear to (mean logit, log dispersion, zero logit): mean = softmax over the context x scale, theta =
  exp(min(., 15)). Each class's classifier is an MLP (Linear, LayerNorm, ReLU, dropout per hidden layer) then a
  Linear over its leaves.
- The cell embedding is the mean of every special token's output (depth and label tokens included).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from grnformer.errors import InputError
from grnformer.model.config import ModelConfig
from grnformer.model.grnformer import Block, ModelOutput, label_logits, run_blocks

ARCHITECTURE = "scprint-v1"  # the bundle's metadata names it; `GRNFormer` bundles name none
NORMALIZATIONS = ("sum", "log")
LN_EPS = 1e-6  # the transformer's LayerNorms (the decoders' keep torch's default)
MAX_VALUE = 100_000.0  # scPRINT clamps encoded values to [0, MAX_VALUE]
MAX_LOG_DISPERSION = 15.0


@dataclass(frozen=True)
class ScPrintSpec:
    """What a scPRINT network needs beyond `ModelConfig`: input normalisation, MLP depths and, for the v2 layout
    (`model.scprint_v2`), key/value heads (0: one per query head), depth given to the expression decoder instead
    of a depth token, and the number of cell-specific layers (0: cell tokens share the gene transformer)."""

    normalization: str = "sum"
    expr_encoder_layers: int = 2
    layers_cls: tuple[int, ...] = ()
    n_heads_kv: int = 0
    depth_in_decoder: bool = False
    cell_layers: int = 0

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise InputError(f"scPRINT normalization must be one of {NORMALIZATIONS} (got '{self.normalization}').")
        if self.expr_encoder_layers < 1:
            raise InputError(f"expr_encoder_layers must be >= 1 (got {self.expr_encoder_layers}).")
        if self.n_heads_kv < 0 or self.cell_layers < 0:
            raise InputError(f"n_heads_kv and cell_layers must be >= 0 (got {self.n_heads_kv}, {self.cell_layers}).")
        object.__setattr__(self, "layers_cls", tuple(int(n) for n in self.layers_cls))

    @property
    def layout(self) -> str:
        """'v2' when any v2 feature is on (grouped-query attention, depth in the decoder, cell-specific layers)."""
        return "v2" if self.n_heads_kv or self.depth_in_decoder or self.cell_layers else "v1"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "layers_cls": list(self.layers_cls)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScPrintSpec:
        return cls(**d)


def value_encoder(d: int, layers: int, dropout: float) -> nn.Sequential:
    """scPRINT's continuous-value MLP: Linear(1, d), then (LayerNorm, ReLU, Dropout, Linear(d, d)) per extra layer."""
    parts: list[nn.Module] = [nn.Linear(1, d)]
    for _ in range(layers - 1):
        parts += [nn.LayerNorm(d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, d)]
    return nn.Sequential(*parts)


def classifier(d: int, hidden: tuple[int, ...], n_out: int, dropout: float) -> nn.Sequential:
    parts: list[nn.Module] = []
    for width_in, width in zip((d, *hidden), hidden):
        parts += [nn.Linear(width_in, width), nn.LayerNorm(width), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*parts, nn.Linear((d, *hidden)[-1], n_out))


def encode_value(encoder: nn.Sequential, value: Tensor) -> Tensor:
    """A continuous value through its MLP, clamped to [0, MAX_VALUE] as scPRINT does."""
    return encoder(value.clamp(0.0, MAX_VALUE).unsqueeze(-1))


def normalized_counts(counts: Tensor, normalization: str) -> Tensor:
    """The expression value scPRINT encodes: share of the context's counts ("sum"; a context without counts
    reads zeros where scPRINT divides by zero) or log2(1 + count) ("log")."""
    if normalization == "sum":
        return counts / counts.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.log2(1 + counts)


def zinb_parameters(raw: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """scPRINT's decoder output [..., 3] as (mean, dispersion, dropout logit) in fp32: the mean is a softmax over
    the context's genes times ``scale``, the dispersion exp(raw) clamped so it never overflows."""
    raw = raw.float()
    mu = torch.softmax(raw[..., 0], dim=-1) * scale.float().unsqueeze(-1)
    return mu, torch.exp(raw[..., 1].clamp(max=MAX_LOG_DISPERSION)), raw[..., 2]


class ScPrintNetwork(nn.Module):
    """What every converted scPRINT network shares: inference only, and the bundle's architecture name."""

    architecture = ARCHITECTURE

    def bottleneck(self, out: ModelOutput, genes: Tensor, depth: Tensor, scale: Tensor) -> tuple[Tensor, ...]:
        """scPRINT's own second pass is not part of the conversion; training a converted model is refused here."""
        raise InputError("a converted scPRINT model cannot be trained or adapted in grnformer yet (its "
                         "embedding-to-expression pass is not carried over); embed, classify, denoise, grn and "
                         "perturb run on it.")

    def get_num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


class ScPrintModel(ScPrintNetwork):
    """scPRINT v1 with `GRNFormer`'s interface: forward(genes, counts, depth, scale, return_qk) -> ModelOutput.

    Gene token ids index the converted vocabulary (`config.vocab_size` rows of `gene_encoder` and
    `gene_position_vectors`, both loaded from the checkpoint)."""

    def __init__(self, config: ModelConfig, spec: ScPrintSpec):
        super().__init__()
        self.config, self.spec = config, spec
        d = config.d_model
        self.gene_encoder = nn.Embedding(config.vocab_size, d)
        self.gene_encoder.weight.requires_grad_(False)  # published tables are frozen protein embeddings
        self.register_buffer("gene_position_vectors", torch.zeros(config.vocab_size, d))
        self.expr_encoder = value_encoder(d, spec.expr_encoder_layers, config.dropout)
        self.depth_encoder = value_encoder(d, spec.expr_encoder_layers, config.dropout)
        self.special = nn.Embedding(1 + len(config.label_sizes), d)  # cell token, then one per label class
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        for block in self.blocks:
            block.ln_1.eps = block.ln_2.eps = LN_EPS
        self.ln_f = nn.LayerNorm(d, eps=LN_EPS)
        self.expr_decoder = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.LeakyReLU(), nn.Dropout(config.dropout),
                                          nn.Linear(d, d), nn.LayerNorm(d), nn.LeakyReLU())
        self.zinb_head = nn.Linear(d, 3)
        self.label_heads = nn.ModuleDict({name: classifier(d, spec.layers_cls, n, config.dropout)
                                          for name, n in config.label_sizes.items()})

    def forward(self, genes: Tensor, counts: Tensor, depth: Tensor, scale: Tensor | None = None,
                return_qk: bool = False) -> ModelOutput:
        """genes [B, L] token ids, counts [B, L], depth [B] the cell's library size (depth token), scale [B] what
        the means add up to over the context (default: the context's counts)."""
        counts = counts.float()
        scale = counts.sum(dim=-1) if scale is None else scale
        value = normalized_counts(counts, self.spec.normalization)
        x = self.gene_encoder(genes) + encode_value(self.expr_encoder, value) + self.gene_position_vectors[genes]
        B = genes.shape[0]
        special = torch.cat([encode_value(self.depth_encoder, torch.log2(1 + depth.float())).unsqueeze(1),
                             self.special.weight.unsqueeze(0).expand(B, -1, -1).to(x.dtype)], dim=1)
        x = torch.cat([special, x], dim=1)
        s = self.config.n_special
        x, qks = run_blocks(self.blocks, x, s, return_qk)
        h = self.ln_f(x)
        gene_out = h[:, s:]
        mu, theta, pi_logit = zinb_parameters(self.zinb_head(self.expr_decoder(gene_out)), scale)
        label_emb = h[:, 2:s]
        return ModelOutput(h[:, :s].mean(dim=1), label_emb, gene_out, mu, theta, pi_logit,
                           label_logits(self.label_heads, label_emb), qks)
