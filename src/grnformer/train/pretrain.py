"""`grnformer pretrain`: a YAML configuration in, a trained checkpoint out.

The configuration has four parts (see docs/TRAINING.md and the shipped files in grnformer/configs):
`model` (a preset and any ModelConfig field), `data` (a corpus directory, built from `sources` when missing,
or a TileDB-SOMA experiment read directly),
`training` (optimiser, schedule, precision, devices, strategy, checkpoints, validation), and top-level `seed`
and `out_dir`. Dotted overrides such as ``training.max_steps=50`` patch it from the command line.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import os
import time
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import anndata
import torch
import yaml
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    TQDMProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, Strategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from grnformer.atomic import write_text
from grnformer.bundle.checkpoint import read_checkpoint, resolve_checkpoint
from grnformer.data.corpus.build import build_corpus
from grnformer.data.corpus.labels import LABEL_CLASSES, LabelSet
from grnformer.data.corpus.soma import SomaCells
from grnformer.data.genes import GeneVocab
from grnformer.errors import InputError
from grnformer.model import GRNFormer, ModelConfig, load_gene_embeddings
from grnformer.model.grnformer import Block
from grnformer.train.datamodule import CorpusDataModule
from grnformer.train.plan import OptimConfig, PretrainPlan
from grnformer.train.warm_start import warm_start

_DM = {name: p.default for name, p in inspect.signature(CorpusDataModule).parameters.items()}  # its defaults
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "out_dir": "runs/grnformer",
    # preset plus any ModelConfig field (d_model, n_layers, n_heads, context_length, dropout, expr_encoding, …)
    "model": {"preset": "small", "gene_embeddings": None,
              "init_from": None,           # warm start: weights of an earlier bundle/checkpoint, fresh schedule
              "gene_init": None},          # coexpression: learned gene embeddings start from data.corpus.gene_prior
    "data": {
        "corpus": None,                 # corpus directory; built from `sources` when it does not exist
        "sources": [],                  # h5ad paths and/or named datasets (grnformer datasets)
        "silver_labels": True,          # named datasets without ontology labels get data.corpus.silver's labels
        # CorpusDataModule's defaults under their configuration names
        "val_fraction": _DM["val_fraction"],
        "gene_selection": _DM["mode"],
        "downsample": list(_DM["downsample"]),  # fraction of counts removed from the input (a value or a range)
        "balance_s": _DM["s"],          # LabelBalancedSampler constant s; null: no balancing, each cell once
        "sample_with_replacement": _DM["replacement"],  # false: disjoint balanced draws across ranks in an epoch
        "cells_per_epoch": _DM["cells_per_epoch"],  # balanced draws per epoch over all ranks (default: the cells)
        "num_workers": 4,
        "soma": {                       # train straight from a TileDB-SOMA experiment instead of a corpus
            "uri": None,                # local path or s3:// URI (e.g. a CELLxGENE Census experiment)
            "obs_filter": None,         # SOMA value filter on obs, e.g. "is_primary_data == True"
            "measurement": "RNA",
            "layer": "raw",             # X layer of raw counts
            "var_id_column": "feature_id",  # var column of Ensembl IDs
            "organism": None,           # for experiments whose obs and name do not say it
            "tiledb_config": {},        # e.g. {vfs.s3.region: us-west-2, vfs.s3.no_sign_request: true}
        },
    },
    "training": {
        # OptimConfig's fields and defaults: lr, weight_decay, betas, warmup_steps, max_steps,
        # scheduler (cosine | plateau | constant), min_lr_ratio, plateau_factor, plateau_patience,
        # fused (AdamW's fused kernel; fp32 only: Lightning refuses to clip its gradients under AMP)
        **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(OptimConfig()).items()},
        "batch_size": _DM["batch_size"],  # per process
        "accumulate_grad_batches": 1,
        "grad_clip": 1.0,
        "loss_weights": {},             # denoise / bottleneck / <label class>: weight (default 1)
        "label_loss": "softmax",        # softmax (cross-entropy over leaves) | bce (per-leaf, summed over leaves)
        "bottleneck_fraction": 1.0,     # share of each batch's cells that also run the bottleneck pass
        "precision": "auto",            # auto = bf16-mixed on GPU, 32 on CPU; or any Lightning precision
        "accelerator": "auto",
        "devices": "auto",
        "num_nodes": 1,
        "strategy": "auto",             # auto | ddp | fsdp
        "activation_checkpointing": False,  # FSDP only: recompute transformer blocks in the backward pass
        "val_every_n_steps": 1_000,
        "val_batches": 50,
        "checkpoint_every_n_steps": 1_000,
        "keep_checkpoints": -1,         # -1 keeps every periodic checkpoint, k keeps the k latest
        "log_every_n_steps": 50,
        "progress_bar": True,
        "stop_after_minutes": None,     # end this stretch after N wall-clock minutes (saved; resume continues)
    },
}
_OPTIM_KEYS = tuple(f.name for f in fields(OptimConfig))
# ModelConfig fields a configuration may set; the others come from the corpus and the embedding file
_MODEL_FIELDS = {f.name for f in fields(ModelConfig)} - {"vocab_size", "n_positions", "label_sizes",
                                                        "gene_embedding_dim"}
_FREE_FORM = ("training.loss_weights.", "data.soma.tiledb_config.")  # mappings whose keys are not checked


@dataclass
class Run:
    """Everything `pretrain` builds before fitting."""

    plan: PretrainPlan
    data: CorpusDataModule
    trainer: Trainer
    out_dir: Path
    config: dict[str, Any]


# ------------------------------------------------------------------------------------------------ configuration

def load_config(config: Mapping[str, Any] | str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The full configuration: DEFAULTS, then the file (path or shipped name) or dict, then the overrides."""
    if isinstance(config, Mapping):
        user = copy.deepcopy(dict(config))
    else:
        path = Path(config)
        if not path.is_file():
            shipped = resources.files("grnformer") / "configs" / f"{config}.yaml"
            if not shipped.is_file():
                names = sorted(p.name.removesuffix(".yaml") for p in (resources.files("grnformer") / "configs")
                               .iterdir() if p.name.endswith(".yaml"))
                raise InputError(f"config '{config}' is neither a file nor a shipped config ({', '.join(names)}).")
            path = Path(str(shipped))
        try:
            user = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(user, dict):
            raise InputError(f"{path} must hold a mapping of sections (model, data, training).")
    cfg = _merge(DEFAULTS, user, "")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"override '{item}' is not of the form section.key=value.")
        cfg = _merge(cfg, _nest(key.strip().split("."), yaml.safe_load(value)), "")
    return cfg


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    return {keys[0]: _nest(keys[1:], value) if len(keys) > 1 else value}


def _merge(base: Mapping[str, Any], update: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`update` over `base`; keys unknown to `base` are errors, except model fields and free-form mappings."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in base:
            if where == "model." and key in _MODEL_FIELDS or where in _FREE_FORM:
                out[key] = value
                continue
            known = sorted(set(base) | (_MODEL_FIELDS if where == "model." else set()))
            raise InputError(f"unknown configuration key '{path}'; known here: {', '.join(known)}.")
        if isinstance(base[key], Mapping):
            if not isinstance(value, Mapping):
                raise InputError(f"configuration key '{path}' must be a mapping, got {value!r}.")
            out[key] = _merge(base[key], value, f"{path}.")
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------------------ corpus

def _global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var):
            return int(os.environ[var])
    return 0


def data_source(data: Mapping[str, Any], out_dir: Path) -> Path | SomaCells:
    """What the data module reads: the SOMA experiment `data.soma.uri` (opened here, label encoders fitted on
    its selected cells), or else the corpus directory of `ensure_corpus`."""
    soma = dict(data["soma"])
    if not soma["uri"]:
        return ensure_corpus(data, out_dir)
    if data["corpus"] or data["sources"]:
        raise InputError(f"data.soma.uri and data.corpus / data.sources are alternatives, got soma.uri="
                         f"{soma['uri']!r} with corpus={data['corpus']!r}, sources={data['sources']!r}: to train "
                         "from the experiment, add data.corpus=null data.sources=[] (the shipped configs set both).")
    return SomaCells(str(soma.pop("uri")), label_set=LABEL_CLASSES, **soma)


def ensure_corpus(data: Mapping[str, Any], out_dir: Path) -> Path:
    """The corpus directory, built from `data.sources` by rank 0 when missing (other ranks wait for it)."""
    corpus = Path(data["corpus"]) if data["corpus"] else out_dir / "corpus"
    if (corpus / "manifest.json").is_file():
        return corpus
    if not data["sources"]:
        raise InputError(f"corpus '{corpus}' does not exist and data.sources is empty: name h5ad files or "
                         "datasets to build it from.")
    if _global_rank() != 0:
        while not (corpus / "manifest.json").is_file():
            time.sleep(5)
        return corpus
    sources, obs = _sources(data["sources"], data["silver_labels"])
    build_corpus(sources, corpus, vocab=GeneVocab.default(), label_set=LabelSet.fit(obs))
    return corpus


def _sources(items: Sequence[str], silver: bool) -> tuple[dict[str, Any], list[Any]]:
    """Named datasets loaded (with silver labels when asked), paths kept for chunked reading; and every obs."""
    from grnformer.data.corpus import datasets
    from grnformer.data.corpus import silver as silver_labels

    sources: dict[str, Any] = {}
    obs = []
    for item in items:
        path = Path(item)
        if path.is_file():
            backed = anndata.read_h5ad(path, backed="r")
            obs.append(backed.obs.copy())
            backed.file.close()
            sources[path.stem] = path
        else:
            adata = datasets.load(str(item))
            if silver:
                adata = silver_labels.add_training_labels(str(item), adata)
            sources[str(item)] = adata
            obs.append(adata.obs)
    return sources, obs


# -------------------------------------------------------------------------------------------------- the run

def _precision(t: Mapping[str, Any], accelerator: str) -> str:
    if str(t["precision"]) != "auto":
        return str(t["precision"])
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


def _strategy(t: Mapping[str, Any], accelerator: str) -> str | Strategy:
    name = str(t["strategy"])
    if name == "fsdp" and (accelerator == "cpu" or not torch.cuda.is_available()):
        raise InputError("training.strategy=fsdp needs CUDA GPUs: Lightning refuses its FSDP strategy on CPU, and "
                         "torch's FSDP on CPU needs changes this package does not make (tests/test_ddp.py lists "
                         "them); use training.strategy=ddp on CPU.")
    if name == "ddp":  # model buffers are constants: no need to broadcast them every step
        return DDPStrategy(broadcast_buffers=False)
    if name == "fsdp":
        return FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full",
                            activation_checkpointing_policy={Block} if t["activation_checkpointing"] else None)
    if name != "auto":
        raise InputError(f"training.strategy must be auto, ddp or fsdp (got '{name}').")
    return "auto"


def _loggers(out_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(out_dir, name="logs")]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(out_dir, name="tensorboard"))
    return loggers


class _FinalCheckpoint(Callback):
    """Save `path` when training ends, whatever the step (periodic checkpoints only fire every N steps)."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_end(self, trainer: Trainer, pl_module: Any) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)


class _StopAfter(Callback):
    """End training after `minutes` of wall time in this process: one stretch of a longer, resumable run. The
    schedule keeps its horizon (max_steps); the final checkpoint lets the next stretch resume exactly."""

    def __init__(self, minutes: float):
        self.deadline = time.monotonic() + 60.0 * minutes

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if time.monotonic() >= self.deadline:
            trainer.should_stop = True


def build(cfg: Mapping[str, Any], callbacks: Sequence[Callback] = (), resuming: bool = False) -> Run:
    """Corpus, data module, model, plan and Trainer for a full configuration (from `load_config`). With
    ``resuming`` the co-expression prior is skipped: the checkpoint about to be loaded replaces those weights."""
    cfg = dict(cfg)
    out_dir = Path(cfg["out_dir"])
    d, t, m = cfg["data"], cfg["training"], dict(cfg["model"])
    accelerator = str(t["accelerator"])
    strategy = _strategy(t, accelerator)
    seed_everything(int(cfg["seed"]), workers=True, verbose=False)
    data = CorpusDataModule(
        data_source(d, out_dir), batch_size=int(t["batch_size"]),
        context_length=int(m.get("context_length", ModelConfig.context_length)),
        val_fraction=float(d["val_fraction"]), s=None if d["balance_s"] is None else float(d["balance_s"]),
        replacement=bool(d["sample_with_replacement"]), downsample=d["downsample"],
        num_workers=int(d["num_workers"]), seed=int(cfg["seed"]), mode=str(d["gene_selection"]),
        cells_per_epoch=d["cells_per_epoch"])
    vocab = data.vocab
    gene_init, init_from = m.pop("gene_init"), m.pop("init_from")
    embeddings = None
    if m.pop("gene_embeddings"):
        embeddings, _ = load_gene_embeddings(cfg["model"]["gene_embeddings"], vocab.ids, vocab.symbols)
        m["gene_embedding_dim"] = embeddings.shape[1]
    config = ModelConfig.preset(m.pop("preset"), vocab_size=len(vocab), n_positions=vocab.n_positions,
                                label_sizes=data.label_set.sizes, **m)
    model = GRNFormer(config, torch.as_tensor(vocab.positions), embeddings)
    if gene_init not in (None, "coexpression"):
        raise InputError(f"model.gene_init must be null or coexpression, got {gene_init!r}.")
    if gene_init == "coexpression" and not resuming:  # a resumed run's weights come from its checkpoint
        cfg["gene_init"] = _coexpression_init(model, data)
    if init_from:
        cfg["warm_start"] = warm_start(model, vocab, data.label_set, resolve_checkpoint(init_from))
    optim = OptimConfig.from_dict({k: t[k] for k in _OPTIM_KEYS})
    plan = PretrainPlan(model, vocab, data.label_set, loss_weights=t["loss_weights"], optim=optim,
                        seed=int(cfg["seed"]), run_config=cfg, label_loss=str(t["label_loss"]),
                        bottleneck_fraction=float(t["bottleneck_fraction"]))
    every = int(t["checkpoint_every_n_steps"])
    checkpoints = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="step-{step}", every_n_train_steps=every,
                                  save_top_k=int(t["keep_checkpoints"]), monitor="step", mode="max",
                                  save_last=True, auto_insert_metric_name=False)
    try:
        trainer = _trainer(t, out_dir, accelerator, strategy, [checkpoints, *callbacks], bool(d["val_fraction"]))
    except (ValueError, MisconfigurationException) as exc:  # every Trainer argument comes from the config
        raise InputError(f"invalid training settings: {exc}") from exc
    return Run(plan, data, trainer, out_dir, cfg)


def _coexpression_init(model: GRNFormer, data: CorpusDataModule) -> dict[str, int]:
    """Start the learned gene embeddings from the corpus's co-expression (genes it barely holds stay random)."""
    from grnformer.data.corpus.gene_prior import coexpression_embedding

    table = model.gene_encoder.learned.weight
    vectors, found = coexpression_embedding(data.corpus, data.train_cells, table.shape[0], table.shape[1])
    with torch.no_grad():
        table[torch.from_numpy(found)] = torch.from_numpy(vectors[found])
    return {"n_genes_with_prior": int(found.sum())}


def _trainer(t: Mapping[str, Any], out_dir: Path, accelerator: str, strategy: str | Strategy,
             callbacks: list[Callback], validate: bool) -> Trainer:
    return Trainer(
        max_steps=int(t["max_steps"]), accelerator=accelerator, devices=t["devices"],
        num_nodes=int(t["num_nodes"]), strategy=strategy, precision=_precision(t, accelerator),
        gradient_clip_val=t["grad_clip"] or None, accumulate_grad_batches=int(t["accumulate_grad_batches"]),
        val_check_interval=int(t["val_every_n_steps"]), check_val_every_n_epoch=None,
        limit_val_batches=int(t["val_batches"]) if validate else 0, num_sanity_val_steps=0,
        log_every_n_steps=int(t["log_every_n_steps"]), logger=_loggers(out_dir),
        callbacks=[*callbacks, _FinalCheckpoint(out_dir / "checkpoints" / "last.ckpt"), LearningRateMonitor("step")]
        + ([TQDMProgressBar(refresh_rate=10)] if t["progress_bar"] else [])
        + ([_StopAfter(float(t["stop_after_minutes"]))] if t["stop_after_minutes"] else []),
        enable_progress_bar=bool(t["progress_bar"]), use_distributed_sampler=False, default_root_dir=out_dir,
    )


def pretrain(config: Mapping[str, Any] | str | Path, overrides: Sequence[str] = (),
             resume: str | Path | None = None) -> Path:
    """Pre-train from a YAML file, a shipped config name (small, medium, large, cpu_demo) or a dict.

    `resume` continues exactly from a checkpoint of the same configuration (optimiser, schedule, data position
    and random streams included); the model it describes must be the one this configuration builds. Returns the
    path of the final checkpoint (`<out_dir>/checkpoints/last.ckpt`), loadable by `checkpoint.load_bundle`.
    """
    cfg = load_config(config, overrides)
    run = build(cfg, resuming=resume is not None)
    if resume is not None:
        _check_resume(Path(resume), run.plan.model.config)
        run.data.check_resume(resume)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    if run.trainer.global_rank == 0:
        write_text(run.out_dir / "config.yaml", yaml.safe_dump(run.config, sort_keys=False))
    run.trainer.fit(run.plan, run.data, ckpt_path=str(resume) if resume else None)
    return run.out_dir / "checkpoints" / "last.ckpt"


def _check_resume(path: Path, config: ModelConfig) -> None:
    """A run resumes only into the model it saved: same shapes, vocabulary size and label classes."""
    meta, _ = read_checkpoint(path)
    if "training" not in meta:
        raise InputError(f"{path} is a model bundle, not a training checkpoint: resume needs a .ckpt written by "
                         "grnformer pretrain.")
    saved, now = ModelConfig.from_dict(meta["config"]).to_dict(), config.to_dict()
    changed = [f"{k}: {saved[k]} in the checkpoint, {now[k]} now" for k in now if saved[k] != now[k]]
    if changed:
        raise InputError(f"cannot resume from {path}: this configuration builds a different model "
                         f"({'; '.join(changed)}).")
