"""The GRNFormer model in one file: token encoders, a pre-LayerNorm transformer, ZINB and label heads.

A cell is a fixed-size context of L genes. Each gene token is the sum of three encodings: who the gene is (a
learned embedding, or frozen external embeddings projected to d_model), how much of it the cell holds (an MLP on
the count), and where it sits on the genome (a fixed sinusoid of its position token). Special tokens go first:
a cell token, a depth token (MLP on log1p total counts) and one token per label class. The trunk is bidirectional
with no mask (the context is always full). Gene outputs decode to zero-inflated negative binomial parameters,
label outputs to logits over that class's leaf terms. The depth token tells the model the cell's library
size; the ZINB means are the model's share of each context gene times `scale`, the counts the context holds
(by default what the input context holds): a context is a part of the cell, so its genes share only the
counts that fall on them, not the whole library. The attention module can hand back its own queries and keys,
which is how gene networks are read without a second attention implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from grnformer.data.input.gene_names import rows_by_name
from grnformer.errors import InputError
from grnformer.model.config import ModelConfig

QK = tuple[Tensor, Tensor]


@dataclass
class ModelOutput:
    """What one forward pass gives: embeddings, ZINB parameters per gene, label logits, optionally q/k."""

    cell_emb: Tensor                  # [B, d]
    label_emb: Tensor                 # [B, C, d]
    gene_out: Tensor                  # [B, L, d]
    mu: Tensor                        # [B, L] expected counts; sums to `scale` over the context
    theta: Tensor                     # [B, L] NB inverse dispersion (> 0)
    pi_logit: Tensor                  # [B, L] logit of a structural zero
    label_logits: dict[str, Tensor]   # class -> [B, n_leaves]
    qk: list[QK] | None = None        # per layer (q, k), each [B, H, L, d_head], gene tokens only


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Linear(d_hidden, d_out))


# ---------------------------------------------------------------------------------------------- token encoders

class GeneEncoder(nn.Module):
    """Gene identity. Frozen external embeddings (kept as a non-trainable weight, projected to d_model) when
    given; rows that are all zero mean "no external embedding for this gene" and use a learned vector instead.
    Without external embeddings, a learned embedding per gene."""

    def __init__(self, config: ModelConfig, gene_embeddings: Tensor | None):
        super().__init__()
        self.learned = nn.Embedding(config.vocab_size, config.d_model)
        self.frozen: nn.Embedding | None = None
        if config.gene_embedding_dim is None:
            if gene_embeddings is not None:
                raise InputError("gene embeddings were given but config.gene_embedding_dim is None; set it to "
                                 f"their width ({gene_embeddings.shape[-1]}).")
            return
        shape = (config.vocab_size, config.gene_embedding_dim)
        if gene_embeddings is None:  # placeholder, filled by load_state_dict
            gene_embeddings = torch.zeros(shape)
        if tuple(gene_embeddings.shape) != shape:
            raise InputError(f"gene embeddings have shape {tuple(gene_embeddings.shape)}; the configuration "
                             f"expects {shape} (vocab_size x gene_embedding_dim).")
        weights = gene_embeddings.detach().float()
        self.frozen = nn.Embedding.from_pretrained(weights, freeze=True)
        self.register_buffer("found", weights.abs().sum(dim=1) > 0)
        self.proj = nn.Linear(config.gene_embedding_dim, config.d_model)

    def forward(self, genes: Tensor) -> Tensor:
        if self.frozen is None:
            return self.learned(genes)
        return torch.where(self.found[genes, None], self.proj(self.frozen(genes)), self.learned(genes))


class ExpressionEncoder(nn.Module):
    """MLP 1 -> d -> d on a continuous transform of the count (no binning)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.encoding = config.expr_encoding
        self.mlp = mlp(1, config.d_model, config.d_model)

    def forward(self, counts: Tensor) -> Tensor:
        if self.encoding == "log1p":
            value = torch.log1p(counts)
        else:  # share of the context's counts, scaled so that an average gene reads 1
            value = counts / counts.sum(dim=-1, keepdim=True).clamp_min(1.0) * counts.shape[-1]
        return self.mlp(value.unsqueeze(-1))


def sinusoidal_table(n_positions: int, d_model: int, base: float) -> Tensor:
    """Fixed sin/cos encoding of each position token; row 0 (unknown position) is zero so it adds nothing."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    table[0] = 0.0
    return table.float()


# ------------------------------------------------------------------------------------------------- transformer

class SelfAttention(nn.Module):
    """Bidirectional multi-head attention through scaled_dot_product_attention (flash / cuDNN on GPU).

    Dropout acts on the output, not on the attention weights: every SDPA kernel (CPU flash included) can then
    run, and the weights the model trains with are exactly softmax(q k^T / sqrt(d_head)) of the returned q, k.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, return_qk: bool = False) -> tuple[Tensor, QK | None]:
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        y = self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, d)))
        return y, ((q, k) if return_qk else None)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.ln_1 = nn.LayerNorm(d)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(mlp(d, config.mlp_ratio * d, d), nn.Dropout(config.dropout))

    def forward(self, x: Tensor, return_qk: bool = False) -> tuple[Tensor, QK | None]:
        a, qk = self.attn(self.ln_1(x), return_qk)
        x = x + a
        return x + self.mlp(self.ln_2(x)), qk


def run_blocks(blocks: nn.ModuleList, x: Tensor, n_special: int, return_qk: bool
               ) -> tuple[Tensor, list[QK] | None]:
    """The trunk every architecture shares: blocks in order, each layer's q/k kept over the gene tokens only
    (the first ``n_special`` positions dropped), since the networks read gene-gene attention."""
    qks = []
    for block in blocks:
        x, qk = block(x, return_qk=return_qk)
        if return_qk:
            qks.append((qk[0][:, :, n_special:], qk[1][:, :, n_special:]))
    return x, qks if return_qk else None


def label_logits(heads: nn.ModuleDict, label_emb: Tensor) -> dict[str, Tensor]:
    """One classifier per label set, each reading its own label token (in the heads' order)."""
    return {name: head(label_emb[:, i]) for i, (name, head) in enumerate(heads.items())}


# ----------------------------------------------------------------------------------------------------- model

class GRNFormer(nn.Module):
    """Single-cell foundation model: genes of one cell in, embeddings / ZINB parameters / label logits out.

    gene_positions: genomic-position token of every gene in the vocabulary (0 = unknown);
    gene_embeddings: optional frozen per-gene vectors [vocab_size, config.gene_embedding_dim] (all-zero rows =
    missing; see `load_gene_embeddings`). Both are stored in the state dict, so a checkpoint is self-contained.
    """

    def __init__(self, config: ModelConfig, gene_positions: Tensor, gene_embeddings: Tensor | None = None):
        super().__init__()
        if tuple(gene_positions.shape) != (config.vocab_size,):
            raise ValueError(f"gene_positions must have shape ({config.vocab_size},), "
                             f"not {tuple(gene_positions.shape)}")
        if not 0 <= int(gene_positions.min()) <= int(gene_positions.max()) < config.n_positions:
            raise ValueError(f"gene_positions must lie in [0, {config.n_positions})")
        self.config = config
        d = config.d_model
        self.register_buffer("gene_positions", gene_positions.detach().long().clone())
        self.register_buffer("position_table", sinusoidal_table(config.n_positions, d, config.position_base),
                             persistent=False)
        self.gene_encoder = GeneEncoder(config, gene_embeddings)
        self.expr_encoder = ExpressionEncoder(config)
        self.depth_encoder = mlp(1, d, d)
        self.special = nn.Embedding(1 + len(config.label_sizes), d)  # cell token, then one per label class
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.zinb_head = mlp(d, d, 3)  # per gene: mean logit, raw dispersion, dropout logit
        self.label_heads = nn.ModuleDict({name: nn.Linear(d, n) for name, n in config.label_sizes.items()})

    # -- inputs -------------------------------------------------------------------------------------------
    def gene_tokens(self, genes: Tensor, counts: Tensor | None) -> Tensor:
        """[B, L, d] gene identity + genomic position (+ expression unless `counts` is None)."""
        x = self.gene_encoder(genes) + self.position_table[self.gene_positions[genes]]
        return x if counts is None else x + self.expr_encoder(counts)

    def depth_token(self, depth: Tensor) -> Tensor:
        return self.depth_encoder(torch.log1p(depth.float()).unsqueeze(-1))

    def embed(self, genes: Tensor, counts: Tensor, depth: Tensor) -> Tensor:
        """[B, n_special + L, d] input sequence: cell, depth, label tokens, then the genes."""
        B = genes.shape[0]
        special = self.special.weight.unsqueeze(0).expand(B, -1, -1)
        return torch.cat([special[:, :1], self.depth_token(depth).unsqueeze(1), special[:, 1:],
                          self.gene_tokens(genes, counts)], dim=1)

    # -- trunk and heads ----------------------------------------------------------------------------------
    def _run(self, x: Tensor, scale: Tensor, return_qk: bool) -> ModelOutput:
        s = self.config.n_special
        x, qks = run_blocks(self.blocks, self.drop(x), s, return_qk)
        h = self.ln_f(x)
        gene_out = h[:, s:]
        mu, theta, pi_logit = self._zinb(gene_out, scale)
        label_emb = h[:, 2:s]
        return ModelOutput(h[:, 0], label_emb, gene_out, mu, theta, pi_logit, label_logits(self.label_heads, label_emb),
                           qks)

    def _zinb(self, gene_out: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean = softmax over the context's genes x scale; theta = softplus (> 0); all in fp32."""
        raw = self.zinb_head(gene_out).float()
        mu = torch.softmax(raw[..., 0], dim=-1) * scale.float().unsqueeze(-1)
        theta = F.softplus(raw[..., 1]) + 1e-4
        return mu, theta, raw[..., 2]

    def forward(self, genes: Tensor, counts: Tensor, depth: Tensor, scale: Tensor | None = None,
                return_qk: bool = False) -> ModelOutput:
        """genes [B, L] token ids, counts [B, L] (possibly down-sampled) counts, depth [B] the library size the
        output should describe (depth token), scale [B] the counts the output means add up to over the context
        (default: the input context's counts). With `return_qk`, also each layer's gene-token queries and keys."""
        scale = counts.sum(dim=-1) if scale is None else scale
        return self._run(self.embed(genes, counts, depth), scale, return_qk)

    def bottleneck(self, out: ModelOutput, genes: Tensor, depth: Tensor, scale: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """Second pass that must regenerate expression from the cell and label embeddings of `out` alone: its
        special tokens are those outputs (plus a depth token), its gene tokens carry no expression."""
        x = torch.cat([out.cell_emb.unsqueeze(1), self.depth_token(depth).unsqueeze(1), out.label_emb,
                       self.gene_tokens(genes, None)], dim=1)
        o = self._run(x, scale, return_qk=False)
        return o.mu, o.theta, o.pi_logit

    # -- accounting ---------------------------------------------------------------------------------------
    def get_num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _pass_flops(self, L: int, expression: bool) -> int:
        """Matmul FLOPs (2 per multiply-add) of one pass over one cell; elementwise work is ignored."""
        c = self.config
        d, T = c.d_model, c.n_special + L
        per_layer = 2 * T * d * (3 * d + d + 2 * c.mlp_ratio * d) + 2 * 2 * T * T * d  # projections, MLP, QK^T, AV
        flops = c.n_layers * per_layer
        flops += 2 * L * (d * d + 3 * d)                              # ZINB head
        flops += 2 * d * sum(c.label_sizes.values())                   # label heads
        flops += 2 * (d + d * d)                                       # depth MLP
        if expression:
            flops += 2 * L * (d + d * d)                               # expression MLP
        if c.gene_embedding_dim is not None:
            flops += 2 * L * c.gene_embedding_dim * d                  # frozen-embedding projection
        return flops

    def flops_per_cell(self, context_length: int | None = None) -> int:
        """Forward FLOPs of `forward` for one cell (default: the configured context length)."""
        return self._pass_flops(context_length or self.config.context_length, expression=True)

    def estimate_mfu(self, cells_per_s: float, peak_flops: float, train: bool = True,
                     context_length: int | None = None, bottleneck: bool = True) -> float:
        """Model FLOPs utilisation. Training counts forward + backward (3x forward) of the denoising pass and,
        when `bottleneck`, of the bottleneck pass; inference counts one forward."""
        L = context_length or self.config.context_length
        per_cell = self.flops_per_cell(L)
        if train:
            per_cell = 3 * (per_cell + (self._pass_flops(L, expression=False) if bottleneck else 0))
        return per_cell * cells_per_s / peak_flops


# ------------------------------------------------------------------------------------- external gene vectors

def load_gene_embeddings(path: str | Path, vocab_ids: Sequence[str],
                         vocab_symbols: Sequence[str] | None = None) -> tuple[Tensor, Tensor]:
    """Read per-gene vectors (parquet or CSV; one row per gene, numeric columns = the vector, gene named by the
    index or by the first text column) and line them up with the vocabulary.

    A row matches a vocabulary gene by Ensembl ID (version suffix ignored), else by symbol. Returns
    (tensor [len(vocab_ids), dim] with zero rows for genes without a vector, found mask [len(vocab_ids)]).
    The first row wins when a gene appears twice.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"gene embedding file not found: {path}")
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, sep=None, engine="python")
    except Exception as exc:  # any reader failure is a bad file from the user's point of view
        raise InputError(f"could not read gene embeddings from {path} ({exc}); expected parquet or CSV.") from exc
    numeric = df.select_dtypes(include="number")
    text = [c for c in df.columns if c not in numeric.columns]
    if numeric.shape[1] == 0:
        raise InputError(f"{path} has no numeric columns: expected one row per gene with the vector's values.")
    names = df[text[0]] if text else df.index
    if pd.api.types.is_numeric_dtype(pd.Index(names)):
        raise InputError(f"{path}: name genes (Ensembl ID or symbol) in the index or the first text column.")
    values = numeric.to_numpy(dtype=np.float32)
    if not np.isfinite(values).all():
        raise InputError(f"{path} holds NaN or infinite values.")
    rows = rows_by_name(pd.Index(names).astype(str), vocab_ids, vocab_symbols)
    found = rows >= 0
    if not found.any():
        raise InputError(f"no gene of {path} matches the vocabulary by Ensembl ID or symbol.")
    out = np.zeros((len(vocab_ids), values.shape[1]), dtype=np.float32)
    out[found] = values[rows[found]]
    return torch.from_numpy(out), torch.from_numpy(found)
