"""Pure-torch model layer: configuration, the GRNFormer network, and its losses (no Lightning, no AnnData)."""

from grnformer.model.config import PRESETS, ModelConfig
from grnformer.model.grnformer import GRNFormer, ModelOutput, load_gene_embeddings
from grnformer.model.losses import hierarchical_label_loss, zinb_nll

__all__ = ["PRESETS", "GRNFormer", "ModelConfig", "ModelOutput", "hierarchical_label_loss",
           "load_gene_embeddings", "zinb_nll"]
