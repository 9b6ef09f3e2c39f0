"""Pre-training on CPU with real cells through the real corpus: configuration, losses, data order, exact resume."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch import Callback

from grnformer import InputError
from grnformer.cli import main
from grnformer.data.corpus import datasets, silver
from grnformer.data.corpus.build import build_corpus
from grnformer.data.corpus.labels import LabelSet
from grnformer.train.datamodule import CorpusDataModule, split_cells
from grnformer.train.plan import OptimConfig
from grnformer.train.pretrain import build, load_config, pretrain

TINY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=1", "model.context_length=64",
        "training.batch_size=8", "training.progress_bar=false", "training.log_every_n_steps=1",
        "data.num_workers=0", "data.val_fraction=0.1", "training.val_batches=2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def real_corpus(path):
    """Human retina (CELLxGENE labels) + 400 mouse pancreas cells (author clusters as cell types)."""
    retina = datasets.load("retina")
    pancreas = silver.add_training_labels("mouse_pancreas_e155", datasets.load("mouse_pancreas_e155")[:400])
    sources = {"retina": retina, "pancreas": pancreas}
    build_corpus(sources, path, label_set=LabelSet.fit([a.obs for a in sources.values()]))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return real_corpus(tmp_path_factory.mktemp("corpus") / "corpus")


class Recorder(Callback):
    """Training loss and the corpus cells of every step."""

    def __init__(self):
        self.loss, self.cells = {}, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.loss[trainer.global_step] = float(outputs["loss"])
        self.cells[trainer.global_step] = batch["cell"].tolist()


class Crash(Callback):
    """Kills the run when a given step is about to start (a stand-in for a pre-empted job)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


# ------------------------------------------------------------------------------------------- configuration

def test_config_files_defaults_and_overrides(tmp_path):
    for name in ("small", "medium", "large", "cpu_demo", "census"):
        cfg = load_config(name)
        assert cfg["training"]["lr"] == pytest.approx(1e-4 if name != "cpu_demo" else 1e-3)
    census = load_config("census")["data"]  # a SOMA source alone: no corpus or sources to null by hand
    assert census["corpus"] is None and census["sources"] == [] and census["soma"]["uri"].startswith("s3://")
    assert census["soma"]["tiledb_config"]["vfs.s3.no_sign_request"] is True
    cfg = load_config("small")
    assert (cfg["model"]["preset"], cfg["training"]["precision"], cfg["training"]["weight_decay"]) == \
        ("small", "auto", 0.01)
    cfg = load_config("cpu_demo", ["training.max_steps=7", "data.downsample=[0.5, 0.6]", "model.dropout=0.0",
                                   "training.loss_weights.bottleneck=0.5", "out_dir=runs/x"])
    assert cfg["training"]["max_steps"] == 7 and cfg["data"]["downsample"] == [0.5, 0.6]
    assert cfg["model"]["dropout"] == 0.0 and cfg["training"]["loss_weights"] == {"bottleneck": 0.5}
    path = tmp_path / "cfg.yaml"
    path.write_text("model: {preset: medium}\ntraining: {max_steps: 3}\n")
    assert load_config(path)["model"]["preset"] == "medium" and load_config(path)["training"]["batch_size"] == 64


@pytest.mark.parametrize("config, overrides, match", [
    ("cpu_demo", ["training.max_stepz=3"], "training.max_stepz"),
    ("cpu_demo", ["model.width=3"], "model.width"),
    ("cpu_demo", ["training.lr"], "section.key=value"),
    ("cpu_demo", ["training=3"], "must be a mapping"),
    ("no_such_config", [], "shipped config"),
])
def test_bad_config_raises_input_error(config, overrides, match):
    with pytest.raises(InputError, match=match):
        load_config(config, overrides)


def test_bad_settings_raise_before_training(corpus, tmp_path):
    for override, match in [("training.strategy=horovod", "strategy"), ("training.scheduler=step", "scheduler"),
                            ("training.loss_weights.celltype=2", "unknown loss weights"),
                            ("model.n_heads=3", "divisible"), ("training.strategy=fsdp", "CUDA GPUs"),
                            ("training.precision=fp12", "invalid training settings"),
                            ("training.lr=fast", "optimiser settings"),
                            ("training.label_loss=focal", "label_loss")]:
        cfg = load_config("cpu_demo", TINY + [f"data.corpus={corpus}", f"out_dir={tmp_path}", override])
        with pytest.raises(InputError, match=match):
            build(cfg)
    with pytest.raises(InputError, match="does not exist"):
        build(load_config("cpu_demo", TINY + [f"data.corpus={tmp_path / 'none'}", "data.sources=[]"]))
    run = build(load_config("cpu_demo", TINY + [f"data.corpus={corpus}", f"out_dir={tmp_path}",
                                                "training.label_loss=bce"]))
    assert run.plan.label_loss == "bce" and run.plan._meta["label_loss"] == "bce"


def test_schedule_warmup_then_cosine():
    opt = OptimConfig(warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert [opt.lr_factor(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert opt.lr_factor(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert opt.lr_factor(110) == pytest.approx(0.1) and opt.lr_factor(500) == pytest.approx(0.1)
    assert OptimConfig(warmup_steps=0, scheduler="constant").lr_factor(1000) == 1.0


def test_optimiser_defaults_and_betas_come_from_optim_config():
    """pretrain's training defaults are OptimConfig's (one owner); betas can be set from YAML and are checked."""
    from grnformer.train.pretrain import _OPTIM_KEYS, load_config

    cfg = load_config("cpu_demo", ["training.betas=[0.9, 0.95]"])
    opt = OptimConfig.from_dict({k: cfg["training"][k] for k in _OPTIM_KEYS})
    assert opt.betas == (0.9, 0.95) and opt.warmup_steps == 20            # the file's value
    defaults = load_config({})["training"]
    assert {k: defaults[k] for k in ("warmup_steps", "max_steps")} == {"warmup_steps": OptimConfig().warmup_steps,
                                                                       "max_steps": OptimConfig().max_steps}
    with pytest.raises(InputError, match="betas"):
        OptimConfig(betas=[0.9])


# ------------------------------------------------------------------------------------------------- data

def test_validation_split_is_fixed_and_disjoint():
    train, val = split_cells(10_000, 0.05, seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 10_000
    assert 400 < len(val) < 600
    assert np.array_equal(split_cells(10_000, 0.05, seed=3)[1], val)
    assert not np.array_equal(split_cells(10_000, 0.05, seed=4)[1], val)
    # appending cells keeps every existing cell on its side
    assert np.array_equal(split_cells(12_000, 0.05, seed=3)[1][:len(val)], val)


def test_batches_are_real_cells_with_denoising_and_labels(corpus):
    dm = CorpusDataModule(corpus, batch_size=16, context_length=64, val_fraction=0.1, downsample=0.6, seed=0)
    assert list(dm.label_set.classes) == [c for c, n in dm.label_set.sizes.items() if n > 0]
    batch = next(iter(dm.train_dataloader()))
    cells = batch["cell"].numpy()
    assert not np.isin(cells, dm.val_cells).any()
    obs = dm.corpus.obs.set_index("cell").loc[cells]
    assert np.allclose(batch["depth"].numpy(), obs["n_counts"].to_numpy())      # original library size
    assert (batch["input_depth"] < 0.6 * batch["depth"]).all()                  # 60% of counts removed
    assert (batch["counts"] <= batch["target"]).all() and batch["target"].sum() > batch["counts"].sum()
    col = list(dm.corpus.label_classes).index("cell_type")
    assert np.array_equal(batch["labels"][:, 0].numpy(), dm.corpus.label_codes[cells, col])
    val = [b["cell"] for b in dm.val_dataloader()]
    assert sorted(torch.cat(val).tolist()) == sorted(dm.val_cells.tolist())
    again = [b["counts"] for b in dm.val_dataloader()]                          # same validation batches
    assert all(torch.equal(a, b["counts"]) for a, b in zip(again, dm.val_dataloader()))


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_mid_epoch_with_identical_batches(corpus, workers):
    dm = CorpusDataModule(corpus, batch_size=8, context_length=64, val_fraction=0.1, downsample=(0.5, 0.7),
                          cells_per_epoch=48, num_workers=workers, seed=1)
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(2)
    full = list(loader)
    assert len(full) == 6
    it = iter(loader)
    for _ in range(3):
        next(it)
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": 3}
    fresh = dm.train_dataloader()
    fresh.load_state_dict(state)
    fresh.batch_sampler.set_epoch(2)
    rest = list(fresh)
    assert len(rest) == 3
    for a, b in zip(full[3:], rest):
        assert all(torch.equal(a[k], b[k]) for k in a)
    fresh.batch_sampler.set_epoch(3)  # the saved position belongs to epoch 2 only
    assert len(list(fresh)) == 6


def test_corpus_is_built_from_files_and_named_datasets(tmp_path):
    retina = datasets.load("retina")[:200].copy()
    retina.write_h5ad(tmp_path / "retina200.h5ad")
    cfg = load_config("cpu_demo", TINY + [f"out_dir={tmp_path / 'run'}", "data.corpus=null",
                                          f"data.sources=[{tmp_path / 'retina200.h5ad'}, semrau_mesc]"])
    run = build(cfg)
    corpus = run.data.corpus
    assert corpus.path == tmp_path / "run" / "corpus"
    per_source = corpus.obs["dataset"].value_counts()
    assert per_source["retina200"] == 200 and 300 < per_source["semrau_mesc"] <= 384
    assert set(corpus.obs["organism"]) == {"NCBITaxon:9606", "NCBITaxon:10090"}
    sizes = run.plan.model.config.label_sizes
    assert sizes["cell_type"] == retina.obs["cell_type_ontology_term_id"].nunique()  # every observed term a leaf
    assert sizes["organism"] == 2
    assert build(cfg).data.corpus.manifest["created"] == corpus.manifest["created"]  # built once, then reused


# --------------------------------------------------------------------------------------------- training

def _read_metrics(out_dir):
    return pd.read_csv(next((out_dir / "logs").glob("version_*/metrics.csv")))


def test_pretrain_cli_learns_logs_every_loss_and_writes_checkpoints(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pretrain", "--config", "cpu_demo", *TINY, f"data.corpus={corpus}", f"out_dir={out}",
            "training.max_steps=40", "training.warmup_steps=4", "training.lr=0.003", "training.val_every_n_steps=20",
            "training.checkpoint_every_n_steps=15", "training.keep_checkpoints=1", "model.dropout=0.0"]
    assert main(args) == 0
    assert f"checkpoint: {out / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.ckpt"))
    assert ckpts == ["last.ckpt", "step-30.ckpt"]  # keep_checkpoints=1: the latest periodic one, and the final
    assert (out / "config.yaml").is_file()
    m = _read_metrics(out)
    terms = ["denoise", "bottleneck", "cell_type", "organism", "loss"]
    for t in terms:
        assert m[f"train/{t}"].notna().sum() == 40 and m[f"val/{t}"].notna().sum() == 2
    train = m.dropna(subset=["train/loss"]).sort_values("step")
    for t in ("denoise", "bottleneck", "loss"):
        first, last = train[f"train/{t}"].iloc[:5].mean(), train[f"train/{t}"].iloc[-5:].mean()
        assert last < 0.8 * first, (t, first, last)
    val = m.dropna(subset=["val/loss"])["val/loss"].to_numpy()
    assert val[1] < val[0]
    lrs = m.dropna(subset=["lr-AdamW/pg1"]).sort_values("step")["lr-AdamW/pg1"].to_numpy()
    assert lrs[0] == pytest.approx(0.003 / 4) and lrs.max() == pytest.approx(0.003) and lrs[-1] < 0.003
    assert main(["info", str(out / "checkpoints" / "last.ckpt")]) == 0
    info = capsys.readouterr().out
    assert "context length  64 genes" in info and "step 40" in info and "cell_type" in info


def crash_and_resume(base: list[str], tmp_path) -> tuple:
    """Train 8 steps uninterrupted (out_dir a), then crash at step 6 (out_dir b) and resume b from step-4.ckpt.
    Returns (uninterrupted recorder, its run, resumed recorder, resumed run)."""
    whole = Recorder()
    ref = build(load_config("cpu_demo", base + [f"out_dir={tmp_path / 'a'}"]), callbacks=[whole])
    ref.trainer.fit(ref.plan, ref.data)
    crashed = build(load_config("cpu_demo", base + [f"out_dir={tmp_path / 'b'}"]), callbacks=[Crash(6)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.trainer.fit(crashed.plan, crashed.data)
    again = Recorder()
    resumed = build(load_config("cpu_demo", base + [f"out_dir={tmp_path / 'b'}"]), callbacks=[again])
    resumed.trainer.fit(resumed.plan, resumed.data, ckpt_path=str(tmp_path / "b" / "checkpoints" / "step-4.ckpt"))
    return whole, ref, again, resumed


def test_kill_and_resume_reproduces_the_loss_curve_exactly(corpus, tmp_path):
    """8 steps over 3-batch epochs; a crash at step 6 and a resume from step 4 (mid-epoch) must retrace the same
    losses, across the next epoch boundary and a validation."""
    base = TINY + [f"data.corpus={corpus}", "training.max_steps=8", "training.checkpoint_every_n_steps=4",
                   "data.cells_per_epoch=24", "training.val_every_n_steps=3", "data.downsample=[0.5, 0.7]",
                   "training.warmup_steps=3", "training.lr=0.002"]
    whole, ref, resumed_rec, resumed = crash_and_resume(base, tmp_path)
    assert sorted(resumed_rec.loss) == list(range(5, 9))
    for step in range(5, 9):
        assert resumed_rec.cells[step] == whole.cells[step]
        assert resumed_rec.loss[step] == whole.loss[step], step
    assert len(set(whole.loss.values())) == 8 and all(math.isfinite(v) for v in whole.loss.values())
    a, b = ref.plan.model.state_dict(), resumed.plan.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the same through the command line: `grnformer pretrain --resume` (logged step k-1 = state after step k)
    assert main(["pretrain", "--config", "cpu_demo", *base, f"out_dir={tmp_path / 'd'}",
                 "--resume", str(tmp_path / "b" / "checkpoints" / "step-4.ckpt")]) == 0
    logged = _read_metrics(tmp_path / "d").dropna(subset=["train/loss"]).set_index("step")["train/loss"]
    # (CSV keeps ~16 digits: equal far below float32 resolution, i.e. the same float32 losses)
    assert [logged[k - 1] for k in range(5, 9)] == pytest.approx([whole.loss[k] for k in range(5, 9)], rel=1e-12)
    with pytest.raises(InputError, match="d_model: 32 in the checkpoint, 48 now"):  # resume into another model
        pretrain(load_config("cpu_demo", base + [f"out_dir={tmp_path / 'c'}", "model.d_model=48"]),
                 resume=tmp_path / "b" / "checkpoints" / "step-4.ckpt")


def test_plateau_scheduler_warms_up_then_holds(corpus, tmp_path):
    cfg = load_config("cpu_demo", TINY + [f"data.corpus={corpus}", f"out_dir={tmp_path}", "training.max_steps=8",
                                          "training.scheduler=plateau", "training.warmup_steps=4",
                                          "training.lr=0.001", "training.val_every_n_steps=4",
                                          "training.checkpoint_every_n_steps=100"])
    run = build(cfg)
    run.trainer.fit(run.plan, run.data)
    m = _read_metrics(tmp_path)
    lrs = m.dropna(subset=["lr-AdamW/pg1"]).sort_values("step")["lr-AdamW/pg1"].to_numpy()
    assert lrs[:4] == pytest.approx([0.00025, 0.0005, 0.00075, 0.001])
    assert lrs[4:] == pytest.approx([0.001] * 4)
    assert run.trainer.lr_scheduler_configs[0].scheduler.__class__.__name__ == "ReduceLROnPlateau"


def test_plateau_scheduler_cuts_the_rate_when_validation_stalls(corpus, tmp_path):
    """(lr=1e-7 is also how YAML hands over a string.) At lr 1e-7 the validation loss cannot improve by
    ReduceLROnPlateau's 1e-4 relative threshold: with patience 0, every validation after the first halves the rate (and
    only validations do)."""
    cfg = load_config("cpu_demo", TINY + [f"data.corpus={corpus}", f"out_dir={tmp_path}", "training.max_steps=7",
                                          "training.scheduler=plateau", "training.warmup_steps=0",
                                          "training.plateau_patience=0", "training.lr=1e-7",
                                          "training.val_every_n_steps=2", "training.checkpoint_every_n_steps=100"])
    run = build(cfg)
    run.trainer.fit(run.plan, run.data)
    lrs = _read_metrics(tmp_path).dropna(subset=["lr-AdamW/pg1"]).sort_values("step")["lr-AdamW/pg1"].to_numpy()
    assert lrs == pytest.approx([1e-7] * 4 + [5e-8] * 2 + [2.5e-8])  # validations after steps 2, 4 and 6
