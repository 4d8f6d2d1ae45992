"""The ``csrinfer`` command: a thin layer that parses arguments and calls library functions.

Each subcommand lives in its own module with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports happen inside ``run`` so ``csrinfer --help`` is instant.
A user's mistake (:class:`csrinfer.errors.CsrinferError`, or arguments argparse refuses) is
printed as one line, exit code 2; an OS error (disk full, no permission) as one line too, exit
code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

COMMANDS = {
    "train": "csrinfer.cli.train",
    "eval": "csrinfer.cli.eval",
    "export": "csrinfer.cli.export",
    "build": "csrinfer.cli.build",
    "predict": "csrinfer.cli.predict",
    "check": "csrinfer.cli.check",
    "bench": "csrinfer.cli.bench",
    "serve": "csrinfer.cli.serve",
    "info": "csrinfer.cli.info",
    "data": "csrinfer.cli.data",
    "demo": "csrinfer.cli.demo",
    "convert": "csrinfer.cli.convert",
}


class OneLineParser(argparse.ArgumentParser):
    """Refused arguments are one line, as every other mistake, not argparse's usage block."""

    def error(self, message: str):
        hint = f" ({self.prog} --help lists them)" if self._subparsers is not None else ""  # a missing command
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="csrinfer", description="Train, export, run and serve the CSR-D2S network.")
    from csrinfer import __version__

    parser.add_argument("--version", action="version", version=f"csrinfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from csrinfer.errors import CsrinferError, os_error_sentence

    args = build_parser().parse_args(argv)
    # formatwarning, not showwarning: recording warnings (pytest.warns, catch_warnings) still works
    formatted, warnings.formatwarning = warnings.formatwarning, _warning_line(args.command)
    try:
        return int(args._run(args) or 0)
    except CsrinferError as e:
        print(f"csrinfer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder without write permission: the user's to fix
        print(f"csrinfer {args.command}: error: {os_error_sentence(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"csrinfer {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatted


def _warning_line(command: str):
    """A warning as ``csrinfer COMMAND: warning: ...``, one line like the errors, without the
    file name and source line Python adds for a developer."""
    def format_line(message, category, filename, lineno, line=None):
        return f"csrinfer {command}: warning: {message}\n"
    return format_line
