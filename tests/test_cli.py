"""The CLI as a user meets it: clear one-paragraph errors, exit code 2, nothing written on failure."""

import json
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from grnformer.cli import main
from grnformer.data.resources import RESOURCES
from grnformer.networks.grn_options import DEFAULT_METHOD


def test_missing_resource_names_how_to_supply_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRNFORMER_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "archives"
    empty.mkdir()
    assert main(["fetch", "tf_human", "--archives", str(empty)]) == 2
    err = capsys.readouterr().err
    res = RESOURCES["tf_human"]
    assert f"{res.package}=={res.version}" in err and "grnformer fetch --archives" in err
    assert not (tmp_path / "cache" / f"{res.package}-{res.version}" / res.filename).exists()


def test_fetch_from_local_archive(tmp_path, monkeypatch):
    """A user without registry access hands over the wheel; the file is extracted and recorded."""
    import zipfile

    from grnformer.data.resources import resource_path

    wheel = tmp_path / "archives" / "grnndata-1.3.2-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(resource_path("tf_human"), "grnndata/TF.txt")
    monkeypatch.setenv("GRNFORMER_CACHE", str(tmp_path / "cache"))
    assert main(["fetch", "tf_human", "--archives", str(wheel.parent)]) == 0
    import json

    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert list(manifest) == ["tf_human"] and manifest["tf_human"]["version"] == "1.3.2"
    assert "TP53" in (tmp_path / "cache" / "grnndata-1.3.2" / "TF.txt").read_text().split()


def test_prepare_unreadable_file_exit_2(tmp_path):
    bad = tmp_path / "broken.h5ad"
    bad.write_bytes(b"not an hdf5 file")
    out = tmp_path / "out.h5ad"
    proc = subprocess.run([sys.executable, "-m", "grnformer.cli", "prepare", str(bad), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "broken.h5ad" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out.h5ad*"))


# ------------------------------------------------------------------ grn / select-heads / --precision, end to end

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny checkpoint on disk and 45 real PBMC cells in three groups (A, B, C), as a user hands them over."""
    from _tasks_support import pbmc, tiny_bundle

    from grnformer.bundle.checkpoint import save_bundle

    root = tmp_path_factory.mktemp("cli")
    b = tiny_bundle()
    ckpt = save_bundle(b.model, b.config, b.vocab, b.labels, root / "tiny.pt")
    cells = pbmc(45, seed=7)
    cells.obs["type"] = np.array(["A", "B", "C"])[np.arange(cells.n_obs) % 3]
    cells.write_h5ad(root / "cells.h5ad")
    return str(ckpt), str(root / "cells.h5ad")


ALL_ROWS = ["--regulators", "all"]  # the tiny test cells' few genes hold no TF
ATTENTION = [*ALL_ROWS, "--method", "mean_qk"]  # tests of the attention options (heads, direction, resume)


def cli(argv, capsys):
    """(exit code, stderr) of one command, argparse's usage errors (SystemExit 2) included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def test_grn_options_reach_the_network_file(files, tmp_path, capsys):
    ckpt, cells = files
    out = tmp_path / "net.h5ad"
    code, err = cli(["grn", ckpt, cells, out, "--genes", "hvg", *ALL_ROWS,
                     "--n-genes", "20", "--keep-heads", "--max-cells",
                     "10", "--method", "per_cell", "--precision", "fp32", "--seed", "3"], capsys)
    assert code == 0, err
    net = ad.read_h5ad(out)
    assert net.uns["grn_heads"].shape == (4, 20, 20) and list(net.uns["grn_head_names"])[-1] == "L1H1"
    info = net.uns["grn"]
    assert (info["n_cells"], info["max_cells"], info["method"], info["precision"], info["seed"]) == \
        (10, 10, "per_cell", "fp32", 3)
    assert net.n_obs == 10
    other = tmp_path / "other.h5ad"
    assert cli(["grn", ckpt, cells, other, "--genes", "hvg", *ALL_ROWS, "--n-genes", "20", "--max-cells", "10",
                "--seed", "4"], capsys)[0] == 0
    again = ad.read_h5ad(other)
    assert "grn_heads" not in again.uns and again.uns["grn"]["method"] == DEFAULT_METHOD  # the protocol's default
    assert set(again.obs_names) != set(net.obs_names)  # the seed draws other cells


def test_grn_groups_writes_only_those_groups(files, tmp_path, capsys):
    ckpt, cells = files
    code, err = cli(["grn", ckpt, cells, tmp_path / "nets", "--genes", "hvg", *ATTENTION, "--n-genes", "20",
                     "--groupby", "type", "--groups", "C,A", "--csv"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "nets").iterdir()) == ["A.csv", "A.h5ad", "C.csv", "C.h5ad"]
    for g in ("A", "C"):
        net = ad.read_h5ad(tmp_path / "nets" / f"{g}.h5ad")
        assert net.uns["grn"]["group"] == g and (net.obs["type"] == g).all() and net.n_obs == 15


def test_grn_rerun_keeps_finished_groups_and_overwrite_recomputes(files, tmp_path, capsys):
    ckpt, cells = files
    out = tmp_path / "nets"
    base = ["grn", ckpt, cells, out, "--genes", "hvg", *ATTENTION, "--n-genes", "20", "--groupby", "type"]
    assert cli(base, capsys)[0] == 0
    made = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert sorted(made) == ["A.h5ad", "B.h5ad", "C.h5ad"]
    code, err = cli(base, capsys)
    assert code == 0 and "kept 3 network(s)" in err
    code, err = cli(base + ["--direction", "qk"], capsys)
    assert code == 2 and "direction: kq there, qk now" in err and "--overwrite" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == made
    assert cli(base + ["--direction", "qk", "--overwrite"], capsys)[0] == 0
    for name, mtime in made.items():
        assert (out / name).stat().st_mtime_ns != mtime
        assert ad.read_h5ad(out / name).uns["grn"]["direction"] == "qk"


def test_precision_reaches_the_model(files, tmp_path, capsys):
    ckpt, cells = files
    emb = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.h5ad"
        assert cli(["embed", ckpt, cells, out, "--precision", precision], capsys)[0] == 0
        emb[precision] = ad.read_h5ad(out).obsm["X_grnformer"]
    np.testing.assert_allclose(emb["fp32"], emb["bf16"], atol=0.1)  # same cells, same model …
    assert not np.array_equal(emb["fp32"], emb["bf16"])  # … run in bfloat16


def test_select_heads_writes_json_that_grn_heads_accepts(files, tmp_path, capsys):
    """A truth made of one head's strongest edges: select-heads finds that head; grn --heads uses the JSON."""
    from _tasks_support import run_grn, tiny_bundle

    ckpt, cells = files
    kw = dict(genes="hvg", n_genes=30, progress=False)
    full = run_grn(tiny_bundle(), ad.read_h5ad(cells), keep_heads=True, **kw)
    planted = full.uns["grn_heads"][2] * ~np.eye(30, dtype=bool)
    r, t = np.unravel_index(np.argsort(planted, axis=None)[::-1][:60], planted.shape)
    names = np.asarray(full.var_names)
    pd.DataFrame({"regulator": names[r], "target": names[t]}).to_csv(tmp_path / "truth.csv", index=False)
    heads = tmp_path / "heads.json"
    code, err = cli(["select-heads", ckpt, cells, tmp_path / "truth.csv", heads, "--genes", "hvg", *ALL_ROWS,
                     "--n-genes", "30", "--split", "regulators", "--train-fraction", "0.6", "--seed", "1"], capsys)
    assert code == 0, err
    fitted = json.loads(heads.read_text())
    assert fitted["heads"][0]["layer"] == 1 and fitted["heads"][0]["head"] == 0  # L1H0 = cube index 2
    assert fitted["metrics"]["split"] == "regulators" and fitted["metrics"]["train_fraction"] == 0.6
    assert (fitted["fitted_with"]["method"], fitted["fitted_with"]["correction"]) == ("mean_qk", "none")
    assert cli(["grn", ckpt, cells, tmp_path / "net.h5ad", "--genes", "hvg", *ATTENTION, "--n-genes", "30", "--heads",
                heads], capsys)[0] == 0
    net = ad.read_h5ad(tmp_path / "net.h5ad")
    assert dict(net.uns["grn"]["heads"]) == {f"L{h['layer']}H{h['head']}": pytest.approx(h["weight"])
                                             for h in fitted["heads"]}
    code, err = cli(["grn", ckpt, cells, tmp_path / "qk.h5ad", "--genes", "hvg", *ATTENTION,
                     "--n-genes", "30", "--heads", heads, "--direction", "qk"], capsys)
    assert code == 2 and "direction" in err and not (tmp_path / "qk.h5ad").exists()
    code, err = cli(["grn", ckpt, cells, tmp_path / "raw.h5ad", "--genes", "hvg", *ATTENTION,
                     "--n-genes", "30", "--heads", heads, "--correction", "centre_q"], capsys)
    assert code == 2 and "fitted with correction 'none'" in err and not (tmp_path / "raw.h5ad").exists()


BAD = [
    (["grn", "--max-cells", "0"], "max_cells must be >= 1"),
    (["grn", "--groups", "A"], "groups were given without groupby"),
    (["grn", "--groupby", "type", "--groups", "A,Z"], "no cells in obs['type']: Z"),
    (["grn", "--groups", ","], "expected comma-separated names"),
    (["grn", "--method", "exact"], "invalid choice: 'exact'"),
    (["grn", "--precision", "fp16"], "invalid choice: 'fp16'"),
    (["grn", "--seed", "-1"], "seed must be >= 0"),
    (["grn", "--batch-size", "0"], "batch_size must be >= 1"),
    (["grn", "--max-cells", "ten"], "invalid int value: 'ten'"),
    (["grn", "--method", "per_cell", "--genes", "random_expressed"], "needs one shared context"),
    (["grn", "--method", "mean_qk", "--heads", "missing.json"], "head selection file not found"),
    (["grn", "--method", "spearman", "--heads", "missing.json"], "method 'spearman' reads no attention"),
    (["select-heads", "--train-fraction", "1.5"], "train_fraction must be in (0, 1)"),
    (["select-heads", "--split", "cells"], "invalid choice: 'cells'"),
    (["select-heads", "--method", "pearson"], "invalid choice: 'pearson'"),
    (["select-heads", "--filter", "topk"], "unrecognized arguments: --filter"),  # acts after the heads are weighed
    (["embed", "--precision", "half"], "invalid choice: 'half'"),
    (["embed", "--source", "gene"], "invalid choice: 'gene'"),
    (["embed", "--batch-size", "0"], "batch_size"),
    (["classify", "--threshold", "2"], "threshold must be in [0, 1]"),
    (["classify", "--classes", "disease"], "label classes ['disease'] are not predicted"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_exit_2_with_a_message_and_no_output(files, tmp_path, capsys, argv, message):
    ckpt, cells = files
    command, options = argv[0], argv[1:]
    out = tmp_path / "out" / ("heads.json" if command == "select-heads" else "net.h5ad")
    out.parent.mkdir()
    truth = tmp_path / "truth.csv"
    truth.write_text("regulator,target\nSPI1,LYZ\n")
    positional = [ckpt, cells, truth, out] if command == "select-heads" else [ckpt, cells, out]
    network = ["--genes", "hvg", "--n-genes", "20"] if command in ("grn", "select-heads") else []
    code, err = cli([command, *positional, *network, *options], capsys)
    assert code == 2 and message in err, err
    assert "Traceback" not in err and not list(out.parent.iterdir())


def test_task_and_bench_flags_are_built_from_their_options():
    """Every documented option field is a flag, and the flags given become the options object (others keep
    the dataclass defaults)."""
    import dataclasses

    from grnformer.bench.bench_options import BenchOptions
    from grnformer.cli import _options, build_parser
    from grnformer.tasks.task_options import ClassifyOptions, DenoiseOptions, EmbedOptions

    parser = build_parser()
    for command, cls in (("denoise", DenoiseOptions), ("bench", BenchOptions), ("embed", EmbedOptions),
                         ("classify", ClassifyOptions)):
        sub = parser._subparsers._group_actions[0].choices[command]
        flags = {a.dest for a in sub._actions}
        assert {f.name for f in dataclasses.fields(cls) if f.metadata["cli"]} <= flags
        assert "method_options" not in flags
    args = parser.parse_args(["denoise", "ck", "in.h5ad", "out.h5ad", "--n-genes", "50", "--seed", "3",
                              "--max-listed-per-context", "10", "--genes", "hvg"])
    assert _options(DenoiseOptions, args) == DenoiseOptions(genes="hvg", n_genes=50, seed=3, max_listed_per_context=10)
    args = parser.parse_args(["bench", "--methods", "pearson", "--datasets", "chen_hesc", "--truths", "omnipath",
                              "--out", "o", "--universes", "all,truth_regulators", "--regulators", "tf"])
    assert _options(BenchOptions, args) == BenchOptions(universes=["all", "truth_regulators"], regulators="tf")
    args = parser.parse_args(["embed", "ck", "in.h5ad", "out.h5ad", "--source", "mean", "--umap", "--seed", "2"])
    assert _options(EmbedOptions, args) == EmbedOptions(source="mean", umap=True, seed=2)
    args = parser.parse_args(["classify", "ck", "in.h5ad", "out.h5ad", "--classes", "cell_type,sex",
                              "--threshold", "0.2", "--organism", "mouse"])
    assert _options(ClassifyOptions, args) == ClassifyOptions(classes=["cell_type", "sex"], threshold=0.2,
                                                              organism="mouse")


def test_grn_flags_are_built_from_the_options_dataclass():
    """Every documented GRNOptions field is a grn flag with the field's help and choices (one description)."""
    import dataclasses

    from grnformer.cli import build_parser
    from grnformer.networks.grn_options import FILTERS, GRNOptions

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["grn"]
    flags = {a.dest: a for a in sub._actions}
    for f in dataclasses.fields(GRNOptions):
        if f.metadata.get("cli"):
            assert f.name in flags and f.metadata["help"] in flags[f.name].help
    assert list(flags["filter"].choices) == list(FILTERS)
    args = sub.parse_args(["shipped", "in.h5ad", "out.h5ad", "--correction", "none", "--groups", "A,B", "--seed", "3"])
    assert (args.correction, args.groups, args.seed, args.top_k) == ("none", ["A", "B"], 3, None)
    with pytest.raises(SystemExit):
        sub.parse_args(["shipped", "in.h5ad", "out.h5ad", "--method", "exact"])
