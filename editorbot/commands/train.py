"""`editorbot train PARADIGM`: train a model on the aligned training pairs.

One subcommand per paradigm: pointer, supervised, rl. The parsers are here and import
nothing heavy, so `editorbot train --help` answers at once; each command imports its
trainer (and torch) when it runs.
"""
from __future__ import annotations

import argparse
import json


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
    p.add_argument("--cache-dir", help="holds features/{name}_raw.npz (train.cache_dir)")
    p.add_argument("--pointer-dir", help="holds {name}_pointers.npy (train.pointer_dir)")
    p.add_argument("--save-dir", help="where best.pt and latest.pt go (train.save_dir)")
    p.add_argument("--log-dir", help="TensorBoard logs (train.log_dir; default SAVE_DIR/logs)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--max-minutes", type=float, help="stop after this much wall time (train.max_minutes)")
    p.add_argument("--seed", type=int, help="train.seed: same seed, same run")
    p.add_argument("--resume", metavar="LATEST_PT", help="carry on from a latest.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --save-dir that holds another run's checkpoints")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set model.d_model=96 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_pointer)


def add_supervised_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `supervised` to the subparsers of `editorbot train`."""
    p = sub.add_parser(
        "supervised", help="supervised mel reconstruction on aligned pairs",
        description="Train the supervised editor (label head + smooth gain treatment) on the "
                    "pairs under DATA_DIR, using their pointer_sequences/ from `editorbot prepare`.")
    p.add_argument("--data-dir", default="training_data", help="default: training_data")
    p.add_argument("--cache-dir", default="cache", help="default: cache")
    p.add_argument("--save-dir", default="models/supervised", help="default: models/supervised")
    p.add_argument("--config", help="a JSON config, e.g. configs/supervised/full.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-3 (repeatable)")
    p.add_argument("--epochs", type=int, help="epochs (default: the config's train.epochs)")
    p.add_argument("--resume", help="continue from a checkpoint (e.g. models/supervised/latest.pt)")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --save-dir that holds another run's checkpoints")
    p.add_argument("--log-dir", help="TensorBoard folder (default: SAVE_DIR/logs)")
    p.add_argument("--jobs", type=int, default=1, help="processes that load pairs (default 1)")
    p.set_defaults(func=_run_supervised)
    return p


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
    p.add_argument("--data-dir", default="training_data", help="default: training_data")
    p.add_argument("--cache-dir", default="cache", help="default: cache")
    p.add_argument("--save-dir", default="models/rl", help="where best.pt and latest.pt go (default models/rl)")
    p.add_argument("--log-dir", help="TensorBoard folder (default: SAVE_DIR/logs)")
    p.add_argument("--config", help="a JSON config, e.g. configs/rl/small.json")
    p.add_argument("--bc-pretrain", metavar="FILE", help="BC labels to pretrain on (bc_rich.npz)")
    p.add_argument("--bc-pretrain-epochs", type=int, help="train.bc_pretrain_epochs")
    p.add_argument("--bc-mixed", metavar="FILE", help="BC labels whose loss is mixed into PPO")
    p.add_argument("--bc-weight", type=float, help="ppo.bc_weight (default 0.5 with --bc-mixed)")
    p.add_argument("--checkpoint", metavar="PT", help="continue from a best.pt / latest.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --save-dir that holds another run's checkpoints")
    p.add_argument("--updates", type=int, help="train.n_updates (PPO updates)")
    p.add_argument("--n-envs", type=int, help="train.n_envs")
    p.add_argument("--subprocess", action="store_true", help="environments in worker processes")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set ppo.ent_coef=0.02 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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

    flags = {"cache_dir": args.cache_dir, "pointer_dir": args.pointer_dir, "save_dir": args.save_dir,
             "log_dir": args.log_dir, "epochs": args.epochs, "max_minutes": args.max_minutes,
             "seed": args.seed}
    overrides = [f"train.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    config = load(PointerConfig, args.config, overrides + args.set)
    result = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if result.interrupted:
        return 130
    shown = {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)}
    log.info("pointer: %d steps, %d epochs in %.0f s; best.pt and latest.pt in %s; last validation %s",
             result.global_step, result.epochs_done, result.seconds, result.save_dir, shown or "none")
    return 0
