"""A network explorer in the browser: one self-contained HTML file (no server, no network access) holding one or
more networks — e.g. one per cell type — with each regulator's top targets.

Search a gene and see its regulators and targets in a network with score, stability (varp['GRN_stability'] when
present) and signed effect (perturb networks); filter to TFs; compare two networks side by side; download the
visible table as CSV. The page is the template ``grnformer/templates/explorer.html`` (plain JavaScript written for
grnformer) with the data embedded as JSON: the union of the networks' gene names, the TFs among them, and per
network its kept edges (`networks.exports.top_edges`) as base64 arrays — uint16 gene indices (uint32 beyond 65,535
genes), float32 scores and effects, stability as a whole percent (uint8). About 12 bytes an edge: 2,000 genes ×
8 networks × 10 targets ≈ 2 MB.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np
from anndata import AnnData

from grnformer.errors import InputError
from grnformer.networks.exports import (
    check_network,
    check_top_k,
    read_network,
    top_edges,
)

DEFAULT_TOP_K = 10
_TERM = re.compile(r"^[A-Z]+:\d+$")


def _b64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values).tobytes()).decode("ascii")


def readable(group: str) -> str:
    """A network's name for the page: 'all' → 'all cells', an ontology term → 'label (term)', else as given."""
    if group == "all":
        return "all cells"
    if _TERM.match(group):
        from grnformer.data.corpus.labels import term_label

        label = term_label(group)
        return f"{label} ({group})" if label != group else group
    return group


def network_label(net: AnnData, fallback: str) -> str:
    """A readable name: the group of a per-group network (a Cell Ontology term named by its label)."""
    grn = net.uns.get("grn")
    return readable(str(grn.get("group", fallback)) if isinstance(grn, Mapping) else fallback)


def _set_apart(net: AnnData, genes: Mapping[str, int], k: int = 25) -> list[list[float]] | None:
    """[[gene index, out-strength], …] of the ``k`` regulators that set a group apart, for a network made with a
    specificity (`networks.specificity`, over its whole rows, not only the kept edges); None for other networks."""
    from grnformer.networks.specificity import regulator_strength

    grn = net.uns.get("grn")
    if not isinstance(grn, Mapping) or str(grn.get("specificity", "none")) == "none" or "is_regulator" not in net.var:
        return None
    strength = regulator_strength(net.varp["GRN"], net.var["is_regulator"].to_numpy(bool), net.var_names.to_numpy())
    return [[genes[g], round(float(v), 5)] for g, v in strength.iloc[:k].items()]


def explorer_data(networks: Mapping[str, AnnData], top_k: int = DEFAULT_TOP_K, regulators: str = "auto",
                  about: str = "") -> dict:
    """The JSON the page embeds (see the module docstring)."""
    if not networks:
        raise InputError("the explorer needs at least one network.")
    top_k = check_top_k(top_k)
    genes: dict[str, int] = {}
    tfs: set[int] = set()
    for name, net in networks.items():
        check_network(net, f"network '{name}'")
        is_tf = net.var["is_tf"].to_numpy(bool) if "is_tf" in net.var else np.zeros(net.n_vars, bool)
        for g, t in zip(net.var_names.astype(str), is_tf):
            i = genes.setdefault(g, len(genes))
            if t:
                tfs.add(i)
    index_dtype, index_bytes = (np.dtype("<u2"), 2) if len(genes) <= 65535 else (np.dtype("<u4"), 4)
    out = []
    for name, net in networks.items():
        edges = top_edges(net, top_k, regulators)
        where = np.array([genes[g] for g in net.var_names.astype(str)], dtype=np.int64)
        grn = net.uns.get("grn") if isinstance(net.uns.get("grn"), Mapping) else {}
        method = ", ".join(str(v) for v in (grn.get("method", ""), grn.get("specificity", "none")) if v not in
                           ("", "none"))
        entry = {"name": name, "note": f"{method}, {net.n_obs:,} cells" if method else f"{net.n_obs:,} cells",
                 "rows": _b64(where[edges.rows].astype(index_dtype)),
                 "cols": _b64(where[edges.cols].astype(index_dtype)),
                 "score": _b64(edges.score.astype("<f4")), "effect": None, "stability": None}
        if edges.effect is not None:
            entry["effect"] = _b64(edges.effect.astype("<f4"))
        if edges.stability is not None:
            entry["stability"] = _b64(np.rint(np.clip(edges.stability, 0, 1) * 100).astype(np.uint8))
        entry["apart"] = _set_apart(net, genes)
        out.append(entry)
    about = about or (f"{len(networks)} network(s) over {len(genes):,} genes; each regulator's {top_k} "
                      f"strongest targets are kept, so a gene's regulators are those that rank it among their top "
                      f"{top_k}. Score: varp['GRN'] (higher = more likely an edge); stability: share of bootstrap "
                      f"replicates with the edge; effect: signed in-silico knock-out effect (perturb).")
    return {"genes": list(genes), "tfs": sorted(tfs), "index_bytes": index_bytes, "top_k": top_k,
            "about": about, "networks": out}


def explorer_html(networks: Mapping[str, AnnData], title: str = "grnformer network explorer",
                  top_k: int = DEFAULT_TOP_K, regulators: str = "auto", about: str = "") -> str:
    """The explorer page as one string."""
    data = json.dumps(explorer_data(networks, top_k, regulators, about), separators=(",", ":"))
    data = data.replace("</", "<\\/")  # the JSON must not close its <script> element
    template = (resources.files("grnformer") / "templates" / "explorer.html").read_text(encoding="utf-8")
    return template.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)


def check_explorer_options(path: str | Path, top_k: int) -> None:
    """InputError before any work when the explorer cannot be written or top_k is not a count."""
    from grnformer.inference.outputs import check_writable

    check_top_k(top_k)
    check_writable(path)


def write_explorer(networks: Mapping[str, AnnData | str | Path], path: str | Path,
                   title: str = "grnformer network explorer", top_k: int = DEFAULT_TOP_K,
                   regulators: str = "auto", about: str = "") -> Path:
    """Write the explorer of ``networks`` ({name: network or h5ad path}) to ``path`` atomically."""
    from grnformer.atomic import write_text
    from grnformer.inference.outputs import check_writable

    check_writable(path)
    nets = {name: read_network(n) if isinstance(n, (str, Path)) else n for name, n in networks.items()}
    return write_text(path, explorer_html(nets, title, top_k, regulators, about))


def explorer_from_files(paths: list[str | Path], out: str | Path, top_k: int = DEFAULT_TOP_K,
                        title: str = "grnformer network explorer") -> Path:
    """The explorer of network h5ad files (e.g. the per-group output of `grn`), each named by its group."""
    nets: dict[str, AnnData] = {}
    for p in paths:
        net = read_network(p)
        name = network_label(net, Path(p).stem)
        while name in nets:
            name += " (2)"
        nets[name] = net
    return write_explorer(nets, out, title, top_k)
