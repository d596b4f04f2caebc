"""Shared test helpers: generated signals with known answers, and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Before pytest-xdist starts its workers, compile once the numba functions that keep
    their machine code on disk (librosa's beat tracker, editorbot.kernels): on a fresh
    install two workers compiling and writing the same cache at once crashed one of them
    (a segmentation fault in librosa's beat tracker, fresh clone, 2026-12-07)."""
    if hasattr(config, "workerinput"):  # a worker: the controller has compiled them
        return
    import librosa

    from editorbot.limiter import Limiter
    from editorbot.loudness import LoudnessMeter

    sr = 22050
    clicks = np.zeros(sr * 4, np.float32)
    clicks[:: sr // 2] = 1.0
    librosa.beat.beat_track(y=clicks, sr=sr)
    block = sine(440.0, 48000, 0.5, channels=2)
    limiter = Limiter(48000, 2, ceiling_dbtp=-1.0)
    limiter.process(block)
    limiter.finish()
    meter = LoudnessMeter(48000, 2)
    meter.add(block)
    meter.integrated_lufs()


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
