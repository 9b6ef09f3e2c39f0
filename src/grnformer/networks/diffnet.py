"""Differential networks: which edges change between two groups of cells (e.g. control vs interferon-beta).

Each group's network is the corrected mean-q·k network of `networks.attention` (heads averaged). The cells of both
groups run once; their q/k sums are kept per block of ``cells_per_block`` cells of one group, so a permutation
of block labels (same number of blocks per group) recomputes both networks from sums, without the model. Per
edge: diff = score_A - score_B; the permutations give its null mean and spread; z = (diff - mean) / sd and a
two-sided normal p-value (the permutation null of a difference of block means is close to normal; the raw
permutation p-value (1 + #|null| >= |diff|) / (1 + n) is reported too, but its resolution 1/(n+1) is too coarse
for tens of thousands of edges). q-values: Benjamini-Hochberg (`scipy.stats.false_discovery_control`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy.stats import false_discovery_control, norm

from grnformer.bundle.checkpoint import Bundle
from grnformer.errors import InputError
from grnformer.inference.device import load_task_bundle
from grnformer.inference.file_runner import run_file
from grnformer.inference.loop import run_model
from grnformer.inference.outputs import check_writable, write_many
from grnformer.networks.attention import MeanQK, aggregate
from grnformer.networks.grn_options import DiffNetOptions, GRNOptions
from grnformer.networks.network_adata import network_names
from grnformer.networks.network_plan import NetworkPlan, gene_slots, network_collators, plan_networks


def _block_sums(bundle: Bundle, plan: NetworkPlan, opts: GRNOptions, dev: torch.device, rows: np.ndarray,
                per_block: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q and k sums [blocks, L, H, G, d] and cell counts [blocks, G] of consecutive blocks of ``rows``: one
    `MeanQK` accumulator per block, fed from the same forward passes as grn's."""
    c, G = bundle.config, len(plan.cols)
    n_blocks = math.ceil(len(rows) / per_block)
    blocks = [MeanQK(c.n_layers, c.n_heads, c.d_head, G, dev) for _ in range(n_blocks)]
    slot_of = gene_slots(bundle, plan, dev)
    block_of = {int(r): i // per_block for i, r in enumerate(rows)}
    for batch_rows, _, batch, out in run_model(bundle, plan.prep, rows, network_collators(bundle, plan, opts), dev,
                                               batch_size=opts.batch_size, precision=opts.precision,
                                               return_qk=True, progress=progress, desc="diffnet"):
        slots = slot_of[batch["genes"]]
        for j, r in enumerate(batch_rows):
            blocks[block_of[int(r)]].add(slots[j:j + 1], [(q[j:j + 1], k[j:j + 1]) for q, k in out.qk],
                                         same_context=True)
    return (torch.stack([b.q_sum for b in blocks]), torch.stack([b.k_sum for b in blocks]),
            torch.stack([b.n_cells for b in blocks]))


def _network(q: torch.Tensor, k: torch.Tensor, n: torch.Tensor, centre: bool, direction: str,
             weights: torch.Tensor) -> torch.Tensor:
    """[G, G] network of summed blocks (q, k [L, H, G, d]; n [G]): grn's mean_qk maths (`networks.attention`)."""
    net, _ = aggregate(MeanQK.from_sums(q, k, n, centre), weights, direction)
    return torch.as_tensor(net, device=q.device)


def diffnet(bundle: Bundle | str | Path, adata: AnnData, groupby: str, a: str, b: str,
            options: DiffNetOptions | None = None, *, device: str | torch.device | None = None,
            progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every off-diagonal edge of the two groups' networks with its change and significance, most significant
    first (columns regulator, target, score_a, score_b, diff, z, p_value, p_permutation, q_value), and a
    summary (cells, blocks, permutations, seconds, edges at the FDR)."""
    opts = (options or DiffNetOptions()).validate()
    if a == b:
        raise InputError(f"the two groups must differ (got '{a}' twice).")
    bundle, dev = load_task_bundle(bundle, device)
    gopts = opts.network_options(groupby, [a, b]).validate(bundle)
    plan = plan_networks(bundle, adata, gopts)
    t0 = time.perf_counter()
    sums = {g: _block_sums(bundle, plan, gopts, dev, plan.groups[g], opts.cells_per_block, progress) for g in (a, b)}
    t_model = time.perf_counter() - t0
    q, k, n = (torch.cat([sums[a][i], sums[b][i]]) for i in range(3))
    n_a, centre = len(sums[a][2]), opts.correction == "centre_q"
    weights = gopts.head_weights(bundle, dev)

    def diff(labels: torch.Tensor) -> torch.Tensor:
        nets = [_network(q[m].sum(0), k[m].sum(0), n[m].sum(0), centre, opts.direction, weights)
                for m in (labels, ~labels)]
        return nets[0] - nets[1], nets

    observed = torch.zeros(len(n), dtype=torch.bool, device=dev)
    observed[:n_a] = True
    d_obs, (net_a, net_b) = diff(observed)
    gen = torch.Generator().manual_seed(opts.seed)
    total, total_sq, beyond = torch.zeros_like(d_obs), torch.zeros_like(d_obs), torch.zeros_like(d_obs)
    for _ in range(opts.n_permutations):
        labels = observed[torch.randperm(len(n), generator=gen).to(dev)]
        d, _ = diff(labels)
        total += d
        total_sq += d * d
        beyond += (d.abs() >= d_obs.abs()).float()
    mean = total / opts.n_permutations
    sd = (total_sq / opts.n_permutations - mean ** 2).clamp_min(1e-20).sqrt()
    z = ((d_obs - mean) / sd).cpu().numpy()
    names = network_names(plan.prep, plan.cols).to_numpy()
    G = len(names)
    r, t = np.nonzero(~np.eye(G, dtype=bool) & plan.regulators[:, None])  # regulator rows only
    p = 2 * norm.sf(np.abs(z[r, t]))
    table = pd.DataFrame({"regulator": names[r], "target": names[t], "score_a": net_a.cpu().numpy()[r, t],
                          "score_b": net_b.cpu().numpy()[r, t], "diff": d_obs.cpu().numpy()[r, t], "z": z[r, t],
                          "p_value": p, "p_permutation": (1 + beyond.cpu().numpy()[r, t]) / (1 + opts.n_permutations),
                          "q_value": false_discovery_control(p)})
    table = table.sort_values(["p_value", "regulator", "target"], kind="stable").reset_index(drop=True)
    # a permutation z of a statistic summed over N exchangeable blocks cannot exceed √(N − 1): with few blocks
    # even the strongest change cannot pass BH over many edges, and the user must be told, not given zero edges
    max_z = math.sqrt(len(n) - 1)
    if 2 * norm.sf(max_z) * len(table) > opts.fdr:
        warnings.warn(f"with {len(n)} blocks of cells the largest attainable z is {max_z:.1f} (p = "
                      f"{2 * norm.sf(max_z):.1e}), too weak to pass FDR {opts.fdr} over {len(table):,} edges: use "
                      f"more cells, fewer cells_per_block, or fewer genes/regulators.", stacklevel=2)
    summary = {"groupby": groupby, "a": a, "b": b, "cells_a": int(len(plan.groups[a])),
               "cells_b": int(len(plan.groups[b])), "blocks_a": n_a, "blocks_b": int(len(n) - n_a),
               "genes": G, "edges_tested": int(len(table)), "n_permutations": opts.n_permutations,
               "fdr": opts.fdr, "changed_edges": int((table["q_value"] <= opts.fdr).sum()),
               "seconds_model": t_model, "seconds_total": time.perf_counter() - t0,
               "correction": opts.correction, "direction": opts.direction,
               "regulators": opts.regulators if isinstance(opts.regulators, str) else "list",
               "n_regulators": int(plan.regulators.sum()), "max_attainable_z": max_z}
    return table, summary


def _drawing(edges: pd.DataFrame, a: str, b: str) -> str:
    """The changed edges drawn on a circle of their genes (red: stronger in A, blue: stronger in B), as <img>."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    genes = list(dict.fromkeys([*edges["regulator"], *edges["target"]]))
    angle = np.linspace(0, 2 * np.pi, len(genes), endpoint=False)
    xy = dict(zip(genes, np.c_[np.cos(angle), np.sin(angle)]))
    fig, ax = plt.subplots(figsize=(7, 7))
    width = 4 * edges["diff"].abs() / max(edges["diff"].abs().max(), 1e-12)
    for e, w in zip(edges.itertuples(), width):
        ax.annotate("", xy=xy[e.target], xytext=xy[e.regulator],
                    arrowprops=dict(arrowstyle="-|>", color="tab:red" if e.diff > 0 else "tab:blue", lw=0.5 + w,
                                    alpha=0.7, shrinkA=8, shrinkB=8))
    for g, (x, y) in xy.items():
        ax.text(x * 1.08, y * 1.08, g, ha="center", va="center", fontsize=8)
    ax.set_title(f"changed edges: red stronger in {a}, blue stronger in {b}")
    ax.set_xlim(-1.3, 1.3), ax.set_ylim(-1.3, 1.3), ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="changed edges" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def report_html(table: pd.DataFrame, summary: dict[str, Any], n_drawn: int) -> str:
    changed = table[table["q_value"] <= summary["fdr"]]
    drawn = changed.reindex(changed["diff"].abs().sort_values(ascending=False).index).head(n_drawn)
    a, b = html.escape(str(summary["a"])), html.escape(str(summary["b"]))
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>grnformer diffnet</title><style>",
             "body{font-family:sans-serif;max-width:1000px;margin:auto} td,th{padding:2px 6px}</style></head><body>",
             f"<h1>Differential network: {a} vs {b}</h1>",
             "<p>" + html.escape(", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in summary.items())) + "</p>",
             f"<p>{len(changed)} edges change at FDR {summary['fdr']} (diff = score in {a} − score in {b}; "
             "p from the permutation null's mean and spread, Benjamini-Hochberg q).</p>"]
    parts.append(_drawing(drawn, summary["a"], summary["b"]) if len(drawn) else "<p>No edge to draw.</p>")
    parts.append("<h2>Most significant edges</h2>" + table.head(50).to_html(index=False, float_format="%.4g"))
    return "".join(parts) + "</body></html>"


def diffnet_file(checkpoint: str | Path | Bundle, in_path: str | Path, out_dir: str | Path, groupby: str, a: str,
                 b: str, options: DiffNetOptions | None = None, *, device: str | torch.device | None = None,
                 progress: bool = True) -> list[Path]:
    """CLI entry: ``out_dir`` (created) gets edges.csv (every tested edge, most significant first) and
    report.html (summary, drawing of the changed edges, top table), written together atomically."""
    options = (options or DiffNetOptions()).validate()

    def write(adata: AnnData, result: tuple[pd.DataFrame, dict[str, Any]], out: Path) -> list[Path]:
        table, summary = result
        out.mkdir(exist_ok=True)
        page = report_html(table, summary, options.n_drawn)
        return write_many({out / "edges.csv": lambda part: table.to_csv(part, index=False, float_format="%.6g"),
                           out / "report.html": lambda part: part.write_text(page)})

    return run_file(checkpoint, in_path, out_dir,
                    lambda bundle, adata, dev: diffnet(bundle, adata, groupby, a, b, options, device=dev,
                                                       progress=progress),
                    write, check=_check_output_dir, device=device)


def _check_output_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"output '{out}' must be a directory.")
    check_writable(out / "edges.csv" if out.is_dir() else out)
