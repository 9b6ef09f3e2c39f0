"""A quality guard on the shipped model, on real held-out cells: classify and embed retina_test (300 cells, 30% of
each retina type, never trained on) and compare with the figures the shipped card records for these weights
(src/grnformer/checkpoints/small.json, 'quality_zero_shot', written by benchmarks/bench_checkpoints.py --card).
It fails when accuracy or ARI falls more than 0.02 below them: a change to the model code, the tokenisation, the
gene mapping, the collator or the weights that costs quality shows up here. The measures are
bench_checkpoints.py's own (classify accuracy against the CELLxGENE labels; k-means with as many clusters as types
on the cell embedding, ARI), so the guard follows the card when new weights are shipped."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from grnformer.data.corpus import datasets
from grnformer.data.corpus.labels import column
from grnformer.tasks.classify import classify
from grnformer.tasks.embed import embed
from grnformer.train.checkpoint import load_bundle, resolve_checkpoint

CARD = Path(__file__).resolve().parents[1] / "src" / "grnformer" / "checkpoints" / "small.json"
TOLERANCE = 0.02

pytestmark = pytest.mark.usefixtures("one_thread")


def _recorded(key: str) -> float:
    line = json.loads(CARD.read_text())["quality_zero_shot"]["estimate [95% interval]"][key]
    return float(line.split()[0])  # "0.927 [0.893, 0.953]; kNN on PCA ...": the estimate


def test_shipped_model_keeps_its_recorded_retina_quality():
    bundle = load_bundle(resolve_checkpoint("shipped"))
    test = datasets.load("retina_test")
    truth = test.obs[column("cell_type")].astype(str).to_numpy()
    classify(bundle, test, progress=False)
    accuracy = float(np.mean(test.obs["grnformer_cell_type"].astype(str).to_numpy() == truth))
    emb = embed(bundle, datasets.load("retina_test"), progress=False)
    keep = np.isfinite(emb).all(axis=1)
    assert keep.mean() > 0.99
    found = KMeans(n_clusters=len(np.unique(truth[keep])), n_init=10, random_state=0).fit_predict(emb[keep])
    ari = adjusted_rand_score(truth[keep], found)
    recorded = {"accuracy": _recorded("labels / retina_test / accuracy"),
                "ari": _recorded("embedding / retina_test / ari")}
    assert recorded["accuracy"] > 0.5 and recorded["ari"] > 0.3  # the card holds this model's figures
    assert accuracy >= recorded["accuracy"] - TOLERANCE, (accuracy, recorded)
    assert ari >= recorded["ari"] - TOLERANCE, (ari, recorded)
