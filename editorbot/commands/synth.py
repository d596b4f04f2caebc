"""`editorbot synth`: write synthetic jam sessions, their edits and exact truth."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth", help="write synthetic (raw, edit) pairs with exact truth",
        description="Generate band jam sessions (drums, bass, chords, lead through a General "
                    "MIDI soundfont) and edit them as a persona would. Writes OUT/input/"
                    "{name}_raw.wav, OUT/desired_output/{name}_edit.wav, OUT/unmastered/"
                    "{name}_edit.wav and OUT/truth/{name}.json.")
    p.add_argument("--out", required=True, help="folder to write the pairs into (a data dir)")
    p.add_argument("--pairs", type=int, default=10, help="how many pairs (default 10)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument("--minutes", type=float, default=5.0, help="length of each raw (default 5)")
    p.add_argument("--persona", default=None,
                   help="radio, trimmer or looper (default: cycle through the config's list)")
    p.add_argument("--mastering", default="mild", help="none, mild or heavy (default mild)")
    p.add_argument("--config", default=None, help="JSON settings (see configs/synth/default.json)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set playing.tempo_bpm=[90,110]")
    p.add_argument("--no-unmastered", action="store_true", help="skip OUT/unmastered/")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load
    from ..synth import SynthConfig, write_corpus

    config = load(SynthConfig, args.config, args.set)
    names = write_corpus(args.out, pairs=args.pairs, seed=args.seed, minutes=args.minutes,
                         persona=args.persona, mastering=args.mastering,
                         write_unmastered=not args.no_unmastered, config=config, jobs=args.jobs)
    for name in names:
        print(name)
    print(f"wrote {len(names)} pairs to {args.out} (input/, desired_output/, truth/"
          f"{'' if args.no_unmastered else ', unmastered/'})", file=sys.stderr)
    return 0
