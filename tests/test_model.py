"""GRNFormer: shapes, the ZINB mean contract, q/k fidelity, bottleneck, frozen embeddings, learning on real counts."""

import dataclasses
import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from grnformer import InputError
from grnformer.data.resources import resource_path
from grnformer.model import (
    GRNFormer,
    ModelConfig,
    hierarchical_label_loss,
    load_gene_embeddings,
    zinb_nll,
)

VOCAB, N_POS, LABELS = 300, 40, {"cell_type": 7, "sex": 2}


def _model(preset="small", seed=0, gene_embeddings=None, **overrides) -> GRNFormer:
    torch.manual_seed(seed)
    cfg = ModelConfig.preset(preset, vocab_size=VOCAB, n_positions=N_POS, label_sizes=LABELS, **overrides)
    positions = torch.randint(0, N_POS, (VOCAB,), generator=torch.Generator().manual_seed(1))
    return GRNFormer(cfg, positions, gene_embeddings)


def _batch(B=3, L=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    genes = torch.stack([torch.randperm(VOCAB, generator=g)[:L] for _ in range(B)])
    counts = torch.poisson(torch.rand(B, L, generator=g) * 4, generator=g)
    depth = counts.sum(1) * 3 + 10
    return genes, counts, depth


# ---------------------------------------------------------------------------------------------- config

def test_presets_and_round_trip():
    for name, (d, n, h) in {"small": (128, 4, 2), "medium": (256, 8, 4), "large": (512, 16, 8)}.items():
        cfg = ModelConfig.preset(name, vocab_size=10, n_positions=3, label_sizes=LABELS)
        assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.context_length) == (d, n, h, 64, 2200)
        back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg and list(back.label_sizes) == list(LABELS)
    assert ModelConfig.preset("small", vocab_size=10, n_positions=3, d_model=64).d_model == 64


@pytest.mark.parametrize("bad", [dict(d_model=100, n_heads=3), dict(expr_encoding="binned"), dict(dropout=1.5),
                                 dict(label_sizes={"sex": 0}), dict(n_layers=0)])
def test_bad_config_raises_input_error(bad):
    with pytest.raises(InputError):
        ModelConfig(vocab_size=10, n_positions=3, **bad)


def test_unknown_preset_or_field_raises_input_error():
    with pytest.raises(InputError, match="preset"):
        ModelConfig.preset("huge", vocab_size=10, n_positions=3)
    with pytest.raises(InputError, match="n_expert"):
        ModelConfig.from_dict({"vocab_size": 10, "n_positions": 3, "n_expert": 4})


# ------------------------------------------------------------------------------------------- forward

@pytest.mark.parametrize("preset", ["small", "medium", "large"])
def test_output_shapes(preset):
    model = _model(preset).eval()
    cfg = model.config
    genes, counts, depth = _batch(B=2, L=16)
    with torch.no_grad():
        out = model(genes, counts, depth, return_qk=True)
    d = cfg.d_model
    assert out.cell_emb.shape == (2, d) and out.label_emb.shape == (2, 2, d) and out.gene_out.shape == (2, 16, d)
    for t in (out.mu, out.theta, out.pi_logit):
        assert t.shape == (2, 16) and t.dtype == torch.float32
    assert {k: v.shape for k, v in out.label_logits.items()} == {"cell_type": (2, 7), "sex": (2, 2)}
    assert len(out.qk) == cfg.n_layers
    assert all(q.shape == k.shape == (2, cfg.n_heads, 16, 64) for q, k in out.qk)
    assert model(genes, counts, depth).qk is None


def test_mu_sums_to_scale_and_theta_positive():
    model = _model().eval()
    genes, counts, depth = _batch()
    out = model(genes, counts, depth)
    torch.testing.assert_close(out.mu.sum(1), counts.sum(1))  # default scale: the input context's counts
    scale = torch.tensor([7.0, 123.0, 4.5])
    scaled = model(genes, counts, depth, scale=scale)
    torch.testing.assert_close(scaled.mu.sum(1), scale)
    torch.testing.assert_close(scaled.mu / scale[:, None], out.mu / counts.sum(1, keepdim=True))  # same shares
    assert (out.mu > 0).all() and (out.theta > 0).all()


def test_depth_token_changes_the_shares_not_the_total():
    model = _model().eval()
    genes, counts, depth = _batch()
    with torch.no_grad():
        a, b = model(genes, counts, depth), model(genes, counts, depth * 10)
    torch.testing.assert_close(a.mu.sum(1), b.mu.sum(1))
    assert not torch.allclose(a.mu, b.mu)


def test_qk_equal_manual_recomputation_from_block_weights():
    model = _model(n_layers=3).eval()
    genes, counts, depth = _batch()
    s, H, dh = model.config.n_special, model.config.n_heads, model.config.d_head
    with torch.no_grad():
        out = model(genes, counts, depth, return_qk=True)
        x = model.embed(genes, counts, depth)
        for block, (q, k) in zip(model.blocks, out.qk):
            h = block.ln_1(x)
            w, b = block.attn.qkv.weight, block.attn.qkv.bias
            d = model.config.d_model
            q_ref = (h @ w[:d].T + b[:d]).view(*h.shape[:2], H, dh).transpose(1, 2)[:, :, s:]
            k_ref = (h @ w[d:2 * d].T + b[d:2 * d]).view(*h.shape[:2], H, dh).transpose(1, 2)[:, :, s:]
            torch.testing.assert_close(q, q_ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(k, k_ref, rtol=1e-5, atol=1e-5)
            x = x + block.attn.proj(_manual_attention(h, w, b, H))
            x = x + block.mlp(block.ln_2(x))
        torch.testing.assert_close(model.ln_f(x)[:, 0], out.cell_emb, rtol=1e-4, atol=1e-4)


def _manual_attention(h, w, b, H):
    """softmax(q k^T / sqrt(d_head)) v written out, to check the trunk really attends with these q/k."""
    B, T, d = h.shape
    q, k, v = (h @ w.T + b).view(B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)
    att = torch.softmax(q @ k.transpose(-1, -2) / (d // H) ** 0.5, dim=-1)
    return (att @ v).transpose(1, 2).reshape(B, T, d)


def test_bottleneck_sees_only_cell_and_label_embeddings():
    model = _model().eval()
    genes, counts, depth = _batch()
    with torch.no_grad():
        a = model(genes, counts, depth)
        b = model(genes, counts * 5 + 1, depth)
        mixed = dataclasses.replace(b, cell_emb=a.cell_emb, label_emb=a.label_emb)  # b's gene outputs, a's tokens
        for ta, tm in zip(model.bottleneck(a, genes, depth, depth), model.bottleneck(mixed, genes, depth, depth)):
            torch.testing.assert_close(ta, tm)
        mu_b = model.bottleneck(b, genes, depth, depth)[0]
    assert not torch.allclose(mu_b, model.bottleneck(a, genes, depth, depth)[0].detach())  # cell tokens do matter
    torch.testing.assert_close(mu_b.sum(1), depth)


def test_gradients_reach_every_trainable_parameter():
    model = _model(n_layers=2)
    genes, counts, depth = _batch()
    out = model(genes, counts, depth)
    loss = zinb_nll(counts, out.mu, out.theta, out.pi_logit).mean()
    loss = loss + zinb_nll(counts, *model.bottleneck(out, genes, depth, counts.sum(1))).mean()
    for name, logits in out.label_logits.items():
        loss = loss + hierarchical_label_loss(logits, torch.tensor([0, 1, -1]), torch.zeros(0, logits.shape[1]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_flops_per_cell_matches_torch_flop_counter():
    for preset, L in [("small", 32), ("medium", 20)]:
        model = _model(preset).eval()
        genes, counts, depth = _batch(B=1, L=L)
        # the math SDPA backend runs attention as matmuls the counter sees (CPU flash kernels are not counted)
        with FlopCounterMode(display=False) as fc, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            model(genes, counts, depth)
        assert model.flops_per_cell(L) == fc.get_total_flops()
        fwd = model.flops_per_cell(L)
        assert model.estimate_mfu(10.0, 1e12, train=False, context_length=L) == pytest.approx(fwd * 10 / 1e12)
        assert 3 * fwd < model.estimate_mfu(1.0, 1.0, context_length=L) < 6 * fwd


def test_bf16_autocast_gives_finite_losses_and_gradients():
    model = _model(n_layers=2)
    genes, counts, depth = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(genes, counts, depth)
        losses = [zinb_nll(counts, out.mu, out.theta, out.pi_logit).mean(),
                  zinb_nll(counts, *model.bottleneck(out, genes, depth, counts.sum(1))).mean(),
                  hierarchical_label_loss(out.label_logits["cell_type"], torch.tensor([0, 7, -1]),
                                          torch.tensor([[True] * 3 + [False] * 4]))]
    assert out.mu.dtype == out.theta.dtype == torch.float32
    assert all(torch.isfinite(loss) and loss.dtype == torch.float32 for loss in losses)
    sum(losses).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# -------------------------------------------------------------------------------------- frozen embeddings

def test_frozen_embeddings_are_projected_and_stay_frozen():
    e = torch.randn(VOCAB, 12)
    e[5] = 0.0  # no external vector for gene 5: it gets a learned one
    model = _model(n_layers=1, gene_embedding_dim=12, gene_embeddings=e)
    enc = model.gene_encoder
    assert not enc.frozen.weight.requires_grad
    n_all, n_trainable = model.get_num_params(), model.get_num_params(trainable_only=True)
    assert n_all - n_trainable == VOCAB * 12
    genes = torch.tensor([[3, 5]])
    tok = enc(genes)
    torch.testing.assert_close(tok[0, 0], enc.proj(e[3]))
    torch.testing.assert_close(tok[0, 1], enc.learned.weight[5])

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    proj_before = enc.proj.weight.detach().clone()
    genes, counts, depth = _batch()
    out = model(genes, counts, depth)
    zinb_nll(counts, out.mu, out.theta, out.pi_logit).mean().backward()
    opt.step()
    assert torch.equal(enc.frozen.weight, e)
    assert not torch.equal(enc.proj.weight, proj_before)

    # a checkpoint rebuilds from the config alone: the placeholder is filled by load_state_dict
    clone = GRNFormer(model.config, model.gene_positions)
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.gene_encoder(genes), enc(genes))


def test_frozen_embeddings_need_matching_config():
    with pytest.raises(InputError, match="gene_embedding_dim"):
        _model(gene_embeddings=torch.randn(VOCAB, 12))
    with pytest.raises(InputError, match="shape"):
        _model(gene_embedding_dim=8, gene_embeddings=torch.randn(VOCAB, 12))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_load_gene_embeddings_by_ensembl_id_or_symbol(tmp_path, fmt):
    table = pd.DataFrame({"gene": ["ENSG00000141510.18", "CD4", "ENSG00000999999", "ENSG00000141510"],
                          "e0": [1.0, 2.0, 3.0, 9.0], "e1": [0.5, -1.0, 0.0, 9.0]})
    path = tmp_path / f"emb.{fmt}"
    table.to_parquet(path) if fmt == "parquet" else table.to_csv(path, index=False)
    ids = ["ENSG00000010610", "ENSG00000141510", "ENSG00000000003"]
    emb, found = load_gene_embeddings(path, ids, vocab_symbols=["CD4", "TP53", "TSPAN6"])
    assert found.tolist() == [True, True, False]
    torch.testing.assert_close(emb, torch.tensor([[2.0, -1.0], [1.0, 0.5], [0.0, 0.0]]))  # first TP53 row wins


def test_load_gene_embeddings_rejects_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_gene_embeddings(tmp_path / "missing.parquet", ["ENSG00000141510"])
    path = tmp_path / "e.csv"
    pd.DataFrame({"gene": ["CD4"], "e0": [1.0]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="matches"):
        load_gene_embeddings(path, ["ENSG00000141510"])
    pd.DataFrame({"gene": ["CD4"], "e0": [np.nan]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="NaN"):
        load_gene_embeddings(path, ["ENSG00000010610"], ["CD4"])


# ----------------------------------------------------------------------------------------- learning

def test_tiny_model_overfits_real_pbmc_counts():
    """16 real PBMC cells, their 200 most-expressed genes as a toy vocabulary (ids 0..199). With the counts as
    input the best a model can do is reproduce them: the ZINB loss has to come close to the Poisson likelihood of
    each count under its own value, and a per-cell label has to be memorised."""
    adata = ad.read_h5ad(resource_path("pbmc3k"))[:16]
    x = np.asarray(adata.X.todense(), dtype=np.float32)
    top = np.argsort(-x.sum(0))[:200]
    counts = torch.from_numpy(x[:, top])
    depth = torch.from_numpy(x.sum(1))
    genes = torch.arange(200).expand(16, -1)
    labels = torch.arange(16) % 4
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=200, n_positions=20, d_model=32, n_layers=2, n_heads=2, dropout=0.0,
                      context_length=200, label_sizes={"cell_type": 4})
    model = GRNFormer(cfg, torch.arange(200) % 20)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    no_coarse = torch.zeros(0, 4, dtype=torch.bool)
    history = []
    for _ in range(300):  # lr 1e-2 oscillates on the labels for ~200 steps (where depends on the thread count)
        out = model(genes, counts, depth)
        recon = zinb_nll(counts, out.mu, out.theta, out.pi_logit).mean()
        label = hierarchical_label_loss(out.label_logits["cell_type"], labels, no_coarse)
        opt.zero_grad()
        (recon + label).backward()
        opt.step()
        history.append((recon.item(), label.item()))
    (r0, l0), (r1, l1) = history[0], history[-1]
    copy_floor = -stats.poisson.logpmf(counts.numpy(), np.maximum(counts.numpy(), 1e-8)).mean()
    assert r1 < 0.5 * r0 and r1 < 1.1 * copy_floor, (r0, r1, copy_floor)
    assert l1 < 0.1 * l0, (l0, l1)
    assert (out.label_logits["cell_type"].argmax(1) == labels).all()
