"""The one place where a gene *name* becomes a gene: Ensembl IDs, symbols, case, and outdated symbols.

Every layer that reads gene names from a user (prepare, the tasks' gene lists, ground truths, external gene
vectors) calls this module, so one name means the same gene everywhere. The rules, in order, first match wins:

1. an Ensembl ID, with or without a version suffix (``ENSG00000141510.17``) → that ID;
2. the organism's current symbol, exact case (GENCODE v48 / vM37, as in the gene tables); a symbol shared by
   several genes names the vocabulary gene;
3. the current symbol ignoring case (``SOX2`` for mouse ``Sox2``: BEELINE and many tables upper-case mouse genes);
4. a previous symbol or alias (human: HGNC; mouse: MGI synonyms), ignoring case, only when it is one-to-one: the
   name points to a single current gene, and no other name of the same input already names that gene. Names that
   fail this are *ambiguous* and left out (listed), never guessed.

Names that are already symbols of one gene table (a network's genes, a ground truth's edges) are located among
each other by rules 2-3 alone (`positions`, `edge_matrix`), so every scoring path matches a truth to a network the
same way.

Whether case-only matches are plausible for a data set (mouse symbols read as human?) is the caller's judgement
(`data.input.prepare` decides it with the organism's source); this module only counts them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from grnformer.data.genes import HUMAN, GeneVocab, gene_table, organism_id
from grnformer.data.resources import resource_path

ENSEMBL = re.compile(r"^(ENS[A-Z]*G\d{6,})(?:[._].*)?$")
HOW = ("ensembl", "exact", "case", "synonym", "ambiguous", "unknown")


def symbol_key(names: Iterable[str]) -> pd.Index:
    """The key two spellings of one symbol share when they differ only in case (rule 3): stripped, upper case."""
    return pd.Index([str(n).strip().upper() for n in names], dtype=object)


def positions(names: Iterable[str], among: Sequence[str]) -> np.ndarray:
    """Position of each name in ``among`` (e.g. a network's genes) by rules 2-3: the exact symbol, else the symbol
    ignoring case; the first of repeated names wins; -1 where none."""
    names = [str(n).strip() for n in names]
    found = np.full(len(names), -1, dtype=np.int64)
    for key in (lambda v: pd.Index([str(n).strip() for n in v], dtype=object), symbol_key):
        first = pd.Series(np.arange(len(among)), index=key(among))
        first = first[~first.index.duplicated()]
        todo = np.flatnonzero(found < 0)
        found[todo] = first.reindex(key([names[i] for i in todo])).fillna(-1).to_numpy(dtype=np.int64)
    return found


def edge_matrix(edges: pd.DataFrame | Iterable[tuple[str, str]], rows: Sequence[str],
                cols: Sequence[str] | None = None) -> np.ndarray:
    """(regulator, target) pairs as a boolean [rows × cols] matrix (cols default to rows), names located by
    `positions`; pairs with a gene outside the matrix are ignored."""
    cols = rows if cols is None else cols
    pairs = edges.iloc[:, :2].astype(str).to_numpy() if isinstance(edges, pd.DataFrame) else \
        np.asarray([(str(a), str(b)) for a, b in edges], dtype=object).reshape(-1, 2)
    r, t = positions(pairs[:, 0], rows), positions(pairs[:, 1], cols)
    ok = (r >= 0) & (t >= 0)
    out = np.zeros((len(rows), len(cols)), dtype=bool)
    out[r[ok], t[ok]] = True
    return out


def ensembl_base(names: Iterable[str]) -> np.ndarray:
    """Unversioned Ensembl ID of each name (object array), None where the name is no Ensembl gene ID."""
    ids = pd.Index([str(n).strip() for n in names]).str.extract(ENSEMBL, expand=False) if len(names) else []
    return np.array([v if isinstance(v, str) else None for v in ids], dtype=object)


@dataclass
class NameMatch:
    """Result of `match_names`: the gene each name names, and how it was found."""

    gene_id: np.ndarray  # object array: unversioned Ensembl ID, or None
    how: np.ndarray  # one of HOW per name
    remapped: dict[str, str] = field(default_factory=dict)  # outdated name -> current symbol (rule 4)
    ambiguous: list[str] = field(default_factory=list)  # names left out by rule 4

    def count(self, how: str) -> int:
        return int((self.how == how).sum())


def _vocab_first(table: pd.DataFrame, vocab: GeneVocab) -> pd.DataFrame:
    in_vocab = vocab.index(table.index) >= 0
    return pd.concat([table[in_vocab], table[~in_vocab]])


def _symbol_lookups(org: str, vocab: GeneVocab | None) -> tuple[pd.Series, pd.Series]:
    """Current symbol -> Ensembl ID, exact and upper-cased; a symbol of several genes names the vocabulary gene."""
    if vocab is None:
        return _plain_lookups(org)
    table = gene_table(org)
    ordered = _vocab_first(table[table["symbol"].notna()], vocab)
    exact = pd.Series(ordered.index.to_numpy(), index=ordered["symbol"].to_numpy())
    upper = pd.Series(exact.to_numpy(), index=symbol_key(exact.index))
    return exact[~exact.index.duplicated()], upper[~upper.index.duplicated()]


@lru_cache(maxsize=2)
def _plain_lookups(org: str) -> tuple[pd.Series, pd.Series]:
    table = gene_table(org)
    table = table[table["symbol"].notna()]
    exact = pd.Series(table.index.to_numpy(), index=table["symbol"].to_numpy())
    upper = pd.Series(exact.to_numpy(), index=symbol_key(exact.index))
    return exact[~exact.index.duplicated()], upper[~upper.index.duplicated()]


def _split(values: pd.Series, sep: str) -> pd.Series:
    return values.dropna().astype(str).str.split(sep).explode().str.strip().loc[lambda s: s != ""]


@lru_cache(maxsize=2)
def synonym_table(organism: str) -> pd.DataFrame:
    """Outdated or alternative names of the organism's genes: columns name (upper-cased), gene_id, kind.

    Human: HGNC previous symbols and aliases (approved entries). Mouse: MGI synonyms. The gene is the entry's
    Ensembl ID when the gene table knows it, else its current symbol looked up in the gene table."""
    org = organism_id(organism)
    if org == HUMAN:
        t = pd.read_csv(resource_path("hgnc"), sep="\t", dtype=str)
        t = t[t["Status"] == "Approved"]
        symbol, ensembl = t["Approved symbol"], t["Ensembl gene ID"]
        parts = [(_split(t["Previous symbols"], ","), "previous"), (_split(t["Alias symbols"], ","), "alias")]
    else:
        t = pd.read_csv(resource_path("mgi"), sep="\t", dtype=str)
        symbol, ensembl = t["symbol"], t["ensembl"]
        parts = [(_split(t["synonyms"], "|"), "synonym")]
    known = gene_table(org).index
    exact, _ = _symbol_lookups(org, None)
    gene = ensembl.where(ensembl.isin(known), symbol.map(exact))
    frames = [pd.DataFrame({"name": symbol_key(names).to_numpy(), "gene_id": gene.loc[names.index].to_numpy(),
                            "kind": kind}) for names, kind in parts]
    out = pd.concat(frames, ignore_index=True).dropna(subset=["gene_id"])
    return out.drop_duplicates(["name", "gene_id"]).reset_index(drop=True)


@lru_cache(maxsize=2)
def _synonym_targets(org: str) -> tuple[pd.Series, frozenset[str]]:
    """Upper-cased synonym -> its single gene, and the synonyms that name several genes (previous symbols are
    trusted over aliases: a name that is one gene's previous symbol and another's alias names the first)."""
    t = synonym_table(org)
    _, upper = _symbol_lookups(org, None)
    t = t[~t["name"].isin(upper.index)]  # a current symbol is never read as another gene's old name
    if "previous" in set(t["kind"]):
        prev_names = set(t.loc[t["kind"] == "previous", "name"])
        t = t[(t["kind"] == "previous") | ~t["name"].isin(prev_names)]
    n_genes = t.groupby("name")["gene_id"].nunique()
    single = t[t["name"].map(n_genes) == 1].drop_duplicates("name")
    return pd.Series(single["gene_id"].to_numpy(), index=single["name"].to_numpy()), \
        frozenset(n_genes.index[n_genes > 1])


def match_names(names: Sequence[str], organism: str, vocab: GeneVocab | None = None,
                one_to_one: bool = True) -> NameMatch:
    """The gene of each name of one organism, by the module's rules (``vocab`` breaks ties between genes that
    share a symbol). Names are matched as a set: rule 4 leaves out a name whose gene another name already names
    (``one_to_one=False`` keeps it: for edge lists, where two names of one gene should merge)."""
    org = organism_id(organism)
    names = pd.Index([str(n).strip() for n in names])
    gene_id = ensembl_base(names)
    how = np.where(pd.notna(gene_id), "ensembl", "unknown").astype(object)
    todo = np.flatnonzero(how == "unknown")
    remapped: dict[str, str] = {}
    ambiguous: list[str] = []
    if len(todo):
        exact, upper = _symbol_lookups(org, vocab)
        sym = pd.Series(names[todo])
        hit = sym.map(exact).to_numpy(dtype=object)
        found = pd.notna(hit)
        gene_id[todo[found]], how[todo[found]] = hit[found], "exact"
        rest = todo[~found]
        hit = pd.Series(symbol_key(names[rest])).map(upper).to_numpy(dtype=object)
        found = pd.notna(hit)
        gene_id[rest[found]], how[rest[found]] = hit[found], "case"
        rest = rest[~found]
        if len(rest):
            single, multi = _synonym_targets(org)
            keys = pd.Series(symbol_key(names[rest]))
            hit = keys.map(single).to_numpy(dtype=object)
            claimed = set(gene_id[pd.notna(gene_id)]) if one_to_one else set()
            targets = pd.Series(hit[pd.notna(hit)])
            repeated = set(targets[targets.duplicated(keep=False)]) if one_to_one else set()
            table = gene_table(org)["symbol"]
            for i, key, g in zip(rest, keys, hit):
                if pd.isna(g):
                    if key in multi:
                        how[i] = "ambiguous"
                        ambiguous.append(str(names[i]))
                    continue
                if g in claimed or g in repeated:
                    how[i] = "ambiguous"
                    ambiguous.append(str(names[i]))
                    continue
                gene_id[i], how[i] = g, "synonym"
                remapped[str(names[i])] = str(table.get(g, g))
    gene_id = np.array([g if isinstance(g, str) else None for g in gene_id], dtype=object)
    return NameMatch(gene_id, how.astype(str), remapped, ambiguous)


def current_symbols(names: Sequence[str], organism: str) -> tuple[np.ndarray, np.ndarray]:
    """The current symbol of each name (rules 1-4; names of one gene merge) and a mask of names found; names not
    found are returned unchanged. For ground truths, whose edges must name genes as prepared data does."""
    names = np.asarray([str(n) for n in names], dtype=object)
    match = match_names(names, organism, one_to_one=False)
    symbol = gene_table(organism)["symbol"]
    found = pd.notna(match.gene_id)
    out = names.copy()
    out[found] = symbol.reindex(match.gene_id[found]).to_numpy(dtype=object)
    keep = found & pd.notna(out)
    out[found & ~keep] = names[found & ~keep]
    return out, keep


def rows_by_name(names: Sequence[str], ids: Sequence[str], symbols: Sequence[str] | None = None) -> np.ndarray:
    """Row of ``names`` (e.g. a file of per-gene vectors) for each of ``ids`` (a vocabulary): by Ensembl ID,
    version ignored, else by exact symbol; the first row wins, -1 where none.

    Exact symbols only: such files span organisms (human SOX2 and mouse Sox2 are different rows), so the case
    and synonym rules of `match_names`, which need one organism, do not apply."""
    base = ensembl_base(names)
    keys = pd.Index([b if b is not None else str(n).strip() for n, b in zip(names, base)])
    first = pd.Series(np.arange(len(keys)), index=keys)
    first = first[~first.index.duplicated()]
    rows = first.reindex(pd.Index([str(g).split(".")[0] for g in ids])).fillna(-1).to_numpy(dtype=np.int64)
    if symbols is not None:
        miss = rows < 0
        rows[miss] = first.reindex(pd.Index(np.asarray(symbols, dtype=object)[miss].astype(str))) \
            .fillna(-1).to_numpy(dtype=np.int64)
    return rows

