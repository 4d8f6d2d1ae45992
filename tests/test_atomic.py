"""csrinfer/atomic.py: a finished file is never replaced by a half-written one."""

from __future__ import annotations

import json
import os
import stat

import pytest

from csrinfer import atomic


def test_write_json_round_trips_and_creates_the_folder(tmp_path):
    value = {"AP": 54.2, "rows": [1, 2, 3], "name": "ü"}
    path = atomic.write_json(tmp_path / "new" / "r.json", value)
    assert json.loads(path.read_text()) == value and path.read_text().endswith("\n")
    compact = atomic.write_json(tmp_path / "c.json", value, indent=None)
    assert "\n" not in compact.read_text()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = atomic.write_json(tmp_path / "r.json", {"v": 1})
    with pytest.raises(TypeError):
        atomic.write_json(path, {"v": object()})  # not JSON: fails before anything is renamed

    def half_then_fail(tmp):
        open(tmp, "w").write('{"v": 2')
        raise KeyboardInterrupt  # Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_write_bytes_and_text(tmp_path):
    assert atomic.write_bytes(tmp_path / "b.bin", memoryview(b"\x00\x01")).read_bytes() == b"\x00\x01"
    assert atomic.write_text(tmp_path / "t.md", "# AP\n").read_text() == "# AP\n"


def test_written_files_and_folders_get_the_modes_a_plain_open_gives(tmp_path):
    """Not tempfile's owner-only 0600: a Triton server running as another user reads the engine."""
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain"
        plain.write_text("x")
        (tmp_path / "plain_dir").mkdir()
        written = atomic.write_json(tmp_path / "r.json", {"v": 1})
        folder = atomic.temp_beside(tmp_path / "data", folder=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE((tmp_path / "plain_dir").stat().st_mode) == 0o755


def test_a_name_near_the_file_systems_limit_is_written(tmp_path):
    """The temp file beside it must not be longer than the longest name the file system takes."""
    names = ["a" * 250 + ".json", "é" * 125 + ".json", "a" + "é" * 124 + ".json"]  # 255, 255, 254 bytes
    for name in names:
        path = atomic.write_json(tmp_path / name, {"ok": 1})
        assert json.loads(path.read_text()) == {"ok": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_a_long_name_is_cut_between_characters_for_the_temp_file(tmp_path):
    """Byte 200 of this name falls inside an 'é': the temp name must still be valid UTF-8."""
    tmp = atomic.temp_beside(tmp_path / ("a" + "é" * 124 + ".json"))
    tmp.name.encode("utf-8")  # a lone surrogate from a cut character would raise here
    assert tmp.name.startswith(".a" + "é" * 99 + ".") and len(tmp.name.encode()) <= 214
