"""scPRINT's v2 network (2.x "simpler_flash" checkpoints) in grnformer's terms; same interface as `ScPrintModel`.

What v2 changes against v1 (facts read from scPRINT 2.3.8 and its pinned simpler-flash 1.0.7; no code carried
over; its default v2 configuration, base_v2.yml, turns all three on):
- Grouped-query attention: ``n_heads_kv`` key/value heads, each shared by n_heads / n_heads_kv consecutive query
  heads. One projection gives [queries (n_heads), keys (n_heads_kv), values (n_heads_kv)] head by head. The keys
  handed back for networks are expanded to one per query head, as scPRINT's own q/k extraction does.
- Depth in the decoder: no depth token; log2(1 + depth) is appended to every gene's output before the expression
  decoder's first Linear (d + 1 -> d).
- Cell-specific layers: the gene transformer sees the gene tokens only. The special tokens (cell token, then one
  per label class) go through their own stack (6 layers in 2.3.8), each layer a cross-attention block (queries
  from the special tokens, keys / values from the gene transformer's normalised output) then a self-attention
  block among the special tokens, then its own final LayerNorm. (scPRINT also builds cross-attention blocks
  inside the gene transformer that it never runs; they are not carried over.)
Blocks are pre-LayerNorm (eps 1e-6) with a GELU MLP, as in v1. The value encoders, the expression decoder MLP,
the classifiers and the cell embedding (mean of every special token's output) are v1's (`model.scprint`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from grnformer.errors import InputError
from grnformer.model.config import ModelConfig
from grnformer.model.grnformer import QK, ModelOutput, label_logits, run_blocks
from grnformer.model.scprint import (
    LN_EPS,
    ScPrintNetwork,
    ScPrintSpec,
    classifier,
    encode_value,
    normalized_counts,
    value_encoder,
    zinb_parameters,
)

ARCHITECTURE_V2 = "scprint-v2"


class GroupedAttention(nn.Module):
    """Multi-head attention with fewer key/value heads than query heads; cross-attention reads keys and values
    from ``memory``. Softmax(q k^T / sqrt(d_head)) through scaled_dot_product_attention."""

    def __init__(self, d: int, n_heads: int, n_heads_kv: int, cross: bool):
        super().__init__()
        if n_heads % n_heads_kv:
            raise InputError(f"n_heads ({n_heads}) must be a multiple of n_heads_kv ({n_heads_kv}).")
        self.n_heads, self.n_heads_kv, self.d_head, self.cross = n_heads, n_heads_kv, d // n_heads, cross
        kv_width = 2 * n_heads_kv * self.d_head
        if cross:
            self.q = nn.Linear(d, d)
            self.kv = nn.Linear(d, kv_width)
        else:
            self.qkv = nn.Linear(d, d + kv_width)
        self.proj = nn.Linear(d, d)

    def forward(self, x: Tensor, memory: Tensor | None = None, return_qk: bool = False
                ) -> tuple[Tensor, QK | None]:
        B, T, d = x.shape
        if self.cross:
            q, kv = self.q(x), self.kv(memory)
        else:
            q, kv = self.qkv(x).split([d, d * 2 * self.n_heads_kv // self.n_heads], dim=-1)
        q = q.view(B, T, self.n_heads, self.d_head).transpose(1, 2)
        k, v = kv.view(B, kv.shape[1], 2, self.n_heads_kv, self.d_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, enable_gqa=self.n_heads != self.n_heads_kv)
        qk = (q, k.repeat_interleave(self.n_heads // self.n_heads_kv, dim=1)) if return_qk else None
        return self.proj(y.transpose(1, 2).reshape(B, T, d)), qk


class GroupedBlock(nn.Module):
    """Pre-LayerNorm block: x + attn(ln(x) [, memory]), then x + mlp(ln(x)); dropout is off (inference only)."""

    def __init__(self, d: int, n_heads: int, n_heads_kv: int, mlp_hidden: int, cross: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=LN_EPS)
        self.attn = GroupedAttention(d, n_heads, n_heads_kv, cross)
        self.ln_2 = nn.LayerNorm(d, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(d, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, d))

    def forward(self, x: Tensor, memory: Tensor | None = None, return_qk: bool = False
                ) -> tuple[Tensor, QK | None]:
        a, qk = self.attn(self.ln_1(x), memory, return_qk)
        x = x + a
        return x + self.mlp(self.ln_2(x)), qk


class ScPrintV2Model(ScPrintNetwork):
    """scPRINT v2 with `GRNFormer`'s interface: forward(genes, counts, depth, scale, return_qk) -> ModelOutput.

    ``cell_blocks`` alternate cross-attention (even index) and self-attention (odd index), as in scPRINT."""

    architecture = ARCHITECTURE_V2

    def __init__(self, config: ModelConfig, spec: ScPrintSpec):
        super().__init__()
        self.config, self.spec = config, spec
        d, heads = config.d_model, config.n_heads
        kv = spec.n_heads_kv or heads
        hidden = config.mlp_ratio * d
        self.gene_encoder = nn.Embedding(config.vocab_size, d)
        self.gene_encoder.weight.requires_grad_(False)  # published tables are frozen protein embeddings
        self.register_buffer("gene_position_vectors", torch.zeros(config.vocab_size, d))
        self.expr_encoder = value_encoder(d, spec.expr_encoder_layers, config.dropout)
        self.depth_encoder = None if spec.depth_in_decoder else value_encoder(d, spec.expr_encoder_layers,
                                                                              config.dropout)
        self.special = nn.Embedding(1 + len(config.label_sizes), d)  # cell token, then one per label class
        self.blocks = nn.ModuleList(GroupedBlock(d, heads, kv, hidden) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d, eps=LN_EPS)
        self.cell_blocks = nn.ModuleList(GroupedBlock(d, heads, kv, hidden, cross=i % 2 == 0)
                                         for i in range(2 * spec.cell_layers))
        self.cell_ln_f = nn.LayerNorm(d, eps=LN_EPS) if spec.cell_layers else None
        width_in = d + 1 if spec.depth_in_decoder else d
        self.expr_decoder = nn.Sequential(nn.Linear(width_in, d), nn.LayerNorm(d), nn.LeakyReLU(),
                                          nn.Dropout(config.dropout), nn.Linear(d, d), nn.LayerNorm(d),
                                          nn.LeakyReLU())
        self.zinb_head = nn.Linear(d, 3)
        self.label_heads = nn.ModuleDict({name: classifier(d, spec.layers_cls, n, config.dropout)
                                          for name, n in config.label_sizes.items()})

    @property
    def n_special(self) -> int:
        """Special tokens ahead of the genes' outputs: the depth token (v1-style input), the cell token, labels."""
        return (0 if self.spec.depth_in_decoder else 1) + self.special.num_embeddings

    def forward(self, genes: Tensor, counts: Tensor, depth: Tensor, scale: Tensor | None = None,
                return_qk: bool = False) -> ModelOutput:
        """genes [B, L] token ids, counts [B, L], depth [B] the cell's library size, scale [B] what the means add
        up to over the context (default: the context's counts)."""
        counts = counts.float()
        scale = counts.sum(dim=-1) if scale is None else scale
        value = normalized_counts(counts, self.spec.normalization)
        x = self.gene_encoder(genes) + encode_value(self.expr_encoder, value) + self.gene_position_vectors[genes]
        B = genes.shape[0]
        log_depth = torch.log2(1 + depth.float())
        special = self.special.weight.unsqueeze(0).expand(B, -1, -1).to(x.dtype)
        if self.depth_encoder is not None:
            depth_token = encode_value(self.depth_encoder, log_depth).unsqueeze(1)
            special = torch.cat([depth_token, special], dim=1)
        s = self.n_special
        if not self.cell_blocks:  # one transformer over special and gene tokens, as in v1
            x = torch.cat([special, x], dim=1)
        x, qks = run_blocks(self.blocks, x, 0 if self.cell_blocks else s, return_qk)
        h = self.ln_f(x)
        if self.cell_blocks:
            c = special
            for block in self.cell_blocks:
                c, _ = block(c, h if block.attn.cross else None)
            cells, gene_out = self.cell_ln_f(c), h
        else:
            cells, gene_out = h[:, :s], h[:, s:]
        decoder_in = gene_out
        if self.spec.depth_in_decoder:
            decoder_in = torch.cat([gene_out, log_depth[:, None, None].expand(-1, gene_out.shape[1], 1)
                                    .to(gene_out.dtype)], dim=-1)
        mu, theta, pi_logit = zinb_parameters(self.zinb_head(self.expr_decoder(decoder_in)), scale)
        label_emb = cells[:, s - len(self.label_heads):]
        return ModelOutput(cells.mean(dim=1), label_emb, gene_out, mu, theta, pi_logit,
                           label_logits(self.label_heads, label_emb), qks)
