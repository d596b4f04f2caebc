"""Checkpoints: one writer, one loader, for every kind (pointer, supervised, rl).

A checkpoint is a dict of plain data (str, numbers, lists, dicts, tensors) saved with
torch.save and loaded with torch.load(weights_only=True): a file that needs any other
object to load is refused, so a checkpoint from elsewhere cannot run code when it loads.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

from .cache import atomic_write_bytes
from .config import from_dict
from .errors import UserError
from .features import FeatureParams

KINDS = ("pointer", "supervised", "rl")
# What each kind's inference and resume read, beyond 'kind'.
REQUIRED_KEYS = {
    "pointer": ("config", "feature_params", "model_state"),
    "supervised": ("config", "feature_params", "model_state"),
    "rl": ("config", "model_state", "normalizer"),
}
CHECKPOINT_NAMES = ("best.pt", "latest.pt")


def save_checkpoint(path: str | os.PathLike, payload: dict) -> Path:
    """torch.save `payload` to `path` atomically (temp file, then rename), as plain data:
    numpy scalars become Python numbers, numpy arrays lists, versions and paths strings,
    so that `load_checkpoint` reads it back with weights_only=True."""
    import torch
    plain = _plain(payload)
    return atomic_write_bytes(path, lambda tmp: torch.save(plain, tmp))


def _plain(value):
    import numpy as np
    import torch
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (str, os.PathLike)):
        return str(value)  # also TorchVersion (a str subclass) and Path
    if value is None or isinstance(value, (bool, int, float, torch.Tensor)):
        return value
    raise TypeError(f"a checkpoint holds plain data only, not {type(value).__name__}")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict on the CPU, without running code, and check its schema.

    Raises UserError (one line naming the file) for a missing file, a file that is not a
    checkpoint, one that holds objects other than plain data (refused unread: unpickling
    them could run code), and one that lacks what its kind needs.
    """
    import torch
    from torch.torch_version import TorchVersion

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint; train one with `editorbot train ...`")
    try:
        # TorchVersion (a str) is what checkpoints written before versions were stored as
        # strings hold; it builds nothing but a string.
        with torch.serialization.safe_globals([TorchVersion]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not refused_as_unsafe(err):
            raise UserError(f"{path}: not a readable checkpoint (damaged, cut short or not a "
                            "checkpoint); train or copy it again") from None
        raise UserError(f"{path}: refused: it holds {_foreign_object(err)}, not only weights and "
                        "settings, and loading it could run code; use a checkpoint written by "
                        "`editorbot train`") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            IndexError, TypeError, AttributeError, MemoryError, OverflowError) as err:
        raise UserError(f"{path}: not a readable checkpoint ({_first_line(err)}); train or copy "
                        "it again") from None
    if not isinstance(ckpt, dict) or ckpt.get("kind") not in KINDS:
        raise UserError(f"{path}: not an editorbot checkpoint (no 'kind' among {', '.join(KINDS)}); "
                        "pass a best.pt or latest.pt from `editorbot train`")
    missing = [k for k in REQUIRED_KEYS[ckpt["kind"]] if k not in ckpt]
    if missing:
        raise UserError(f"{path}: a {ckpt['kind']} checkpoint without {', '.join(missing)}; "
                        "it was cut short or edited: train or copy it again")
    for key in ("config", "feature_params", "model_state", "normalizer"):
        if key in ckpt and not isinstance(ckpt[key], dict):
            raise UserError(f"{path}: its '{key}' is a {type(ckpt[key]).__name__}, not a dict; "
                            "train or copy it again")
    if "feature_params" in ckpt:
        from_dict(FeatureParams, ckpt["feature_params"], where=f"{path}: feature_params")
    if not all(isinstance(v, torch.Tensor) for v in ckpt["model_state"].values()):
        raise UserError(f"{path}: its model_state holds values that are not tensors; "
                        "train or copy it again")
    if "levels" in ckpt:  # the editor's levels (editorbot.levels), in checkpoints that have them
        from .levels import check_levels
        check_levels(ckpt["levels"], where=str(path))
    split = stored_split(ckpt, where=str(path))
    if split is not None:
        ckpt["split"] = split
    return ckpt


def stored_split(ckpt: dict, *, where: str) -> dict[str, list[str]] | None:
    """The recordings a checkpoint was trained on and held out, {"train": [...], "val": [...]},
    as every trainer writes them; also from supervised checkpoints written before the split
    was stored this way (top-level train_names / val_names). None when it records none."""
    if "split" in ckpt:
        split = ckpt["split"]
    elif "train_names" in ckpt or "val_names" in ckpt:
        split = {"train": ckpt.get("train_names", []), "val": ckpt.get("val_names", [])}
    else:
        return None
    ok = (isinstance(split, dict) and set(split) == {"train", "val"}
          and all(isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v)
                  for v in split.values()))
    if not ok:
        raise UserError(f"{where}: its split is not two lists of recording names (train, val); "
                        "train or copy it again")
    return {"train": list(split["train"]), "val": list(split["val"])}


def load_state(module, state: dict, *, where: str) -> None:
    """module.load_state_dict(state), with a one-line error when the two do not fit."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else "")
        raise UserError(f"{where}: its weights do not fit the model its config describes "
                        f"({detail[:120]}); train or copy it again") from None


def check_save_dir(save_dir: str | os.PathLike, *, resume: str | os.PathLike | None,
                   overwrite: bool, resume_flag: str = "--resume") -> None:
    """Refuse to start a new run in a folder that holds an earlier run's checkpoints.

    A run may write there when it resumes (it carries on that run's best score, so best.pt
    is replaced only by a better one) or when the user says --overwrite; otherwise a worse
    new best.pt could replace a better old one.
    """
    save_dir = Path(save_dir)
    held = [n for n in CHECKPOINT_NAMES if (save_dir / n).exists()]
    if not held or overwrite or resume is not None:
        return
    raise UserError(f"{save_dir}: holds {' and '.join(held)} of an earlier run; carry it on with "
                    f"{resume_flag} {save_dir / 'latest.pt'}, choose another --save-dir, or add "
                    "--overwrite to replace them")


def refused_as_unsafe(err: pickle.UnpicklingError) -> bool:
    """Whether torch.load(weights_only=True) refused an object it may not build (rather
    than failing on bytes that are no pickle at all)."""
    text = str(err)
    return "GLOBAL" in text or "Unsupported class" in text or "reduce" in text.lower()


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:120] if text else type(err).__name__


def _foreign_object(err: pickle.UnpicklingError) -> str:
    """The object a weights-only load refused, as torch names it ('an object of GLOBAL
    posix.system'), else 'objects other than tensors and plain data'."""
    for line in str(err).splitlines():
        line = line.strip()
        if "GLOBAL" in line:
            name = line.split("GLOBAL", 1)[1].split()[0].rstrip(",.:;")
            return f"a pickled {name}"
    return "pickled objects other than tensors and plain data"
