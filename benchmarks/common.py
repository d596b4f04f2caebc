"""Shared benchmark helpers: long test files written in blocks, and measured subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

OUT = Path(__file__).resolve().parent / "out"


def long_wav(path: Path, minutes: float, *, sr: int = 44100, channels: int = 2, seed: int = 0) -> Path:
    """Write a music-like WAV (notes with harmonics, noise bursts on a drifting beat) in
    10 s blocks, so that making a 60-minute file needs little memory. Reused if present."""
    if path.exists() and abs(sf.info(path).duration - minutes * 60) < 1:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    block = 10 * sr
    n_total = int(minutes * 60 * sr)
    tmp = path.with_suffix(".part.wav")
    with sf.SoundFile(tmp, "w", samplerate=sr, channels=channels, subtype="PCM_16") as fh:
        for start in range(0, n_total, block):
            n = min(block, n_total - start)
            t = (start + np.arange(n)) / sr
            x = np.zeros(n)
            for _ in range(6):
                f = 80 * 2 ** (rng.integers(0, 36) / 12)
                on = rng.uniform(0, n / sr)
                env = np.exp(-np.clip(t - t[0] - on, 0, None) * rng.uniform(1, 6)) * (t - t[0] >= on)
                x += rng.uniform(0.05, 0.2) * env * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t))
            beat = 0.5 + 0.01 * np.sin(start / sr / 60)
            clicks = np.zeros(n)
            for b in np.arange((t[0] // beat + 1) * beat, t[-1], beat):
                i = int((b - t[0]) * sr)
                m = min(n - i, 2000)
                clicks[i:i + m] += rng.standard_normal(m) * np.exp(-np.arange(m) / 300) * 0.3
            x += clicks
            stereo = np.stack([x * (1 - 0.2 * c) for c in range(channels)], axis=1)
            fh.write(np.clip(stereo, -1, 1).astype(np.float32))
    os.replace(tmp, path)
    return path


def measure(code: str, *args: str) -> dict:
    """Run python `code` in a fresh process (argv in sys.argv[1:]); the code fills a dict
    named `result`. Returns it with the process's own peak RSS (MB) and wall seconds."""
    wrapped = code + (
        "\nimport json as _j, resource as _r\n"
        "result['peak_rss_mb'] = _r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(_j.dumps(result))\n")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapped, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = time.perf_counter() - started
    return result
