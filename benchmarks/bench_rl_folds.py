"""PPO against its BC start (issue 26): does PPO raise held-out kept-raw IoU above the
behavioral-cloning checkpoint it starts from, fold by fold, for two seeds?

    nice -n 10 .venv/bin/python benchmarks/bench_rl_folds.py [--pairs 15] [--minutes 1.5] \\
        [--corpus-seed 21] [--folds 5] [--seeds 0,1] [--bc-epochs 60] [--updates 50] \\
        [--config configs/rl/small.json] [--set KEY=VALUE] [--run-name ppo] [--label-grid tracker]

1. Corpus, reused under benchmarks/out/rl_folds/ while its settings match: `editorbot synth`
   trimmer pairs with exact truth, the truth written as pointer files
   (supervised.toy.write_corpus_pointers, the layout `editorbot prepare` writes), the raw
   mels (`editorbot features`) and `editorbot bc-labels --grid tracker`: the labels on the
   beat tracker's grid, the one `editorbot edit` uses, so that training sees the grid of
   edit time (--label-grid truth: on the truth's beats, a corpus of its own).
2. For each seed and fold (recording i held out in fold i mod FOLDS): the BC start, a
   `train` run of --bc-epochs of cloning and no PPO (reused while its settings match), then
   a second run that resumes it for --updates PPO updates (BC loss mixed in at
   ppo.bc_weight 1.0, the CLI's default with --bc-mixed) and validates only at its end.
3. Both latest.pt checkpoints edited and scored by editorbot.evaluate on the fold's held-out
   pairs (no length asked: the training edits' median share, as `editorbot evaluate`
   without --match-duration): kept-raw IoU of the BC start and after PPO; no checkpoint is
   chosen on the held-out pairs.

Prints a markdown table (one row per seed and fold, with the reward's human_match term on
the held-out pairs before and after PPO, from the runs' own validation), the number of folds
where PPO > BC for each seed, the wall and CPU minutes and the load average. --set changes the PPO run only (the
BC start stays the same, so settings compare on the same starts; give each a --run-name).
Every step runs on one thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import OUT  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package, as in the subprocesses


def cli(*args) -> float:
    """Run `python -m editorbot ARGS` from this checkout; its wall seconds."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "editorbot", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
    if proc.returncode != 0:
        raise SystemExit(f"`editorbot {' '.join(map(str, args))}` failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def corpus(root: Path, args) -> dict[str, float]:
    """The corpus and its tracker-grid labels under root, reused while made with the same
    settings. Returns the seconds of each step it ran."""
    from editorbot.supervised.toy import write_corpus_pointers

    data, cache, labels, marker = root / "training_data", root / "cache", root / "bc.npz", root / "corpus.json"
    stamp = {"pairs": args.pairs, "minutes": args.minutes, "seed": args.corpus_seed, "persona": "trimmer",
             "config": Path(args.config).read_text()}
    if args.label_grid != "tracker":  # corpora labelled on the tracker's grid keep their record
        stamp["label_grid"] = args.label_grid
    if marker.is_file() and json.loads(marker.read_text()) == stamp and labels.is_file():
        return {}
    seconds = {"synth": cli("synth", "--out", data, "--pairs", args.pairs, "--minutes", args.minutes,
                            "--seed", args.corpus_seed, "--persona", "trimmer", "--mastering", "none",
                            "--no-unmastered")}
    write_corpus_pointers(data)
    seconds["features"] = cli("features", "--data-dir", data, "--cache-dir", cache)
    seconds["bc-labels"] = cli("bc-labels", "--data-dir", data, "--cache-dir", cache, "--out", labels,
                               "--grid", args.label_grid, "--config", args.config)
    marker.write_text(json.dumps(stamp))
    return seconds


def bc_start(root: Path, args, seed: int, fold: int, val_names: list[str]) -> Path:
    """The fold's BC checkpoint (latest.pt), trained unless one with these settings exists."""
    from editorbot.config import load
    from editorbot.rl.train import RLConfig, train
    from editorbot.training import Run

    save_dir = root / f"bc_seed{seed}_fold{fold}"
    stamp = {"config": Path(args.config).read_text(), "bc_epochs": args.bc_epochs, "seed": seed,
             "val_names": val_names, "corpus": (root / "corpus.json").read_text()}
    marker = save_dir / "bench.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp and (save_dir / "latest.pt").is_file():
        return save_dir / "latest.pt"
    config = load(RLConfig, args.config, [f"train.bc_pretrain_epochs={args.bc_epochs}", "train.n_updates=0",
                                          f"train.seed={seed}", f"train.val_names={json.dumps(val_names)}"])
    labels = root / "bc.npz"
    train(config, Run(save_dir, root / "training_data", root / "cache", progress=False, overwrite=True),
          bc_pretrain=labels, bc_mixed=labels)
    marker.write_text(json.dumps(stamp))
    return save_dir / "latest.pt"


def ppo_from(root: Path, args, seed: int, fold: int, start: Path) -> tuple[Path, dict]:
    """--updates PPO updates resumed from `start`; (its latest.pt, its last validation)."""
    from editorbot.config import load
    from editorbot.rl.train import RLConfig, train
    from editorbot.training import Run

    config = load(RLConfig, args.config, ["train.bc_pretrain_epochs=0", f"train.n_updates={args.updates}",
                                          f"train.eval_every={args.updates}", "ppo.bc_weight=1.0",
                                          f"train.seed={seed}", *args.set])
    save_dir = root / f"{args.run_name}_seed{seed}_fold{fold}"
    labels = root / "bc.npz"
    result = train(config, Run(save_dir, root / "training_data", root / "cache", resume=start, progress=False,
                               overwrite=True), bc_pretrain=labels, bc_mixed=labels)
    return save_dir / "latest.pt", result.metrics


def held_out_iou(root: Path, checkpoint: Path, names: list[str]) -> dict:
    """editorbot.evaluate's figures for the checkpoint on the held-out pairs."""
    from editorbot.checkpoint import load_checkpoint
    from editorbot.evaluate import evaluate_editors
    from editorbot.rl.infer import propose_edit

    ckpt = load_checkpoint(checkpoint)
    assert not set(names) & set(ckpt["split"]["train"]), "a held-out pair was trained on"

    def editor(raw_path, **kwargs):
        return propose_edit(raw_path, ckpt, cache_dir=root / "cache", **kwargs)

    res = evaluate_editors(root / "training_data", {"rl": editor}, names=names, cache_dir=root / "cache",
                           print_table=False, progress=False)["rl"]
    if res["failures"]:
        raise SystemExit(f"{checkpoint}: failed on {res['failures']}")
    return res["mean"]


def main() -> None:
    from editorbot.checkpoint import load_checkpoint

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=15)
    p.add_argument("--minutes", type=float, default=1.5, help="length of each raw")
    p.add_argument("--corpus-seed", type=int, default=21)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only-folds", default="", help="run only these folds, e.g. 0,1")
    p.add_argument("--seeds", default="0,1", help="train.seed of each pass over the folds")
    p.add_argument("--bc-epochs", type=int, default=60)
    p.add_argument("--updates", type=int, default=50, help="PPO updates after the BC start")
    p.add_argument("--config", default=str(REPO / "configs" / "rl" / "small.json"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the PPO runs, e.g. --set ppo.learning_rate=1e-4")
    p.add_argument("--run-name", default="ppo", help="the PPO runs' folders: RUN_NAME_seedS_foldK")
    p.add_argument("--label-grid", choices=("tracker", "truth"), default="tracker",
                   help="the beat grid the training labels are on (validation and the scores stay "
                        "on the tracker's, as at edit time)")
    p.add_argument("--out", type=Path, default=OUT / "rl_folds")
    args = p.parse_args()
    seeds = [int(x) for x in args.seeds.split(",") if x]
    only = [int(x) for x in args.only_folds.split(",") if x]
    torch.set_num_threads(1)
    started, load0 = time.perf_counter(), os.getloadavg()
    root = args.out / (f"trimmer_{args.pairs}x{args.minutes:g}min_seed{args.corpus_seed}"
                       + ("" if args.label_grid == "tracker" else f"_{args.label_grid}_grid"))
    root.mkdir(parents=True, exist_ok=True)
    made = corpus(root, args)
    if made:
        print("corpus:", json.dumps({k: round(v, 1) for k, v in made.items()}), flush=True)
    names = sorted(f.stem for f in (root / "training_data" / "truth").glob("*.json"))
    rows = []
    for seed in seeds:
        for fold in range(args.folds):
            if only and fold not in only:
                continue
            val = names[fold::args.folds]
            t0 = time.perf_counter()
            start = bc_start(root, args, seed, fold, val)
            t1 = time.perf_counter()
            after, val_metrics = ppo_from(root, args, seed, fold, start)
            t2 = time.perf_counter()
            bc_val = load_checkpoint(start)["metrics"]
            row = {"seed": seed, "fold": fold, "held_out": len(val),
                   "bc": held_out_iou(root, start, val), "ppo": held_out_iou(root, after, val),
                   "bc_match": bc_val.get("reward_human_match"),
                   "ppo_match": val_metrics.get("reward_human_match"),
                   "bc_s": round(t1 - t0, 1), "ppo_s": round(t2 - t1, 1)}
            rows.append(row)
            print(json.dumps({k: (round(v["kept_iou"], 4) if isinstance(v, dict) else v) for k, v in row.items()}),
                  flush=True)
    print()
    print("| seed | fold | held out | BC kept IoU | PPO kept IoU | PPO - BC | human_match BC -> PPO | BC s | PPO s |")
    print("|---|---|---|---|---|---|---|---|---|")
    f = lambda x: "-" if x is None else f"{x:.3f}"
    for r in rows:
        d = r["ppo"]["kept_iou"] - r["bc"]["kept_iou"]
        print(f"| {r['seed']} | {r['fold']} | {r['held_out']} | {r['bc']['kept_iou']:.4f} | {r['ppo']['kept_iou']:.4f} "
              f"| {d:+.4f} | {f(r['bc_match'])} -> {f(r['ppo_match'])} "
              f"| {r['bc_s']:.0f} | {r['ppo_s']:.0f} |")
    print()
    for seed in seeds:
        mine = [r for r in rows if r["seed"] == seed]
        above = sum(r["ppo"]["kept_iou"] > r["bc"]["kept_iou"] for r in mine)
        same = sum(r["ppo"]["kept_iou"] == r["bc"]["kept_iou"] for r in mine)
        mean = lambda k: float(np.mean([r[k]["kept_iou"] for r in mine]))
        print(f"seed {seed}: PPO > BC in {above} of {len(mine)} folds ({same} equal); mean kept IoU "
              f"BC {mean('bc'):.4f}, PPO {mean('ppo'):.4f}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
    print(f"wall {(time.perf_counter() - started) / 60:.1f} min, CPU {cpu / 60:.1f} min; load average at "
          f"start {load0[0]:.2f}, at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
