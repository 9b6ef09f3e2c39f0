"""A built wheel carries the shipped model: installed on its own, `grnformer info shipped` works outside the
source tree (and the test makes sure it is the installed copy that answers, not the editable source)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_the_model_and_runs_info_shipped(tmp_path):
    src = tmp_path / "src_copy"  # build from a copy: the build leaves build/ and egg-info behind
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels)], check=True, capture_output=True, text=True)
    (wheel,) = wheels.glob("grnformer-*.whl")
    members = set(zipfile.ZipFile(wheel).namelist())
    assert {"grnformer/checkpoints/small.pt", "grnformer/checkpoints/small.json",
            "grnformer/configs/small.yaml"} <= members

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the installed copy first on the path: it, not the editable source of the test environment, must answer
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    where = subprocess.run([sys.executable, "-c", "import grnformer; print(grnformer.__file__)"], cwd=elsewhere,
                           env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(site), where
    proc = subprocess.run([str(site / "bin" / "grnformer"), "info", "shipped"], cwd=elsewhere, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "context length" in proc.stdout and "vocabulary" in proc.stdout
    assert str(site) in subprocess.run(
        [sys.executable, "-c", "from grnformer.bundle.checkpoint import resolve_checkpoint as r; print(r('shipped'))"],
        cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout
