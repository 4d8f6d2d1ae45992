"""The ``csrinfer`` front: a user's problem is one line on stderr and a non-zero exit, no traceback."""

import csrinfer.cli.data
from csrinfer.cli import main


def test_a_dataset_under_an_impossible_folder_is_one_sentence(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["data", "synth", "--out", str(tmp_path / "file" / "shapes"), "--n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("csrinfer data: error: cannot create ") and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_an_os_error_is_one_sentence_with_exit_code_1(monkeypatch, capsys):
    def full_disk(args):
        raise OSError(28, "No space left on device", "/data/out/model.onnx")

    monkeypatch.setattr(csrinfer.cli.data, "run", full_disk)
    assert main(["data", "synth", "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert err == "csrinfer data: error: No space left on device: /data/out/model.onnx\n"
