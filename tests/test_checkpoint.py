"""Model bundles and Lightning checkpoints: exact round trips, small half-precision files, clear errors."""

import dataclasses

import numpy as np
import pytest
import torch

from grnformer import InputError
from grnformer.bundle.checkpoint import (
    FORMAT_VERSION,
    describe,
    load_bundle,
    save_bundle,
)
from grnformer.data.corpus import datasets
from grnformer.data.corpus.build import build_corpus
from grnformer.data.corpus.labels import LabelSet
from grnformer.model import GRNFormer, ModelConfig
from grnformer.train.datamodule import CorpusDataModule
from grnformer.train.pretrain import build, load_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Retina cells (CELLxGENE labels) through the real corpus, and one real batch."""
    retina = datasets.load("retina")
    path = tmp_path_factory.mktemp("ckpt") / "corpus"
    build_corpus({"retina": retina}, path, label_set=LabelSet.fit(retina.obs))
    dm = CorpusDataModule(path, batch_size=6, context_length=48, val_fraction=0.1, downsample=0.6)
    return dm, next(iter(dm.val_dataloader()))


def tiny_model(dm, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=len(dm.vocab), n_positions=dm.vocab.n_positions, d_model=32, n_layers=2,
                      n_heads=2, context_length=48, label_sizes=dm.label_set.sizes, **overrides)
    emb = None
    if cfg.gene_embedding_dim:
        emb = torch.randn(len(dm.vocab), cfg.gene_embedding_dim)
        emb[::3] = 0  # genes without an external vector
    return GRNFormer(cfg, torch.as_tensor(dm.vocab.positions), emb)


def outputs(model, batch):
    model.eval()
    with torch.no_grad():
        out = model(batch["genes"], batch["counts"], batch["depth"])
        bott = model.bottleneck(out, batch["genes"], batch["depth"], batch["target"].sum(1))
    return [out.cell_emb, out.mu, out.theta, out.pi_logit, *out.label_logits.values(), *bott]


def test_bundle_round_trip_gives_identical_outputs(data, tmp_path):
    dm, batch = data
    model = tiny_model(dm, gene_embedding_dim=8)
    path = save_bundle(model, model.config, dm.vocab, dm.label_set, tmp_path / "model.pt")
    assert path.is_file() and not (tmp_path / "model.pt.part").exists()
    b = load_bundle(path)
    assert not b.model.training and b.config == model.config
    assert b.vocab.to_dict() == dm.vocab.to_dict() and b.labels.to_dict() == dm.label_set.to_dict()
    assert b.meta["versions"]["torch"] == torch.__version__ and b.meta["format_version"] == FORMAT_VERSION
    for x, y in zip(outputs(model, batch), outputs(b.model, batch)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_bundle_is_small_and_close(data, tmp_path, dtype):
    dm, batch = data
    model = tiny_model(dm)
    full = save_bundle(model, model.config, dm.vocab, dm.label_set, tmp_path / "full.pt")
    half = save_bundle(model, model.config, dm.vocab, dm.label_set, tmp_path / "half.pt", dtype=dtype)
    float_bytes = sum(v.numel() * 4 for v in model.state_dict().values() if v.is_floating_point())
    assert full.stat().st_size - half.stat().st_size > 0.45 * float_bytes  # every float stored in 2 bytes
    b = load_bundle(half)
    assert b.meta["dtype"] == dtype and all(p.dtype == torch.float32 for p in b.model.parameters())
    ref, got = outputs(model, batch), outputs(b.model, batch)
    assert torch.allclose(ref[1], got[1], rtol=0.05, atol=1e-2)  # ZINB means
    assert torch.allclose(ref[0], got[0], rtol=0.05, atol=0.05)  # cell embedding


def test_lightning_checkpoint_is_a_bundle(data, tmp_path):
    dm, batch = data
    cfg = load_config("cpu_demo", [f"data.corpus={dm.corpus.path}", f"out_dir={tmp_path}", "training.max_steps=2",
                                   "model.d_model=32", "model.n_layers=1", "model.n_heads=1",
                                   "model.context_length=48", "training.batch_size=6", "training.progress_bar=false",
                                   "data.val_fraction=0.1"])
    run = build(cfg)
    run.trainer.fit(run.plan, run.data)
    b = load_bundle(tmp_path / "checkpoints" / "last.ckpt")
    assert b.meta["training"]["global_step"] == 2 and b.meta["run_config"]["training"]["max_steps"] == 2
    for x, y in zip(outputs(run.plan.model, batch), outputs(b.model, batch)):
        assert torch.equal(x, y)


def test_describe_counts_trainable_and_frozen(data, tmp_path):
    dm, _ = data
    model = tiny_model(dm, gene_embedding_dim=8)
    path = save_bundle(model, model.config, dm.vocab, dm.label_set, tmp_path / "m.pt", dtype=torch.bfloat16)
    text = describe(path)
    frozen = len(dm.vocab) * 8
    assert model.get_num_params() - model.get_num_params(trainable_only=True) == frozen
    assert f"{model.get_num_params():,} ({model.get_num_params(trainable_only=True):,} trainable, {frozen:,} frozen)" \
        in text
    assert "context length  48 genes" in text and f"vocabulary      {len(dm.vocab):,} genes" in text
    assert "human 20,120" in text and "mouse 21,807" in text and "bfloat16" in text
    for name, n in dm.label_set.sizes.items():
        assert f"{name} {n}" in text


def _corrupt(tmp_path, dm, change):
    model = tiny_model(dm)
    path = save_bundle(model, model.config, dm.vocab, dm.label_set, tmp_path / "ok.pt")
    obj = torch.load(path, weights_only=True)
    change(obj)
    torch.save(obj, tmp_path / "bad.pt")
    return tmp_path / "bad.pt"


def _drop_weight(o):
    o["state_dict"].pop("ln_f.weight")


def _extra_weight(o):
    o["state_dict"]["expert.weight"] = torch.zeros(3)


def _short_vocab(o):
    o["vocab"] = {k: v[:-5] for k, v in o["vocab"].items()}


def _both_vocab(o):  # vocabulary and configuration agree with each other, not with the weights
    o["vocab"] = {k: v[:-5] for k, v in o["vocab"].items()}
    o["config"]["vocab_size"] -= 5


def _labels(o):
    o["labels"]["cell_type"]["leaves"] = o["labels"]["cell_type"]["leaves"][:-1]
    o["labels"]["cell_type"]["descendants"] = []
    o["labels"]["cell_type"]["coarse"] = []


@pytest.mark.parametrize("change, match", [
    (lambda o: o.update(format_version=FORMAT_VERSION + 1), "format version"),
    (lambda o: o.pop("vocab"), "'vocab' is missing"),
    (lambda o: o["config"].update(n_experts=4), "n_experts"),
    (_drop_weight, "missing weights ln_f.weight"),
    (_extra_weight, "unexpected weights expert.weight"),
    (_short_vocab, "vocabulary has"),
    (_both_vocab, "shapes differ"),
    (_labels, "label classes"),
    (lambda o: o.update(state_dict={}), "no model weights"),
])
def test_mismatched_checkpoint_raises_input_error(data, tmp_path, change, match):
    dm, _ = data
    with pytest.raises(InputError, match=match):
        load_bundle(_corrupt(tmp_path, dm, change))


def test_unreadable_or_foreign_files_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_bundle(tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(InputError, match="not a grnformer checkpoint: it is damaged"):
        load_bundle(junk)
    pickled = tmp_path / "pickled.pt"  # arbitrary Python objects: torch's weights_only refusal is not quoted
    torch.save({"model": torch.nn.Linear(2, 2)}, pickled)
    with pytest.raises(InputError, match="not a grnformer checkpoint") as err:
        load_bundle(pickled)
    assert "weights_only" not in str(err.value) and "arbitrary code" not in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    with pytest.raises(InputError, match="not a grnformer checkpoint"):
        load_bundle(foreign)
    torch.save([1, 2], foreign)
    with pytest.raises(InputError, match="holds a list"):
        describe(foreign)


def test_bundle_of_a_dataclass_config_mismatch_is_caught(data, tmp_path):
    dm, _ = data
    model = tiny_model(dm)
    wrong = dataclasses.replace(model.config, vocab_size=model.config.vocab_size + 1)
    with pytest.raises(InputError, match="vocabulary has"):
        save_bundle(model, wrong, dm.vocab, dm.label_set, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
