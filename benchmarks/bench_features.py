"""Mel extraction + cache write of a 60-minute 44.1 kHz stereo WAV, against librosa alone.

    .venv/bin/python benchmarks/bench_features.py [--minutes 60]

Targets (issue 2): wall time <= 1.5x librosa.feature.melspectrogram alone on the same,
already decoded and resampled audio, in the same run; peak RSS <= 1.5 GB.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import OUT, long_wav, measure

OURS = """
import sys, time
from editorbot.precache import mel_for
t = time.perf_counter()
m = mel_for(sys.argv[1], sys.argv[2])
result = {"seconds": time.perf_counter() - t, "frames": int(m.shape[1])}
"""

LIBROSA = """
import sys, time, librosa
from editorbot.audio import load_analysis
t = time.perf_counter()
y = load_analysis(sys.argv[1])
decode = time.perf_counter() - t
t = time.perf_counter()
S = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=256, n_mels=128)
result = {"seconds": time.perf_counter() - t, "decode_seconds": decode, "frames": int(S.shape[1])}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    wav = long_wav(OUT / f"long_{args.minutes:g}min.wav", args.minutes)
    print(f"input: {wav} ({args.minutes:g} min, 44.1 kHz stereo PCM_16)")
    with tempfile.TemporaryDirectory() as tmp:
        ours = measure(OURS, str(wav), str(Path(tmp) / "x_raw.npz"))
    ref = measure(LIBROSA, str(wav))
    assert ours["frames"] == ref["frames"]
    ratio = ours["seconds"] / ref["seconds"]
    print(f"editorbot decode+resample+mel+cache write: {ours['seconds']:.2f} s, "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB")
    print(f"librosa.feature.melspectrogram alone:      {ref['seconds']:.2f} s "
          f"(its decode+resample took {ref['decode_seconds']:.2f} s more), "
          f"peak RSS {ref['peak_rss_mb']:.0f} MB")
    print(f"ratio {ratio:.2f} (target <= 1.5): {'PASS' if ratio <= 1.5 else 'FAIL'}; "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB (target <= 1536): "
          f"{'PASS' if ours['peak_rss_mb'] <= 1536 else 'FAIL'}")


if __name__ == "__main__":
    main()
