"""Reading and writing audio: any format soundfile reads, in bounded-memory blocks.

Analysis audio is mono at 22050 Hz, resampled with soxr as a stream; the original samples
(own rate, depth, channels) stay available through `read` and `iter_blocks` for rendering.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from .cache import atomic_write_bytes
from .errors import AudioError, log

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
ANALYSIS_SR = 22050
BLOCK_S = 20.0  # seconds of audio decoded per block
SILENCE_PEAK = 10 ** (-90 / 20)  # below -90 dBFS a file counts as silent
# A compressed header that claims more samples than this per byte of file is damaged (FLAC
# of pure silence, the most compact, holds a few hundred).
MAX_FRAMES_PER_BYTE = 1000
SILENCE_PROBES = 16  # one-second samples check_audio reads before decoding a file whole
# Compressed formats report their length from headers that can be a little off.
LENGTH_TOLERANCE = {"MP3": 0.02, "OGG": 0.02}
# libsndfile cannot write more than about 60 s of OGG in one call (it crashes).
_OGG_WRITE_BLOCK = 1 << 18


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (frames = samples per channel)."""

    path: Path
    sr: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sr


def probe(path: str | os.PathLike) -> AudioInfo:
    """Check that `path` is a readable, non-empty audio file and return its header facts.

    Raises AudioError (one line, naming the file) for a missing file, a directory, an
    empty or non-audio file, zero-length audio, or a WAV whose data chunk is cut short.
    """
    path = Path(path)
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            raise AudioError(f"{path}: a symbolic link that loops back on itself; point it at "
                             "the audio file") from None
        except OSError:
            raise AudioError(f"{path}: no such file: a symbolic link to {os.readlink(path)}, which "
                             "does not exist; point it at the audio file or remove it") from None
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file; rename it, or name the file "
                         "inside it")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file (a device, pipe or socket); copy the audio "
                         "into a file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes); re-export or copy it again")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: not readable by this user; fix its permissions (chmod u+r)")
    try:
        info = sf.info(str(path))
    except PermissionError:
        raise AudioError(f"{path}: not readable by this user; fix its permissions (chmod u+r)") from None
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(
            f"{path}: not a readable audio file ({_short(err)}); use wav, flac, ogg or mp3"
        ) from None
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"{path}: holds no audio (0 samples); re-export it")
    if info.format in ("WAV", "WAVEX"):
        _check_wav_data_chunk(path)
    elif info.frames > MAX_FRAMES_PER_BYTE * path.stat().st_size:
        hours = info.frames / info.samplerate / 3600
        raise AudioError(f"{path}: damaged: its header claims {hours:.1f} hours of audio in "
                         f"{path.stat().st_size} bytes; export it again")
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames),
                     info.format, info.subtype)


def check_audio(path: str | os.PathLike, *, min_duration_s: float = 0.0,
                need: str = "to edit") -> AudioInfo:
    """`probe`, then check that the file decodes, is at least min_duration_s long and is
    not silent, before any work is spent on it.

    A file is sampled first (SILENCE_PROBES seconds spread over it); only a file silent
    in every sample is decoded whole, to be sure.

    Args:
        need: what the audio is for, said in the error ('to align', 'to edit').

    Raises AudioError (one line naming the file and what to do).
    """
    info = probe(path)
    if info.duration_s < min_duration_s:
        raise AudioError(f"{info.path}: {info.duration_s:.2f} s of audio, too short {need} (at "
                         f"least {min_duration_s:g} s); export a longer take or remove it")
    span = min(info.frames, info.sr)
    starts = np.linspace(0, info.frames - span, SILENCE_PROBES).astype(int)
    for start in dict.fromkeys(starts.tolist()):
        for block in iter_blocks(path, start=start, frames=span, info=info):
            if np.abs(block).max(initial=0.0) >= SILENCE_PEAK:
                return info
    for block in iter_blocks(path, info=info):
        if np.abs(block).max(initial=0.0) >= SILENCE_PEAK:
            return info
    raise AudioError(f"{info.path}: silent (peak below -90 dBFS over all {info.duration_s:.1f} s), "
                     f"nothing {need}; check the export, or remove the file")


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


def _check_wav_data_chunk(path: Path) -> None:
    """libsndfile silently shortens a truncated WAV; compare the header with the file size."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64 and friends: trust libsndfile
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return
            cid, clen = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if clen in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                    return
                have = size - (pos + 8)
                if have < clen:
                    raise AudioError(
                        f"{path}: truncated: the header promises {clen} bytes of audio, "
                        f"the file holds {have}; copy or export it again"
                    )
                return
            pos += 8 + clen + (clen & 1)


def iter_blocks(
    path: str | os.PathLike,
    *,
    block_frames: int | None = None,
    start: int = 0,
    frames: int | None = None,
    info: AudioInfo | None = None,
) -> Iterator[np.ndarray]:
    """Yield the file's original samples as float32 blocks of shape (n, channels).

    Args:
        block_frames: frames per block (default: BLOCK_S seconds at the file's rate).
        start: first frame to read.
        frames: how many frames to read (default: to the end).

    Raises AudioError for a file that is corrupt or shorter than its header says (beyond
    LENGTH_TOLERANCE for compressed formats: a read that ends within it yields fewer frames
    than asked), and for NaN or Inf samples, naming the time where they occur.
    """
    info = info or probe(path)
    block_frames = block_frames or int(BLOCK_S * info.sr)
    want = info.frames - start if frames is None else frames
    done = 0
    try:
        with sf.SoundFile(str(info.path)) as fh:
            if start:
                fh.seek(start)
            while done < want:
                block = fh.read(min(block_frames, want - done), dtype="float32", always_2d=True)
                if len(block) == 0:
                    break
                if not np.isfinite(block).all():
                    bad = int(np.argmax(~np.isfinite(block).all(axis=1)))
                    t = (start + done + bad) / info.sr
                    raise AudioError(
                        f"{info.path}: holds NaN or Inf samples (first at {t:.3f} s); "
                        "the file is damaged or was written by a broken plug-in"
                    )
                done += len(block)
                yield block
    except (sf.LibsndfileError, ValueError) as err:  # ValueError: soundfile lost its place
        raise AudioError(f"{info.path}: corrupt audio data ({_short(err)}); export it again") from None
    tolerance = LENGTH_TOLERANCE.get(info.format, 0.0)
    if done < want and start + done < info.frames * (1 - tolerance) - 1:
        raise AudioError(
            f"{info.path}: truncated: the audio ends at {(start + done) / info.sr:.2f} s of the "
            f"{info.duration_s:.2f} s the header promises; copy or export it again"
        )


def read(path: str | os.PathLike, *, start: int = 0, frames: int | None = None,
         info: AudioInfo | None = None) -> tuple[np.ndarray, int]:
    """Read original samples as float32 (frames, channels) and the file's sample rate."""
    info = info or probe(path)
    blocks = list(iter_blocks(path, start=start, frames=frames, info=info))
    data = np.concatenate(blocks) if blocks else np.zeros((0, info.channels), np.float32)
    return data, info.sr


def load_analysis(path: str | os.PathLike, *, sr: int = ANALYSIS_SR,
                  progress=None) -> np.ndarray:
    """Decode `path` to mono float32 at `sr` Hz, in blocks, resampling with soxr.

    Memory stays at the output array plus one block, whatever the file's length.

    Args:
        progress: optional callable, called with the seconds of audio each block adds.

    Returns:
        y : np.ndarray [shape=(n,)], float32
    """
    info = probe(path)
    n_out = math.ceil(info.frames * sr / info.sr) + 64
    out = np.empty(n_out, np.float32)
    stream = None if info.sr == sr else soxr.ResampleStream(info.sr, sr, 1, dtype="float32", quality="HQ")
    filled = 0
    peak = 0.0

    def put(chunk: np.ndarray) -> None:
        nonlocal filled, out
        if filled + len(chunk) > len(out):
            out = np.resize(out, filled + len(chunk))
        out[filled:filled + len(chunk)] = chunk
        filled += len(chunk)

    for block in iter_blocks(path, info=info):
        # A matrix product mixes down: numpy's mean across a row of 2 is ten times slower.
        mono = block[:, 0] if block.shape[1] == 1 else block @ np.full(block.shape[1], 1 / block.shape[1], np.float32)
        peak = max(peak, float(mono.max(initial=0.0)), -float(mono.min(initial=0.0)))
        put(mono if stream is None else stream.resample_chunk(mono))
        if progress is not None:
            progress(len(block) / info.sr)
    if stream is not None:
        put(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    if peak < SILENCE_PEAK:
        log.warning("%s: the audio is silent (peak below -90 dBFS)", info.path)
    return out[:filled]


def write(path: str | os.PathLike, data: np.ndarray, sr: int, *, subtype: str | None = None,
          protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Write audio atomically (temp file in the same folder, then rename).

    Args:
        data : np.ndarray [shape=(n,) or (n, channels)]
        subtype: soundfile subtype such as 'PCM_16', 'PCM_24', 'FLOAT' (default: the
            format's default).
        protect: input files that must never be overwritten; writing onto one is an error.
    """
    data = np.asarray(data)
    channels = 1 if data.ndim == 1 else data.shape[1]
    return write_blocks(path, [data], sr, channels=channels, subtype=subtype, protect=protect)


def write_blocks(path: str | os.PathLike, blocks: Iterable[np.ndarray], sr: int, *,
                 channels: int, subtype: str | None = None,
                 protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Write audio that arrives in blocks, atomically, holding one block at a time.

    Args:
        blocks: arrays of shape (n,) or (n, channels), written in order.
        channels: channels of every block.
        subtype, protect: as in `write`.
    """
    path = Path(path)
    for other in protect:
        if Path(other).exists() and path.exists() and path.resolve() == Path(other).resolve():
            raise AudioError(f"{path}: is an input file; choose another output name")
    fmt = _format_for(path)

    def writer(tmp: Path) -> None:
        with sf.SoundFile(tmp, "w", samplerate=int(sr), channels=channels, format=fmt,
                          subtype=subtype) as fh:
            for data in blocks:
                step = _OGG_WRITE_BLOCK if fmt == "OGG" else max(len(data), 1)
                for i in range(0, len(data), step):
                    fh.write(data[i:i + step])

    return atomic_write_bytes(path, writer)


def _format_for(path: Path) -> str:
    ext = path.suffix.lower()
    formats = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
    if ext not in formats:
        raise AudioError(f"{path}: unknown audio extension '{ext}'; use .wav, .flac, .ogg or .mp3")
    return formats[ext]
