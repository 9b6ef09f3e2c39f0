"""Per-type networks of what sets each type apart (`grn --specificity`, `networks.specificity`) and the lineage-TF
truth they are scored against (`bench.lineage_tfs`), on real PBMC3k cells."""

from functools import lru_cache

import anndata as ad
import numpy as np
import pytest
from _tasks_support import _pbmc, pbmc, run_grn, run_grn_file, tiny_bundle
from scipy.stats import spearmanr

from grnformer import InputError
from grnformer.bench.lineage_tfs import GOAL_LINEAGES, lineage_tfs, lineages_of
from grnformer.data.corpus.silver import pbmc_cell_types
from grnformer.data.input.expression import log_per_10k
from grnformer.networks.specificity import group_part, regulator_strength, standardised, top_overlap

TFS = ["SPI1", "CEBPA", "CEBPB", "PAX5", "EBF1", "POU2AF1", "TBX21", "EOMES", "TCF7", "LEF1", "BCL11B", "IRF8",
       "JUND", "JUNB", "FOS", "KLF6", "RBPJ", "NFIC", "ZFX", "MLX", "HBP1", "STAT1", "IRF1", "NFKB1", "REL", "ETS1",
       "RUNX3", "IKZF1", "GATA3", "KLF2"]
MARKERS = ["CD3E", "CD3D", "IL7R", "CCR7", "LDHB", "LYZ", "S100A8", "S100A9", "CD14", "FCGR3A", "MS4A1", "CD79A",
           "CD79B", "CD74", "HLA-DRA", "NKG7", "GNLY", "PRF1", "GZMB", "KLRD1", "CST3", "FTL", "B2M"]


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@lru_cache(maxsize=1)
def _lineage_cells() -> ad.AnnData:
    """Every PBMC3k cell, pooled into lineages from its silver label (markers per k-means cluster)."""
    cells = _pbmc().copy()
    cells.obs["lineage"] = lineages_of(pbmc_cell_types(cells).astype(str))
    return cells


def _grn(bundle, cells, **kw):
    return run_grn(bundle, cells, genes=TFS + MARKERS, method="spearman", regulators="tfs", groupby="lineage",
                   groups=list(GOAL_LINEAGES), **kw)


def test_lineage_of_pools_sorted_and_silver_terms():
    assert lineages_of(["CL:0000900", "CL:0000815", "CL:0001054", "CL:0002396", "CL:0000236", "CL:0000623",
                        "CL:0000784", "CL:0008001", "CL:0000233", "not a term"]) == [
        "T cell", "T cell", "monocyte", "monocyte", "B cell", "NK cell", "plasmacytoid dendritic cell",
        "haematopoietic progenitor", "other", "other"]
    assert lineage_tfs("B cell") == ("PAX5", "EBF1", "POU2AF1")


def test_share_parts_sum_to_the_all_cells_spearman():
    """The decomposition 'share' rests on: over groups that partition the cells, within + offset offsetᵀ is the
    all-cells Spearman correlation (law of total covariance)."""
    cells = pbmc(300)
    genes = [g for g in MARKERS + TFS if g in set(cells.var_names)][:30]
    x = np.asarray(log_per_10k(cells.X)[:, cells.var_names.get_indexer(genes)].toarray())
    lyz = x[:, genes.index("LYZ")]
    cd3 = x[:, genes.index("CD3E")]
    groups = [lyz > 2, (lyz <= 2) & (cd3 > 0), (lyz <= 2) & (cd3 <= 0)]
    z = standardised(x, "spearman")
    total = sum(w + np.outer(d, d) for w, d in (group_part(z, m) for m in groups))
    rho = spearmanr(x).statistic
    keep = x.std(0) > 0
    assert np.allclose(total[np.ix_(keep, keep)], rho[np.ix_(keep, keep)], atol=1e-8)


def test_share_ranks_lineage_tfs_first_where_the_plain_networks_do_not(bundle):
    cells = _lineage_cells()
    plain, share = _grn(bundle, cells), _grn(bundle, cells, specificity="share")

    def ranks(nets):
        out = {}
        for g, net in nets.items():
            order = regulator_strength(net.varp["GRN"], net.var["is_regulator"].to_numpy(bool),
                                       net.var_names).index.tolist()
            out[g] = {tf: order.index(tf) + 1 for tf in lineage_tfs(g)}
        return out

    r_plain, r_share = ranks(plain), ranks(share)
    for lineage in GOAL_LINEAGES:  # every lineage TF among the 6 strongest of the 30 TF rows, in its own lineage
        assert max(r_share[lineage].values()) <= 6, (lineage, r_share[lineage])
    assert max(r_plain["B cell"].values()) > 10  # the plain network misses B cells' TFs (they barely vary there)
    tops = {g: regulator_strength(n.varp["GRN"], n.var["is_regulator"].to_numpy(bool), n.var_names).index[:5].tolist()
            for g, n in share.items()}
    assert top_overlap(tops["T cell"], tops["monocyte"]) == 0
    assert share["B cell"].uns["grn"]["specificity"] == "share" and plain["B cell"].uns["grn"]["specificity"] == "none"
    assert (np.asarray(share["B cell"].varp["GRN"])[~share["B cell"].var["is_regulator"].to_numpy(bool)] == 0).all()


def test_contrast_and_zscore_compare_each_group_with_the_others(bundle):
    cells = pbmc(240)
    cells.obs["part"] = np.array(["a", "b", "c"])[np.arange(cells.n_obs) % 3]
    kw = dict(genes=TFS + MARKERS, method="spearman", regulators="tfs", groupby="part")
    plain = {g: np.asarray(n.varp["GRN"]) for g, n in run_grn(bundle, cells, **kw).items()}
    contrast = run_grn(bundle, cells, specificity="contrast", **kw)
    zscore = run_grn(bundle, cells, specificity="zscore", **kw)
    rows = contrast["a"].var["is_regulator"].to_numpy(bool)
    off = ~np.eye(len(rows), dtype=bool)[rows]
    expected = plain["a"] - (plain["b"] + plain["c"]) / 2
    assert np.allclose(np.asarray(contrast["a"].varp["GRN"])[rows][off], expected[rows][off], atol=1e-5)
    total = sum(np.asarray(n.varp["GRN"]) for n in zscore.values())
    assert np.allclose(total, 0, atol=1e-4)  # z-scores over the groups sum to zero on every edge
    assert np.abs(np.asarray(zscore["a"].varp["GRN"])[rows][off]).max() > 1


def test_topk_filter_applies_to_the_specific_network(bundle):
    share = _grn(bundle, _lineage_cells(), specificity="share", filter="topk", top_k=3)
    grn_b = share["B cell"].varp["GRN"]
    assert grn_b.getnnz(axis=1).max() == 3 and share["B cell"].uns["grn"]["top_k"] == 3


@pytest.mark.parametrize("options, says", [
    (dict(specificity="share"), "needs groupby"),
    (dict(specificity="share", groupby="part", method="mean_qk"), "pearson or spearman"),
    (dict(specificity="zscore", groupby="part", filter="above_uniform"), "filter 'none' or 'topk'"),
    (dict(specificity="contrast", groupby="part", include_all=True), "include_all"),
    (dict(specificity="zscore", groupby="part", groups=["a"]), "at least two groups"),
    (dict(specificity="sharp", groupby="part"), "must be one of"),
])
def test_bad_specificity_inputs_raise_input_error_and_write_nothing(bundle, tmp_path, options, says):
    cells = pbmc(60)
    cells.obs["part"] = np.array(["a", "b"])[np.arange(cells.n_obs) % 2]
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    with pytest.raises(InputError, match=says):
        run_grn_file(bundle, src, tmp_path / "out", **{"method": "spearman", "genes": TFS + MARKERS, **options})
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_resumed_run_refuses_another_specificity(bundle, tmp_path):
    cells = pbmc(90)
    cells.obs["part"] = np.array(["a", "b", "c"])[np.arange(cells.n_obs) % 3]
    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    kw = dict(method="spearman", genes=TFS + MARKERS, groupby="part", regulators="tfs")
    run_grn_file(bundle, src, tmp_path / "nets", specificity="share", **kw)
    assert ad.read_h5ad(tmp_path / "nets" / "a.h5ad").uns["grn"]["specificity"] == "share"
    with pytest.raises(InputError, match="specificity: share there, zscore now"):
        run_grn_file(bundle, src, tmp_path / "nets", specificity="zscore", **kw)


def test_explorer_lists_the_regulators_that_set_each_type_apart(bundle, tmp_path):
    """The page's regulator table of a specific network: its regulators by out-strength over whole rows, as
    `regulator_strength` computes them from the h5ad (read back from headless Chromium)."""
    import re

    from _browser import probe_text

    from grnformer.networks.explorer import write_explorer

    share = _grn(bundle, _lineage_cells(), specificity="share")
    page = write_explorer({f"{g} (specific)": n for g, n in share.items()}, tmp_path / "explorer.html")
    i = list(share).index("B cell")
    probe = ("<script>window.addEventListener('load', () => { const s = document.getElementById('net-a'); "
             f"s.value = '{i}'; s.dispatchEvent(new Event('change')); const pre = document.createElement('pre'); "
             "pre.id = 'probe'; pre.textContent = document.getElementById('hubs-title').textContent + '\\n' + "
             "document.getElementById('hubs').outerHTML; document.body.appendChild(pre); });</script>")
    text = probe_text(page.read_text(), tmp_path, probe)
    assert text.startswith("Regulators that set B cell (specific) apart")
    rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
            for r in re.findall(r"<tr[^>]*>(.*?)</tr>", text, re.S)[1:]]
    net = share["B cell"]
    expected = regulator_strength(net.varp["GRN"], net.var["is_regulator"].to_numpy(bool), net.var_names)
    assert [r[0] for r in rows] == expected.index[:len(rows)].tolist() and len(rows) >= 10
    assert [float(r[2]) for r in rows[:5]] == pytest.approx(expected.iloc[:5].tolist(), rel=1e-3)
    assert {"PAX5", "EBF1", "POU2AF1"} <= {r[0] for r in rows[:6]}
