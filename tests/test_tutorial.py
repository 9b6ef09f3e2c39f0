"""docs/TUTORIAL.md runs: its python blocks are executed in order, in one namespace, in a fresh directory."""

import re
from pathlib import Path

import pandas as pd
import torch

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "TUTORIAL.md"

torch.set_num_threads(1)


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.S)


def test_tutorial_runs(tmp_path, monkeypatch):
    code = blocks()
    assert len(code) >= 7
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(code):
        exec(compile(block, f"{TUTORIAL.name}, block {i + 1}", "exec"), namespace)
    ns = namespace
    assert ns["adata"].obsm["X_grnformer"].shape == (300, 128) and "X_umap" in ns["adata"].obsm
    assert "all" in ns["nets"] and len(ns["nets"]) >= 3  # all cells + at least two cell types
    assert set(ns["scores"]["method"]) == {"grnformer", "GENIE3"}
    table = pd.read_csv("grnformer_decoupler.tsv", sep="\t")
    assert list(table.columns) == ["source", "target", "weight"] and table.groupby("source").size().max() <= 20
    assert list(pd.read_csv("grnformer_adjacencies.tsv", sep="\t").columns) == ["TF", "target", "importance"]
    assert ns["activity"].shape[0] == 300
    assert Path("explorer.html").stat().st_size > 1000 and Path("network_all_cells.h5ad").is_file()
