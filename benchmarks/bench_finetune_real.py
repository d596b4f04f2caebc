"""The base editor fine-tuned on 20 real-music pairs (issue 26), beside training from scratch
on the same pairs for the same time and beside the rule-based editor.

    cd benchmarks && OMP_NUM_THREADS=1 nice ../.venv/bin/python bench_finetune_real.py \
        [--train-pairs 20] [--test-pairs 12] [--max-minutes 10] [--init PATH] [--reuse scratch]
        [--pair-seed 0] [--layout-only]

The pairs are realmusic.py's trimmer jams of real tracks (Debian packages in
realmusic.ALLOWED only; built once into the cache, as bench_levels_real.py builds them): takes
with noodling, silence and false starts between them, the edit keeps each take whole. The
first --train-pairs are the musician's pairs: `editorbot prepare` aligns them (the labels are
what alignment finds, as for a user) and `editorbot train pointer` trains on them twice, from
the base (--init) and from scratch (configs/pointer/cpu.json), each for --max-minutes of wall
time on one torch thread. The next --test-pairs are held out and scored against their exact
truth (truth.json): kept-raw IoU, cut F1 within one beat, and the share of the raw's
false-start seconds that the edit drops. Takes rotate through the packages' tracks, so a
held-out jam may contain excerpts of tracks that a training jam also used (the script prints
how many).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench_levels_real import cli, layout, pairs
from common import OUT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def false_start_dropped(edit, meta: dict) -> tuple[float, float]:
    """(seconds of the raw's false starts, of them the seconds the edit does not play)."""
    total = dropped = 0.0
    for fs in meta["false_starts"]:
        a, b = fs["raw_start_s"], fs["raw_start_s"] + fs["duration_s"]
        played = sum(max(0.0, min(b, s.raw_end_s) - max(a, s.raw_start_s))
                     for s in edit.segments if s.raw_start_s is not None)
        total += b - a
        dropped += max(0.0, (b - a) - played)
    return total, dropped


def tracks(meta: dict) -> set[tuple[str, str]]:
    return {(t["package"], t["track"]) for t in meta["takes"]}


def train(kind: str, data: Path, cache: Path, save: Path, args) -> float:
    """Train one pointer model; its wall seconds."""
    start = ["--init", args.init] if kind == "base" else ["--init", "scratch", "--config",
                                                          str(REPO / "configs/pointer/cpu.json")]
    t = time.perf_counter()
    cli("train", "pointer", "--data-dir", str(data), "--cache-dir", str(cache), "--save-dir", str(save),
        *start, "--max-minutes", str(args.max_minutes), "--seed", str(args.seed), "--no-progress",
        "--overwrite")
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-pairs", type=int, default=20)
    p.add_argument("--test-pairs", type=int, default=12)
    p.add_argument("--max-minutes", type=float, default=10.0, help="wall time of each training run")
    p.add_argument("--seed", type=int, default=0, help="train.seed of both runs")
    p.add_argument("--pair-seed", type=int, default=0, help="the seed the jams are built from")
    p.add_argument("--init", default=str(REPO / "editorbot" / "models" / "base_pointer.pt"))
    p.add_argument("--reuse", nargs="*", default=[], choices=["base", "scratch"],
                   help="keep the models an earlier run of these left")
    p.add_argument("--out", default=str(OUT / "finetune_real"))
    p.add_argument("--layout-only", action="store_true",
                   help="lay out the held-out jams with their truth under OUT/test and stop (a "
                        "held-out set of another --pair-seed for bench_cuts_on_grid.py)")
    args = p.parse_args()

    from editorbot.baseline import propose_edit as rule_based
    from editorbot.cache import load_npz
    from editorbot.dataset import write_truth_pointers
    from editorbot.edits import Edit
    from editorbot.editors import load_checkpoint
    from editorbot.evaluate import evaluate_editors
    from editorbot.features import DEFAULT_PARAMS
    from editorbot.layout import Layout
    from editorbot.pointer.infer import propose_edit

    root = Path(args.out).resolve()
    built = pairs(args.train_pairs + args.test_pairs, args.pair_seed)
    train_built, test_built = built[:args.train_pairs], built[args.train_pairs:]
    shared = set().union(*(tracks(m) for _, m in train_built))
    overlap = sum(bool(tracks(m) & shared) for _, m in test_built)
    print(f"== {len(train_built)} training and {len(test_built)} held-out jams of real music; "
          f"{overlap} held-out jams share a track with a training jam", flush=True)

    test = Layout(root / "test" / "training_data", root / "test" / "cache")
    test_names = layout(test_built, test.data_dir)
    metas = {folder.name: meta for folder, meta in test_built}
    truths = {folder.name: Edit.load(folder / "truth.json") for folder, _ in test_built}
    cli("features", "--data-dir", str(test.data_dir), "--cache-dir", str(test.cache_dir), "--jobs", "1")
    for name in test_names:
        mel_frames = load_npz(test.features(name, "raw"))[0]["mel"].shape[1]
        edit = truths[name]
        write_truth_pointers(test, name, edit, DEFAULT_PARAMS.n_frames(int(round(edit.duration_s * DEFAULT_PARAMS.sr))),
                             raw_frames=mel_frames)
    if args.layout_only:
        print(f"   {len(test_names)} jams with their truth in {test.data_dir} (cache {test.cache_dir}): "
              f"{' '.join(test_names)}")
        return
    data, cache = root / "train" / "training_data", root / "train" / "cache"
    layout(train_built, data)
    cli("prepare", "--data-dir", str(data), "--cache-dir", str(cache), "--jobs", "1")

    seconds = {}
    for kind in ("base", "scratch"):
        save = root / "models" / kind
        if kind in args.reuse and (save / "best.pt").is_file():
            print(f"   {kind}: reusing {save / 'best.pt'}", flush=True)
            continue
        seconds[kind] = train(kind, data, cache, save, args)

    def pointer(path: Path):
        ckpt = load_checkpoint(path)
        return lambda raw, **kw: propose_edit(raw, ckpt, cache_dir=str(test.cache_dir), progress=False, **kw)

    editors = {"rule-based": rule_based,
               "base, not fine-tuned": pointer(Path(args.init)),
               "fine-tuned from the base": pointer(root / "models" / "base" / "best.pt"),
               "from scratch": pointer(root / "models" / "scratch" / "best.pt")}
    edits: dict[str, dict] = {e: {} for e in editors}

    def keeping(label, editor):
        def run(raw, **kw):
            e = editor(raw, **kw)
            edits[label][Path(raw).name.removesuffix("_raw.flac")] = e
            return e
        return run

    results = evaluate_editors(test.data_dir, {k: keeping(k, v) for k, v in editors.items()},
                               cache_dir=test.cache_dir, progress=False)
    print("\n| editor | kept-raw IoU | cut F1 within a beat | false-start seconds dropped |")
    print("|---|---|---|---|")
    rows = {}
    for label in editors:
        mean = results[label]["mean"]
        fs = np.array([false_start_dropped(e, metas[n]) for n, e in edits[label].items()]).reshape(-1, 2)
        share = fs[:, 1].sum() / fs[:, 0].sum() if fs[:, 0].sum() else float("nan")
        rows[label] = {"kept_iou": mean["kept_iou"], "cut_f1": mean["cut_f1"], "false_start_dropped": share,
                       "failed": len(results[label]["failures"])}
        print(f"| {label} | {mean['kept_iou']:.3f} | {mean['cut_f1']:.3f} | {share:.1%} of {fs[:, 0].sum():.0f} s |")
    print(f"\ntraining wall seconds: {json.dumps({k: round(v) for k, v in seconds.items()})}")
    (root / "bench_finetune_real.json").write_text(json.dumps(
        {"args": vars(args), "rows": rows, "train_s": seconds, "held_out_sharing_a_track": overlap,
         "per_pair": {k: results[k]["per_pair"] for k in editors}}, indent=1, default=float))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
