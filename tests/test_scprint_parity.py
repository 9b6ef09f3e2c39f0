"""A scPRINT checkpoint converted by grnformer gives scPRINT's own outputs, and every task runs on it.

The fixtures (tests/data/scprint_small*: scPRINT 2.3.8's class; scprint_v164_small*: 1.6.4's, the code of the
published v1 checkpoints; both small preset, 2,025 genes; scprint_v2_small*: 2.3.8's class with its base_v2.yml
settings, d 48, 2 layers, 4 heads over 2 key/value heads, 6 cell-specific layers, depth in the decoder, log
normalisation, 1,025 genes) were made by scripts/make_scprint_fixture.py with scPRINT's own model class (random
weights) saved as a real Lightning checkpoint; the expected outputs are scPRINT's forward pass on 4 PBMC3k cells.
The fixtures ship in the repository: if one is missing, these tests fail.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from _tasks_support import pbmc

import grnformer as gf
from grnformer.api import import_scprint
from grnformer.bundle.checkpoint import load_bundle
from grnformer.interop.scprint_checkpoint import safe_load
from grnformer.model.scprint import ScPrintModel
from grnformer.model.scprint_v2 import ScPrintV2Model

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data"
# fixture -> (network, input normalisation, layers)
FIXTURES = {"scprint_small": (ScPrintModel, "sum", 4), "scprint_v164_small": (ScPrintModel, "sum", 4),
            "scprint_v2_small": (ScPrintV2Model, "log", 2)}
RTOL = 1e-4  # fp32, relative to each output's scale


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def fixture(request):
    stem = request.param
    return DATA / f"{stem}.ckpt", dict(np.load(DATA / f"{stem}_expected.npz")), FIXTURES[stem]


def _outputs(bundle, ckpt, expected):
    genes = safe_load(ckpt)["hyper_parameters"]["genes"]
    ids = [genes[i] for i in expected["input_genes"].ravel()]
    tokens = bundle.vocab.index(ids).reshape(expected["input_genes"].shape)
    assert (tokens >= 0).all()
    with torch.no_grad():
        return bundle.model(torch.from_numpy(tokens), torch.from_numpy(expected["input_counts"]),
                            torch.from_numpy(expected["input_depth"]), return_qk=True)


def _close(got, want, name):
    got = np.asarray(got.detach() if isinstance(got, torch.Tensor) else got, dtype=np.float32)
    assert got.shape == want.shape, name
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * float(np.abs(want).max()), err_msg=name)


def _check_parity(bundle, ckpt, expected):
    out = _outputs(bundle, ckpt, expected)
    _close(out.cell_emb, expected["cell_emb"], "cell embedding")
    _close(out.gene_out, expected["gene_embedding"], "gene outputs")
    _close(out.mu, expected["mean"], "ZINB mean")
    _close(out.theta, expected["disp"], "ZINB theta")
    _close(out.pi_logit, expected["zero_logits"], "ZINB pi (logit)")
    assert list(out.label_logits) == ["cell_type", "disease", "sex", "organism"]
    for name, logits in out.label_logits.items():
        _close(logits, expected[f"logits:{name}_ontology_term_id"], f"{name} logits")
    assert len(out.qk) == bundle.config.n_layers
    _close(torch.stack([q for q, _ in out.qk]), expected["q"], "queries")
    _close(torch.stack([k for _, k in out.qk]), expected["k"], "keys")


def test_converted_checkpoint_matches_scprint_outputs(fixture):
    ckpt, expected, (network, _, n_layers) = fixture
    bundle = load_bundle(ckpt)
    assert type(bundle.model) is network and bundle.config.n_layers == n_layers
    _check_parity(bundle, ckpt, expected)


def test_imported_bundle_matches_too(fixture, tmp_path):
    ckpt, expected, (network, normalization, _) = fixture
    out = tmp_path / "scprint_small.pt"
    import_scprint(ckpt, out)
    bundle = load_bundle(out)
    assert type(bundle.model) is network and bundle.meta["architecture"]["spec"]["normalization"] == normalization
    _check_parity(bundle, ckpt, expected)


def test_v2_layout_is_what_base_v2_builds():
    bundle = load_bundle(DATA / "scprint_v2_small.ckpt")
    spec, card = bundle.model.spec, bundle.meta["history"]["scprint_import"]
    assert (spec.layout, spec.n_heads_kv, spec.depth_in_decoder, spec.cell_layers) == ("v2", 2, True, 6)
    assert card["layout"] == "v2" and card["shapes"]["n_heads_kv"] == 2 and bundle.config.n_heads == 4
    assert any("never run" in s for s in card["not_carried_over"])  # the gene transformer's unused cross blocks


@pytest.mark.parametrize("stem", ["scprint_small", "scprint_v2_small"])
def test_every_task_runs_on_a_converted_model(stem):
    model = gf.load(DATA / f"{stem}.ckpt", device="cpu", progress=False)
    adata = pbmc(40)
    emb = model.embed(adata, seed=0)
    assert emb.shape == (40, model.bundle.config.d_model) and np.isfinite(emb).all()
    model.classify(adata, threshold=0.0)
    leaves = set(model.bundle.labels.encoders["cell_type"].leaves + model.bundle.labels.encoders["cell_type"].coarse)
    assert set(adata.obs["grnformer_cell_type"].astype(str)) <= leaves
    net = model.grn(adata, n_genes=30, seed=0, regulators="all", method="mean_qk")
    assert net.varp["GRN"].shape == (30, 30) and np.isfinite(net.varp["GRN"]).all() and net.varp["GRN"].max() > 0
    layer = model.denoise(adata, genes="hvg", n_genes=20)
    assert layer.shape == adata.shape and np.isfinite(layer.data).all()
    ko = model.perturb(adata, n_genes=20, max_regulators=2, regulators="all")
    assert "GRN_effect" in ko.varp
    with pytest.raises(gf.InputError, match="cannot be trained or adapted"):
        model.adapt(adata, steps=1, batch_size=8)
