"""The rule-based editor as a musician hears it: how often any 1-second stretch of raw plays,
how far the edit's length is from the target, whether its cuts sit on bar lines, how it ends.

    nice .venv/bin/python benchmarks/bench_rule_editor.py                 # demo jams + real music
    nice .venv/bin/python benchmarks/bench_rule_editor.py --allow-loops   # the same, loops allowed
    nice .venv/bin/python benchmarks/bench_rule_editor.py --only demo --minutes 8 --json out.json

Recordings:
- demo: the demo's held-out jams (editorbot.synth.write_corpus with the demo's seed 1000,
  its pair count and minutes, read from editorbot.demo.run_demo's defaults; --minutes
  makes them longer or shorter), each asked
  for its human edit's length (as the demo asks) and for 3:30. Their truth gives the
  downbeats, so a cut (a segment's raw start or end at a seam) counts as on a bar line
  within 50 ms of a true downbeat.
- real: Debian music from realmusic.ALLOWED only (fetched into ~/.cache/editorbot-bench):
  the quick trimmer jam 0 of seed 0 (three real takes with noodling, silence and false
  starts between them; bench_align_real.py --quick builds the same one), asked for its
  human edit's length and 3:30, and the longest full mix of fretsonfire-songs-sectoid, asked for
  3:30 and 8:00 (longer than the song). No beat truth: bar lines are not scored there.

Columns: max plays = the most times any 1-second stretch of raw is played (at most 2 unless
loops are allowed); twice = seconds of raw played twice; error = edit length - target;
off bar = cuts more than 50 ms from a true downbeat / all cuts; ending = 'fade' or 'stops'
(the edit ends where the playing stops); said = the editor's warning line, if any.
"""
from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import realmusic as rm  # noqa: E402

RADIO_S = 210.0
LONG_S = 480.0
DOWNBEAT_TOL_S = 0.05


def max_plays(edit, raw_s: float, window_s: float = 1.0, step_s: float = 0.01) -> tuple[int, float]:
    """The most times any `window_s` stretch of raw is played whole, and the seconds of raw
    played at least twice (10 ms grid; crossfade overlaps at seams are shorter than the window)."""
    counts = np.zeros(int(np.ceil(raw_s / step_s)) + 1, np.int32)
    for seg in edit.segments:
        if seg.raw_start_s is not None:
            counts[int(round(seg.raw_start_s / step_s)):int(round(seg.raw_end_s / step_s))] += 1
    win = int(round(window_s / step_s))
    worst = int(np.lib.stride_tricks.sliding_window_view(counts, win).min(axis=1).max())
    return worst, float(np.sum(counts >= 2) * step_s)


def cuts_off_bar(edit, downbeats_s: np.ndarray) -> tuple[int, int]:
    """Cuts (raw ends and starts at each seam, and the first start) more than 50 ms from a
    true downbeat, and all cuts. The last end is the edit's ending, not a cut."""
    points = [edit.segments[0].raw_start_s]
    for prev, seg in zip(edit.segments[:-1], edit.segments[1:]):
        points += [prev.raw_end_s, seg.raw_start_s]
    points = np.array([p for p in points if p is not None and 0.05 < p])
    if not len(points):
        return 0, 0
    dist = np.min(np.abs(points[:, None] - np.asarray(downbeats_s)[None, :]), axis=1)
    return int(np.sum(dist > DOWNBEAT_TOL_S)), len(points)


class Said(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def run_case(raw: Path, target_s: float, *, allow_loops: bool, downbeats_s=None) -> dict:
    from editorbot import baseline
    from editorbot.audio import probe
    from editorbot.errors import log

    raw_s = probe(raw).duration_s
    kwargs = {"target_duration_s": target_s}
    if allow_loops:
        kwargs["allow_loops"] = True
    elif "allow_loops" in inspect.signature(baseline.propose_edit).parameters:
        kwargs["allow_loops"] = False
    said = Said()
    log.addHandler(said)
    started = time.perf_counter()
    try:
        edit = baseline.propose_edit(raw, **kwargs)
    finally:
        log.removeHandler(said)
    seconds = time.perf_counter() - started
    plays, twice_s = max_plays(edit, raw_s)
    last = edit.segments[-1]
    row = {"raw": raw.name, "raw_s": raw_s, "target_s": target_s, "edit_s": edit.duration_s,
           "error_s": edit.duration_s - target_s, "max_plays": plays, "twice_s": twice_s,
           "segments": len(edit.segments),
           "ending": f"fade {last.fade_out_s:.1f} s" if last.fade_out_s > 0 else "stops",
           "said": " | ".join(said.lines), "seconds": seconds,
           "edit": [[s.raw_start_s, s.duration_s, s.fade_out_s] for s in edit.segments]}
    if downbeats_s is not None:
        row["off_bar"], row["cuts"] = cuts_off_bar(edit, downbeats_s)
    return row


def demo_cases(out: Path, minutes: float | None) -> list[tuple[Path, float, np.ndarray | None, str]]:
    from editorbot.audio import probe
    from editorbot.demo import run_demo
    from editorbot.synth import write_corpus

    defaults = {k: v.default for k, v in inspect.signature(run_demo).parameters.items()}
    minutes = minutes or defaults["minutes"]
    names = write_corpus(out / f"{minutes:g}min", pairs=defaults["heldout"],
                         seed=defaults["seed"] + 1000, minutes=minutes, write_unmastered=False,
                         progress=False)
    out = out / f"{minutes:g}min"
    cases = []
    for name in names:
        raw = next((out / "input").glob(f"{name}_raw.*"))
        truth = json.loads((out / "truth" / f"{name}.json").read_text())
        human_s = probe(next((out / "desired_output").glob(f"{name}_edit.*"))).duration_s
        for target_s, why in ((human_s, "human's length"), (RADIO_S, "3:30")):
            cases.append((raw, target_s, np.array(truth["downbeats_s"]), f"demo {name}, {why}"))
    return cases


def real_cases(cache: Path) -> list[tuple[Path, float, None, str]]:
    unpacked = rm.fetch(rm.ALLOWED, cache, log=lambda m: print(m, flush=True))
    tracks = rm.find_tracks(unpacked)
    folder = cache / "pairs" / "seed0_quick" / "trimmer_00"
    want = {"gen_version": rm.GEN_VERSION, "seed": 0, "index": 0, "quick": True,
            "package_debs": rm.package_versions(unpacked)}
    if not rm.pair_ready(folder, want, ("raw.flac", "edit.wav", "truth.json")):
        print("   building the quick trimmer jam 0 ...", flush=True)
        rm.clear(folder)
        meta = rm.build_trimmer(tracks, 0, 0, rm.QUICK, folder)
        meta.update(want)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    meta = json.loads((folder / "meta.json").read_text())
    song = max((t for t in tracks if t.package == "fretsonfire-songs-sectoid"),
               key=lambda t: t.duration_s)
    return [(folder / "raw.flac", meta["edit_s"], None, "real trimmer jam 0, human's length"),
            (folder / "raw.flac", RADIO_S, None, "real trimmer jam 0, 3:30"),
            (song.path, RADIO_S, None, f"real song {song.name}, 3:30"),
            (song.path, LONG_S, None, f"real song {song.name}, 8:00")]


def clock(s: float) -> str:
    return f"{int(s // 60)}:{s % 60:04.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allow-loops", action="store_true", help="let the editor loop passages")
    parser.add_argument("--only", choices=["demo", "real"], help="one kind of recording only")
    parser.add_argument("--minutes", type=float, help="length of the demo jams (default: the demo's)")
    parser.add_argument("--cache", type=Path, default=rm.DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "rule_editor",
                        help="where the demo jams are written (reused when present)")
    parser.add_argument("--json", type=Path, help="write every row and segment list here")
    args = parser.parse_args()
    logging.getLogger("editorbot").setLevel(logging.WARNING)

    cases = []
    if args.only in (None, "demo"):
        cases += demo_cases(args.out / "demo", args.minutes)
    if args.only in (None, "real"):
        cases += real_cases(args.cache)
    rows = []
    print("| recording, target | raw | target | edit | error | max plays | twice | off bar "
          "| segments | ending | said |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for raw, target_s, downbeats, label in cases:
        r = run_case(raw, target_s, allow_loops=args.allow_loops, downbeats_s=downbeats)
        r["case"] = label
        rows.append(r)
        off = f"{r['off_bar']}/{r['cuts']}" if "cuts" in r else "-"
        print(f"| {label} | {clock(r['raw_s'])} | {clock(target_s)} | {clock(r['edit_s'])} "
              f"| {r['error_s']:+.1f} s ({100 * r['error_s'] / target_s:+.1f}%) | {r['max_plays']} "
              f"| {r['twice_s']:.0f} s | {off} | {r['segments']} | {r['ending']} "
              f"| {r['said'].split(': ', 1)[-1] or '-'} |", flush=True)
    worst = max(r["max_plays"] for r in rows)
    print(f"\nmost plays of any 1 s of raw: {worst}"
          f"{'' if args.allow_loops or worst <= 2 else '  (MORE THAN 2: the rule is broken)'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
