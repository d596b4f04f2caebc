"""Alignment on real music (Debian packages) with exact truth: trimmer jams with false
starts, the same edits as 48 kHz MP3, and loop-based material whose bars repeat sample for
sample.

    .venv/bin/python benchmarks/bench_align_real.py                  # 8 pairs of each kind
    .venv/bin/python benchmarks/bench_align_real.py --quick          # 2 short pairs of each
    .venv/bin/python benchmarks/bench_align_real.py --kinds loops --pairs 4 --json out.json
    .venv/bin/python benchmarks/bench_align_real.py --commit HEAD   # the committed aligner only

Music: fretsonfire-songs-sectoid (full mixes only, song.ogg), wesnoth-1.16-music and
asc-music, fetched with `apt-get download` and unpacked with `dpkg-deb -x` into --cache
(default ~/.cache/editorbot-bench/debian, outside git), where the pairs are written too
and reused by later runs with the same settings. Only those packages are used
(realmusic.ALLOWED): other music is kept for evaluation, and the script refuses it.

Kinds (benchmarks/realmusic.py builds them, deterministic from --seed):
- trimmer: a 6-15 min 44.1 kHz stereo raw of 3-4 takes (real tracks or 1.5-4 min excerpts),
  each optionally after quiet noodling (another track 15-25 dB down, or low noise) and
  silence, and with probability 0.6 after a false start (the take's first 3-12 s replayed
  sample for sample, a 0.3-1 s fade, a gap). The edit keeps each take whole, in order
  (hard cuts or 5-50 ms equal-power crossfades, sometimes a fade at the end), mildly
  mastered. Truth: one segment per take.
- mp3: the same edits resampled to 48 kHz (soxr) and written as MP3. The codec delay is
  measured at build time against the audio that was encoded and the truth shifted by it
  (a leading not-in-raw segment, as tests/test_align.py's codec-delay test does).
- loops: a 3-6 min raw of 4-6 one-bar clips of a real track (bar length 1.8-3 s, never a
  multiple of 256 samples), sections of one clip or a two-bar phrase repeated 4-16 times,
  clips recurring in several sections; an edit of about 10 forward cuts between sections
  at bar ends, each one necessary (the greedy fewest-segment cover of the bar sequence,
  from either end, gives exactly the truth's joins). Raw starts inside runs of identical
  bars are ambiguous, so frames count as right on any identical copy.

Scores per pair: frames outside crossfades within +-1 frame of the truth (bench_align.score;
for loops also the copy-aware figure), segments found vs truth, joins found vs true and
join F1 within 50 ms (bench_align.score/joins/_matched), loops and reorders in result.info,
jumps_back (the pointers ever step back by more than 0.5 s: np.diff(p[p >= 0]) < -43), and
for false-start pairs the found segments that read from a false start.

Targets (from the issue):
- trimmer: >= 99.5% frames within one frame (pooled), zero loops, zero reorders,
  jumps_back false for every pair, segments == truth for every pair;
- mp3: >= 99.5% frames within one frame (pooled);
- loops: segments == truth for every pair, join F1 within 50 ms >= 0.98 (pooled).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import realmusic as rm  # noqa: E402
from bench_align import _matched, joins, outside_crossfades, score  # noqa: E402

KINDS = ("trimmer", "mp3", "loops")
ACC_TARGET = 0.995
F1_TARGET = 0.98
BACK_FRAMES = 43  # 0.5 s of analysis frames


# ---------------------------------------------------------------- building

def pair_folders(args) -> Path:
    return args.cache / "pairs" / f"seed{args.seed}{'_quick' if args.quick else ''}"


def build_all(args, kinds: list[str]) -> dict[str, list[tuple[Path, dict]]]:
    """Fetch the packages, then build (or reuse) every pair the kinds need."""
    print(f"== music: {', '.join(args.packages)} (cache {args.cache})", flush=True)
    unpacked = rm.fetch(args.packages, args.cache, log=lambda m: print(m, flush=True))
    tracks = rm.find_tracks(unpacked)
    versions = rm.package_versions(unpacked)
    by_pkg = {p: sum(t.package == p for t in tracks) for p in args.packages}
    print("   full-mix tracks: " + ", ".join(f"{p} {n}" for p, n in by_pkg.items()), flush=True)
    root = pair_folders(args)
    out: dict[str, list[tuple[Path, dict]]] = {k: [] for k in kinds}
    plan = rm.QUICK if args.quick else rm.FULL
    if "trimmer" in kinds or "mp3" in kinds:
        for i in range(args.pairs):
            folder = root / f"trimmer_{i:02d}"
            meta = built(folder, "trimmer", i, args, versions,
                         lambda: rm.build_trimmer(tracks, i, args.seed, plan, folder))
            if "trimmer" in kinds:
                out["trimmer"].append((folder, meta))
            if "mp3" in kinds:
                if not ((folder / "mp3.json").exists() and (folder / "edit_48k.mp3").exists()):
                    t = time.perf_counter()
                    print(f"   writing MP3 {i + 1}/{args.pairs} ...", end="", flush=True)
                    info = rm.write_mp3(folder)
                    print(f" {info['kbps']} kbit/s, codec delay {info['delay_samples_48k']} samples "
                          f"({time.perf_counter() - t:.0f} s)", flush=True)
                out["mp3"].append((folder, meta))
    if "loops" in kinds:
        for i in range(args.pairs):
            folder = root / f"loops_{i:02d}"
            out["loops"].append((folder, built(folder, "loops", i, args, versions,
                                               lambda: rm.build_loops(tracks, i, args.seed, folder))))
    return out


def built(folder: Path, kind: str, i: int, args, versions: dict, build) -> dict:
    """The pair in `folder`, built by `build()` unless one with the same settings is there;
    returns its meta."""
    want = {"gen_version": rm.GEN_VERSION, "seed": args.seed, "index": i,
            "quick": args.quick, "package_debs": versions}
    if not rm.pair_ready(folder, want, ("raw.flac", "edit.wav", "truth.json")):
        t = time.perf_counter()
        print(f"   building {kind} {i + 1}/{args.pairs} ...", end="", flush=True)
        rm.clear(folder)
        meta = build()
        meta.update(want)
        (folder / "meta.json").write_text(json.dumps(meta, indent=1))
        print(f" {meta['raw_s'] / 60:.1f} min raw, {meta['edit_s'] / 60:.1f} min edit "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    return json.loads((folder / "meta.json").read_text())


# ---------------------------------------------------------------- scoring



def wrong_runs(right: np.ndarray, keep: np.ndarray, got: np.ndarray, want: np.ndarray,
               fps: float, top: int = 6) -> list[dict]:
    """The longest runs of wrong frames (outside crossfades): where, how long, want vs got."""
    bad = ~right & keep
    runs = []
    j = 0
    while j < len(bad):
        if not bad[j]:
            j += 1
            continue
        k = j
        while k < len(bad) and bad[k]:
            k += 1
        runs.append({"edit_s": round(j / fps, 2), "frames": k - j,
                     "want_raw_s": None if want[j] < 0 else round(want[j] / fps, 2),
                     "got_raw_s": None if got[j] < 0 else round(got[j] / fps, 2)})
        j = k
    return sorted(runs, key=lambda r: -r["frames"])[:top]


def seg_list(edit) -> list[list]:
    """[edit start s, raw start s (None: not in raw), duration s] per segment."""
    return [[round(float(t), 3), None if s.raw_start_s is None else round(s.raw_start_s, 3),
             round(s.duration_s, 3)] for s, t in zip(edit.segments, edit.edit_starts_s())]


def evaluate(kind: str, folder: Path, meta: dict) -> dict:
    from editorbot.align import align_files
    from editorbot.edits import Edit, segments_to_pointers
    from editorbot.features import DEFAULT_PARAMS as P

    fps = P.frames_per_s
    edit_path = folder / ("edit_48k.mp3" if kind == "mp3" else "edit.wav")
    truth = Edit.load(folder / ("truth_mp3.json" if kind == "mp3" else "truth.json"))
    clock = time.perf_counter()
    result = align_files(folder / "raw.flac", edit_path)
    seconds = time.perf_counter() - clock
    s = score(truth, result, P)
    got = result.pointers
    n = len(got)
    want = segments_to_pointers(truth, P, n)
    keep = outside_crossfades(truth, n, fps)
    right = np.where(want >= 0, np.abs(got - want) <= 1, got < 0)
    row = {"kind": kind, "pair": folder.name, "raw_min": meta["raw_s"] / 60,
           "edit_min": meta["edit_s"] / 60, "seconds": seconds,
           "frames": s["frames"], "right": s["right"], "accuracy": s["accuracy"],
           "segments_truth": len(truth.segments), "segments_found": len(result.edit.segments),
           "joins_true": s["joins"], "joins_found": s["found"], "join_hits": s["hits"], "f1": s["f1"],
           "loops": result.info["loops"], "reorders": result.info["reorders"],
           "cuts": result.info["cuts"],
           "jumps_back": bool((np.diff(got[got >= 0]) < -BACK_FRAMES).any()),
           "confidence": result.info["confidence"]["mean"],
           "aligned_fraction": result.info["aligned_fraction"],
           "warnings": result.info["warnings"], "timing_s": result.info["timing_s"],
           "truth_segments": seg_list(truth), "found_segments": seg_list(result.edit)}
    true_j, found_j = joins(truth), joins(result.edit)
    row["join_hits_10ms"] = _matched(true_j, found_j, 0.010)
    row["missed_joins_s"] = [round(float(t), 3) for t in true_j
                             if not len(found_j) or np.abs(found_j - t).min() > 0.05]
    row["extra_joins_s"] = [round(float(t), 3) for t in found_j
                            if not len(true_j) or np.abs(true_j - t).min() > 0.05]
    if kind == "loops":
        tol = 1.5 / fps  # an identical copy sits at a fractional frame: allow the rounding
        idx = np.flatnonzero(~right & keep & (want >= 0) & (got >= 0))
        copy_ok = right.copy()
        copy_ok[idx] = rm.same_content(meta, got[idx] / fps, want[idx] / fps, tol)
        row["copy_right"] = int(copy_ok[keep].sum())
        row["copy_accuracy"] = float(copy_ok[keep].mean())
        row["track"] = f"{meta['package']}:{meta['track']}"
        row["bar_s"] = meta["bar_samples"] / rm.SR
        row["wrong_runs"] = wrong_runs(copy_ok, keep, got, want, fps)
    else:
        row["tracks"] = [f"{t['package'].split('-')[0]}:{t['track']}" for t in meta["takes"]]
        row["wrong_runs"] = wrong_runs(right, keep, got, want, fps)
        regions = [(f["raw_start_s"], f["raw_start_s"] + f["duration_s"]) for f in meta["false_starts"]]
        row["false_starts"] = len(regions)
        row["false_start_regions"] = [[round(f["raw_start_s"], 3), round(f["identical_s"], 3),
                                       round(f["duration_s"], 3)] for f in meta["false_starts"]]
        hit = []
        for seg in result.edit.segments:
            if seg.raw_start_s is None:
                continue
            a, b = seg.raw_start_s, seg.raw_start_s + seg.duration_s
            if any(min(b, y) - max(a, x) > 1 / fps for x, y in regions):
                hit.append([round(a, 3), round(seg.duration_s, 3)])
        row["segments_in_false_starts"] = len(hit)
        row["false_start_segments"] = hit
        t_raw = got / fps
        in_fs = np.zeros(n, bool)
        for x, y in regions:
            in_fs |= (got >= 0) & (t_raw >= x) & (t_raw < y)
        row["frames_in_false_starts"] = int(in_fs.sum())
        if kind == "mp3":
            row["codec_delay_samples_48k"] = json.loads((folder / "mp3.json").read_text())["delay_samples_48k"]
    row["pass"] = pair_pass(row)
    return row


def pair_pass(r: dict) -> bool:
    if r["kind"] == "trimmer":
        return (r["accuracy"] >= ACC_TARGET and r["loops"] == 0 and r["reorders"] == 0
                and not r["jumps_back"] and r["segments_found"] == r["segments_truth"])
    if r["kind"] == "mp3":
        return r["accuracy"] >= ACC_TARGET
    return r["segments_found"] == r["segments_truth"] and r["f1"] >= F1_TARGET


def totals(kind: str, rows: list[dict]) -> dict:
    right = sum(r["right"] for r in rows)
    frames = sum(r["frames"] for r in rows)
    hits = sum(r["join_hits"] for r in rows)
    found = sum(r["joins_found"] for r in rows)
    true = sum(r["joins_true"] for r in rows)
    p = hits / found if found else float(not true)
    rc = hits / true if true else float(not found)
    t = {"kind": kind, "pairs": len(rows), "accuracy": right / max(frames, 1),
         "worst_accuracy": min(r["accuracy"] for r in rows),
         "segments_equal": sum(r["segments_found"] == r["segments_truth"] for r in rows),
         "segments_truth": sum(r["segments_truth"] for r in rows),
         "segments_found": sum(r["segments_found"] for r in rows),
         "joins_true": true, "joins_found": found, "join_hits": hits,
         "f1": 2 * p * rc / (p + rc) if p + rc else 0.0,
         "loops": sum(r["loops"] for r in rows), "reorders": sum(r["reorders"] for r in rows),
         "jumps_back_pairs": sum(r["jumps_back"] for r in rows),
         "seconds": sum(r["seconds"] for r in rows)}
    if kind == "loops":
        t["copy_accuracy"] = sum(r["copy_right"] for r in rows) / max(frames, 1)
    else:
        t["segments_in_false_starts"] = sum(r["segments_in_false_starts"] for r in rows)
        t["false_starts"] = sum(r["false_starts"] for r in rows)
    if kind == "trimmer":
        t["pass"] = bool(t["accuracy"] >= ACC_TARGET and t["loops"] == 0 and t["reorders"] == 0
                         and t["jumps_back_pairs"] == 0 and t["segments_equal"] == len(rows))
    elif kind == "mp3":
        t["pass"] = bool(t["accuracy"] >= ACC_TARGET)
    else:
        t["pass"] = bool(t["segments_equal"] == len(rows) and t["f1"] >= F1_TARGET)
    return t


# ---------------------------------------------------------------- printing

def fl(x: float, digits: int = 4) -> str:
    """x cut (never rounded up) to `digits` decimals: 0.99996 shows as 0.9999, not 1.0000."""
    return f"{math.floor(x * 10 ** digits + 1e-9) / 10 ** digits:.{digits}f}"


def row_line(r: dict) -> str:
    acc = fl(r["accuracy"])
    if r["kind"] == "loops":
        acc += f" ({fl(r['copy_accuracy'])})"
        extra = f"{r['track']} bar {r['bar_s']:.3f} s"
    else:
        extra = (f"false starts {r['false_starts']}: {r['segments_in_false_starts']} segments, "
                 f"{r['frames_in_false_starts']} frames in them")
    return (f"  {r['pair']:11s} {r['raw_min']:5.1f} {r['edit_min']:5.1f}  {acc:17s} "
            f"{r['segments_found']:3d}/{r['segments_truth']:<3d} {r['joins_found']:3d}/{r['joins_true']:<3d} "
            f"{fl(r['f1'], 3):5s} {r['loops']:3d} {r['reorders']:3d} {'yes' if r['jumps_back'] else 'no':>4s} "
            f"{r['seconds']:5.1f}  {'PASS' if r['pass'] else 'FAIL'}  {extra}")


HEADER = ("  pair          raw  edit  frames +-1 (copy)  segs    joins   F1    loop reo back  align  "
          "verdict\n"
          "                min   min  (copy: loops,      fnd/tru fnd/tru              s\n"
          "                           any identical bar)")


def explain(r: dict) -> None:
    """Print what went wrong in a failing pair: truth vs found segments, wrong-frame runs."""
    print(f"    {r['pair']} ({r['kind']}): truth [edit s, raw s, dur s] {r['truth_segments']}")
    print(f"    {' ' * len(r['pair'])}  found {r['found_segments']}")
    if r["missed_joins_s"] or r["extra_joins_s"]:
        print(f"    joins missed (edit s) {r['missed_joins_s']}, extra {r['extra_joins_s']}")
    if r.get("false_start_regions"):
        print(f"    false starts [raw s, identical s, with fade s]: {r['false_start_regions']}")
    if r.get("false_start_segments"):
        print(f"    segments reading a false start [raw s, dur s]: {r['false_start_segments']}")
    if r["wrong_runs"]:
        print("    longest wrong runs: " + "; ".join(
            f"edit {w['edit_s']} s x{w['frames']} want {w['want_raw_s']} got {w['got_raw_s']}"
            for w in r["wrong_runs"][:4]))


def print_totals(t: dict) -> None:
    k = t["kind"]
    if k == "trimmer":
        print(f"  trimmer: frames {fl(t['accuracy'])} pooled (target >= {ACC_TARGET}, worst pair "
              f"{fl(t['worst_accuracy'])}); loops {t['loops']}, reorders {t['reorders']} (target 0); "
              f"jumps_back in {t['jumps_back_pairs']} of {t['pairs']} pairs (target 0); segments == truth "
              f"in {t['segments_equal']} of {t['pairs']} (found {t['segments_found']}, truth "
              f"{t['segments_truth']}); {t['segments_in_false_starts']} segments in "
              f"{t['false_starts']} false starts; join F1 {fl(t['f1'], 3)}: {'PASS' if t['pass'] else 'FAIL'}")
    elif k == "mp3":
        print(f"  mp3 48 kHz: frames {fl(t['accuracy'])} pooled (target >= {ACC_TARGET}, worst pair "
              f"{fl(t['worst_accuracy'])}); segments == truth in {t['segments_equal']} of {t['pairs']}; "
              f"loops {t['loops']}, reorders {t['reorders']}, jumps_back in {t['jumps_back_pairs']}; "
              f"{t['segments_in_false_starts']} segments in false starts; join F1 {fl(t['f1'], 3)}: "
              f"{'PASS' if t['pass'] else 'FAIL'}")
    else:
        print(f"  loops: segments == truth in {t['segments_equal']} of {t['pairs']} (target all; found "
              f"{t['segments_found']}, truth {t['segments_truth']}); join F1 {fl(t['f1'], 3)} pooled "
              f"(target >= {F1_TARGET}; {t['join_hits']} hits, {t['joins_found']} found, "
              f"{t['joins_true']} true); frames {fl(t['accuracy'])}, any identical copy "
              f"{fl(t['copy_accuracy'])}; loops {t['loops']}, reorders {t['reorders']}, jumps_back in "
              f"{t['jumps_back_pairs']}: {'PASS' if t['pass'] else 'FAIL'}")


def git(*cmd: str) -> str:
    return subprocess.run(["git", *cmd], cwd=HERE.parent, capture_output=True, text=True).stdout.strip()


def use_commit(rev: str, cache: Path) -> str:
    """Put `git archive REV editorbot` (unpacked once into the cache) first on sys.path, so
    the figures are those of that commit's code whatever the checkout holds. Returns the
    short hash."""
    sha = git("rev-parse", "--short", f"{rev}^{{commit}}")
    if not sha:
        raise SystemExit(f"--commit {rev}: not a commit of this repository")
    target = cache / "editorbot" / sha
    if not (target / ".done").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "editorbot"], cwd=HERE.parent,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        (target / ".done").write_text(sha)
    sys.path.insert(0, str(target))
    return sha


def git_state(commit: str | None) -> dict:
    """Which aligner is measured: a commit's snapshot (--commit), or the editorbot this
    Python imports (then the checkout's HEAD and whether editorbot/align has uncommitted
    changes, or the foreign path)."""
    import editorbot

    where = Path(editorbot.__file__).resolve().parent
    own = where == (HERE.parent / "editorbot").resolve()
    state = {"head": git("rev-parse", "--short", "HEAD"), "editorbot": str(where),
             "snapshot_of": commit, "from_checkout": own,
             "align_dirty": own and bool(git("status", "--porcelain", "--", "editorbot/align"))}
    if commit:
        state["measured"] = f"commit {commit} (git archive snapshot)"
    elif own:
        state["measured"] = (f"checkout at {state['head']}"
                             + (" with UNCOMMITTED changes in editorbot/align" if state["align_dirty"] else ""))
    else:
        state["measured"] = f"editorbot from {where} (checkout HEAD {state['head']})"
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=rm.DEFAULT_CACHE,
                        help=f"where packages and pairs go (default {rm.DEFAULT_CACHE})")
    parser.add_argument("--pairs", type=int, default=None, help="pairs per kind (default 8; 2 with --quick)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma list of trimmer,mp3,loops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 pairs per kind, 4-6 min trimmer raws")
    parser.add_argument("--packages", default=",".join(rm.DEFAULT_PACKAGES),
                        help="comma list of Debian packages with music (among realmusic.ALLOWED)")
    parser.add_argument("--json", type=Path, help="write every figure and segment list here")
    parser.add_argument("--build-only", action="store_true", help="build the pairs, align nothing")
    parser.add_argument("--commit", help="measure this commit's editorbot (a git archive snapshot "
                        "in the cache) instead of the checkout's, e.g. HEAD while others edit it")
    args = parser.parse_args()
    args.cache = args.cache.expanduser()
    args.packages = [p.strip() for p in args.packages.split(",") if p.strip()]
    for p in args.packages:
        rm.check_allowed(p)
    if args.pairs is None:
        args.pairs = 2 if args.quick else 8
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            parser.error(f"unknown kind {k!r}; choose from {', '.join(KINDS)}")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    logging.getLogger("editorbot").setLevel(logging.ERROR)  # warnings go into the JSON

    commit = use_commit(args.commit, args.cache) if args.commit else None
    state = git_state(commit)
    print(f"== alignment on real music, aligner: {state['measured']}; "
          f"seed {args.seed}, {args.pairs} pairs per kind{', quick' if args.quick else ''}", flush=True)
    pairs = build_all(args, kinds)
    if args.build_only:
        return
    rows: dict[str, list[dict]] = {}
    for kind in kinds:
        print(f"== {kind}", flush=True)
        rows[kind] = []
        print(HEADER)
        for i, (folder, meta) in enumerate(pairs[kind]):
            note = f"  [{kind} {i + 1}/{len(pairs[kind])}] {folder.name}: aligning ..."
            if sys.stdout.isatty():  # the row replaces it when done
                print(note, end="\r", flush=True)
            r = evaluate(kind, folder, meta)
            rows[kind].append(r)
            if sys.stdout.isatty():
                print(" " * len(note), end="\r")
            print(row_line(r), flush=True)
    all_totals = {k: totals(k, rows[k]) for k in kinds}
    print("\n== per kind (frames: outside crossfades within +-1 frame; joins: F1 within 50 ms)")
    for k in kinds:
        print_totals(all_totals[k])
    failing = [r for k in kinds for r in rows[k] if not r["pass"]]
    if failing:
        print("\n== failing pairs: truth vs found segments ([edit start s, raw start s, duration s])")
        for r in failing:
            explain(r)
    ok = all(t["pass"] for t in all_totals.values())
    print("\nall targets met" if ok else "\nsome targets missed")
    if args.json:
        args.json.write_text(json.dumps({"git": state, "seed": args.seed, "pairs": args.pairs,
                                         "quick": args.quick, "packages": args.packages,
                                         "totals": all_totals, "rows": rows}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
