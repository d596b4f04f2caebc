"""`editorbot demo`: the pipeline that exists so far, on generated audio, end to end."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on generated audio and say what it did",
        description="Generate a few (raw, edit) pairs, cache their features and report.")
    p.add_argument("--out", default="demo_output", help="folder for everything (default demo_output)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    return run_demo(out=args.out, seed=args.seed)
