"""A parameter-keyed npz cache with atomic writes.

Every entry stores its arrays plus a JSON `meta` record (the parameters it was made with
and a fingerprint of its source file). An entry whose meta differs from what is asked for,
or that cannot be read (an interrupted write from an older tool), is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import log

_HASH_BYTES = 1 << 20  # hash the first and last MiB of a source, plus size and mtime


def file_fingerprint(path: str | os.PathLike) -> str:
    """A cheap fingerprint of a file: size, modification time and a hash of both ends."""
    path = Path(path)
    st = path.stat()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_HASH_BYTES))
        if st.st_size > 2 * _HASH_BYTES:
            fh.seek(-_HASH_BYTES, os.SEEK_END)
            h.update(fh.read(_HASH_BYTES))
    return h.hexdigest()


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()  # what open() would give a new file; mkstemp gives 0600


def atomic_write_bytes(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call writer(tmp_path) then rename tmp_path onto `path`; nothing partial survives.

    The temp file sits in the target's folder (so the rename is atomic) and gets the
    permissions an ordinary new file would get.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, lambda tmp: tmp.write_text(text))


def save_npz(path: str | os.PathLike, meta: dict, **arrays: np.ndarray) -> Path:
    """Save arrays and a JSON-serialisable meta record to `path` atomically."""
    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return atomic_write_bytes(path, writer)


def load_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict] | None:
    """Load (arrays, meta) from `path`, or None when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {k: npz[k] for k in npz.files if k != "meta"}
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as err:
        log.warning("%s: unreadable cache entry (%s); recomputing", path, err)
        return None
    return arrays, meta


def cached(path: str | os.PathLike, meta: dict,
           compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Return the arrays at `path` if its meta equals `meta`, else compute, save and return.

    `meta` must be JSON-serialisable; it is compared after a JSON round trip.
    """
    want = json.loads(json.dumps(meta, sort_keys=True))
    entry = load_npz(path)
    if entry is not None and entry[1] == want:
        return entry[0]
    arrays = compute()
    save_npz(path, want, **arrays)
    return arrays
