"""Alignment accuracy on the synthetic corpus, and speed and memory on long recordings.

    .venv/bin/python benchmarks/bench_align.py            # full: corpus, trimmer check, 15/30/60/120 min
    .venv/bin/python benchmarks/bench_align.py --quick    # short pairs, 15 min only
    .venv/bin/python benchmarks/bench_align.py --skip-speed | --skip-accuracy | --skip-trimmer

Targets:
- frames outside crossfades within +-1 frame of the truth: >= 99.5% mild, >= 99% heavy;
- cut points (pointer jumps) against the true joins, F1 within 50 ms: >= 0.98 mild, >= 0.95 heavy;
- an edit not cut from its raw: >= 95% of frames not in raw, low confidence, a warning;
- synthetic trimmer pairs (an editor who only cuts forward): no loops and no reorders in
  any pair's ops, and no pointer file that jumps back (by more than 0.5 s);
- a 60 min 44.1 kHz stereo raw with a 20 min edit: align_files wall time <= 0.8x the time
  decoding, resampling and librosa.feature.melspectrogram of both files take in the same
  run, and <= 1 GB peak RSS; time and memory shown for 15, 30, 60 and 120 minutes.
The corpus (editorbot.synth.write_corpus) and the long files are kept in benchmarks/out/.
Real music: bench_align_real.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, measure  # noqa: E402

SR = 44100
JOIN_WINDOW_S = 0.05


# ---------------------------------------------------------------- long test recordings

def long_jam(path: Path, minutes: float, seed: int) -> Path:
    """Write a music-like 44.1 kHz stereo jam of `minutes` in 30 s blocks: drums, bass and
    chord notes with harmonics on a drifting, jittered beat grid; nothing repeats exactly.
    Reused if present."""
    if path.exists() and abs(sf.info(str(path)).duration - minutes * 60) < 1:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_total = int(minutes * 60 * SR)
    block = 30 * SR
    tail = np.zeros((SR * 2, 2), np.float32)  # notes ringing past a block's end
    scale = 55 * 2 ** (np.array([0, 2, 3, 5, 7, 8, 10]) / 12)
    beat_s = 60 / rng.uniform(90, 130)
    t_next = 0.0
    root = 0
    tmp = path.with_name(path.stem + ".part.wav")
    with sf.SoundFile(str(tmp), "w", samplerate=SR, channels=2, subtype="PCM_16") as fh:
        for start in range(0, n_total, block):
            n = min(block, n_total - start)
            y = np.zeros((n + len(tail), 2), np.float32)
            y[:len(tail)] += tail
            while t_next < (start + n) / SR:
                i = int(round(t_next * SR)) - start
                _event(y, i, rng, scale, root)
                if rng.random() < 0.03:
                    root = int(rng.integers(0, 7))
                t_next += beat_s / 2 + rng.normal(0, 0.006)
                beat_s *= float(np.exp(rng.normal(0, 0.002)))
            y[:n] += rng.normal(0, 2e-3, (n, 2)).astype(np.float32)
            tail = y[n:n + 2 * SR].copy()
            fh.write(np.clip(y[:n] * 0.6, -1, 1))
    os.replace(tmp, path)
    return path


def _event(y: np.ndarray, i: int, rng: np.random.Generator, scale: np.ndarray, root: int) -> None:
    """Add one half-beat's drums and notes at sample i of y (n, 2)."""
    def add(sig: np.ndarray, pan: float) -> None:
        m = min(len(sig), len(y) - i)
        if m > 0:
            y[i:i + m, 0] += sig[:m] * (1 - pan)
            y[i:i + m, 1] += sig[:m] * (1 + pan)

    if rng.random() < 0.5:  # kick
        t = np.arange(int(0.15 * SR)) / SR
        add(0.5 * rng.uniform(0.6, 1) * np.sin(2 * np.pi * np.cumsum(50 + 90 * np.exp(-t * 30)) / SR)
            * np.exp(-t * 20), 0.0)
    if rng.random() < 0.7:  # hat / snare noise
        m = int(rng.uniform(0.03, 0.12) * SR)
        add(0.12 * rng.uniform(0.4, 1) * np.diff(rng.normal(0, 1, m + 1)) * np.exp(-np.arange(m) / (0.02 * SR)),
            float(rng.uniform(-0.5, 0.5)))
    for _ in range(int(rng.integers(0, 3))):  # notes
        f0 = scale[(root + rng.integers(0, 7)) % 7] * 2 ** rng.integers(0, 4) * (1 + rng.normal(0, 0.002))
        t = np.arange(int(rng.uniform(0.1, 0.9) * SR)) / SR
        h = np.arange(1, 7)[:, None]
        tone = (rng.uniform(0.3, 1, (6, 1)) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3, (6, 1)))).sum(0)
        add(0.12 * rng.uniform(0.5, 1) * tone * np.minimum(1, t / 0.005) * np.exp(-t * rng.uniform(2, 8)),
            float(rng.uniform(-0.7, 0.7)))


def long_edit(raw: Path, path: Path, keep: float, seed: int) -> tuple[Path, dict]:
    """Cut an edit from `raw` (forward cuts, loops, reorders, 5-50 ms crossfades, gains),
    master it (EQ, compression, limiter) and write it; reused if present. Returns the
    path and the truth (Edit.to_json())."""
    import pedalboard as pb

    from editorbot.audio import read
    from editorbot.edits import Edit, Segment

    truth_path = path.with_suffix(".json")
    if path.exists() and truth_path.exists():
        return path, json.loads(truth_path.read_text())
    rng = np.random.default_rng(seed)
    raw_s = sf.info(str(raw)).duration
    target = keep * raw_s
    segs, total, pos = [], 0.0, 2.0
    while total < target:
        dur = float(rng.uniform(5, 40))
        r = rng.random()
        if r < 0.15 and segs:  # loop: repeat the previous segment
            start = segs[-1].raw_start_s
            dur = segs[-1].duration_s
        elif r < 0.3:  # reorder: anywhere
            start = float(rng.uniform(1, raw_s - dur - 1))
        else:  # forward cut
            start = pos + float(rng.uniform(1, 60))
            if start + dur > raw_s - 1:
                start = float(rng.uniform(1, raw_s - dur - 1))
        start = round(start * SR) / SR
        dur = round(min(dur, target - total + 0.5) * SR) / SR
        xf = 0.0 if not segs else round(rng.uniform(0.005, 0.05) * SR / 2) * 2 / SR
        segs.append(Segment(start, dur, gain_db=float(rng.choice([0, 0, 0, -3, 2])), crossfade_s=xf))
        total += dur
        pos = start + dur
    edit = Edit(segs, str(raw), raw_s)
    starts = edit.edit_starts_s()
    n = int(round(edit.duration_s * SR))
    out = np.zeros((n, 2), np.float32)
    for k, seg in enumerate(segs):
        h_in = int(round(seg.crossfade_s * SR / 2))
        h_out = int(round(segs[k + 1].crossfade_s * SR / 2)) if k + 1 < len(segs) else 0
        a, m = int(round(seg.raw_start_s * SR)), int(round(seg.duration_s * SR))
        piece, _ = read(raw, start=a - h_in, frames=h_in + m + h_out)
        env = np.full(len(piece), 10 ** (seg.gain_db / 20), np.float32)
        if h_in:
            env[:2 * h_in] *= np.sin(np.pi / 2 * (np.arange(2 * h_in) + 0.5) / (2 * h_in))
        if h_out:
            env[len(env) - 2 * h_out:] *= np.cos(np.pi / 2 * (np.arange(2 * h_out) + 0.5) / (2 * h_out))
        e0 = int(round(starts[k] * SR)) - h_in
        out[e0:e0 + len(piece)] += piece * env[:, None]
    board = pb.Pedalboard([pb.HighpassFilter(30), pb.PeakFilter(float(rng.uniform(800, 4000)), 2.0, 1.0),
                           pb.Compressor(-18, 2, 10, 120), pb.Gain(4), pb.Limiter(-1.0, 100)])
    mastered = board(out.T.copy(), SR).T
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(mastered, -1, 1), SR, subtype="PCM_16")
    truth = edit.to_json()
    truth_path.write_text(json.dumps(truth))
    return path, truth


# ---------------------------------------------------------------- scoring against truth

def score(truth, result, params) -> dict:
    """Frames outside crossfades within +-1 frame of the truth, and join F1 within 50 ms.

    Truth pointers come from editorbot.edits.segments_to_pointers(truth); a frame that is
    not in the raw counts as right when both say so. A join is a segment start whose raw
    audio does not continue the previous segment's.
    """
    from editorbot.edits import segments_to_pointers

    n = len(result.pointers)
    want = segments_to_pointers(truth, params, n)
    outside = outside_crossfades(truth, n, params.frames_per_s)
    got = result.pointers
    right = np.where(want >= 0, np.abs(got - want) <= 1, got < 0)
    true_joins, found_joins = joins(truth), joins(result.edit)
    hits = _matched(true_joins, found_joins, JOIN_WINDOW_S)
    precision = hits / len(found_joins) if len(found_joins) else float(not len(true_joins))
    recall = hits / len(true_joins) if len(true_joins) else float(not len(found_joins))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"frames": int(outside.sum()), "right": int(right[outside].sum()),
            "accuracy": float(right[outside].mean()), "joins": len(true_joins),
            "found": len(found_joins), "hits": hits, "f1": f1}


def outside_crossfades(truth, n: int, fps: float) -> np.ndarray:
    """Edit frames that no truth crossfade touches (the frames score counts)."""
    keep = np.ones(n, bool)
    for seg, start in zip(truth.segments, truth.edit_starts_s()):
        if seg.crossfade_s > 0:
            a = int(np.floor((start - seg.crossfade_s / 2) * fps))
            b = int(np.ceil((start + seg.crossfade_s / 2) * fps))
            keep[max(a, 0):b + 1] = False
    return keep


def joins(edit) -> np.ndarray:
    """Edit times (s) where the raw audio jumps (or enters or leaves "not in raw")."""
    starts = edit.edit_starts_s()
    out = []
    for k in range(1, len(edit.segments)):
        a, b = edit.segments[k - 1], edit.segments[k]
        if a.raw_start_s is None or b.raw_start_s is None or abs(b.raw_start_s - a.raw_end_s) > 0.005:
            if not (a.raw_start_s is None and b.raw_start_s is None):
                out.append(starts[k])
    return np.array(out)


def _matched(ref: np.ndarray, est: np.ndarray, window: float) -> int:
    """One-to-one matches within `window` (greedy by distance)."""
    if not len(ref) or not len(est):
        return 0
    d = np.abs(ref[:, None] - est[None, :])
    pairs = sorted(zip(*np.nonzero(d <= window)), key=lambda ij: d[ij])
    used_r, used_e, hits = set(), set(), 0
    for i, j in pairs:
        if i not in used_r and j not in used_e:
            used_r.add(i)
            used_e.add(j)
            hits += 1
    return hits


# ---------------------------------------------------------------- accuracy on the corpus

def corpus(mastering: str, pairs_per_persona: int, minutes: float, seed: int) -> Path:
    """The synthetic corpus for one mastering, written once into benchmarks/out/."""
    from editorbot.synth import write_corpus

    folder = OUT / f"align_corpus_{mastering}_{pairs_per_persona}x{minutes:g}min_s{seed}"
    if not (folder / "done").exists():
        for i, persona in enumerate(("radio", "trimmer", "looper")):
            write_corpus(folder / persona, pairs=pairs_per_persona, seed=seed + i, minutes=minutes,
                         persona=persona, mastering=mastering, write_unmastered=False, progress=False)
        (folder / "done").write_text("")
    return folder


def accuracy(args) -> bool:
    from editorbot.align import align_files
    from editorbot.edits import Edit
    from editorbot.features import DEFAULT_PARAMS

    targets = {"mild": (0.995, 0.98), "heavy": (0.99, 0.95)}
    ok = True
    print("== accuracy on editorbot.synth corpora (frames outside crossfades within +-1 "
          "frame; joins F1 within 50 ms)")
    for mastering, (acc_target, f1_target) in targets.items():
        folder = corpus(mastering, args.pairs, args.minutes, args.seed)
        total = {"frames": 0, "right": 0, "joins": 0, "found": 0, "hits": 0}
        for truth_path in sorted(folder.glob("*/truth/*.json")):
            root = truth_path.parent.parent
            name = truth_path.stem
            truth_json = json.loads(truth_path.read_text())
            truth = Edit.from_json(truth_json)
            result = align_files(root / "input" / f"{name}_raw.wav",
                                 root / "desired_output" / f"{name}_edit.wav")
            s = score(truth, result, DEFAULT_PARAMS)
            for k in total:
                total[k] += s[k]
            print(f"  {mastering:5s} {name:24s} accuracy {s['accuracy']:.4f}  joins {s['joins']:3d} "
                  f"found {s['found']:3d} F1 {s['f1']:.3f}  confidence "
                  f"{result.info['confidence']['mean']:.2f}  ({result.info['edit']['sr']} Hz edit)")
        acc = total["right"] / max(total["frames"], 1)
        p = total["hits"] / max(total["found"], 1)
        r = total["hits"] / max(total["joins"], 1)
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        good = acc >= acc_target and f1 >= f1_target
        ok &= good
        print(f"  {mastering}: accuracy {acc:.4f} (target >= {acc_target}), join F1 {f1:.3f} "
              f"(target >= {f1_target}) over {total['joins']} joins: {'PASS' if good else 'FAIL'}")
    return ok


def not_from_raw(args) -> bool:
    """An edit aligned against another session's raw."""
    from editorbot.align import align_files

    folder = corpus("mild", args.pairs, args.minutes, args.seed)
    edits = sorted(folder.glob("*/desired_output/*_edit.wav"))
    raws = sorted(folder.glob("*/input/*_raw.wav"))
    logging.getLogger("editorbot").setLevel(logging.ERROR)
    result = align_files(raws[0], edits[-1])
    logging.getLogger("editorbot").setLevel(logging.INFO)
    nir = 1 - result.info["aligned_fraction"]
    conf = result.info["confidence"]["mean"]
    good = nir >= 0.95 and conf < 0.2 and bool(result.info["warnings"])
    print(f"== edit not cut from its raw ({edits[-1].name} against {raws[0].name}): "
          f"{100 * nir:.1f}% not in raw (target >= 95), confidence {conf:.2f}, "
          f"warning: {result.info['warnings'][0] if result.info['warnings'] else 'none'}: "
          f"{'PASS' if good else 'FAIL'}")
    return good


# ---------------------------------------------------------------- speed and memory

BASELINE = """
import sys, time, librosa
from editorbot.audio import load_analysis
t = time.perf_counter()
for path in sys.argv[1:3]:
    y = load_analysis(path)
    S = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=256, n_mels=128)
    del y, S
result = {"seconds": time.perf_counter() - t}
"""

OURS = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[4])
from bench_align import score
from editorbot.align import align_files
from editorbot.edits import Edit
from editorbot.features import DEFAULT_PARAMS
t = time.perf_counter()
r = align_files(sys.argv[1], sys.argv[2])
seconds = time.perf_counter() - t
s = score(Edit.from_json(json.load(open(sys.argv[3]))), r, DEFAULT_PARAMS)
result = {"seconds": seconds, "stages": r.info["timing_s"], "accuracy": s["accuracy"], "f1": s["f1"],
          "joins": s["joins"]}
"""


BACK_FRAMES = 43  # a pointer moving back by more than 0.5 s is a jump back


def trimmer(args) -> bool:
    """A corpus of the trimmer persona alone: what alignment reports of an editor who
    only cuts forward must never be a loop, a reorder or a jump back."""
    from editorbot.align import align_files
    from editorbot.edits import Edit
    from editorbot.features import DEFAULT_PARAMS
    from editorbot.synth import write_corpus

    folder = OUT / f"align_trimmer_{args.trimmer_pairs}x{args.minutes:g}min_s{args.seed}"
    if not (folder / "done").exists():
        write_corpus(folder, pairs=args.trimmer_pairs, seed=args.seed + 100, minutes=args.minutes,
                     persona="trimmer", mastering="mild", write_unmastered=False, progress=False)
        (folder / "done").write_text("")
    print(f"== trimmer persona ({args.trimmer_pairs} pairs of {args.minutes:g} min, mild mastering): "
          "loops, reorders and backward jumps in what alignment reports")
    loops = reorders = back = right = frames = segs = true_segs = 0
    for truth_path in sorted(folder.glob("truth/*.json")):
        name = truth_path.stem
        truth = Edit.from_json(json.loads(truth_path.read_text()))
        result = align_files(folder / "input" / f"{name}_raw.wav", folder / "desired_output" / f"{name}_edit.wav")
        p = result.pointers[result.pointers >= 0]
        jumps_back = bool((np.diff(p) < -BACK_FRAMES).any())
        s = score(truth, result, DEFAULT_PARAMS)
        loops += result.info["loops"]
        reorders += result.info["reorders"]
        back += jumps_back
        right, frames = right + s["right"], frames + s["frames"]
        segs, true_segs = segs + len(result.edit.segments), true_segs + len(truth.segments)
        print(f"  {name:24s} segments {len(result.edit.segments):2d}/{len(truth.segments):2d}  loops "
              f"{result.info['loops']}  reorders {result.info['reorders']}  jumps back "
              f"{'yes' if jumps_back else 'no '}  accuracy {s['accuracy']:.4f}  F1 {s['f1']:.3f}")
    good = loops == 0 and reorders == 0 and back == 0
    print(f"  trimmer: {loops} loops, {reorders} reorders, {back} pairs jumping back (target 0, 0, 0); "
          f"segments {segs} found / {true_segs} true; accuracy {right / max(frames, 1):.4f}: "
          f"{'PASS' if good else 'FAIL'}")
    return good


def speed(args) -> bool:
    sizes = [15.0] if args.quick else [15.0, 30.0, 60.0, 120.0]
    print("== speed: align_files (decode, mel, align, refine) against decode + resample + "
          "librosa.feature.melspectrogram of both files, same run; raw 44.1 kHz stereo, "
          "edit a third of it (mastered)")
    ok = True
    for minutes in sizes:
        raw = long_jam(OUT / f"align_jam_{minutes:g}min.wav", minutes, seed=int(minutes))
        edit, _ = long_edit(raw, OUT / f"align_jam_{minutes:g}min_edit.wav", 1 / 3, seed=int(minutes))
        truth = edit.with_suffix(".json")
        base, ours = [], []
        for _ in range(args.repeats):
            base.append(measure(BASELINE, str(raw), str(edit)))
            ours.append(measure(OURS, str(raw), str(edit), str(truth), str(Path(__file__).parent)))
        b = min(base, key=lambda r: r["seconds"])
        o = min(ours, key=lambda r: r["seconds"])
        ratio = o["seconds"] / b["seconds"]
        rss = max(r["peak_rss_mb"] for r in ours)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in o["stages"].items())
        print(f"  {minutes:4g} min raw + {minutes / 3:4.1f} min edit: align_files {o['seconds']:6.1f} s "
              f"({stages}); baseline {b['seconds']:6.1f} s; ratio {ratio:.2f}; peak RSS "
              f"{rss:5.0f} MB (baseline {max(r['peak_rss_mb'] for r in base):5.0f} MB); "
              f"accuracy {o['accuracy']:.4f}, join F1 {o['f1']:.3f} over {o['joins']} joins")
        if minutes == 60.0:
            good = ratio <= 0.8 and rss <= 1024
            ok &= good
            print(f"  60 min: ratio {ratio:.2f} (target <= 0.8), peak RSS {rss:.0f} MB "
                  f"(target <= 1024): {'PASS' if good else 'FAIL'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 pair per persona of 3 min; speed at 15 min only")
    parser.add_argument("--pairs", type=int, default=2, help="pairs per persona (default 2)")
    parser.add_argument("--minutes", type=float, default=8.0, help="raw length of corpus pairs")
    parser.add_argument("--seed", type=int, default=41)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per size (best counts)")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-trimmer", action="store_true")
    parser.add_argument("--trimmer-pairs", type=int, default=24,
                        help="pairs of the trimmer-only corpus (default 24)")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.minutes, args.repeats, args.trimmer_pairs = 1, 3.0, 1, 4
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    ok = True
    if not args.skip_accuracy:
        ok &= accuracy(args)
        ok &= not_from_raw(args)
    if not args.skip_trimmer:
        ok &= trimmer(args)
    if not args.skip_speed:
        ok &= speed(args)
    print("all targets met" if ok else "some targets missed")


if __name__ == "__main__":
    main()
