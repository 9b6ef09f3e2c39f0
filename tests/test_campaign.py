"""The training campaign's parts on real cells: authors' labels mapped to Cell Ontology, the co-expression prior,
warm start across a grown label set, the bottleneck on part of a batch, and stretches that stop on time."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from grnformer.bundle.checkpoint import load_bundle
from grnformer.data.corpus import author_labels, datasets, silver
from grnformer.data.corpus.build import build_corpus
from grnformer.data.corpus.gene_prior import coexpression_embedding
from grnformer.data.corpus.labels import LabelSet, ontology_parser
from grnformer.data.corpus.store import AnnDataCells
from grnformer.data.input.prepare import prepare
from grnformer.data.shared import shared_files, shared_path
from grnformer.train.pretrain import build, load_config, pretrain
from grnformer.train.warm_start import warm_start

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=1", "model.context_length=64",
        "training.batch_size=8", "training.progress_bar=false", "training.log_every_n_steps=1",
        "data.num_workers=0", "data.val_fraction=0.1", "training.val_batches=2", "model.dropout=0.0"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_mapped_author_label_is_a_cell_ontology_term_and_every_label_is_covered():
    parser = ontology_parser()
    for name, (col, table) in author_labels.CELL_TYPES.items():
        for term in set(table.values()):
            assert parser.is_valid_term_id(term), (name, term)
        obs = datasets.load(name).obs
        mapped = author_labels.cell_types(name, obs)
        unknown = set(obs.loc[mapped == "unknown", col].astype(str))
        assert unknown <= {"PPR"}, (name, unknown)  # the one label documented as having no term


def test_pancreas_cluster_codes_are_the_types_their_hormones_say():
    a = silver.add_training_labels("mouse_pancreas_e155", datasets.load("mouse_pancreas_e155"))
    terms = a.obs["cell_type_ontology_term_id"].to_numpy()
    x = a.X.tocsc()
    for term, gene, fold in [("CL:0000169", "Ins2", 20), ("CL:0000171", "Gcg", 20), ("CL:0000173", "Sst", 20),
                             ("CL:0005019", "Ghrl", 20), ("CL:0002079", "Krt19", 2.5)]:  # ductal: a soft marker
        col = np.asarray(x[:, a.var_names.get_loc(gene)].todense()).ravel()
        assert col[terms == term].mean() > fold * col[terms != term].mean(), (term, gene)
    assert (terms != "unknown").all()


def test_training_labels_for_sorted_pbmc_are_the_facs_populations():
    a = silver.add_training_labels("zheng2017_sorted_pbmc_facs", datasets.load("zheng2017_sorted_pbmc_facs"))
    assert a.uns["grnformer_label_source"] == "authors"
    monocytes = a.obs["celltype"] == "CD14+ Monocyte"
    assert (a.obs.loc[monocytes, "cell_type_ontology_term_id"] == "CL:0001054").all()
    assert (a.obs["assay_ontology_term_id"] == "EFO:0009901").all()
    lines = silver.add_training_labels("cellbench_tian2019_lung_cancer_cell_lines",
                                       datasets.load("cellbench_tian2019_lung_cancer_cell_lines"))
    drop = lines.obs["protocol"].str.startswith("Drop-seq")
    assert set(lines.obs.loc[drop, "assay_ontology_term_id"]) == {"EFO:0008722"}
    assert set(lines.obs.loc[~drop, "assay_ontology_term_id"]) == {"EFO:0010010"}


def _fingerprints(adata, min_genes: int = 200) -> dict[str, bytes]:
    """Cell name -> a fingerprint of its counts that no gene naming changes: the hash of its sorted non-zero values
    (rounded: McCalla's sets are rebuilt pseudo-counts). Cells with fewer than ``min_genes`` expressed genes are left
    out: their few values could coincide by chance."""
    x = sp.csr_matrix(adata.X)
    out = {}
    for i, name in enumerate(adata.obs_names):
        values = x.data[x.indptr[i]:x.indptr[i + 1]]
        if len(values) >= min_genes:
            out[name] = hashlib.blake2b(np.sort(np.round(values, 3)).astype(np.float32).tobytes(),
                                        digest_size=16).digest()
    return out


def test_no_held_out_cell_is_in_any_training_source():
    """Held-out sets are kept out by their cells, not only by their names in HELD_OUT: no held-out cell's counts
    (fingerprint) appear in any training source, a cell name shared with a training source is a barcode
    coincidence (different counts), and the fingerprint does find the same cells in another file (retina_test
    inside the full retina set). A set that lands in counts/ is trained on unless it is held out."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import campaign

    sources = campaign.training_sources()
    shared_path("counts")  # skipped (saying how to supply it) where no copy of the shared data is here
    counts = {p.stem for p in shared_files("counts", "*.h5ad").values()}
    assert counts - set(campaign.HELD_OUT) <= set(sources) and "retina_train" in sources
    train = {name: _fingerprints(datasets.load(name)) for name in sources}
    by_print = {f: (source, cell) for source, prints in train.items() for cell, f in prints.items()}
    names = {source: set(datasets.load(source).obs_names) for source in sources}
    test = _fingerprints(datasets.load("retina_test"))
    assert set(test.values()) <= set(_fingerprints(datasets.load("retina")).values())  # it finds the same cells
    for held in [h for h in campaign.HELD_OUT if h != "retina"]:  # retina: its split retina_train is trained on
        prints = _fingerprints(datasets.load(held))
        assert len(prints) > 50, held  # liu_hesc has 72 cells
        leaks = [(cell, by_print[f]) for cell, f in prints.items() if f in by_print]
        assert not leaks, f"{held}: cells whose counts are in training sources: {leaks[:5]}"
        for source, cells in names.items():
            shared = set(prints) & cells
            assert len(shared) <= 10, (held, source, len(shared))  # 10x barcodes coincide, a few at most
            assert all(prints[c] != train[source].get(c) for c in shared), (held, source)


def test_coexpression_prior_puts_co_expressed_genes_close():
    """On real PBMC cells, B-cell genes (CD79A, CD79B, MS4A1) sit closer to each other than to T-cell genes."""
    adata, _ = prepare(datasets.load("pbmc_10x_v3_1k"))
    cells = AnnDataCells(adata)
    vocab_size = cells.x.shape[1]
    vectors, found = coexpression_embedding(cells, np.arange(len(cells)), vocab_size, dim=16)
    assert vectors.shape == (vocab_size, 16) and 5_000 < found.sum() < vocab_size
    assert np.allclose(np.linalg.norm(vectors[found], axis=1).mean(), 4.0, rtol=1e-3)  # sqrt(dim): N(0,1) rows
    from grnformer.data.genes import GeneVocab

    vocab = GeneVocab.default()
    ids = dict(zip(vocab.symbols, range(len(vocab))))
    v = {g: vectors[ids[g]] / np.linalg.norm(vectors[ids[g]]) for g in ("CD79A", "CD79B", "MS4A1", "CD3E", "CD3D")}
    within = np.mean([v["CD79A"] @ v["CD79B"], v["CD79A"] @ v["MS4A1"]])
    across = np.mean([v["CD79A"] @ v["CD3E"], v["MS4A1"] @ v["CD3D"]])
    assert within > across + 0.2


def _corpus(path, with_pancreas: bool):
    sources = {"retina": datasets.load("retina")[:300].copy()}
    if with_pancreas:
        sources["pancreas"] = silver.add_training_labels("mouse_pancreas_e155",
                                                         datasets.load("mouse_pancreas_e155")[:200])
    build_corpus(sources, path, label_set=LabelSet.fit([a.obs for a in sources.values()]))
    return path


def test_warm_start_carries_weights_by_gene_and_by_leaf(tmp_path):
    small = pretrain({"out_dir": str(tmp_path / "a"), "data": {"corpus": str(_corpus(tmp_path / "ca", False))},
                      "training": {"max_steps": 3}}, TINY)
    old = load_bundle(small)
    cfg = load_config({"out_dir": str(tmp_path / "b"), "data": {"corpus": str(_corpus(tmp_path / "cb", True))}},
                      TINY)
    run = build(cfg)
    model, labels = run.plan.model, run.data.label_set
    summary = warm_start(model, run.data.vocab, labels, small)
    assert summary["n_carried"] > 10 and not summary["skipped"]
    new_types, old_types = labels.encoders["cell_type"].leaves, old.labels.encoders["cell_type"].leaves
    assert len(new_types) > len(old_types)
    head, old_head = model.label_heads["cell_type"].weight, old.model.label_heads["cell_type"].weight
    for i, term in enumerate(new_types):
        if term in old_types:
            assert torch.equal(head[i], old_head[old_types.index(term)])
    assert torch.equal(model.blocks[0].attn.qkv.weight, old.model.blocks[0].attn.qkv.weight)
    assert torch.equal(model.gene_encoder.learned.weight, old.model.gene_encoder.learned.weight)  # same vocabulary


def test_bottleneck_on_part_of_the_batch_and_a_stretch_that_stops_on_time(tmp_path):
    corpus = _corpus(tmp_path / "c", False)
    cfg = load_config({"out_dir": str(tmp_path / "r"), "data": {"corpus": str(corpus)}},
                      TINY + ["training.bottleneck_fraction=0.25"])
    run = build(cfg)
    batch = next(iter(run.data.train_dataloader()))
    calls = []
    original = run.plan.model.bottleneck
    run.plan.model.bottleneck = lambda out, genes, *a: calls.append(genes.shape[0]) or original(out, genes, *a)
    terms = run.plan.losses(batch)
    assert calls == [2] and torch.isfinite(terms["bottleneck"])  # 25% of 8 cells
    with pytest.raises(Exception, match="bottleneck_fraction"):
        build(load_config(cfg, ["training.bottleneck_fraction=0"]))
    ckpt = pretrain(cfg, ["training.max_steps=100000", "training.stop_after_minutes=0.05"])
    step = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step < 100000  # stopped by the clock, and saved where it stopped


def test_campaign_refuses_a_stretch_without_minutes():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "campaign.py")], capture_output=True, text=True)
    assert out.returncode == 2 and "--minutes" in out.stderr
    assert json.loads((ROOT / "src" / "grnformer" / "checkpoints" / "small.json").read_text())["steps"] > 0


def test_a_run_with_the_coexpression_prior_resumes_without_refitting_it(tmp_path, monkeypatch):
    """The campaign's recipe uses the prior; its stretches resume from last.ckpt, whose weights replace the prior's."""
    cfg = load_config({"out_dir": str(tmp_path / "r"), "data": {"corpus": str(_corpus(tmp_path / "c", False))}},
                      TINY + ["model.gene_init=coexpression", "training.max_steps=2"])
    first = pretrain(cfg)

    def refit(*args, **kwargs):
        raise AssertionError("a resumed run must not refit the co-expression prior")

    monkeypatch.setattr("grnformer.data.corpus.gene_prior.coexpression_embedding", refit)
    last = pretrain(cfg, ["training.max_steps=4"], resume=first)
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    with pytest.raises(Exception, match="gene_init must be null or coexpression"):
        build(load_config(cfg, ["model.gene_init=svd"]))


def test_a_new_run_counts_the_cell_views_of_the_weights_it_starts_from(tmp_path, monkeypatch):
    """A warm start from an earlier run's last.ckpt carries that run's base plus its steps x batch; the card's
    count is used only for the shipped weights; an existing run keeps its ledger record."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import campaign

    monkeypatch.setattr(campaign, "CAMPAIGN", tmp_path)
    monkeypatch.setattr(campaign, "LEDGER", tmp_path / "ledger.json")
    earlier = tmp_path / "run-old"
    (earlier / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 7}, earlier / "checkpoints" / "last.ckpt")
    (earlier / "config.yaml").write_text("training:\n  batch_size: 16\n")
    (tmp_path / "ledger.json").write_text(json.dumps({"stretches": [{"run": "run-old", "base_cell_views": 1000}]}))
    weights = str(earlier / "checkpoints" / "last.ckpt")
    assert campaign._base_cell_views(tmp_path / "run-new", "warm", weights) == 1000 + 7 * 16
    assert campaign._base_cell_views(earlier, "warm", None) == 1000  # resuming: the ledger's record
    assert campaign._base_cell_views(tmp_path / "run-new", "scratch", None) == 0
    card = json.loads(campaign.CARD.read_text())
    assert campaign._base_cell_views(tmp_path / "run-new", "warm", "shipped") == card["cell_views"]


def test_a_finished_cycle_makes_the_next_run(tmp_path, monkeypatch):
    """A run whose schedule is spent (global_step = the recipe's max_steps) is not resumed: the next cycle is."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import campaign

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("training:\n  max_steps: 5\n")
    monkeypatch.setattr(campaign, "CAMPAIGN", tmp_path)
    monkeypatch.setattr(campaign, "CONFIG", recipe)
    sources = ["retina_train"]
    first = campaign._run_dir(sources)
    assert first.name == f"run-{campaign._run_key(sources)}"  # nothing yet: cycle 1
    (first / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 3}, first / "checkpoints" / "last.ckpt")
    assert campaign._run_dir(sources) == first  # steps left: resume it
    torch.save({"global_step": 5}, first / "checkpoints" / "last.ckpt")
    assert campaign._run_dir(sources).name == first.name + "-c2"


def test_the_card_s_numbers_add_up_over_its_lineage():
    """The shipped card's steps x batch are its cell views, and so is the sum over the runs of its lineage, which
    chain run to run through the committed ledger; its wall time and CPU-hours are the lineage's stretches."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import campaign
    from export_shipped import lineage

    card = json.loads(campaign.CARD.read_text())
    assert card["steps"] * card["batch_size"] == card["cell_views"]
    runs = card["lineage"]["runs"]
    assert sum(r["steps"] * r["batch_size"] for r in runs) == card["cell_views"]
    assert runs[0]["continued"] is None and all(b["continued"] == a["run"] for a, b in zip(runs, runs[1:]))
    ledger = campaign.read_ledger()
    again = lineage(ledger, runs[-1]["run"], runs[-1]["steps"], runs[-1]["batch_size"])
    assert (again["cell_views"], again["wall_seconds"], again["cpu_hours"]) == (
        card["cell_views"], card["wall_seconds"], card["cpu_hours"])
    by_run = {s["run"]: s for s in reversed(ledger["stretches"])}  # each run's first stretch
    for earlier, later in zip(runs, runs[1:]):  # a warm start's base = everything before it
        assert by_run[later["run"]]["base_cell_views"] == sum(r["cell_views"] for r in runs[:runs.index(later)])
    # a stretch outside the lineage does not count: an abandoned run adds nothing
    extra = {**ledger, "stretches": [*ledger["stretches"], {
        "stretch": 99, "run": "run-abandoned", "how": "warm", "continues": runs[0]["run"], "steps_from": 0,
        "steps_to": 100, "batch_size": 16, "base_cell_views": 0, "wall_seconds": 1000, "threads": 2}]}
    assert lineage(extra, runs[-1]["run"], runs[-1]["steps"], 16)["wall_seconds"] == card["wall_seconds"]
    # a new run warm-started from the shipped weights (a fresh machine) continues the card's last run
    fresh = {**ledger, "stretches": [*ledger["stretches"], {
        "stretch": 100, "run": "run-fresh", "how": "warm", "continues": campaign._shipped_run(), "steps_from": 0,
        "steps_to": 10, "batch_size": 16, "base_cell_views": card["cell_views"], "wall_seconds": 60, "threads": 1}]}
    grown = lineage(fresh, "run-fresh", 10, 16)
    assert grown["cell_views"] == card["cell_views"] + 160 and grown["wall_seconds"] == card["wall_seconds"] + 60


def test_a_stretch_replaces_the_shipped_weights_only_when_validation_improves(tmp_path, monkeypatch):
    """The export decision reads the run's last validation loss (over every resumed stretch's log) and the shipped
    card's, on the same corpus; a new corpus is exported, since the card's figure is from another split."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import campaign

    card = {"sources": ["a", "b"], "final_val": {"loss": 3.0}}
    monkeypatch.setattr(campaign, "CARD", tmp_path / "card.json")
    (tmp_path / "card.json").write_text(json.dumps(card))
    run = tmp_path / "run"
    for version, rows in ((0, "step,val/loss,train/loss\n10,,4.0\n499,3.2,\n"), (1, "step,val/loss\n999,2.9\n")):
        (run / "logs" / f"version_{version}").mkdir(parents=True)
        (run / "logs" / f"version_{version}" / "metrics.csv").write_text(rows)
    log = run / "logs" / "version_1" / "metrics.csv"
    assert campaign.last_validation(run) == 2.9
    assert campaign.export_decision(run, ["b", "a"])[0]
    log.write_text("step,val/loss\n999,3.1\n")
    export, why = campaign.export_decision(run, ["a", "b"])
    assert not export and "3.1000" in why and "3.0000" in why
    assert campaign.export_decision(run, ["a", "b", "c"])[0]      # a new corpus: another validation split
    assert campaign.last_validation(tmp_path / "no_run") is None
