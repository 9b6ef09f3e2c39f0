"""Self-supervised adaptation on real PBMC cells with a tiny model: a copy is trained (the original untouched),
its loss on held-out cells falls, the bundle file round-trips, grn --adapt-steps uses it, bad settings."""

import numpy as np
import pytest
import torch
from _tasks_support import pbmc, run_grn, tiny_bundle

from grnformer import InputError
from grnformer.bundle.checkpoint import describe_bundle, load_bundle
from grnformer.cli import main
from grnformer.tasks.adapt import adapt_bundle, adapt_file
from grnformer.tasks.task_options import AdaptOptions


@pytest.fixture(scope="module")
def cells():
    return pbmc(40, seed=11)


def test_adaptation_trains_a_copy_and_fits_held_out_cells(cells):
    bundle = tiny_bundle()
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    adapted, summary = adapt_bundle(bundle, cells, AdaptOptions(steps=40, lr=2e-3, batch_size=8), device="cpu")
    assert all(torch.equal(v, bundle.model.state_dict()[k]) for k, v in before.items())   # original untouched
    assert any(not torch.equal(v, adapted.model.state_dict()[k]) for k, v in before.items())
    assert summary["held_out_cells"] == 4 and summary["train_cells"] == 36
    assert summary["held_out_loss_after"] < summary["held_out_loss_before"]           # fits unseen cells too
    assert summary["train_loss_last"] < summary["train_loss_first"]
    assert adapted.meta["history"]["adaptation"] == summary and not adapted.model.training


def test_adapted_file_grn_adapt_steps_and_bad_settings(cells, tmp_path, capsys):
    bundle = tiny_bundle()
    src = tmp_path / "cells.h5ad"
    cells.write_h5ad(src)
    out = adapt_file(bundle, src, tmp_path / "adapted.pt", AdaptOptions(steps=3, batch_size=4), device="cpu")
    loaded = load_bundle(out)
    again, summary = adapt_bundle(bundle, cells, AdaptOptions(steps=3, batch_size=4), device="cpu")
    recorded = loaded.meta["history"]["adaptation"]  # the file says how it was made (seconds differ by run)
    assert {k: v for k, v in recorded.items() if k != "seconds"} == {k: v for k, v in summary.items()
                                                                     if k != "seconds"} and recorded["steps"] == 3
    assert "adapted         " in describe_bundle(loaded, out)
    for k, v in again.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k].float(), v.float())
    plain = run_grn(bundle, cells, genes="hvg", n_genes=20)
    net = run_grn(bundle, cells, genes="hvg", n_genes=20, adapt_steps=3)
    assert net.uns["grn"]["adapt_steps"] == 3 and not np.allclose(net.varp["GRN"], plain.varp["GRN"])
    with pytest.raises(InputError, match="steps >= 1"):
        adapt_bundle(bundle, cells, AdaptOptions(steps=0))
    with pytest.raises(InputError, match="adapt_steps"):
        run_grn(bundle, cells, genes="hvg", n_genes=20, adapt_steps=-1)
    code = main(["adapt", "shipped", str(src), str(tmp_path / "no" / "x.pt"), "--steps", "2"])
    assert code == 2 and "does not exist" in capsys.readouterr().err
