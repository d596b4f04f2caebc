"""Where a command may write: never onto one of its own inputs, and onto a file that
already exists only when the user says --overwrite.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .errors import UserError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: Iterable[str | os.PathLike], *,
                  inputs: dict[str, str | os.PathLike | None], overwrite: bool) -> None:
    """Refuse to start a command whose outputs would replace its inputs or earlier work.

    Args:
        outputs: every file the command will write.
        inputs: every file the command reads, by what it is ('the raw recording': path;
            None for one not given): an output may never be one, --overwrite or not.
        overwrite: the user's --overwrite: outputs that exist may be replaced.

    Raises UserError naming the first output in the way and the fix.
    """
    outputs = [Path(p) for p in outputs]
    inputs = {what: Path(p) for what, p in inputs.items() if p is not None and Path(p).exists()}
    for out in outputs:
        if not out.exists() and not out.is_symlink():
            continue
        if out.is_dir():
            raise UserError(f"{out}: is a folder; name an output file")
        for what, src in inputs.items():
            if _same_file(out, src):
                raise UserError(f"{out}: is {what}, an input of this command; choose another "
                                "output name")
    if overwrite:
        return
    existing = [out for out in outputs if out.exists() or out.is_symlink()]
    if existing:
        more = f" (and {len(existing) - 1} more of its outputs)" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]}: already exists{more}; add --overwrite to replace it, "
                        "or choose another output name")
