"""How many genes real files map to by their symbols alone, against their Ensembl IDs (one command, ~1 min).

    .venv/bin/python benchmarks/bench_gene_names.py [--record benchmarks/results/gene_names.json]

For each set: genes mapped from var_names (symbols) with every gene-ID column removed, the outdated symbols that
were remapped and the ambiguous ones left out, the genes its Ensembl-ID column maps where it has one, and for the
mouse set the same symbols upper-cased with organism='mouse' (as BEELINE writes them). Run it with another
checkout first on PYTHONPATH to measure that version.
"""

import argparse
import warnings

from grnformer.bench import toolkit
from grnformer.data.corpus.datasets import load
from grnformer.data.input.prepare import GENE_ID_COLUMNS, prepare

SETS = ["pbmc3k", "pbmc_10x_v2_1k", "zheng2017_frozen_pbmc_donorA_10x", "mouse_pancreas_e155"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", default=str(toolkit.results_path("gene_names")), help="the result record")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    lines = []
    for name in SETS:
        adata = load(name)
        id_columns = [c for c in adata.var.columns if c in GENE_ID_COLUMNS]
        symbols = adata.copy()
        symbols.var = symbols.var[[]]
        report = prepare(symbols)[1]
        line = f"{name}: symbols {report.n_genes_mapped:,}"
        if hasattr(report, "remapped"):
            line += f" (remapped {len(report.remapped):,}, ambiguous {len(report.ambiguous):,})"
        if id_columns:
            by_id = prepare(adata, gene_column=id_columns[0])[1].n_genes_mapped
            line += f"; Ensembl IDs {by_id:,}; symbols/IDs {report.n_genes_mapped / by_id:.4f}"
        if adata.obs["organism_ontology_term_id"].iloc[0] == "NCBITaxon:10090":
            upper = symbols.copy()
            upper.var_names = [n.upper() for n in symbols.var_names]
            try:
                n_upper = prepare(upper, organism="mouse")[1].n_genes_mapped
                line += f"; upper-cased with organism='mouse' {n_upper:,} ({n_upper / report.n_genes_mapped:.4f})"
            except Exception as err:  # the version before this one refuses them
                line += f"; upper-cased with organism='mouse': refused ({type(err).__name__})"
        print(line, flush=True)
        lines.append(line)
    toolkit.write_record(args.record, {"sets": dict(zip(SETS, lines))}, method="data.input.prepare gene mapping",
                         command=toolkit.command_line(argv))


if __name__ == "__main__":
    main()
