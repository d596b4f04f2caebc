"""Stems: the offline hpss backend, the demucs code path with randomly initialised HTDemucs
models (no weights exist here), the cache, and the refusal of another backend's stems."""
from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from editorbot import stems as st
from editorbot.audio import load_analysis
from editorbot.cli import main
from editorbot.errors import UserError
from editorbot.features import mel_power
from editorbot.layout import Layout
from editorbot.precache import mel_for

SR = 22050
DEMUCS_SOURCES = ["drums", "bass", "other", "vocals"]  # htdemucs's own order


def components(seconds: float, sr: int = SR, click_gain: float = 0.8, seed: int = 1) -> dict:
    """A 70 Hz bass sine, a 440 Hz tone with two harmonics (both faded in and out over
    0.3 s, so that they have no percussive edges), and a click every 0.5 s."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.3)
    rng = np.random.default_rng(seed)
    clicks = np.zeros(n)
    for b in np.arange(0.25, seconds, 0.5):
        i, m = int(b * sr), 400
        clicks[i:i + m] += rng.standard_normal(m)[:n - i] * np.exp(-np.arange(m) / 60)[:n - i] * click_gain
    return {"bass": 0.3 * fade * np.sin(2 * np.pi * 70 * t),
            "vocals": fade * sum(0.15 / k * np.sin(2 * np.pi * 440 * k * t) for k in (1, 2, 3)),
            "drums": clicks}


def db(residual: np.ndarray, reference: np.ndarray) -> float:
    return 10 * np.log10(np.sum(residual.astype(np.float64) ** 2) / np.sum(reference.astype(np.float64) ** 2))


def make_pair(data_dir: Path, name: str = "a", seconds: float = 3.0, sr: int = 44100) -> Path:
    mix = sum(components(seconds, sr).values())
    stereo = np.stack([mix, 0.8 * mix], axis=1).astype(np.float32)
    (data_dir / "input").mkdir(parents=True, exist_ok=True)
    (data_dir / "desired_output").mkdir(parents=True, exist_ok=True)
    raw = data_dir / "input" / f"{name}_raw.wav"
    sf.write(raw, stereo, sr)
    sf.write(data_dir / "desired_output" / f"{name}_edit.wav", stereo[: sr], sr)
    return raw




@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty weight caches, and any network connection fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))

    def refuse(*args, **kwargs):
        raise AssertionError("the stems code tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return tmp_path


def small_htdemucs(seed: int = 0):
    """A randomly initialised HTDemucs (the real class, fewer channels, 1 s segments)."""
    torch = pytest.importorskip("torch")
    htdemucs = pytest.importorskip("demucs.htdemucs")
    torch.manual_seed(seed)
    return htdemucs.HTDemucs(sources=DEMUCS_SOURCES, channels=8, t_layers=1, segment=1).eval()


def save_th(model, path: Path) -> Path:
    """Save a model as demucs's own .th package (class, init arguments, state)."""
    import torch
    args, kwargs = model._init_args_kwargs
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"klass": type(model), "args": args, "kwargs": kwargs,
                "state": model.state_dict()}, path)
    return path


# --- hpss -------------------------------------------------------------------------------

def test_band_weights_are_a_partition():
    freqs = np.linspace(0, SR / 2, 1025)
    w = st.band_weights(freqs)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-6)
    assert (w >= -1e-7).all()
    low, mid, high = w
    f = lambda hz: int(np.argmin(np.abs(freqs - hz)))  # noqa: E731
    assert low[f(70)] == 1 and mid[f(1000)] == 1 and high[f(8000)] == 1
    at_cuts = st.band_weights(np.array([200.0, 4000.0]))  # crossovers: half and half
    np.testing.assert_allclose(at_cuts, [[0.5, 0], [0.5, 0.5], [0, 0.5]], atol=1e-6)


def test_hpss_stems_sum_back_to_the_mix_and_sort_what_they_name():
    comps = components(4.0)
    y = sum(comps.values()).astype(np.float32)
    stems = st.hpss_stems(y, dtype=st.STEM_DTYPE)
    assert stems.shape == (4, len(y)) and stems.dtype == np.float16
    # The masks sum to one: the stems add back to the mix, stored as float16.
    assert db(stems.astype(np.float32).sum(axis=0) - y, y) < st.SUM_ERROR_DB
    # Each generated part lands in the stem that stands in for it.
    floors = {"bass": 20.0, "vocals": 20.0, "drums": 10.0}
    for name, part in comps.items():
        got = stems[st.STEMS.index(name)].astype(np.float32)
        assert -db(got - part, part) > floors[name], name
    other = stems[st.STEMS.index("other")].astype(np.float32)
    assert db(other, y) < -30  # no noise in the mix, so almost nothing is residual


def test_hpss_in_blocks_equals_one_block():
    y = sum(components(5.0).values()).astype(np.float32)
    whole = st.hpss_stems(y, replace(st.HPSS_PARAMS, block_s=60.0))
    blocks = st.hpss_stems(y, replace(st.HPSS_PARAMS, block_s=1.0))
    np.testing.assert_allclose(blocks, whole, atol=1e-5)


# --- demucs code path ---------------------------------------------------------------------

def test_htdemucs_constants_match_the_installed_package():
    demucs = pytest.importorskip("demucs")
    remote = Path(demucs.__file__).parent / "remote"
    assert f"'{st.HTDEMUCS_SIG}'" in (remote / "htdemucs.yaml").read_text()
    assert st.HTDEMUCS_TH in (remote / "files.txt").read_text().split()


def test_streamed_chunks_equal_demucs_apply_model_on_the_whole_signal(one_thread):
    torch = pytest.importorskip("torch")
    apply = pytest.importorskip("demucs.apply")
    model = small_htdemucs()
    x = (np.random.default_rng(0).standard_normal((2, int(2.6 * 44100))) * 0.1).astype(np.float32)
    with torch.no_grad():
        whole = apply.apply_model(model, torch.from_numpy(x)[None], shifts=0, split=True,
                                  overlap=0.25)[0].numpy()
    sizes = [5000, 30011, 77, 70000]  # blocks that do not line up with the segments
    cuts = np.cumsum([sizes[i % 4] for i in range(40)])
    blocks = [b for b in np.split(x, cuts[cuts < x.shape[1]], axis=1)]
    seconds = []
    parts = list(st.demucs_stream(model, blocks, progress=seconds.append))
    streamed = np.concatenate(parts, axis=-1)
    assert streamed.shape == whole.shape == (4, 2, x.shape[1])
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert len(parts) > 2 and sum(seconds) == pytest.approx(x.shape[1] / 44100)


class Identity:
    """A Demucs-shaped model that puts its input in 'vocals' and silence elsewhere."""

    samplerate, audio_channels, sources, segment = 44100, 2, DEMUCS_SOURCES, 0.5

    def __call__(self, x):
        import torch
        out = torch.zeros(x.shape[0], 4, *x.shape[1:])
        out[:, 3] = x
        return out


def test_demucs_plumbing_keeps_time_alignment_and_stem_order(tmp_path):
    pytest.importorskip("torch")
    sr = 48000  # neither the model's rate nor the analysis rate
    t = np.arange(int(2.2 * sr)) / sr
    stereo = np.stack([0.4 * np.sin(2 * np.pi * 330 * t), 0.2 * np.sin(2 * np.pi * 1234 * t)], 1)
    path = tmp_path / "x_raw.wav"
    sf.write(path, stereo.astype(np.float32), sr)
    y_mix = load_analysis(path)
    stems = st.demucs_stems(path, Identity(), len(y_mix)).astype(np.float32)
    vocals = stems[st.STEMS.index("vocals")]
    assert db(vocals - y_mix, y_mix) < -40  # resampled twice, float16, yet sample-aligned
    for name in ("drums", "bass", "other"):
        assert not stems[st.STEMS.index(name)].any()


def test_demucs_backend_runs_random_htdemucs_from_a_weights_file(tmp_path, offline, one_thread):
    data = tmp_path / "data"
    raw = make_pair(data)
    weights = save_th(small_htdemucs(), tmp_path / "w" / "random_htdemucs.th")
    cache = tmp_path / "cache"
    assert main(["stems", "--data-dir", str(data), "--cache-dir", str(cache),
                 "--backend", "demucs", "--weights", str(weights)]) == 0
    layout = Layout(data, cache)
    mels, backend = st.load_stem_mels(layout, "a", frames=mel_for(raw).shape[1])
    assert backend == "demucs" and mels.shape[:2] == (4, 128)
    assert mels.min() >= 0 and mels.max() <= 1 and mels.max() > 0
    audio = np.load(layout.stems(name="a"))
    meta = json.loads(str(audio["meta"]))
    assert meta["backend"] == "demucs" and meta["demucs_model"] == "random_htdemucs.th"
    assert all(len(audio[s]) == len(load_analysis(raw)) for s in st.STEMS)
    # The same weights found in the torch hub cache, with no --weights and --backend auto.
    hub = offline / "torch_home" / "hub" / "checkpoints" / st.HTDEMUCS_TH
    hub.parent.mkdir(parents=True)
    hub.write_bytes(weights.read_bytes())
    assert st.find_demucs_weights() == hub
    assert st.resolve_backend("auto") == "demucs"


def test_safetensors_weights_from_the_huggingface_cache_load(offline):
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file
    model = small_htdemucs(seed=3)
    args, kwargs = model._init_args_kwargs
    snap = offline / "hf_cache" / st.HF_REPO_DIR / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              snap / f"{st.HTDEMUCS_SIG}.safetensors",
              metadata={"klass": "demucs.htdemucs.HTDemucs", "args": json.dumps(list(args)),
                        "kwargs": json.dumps(kwargs)})
    found = st.find_demucs_weights()
    assert found == snap / f"{st.HTDEMUCS_SIG}.safetensors"
    loaded = st.load_demucs(found)
    for k, v in model.state_dict().items():
        assert np.array_equal(loaded.state_dict()[k].numpy(), v.numpy()), k


def test_missing_weights_say_how_to_provide_them_without_network(tmp_path, offline, capsys):
    pytest.importorskip("demucs.htdemucs")
    data = tmp_path / "data"
    make_pair(data, seconds=1.5)
    args = ["stems", "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache")]
    assert main(args + ["--backend", "demucs"]) == 2
    err = capsys.readouterr().err
    assert "htdemucs weights not found" in err and st.HTDEMUCS_TH in err
    assert "--weights" in err and "--backend hpss" in err
    bad = tmp_path / "broken.th"
    bad.write_bytes(b"not a checkpoint" * 10)
    assert main(args + ["--backend", "demucs", "--weights", str(bad)]) == 2
    assert "not a loadable demucs weights file" in capsys.readouterr().err
    # auto falls back to the offline backend, and says which it used.
    assert main(args + ["--backend", "auto"]) == 0
    assert "hpss stems" in capsys.readouterr().out


def test_editing_with_a_demucs_model_without_weights_says_what_the_model_needs(tmp_path, offline):
    pytest.importorskip("demucs.htdemucs")
    raw = make_pair(tmp_path / "data", seconds=1.5)
    with pytest.raises(UserError) as err:
        st.stem_mels_for(raw, "demucs", cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "htdemucs weights not found" in msg and "trained on demucs stems" in msg
    assert "--backend hpss" not in msg  # the model fixes the backend; `edit` has no such flag
    assert "--weights" not in msg  # nor this one: the library says what is wrong, the command how
    assert "editorbot stems --backend demucs" in msg and "--cache-dir" in msg


# --- cache, mels and the refusal -----------------------------------------------------------

def test_stem_mels_sit_on_the_mix_scale_and_cache_is_reused(tmp_path, capsys):
    data, cache = tmp_path / "data", tmp_path / "cache"
    raw = make_pair(data, seconds=3.0)
    # Quiet clicks under loud tones: the drums mel must stay well below the top.
    mix = sum(components(3.0, 44100, click_gain=0.05).values())
    sf.write(raw, np.stack([mix, mix], 1).astype(np.float32), 44100)
    args = ["stems", "--data-dir", str(data), "--cache-dir", str(cache), "--backend", "hpss"]
    assert main(args) == 0
    assert "(computed)" in capsys.readouterr().out
    layout = Layout(data, cache)
    mels, backend = st.load_stem_mels(layout, "a")
    assert backend == "hpss" and mels.shape == (4, 128, mel_for(raw).shape[1])
    y = load_analysis(raw)
    clicks = soxr.resample(components(3.0, 44100, click_gain=0.05)["drums"], 44100, SR)
    clicks = clicks[: len(y)].astype(np.float32)
    expect = (10 * np.log10(mel_power(clicks).max() / mel_power(y).max()) + 80) / 80
    assert abs(mels[st.STEMS.index("drums")].max() - expect) < 0.02 and expect < 0.5
    assert abs(mels.max() - 1.0) < 0.02  # the loudest stem bin is near the mix's loudest
    # Without clicks the drums stem is near silence, not noise scaled up to 1.
    y_no_clicks = (mix - components(3.0, 44100, click_gain=0.05)["drums"]).astype(np.float32)
    quiet = st.stem_mels(st.hpss_stems(soxr.resample(y_no_clicks, 44100, SR)),
                         soxr.resample(y_no_clicks, 44100, SR))
    assert quiet[st.STEMS.index("drums")].max() < 0.3
    assert main(args) == 0
    assert "(up to date)" in capsys.readouterr().out
    # A changed recording makes its stems stale: reading them says so.
    sf.write(raw, np.stack([mix, 0.5 * mix], 1).astype(np.float32), 44100)
    with pytest.raises(UserError, match="older version"):
        st.load_stem_mels(layout, "a")


def test_a_model_trained_on_one_backend_refuses_another(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    raw = make_pair(data, seconds=1.5)
    layout = Layout(data, cache)
    with pytest.raises(UserError, match=r"no stems for 'a'.*editorbot stems"):
        st.load_stem_mels(layout, "a")
    st.cache_stems(raw, layout.stems("a"), layout.stems_mel("a"), "hpss")
    checkpoint = {"kind": "pointer", "config": {"use_stems": True}, "stems_backend": "demucs",
                  "model_state": {}}
    with pytest.raises(UserError) as err:
        st.load_stem_mels(layout, "a", backend=checkpoint["stems_backend"])
    msg = str(err.value)
    assert "holds 'hpss' stems" in msg and "trained on 'demucs'" in msg
    assert "editorbot stems --backend demucs" in msg and str(layout.stems_mel("a")) in msg
    mels, backend = st.load_stem_mels(layout, "a", backend="hpss")
    assert backend == "hpss"
    st.check_backend(None, "hpss", "x")  # a model without stems accepts anything


def test_jobs_run_samples_in_worker_processes(tmp_path, capsys):
    data, cache = tmp_path / "data", tmp_path / "cache"
    for name in ("a", "b"):
        make_pair(data, name, seconds=1.0)
    assert main(["stems", "--data-dir", str(data), "--cache-dir", str(cache), "--backend", "hpss",
                 "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "a: hpss stems" in out and "b: hpss stems" in out
    for name in ("a", "b"):
        assert st.load_stem_mels(Layout(data, cache), name)[1] == "hpss"


# --- the analysis grid is an argument ------------------------------------------------------

def test_hpss_bands_follow_the_sample_rate_given():
    """A steady 170 Hz tone at 16 kHz lands in the bass stem by the crossover's weight at
    170 Hz (0.84 of its amplitude), not at the 234 Hz that 22050 Hz bins would claim (0.17)."""
    sr = 16000
    t = np.arange(4 * sr) / sr
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.3)
    y = (0.5 * fade * np.sin(2 * np.pi * 170.0 * t)).astype(np.float32)
    stems = st.hpss_stems(y, sr=sr)
    middle = slice(sr, 3 * sr)
    share = np.sqrt(np.mean(stems[st.STEMS.index("bass"), middle] ** 2) / np.mean(y[middle] ** 2))
    want = st.band_weights(np.array([170.0]))[0, 0]
    assert want == pytest.approx(0.84, abs=0.01)
    assert share == pytest.approx(want, abs=0.03)


def test_stems_are_made_and_checked_on_the_grid_passed(tmp_path):
    """cache_stems on another analysis grid (16 kHz, hop 512) writes stems at that rate and
    mels with that grid's frames, records the grid, and only that grid reads them back."""
    from editorbot.features import FeatureParams
    data, cache = tmp_path / "data", tmp_path / "cache"
    raw = make_pair(data, seconds=2.0)
    layout = Layout(data, cache)
    params = FeatureParams(sr=16000, hop_length=512)
    info = st.cache_stems(raw, layout.stems("a"), layout.stems_mel("a"), "hpss", params=params)
    n = len(load_analysis(raw, sr=16000))
    assert info["computed"] and info["seconds"] == pytest.approx(n / 16000)
    assert info["frames"] == 1 + n // 512 == mel_for(raw, params=params).shape[1]
    audio = np.load(layout.stems("a"))
    assert all(len(audio[s]) == n for s in st.STEMS)
    assert json.loads(str(audio["meta"]))["sr"] == 16000
    mels, backend = st.load_stem_mels(layout, "a", params=params, frames=info["frames"])
    assert backend == "hpss" and mels.shape == (4, 128, 1 + n // 512)
    with pytest.raises(UserError, match="other analysis settings"):
        st.load_stem_mels(layout, "a")  # the default grid's reader refuses them
    again = st.cache_stems(raw, layout.stems("a"), layout.stems_mel("a"), "hpss", params=params)
    assert not again["computed"]
    default = st.cache_stems(raw, layout.stems("a"), layout.stems_mel("a"), "hpss")
    assert default["computed"] and default["frames"] == mel_for(raw).shape[1]
