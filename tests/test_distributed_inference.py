"""Inference over two gloo CPU ranks (`inference.distributed`) equals one process for every task: embed, classify,
denoise and the attention networks (mean_qk, per_cell, fused, groups in one pass). Each rank is a subprocess
running the same script; results come back through files, and only rank 0 writes the task's output file. A rank
that dies mid-run stops the others and leaves no output behind."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _tasks_support import pbmc, tiny_bundle
from anndata import read_h5ad

from grnformer import InputError
from grnformer.data.input.prepare import prepare
from grnformer.inference.distributed import sharded
from grnformer.networks.from_data import parse_weights
from grnformer.networks.grn import GRNOptions, grn
from grnformer.networks.grn_options import DEFAULT_FUSION, FUSION_COMPONENTS
from grnformer.tasks.classify import classify
from grnformer.tasks.denoise import denoise
from grnformer.tasks.embed import embed, embed_file
from grnformer.tasks.task_options import DenoiseOptions

N_CELLS, BATCH = 37, 8  # five batches, dealt 3 / 2 to the ranks; the last one short
NETWORKS = {"mean_qk": {"method": "mean_qk", "n_genes": 90}, "per_cell": {"method": "per_cell", "n_genes": 40},
            "fused": {"method": "fused", "n_genes": 90},
            "groups": {"method": "mean_qk", "n_genes": 90, "groupby": "half", "include_all": True}}


def run_tasks(bundle, out_dir):
    """Every task on the same cells; returns {name: array} (networks as dense matrices)."""
    cells = prepare(pbmc(N_CELLS, seed=5))[0]  # genes by Ensembl ID: each task's own prepare is then quick
    cells.obs["half"] = np.where(np.arange(N_CELLS) % 2, "odd", "even")
    results = {"embed": embed(bundle, cells, batch_size=BATCH, progress=False)}
    classify(bundle, cells, batch_size=BATCH, progress=False)
    results["classify"] = cells.obs["grnformer_cell_type_prob"].to_numpy()
    results["classify_terms"] = cells.obs["grnformer_cell_type"].astype(str).to_numpy()
    results["denoise"] = denoise(bundle, cells, DenoiseOptions(genes="hvg", n_genes=50, batch_size=BATCH),
                                 progress=False).toarray()
    for name, kw in NETWORKS.items():
        nets = grn(bundle, cells, GRNOptions(regulators="all", batch_size=BATCH, **kw), progress=False)
        for key, net in (nets.items() if isinstance(nets, dict) else [("", nets)]):
            results[f"grn_{name}{key}"] = net.varp["GRN"].toarray() if hasattr(net.varp["GRN"], "toarray") \
                else np.asarray(net.varp["GRN"])
    embed_file(bundle, cells, os.path.join(out_dir, "embedded.h5ad"), batch_size=BATCH, progress=False)
    return results


SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np, torch.distributed as dist
    from test_distributed_inference import run_tasks
    from _tasks_support import tiny_bundle
    from grnformer.inference import device
    from grnformer.inference.distributed import sharded
    device.native_bf16_cpu = lambda: False  # 'auto' as fp32, as conftest makes it for the one-process run
    rank, out = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", init_method="file://" + out + "/rendezvous", rank=rank, world_size=2)
    with sharded():
        results = run_tasks(tiny_bundle(), out)
    np.savez(out + f"/rank{{rank}}.npz", **results)
    dist.destroy_process_group()
""")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    script = out / "rank.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(out)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return out, [dict(np.load(out / f"rank{r}.npz", allow_pickle=True)) for r in range(2)]


def tolerance(name: str) -> float:
    """1e-6, except for rank fusion: the ranks' q/k sums are added in another order (float32), which can swap two
    attention scores closer than that rounding; a swap moves a fused score by at most one rank step of the
    attention part (its share of the default fusion weights over the candidate edges, 90 × 89)."""
    weights = parse_weights(DEFAULT_FUSION, FUSION_COMPONENTS)
    return weights["attention"] / sum(weights.values()) / (90 * 89) if name == "grn_fused" else 1e-6


def test_two_ranks_equal_one_process_for_every_task(two_ranks, tmp_path):
    out, ranks = two_ranks
    one = run_tasks(tiny_bundle(), str(tmp_path))
    assert set(ranks[0]) == set(one) and len(one) == 10
    for name, expected in one.items():
        for got in ranks:
            if expected.dtype == object or expected.dtype.kind in "US":
                assert list(got[name]) == list(expected), name
            else:
                assert got[name].shape == expected.shape, name
                assert np.allclose(got[name], expected, atol=tolerance(name), rtol=0, equal_nan=True), \
                    (name, float(np.nanmax(np.abs(got[name] - expected))))
    assert np.abs(one["embed"]).sum(1).min() > 0  # every cell has an embedding (none lost)
    written = read_h5ad(out / "embedded.h5ad")  # rank 0's file, the only one
    assert np.allclose(written.obsm["X_grnformer"], one["embed"], atol=1e-6)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".h5ad") == ["embedded.h5ad"]


def test_bootstrap_refused_over_ranks_and_rows_checked():
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29531", rank=0, world_size=1)
    try:
        with sharded(rank=0, world=1), pytest.raises(InputError, match="n_bootstrap"):
            grn(tiny_bundle(), pbmc(12), GRNOptions(method="mean_qk", n_bootstrap=3, n_genes=30), progress=False)
        from grnformer.inference.distributed import combine_rows

        with sharded(rank=0, world=1) as shard, pytest.raises(RuntimeError, match="run once"):
            shard.rows.append(np.array([0, 1, 1]))
            combine_rows(np.zeros((3, 2), dtype=np.float32))
    finally:
        dist.destroy_process_group()


FAULT_SCRIPT = textwrap.dedent("""
    import os, sys
    from datetime import timedelta
    sys.path.insert(0, {tests!r})
    import torch.distributed as dist
    from _tasks_support import pbmc, tiny_bundle
    from grnformer.inference.distributed import sharded
    from grnformer.tasks.embed import embed_file
    rank, out = int(sys.argv[1]), sys.argv[2]
    dist.init_process_group("gloo", init_method="file://" + out + "/rendezvous", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    bundle = tiny_bundle()
    if rank == 1:  # this rank dies in its second forward pass, as a killed or crashed process would
        forward, calls = bundle.model.forward, []
        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os._exit(9)
            return forward(*args, **kwargs)
        bundle.model.forward = dying
    pbmc({n}, seed=5).write_h5ad(out + f"/cells{{rank}}.h5ad")
    with sharded():
        embed_file(bundle, out + f"/cells{{rank}}.h5ad", out + "/embedded.h5ad", batch_size={batch}, progress=False)
""")


def test_a_rank_that_dies_leaves_no_output_and_the_others_stop(tmp_path):
    """One rank killed mid-run: the other fails instead of writing (its all-reduce has no partner), and no output
    or part file is left, so a re-run starts clean."""
    script = tmp_path / "rank.py"
    script.write_text(FAULT_SCRIPT.format(tests=os.path.dirname(__file__), n=N_CELLS, batch=BATCH))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert procs[1].returncode == 9, logs[1]
    assert procs[0].returncode != 0, logs[0]  # rank 0 did not go on to write a file from half the cells
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("embedded")], logs[0]
