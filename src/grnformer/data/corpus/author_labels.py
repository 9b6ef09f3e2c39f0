"""The authors' own cell labels of the named training sets, mapped to Cell Ontology terms.

Every term below was looked up in the Cell Ontology shipped by cellxgene-ontology-guide (the label is in the
comment). The rule: the most specific term that says what the authors' label says, and no more; a coarse term
when the authors' class has no term of its own (the hierarchical loss learns from coarse terms too); 'unknown'
when no term fits (weighs nothing in training). Decisions worth knowing:
- cell lines: the CellBench lung-adenocarcinoma lines are 'malignant cell'; NIH/3T3 is 'fibroblast'; HEK293 is
  left unknown (its cell of origin is disputed: kidney epithelium in the name, neuronal/adrenal in its profile);
- Paul et al.'s "Erythrocyte" cluster is marrow erythroid progenitors (MARS-seq of progenitors), not red cells;
- Marques et al.'s myelin-forming oligodendrocytes (MFOL) have no term: 'oligodendrocyte'; PPR (vascular and
  leptomeningeal cells) is left unknown.
Assay and disease per set come from PROVENANCE.md; a per-cell assay column is used where a set mixes protocols.
`VERSION` changes whenever a mapping does, so that a corpus built with the old one is not reused.
"""

from __future__ import annotations

import pandas as pd

VERSION = 3  # 3: silver CD14 monocytes are the classical-monocyte leaf; labels have residual leaves
UNKNOWN = "unknown"
CELL_TYPE_COLUMN = "cell_type_ontology_term_id"
ASSAY_COLUMN = "assay_ontology_term_id"
DISEASE_COLUMN = "disease_ontology_term_id"

NORMAL = "PATO:0000461"
TEN_X_V1, TEN_X_V2 = "EFO:0009901", "EFO:0009899"
INDROP, DROP_SEQ, CEL_SEQ2, MARS_SEQ = "EFO:0008780", "EFO:0008722", "EFO:0010010", "EFO:0008796"

_PANCREAS_ISLET = {
    "beta": "CL:0000169",  # type B pancreatic cell
    "alpha": "CL:0000171",  # pancreatic A cell
    "delta": "CL:0000173",  # pancreatic D cell
    "gamma": "CL:0002275",  # pancreatic PP cell
    "ductal": "CL:0002079",  # pancreatic ductal cell
    "endothelial": "CL:0000115",  # endothelial cell
    "quiescent_stellate": "CL:0002410",  # pancreatic stellate cell
    "activated_stellate": "CL:0002410",
    "macrophage": "CL:0000235",  # macrophage
    "B_cell": "CL:0000236",  # B cell
    "T_cell": "CL:0000084",  # T cell
    "immune_other": "CL:0000738",  # leukocyte
    "schwann": "CL:0002573",  # Schwann cell
}

_PDAC = {
    "Ductal_CRISP3_high-centroacinar_like": "CL:0002079",  # pancreatic ductal cell
    "Ductal_terminal_ductal_like": "CL:0002079",
    "Ductal_MHC_Class_II": "CL:0002079",
    "Ductal_APOL1_high-hypoxic": "CL:0002079",
    "Cancer_clone_A": "CL:0001064",  # malignant cell
    "Cancer_clone_B": "CL:0001064",
    "T_cells_&_NK_cells": "CL:0000542",  # lymphocyte
    "mDCs_A": "CL:0000782",  # myeloid dendritic cell
    "mDCs_B": "CL:0000782",
    "pDCs": "CL:0000784",  # plasmacytoid dendritic cell
    "Tuft_cells": "CL:0002204",  # tuft cell
    "Macrophages_A": "CL:0000235",  # macrophage
    "Macrophages_B": "CL:0000235",
    "Monocytes": "CL:0000576",  # monocyte
    "RBCs": "CL:0000232",  # erythrocyte
    "Mast_cells": "CL:0000097",  # mast cell
    "Acinar_cells": "CL:0002064",  # pancreatic acinar cell
    "Endothelial_cells": "CL:0000115",  # endothelial cell
    "Fibroblasts": "CL:0000057",  # fibroblast
    "Endocrine_cells": "CL:0008024",  # pancreatic endocrine cell
}

_SORTED_PBMC = {
    "CD19+ B": "CL:0000236",  # B cell
    "CD34+": "CL:0008001",  # hematopoietic precursor cell
    "CD56+ NK": "CL:0000623",  # natural killer cell
    "CD14+ Monocyte": "CL:0001054",  # CD14-positive monocyte
    "CD8+ Cytotoxic T": "CL:0000625",  # CD8-positive, alpha-beta T cell
    "CD8+/CD45RA+ Naive Cytotoxic": "CL:0000900",  # naive thymus-derived CD8-positive, alpha-beta T cell
    "CD4+ T Helper2": "CL:0000624",  # CD4-positive, alpha-beta T cell (the sort is CD4+, not a Th2 assay)
    "CD4+/CD45RO+ Memory": "CL:0000897",  # CD4-positive, alpha-beta memory T cell
    "CD4+/CD25 T Reg": "CL:0000815",  # regulatory T cell
    "CD4+/CD45RA+/CD25- Naive T": "CL:0000895",  # naive thymus-derived CD4-positive, alpha-beta T cell
}

_OLIGODENDROCYTES = {
    "OPC": "CL:0002453",  # oligodendrocyte precursor cell
    "COP": "CL:4023059",  # committed oligodendrocyte precursor
    **{f"NFOL{i}": "CL:4072001" for i in (1, 2)},  # newly formed oligodendrocyte
    **{f"MFOL{i}": "CL:0000128" for i in (1, 2)},  # oligodendrocyte
    **{f"MOL{i}": "CL:4072003" for i in range(1, 7)},  # mature myelinating oligodendrocyte
}

_MYELOID_PROGENITORS = {
    "Erythrocyte": "CL:0000038",  # erythroid progenitor cell
    "Monocytes": "CL:0000576",  # monocyte
    "Basophils": "CL:0000767",  # basophil
    "GMP": "CL:0000557",  # granulocyte monocyte progenitor cell
    "Neutrophils": "CL:0000775",  # neutrophil
    "Multipotent progenitors": "CL:0000837",  # hematopoietic multipotent progenitor cell
    "Megakaryocytes": "CL:0000556",  # megakaryocyte
}

_EPIDERMIS = {
    "Basal": "CL:0002187",  # basal cell of epidermis
    "IFE-DI": "CL:0000649",  # spinous cell of epidermis (differentiated interfollicular epidermis)
    "IFE-DII": "CL:0000649",
    "IFE-KI": "CL:0002189",  # granular cell of epidermis (keratinised interfollicular epidermis)
    "IFE-KII": "CL:0002189",
}

_LUNG_CANCER_LINES = {line: "CL:0001064" for line in ("A549", "H1975", "H2228", "HCC827", "H838")}

# The E15.5 pancreas file holds the authors' clusters as factor codes 0-7 (the level names were lost in the
# conversion). The codes follow the published level order, checked on the data: the cells of each code express
# that type's hormone or marker far above the rest (tests/test_campaign.py).
_PANCREAS_E155 = {
    "0": "CL:0002079",  # Ductal (Krt19, Sox9): pancreatic ductal cell
    "1": "CL:0008024",  # Ngn3 low EP: pancreatic endocrine cell (progenitor stage: coarse label)
    "2": "CL:0008024",  # Ngn3 high EP (Neurog3)
    "3": "CL:0008024",  # Pre-endocrine (Fev)
    "4": "CL:0000169",  # Beta (Ins1, Ins2): type B pancreatic cell
    "5": "CL:0000171",  # Alpha (Gcg): pancreatic A cell
    "6": "CL:0000173",  # Delta (Sst): pancreatic D cell
    "7": "CL:0005019",  # Epsilon (Ghrl): pancreatic epsilon cell
}

# dataset -> (obs column with the authors' label, label -> Cell Ontology term)
CELL_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    "mouse_pancreas_e155": ("clusters", _PANCREAS_E155),
    "baron2016_mouse_pancreas": ("cell_type", _PANCREAS_ISLET),
    "card_moncada2020_pdac": ("cell_type", _PDAC),
    "zheng2017_sorted_pbmc_facs": ("celltype", _SORTED_PBMC),
    "marques2016_mouse_oligodendrocytes": ("inferred_cell_type", _OLIGODENDROCYTES),
    "paul2015_mouse_myeloid_progenitors_marsseq": ("cell_type2", _MYELOID_PROGENITORS),
    "joost2016_mouse_skin_epidermis": ("cell_type", _EPIDERMIS),
    "cellbench_tian2019_lung_cancer_cell_lines": ("cell_type", _LUNG_CANCER_LINES),
    "macosko2015_dropseq_species_mix_mouse_3t3": ("cell_line", {"NIH/3T3": "CL:0000057"}),  # fibroblast
}

# Assay / disease as documented for each named dataset; a set whose assay is not documented stays unknown.
METADATA: dict[str, dict[str, str]] = {
    "pbmc3k": {ASSAY_COLUMN: TEN_X_V1, DISEASE_COLUMN: NORMAL},
    "pbmc_soupx": {ASSAY_COLUMN: TEN_X_V2, DISEASE_COLUMN: NORMAL},
    "pbmc_10x_v2_1k": {ASSAY_COLUMN: TEN_X_V2, DISEASE_COLUMN: NORMAL},
    "pbmc_10x_v3_1k": {ASSAY_COLUMN: "EFO:0009922", DISEASE_COLUMN: NORMAL},
    "pbmc_10x_5prime_1k": {ASSAY_COLUMN: "EFO:0011025", DISEASE_COLUMN: NORMAL},
    "pbmc_ifnb": {DISEASE_COLUMN: NORMAL},
    "mouse_pancreas_e155": {ASSAY_COLUMN: TEN_X_V2, DISEASE_COLUMN: NORMAL},
    "baron2016_mouse_pancreas": {ASSAY_COLUMN: INDROP, DISEASE_COLUMN: NORMAL},
    "card_moncada2020_pdac": {ASSAY_COLUMN: INDROP, DISEASE_COLUMN: "MONDO:0006047"},  # pancreatic adenocarcinoma
    "cellbench_tian2019_lung_cancer_cell_lines": {DISEASE_COLUMN: "MONDO:0005061"},  # lung adenocarcinoma
    "zheng2017_sorted_pbmc_facs": {ASSAY_COLUMN: TEN_X_V1, DISEASE_COLUMN: NORMAL},
    "zheng2017_frozen_pbmc_donorA_10x": {ASSAY_COLUMN: TEN_X_V1, DISEASE_COLUMN: NORMAL},
    "hek293t_like_10x_scshc": {ASSAY_COLUMN: TEN_X_V1},
    "klein_spring_mouse_hpc_indrops": {ASSAY_COLUMN: INDROP, DISEASE_COLUMN: NORMAL},
    "macosko2015_dropseq_species_mix_human_hek293t": {ASSAY_COLUMN: DROP_SEQ},
    "macosko2015_dropseq_species_mix_mouse_3t3": {ASSAY_COLUMN: DROP_SEQ},
    "yuzwa2017_mouse_e175_cortex_dropseq": {ASSAY_COLUMN: DROP_SEQ, DISEASE_COLUMN: NORMAL},
    "paul2015_mouse_myeloid_progenitors_marsseq": {ASSAY_COLUMN: MARS_SEQ, DISEASE_COLUMN: NORMAL},
    "marques2016_mouse_oligodendrocytes": {DISEASE_COLUMN: NORMAL},
    "joost2016_mouse_skin_epidermis": {DISEASE_COLUMN: NORMAL},
}

# dataset -> (obs column naming the protocol per cell, protocol prefix -> assay term)
PER_CELL_ASSAY: dict[str, tuple[str, dict[str, str]]] = {
    "cellbench_tian2019_lung_cancer_cell_lines": ("protocol", {"CEL-seq2": CEL_SEQ2, "Drop-seq": DROP_SEQ}),
}


def cell_types(name: str, obs: pd.DataFrame) -> pd.Series | None:
    """Cell Ontology term per cell from the authors' labels of dataset `name`; None when it has no such map."""
    if name not in CELL_TYPES:
        return None
    column, table = CELL_TYPES[name]
    return obs[column].astype(str).map(table).fillna(UNKNOWN).rename(CELL_TYPE_COLUMN)


def metadata_columns(name: str, obs: pd.DataFrame) -> dict[str, pd.Series]:
    """Assay / disease term per cell as documented for dataset `name` (empty when nothing is documented)."""
    out = {column: pd.Series(term, index=obs.index) for column, term in METADATA.get(name, {}).items()}
    if name in PER_CELL_ASSAY:
        column, prefixes = PER_CELL_ASSAY[name]
        protocol = obs[column].astype(str)
        assay = pd.Series(UNKNOWN, index=obs.index)
        for prefix, term in prefixes.items():
            assay[protocol.str.startswith(prefix)] = term
        out[ASSAY_COLUMN] = assay
    return out
