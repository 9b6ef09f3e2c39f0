"""Multi-process training on CPU (gloo): Lightning's DDP with two ranks, and FSDP.

Lightning launches the second rank by re-running the launching script, so each run goes through a small script
in a subprocess; ranks report the cells they saw and their final weights through files.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

from grnformer.data import datasets
from grnformer.data.corpus_build import build_corpus
from grnformer.data.labels import LabelSet
from grnformer import InputError
from grnformer.model.grnformer import Block
from grnformer.train.checkpoint import load_bundle
from grnformer.train.pretrain import _strategy

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from lightning.pytorch import Callback
    from grnformer.train.pretrain import build, load_config

    out, corpus, strategy = sys.argv[1:4]

    class Report(Callback):
        def __init__(self):
            self.cells = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.cells.append([trainer.current_epoch, batch["cell"].tolist()])

        def on_train_end(self, trainer, pl_module):
            rank = trainer.global_rank
            with open(f"{out}/cells{rank}.json", "w") as f:
                json.dump({"cells": self.cells, "world": trainer.world_size}, f)
            if strategy == "ddp":
                torch.save(pl_module.model.state_dict(), f"{out}/weights{rank}.pt")

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
