"""`editorbot train PARADIGM`: train a model on the aligned training pairs.

One subcommand per paradigm: pointer, supervised, rl. The supervised and rl parsers live
beside their trainers (editorbot.supervised.train, editorbot.rl.train).
"""
from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction, *, paradigms_needed: bool = True) -> None:
    """Add `train`. paradigms_needed=False (a command line without 'train') leaves out the
    supervised and rl parsers, whose modules import torch: `editorbot --help` stays fast."""
    p = sub.add_parser(
        "train", help="train a model on aligned pairs (pointer, supervised, rl)",
        description="Train a model on the pairs that `editorbot prepare` aligned. "
                    "Choose the paradigm as a subcommand.")
    paradigms = p.add_subparsers(dest="paradigm", metavar="PARADIGM")
    _add_pointer(paradigms)
    if paradigms_needed:
        _add_lazily(paradigms, "supervised", "supervised mel reconstruction on aligned pairs")
        _add_lazily(paradigms, "rl", "behavioral cloning + PPO over factored beat actions")
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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set model.d_model=96 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_pointer)


def _add_lazily(paradigms: argparse._SubParsersAction, name: str, summary: str) -> None:
    """Add `train NAME` with the parser its trainer module defines (`add_NAME_parser`)."""
    import importlib

    module = importlib.import_module(f"editorbot.{name}.train")
    getattr(module, f"add_{name}_parser")(paradigms)


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
    result = train(config, resume=args.resume, progress=not args.no_progress)
    if result.interrupted:
        return 130
    shown = {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)}
    log.info("pointer: %d steps, %d epochs in %.0f s; best.pt and latest.pt in %s; last validation %s",
             result.global_step, result.epochs_done, result.seconds, result.save_dir, shown or "none")
    return 0
