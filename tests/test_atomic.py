"""csrinfer/atomic.py: a finished file is never replaced by a half-written one."""

from __future__ import annotations

import json

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
