"""Audio input: every format, rate, depth and channel count; every kind of bad input."""
from __future__ import annotations

import logging
import struct

import numpy as np
import pytest
import soundfile as sf

from editorbot import audio
from editorbot.errors import AudioError

from .conftest import run_cli, sine

RATES = [8000, 11025, 16000, 22050, 44100, 48000, 88200, 96000, 192000]
# (extension, soundfile subtype, max abs error of the decoded samples)
LOSSLESS = [
    ("wav", "PCM_U8", 1 / 64), ("wav", "PCM_16", 1e-4), ("wav", "PCM_24", 1e-6),
    ("wav", "PCM_32", 1e-7), ("wav", "FLOAT", 1e-7), ("wav", "DOUBLE", 1e-7),
    ("flac", "PCM_S8", 1 / 64), ("flac", "PCM_16", 1e-4), ("flac", "PCM_24", 1e-6),
]


def dominant_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sr / len(y))


@pytest.mark.parametrize("ext,subtype,tol", LOSSLESS)
def test_lossless_formats_keep_original_samples(tmp_path, ext, subtype, tol):
    x = sine(440.0, 44100, 0.5, channels=2)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 44100, subtype=subtype)
    info = audio.probe(path)
    assert (info.sr, info.channels, info.frames) == (44100, 2, len(x))
    data, sr = audio.read(path)
    assert sr == 44100 and data.shape == x.shape and data.dtype == np.float32
    assert np.max(np.abs(data - x)) <= tol


@pytest.mark.parametrize("ext", ["ogg", "mp3"])
def test_lossy_formats_decode_to_the_same_tone(tmp_path, ext):
    x = sine(1000.0, 44100, 1.0, channels=2)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, 44100)
    y = audio.load_analysis(path)
    assert abs(len(y) - 22050) < 3000  # codec priming/padding
    assert abs(dominant_hz(y, 22050) - 1000.0) < 3.0
    # Stereo downmix of channels scaled 1 and 1/2: amplitude 0.5 * 0.75.
    assert 0.3 < np.sqrt(2) * np.std(y[2000:-2000]) < 0.45


@pytest.mark.parametrize("sr", RATES)
def test_any_rate_resamples_to_analysis_rate(tmp_path, sr):
    freq = 440.0
    x = sine(freq, sr, 1.0)
    path = tmp_path / "a.wav"
    sf.write(path, x, sr, subtype="PCM_24")
    y = audio.load_analysis(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 22050) <= 2
    assert abs(dominant_hz(y, 22050) - freq) < 1.5
    # soxr HQ keeps the in-band amplitude: rms of a 0.5 sine is 0.3536.
    assert abs(np.sqrt(np.mean(y[500:-500] ** 2)) - 0.5 / np.sqrt(2)) < 0.01


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_any_channel_count_is_mixed_to_mono_for_analysis(tmp_path, channels):
    x = sine(440.0, 22050, 0.5, channels=channels)
    path = tmp_path / "a.flac"
    sf.write(path, x, 22050)
    data, _ = audio.read(path)
    assert data.shape == (len(x), channels)
    y = audio.load_analysis(path)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-4)


def test_blocks_cover_the_file_exactly_and_resampling_streams(tmp_path, monkeypatch):
    x = sine(440.0, 48000, 3.0, channels=2) + np.linspace(0, 0.1, 144000)[:, None].astype(np.float32)
    path = tmp_path / "a.wav"
    sf.write(path, x, 48000, subtype="FLOAT")
    blocks = list(audio.iter_blocks(path, block_frames=10000))
    assert [len(b) for b in blocks[:-1]] == [10000] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate(blocks), x)
    part, _ = audio.read(path, start=12345, frames=1000)
    np.testing.assert_array_equal(part, x[12345:13345])
    # Streaming in small blocks gives the same analysis audio as one big block.
    whole = audio.load_analysis(path)
    monkeypatch.setattr(audio, "BLOCK_S", 0.25)
    streamed = audio.load_analysis(path)
    assert len(streamed) == len(whole)
    np.testing.assert_allclose(streamed, whole, atol=1e-5)


def test_write_is_atomic_and_refuses_to_overwrite_an_input(tmp_path):
    x = sine(440.0, 44100, 0.2, channels=2)
    src = tmp_path / "in.wav"
    audio.write(src, x, 44100, subtype="PCM_24")
    assert sf.info(src).subtype == "PCM_24"
    with pytest.raises(AudioError, match="input file"):
        audio.write(src, x, 44100, protect=(src,))
    assert not list(tmp_path.glob(".*.part"))
    # OGG is written in blocks (one large call crashes libsndfile).
    long = np.tile(x, (400, 1))  # 80 s
    audio.write(tmp_path / "long.ogg", long, 44100)
    assert abs(audio.probe(tmp_path / "long.ogg").frames - len(long)) < 4096


# ---- bad input --------------------------------------------------------------------

def _zero_length_wav(path):
    with sf.SoundFile(path, "w", samplerate=44100, channels=2, subtype="PCM_16"):
        pass


def _truncated_wav(path):
    sf.write(path, sine(440.0, 44100, 1.0, 2), 44100, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt_flac(path):
    rng = np.random.default_rng(0)
    sf.write(path, (rng.standard_normal((44100 * 3, 2)) * 0.1).astype(np.float32), 44100)
    data = bytearray(path.read_bytes())
    data[len(data) // 3: len(data) // 3 + 4000] = b"\x55" * 4000
    path.write_bytes(bytes(data))


def _truncated_mp3(path):
    sf.write(path, sine(440.0, 44100, 2.0, 2), 44100)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nan_wav(path):
    x = sine(440.0, 22050, 1.0)
    x[11025, 0] = np.nan
    sf.write(path, x, 22050, subtype="FLOAT")


def _inf_wav(path):
    x = sine(440.0, 22050, 1.0)
    x[100, 0] = np.inf
    sf.write(path, x, 22050, subtype="FLOAT")


BAD = {
    "missing": (lambda p: None, "no such file"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "empty": (lambda p: p.write_bytes(b""), "empty"),
    "zero_length": (_zero_length_wav, "no audio"),
    "not_audio": (lambda p: p.write_text("this is a text file, not audio\n" * 20), "not a readable audio file"),
    "truncated_wav": (_truncated_wav, "truncated"),
    "corrupt_flac": (_corrupt_flac, "corrupt"),
    "truncated_mp3": (_truncated_mp3, "truncated"),
    "nan": (_nan_wav, "NaN or Inf"),
    "inf": (_inf_wav, "NaN or Inf"),
}
SUFFIX = {"corrupt_flac": ".flac", "truncated_mp3": ".mp3"}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_raises_one_line_naming_the_file(tmp_path, kind):
    make, words = BAD[kind]
    path = tmp_path / f"bad{SUFFIX.get(kind, '.wav')}"
    make(path)
    with pytest.raises(AudioError) as err:
        audio.load_analysis(path)
    message = str(err.value)
    assert str(path) in message and words in message and "\n" not in message


@pytest.mark.parametrize("kind", ["missing", "not_audio", "truncated_wav", "nan"])
def test_bad_input_through_the_cli_exits_2_without_traceback(tmp_path, kind):
    make, words = BAD[kind]
    data = tmp_path / "training_data"
    (data / "input").mkdir(parents=True)
    (data / "desired_output").mkdir()
    raw = data / "input" / "song_raw.wav"
    make(raw)
    if kind == "missing":  # a dangling link: listed in the folder, not readable
        raw.symlink_to(tmp_path / "gone.wav")
    sf.write(data / "desired_output" / "song_edit.wav", sine(440.0, 22050, 0.5), 22050)
    result = run_cli("features", "--data-dir", data, "--cache-dir", tmp_path / "cache")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1 and str(raw) in lines[0] and words in lines[0]


def test_silence_is_allowed_with_a_warning(tmp_path, caplog):
    path = tmp_path / "quiet.wav"
    sf.write(path, np.zeros((22050, 2), np.float32), 44100, subtype="PCM_16")
    with caplog.at_level(logging.WARNING, logger="editorbot"):
        y = audio.load_analysis(path)
    assert len(y) == 11025 and not y.any()
    assert any("silent" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_wav_with_open_ended_data_size_is_read(tmp_path):
    """Streaming writers leave the data size at 0xFFFFFFFF; that is not truncation."""
    path = tmp_path / "stream.wav"
    x = sine(440.0, 22050, 0.5)
    sf.write(path, x, 22050, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    pos = data.find(b"data")
    data[pos + 4: pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    audio.probe(path)
