"""Multi-process training on CPU (gloo): Lightning's DDP with two ranks, and FSDP with two ranks.

Lightning launches the second rank by re-running the launching script, so each run goes through a small script
in a subprocess; ranks report the cells they saw and their final weights through files.

FSDP runs for real on CPU here: the package's own FSDP configuration (`pretrain._strategy`: one FSDP unit per
transformer Block, full state dicts, use_orig_params, FSDP's gradient clipping in the plan), wrapped by torch's
FullyShardedDataParallel, two gloo ranks, six optimiser steps and two checkpoints. Three things differ from a GPU
run, each patched in the test's script only and each a reason the package refuses FSDP on CPU:
- Lightning refuses FSDPStrategy with accelerator='cpu' (it checks the exact class): the script uses a subclass;
- torch's FSDP refuses a CPU module unless told device_id=cpu: the script's wrapper passes it;
- Lightning gathers full state dicts with offload_to_cpu=True, which on a CPU device frees the parameters' own
  storage and segfaults torch 2.13 while saving a checkpoint: the script gathers without the offload.
Not covered: NCCL, CUDA streams and memory, mixed precision under FSDP (the run is fp32), activation
checkpointing (configured, asserted below, not run) and anything at more than one node."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

from grnformer import InputError
from grnformer.bundle.checkpoint import load_bundle
from grnformer.data.corpus import datasets
from grnformer.data.corpus.build import build_corpus
from grnformer.data.corpus.labels import LabelSet
from grnformer.model.grnformer import Block
from grnformer.train.pretrain import _strategy

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from lightning.pytorch import Callback
    from grnformer.train.pretrain import build, load_config

    out, corpus, strategy = sys.argv[1:4]

    if strategy == "fsdp":  # FSDP on CPU ranks: the three patches of the module docstring
        import unittest.mock
        import lightning.pytorch.strategies.fsdp as lightning_fsdp
        from lightning.pytorch.strategies import FSDPStrategy
        from torch.distributed import fsdp as torch_fsdp
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp.api import FullOptimStateDictConfig
        import grnformer.train.pretrain as pretrain_module

        FSDP = torch_fsdp.FullyShardedDataParallel

        class OnCPU(FSDP):
            def __init__(self, module, *args, device_id=None, **kwargs):
                super().__init__(module, *args, device_id=device_id or torch.device("cpu"), **kwargs)

        class CPUFSDP(FSDPStrategy):
            def _setup_model(self, model):
                torch_fsdp.FullyShardedDataParallel = OnCPU
                try:
                    return super()._setup_model(model)
                finally:
                    torch_fsdp.FullyShardedDataParallel = FSDP

        package_strategy = pretrain_module._strategy

        def strategy_on_cpu(t, accelerator):
            with unittest.mock.patch("torch.cuda.is_available", lambda: True):
                s = package_strategy(t, "gpu")  # the package's FSDP configuration, as on GPUs
            s.__class__, s._process_group_backend = CPUFSDP, "gloo"
            return s

        def full_state_dict(module, world_size, rank0_only=True):
            return FSDP.state_dict_type(module, StateDictType.FULL_STATE_DICT,
                                        FullStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only),
                                        FullOptimStateDictConfig(offload_to_cpu=False, rank0_only=rank0_only))

        pretrain_module._strategy = strategy_on_cpu
        lightning_fsdp._get_full_state_dict_context = full_state_dict

    class Report(Callback):
        def __init__(self):
            self.cells, self.clips = [], 0

        def on_train_start(self, trainer, pl_module):
            if strategy == "fsdp":  # count the plan's FSDP gradient clipping (the global norm over shards)
                model = trainer.strategy.model
                real = model.clip_grad_norm_

                def counted(*args, **kwargs):
                    self.clips += 1
                    return real(*args, **kwargs)

                model.clip_grad_norm_ = counted

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.cells.append([trainer.current_epoch, batch["cell"].tolist()])

        def on_train_end(self, trainer, pl_module):
            rank = trainer.global_rank
            report = {"cells": self.cells, "world": trainer.world_size}
            if strategy == "ddp":
                torch.save(pl_module.model.state_dict(), f"{out}/weights{rank}.pt")
            else:
                from torch.distributed.fsdp import FullyShardedDataParallel
                wrapped = trainer.strategy.model
                report["strategy"] = type(trainer.strategy).__mro__[1].__name__
                report["fsdp_units"] = sum(isinstance(m, FullyShardedDataParallel) for m in wrapped.modules())
                report["local_numel"] = sum(p.numel() for p in wrapped.parameters())
                report["clip_calls"] = self.clips
            with open(f"{out}/cells{rank}.json", "w") as f:
                json.dump(report, f)

    cfg = load_config("cpu_demo", [
        f"data.corpus={corpus}", f"out_dir={out}", f"training.strategy={strategy}", "training.devices=2",
        "training.accelerator=cpu", "training.max_steps=6", "training.batch_size=8", "model.d_model=32",
        "model.n_layers=2", "model.n_heads=1", "model.context_length=48", "training.progress_bar=false",
        "data.cells_per_epoch=64", "data.sample_with_replacement=false", "training.val_every_n_steps=3",
        "training.val_batches=2", "training.checkpoint_every_n_steps=3", "data.val_fraction=0.1"])
    run = build(cfg, callbacks=[Report()])
    run.trainer.fit(run.plan, run.data)
""")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    retina = datasets.load("retina")
    path = tmp_path_factory.mktemp("ddp") / "corpus"
    build_corpus({"retina": retina}, path, label_set=LabelSet.fit(retina.obs))
    return path


def launch(tmp_path, corpus, strategy):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(corpus), strategy], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"cells{r}.json").read_text()) for r in (0, 1)]


def test_ddp_two_ranks_see_different_cells_and_stay_in_sync(tmp_path, corpus):
    reports = launch(tmp_path, corpus, "ddp")
    assert [r["world"] for r in reports] == [2, 2]
    steps = [r["cells"] for r in reports]
    assert len(steps[0]) == len(steps[1]) == 6
    for epoch, n in ((0, 32), (1, 16)):  # 64 distinct draws an epoch, split between the ranks: 4 steps of 8
        seen = [{c for e, batch in rank if e == epoch for c in batch} for rank in steps]
        assert len(seen[0]) == len(seen[1]) == n and not seen[0] & seen[1]
    w0, w1 = (torch.load(tmp_path / f"weights{r}.pt") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # gradients were averaged: identical updates
    final = load_bundle(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.equal(final.model.state_dict()[k], w0[k]) for k in w0)
    assert final.meta["training"]["global_step"] == 6
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt", "step-3.ckpt", "step-6.ckpt"]


def test_fsdp_two_cpu_ranks_train_shard_clip_and_save_a_bundle(tmp_path, corpus):
    """The package's FSDP configuration runs on two gloo ranks (see the module docstring for what is patched and
    what is not covered): each Block is an FSDP unit, each rank holds about half of the parameters, the ranks see
    different cells, gradients are clipped by FSDP's global norm every step, and the full checkpoint is a bundle
    whose weights moved from the start and are the same model shape."""
    reports = launch(tmp_path, corpus, "fsdp")
    assert [r["world"] for r in reports] == [2, 2] and {r["strategy"] for r in reports} == {"FSDPStrategy"}
    assert [r["fsdp_units"] for r in reports] == [3, 3]  # the root and one per Block (n_layers=2)
    final = load_bundle(tmp_path / "checkpoints" / "last.ckpt")
    total = sum(p.numel() for p in final.model.parameters())
    assert all(0.4 * total <= r["local_numel"] <= 0.6 * total for r in reports), (total, reports)
    assert [r["clip_calls"] for r in reports] == [6, 6]
    seen = [{c for epoch, batch in r["cells"] if epoch == 0 for c in batch} for r in reports]  # an epoch's draws
    assert len(reports[0]["cells"]) == len(reports[1]["cells"]) == 6 and not seen[0] & seen[1]
    assert final.meta["training"]["global_step"] == 6
    first = load_bundle(tmp_path / "checkpoints" / "step-3.ckpt")
    state, before = final.model.state_dict(), first.model.state_dict()
    assert state.keys() == before.keys() and all(torch.isfinite(v).all() for v in state.values())
    assert any(not torch.equal(state[k], before[k]) for k in state)  # steps 4-6 changed the weights


def test_strategies_are_configured_for_their_hardware(monkeypatch):
    """DDP skips broadcasting constant buffers; FSDP shards per transformer block and is refused on CPU."""
    ddp = _strategy({"strategy": "ddp"}, "cpu")
    assert isinstance(ddp, DDPStrategy) and ddp._ddp_kwargs == {"broadcast_buffers": False}
    fsdp = {"strategy": "fsdp", "activation_checkpointing": True}
    with pytest.raises(InputError, match="CUDA GPUs"):
        _strategy(fsdp, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    s = _strategy(fsdp, "gpu")
    assert isinstance(s, FSDPStrategy) and s._state_dict_type == "full"
    assert s.kwargs["auto_wrap_policy"]._module_classes == {Block} and s.kwargs["use_orig_params"]
    assert s._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes == {Block}
