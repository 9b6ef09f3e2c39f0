"""The one atomic writer every layer uses: a destination is either complete or untouched, and no part is left."""

import pytest

from grnformer.atomic import atomic_path, atomic_paths, part_path, write_text


def test_write_text_replaces_the_destination_and_leaves_no_part(tmp_path):
    dest = tmp_path / "report.html"
    dest.write_text("old")
    write_text(dest, "new")
    assert dest.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_a_failing_writer_leaves_the_old_file_and_no_part(tmp_path):
    dest = tmp_path / "a.txt"
    dest.write_text("old")
    with pytest.raises(OSError), atomic_path(dest) as part:
        part.write_text("half")
        raise OSError("disk full")
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_files_written_together_are_published_only_when_all_exist(tmp_path):
    a, b = tmp_path / "net.h5ad", tmp_path / "net.csv"
    with pytest.raises(RuntimeError, match="no file"), atomic_paths([a, b]) as (pa, _):
        pa.write_text("only one")
    assert list(tmp_path.iterdir()) == []


def test_a_directory_replaces_the_old_one_and_a_stale_part_is_cleared(tmp_path):
    dest = tmp_path / "corpus"
    (dest / "old").mkdir(parents=True)
    part_path(dest).mkdir()
    (part_path(dest) / "stale").write_text("from a crash")
    with atomic_path(dest) as part:
        part.mkdir()
        (part / "new").write_text("x")
    assert sorted(p.name for p in dest.iterdir()) == ["new"] and not part_path(dest).exists()


def test_unique_parts_are_named_by_process(tmp_path):
    assert part_path(tmp_path / "x.h5ad", unique=True) != part_path(tmp_path / "x.h5ad")
