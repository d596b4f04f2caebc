"""The beat and bar grid against generated sessions' truth: beats found, bar lines on a true
downbeat, for the rule-based editor's grid and the RL beat features' grid.

    nice .venv/bin/python benchmarks/bench_grid.py                      # seed 1000, 6 x 2 min
    nice .venv/bin/python benchmarks/bench_grid.py --seed 77 --minutes 3
    nice .venv/bin/python benchmarks/bench_grid.py --rl                 # also the RL beat features' grid

Sessions: editorbot.synth's plan_pair(seed, index, minutes) for index 0..pairs-1, rendered
and mixed to mono 22050 Hz as the editor hears them (seed 1000 is the demo's held-out corpus).
Only sections on a grid count (count-ins, riffs, verses; not free-time noodling):
- beats: true beats with a found beat within 30 ms / true beats;
- bar lines: found bar lines within 50 ms of a true downbeat / found bar lines
  (the rule-based editor's unit bounds; the RL grid's every 4th beat from its downbeat phase).
"""
from __future__ import annotations

import argparse
import inspect
import time

import numpy as np


def session(seed: int, index: int, minutes: float):
    import soxr

    from editorbot.synth import SynthConfig, plan_pair
    from editorbot.synth.compose import perform
    from editorbot.synth.instruments import render_mix

    config = SynthConfig()
    pp = plan_pair(config, seed=seed, index=index, minutes=minutes)
    perform_rng, noise_rng, _ = pp.streams
    raw = render_mix(perform(pp.plan, config, perform_rng), pp.plan.programs, config.sound,
                     config.raw_sr, pp.plan.duration_s, noise_rng)
    y = soxr.resample(np.asarray(raw, np.float32).reshape(len(raw), -1).mean(axis=1),
                      config.raw_sr, 22050).astype(np.float32)
    spans = [(s.start_s + 0.1, s.end_s - 0.1) for s in pp.plan.sections if s.n_bars > 0]
    return y, pp.plan.beats_s, pp.plan.downbeats_s, spans


def score(beats_s, lines_s, true_beats, true_downbeats, spans) -> tuple[int, int, int, int]:
    """(true beats found, true beats, bar lines on a downbeat, bar lines), in sections on a grid."""
    inside = lambda t: np.array([any(a < x < b for a, b in spans) for x in t], bool)  # noqa: E731
    tb = true_beats[inside(true_beats)]
    found = np.min(np.abs(tb[:, None] - np.asarray(beats_s)[None, :]), axis=1) < 0.03 if len(beats_s) else np.zeros(len(tb), bool)
    lines = np.asarray(lines_s)[inside(lines_s)]
    on = np.min(np.abs(lines[:, None] - true_downbeats[None, :]), axis=1) < 0.05
    return int(found.sum()), len(tb), int(on.sum()), len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--rl", action="store_true", help="also the RL beat features' grid")
    args = parser.parse_args()
    from editorbot import baseline
    from editorbot.features import DEFAULT_PARAMS

    # Before editorbot.grid, analyze took no feature params (its own hop 512 grid).
    takes_params = "params" in inspect.signature(baseline.analyze).parameters

    totals = {"rule": np.zeros(4, int), "rl": np.zeros(4, int)}
    print("| session | grid | tempo | beats found | bar lines on a downbeat | seconds |")
    print("|---|---|---|---|---|---|")
    for index in range(args.pairs):
        y, beats, downbeats, spans = session(args.seed, index, args.minutes)
        started = time.perf_counter()
        found = baseline.analyze(y, DEFAULT_PARAMS) if takes_params else baseline.analyze(y)
        seconds = time.perf_counter() - started
        s = score(found.beats_s, found.bounds_s[1:-1], beats, downbeats, spans)
        totals["rule"] += s
        print(f"| {args.seed}/{index} | rule-based | {found.tempo_bpm or 0:.1f} | {s[0]}/{s[1]} "
              f"| {s[2]}/{s[3]} | {seconds:.1f} |", flush=True)
        if args.rl:
            from editorbot.rl.beat_features import compute_beat_features

            started = time.perf_counter()
            bf = compute_beat_features(y, DEFAULT_PARAMS)
            seconds = time.perf_counter() - started
            beat_s = bf.bounds_s[1:-1]
            s = score(beat_s, bf.bounds_s[bf.downbeat_phase:-1:4], beats, downbeats, spans)
            totals["rl"] += s
            print(f"| {args.seed}/{index} | RL features | {bf.tempo_bpm:.1f} | {s[0]}/{s[1]} "
                  f"| {s[2]}/{s[3]} | {seconds:.1f} |", flush=True)
    for name, t in totals.items():
        if t[1]:
            print(f"\n{name}: beats found {t[0]}/{t[1]} = {100 * t[0] / t[1]:.1f}%, bar lines on a "
                  f"downbeat {t[2]}/{t[3]} = {100 * t[2] / max(t[3], 1):.1f}%")


if __name__ == "__main__":
    main()
