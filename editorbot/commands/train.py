"""`editorbot train PARADIGM`: train a model on the aligned training pairs.

One subcommand per paradigm: pointer, supervised, rl. The parsers are here and import
nothing heavy, so `editorbot train --help` answers at once; each command imports its
trainer (and torch) when it runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `train` with its pointer, supervised and rl subcommands."""
    p = sub.add_parser(
        "train", help="train a model on aligned pairs (pointer, supervised, rl)",
        description="Train a model on the pairs that `editorbot prepare` aligned. "
                    "Choose the paradigm as a subcommand.")
    paradigms = p.add_subparsers(dest="paradigm", metavar="PARADIGM")
    _add_pointer(paradigms)
    add_supervised_parser(paradigms)
    add_rl_parser(paradigms)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _add_pointer(paradigms: argparse._SubParsersAction) -> None:
    p = paradigms.add_parser(
        "pointer", help="pointer network: for each edit frame, the raw frame to copy",
        description="Train the pointer network. Settings come from --config (a JSON file of "
                    "PointerConfig: model, train, decode), then the flags below, then --set. "
                    "Runs under torchrun for several processes (DistributedDataParallel).")
    p.add_argument("--config", help="JSON config, e.g. configs/pointer/full.json (default: built-in)")
    _add_common(p, defaults=False)
    p.add_argument("--pointer-dir", help="holds {name}_pointers.npy (train.pointer_dir; default "
                   "DATA_DIR/pointer_sequences)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--max-minutes", type=float, help="stop after this much wall time (train.max_minutes)")
    p.set_defaults(func=run_pointer)


def add_supervised_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `supervised` to the subparsers of `editorbot train`."""
    p = sub.add_parser(
        "supervised", help="supervised mel reconstruction on aligned pairs",
        description="Train the supervised editor (label head + smooth gain treatment) on the "
                    "pairs under DATA_DIR, using their pointer_sequences/ from `editorbot prepare`.")
    _add_common(p, save_dir="models/supervised")
    p.add_argument("--config", help="a JSON config, e.g. configs/supervised/full.json")
    p.add_argument("--epochs", type=int, help="epochs (default: the config's train.epochs)")
    p.add_argument("--jobs", type=int, default=1, help="processes that load pairs (default 1)")
    p.set_defaults(func=_run_supervised)
    return p


def _add_common(p: argparse.ArgumentParser, *, save_dir: str | None = None,
                defaults: bool = True) -> None:
    """The options every trainer takes, spelled the same way: --data-dir, --cache-dir,
    --save-dir, --log-dir, --resume, --overwrite, --seed, --set, --no-progress.

    Args:
        defaults: give --data-dir, --cache-dir and --save-dir their defaults here (the
            pointer trainer leaves them to its config's train section).
    """
    p.add_argument("--data-dir", default="training_data" if defaults else None,
                   help="the pairs, with pointer_sequences/ (default: training_data)")
    p.add_argument("--cache-dir", default="cache" if defaults else None,
                   help="holds features/{name}_raw.npz (default: cache)")
    p.add_argument("--save-dir", default=save_dir if defaults else None,
                   help=f"where best.pt and latest.pt go (default: {save_dir or 'train.save_dir'})")
    p.add_argument("--log-dir", help="TensorBoard folder (default: SAVE_DIR/logs)")
    # --checkpoint: the RL trainer's earlier spelling of --resume.
    p.add_argument("--resume", "--checkpoint", dest="resume", metavar="PT",
                   help="carry on from a latest.pt (or best.pt) of an earlier run")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --save-dir that holds another run's checkpoints")
    p.add_argument("--seed", type=int, help="train.seed: initial weights and data order (the "
                   "train/validation split follows train.split_seed, the same in every paradigm)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set train.lr=1e-3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_supervised(args: argparse.Namespace) -> int:
    from ..supervised.train import run
    return run(args)


def add_rl_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `rl` to the subparsers of `editorbot train`."""
    p = sub.add_parser(
        "rl", help="behavioral cloning + PPO over factored beat actions",
        description="Train the RL editor on the pairs under DATA_DIR: BC pretraining on labels "
                    "from `editorbot bc-labels` (--bc-pretrain), then PPO with the BC loss mixed "
                    "in (--bc-mixed, --bc-weight). Settings: --config (configs/rl/*.json), then "
                    "the flags, then --set.")
    _add_common(p, save_dir="models/rl")
    p.add_argument("--config", help="a JSON config, e.g. configs/rl/small.json")
    p.add_argument("--bc-pretrain", metavar="FILE", help="BC labels to pretrain on (bc_rich.npz)")
    p.add_argument("--bc-pretrain-epochs", type=int, help="train.bc_pretrain_epochs")
    p.add_argument("--bc-mixed", metavar="FILE", help="BC labels whose loss is mixed into PPO")
    p.add_argument("--bc-weight", type=float, help="ppo.bc_weight (default 0.5 with --bc-mixed)")
    p.add_argument("--updates", type=int, help="train.n_updates (PPO updates)")
    p.add_argument("--n-envs", type=int, help="train.n_envs")
    p.add_argument("--subprocess", action="store_true", help="environments in worker processes")
    p.set_defaults(func=_run_rl)
    return p


def _run_rl(args: argparse.Namespace) -> int:
    from ..rl.train import run
    return run(args)


def run_pointer(args: argparse.Namespace) -> int:
    from ..config import load
    from ..errors import log
    from ..pointer.config import PointerConfig
    from ..pointer.train import train

    pointer_dir = args.pointer_dir
    if pointer_dir is None and args.data_dir is not None:
        pointer_dir = str(Path(args.data_dir) / "pointer_sequences")
    flags = {"cache_dir": args.cache_dir, "pointer_dir": pointer_dir, "save_dir": args.save_dir,
             "log_dir": args.log_dir, "epochs": args.epochs, "max_minutes": args.max_minutes,
             "seed": args.seed}
    overrides = [f"train.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    config = load(PointerConfig, args.config, overrides + args.set)
    result = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if result.interrupted:
        return 130
    shown = {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)}
    log.info("pointer: %d steps, %d epochs in %.0f s; %s in %s; last validation %s",
             result.global_step, result.epochs_done, result.seconds,
             " and ".join(result.wrote) or "no checkpoint written", result.save_dir, shown or "none")
    return 0
