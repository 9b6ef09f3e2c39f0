"""The pre-training plan: GRNFormer's three tasks as one Lightning step, and the optimiser that trains them.

The model stays a pure `torch.nn` module (`self.model`); this class only decides what is computed per batch,
how losses are weighted and logged, and how the learning rate moves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
from lightning.pytorch import LightningModule
from torch import Tensor
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau

from grnformer.bundle.checkpoint import META_KEY, bundle_metadata
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.genes import GeneVocab
from grnformer.errors import InputError
from grnformer.model import GRNFormer, hierarchical_label_loss, zinb_nll
from grnformer.model.grnformer import ModelOutput
from grnformer.model.losses import LABEL_LOSSES

SCHEDULERS = ("cosine", "plateau", "constant")


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule.

    Linear warm-up over `warmup_steps`, then: "cosine" decays to `min_lr_ratio` x lr at `max_steps`; "plateau"
    multiplies the rate by `plateau_factor` after `plateau_patience` validations without improvement of val/loss;
    "constant" keeps it. Weight decay applies to the weights of linear layers and embeddings, not to biases and
    norms. `fused` runs AdamW's fused kernel (5% faster steps on CPU; fp32 only, as Lightning will not clip
    gradients of a fused optimiser under mixed precision).
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 1_000
    max_steps: int = 100_000
    scheduler: str = "cosine"
    min_lr_ratio: float = 0.1
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    fused: bool = False

    def __post_init__(self) -> None:
        try:  # YAML reads 1e-4 (no dot) as a string
            for name in ("lr", "weight_decay", "min_lr_ratio", "plateau_factor"):
                setattr(self, name, float(getattr(self, name)))
            for name in ("warmup_steps", "max_steps", "plateau_patience"):
                setattr(self, name, int(getattr(self, name)))
            self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
            self.fused = bool(self.fused)
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid optimiser settings: {exc}.") from exc
        problems = []
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0 (got {self.weight_decay})")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1) (got {list(self.betas)})")
        if self.warmup_steps < 0 or self.max_steps < 1:
            problems.append(f"need warmup_steps >= 0 and max_steps >= 1 (got {self.warmup_steps}, {self.max_steps})")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler must be one of {SCHEDULERS} (got '{self.scheduler}')")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 < self.plateau_factor < 1:
            problems.append("min_lr_ratio must be in [0, 1] and plateau_factor in (0, 1)")
        if problems:
            raise InputError("invalid optimiser settings: " + "; ".join(problems) + ".")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OptimConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise InputError(f"unknown optimiser settings: {unknown}.")
        return cls(**d)

    def lr_factor(self, step: int) -> float:
        """Multiplier of `lr` at optimiser step `step` (0-based) under warm-up + cosine / constant."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.scheduler != "cosine":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class PretrainPlan(LightningModule):
    """Denoising + bottleneck + hierarchical label losses on batches from `data.collate.Collator`.

    loss = w_denoise * ZINB NLL(target | model(down-sampled counts, original depth))
         + w_bottleneck * ZINB NLL(target | bottleneck pass from the cell and label tokens alone)
         + sum over label classes c of w_c * hierarchical label loss of c ("softmax" or "bce": `label_loss`).
    Both passes are told the original library size (depth token) and share out the target's counts over the
    context (ZINB scale): the model learns relative abundance within a context, magnitude from the depth.
    `loss_weights` keys: "denoise", "bottleneck" and label class names; missing ones weigh 1. A zero bottleneck
    weight skips the second pass; `bottleneck_fraction` < 1 runs it on that share of the batch's cells only (the
    second pass costs a whole forward: on CPU this is the cheapest way to keep the task and buy speed). Each term is
    logged as train/<name> and val/<name>, the sum as */loss.

    Losses are computed in fp32 under bf16 autocast (the ZINB parameters leave the model in fp32; the label
    logits are cast here). Dropout randomness is re-seeded at every step from (seed, global step, rank), so a run
    resumed from a checkpoint repeats the uninterrupted run exactly.
    """

    def __init__(self, model: GRNFormer, vocab: GeneVocab, label_set: LabelSet,
                 loss_weights: Mapping[str, float] | None = None, optim: OptimConfig | None = None,
                 seed: int = 0, run_config: Mapping[str, Any] | None = None, label_loss: str = "softmax",
                 bottleneck_fraction: float = 1.0):
        super().__init__()
        if not 0 < bottleneck_fraction <= 1:
            raise InputError(f"bottleneck_fraction must be in (0, 1]; got {bottleneck_fraction}.")
        self.bottleneck_fraction = float(bottleneck_fraction)
        if label_loss not in LABEL_LOSSES:
            raise InputError(f"label_loss must be one of {LABEL_LOSSES}; got '{label_loss}'.")
        self.label_loss = label_loss
        self.model = model
        self.optim = optim or OptimConfig()
        self.seed = int(seed)
        self.classes = list(label_set.encoders)
        if dict(label_set.sizes) != model.config.label_sizes:
            raise InputError(f"the label set's classes {dict(label_set.sizes)} do not match the model's "
                             f"{model.config.label_sizes}.")
        names = ["denoise", "bottleneck", *self.classes]
        unknown = sorted(set(loss_weights or {}) - set(names))
        if unknown:
            raise InputError(f"unknown loss weights {unknown}; known: {names}.")
        self.loss_weights = {n: float((loss_weights or {}).get(n, 1.0)) for n in names}
        for i, name in enumerate(self.classes):  # buffers, so they follow the model to its device
            desc = np.asarray(label_set.encoders[name].descendants, dtype=bool)
            desc = torch.from_numpy(desc).reshape(-1, model.config.label_sizes[name])
            self.register_buffer(f"descendants_{i}", desc, persistent=False)
        self._meta = bundle_metadata(model.config, vocab, label_set)
        self._meta["loss_weights"] = self.loss_weights
        self._meta["label_loss"] = label_loss
        self._meta["optim"] = asdict(self.optim)
        if run_config is not None:
            self._meta["run_config"] = dict(run_config)
        self._plateau_pending = False

    # -- steps --------------------------------------------------------------------------------------------
    def losses(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Every weighted term and their sum ("loss") for one collated batch."""
        genes, depth, target = batch["genes"], batch["depth"], batch["target"]
        scale = target.sum(dim=-1)
        out = self.model(genes, batch["counts"], depth, scale=scale)
        terms = {"denoise": zinb_nll(target, out.mu, out.theta, out.pi_logit).mean()}
        if self.loss_weights["bottleneck"]:
            n = max(1, round(self.bottleneck_fraction * genes.shape[0]))
            part = ModelOutput(out.cell_emb[:n], out.label_emb[:n], out.gene_out[:n], out.mu[:n], out.theta[:n],
                               out.pi_logit[:n], {}) if n < genes.shape[0] else out
            terms["bottleneck"] = zinb_nll(target[:n], *self.model.bottleneck(part, genes[:n], depth[:n],
                                                                              scale[:n])).mean()
        for i, name in enumerate(self.classes):
            terms[name] = hierarchical_label_loss(out.label_logits[name].float(), batch["labels"][:, i],
                                                  getattr(self, f"descendants_{i}"), kind=self.label_loss)
        terms["loss"] = sum(self.loss_weights[k] * v for k, v in terms.items())
        return terms

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.losses(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, on_step=True, on_epoch=False,
                      batch_size=batch["genes"].shape[0])
        self.log("loss", terms["loss"].detach(), prog_bar=True, logger=False, batch_size=batch["genes"].shape[0])
        return terms["loss"]

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        terms = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True, sync_dist=True,
                      batch_size=batch["genes"].shape[0])

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        torch.manual_seed((self.seed * 1_000_003 + self.global_step) * world + rank)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._plateau_pending = True

    # -- optimisation -------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        # By module type rather than by shape: under FSDP parameters are flat shards whose ndim means nothing.
        decay, no_decay = [], []
        for module in self.model.modules():
            for name, p in module.named_parameters(recurse=False):
                if p.requires_grad:
                    matrix = name == "weight" and isinstance(module, (nn.Linear, nn.Embedding))
                    (decay if matrix else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": self.optim.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=self.optim.lr, betas=self.optim.betas, fused=self.optim.fused)
        if self.optim.scheduler == "plateau":
            for group in opt.param_groups:
                group["lr"] = self.optim.lr * self.optim.lr_factor(0)
            sched = ReduceLROnPlateau(opt, mode="min", factor=self.optim.plateau_factor,
                                      patience=self.optim.plateau_patience)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "monitor": "val/loss",
                                                       "strict": False}}
        return {"optimizer": opt, "lr_scheduler": {"scheduler": LambdaLR(opt, self.optim.lr_factor),
                                                   "interval": "step"}}

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        upcoming = self.global_step + 1
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if self.optim.scheduler == "plateau" and upcoming <= self.optim.warmup_steps:
            for group in optimizer.param_groups:  # warm-up by hand: ReduceLROnPlateau has none of its own
                group["lr"] = self.optim.lr * self.optim.lr_factor(upcoming)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if isinstance(scheduler, ReduceLROnPlateau):  # once per validation, not once per step
            if self._plateau_pending and metric is not None:
                scheduler.step(metric)
            self._plateau_pending = False
        else:
            scheduler.step()

    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """FSDP shards gradients, so the global norm must come from FSDP's own clip_grad_norm_."""
        from lightning.pytorch.strategies import FSDPStrategy

        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy) \
                and gradient_clip_algorithm in (None, "norm"):
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
        else:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # -- checkpoints --------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make every Lightning checkpoint a self-contained bundle (see `checkpoint.load_bundle`)."""
        checkpoint[META_KEY] = {**self._meta, "training": {"global_step": self.global_step,
                                                           "epoch": self.current_epoch}}
