"""The CLI as a user meets it: clear one-paragraph errors, exit code 2, nothing written on failure."""

import subprocess
import sys

from grnformer.cli import main
from grnformer.data.resources import RESOURCES


def test_missing_resource_names_how_to_supply_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRNFORMER_CACHE", str(tmp_path / "cache"))
    empty = tmp_path / "archives"
    empty.mkdir()
    assert main(["fetch", "tf_human", "--archives", str(empty)]) == 2
    err = capsys.readouterr().err
    res = RESOURCES["tf_human"]
    assert f"{res.package}=={res.version}" in err and "grnformer fetch --archives" in err
    assert not (tmp_path / "cache" / f"{res.package}-{res.version}" / res.filename).exists()


def test_fetch_from_local_archive(tmp_path, monkeypatch):
    """A user without registry access hands over the wheel; the file is extracted and recorded."""
    import zipfile

    from grnformer.data.resources import resource_path

    wheel = tmp_path / "archives" / "grnndata-1.3.2-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(resource_path("tf_human"), "grnndata/TF.txt")
    monkeypatch.setenv("GRNFORMER_CACHE", str(tmp_path / "cache"))
    assert main(["fetch", "tf_human", "--archives", str(wheel.parent)]) == 0
    import json

    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert list(manifest) == ["tf_human"] and manifest["tf_human"]["version"] == "1.3.2"
    assert "TP53" in (tmp_path / "cache" / "grnndata-1.3.2" / "TF.txt").read_text().split()


def test_prepare_unreadable_file_exit_2(tmp_path):
    bad = tmp_path / "broken.h5ad"
    bad.write_bytes(b"not an hdf5 file")
    out = tmp_path / "out.h5ad"
    proc = subprocess.run([sys.executable, "-m", "grnformer.cli", "prepare", str(bad), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "broken.h5ad" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out.h5ad*"))
