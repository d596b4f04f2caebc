"""Shared test helpers: generated signals with known answers, and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def sine(freq_hz: float, sr: int, seconds: float, channels: int = 1, amp: float = 0.5) -> np.ndarray:
    """A sine of (n, channels) float32; channel c is scaled by 1 / (c + 1) so channels differ."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = amp * np.sin(2 * np.pi * freq_hz * t)
    return np.stack([x / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def run_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m editorbot ARGS` and capture its output."""
    return subprocess.run([sys.executable, "-m", "editorbot", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def one_thread():
    """Torch on one intra-op thread for the test: tiny models run many small operations,
    which a thread pool makes many times slower on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
