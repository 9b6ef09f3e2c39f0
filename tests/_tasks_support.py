"""Shared by the task tests: a tiny random-init GRNFormer bundle (real vocabulary, real retina label encoders)
and real PBMC3k / retina cells, built once per test session."""

from functools import lru_cache

import numpy as np
import torch
from anndata import AnnData

from grnformer.bundle.checkpoint import Bundle
from grnformer.data.corpus import datasets
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.genes import GeneVocab
from grnformer.model import GRNFormer, ModelConfig

CONTEXT = 64
# The test machine's 2 cores are shared: with a second OpenMP thread competing for a busy core, the tiny model's
# matmuls run ~50x slower than on one thread. One thread keeps these tests fast and their timing stable.
torch.set_num_threads(1)


@lru_cache(maxsize=1)
def _retina() -> AnnData:
    return datasets.load("retina")


@lru_cache(maxsize=1)
def _pbmc() -> AnnData:
    return datasets.load("pbmc3k")


def tiny_bundle(seed: int = 0) -> Bundle:
    """d_model 32, 2 layers × 2 heads, context 64 genes; classes cell_type (10 leaves + 1 coarse), sex, assay."""
    vocab = GeneVocab.default()
    labels = LabelSet.fit(_retina(), classes=("cell_type", "sex", "assay"))
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=len(vocab), n_positions=vocab.n_positions, d_model=32, n_layers=2, n_heads=2,
                         context_length=CONTEXT, label_sizes=labels.sizes, dropout=0.0)
    model = GRNFormer(config, torch.as_tensor(vocab.positions)).eval()
    return Bundle(model, config, vocab, labels, {})


def pbmc(n_cells: int = 60, seed: int = 0) -> AnnData:
    """A random subset of PBMC3k raw counts (symbols as var_names, as published)."""
    full = _pbmc()
    rows = np.sort(np.random.default_rng(seed).choice(full.n_obs, n_cells, replace=False))
    return full[rows].copy()


def retina(n_cells: int = 120, seed: int = 0) -> AnnData:
    """A random subset of the retina cells, with their CELLxGENE ontology labels."""
    full = _retina()
    rows = np.sort(np.random.default_rng(seed).choice(full.n_obs, n_cells, replace=False))
    return full[rows].copy()


def run_grn(bundle, adata, progress: bool = False, device=None, **options):
    """grn() with its options given as keywords (a test's shorthand for grn(bundle, adata, GRNOptions(...))).

    Every row may regulate, and the method is the attention read-out (mean_qk), unless the test says otherwise:
    the maths tests compare whole attention matrices; the defaults (TF rows, the protocol's method) have tests of
    their own."""
    from grnformer.networks.grn import GRNOptions, grn

    options.setdefault("regulators", "all")
    options.setdefault("method", "mean_qk")
    return grn(bundle, adata, GRNOptions(**options), device=device, progress=progress)


def run_grn_file(bundle, src, out, csv: bool = False, overwrite: bool = False, progress: bool = False, **options):
    """grn_file() with its network options given as keywords (every row may regulate, mean_qk, as in run_grn)."""
    from grnformer.networks.files import grn_file
    from grnformer.networks.grn import GRNOptions

    options.setdefault("regulators", "all")
    options.setdefault("method", "mean_qk")
    return grn_file(bundle, src, out, GRNOptions(**options), csv=csv, overwrite=overwrite, progress=progress)
