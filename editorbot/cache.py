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
import tokenize
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import UserError, log

_HASH_BYTES = 1 << 20  # hash the first and last MiB of a source, plus size and mtime
# A temp file of a write killed before its rename is removed by the next write into its
# folder: when the process that named itself in it is gone, or, for temp files from
# versions that did not name it, when it is this old.
UNNAMED_PART_AGE_S = 3600.0
_swept: set[str] = set()  # folders this process has already cleaned


def file_fingerprint(path: str | os.PathLike) -> str:
    """A cheap fingerprint of a file: size, modification time and a hash of both ends.

    Raises UserError (naming the file) for a missing, unreadable or non-regular file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not a readable file (missing, a folder or a broken link); "
                        "check the path")
    h = hashlib.blake2b(digest_size=16)
    try:
        st = path.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        with open(path, "rb") as fh:
            h.update(fh.read(_HASH_BYTES))
            if st.st_size > 2 * _HASH_BYTES:
                fh.seek(-_HASH_BYTES, os.SEEK_END)
                h.update(fh.read(_HASH_BYTES))
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror}); fix its permissions or copy "
                        "it again") from None
    return h.hexdigest()


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()  # what open() would give a new file; mkstemp gives 0600


def atomic_write_bytes(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call writer(tmp_path) then rename tmp_path onto `path`; nothing partial survives.

    The temp file (.{name}.{pid}.XXXXXXXX.part) sits in the target's folder (so the rename
    is atomic) and gets the permissions an ordinary new file would get. The first write
    into a folder removes the temp files that killed writers left there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftover_parts(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_leftover_parts(folder: str | os.PathLike, *, again: bool = False) -> list[Path]:
    """Remove the temp files of atomic writes that were killed before their rename.

    A temp file is left alone while the process named in it runs. Each folder is swept
    once per process unless `again`. Returns the files removed.
    """
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _swept and not again:
        return []
    _swept.add(key)
    removed = []
    for part in folder.glob(".*.part"):
        pid = part.name[:-len(".part")].rsplit(".", 2)[-2]
        try:
            if pid.isdigit():
                if _running(int(pid)):
                    continue
            elif time.time() - part.lstat().st_mtime < UNNAMED_PART_AGE_S:
                continue
            part.unlink()
        except FileNotFoundError:
            continue  # another process removed or renamed it
        except OSError as err:
            log.warning("%s: cannot remove this leftover of an interrupted write (%s); remove it "
                        "by hand", part, err)
            continue
        removed.append(part)
    if removed:
        log.info("%s: removed %d leftover file(s) of interrupted writes", folder, len(removed))
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


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
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError, MemoryError,
            OverflowError, SyntaxError, tokenize.TokenError) as err:
        log.warning("%s: unreadable cache entry (%s); recomputing", path, err)
        return None
    return arrays, meta


def cached(path: str | os.PathLike, meta: dict,
           compute: Callable[[], dict[str, np.ndarray]], *,
           check: Callable[[dict[str, np.ndarray]], str | None] | None = None) -> dict[str, np.ndarray]:
    """Return the arrays at `path` if its meta equals `meta`, else compute, save and return.

    `meta` must be JSON-serialisable; it is compared after a JSON round trip.
    `check(arrays)` says what is wrong with an entry's arrays (dtype, shape, range), or
    None; an entry it faults is recomputed, as one that cannot be read is.
    """
    want = json.loads(json.dumps(meta, sort_keys=True))
    entry = load_npz(path)
    if entry is not None and entry[1] == want:
        problem = check(entry[0]) if check is not None else None
        if problem is None:
            return entry[0]
        log.warning("%s: %s; recomputing", path, problem)
    arrays = compute()
    save_npz(path, want, **arrays)
    return arrays
