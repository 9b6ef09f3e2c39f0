"""The model object (`grnformer.load`): the CLI's tasks as methods, options forwarded into the tasks' dataclasses."""

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from _tasks_support import pbmc

import grnformer as gf
from grnformer.networks.grn import GRNOptions, grn
from grnformer.tasks.task_options import AdaptOptions, ClassifyOptions, DenoiseOptions, EmbedOptions

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return gf.load("shipped", device="cpu", progress=False)


def test_import_stays_light():
    code = "import sys, grnformer; assert 'torch' not in sys.modules and 'grnformer.api' not in sys.modules; " \
           "grnformer.load; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_info_is_what_the_cli_prints(model, capsys):
    from grnformer.cli import main

    assert main(["info", "shipped"]) == 0
    assert model.info() == capsys.readouterr().out.rstrip("\n")
    assert "context length  256 genes" in model.info()


def test_embed_and_classify_write_like_the_cli(model):
    adata = pbmc(60)
    emb = model.embed(adata, source="mean", seed=1)
    assert emb.shape == (60, model.bundle.config.d_model)
    assert adata.obsm["X_grnformer"].shape == (60, model.bundle.config.d_model)
    assert adata.uns["grnformer_embed"]["source"] == "mean" and adata.uns["grnformer_embed"]["seed"] == 1
    model.classify(adata, threshold=0.0)
    assert adata.obs["grnformer_cell_type"].astype(str).str.startswith("CL:").all()
    with pytest.raises(gf.InputError, match="unknown option.*sorce.*EmbedOptions has source"):
        model.embed(adata, sorce="mean")
    again = model.embed(adata, EmbedOptions(source="mean"), seed=1)  # an options object and keywords, as grn
    np.testing.assert_array_equal(again, emb)
    with pytest.raises(gf.InputError, match="threshold"):
        model.classify(adata, threshold=2.0)


def test_options_are_the_dataclass_fields(model):
    from grnformer.api import Model, options_from

    for cls, method in ((GRNOptions, Model.grn), (DenoiseOptions, Model.denoise), (AdaptOptions, Model.adapt),
                        (EmbedOptions, Model.embed), (ClassifyOptions, Model.classify)):
        fields = [f for f in dataclasses.fields(cls) if f.init]
        for f in fields:  # every field is a keyword, documented with the field's own help
            assert getattr(options_from(cls, None, {f.name: f.default}), f.name) == f.default
            assert f"{f.name} = {f.default!r}: {f.metadata['help']}" in method.__doc__
    base = GRNOptions(n_genes=30, seed=3)
    merged = options_from(GRNOptions, base, {"n_genes": 40})
    assert (merged.n_genes, merged.seed, base.n_genes) == (40, 3, 30)  # keywords win, the given object untouched
    with pytest.raises(gf.InputError, match="unknown option.*n_gene;"):
        options_from(GRNOptions, None, {"n_gene": 3})
    with pytest.raises(gf.InputError, match="must be a GRNOptions"):
        options_from(GRNOptions, DenoiseOptions())


def test_grn_and_perturb_are_the_tasks(model, tmp_path):
    adata = pbmc(80)
    net = model.grn(adata, n_genes=40, seed=2, regulators="all")
    same = grn(model.bundle, adata, GRNOptions(n_genes=40, seed=2, regulators="all"), device="cpu", progress=False)
    np.testing.assert_allclose(net.varp["GRN"], same.varp["GRN"], rtol=1e-5, atol=1e-7)
    table = model.export(net, tmp_path / "net.csv", format="scenic", top_k=3)
    assert len(pd.read_csv(table)) == 3 * net.n_vars
    page = model.explorer({"CL:0000236": net, "all": net}, tmp_path / "explorer.html").read_text()
    assert '"name":"B cell (CL:0000236)"' in page and '"name":"all cells"' in page
    ko = model.perturb(adata, n_genes=40, max_regulators=2)
    assert ko.uns["grn"]["method"] == "perturb" and "GRN_effect" in ko.varp
    with pytest.raises(gf.InputError, match="perturb runs method 'perturb'"):
        model.perturb(adata, method="mean_qk")
    layer = model.denoise(adata, genes="hvg", n_genes=20)
    assert adata.layers["grnformer_denoised"] is layer and layer.shape == adata.shape


def test_adapt_save_and_load_round_trip(model, tmp_path):
    adata = pbmc(40)
    before = {k: v.clone() for k, v in model.bundle.model.state_dict().items()}
    adapted = model.adapt(adata, steps=2, batch_size=8)
    assert adapted is not model and adapted.adaptation["steps"] == 2
    assert all(torch.equal(v, model.bundle.model.state_dict()[k]) for k, v in before.items())  # untouched
    path = adapted.save(tmp_path / "adapted.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapted.pt"]  # no .part left
    again = gf.load(path, device="cpu")
    assert again.info().splitlines()[1:] == adapted.info().splitlines()[1:]
    for k, v in again.bundle.model.state_dict().items():  # float16 on disk, as the shipped model was
        w = adapted.bundle.model.state_dict()[k]
        torch.testing.assert_close(v, w.half().float() if w.is_floating_point() else w, rtol=0, atol=0)
    with pytest.raises(gf.InputError, match="does not exist"):
        model.save(tmp_path / "missing" / "model.pt")
    with pytest.raises(gf.InputError, match="checkpoint not found"):
        gf.load(tmp_path / "nothing.pt")
