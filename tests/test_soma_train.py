"""`grnformer pretrain` straight from a TileDB-SOMA experiment written from real retina cells (CELLxGENE labels):
filter, validation split, ranks, learning, checkpoint, exact resume, bad input."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_soma import _write
from test_train import TINY, Recorder, _read_metrics, crash_and_resume

from grnformer import InputError
from grnformer.bundle import load_bundle
from grnformer.data.corpus import datasets
from grnformer.data.corpus.labels import LABEL_CLASSES, LabelSet
from grnformer.data.corpus.soma import SomaCells
from grnformer.train.datamodule import CorpusDataModule
from grnformer.train.pretrain import build, load_config, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

RODS = "CL:0000604"  # the most frequent retina cell type, left out by the filter below
FILTER = f"is_primary_data == True and cell_type_ontology_term_id != '{RODS}'"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """(uri, AnnData written to it): 600 retina cells, soma_joinid = row of the AnnData."""
    adata = datasets.load("retina", prepared=True)[:600].copy()
    return _write(adata, tmp_path_factory.mktemp("soma"), "retina"), adata


def _soma(uri, *more):
    return [*TINY, "data.corpus=null", "data.sources=[]", f"data.soma.uri={uri}", f"data.soma.obs_filter={FILTER}",
            *more]


class Depths(Recorder):
    """Also each step's library sizes, to compare with the experiment's counts."""

    def __init__(self):
        super().__init__()
        self.depth = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.depth[trainer.global_step] = batch["depth"].tolist()


def test_pretrain_from_soma_learns_on_the_filtered_training_cells(experiment, tmp_path):
    uri, adata = experiment
    out = tmp_path / "run"
    rec = Depths()
    run = build(load_config("cpu_demo", _soma(uri, f"out_dir={out}", "training.max_steps=30", "training.lr=0.003",
                                              "training.warmup_steps=4", "training.val_every_n_steps=15",
                                              "model.dropout=0.0")), callbacks=[rec])
    run.trainer.fit(run.plan, run.data)
    cells = run.data.corpus
    selected = np.flatnonzero((adata.obs["cell_type_ontology_term_id"] != RODS).to_numpy())
    assert isinstance(cells, SomaCells) and np.array_equal(cells.joinids, selected)
    assert not (out / "corpus").exists()  # nothing copied out of the experiment
    # labels fitted on the selected cells, as a corpus of them would have them
    fitted = LabelSet.fit(adata.obs.iloc[selected])
    assert run.data.label_set.to_dict() == {c: e.to_dict() for c, e in fitted.encoders.items() if e.n_leaves}
    assert RODS not in run.data.label_set.encoders["cell_type"].leaves
    # every batch: training cells only, with the experiment's library sizes
    drawn = np.concatenate([rec.cells[s] for s in sorted(rec.cells)])
    assert np.isin(drawn, run.data.train_cells).all() and not np.isin(drawn, run.data.val_cells).any()
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    depths = np.concatenate([rec.depth[s] for s in sorted(rec.depth)])
    np.testing.assert_allclose(depths, totals[cells.joinids[drawn]], rtol=1e-6)
    # it learns
    losses = [rec.loss[s] for s in sorted(rec.loss)]
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    val = _read_metrics(out).dropna(subset=["val/loss"])["val/loss"].to_numpy()
    assert len(val) == 2 and val[1] < val[0]
    bundle = load_bundle(out / "checkpoints" / "last.ckpt")
    assert bundle.labels.to_dict() == run.data.label_set.to_dict()
    assert bundle.meta["run_config"]["data"]["soma"]["uri"] == uri


def test_two_ranks_share_each_epoch_and_validation_exactly(experiment):
    uri, _ = experiment
    cells = SomaCells(uri, label_set=LABEL_CLASSES, obs_filter=FILTER)
    half = -(-len(CorpusDataModule(cells, val_fraction=0.1, seed=3).train_cells) // 2)
    # batch sizes that divide an epoch per rank, so no batch is dropped (one X query per batch)
    for batch_size, balance in ((half, {"s": None}),
                                (50, {"s": 10.0, "replacement": False, "cells_per_epoch": 300})):
        dm = CorpusDataModule(cells, batch_size=batch_size, context_length=64, val_fraction=0.1, seed=3, **balance)
        for epoch in (0, 1):
            per_rank, val = [], []
            for rank in (0, 1):
                dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)  # what a 2-process launch sets
                loader = dm.train_dataloader()
                loader.batch_sampler.set_epoch(epoch)
                per_rank.append(torch.cat([b["cell"] for b in loader]).numpy())
                val.append(torch.cat([b["cell"] for b in dm.val_dataloader()]).numpy())
            assert len(per_rank[0]) == len(per_rank[1])  # DDP needs equal step counts
            both = np.concatenate(per_rank)
            if balance["s"] is None:  # every training cell, on one rank (one repeated to even out an odd count)
                assert set(both) == set(dm.train_cells) and len(both) - len(dm.train_cells) <= 1
            else:  # 300 distinct weighted draws, split between the ranks
                assert len(set(both)) == len(both) == 300 and np.isin(both, dm.train_cells).all()
            assert sorted(set(np.concatenate(val))) == sorted(dm.val_cells)
    # the split follows soma_joinid: the same cells are held out under another filter
    everything = CorpusDataModule(SomaCells(uri, label_set=LABEL_CLASSES), val_fraction=0.1, seed=3)
    held = set(everything.corpus.joinids[everything.val_cells])
    assert set(cells.joinids[dm.val_cells]) == held & set(cells.joinids)


def test_kill_and_resume_from_soma_is_exact_and_refuses_other_cells(experiment, tmp_path):
    uri, _ = experiment
    base = _soma(uri, "training.max_steps=8", "training.checkpoint_every_n_steps=4", "data.cells_per_epoch=24",
                 "training.val_every_n_steps=3", "training.warmup_steps=3", "training.lr=0.002")
    whole, _, again, _ = crash_and_resume(base, tmp_path)
    step4 = tmp_path / "b" / "checkpoints" / "step-4.ckpt"
    assert sorted(again.loss) == [5, 6, 7, 8]  # past an epoch boundary (3 batches) and a validation
    assert all(again.cells[s] == whole.cells[s] and again.loss[s] == whole.loss[s] for s in range(5, 9))
    # the same checkpoint over other cells (same labels, 40 cells fewer): refused before anything is written
    other = [*base, f"data.soma.obs_filter={FILTER} and soma_joinid < 560", f"out_dir={tmp_path / 'c'}"]
    with pytest.raises(InputError, match="other cells"):
        pretrain(load_config("cpu_demo", other), resume=step4)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("override, match", [
    ("data.sources=[retina]", "alternatives"),
    ("data.corpus=some/corpus", "alternatives"),
    ("data.soma.uri={tmp}/no_such_experiment", "could not open"),
    ("data.soma.obs_filter=cell_type ==== 3", "could not read obs"),
    ("data.soma.layer=normalized", "X layer"),
    ("data.soma.url=x", "data.soma.url"),
])
def test_bad_soma_settings_raise_before_any_output(experiment, tmp_path, override, match):
    uri, _ = experiment
    out = tmp_path / "run"
    overrides = [*_soma(uri), f"out_dir={out}", override.format(tmp=tmp_path)]
    with pytest.raises(InputError, match=match):
        pretrain(load_config("cpu_demo", overrides))
    assert not out.exists()
