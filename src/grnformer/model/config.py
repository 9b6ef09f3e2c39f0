"""Model hyper-parameters: one dataclass, three named presets, and a dict form for checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from grnformer.data.collate import CONTEXT_LENGTH
from grnformer.errors import InputError

# The reference model's sizes (scPRINT): width / layers / heads. Every head is 64 wide.
PRESETS: dict[str, dict[str, int]] = {
    "small": {"d_model": 128, "n_layers": 4, "n_heads": 2},
    "medium": {"d_model": 256, "n_layers": 8, "n_heads": 4},
    "large": {"d_model": 512, "n_layers": 16, "n_heads": 8},
}
EXPR_ENCODINGS = ("log1p", "normalized")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a GRNFormer's shapes (weights and gene tables come separately).

    vocab_size: number of genes (token ids 0..vocab_size-1); n_positions: genomic-position tokens (0 = unknown);
    label_sizes: leaves per label class, in the order of the label tokens; expr_encoding: how a count enters the
    expression MLP ("log1p" of the count, or "normalized": count / context total, times the context length);
    gene_embedding_dim: width of frozen external gene embeddings (None = learn a gene embedding instead);
    position_base: longest wavelength scale of the sinusoidal genomic-position encoding.
    """

    vocab_size: int
    n_positions: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 2
    mlp_ratio: int = 4
    dropout: float = 0.1
    context_length: int = CONTEXT_LENGTH
    label_sizes: dict[str, int] = field(default_factory=dict)
    expr_encoding: str = "log1p"
    gene_embedding_dim: int | None = None
    position_base: float = 10_000.0

    def __post_init__(self) -> None:
        self.label_sizes = {str(k): int(v) for k, v in dict(self.label_sizes).items()}
        problems = []
        for name in ("vocab_size", "n_positions", "d_model", "n_layers", "n_heads", "mlp_ratio", "context_length"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.n_heads >= 1 and self.d_model % self.n_heads:
            problems.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.expr_encoding not in EXPR_ENCODINGS:
            problems.append(f"expr_encoding must be one of {EXPR_ENCODINGS} (got '{self.expr_encoding}')")
        if self.gene_embedding_dim is not None and self.gene_embedding_dim < 1:
            problems.append(f"gene_embedding_dim must be >= 1 or None (got {self.gene_embedding_dim})")
        bad_labels = [k for k, v in self.label_sizes.items() if v < 1]
        if bad_labels:
            problems.append(f"label classes need at least one leaf: {bad_labels}")
        if problems:
            raise InputError("invalid model configuration: " + "; ".join(problems) + ".")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_special(self) -> int:
        """Tokens before the genes: cell, depth, then one per label class."""
        return 2 + len(self.label_sizes)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named size (small / medium / large) with any field overridden; vocab_size and n_positions are needed."""
        if name not in PRESETS:
            raise InputError(f"unknown model preset '{name}'; choose one of {', '.join(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Rebuild from `to_dict`; unknown keys mean the checkpoint came from other code, so say which."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"model configuration has fields this grnformer does not know: {unknown}.")
        return cls(**d)
