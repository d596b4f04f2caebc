"""Mel features on the contract's grid, and the parameter-keyed, atomic cache."""
from __future__ import annotations

import os

import librosa
import numpy as np
import pytest
import soundfile as sf

from editorbot import cache, precache
from editorbot.features import DEFAULT_PARAMS, FeatureParams, mel, mel_power

from .conftest import sine


@pytest.mark.filterwarnings("ignore:n_fft=2048 is too large")
@pytest.mark.parametrize("n", [1, 700, 2048, 2049, 22050 * 7 + 13])
def test_mel_power_equals_librosa(rng, n):
    y = (rng.standard_normal(n) * 0.1).astype(np.float32)
    ours = mel_power(y)
    ref = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=256, n_mels=128)
    assert ours.shape == ref.shape == (128, 1 + n // 256)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6 * ref.max())


def test_mel_is_normalised_db_in_unit_range(rng):
    y = sine(1000.0, 22050, 2.0)[:, 0] + (rng.standard_normal(44100) * 1e-3).astype(np.float32)
    m = mel(y)
    assert m.dtype == np.float32 and m.shape == (128, 1 + len(y) // 256)
    assert m.min() >= 0.0 and m.max() == pytest.approx(1.0)
    # The band holding 1 kHz is the loudest; (dB + 80) / 80 maps the noise floor
    # (about -50 dB below the tone) to roughly 0.3 to 0.4.
    band = int(np.argmin(np.abs(librosa.mel_frequencies(130, fmax=11025)[1:-1] - 1000)))
    mid = m[:, 20:-20]
    assert np.argmax(mid.mean(axis=1)) == band
    expected = (librosa.power_to_db(mel_power(y), ref=np.max, top_db=80) + 80) / 80
    np.testing.assert_allclose(m, np.clip(expected, 0, 1), atol=1e-5)


def test_silence_gives_a_zero_mel():
    assert not mel(np.zeros(5000, np.float32)).any()


def _write(path, seconds=2.0, freq=440.0):
    sf.write(path, sine(freq, 44100, seconds, channels=2), 44100, subtype="PCM_16")


def test_cache_reuses_matching_entries_and_recomputes_on_change(tmp_path, monkeypatch):
    src, entry = tmp_path / "a_raw.wav", tmp_path / "cache" / "a_raw.npz"
    _write(src)
    calls = []
    real = precache.mel

    def counting(y, params):
        calls.append(params)
        return real(y, params)

    monkeypatch.setattr(precache, "mel", counting)
    first = precache.mel_for(src, entry)
    arrays, meta = cache.load_npz(entry)
    np.testing.assert_array_equal(arrays["mel"], first)
    assert meta["params"] == DEFAULT_PARAMS.as_dict() and meta["source"] == "a_raw.wav"
    assert "source_fingerprint" in meta and "editorbot_version" in meta

    np.testing.assert_array_equal(precache.mel_for(src, entry), first)
    assert len(calls) == 1  # reused

    other = FeatureParams(n_mels=64)
    assert precache.mel_for(src, entry, other).shape[0] == 64
    assert len(calls) == 2  # other parameters: recomputed, never reused

    _write(src, freq=880.0)  # the source changes
    os.utime(src, ns=(1, 1))  # even with an old mtime, the content hash differs
    changed = precache.mel_for(src, entry)
    assert len(calls) == 3 and not np.array_equal(changed, first)


def test_interrupted_write_leaves_no_entry_that_loads(tmp_path, monkeypatch):
    entry = tmp_path / "x.npz"
    real_savez = np.savez

    def dying(fh, **arrays):
        real_savez(fh, **arrays)
        fh.flush()
        raise KeyboardInterrupt  # killed after writing the temp file, before the rename

    monkeypatch.setattr(np, "savez", dying)
    with pytest.raises(KeyboardInterrupt):
        cache.save_npz(entry, {"k": 1}, mel=np.ones((4, 4), np.float32))
    assert not entry.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left either


def test_truncated_cache_entry_is_recomputed(tmp_path):
    src, entry = tmp_path / "a_raw.wav", tmp_path / "a_raw.npz"
    _write(src)
    good = precache.mel_for(src, entry)
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])  # what a crash inside a naive writer leaves
    assert cache.load_npz(entry) is None
    np.testing.assert_array_equal(precache.mel_for(src, entry), good)
    assert cache.load_npz(entry) is not None


def test_atomic_writes_get_ordinary_file_permissions(tmp_path):
    import stat

    from editorbot import audio

    umask = os.umask(0o022)
    try:
        npz = cache.save_npz(tmp_path / "a.npz", {}, x=np.zeros(3))
        wav = audio.write(tmp_path / "a.wav", np.zeros(100, np.float32), 22050)
    finally:
        os.umask(umask)
    for path in (npz, wav):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone gives 0600
