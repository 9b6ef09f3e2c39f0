"""The demo as a new user meets it: the shipped model on real PBMC cells, a report that renders in a browser."""

import json
import re

import pytest
from _browser import rendered_dom

from grnformer.demo import run_demo
from grnformer.errors import InputError


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report = run_demo(out, max_cells=300, n_genes=40)
    assert report == out / "report.html"
    return out


def test_demo_outputs(demo_dir):
    import anndata as ad

    cells = ad.read_h5ad(demo_dir / "cells.h5ad")
    assert cells.obsm["X_grnformer"].shape[0] == 300
    assert "grnformer_cell_type" in cells.obs and "grnformer_denoised" in cells.layers
    rows = json.loads((demo_dir / "metrics.json").read_text())
    methods = {r["method"] for r in rows}
    assert {"grnformer (all cells)", "GENIE3", "Pearson"} <= methods
    assert {r["truth"] for r in rows} == {"omnipath", "encode_chip"}
    assert all(0 <= r["random_precision"] <= 1 for r in rows)
    assert (demo_dir / "networks" / "grnformer_all.csv").stat().st_size > 0
    assert (demo_dir / "explorer.html").stat().st_size > 0  # the network explorer, linked from the report
    assert 'href="explorer.html"' in (demo_dir / "report.html").read_text()
    page = (demo_dir / "report.html").read_text()
    assert f"grnformer demo --out {demo_dir} --n-genes 40 --max-cells 300" in page  # the call, as a command
    net = ad.read_h5ad(demo_dir / "networks" / "grnformer_all.h5ad")  # only TFs regulate, so only TFs lead
    tf = net.var["is_tf"].to_numpy()
    grn = net.varp["GRN"]
    assert tf.any() and (abs(grn[~tf]) if not hasattr(grn, "toarray") else abs(grn.toarray()[~tf])).sum() == 0
    assert "TFs that set the type apart" in page


def test_report_renders_every_figure_in_chromium(demo_dir, tmp_path):
    page = (demo_dir / "report.html").read_text()
    n_figures = len(re.findall(r"<img ", page))
    assert n_figures >= 4  # UMAP, network drawing, PR curves
    # A probe that records each image's decoded width once the page has loaded.
    dom = rendered_dom(page, tmp_path, "<script>window.addEventListener('load',()=>{document.body.setAttribute("
                                       "'data-widths',[...document.images].map(i=>i.naturalWidth).join(','));});"
                                       "</script>")
    widths = re.search(r'data-widths="([^"]*)"', dom)
    assert widths, "Chromium did not run the page"
    values = [int(w) for w in widths.group(1).split(",")]
    assert len(values) == n_figures and all(w > 0 for w in values)


def test_demo_rejects_bad_input_before_writing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="no such file"):
        run_demo(out, adata_path=str(tmp_path / "missing.h5ad"))
    assert not out.exists()
