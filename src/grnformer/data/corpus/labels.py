"""Label encoders over ontology term IDs, with the leaf / coarse structure the hierarchical classifier needs.

Per label class we keep the terms observed in the training data. Coarse terms are observed terms that are
ancestors of observed terms (e.g. 'ON-bipolar cell' when 'rod bipolar cell' is seen too); a cell labelled with
one means "one of its descendant leaves", which is what the hierarchical loss trains. Leaves, one classifier
output each, are every observed term: the terms with no observed descendant, and for each coarse term a
*residual* leaf of the same ID, "this term but none of its observed descendants". Without residual leaves a
coarse term's cells can only be called one of its descendants: CD14 monocytes labelled 'CD14-positive
monocyte', whose one observed descendant was the CD16 monocyte, were all called CD16 monocytes. A residual
leaf is counted among its own coarse term's descendants, and a prediction of it is reported as that term.
Missing labels get code -1 and weigh nothing. Ancestry comes from cellxgene-ontology-guide's OntologyParser
(offline); terms it does not know (free text, comma-joined ethnicities, ...) and organism (NCBITaxon) terms are
treated as terms without ancestors. Encoders saved before residual leaves existed load as they were.

Codes: leaf i -> i, coarse term j -> n_leaves + j, missing -> -1. A term not seen when fitting maps to its
closest observed ancestor (a leaf wins a tie with a coarse term): a subtype of a leaf is that leaf, a subtype of
a coarse term is that coarse term. A term with no observed ancestor maps to -1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

import numpy as np
import pandas as pd
from anndata import AnnData
from cellxgene_ontology_guide.ontology_parser import OntologyParser

from grnformer.data.genes import HUMAN, MOUSE

LABEL_CLASSES = ("cell_type", "disease", "assay", "sex", "self_reported_ethnicity", "organism")
MISSING = frozenset({"", "unknown", "na", "nan", "none"})  # compared lower-cased
# Species never contain one another, and loading the NCBITaxon ontology takes ~20 s: organism terms are flat.
_FLAT_PREFIX = "NCBITaxon:"
_SPECIES = {HUMAN: "Homo sapiens", MOUSE: "Mus musculus"}


def column(label_class: str) -> str:
    """obs column holding a label class."""
    return f"{label_class}_ontology_term_id"


@lru_cache(maxsize=1)
def ontology_parser() -> OntologyParser:
    """One parser per process (it loads ontology files lazily and keeps them)."""
    return OntologyParser()


@lru_cache(maxsize=None)
def _ancestor_distances(term: str) -> dict[str, int]:
    """Ancestors of a term (not itself) with their distance; empty for terms outside the known ontologies."""
    if term.startswith(_FLAT_PREFIX):
        return {}
    try:
        return dict(ontology_parser().get_term_ancestors_with_distances(term))
    except (KeyError, ValueError):
        return {}


@lru_cache(maxsize=None)
def term_label(term: str) -> str:
    """Human-readable name of a term; the term itself when the ontologies do not know it."""
    if term.startswith(_FLAT_PREFIX):
        return _SPECIES.get(term, term)
    try:
        return str(ontology_parser().get_term_label(term))
    except (KeyError, ValueError):
        return term


def _is_missing(term) -> bool:
    return term is None or (isinstance(term, float) and np.isnan(term)) or str(term).strip().lower() in MISSING


@dataclass(eq=False)
class LabelEncoder:
    """Codes of one label class (see module docstring); `descendants[j, i]`: leaf i descends from coarse j."""

    label_class: str
    leaves: list[str]
    coarse: list[str]
    descendants: np.ndarray  # bool [n_coarse, n_leaves]
    residual: np.ndarray = field(init=False, repr=False)  # per leaf: the coarse code of its term, or -1
    _code: dict[str, int] = field(init=False, repr=False)  # observed terms
    _resolved: dict[str, int] = field(init=False, repr=False)  # unseen terms, cached

    def __post_init__(self) -> None:
        self.descendants = np.asarray(self.descendants, dtype=bool).reshape(len(self.coarse), len(self.leaves))
        self._code = {t: i for i, t in enumerate(self.leaves + self.coarse)}  # a residual leaf's term: coarse
        self._resolved = {}
        self.residual = np.array([self._code[t] if self._code[t] >= len(self.leaves) else -1 for t in self.leaves],
                                 dtype=np.int64).reshape(len(self.leaves))

    @classmethod
    def fit(cls, label_class: str, terms: Iterable) -> "LabelEncoder":
        """Encoder from the terms observed in training data (missing values ignored)."""
        observed = sorted({str(t) for t in terms if not _is_missing(t)})
        seen = set(observed)
        ancestors = {t: set(_ancestor_distances(t)) & seen for t in observed}
        coarse = sorted(set().union(*ancestors.values())) if observed else []
        leaves = observed  # coarse terms included: their residual leaves
        descendants = np.array([[c in ancestors[leaf] or c == leaf for leaf in leaves] for c in coarse],
                               dtype=bool)
        return cls(label_class, leaves, coarse, descendants)

    @property
    def n_leaves(self) -> int:
        return len(self.leaves)

    @property
    def n_coarse(self) -> int:
        return len(self.coarse)

    def code(self, term) -> int:
        """Code of one term (-1 when missing or with no observed ancestor)."""
        if _is_missing(term):
            return -1
        term = str(term)
        if term in self._code:
            return self._code[term]
        if term not in self._resolved:
            self._resolved[term] = self._closest_observed(term)
        return self._resolved[term]

    def _closest_observed(self, term: str) -> int:
        known = [(d, self._code[a] >= self.n_leaves, self._code[a]) for a, d in _ancestor_distances(term).items()
                 if a in self._code]
        return min(known)[2] if known else -1

    def codes(self, terms: Iterable) -> np.ndarray:
        """int64 code per term; each distinct term is resolved once."""
        index, uniques = pd.factorize(pd.Series(np.asarray(terms, dtype=object)))  # NaN/None -> index -1
        table = np.array([self.code(t) for t in uniques] + [-1], dtype=np.int64)  # table[-1] = -1 for them
        return table[index]

    def labels(self) -> list[str]:
        """Human-readable names in code order: leaves, then coarse terms."""
        return [term_label(t) for t in self.leaves + self.coarse]

    def to_dict(self) -> dict:
        """Plain lists (descendants as leaf indices per coarse term), for checkpoints."""
        return {"label_class": self.label_class, "leaves": list(self.leaves), "coarse": list(self.coarse),
                "descendants": [np.flatnonzero(row).tolist() for row in self.descendants]}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelEncoder":
        matrix = np.zeros((len(d["coarse"]), len(d["leaves"])), dtype=bool)
        for j, leaf_indices in enumerate(d["descendants"]):
            matrix[j, leaf_indices] = True
        return cls(d["label_class"], list(d["leaves"]), list(d["coarse"]), matrix)


def _obs(source: pd.DataFrame | AnnData) -> pd.DataFrame:
    return source.obs if isinstance(source, AnnData) else source


@dataclass
class LabelSet:
    """One encoder per label class, in LABEL_CLASSES order unless built otherwise."""

    encoders: dict[str, LabelEncoder]

    @classmethod
    def fit(cls, sources: pd.DataFrame | AnnData | Iterable[pd.DataFrame | AnnData],
            classes: tuple[str, ...] = LABEL_CLASSES) -> "LabelSet":
        """Encoders from the terms observed across obs frames (or AnnDatas), read one at a time.

        A class with no column (or only missing values) gets an encoder with no leaves: all its codes are -1.
        """
        if isinstance(sources, (pd.DataFrame, AnnData)):
            sources = [sources]
        observed: dict[str, set] = {c: set() for c in classes}
        for source in sources:
            obs = _obs(source)
            for c in classes:
                if column(c) in obs.columns:
                    observed[c].update(pd.unique(obs[column(c)].dropna().astype(str)))
        return cls({c: LabelEncoder.fit(c, observed[c]) for c in classes})

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.encoders)

    @property
    def sizes(self) -> dict[str, int]:
        """Number of leaves (classifier outputs) per class."""
        return {c: e.n_leaves for c, e in self.encoders.items()}

    def encode(self, obs: pd.DataFrame | AnnData) -> np.ndarray:
        """int64 [n_cells, n_classes] codes; a class whose column is absent is all -1."""
        obs = _obs(obs)
        out = np.full((len(obs), len(self.encoders)), -1, dtype=np.int64)
        for k, (c, encoder) in enumerate(self.encoders.items()):
            if column(c) in obs.columns:
                out[:, k] = encoder.codes(obs[column(c)])
        return out

    def to_dict(self) -> dict:
        return {c: e.to_dict() for c, e in self.encoders.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSet":
        return cls({c: LabelEncoder.from_dict(e) for c, e in d.items()})
