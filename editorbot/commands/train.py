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
    p.add_argument("--config", help="JSON config, e.g. configs/pointer/full.json (default: built-in; "
                                    "with --init, the settings that model was trained with)")
    _add_common(p, save_dir="models/pointer")
    p.add_argument("--init", metavar="base|scratch|PT",
                   help="fine-tune the base model shipped in the package (base: "
                        "editorbot/models/base_pointer.pt) or a pointer model's best.pt on your "
                        "pairs (same model settings) at train.finetune's lower rate and shorter "
                        "schedule, or start from random weights (scratch). Default: base; "
                        "scratch with --config (a new model of that file's settings)")
    p.add_argument("--epochs", type=int, help="train.epochs (train.finetune.epochs with --init)")
    p.set_defaults(func=run_pointer)


def add_supervised_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `supervised` to the subparsers of `editorbot train`."""
    p = sub.add_parser(
        "supervised", help="supervised mel reconstruction on aligned pairs",
        description="Train the supervised editor (label head + smooth gain treatment) on the "
                    "pairs under DATA_DIR, using their pointer_sequences/ from `editorbot prepare`.")
    _add_common(p, save_dir="models/supervised")
    p.add_argument("--config", help="a JSON config, e.g. configs/supervised/full.json")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--jobs", type=int, default=1, help="processes that load pairs (default 1)")
    p.set_defaults(func=_run_supervised)
    return p


def _add_common(p: argparse.ArgumentParser, *, save_dir: str) -> None:
    """The options every trainer takes, spelled the same way: --data-dir, --cache-dir,
    --save-dir, --log-dir, --resume, --overwrite, --max-minutes, --seed, --set, --no-progress
    (see editorbot.training.Run)."""
    p.add_argument("--data-dir", default="training_data",
                   help="the pairs, with pointer_sequences/ from `editorbot prepare` (default: training_data)")
    p.add_argument("--cache-dir", default="cache",
                   help="holds features/{name}_raw.npz (default: cache)")
    p.add_argument("--save-dir", default=save_dir,
                   help=f"where best.pt and latest.pt go (default: {save_dir})")
    p.add_argument("--log-dir", help="TensorBoard folder (default: SAVE_DIR/logs)")
    # --checkpoint: the RL trainer's earlier spelling of --resume.
    p.add_argument("--resume", "--checkpoint", dest="resume", metavar="PT",
                   help="carry on from a latest.pt (or best.pt) of an earlier run")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --save-dir that holds another run's checkpoints")
    p.add_argument("--max-minutes", type=float,
                   help="wall time for the whole run, every phase included; best.pt is written "
                        "by then (default: no limit)")
    p.add_argument("--seed", type=int, help="train.seed: initial weights and data order (the "
                   "train/validation split follows train.split_seed, the same in every paradigm)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set train.lr=1e-3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _run_supervised(args: argparse.Namespace) -> int:
    from ..supervised.train import run
    return _finish("supervised", run(args))


def _finish(paradigm: str, result) -> int:
    """Say what the run left behind; 130 after Ctrl-C, as a shell would."""
    from ..errors import log
    log.info(result.summary(paradigm))
    return 130 if result.interrupted else 0


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
    p.add_argument("--bc-weight", type=float, help="ppo.bc_weight (default 1.0 with --bc-mixed)")
    p.add_argument("--updates", type=int, help="train.n_updates (PPO updates)")
    p.add_argument("--n-envs", type=int, help="train.n_envs")
    p.add_argument("--subprocess", action="store_true", help="environments in worker processes")
    p.set_defaults(func=_run_rl)
    return p


def _run_rl(args: argparse.Namespace) -> int:
    from ..rl.train import run
    return _finish("rl", run(args))


def run_pointer(args: argparse.Namespace) -> int:
    from ..config import load
    from ..pointer.config import PointerConfig
    from ..pointer.train import init_config, train
    from ..training import Run, messages_above_bars

    args.init = default_init(args)
    run = Run.from_args(args)
    flags = {"finetune.epochs" if run.init is not None else "epochs": args.epochs, "seed": args.seed}
    overrides = [f"train.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    if run.init is not None and args.config is None:
        config = init_config(run.init, overrides + args.set)
    else:
        config = load(PointerConfig, args.config, overrides + args.set)
    with messages_above_bars():
        return _finish("pointer", train(config, run))


def default_init(args: argparse.Namespace) -> str:
    """What `train pointer` starts from when --init is not given: the shipped base, which
    measured level with or ahead of training from scratch on a musician's few pairs in less
    time (docs/results.md); from scratch when a --config describes a new model, when a run
    resumes with its own weights, or when this install ships no base."""
    from ..base import base_checkpoint
    from ..errors import log

    if args.init is not None:
        return args.init
    if args.config is not None or args.resume is not None:
        return "scratch"
    if base_checkpoint() is None:
        log.info("this editorbot ships no base model: training from scratch")
        return "scratch"
    return "base"
