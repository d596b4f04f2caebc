"""Real music from Debian packages, and raw/edit pairs built from it with exact truth.

The packages are fetched with `apt-get download` into a cache outside git (default
~/.cache/editorbot-bench/debian), unpacked with `dpkg-deb -x`, and their full-mix audio
files decoded to 44.1 kHz stereo. Two kinds of pair are built, each deterministic from a
seed and written into the cache with its truth (an editorbot.edits.Edit):

- trimmer jams (`build_trimmer`): 3-4 takes (real tracks or excerpts), with quiet noodling,
  silence and false starts (the take's own opening replayed sample for sample, then a
  stop) between them; the edit keeps each take whole, in order, and is mildly mastered.
  `write_mp3` writes the same edit as a 48 kHz MP3 and shifts the truth by the codec delay
  it measures against the audio it encoded.
- loop-based electronic (`build_loops`): a raw made of one-bar clips of a real track, each
  section one clip (or a two-bar phrase) repeated sample for sample; the edit cuts forward
  between sections at bar ends, and every join is needed (checked on the bar sequence, so
  the truth has the fewest segments and its join times are unique).

Only the packages in ALLOWED are used: other music packages are kept for an evaluation the
project must not tune to, so every entry point refuses any package not on that list.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 44100
DEFAULT_CACHE = Path("~/.cache/editorbot-bench/debian").expanduser()
DEFAULT_PACKAGES = ("fretsonfire-songs-sectoid", "wesnoth-1.16-music", "asc-music")
ALLOWED = DEFAULT_PACKAGES  # the only packages benchmarks may use
AUDIO_EXT = (".ogg", ".wav", ".flac", ".mp3")
# Stem files that Frets on Fire ships beside the full mix (song.ogg).
FOF_STEMS = ("guitar", "rhythm", "drums", "bass", "vocals", "keys", "crowd", "preview")
GEN_VERSION = 1  # bump when pair generation changes, so cached pairs are rebuilt


# ---------------------------------------------------------------- packages and tracks

def check_allowed(package: str) -> None:
    """SystemExit unless `package` is one benchmarks may use (ALLOWED)."""
    if package not in ALLOWED:
        raise SystemExit(f"{package}: not among the packages benchmarks may use "
                         f"({', '.join(ALLOWED)}); other music is kept for evaluation")


def fetch(packages, cache: Path = DEFAULT_CACHE, *, log=print) -> dict[str, Path]:
    """Download (`apt-get download`) and unpack (`dpkg-deb -x`) each package once.

    Returns {package: folder it was unpacked into}. Runs `apt-get update` once when apt
    knows no candidate for a package.
    """
    for pkg in packages:
        check_allowed(pkg)
    debs, unpacked = cache / "debs", cache / "unpacked"
    debs.mkdir(parents=True, exist_ok=True)
    unpacked.mkdir(parents=True, exist_ok=True)
    updated = False
    out = {}
    for pkg in packages:
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            if not _apt_candidate(pkg) and not updated:
                log(f"  apt-get update (apt knows no {pkg})")
                subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
                updated = True
            if not _apt_candidate(pkg):
                raise SystemExit(f"{pkg}: apt has no candidate for it; check /etc/apt/sources.list")
            log(f"  apt-get download {pkg}")
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            found = sorted(debs.glob(f"{pkg}_*.deb"))
            if not found:
                raise SystemExit(f"{pkg}: apt-get download left no .deb in {debs}")
        deb = found[-1]
        target = unpacked / deb.stem
        if not (target / ".done").exists():
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
            (target / ".done").write_text(deb.name)
        out[pkg] = target
    return out


def _apt_candidate(pkg: str) -> bool:
    proc = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.strip().startswith("Candidate:"):
            return line.split(":", 1)[1].strip() not in ("", "(none)")
    return False


@dataclass(frozen=True)
class Track:
    package: str
    name: str  # short, readable: folder/file for Frets on Fire songs, file stem otherwise
    path: Path
    duration_s: float


def find_tracks(unpacked: dict[str, Path], min_s: float = 30.0) -> list[Track]:
    """Every full-mix audio file of at least `min_s`, sorted by package and name.

    Frets on Fire songs ship stems beside the mix: only song.* is kept."""
    import soundfile as sf

    tracks = []
    for pkg, root in sorted(unpacked.items()):
        check_allowed(pkg)
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in AUDIO_EXT or not path.is_file():
                continue
            stem = path.stem.lower()
            if pkg.startswith("fretsonfire"):
                if stem != "song":
                    continue
                name = f"{path.parent.name}/{path.name}"
            else:
                if stem in FOF_STEMS:
                    continue
                name = path.stem
            try:
                dur = sf.info(str(path)).duration
            except RuntimeError:
                continue
            if dur >= min_s:
                tracks.append(Track(pkg, name, path, float(dur)))
    return tracks


_DECODED: dict[Path, np.ndarray] = {}


def load(track: Track) -> np.ndarray:
    """The track as float32 (n, 2) at 44.1 kHz (mono duplicated, other rates resampled with
    soxr); the last few decoded tracks are kept in memory."""
    import soxr

    from editorbot.audio import read

    if track.path in _DECODED:
        return _DECODED[track.path]
    y, sr = read(track.path)
    if y.shape[1] == 1:
        y = np.repeat(y, 2, axis=1)
    y = y[:, :2]
    if sr != SR:
        y = soxr.resample(y, sr, SR, quality="HQ").astype(np.float32)
    y = np.clip(y, -1, 1).astype(np.float32)
    if len(_DECODED) >= 6:
        _DECODED.pop(next(iter(_DECODED)))
    _DECODED[track.path] = y
    return y


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _audible_span(y: np.ndarray, floor_db: float = -60.0) -> tuple[int, int]:
    """First and last sample (exclusive) of 10 ms blocks louder than floor_db."""
    block = SR // 100
    n = len(y) // block
    e = np.square(y[:n * block].astype(np.float64)).mean(axis=1).reshape(n, block).mean(axis=1)
    loud = np.flatnonzero(10 * np.log10(e + 1e-20) > floor_db)
    if not len(loud):
        return 0, len(y)
    return int(loud[0] * block), int(min(len(y), (loud[-1] + 1) * block))


def _ramp(n: int, rising: bool) -> np.ndarray:
    r = np.sin(np.pi / 2 * (np.arange(n) + 0.5) / n).astype(np.float32) if n else np.zeros(0, np.float32)
    return r if rising else r[::-1].copy()


# ---------------------------------------------------------------- rendering and mastering

def splice(raw: np.ndarray, edit, sr: int = SR) -> np.ndarray:
    """Render `edit` from `raw` (n, ch) with editorbot.edits' conventions: equal-power
    crossfades centred on the seams (each side lends half), linear fades inside a segment,
    gains. No other smoothing, so the truth is exact."""
    starts = edit.edit_starts_s()
    total = int(round(edit.duration_s * sr))
    out = np.zeros((total, raw.shape[1]), np.float32)
    segs = edit.segments
    for k, seg in enumerate(segs):
        half_in = int(round(seg.crossfade_s * sr / 2))
        half_out = int(round(segs[k + 1].crossfade_s * sr / 2)) if k + 1 < len(segs) else 0
        a = int(round(seg.raw_start_s * sr))
        e0 = int(round(starts[k] * sr))
        e1 = int(round((starts[k] + seg.duration_s) * sr))
        n = e1 - e0
        lo, hi = a - half_in, a + n + half_out
        if lo < 0 or hi > len(raw):
            raise ValueError(f"segment {k} reads raw samples {lo}..{hi} outside 0..{len(raw)}")
        gain = np.full(hi - lo, 10 ** (seg.gain_db / 20), np.float32)
        if seg.fade_in_s:
            m = int(round(seg.fade_in_s * sr))
            gain[half_in:half_in + m] *= np.linspace(0, 1, m, dtype=np.float32)
        if seg.fade_out_s:
            m = int(round(seg.fade_out_s * sr))
            gain[half_in + n - m:half_in + n] *= np.linspace(1, 0, m, dtype=np.float32)
        if half_in:
            gain[:2 * half_in] *= _ramp(2 * half_in, True)
        if half_out:
            gain[len(gain) - 2 * half_out:] *= _ramp(2 * half_out, False)
        w0 = e0 - half_in
        seg_out = raw[lo:hi] * gain[:, None]
        c0 = max(0, -w0)
        c1 = min(len(seg_out), total - w0)
        out[w0 + c0:w0 + c1] += seg_out[c0:c1]
    return out


def master_mild(y: np.ndarray, rng: np.random.Generator, sr: int = SR) -> tuple[np.ndarray, dict]:
    """Gentle mastering: highpass, +-2 dB peak EQ, +-1.5 dB high shelf, 2:1 compression,
    a few dB of make-up gain and a -1 dBFS limiter. Returns the audio and its settings."""
    import pedalboard as pb

    s = {"highpass_hz": float(rng.uniform(20, 40)), "peak_hz": float(rng.uniform(250, 5000)),
         "peak_db": float(rng.uniform(-2, 2)), "shelf_db": float(rng.uniform(-1.5, 1.5)),
         "comp_threshold_db": float(rng.uniform(-20, -14)), "comp_ratio": float(rng.uniform(1.5, 2.5)),
         "gain_db": float(rng.uniform(1, 4))}
    board = pb.Pedalboard([
        pb.HighpassFilter(s["highpass_hz"]),
        pb.PeakFilter(s["peak_hz"], s["peak_db"], 0.9),
        pb.HighShelfFilter(8000, s["shelf_db"], 0.7),
        pb.Compressor(s["comp_threshold_db"], s["comp_ratio"], 15, 150),
        pb.Gain(s["gain_db"]),
        pb.Limiter(-1.0, 150),
    ])
    out = board(np.ascontiguousarray(y.T), sr).T
    return np.clip(out, -1, 1).astype(np.float32), s


def _write_edit(folder: Path, raw: np.ndarray, segs: list, rng: np.random.Generator):
    """Splice the truth's segments from `raw`, master the edit mildly, write edit.wav and
    truth.json into `folder`; returns the truth and the mastering settings."""
    from editorbot.edits import Edit

    truth = Edit(segs, str(folder / "raw.flac"), len(raw) / SR)
    mastered, mastering = master_mild(splice(raw, truth), rng)
    _write_pcm16(folder / "edit.wav", mastered)
    truth.save(folder / "truth.json")
    return truth, mastering


def _write_pcm16(path: Path, y: np.ndarray, sr: int = SR) -> np.ndarray:
    """Write 16-bit audio and return what a reader gets back (the exact samples)."""
    from editorbot.audio import read, write

    write(path, np.clip(y, -1, 1), sr, subtype="PCM_16")
    back, _ = read(path)
    return back


# ---------------------------------------------------------------- trimmer jams

@dataclass
class Plan:
    """Durations the trimmer pairs aim at."""

    raw_min_s: float
    raw_max_s: float
    take_min_s: float
    take_max_s: float
    takes: tuple[int, int]  # inclusive range of takes per jam


FULL = Plan(6 * 60, 12 * 60, 90, 240, (3, 4))
QUICK = Plan(4 * 60, 6 * 60, 75, 100, (3, 3))


def take_pool(tracks: list[Track], min_s: float) -> list[Track]:
    """Tracks for takes, in a seed-independent order that spreads the packages: the tracks
    of the smaller packages first, interleaved, then the rest."""
    by_pkg: dict[str, list[Track]] = {}
    for t in tracks:
        if t.duration_s >= min_s:
            by_pkg.setdefault(t.package, []).append(t)
    order = []
    lists = sorted(by_pkg.values(), key=len)
    while any(lists):
        for lst in lists:
            if lst:
                order.append(lst.pop(0))
    return order


def build_trimmer(tracks: list[Track], index: int, seed: int, plan: Plan, folder: Path) -> dict:
    """Write one trimmer jam into `folder` (raw.flac, edit.wav, truth.json, meta.json) and
    return its meta. Tracks for takes rotate through the pool so that pairs use different
    tracks and mix packages."""
    from editorbot.edits import Segment

    rng = np.random.default_rng([seed, 1, index])
    pool = take_pool(tracks, plan.take_min_s + 10)
    minor = [t for t in pool if t.package != "wesnoth-1.16-music"]
    major = [t for t in pool if t.package == "wesnoth-1.16-music"]
    n_takes = int(rng.integers(plan.takes[0], plan.takes[1] + 1))
    # one track from the smaller packages per jam, the rest from the large one, rotating
    chosen = [minor[index % len(minor)]] if minor else []
    start = (index * 3) % max(len(major), 1)
    for j in range(len(major)):
        if len(chosen) == n_takes:
            break
        t = major[(start + j) % len(major)]
        if t not in chosen:
            chosen.append(t)
    order = list(rng.permutation(len(chosen)))
    chosen = [chosen[k] for k in order]
    others = [t for t in tracks if t not in chosen and t.duration_s >= 40]

    for attempt in range(20):  # redraw until the raw is as long as the plan says
        if attempt:
            rng = np.random.default_rng([seed, 1, index, attempt])
        target = float(rng.uniform(plan.raw_min_s, plan.raw_max_s))
        per_take = (target * 0.85) / n_takes

        pieces: list[np.ndarray] = []
        cursor = 0
        takes, false_starts, noodles = [], [], []

        def put(x: np.ndarray) -> int:
            nonlocal cursor
            pieces.append(x.astype(np.float32))
            at = cursor
            cursor += len(x)
            return at

        def silence(lo: float, hi: float) -> None:
            put(np.zeros((int(rng.uniform(lo, hi) * SR), 2), np.float32))

        for k, track in enumerate(chosen):
            y = load(track)
            a0, a1 = _audible_span(y)
            want = float(np.clip(per_take * rng.uniform(0.8, 1.2), plan.take_min_s, plan.take_max_s))
            if (a1 - a0) / SR <= want + 5:
                t0, t1, whole = a0, a1, True
            else:
                for _ in range(50):
                    t0 = int(rng.integers(a0, a1 - int(want * SR)))
                    if _rms_db(y[t0:t0 + SR // 2]) > -40:
                        break
                t1, whole = t0 + int(want * SR), False
            take = y[t0:t1].copy()
            edge = int(0.01 * SR)  # 10 ms fades: the take starts and stops cleanly in the raw
            take[:edge] *= _ramp(edge, True)[:, None]
            take[-edge:] *= _ramp(edge, False)[:, None]
            # before the take: noodling (a quiet excerpt of another track, or low noise), silence
            if rng.random() < 0.7:
                if rng.random() < 0.7 and others:
                    other = others[int(rng.integers(len(others)))]
                    z = load(other)
                    d = int(rng.uniform(8, 40) * SR)
                    d = min(d, len(z) - SR)
                    z0 = int(rng.integers(0, len(z) - d))
                    att = float(rng.uniform(15, 25))
                    nood = z[z0:z0 + d] * 10 ** (-att / 20)
                    f = int(0.5 * SR)
                    nood[:f] *= _ramp(f, True)[:, None]
                    nood[-f:] *= _ramp(f, False)[:, None]
                    at = put(nood)
                    noodles.append({"raw_start_s": at / SR, "duration_s": d / SR, "kind": "quiet excerpt",
                                    "track": other.name, "attenuation_db": round(att, 2)})
                else:
                    d = int(rng.uniform(5, 20) * SR)
                    level = float(rng.uniform(-55, -45))
                    noise = rng.normal(0, 1, (d, 2)).astype(np.float32)
                    kernel = np.ones(8, np.float32) / 8  # soft hiss: white noise, low-passed
                    noise = np.stack([np.convolve(noise[:, c], kernel, "same") for c in range(2)], axis=1)
                    noise *= 10 ** (level / 20) / (np.sqrt(np.mean(noise ** 2)) + 1e-12)
                    at = put(noise)
                    noodles.append({"raw_start_s": at / SR, "duration_s": d / SR, "kind": "low noise",
                                    "level_db": round(level, 2)})
            silence(1, 6)
            fs = None
            if rng.random() < 0.6:
                length = int(rng.uniform(3, 12) * SR)
                fade = int(rng.uniform(0.3, 1.0) * SR)
                stop = take[:length + fade].copy()
                stop[length:] *= _ramp(fade, False)[:, None]
                at = put(stop)
                fs = {"raw_start_s": at / SR, "identical_s": length / SR, "duration_s": (length + fade) / SR}
                false_starts.append(fs)
                silence(1, 5)
            at = put(take)
            takes.append({"track": track.name, "package": track.package, "whole_track": whole,
                          "track_start_s": t0 / SR, "raw_start_s": at / SR, "duration_s": len(take) / SR,
                          "false_start": fs})
        silence(2, 8)
        raw = np.concatenate(pieces)
        if plan.raw_min_s <= len(raw) / SR <= plan.raw_max_s + 180:
            break
    raw = _write_pcm16(folder / "raw.flac", raw)

    segs = []
    for k, t in enumerate(takes):
        xf = 0.0
        if k and rng.random() < 0.5:
            xf = round(float(rng.uniform(0.005, 0.05)) * SR / 2) * 2 / SR  # even sample count
        segs.append(Segment(t["raw_start_s"], t["duration_s"], crossfade_s=xf))
    if rng.random() < 0.5:
        segs[-1].fade_out_s = round(float(rng.uniform(1, 5)), 3)
    truth, mastering = _write_edit(folder, raw, segs, rng)
    meta = {"kind": "trimmer", "index": index, "seed": seed, "gen_version": GEN_VERSION,
            "raw_s": len(raw) / SR, "edit_s": truth.duration_s, "takes": takes,
            "false_starts": false_starts, "noodles": noodles, "mastering": mastering,
            "packages": sorted({t.package for t in chosen})}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


# ---------------------------------------------------------------- the same edit as 48 kHz MP3

def write_mp3(folder: Path, sr_out: int = 48000) -> dict:
    """Resample the trimmer pair's edit (edit.wav) to 48 kHz (soxr), write it as MP3, decode
    it again and measure the codec delay against what was encoded (cross-correlation, in
    output samples). The truth (truth_mp3.json) is the edit's truth shifted by that delay:
    a leading not-in-raw segment for a positive delay, a shortened first segment for a
    negative one."""
    import soxr

    from editorbot.audio import read, write
    from editorbot.edits import Edit, Segment

    y, _ = read(folder / "edit.wav")
    z = soxr.resample(y, SR, sr_out, quality="HQ").astype(np.float32)
    z = np.clip(z, -1, 1)
    path = folder / "edit_48k.mp3"
    write(path, z, sr_out)
    back, sr_back = read(path)
    assert sr_back == sr_out
    n = min(len(z), len(back), 60 * sr_out)
    a, b = z[:n].mean(axis=1), back[:n].mean(axis=1)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lim = sr_out // 10  # codec delays are a few ms
    lags = np.concatenate([np.arange(0, lim), np.arange(-lim, 0)])
    vals = np.concatenate([corr[:lim], corr[size - lim:]])
    delay = int(lags[int(np.argmax(vals))])
    truth = Edit.load(folder / "truth.json")
    segs = [Segment(**{k: getattr(s, k) for k in Segment.__dataclass_fields__}) for s in truth.segments]
    d = delay / sr_out
    if delay > 0:
        segs = [Segment(None, d)] + segs
    elif delay < 0:
        segs[0].raw_start_s -= d
        segs[0].duration_s += d
    shifted = Edit(segs, truth.raw_path, truth.raw_duration_s)
    shifted.save(folder / "truth_mp3.json")
    info = {"delay_samples_48k": delay, "delay_s": d, "decoded_s": len(back) / sr_out,
            "encoded_s": len(z) / sr_out, "kbps": round(path.stat().st_size * 8 / (len(z) / sr_out) / 1000, 1)}
    (folder / "mp3.json").write_text(json.dumps(info, indent=1))
    return info


# ---------------------------------------------------------------- loop-based electronic

def loop_pool(tracks: list[Track]) -> list[Track]:
    """Tracks to cut bars from, the packages interleaved (sorted by name inside each)."""
    return take_pool(tracks, 90)


def _clip_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Largest normalised cross-correlation of two mono signals over all lags."""
    a = a - a.mean()
    b = b - b.mean()
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    c = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    return float(np.abs(c).max() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def min_cover(edit_bars: list[int], raw_bars: list[int]) -> list[int]:
    """Greedy longest-match factorisation of the edit's bar sequence into runs of the raw's:
    the positions (edit bar indices) where a new segment starts, first excluded. Greedy
    longest match gives the fewest pieces, and the latest position of each join."""
    raw_s = "," + ",".join(map(str, raw_bars)) + ","
    joins, i = [], 0
    while i < len(edit_bars):
        k = 1
        while i + k <= len(edit_bars) and ("," + ",".join(map(str, edit_bars[i:i + k])) + ",") in raw_s:
            k += 1
        k -= 1
        if k == 0:
            raise ValueError("edit bar not in raw")
        i += k
        if i < len(edit_bars):
            joins.append(i)
    return joins


def build_loops(tracks: list[Track], index: int, seed: int, folder: Path) -> dict:
    """Write one loop-based pair into `folder` and return its meta (with the bar map that
    scoring uses to accept identical copies)."""
    from editorbot.edits import Segment

    rng = np.random.default_rng([seed, 3, index])
    pool = loop_pool(tracks)
    track = pool[index % len(pool)]
    y = load(track)
    a0, a1 = _audible_span(y)
    while True:  # bar length: a few seconds, never a multiple of 256 samples
        bar = int(rng.uniform(1.6, 2.6) * SR)
        if 40 <= bar % 256 <= 216:
            break
    n_clips = int(rng.integers(4, 7))
    clips, starts = [], []
    edge = int(0.003 * SR)
    for _ in range(2000):
        if len(clips) == n_clips:
            break
        s = int(rng.integers(a0 + 5 * SR, a1 - 5 * SR - bar))
        if any(abs(s - o) < 2 * bar for o in starts):
            continue
        c = y[s:s + bar].copy()
        if _rms_db(c) < -30:
            continue
        mono = c.mean(axis=1)[::4]
        if any(_clip_similarity(mono, o.mean(axis=1)[::4]) > 0.8 for o in clips):
            continue
        c[:edge] *= _ramp(edge, True)[:, None]
        c[-edge:] *= _ramp(edge, False)[:, None]
        clips.append(c)
        starts.append(s)
    if len(clips) < 4:
        raise RuntimeError(f"{track.name}: could not cut 4 distinct loud bars")
    n_clips = len(clips)

    # Sections follow a small transition graph: each clip may be followed by one or two
    # others only (a ring through all clips, plus sometimes a shortcut), so that many
    # bar-to-bar transitions never occur in the raw. A join whose two sides form such a
    # transition is needed, and exactly there: no stretch of the raw plays across it.
    lo_s, hi_s = 180, 360
    for _ in range(5000):
        ring = [int(c) for c in rng.permutation(n_clips)]  # every clip keeps coming back
        succ = {c: [ring[(i + 1) % n_clips]] for i, c in enumerate(ring)}
        for c in range(n_clips):
            if rng.random() < 0.4:
                extra = [o for o in range(n_clips) if o != c and o not in succ[c]]
                succ[c].append(int(rng.choice(extra)))
        n_sections = int(rng.integers(20, 27))
        sections = []
        last = int(rng.integers(n_clips))
        unit = [last]
        for k in range(n_sections):
            if k:  # mostly around the ring, sometimes a shortcut; a quarter are 2-bar phrases
                y = succ[last][0] if len(succ[last]) == 1 or rng.random() < 0.7 else succ[last][1]
                unit = [y, succ[y][0]] if rng.random() < 0.25 else [y]
            reps = int(rng.integers(4, 7)) if len(unit) == 2 else int(rng.integers(4, 9))
            sections.append({"unit": unit, "reps": reps})
            last = unit[-1]
        n_bars = sum(len(x["unit"]) * x["reps"] for x in sections)
        used = {c for x in sections for c in x["unit"]}
        if lo_s <= n_bars * bar / SR <= hi_s and len(used) == n_clips:
            break
    else:
        raise RuntimeError(f"loops pair {index}: no arrangement of 3-6 minutes found")
    bar_clip, bar_section = [], []
    for k, x in enumerate(sections):
        for _ in range(x["reps"]):
            for c in x["unit"]:
                bar_clip.append(c)
                bar_section.append(k)
    lead = int(rng.uniform(0.5, 2.0) * SR)
    tail = SR
    raw = np.zeros((lead + len(bar_clip) * bar + tail, 2), np.float32)
    for j, c in enumerate(bar_clip):
        raw[lead + j * bar:lead + (j + 1) * bar] = clips[c]
    raw = _write_pcm16(folder / "raw.flac", raw)

    seen = set(zip(bar_clip[:-1], bar_clip[1:]))  # transitions the raw plays
    section_bars: dict[int, list[int]] = {}
    for j, k in enumerate(bar_section):
        section_bars.setdefault(k, []).append(j)
    best = None
    why = {"no way on": 0, "past the end": 0, "cover differs": 0}
    for _ in range(5000):
        target_joins = int(rng.integers(9, 12))
        k0 = int(rng.integers(0, 2))
        start = int(rng.choice(section_bars[k0]))
        segs_bars = [(start, int(rng.integers(2, 7)))]
        while len(segs_bars) < target_joins + 1:
            e = segs_bars[-1][0] + segs_bars[-1][1]  # first raw bar after the segment
            if e > len(bar_clip):
                why["past the end"] += 1
                break
            k_end = bar_section[e - 1]
            ahead = [[d for d in section_bars.get(k, [])
                      if d != e and (bar_clip[e - 1], bar_clip[d]) not in seen]
                     for k in range(k_end + 1, k_end + 5)]
            ahead = [c for c in ahead if c]
            if not ahead:
                why["no way on"] += 1
                break
            # mostly into the nearest section that has a bar to go to, so the raw lasts
            choices = ahead[0] if rng.random() < 0.7 else ahead[int(rng.integers(len(ahead)))]
            d = int(rng.choice(choices))
            room = section_bars[bar_section[d]][-1] + 1 - d  # stay inside the section
            segs_bars.append((d, int(rng.integers(1, min(6, room) + 1))))
        if len(segs_bars) < target_joins + 1:
            continue
        if segs_bars[-1][0] + segs_bars[-1][1] > len(bar_clip):
            why["past the end"] += 1
            continue
        edit_bars = [bar_clip[j] for d, n in segs_bars for j in range(d, d + n)]
        truth_joins = [int(x) for x in np.cumsum([n for _, n in segs_bars])[:-1]]
        fwd = min_cover(edit_bars, bar_clip)
        bwd = [len(edit_bars) - j for j in min_cover(edit_bars[::-1], bar_clip[::-1])][::-1]
        if fwd == bwd == truth_joins:
            best = segs_bars
            break
        why["cover differs"] += 1  # cannot happen with unseen transitions; kept as a check
    if best is None:
        raise RuntimeError(f"loops pair {index}: no edit with only necessary joins found "
                           f"({n_clips} clips, {len(sections)} sections; tries failing: {why})")

    segs = []
    for k, (s, n) in enumerate(best):
        xf = 0.0
        if k and rng.random() < 0.4:
            xf = round(float(rng.uniform(0.005, 0.02)) * SR / 2) * 2 / SR
        segs.append(Segment((lead + s * bar) / SR, n * bar / SR, crossfade_s=xf))
    if rng.random() < 0.3:
        segs[-1].fade_out_s = round(float(rng.uniform(1, 2)), 3)
    truth, mastering = _write_edit(folder, raw, segs, rng)
    meta = {"kind": "loops", "index": index, "seed": seed, "gen_version": GEN_VERSION,
            "track": track.name, "package": track.package, "raw_s": len(raw) / SR,
            "edit_s": truth.duration_s, "bar_samples": bar, "lead_samples": lead,
            "clip_track_starts_s": [s / SR for s in starts], "bar_clip": bar_clip,
            "bar_section": bar_section, "sections": sections,
            "edit_bars": [[s, n] for s, n in best], "mastering": mastering}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def same_content(meta: dict, got_s: np.ndarray, want_s: np.ndarray, tol_s: float) -> np.ndarray:
    """For a loop pair: whether raw time got_s plays the same clip at the same in-clip
    position as raw time want_s (within tol_s), counting every identical copy."""
    bar, lead = meta["bar_samples"], meta["lead_samples"]
    clip_of = np.asarray(meta["bar_clip"])
    copies = [np.flatnonzero(clip_of == c) for c in range(clip_of.max() + 1)]
    out = np.zeros(len(got_s), bool)
    for j, (g, w) in enumerate(zip(got_s, want_s)):
        x = w * SR - lead
        b = int(np.floor(x / bar))
        if not 0 <= b < len(clip_of):
            continue
        pos = x - b * bar
        where = (lead + copies[clip_of[b]] * bar + pos) / SR
        out[j] = bool(np.abs(where - g).min() <= tol_s)
    return out


def pair_ready(folder: Path, want: dict, files: tuple[str, ...]) -> bool:
    """Whether `folder` holds a pair written with the same settings `want` and its files."""
    meta = folder / "meta.json"
    if not meta.exists() or not all((folder / f).exists() for f in files):
        return False
    have = json.loads(meta.read_text())
    return all(have.get(k) == v for k, v in want.items())


def clear(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def package_versions(unpacked: dict[str, Path]) -> dict[str, str]:
    return {pkg: os.path.basename(str(path)) for pkg, path in unpacked.items()}
