"""Stems of a recording (drums, bass, vocals, other), cached as audio and as mels on the analysis grid.

Two backends: 'demucs' (htdemucs, with weights already on this machine; it never downloads)
and 'hpss' (offline harmonic/percussive separation plus band splitting; see `hpss_stems`).

What is cached, per sample (`editorbot stems` writes both):

    cache/stems/{name}_stems.npz       drums, bass, vocals, other: (n,) float16 mono audio at
                                       the analysis rate (params.sr, 22050 Hz by default),
                                       sample-aligned with the analysis audio
    cache/stems_mel/{name}_stems.npz   drums, bass, vocals, other: (128, T) float16 mels on the
                                       analysis grid, T equal to the raw mel's

The stem mels are normalised against the MIX's maximum mel power, not each stem's own: a
stem's value is (dB re the loudest mel bin of the mix + 80) / 80, on the same scale as
cache/features/{name}_raw.npz. A quiet stem therefore stays quiet (a recording without
vocals has a near-zero vocals mel instead of its noise blown up to full scale), and stems
can be compared with each other and with the raw mel. Both files record the backend and
the FeatureParams they were made with in their meta; a model trained on one backend's
stems refuses another's (`check_backend`), and stems made on another analysis grid are
refused (`read_stem_mels`). The analysis grid is a `params: FeatureParams` argument
(DEFAULT_PARAMS by default), as everywhere else; nothing here reads it as a global.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

import librosa
import numpy as np
import scipy.ndimage
import soxr

from . import __version__
from .audio import AUDIO_EXTENSIONS, iter_blocks, load_analysis, probe
from .cache import file_fingerprint, load_npz, save_npz
from .errors import UserError, log
from .features import DEFAULT_PARAMS, FeatureParams, mel_power, normalize_db
from .layout import RAW_SUFFIX, Layout

STEMS = ("drums", "bass", "vocals", "other")
BACKENDS = ("hpss", "demucs")
STEM_DTYPE = np.float16      # bounds the cache's size; about -70 dB of rounding noise
SUM_ERROR_DB = -60.0         # hpss: the four stems sum back to the mix at least this far below it

# htdemucs as published by the demucs authors: the bag 'htdemucs' holds the one model with
# this signature. demucs's torch-hub download stores it as checkpoints/HTDEMUCS_TH; its
# HuggingFace copy is HF_REPO_DIR/snapshots/*/{HTDEMUCS_SIG}.safetensors.
HTDEMUCS_SIG = "955717e8"
HTDEMUCS_TH = "955717e8-8726e21a.th"
HF_REPO_DIR = "models--adefossez--HTDemucs"
DEMUCS_OVERLAP = 0.25  # share of each model segment that overlaps the next
DEMUCS_INSTALL = "pip install -e '.[stems]'"

Progress = Callable[[float], None]  # called with the seconds of audio just finished


# ---------------------------------------------------------------------------------------
# The offline backend: harmonic/percussive separation plus band splitting

@dataclass(frozen=True)
class HpssParams:
    """Settings of the 'hpss' backend (recorded in the cache meta).

    n_fft, hop_length: STFT of the analysis audio (22050 Hz by default).
    kernel_frames: median filter length along time (harmonic enhancement), in frames.
    kernel_bins: median filter length along frequency (percussive enhancement), in bins.
    margin: a bin is harmonic or percussive only where its median beats the other's by this
        factor; the rest is residual (librosa's hpss margin).
    bass_hz, treble_hz: crossovers splitting the harmonic part into bass / mid / treble
        bands, each a raised-cosine transition one octave wide.
    block_s: seconds of audio per block; memory is one block's STFT.
    """

    n_fft: int = 2048
    hop_length: int = 512
    kernel_frames: int = 31
    kernel_bins: int = 31
    margin: float = 2.0
    bass_hz: float = 200.0
    treble_hz: float = 4000.0
    block_s: float = 30.0

    def as_dict(self) -> dict:
        return asdict(self)


HPSS_PARAMS = HpssParams()


def band_weights(freqs_hz: np.ndarray, params: HpssParams = HPSS_PARAMS) -> np.ndarray:
    """Bass, mid and treble weights per frequency: raised-cosine crossovers one octave wide
    centred on params.bass_hz and params.treble_hz.

    Args:
        freqs_hz : np.ndarray [shape=(n_bins,)]

    Returns:
        w : np.ndarray [shape=(3, n_bins)], float32, each column summing to 1
    """
    octaves = np.log2(np.maximum(freqs_hz, 1e-3))

    def below(cut_hz: float) -> np.ndarray:  # 1 an half octave below the cut, 0 above
        x = np.clip(octaves - np.log2(cut_hz) + 0.5, 0.0, 1.0)
        return 0.5 * (1.0 + np.cos(np.pi * x))

    low = below(params.bass_hz)
    high = 1.0 - below(params.treble_hz)
    return np.stack([low, 1.0 - low - high, high]).astype(np.float32)


def _hpss_masks(mag: np.ndarray, params: HpssParams, sr: int) -> np.ndarray:
    """Soft masks (drums, bass, vocals, other) for a magnitude spectrogram (bins, frames) of
    audio at `sr` Hz; they sum to 1 in every bin."""
    harm = scipy.ndimage.median_filter(mag, size=(1, params.kernel_frames), mode="reflect")
    perc = scipy.ndimage.median_filter(mag, size=(params.kernel_bins, 1), mode="reflect")
    hp, pp = harm * harm, perc * perc
    m2 = params.margin ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        mask_h = np.where(hp > 0, hp / (hp + m2 * pp), 0.0).astype(np.float32)
        mask_p = np.where(pp > 0, pp / (pp + m2 * hp), 0.0).astype(np.float32)
    residual = 1.0 - mask_h - mask_p  # >= 0 because margin >= 1
    freqs = librosa.fft_frequencies(sr=sr, n_fft=params.n_fft)
    low, mid, high = band_weights(freqs, params)[:, :, None]
    return np.stack([mask_p, mask_h * low, mask_h * mid, mask_h * high + residual])


def _context_frames(params: HpssParams) -> int:
    """Frames of context each side of a block so that blocks equal the whole-signal result:
    STFT edge frames, then the time median, then the inverse STFT's overlap."""
    per_window = params.n_fft // params.hop_length
    return params.kernel_frames // 2 + 2 * per_window + 2


def hpss_stems(y: np.ndarray, params: HpssParams = HPSS_PARAMS, *, sr: int = DEFAULT_PARAMS.sr,
               dtype=np.float32, progress: Progress | None = None) -> np.ndarray:
    """The 'hpss' backend: four stems of mono analysis audio, named for the Demucs slots
    they stand in for. They are NOT instrument separations:

    - drums: the percussive part (broadband, short: hits, clicks, strums' attacks);
    - bass: the harmonic part below about bass_hz (bass lines, kick and tom bodies' tones);
    - vocals: the harmonic part between bass_hz and treble_hz (voice, and every other
      sustained mid-range instrument: guitars, keys, pads);
    - other: the harmonic part above treble_hz plus the residual that is neither clearly
      harmonic nor percussive (noise, breath, reverb tails).

    The four masks sum to 1 in every bin, so the stems sum back to the mix (up to STFT
    round-off; SUM_ERROR_DB states the bound after float16 storage). Computed in blocks of
    params.block_s with enough context that the result equals the one-block result.

    Args:
        y : np.ndarray [shape=(n,)], mono float32 at `sr`
        sr: the sample rate of y in Hz (the analysis grid's, params.sr of a FeatureParams)
        dtype: of the result (STEM_DTYPE for the cache)
        progress: called with the seconds of audio each block finishes

    Returns:
        stems : np.ndarray [shape=(4, n)], `dtype`, in STEMS order
    """
    y = np.asarray(y, dtype=np.float32)
    hop = params.hop_length
    block = max(1, int(params.block_s * sr) // hop) * hop
    context = _context_frames(params) * hop
    out = np.empty((len(STEMS), len(y)), dtype)
    for a in range(0, len(y), block):
        b = min(a + block, len(y))
        s0, s1 = max(0, a - context), min(len(y), b + context)  # s0 stays on the hop grid
        seg = y[s0:s1]
        spec = librosa.stft(seg, n_fft=params.n_fft, hop_length=hop, center=True)
        masked = _hpss_masks(np.abs(spec), params, sr) * spec[None]
        parts = librosa.istft(masked, hop_length=hop, n_fft=params.n_fft, length=len(seg))
        out[:, a:b] = parts[:, a - s0:b - s0]
        if progress is not None:
            progress((b - a) / sr)
    return out


# ---------------------------------------------------------------------------------------
# The demucs backend: weights already on this machine, chunked overlap-add, bounded memory

class DemucsUnavailable(UserError):
    """The demucs backend cannot run here: the package, its weights or a readable weights
    file is missing. The message says what is wrong and how to provide it; the caller adds
    its own ways round it (another backend, another flag)."""


def _require_demucs() -> None:
    try:
        import demucs.htdemucs  # noqa: F401  (the model class and its dependencies)
    except ImportError as err:
        raise DemucsUnavailable(f"the demucs backend needs the demucs package ({err}); install it with "
                        f"`{DEMUCS_INSTALL}`") from None


def hf_hub_cache() -> Path:
    """The HuggingFace hub cache folder, found as huggingface_hub finds it (no import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "huggingface" / "hub"


def weight_locations() -> list[Path]:
    """Where htdemucs weights are looked for when no file is given (in this order): the torch
    hub cache demucs downloads into, then the HuggingFace hub cache."""
    import torch
    places = [Path(torch.hub.get_dir()) / "checkpoints" / HTDEMUCS_TH]
    places += sorted((hf_hub_cache() / HF_REPO_DIR / "snapshots").glob(f"*/{HTDEMUCS_SIG}.safetensors"))
    return places


def find_demucs_weights(weights: str | os.PathLike | None = None) -> Path:
    """The htdemucs weights file to load, found on local disk only (nothing downloads).

    Args:
        weights: a .th or .safetensors file, or a folder holding HTDEMUCS_TH or
            {HTDEMUCS_SIG}.th / .safetensors; None searches `weight_locations()`.

    Raises UserError naming the places searched and how to provide the file.
    """
    if weights is not None:
        path = Path(weights)
        if path.is_dir():
            for cand in (HTDEMUCS_TH, f"{HTDEMUCS_SIG}.th", f"{HTDEMUCS_SIG}.safetensors"):
                if (path / cand).is_file():
                    return path / cand
            raise DemucsUnavailable(f"{path}: holds no htdemucs weights (looked for {HTDEMUCS_TH} and "
                            f"{HTDEMUCS_SIG}.safetensors); pass the weights file itself")
        if not path.is_file():
            raise DemucsUnavailable(f"{path}: no such weights file; pass the htdemucs .th or "
                            ".safetensors file you downloaded")
        return path
    places = weight_locations()
    for place in places:
        if place.is_file():
            return place
    import torch
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    raise DemucsUnavailable(
        f"htdemucs weights not found on this machine (looked for {hub / HTDEMUCS_TH} and "
        f"{hf_hub_cache() / HF_REPO_DIR}/snapshots/*/{HTDEMUCS_SIG}.safetensors); copy "
        f"{HTDEMUCS_TH} from a machine that ran demucs into {hub}/")


def load_demucs(weights_path: str | os.PathLike, *, trust_pickle: bool = False):
    """Load an htdemucs model from a local weights file (demucs's .th package or its
    .safetensors export). The model is kept for the next call with the same, unchanged file.

    A .th is a pickle: it is read with torch.load(weights_only=True), which builds only
    tensors, plain data and the demucs model classes, so a file from elsewhere cannot run
    code. A .th that needs anything else is refused unless trust_pickle (the user's
    --trust-weights: they trust where the file came from).

    Returns the model in eval mode; it has samplerate, audio_channels, sources, segment
    and maps (batch, audio_channels, samples) to (batch, sources, audio_channels, samples).
    """
    path = Path(weights_path)
    return _load_demucs(path, path.stat().st_mtime_ns, trust_pickle)


def _read_th(path: Path, trust_pickle: bool) -> dict:
    """A demucs .th package ({'klass', 'args', 'kwargs', 'state'}), read as weights only
    unless trust_pickle."""
    import pickle
    from fractions import Fraction

    import torch
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs
    try:
        # The model classes are named, not run, by the package; HTDemucs's segment length
        # may be a Fraction, built from a string.
        with torch.serialization.safe_globals([Demucs, HDemucs, HTDemucs, Fraction]):
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        from .checkpoint import _foreign_object, refused_as_unsafe
        if trust_pickle or not refused_as_unsafe(err):
            raise
        raise DemucsUnavailable(
            f"{path}: refused: it holds {_foreign_object(err)} besides a demucs model's class "
            "and weights, and loading it could run code; pass --trust-weights only if you trust "
            "where the file came from, or use its .safetensors export") from None


@lru_cache(maxsize=2)
def _load_demucs(path: Path, mtime_ns: int, trust_pickle: bool = False):
    import pickle
    _require_demucs()
    from demucs.states import load_model
    errors: tuple = (pickle.UnpicklingError, RuntimeError, OSError, EOFError, KeyError,
                     ValueError, AttributeError, TypeError)
    try:
        if path.suffix == ".safetensors":
            try:
                from demucs.hf import load_safetensors_model
                from safetensors import SafetensorError
            except ImportError as err:
                raise DemucsUnavailable(f"{path}: reading .safetensors weights needs safetensors and "
                                f"pyyaml ({err}); pip install safetensors pyyaml") from None
            errors += (SafetensorError,)
            model = load_safetensors_model(path)
        else:
            model = load_model(_read_th(path, trust_pickle))
    except errors as err:
        raise DemucsUnavailable(f"{path}: not a loadable demucs weights file "
                        f"({type(err).__name__}: {str(err)[:120]}); re-copy it") from None
    _check_model(model, path)
    return model.eval()


def _check_model(model, where) -> None:
    missing = [s for s in STEMS if s not in list(getattr(model, "sources", []))]
    if missing:
        raise DemucsUnavailable(f"{where}: the model's sources {list(getattr(model, 'sources', []))} "
                        f"lack {', '.join(missing)}; use a 4-stem htdemucs model")


def chunk_weight(segment_length: int) -> np.ndarray:
    """Triangle weight over one model segment (peak 1 in the middle, > 0 everywhere)."""
    half = segment_length // 2
    w = np.concatenate([np.arange(1, half + 1), np.arange(segment_length - half, 0, -1)])
    return (w / w.max()).astype(np.float32)


def demucs_stream(model, blocks: Iterable[np.ndarray], *, overlap: float = DEMUCS_OVERLAP,
                  progress: Progress | None = None) -> Iterator[np.ndarray]:
    """Run a Demucs-style model over audio arriving in blocks; yield finished output blocks.

    The model sees segments of model.segment seconds at offsets 0, stride, 2 stride, ...
    (stride = (1 - overlap) segment), on one grid whatever the block sizes, and their
    outputs are blended with `chunk_weight`; the last, shorter segment is centred in a
    full-length window of real audio (zeros beyond the file). This is what
    demucs.apply.apply_model(model, mix, shifts=0, split=True, overlap=overlap) computes on
    the whole signal at once; here memory is one segment plus one block.

    Args:
        model: callable on a torch tensor (1, C, L) -> (1, S, C, L), with samplerate,
            segment (seconds) and sources; C = model.audio_channels
        blocks: np.ndarray [shape=(C, n)] float32 at model.samplerate, in order
        progress: called with the seconds of output each yielded block holds

    Yields:
        np.ndarray [shape=(S, C, n)] float32, consecutive, totalling the input's length
    """
    import torch

    seg = int(model.segment * model.samplerate)
    stride = int((1 - overlap) * seg)
    if not 0 < stride <= seg:
        raise ValueError(f"overlap {overlap} must be in [0, 1)")
    weight = chunk_weight(seg)
    buf, buf_start = None, 0  # input kept from buf_start on
    acc = wsum = None         # output sums kept from acc_start on
    acc_start = offset = total = 0

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(x[None])))
        return out[0].float().numpy()

    def add(y: np.ndarray, at: int) -> None:
        nonlocal acc, wsum
        end = at + y.shape[-1] - acc_start
        if acc is None:
            acc = np.zeros(y.shape[:2] + (0,), np.float32)
            wsum = np.zeros(0, np.float32)
        if end > acc.shape[-1]:
            grow = end - acc.shape[-1]
            acc = np.concatenate([acc, np.zeros(acc.shape[:2] + (grow,), np.float32)], axis=-1)
            wsum = np.concatenate([wsum, np.zeros(grow, np.float32)])
        w = weight[:y.shape[-1]]
        acc[..., at - acc_start:end] += w * y
        wsum[at - acc_start:end] += w

    def finished(upto: int) -> np.ndarray | None:
        nonlocal acc, wsum, acc_start
        n = upto - acc_start
        if acc is None or n <= 0:
            return None
        done = acc[..., :n] / wsum[:n]
        acc, wsum, acc_start = acc[..., n:], wsum[n:], upto
        if progress is not None:
            progress(n / model.samplerate)
        return done

    for block in blocks:
        block = np.asarray(block, np.float32)
        buf = block if buf is None else np.concatenate([buf, block], axis=-1)
        total += block.shape[-1]
        while offset + seg <= total:
            add(run(buf[:, offset - buf_start:offset - buf_start + seg]), offset)
            offset += stride
            out = finished(offset)
            if out is not None:
                yield out
            keep = max(0, offset - seg)  # the last, centred segment looks back < seg / 2
            buf, buf_start = buf[:, keep - buf_start:], keep
    while offset < total:  # segments that run past the end: centre them in real audio
        length = total - offset
        left = (seg - length) // 2
        start = offset - left
        x = np.zeros((buf.shape[0], seg), np.float32)
        lo, hi = max(start, 0), min(start + seg, total)
        x[:, lo - start:hi - start] = buf[:, lo - buf_start:hi - buf_start]
        add(run(x)[..., left:left + length], offset)
        offset += stride
        out = finished(min(offset, total))
        if out is not None:
            yield out


def _model_blocks(path: Path, sr: int, channels: int) -> Iterator[np.ndarray]:
    """The file's audio as (channels, n) float32 blocks at `sr` (mono is copied to every
    channel; a mono model gets the downmix; otherwise channels beyond `channels` are
    dropped)."""
    info = probe(path)
    stream = None if info.sr == sr else soxr.ResampleStream(info.sr, sr, channels,
                                                            dtype="float32", quality="HQ")
    for block in iter_blocks(path, info=info):
        if channels == 1 and block.shape[1] > 1:
            block = block.mean(axis=1, keepdims=True, dtype=np.float32)
        elif block.shape[1] < channels:
            block = np.repeat(block[:, :1], channels, axis=1)
        x = np.ascontiguousarray(block[:, :channels])
        yield (x if stream is None else stream.resample_chunk(x)).T
    if stream is not None:
        yield stream.resample_chunk(np.zeros((0, channels), np.float32), last=True).T


def demucs_stems(path: str | os.PathLike, model, n_out: int, *, sr: int = DEFAULT_PARAMS.sr,
                 overlap: float = DEMUCS_OVERLAP, progress: Progress | None = None) -> np.ndarray:
    """The 'demucs' backend: stems of `path` from a Demucs-style model, mono at `sr`.

    Reads the file in blocks at the model's rate and channel count, runs `demucs_stream`,
    downmixes each stem to mono and resamples it to `sr` as it comes. Memory: the
    output plus one model segment.

    Args:
        model: see `demucs_stream`; its sources must include the four STEMS
        n_out: samples of the analysis audio; the stems are cut or zero-padded to it
        sr: the analysis rate in Hz (params.sr of a FeatureParams)

    Returns:
        stems : np.ndarray [shape=(4, n_out)], STEM_DTYPE, in STEMS order
    """
    _check_model(model, path)
    order = [list(model.sources).index(s) for s in STEMS]
    out = np.zeros((len(STEMS), n_out), STEM_DTYPE)
    down = soxr.ResampleStream(model.samplerate, sr, len(STEMS), dtype="float32", quality="HQ")
    filled = 0

    def put(chunk: np.ndarray) -> None:  # chunk (n, 4)
        nonlocal filled
        n = min(len(chunk), n_out - filled)
        out[:, filled:filled + n] = chunk[:n].T
        filled += n

    blocks = _model_blocks(Path(path), model.samplerate, model.audio_channels)
    for sep in demucs_stream(model, blocks, overlap=overlap, progress=progress):
        mono = sep[order].mean(axis=1)  # (4, n)
        put(down.resample_chunk(np.ascontiguousarray(mono.T)))
    put(down.resample_chunk(np.zeros((0, len(STEMS)), np.float32), last=True))
    return out


# ---------------------------------------------------------------------------------------
# Files: separate, make the mels, cache; and the read side for models

def stem_mels(stems: np.ndarray, y_mix: np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """Mels of the stems on the analysis grid, on the mix's dB scale (module docstring).

    Args:
        stems : np.ndarray [shape=(4, n)], at params.sr
        y_mix : np.ndarray [shape=(n,)], the analysis audio they came from
        params: the analysis grid

    Returns:
        mels : np.ndarray [shape=(4, n_mels, t)], float32 in [0, 1]
    """
    return np.stack(list(_iter_stem_mels(stems, y_mix, params)))


def _iter_stem_mels(stems: np.ndarray, y_mix: np.ndarray, params: FeatureParams) -> Iterator[np.ndarray]:
    ref = float(mel_power(y_mix, params).max(initial=0.0))
    for stem in stems:
        yield normalize_db(mel_power(stem.astype(np.float32), params), params, ref=ref)


def resolve_backend(backend: str, weights: str | os.PathLike | None = None) -> str:
    """'auto' becomes 'demucs' when the package and its weights are here, else 'hpss'."""
    if backend in BACKENDS:
        return backend
    if backend != "auto":
        raise UserError(f"unknown stems backend '{backend}'; use one of auto, {', '.join(BACKENDS)}")
    try:
        _require_demucs()
        find_demucs_weights(weights)
    except DemucsUnavailable as err:
        log.info("stems: using the offline 'hpss' backend (%s)", err)
        return "hpss"
    return "demucs"


def _backend_meta(backend: str, weights: str | os.PathLike | None, model) -> dict:
    if backend == "hpss":
        return {"backend": "hpss", "hpss_params": HPSS_PARAMS.as_dict()}
    if model is not None:  # a model handed in directly (tests, benchmarks)
        return {"backend": "demucs", "demucs_model": type(model).__name__,
                "overlap": DEMUCS_OVERLAP}
    path = find_demucs_weights(weights)
    return {"backend": "demucs", "demucs_model": path.name,
            "demucs_fingerprint": file_fingerprint(path), "overlap": DEMUCS_OVERLAP}


def separate(path: str | os.PathLike, backend: str, *, params: FeatureParams = DEFAULT_PARAMS,
             weights: str | os.PathLike | None = None, model=None, progress: Progress | None = None,
             trust_pickle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Stems of an audio file and its analysis audio.

    Args:
        backend: 'hpss' or 'demucs'
        params: the analysis grid (its sr is the stems' rate)
        weights: htdemucs weights (see `find_demucs_weights`); ignored for hpss
        model: a loaded Demucs-style model to use instead of weights (demucs only)
        progress: called with seconds of audio finished
        trust_pickle: load a .th that needs more than weights (see `load_demucs`)

    Returns:
        stems : np.ndarray [shape=(4, n)], STEM_DTYPE, mono at params.sr, STEMS order
        y_mix : np.ndarray [shape=(n,)], float32, `load_analysis(path, sr=params.sr)`
    """
    y_mix = load_analysis(path, sr=params.sr)
    if backend == "hpss":
        return hpss_stems(y_mix, sr=params.sr, dtype=STEM_DTYPE, progress=progress), y_mix
    if backend != "demucs":
        raise UserError(f"unknown stems backend '{backend}'; use one of {', '.join(BACKENDS)}")
    if model is None:
        _require_demucs()
        model = load_demucs(find_demucs_weights(weights), trust_pickle=trust_pickle)
    return demucs_stems(path, model, len(y_mix), sr=params.sr, progress=progress), y_mix


def stems_meta(path: str | os.PathLike, backend: str, *, params: FeatureParams = DEFAULT_PARAMS,
               weights=None, model=None) -> dict:
    """The meta both cache files carry: source, backend and how the arrays were made
    (the analysis grid `params` among them)."""
    return {"kind": "stems", "source": Path(path).name, "source_fingerprint": file_fingerprint(path),
            "stems": list(STEMS), "sr": params.sr, "dtype": np.dtype(STEM_DTYPE).name,
            "params": params.as_dict(), "mel_reference": "mix_max",
            "editorbot_version": __version__} | _backend_meta(backend, weights, model)


def cache_stems(path: str | os.PathLike, stems_path: str | os.PathLike,
                mels_path: str | os.PathLike, backend: str, *, params: FeatureParams = DEFAULT_PARAMS,
                weights=None, model=None, progress: Progress | None = None,
                trust_pickle: bool = False) -> dict:
    """Write the stem audio and the stem mels of `path` on the analysis grid `params`,
    unless both are up to date (made by this backend on this grid from this very file).

    Memory: the separation works on one block (hpss: 30 s STFT) or one model segment
    (demucs) at a time; what grows with the recording is the arrays being cached plus the
    analysis audio, about 27 MB per minute of audio.

    Returns a summary: backend, frames, seconds, and whether it was computed.
    """
    probe(path)
    meta = stems_meta(path, backend, params=params, weights=weights, model=model)
    have = [load_npz(p) for p in (stems_path, mels_path)]
    if all(h is not None and h[1] == meta for h in have):
        if progress is not None:
            progress(probe(path).duration_s)
        return {"backend": backend, "frames": int(have[1][0][STEMS[0]].shape[1]),
                "seconds": len(have[0][0][STEMS[0]]) / params.sr, "computed": False}
    stems, y_mix = separate(path, backend, params=params, weights=weights, model=model,
                            progress=progress, trust_pickle=trust_pickle)
    mels = [m.astype(STEM_DTYPE) for m in _iter_stem_mels(stems, y_mix, params)]
    save_npz(stems_path, meta, **dict(zip(STEMS, stems)))
    save_npz(mels_path, meta, **dict(zip(STEMS, mels)))
    return {"backend": backend, "frames": int(mels[0].shape[1]), "seconds": len(y_mix) / params.sr,
            "computed": True}


def check_backend(expected: str | None, found: str, where: str | os.PathLike) -> None:
    """Refuse stems from another backend than the one a model was trained on.

    Args:
        expected: the checkpoint's 'stems_backend' (None: the model does not use stems)
        found: the backend recorded in the stems' cache meta
        where: the file the stems came from, for the message
    """
    if expected is not None and expected != found:
        raise UserError(
            f"{where}: holds '{found}' stems but the model was trained on '{expected}' stems; "
            f"run `editorbot stems --backend {expected}` to remake them (or retrain on "
            f"'{found}' stems)")


def read_stem_mels(path: str | os.PathLike, *, params: FeatureParams = DEFAULT_PARAMS,
                   backend: str | None = None, source_fingerprint: str | None = None,
                   frames: int | None = None) -> tuple[np.ndarray, str]:
    """Cached stem mels from one cache/stems_mel/{name}_stems.npz, checked.

    Args:
        path: the stem-mel cache file
        params: the analysis grid they must be on (the raw mel's); stems made with other
            FeatureParams are refused with a UserError
        backend: the backend a model was trained on; other stems are refused with a
            UserError (`check_backend`). None accepts whichever backend made them.
        source_fingerprint: `file_fingerprint` of the raw they must come from (None: not
            checked); stems of another or an older file are refused
        frames: the expected frame count (the raw mel's); a mismatch is an error

    Returns:
        mels : np.ndarray [shape=(4, n_mels, t)], float32 in [0, 1], STEMS order
        backend : str, 'hpss' or 'demucs'
    """
    path = Path(path)
    name = path.name.removesuffix("_stems.npz")
    entry = load_npz(path)
    if entry is None:
        raise UserError(f"{path}: no stems for '{name}'; run `editorbot stems "
                        f"--backend {backend or 'hpss'} {name}` first")
    arrays, meta = entry
    found = meta.get("backend", "unknown")
    check_backend(backend, found, path)
    redo = f"run `editorbot stems --backend {found} {name}` again"
    if meta.get("params") != params.as_dict() or any(s not in arrays for s in STEMS):
        raise UserError(f"{path}: made with other analysis settings or by another version; {redo}")
    if source_fingerprint is not None and source_fingerprint != meta.get("source_fingerprint"):
        raise UserError(f"{path}: made from an older version of {meta.get('source', name)}; {redo}")
    mels = np.stack([arrays[s] for s in STEMS]).astype(np.float32)
    if frames is not None and mels.shape[2] != frames:
        raise UserError(f"{path}: {mels.shape[2]} frames where {frames} were expected; {redo}")
    return mels, found


def load_stem_mels(layout: Layout, name: str, backend: str | None = None, *,
                   params: FeatureParams = DEFAULT_PARAMS,
                   frames: int | None = None) -> tuple[np.ndarray, str]:
    """The cached stem mels of a sample, for models (RL beat features), checked against
    the sample's raw in layout.input_dir when it is there (see `read_stem_mels`).

    Args:
        layout: where the cache is (cache/stems_mel/{name}_stems.npz)
        backend: the backend a model was trained on; other stems are refused with a
            UserError. None accepts whichever backend's stems exist (record the returned
            backend in the checkpoint as 'stems_backend').
        params: the analysis grid they must be on (the raw mel's)
        frames: the expected frame count (the raw mel's); a mismatch is an error

    Returns:
        mels : np.ndarray [shape=(4, n_mels, t)], float32 in [0, 1], STEMS order
        backend : str, 'hpss' or 'demucs'
    """
    raws = [p for p in layout.input_dir.glob(f"{name}{RAW_SUFFIX}.*")
            if p.suffix.lower() in AUDIO_EXTENSIONS]
    return read_stem_mels(layout.stems_mel(name), params=params, backend=backend, frames=frames,
                          source_fingerprint=file_fingerprint(raws[0]) if raws else None)


def stem_mels_for(path: str | os.PathLike, backend: str, *, params: FeatureParams = DEFAULT_PARAMS,
                  cache_dir: str | os.PathLike | None = None, frames: int | None = None,
                  weights=None, progress: Progress | None = None) -> np.ndarray:
    """Stem mels of any audio file, for editing a recording with a model trained on
    `backend`'s stems: the cached ones when cache_dir holds stems of this very file
    (stems_mel/{name}_stems.npz, name = the file name less '_raw'; another backend's are
    refused with a UserError), else computed now with `backend` (nothing is written).

    Args:
        params: the analysis grid (the model's feature parameters)
        frames: the raw mel's frame count; stems on another grid are an error

    Returns:
        mels : np.ndarray [shape=(4, n_mels, t)], float32 in [0, 1], STEMS order
    """
    path = Path(path)
    if cache_dir is not None:
        cached_path = Layout(cache_dir=Path(cache_dir)).stems_mel(path.stem.removesuffix(RAW_SUFFIX))
        entry = load_npz(cached_path)
        if entry is not None and entry[1].get("source_fingerprint") == file_fingerprint(path):
            return read_stem_mels(cached_path, params=params, backend=backend, frames=frames)[0]
    try:
        stems, y_mix = separate(path, backend, params=params, weights=weights, progress=progress)
    except DemucsUnavailable as err:
        raise UserError(f"{err}. This model was trained on {backend} stems, so editing with it "
                        f"needs {backend} stems of {path.name}: provide them as said, or run "
                        f"`editorbot stems --backend {backend}` on a machine that can and pass "
                        "its --cache-dir") from None
    mels = stem_mels(stems, y_mix, params)
    if frames is not None and mels.shape[2] != frames:
        raise UserError(f"{path}: its stems have {mels.shape[2]} mel frames where the raw mel has "
                        f"{frames}; the model's feature parameters differ from the stems' "
                        "(retrain on the default analysis settings)")
    return mels
