"""Atomic writes."""

import os

from difftk.runtime.files import atomic_write_text


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    path = atomic_write_text(tmp_path / "f.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert path.read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
