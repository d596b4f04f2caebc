"""The rule-based editor and the three trained paradigms (pointer, supervised, RL) on one
held-out set, each model trained through the command line for the same number of minutes.

    .venv/bin/python benchmarks/bench_paradigms.py          # 24 trimmer pairs of 3.5 min, 6 minutes a paradigm, 12 test pairs
    .venv/bin/python benchmarks/bench_paradigms.py --ci     # smoke run: 6 pairs of 1 min, 1 minute a paradigm

1. Corpus, all through the CLI but for one step: `editorbot synth` writes PAIRS pairs of one
   persona with exact truth; the truth is written to pointer_sequences/ in the layout
   `editorbot prepare` writes (editorbot.supervised.toy.write_corpus_pointers: no alignment
   error in the labels or the scores); `editorbot features` caches the raw mels;
   `editorbot bc-labels` makes the RL labels of every pair (the RL trainer clones only its
   training recordings' labels). Kept under OUT and reused while the settings match.
2. `editorbot train pointer`, `supervised`, `rl`, one after another, each with the same
   --max-minutes, --seed, train.val_fraction and train.split_seed, so all three hold out the
   same recordings (dataset.split_by_recording). Settings: pointer configs/pointer/cpu.json;
   supervised configs/supervised/small.json with --epochs 1000 (its learning rate is
   constant, so the deadline ends it); RL configs/rl/small.json with bench_rl_train.py's
   recorded recipe (60 BC epochs, then PPO with the BC loss mixed in, up to 300 updates of
   4 environments x 256 steps). Every run's wall and CPU seconds are kept.
3. One `editorbot evaluate` with the three best.pt files: the rule-based editor and the three
   models on the recordings every checkpoint held out (--json). Those recordings were each
   run's validation set, which chose its best.pt; --test-pairs N adds a second `evaluate`
   on N recordings of another corpus seed that no run saw at all.

Prints both tables, the held-out names of each checkpoint (they must be identical), each
run's seconds, and the load average (the machine is shared: the runs are bounded by wall
time, so a loaded machine gives each fewer steps). A trainer that fails is reported with
its error and the others are still evaluated; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import OUT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package, as in the subprocesses
PARADIGMS = ("pointer", "supervised", "rl")


def editorbot(*args, log: Path) -> dict:
    """Run `python -m editorbot ARGS` from this checkout; its output goes to `log`.
    Returns the exit status, wall and CPU seconds (the process and its children) and the
    output's last lines."""
    cmd = [sys.executable, "-m", "editorbot", *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this checkout's package, not another install
    cpu0 = _children_cpu_s()
    started = time.perf_counter()
    with open(log, "w") as fh:
        fh.write("$ editorbot " + " ".join(map(str, args)) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env).returncode
    wall = time.perf_counter() - started
    lines = log.read_text(errors="replace").splitlines()
    return {"rc": rc, "wall_s": round(wall, 1), "cpu_s": round(_children_cpu_s() - cpu0, 1),
            "tail": lines[-15:], "log": str(log)}


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def must(step: str, done: dict) -> dict:
    """Stop the benchmark when a step it cannot go on without fails."""
    if done["rc"] != 0:
        raise SystemExit(f"{step} failed (exit {done['rc']}), see {done['log']}:\n" + "\n".join(done["tail"]))
    return done


def corpus(root: Path, *, pairs: int, minutes: float, seed: int, persona: str, mastering: str,
           jobs: int) -> dict:
    """A synthetic corpus with truth pointers and cached raw mels, reused when it was made
    with the same settings. Returns the seconds each step took (empty when reused)."""
    from editorbot.supervised.toy import write_corpus_pointers

    data, cache, logs = root / "training_data", root / "cache", root / "logs"
    stamp = {"pairs": pairs, "minutes": minutes, "seed": seed, "persona": persona, "mastering": mastering}
    marker = root / "corpus.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return {}
    shutil.rmtree(root, ignore_errors=True)
    logs.mkdir(parents=True)
    seconds = {}
    done = must("synth", editorbot("synth", "--out", data, "--pairs", pairs, "--minutes", minutes,
                                   "--seed", seed, "--persona", persona, "--mastering", mastering,
                                   "--no-unmastered", "--jobs", jobs, log=logs / "synth.log"))
    seconds["synth"] = done["wall_s"]
    t0 = time.perf_counter()
    write_corpus_pointers(data)
    seconds["truth pointers"] = round(time.perf_counter() - t0, 1)
    done = must("features", editorbot("features", "--data-dir", data, "--cache-dir", cache, "--jobs", jobs,
                                      log=logs / "features.log"))
    seconds["features"] = done["wall_s"]
    marker.write_text(json.dumps(stamp))
    return seconds


def bc_labels(root: Path, *, rl_config: Path, jobs: int) -> float | None:
    """root/bc.npz from `editorbot bc-labels`, reused while the corpus and the RL config
    are those it was made with. Returns its seconds (None when reused)."""
    out, marker = root / "bc.npz", root / "bc.json"
    stamp = {"corpus": (root / "corpus.json").read_text(), "rl_config": rl_config.read_text()}
    if out.is_file() and marker.is_file() and json.loads(marker.read_text()) == stamp:
        return None
    marker.unlink(missing_ok=True)
    done = must("bc-labels", editorbot("bc-labels", "--data-dir", root / "training_data", "--cache-dir",
                                       root / "cache", "--out", out, "--config", rl_config,
                                       "--jobs", jobs, log=root / "logs" / "bc-labels.log"))
    marker.write_text(json.dumps(stamp))
    return done["wall_s"]


def train_args(paradigm: str, args: argparse.Namespace, root: Path) -> list:
    """The `editorbot train PARADIGM` command line of this benchmark."""
    data, cache = root / "training_data", root / "cache"
    common = ["--data-dir", data, "--cache-dir", cache, "--save-dir", root / "models" / paradigm,
              "--max-minutes", args.max_minutes, "--seed", args.seed, "--overwrite", "--no-progress",
              "--set", f"train.val_fraction={args.val_fraction}", "--set", f"train.split_seed={args.split_seed}"]
    extra = {"pointer": args.pointer_args, "supervised": args.supervised_args, "rl": args.rl_args}[paradigm]
    if paradigm == "rl":
        bc = root / "bc.npz"
        extra = ["--bc-pretrain", bc, "--bc-mixed", bc, *extra]
    config = {"pointer": args.pointer_config, "supervised": args.supervised_config, "rl": args.rl_config}[paradigm]
    return ["train", paradigm, "--config", config, *common, *extra]


def split_of(path: Path) -> dict:
    from editorbot.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    return {"train": ckpt["split"]["train"], "val": ckpt["split"]["val"], "step": ckpt.get("step"),
            "phase": ckpt.get("phase")}


def table(figures: dict, train: dict) -> str:
    """The evaluate figures as one markdown table, with each run's training seconds."""
    head = ("| editor | pairs | failed | kept-raw IoU | cut F1 (1 beat) | pointer acc. (50 ms) | order tau "
            "| abs. duration error | s per edit | training wall s (CPU s) |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for editor, res in figures.items():
        m = res["mean"]
        kind = editor.split(":")[0]
        t = train.get(kind)
        spent = f"{t['wall_s']:.0f} ({t['cpu_s']:.0f})" if t else "-"
        cell = lambda k, fmt="{:.3f}": "-" if m.get(k) is None else fmt.format(m[k])
        rows.append(f"| {editor} | {m['pairs']} | {len(res['failures'])} | {cell('kept_iou')} | {cell('cut_f1')} "
                    f"| {cell('pointer_accuracy')} | {cell('order_tau')} | {cell('abs_duration_error', '{:.1%}')} "
                    f"| {cell('seconds', '{:.1f}')} | {spent} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="work folder (default benchmarks/out/paradigms, with --ci "
                   "benchmarks/out/paradigms_ci)")
    p.add_argument("--pairs", type=int, default=24)
    p.add_argument("--minutes", type=float, default=3.5, help="length of each raw")
    p.add_argument("--persona", default="trimmer")
    p.add_argument("--mastering", default="mild")
    p.add_argument("--corpus-seed", type=int, default=5)
    p.add_argument("--test-pairs", type=int, default=12,
                   help="also evaluate on this many pairs of corpus seed + 1000, seen by no run")
    p.add_argument("--max-minutes", type=float, default=6.0, help="wall time of each training run")
    p.add_argument("--seed", type=int, default=0, help="train.seed of every run")
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="processes for synth, features and bc-labels")
    p.add_argument("--only", nargs="+", choices=PARADIGMS, default=list(PARADIGMS), help="train only these")
    p.add_argument("--ci", action="store_true",
                   help="smoke run: 6 pairs of 1 min, tiny settings, 1 minute a paradigm")
    args = p.parse_args()
    args.pointer_config = REPO / "configs/pointer/cpu.json"
    args.supervised_config = REPO / "configs/supervised/small.json"
    args.rl_config = REPO / "configs/rl/small.json"
    args.pointer_args = []
    args.supervised_args = ["--epochs", 1000]
    args.rl_args = ["--bc-pretrain-epochs", 60, "--updates", 300, "--set", "train.n_envs=4",
                    "--set", "ppo.n_steps=256"]
    args.out = args.out or OUT / ("paradigms_ci" if args.ci else "paradigms")
    if args.ci:
        args.pairs, args.minutes, args.max_minutes, args.test_pairs = 6, 1.0, 1.0, 0
        args.pointer_config = REPO / "configs/pointer/small.json"
        args.pointer_args = ["--epochs", 2]
        args.supervised_args = ["--epochs", 2]
        args.rl_args = ["--bc-pretrain-epochs", 3, "--updates", 2, "--set", "ppo.n_steps=16"]

    started = time.perf_counter()
    load = {"start": os.getloadavg()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip() or "unknown (not a git checkout)"
    print(f"editorbot at {commit}, {REPO}", flush=True)
    tag = f"{args.persona}_{args.pairs}x{args.minutes:g}min_seed{args.corpus_seed}"
    root = args.out / tag
    made = corpus(root, pairs=args.pairs, minutes=args.minutes, seed=args.corpus_seed, persona=args.persona,
                  mastering=args.mastering, jobs=args.jobs)
    if "rl" in args.only:
        seconds = bc_labels(root, rl_config=args.rl_config, jobs=args.jobs)
        if seconds is not None:
            made["bc-labels"] = seconds
    print(f"corpus {root}: {args.pairs} {args.persona} pairs of {args.minutes:g} min "
          + (f"made in {json.dumps(made)} s" if made else "(reused)"), flush=True)

    train, errors, splits = {}, {}, {}
    (root / "logs").mkdir(exist_ok=True)
    for paradigm in args.only:
        before = os.getloadavg()[0]
        done = editorbot(*train_args(paradigm, args, root), log=root / "logs" / f"train_{paradigm}.log")
        done["load_1min"] = [round(before, 2), round(os.getloadavg()[0], 2)]
        train[paradigm] = done
        best = root / "models" / paradigm / "best.pt"
        summary = [line for line in done["tail"] if f"{paradigm}: " in line]
        print(f"train {paradigm}: exit {done['rc']}, {done['wall_s']:.0f} s wall, {done['cpu_s']:.0f} s CPU, "
              f"1-min load {before:.1f} -> {done['load_1min'][1]:.1f}"
              + (f"\n  {summary[-1].strip()}" if summary else ""), flush=True)
        if done["rc"] != 0 or not best.is_file():
            errors[paradigm] = "\n".join(done["tail"])
            print(f"  FAILED, see {done['log']}:\n  " + "\n  ".join(done["tail"]), flush=True)
            continue
        splits[paradigm] = split_of(best)

    checkpoints = [x for k in splits for x in ("--checkpoint", root / "models" / k / "best.pt")]
    results = {"commit": commit,
               "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "corpus": str(root), "corpus_seconds": made, "train": train, "errors": errors,
               "splits": splits}
    for label, data_dir, cache_dir in [("held-out", root / "training_data", root / "cache")] + (
            [("test", None, None)] if args.test_pairs else []):
        if label == "test":
            test_root = args.out / f"{args.persona}_{args.test_pairs}x{args.minutes:g}min_seed{args.corpus_seed + 1000}"
            corpus(test_root, pairs=args.test_pairs, minutes=args.minutes, seed=args.corpus_seed + 1000,
                   persona=args.persona, mastering=args.mastering, jobs=args.jobs)
            data_dir, cache_dir = test_root / "training_data", test_root / "cache"
        out_json = root / f"evaluate_{label}.json"
        done = editorbot("evaluate", *checkpoints, "--data-dir", data_dir, "--cache-dir", cache_dir,
                         "--json", out_json, "--overwrite", log=root / "logs" / f"evaluate_{label}.log")
        if not out_json.is_file():
            raise SystemExit(f"evaluate failed (exit {done['rc']}), see {done['log']}:\n" + "\n".join(done["tail"]))
        figures = json.loads(out_json.read_text())
        results[f"evaluate_{label}"] = {"seconds": done["wall_s"], "rc": done["rc"], "figures": {
            e: {"mean": r["mean"], "failures": r["failures"], "pairs": sorted(r["per_pair"])} for e, r in figures.items()}}
        scored = sorted({n for r in figures.values() for n in r["per_pair"]} |
                        {n for r in figures.values() for n in r["failures"]})
        print(f"\nevaluate on the {label} recordings ({len(scored)} pairs under {data_dir}; "
              f"{done['wall_s']:.0f} s): {' '.join(scored)}")
        print(table(figures, train), flush=True)
        for editor, r in figures.items():
            for name, message in r["failures"].items():
                print(f"  {editor} failed on {name}: {message}")

    vals = {k: s["val"] for k, s in splits.items()}
    same = len({json.dumps(v) for v in vals.values()}) <= 1
    print(f"\nheld out by each checkpoint ({'identical' if same else 'NOT IDENTICAL'}):")
    for k, v in vals.items():
        print(f"  {k:10s} {' '.join(v)}  (best.pt at step {splits[k]['step']}"
              + (f", phase {splits[k]['phase']})" if splits[k]['phase'] else ")"))
    load["end"] = os.getloadavg()
    results["load_average"] = load
    results["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"load average (1, 5, 15 min) at start {load['start']}, at end {tuple(round(x, 2) for x in load['end'])}; "
          f"{os.cpu_count()} cores; whole benchmark {results['wall_s']:.0f} s")
    (root / "bench_paradigms.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"figures: {root / 'bench_paradigms.json'}")
    if errors or not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
