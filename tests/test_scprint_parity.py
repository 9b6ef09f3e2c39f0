"""A scPRINT checkpoint converted by grnformer gives scPRINT's own outputs, and every task runs on it.

The fixtures (tests/data/scprint_small*: scPRINT 2.3.8's class; scprint_v164_small*: 1.6.4's, the code of the
published v1 checkpoints) were made by scripts/make_scprint_fixture.py with scPRINT's own model class (random
weights, small preset, 2,025 genes) saved as a real Lightning checkpoint; the expected outputs are scPRINT's forward
pass on 4 PBMC3k cells. The fixtures ship in the repository: if one is missing, these tests fail.
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

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data"
CKPT = DATA / "scprint_small.ckpt"
RELEASES = {"2.3.8": "scprint_small", "1.6.4": "scprint_v164_small"}
RTOL = 1e-4  # fp32, relative to each output's scale


@pytest.fixture(scope="module", params=sorted(RELEASES))
def fixture(request):
    stem = RELEASES[request.param]
    return DATA / f"{stem}.ckpt", dict(np.load(DATA / f"{stem}_expected.npz"))


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
    assert len(out.qk) == bundle.config.n_layers == 4
    _close(torch.stack([q for q, _ in out.qk]), expected["q"], "queries")
    _close(torch.stack([k for _, k in out.qk]), expected["k"], "keys")


def test_converted_checkpoint_matches_scprint_outputs(fixture):
    ckpt, expected = fixture
    bundle = load_bundle(ckpt)
    assert isinstance(bundle.model, ScPrintModel)
    _check_parity(bundle, ckpt, expected)


def test_imported_bundle_matches_too(fixture, tmp_path):
    ckpt, expected = fixture
    out = tmp_path / "scprint_small.pt"
    import_scprint(ckpt, out)
    bundle = load_bundle(out)
    assert isinstance(bundle.model, ScPrintModel) and bundle.meta["architecture"]["spec"]["normalization"] == "sum"
    _check_parity(bundle, ckpt, expected)


def test_every_task_runs_on_a_converted_model():
    model = gf.load(CKPT, device="cpu", progress=False)
    adata = pbmc(40)
    emb = model.embed(adata, seed=0)
    assert emb.shape == (40, 128) and np.isfinite(emb).all()
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
