"""Lineage transcription factors of blood cell types: the literature truth behind the specificity benchmark
(`benchmarks/bench_specificity.py`). A per-type network that is specific to its type should rank its lineage's TFs
among its strongest regulators, and not the other lineages' TFs.

Each lineage is a Cell Ontology term; a cell type belongs to the lineage whose term is its closest ancestor (or the
term itself), so FACS-sorted T-cell subsets, silver labels and `grnformer classify` predictions pool the same way.
The TFs are those whose loss blocks or redirects the lineage in the studies cited (facts, stated in our words):

- monocytes: SPI1 (PU.1), CEBPA, CEBPB: Rosenbauer & Tenen, Nat Rev Immunol 2007, "Transcription factors in myeloid
  development: balancing differentiation with transformation"; Friedman, Oncogene 2007, "Transcriptional control of
  granulocyte and monocyte development".
- B cells: PAX5, EBF1, POU2AF1 (OBF1/BOB1): Nutt & Kee, Immunity 2007, "The transcriptional regulation of B cell
  lineage commitment"; Schubart et al., Nature 1996 (OBF-1/Bob1 is needed for germinal centres and B-cell
  antibody responses).
- NK cells: TBX21 (T-bet), EOMES: Gordon et al., Immunity 2012, "The transcription factors T-bet and Eomes control key
  checkpoints of natural killer cell maturation".
- T cells: TCF7 (TCF-1), LEF1, BCL11B: Weber et al., Nature 2011 (TCF-1 in T-cell commitment); Li et al., Science
  2010 (Bcl11b, T-cell identity); Rothenberg, Annu Rev Immunol 2014, "Transcriptional control of early T and B cell
  developmental choices".
- plasmacytoid dendritic cells: IRF8, TCF4 (E2-2): Cisse et al., Cell 2008, "Transcription factor E2-2 is an
  essential and specific regulator of plasmacytoid dendritic cell development"; Reizis, Immunity 2019.
- haematopoietic progenitors (CD34+): GATA2, MEIS1, HLF: Novershtern et al., Cell 2011, "Densely interconnected
  transcriptional circuits control cell states in human hematopoiesis"; Laurenti et al., Nat Immunol 2013 (HLF
  among the TFs of human HSCs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Lineage:
    name: str
    term: str  # Cell Ontology term of the lineage
    tfs: tuple[str, ...]  # HGNC symbols


LINEAGES: tuple[Lineage, ...] = (
    Lineage("monocyte", "CL:0000576", ("SPI1", "CEBPA", "CEBPB")),
    Lineage("B cell", "CL:0000236", ("PAX5", "EBF1", "POU2AF1")),
    Lineage("NK cell", "CL:0000623", ("TBX21", "EOMES")),
    Lineage("T cell", "CL:0000084", ("TCF7", "LEF1", "BCL11B")),
    Lineage("plasmacytoid dendritic cell", "CL:0000784", ("IRF8", "TCF4")),
    Lineage("haematopoietic progenitor", "CL:0008001", ("GATA2", "MEIS1", "HLF")),
)
# The lineages the goals name (the others are scored and reported, not goals).
GOAL_LINEAGES = ("monocyte", "B cell", "NK cell", "T cell")
OTHER = "other"


def lineage_of(term: str) -> str:
    """The lineage of a Cell Ontology term: the lineage whose term is the term itself or its closest ancestor;
    'other' when none is (unknown terms included)."""
    from grnformer.data.corpus.labels import _ancestor_distances

    by_term = {lin.term: lin.name for lin in LINEAGES}
    if term in by_term:
        return by_term[term]
    ancestors = _ancestor_distances(str(term))
    near = [(d, by_term[t]) for t, d in ancestors.items() if t in by_term]
    return min(near)[1] if near else OTHER


def lineages_of(terms: Iterable[str]) -> list[str]:
    """`lineage_of` for each term (each distinct term looked up once)."""
    terms = [str(t) for t in terms]
    known = {t: lineage_of(t) for t in set(terms)}
    return [known[t] for t in terms]


def lineage_tfs(name: str) -> tuple[str, ...]:
    """The TFs of a lineage by name."""
    for lin in LINEAGES:
        if lin.name == name:
            return lin.tfs
    raise KeyError(f"no lineage '{name}'; known: {', '.join(lin.name for lin in LINEAGES)}")


def all_lineage_tfs() -> list[str]:
    """Every lineage TF, in table order."""
    return [tf for lin in LINEAGES for tf in lin.tfs]
