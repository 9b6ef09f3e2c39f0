"""Gene tables, vocabulary, genomic-position tokens and TF lists, on the real GENCODE files."""

import numpy as np
import pandas as pd
import pytest

from grnformer import InputError
from grnformer.data.genes import (
    HUMAN,
    MOUSE,
    POSITION_WINDOW,
    GeneVocab,
    gene_table,
    organism_id,
    position_tokens,
    tf_symbols,
)

TP53, TRP53 = "ENSG00000141510", "ENSMUSG00000059552"


def test_organism_names():
    for name in ("human", "Homo sapiens", "NCBITaxon:9606", "9606", " HUMAN "):
        assert organism_id(name) == HUMAN
    assert organism_id("Mus musculus") == organism_id("mouse") == MOUSE
    with pytest.raises(InputError, match="unknown organism 'rat'"):
        organism_id("rat")


def test_gene_tables():
    human, mouse = gene_table("human"), gene_table(MOUSE)
    assert list(human.columns) == ["symbol", "biotype", "chromosome", "start", "organism"]
    assert human.loc[TP53, "symbol"] == "TP53" and human.loc[TP53, "chromosome"] == "chr17"
    assert mouse.loc[TRP53, "symbol"] == "Trp53" and mouse.loc[TRP53, "chromosome"] == "chr11"
    assert human.index.is_unique and mouse.index.is_unique
    assert (human["biotype"] == "protein_coding").sum() > 19_000


def test_vocabulary_is_protein_coding_human_then_mouse(vocab):
    human, mouse = gene_table("human"), gene_table("mouse")
    n_human = int((human["biotype"] == "protein_coding").sum())
    assert len(vocab) == n_human + int((mouse["biotype"] == "protein_coding").sum())
    assert (vocab.table["organism"].to_numpy()[:n_human] == HUMAN).all()
    assert vocab.index([TP53, f"{TRP53}.3", "ENSG00000000000", "TP53"]).tolist() == [
        vocab.ids.tolist().index(TP53), vocab.ids.tolist().index(TRP53), -1, -1]
    assert vocab.symbols[vocab.index([TP53])[0]] == "TP53"
    assert len(vocab.organism_genes("mouse")) == len(vocab) - n_human
    lnc = human.index[human["biotype"] == "lncRNA"][0]
    assert vocab.index([lnc])[0] == -1


def test_position_tokens_group_genes_within_10kb(vocab):
    table = vocab.table.assign(chromosome=None, start=None)
    for org in (HUMAN, MOUSE):
        genes = gene_table(org)
        rows = table["organism"] == org
        table.loc[rows, "chromosome"] = genes["chromosome"].reindex(table.index[rows]).to_numpy()
        table.loc[rows, "start"] = genes["start"].reindex(table.index[rows]).to_numpy()
    ordered = table.assign(start=table["start"].astype("int64")).sort_values(["organism", "chromosome", "start"])
    same_token = ordered["position"].to_numpy()[1:] == ordered["position"].to_numpy()[:-1]
    same_chrom = (ordered["organism"].to_numpy()[1:] == ordered["organism"].to_numpy()[:-1]) & \
                 (ordered["chromosome"].to_numpy()[1:] == ordered["chromosome"].to_numpy()[:-1])
    close = same_chrom & (np.diff(ordered["start"].to_numpy()) <= POSITION_WINDOW)
    np.testing.assert_array_equal(same_token, close)
    # human and mouse never share a token; every gene here has coordinates
    human_tokens = set(vocab.positions[vocab.organism_genes("human")])
    assert not human_tokens & set(vocab.positions[vocab.organism_genes("mouse")])
    assert vocab.positions.min() >= 1 and vocab.n_positions == vocab.positions.max() + 1


def test_position_tokens_small_case():
    chrom = pd.Series(["chr1", "chr1", "chr1", "chr2", None])
    start = pd.Series([100, 5_000, 20_000, 5_100, 1], dtype="Int64")
    assert position_tokens(chrom, start).tolist() == [1, 1, 2, 3, 0]


def test_vocab_round_trip(vocab):
    back = GeneVocab.from_dict(vocab.to_dict())
    assert back.ids.tolist() == vocab.ids.tolist() and back.positions.tolist() == vocab.positions.tolist()
    assert back.index([TRP53]).tolist() == vocab.index([TRP53]).tolist()


def test_tf_lists():
    human, mouse = tf_symbols("human"), tf_symbols("mouse")
    assert len(human) == 1639 and {"TP53", "POU5F1", "SOX2", "GATA1"} <= human
    assert {"Trp53", "Pou5f1", "Sox2"} <= mouse
