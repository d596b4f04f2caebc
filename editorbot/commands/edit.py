"""`editorbot edit`: edit a raw recording with the rule-based editor or a trained model.

Parses the arguments and prints where each output went; editorbot.edit_files does the work
(segments, audio, timelines, decision plot, review page).
"""
from __future__ import annotations

import argparse
import re
import sys

from ..errors import UserError

_CLOCK = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")
_UNITS = re.compile(r"^(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?$")


def parse_duration(text: str) -> float:
    """Seconds in '3:30', '1:02:03', '210', '210.5', '3m30s', '90s', '2m' or '1h5m'."""
    t = text.strip().lower().replace(" ", "")
    m = _CLOCK.match(t)
    if m:
        hours, minutes, seconds = m.groups()
        if float(seconds) >= 60 or (hours is not None and int(minutes) >= 60):
            raise UserError(f"--target-duration {text}: minutes and seconds must be below 60")
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    try:
        return float(t)
    except ValueError:
        pass
    m = _UNITS.match(t)
    if t and m and any(m.groups()):
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        return h * 3600 + mi * 60 + s
    raise UserError(f"--target-duration {text}: not a duration; write 3:30, 210 or 3m30s")


def _duration_arg(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except UserError as err:
        raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be longer than 0 s")
    return seconds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit", help="edit a raw recording into a track (no training needed)",
        description="Edit INPUT into OUTPUT by copying raw audio: the rule-based structure "
                    "editor by default, or a trained model with --checkpoint. Writes the audio, "
                    "the segment list, timelines (.otio, .edl, .fcp.xml), Audacity labels and a "
                    "review page (OUTPUT_review.html) next to OUTPUT.")
    p.add_argument("input", metavar="INPUT", help="the raw recording (wav, flac, ogg, mp3)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT.wav",
                   help="the edit to write (.wav, .flac or .ogg)")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="a trained model (models/<run>/best.pt); default: the rule-based editor")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--target-duration", type=_duration_arg, metavar="DURATION",
                        help="length of the edit: 3:30, 210 or 3m30s")
    length.add_argument("--keep", type=float, metavar="FRACTION",
                        help="fraction of the raw to keep, e.g. 0.3 (default: the median of "
                             "your pairs in ./training_data, else 0.3)")
    p.add_argument("--allow-loops", action="store_true",
                   help="let the rule-based editor loop a passage as often as the length needs "
                        "(default: no stretch of the raw plays more than twice; when the raw "
                        "holds too little music the edit is shorter and says why)")
    p.add_argument("--seam-search-ms", type=float, default=20.0,
                   help="move each cut within +- this many ms to where it joins best (default 20)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="a cache where `editorbot stems` wrote this raw's stems, for models "
                        "trained with stems (default: separate them now)")
    p.add_argument("--allow-clipping", action="store_true",
                   help="write at the level the model's gains ask for and clip samples past full "
                        "scale (default: lower the whole edit by one gain so that nothing clips)")
    p.add_argument("--no-review", action="store_true", help="do not write the review page")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT and the files next to it when they exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..edit_files import edit_to_files

    done = edit_to_files(args.input, args.output, checkpoint=args.checkpoint,
                         target_duration_s=args.target_duration, keep=args.keep,
                         allow_loops=args.allow_loops, seam_search_ms=args.seam_search_ms,
                         review=not args.no_review, cache_dir=args.cache_dir,
                         allow_clipping=args.allow_clipping,
                         overwrite=args.overwrite)
    for line in done["lines"]:
        print(line)
    sys.stdout.flush()
    return 0
