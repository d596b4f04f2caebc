"""editorbot.grid: the one beat and bar grid, on generated drums and chords with a known tempo
and bar phase; its cache; the RL beat features and the rule-based editor stepping on it."""
from __future__ import annotations

import numpy as np
import pytest

from editorbot import audio, grid
from editorbot.features import DEFAULT_PARAMS, FeatureParams

SR = 22050
BPM = 120.0
BEAT_S = 60.0 / BPM
START_S = 1.5        # silence, then the band comes in on a downbeat
N_BARS = 12
CHORDS = ([0, 4, 7], [9, 12, 16], [5, 9, 12], [7, 11, 14])  # C, Am, F, G (semitones above C3)


def band(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kick on 1 and 3, snare on 2 and 4, hats on eighths, a chord and its bass note per bar
    (C Am F G), after START_S of silence.

    Returns:
        y : np.ndarray [shape=(n,)], float32 at SR; beats_s (4 * N_BARS,); downbeats_s (N_BARS,)
    """
    rng = np.random.default_rng(seed)
    n = int((START_S + N_BARS * 4 * BEAT_S + 1.0) * SR)
    y = np.zeros(n)
    beats_s = START_S + np.arange(4 * N_BARS) * BEAT_S

    def add(t_s: float, x: np.ndarray) -> None:
        i = int(round(t_s * SR))
        j = min(n, i + len(x))
        y[i:j] += x[:j - i]

    def tt(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * SR)) / SR

    kick = np.sin(2 * np.pi * (50 + 60 * np.exp(-tt(0.15) * 30)) * tt(0.15)) * np.exp(-tt(0.15) * 20)
    for k, t in enumerate(beats_s):
        if k % 2 == 0:
            add(t, 0.8 * kick)
        else:
            add(t, 0.35 * rng.standard_normal(len(tt(0.12))) * np.exp(-tt(0.12) * 30))
        for half in (0.0, 0.5):
            hat = np.diff(rng.standard_normal(len(tt(0.03)) + 1)) * np.exp(-tt(0.03) * 120)
            add(t + half * BEAT_S, 0.08 * hat)
    bar_t = tt(4 * BEAT_S)
    for b in range(N_BARS):
        notes = CHORDS[b % 4]
        chord = sum(np.sin(2 * np.pi * 130.81 * 2 ** (s / 12) * bar_t) for s in notes)
        bass = np.sin(2 * np.pi * 65.41 * 2 ** (notes[0] / 12) * bar_t)
        env = np.minimum(1.0, bar_t / 0.01) * np.minimum(1.0, (bar_t[-1] - bar_t) / 0.02)
        add(START_S + 4 * b * BEAT_S, (0.08 * chord + 0.15 * bass) * env)
    y = 0.5 * y / np.abs(y).max() + 1e-4 * rng.standard_normal(n)
    return y.astype(np.float32), beats_s, beats_s[::4]


@pytest.fixture(scope="module")
def known():
    y, beats, downbeats = band()
    return y, beats, downbeats, grid.beat_grid(y, DEFAULT_PARAMS)


def test_beats_tempo_and_bar_lines_of_a_band_at_a_known_tempo(known):
    y, beats, downbeats, found = known
    assert found.steady and found.tempo_bpm == pytest.approx(BPM, rel=0.01)
    frame_s = DEFAULT_PARAMS.hop_length / DEFAULT_PARAMS.sr
    # Every played beat has a found beat within two frames of the analysis grid (23 ms)...
    err = np.min(np.abs(beats[:, None] - found.beats_s[None, :]), axis=1)
    assert err.max() <= 2 * frame_s, np.round(err, 3)
    # ... and the beats fall on frames of the analysis grid.
    frames = found.beats_s * DEFAULT_PARAMS.sr / DEFAULT_PARAMS.hop_length
    assert np.allclose(frames, np.rint(frames), atol=1e-6)
    assert np.array_equal(found.beat_frames(DEFAULT_PARAMS), np.rint(frames).astype(np.int64))
    # Bar lines: every downbeat is one, and no bar line is off a downbeat.
    played = (found.downbeats_s > START_S - 0.1) & (found.downbeats_s < beats[-1] + 0.1)
    lines = found.downbeats_s[played]
    off = np.min(np.abs(lines[:, None] - downbeats[None, :]), axis=1)
    assert len(lines) >= N_BARS - 1 and off.max() < 0.05, np.round(lines, 2)
    assert np.isin(found.downbeats_s, found.beats_s).all()
    assert found.valid[np.isin(found.beats_s, lines)].mean() > 0.8


def test_the_grid_is_cached_per_raw_and_params_or_config_recompute(known, tmp_path, monkeypatch):
    y, _, _, found = known
    raw = audio.write(tmp_path / "data" / "input" / "band_raw.wav", y[:, None], SR, subtype="FLOAT")
    cache = tmp_path / "cache"
    first = grid.cached_beat_grid(raw, DEFAULT_PARAMS, cache_dir=cache)
    assert (cache / "grid" / "band.npz").is_file()
    assert np.array_equal(first.beats_s, found.beats_s) and first.tempo_bpm == found.tempo_bpm
    assert np.array_equal(first.downbeats_s, found.downbeats_s)
    calls = []
    real = grid.beat_grid
    monkeypatch.setattr(grid, "beat_grid", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = grid.cached_beat_grid(raw, DEFAULT_PARAMS, cache_dir=cache)
    assert calls == [] and np.array_equal(again.beats_s, first.beats_s)
    # Other feature params (another analysis hop) or tracker settings: computed again.
    other = FeatureParams(hop_length=128)
    moved = grid.cached_beat_grid(raw, other, cache_dir=cache)
    assert calls == [1] and moved.tempo_bpm == pytest.approx(BPM, rel=0.01)
    grid.cached_beat_grid(raw, DEFAULT_PARAMS, cache_dir=cache, config=grid.GridConfig(beats_per_bar=3))
    assert calls == [1, 1]


def test_rl_beat_features_and_the_rule_based_editor_step_on_the_same_grid(known, tmp_path):
    from editorbot.baseline import analyze
    from editorbot.rl.beat_features import beat_features

    y, _, downbeats, found = known
    raw = audio.write(tmp_path / "data" / "input" / "band_raw.wav", y[:, None], SR, subtype="FLOAT")
    cache = tmp_path / "cache"
    bf = beat_features(raw, cache_dir=cache, params=DEFAULT_PARAMS)
    assert (cache / "grid" / "band.npz").is_file()
    assert np.allclose(bf.bounds_s[1:-1], found.beats_s[found.beats_s > 0])
    bar_starts = bf.bounds_s[:-1][bf.downbeat_phase::4]
    played = (bar_starts > START_S - 0.1) & (bar_starts < downbeats[-1] + 0.1)
    assert np.min(np.abs(bar_starts[played][:, None] - downbeats[None, :]), axis=1).max() < 0.05
    rule = analyze(y, DEFAULT_PARAMS)
    assert np.array_equal(rule.beats_s, found.beats_s)
    assert np.array_equal(rule.downbeats_s, found.downbeats_s)


# ---------------------------------------------------------------------------- cuts on the grid

def steady_grid(first_s: float = 1.5, n_beats: int = 40, beat_s: float = 0.5) -> grid.Grid:
    """A grid with beats every beat_s from first_s and a bar line every 4 beats."""
    beats = first_s + beat_s * np.arange(n_beats)
    return grid.Grid(beats, beats[::4], np.ones(n_beats, bool), 60.0 / beat_s, 1.0, 1.0,
                     np.array([0.0]), np.array([1.0]))


def test_cuts_move_to_the_bar_line_within_a_beat_else_to_the_beat():
    from editorbot.edits import Edit, Segment

    g = steady_grid()  # bar lines at 1.5, 3.5, 5.5, ...; beats every 0.5 s
    edit = Edit([Segment(1.62, 3.78, fade_in_s=0.5),       # 1.62 -> bar 1.5; 5.40 -> bar 5.5
                 Segment(9.55, 3.45, crossfade_s=0.05),     # 9.55 -> 9.5; its end is no cut
                 Segment(13.0, 1.1, crossfade_s=0.05),      # continues; 14.1: bar 13.5 too far -> beat 14.0
                 Segment(2.9, 2.0, crossfade_s=0.05),       # back: 2.9 -> beat 3.0, 4.9 -> beat 5.0
                 Segment(30.0, 2.0, crossfade_s=0.05)],     # past the grid's beats: not moved
                raw_duration_s=40.0)
    out = grid.snap_cuts(edit, g)
    got = [(round(s.raw_start_s, 6), round(s.raw_end_s, 6)) for s in out.segments]
    assert got == [(1.5, 5.5), (9.5, 13.0), (13.0, 14.0), (3.0, 5.0), (30.0, 32.0)]
    assert [s.crossfade_s for s in out.segments] == [s.crossfade_s for s in edit.segments]
    assert out.segments[0].fade_in_s == 0.5 and edit.segments[0].raw_start_s == 1.62  # input kept
    # A length the user asked for: the last segment's end takes up the difference.
    fixed = grid.snap_cuts(edit, g, keep_length=True)
    assert sum(s.duration_s for s in fixed.segments) == pytest.approx(edit.duration_s)
    assert fixed.segments[-1].raw_start_s == 30.0
    # The last segment grows to make up a shortening only within the raw: as far as its
    # length where that is known, else no further than the edit already played.
    shorter = [Segment(1.4, 3.2), Segment(30.0, 2.0)]  # 1.4 -> bar 1.5, 4.6 -> beat 4.5: 0.2 s less
    known = grid.snap_cuts(Edit(shorter, raw_duration_s=40.0), g, keep_length=True)
    assert known.segments[-1].duration_s == pytest.approx(2.2)
    unknown = grid.snap_cuts(Edit(shorter), g, keep_length=True)
    assert unknown.segments[-1].raw_end_s == pytest.approx(32.0)


def test_snapping_never_shrinks_a_segment_below_half_nor_replays_audio():
    from editorbot.edits import Edit, Segment

    g = steady_grid()
    short = Edit([Segment(3.3, 0.35), Segment(8.0, 2.0)])  # 3.3 -> 3.5 and 3.65 -> 3.5: refused
    assert grid.snap_cuts(short, g).segments[0].raw_start_s == 3.3
    # Random forward edits on a grid whose beats wander: no cut forward comes to play a
    # stretch twice, and every cut that moved is on a beat.
    rng = np.random.default_rng(3)
    beats = np.cumsum(rng.uniform(0.3, 0.7, 200))
    wobbly = grid.Grid(beats, beats[::4], np.ones(200, bool), 120.0, 1.0, 1.0, np.array([0.0]), np.array([1.0]))
    for _ in range(50):
        bounds = np.sort(rng.uniform(0, beats[-1], 12))
        edit = Edit([Segment(a, b - a) for a, b in zip(bounds[::2], bounds[1::2])])
        out = grid.snap_cuts(edit, wobbly)
        for before, after in zip(out.segments[:-1], out.segments[1:]):
            assert after.raw_start_s >= before.raw_end_s - 1e-9
        for old, new in zip(edit.segments, out.segments):
            assert new.raw_start_s == old.raw_start_s or np.isclose(beats, new.raw_start_s).any()


def test_sound_edges_are_where_playing_starts_after_silence_and_stops_before_it():
    from editorbot.features import DEFAULT_PARAMS as P

    fps = P.frames_per_s
    level = np.full(int(20 * fps), 0.9, np.float32)      # playing, 8 dB below the peak
    level[int(5 * fps):int(7 * fps)] = 0.0                # 2 s of silence: an edge each side
    level[int(12 * fps):int(12.1 * fps)] = 0.0            # 0.1 s: a rest, no edge
    level[int(15 * fps):int(16 * fps)] = 0.9 - 40 / 80    # 40 dB down: silence too (35 dB)
    level[:int(1 * fps)] = 0.0                            # the recording starts in silence
    mel = np.zeros((P.n_mels, len(level)), np.float32)
    mel[10] = level
    mel[20] = level * 0.5                                 # the loudest band sets the level
    starts, stops = grid.sound_edges(mel, P)
    assert np.allclose(starts, P.frame_to_s(np.array([int(1 * fps), int(7 * fps), int(16 * fps)])))
    assert np.allclose(stops, P.frame_to_s(np.array([int(5 * fps), int(15 * fps)])))


def test_sound_edges_are_where_the_playing_falls_or_rises_a_lot_at_once():
    from editorbot.features import DEFAULT_PARAMS as P

    fps = P.frames_per_s
    level = np.full(int(40 * fps), 0.9, np.float32)
    level[int(10 * fps):int(20 * fps)] = 0.9 - 20 / 80    # the take ends in quiet noodling, 20 dB down
    level[int(30 * fps):int(30.5 * fps)] = 0.9 - 20 / 80  # half a second 20 dB down: a pause, no edge
    level[int(34 * fps):] = 0.9 - 8 / 80                  # 8 dB down: less than a step
    mel = np.zeros((P.n_mels, len(level)), np.float32)
    mel[5] = level
    starts, stops = grid.sound_edges(mel, P)
    assert np.allclose(stops, P.frame_to_s(np.array([int(10 * fps)])))
    assert np.allclose(starts, P.frame_to_s(np.array([int(20 * fps)])))
    # The same 20 dB down for only 1 s, shorter than the step's 2 s windows: still one edge each side.
    level[int(10 * fps):int(20 * fps)] = 0.9
    level[int(10 * fps):int(11 * fps)] = 0.9 - 20 / 80
    mel[5] = level
    starts, stops = grid.sound_edges(mel, P)
    assert np.allclose(stops, P.frame_to_s(np.array([int(10 * fps)])))
    assert np.allclose(starts, P.frame_to_s(np.array([int(11 * fps)])))


def test_a_cut_within_edge_window_of_an_edge_of_the_sound_goes_there_else_to_the_grid():
    from editorbot.edits import Edit, Segment

    assert grid.EDGE_WINDOW_S == 3.0
    g = steady_grid()  # bar lines at 1.5, 3.5, 5.5, ...; beats every 0.5 s
    edges = (np.array([1.93, 11.6]), np.array([7.9, 23.0]))
    edit = Edit([Segment(1.62, 3.78),    # 1.62: the start 1.93 is nearer than bar 1.5; 5.40 -> stop 7.9 (2.5 s)
                 Segment(8.5, 4.0),      # 8.5: start 11.6 3.1 s away -> beat 8.5; 12.5 a bar line
                 Segment(18.2, 1.1)],    # 18.2 -> beat 18.0; 19.3: stop 23.0 3.7 s away -> bar 19.5
                raw_duration_s=40.0)
    out = grid.snap_cuts(edit, g, edges=edges)
    got = [(round(s.raw_start_s, 6), round(s.raw_end_s, 6)) for s in out.segments]
    assert got == [(1.93, 7.9), (8.5, 12.5), (18.0, 19.5)]
    assert [(round(s.raw_start_s, 6), round(s.raw_end_s, 6)) for s in grid.snap_cuts(edit, g).segments] == \
        [(1.5, 5.5), (8.5, 12.5), (18.0, 19.5)]
    # Without a steady beat, the edges still hold, the rest stays.
    free = grid.Grid(np.array([]), np.array([]), np.array([], bool), None, 0.1, 0.0, np.array([0.0]), np.array([0.1]))
    got = [(round(s.raw_start_s, 6), round(s.raw_end_s, 6)) for s in grid.snap_cuts(edit, free, edges=edges).segments]
    assert got == [(1.93, 7.9), (8.5, 12.5), (18.2, 19.3)]
    # No grid at all (what `editorbot edit` does): the same.
    got = [(round(s.raw_start_s, 6), round(s.raw_end_s, 6)) for s in grid.snap_cuts(edit, None, edges=edges).segments]
    assert got == [(1.93, 7.9), (8.5, 12.5), (18.2, 19.3)]


def test_no_steady_beat_leaves_the_edit_alone():
    from editorbot.edits import Edit, Segment

    free = grid.Grid(np.array([]), np.array([]), np.array([], bool), None, 0.1, 0.0, np.array([0.0]), np.array([0.1]))
    edit = Edit([Segment(1.62, 3.78), Segment(9.55, 3.45)])
    assert grid.snap_cuts(edit, free) is edit
