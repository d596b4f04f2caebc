"""Levels on real music (issue 29): a supervised model trained on trimmer pairs of real music;
its held-out edits with the gains it set before (a loudest-bin boost, written clipped) and
with the editor's levels from the checkpoint and a render that cannot clip.

    cd benchmarks && nice ../.venv/bin/python bench_levels_real.py [--pairs 48] [--max-minutes 12]

The pairs are benchmarks/realmusic.py's trimmer jams (Debian packages in realmusic.ALLOWED
only), built or reused as bench_align_real.py does: takes with noodling and false starts
between them, the edit keeps the takes and is mildly mastered (2:1 compression, +1 to +4 dB
make-up gain, a -1 dBFS limiter). `editorbot prepare` aligns them, `editorbot train
supervised` trains on the training split, the trainer writes the editor's
levels into best.pt. For each held-out raw, figures per edit: samples at full scale in the
PCM_16 file, what the render did to the level (one gain, or the limiter and by how much),
integrated loudness (LUFS) against the editor's edit of the same raw and the editor's mean,
the kept-raw IoU against the truth (the gains do not move a cut, so it is the same before
and after) and the render's CPU time; then the means over the held-out raws.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import OUT

REPO = Path(__file__).resolve().parents[1]
FULL_SCALE_16 = 32767 / 32768


def pairs(n: int, seed: int) -> list[tuple[Path, dict]]:
    """n trimmer pairs of real music (built once, then reused from the cache)."""
    import bench_align_real as bar
    import realmusic as rm
    args = argparse.Namespace(cache=rm.DEFAULT_CACHE, seed=seed, quick=False, pairs=n,
                              packages=list(rm.DEFAULT_PACKAGES))
    return bar.build_all(args, ["trimmer"])["trimmer"]


def layout(built: list[tuple[Path, dict]], data: Path) -> list[str]:
    """The pairs in the data contract's folders (links to the cached files)."""
    names = []
    for folder, _ in built:
        name = folder.name
        for link, target in ((data / "input" / f"{name}_raw.flac", folder / "raw.flac"),
                             (data / "desired_output" / f"{name}_edit.wav", folder / "edit.wav")):
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(target)
        names.append(name)
    return names


def cli(*args: str) -> None:
    """Run `editorbot *args`; print its wall and CPU time (other work shares the machine)."""
    import resource
    t = time.perf_counter()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "editorbot", *args], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"editorbot {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
    print(f"   editorbot {' '.join(args[:2])}: {time.perf_counter() - t:.0f} s wall, "
          f"{cpu_s:.0f} s CPU", flush=True)


def kept_iou(edit, truth, fps: float = 100.0) -> float:
    """IoU of the raw time (10 ms grid) the two edits keep."""
    def kept(e) -> set[int]:
        out: set[int] = set()
        for s in e.segments:
            if s.raw_start_s is not None:
                out.update(range(int(round(s.raw_start_s * fps)),
                                 int(round((s.raw_start_s + s.duration_s) * fps))))
        return out
    a, b = kept(edit), kept(truth)
    return len(a & b) / max(len(a | b), 1)


def at_full_scale(path: Path) -> int:
    import soundfile as sf
    x, _ = sf.read(path, dtype="float32")
    return int((np.abs(x) >= FULL_SCALE_16).sum())


HEADER = ("| held-out raw | edit | segment gains (dB) | samples at full scale | render | "
          "loudness (LUFS) | editor's edit | vs editor's edit | vs editor's mean | kept IoU | "
          "render CPU s (edit s) |\n|---|---|---|---|---|---|---|---|---|---|---|")


def row_line(r: dict) -> str:
    done = r["method"]
    if r["limit_db"]:
        done += f" {r['limit_db']:.1f} dB"
    if r["gain_reduction_db"]:
        done += f", gain -{r['gain_reduction_db']:.1f} dB"
    return (f"| {r['name']} | {r['edit']} | {r['gain_db'][0]:+.1f} to {r['gain_db'][1]:+.1f} | "
            f"{r['at_full_scale']} | {done} | {r['loudness_lufs']:.2f} | {r['editor_lufs']:.2f} | "
            f"{r['loudness_lufs'] - r['editor_lufs']:+.2f} LU | "
            f"{r['loudness_lufs'] - r['editor_mean_lufs']:+.2f} LU | {r['kept_iou']:.3f} | "
            f"{r['render_s']:.1f} ({r['edit_s']:.0f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--max-minutes", type=float, default=12.0,
                        help="wall time for training (the issue's situation: 12 CPU minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(REPO / "configs/supervised/small.json"))
    parser.add_argument("--reuse-model", action="store_true",
                        help="use the best.pt an earlier run left (however many epochs it got)")
    args = parser.parse_args()

    from editorbot.checkpoint import load_checkpoint
    from editorbot.edits import Edit
    from editorbot.loudness import file_loudness
    from editorbot.render import render
    from editorbot.supervised.infer import propose_edit

    root = OUT / f"levels_real_{args.pairs}_s{args.seed}"
    data, cache, models = root / "training_data", root / "cache", root / "models"
    built = pairs(args.pairs, args.seed)
    names = layout(built, data)
    print(f"== {len(names)} trimmer pairs of real music in {data}", flush=True)
    cli("prepare", "--data-dir", str(data), "--cache-dir", str(cache), "--jobs", "2")
    if not (args.reuse_model and (models / "best.pt").is_file()):
        cli("train", "supervised", "--data-dir", str(data), "--cache-dir", str(cache),
            "--save-dir", str(models), "--config", args.config, "--epochs", str(args.epochs),
            "--max-minutes", str(args.max_minutes),
            "--no-progress", "--overwrite")
    best = models / "best.pt"
    levels = load_checkpoint(best).get("levels")  # measured by the trainer on its training pairs
    print(f"   model: {best}, {load_checkpoint(best).get('epoch')} epoch(s)", flush=True)
    print(f"   editor's levels (training pairs): {json.dumps(levels)}", flush=True)
    with_levels = load_checkpoint(best)
    before = {k: v for k, v in with_levels.items() if k != "levels"}
    train_lufs = [file_loudness(data / "desired_output" / f"{n}_edit.wav")
                  for n in with_levels["split"]["train"]]
    editor_mean = float(np.mean(train_lufs))
    rows = []
    out = root / "edits"
    out.mkdir(exist_ok=True)
    print(HEADER, flush=True)  # a row as each edit is made
    for name in with_levels["split"]["val"]:
        raw = data / "input" / f"{name}_raw.flac"
        truth = Edit.load(next(f for f, _ in built if f.name == name) / "truth.json")
        editor = file_loudness(data / "desired_output" / f"{name}_edit.wav")
        for label, ckpt, allow in (("before: model gains, clipped", before, True),
                                   ("after: editor's levels, no clipping", with_levels, False)):
            edit = propose_edit(raw, ckpt)
            path = out / f"{name}_{'before' if allow else 'after'}.wav"
            t = time.process_time()  # CPU: the machine is shared
            report = render(raw, edit, path, subtype="PCM_16", allow_clipping=allow)
            seconds = time.process_time() - t
            gains = [s.gain_db for s in edit.segments]
            rows.append({"name": name, "edit": label, "segments": len(gains),
                         "gain_db": [round(min(gains), 2), round(max(gains), 2)],
                         "at_full_scale": at_full_scale(path), "method": report.level_method,
                         "gain_reduction_db": round(report.gain_reduction_db, 2),
                         "limit_db": round(report.limit_db, 2),
                         "render_s": round(seconds, 1), "edit_s": round(report.duration_s, 1),
                         "loudness_lufs": round(file_loudness(path), 2),
                         "editor_lufs": round(editor, 2), "editor_mean_lufs": round(editor_mean, 2),
                         "kept_iou": round(kept_iou(edit, truth), 3)})
            print(row_line(rows[-1]), flush=True)
    print("\n| edit | held-out raws | with samples at full scale | samples at full scale | "
          "mean vs editor's edit | mean abs vs editor's edit | mean vs editor's mean | "
          "mean kept IoU |")
    print("|---|---|---|---|---|---|---|---|")
    for label in dict.fromkeys(r["edit"] for r in rows):
        rs = [r for r in rows if r["edit"] == label]
        diff = np.array([r["loudness_lufs"] - r["editor_lufs"] for r in rs])
        mean_diff = np.mean([r["loudness_lufs"] - r["editor_mean_lufs"] for r in rs])
        print(f"| {label} | {len(rs)} | {sum(r['at_full_scale'] > 0 for r in rs)} | "
              f"{sum(r['at_full_scale'] for r in rs)} | {diff.mean():+.2f} LU | "
              f"{np.abs(diff).mean():.2f} LU | {mean_diff:+.2f} LU | "
              f"{np.mean([r['kept_iou'] for r in rs]):.3f} |")
    (root / "bench_levels_real.json").write_text(json.dumps({"levels": levels, "rows": rows,
                                                             "editor_train_lufs": train_lufs},
                                                            indent=1))


if __name__ == "__main__":
    main()
