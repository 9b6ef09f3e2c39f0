"""SOMA reader on local experiments written from the real h5ad sets: streamed cells equal the source."""

import shutil

import numpy as np
import pytest
import tiledbsoma.io as tiledbsoma_io  # noqa: E402  (installed by requirements.lock)
import torch

from grnformer import InputError
from grnformer.data.collate import CellRecord, Collator
from grnformer.data.corpus import datasets
from grnformer.data.corpus.labels import LABEL_CLASSES, LabelSet
from grnformer.data.corpus.sampler import LabelBalancedSampler
from grnformer.data.corpus.store import AnnDataCells
from grnformer.data.input.prepare import ORGANISM_COLUMN


def _write(adata, root, name: str) -> str:
    """A SOMA experiment laid out as the Census is (X 'raw', Ensembl IDs in var 'feature_id')."""
    path = root / f"{name}.h5ad"
    adata = adata.copy()
    adata.var.index.name = None  # from_h5ad names the ID column var_id_name only for an unnamed index
    adata.write_h5ad(path)
    uri = str(root / name)
    tiledbsoma_io.from_h5ad(uri, str(path), "RNA", X_layer_name="raw", var_id_name="feature_id")
    return uri


@pytest.fixture(scope="module")
def retina(tmp_path_factory, vocab):
    """Retina cells (CELLxGENE labels) with genes in reverse vocabulary order, so X's gene order is not the
    token order and the reader must sort."""
    adata = datasets.load("retina", prepared=True)[:500, ::-1].copy()  # 500 cells keep the write short
    labels = LabelSet.fit(adata, classes=("cell_type", "sex", "assay"))
    uri = _write(adata, tmp_path_factory.mktemp("soma"), "retina")
    return uri, AnnDataCells(adata, vocab, labels), labels


def _same(a: CellRecord, b: CellRecord) -> None:
    np.testing.assert_array_equal(a.genes, b.genes)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.organism == b.organism


def _key(r: CellRecord) -> bytes:
    return r.genes.tobytes() + r.counts.tobytes()


def test_cells_equal_source(retina, vocab):
    from grnformer.data.corpus.soma import SomaCells

    uri, source, labels = retina
    cells = SomaCells(uri, vocab=vocab, label_set=labels)
    assert len(cells) == len(source) == 500
    np.testing.assert_array_equal(cells.label_codes, source.label_codes)
    rows = np.random.default_rng(0).permutation(len(cells))
    for r, record in zip(rows, cells.read(rows)):
        _same(record, source[int(r)])
    _same(cells[7], source[7])
    assert list(cells.obs(["cell_type_ontology_term_id"]).iloc[:, 0]) == list(source.obs["cell_type_ontology_term_id"])


def test_label_encoders_fitted_on_the_selected_cells(retina, vocab):
    from grnformer.data.corpus.soma import SomaCells

    uri, source, _ = retina
    cells = SomaCells(uri, vocab=vocab, label_set=LABEL_CLASSES)
    expected = LabelSet.fit(source.obs)  # what the shard corpus fits on the same cells
    assert cells.label_set.to_dict() == expected.to_dict() and cells.label_classes == list(LABEL_CLASSES)
    assert cells.label_set.sizes["cell_type"] > 3
    np.testing.assert_array_equal(cells.label_codes, expected.encode(source.obs))
    term = source.obs["cell_type_ontology_term_id"].value_counts().index[0]
    subset = SomaCells(uri, vocab=vocab, label_set=["cell_type"], obs_filter=f"cell_type_ontology_term_id == '{term}'")
    assert subset.label_set.encoders["cell_type"].leaves == [term] and (subset.label_codes == 0).all()
    with pytest.raises(InputError, match="unknown label classes"):
        SomaCells(uri, vocab=vocab, label_set=["celltype"])


def test_filter_and_sampler_batches(retina, vocab):
    from grnformer.data.corpus.soma import SomaCells

    uri, source, labels = retina
    term = source.obs["cell_type_ontology_term_id"].value_counts().index[1]
    subset = SomaCells(uri, vocab=vocab, label_set=labels, obs_filter=f"cell_type_ontology_term_id == '{term}'")
    assert len(subset) == int((source.obs["cell_type_ontology_term_id"] == term).sum())
    cells = SomaCells(uri, vocab=vocab, label_set=labels)
    sampler = LabelBalancedSampler(cells.label_codes, num_samples=256, s=10, seed=0)
    loader = torch.utils.data.DataLoader(cells, batch_size=64, sampler=sampler, num_workers=2,
                                         collate_fn=Collator(vocab, context_length=512, seed=0))
    depth = torch.cat([b["depth"] for b in loader]).numpy()
    totals = np.array([source[i].counts.sum() for i in range(len(source))])
    np.testing.assert_allclose(depth, totals[list(sampler)], rtol=1e-6)


def test_benchmark_block_stream_gives_each_cell_to_one_rank_and_worker(retina, vocab):
    """The block reader benchmarks/bench_streaming.py measures against SomaCells reads every cell once."""
    from bench_streaming import SomaStream

    from grnformer.data.corpus.soma import SomaCells

    uri, source, labels = retina
    cells = SomaCells(uri, vocab=vocab, label_set=labels)
    where = {_key(source[i]): i for i in range(len(source))}
    seen, lengths = [], []
    for rank in range(3):
        stream = SomaStream(cells, block_size=64, seed=1, rank=rank, world_size=3, even=False)
        workers = 2 if rank == 1 else 0  # blocks are split again between a rank's DataLoader workers
        records = list(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers))
        lengths.append(len(records))
        assert len(records) == len(stream)
        for r in records:
            i = where[_key(r)]
            _same(r, source[i])
            seen.append(i)
    assert sorted(seen) == list(range(len(source)))  # every cell exactly once over ranks and workers
    shortest = int(np.argmin(lengths))
    even = SomaStream(cells, block_size=64, seed=1, rank=shortest, world_size=3)
    assert len(list(even)) == len(even) == max(lengths) > lengths[shortest]
    stream = SomaStream(cells, block_size=128, seed=1)
    first = [where[_key(r)] for r in stream]
    stream.set_epoch(1)
    second = [where[_key(r)] for r in stream]
    assert first != second and sorted(first) == sorted(second) == list(range(len(source)))


def test_organism_from_experiment_name(tmp_path, vocab):
    from grnformer.data.corpus.soma import SomaCells

    adata = datasets.load("pbmc_10x_v2_1k", prepared=True)[:150].copy()
    del adata.obs[ORGANISM_COLUMN]  # Census experiments have one organism and no such column
    uri = _write(adata, tmp_path, "homo_sapiens")
    cells = SomaCells(uri, vocab=vocab)
    assert cells.organisms == ["NCBITaxon:9606"] and cells.label_codes.shape == (150, 0)
    fitted = SomaCells(uri, vocab=vocab, label_set=["organism"])  # the organism label comes from the name too
    assert fitted.label_set.encoders["organism"].leaves == ["NCBITaxon:9606"] and (fitted.label_codes == 0).all()
    shutil.copytree(uri, tmp_path / "pbmc")
    with pytest.raises(InputError, match="organism"):
        SomaCells(str(tmp_path / "pbmc"), vocab=vocab)
    assert len(SomaCells(str(tmp_path / "pbmc"), vocab=vocab, organism="human")) == 150
    with pytest.raises(InputError, match="X layer"):
        SomaCells(uri, vocab=vocab, layer="normalized")
    with pytest.raises(InputError, match="could not open"):
        SomaCells(str(tmp_path / "missing"), vocab=vocab)
    with pytest.raises(InputError, match="no cell"):
        SomaCells(uri, vocab=vocab, obs_filter="obs_id == 'nobody'")
