"""Supervised editor: training time and held-out quality on the synthetic corpus.

    .venv/bin/python benchmarks/bench_supervised.py                 # the issue's figures
    .venv/bin/python benchmarks/bench_supervised.py --ci            # the CI-sized run only
    .venv/bin/python benchmarks/bench_supervised.py --config configs/supervised/full.json --epochs 60

Targets (issue 8), on held-out recordings of the synthetic corpus (editorbot.synth, truth
pointers written in the pointer_sequences layout): validation L1 on kept frames at least
30% below the identity baseline (the raw mel as the prediction); keep/cut accuracy >= 0.9;
kept-raw IoU >= 0.7; a CI-sized run (--ci: 6 pairs of 2-minute raws, small config) trains
end to end (load, label, train, validate) in under 3 minutes.

Also printed: the audio-domain multi-scale STFT loss of the treated raw against the
aligned edit, next to the raw with only the file-level offset, and the evaluate table
(supervised vs the rule-based baseline) on the held-out pairs.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

from common import OUT

REPO = Path(__file__).resolve().parents[1]


def corpus(out: Path, *, pairs: int, minutes: float, seed: int, mastering: str, jobs: int) -> Path:
    """A synthetic corpus with truth pointers, reused when it was made with the same settings."""
    from editorbot.supervised.toy import write_corpus_pointers
    from editorbot.synth import write_corpus

    stamp = {"pairs": pairs, "minutes": minutes, "seed": seed, "mastering": mastering}
    marker = out / "bench_settings.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return out
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    write_corpus(out, pairs=pairs, seed=seed, minutes=minutes, mastering=mastering, jobs=jobs)
    write_corpus_pointers(out)
    print(f"corpus: {pairs} pairs of {minutes:g} min ({mastering} mastering) in "
          f"{time.perf_counter() - t0:.0f} s")
    marker.write_text(json.dumps(stamp))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs/supervised/small.json"))
    parser.add_argument("--epochs", type=int, help="default: the config's")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--mastering", default="mild")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="processes for corpus and loading")
    parser.add_argument("--ci", action="store_true", help="CI size: 6 pairs of 2 min, small config, 6 epochs")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the evaluate table")
    args = parser.parse_args()
    if args.ci:
        args.pairs, args.minutes, args.epochs = 6, 2.0, args.epochs or 6
        args.config = str(REPO / "configs/supervised/small.json")

    from editorbot.config import load
    from editorbot.supervised.config import SupervisedConfig
    from editorbot.supervised.train import train
    from editorbot.training import Run

    tag = f"supervised_{args.pairs}x{args.minutes:g}min_{args.mastering}_s{args.seed}"
    data = corpus(OUT / tag, pairs=args.pairs, minutes=args.minutes, seed=args.seed,
                  mastering=args.mastering, jobs=args.jobs)
    cache = OUT / f"{tag}_cache"
    shutil.rmtree(cache, ignore_errors=True)  # labels are part of the timed run
    models = OUT / f"{tag}_models"
    shutil.rmtree(models, ignore_errors=True)
    overrides = [f"train.epochs={args.epochs}"] if args.epochs else []
    cfg = load(SupervisedConfig, args.config, overrides)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    run = train(cfg, Run(models, data, cache, progress=False), jobs=args.jobs)
    result = {**run.metrics, "train_names": run.train_names, "val_names": run.val_names}
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    below = 100 * (1 - result["l1_ratio"])
    print(f"config {Path(args.config).name}, {cfg.train.epochs} epochs, "
          f"{len(result['train_names'])} train / {len(result['val_names'])} held-out recordings")
    print(f"train end to end: {wall:.0f} s wall, {cpu:.0f} s CPU (this process; loading workers "
          f"not counted), peak RSS {peak_mb:.0f} MB   target CI-sized < 180 s")
    print(f"val L1 kept frames: {result['l1_kept']:.4f} (teacher-forced labels "
          f"{result['l1_kept_true_labels']:.4f}) vs identity {result['l1_identity']:.4f}: "
          f"{below:.0f}% below   target >= 30%")
    print(f"val msstft on audio: treated {result['msstft_treated']:.3f} vs offset-only raw "
          f"{result['msstft_identity']:.3f}")
    print(f"val label accuracy (7 labels) {result['label_accuracy']:.3f}; keep/cut accuracy "
          f"{result['keep_accuracy']:.3f}   target >= 0.90; kept-raw IoU {result['kept_iou']:.3f}   "
          f"target >= 0.70")
    summary = {k: v for k, v in result.items()} | {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_mb,
                                                  "config": args.config, "pairs": args.pairs,
                                                  "minutes": args.minutes, "mastering": args.mastering}
    if not args.no_evaluate:
        from editorbot.baseline import propose_edit as baseline
        from editorbot.editors import propose
        from editorbot.evaluate import evaluate_editors

        best = models / "best.pt"
        table = evaluate_editors(
            data, {"supervised": lambda raw, **kw: propose(raw, checkpoint=best, **kw),
                   "baseline": baseline},
            names=result["val_names"], cache_dir=cache, match_duration=True, progress=False)
        summary["evaluate"] = {name: res["mean"] for name, res in table.items()}
    (OUT / f"bench_supervised_{tag}.json").write_text(json.dumps(summary, indent=1, default=float))


if __name__ == "__main__":
    main()
