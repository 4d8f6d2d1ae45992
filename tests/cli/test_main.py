"""The ``csrinfer`` front: a user's problem is one line on stderr and a non-zero exit, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import csrinfer.cli.data
from csrinfer.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["data", "synth", "--out"], ["predict", "photo.png", "--model", "m.onnx", "--out"],
                                     ["train", "--config", "c.yaml", "--data", "d", "--out"],
                                     ["export", "--model", "m.pth", "--out"], ["demo", "--out"],
                                     ["export", "--model", "m.pth", "--triton-repo"], ["serve", "--model", "m.pth", "--repo"],
                                     ["eval", "--model", "m.pth", "--data", "d", "--out"], ["bench", "--model", "m.onnx", "--out"],
                                     ["build", "--model", "m.onnx", "--out"]])
@pytest.mark.parametrize("out", ["file", "file/sub"])
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, command, out):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit) as stop:
        main([*command, str(tmp_path / out)])
    err = capsys.readouterr().err.strip()
    prog = "csrinfer " + " ".join(command[:2] if command[0] == "data" else command[:1])
    assert stop.value.code == 2
    assert err == (f"{prog}: error: argument {command[-1]}: {tmp_path / 'file'} is a file, not a folder"
                   + (f" (needed for {tmp_path / out})" if out != "file" else ""))


def test_a_dataset_under_an_impossible_folder_is_one_sentence(tmp_path, capsys, monkeypatch):
    """A folder that cannot be made for another reason (here: no permission) is one sentence too."""
    import csrinfer.data.synthetic

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(csrinfer.data.synthetic, "temp_beside", refuse)
    assert main(["data", "synth", "--out", str(tmp_path / "locked" / "shapes"), "--n", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"csrinfer data: error: cannot create {tmp_path / 'locked' / 'shapes'}: Permission denied: {tmp_path / 'locked'}"


def test_an_os_error_is_one_sentence_with_exit_code_1(monkeypatch, capsys):
    def full_disk(args):
        raise OSError(28, "No space left on device", "/data/out/model.onnx")

    monkeypatch.setattr(csrinfer.cli.data, "run", full_disk)
    assert main(["data", "synth", "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert err == "csrinfer data: error: No space left on device: /data/out/model.onnx\n"


@pytest.mark.parametrize("argv,says", [
    (["eval", "--model", "m.pth", "--data", "d", "--max-images", "0"], "argument --max-images: '0' is not a whole number of at least 1"),
    (["bench", "--model", "m.onnx", "--iters", "-1"], "argument --iters: '-1' is not a whole number of at least 1"),
    (["train", "--config", "c.yaml", "--data", "d", "--max-minutes", "0"], "argument --max-minutes: '0' is not a number above 0"),
    (["data", "synth", "--out", "x", "--seed", "-3"], "argument --seed: '-3' is not a whole number of at least 0"),
])
def test_counts_below_their_minimum_are_refused_before_any_work(argv, says, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    prog = "csrinfer " + " ".join(argv[:2] if argv[0] == "data" else argv[:1])
    assert capsys.readouterr().err == f"{prog}: error: {says}\n"  # one line, no usage block


def test_an_output_folder_naming_the_model_file_leaves_it_alone(tmp_path, capsys):
    """--out is a folder in every command: the checkpoint given there by mistake is not overwritten."""
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"weights")
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(ckpt), "--data", str(tmp_path), "--out", str(ckpt)])
    assert capsys.readouterr().err.strip().endswith(f"{ckpt} is a file, not a folder")
    assert ckpt.read_bytes() == b"weights"


def test_a_warning_is_one_line_naming_the_command():
    # A child process: pytest records warnings itself, so only a plain interpreter shows the line.
    code = ("import warnings, csrinfer.cli.data as data; from csrinfer.cli import main; "
            "data.run = lambda args: warnings.warn('fp16 does nothing on cpu') or 0; "
            "raise SystemExit(main(['data', 'synth', '--out', 'x']))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stderr == "csrinfer data: warning: fp16 does nothing on cpu\n"


@pytest.mark.parametrize("argv,prog,what", [([], "csrinfer", "COMMAND"), (["data"], "csrinfer data", "SUBCOMMAND")])
def test_a_missing_command_is_one_line_that_says_where_the_commands_are(argv, prog, what, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"{prog}: error: the following arguments are required: {what} ({prog} --help lists them)\n"
