"""Build the base editor shipped in the package: its corpus, its pretraining, and the copy.

    .venv/bin/python benchmarks/build_base.py [--pairs 300 --minutes 2 6 --seed 26 --jobs 2
                                               --max-minutes 150 --threads 2] [--ship]

1. editorbot.base.write_base_corpus: PAIRS synthetic sessions (the pretraining personas
   radio, trimmer and looper in turn, never highlights, solo_cutter or last_take; tempi 60
   to 200 BPM in 12 keys, the synth's instrument programs, raws of MINUTES low to high)
   kept as float16 raw mels and exact truth under OUT/corpus, no audio. Pairs already
   written with the same settings are kept, so a larger --pairs only adds the rest.
   With --real-jams N, also N trimmer jams of real music (realmusic.py's, Debian packages,
   built from --real-seed into the benchmarks' cache outside git): their raw mels and exact
   truth join the corpus as real_NN. The seeds bench_finetune_real.py holds out are refused.
2. `editorbot train pointer`'s own code (editorbot.pointer.train.train with a Run) with
   configs/pointer/base.json for at most --max-minutes of wall time, into OUT/model.
3. --ship: copies OUT/model/best.pt to editorbot/models/base_pointer.pt (refused over
   20 MB) and writes OUT/build.json, the figures editorbot/models/BASE_CARD.md quotes.

A script here rather than an `editorbot` command: building the base is the maintainers'
step that writes into the package; a musician only fine-tunes it (`editorbot train
pointer --init`). Prints the CPU seconds of each step (this process and its workers).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from common import OUT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MAX_SHIPPED_MB = 20.0
HELD_OUT_JAM_SEEDS = (0, 1)  # bench_finetune_real.py's --pair-seed runs: never in the base


def cpu_s() -> float:
    """CPU seconds of this process and of its finished workers."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def add_real_jams(layout, n: int, seed: int) -> list[str]:
    """n trimmer jams of real music (realmusic.build_trimmer, cached outside git) in the
    corpus as real_NN, as write_base_corpus keeps its sessions: the raw's mel in float16 and
    the exact truth as pointer files, no audio. Jams written before are kept. Their names."""
    from bench_levels_real import pairs

    from editorbot.base import store_pair
    from editorbot.cache import load_npz
    from editorbot.edits import Edit
    from editorbot.features import DEFAULT_PARAMS as params
    from editorbot.precache import mel_for

    names = []
    for folder, _ in pairs(n, seed)[:n]:
        name = "real_" + folder.name.removeprefix("trimmer_")
        names.append(name)
        if layout.pointer_file(name, "pointers.npy").is_file() and load_npz(layout.features(name, "raw")):
            continue
        edit = Edit.load(folder / "truth.json")
        store_pair(layout, name, mel_for(folder / "raw.flac", params=params), edit,
                   params.n_frames(int(round(edit.duration_s * params.sr))),
                   source=f"{folder.parent.name}/{folder.name}")
    print(f"real music: {len(names)} trimmer jams of seed {seed} ({names[0]} to {names[-1]})", flush=True)
    return names


def main() -> None:
    import torch

    from editorbot.base import BASE_CHECKPOINT, mark_made_up, write_base_corpus
    from editorbot.checkpoint import load_checkpoint
    from editorbot.config import load
    from editorbot.pointer.config import PointerConfig
    from editorbot.pointer.train import train
    from editorbot.training import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(OUT / "base"), help="work folder (default benchmarks/out/base)")
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--minutes", type=float, nargs=2, default=[2.0, 6.0], metavar=("LOW", "HIGH"))
    p.add_argument("--seed", type=int, default=26, help="the corpus seed")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="corpus worker processes")
    p.add_argument("--config", default=str(REPO / "configs" / "pointer" / "base.json"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--max-minutes", type=float, default=150.0, help="wall time of the pretraining")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    p.add_argument("--real-jams", type=int, default=0, help="trimmer jams of real music to add")
    p.add_argument("--real-seed", type=int, default=2,
                   help=f"the seed they are built from (not {', '.join(map(str, HELD_OUT_JAM_SEEDS))}: "
                        "bench_finetune_real.py's)")
    p.add_argument("--ship", action="store_true", help=f"copy best.pt to {BASE_CHECKPOINT}")
    args = p.parse_args()
    out = Path(args.out)
    if args.real_jams and args.real_seed in HELD_OUT_JAM_SEEDS:
        raise SystemExit(f"--real-seed {args.real_seed}: bench_finetune_real.py holds out the jams of "
                         f"seeds {HELD_OUT_JAM_SEEDS}; build the base's from another")

    t0, c0 = time.time(), cpu_s()
    layout = write_base_corpus(out / "corpus", pairs=args.pairs, seed=args.seed,
                               minutes=tuple(args.minutes), jobs=args.jobs)
    real = add_real_jams(layout, args.real_jams, args.real_seed) if args.real_jams else []
    corpus = {"wall_s": time.time() - t0, "cpu_s": cpu_s() - c0, "pairs": args.pairs,
              "minutes": args.minutes, "seed": args.seed, "real_jams": len(real),
              "real_seed": args.real_seed if real else None,
              "disk_mb": sum(f.stat().st_size for f in (out / "corpus").rglob("*") if f.is_file()) / 2**20}
    print(f"corpus: {args.pairs} pairs in {corpus['wall_s']:.0f} s ({corpus['cpu_s']:.0f} s CPU), "
          f"{corpus['disk_mb']:.0f} MB", flush=True)

    torch.set_num_threads(args.threads)
    config = load(PointerConfig, args.config, args.set)
    t0, c0 = time.time(), cpu_s()
    result = train(config, Run(out / "model", layout.data_dir, layout.cache_dir,
                               max_minutes=args.max_minutes, overwrite=True))
    mark_made_up(out / "model" / "best.pt")  # its jumps_back is the personas', not a musician's
    best = load_checkpoint(out / "model" / "best.pt")
    pretrain = {"wall_s": time.time() - t0, "cpu_s": cpu_s() - c0, "steps": result.steps,
                "threads": args.threads, "max_minutes": args.max_minutes,
                "best_step": best["step"], "metrics": best["metrics"],
                "train_recordings": len(best["split"]["train"]), "val_recordings": len(best["split"]["val"]),
                "load_average": os.getloadavg()}
    print(f"pretraining: {result.steps} steps in {pretrain['wall_s']:.0f} s ({pretrain['cpu_s']:.0f} s CPU); "
          f"best.pt at step {best['step']}: " + ", ".join(
              f"{k} {v:.4g}" for k, v in best["metrics"].items() if isinstance(v, float)), flush=True)
    summary = {"command": " ".join(sys.argv), "corpus": corpus, "pretraining": pretrain,
               "config": args.config, "overrides": args.set}
    if args.ship:
        size_mb = (out / "model" / "best.pt").stat().st_size / 2**20
        if size_mb > MAX_SHIPPED_MB:
            raise SystemExit(f"{out / 'model' / 'best.pt'}: {size_mb:.1f} MB, over the {MAX_SHIPPED_MB} MB "
                             "a shipped base may weigh; use a smaller model in the config")
        BASE_CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
        tmp = BASE_CHECKPOINT.with_suffix(".part")
        shutil.copyfile(out / "model" / "best.pt", tmp)
        os.replace(tmp, BASE_CHECKPOINT)
        summary["shipped_mb"] = size_mb
        print(f"shipped {BASE_CHECKPOINT} ({size_mb:.2f} MB)")
    (out / "build.json").write_text(json.dumps(summary, indent=1, default=float))


if __name__ == "__main__":
    main()
