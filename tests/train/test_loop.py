"""The training loop end to end on a tiny config: it learns, resumes exactly, stops cleanly."""

from __future__ import annotations

import json
import signal

import pytest
import torch

from csrinfer.model.checkpoint import load_checkpoint, read_checkpoint
from csrinfer.errors import ConfigError, TrainingError
from csrinfer.train import loop
from csrinfer.train.loop import train
from tests.train.conftest import tiny_config


def _losses(out_dir):
    return {r["iter"]: r["loss"] for r in map(json.loads, (out_dir / "metrics.jsonl").read_text().splitlines())}


def test_a_few_images_are_overfit(tiny_data, tmp_path):
    final = train(tiny_config(), tiny_data, tmp_path, max_iters=24, progress=False)
    losses = list(_losses(tmp_path).values())
    assert len(losses) == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.8 * first, losses
    model, cfg, payload = load_checkpoint(final)
    assert "train_state" not in payload and cfg.classes == ["circle", "rectangle", "triangle", "star"]
    state = read_checkpoint(tmp_path / "last.pth")["train_state"]  # loadable with weights_only=True
    assert state["iteration"] == 24 and isinstance(state["rng"]["torch"], torch.Tensor)


def test_resume_gives_the_same_next_step_as_an_uninterrupted_run(tiny_data, tmp_path):
    # 8 images, batch 2: 4 iterations per epoch; stopping at 3 resumes in the middle of epoch 1,
    # where the data order must continue exactly, and iteration 5 starts epoch 2 (a new order
    # and new multi-scale draws).
    cfg = tiny_config(short_side_range=[56, 72])
    train(cfg, tiny_data, tmp_path / "straight", max_iters=5, progress=False)
    train(tiny_config(short_side_range=[56, 72]), tiny_data, tmp_path / "resumed", max_iters=3, progress=False)
    train(tiny_config(short_side_range=[56, 72]), tiny_data, tmp_path / "resumed", max_iters=5, resume=True,
          progress=False)
    straight, resumed = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
    assert sorted(resumed) == [1, 2, 3, 4, 5]
    for it in (4, 5):
        assert resumed[it] == pytest.approx(straight[it], rel=1e-5, abs=1e-6), (it, straight, resumed)


def test_a_new_run_into_a_folder_with_a_run_is_refused_and_leaves_it_alone(tmp_path):
    (tmp_path / "last.pth").write_bytes(b"iteration 1200")
    with pytest.raises(TrainingError, match="already holds a training run \\(last.pth\\); resume it"):
        train(tiny_config(), tmp_path / "no data needed", tmp_path, max_iters=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]
    assert (tmp_path / "last.pth").read_bytes() == b"iteration 1200"


def test_the_dataset_folder_is_refused_as_the_output_folder(tiny_data):
    before = sorted(p.name for p in tiny_data.iterdir())
    with pytest.raises(TrainingError, match="is the dataset folder; choose another one"):
        train(tiny_config(), tiny_data, tiny_data / ".", max_iters=1, progress=False)
    assert sorted(p.name for p in tiny_data.iterdir()) == before


@pytest.mark.parametrize("cfg,limits,says", [
    (None, {}, "cfg must be a csrinfer Config .*not a NoneType"),
    ("models/small.yaml", {}, "cfg must be a csrinfer Config .*not a str"),
    (tiny_config(), {"max_iters": 0}, "max_iters must be above 0, got 0"),
    (tiny_config(), {"max_minutes": -1}, "max_minutes must be above 0, got -1"),
])
def test_arguments_that_would_train_nothing_are_refused(tmp_path, cfg, limits, says):
    with pytest.raises(ConfigError, match=says):
        train(cfg, tmp_path / "data", tmp_path / "run", progress=False, **limits)
    assert not (tmp_path / "run").exists()


def test_a_nan_loss_stops_and_leaves_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = loop.solo_loss

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(loop, "solo_loss", poisoned)
    with pytest.raises(TrainingError, match="not finite at iteration 4.*last good checkpoint"):
        train(tiny_config(checkpoint_every=2), tiny_data, tmp_path, max_iters=10, progress=False)
    assert read_checkpoint(tmp_path / "last.pth")["train_state"]["iteration"] == 2
    assert not (tmp_path / "final.pth").exists()


def test_ctrl_c_saves_and_exits(tiny_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = loop.solo_loss

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            # as a Ctrl-C during iteration 3: the SIGINT handler the loop installed, called as the
            # interpreter calls it (a real os.kill of the test process crashed it, exit 139, only after
            # the whole suite had run in it)
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "solo_loss", interrupting)
    before = signal.getsignal(signal.SIGINT)  # pytest's own, or SIG_IGN where pytest started with SIGINT ignored
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), tiny_data, tmp_path, max_iters=10, progress=False)
    assert read_checkpoint(tmp_path / "last.pth")["train_state"]["iteration"] == 3  # iteration 3 completed
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_a_schedule_fitted_to_the_time_budget_takes_its_lr_steps_before_the_end(tiny_data, tmp_path, monkeypatch):
    import types

    clock = {"t": 0.0}

    def tick():  # a deterministic clock: every reading is a quarter of a second later
        clock["t"] += 0.25
        return clock["t"]

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(monotonic=tick, time=lambda: 0.0))
    cfg = tiny_config(epochs=12, milestones=[8, 11], warmup_iters=1)  # planned: 48 iterations
    final = train(cfg, tiny_data, tmp_path, max_minutes=0.4, fit_to_time=True, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    meta = read_checkpoint(final)["meta"]
    assert 10 < meta["iteration"] < 48 and abs(meta["iteration"] - meta["total_iters"]) <= 2  # fitted, not planned
    peak = records[2]["lr"]
    ratios = sorted({round(r["lr"] / peak, 6) for r in records[2:]}, reverse=True)
    assert ratios == [1.0, 0.1, 0.01] and records[-1]["lr"] == pytest.approx(0.01 * peak)
    first_drop = next(r["iter"] for r in records[2:] if r["lr"] < peak * 0.5)
    assert abs(first_drop / meta["iteration"] - 8 / 12) < 0.1


@pytest.mark.parametrize("native_bf16", [True, False])
def test_mixed_precision_is_fp16_on_cuda_and_bf16_only_on_cpus_that_have_it(monkeypatch, native_bf16):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert loop.autocast_dtype(torch.device("cuda", 0), amp=True) == torch.float16
    assert loop.autocast_dtype(torch.device("cpu"), amp=True) == (torch.bfloat16 if native_bf16 else None)
    assert loop.autocast_dtype(torch.device("cuda", 0), amp=False) is None
    assert loop.autocast_dtype(torch.device("cpu"), amp=False) is None


def test_the_datasets_own_category_ids_reach_the_checkpoint_the_onnx_file_and_the_instances(tiny_data, tmp_path):
    """A dataset numbering its categories 3, 7, 12, 20 gets those ids back in COCO results."""
    import shutil

    from csrinfer import Segmenter
    from csrinfer.export.pipeline import ExportOptions, export_model

    data = shutil.copytree(tiny_data, tmp_path / "data")
    ours = {1: 3, 2: 7, 3: 12, 4: 20}
    for split in ("train", "val"):
        path = data / "annotations" / f"instances_{split}.json"
        gt = json.loads(path.read_text())
        assert sorted(c["id"] for c in gt["categories"]) == [1, 2, 3, 4]
        for item in gt["categories"] + gt["annotations"]:
            key = "id" if "name" in item else "category_id"
            item[key] = ours[item[key]]
        path.write_text(json.dumps(gt))
    final = train(tiny_config(), data, tmp_path / "run", max_iters=1, progress=False)
    assert load_checkpoint(final)[1].category_ids == [3, 7, 12, 20]
    onnx_file = export_model(final, ExportOptions(out_dir=tmp_path / "export")).onnx
    for model in (final, onnx_file):
        instances = Segmenter(model).predict(data / "val" / sorted(p.name for p in (data / "val").iterdir())[0])
        assert tuple(instances.category_ids) == (3, 7, 12, 20), model
