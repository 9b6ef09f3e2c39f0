"""The ground-truth type: regulator→target edges over gene symbols, each with its provenance.

Every loader returns a `GroundTruth`. Symbols are normalised to the current symbols of the organism's gene table
(GENCODE v48 / vM37, the symbols `data.input.prepare` puts in ``var["symbol"]``) by
`data.input.gene_names.current_symbols`, so that a truth and a prepared data set name the same gene the same way: exact
match first, then a case-insensitive match, then the HGNC previous and alias symbols (human) or MGI synonyms (mouse)
that point to a single gene. A symbol that maps nowhere is kept as given (it can never match a prepared data set, and is
counted in the provenance); identifiers that are not symbols at all (UniProt accessions without a mapping, miRNAs) are
dropped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from grnformer.data.genes import HUMAN
from grnformer.data.input.gene_names import current_symbols, positions
from grnformer.errors import InputError

YEAST = "NCBITaxon:4932"


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
        """Boolean matrix (regulators × targets) of the edges between the given genes, located by
        `data.input.gene_names.positions` (the rule every scoring path uses: exact symbol, else ignoring case)."""
        regs, tgts = list(regulators), list(targets)
        r = positions(self.edges["regulator"], regs)
        t = positions(self.edges["target"], tgts)
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


def source(path: Path, **extra) -> dict:
    """The start of a file-based truth's provenance: the file it was read from."""
    return {"source_file": str(path), **extra}


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
