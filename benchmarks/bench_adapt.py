"""How a base editor adapts to an editor it never saw: fine-tuned from the base vs from scratch.

    .venv/bin/python benchmarks/bench_adapt.py [--persona highlights] [--pairs 20] [--curve 20]
        [--test-pairs 8] [--minutes 4] [--max-minutes 10] [--init editorbot/models/base_pointer.pt]

For each persona (one held out of pretraining: highlights, solo_cutter, last_take):
1. A synthetic corpus of --pairs training pairs and --test-pairs held-out pairs of another
   seed, with audio and exact truth pointers (bench_pointer.prepare_corpus); the first N of
   the training pairs for each N of --curve. In last_take's sessions every finished song
   is played again (RETAKE_PROB; the generator's default is never): a song played once
   has no other take, and its last full take is what a trimmer keeps too. Its songs are
   long (jams with long solos): two full takes of one need raws of about 10 minutes
   (--minutes 10: 15 of the 20 training sessions and 6 of the 8 held-out ones hold one).
2. Two `editorbot train pointer` runs on those N pairs, started at once, each with the same
   --max-minutes of wall time, configs/pointer/cpu.json (the base's model settings) and
   train.val_fraction 0.2 (a fifth of the N pairs chooses best.pt) and --epochs 1000 (the
   deadline ends both): from the base (--init, with the trainer's own fine-tuning settings)
   and from scratch (cpu.json as shipped). The CPU seconds of each training process are measured with os.wait4 (its
   own rusage), not wall time.
3. `evaluate_editors` on the held-out pairs: the rule-based editor, the base as it ships
   (no fine-tuning), and both runs; kept-raw IoU and cut F1 within a beat, free length.

Prints one table per persona and N, the CPU seconds and the load average, and writes
OUT/adapt/result.json (runs of earlier invocations kept, keyed persona/N).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench_pointer import prepare_corpus
from common import OUT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The chance that a session plays a finished song again in full, per persona (others: never).
# The base's corpus replays about one song in seven (editorbot.base), and its trimmer keeps
# both takes: an editor who keeps only the last differs only where songs are played twice.
RETAKE_PROB = {"last_take": 1.0}


def subset(layout, names: list[str], out: Path):
    """A layout holding only `names` of `layout` (links to its pointer files and mels)."""
    from editorbot.layout import Layout

    sub = Layout(out / "training_data", out / "cache")
    for name in names:
        links = [(layout.pointer_file(name, w), sub.pointer_file(name, w))
                 for w in ("pointers.npy", "ops.npy", "info.json")]
        links.append((layout.features(name, "raw"), sub.features(name, "raw")))
        links.append((layout.data_dir / "truth" / f"{name}.json", sub.data_dir / "truth" / f"{name}.json"))
        for src, dst in links:
            # bench_pointer.prepare_corpus writes no info.json: no link to a missing file,
            # and a link an earlier run left (dangling or not) is kept.
            if not src.exists() or dst.is_symlink() or dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src.resolve())
    return sub


def start_training(layout, save_dir: Path, *, init: Path | None, max_minutes: float, seed: int,
                   log: Path) -> subprocess.Popen:
    """`editorbot train pointer` in its own process, output to `log`."""
    args = [sys.executable, "-m", "editorbot", "train", "pointer",
            "--config", str(REPO / "configs" / "pointer" / "cpu.json"),
            "--data-dir", str(layout.data_dir), "--cache-dir", str(layout.cache_dir),
            "--save-dir", str(save_dir), "--overwrite", "--no-progress",
            "--max-minutes", str(max_minutes), "--seed", str(seed),
            "--epochs", "1000", "--set", "train.val_fraction=0.2"]
    if init is not None:
        args += ["--init", str(init)]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    fh = open(log, "w")
    fh.write("$ " + " ".join(args) + "\n")
    fh.flush()
    return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env)


def wait_cpu_s(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for `proc`; its exit status and CPU seconds (user + system, its own rusage)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def main() -> None:
    from editorbot.baseline import propose_edit as rule_based
    from editorbot.checkpoint import load_checkpoint
    from editorbot.evaluate import evaluate_editors
    from editorbot.pointer.infer import propose_edit

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(OUT / "adapt"))
    p.add_argument("--persona", nargs="+", default=["highlights"])
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--curve", type=int, nargs="+", default=[20], help="training pairs per run")
    p.add_argument("--test-pairs", type=int, default=8)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--max-minutes", type=float, default=10.0, help="wall time of each training run")
    p.add_argument("--seed", type=int, default=0, help="train.seed of both runs")
    p.add_argument("--init", default=str(REPO / "editorbot" / "models" / "base_pointer.pt"))
    p.add_argument("--jobs", type=int, default=1, help="processes that write the corpus")
    args = p.parse_args()
    out = Path(args.out)
    init = Path(args.init)
    base = load_checkpoint(init)
    # Runs of earlier invocations (other personas, other N) are kept beside this one's.
    earlier = json.loads((out / "result.json").read_text()) if (out / "result.json").is_file() else {}
    summary: dict = {"runs": earlier.get("runs", {})}
    for persona in args.persona:
        root = out / persona
        retake = RETAKE_PROB.get(persona, 0.0)
        train_layout = prepare_corpus(root / "train", pairs=args.pairs, seed=2601, minutes=args.minutes,
                                      persona=persona, jobs=args.jobs, retake_prob=retake)
        test_layout = prepare_corpus(root / "test", pairs=args.test_pairs, seed=3601, minutes=args.minutes,
                                     persona=persona, jobs=args.jobs, retake_prob=retake)
        names = sorted(f.name[:-len("_pointers.npy")] for f in train_layout.pointer_dir.glob("*_pointers.npy"))
        for n in args.curve:
            layout = subset(train_layout, names[:n], root / f"train_{n}")
            runs = {"from base": root / f"base_{n}", "from scratch": root / f"scratch_{n}"}
            procs = {label: start_training(layout, save_dir, init=init if label == "from base" else None,
                                           max_minutes=args.max_minutes, seed=args.seed,
                                           log=root / f"{save_dir.name}.log")
                     for label, save_dir in runs.items()}
            cpu = {}
            for label, proc in procs.items():
                rc, cpu[label] = wait_cpu_s(proc)
                if rc:
                    raise SystemExit(f"{label} training failed (exit {rc}); see {root / runs[label].name}.log")
            load_avg = os.getloadavg()
            ckpts = {label: load_checkpoint(save_dir / "best.pt") for label, save_dir in runs.items()}
            editors = {"rule-based": rule_based,
                       "base, not fine-tuned": lambda raw, **kw: propose_edit(
                           raw, base, cache_dir=test_layout.cache_dir, progress=False, **kw)}
            for label, ckpt in ckpts.items():
                editors[f"{label}, {n} pairs"] = (lambda c: lambda raw, **kw: propose_edit(
                    raw, c, cache_dir=test_layout.cache_dir, progress=False, **kw))(ckpt)
            print(f"\n{persona}, {n} training pairs of {args.minutes} min, {args.max_minutes} wall min each; "
                  + ", ".join(f"{k}: {v:.0f} CPU s, {ckpts[k]['step']} steps at best.pt" for k, v in cpu.items())
                  + f"; load average {load_avg[0]:.1f}", flush=True)
            results = evaluate_editors(test_layout.data_dir, editors, cache_dir=test_layout.cache_dir,
                                       progress=False)
            summary["runs"][f"{persona}/{n}"] = {
                "command": " ".join(sys.argv), "init": str(init), "cpu_s": cpu, "load_average": load_avg,
                "steps": {k: c["step"] for k, c in ckpts.items()},
                "mean": {k: r["mean"] for k, r in results.items()}}
            (out / "result.json").write_text(json.dumps(summary, indent=1, default=float))


if __name__ == "__main__":
    main()
