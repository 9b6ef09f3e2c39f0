"""Collator invariants on real cells: context contents, padding, down-sampling, modes, determinism, workers."""

import numpy as np
import pytest
import torch
from scipy import stats

from grnformer import InputError
from grnformer.data.collate import MOLECULE_CAP, CellRecord, Collator, binomial_thinning
from grnformer.data.corpus import datasets
from grnformer.data.corpus.store import AnnDataCells
from grnformer.data.genes import GeneVocab


@pytest.fixture(scope="module")
def retina(vocab) -> list[CellRecord]:
    """Human retina, ~2,800 expressed genes per cell: deeper than the 2,200-gene context."""
    cells = AnnDataCells(datasets.load("retina", prepared=True), vocab)
    return [cells[i] for i in range(48)]


@pytest.fixture(scope="module")
def pancreas(vocab) -> list[CellRecord]:
    """Mouse pancreas (2,000 genes kept by the authors): every cell needs padding."""
    cells = AnnDataCells(datasets.load("mouse_pancreas_e155", prepared=True), vocab)
    return [cells[i] for i in range(0, 3600, 150)]


def _as_dict(record: CellRecord) -> dict[int, float]:
    return dict(zip(record.genes.tolist(), record.counts.tolist()))


def _check_row(batch: dict, b: int, record: CellRecord, vocab: GeneVocab) -> np.ndarray:
    """Shared invariants of one row; returns the expressed-gene mask of the context."""
    genes = batch["genes"][b].numpy()
    target = batch["target"][b].numpy()
    assert len(np.unique(genes)) == len(genes), "a gene appears twice in a context"
    counts = _as_dict(record)
    expressed = np.array([g in counts for g in genes])
    assert expressed.sum() == min(len(record.genes), len(genes))
    np.testing.assert_array_equal(target[expressed], [counts[g] for g in genes[expressed]])
    assert (target[~expressed] == 0).all()
    organisms = vocab.table["organism"].to_numpy()
    assert (organisms[genes[~expressed]] == record.organism).all(), "padding from another organism"
    assert batch["depth"][b].item() == pytest.approx(record.counts.sum(), rel=1e-6)
    return expressed


def test_random_expressed_contexts(retina, pancreas, vocab):
    collate = Collator(vocab, context_length=2200, seed=0)
    records = retina[:8] + pancreas[:8]
    batch = collate(records)
    assert batch["genes"].shape == batch["counts"].shape == batch["target"].shape == (16, 2200)
    assert batch["genes"].dtype == torch.int64 and batch["counts"].dtype == torch.float32
    assert batch["labels"].shape == (16, 0)
    for b, record in enumerate(records):
        _check_row(batch, b, record, vocab)
    assert torch.equal(batch["counts"], batch["target"])  # no down-sampling asked
    assert torch.equal(batch["input_depth"], batch["depth"])
    # deep retina cells: the chosen 2,200 of ~2,800 genes differ between two draws (random subset)
    again = collate(retina[:1])
    assert set(again["genes"][0].tolist()) != set(batch["genes"][0].tolist())


def test_padding_is_uniform_over_unexpressed_genes(pancreas, vocab):
    """Each unexpressed mouse gene should be drawn about equally often as padding."""
    record = pancreas[0]
    collate = Collator(vocab, context_length=2200, seed=1)
    batch = collate([record] * 200)
    pool = np.setdiff1d(vocab.organism_genes("mouse"), record.genes)
    need = 2200 - len(record.genes)
    hits = np.bincount(batch["genes"][:, len(record.genes):].numpy().ravel(), minlength=len(vocab))[pool]
    expected = 200 * need / len(pool)
    assert hits.sum() == 200 * need
    assert abs(hits.mean() - expected) < 1e-9
    assert hits.std() == pytest.approx(np.sqrt(expected * (1 - need / len(pool))), rel=0.1)  # hypergeometric


def test_most_expressed_takes_the_top_counts(retina, vocab):
    batch = Collator(vocab, context_length=500, mode="most-expressed", seed=0)(retina[:6])
    for b, record in enumerate(retina[:6]):
        _check_row(batch, b, record, vocab)
        chosen = batch["target"][b].numpy()
        left_out = np.setdiff1d(record.genes, batch["genes"][b].numpy())
        counts = _as_dict(record)
        assert chosen.min() >= max(counts[g] for g in left_out)


def test_all_mode_holds_every_expressed_gene(retina, pancreas, vocab):
    records = retina[:3] + pancreas[:3]
    batch = Collator(vocab, mode="all", downsample=0.5, seed=0)(records)
    assert batch["genes"].shape[1] == max(len(r.genes) for r in records)
    for b, record in enumerate(records):
        assert _check_row(batch, b, record, vocab).sum() == len(record.genes)
    # every gene is in the context, so the thinned depth is exactly the sum of the input counts
    np.testing.assert_allclose(batch["input_depth"].numpy(), batch["counts"].sum(1).numpy(), rtol=1e-6)


def test_given_gene_list(retina, vocab):
    genes = np.unique(np.concatenate([r.genes[:40] for r in retina[:4]]))[::-1].copy()
    genes = np.concatenate([genes, np.setdiff1d(vocab.organism_genes("human"), genes)[:5]])
    collate = Collator(vocab, mode="given", gene_list=vocab.ids[genes])  # Ensembl IDs accepted
    batch = collate(retina[:4])
    assert batch["genes"].shape == (4, len(genes))
    assert (batch["genes"].numpy() == genes).all()
    for b, record in enumerate(retina[:4]):
        counts = _as_dict(record)
        np.testing.assert_array_equal(batch["target"][b].numpy(), [counts.get(g, 0.0) for g in genes])
    assert torch.equal(Collator(vocab, mode="given", gene_list=genes)(retina[:4])["target"], batch["target"])


def test_downsampling_thins_whole_cells(retina, vocab):
    collate = Collator(vocab, context_length=2200, downsample=(0.55, 0.7), seed=3)
    batch = collate(retina)
    counts, target = batch["counts"].numpy(), batch["target"].numpy()
    assert (counts <= target).all() and (counts == np.round(counts)).all()
    kept = batch["input_depth"].numpy() / batch["depth"].numpy()
    assert ((kept > 0.28) & (kept < 0.47)).all()  # 30-45% of counts kept, up to sampling noise
    assert kept.std() > 0.02  # a fraction drawn per cell, not one for the batch
    # the input depth covers the whole cell, not only the context (retina cells exceed 2,200 genes)
    deep = np.array([len(r.genes) > 2200 for r in retina])
    assert deep.sum() > 30
    assert (batch["input_depth"].numpy()[deep] > counts.sum(1)[deep]).all()
    np.testing.assert_array_equal(batch["input_depth"].numpy()[~deep], counts.sum(1)[~deep])
    fixed = Collator(vocab, downsample=0.6, seed=3)(retina)
    ratio = fixed["input_depth"].sum() / fixed["depth"].sum()
    assert ratio.item() == pytest.approx(0.4, abs=0.005)
    # thinned genes stay in the context (selection follows the original counts)
    assert ((fixed["counts"] == 0) & (fixed["target"] > 0)).any()


@pytest.mark.parametrize("count", [1, 5, MOLECULE_CAP, 40])
def test_thinning_is_binomial(count):
    """Molecule-wise (small counts) and numpy (large counts) thinning both give Binomial(count, keep)."""
    lens = np.array([30_000, 30_000])
    cell = np.repeat([0, 1], lens)
    keep = np.array([0.3, 0.45])
    out = binomial_thinning(np.random.default_rng(0), np.full(lens.sum(), count, np.float32), lens, cell, keep)
    for c in (0, 1):
        observed = np.bincount(out[cell == c].astype(int), minlength=count + 1)
        expected = stats.binom.pmf(np.arange(count + 1), count, keep[c]) * lens[c]
        big = expected > 5  # chi-square needs populated bins; lump the tails
        obs = np.append(observed[big], observed[~big].sum())
        exp = np.append(expected[big], expected[~big].sum())
        assert stats.chisquare(obs[exp > 0], exp[exp > 0]).pvalue > 1e-3


def test_deterministic_given_seed(retina, vocab):
    a = Collator(vocab, downsample=(0.5, 0.7), seed=11)(retina[:10])
    b = Collator(vocab, downsample=(0.5, 0.7), seed=11)(retina[:10])
    c = Collator(vocab, downsample=(0.5, 0.7), seed=12)(retina[:10])
    for key in a:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["genes"], c["genes"])
    shifted = Collator(vocab, downsample=(0.5, 0.7), seed=11)
    shifted.set_epoch(1)
    assert not torch.equal(shifted(retina[:10])["counts"], a["counts"])


class _Same(torch.utils.data.Dataset):
    def __init__(self, record: CellRecord) -> None:
        self.record = record

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> CellRecord:
        return self.record


def test_workers_draw_from_their_own_streams(pancreas, vocab):
    """Two workers collating the same cell must not pad it identically; a rerun reproduces both."""
    def run() -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(_Same(pancreas[0]), batch_size=2, num_workers=2,
                                             collate_fn=Collator(vocab, seed=5))
        return [b["genes"] for b in loader]

    first, second = run(), run()
    assert not torch.equal(first[0], first[1])  # batch 0 from worker 0, batch 1 from worker 1
    for x, y in zip(first, second):
        assert torch.equal(x, y)


def test_bad_options(vocab, retina):
    with pytest.raises(InputError, match="mode"):
        Collator(vocab, mode="top")
    with pytest.raises(InputError, match="fraction"):
        Collator(vocab, downsample=1.2)
    with pytest.raises(InputError, match="low <= high"):
        Collator(vocab, downsample=(0.7, 0.5))
    with pytest.raises(InputError, match="not in the vocabulary"):
        Collator(vocab, mode="given", gene_list=["ENSG00000141510", "NOTAGENE"])
    with pytest.raises(InputError, match="repeats"):
        Collator(vocab, mode="given", gene_list=[3, 3])
    with pytest.raises(InputError, match="gene_list"):
        Collator(vocab, gene_list=[1, 2])
    with pytest.raises(InputError, match="exceeds"):
        Collator(vocab, context_length=30_000)(retina[:1])
