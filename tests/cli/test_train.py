"""``csrinfer data synth``, ``train`` and ``eval`` from the command line, and their one-line errors."""

from __future__ import annotations

import json

import pytest
import yaml

from csrinfer.cli import main
from tests.train.conftest import tiny_config


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "shapes"
    assert main(["data", "synth", "--out", str(root), "--n", "4", "--n-val", "2", "--seed", "1"]) == 0
    return root


def test_data_synth_writes_both_splits(shapes):
    assert len(list((shapes / "train").glob("*.png"))) == 4 and len(list((shapes / "val").glob("*.png"))) == 2
    assert json.loads((shapes / "annotations" / "instances_val.json").read_text())["categories"][0]["name"] == "circle"


def test_train_then_eval(shapes, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config().to_dict()))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--data", str(shapes), "--out", str(out), "--max-iters", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"weights: {out / 'final.pth'}" in printed and "AP50" in printed and "FPS" in printed
    assert main(["eval", "--model", str(out / "final.pth"), "--data", str(shapes), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2 and "AP75" in report and (out / "results_val.json").is_file()


def test_a_broken_val_file_is_refused_before_training(shapes, tmp_path, capsys):
    import shutil

    data = tmp_path / "shapes"
    shutil.copytree(shapes, data)
    val = data / "annotations" / "instances_val.json"
    broken = json.loads(val.read_text())
    broken["annotations"][0]["segmentation"] = 5
    val.write_text(json.dumps(broken))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config().to_dict()))
    argv = ["train", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "run"), "--max-iters", "2"]
    assert main(argv) == 2
    assert f"annotation {broken['annotations'][0]['id']} has segmentation 5" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing trained, nothing to lose
    assert main(argv + ["--no-eval"]) == 0


@pytest.mark.parametrize("argv,message", [
    (["data", "synth", "--out", "{shapes}"], "not empty"),
    (["train", "--config", "{models}/csr_d2s_r18_small.yaml", "--data", "{tmp}/nowhere"], "does not exist"),
    (["train", "--config", "{models}/csr_d2s_r18_small.yaml", "--data", "{shapes}/annotations/instances_train.json"],
     "is a file; give the dataset folder"),
    (["train", "--config", "{models}/csr_d2s_r50_coco.yaml", "--data", "{shapes}", "--out", "{tmp}/x"],
     "4 categories"),
    (["eval", "--model", "{tmp}/missing.pth", "--data", "{shapes}"], "does not exist"),
])
def test_mistakes_are_one_line(argv, message, shapes, tmp_path, capsys):
    from tests.conftest import MODELS

    argv = [a.format(shapes=shapes, tmp=tmp_path, models=MODELS) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"csrinfer {argv[0]}: error:") and message in err[0], err


def test_a_dataset_without_val_split_is_said_before_training(shapes, tmp_path, capsys):
    import shutil

    from tests.conftest import MODELS

    data = shutil.copytree(shapes, tmp_path / "shapes")
    (data / "annotations" / "instances_val.json").rename(data / "annotations" / "instances_vall.json")
    argv = ["train", "--config", str(MODELS / "csr_d2s_r50_coco.yaml"), "--data", str(data), "--out", str(tmp_path / "x")]
    with pytest.warns(UserWarning, match=f"no 'val' split in {data}.*will not be evaluated"):
        assert main(argv) == 2  # said although the run fails before its first iteration (80 classes, 4 categories)
    assert "4 categories" in capsys.readouterr().err
