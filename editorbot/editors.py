"""One entry point for every editor: the rule-based one, or whatever a checkpoint holds.

A checkpoint (editorbot.checkpoint) is a dict whose 'kind' names its paradigm ('pointer',
'supervised', 'rl'); editorbot.<kind>.infer.propose_edit turns a raw file into an Edit.
"""
from __future__ import annotations

import importlib
import inspect
import os

from .checkpoint import KINDS, load_checkpoint  # noqa: F401  (the loader lives there)
from .edits import Edit
from .errors import UserError


def propose(raw_path: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
            target_duration_s: float | None = None, keep: float | None = None,
            allow_loops: bool = False, cache_dir: str | os.PathLike | None = None) -> Edit:
    """The edit an editor proposes for `raw_path`.

    Args:
        checkpoint: a trained model; None uses the rule-based structure editor.
        target_duration_s: wanted length of the edit in seconds, or
        keep: wanted fraction of the raw to keep (0..1). At most one of the two.
        allow_loops: let the rule-based editor play a passage more than twice to reach
            the length (a trained model plays what its training pairs taught it).
        cache_dir: a cache holding this raw's stems (`editorbot stems`), read by the models
            that use stems (pointer, RL) instead of separating them again; None: the
            pointer network separates them when it needs them, RL reads ./cache.
    """
    if target_duration_s is not None and keep is not None:
        raise UserError("give either --target-duration or --keep, not both")
    if keep is not None and not 0.0 < keep <= 1.0:
        raise UserError(f"--keep {keep}: must be a fraction in (0, 1], for example 0.3")
    if checkpoint is None:
        from .baseline import propose_edit
        return propose_edit(raw_path, target_duration_s=target_duration_s, keep=keep,
                            allow_loops=allow_loops)
    if allow_loops:
        raise UserError("--allow-loops is for the rule-based editor; a trained model loops as "
                        "its training pairs did: leave out --checkpoint or --allow-loops")
    ckpt = load_checkpoint(checkpoint)
    infer = importlib.import_module(f"editorbot.{ckpt['kind']}.infer")
    extra = {}
    if cache_dir is not None:
        if "cache_dir" not in inspect.signature(infer.propose_edit).parameters:
            raise UserError(f"--cache-dir: a {ckpt['kind']} model reads no cached stems")
        extra["cache_dir"] = cache_dir
    return infer.propose_edit(raw_path, ckpt, target_duration_s=target_duration_s, keep=keep, **extra)
