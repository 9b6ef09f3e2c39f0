"""Write BEELINE-format directories from the McCalla et al. counts and gold standards in shared/data, for
`grnformer bench --datasets beeline:DIR` (benchmarks/RESULTS.md). Usage: python scripts/beeline_dirs.py OUT_DIR"""

import sys
from pathlib import Path

from grnformer.bench.beeline import write_dir
from grnformer.bench.truths import load_truth
from grnformer.data.corpus.datasets import load

SETS = {  # name: (dataset, truth, upper-case names as BEELINE writes mouse genes)
    "hESC": ("chen_hesc", "mccalla_hesc_chip_kd", False),
    "mESC": ("semrau_mesc", "mccalla_mesc_chip_kd", True),
}


def write_sets(out: Path) -> dict[str, Path]:
    """Both directories under ``out``: 20 regulators, up to 300 genes, 200 cells each."""
    return {name: write_dir(out / name, load(dataset), load_truth(truth), n_regulators=20, n_genes=300,
                            n_cells=200, upper_case=upper) for name, (dataset, truth, upper) in SETS.items()}


if __name__ == "__main__":
    for path in write_sets(Path(sys.argv[1])).values():
        print(path)
