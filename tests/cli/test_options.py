"""One name per thing across the commands: the model file is ``--model``, ``--out`` is a folder,
``--json`` prints, the speed switches are the same set; and docs/cli.md lists every option."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from csrinfer.cli import COMMANDS, build_parser
from csrinfer.cli.common import output_folder

DOCS_CLI = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
MODEL_COMMANDS = ("export", "build", "eval", "predict", "check", "bench", "serve", "info")
# (command, old spelling, the other arguments it needs): design.md's `export --ckpt` and
# `bench --engine` are documented aliases; the others are kept for old scripts, hidden.
ALIASES = [("export", "--ckpt", []), ("bench", "--engine", []), ("eval", "--ckpt", ["--data", "d"]),
           ("info", "--ckpt", []), ("build", "--onnx", [])]
OLD_MODEL_NAMES = re.compile(r"--(ckpt|engine|onnx)(?![\w-])")


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, ``data synth`` as one of them."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parsers = dict(sub.choices)
    data_sub = next(a for a in parsers.pop("data")._actions if isinstance(a, argparse._SubParsersAction))
    parsers.update({f"data {name}": p for name, p in data_sub.choices.items()})
    return parsers


def options(parser) -> dict[str, argparse.Action]:
    """The options ``--help`` shows, by name."""
    return {s: a for a in parser._actions if a.help != argparse.SUPPRESS
            for s in a.option_strings if s.startswith("--") and s != "--help"}


def test_every_command_is_found():
    assert set(COMMANDS) - {"data"} | {"data synth"} == set(commands())


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_the_model_file_is_model_in_every_command(command):
    parser = commands()[command]
    model = options(parser)["--model"]
    assert model.dest == "model" and model.option_strings == ["--model"]
    assert [a for a in parser._actions if a.dest == "model"] == [model]  # no second way to give it


@pytest.mark.parametrize("command,old,rest", ALIASES)
def test_the_old_names_of_the_model_file_still_work(command, old, rest):
    args = build_parser().parse_args([command, old, "m.pth", *rest])
    new = build_parser().parse_args([command, "--model", "m.pth", *rest])
    assert args.model == "m.pth" and vars(args) == vars(new)


@pytest.mark.parametrize("command", sorted(commands()))
def test_help_shows_one_name_per_thing(command):
    parser = commands()[command]
    text = parser.format_help()
    assert not OLD_MODEL_NAMES.search(text), f"{command} --help shows an old name of --model"
    found = options(parser)
    if "--out" in found:
        assert found["--out"].type is output_folder, f"{command} --out is not a folder"
    if "--json" in found:
        assert found["--json"].nargs == 0, f"{command} --json takes a value (it prints JSON)"


def test_the_speed_switches_are_the_same_in_predict_bench_and_check():
    parsers = commands()
    speed = {"--fast", "--fp16", "--cuda-graph", "--compile"}
    for command in ("predict", "bench", "check"):
        assert speed <= set(options(parsers[command])), command
    for command in set(parsers) - {"predict", "bench", "check"}:
        assert not speed & set(options(parsers[command])), command


def docs_sections() -> dict[str, str]:
    """docs/cli.md split at its '## `csrinfer COMMAND`' headings."""
    text = DOCS_CLI.read_text()
    parts = re.split(r"^## (.*)$", text, flags=re.M)
    return {m.group(1): body for head, body in zip(parts[1::2], parts[2::2])
            if (m := re.fullmatch(r"`csrinfer ([a-z ]+)`\s*", head))}


def test_docs_cli_lists_every_command_and_option():
    sections = docs_sections()
    assert set(sections) == set(commands())
    for command, parser in commands().items():
        named = set(re.findall(r"`(--[a-z0-9][a-z0-9-]*)", sections[command]))
        missing = set(options(parser)) - named
        assert not missing, f"docs/cli.md does not list {sorted(missing)} of csrinfer {command}"
        rows = re.findall(r"^\| (`--.*?) \|", sections[command], flags=re.M)  # the option column
        tabled = set(re.findall(r"`(--[a-z0-9][a-z0-9-]*)`", " ".join(rows)))
        unknown = tabled - set(options(parser))
        assert not unknown, f"docs/cli.md lists {sorted(unknown)} that csrinfer {command} does not take"


def test_docs_cli_names_the_documented_aliases():
    sections = docs_sections()
    assert "`--ckpt`" in sections["export"] and "`--engine`" in sections["bench"]
