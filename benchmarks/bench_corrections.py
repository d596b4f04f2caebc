"""Fine-tuning on corrections (issue 27): a pointer model's edits, corrected in `editorbot
review` by a scripted editor, teach the model; measured on recordings it never saw.

    .venv/bin/python benchmarks/bench_corrections.py [--seed 0] [--pairs 16 --corrections 5
        --test-pairs 8 --minutes 2 --persona trimmer --train-epochs 6]
        [--tag lr5e-3 --finetune-set train.finetune.lr=0.005]   (another fine-tuning of the same model)

1. A synthetic corpus of one persona in three parts drawn from three seeds: `--pairs`
   training pairs, `--corrections` recordings of "yours", `--test-pairs` held-out pairs
   (truth pointers as `editorbot prepare` writes them; bench_pointer.prepare_corpus).
2. A small pointer model (configs/pointer/small.json) trained on the training pairs for
   `--train-epochs` ("before"). Budgets are epochs, not minutes: the 2 cores are shared, and
   a wall-clock budget would give each run as many steps as the load left it.
3. It edits each of your recordings (editorbot.edit_files.edit_to_files, as `editorbot edit`
   does). A scripted editor corrects each edit in a review session (ReviewSession, the
   object behind the page): it drags every stretch of the raw that the persona's truth plays
   into the edit (op insert, not snapped) and deletes the model's segments (op delete), then
   Saves. Save writes the correction pair (input/ link, desired_output/ render, pointers,
   ops and info with "correction": true) and caches the raw's mel: the benchmark trains on
   exactly what Save wrote, with nothing added.
4. "after": the model fine-tuned from its weights (Run(init=...), what `editorbot train
   pointer --init` does, with its train.finetune defaults: rate, warm-up and epochs) on the
   corrections, every one trained on, validated on the base run's validation pairs (linked
   in beside them: they choose best.pt and the keep threshold, as they did for the base
   model). "control": the same
   fine-tuning, as many steps, on as many of the training pairs the model has already
   learnt from, validated on the same pairs: what more training alone gives
   (--no-control skips it).
5. Each model edits the held-out pairs twice: at the length it chooses (as bench_pointer.py
   train; the keep threshold its validation chose decides much of it) and asked for the
   human edit's length (as the demo: then kept IoU measures where it cuts, not how much).
   The tables are evaluate_editors' (kept-raw IoU, cut F1 within one beat, ...).

The figure of issue 27: kept-raw IoU on the held-out pairs must rise from before to after.
Every step's wall time, CPU time and the load average are printed; the machine has 2
shared cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_pointer import prepare_corpus  # noqa: E402  (benchmarks/ is the script's folder)


def correct_to_truth(session, truth) -> int:
    """Make the session's edit the truth's segments through the page's own operations: each
    true stretch of the raw inserted in order (not snapped to beats), then each of the model's
    segments deleted. Returns the number of operations."""
    n_model = len(session.state.edit.segments)
    ops = 0
    for i, seg in enumerate(truth.segments):
        if seg.raw_start_s is None:
            raise SystemExit("the persona's truth plays audio that is not in the raw; use a "
                             "persona that only copies the raw (trimmer)")
        session.apply({"op": "insert", "raw_start_s": seg.raw_start_s,
                       "raw_end_s": seg.raw_end_s, "at": i, "snap": False})
        ops += 1
    for _ in range(n_model):
        session.apply({"op": "delete", "segment": len(truth.segments)})
        ops += 1
    return ops


def link_pairs(source, dest, names: list[str]) -> None:
    """Symlink prepared pairs (raw, edit, pointer files, raw mel) of layout `source` into
    layout `dest`."""
    for name in names:
        found = [*source.input_dir.glob(f"{name}_raw.*"), *source.output_dir.glob(f"{name}_edit.*"),
                 *source.pointer_dir.glob(f"{name}_*")]
        targets = [dest.data_dir / path.relative_to(source.data_dir) for path in found]
        found.append(source.features(name, "raw"))
        targets.append(dest.features(name, "raw"))
        for path, target in zip(found, targets):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path.resolve())


class Clock:
    """Wall and CPU seconds of each step, with the load average at its end."""

    def __init__(self):
        self.rows: list[dict] = []
        self.start = time.time(), time.process_time()

    def step(self, what: str, since: tuple[float, float]) -> None:
        row = {"step": what, "wall_s": round(time.time() - since[0], 1),
               "cpu_s": round(time.process_time() - since[1], 1),
               "load_1min": round(os.getloadavg()[0], 2)}
        self.rows.append(row)
        print(f"== {what}: {row['wall_s']:.0f} s wall, {row['cpu_s']:.0f} s CPU, load {row['load_1min']:.1f}",
              flush=True)

    @staticmethod
    def now() -> tuple[float, float]:
        return time.time(), time.process_time()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="/tmp/bench_corrections", help="work folder (default /tmp/bench_corrections)")
    p.add_argument("--config", default=str(REPO / "configs" / "pointer" / "small.json"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides of the base run (the fine-tuning keeps its model settings)")
    p.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides of the fine-tuning (train.* only)")
    p.add_argument("--pairs", type=int, default=16, help="training pairs of the base model")
    p.add_argument("--corrections", type=int, default=5, help="your recordings, corrected")
    p.add_argument("--test-pairs", type=int, default=8, help="held-out pairs the models are scored on")
    p.add_argument("--minutes", type=float, default=2.0, help="length of each raw")
    p.add_argument("--persona", default="trimmer")
    p.add_argument("--seed", type=int, default=0, help="seed of the corpora and the training runs")
    p.add_argument("--train-epochs", type=int, default=6, help="epochs of the base run")
    p.add_argument("--no-control", dest="control", action="store_false",
                   help="skip the control (fine-tuning on the training pairs alone for as long)")
    p.add_argument("--tag", default="default",
                   help="name of this fine-tuning setting: its runs go to OUT/seedS/TAG/ (the "
                        "corpus, the base model and the corrections are shared)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for the corpus")
    args = p.parse_args()

    from editorbot.config import load
    from editorbot.edit_files import edit_to_files
    from editorbot.edits import Edit, segments_to_pointers
    from editorbot.editors import load_checkpoint
    from editorbot.evaluate import edit_metrics, evaluate_editors, format_table, kept_iou, summarize
    from editorbot.features import DEFAULT_PARAMS
    from editorbot.layout import Layout
    from editorbot.pointer.config import PointerConfig
    from editorbot.pointer.infer import propose_edit
    from editorbot.pointer.train import train
    from editorbot.review_server import ReviewSession
    from editorbot.synth import write_corpus
    from editorbot.training import Run

    out = Path(args.out) / f"seed{args.seed}"
    clock = Clock()
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)", flush=True)

    # 1. corpora -------------------------------------------------------------------------
    t = clock.now()
    base_layout = prepare_corpus(out / "train", pairs=args.pairs, seed=args.seed, minutes=args.minutes,
                                 persona=args.persona, jobs=args.jobs)
    test_layout = prepare_corpus(out / "test", pairs=args.test_pairs, seed=args.seed + 1000,
                                 minutes=args.minutes, persona=args.persona, jobs=args.jobs)
    yours = out / "yours"
    your_names = write_corpus(yours, pairs=args.corrections, seed=args.seed + 500, minutes=args.minutes,
                              persona=args.persona, mastering="mild", write_unmastered=False,
                              jobs=args.jobs, progress=False)
    clock.step(f"corpus: {args.pairs} training, {args.corrections} yours, {args.test_pairs} held-out "
               f"({args.minutes:g} min, {args.persona})", t)

    # 2. the model before ------------------------------------------------------------------
    t = clock.now()
    cfg = load(PointerConfig, args.config, [f"train.seed={args.seed}",
                                            f"train.epochs={args.train_epochs}", *args.set])
    before_ckpt = out / "before" / "best.pt"
    made_with = {k: getattr(args, k) for k in ("config", "set", "pairs", "minutes", "persona",
                                               "seed", "train_epochs")}
    stamp = out / "before" / "bench_args.json"
    if before_ckpt.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == made_with:
        ckpt = load_checkpoint(before_ckpt)
        clock.step(f"before: reused {before_ckpt} ({ckpt['global_step']} steps; same arguments)", t)
    else:
        base = train(cfg, Run(out / "before", base_layout.data_dir, base_layout.cache_dir,
                              overwrite=True, progress=False))
        stamp.write_text(json.dumps(made_with))
        clock.step(f"before: trained {base.steps} steps on {len(base.train_names)} pairs "
                   f"({len(base.val_names)} validation)", t)

    # 3. edit your recordings, correct them in review sessions, Save --------------------
    t = clock.now()
    shutil.rmtree(out / "edits", ignore_errors=True)
    shutil.rmtree(out / "yours_layout", ignore_errors=True)
    learn = Layout(out / "yours_layout" / "training_data", out / "yours_layout" / "cache")
    fps = DEFAULT_PARAMS.frames_per_s
    model_vs_truth, saved_vs_truth, n_ops = [], [], 0
    for name in your_names:
        raw = yours / "input" / f"{name}_raw.wav"
        record = json.loads((yours / "truth" / f"{name}.json").read_text())
        truth = Edit.from_json(record)
        done = edit_to_files(raw, out / "edits" / f"{name}.wav", checkpoint=before_ckpt,
                             review=False, overwrite=True)
        session = ReviewSession(out / "edits" / f"{name}.wav", data_dir=learn.data_dir,
                                cache_dir=learn.cache_dir, find_beats=False, background_render=False)
        try:
            n_ops += correct_to_truth(session, truth)
            saved = session.save(wait=True)
        finally:
            session.close()
        truth_p = segments_to_pointers(truth, DEFAULT_PARAMS)
        raw_frames = json.loads(Path(saved["pair"]["info.json"]).read_text())["raw_frames"]
        beat = 60.0 / record["tempo_bpm"]
        model_vs_truth.append(edit_metrics(done["edit"], truth_p, raw_frames=raw_frames, beat_period_s=beat))
        saved_p = np.load(saved["pair"]["pointers.npy"])
        saved_vs_truth.append(kept_iou(saved_p, truth_p, raw_frames))
        print(f"  {name}: model's edit {len(done['edit'].segments)} segments, kept IoU "
              f"{model_vs_truth[-1]['kept_iou']:.3f} against the truth; corrected to "
              f"{len(truth.segments)} segments, saved as version {saved['version']} "
              f"({len(saved_p) / fps:.1f} s, truth {len(truth_p) / fps:.1f} s)", flush=True)
    corrected = summarize({str(i): m for i, m in enumerate(model_vs_truth)})
    clock.step(f"edited and corrected {len(your_names)} recordings ({n_ops} operations): the model's "
               f"edits scored kept IoU {corrected['kept_iou']:.3f}, cut F1 {corrected['cut_f1']:.3f} "
               f"against what the editor wanted; the saved pairs' kept IoU against the truth: "
               f"{min(saved_vs_truth):.4f} at least", t)

    # 4. fine-tune ---------------------------------------------------------------------
    split = load_checkpoint(before_ckpt)["split"]
    link_pairs(base_layout, learn, split["val"])
    tuned = out / args.tag
    runs = {f"after: fine-tuned on {args.corrections} corrections": (tuned / "after", learn)}
    if args.control:
        shutil.rmtree(out / "control_layout", ignore_errors=True)
        seen = Layout(out / "control_layout" / "training_data", out / "control_layout" / "cache")
        link_pairs(base_layout, seen, split["train"][:args.corrections] + split["val"])
        runs[f"control: fine-tuned on {args.corrections} of its training pairs"] = (tuned / "control", seen)
    checkpoints = {"before": before_ckpt}
    for label, (save_dir, layout) in runs.items():
        t = clock.now()
        ft_cfg = load(PointerConfig, args.config, [f"train.seed={args.seed}", *args.set,
                                                   f"train.val_names={json.dumps(split['val'])}",
                                                   *args.finetune_set])
        result = train(ft_cfg, Run(save_dir, layout.data_dir, layout.cache_dir, init=before_ckpt,
                                   overwrite=True, progress=False))
        checkpoints[label] = save_dir / "best.pt"
        clock.step(f"{label}: {result.steps} steps on {len(result.train_names)} recordings, "
                   f"validated on {len(result.val_names)}", t)

    # 5. evaluate on the held-out pairs --------------------------------------------------
    t = clock.now()
    models = {label: load_checkpoint(path) for label, path in checkpoints.items()}
    editors = {label: (lambda raw, m=m, **kw: propose_edit(raw, m, progress=False, **kw))
               for label, m in models.items()}
    results = {}
    for length, match in (("free length", False), ("the human edit's length", True)):
        results[length] = evaluate_editors(test_layout.data_dir, editors, cache_dir=test_layout.cache_dir,
                                           match_duration=match, print_table=False, progress=False)
    clock.step(f"evaluated {len(editors)} models on {args.test_pairs} held-out pairs, twice", t)
    summary = {"args": vars(args), "load_average_end": os.getloadavg(),
               "steps": clock.rows, "corrected_recordings": corrected,
               "held_out": {length: {label: res["mean"] for label, res in by.items()}
                            for length, by in results.items()}}
    tuned.mkdir(parents=True, exist_ok=True)
    (tuned / "result.json").write_text(json.dumps(summary, indent=1))
    for length, by in results.items():
        print(f"\n{args.test_pairs} held-out pairs, {length}:")
        print(format_table(by))
    print("\n| seed | fine-tuning | length | " + " | ".join(
        f"{k.split(':')[0]}: kept IoU / cut F1" for k in editors) + " |")
    for length, by in results.items():
        ft = ft_cfg.train.finetune
        print(f"| {args.seed} | lr {ft.lr:g}, {ft.epochs} epochs{' ' + ' '.join(args.finetune_set) if args.finetune_set else ''} "
              f"| {length} | " + " | ".join(f"{r['mean']['kept_iou']:.3f} / {r['mean']['cut_f1']:.3f}"
                                            for r in by.values()) + " |")
    total_wall = sum(r["wall_s"] for r in clock.rows)
    total_cpu = sum(r["cpu_s"] for r in clock.rows)
    print(f"total: {total_wall / 60:.1f} min wall, {total_cpu / 60:.1f} min CPU (this process); "
          f"load average at the end {os.getloadavg()[0]:.2f}; {tuned / 'result.json'}")


if __name__ == "__main__":
    main()
