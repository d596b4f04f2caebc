"""RL editor training figures (issue 10's "Must reach") on a synthetic corpus, judged on
recordings held out of training.

    .venv/bin/python benchmarks/bench_rl_train.py [--pairs 10] [--minutes 2.5] \\
        [--persona trimmer] [--seed 11] [--folds 5 | --train-seeds 0,1,2] [--bc-epochs 60] [--bc-detours 4] [--updates 30] [--config configs/rl/small.json] [--set KEY=VALUE]
    .venv/bin/python benchmarks/bench_rl_train.py --ci-only

1. `editorbot synth` writes the corpus and `editorbot bc-labels` labels it (both reused
   when present under benchmarks/out/rl_train/, the labels only when made by this label
   version); the labels' own replay IoU is printed. --pairs sets the corpus size (its own folder).
2. One `train` run per fold (each recording held out in one fold): BC pretraining (--bc-pretrain,
   with --bc-detours extra plans of each training edit), then PPO with the BC loss mixed in
   (--bc-mixed, bc_weight 0.5). The fold's held-out recordings (train.val_names) are edited
   deterministically after BC and again after PPO: kept-raw IoU against the human edit,
   episode reward, largest action-type share (and the labels' largest share, for the
   "no type above 90% unless the labels are so" check); then the means over the folds.
3. The CI-sized end-to-end run, timed through the command line: synth three 1.5-minute
   looper pairs, bc-labels, train rl (small config, 20 BC epochs, 3 PPO updates, two
   subprocess envs), edit one recording. Target: under 5 minutes.
Every step runs on one thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)).

The figures in the note for issue 10 (24 trimmer pairs, each held out once; two processes
side by side, ~35 minutes each on this 2-core CPU):

    .venv/bin/python benchmarks/bench_rl_train.py --skip-ci --pairs 24 --folds 5 --only-folds 0,2,4 \
        --updates 300 --set train.n_envs=4 --set ppo.n_steps=256 --run-name H
    (the same with --only-folds 1,3 in a second shell; --set train.seed=10 for the second
    run's seed; --updates 0 for BC alone)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import OUT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "editorbot", *map(str, args)], capture_output=True,
                          text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"`editorbot {' '.join(map(str, args))}` failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started, proc


def type_shares(actions: np.ndarray) -> dict[str, float]:
    from editorbot.rl.actions import ActionType

    counts = np.bincount(np.asarray(actions)[:, 0], minlength=len(ActionType))
    return {ActionType(t).name: round(float(c / counts.sum()), 3) for t, c in enumerate(counts) if c}


def labels_current(path: Path) -> bool:
    """A cached label file made by this label version (another version is made again)."""
    from editorbot.cache import load_npz
    from editorbot.rl.bc_labels import LABEL_VERSION

    entry = load_npz(path) if path.exists() else None
    if entry is not None and entry[1].get("label_version") != LABEL_VERSION:
        print(f"{path}: label version {entry[1].get('label_version')}, not {LABEL_VERSION}; labelling again")
        return False
    return entry is not None


def must_reach(args) -> dict:
    from editorbot.config import load
    from editorbot.rl.bc_labels import BCDataset
    from editorbot.rl.train import RLConfig, train
    from editorbot.training import Run

    started_all = time.perf_counter()
    root = OUT / "rl_train" / f"{args.persona}_{args.pairs}x{args.minutes:g}min_seed{args.seed}"
    data, cache, labels = root / "training_data", root / "cache", root / "bc_rich.npz"
    if not (data / "truth").is_dir() or len(list((data / "truth").glob("*.json"))) < args.pairs:
        seconds, _ = cli("synth", "--out", data, "--pairs", args.pairs, "--minutes", args.minutes,
                         "--seed", args.seed, "--persona", args.persona, "--mastering", "none",
                         "--no-unmastered")
        print(f"synth: {args.pairs} x {args.minutes} min in {seconds:.0f} s")
    if not labels_current(labels):
        seconds, proc = cli("bc-labels", "--data-dir", data, "--cache-dir", cache, "--out", labels,
                            "--config", args.config)
        print(f"bc-labels in {seconds:.0f} s; {proc.stdout.strip().splitlines()[-1]}")
    dataset = BCDataset.load(labels)
    keys = ("kept_iou", "episode_reward", "max_type_share", "keep_share", "bc_type_accuracy",
            "reward_human_match", "reward_keep_ratio")
    runs = []
    names = sorted({r.name for r in dataset.recordings if not r.origin})
    if args.folds:  # disjoint held-out sets: every recording held out exactly once
        splits = [(k, [f"train.val_names={json.dumps(names[k::args.folds])}"]) for k in range(args.folds)
                  if not args.only_folds or k in args.only_folds]
    else:
        splits = [(seed, []) for seed in args.train_seeds]
    for seed, split in splits:
        config = load(RLConfig, args.config, [f"train.bc_pretrain_epochs={args.bc_epochs}",
                                              f"train.bc_detours={args.bc_detours}",
                                              f"train.n_updates={args.updates}", "ppo.bc_weight=0.5",
                                              f"train.seed={seed}", f"train.eval_every={max(args.updates, 1)}",
                                              *split, *args.set])
        started = time.perf_counter()
        result = train(config, Run(root / f"{args.run_name}_seed{seed}", data, cache, progress=False,
                                   overwrite=True), bc_pretrain=labels, bc_mixed=labels)
        seconds = time.perf_counter() - started
        train_rows = np.isin(np.array([r.name for r in dataset.recordings])[dataset.rec], result.train_names)
        runs.append({
            "seed": seed, "held_out": result.val_names, "labelled_steps": int(train_rows.sum()),
            "label_type_shares_train": type_shares(dataset.actions[train_rows]),
            "bc_train": {k: round(v, 3) for k, v in result.phases["bc_train"].items() if "accuracy" in k},
            "held_out_after_bc": {k: round(result.phases["bc"][k], 3) for k in keys if k in result.phases["bc"]},
            "held_out_after_ppo": {k: round(result.metrics[k], 3) for k in keys if k in result.metrics},
            "train_seconds": round(seconds, 1)})
        print(json.dumps(runs[-1]))
    mean = {phase: {k: round(float(np.mean([r[phase][k] for r in runs])), 3) for k in keys
                    if all(k in r[phase] for r in runs)}
            for phase in ("held_out_after_bc", "held_out_after_ppo")}
    return {"corpus": str(root), "bc_epochs": args.bc_epochs, "bc_detours": args.bc_detours, "ppo_updates": args.updates,
            "splits": len(runs), "held_out_per_split": len(runs[0]["held_out"]) if runs else 0,
            "wall_seconds": round(time.perf_counter() - started_all, 1), "mean_over_splits": mean}


def ci_run() -> dict:
    """The CI-sized end-to-end run through the command line, timed per step."""
    small = REPO / "configs" / "rl" / "small.json"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "training_data"
        steps = {
            "synth": ("synth", "--out", data, "--pairs", 3, "--minutes", 1.5, "--seed", 3, "--persona",
                      "looper", "--mastering", "none", "--no-unmastered"),
            "bc-labels": ("bc-labels", "--data-dir", data, "--cache-dir", tmp / "cache", "--out",
                          tmp / "bc.npz", "--config", small),
            "train rl": ("train", "rl", "--data-dir", data, "--cache-dir", tmp / "cache", "--config", small,
                         "--bc-pretrain", tmp / "bc.npz", "--bc-pretrain-epochs", 20, "--bc-mixed",
                         tmp / "bc.npz", "--bc-weight", 0.5, "--updates", 3, "--n-envs", 2, "--subprocess",
                         "--set", "ppo.n_steps=32", "--save-dir", tmp / "run", "--no-progress"),
        }
        out = {}
        for name, args in steps.items():
            out[name], _ = cli(*args, cwd=tmp)
        raw = sorted((data / "input").glob("*_raw.wav"))[0]
        out["edit"], _ = cli("edit", raw, "--checkpoint", tmp / "run" / "best.pt", "-o", tmp / "out.wav",
                             "--no-review", cwd=tmp)
    out = {k: round(v, 1) for k, v in out.items()}
    out["total"] = round(sum(out.values()), 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--minutes", type=float, default=2.5)
    p.add_argument("--persona", default="trimmer")
    p.add_argument("--seed", type=int, default=11, help="corpus seed")
    p.add_argument("--train-seeds", default="",
                   help="instead of folds, one train run per seed with its own random split "
                        "(splits may overlap), e.g. 0,1,2")
    p.add_argument("--folds", type=int, default=5,
                   help="K disjoint held-out sets (recording i held out in fold i mod K; fold k "
                        "trains with seed k); ignored with --train-seeds")
    p.add_argument("--only-folds", default="",
                   help="run only these folds of --folds, e.g. 1,3 (to split the folds over processes)")
    p.add_argument("--bc-epochs", type=int, default=60)
    p.add_argument("--bc-detours", type=int, default=4,
                   help="train.bc_detours: detour plans per training recording in the BC data")
    p.add_argument("--updates", type=int, default=30)
    p.add_argument("--config", default=str(REPO / "configs" / "rl" / "small.json"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the train runs, e.g. --set ppo.learning_rate=1e-4")
    p.add_argument("--run-name", default="run",
                   help="checkpoints go to CORPUS/RUN_NAME_seedK (give runs side by side their own)")
    p.add_argument("--ci-only", action="store_true", help="only the CI-sized end-to-end run")
    p.add_argument("--skip-ci", action="store_true", help="skip the CI-sized end-to-end run")
    args = p.parse_args()
    args.train_seeds = [int(x) for x in args.train_seeds.split(",") if x]
    if args.train_seeds:
        args.folds = 0
    args.only_folds = [int(x) for x in args.only_folds.split(",") if x]
    if args.only_folds and args.train_seeds:
        p.error("--only-folds picks folds; it does not go with --train-seeds")
    if not all(0 <= k < args.folds for k in args.only_folds):
        p.error(f"--only-folds {args.only_folds}: folds of --folds {args.folds} are 0..{args.folds - 1}")
    torch.set_num_threads(1)
    figures = {}
    if not args.ci_only:
        figures["must_reach"] = must_reach(args)
        print(json.dumps(figures["must_reach"], indent=1))
    if not args.skip_ci:
        figures["ci_run_seconds"] = ci_run()
        print("CI-sized run (s):", json.dumps(figures["ci_run_seconds"]))


if __name__ == "__main__":
    main()
