"""The RL editing environment: every action type's effect on rendered audio, masks,
reward components on hand-made episodes, the 121/882 layouts, caching, the env checker,
subprocess vector envs, and replaying an aligned edit exactly.

Budget: about 60 s on a loaded 2-core machine (24 s of generated audio; beat features
computed once per module, with the offline stems).
"""
from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from editorbot import audio
from editorbot.edits import Edit, Segment, segments_to_pointers
from editorbot.errors import UserError
from editorbot.features import DEFAULT_PARAMS
from editorbot.render import fade_curve, render_array
from editorbot.rl import beat_features as bfm
from editorbot.rl import reward as rw
from editorbot.rl.actions import (ACTION_DIMS, AMOUNTS, SIZE_BEATS, ActionType, Amount, EditTrack,
                                  Piece, Size, describe, head_masks, parse, resolve, sample_valid)
from editorbot.rl.beat_features import (BEAT_FEATURE_LAYOUT, BEAT_FEATURE_NAMES, N_BEAT_FEATURES,
                                        BeatFeatures, beat_features, compute_beat_features,
                                        feature_slice)
from editorbot.effects import apply_effect
from editorbot.rl.env import EditEnv, EnvConfig, env_fn, load_pointers, make_vec_env
from editorbot.rl.replay import load_actions, render_replay, replay, save_actions
from editorbot.rl.state import (CONTEXT_BEATS, STATE_DIM, STATE_LAYOUT, STRUCTURE_NAMES,
                                FeatureNormalizer, state_names, state_slice, structure_table)

T, S, A = ActionType, Size, Amount
SR = 22050
BEAT_S = 0.5
N_BEATS = 48
FREQS = 110.0 * 2 ** (np.arange(N_BEATS) / 12)  # beat k plays a tone k semitones above A2


def beat_tones(n_beats: int = N_BEATS, sr: int = SR) -> np.ndarray:
    """Beat k: a sine at FREQS[k] (amplitude 0.3) with a short 4 kHz click at its start."""
    n = int(BEAT_S * sr)
    t = np.arange(n) / sr
    click = np.zeros(n)
    click[:44] = 0.5 * np.hanning(44) * np.sin(2 * np.pi * 4000 * t[:44])
    return np.concatenate([0.3 * np.sin(2 * np.pi * FREQS[k] * t) + click
                           for k in range(n_beats)]).astype(np.float32)


def grid(n_beats: int = N_BEATS, phase: int = 0) -> BeatFeatures:
    """A beat grid of n_beats half-second beats (features unused: zeros)."""
    return BeatFeatures(np.zeros((n_beats, N_BEAT_FEATURES), np.float32),
                        np.arange(n_beats + 1) * BEAT_S, 120.0, phase, n_beats * BEAT_S, "zeros")


def peak_hz(x: np.ndarray, sr: int = SR) -> float:
    """Frequency of the strongest sinusoid (Hann window, zero padding, parabolic peak)."""
    n = 8 * len(x)
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x)), n)) + 1e-12
    k = int(np.argmax(mag[1:-1])) + 1
    a, b, c = np.log(mag[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / n


def cents(f: float, ref: float) -> float:
    return 1200 * np.log2(f / ref)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def detected_beats(out: np.ndarray, n_out: int) -> list[int]:
    """Which raw beat (by its tone) plays in each half second of a rendered edit."""
    found = []
    for j in range(n_out):
        mid = out[int((j * BEAT_S + 0.1) * SR):int((j * BEAT_S + 0.4) * SR), 0]
        found.append(int(np.abs(np.log(FREQS / peak_hz(mid))).argmin()))
    return found


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rl") / "input"
    path = folder / "tones_raw.wav"
    audio.write(path, beat_tones()[:, None], SR, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def cache_dir(raw):
    return raw.parent.parent / "cache"


@pytest.fixture(scope="module")
def feats(raw, cache_dir):
    return beat_features(raw, cache_dir=cache_dir, beats_s=np.arange(N_BEATS) * BEAT_S)


def render_actions(raw, actions, n_beats=N_BEATS):
    result = replay(raw, actions, features=grid(n_beats))
    out, sr = render_array(raw, result.edit, seam_search_ms=0)
    return result, out


# ------------------------------------------------------------------ actions: structure

@pytest.mark.parametrize("actions, expected", [
    (["KEEP BAR NEUTRAL"], [0, 1, 2, 3]),
    (["KEEP BEAT NEUTRAL", "CUT BAR NEUTRAL", "KEEP BEAT NEUTRAL"], [0, 5]),
    (["LOOP BAR NEG_LARGE"], [0, 1, 2, 3, 0, 1, 2, 3]),
    (["LOOP BEAT NEG_SMALL"], [0, 0, 0]),
    (["REORDER BEAT NEG_LARGE"], [2, 0, 1]),
    (["KEEP BAR NEUTRAL", "JUMP_BACK BEAT NEG_SMALL", "KEEP BEAT NEUTRAL"], [0, 1, 2, 3, 2]),
    (["KEEP BEAT NEUTRAL", "SKIP BAR NEUTRAL", "KEEP BEAT NEUTRAL"], [0, 4]),
    (["KEEP BAR NEUTRAL", "REPEAT_PREV BEAT NEG_SMALL"], [0, 1, 2, 3, 3, 3]),
    (["SWAP_NEXT TWO_BARS NEUTRAL"], list(range(8, 16)) + list(range(8))),
    (["REVERSE BAR NEUTRAL"], [3, 2, 1, 0]),
])
def test_structural_actions_render_in_expected_order(raw, actions, expected):
    result, out = render_actions(raw, actions)
    assert result.track.output_beats().tolist() == expected
    assert len(out) == len(expected) * BEAT_S * SR
    assert detected_beats(out, len(expected)) == expected


def test_keep_and_reverse_are_sample_exact(raw):
    x, _ = audio.read(raw)
    _, out = render_actions(raw, ["KEEP BAR NEUTRAL"])
    assert np.array_equal(out, x[:int(4 * BEAT_S * SR)])
    _, out = render_actions(raw, ["CUT BAR NEUTRAL", "REVERSE BAR NEUTRAL"])
    assert np.array_equal(out, x[int(4 * BEAT_S * SR):int(8 * BEAT_S * SR)][::-1])


def test_gain_within_a_tenth_of_a_db(raw):
    x, _ = audio.read(raw)
    for amount, db in [(A.NEG_LARGE, -6.0), (A.NEG_SMALL, -3.0), (A.POS_SMALL, 3.0), (A.POS_LARGE, 6.0)]:
        result, out = render_actions(raw, [(T.GAIN, S.BAR, amount)])
        assert result.edit.segments[0].gain_db == db == AMOUNTS[T.GAIN][1][amount]
        inner = slice(int(0.1 * SR), int(1.9 * SR))
        assert abs(20 * np.log10(rms(out[inner]) / rms(x[inner])) - db) < 0.1


def test_fades_follow_the_render_envelope(raw):
    x, _ = audio.read(raw)
    bar = int(4 * BEAT_S * SR)
    for amount in A:
        frac = AMOUNTS[T.FADE_IN][1][amount]
        _, out = render_actions(raw, [(T.FADE_IN, S.BAR, amount)])
        n_fade = int(round(frac * bar))
        t = (np.arange(bar) + 0.5) / n_fade
        want = x[:bar, 0] * fade_curve(t)
        assert np.allclose(out[:, 0], want, atol=1e-5), frac
        _, out = render_actions(raw, [(T.FADE_OUT, S.BAR, amount)])
        want = x[:bar, 0] * fade_curve((bar - np.arange(bar) - 0.5) / n_fade)
        assert np.allclose(out[:, 0], want, atol=1e-5), frac


def test_pitch_shift_within_ten_cents(raw):
    # Every ladder value on a tone, then one through the renderer on the recording.
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[:, None]
    for kind in (T.PITCH_UP, T.PITCH_DOWN):
        for st in AMOUNTS[kind][1]:
            out = apply_effect("pitch", {"semitones": st}, tone, SR)
            assert out.shape == tone.shape
            assert abs(cents(peak_hz(out[SR // 4:3 * SR // 4, 0]), 330) - 100 * st) < 10
            assert abs(20 * np.log10(rms(out[SR // 4:3 * SR // 4]) / rms(tone))) < 0.5
    result, out = render_actions(raw, ["PITCH_UP BAR POS_SMALL"])  # +5 semitones
    assert result.edit.segments[0].effect == {"name": "pitch", "params": {"semitones": 5.0}}
    for j in range(4):
        mid = out[int((j * BEAT_S + 0.1) * SR):int((j * BEAT_S + 0.4) * SR), 0]
        assert abs(cents(peak_hz(mid), FREQS[j]) - 500) < 10


def test_speed_by_the_stated_ratio_pitch_kept(raw):
    # Beat k's tone must fill output time [k, k + 1) * 0.5 s / ratio, at its own pitch.
    x, _ = audio.read(raw)
    bar = x[:int(4 * BEAT_S * SR)]
    for kind in (T.SPEED_UP, T.SPEED_DOWN):
        for ratio in AMOUNTS[kind][1]:
            out = apply_effect("speed", {"ratio": ratio}, bar, SR)
            assert len(out) == round(len(bar) / ratio)
            span = BEAT_S / ratio
            for k in range(4):
                for a, b in ((0.1, 0.45), (0.55, 0.9)):  # both halves of the beat's place
                    part = out[int((k + a) * span * SR):int((k + b) * span * SR), 0]
                    assert abs(cents(peak_hz(part), FREQS[k])) < 10, (ratio, k)
    result, out = render_actions(raw, ["SPEED_UP BAR POS_SMALL", "KEEP BEAT NEUTRAL"])  # x1.5
    seg = result.edit.segments[0]
    assert seg.effect == {"name": "speed", "params": {"ratio": 1.5}}
    assert seg.duration_s == pytest.approx(2.0 / 1.5)
    assert len(out) == round((2.0 / 1.5 + BEAT_S) * SR)
    tail = out[-int(0.4 * SR):-int(0.1 * SR), 0]  # the next beat plays on, at speed 1
    assert abs(cents(peak_hz(tail), FREQS[4])) < 10


def test_eq_shelves_change_their_band_by_the_amount(tmp_path):
    t = np.arange(4 * SR) / SR
    x = (0.2 * np.sin(2 * np.pi * 50 * t) + 0.2 * np.sin(2 * np.pi * 10000 * t)).astype(np.float32)
    path = tmp_path / "two_raw.wav"
    audio.write(path, x[:, None], SR, subtype="FLOAT")

    def band_db(y: np.ndarray, f: float) -> float:
        seg = slice(SR // 2, 3 * SR // 2)
        spec_in = np.abs(np.fft.rfft(x[seg] * np.hanning(SR)))
        spec_out = np.abs(np.fft.rfft(y[seg, 0] * np.hanning(SR)))
        return 20 * np.log10(spec_out[int(f)] / spec_in[int(f)])

    for kind, boosted, other in [(T.EQ_LOW, 50, 10000), (T.EQ_HIGH, 10000, 50)]:
        for amount in (A.NEG_LARGE, A.POS_SMALL):
            db = AMOUNTS[kind][1][amount]
            _, out = render_actions(path, [(kind, S.TWO_BARS, amount)], n_beats=8)
            assert abs(band_db(out, boosted) - db) < 0.5
            assert abs(band_db(out, other)) < 0.2


def test_distortion_adds_harmonics_at_the_same_level():
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)[:, None]
    thd = []
    for drive in AMOUNTS[T.DISTORTION][1]:
        out = apply_effect("distortion", {"drive_db": drive}, tone, SR)[:, 0]
        spec = np.abs(np.fft.rfft(out * np.hanning(SR)))
        thd.append(spec[600] / spec[200])  # third harmonic over fundamental
        assert abs(20 * np.log10(rms(out) / rms(tone))) < 0.1
    assert np.all(np.diff(thd) > 0) and thd[0] > 1e-3


def test_reverb_tail_grows_with_room_size(tmp_path):
    x = np.zeros(2 * SR, np.float32)
    x[SR // 4:SR // 4 + 44] = np.hanning(44)
    path = tmp_path / "click_raw.wav"
    audio.write(path, x[:, None], SR, subtype="FLOAT")
    tails = []
    for amount in A:
        _, out = render_actions(path, [(T.REVERB, S.BAR, amount)], n_beats=4)
        tails.append(rms(out[int(0.35 * SR):int(1.5 * SR)]))
    assert tails[0] > 100 * rms(x[int(0.35 * SR):int(1.5 * SR)]) + 1e-6
    assert np.all(np.diff(tails) > 0)


# ------------------------------------------------------------------ actions: masks

def test_size_and_amount_tables():
    assert SIZE_BEATS.tolist() == [1, 4, 16, 8, 32] and len(set(SIZE_BEATS)) == 5
    assert len(T) == 20 and len(S) == 5 and len(A) == 5 and set(AMOUNTS) == set(T)
    for t, (meaning, values) in AMOUNTS.items():
        assert len(values) == 5 and meaning
    assert parse(describe((T.LOOP, S.BAR, A.POS_SMALL))) == (T.LOOP, S.BAR, A.POS_SMALL)


def test_masks():
    track = EditTrack(40, downbeat_phase=1, max_played_beats=60)
    m = track.mask()
    assert m.shape == ACTION_DIMS
    assert not m[T.JUMP_BACK].any() and not m[T.REPEAT_PREV].any()   # nothing behind beat 0
    assert m[T.KEEP, S.TWO_PHRASES, A.NEUTRAL]                        # 32 <= 40 beats
    assert not m[T.KEEP, :, [A.NEG_LARGE, A.NEG_SMALL, A.POS_SMALL, A.POS_LARGE]].any()
    assert not m[[T.GAIN, T.EQ_LOW, T.EQ_HIGH], :, A.NEUTRAL].any()  # 0 dB does nothing
    assert not m[T.SWAP_NEXT, S.TWO_PHRASES].any()                    # needs 64 beats
    assert m[T.LOOP, S.TWO_BARS, A.NEG_SMALL]                         # 3 x 8 = 24 played
    assert not m[T.LOOP, S.TWO_BARS, A.POS_LARGE]                     # 8 x 8 = 64 > 60
    # SKIP goes to the next bar line (phase 1): from beat 0 that is beat 1.
    track.apply((T.SKIP, S.BAR, A.NEUTRAL))
    assert track.cursor == 1
    track.apply((T.KEEP, S.TWO_PHRASES, A.NEUTRAL))                   # cursor 33, 32 played
    m = track.mask()
    assert m[T.JUMP_BACK, S.TWO_PHRASES, A.NEG_LARGE] and not m[T.JUMP_BACK, S.TWO_PHRASES, A.NEG_SMALL]
    assert m[T.JUMP_BACK, S.BEAT, A.POS_LARGE]                        # 16 <= 33
    assert not m[T.KEEP, S.TWO_BARS].any() and m[T.KEEP, S.BAR, A.NEUTRAL]  # 7 beats left
    assert m[T.REORDER, S.BEAT, A.POS_SMALL] and not m[T.REORDER, S.BEAT, A.POS_LARGE]  # 7 vs 9
    assert m[T.LOOP, S.BAR, A.POS_SMALL] and not m[T.LOOP, S.BAR, A.POS_LARGE]  # 56, 64 > 60
    assert m[T.SKIP, S.BAR, A.NEUTRAL] and not m[T.SKIP, S.TWO_BARS, A.NEUTRAL]  # 37 vs 41
    with pytest.raises(ValueError, match="not valid"):
        track.apply((T.KEEP, S.TWO_BARS, A.NEUTRAL))
    heads = head_masks(m)
    assert heads.shape == (30,) and heads[A.NEUTRAL + 25] and heads[:20].sum() == m.any(axis=(1, 2)).sum()
    # An invalid draw resolves to the nearest valid one.
    assert resolve(m, (T.KEEP, S.TWO_BARS, A.POS_LARGE)) == (T.KEEP, S.BAR, A.NEUTRAL)
    assert resolve(m, (T.GAIN, S.BAR, A.NEUTRAL)) == (T.GAIN, S.BAR, A.NEG_SMALL)
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert m[sample_valid(m, rng)]
    track.apply((T.CUT, S.BAR, A.NEUTRAL))
    track.apply((T.CUT, S.BEAT, A.NEUTRAL))
    track.apply((T.CUT, S.BEAT, A.NEUTRAL))
    track.apply((T.CUT, S.BEAT, A.NEUTRAL))
    assert track.done and not track.mask().any()


def test_played_cap_masks_loops():
    track = EditTrack(16, max_played_beats=16)
    track.apply((T.LOOP, S.BAR, A.NEG_SMALL))  # 12 played
    m = track.mask()
    assert m[T.KEEP, S.BAR, A.NEUTRAL] and not m[T.LOOP, S.BAR].any() and not m[T.KEEP, S.TWO_BARS].any()
    assert m[T.CUT, S.TWO_BARS, A.NEUTRAL]  # cutting plays nothing


# ------------------------------------------------------------------ rewards

def test_keep_ratio_component():
    assert rw.keep_ratio(55.0, 100.0, 0.55, 0.25) == pytest.approx(1.0)
    assert rw.keep_ratio(30.0, 100.0, 0.55, 0.25) == pytest.approx(0.0)
    assert rw.keep_ratio(67.5, 100.0, 0.55, 0.25) == pytest.approx(0.5)
    assert rw.keep_ratio(0.0, 100.0, 0.55, 0.25) == -1.0


def test_section_coherence_component():
    section = np.repeat([0, 1], 8)
    kept = np.zeros(16, bool)
    kept[:8] = True
    assert rw.section_coherence(kept, section) == 1.0
    kept[8:12] = True                          # half of section 1
    assert rw.section_coherence(kept, section) == pytest.approx(0.5)
    kept[:2] = False                           # 6/8 of section 0: 2*0.75 - 1 = 0.5
    assert rw.section_coherence(kept, section) == pytest.approx(0.25)


def test_sections_from_features_finds_the_change():
    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(0, 0.1, (40, 6)) + [3, 0, 0, 0, 0, 0],
                        rng.normal(0, 0.1, (40, 6)) + [0, 0, 0, 3, 0, 0]])
    section = rw.sections_from_features(f, half_beats=8, min_beats=16)
    assert section[:40].tolist() == [0] * 40 and section[40:].tolist() == [1] * 40


def test_phrase_alignment_component():
    assert rw.phrase_alignment([Piece(0, 16), Piece(32, 16)], 0, 64) == 1.0
    # points: first entry 2 (0), seam 8 (bar 0.5) -> 20 (bar 0.5), last exit 24 (bar 0.5)
    assert rw.phrase_alignment([Piece(2, 6), Piece(20, 4)], 0, 64) == pytest.approx(0.375)
    assert rw.phrase_alignment([Piece(1, 16)], 1, 64) == 1.0      # phrases start at beat 1
    assert rw.phrase_alignment([], 0, 64) == 0.0


def test_edit_structure_component():
    pieces = [Piece(0, 4), Piece(10, 2), Piece(20, 8, fade_out=0.5)]
    assert rw.edit_structure(pieces, 64) == pytest.approx((2 / 3 + 1 + 1) / 3)
    pieces = [Piece(8, 2), Piece(10, 2), Piece(30, 3)]           # 8..12 one run; no fades
    assert rw.runs(pieces) == [4, 3]
    assert rw.edit_structure(pieces, 64) == pytest.approx(0.5 / 3)


def test_audio_flow_component():
    f = np.zeros((32, 3))
    f[3] = f[8] = [1, 0, 0]
    f[11] = [0, 1, 0]
    f[20] = [0, 0, 1]
    assert rw.audio_flow([Piece(0, 4), Piece(8, 4)], f) == pytest.approx(1.0)
    assert rw.audio_flow([Piece(0, 4), Piece(8, 4), Piece(20, 2)], f) == pytest.approx(0.5)
    assert rw.audio_flow([Piece(0, 4), Piece(4, 4)], f) == 1.0   # no seam
    rev = Piece(8, 4, effect={"name": "reverse", "params": {}})  # plays 11 first: (f3, f11)
    assert rw.audio_flow([Piece(0, 4), rev], f) == pytest.approx(0.0)


def test_action_diversity_loop_budget_and_jump_penalty():
    counts = np.zeros(20)
    counts[[T.KEEP, T.CUT]] = 5
    assert rw.action_diversity(counts) == pytest.approx(np.log(2) / np.log(20))
    assert rw.action_diversity(np.ones(20)) == pytest.approx(1.0)
    kw = dict(base=2, cuts_per_extra_loop=3, penalty=0.25)
    assert rw.loop_budget(2, 0, **kw) == 0.0
    assert rw.loop_budget(5, 3, **kw) == pytest.approx(-0.5)  # budget 3, 2 over
    assert rw.loop_budget(20, 0, **kw) == -1.0
    assert rw.jump_penalty(1, 4, 0.25) == 0.0
    assert rw.jump_penalty(2, 4, 0.25) == pytest.approx(-1 / 3)
    assert rw.jump_penalty(4, 4, 0.25) == -1.0


def _pointers(segments_beats, bounds_s):
    edit = Edit([Segment(float(bounds_s[a]), float(bounds_s[a + n] - bounds_s[a]))
                 for a, n in segments_beats])
    return edit, segments_to_pointers(edit)


def test_human_match_component():
    """Kept-raw IoU with the human edit on the beat grid: seconds both play over seconds
    either plays, on an uneven grid; beats count as kept when half their frames play."""
    bounds = np.arange(65) * BEAT_S
    _, pointers = _pointers([(0, 8), (16, 8)], bounds)
    human = rw.human_edit_from_pointers(pointers, bounds)
    assert np.flatnonzero(human.kept).tolist() == list(range(8)) + list(range(16, 24))
    assert rw.human_match(human.kept, human, bounds) == 1.0
    bounds = np.concatenate([[0.0], np.cumsum(np.r_[np.full(8, 1.0), np.full(8, 0.5)])])
    human = rw.HumanEdit(np.r_[np.ones(8, bool), np.zeros(8, bool)])
    kept = np.zeros(16, bool)
    kept[4:12] = True                                   # 4 s shared, 4 s + 2 s apart
    assert rw.human_match(kept, human, bounds) == pytest.approx(4 / 10)
    assert rw.human_match(np.zeros(16, bool), rw.HumanEdit(np.zeros(16, bool)), bounds) == 1.0


def test_episode_reward_is_the_weighted_sum():
    track = EditTrack(64)
    for a in ["KEEP PHRASE NEUTRAL", "CUT PHRASE NEUTRAL", "LOOP BAR NEG_LARGE",
              "JUMP_BACK BAR NEG_LARGE", "FADE_OUT PHRASE POS_LARGE", "CUT PHRASE NEUTRAL"]:
        track.apply(parse(a))
    bounds = np.arange(65) * BEAT_S
    cfg = rw.RewardConfig(weights=rw.RewardWeights(keep_ratio=1.0, section_coherence=0.5, audio_flow=0.3,
                                                   loop_budget=1.0, jump_penalty=2.0))
    total, comps = rw.episode_reward(track, bounds_s=bounds, features=np.eye(64),
                                     section=np.zeros(64, int), target_keep_ratio=0.5, config=cfg)
    assert set(comps) == set(rw.COMPONENTS) - {"human_match"}
    # played: 16 + 8 (loop of 4, twice) + 16 = 40 of 64 beats
    assert comps["keep_ratio"] == pytest.approx(1 - abs(40 / 64 - 0.5) / 0.25)
    assert comps["loop_budget"] == 0.0 and comps["jump_penalty"] == 0.0  # 1 jump of 6
    assert total == pytest.approx(sum(getattr(cfg.weights, k) * v for k, v in comps.items()))


# ------------------------------------------------------------------ features and state

def test_layouts_add_up():
    assert sum(n for _, n in BEAT_FEATURE_LAYOUT) == N_BEAT_FEATURES == 121
    assert [g for g, _ in BEAT_FEATURE_LAYOUT] == ["spectral", "mfcc", "deltas", "chroma",
                                                     "rhythm", "stems"]
    assert len(BEAT_FEATURE_NAMES) == 121 and len(set(BEAT_FEATURE_NAMES)) == 121
    assert sum(n for _, n in STATE_LAYOUT) == STATE_DIM == 882
    assert dict(STATE_LAYOUT)["context"] == (2 * CONTEXT_BEATS + 1) * 121 == 847
    assert len(state_names()) == 882 and state_slice("position") == slice(880, 882)


def test_structure_table_finds_the_change_ahead_and_the_repeat():
    """A loud part A (beats 0-31), a quiet part B (32-63), A again (64-95): the novelty
    peaks in the bar that holds beat 32, loudness drops there, the second A was heard
    before, and the detected sections put the next start 32 beats from the first."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(N_BEAT_FEATURES), rng.standard_normal(N_BEAT_FEATURES)
    x = np.concatenate([np.tile(a, (32, 1)), np.tile(b, (32, 1)), np.tile(a, (32, 1))])
    x = x + 0.05 * rng.standard_normal(x.shape)
    x[:, 0] = np.r_[np.full(32, 1.0), np.full(32, 0.2), np.full(32, 1.0)]     # rms_db/80+1
    table = structure_table(x)
    col = {name: i for i, name in enumerate(STRUCTURE_NAMES)}
    assert table.shape == (97, 20) and table.dtype == np.float32
    novelty_ahead = table[16, [col[f"novelty_bar+{k}"] for k in range(8)]]
    assert novelty_ahead.argmax() in (3, 4) and novelty_ahead[4] > 1.5   # the bars around beat 32
    assert (novelty_ahead[[0, 1, 6, 7]] < 0).all()
    rms_ahead = table[16, [col[f"rms_bar+{k}"] for k in range(8)]]
    assert (rms_ahead[:4] > 0).all() and (rms_ahead[4:] < 0).all()
    assert table[96, col["rms_bar+0"]] == -3.0                     # past the end
    heard = col["phrase_ahead_heard_before"]
    assert table[64, heard] > 0.99 and table[32, heard] < 0.5 and table[0, heard] == 0
    assert table[0, col["beats_to_section/64"]] == pytest.approx(32 / 64, abs=2 / 64)
    assert table[40, col["beats_since_section/64"]] == pytest.approx(8 / 64, abs=2 / 64)


def test_beat_features_on_known_audio(feats, raw, cache_dir, monkeypatch):
    assert feats.n_beats == N_BEATS and np.allclose(feats.bounds_s, np.arange(N_BEATS + 1) * BEAT_S)
    assert feats.features.shape == (N_BEATS, 121) and np.isfinite(feats.features).all()
    chroma = feats.features[:, feature_slice("chroma")]
    assert chroma.argmax(axis=1).tolist() == [(9 + k) % 12 for k in range(N_BEATS)]  # A2 + k
    assert feats.stems_source == "hpss"
    stems = feats.features[:, feature_slice("stems")]
    assert stems.any() and np.allclose(feats.features[:, feature_slice("rhythm")][:, 3], BEAT_S)
    # Cached: a second call reads the file; other beats recompute.
    monkeypatch.setattr(bfm, "load_analysis", lambda *a, **k: pytest.fail("recomputed"))
    again = beat_features(raw, cache_dir=cache_dir, beats_s=np.arange(N_BEATS) * BEAT_S)
    assert np.array_equal(again.features, feats.features)
    with pytest.raises(pytest.fail.Exception):
        beat_features(raw, cache_dir=cache_dir, beats_s=np.arange(N_BEATS) * BEAT_S + 0.01)


def test_beat_features_step_on_the_shared_grid_of_a_click_track():
    # editorbot.grid's beats are frames of its 23 ms tracker grid, which drift by up to a
    # frame between the tracker's corrections: each click is found within two frames of
    # the analysis grid (23 ms); the tempo is the tracker's, not the beat lengths' median
    # (21 or 22 tracker frames, 0.488 or 0.511 s).
    y = beat_tones(32)
    bf = compute_beat_features(y)
    assert bf.tempo_bpm == pytest.approx(120, rel=0.01)
    inner = bf.bounds_s[1:-1]
    err = np.abs(inner - np.round(inner / BEAT_S) * BEAT_S)
    assert len(inner) >= 30 and err.max() < 2 * 256 / SR and bf.stems_source == "zeros"
    assert not bf.features[:, feature_slice("stems")].any()


def test_stems_come_from_the_stems_cache_when_present(tmp_path):
    from editorbot.cache import save_npz
    from editorbot.layout import Layout
    from editorbot.stems import STEMS, stems_meta
    raw = tmp_path / "data" / "input" / "short_raw.wav"
    audio.write(raw, beat_tones(8)[:, None], SR, subtype="FLOAT")
    n_frames = DEFAULT_PARAMS.n_frames(8 * int(BEAT_S * SR))
    mels = {s: np.full((128, n_frames), 0.25 * (i + 1), np.float16) for i, s in enumerate(STEMS)}
    cache = tmp_path / "cache"
    save_npz(Layout(raw.parent.parent, cache).stems_mel("short"), stems_meta(raw, "hpss"), **mels)
    bf = beat_features(raw, cache_dir=cache, beats_s=np.arange(8) * BEAT_S)
    assert bf.stems_source == "cache:hpss"
    levels = bf.features[:, feature_slice("stems")][:, ::6]  # each stem's mean level
    assert np.allclose(levels, [0.25, 0.5, 0.75, 1.0], atol=1e-3)


def test_stems_fall_back_to_zeros_with_a_warning(tmp_path, monkeypatch, caplog):
    import editorbot
    monkeypatch.delattr(editorbot, "stems", raising=False)
    monkeypatch.setitem(sys.modules, "editorbot.stems", None)  # import fails
    with caplog.at_level(logging.WARNING, logger="editorbot"):
        mels, source = bfm._stem_mels_for(tmp_path / "x_raw.wav", np.zeros(SR, np.float32),
                                          tmp_path, 87, DEFAULT_PARAMS)
    assert mels is None and source == "zeros" and "stem features are zeros" in caplog.text


def test_state_layout_and_saved_normalizer(raw, cache_dir, feats, tmp_path):
    norm = FeatureNormalizer.fit([feats.features[:24]])   # "training" statistics
    norm.save(tmp_path / "norm.npz")
    loaded = FeatureNormalizer.load(tmp_path / "norm.npz")
    assert np.array_equal(loaded.mean, norm.mean) and np.array_equal(loaded.std, norm.std)
    assert FeatureNormalizer.from_dict(json.loads(json.dumps(norm.to_dict()))).count == 24
    env = EditEnv(raw, features=feats, normalizer=loaded, target_keep_ratio=0.4)
    obs, info = env.reset(seed=0)
    z = (feats.features.astype(np.float64) - norm.mean) / norm.std  # not refitted on this one
    ctx = obs[state_slice("context")].reshape(7, 121)
    assert np.allclose(ctx[:3], 0) and np.allclose(ctx[3:], np.clip(z[:4], -10, 10), atol=1e-5)
    obs, *_ = env.step((T.KEEP, S.BAR, A.NEUTRAL))
    obs, *_ = env.step((T.CUT, S.TWO_BARS, A.NEUTRAL))        # cursor 12
    ctx = obs[state_slice("context")].reshape(7, 121)
    assert np.allclose(ctx, np.clip(z[9:16], -10, 10), atol=1e-5)
    hist, target, pos = (obs[state_slice(p)] for p in ("history", "target", "position"))
    assert hist[0] == pytest.approx(2.0 / 24) and hist[1] == pytest.approx(4 / 48)
    assert hist[2] == pytest.approx(0.5)                                   # 1 cut of 2
    assert target.tolist() == pytest.approx([36 / 48, 0.4, (0.4 * 24 - 2) / 24, (0.4 * 24 - 2) / (24 - 6)])
    assert pos.tolist() == pytest.approx([12 / 48, ((12 - feats.downbeat_phase) % 16) / 16])
    with pytest.raises(UserError, match="no such normalizer"):
        FeatureNormalizer.load(tmp_path / "missing.npz")


# ------------------------------------------------------------------ env

def test_env_passes_the_checker_and_ends_with_the_reward(raw, feats):
    from gymnasium.utils.env_checker import check_env
    env = EditEnv(raw, features=feats)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=1)
    assert env.action_space.nvec.tolist() == [20, 5, 5]
    assert info["action_mask"].shape == (20, 5, 5) and env.action_masks().shape == (30,)
    rng = np.random.default_rng(0)
    rewards, done = [], False
    while not done:
        obs, r, term, trunc, info = env.step(sample_valid(info["action_mask"], rng))
        assert obs.shape == (882,) and obs.dtype == np.float32
        rewards.append(r)
        done = term or trunc
    assert all(r == 0 for r in rewards[:-1])
    total, comps = env.episode_reward()
    assert info["reward_components"] == comps and rewards[-1] == total
    # An invalid action is resolved, and the env says so.
    env.reset()
    *_, info = env.step((T.JUMP_BACK, S.BAR, A.NEUTRAL))
    assert info["resolved"] and info["action"] == (T.KEEP, S.BAR, A.NEUTRAL)


def test_env_truncates_and_rejects_bad_targets(raw, feats):
    env = EditEnv(raw, features=feats, config=EnvConfig(max_steps_per_beat=0.1))  # 5 steps
    env.reset()
    for i in range(5):
        _, r, term, trunc, info = env.step((T.KEEP, S.BEAT, A.NEUTRAL))
    assert trunc and not term and "reward_components" in info
    with pytest.raises(UserError, match="target keep ratio"):
        EditEnv(raw, features=feats, target_keep_ratio=0.0)


def _actions_for(segments_beats, n_beats):
    """Actions that replay an edit of beat-aligned (start, length) segments (cut forward,
    jump back, keep), as issue 10's converter will."""
    sizes = sorted(S, key=lambda s: -SIZE_BEATS[s])
    out, cursor = [], 0

    def cover(distance, kind, multipliers):
        nonlocal cursor
        while distance > 0:
            size, amount = max(((s, a) for s in sizes for a in multipliers
                                if SIZE_BEATS[s] * multipliers[a] <= distance),
                               key=lambda sa: SIZE_BEATS[sa[0]] * multipliers[sa[1]])
            out.append((kind, size, amount))
            step = int(SIZE_BEATS[size] * multipliers[amount])
            distance -= step
            cursor += step if kind != T.JUMP_BACK else -step

    for start, length in segments_beats:
        if start > cursor:
            cover(start - cursor, T.CUT, {A.NEUTRAL: 1})
        elif start < cursor:
            cover(cursor - start, T.JUMP_BACK, dict(zip(A, AMOUNTS[T.JUMP_BACK][1])))
        cover(length, T.KEEP, {A.NEUTRAL: 1})
    cover(n_beats - cursor, T.CUT, {A.NEUTRAL: 1})
    return out


def test_replay_reproduces_an_aligned_edit(raw, feats, tmp_path):
    # A human edit with a cut, a backward jump (repeat) and a reorder, on the beat grid.
    segments = [(4, 12), (24, 6), (8, 4), (40, 8)]
    human_edit, pointers = _pointers(segments, feats.bounds_s)
    actions = _actions_for(segments, N_BEATS)
    result = replay(raw, actions, features=feats)
    got = [(s.raw_start_s, s.duration_s) for s in result.edit.segments]
    want = [(s.raw_start_s, s.duration_s) for s in human_edit.segments]
    assert np.allclose(got, want, atol=1e-9)
    env = EditEnv(raw, features=feats, pointers=pointers, params=DEFAULT_PARAMS)
    env.reset()
    for a in actions:
        *_, term, trunc, info = env.step(a)
        assert not info["resolved"]
    assert term and info["reward_components"]["human_match"] == 1.0
    # Actions round-trip through a file; render_replay writes what a human listens to.
    save_actions(tmp_path / "actions.json", actions)
    assert load_actions(tmp_path / "actions.json") == [tuple(map(int, a)) for a in actions]
    _, report = render_replay(raw, actions, tmp_path / "out.wav", features=feats)
    assert report.frames == round(30 * BEAT_S * SR)
    with pytest.raises(UserError, match="action 0 .*JUMP_BACK.* not valid at beat 0"):
        replay(raw, ["JUMP_BACK BAR NEG_LARGE"], features=feats)


def test_load_pointers(raw, tmp_path):
    data_dir = raw.parent.parent
    assert load_pointers(raw, params=DEFAULT_PARAMS) is None
    edit, pointers = _pointers([(0, 8)], np.arange(N_BEATS + 1) * BEAT_S)
    (data_dir / "pointer_sequences").mkdir(exist_ok=True)
    np.save(data_dir / "pointer_sequences" / "tones_pointers.npy", pointers)
    assert np.array_equal(load_pointers(raw, params=DEFAULT_PARAMS), pointers)
    edit.save(tmp_path / "truth.json")
    assert np.array_equal(load_pointers(raw, params=DEFAULT_PARAMS, truth_path=tmp_path / "truth.json"), pointers)


def test_subprocess_vector_env(raw, cache_dir, feats):
    fns = [env_fn(raw, cache_dir=cache_dir, params=DEFAULT_PARAMS, beats_s=np.arange(N_BEATS) * BEAT_S,
                  target_keep_ratio=r) for r in (0.3, 0.6)]
    venv = make_vec_env(fns, subprocess=True, start_method="fork")
    try:
        obs = venv.reset()
        assert obs.shape == (2, 882)
        assert obs[0, state_slice("target")][1] == pytest.approx(0.3)
        assert obs[1, state_slice("target")][1] == pytest.approx(0.6)
        rng = np.random.default_rng(0)
        for _ in range(30):
            masks = np.stack(venv.env_method("action_masks"))
            assert masks.shape == (2, 30)
            actions = np.stack([[rng.choice(np.flatnonzero(m[o:o + n]))
                                 for o, n in ((0, 20), (20, 5), (25, 5))] for m in masks])
            obs, rewards, dones, infos = venv.step(actions)
            assert obs.shape == (2, 882) and all("action_mask" in i for i in infos)
    finally:
        venv.close()
