"""In-silico knock-out networks on real PBMC cells with a tiny model: effects against a recomputation straight from
the model, the regulator budget, signed and absolute outputs, and the inputs the method refuses."""

import numpy as np
import pytest
import torch
from _tasks_support import pbmc, run_grn, tiny_bundle

from grnformer import InputError
from grnformer.data.input.prepare import prepare


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def cells():
    return pbmc(16, seed=3)


def recompute(bundle, adata, gene_ids, reg):
    """Mean over the cells expressing ``reg`` of log share_base - log share_ko, one cell at a time."""
    prepared, _ = prepare(adata, vocab=bundle.vocab)
    x = prepared[:, list(gene_ids)].X.toarray()
    depth = np.asarray(prepared.X.sum(axis=1)).ravel()
    tokens = torch.as_tensor(bundle.vocab.index(gene_ids))[None]
    r = list(gene_ids).index(reg)
    deltas = []
    with torch.no_grad():
        for i in np.flatnonzero(x[:, r] > 0):
            base_counts = torch.as_tensor(x[i], dtype=torch.float32)[None]
            ko_counts = base_counts.clone()
            ko_counts[0, r] = 0
            mu = [bundle.model(tokens, c, torch.tensor([d], dtype=torch.float32), scale=c.sum(-1)).mu[0].double()
                  for c, d in ((base_counts, depth[i]), (ko_counts, depth[i] - x[i, r]))]
            share = [torch.log(m.clamp_min(1e-8)) - torch.log(m.sum() - m[r]) for m in mu]
            d = (share[0] - share[1]).numpy()
            d[r] = 0
            deltas.append(d)
    return np.mean(deltas, axis=0)


def test_knockout_effects_match_the_model_cell_by_cell(bundle, cells):
    net = run_grn(bundle, cells, genes="hvg", n_genes=30, method="perturb", max_regulators=3, batch_size=5)
    effect = net.varp["GRN_effect"]
    hit = np.flatnonzero(np.abs(effect).sum(axis=1) > 0)
    assert len(hit) == 3 == net.uns["grn"]["n_regulators"]                       # the budget, and only it
    assert (np.abs(effect[np.setdiff1d(np.arange(30), hit)]) == 0).all()
    np.testing.assert_allclose(net.varp["GRN"], np.abs(effect))
    # cost: one baseline forward per batch of 5 cells, one per regulator and batch holding a cell that expresses it
    expr = prepare(cells, vocab=bundle.vocab)[0][:, list(net.var["gene_id"])].X.toarray() > 0
    per_batch = [expr[s:s + 5][:, hit].any(axis=0).sum() for s in range(0, 16, 5)]
    assert net.uns["grn"]["forwards"] == 4 + sum(per_batch)
    gene_ids = net.var["gene_id"].to_numpy()
    for r in hit:
        expected = recompute(bundle, cells, gene_ids, gene_ids[r])
        np.testing.assert_allclose(effect[r], expected, rtol=1e-3, atol=1e-5)
        expressing = int((prepare(cells, vocab=bundle.vocab)[0][:, gene_ids[r]].X.toarray() > 0).sum())
        assert net.var["n_cells_knocked_out"].iloc[r] == expressing


def test_tfs_are_knocked_out_first(bundle, cells):
    """With every row allowed, the budget goes to the TFs (most expressing cells first), then to other genes."""
    genes = ["LYZ", "CD74", "HLA-DRA", "SPI1", "CEBPB", "JUNB", "FOS", "CD3E", "B2M", "TMSB4X"]
    net = run_grn(bundle, cells, genes=genes, method="perturb", max_regulators=3, regulators="all")
    hit = np.flatnonzero(np.abs(net.varp["GRN_effect"]).sum(axis=1) > 0)
    tfs = net.var["is_tf"].to_numpy()
    expressed = np.asarray(net.X.sum(axis=0)).ravel() > 0
    assert len(hit) == 3 and (tfs & expressed).sum() >= 3 and tfs[hit].all()


def test_knockouts_beyond_one_context_run_in_chunks(bundle, cells):
    """80 genes, contexts of 64: every context holds the 3 knocked-out regulators and a chunk of the others, and
    each effect is the model's in the context where regulator and target met."""
    net = run_grn(bundle, cells, genes="hvg", n_genes=80, method="perturb", max_regulators=3, batch_size=16)
    info = net.uns["grn"]
    assert info["n_contexts_per_cell"] == 2 and info["n_regulators"] == 3
    effect, gene_ids = net.varp["GRN_effect"], net.var["gene_id"].to_numpy()
    hit = np.flatnonzero(np.abs(effect).sum(axis=1) > 0)
    others = np.setdiff1d(np.arange(80), hit)
    chunks = np.array_split(others, 2)
    for chunk in chunks:
        context = np.concatenate([hit, chunk])
        expected = recompute(bundle, cells, gene_ids[context], gene_ids[hit[0]])
        np.testing.assert_allclose(effect[hit[0], chunk], expected[len(hit):], rtol=1e-3, atol=1e-5)
    assert (np.abs(effect[hit[0], chunks[0]]) > 0).any() and (np.abs(effect[hit[0], chunks[1]]) > 0).any()


def test_perturb_refuses_what_it_cannot_do(bundle, cells):
    for bad, says in ((dict(genes="random_expressed", n_genes=20), "one shared context"),
                      (dict(genes="hvg", n_genes=80, max_regulators=70), "do not leave room"),
                      (dict(genes="hvg", n_genes=20, keep_heads=True), "reads no attention"),
                      (dict(genes="hvg", n_genes=20, max_regulators=0), "max_regulators")):
        with pytest.raises(InputError, match=says):
            run_grn(bundle, cells, method="perturb", **bad)


def test_cli_writes_perturb_and_stability_networks(cells, tmp_path):
    import anndata as ad

    from grnformer.cli import main

    src = tmp_path / "in.h5ad"
    cells.write_h5ad(src)
    assert main(["grn", "shipped", str(src), str(tmp_path / "ko.h5ad"), "--method", "perturb", "--genes", "hvg",
                 "--n-genes", "20", "--max-regulators", "2", "--device", "cpu"]) == 0
    ko = ad.read_h5ad(tmp_path / "ko.h5ad")
    assert ko.uns["grn"]["method"] == "perturb" and ko.uns["grn"]["n_regulators"] == 2
    assert (np.abs(ko.varp["GRN_effect"]).sum(axis=1) > 0).sum() == 2
    assert main(["grn", "shipped", str(src), str(tmp_path / "boot.h5ad"), "--genes", "hvg", "--n-genes", "20",
                 "--n-bootstrap", "4", "--filter", "stable", "--min-stability", "0.5", "--device", "cpu",
                 "--method", "mean_qk"]) == 0
    boot = ad.read_h5ad(tmp_path / "boot.h5ad")
    assert boot.varp["GRN_stability"].shape == (20, 20) and boot.uns["grn"]["filter"] == "stable"


def test_perturb_recovers_a_planted_activator_and_repressor(bundle, cells, monkeypatch):
    """A known answer: the model is wrapped so that T's predicted mean grows with R's count in the cell
    (× 1 + 2·log1p(R)) and U's falls with it (÷ the same). Knocking out R must then give R → T a positive effect
    and R → U a negative one, each the strongest of its sign in the network, and the other regulator's row no
    edge near that strength."""
    R, T, U, other = "CD74", "LYZ", "B2M", "HLA-DRA"
    genes = [R, T, U, other, "TMSB4X", "FTL", "CST3", "S100A9", "CD3D", "NKG7"]
    tok = {g: int(bundle.vocab.index([bundle.vocab.ids[list(bundle.vocab.symbols).index(g)]])[0]) for g in genes}
    plain = run_grn(bundle, cells, genes=genes, method="perturb", regulators=[R, other], max_regulators=2)
    real = bundle.model.forward

    def planted(genes_, counts, depth, **kwargs):
        out = real(genes_, counts, depth, **kwargs)
        factor = 1 + 2 * torch.log1p((counts * (genes_ == tok[R])).sum(-1, keepdim=True).float())
        mu = out.mu.clone()
        mu = torch.where(genes_ == tok[T], mu * factor, mu)
        out.mu = torch.where(genes_ == tok[U], mu / factor, mu)
        return out

    monkeypatch.setattr(bundle.model, "forward", planted)
    net = run_grn(bundle, cells, genes=genes, method="perturb", regulators=[R, other], max_regulators=2)
    effect, names = net.varp["GRN_effect"], list(net.var["symbol"])
    r, t, u, o = (names.index(g) for g in (R, T, U, other))
    assert net.var["n_cells_knocked_out"].iloc[r] >= 8             # most of the 16 cells express CD74
    assert effect[r, t] > 0.3 and effect[r, t] == effect.max()     # activator: the strongest positive edge
    assert effect[r, u] < -0.3 and effect[r, u] == effect.min()    # repressor: the strongest negative edge
    assert np.abs(effect[o]).max() < 0.1 * effect[r, t]           # nothing planted on the other regulator
    assert abs(plain.varp["GRN_effect"][r, t]) < 0.1 * effect[r, t]  # the edge comes from the plant


def test_auto_precision_keeps_knockouts_in_fp32_on_a_native_bf16_cpu(bundle, cells, monkeypatch):
    """Knock-out effects are differences of two near-equal passes, which bf16 rounding moves: 'auto' runs them in
    fp32 even where it runs the other tasks in bf16 (inference.device.uses_bf16)."""
    from grnformer.inference import device

    monkeypatch.setattr(device, "native_bf16_cpu", lambda: True)
    nets = {p: run_grn(bundle, cells, genes="hvg", n_genes=30, method="perturb", max_regulators=3, precision=p)
            for p in ("auto", "fp32", "bf16")}
    np.testing.assert_array_equal(nets["auto"].varp["GRN_effect"], nets["fp32"].varp["GRN_effect"])
    assert not np.array_equal(nets["bf16"].varp["GRN_effect"], nets["fp32"].varp["GRN_effect"])


def test_a_chunked_knockout_file_is_kept_on_a_re_run(bundle, cells, tmp_path, capsys):
    """120 genes, 30 regulators, contexts of 64: the knock-out run has 3 contexts a cell (30 regulators + 34
    others each) where an attention run would have 2; the re-run compares what the file records with the
    knock-out count, so it keeps the file instead of refusing it as made with other settings."""
    import anndata as ad

    from grnformer.networks.files import grn_file
    from grnformer.networks.grn_options import GRNOptions

    cells.write_h5ad(tmp_path / "cells.h5ad")
    opts = GRNOptions(genes="hvg", n_genes=120, method="perturb", max_regulators=30, regulators="all",
                      batch_size=16)
    [path] = grn_file(bundle, tmp_path / "cells.h5ad", tmp_path / "net.h5ad", opts, progress=False)
    assert ad.read_h5ad(path).uns["grn"]["n_contexts_per_cell"] == 3
    stamp = path.stat().st_mtime_ns
    grn_file(bundle, tmp_path / "cells.h5ad", tmp_path / "net.h5ad", opts, progress=True)
    assert "kept 1 network(s)" in capsys.readouterr().err and path.stat().st_mtime_ns == stamp
