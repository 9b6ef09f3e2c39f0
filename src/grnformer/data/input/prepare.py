"""Validate a user's single-cell data and map it onto the model's gene vocabulary.

The most common complaint about the reference model is data dropped without a word. Here every step either
succeeds and is counted in a `MappingReport` (where the counts came from, how genes were named and mapped, what
was summed or dropped), or raises `InputError` saying what is wrong, where, and what to do instead. Nothing is
written and the input AnnData is never modified.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from grnformer.data.genes import (
    HUMAN,
    MOUSE,
    ORGANISMS,
    GeneVocab,
    gene_table,
    organism_id,
)
from grnformer.data.input.gene_names import ENSEMBL, match_names
from grnformer.data.input.pseudo_counts import (
    DEFAULT_PSEUDO_DEPTH,
    PSEUDO_COUNTS_KEY,
    PSEUDO_LAYER,
    describe_problems,
    value_problems,
    with_pseudo_counts,
)
from grnformer.data.input.read import read_cells
from grnformer.errors import InputError

ORGANISM_COLUMN = "organism_ontology_term_id"
COUNT_LAYERS = ("counts", "raw_counts")  # layers used automatically when X does not hold counts
GENE_ID_COLUMNS = ("gene_ids", "gene_id", "ensembl_id", "ensembl_gene_id", "feature_id")
DEFAULT_MIN_MAPPED = 200
PANEL_SHARE = 0.9  # fewer than min_mapped genes are fine when this share of the names map (a small gene panel)
N_EXAMPLES = 10
_ID_WORDS = {"ensembl": "Ensembl IDs", "symbol": "gene symbols", "mixed": "a mix of Ensembl IDs and symbols"}


@dataclass
class MappingReport:
    """What `prepare` did to the input: sources it used, genes mapped, summed and left out, cells dropped."""

    source: str  # input path, or "AnnData"
    organism: str  # NCBITaxon term
    organism_source: str  # "obs", "argument" or "gene names"
    count_source: str  # "X", 'layers["counts"]', 'layers["raw_counts"]' or "raw"
    gene_source: str  # "var_names" or 'var["<column>"]'
    id_type: str  # "ensembl", "symbol" or "mixed"
    n_cells_in: int
    n_cells_kept: int
    n_zero_cells_dropped: int
    n_genes_in: int
    n_genes_mapped: int  # distinct vocabulary genes in the output
    n_duplicates_summed: int  # input columns added into a gene another column already mapped to
    n_not_in_vocab: int  # known genes of the organism outside the vocabulary (e.g. non-coding)
    n_unrecognised: int  # names that are no gene of the organism
    n_case_insensitive: int  # symbols matched only when case is ignored
    fraction_counts_kept: float  # share of all counts that fall in mapped genes
    unmapped_examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)
    remapped: dict[str, str] = field(default_factory=dict)  # outdated symbol -> current symbol (HGNC / MGI)
    ambiguous: list[str] = field(default_factory=list)  # outdated symbols left out: several genes, or one named twice
    n_obs_names_made_unique: int = 0  # repeated cell names given a suffix
    counts_from: dict | None = None  # how pseudo-counts were rebuilt from normalised values (None: raw counts)

    def summary(self) -> str:
        """A few human-readable lines, printed by `grnformer prepare`."""
        org = ORGANISMS.get(self.organism, self.organism)
        lines = [
            f"input: {self.source}",
            f"organism: {org} ({self.organism}, from {self.organism_source})",
            f"counts: {self.count_source}",
            f"cells: {self.n_cells_kept:,} kept of {self.n_cells_in:,}"
            + (f" ({self.n_zero_cells_dropped:,} with no counts in mapped genes dropped)"
               if self.n_zero_cells_dropped else ""),
            f"genes: {self.n_genes_mapped:,} vocabulary genes from {self.n_genes_in:,} names in {self.gene_source} "
            f"(detected {self.id_type}); {self.n_not_in_vocab:,} known genes outside the vocabulary, "
            f"{self.n_unrecognised:,} unrecognised names",
            f"counts in mapped genes: {100 * self.fraction_counts_kept:.1f}% of the total",
        ]
        if self.n_duplicates_summed:
            lines.append(f"duplicates: {self.n_duplicates_summed:,} columns summed into another of the same gene "
                         f"(e.g. {', '.join(self.duplicate_examples[:5])})")
        if self.n_case_insensitive:
            lines.append(f"case: {self.n_case_insensitive:,} symbols matched only ignoring case"
                         + (" (organism given explicitly)" if self.organism_source == "argument" else ""))
        if self.remapped:
            pairs = [f"{old}→{new}" for old, new in list(self.remapped.items())[:N_EXAMPLES]]
            lines.append(f"outdated symbols: {len(self.remapped):,} mapped to the current symbol "
                         f"(e.g. {', '.join(pairs)}; all in the report's 'remapped')")
        if self.ambiguous:
            lines.append(f"ambiguous: {len(self.ambiguous):,} outdated symbols left out, each naming several "
                         f"genes or a gene named by another column (e.g. {', '.join(self.ambiguous[:N_EXAMPLES])})")
        if self.n_obs_names_made_unique:
            lines.append(f"cell names: {self.n_obs_names_made_unique:,} repeated names made unique with a suffix")
        if self.counts_from:
            c = self.counts_from
            lines.append(f"counts: pseudo-counts rebuilt from {c['transform']} values (scaled to "
                         f"{c['depth']:,.0f} per cell, rounded); the model was trained on raw counts")
        if self.unmapped_examples:
            lines.append(f"unmapped examples: {', '.join(self.unmapped_examples)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain values for uns; ``remapped`` as two lists (old, new): gene names may hold '/', which h5ad would
        read as nested groups if they were keys."""
        d = asdict(self)
        d["remapped"] = {"old": list(self.remapped), "new": list(self.remapped.values())}
        return d


def prepare(adata_or_path: AnnData | str | Path, organism: str | None = None, vocab: GeneVocab | None = None,
            min_mapped: int = DEFAULT_MIN_MAPPED, gene_column: str | None = None, counts_from: str | None = None,
            counts_depth: float = DEFAULT_PSEUDO_DEPTH) -> tuple[AnnData, MappingReport]:
    """Validated raw counts mapped to the vocabulary, and a report of the mapping.

    Raw counts are taken from X, else from layer 'counts' / 'raw_counts' or .raw. Genes may be named by Ensembl
    IDs (version suffixes allowed) or symbols, in var_names or in ``gene_column`` (by default var_names or a
    known gene-ID column such as 'gene_ids', whichever maps more genes). The organism comes from
    obs['organism_ontology_term_id'], the ``organism`` argument, or else the gene names. Symbols are matched by
    `gene_names.match_names` (exact, then ignoring case, then one-to-one outdated symbols). When the organism was
    not given as an argument and most symbols match only ignoring case, the organism is probably wrong and this
    is an InputError; an explicit ``organism`` wins (the report counts the case-only matches).

    ``counts_from`` ('log2p1', 'log1p' or 'tpm'): X holds normalised values, not counts; pseudo-counts are rebuilt
    from it (`with_pseudo_counts`, each cell scaled to ``counts_depth``) with a warning, and the report records it.
    Repeated cell names are made unique (name-1, name-2 …; warned, counted in the report).

    Returns a new AnnData: X = CSR float32 counts, var_names = Ensembl IDs of vocabulary genes (vocabulary order,
    duplicates summed), var['symbol'] and var['input_name'], obs with the organism column set and zero-count
    cells dropped (with a warning), obsm kept, the report as a dict in uns['grnformer_prepare'].
    """
    vocab = GeneVocab.default() if vocab is None else vocab
    adata, source = _read(adata_or_path)
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(f"{source} is empty ({adata.n_obs} cells × {adata.n_vars} genes).")
    if counts_from is not None:
        adata = with_pseudo_counts(adata, counts_from, counts_depth, source)
    repeated = adata.obs.columns[adata.obs.columns.duplicated()].unique().tolist()
    if repeated:
        raise InputError(f"{source}: obs has repeated column names {repeated[:5]}; rename them so that each "
                         f"column is named once.")
    counts, var, count_source = _find_counts(adata, source)
    gene_sources = _gene_name_sources(var, gene_column, source)
    org, organism_source = _resolve_organism(adata.obs, organism, gene_sources, source)
    gene_source, mapping = _choose_mapping(gene_sources, org, organism_source, vocab, min_mapped, source)

    merged = _merge_genes(counts, mapping.token)
    totals = np.asarray(merged.counts.sum(axis=1, dtype=np.float64)).ravel()
    keep = totals > 0
    n_dropped = int((~keep).sum())
    if not keep.any():
        raise InputError(f"no cell of {source} has any count in the {len(merged.tokens):,} mapped genes.")
    if n_dropped:
        warnings.warn(f"dropped {n_dropped:,} of {adata.n_obs:,} cells with no counts in the "
                      f"{len(merged.tokens):,} mapped genes", stacklevel=2)

    names = np.asarray(gene_sources[gene_source], dtype=object)
    dup = pd.Series(merged.out_col).duplicated().to_numpy()
    report = MappingReport(
        source=source, organism=org, organism_source=organism_source, count_source=count_source,
        gene_source=gene_source, id_type=mapping.id_type, n_cells_in=adata.n_obs, n_cells_kept=int(keep.sum()),
        n_zero_cells_dropped=n_dropped, n_genes_in=len(var),
        n_genes_mapped=len(merged.tokens), n_duplicates_summed=int(dup.sum()),
        n_not_in_vocab=mapping.n_not_in_vocab,
        n_unrecognised=mapping.n_unrecognised, n_case_insensitive=mapping.n_case_insensitive,
        fraction_counts_kept=float(totals.sum() / merged.total_in) if merged.total_in > 0 else 0.0,
        unmapped_examples=mapping.unmapped_examples(names),
        duplicate_examples=[str(n) for n in pd.unique(names[merged.cols][dup])[:N_EXAMPLES]],
        remapped=mapping.remapped, ambiguous=mapping.ambiguous,
        n_obs_names_made_unique=n_repeated_obs_names(adata.obs_names),
        counts_from=adata.uns.get(PSEUDO_COUNTS_KEY) if count_source == f'layers["{PSEUDO_LAYER}"]' else None,
    )
    if report.n_obs_names_made_unique:
        warnings.warn(f"{source}: {report.n_obs_names_made_unique:,} cell names repeat an earlier one; made them "
                      f"unique with a suffix (-1, -2 …)", stacklevel=2)
    return _output(adata, merged, keep, names, org, vocab, report), report


@dataclass
class _Merged:
    """Input columns summed into one column per mapped vocabulary gene (vocabulary order)."""

    counts: sp.csr_matrix  # cells × mapped genes
    tokens: np.ndarray  # vocabulary row of each output column
    cols: np.ndarray  # input columns that map
    out_col: np.ndarray  # output column of each of ``cols``
    total_in: float  # all counts of the input


def _choose_mapping(gene_sources: dict[str, np.ndarray], org: str, organism_source: str, vocab: GeneVocab,
                    min_mapped: int, source: str) -> tuple[str, _Mapping]:
    """The gene-name source that maps most genes (var_names wins ties), or InputError when too few map or the
    case-only matches point at the other organism."""
    mappings = {name: _map_names(names, org, vocab) for name, names in gene_sources.items()}
    gene_source = max(mappings, key=lambda k: mappings[k].n_mapped)  # first (var_names) wins ties
    mapping = mappings[gene_source]
    if mapping.n_mapped < min_mapped and mapping.n_mapped < PANEL_SHARE * len(gene_sources[gene_source]):
        raise InputError(_too_few_message(mapping, gene_sources[gene_source], gene_source, org, vocab,
                                          min_mapped, source))
    if mapping.n_case_insensitive > mapping.n_recognised / 2 and organism_source != "argument":
        raise InputError(_case_message(mapping, gene_sources[gene_source], gene_source, org, vocab, source))
    return gene_source, mapping


def _merge_genes(counts, token: np.ndarray) -> _Merged:
    x = sp.csr_matrix(counts, dtype=np.float32)
    cols = np.flatnonzero(token >= 0)
    kept_tokens, out_col = np.unique(token[cols], return_inverse=True)
    merge = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (cols, out_col)),
                          shape=(x.shape[1], len(kept_tokens)))
    return _Merged((x @ merge).tocsr(), kept_tokens, cols, out_col, float(x.sum(dtype=np.float64)))


def _output(adata: AnnData, merged: _Merged, keep: np.ndarray, names: np.ndarray, org: str, vocab: GeneVocab,
            report: MappingReport) -> AnnData:
    """The prepared AnnData: kept cells (unique names, organism set), mapped genes, obsm, the report in uns."""
    first_name = pd.Series(names[merged.cols]).groupby(merged.out_col).first().to_numpy()
    obs = adata.obs.iloc[np.flatnonzero(keep)].copy()
    if report.n_obs_names_made_unique:
        obs.index = unique_names(adata.obs_names)[keep]
    obs[ORGANISM_COLUMN] = org
    out_var = pd.DataFrame({"symbol": vocab.symbols[merged.tokens], "input_name": first_name.astype(str)},
                           index=pd.Index(vocab.ids[merged.tokens], name="gene_id"))
    obsm = {k: (v.loc[keep] if isinstance(v, pd.DataFrame) else v[keep]) for k, v in adata.obsm.items()}
    out = AnnData(X=merged.counts[keep], obs=obs, var=out_var, obsm=obsm)
    out.X.sort_indices()
    out.uns["grnformer_prepare"] = report.to_dict()
    return out


def _read(adata_or_path: AnnData | str | Path) -> tuple[AnnData, str]:
    if isinstance(adata_or_path, AnnData):
        return adata_or_path, "AnnData"
    if not isinstance(adata_or_path, (str, Path)):
        raise InputError(f"expected an AnnData or the path of a file of cells, got {type(adata_or_path).__name__}.")
    return read_cells(adata_or_path), str(adata_or_path)


def n_repeated_obs_names(names: pd.Index) -> int:
    """Cell names that repeat an earlier one."""
    return int(pd.Index(names).duplicated().sum())


def unique_names(names: pd.Index) -> pd.Index:
    """Repeated names given a suffix -1, -2 … (anndata's rule), so outputs never hold two cells of one name."""
    return anndata.utils.make_index_unique(pd.Index(names).astype(str))


def _find_counts(adata: AnnData, source: str):
    """(matrix, var, where) of the raw counts: X if it holds them, else a counts layer or .raw (pseudo-counts of
    `with_pseudo_counts` first: X then holds the values they were rebuilt from)."""
    if PSEUDO_COUNTS_KEY in adata.uns and PSEUDO_LAYER in adata.layers:
        return adata.layers[PSEUDO_LAYER], adata.var, f'layers["{PSEUDO_LAYER}"]'
    x_problems = value_problems(adata.X) if adata.X is not None else None
    if x_problems == []:
        return adata.X, adata.var, "X"
    tried = []
    for name in COUNT_LAYERS:
        if name in adata.layers:
            if not value_problems(adata.layers[name]):
                return adata.layers[name], adata.var, f'layers["{name}"]'
            tried.append(f'layers["{name}"]')
    if adata.raw is not None:
        if not value_problems(adata.raw.X):
            return adata.raw.X, adata.raw.var, "raw"
        tried.append(".raw")
    why = ("X is empty (None)" if x_problems is None
           else f"X does not hold raw counts: {describe_problems(x_problems, adata.obs_names, adata.var_names)}")
    msg = f"{source}: {why}. grnformer needs raw integer counts, not normalised, log-transformed or scaled values."
    if tried:
        msg += f" {', '.join(tried)} did not hold integer counts either."
    others = [n for n in adata.layers if n not in COUNT_LAYERS and not value_problems(adata.layers[n])]
    if others:
        msg += (f" Layer '{others[0]}' holds non-negative integers: if those are the raw counts, put them in X "
                f"(adata.X = adata.layers['{others[0]}']) or name the layer 'counts'.")
    else:
        msg += " No layer holds them: supply the raw counts (for example the 10x filtered matrix)."
    raise InputError(msg)


def _gene_name_sources(var: pd.DataFrame, gene_column: str | None, source: str) -> dict[str, np.ndarray]:
    """Candidate gene-name vectors: var_names and any known gene-ID column (or only the one asked for)."""
    if gene_column is not None:
        if gene_column not in var.columns:
            raise InputError(f"{source} has no var column '{gene_column}'; columns: {list(var.columns)}.")
        return {f'var["{gene_column}"]': var[gene_column].astype(str).to_numpy()}
    out = {"var_names": var.index.astype(str).to_numpy()}
    for column in GENE_ID_COLUMNS:
        if column in var.columns:
            out[f'var["{column}"]'] = var[column].astype(str).to_numpy()
    return out


def _resolve_organism(obs: pd.DataFrame, organism: str | None, gene_sources: dict[str, np.ndarray],
                      source: str) -> tuple[str, str]:
    from_obs = None
    if ORGANISM_COLUMN in obs.columns:
        values = obs[ORGANISM_COLUMN].dropna().astype(str)
        distinct = values.value_counts()
        if len(distinct) > 1:
            raise InputError(f"{source} mixes organisms in obs['{ORGANISM_COLUMN}'] ({distinct.to_dict()}); "
                             "prepare each organism separately.")
        if len(distinct) == 1:
            try:
                from_obs = organism_id(distinct.index[0])
            except InputError as err:
                raise InputError(f"obs['{ORGANISM_COLUMN}'] of {source}: {err}") from err
    if organism is not None:
        from_arg = organism_id(organism)
        if from_obs is not None and from_obs != from_arg:
            raise InputError(f"organism='{organism}' contradicts obs['{ORGANISM_COLUMN}'] = {from_obs} in {source}.")
        return from_arg, "argument"
    if from_obs is not None:
        return from_obs, "obs"
    return _infer_organism(gene_sources, source), "gene names"


def _infer_organism(gene_sources: dict[str, np.ndarray], source: str) -> str:
    """Human or mouse from Ensembl prefixes (ENSG / ENSMUSG), else from exact-case symbol matches."""
    names = pd.Index(np.concatenate(list(gene_sources.values())))
    prefixes = names.str.extract(ENSEMBL, expand=False).dropna().str.extract(r"^(ENS[A-Z]*G)", expand=False)
    votes = {HUMAN: int((prefixes == "ENSG").sum()), MOUSE: int((prefixes == "ENSMUSG").sum())}
    if max(votes.values()) == 0:
        symbols = pd.Index(gene_sources["var_names"])
        votes = {org: int(symbols.isin(gene_table(org)["symbol"].dropna()).sum()) for org in (HUMAN, MOUSE)}
    (best, n_best), (_, n_other) = sorted(votes.items(), key=lambda kv: -kv[1])
    if n_best == 0 or n_best < 2 * n_other:
        raise InputError(f"cannot tell the organism of {source} from its gene names ({votes[HUMAN]:,} match human, "
                         f"{votes[MOUSE]:,} mouse): pass organism='human' or 'mouse', or set "
                         f"obs['{ORGANISM_COLUMN}'].")
    return best


@dataclass
class _Mapping:
    token: np.ndarray  # vocabulary row per input name, -1 when unmapped
    status: np.ndarray  # "mapped", "not_in_vocab" or "unrecognised"
    id_type: str
    n_case_insensitive: int
    remapped: dict[str, str]
    ambiguous: list[str]

    @property
    def n_mapped(self) -> int:
        return len(np.unique(self.token[self.token >= 0]))

    @property
    def n_recognised(self) -> int:
        return int(np.isin(self.status, ("mapped", "not_in_vocab")).sum())

    @property
    def n_not_in_vocab(self) -> int:
        return int((self.status == "not_in_vocab").sum())

    @property
    def n_unrecognised(self) -> int:
        return int((self.status == "unrecognised").sum())

    @property
    def n_recognised_exactly(self) -> int:
        return self.n_recognised - self.n_case_insensitive

    def unmapped_examples(self, names: np.ndarray) -> list[str]:
        """Unrecognised names first (the likelier mistakes), then known genes outside the vocabulary."""
        order = [names[self.status == s] for s in ("unrecognised", "not_in_vocab")]
        return [str(n) for n in np.concatenate(order)[:N_EXAMPLES]]


def _map_names(names: np.ndarray, org: str, vocab: GeneVocab) -> _Mapping:
    """Map each name to a vocabulary gene of ``org`` by `gene_names.match_names` (the one owner of the rules)."""
    match = match_names(names, org, vocab)
    known = pd.notna(match.gene_id)
    token = np.full(len(names), -1, dtype=np.int64)
    token[known] = vocab.index(match.gene_id[known])
    organisms = vocab.table["organism"].to_numpy()
    token[(token >= 0) & (organisms[np.maximum(token, 0)] != org)] = -1
    in_table = known & pd.Index(match.gene_id).isin(gene_table(org).index)
    status = np.where(token >= 0, "mapped", np.where(in_table, "not_in_vocab", np.where(
        match.how == "ambiguous", "ambiguous", "unrecognised")))
    is_ens = match.how == "ensembl"
    id_type = "ensembl" if is_ens.all() else "symbol" if not is_ens.any() else "mixed"
    return _Mapping(token, status, id_type, match.count("case"), match.remapped, match.ambiguous)


def _too_few_message(mapping: _Mapping, names: np.ndarray, gene_source: str, org: str, vocab: GeneVocab,
                     min_mapped: int, source: str) -> str:
    msg = (f"only {mapping.n_mapped:,} of {len(names):,} gene names in {gene_source} of {source} map to "
           f"{ORGANISMS[org]} genes of the vocabulary (at least {min_mapped:,} needed, min_mapped sets this, or "
           f"{PANEL_SHARE:.0%} of the names for a smaller panel). "
           f"Names were read as {_ID_WORDS[mapping.id_type]}; "
           f"{mapping.n_unrecognised:,} are no {ORGANISMS[org]} gene and "
           f"{mapping.n_not_in_vocab:,} are genes outside the vocabulary. Examples: "
           f"{', '.join(mapping.unmapped_examples(names)[:N_EXAMPLES])}.")
    other = MOUSE if org == HUMAN else HUMAN
    n_other = _map_names(names, other, vocab).n_mapped
    if n_other > mapping.n_mapped:
        msg += f" As {ORGANISMS[other]} genes {n_other:,} would map: is the organism right?"
    msg += " Gene names must be Ensembl IDs or official symbols (var_names or a 'gene_ids' var column)."
    return msg


def _case_message(mapping: _Mapping, names: np.ndarray, gene_source: str, org: str, vocab: GeneVocab,
                  source: str) -> str:
    """Most symbols matching only when case is ignored means the wrong organism (mouse Actb vs human ACTB)."""
    other = MOUSE if org == HUMAN else HUMAN
    other_mapping = _map_names(names, other, vocab)
    n_other = other_mapping.n_recognised - other_mapping.n_case_insensitive
    return (f"{mapping.n_case_insensitive:,} of the {mapping.n_recognised:,} names in {gene_source} of {source} "
            f"recognised as {ORGANISMS[org]} genes match only when case is ignored, while {n_other:,} are exact "
            f"{ORGANISMS[other]} symbols: the organism is probably {ORGANISMS[other]}, not {ORGANISMS[org]}. Pass the "
            f"right organism (or fix obs['{ORGANISM_COLUMN}']). If {ORGANISMS[org]} is right (a table that writes "
            f"symbols in another case, e.g. upper-case mouse genes), pass organism='{ORGANISMS[org]}' explicitly: "
            f"an explicit organism is matched ignoring case.")
