"""What ``csrinfer predict`` reads: a folder is its own files; subfolders are said, not searched."""

from __future__ import annotations

import pytest

from csrinfer.apps.sources import Source, collect_sources


def test_a_folder_gives_its_images_and_videos_sorted_and_names_the_subfolders_it_leaves(tmp_path):
    (tmp_path / "b.jpg").write_bytes(b"x")
    (tmp_path / "a.PNG").write_bytes(b"x")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.jpg").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    with pytest.warns(UserWarning, match=r"only its own files are read \(its subfolders sub are not searched"):
        sources, problems = collect_sources([str(tmp_path), "0"])
    assert [s.kind for s in sources] == ["image", "image", "video", "camera"] and problems == []
    assert [s.name for s in sources[:3]] == ["a", "b", "clip"] and sources[3] == Source("camera", 0)


def test_a_folder_of_subfolders_only_is_a_problem_that_says_why(tmp_path):
    (tmp_path / "photos" / "day1").mkdir(parents=True)
    (tmp_path / "photos" / "day1" / "a.jpg").write_bytes(b"x")
    sources, problems = collect_sources([str(tmp_path / "photos")])
    assert sources == [] and len(problems) == 1
    assert problems[0][1].endswith("holds no image or video files (its subfolders day1 are not searched: give them too)")
