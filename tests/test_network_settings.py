"""Each network setting's role is declared once (networks/grn_options.py): what a network file records and what a
resumed run compares both derive from that declaration, so a setting that changes the network (fusion_weights
once was not) cannot be skipped by a resume."""

import dataclasses

import anndata as ad
import numpy as np
import pytest
from _tasks_support import pbmc, run_grn_file, tiny_bundle

import grnformer.networks.dispatch as dispatch_mod
from grnformer import InputError
from grnformer.networks.grn_options import GRNOptions


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "in.h5ad"
    pbmc(40).write_h5ad(path)
    return path


def test_fused_rerun_with_other_weights_refuses_the_old_network_and_overwrite_recomputes(bundle, src, tmp_path,
                                                                                        monkeypatch):
    out = tmp_path / "net.h5ad"
    kw = dict(method="fused", genes="hvg", n_genes=20, progress=False)
    run_grn_file(bundle, src, out, fusion_weights="attention:0.5,pearson:0.5", **kw)
    first = ad.read_h5ad(out).varp["GRN"]
    calls = []
    real = dispatch_mod.form_network
    monkeypatch.setattr(dispatch_mod, "form_network", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.raises(InputError, match="other settings .*fusion_weights.*--overwrite"):
        run_grn_file(bundle, src, out, fusion_weights="attention:0.1,pearson:0.9", **kw)
    assert calls == []
    run_grn_file(bundle, src, out, fusion_weights="attention:0.1,pearson:0.9", overwrite=True, **kw)
    net = ad.read_h5ad(out)
    assert calls == [1] and not np.allclose(net.varp["GRN"], first)
    assert net.uns["grn"]["fusion_weights"] == "attention:0.1,pearson:0.9"
    run_grn_file(bundle, src, out, fusion_weights="pearson:9,attention:1", **kw)  # the same weights, scaled
    assert calls == [1]


def test_other_context_length_is_not_resumed(bundle, src, tmp_path):
    out = tmp_path / "net.h5ad"
    kw = dict(genes="hvg", n_genes=20, progress=False)
    run_grn_file(bundle, src, out, **kw)
    with pytest.raises(InputError, match="context_length"):
        run_grn_file(bundle, src, out, context_length=32, **kw)


def test_every_option_has_one_role_and_each_network_setting_is_recorded_and_compared(bundle):
    from grnformer.networks.files import RESUME_KEYS
    from grnformer.networks.grn_options import NETWORK_SETTINGS, RUN_SETTINGS

    fields = [f.name for f in dataclasses.fields(GRNOptions) if f.init]
    assert sorted(NETWORK_SETTINGS + RUN_SETTINGS) == sorted(fields)
    assert set(NETWORK_SETTINGS) <= set(RESUME_KEYS)
    recorded = GRNOptions(method="fused").validate(bundle).recorded(bundle)
    assert list(recorded) == list(NETWORK_SETTINGS) and recorded["fusion_weights"] is not None
    assert GRNOptions(method="pearson").validate(bundle).recorded(bundle)["fusion_weights"] is None
