"""The `editorbot` command line: one subcommand per module in editorbot/commands/.

Each command module defines `add_parser(subparsers)` (which sets `func`) and keeps heavy
imports inside its run function, so that `editorbot --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import UserError
from .malloc import reuse_freed_memory

# Listed in the order `editorbot --help` shows them. Only commands that work are listed.
COMMANDS = [
    "demo",
    "features",
    "prepare",
    "align",
    "synth",
    "stems",
    "render",
    "edit",
    "review",
    "train",
    "bc",
    "evaluate",
]


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"editorbot: {record.levelname.lower()}: {record.getMessage()}"


def build_parser() -> argparse.ArgumentParser:
    """The whole parser (the command modules import nothing heavy until a command runs)."""
    parser = argparse.ArgumentParser(
        prog="editorbot",
        description="Learn how you edit raw recordings into tracks, and edit new ones the same way.",
    )
    parser.add_argument("--version", action="version", version=f"editorbot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"editorbot.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger = logging.getLogger("editorbot")
    before = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logger.propagate = False
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    reuse_freed_memory()
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"editorbot: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("editorbot: interrupted", file=sys.stderr)
        return 130
    finally:
        # Called in-process (tests, notebooks), leave logging as it was: the handler
        # holds this call's stderr, which may be closed afterwards.
        logger.handlers[:], level, logger.propagate = before[0], before[1], before[2]
        logger.setLevel(level)
