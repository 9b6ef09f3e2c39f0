"""What a method's ``form`` reads of one network (`networks.methods.MethodInputs`): its cells' expression and
correlation, the model's denoised expression and gene embeddings, and the run's regulators, seed and fusion
weights. Each view is computed only when a method asks for it, so a data method never runs the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.input.expression import log_per_10k
from grnformer.networks.grn_options import FUSION_COMPONENTS, GRNOptions
from grnformer.networks.network_plan import NetworkPlan


@dataclass
class NetworkContext:
    """One network's cells (``rows``, prepared rows), its plan and options, and the model."""

    bundle: Bundle
    plan: NetworkPlan
    opts: GRNOptions
    rows: np.ndarray
    dev: torch.device

    @property
    def regulators(self) -> np.ndarray:
        return self.plan.regulators

    @property
    def seed(self) -> int:
        return self.opts.seed

    @property
    def fusion_weights(self) -> dict[str, float]:
        from grnformer.networks.from_data import parse_weights

        return parse_weights(self.opts.fusion_weights, FUSION_COMPONENTS)

    def log_expression(self) -> np.ndarray:
        """[cells, G] log1p(counts per 10,000) of the network genes (depth over all genes), as the baselines."""
        x = log_per_10k(self.plan.prep.adata.X[self.rows])
        return np.asarray(x[:, self.plan.cols].toarray(), dtype=np.float32)

    def correlation(self, kind: str) -> np.ndarray:
        """[G, G] |Pearson r| ('pearson') or |Spearman rho| ('spearman') of the cells' log expression
        (`from_data`), streamed from the file when the plan streams (`networks.streaming_correlation`)."""
        from grnformer.networks.from_data import abs_correlation, abs_spearman

        if self.plan.stream is not None:
            return self.plan.stream.abs_correlation(kind, self.rows, self.plan.cols)
        return (abs_spearman if kind == "spearman" else abs_correlation)(self.log_expression())

    def log_denoised(self) -> np.ndarray:
        """[cells, G] the model's denoised expression of the network genes, normalised and logged the same way."""
        from grnformer.tasks.denoise import denoise
        from grnformer.tasks.task_options import DenoiseOptions

        prep = self.plan.prep
        cells = prep.adata[self.rows].copy()
        genes = cells.var_names[self.plan.cols].tolist()
        values = denoise(self.bundle, cells, DenoiseOptions(genes=genes, batch_size=self.opts.batch_size,
                                                            precision=self.opts.precision, seed=self.opts.seed),
                         device=self.dev, progress=False)[:, self.plan.cols]
        depth = np.asarray(cells.X.sum(axis=1)).ravel()
        return np.log1p(values.toarray() * (1e4 / np.maximum(depth, 1))[:, None]).astype(np.float32)

    def gene_embeddings(self) -> np.ndarray:
        """[G, d] the model's identity vectors of the network genes (gene encoder, before any cell is seen)."""
        tokens = torch.as_tensor(self.plan.prep.tokens[self.plan.cols], device=self.dev)
        with torch.no_grad():
            return self.bundle.model.gene_encoder(tokens).float().cpu().numpy()
