"""`editorbot bc-labels` and `editorbot bc-augment`: behavioral-cloning labels for the RL
editor from the aligned pairs, and extra examples of the action types they rarely show."""
from __future__ import annotations

import argparse

from .features import add_layout_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bc-labels", help="per-step RL actions that reproduce each aligned human edit",
        description="Turn every aligned pair under DATA_DIR (pointer_sequences/, or a synthetic "
                    "corpus' truth/) into the RL actions that reproduce its human edit on the beat "
                    "grid, with the environment's state before each action. Prints the label "
                    "distribution and how closely replaying the labels gives back each edit.")
    add_layout_args(p)
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where the labels go, e.g. bc_rich.npz")
    p.add_argument("--grid", choices=("auto", "truth", "tracker"), default="auto",
                   help="beat grid: a synthetic pair's truth beats, the beat tracker's, or truth "
                        "when there is one (default)")
    p.add_argument("--config", help="RL config whose env settings the states use (configs/rl/*.json)")
    p.add_argument("--jobs", type=int, default=1, help="processes (default 1)")
    p.add_argument("names", nargs="*", metavar="NAME", help="label only these pairs")
    p.set_defaults(func=run_labels)

    a = sub.add_parser(
        "bc-augment", help="add BC examples of rare action types made from real recordings",
        description="For every action type with fewer than --min-samples labels, take real "
                    "recordings, change a passage so that the type is what repairs it (quieter, "
                    "detuned, slowed, reversed, swapped...), recompute the beat features and label "
                    "the repaired edit, until the type has enough examples. Types that nothing in "
                    "a raw recording calls for (distortion, reverb) are reported and left alone.")
    a.add_argument("--input", required=True, metavar="FILE.npz", help="labels from bc-labels")
    a.add_argument("--output", required=True, metavar="FILE.npz", help="labels plus the new examples")
    a.add_argument("--min-samples", type=int, default=1000, help="labels wanted per type (default 1000)")
    a.add_argument("--audio-dir", help="where the changed recordings are written (default: next to OUTPUT)")
    a.add_argument("--cache-dir", default="cache", help="default: cache")
    a.add_argument("--max-recordings", type=int, default=200,
                   help="stop after making this many changed recordings (default 200)")
    a.add_argument("--types", metavar="TYPE,...",
                   help="only these action types, e.g. GAIN,SWAP_NEXT (default: every rare one)")
    a.add_argument("--seed", type=int, default=0, help="default 0")
    a.set_defaults(func=run_augment)


def run_labels(args: argparse.Namespace) -> int:
    import numpy as np

    from ..config import load
    from ..errors import log
    from ..rl.bc_labels import build_bc_dataset, format_distribution
    from ..features import DEFAULT_PARAMS
    from ..rl.config import RLConfig

    config = load(RLConfig, args.config)
    # A new label file is made on the data contract's analysis grid (recorded in the file).
    dataset, labels = build_bc_dataset(args.data_dir, params=DEFAULT_PARAMS, cache_dir=args.cache_dir,
                                       names=args.names or None,
                                       grid=args.grid, env_config=config.env, jobs=args.jobs)
    dataset.save(args.out)
    print(format_distribution(dataset.actions))
    print("labels replayed in the environment, against the aligned edits:")
    ious = []
    for rec in dataset.recordings:
        lab = labels[rec.name]
        ious.append(lab.kept_iou(rec.features.duration_s, dataset.params))
        print(f"  {rec.name}: {len(lab.actions)} steps on {rec.features.n_beats} beats ({rec.grid} grid), "
              f"kept-raw IoU {ious[-1]:.3f}, episode reward {lab.reward:.2f}")
    print(f"mean kept-raw IoU {np.mean(ious):.3f}; {len(dataset)} steps of {len(dataset.recordings)} "
          f"recordings written to {args.out}")
    if min(ious) < 0.95:
        log.warning("some edits are reproduced below IoU 0.95: they cut between the grid's beats")
    return 0


def run_augment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ..rl.actions import ActionType
    from ..rl.bc_augment import augment
    from ..rl.bc_labels import BCDataset, format_distribution

    types = None
    if args.types:
        try:
            types = [ActionType[name.strip().upper()] for name in args.types.split(",") if name.strip()]
        except KeyError as err:
            raise UserError(f"--types: no action type {err.args[0]}; choose from "
                            f"{', '.join(t.name for t in ActionType)}") from None
    data = BCDataset.load(args.input)
    out = Path(args.output)
    if out.exists() and out.resolve() == Path(args.input).resolve():
        raise UserError(f"{out}: is the input; choose another --output")
    audio_dir = Path(args.audio_dir) if args.audio_dir else out.with_name(out.stem + "_audio")
    result = augment(data, min_samples=args.min_samples, audio_dir=audio_dir, cache_dir=args.cache_dir,
                     max_recordings=args.max_recordings, seed=args.seed, types=types)
    result.dataset.save(out)
    print(format_distribution(result.dataset.actions))
    for line in result.notes:
        print(line)
    print(f"{len(result.dataset) - len(data)} new steps from {result.n_recordings} changed recordings "
          f"(in {audio_dir}); written to {out}")
    return 0
