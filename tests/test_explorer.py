"""The network explorer (`networks.explorer`, `grn --explorer`): a gene typed into the page in headless Chromium, its
tables read back and checked against the networks' h5ad files."""

import html
import json
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from _browser import probe_text
from _tasks_support import pbmc

import grnformer as gf
from grnformer.cli import main
from grnformer.data.genes import tf_symbols
from grnformer.networks.explorer import explorer_html, write_explorer

torch.set_num_threads(1)
TOP_K = 6


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    """`grnformer grn … --groupby --explorer` on PBMC cells split by LYZ (monocyte marker) counts."""
    tmp = tmp_path_factory.mktemp("explorer")
    adata = pbmc(200, seed=2)
    lyz = np.asarray(adata[:, "LYZ"].X.todense()).ravel()
    adata.obs["LYZ"] = np.where(lyz > np.median(lyz), "LYZ high", "LYZ low")
    adata.write_h5ad(tmp / "cells.h5ad")
    # network genes: the 40 most expressed TFs (regulator rows) and the 60 most expressed other genes
    total = pd.Series(np.asarray(adata.X.sum(axis=0)).ravel(), index=adata.var_names).sort_values(ascending=False)
    tfs = tf_symbols("human")
    genes = [g for g in total.index if g in tfs][:40] + [g for g in total.index if g not in tfs][:60]
    (tmp / "genes.txt").write_text("\n".join(genes))
    page = tmp / "explorer.html"
    assert main(["grn", "shipped", str(tmp / "cells.h5ad"), str(tmp / "nets"), "--groupby", "LYZ",
                 "--genes", str(tmp / "genes.txt"), "--method", "mean_qk", "--n-bootstrap", "3", "--device", "cpu",
                 "--explorer", str(page), "--explorer-top-k", str(TOP_K)]) == 0
    nets = {p.stem.replace("_", " "): ad.read_h5ad(p) for p in sorted((tmp / "nets").glob("*.h5ad"))}
    return page, nets


def _expected(net, gene: str, direction: str) -> dict[str, tuple[float, float]]:
    """From the h5ad: {partner: (score, stability)} of the edges the page keeps (each regulator's TOP_K)."""
    grn = np.asarray(net.varp["GRN"].toarray() if sp.issparse(net.varp["GRN"]) else net.varp["GRN"])
    stab = np.asarray(net.varp["GRN_stability"])
    names = net.var_names.tolist()
    g = names.index(gene)
    regulators = net.var["is_regulator" if "is_regulator" in net.var else "is_tf"].to_numpy(bool)
    out = {}
    for r in np.flatnonzero(regulators):
        row = grn[r].copy()
        row[r] = 0
        kept = [c for c in np.argsort(-row, kind="stable")[:TOP_K] if row[c] != 0]
        for c in kept:
            if direction == "regulator" and c == g:
                out[names[r]] = (grn[r, c], stab[r, c])
            if direction == "target" and r == g:
                out[names[c]] = (grn[r, c], stab[r, c])
    return out


def _run_page(page, tmp_path, steps: list[dict]) -> list[dict]:
    """Open the page in headless Chromium, type/click through ``steps`` and return each step's tables and CSV."""
    probe = """<script>window.addEventListener('load', () => {
      const steps = %s, shots = [];
      for (const s of steps) {
        if (s.type !== undefined) { const box = document.getElementById('gene'); box.value = '';
          for (const ch of s.type) { box.value += ch; box.dispatchEvent(new Event('input')); } }
        for (const id of ['net-a', 'net-b']) if (s[id] !== undefined) {
          const el = document.getElementById(id); el.value = s[id]; el.dispatchEvent(new Event('change')); }
        if (s.tf !== undefined) { const el = document.getElementById('tf-only');
          if (el.checked !== s.tf) el.click(); }
        shots.push({regulators: document.getElementById('regulators').outerHTML,
                    targets: document.getElementById('targets').outerHTML,
                    across: document.getElementById('across').outerHTML,
                    status: document.getElementById('status').textContent, csv: window.grnExplorer.csv()});
      }
      const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(shots);
      document.body.appendChild(pre); });</script>""" % json.dumps(steps)
    return json.loads(probe_text(page.read_text(), tmp_path, probe))


def _rows(table_html: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table_html, re.S)[1:]  # after the header
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
            for r in rows]


def _check(rows: list[list[str]], expected: dict, offset: int = 2):
    """Rows [partner, TF, score, stability, …] against {partner: (score, stability)} from the h5ad."""
    shown = {r[0]: r for r in rows if r[0] != "none among the kept edges"}
    assert set(shown) == set(expected)
    for name, (score, stability) in expected.items():
        assert float(shown[name][offset]) == pytest.approx(score, rel=1e-3)
        assert float(shown[name][offset + 1]) == pytest.approx(stability, abs=0.006)


def test_typed_gene_shows_the_h5ad_edges(grouped, tmp_path):
    page, nets = grouped
    (a, net_a), (b, net_b) = nets.items()
    # the regulator with the most regulators in network A (so both tables have rows), typed in lower case
    rows = net_a.var_names[net_a.var["is_regulator" if "is_regulator" in net_a.var else "is_tf"].to_numpy(bool)]
    counts = {g: len(_expected(net_a, g, "regulator")) for g in rows}
    gene = max(counts, key=counts.get)
    names = json.loads(re.search(r'id="explorer-data">(.*?)</script>', page.read_text(), re.S).group(1))
    order = [n["name"] for n in names["networks"]]
    ia, ib = str(order.index(a)), str(order.index(b))
    shots = _run_page(page, tmp_path, [{"type": gene.lower(), "net-a": ia},
                                       {"net-b": ib},
                                       {"tf": True},
                                       {"type": "NOTAGENE", "tf": False, "net-b": ""}])
    one, two, tfs, missing = shots
    regs, tgts = _rows(one["regulators"]), _rows(one["targets"])
    assert len(regs) >= 2 and len(tgts) == TOP_K and one["status"] == ""
    _check(regs, _expected(net_a, gene, "regulator"))
    _check(tgts, _expected(net_a, gene, "target"))
    assert [float(r[2]) for r in regs] == sorted((float(r[2]) for r in regs), reverse=True)
    # side by side: A's and B's columns, each checked against its own h5ad
    regs2 = _rows(two["regulators"])
    exp_a, exp_b = _expected(net_a, gene, "regulator"), _expected(net_b, gene, "regulator")
    _check([[r[0], r[1], r[2], r[3]] for r in regs2 if r[2] != "–"], exp_a)
    _check([[r[0], r[1], r[4], r[5]] for r in regs2 if r[4] != "–"], exp_b)
    assert {r[0] for r in regs2} == set(exp_a) | set(exp_b) and len(regs2[0]) == 6
    # every network in one table: each one's numbers of regulators and targets of the gene
    across = {r[0]: r for r in _rows(one["across"])}
    for name, net in ((a, net_a), (b, net_b)):
        assert across[name][1] == str(len(_expected(net, gene, "regulator")))
        assert across[name][3] == str(len(_expected(net, gene, "target")))
    # TFs only: the same rows, less the non-TFs
    is_tf = dict(zip(net_a.var_names, net_a.var["is_tf"]))
    assert {r[0] for r in _rows(tfs["regulators"])} - {"none among the kept edges"} == \
        {r[0] for r in regs2 if is_tf[r[0]]}
    # the CSV download holds the visible rows of both tables
    csv = pd.read_csv(pd.io.common.StringIO(two["csv"]))
    assert len(csv) == len(regs2) + len([r for r in _rows(two["targets"]) if r[0] != "none among the kept edges"])
    assert set(csv.loc[csv["direction"] == "regulator", "partner"]) == {r[0] for r in regs2}
    assert "No gene 'NOTAGENE'" in missing["status"]


def test_size_for_2000_genes_and_8_networks(tmp_path):
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(2000)]
    var = pd.DataFrame({"is_tf": rng.random(2000) < 0.1, "is_regulator": True}, index=genes)
    nets = {f"type {i}": ad.AnnData(var=var, varp={"GRN": rng.random((2000, 2000), dtype=np.float32),
                                                   "GRN_stability": rng.random((2000, 2000), dtype=np.float32)})
            for i in range(8)}
    page = write_explorer(nets, tmp_path / "big.html")
    size = page.stat().st_size
    assert size < 3_000_000, size  # 8 × 2,000 regulators × 10 targets
    print(f"2,000 genes × 8 networks, top 10: {size / 1e6:.2f} MB")


def test_bad_inputs_write_nothing(tmp_path):
    cells = tmp_path / "cells.h5ad"
    pbmc(20).write_h5ad(cells)
    assert main(["grn", "shipped", str(cells), str(tmp_path / "net.h5ad"), "--explorer",
                 str(tmp_path / "no" / "x.html")]) == 2
    assert main(["grn", "shipped", str(cells), str(tmp_path / "net.h5ad"), "--explorer",
                 str(tmp_path / "x.html"), "--explorer-top-k", "0"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.h5ad"]
    with pytest.raises(gf.InputError, match="at least one network"):
        explorer_html({})
    with pytest.raises(gf.InputError, match=r"varp\['GRN'\] is missing"):
        explorer_html({"x": ad.AnnData(np.ones((2, 2), dtype=np.float32))})
