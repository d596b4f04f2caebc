"""`editorbot demo`: the whole pipeline on a synthetic corpus, end to end, in about 10 minutes."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on generated jams and say where everything went",
        description="Generate synthetic (raw, edit) pairs, align them, train a small pointer "
                    "model for a few minutes on the CPU, edit held-out recordings with it and "
                    "with the rule-based editor (audio, timelines, review pages), and print "
                    "the evaluation table. About 10 minutes on 2 CPU cores.")
    p.add_argument("--out", default="demo_output", help="folder for everything (default demo_output)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpora and training (default 0)")
    p.add_argument("--pairs", type=int, default=6, help="training pairs (default 6)")
    p.add_argument("--heldout", type=int, default=2, help="held-out pairs both editors edit (default 2)")
    p.add_argument("--minutes", type=float, default=2.0, help="length of each raw recording (default 2)")
    p.add_argument("--train-minutes", type=float, default=3.0,
                   help="wall-clock budget of the model training (default 3)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..errors import UserError

    for name in ("pairs", "heldout"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} {getattr(args, name)}: must be at least 1")
    if args.minutes <= 0 or args.train_minutes <= 0:
        raise UserError("--minutes and --train-minutes must be positive")
    return run_demo(out=args.out, seed=args.seed, pairs=args.pairs, heldout=args.heldout,
                    minutes=args.minutes, train_minutes=args.train_minutes, jobs=args.jobs)
