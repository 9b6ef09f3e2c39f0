"""The one resolver of the shared benchmark data: $GRNFORMER_SHARED_DATA, then shared/data beside the repository,
then the cache, file by file; a missing file says where it was looked for and how to supply it, and a test that
needs one is skipped with that reason (failed under GRNFORMER_REQUIRE_DATA=1)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grnformer import ResourceError
from grnformer.cli import main as cli_main
from grnformer.data import shared
from grnformer.data.corpus.datasets import availability, load
from grnformer.data.shared import (
    ENV_VAR,
    SharedDataMissing,
    find_shared,
    shared_files,
    shared_path,
)

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Three empty search directories: the variable's, the one beside the repository, the cache's."""
    named, beside, cache = (tmp_path / n for n in ("named", "beside", "cache"))
    for d in (named, beside, cache / "shared"):
        d.mkdir(parents=True)
    monkeypatch.setenv(ENV_VAR, str(named))
    monkeypatch.setattr(shared, "_beside_repository", lambda: beside)
    monkeypatch.setenv("GRNFORMER_CACHE", str(cache))
    return named, beside, cache / "shared"


def _put(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_search_order_is_variable_then_beside_the_repository_then_cache(dirs):
    named, beside, cache = dirs
    assert [root for _, root in shared.search_dirs()] == [named, beside, cache]
    _put(cache, "counts/a.h5ad", "cache")
    assert shared_path("counts/a.h5ad").read_text() == "cache"
    _put(beside, "counts/a.h5ad", "beside")
    assert shared_path("counts/a.h5ad").read_text() == "beside"
    _put(named, "counts/a.h5ad", "named")
    assert shared_path("counts/a.h5ad").read_text() == "named"


def test_each_file_comes_from_the_first_directory_holding_it(dirs):
    named, beside, cache = dirs
    _put(named, "counts/mine.h5ad", "")
    _put(beside, "counts/theirs.h5ad", "")
    _put(cache, "counts/mine.h5ad", "")
    files = shared_files("counts", "*.h5ad")
    assert files == {"mine.h5ad": named / "counts/mine.h5ad", "theirs.h5ad": beside / "counts/theirs.h5ad"}
    assert find_shared("counts/theirs.h5ad") == beside / "counts/theirs.h5ad"


def test_missing_file_names_every_place_and_how_to_supply_it(dirs):
    named, beside, cache = dirs
    with pytest.raises(SharedDataMissing) as err:
        shared_path("counts/pbmc_ifnb.h5ad", what="(raw-count h5ad)")
    msg = str(err.value)
    assert isinstance(err.value, ResourceError) and err.value.relative == "counts/pbmc_ifnb.h5ad"
    for root in (named, beside, cache):
        assert str(root / "counts/pbmc_ifnb.h5ad") in msg
    assert ENV_VAR in msg and "PROVENANCE.md" in msg


def test_without_the_variable_or_a_checkout_only_the_cache_is_searched(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(shared, "REPOSITORY", tmp_path)  # not a checkout: no pyproject.toml
    monkeypatch.setenv("GRNFORMER_CACHE", str(tmp_path / "cache"))
    assert [where for where, _ in shared.search_dirs()] == ["cache"]
    assert shared.shared_data_dir() is None


def test_mccalla_truth_without_shared_data_is_a_clear_resource_error(dirs):
    """Before: a TypeError (None / 'mccalla') when no shared directory existed."""
    from grnformer.bench.truths import load_truth

    with pytest.raises(SharedDataMissing, match="gold_standards/mESC.*root=DIR"):
        load_truth("mccalla_mesc_chip_kd")


def test_datasets_command_says_what_is_here_and_how_to_get_the_rest(dirs, capsys):
    named, _, _ = dirs
    _put(named, "counts/pbmc_ifnb.h5ad", "")
    by_name = {a.name: a for a in availability()}
    assert by_name["pbmc_ifnb"].present and not by_name["chen_hesc"].present
    assert not by_name["zheng2017_sorted_pbmc_facs"].present  # named even where its file is absent
    with pytest.raises(SharedDataMissing, match="counts/zheng2017_sorted_pbmc_facs.h5ad"):
        load("zheng2017_sorted_pbmc_facs")
    assert "mccalla/scRNA/chen_rna_filtered_log2.tsv.gz" in by_name["chen_hesc"].how_to_get
    assert cli_main(["datasets"]) in (0, None)
    out = capsys.readouterr().out
    line = {ln.split()[0]: ln for ln in out.splitlines() if ln and not ln.startswith(" ")}
    assert "present" in line["pbmc_ifnb"] and "missing" in line["chen_hesc"]
    assert ENV_VAR in out and "grnformer fetch" in out and str(named) in out


PROBE = '''
from grnformer.data.shared import shared_path

def test_needs_a_file():
    shared_path("counts/not_a_real_set.h5ad")

def test_needs_nothing():
    pass
'''


@pytest.mark.parametrize("require", [False, True])
def test_missing_data_skips_with_a_count_or_fails_in_ci(tmp_path, require):
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, ENV_VAR: str(tmp_path), "GRNFORMER_CACHE": str(tmp_path / "cache"),
           "GRNFORMER_REQUIRE_DATA": "1" if require else ""}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if require:
        assert proc.returncode == 1 and "1 failed, 1 passed" in proc.stdout, proc.stdout
        assert "GRNFORMER_REQUIRE_DATA is set" in proc.stdout
    else:
        assert proc.returncode == 0 and "1 passed, 1 skipped" in proc.stdout, proc.stdout
        assert "needs shared data 'counts/not_a_real_set.h5ad'" in proc.stdout
        assert "shared data: 1 test(s) could not run here, 1 file(s) missing" in proc.stdout
