"""Seconds of compute per minute of audio for each stems backend, and peak memory.

    .venv/bin/python benchmarks/bench_stems.py [--hpss-minutes 10] [--demucs-minutes 1] [--threads N]

Each figure is one `editorbot.stems.cache_stems` call in a fresh process on a music-like
44.1 kHz stereo WAV: decode, separation, stem mels and both cache writes. No htdemucs
weights exist here, so 'demucs' runs a randomly initialised HTDemucs (the class defaults,
26.9 M parameters, with htdemucs's 7.8 s segment) loaded from a .th file written first;
its speed is that of the real model, its stems are noise. The demucs figure is skipped
(and says why) when the demucs package is missing.
"""
from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path

from common import OUT, long_wav, measure

RUN = """
import sys, time, torch
threads = int(sys.argv[5])
if threads:
    torch.set_num_threads(threads)
from editorbot.stems import cache_stems
t = time.perf_counter()
info = cache_stems(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4],
                   weights=sys.argv[6] if len(sys.argv) > 6 else None)
result = {"seconds": time.perf_counter() - t, "audio_s": info["seconds"],
          "threads": torch.get_num_threads()}
"""

RANDOM_HTDEMUCS = """
import sys, torch
from fractions import Fraction
from demucs.htdemucs import HTDemucs
torch.manual_seed(0)
model = HTDemucs(sources=["drums", "bass", "other", "vocals"], segment=Fraction(39, 5))
args, kwargs = model._init_args_kwargs
torch.save({"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": model.state_dict()},
           sys.argv[1])
result = {"parameters": sum(p.numel() for p in model.parameters())}
"""


def bench(backend: str, minutes: float, threads: int, tmp: Path, weights: str | None = None) -> None:
    wav = long_wav(OUT / f"long_{minutes:g}min.wav", minutes)
    args = [str(wav), str(tmp / f"{backend}_stems.npz"), str(tmp / f"{backend}_mels.npz"),
            backend, str(threads)] + ([weights] if weights else [])
    r = measure(RUN, *args)
    per_min = r["seconds"] / (r["audio_s"] / 60)
    print(f"{backend:6s}: {r['seconds']:7.1f} s for {r['audio_s'] / 60:g} min of 44.1 kHz stereo "
          f"= {per_min:6.1f} s per minute of audio ({r['threads']} torch threads), "
          f"peak RSS {r['peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hpss-minutes", type=float, default=10.0, help="0 skips hpss")
    parser.add_argument("--demucs-minutes", type=float, default=1.0, help="0 skips demucs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.hpss_minutes > 0:
            bench("hpss", args.hpss_minutes, args.threads, tmp)
        if args.demucs_minutes <= 0:
            return
        if importlib.util.find_spec("demucs") is None:
            print("demucs: skipped (the demucs package is not installed)")
            return
        weights = tmp / "random_htdemucs.th"
        made = measure(RANDOM_HTDEMUCS, str(weights))
        print(f"demucs: randomly initialised HTDemucs, {made['parameters'] / 1e6:.1f} M parameters")
        bench("demucs", args.demucs_minutes, args.threads, tmp, str(weights))


if __name__ == "__main__":
    main()
