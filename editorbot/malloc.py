"""Keep freed memory in the process for reuse, or give it back, where the C library allows it.

On an hour of audio the encoder's activations are tens of megabytes each. glibc hands every
block that large back to the system when it is freed and asks for fresh pages on the next
one, so each layer pays a page fault per 4 KiB again: on this machine's 2 CPUs that made the
encoder's time per frame grow by half from 100k to 300k frames (58 minutes), where its work
grows linearly. Serving large blocks from the heap and keeping freed memory there removes
that cost; the process keeps its peak memory until it exits instead of shrinking between
steps.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_MAX = -4
KEEP_FREED_BYTES = 1 << 30  # trim the heap only when this much is free at its top


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library, once per process; None off Linux or where it cannot be opened."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@functools.cache
def reuse_freed_memory() -> bool:
    """Ask glibc to serve large blocks from the heap (no mmap) and to keep up to 1 GiB of
    freed memory for reuse. Once per process; returns whether it took effect (False off
    Linux, or with another C library)."""
    mallopt = getattr(_glibc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system now (glibc's malloc_trim; nothing where
    the C library has none)."""
    trim = getattr(_glibc(), "malloc_trim", None)
    if trim is not None:
        trim(0)
