"""Make the scPRINT parity fixture with scPRINT's own code: a real Lightning checkpoint and its outputs.

Why: grnformer reads scPRINT's published checkpoints (`grnformer import-scprint`), and the only proof that the
conversion is faithful is to compare against the original implementation. Our machines cannot download the
published weights, so this script builds scPRINT's own model class (pinned PyPI release) with random weights,
saves it through Lightning exactly as scPRINT's training does, and records scPRINT's outputs on fixed PBMC3k
cells: cell embedding, ZINB mean / theta / pi, label logits and every layer's q / k. `tests/test_scprint_parity.py`
converts the checkpoint and must match every output.

Two processes: this file runs first with grnformer's Python (chooses genes and cells from PBMC3k), then re-runs
itself inside a throwaway virtual environment holding scPRINT (installed with --no-deps; its heavy imports,
lamindb / bionty / scdataloader / torchvision, are replaced by tiny stand-ins, none of which the model's forward
pass touches). Re-runnable:

    .venv/bin/python scripts/make_scprint_fixture.py                    # 2.3.8's class -> tests/data/scprint_small*
    .venv/bin/python scripts/make_scprint_fixture.py --release 1.6.4    # the published v1 code -> scprint_v164_small*
    .venv/bin/python scripts/make_scprint_fixture.py --layout v2        # 2.3.8's base_v2.yml model -> scprint_v2_small*
    .venv/bin/python scripts/make_scprint_fixture.py --preset medium --out benchmarks/out/scprint_medium   # full shape

The throwaway venv goes to benchmarks/out/scprint-venv (--venv) and the wheels to benchmarks/out/scprint-wheels
(--wheels), both gitignored and reused.
The small preset keeps only the genes it needs (PBMC3k's 2,000 most-counted genes, 20 mouse genes, 5 IDs outside
grnformer's vocabulary) so that each committed checkpoint stays ~6 MB; the published checkpoints hold ~45k genes,
and so does the full-shape run (every vocabulary gene).

The v2 layout (--layout v2) is the model scPRINT 2.3.8's default v2 configuration builds: the ``model`` settings of
its own base_v2.yml (read from the installed package: grouped-query attention with 2 key/value heads, depth given
to the expression decoder, cell-specific cross-attention layers, log normalisation, the flash transformer, which
falls back to plain attention on CPU), with the preset's width / layers / heads. Its small fixture is narrower than
the small preset (d 48, 2 layers, 4 heads over 2 key/value heads, so that the grouping is exercised) and keeps
1,000 PBMC3k genes: the 6 cell-specific layers and the unused cross-attention blocks scPRINT builds into its gene
transformer would otherwise take the file past 4 MB. Both runs of the same command write the same bytes (the
weights are seeded). `benchmarks/bench_scprint_speed.py` reuses `scprint_on_path`, `build_scprint` and
`save_lightning` for its full-shape parity and speed record.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Pinned: the releases whose model classes are the references, and the simpler-flash release 2.3.8 pins. 1.6.4 is
# the v1 code the published v1 checkpoints come from (its own copy of the transformer, no simpler-flash); it is
# installed beside 2.3.8 with --target and put first on the path of the second stage.
SCPRINT = "scprint==2.3.8"
SCPRINT_V1 = "scprint==1.6.4"
SIMPLER_FLASH = "simpler-flash==1.0.7"
LIGHT_DEPS = ["torch==2.13.0", "lightning==2.6.6", "einops==0.8.2", "huggingface_hub==2.4.0", "pandas==2.3.3",
              "scipy==1.17.1", "numpy==2.4.6", "anndata==0.12.19", "scanpy==1.11.5", "matplotlib==3.11.2",
              "tqdm==4.70.1"]
# Width / layers / heads of scPRINT's published sizes (the same figures as grnformer's presets).
SHAPES = {"small": (128, 4, 2), "medium": (256, 8, 4), "large": (512, 16, 8)}
# Label classes with real ontology terms; coarse terms list their leaves (scPRINT's labels_hierarchy layout).
CELL_TYPES = ["CL:0000236", "CL:0000624", "CL:0000625", "CL:0000623", "CL:0001054", "CL:0002396", "CL:0000233",
              "CL:0000451"]
CELL_TYPE_COARSE = {"CL:0000084": ["CL:0000624", "CL:0000625"], "CL:0000576": ["CL:0001054", "CL:0002396"]}
DISEASES = ["PATO:0000461", "MONDO:0004992", "MONDO:0005148"]
SEXES = ["PATO:0000383", "PATO:0000384"]
ORGANISMS = ["NCBITaxon:9606", "NCBITaxon:10090"]
N_GENES_SMALL = 2000
N_GENES_SMALL_V2 = 1000
# The v2 small fixture's (d_model, n_layers, n_heads, layers_cls); other presets take SHAPES and base_v2.yml's kv heads.
V2_SMALL = (48, 2, 4, [32])
N_MOUSE = 20
OUTSIDE_VOCAB = ["ENSG00000228794", "ENSG00000230368", "ENSG00000223764", "ENSG00000237330", "ENSG00000225880"]
N_CELLS, CONTEXT = 4, 128


# ---------------------------------------------------------------------------------------- grnformer side

def choose_inputs(preset: str, context: int, n_cells: int, n_human: int = N_GENES_SMALL) -> dict:
    """Genes of the fake checkpoint and fixed PBMC3k contexts (indices into those genes), from grnformer."""
    from grnformer.data.corpus import datasets
    from grnformer.data.genes import GeneVocab
    from grnformer.data.input.prepare import prepare

    vocab = GeneVocab.default()
    adata, _ = prepare(datasets.load("pbmc3k"), organism="human")
    totals = np.asarray(adata.X.sum(axis=0)).ravel()
    order = np.argsort(-totals, kind="stable")
    if preset == "small":
        human = adata.var_names[order[:n_human]].tolist()
        mouse = vocab.ids[vocab.organism_genes("mouse")[:N_MOUSE]].tolist()
        genes = human + mouse + OUTSIDE_VOCAB
    else:  # the published tables cover every gene; keep every vocabulary gene for full-size shapes
        genes = vocab.ids.tolist()
    rows = vocab.index(genes)
    positions = [int(vocab.positions[r]) + 1 if r >= 0 else 1 for r in rows]  # scPRINT's positions start at 1
    column = {g: i for i, g in enumerate(genes)}
    rng = np.random.default_rng(0)
    cells = rng.choice(adata.n_obs, size=n_cells, replace=False)
    ctx_genes = np.zeros((n_cells, context), dtype=np.int64)
    ctx_counts = np.zeros((n_cells, context), dtype=np.float32)
    depth = np.asarray(adata.X[cells].sum(axis=1), dtype=np.float32).ravel()
    for i, cell in enumerate(cells):
        x = adata.X[cell].toarray().ravel()
        known = np.array([column.get(g, -1) for g in adata.var_names])
        expressed = np.flatnonzero((x > 0) & (known >= 0))
        take = rng.permutation(expressed)[:context]
        pad = rng.choice(np.setdiff1d(np.flatnonzero(known >= 0), take), size=context - len(take), replace=False)
        chosen = np.concatenate([take, pad])
        ctx_genes[i] = known[chosen]
        ctx_counts[i] = x[chosen]
    return {"genes": genes, "positions": positions, "cells": adata.obs_names[cells].tolist(),
            "context_genes": ctx_genes, "context_counts": ctx_counts, "depth": depth}


def ensure_v1(venv: Path, wheels: Path) -> Path:
    """scPRINT 1.6.4 in a folder of its own (``--target``), next to the venv's 2.3.8."""
    target = venv.parent / (venv.name + "-scprint-1.6.4")
    if not (target / "scprint").is_dir():
        python = ensure_venv(venv, wheels)
        subprocess.run([str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), SCPRINT_V1],
                       check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--find-links",
                        str(wheels), "--target", str(target), SCPRINT_V1], check=True)
    return target


def ensure_venv(venv: Path, wheels: Path) -> Path:
    """The throwaway environment with pinned scPRINT (no dependencies) and the few libraries its model needs."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    probe = (f"from importlib.metadata import version as v; assert v('scprint') == '{SCPRINT.split('==')[1]}'; "
             f"assert v('simpler_flash') == '{SIMPLER_FLASH.split('==')[1]}'")
    have = subprocess.run([str(python), "-c", probe], capture_output=True, check=False)
    if have.returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *LIGHT_DEPS], check=True)
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), SCPRINT,
                        SIMPLER_FLASH], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--find-links",
                        str(wheels), SCPRINT, SIMPLER_FLASH], check=True)
    return python


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(SHAPES), default="small")
    ap.add_argument("--release", choices=["2.3.8", "1.6.4"], default="2.3.8",
                    help="scPRINT release whose class makes the checkpoint (1.6.4: the published v1 code)")
    ap.add_argument("--layout", choices=["v1", "v2"], default="v1",
                    help="v2: the model of 2.3.8's base_v2.yml (GQA, depth in the decoder, cell-specific layers)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="v2 only: change one base_v2.yml model setting (YAML value), e.g. cell_specific_blocks=false")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data")
    ap.add_argument("--venv", type=Path, default=ROOT / "benchmarks" / "out" / "scprint-venv")
    ap.add_argument("--wheels", type=Path, default=ROOT / "benchmarks" / "out" / "scprint-wheels")
    ap.add_argument("--context", type=int, default=CONTEXT)
    ap.add_argument("--cells", type=int, default=N_CELLS)
    ap.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # second stage, inside the throwaway venv
    args = ap.parse_args()
    if args.inside:
        run_scprint(args.inside)
        return
    if args.layout == "v2" and args.release != "2.3.8":
        ap.error("--layout v2 needs --release 2.3.8 (1.6.4 has no v2 layout)")
    if args.overrides and args.layout != "v2":
        ap.error("--set changes base_v2.yml settings: it needs --layout v2")
    import yaml
    overrides = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.overrides)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"scprint_{args.preset}" if args.release == "2.3.8" else f"scprint_v{args.release.replace('.', '')}_" \
        f"{args.preset}"
    if args.layout == "v2":
        stem = f"scprint_v2_{args.preset}"
    work = args.out / f".{stem}.work"
    work.mkdir(exist_ok=True)
    small_v2 = args.layout == "v2" and args.preset == "small"
    inputs = choose_inputs(args.preset, args.context, args.cells, N_GENES_SMALL_V2 if small_v2 else N_GENES_SMALL)
    d, n_layers, n_heads = V2_SMALL[:3] if small_v2 else SHAPES[args.preset]
    layers_cls = V2_SMALL[3] if small_v2 else [64] if args.preset == "small" else []
    spec = {"d_model": d, "nlayers": n_layers, "nhead": n_heads, "genes": inputs["genes"],
            "positions": inputs["positions"], "cells": inputs["cells"], "preset": args.preset,
            "layers_cls": layers_cls, "layout": args.layout, "overrides": overrides}
    (work / "spec.json").write_text(json.dumps(spec))
    np.savez(work / "inputs.npz", genes=inputs["context_genes"], counts=inputs["context_counts"],
             depth=inputs["depth"])
    python = ensure_venv(args.venv, args.wheels)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("PYTHONPATH", None)
    if args.release == "1.6.4":
        env["PYTHONPATH"] = str(ensure_v1(args.venv, args.wheels))
    subprocess.run([str(python), __file__, "--inside", str(work)], check=True, env=env)
    ckpt, expected = args.out / f"{stem}.ckpt", args.out / f"{stem}_expected.npz"
    os.replace(work / "model.ckpt", ckpt)
    os.replace(work / "expected.npz", expected)
    from grnformer.data.resources import file_sha256

    versions = json.loads((work / "versions.json").read_text())
    for f in work.iterdir():
        f.unlink()
    work.rmdir()
    record = {"command": "python scripts/make_scprint_fixture.py " + " ".join(sys.argv[1:]), "preset": args.preset,
              "release": args.release, "layout": args.layout, "v2_settings": versions.pop("v2_settings", None),
              "shape": {"d_model": d, "n_layers": n_layers, "n_heads": n_heads}, "versions": versions,
              "n_genes": len(inputs["genes"]), "cells": inputs["cells"], "context": args.context,
              "checkpoint_sha256": file_sha256(ckpt), "expected_sha256": file_sha256(expected)}
    (args.out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "cells"}, indent=1))


# ---------------------------------------------------------------------------- inside the throwaway venv

def _stub_modules() -> None:
    """Tiny stand-ins for scPRINT's heavy imports; the model's forward pass uses none of them."""
    import torch.nn as nn

    class Anything:
        def __init__(self, *a, **k):
            pass

        def __call__(self, *a, **k):
            return Anything()

        def __getattr__(self, name):
            return Anything()

    def stub(name: str, **attrs) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        def anything(attr: str):  # any other public name: a harmless placeholder
            if attr.startswith("__"):
                raise AttributeError(attr)
            return Anything
        module.__getattr__ = anything
        sys.modules[name] = module
        return module

    class StochasticDepth(nn.Module):  # torchvision.ops.StochasticDepth at p = 0 / in eval: the identity
        def __init__(self, p: float, mode: str):
            super().__init__()
            self.p = p

        def forward(self, x):
            return x

    stub("torchvision")
    stub("torchvision.ops", StochasticDepth=StochasticDepth)
    for _ in range(50):  # stand in for each missing import of scPRINT's package (bionty, lamindb, Bio, ...)
        try:
            import scprint  # noqa: F401
            return
        except ModuleNotFoundError as exc:
            for loaded in [m for m in sys.modules if m.split(".")[0] in ("scprint", "simpler_flash")]:
                del sys.modules[loaded]
            parts = exc.name.split(".")
            for i in range(1, len(parts) + 1):
                stub(".".join(parts[:i]))
    raise RuntimeError("scPRINT's imports could not be satisfied")


def scprint_on_path(venv: Path) -> None:
    """Make scPRINT's model class importable in *this* interpreter (grnformer's, for the speed benchmark): only
    its own packages and einops are taken from the throwaway venv (through links in a temporary folder), the rest
    of its imports are stand-ins."""
    import glob
    import tempfile

    site = Path(glob.glob(str(venv / "lib" / "python3*" / "site-packages"))[0])
    shim = Path(tempfile.mkdtemp(prefix="scprint-shim-"))
    for pattern in ("scprint", "simpler_flash", "einops", "scprint-*.dist-info", "simpler_flash-*.dist-info",
                    "einops-*.dist-info"):
        for found in site.glob(pattern):
            (shim / found.name).symlink_to(found)
    sys.path.append(str(shim))
    import lightning.pytorch  # noqa: F401  (before the stand-ins: Lightning probes which optional packages exist)
    _stub_modules()


def base_v2_settings() -> dict:
    """The ``model`` section of scPRINT's own base_v2.yml (installed with the package), as scPRINT's CLI passes
    it to the class; the preset's width / layers / heads / classifier widths are set apart."""
    import glob

    import scprint
    import yaml

    site = Path(scprint.__file__).resolve().parents[1]
    found = glob.glob(str(site / "config" / "base_v2.yml"))
    if not found:
        raise RuntimeError(f"scPRINT's base_v2.yml is not installed beside the package ({site / 'config'})")
    settings = yaml.safe_load(Path(found[0]).read_text())["model"]
    return {k: v for k, v in settings.items() if k not in ("d_model", "nhead", "nlayers", "layers_cls")}


def build_scprint(genes: list[str], positions: list[int], d_model: int, nlayers: int, nhead: int,
                  layers_cls: list[int], seed: int = 0, layout: str = "v1", overrides: dict | None = None):
    """scPRINT's own class with random weights (biases and norms too), in eval mode. v1: the settings of the
    published v1 models; v2: base_v2.yml's, with ``overrides`` on top."""
    import torch
    from scprint import scPrint

    torch.manual_seed(seed)
    classes = {"cell_type_ontology_term_id": len(CELL_TYPES), "disease_ontology_term_id": len(DISEASES),
               "sex_ontology_term_id": len(SEXES), "organism_ontology_term_id": len(ORGANISMS)}
    terms = {"cell_type_ontology_term_id": CELL_TYPES + list(CELL_TYPE_COARSE),
             "disease_ontology_term_id": DISEASES, "sex_ontology_term_id": SEXES,
             "organism_ontology_term_id": ORGANISMS}
    decoders = {c: dict(enumerate(t)) for c, t in terms.items()}
    hierarchy = {"cell_type_ontology_term_id": {len(CELL_TYPES) + j: [CELL_TYPES.index(t) for t in leaves]
                                                for j, leaves in enumerate(CELL_TYPE_COARSE.values())}}
    layout_settings = {**base_v2_settings(), **(overrides or {})} if layout == "v2" else {
        "normalization": "sum", "transformer": "normal", "mvc_decoder": "inner product", "dropout": 0.1}
    model = scPrint(genes=genes, organisms=ORGANISMS, d_model=d_model, nhead=nhead, nlayers=nlayers,
                    gene_pos_enc=positions, expr_encoder_layers=2, layers_cls=layers_cls, classes=classes,
                    labels_hierarchy=hierarchy, label_decoders=decoders, num_batch_labels=3, **layout_settings)
    with torch.no_grad():  # random weights everywhere, not only where scPRINT's init leaves them non-trivial
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def save_lightning(model, path: Path) -> None:
    """Write the model as scPRINT's training does: Lightning's own checkpoint (state_dict + hyper_parameters)."""
    import lightning as L

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)


def run_scprint(work: Path) -> None:
    """Build scPRINT's class with random weights, save a Lightning checkpoint, record its outputs."""
    import warnings
    warnings.filterwarnings("ignore")
    import lightning.pytorch  # noqa: F401  (before the stand-ins: Lightning probes which optional packages exist)
    import torch
    _stub_modules()
    from importlib.metadata import version

    spec = json.loads((work / "spec.json").read_text())
    layout = spec.get("layout", "v1")
    model = build_scprint(spec["genes"], spec["positions"], spec["d_model"], spec["nlayers"], spec["nhead"],
                          spec["layers_cls"], layout=layout, overrides=spec.get("overrides"))
    save_lightning(model, work / "model.ckpt")
    classes = model.classes
    for module in model.modules():  # base_v2's gradient checkpointing only saves memory in training; on CPU
        if hasattr(module, "checkpointing"):  # (attention without flash) torch's checkpoint refuses its arguments
            module.checkpointing = False

    x = np.load(work / "inputs.npz")
    genes, counts, depth = (torch.from_numpy(x[k]) for k in ("genes", "counts", "depth"))
    # scPRINT counts every block of its gene transformer, the cross-attention ones it skips included (v2)
    layers = list(range(len(model.transformer.blocks)))
    depth_keyword = "req_depth" if "req_depth" in inspect.signature(model.forward).parameters else "full_depth"
    with torch.no_grad():
        out, qkvs = model(genes, counts, **{depth_keyword: depth}, depth_mult=counts.sum(1), do_class=True,
                          get_gene_emb=True, get_attention_layer=layers)
    n_special = 0 if getattr(model, "cell_transformer", None) is not None else model.cell_embs_count  # v2: genes
    assert len(qkvs) == spec["nlayers"]
    # qkv per layer: [B, T, 3, H, d_head] over every token; keep the gene tokens, as [B, H, L, d_head]
    q = torch.stack([t[:, n_special:, 0].transpose(1, 2) for t in qkvs])
    k = torch.stack([t[:, n_special:, 1].transpose(1, 2) for t in qkvs])
    result = {"cell_emb": out["cell_emb"], "mean": out["mean"], "disp": out["disp"],
              "zero_logits": out["zero_logits"], "gene_embedding": out["gene_embedding"], "q": q, "k": k}
    for c in classes:
        result[f"logits:{c}"] = out[f"cls_output_{c}"]
    inputs = {f"input_{k}": x[k] for k in ("genes", "counts", "depth")}  # indices into the checkpoint's genes
    np.savez(work / "expected.npz", **inputs, **{k: v.float().numpy() for k, v in result.items()})
    versions = {p: version(p) for p in ["scprint", "torch", "lightning"]}
    if versions["scprint"] == SCPRINT.split("==")[1]:
        versions["simpler_flash"] = version("simpler_flash")
    if layout == "v2":
        versions["v2_settings"] = {**base_v2_settings(), **(spec.get("overrides") or {})}
    (work / "versions.json").write_text(json.dumps(versions))  # metadata: 1.6.4's __version__ says "1.6.2"


if __name__ == "__main__":
    main()
