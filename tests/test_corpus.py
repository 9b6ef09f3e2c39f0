"""Corpus round trip on real data: every stored cell equals its prepared source, metadata and labels included."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from grnformer import InputError
from grnformer.data.collate import Collator
from grnformer.data.corpus import datasets
from grnformer.data.corpus.build import build_corpus
from grnformer.data.corpus.labels import LabelSet
from grnformer.data.corpus.store import AnnDataCells, Corpus, vocab_hash
from grnformer.data.genes import GeneVocab
from grnformer.data.input.prepare import prepare
from grnformer.data.shared import shared_path

PANCREAS = "mouse_pancreas_e155"


@pytest.fixture(scope="module")
def built(tmp_path_factory, vocab):
    """pbmc3k (raw AnnData), pancreas (h5ad path, mouse) and retina (raw AnnData with ontology labels), in
    shards of 1,500 cells written from chunks of 1,000, so shards and chunks cross each other."""
    pbmc = datasets.load("pbmc3k")
    retina = datasets.load("retina")
    labels = LabelSet.fit(retina, classes=("cell_type", "sex", "assay"))
    sources = {"pbmc3k": pbmc, PANCREAS: shared_path(f"counts/{PANCREAS}.h5ad"), "retina": retina}
    corpus = build_corpus(sources, tmp_path_factory.mktemp("corpus") / "c", vocab=vocab, label_set=labels,
                          shard_size=1_500, chunk_cells=1_000)
    prepared = {"pbmc3k": prepare(pbmc)[0], PANCREAS: prepare(sources[PANCREAS])[0], "retina": prepare(retina)[0]}
    return corpus, prepared, labels


def test_round_trip_equals_source_counts(built, vocab):
    corpus, prepared, labels = built
    assert len(corpus) == sum(a.n_obs for a in prepared.values())
    obs = corpus.obs
    start = 0
    for name, adata in prepared.items():
        cells = AnnDataCells(adata, vocab, labels)
        rows = obs.iloc[start:start + adata.n_obs]
        assert (rows["dataset"] == name).all()
        assert list(rows["obs_name"]) == list(adata.obs_names)
        np.testing.assert_array_equal(rows["n_counts"], np.asarray(adata.X.sum(1)).ravel())
        for i in range(adata.n_obs):
            got, want = corpus[start + i], cells[i]
            np.testing.assert_array_equal(got.genes, want.genes)
            np.testing.assert_array_equal(got.counts, want.counts)
            np.testing.assert_array_equal(got.labels, want.labels)
            assert got.organism == want.organism
        start += adata.n_obs
    assert corpus[-1].organism == "NCBITaxon:9606"
    with pytest.raises(IndexError):
        corpus[len(corpus)]


def test_metadata_labels_and_manifest(built, vocab):
    corpus, prepared, labels = built
    assert corpus.label_classes == ["cell_type", "sex", "assay"]
    assert corpus.label_codes.shape == (len(corpus), 3) and corpus.label_codes.dtype == np.int32
    retina_rows = corpus.obs["dataset"].to_numpy() == "retina"
    np.testing.assert_array_equal(corpus.label_codes[retina_rows], labels.encode(prepared["retina"].obs))
    assert (corpus.label_codes[~retina_rows] == -1).all()  # PBMC and pancreas carry no ontology labels
    assert set(corpus.obs.loc[corpus.obs["dataset"] == PANCREAS, "organism"]) == {"NCBITaxon:10090"}
    manifest = json.loads((corpus.path / "manifest.json").read_text())
    assert manifest["vocab_hash"] == vocab_hash(vocab)
    assert [s["n_cells"] for s in manifest["shards"]][:-1] == [1_500] * (len(manifest["shards"]) - 1)
    assert sum(s["n_cells"] for s in manifest["shards"]) == len(corpus)
    assert {s["name"]: s["n_cells"] for s in manifest["sources"]} == {k: a.n_obs for k, a in prepared.items()}
    assert corpus.label_set.to_dict() == labels.to_dict()
    assert vocab_hash(corpus.vocab) == vocab_hash(vocab)
    assert np.load(corpus.path / "shards" / "00000.indices.npy", mmap_mode="r").dtype == np.uint16
    shard, row = corpus.obs["shard"].to_numpy(), corpus.obs["row"].to_numpy()
    assert (shard * 1_500 + row == np.arange(len(corpus))).all()


def test_streams_through_dataloader_workers(built, vocab):
    corpus, _, _ = built
    loader = torch.utils.data.DataLoader(corpus, batch_size=64, num_workers=2, sampler=range(0, len(corpus), 50),
                                         collate_fn=Collator(vocab, context_length=256, seed=0))
    batches = list(loader)
    assert sum(len(b["depth"]) for b in batches) == len(range(0, len(corpus), 50))
    np.testing.assert_allclose(torch.cat([b["depth"] for b in batches]).numpy(),
                               corpus.obs["n_counts"].to_numpy()[::50])


def test_bad_inputs(built, vocab, tmp_path):
    corpus, _, _ = built
    with pytest.raises(InputError, match="already exists"):
        build_corpus(["pbmc3k"], corpus.path, vocab=vocab)
    with pytest.raises(InputError, match="does not exist"):
        build_corpus([tmp_path / "missing.h5ad"], tmp_path / "x", vocab=vocab)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    with pytest.raises(InputError, match="not a grnformer corpus"):
        Corpus(tmp_path)
    small = GeneVocab(vocab.table.iloc[:1000])
    with pytest.raises(InputError, match="another gene vocabulary"):
        Corpus(corpus.path, vocab=small)
    with pytest.raises(InputError, match="prepare"):
        AnnDataCells(datasets.load("pbmc3k"), vocab)


def test_failed_build_leaves_nothing(tmp_path, vocab):
    """A source that fails validation half-way through leaves neither the corpus nor its .part directory."""
    good = datasets.load("pbmc_10x_v2_1k")
    bad = good.copy()
    bad.X = bad.X * 0.5  # not integer counts
    with pytest.raises(InputError, match="raw integer counts"):
        build_corpus({"good": good, "bad": bad}, tmp_path / "c", vocab=vocab)
    assert list(tmp_path.iterdir()) == []


def test_generator_of_sources(tmp_path, vocab):
    """Sources can be produced lazily (bounded memory): here two halves of a PBMC set."""
    sample = datasets.load("pbmc_10x_v2_1k")
    del sample.uns["grnformer_dataset"]  # unnamed AnnData sources are named by position
    halves = (sample[i:i + 500].copy() for i in (0, 500))
    corpus = build_corpus(halves, tmp_path / "c", vocab=vocab, shard_size=250)
    assert len(corpus) == sample.n_obs
    assert list(pd.unique(corpus.obs["dataset"])) == ["anndata_0", "anndata_1"]
    whole = AnnDataCells(prepare(sample)[0], vocab)
    np.testing.assert_array_equal(corpus[400].counts, whole[400].counts)
