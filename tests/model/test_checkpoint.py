"""Checkpoints: one .pth rebuilds the model; bad files fail with one sentence."""

from __future__ import annotations

import torch
import pytest

from csrinfer.model.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from csrinfer.errors import CheckpointError
from csrinfer.model import build_model


def test_round_trip_rebuilds_the_same_model(tmp_path, small_cfg):
    torch.manual_seed(0)
    model = build_model(small_cfg).eval()
    path = save_checkpoint(tmp_path / "m.pth", model, small_cfg, meta={"note": "x"})
    loaded, cfg, payload = load_checkpoint(path)
    assert cfg.to_dict() == small_cfg.to_dict()
    assert payload["class_names"] == small_cfg.classes and payload["meta"] == {"note": "x"}
    images = torch.rand(1, 3, 128, 160) * 255
    with torch.no_grad():
        for a, b in zip(model(images).cate_preds, loaded(images).cate_preds):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pth")


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or not a PyTorch file") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value)  # torch's advice on unpickling is not the user's problem


def test_truncated_checkpoint(tmp_path, small_cfg):
    path = save_checkpoint(tmp_path / "m.pth", build_model(small_cfg), small_cfg)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        read_checkpoint(path)


def test_foreign_pytorch_file(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a csrinfer checkpoint"):
        load_checkpoint(path)


class Pickled:
    pass


def test_a_file_with_python_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"model": Pickled()}, path)
    with pytest.raises(CheckpointError, match="not a csrinfer checkpoint: it holds Python objects"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_config(tmp_path, small_cfg):
    path = save_checkpoint(tmp_path / "m.pth", build_model(small_cfg), small_cfg)
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["csr_channels"] = 64  # the weights were made with 128
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match its config") as info:
        load_checkpoint(path)
    assert "of another shape" in str(info.value) and "\n" not in str(info.value)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, small_cfg, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pth", build_model(small_cfg), small_cfg, meta={"v": 1})

    def broken_save(obj, f):
        open(f, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, build_model(small_cfg), small_cfg, meta={"v": 2})
    monkeypatch.undo()
    assert read_checkpoint(path)["meta"] == {"v": 1}
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_newer_format_version_asks_to_upgrade(tmp_path, small_cfg):
    path = save_checkpoint(tmp_path / "m.pth", build_model(small_cfg), small_cfg)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 2
    torch.save(payload, path)
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError, match="has format version 2; this csrinfer reads up to 1, "
                                                  "upgrade csrinfer") as info:
            load(path)
        assert "\n" not in str(info.value)


def _edited_state_dict(tmp_path, cfg, edit):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "m.pth", build_model(cfg), cfg)
    payload = torch.load(path, weights_only=True)
    edit(payload["state_dict"])
    torch.save(payload, path)
    return path


def test_a_missing_weight_is_named_in_one_sentence(tmp_path, small_cfg):
    keys = list(build_model(small_cfg).state_dict())
    gone = keys[len(keys) // 2]
    path = _edited_state_dict(tmp_path, small_cfg, lambda sd: sd.pop(gone))
    with pytest.raises(CheckpointError, match="do not match its config") as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"1 missing (e.g. {gone})" in message and "unexpected" not in message and "\n" not in message


def test_an_unexpected_weight_is_named_in_one_sentence(tmp_path, small_cfg):
    extra = torch.randn(3, 4)
    path = _edited_state_dict(tmp_path, small_cfg, lambda sd: sd.update({"head.extra.weight": extra}))
    with pytest.raises(CheckpointError, match="do not match its config") as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "1 unexpected (e.g. head.extra.weight)" in message and "missing" not in message and "\n" not in message
