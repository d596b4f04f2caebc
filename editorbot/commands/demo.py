"""`editorbot demo`: the whole pipeline on generated jams, end to end, in about 5 minutes."""
from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..demo import DEFAULTS, MODEL_CONFIG, estimate  # light: the pipeline comes when it runs

    epochs = json.loads(MODEL_CONFIG.read_text())["train"]["epochs"]

    seconds, mb = estimate(**{k: DEFAULTS[k] for k in ("pairs", "heldout", "minutes")})
    p = sub.add_parser(
        "demo", help=f"learn a jam trimmer's style from generated jams and edit new ones "
                     f"(about {seconds / 60:.0f} min)",
        description=f"Generate jam sessions of {DEFAULTS['minutes']:g} minutes and the edits a jam "
                    "trimmer made of them (every song kept whole; tuning, noodling, silences, "
                    "count-ins and false starts cut), align them, train the supervised editor on "
                    f"them ({epochs} passes), edit held-out jams with it and with the rule-based "
                    "editor (audio, timelines, review pages), and print the evaluation table. About "
                    f"{seconds / 60:.0f} minutes on 2 CPU cores and {mb:.0f} MB of disk (FLAC at "
                    "22.05 kHz) with the defaults; it says its estimate before it starts.")
    p.add_argument("--out", default="demo_output", help="folder for everything (default demo_output)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="seed of the corpora and training (default %(default)s)")
    p.add_argument("--pairs", type=int, default=DEFAULTS["pairs"],
                   help="training pairs (default %(default)s)")
    p.add_argument("--heldout", type=int, default=DEFAULTS["heldout"],
                   help="held-out pairs both editors edit (default %(default)s)")
    p.add_argument("--minutes", type=float, default=DEFAULTS["minutes"],
                   help="length of each raw recording (default %(default)g)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"passes of the training over the jams (default {epochs}, from "
                        "configs/supervised/demo.json)")
    p.add_argument("--jobs", type=int, default=DEFAULTS["jobs"],
                   help="worker processes (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo
    from ..errors import UserError

    for name in ("pairs", "heldout", "jobs", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} {value}: must be at least 1")
    if not args.minutes > 0:
        raise UserError(f"--minutes {args.minutes}: must be positive")
    return run_demo(out=args.out, seed=args.seed, pairs=args.pairs, heldout=args.heldout,
                    minutes=args.minutes, epochs=args.epochs, jobs=args.jobs)
