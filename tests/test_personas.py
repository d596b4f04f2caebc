"""The personas held out of pretraining: each keeps exactly what its rule says, and no
pretraining corpus ever uses them.

One pinned session of known structure (plan only, no audio; 120 bpm without drift, so a
bar is 2 s): a song played three times (a false start, a full take, a full retake), then a
jam played three times (a false start, a full take, and a retake the recording cuts off in
its first solo). Budget: a few seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from editorbot.errors import UserError
from editorbot.synth import (ADAPTATION_PERSONAS, PERSONAS, SynthConfig, plan_pair,
                             pretraining_personas, write_corpus)
from editorbot.synth.compose import Plan, Section, plan_session
from editorbot.synth.personas import choose_edit
from editorbot.synth.splice import crossfade_mask, splice

from .test_synth import short_config

SR = 8000          # the edit's sample grid; no audio is rendered from a band here
DURATION_S = 290.0  # stops 6.4 s into the jam's retake's first solo
NEW = ("highlights", "solo_cutter", "last_take")


def known_config() -> SynthConfig:
    cfg = SynthConfig()
    cfg.raw_sr = SR
    s = cfg.session
    s.preroll_s, s.tuning_prob, s.tuning_s, s.noodling_prob = (1.0, 1.0), 1.0, (4.0, 4.0), 0.0
    s.gap_silence_s, s.gap_tuning_prob, s.gap_noodling_prob = (2.0, 2.0), 0.0, 0.0
    s.false_start_prob, s.retake_prob, s.mistake_prob = 1.0, 1.0, 0.5
    s.intro_bars = s.verse_bars = s.chorus_bars = s.breakdown_bars = (4, 4)
    s.solo_bars = s.jam_solo_bars = (8, 8)
    s.ending_bars, s.ending_ring_s = (2, 2), (2.0, 2.0)
    p = cfg.playing
    p.tempo_bpm, p.song_tempo_spread, p.tempo_drift = (120.0, 120.0), 0.0, 0.0
    return cfg


SONG_FORM = ["intro", "verse", "chorus", "verse", "chorus", "breakdown", "solo", "chorus", "ending"]
JAM_FORM = ["riff", "verse", "solo", "breakdown", "solo", "riff", "chorus", "ending"]


@pytest.fixture(scope="module")
def plan() -> Plan:
    plan = plan_session(known_config(), np.random.default_rng(1), DURATION_S)
    # The structure the known answers below rely on.
    assert [s.jam for s in plan.songs] == [False, True]
    for song, form in ((0, SONG_FORM), (1, JAM_FORM)):
        assert labels(plan, song, 0) == ["count_in", "false_start"]
        assert labels(plan, song, 1) == ["count_in"] + form
    assert labels(plan, 0, 2) == ["count_in"] + SONG_FORM
    assert labels(plan, 1, 2) == ["count_in", "riff", "verse", "solo"]  # cut off
    cut = part(plan, 1, 2, "solo")
    assert cut.end_s == DURATION_S and cut.n_bars == 3 and cut.bars_s[-1] < DURATION_S
    assert all(part(plan, song, take, "ending").natural_end for song, take in ((0, 1), (0, 2), (1, 1)))
    assert np.allclose(np.diff(part(plan, 0, 1, "verse").bars_s), 2.0)
    return plan


def labels(plan: Plan, song: int, take: int) -> list[str]:
    return [s.label for s in plan.sections if s.song == song and s.song_take == take]


def parts(plan: Plan, song: int, take: int, label: str) -> list[Section]:
    return [s for s in plan.sections if s.song == song and s.song_take == take and s.label == label]


def part(plan: Plan, song: int, take: int, label: str, n: int = 0) -> Section:
    return parts(plan, song, take, label)[n]


def kept(plan: Plan, persona: str, seed: int = 0):
    """The persona's edit and its segments as raw intervals [(start_s, end_s)]."""
    cfg = known_config()
    edit = choose_edit(plan, persona, cfg.personas, np.random.default_rng(seed), SR)
    return edit, [(s.raw_start_s, s.raw_start_s + s.duration_s) for s in edit.segments]


def assert_intervals(got, want):
    assert len(got) == len(want), (got, want)
    for (a, b), (x, y) in zip(got, want):
        assert a == pytest.approx(x, abs=1 / SR) and b == pytest.approx(y, abs=1 / SR), (got, want)


def overlap_s(intervals, a: float, b: float) -> float:
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in intervals)


def test_highlights_keeps_the_two_most_intense_parts_of_each_take_and_its_ending(plan):
    """Intensity: choruses build up (0.9, 0.93, 0.96), solos 0.8, riffs 0.62, verses 0.55."""
    edit, got = kept(plan, "highlights")
    want = []
    for take in (1, 2):  # the song: its 2nd and 3rd choruses, the 3rd running into the ending
        c2, c3 = part(plan, 0, take, "chorus", 1), part(plan, 0, take, "chorus", 2)
        assert c3.energy > c2.energy > part(plan, 0, take, "chorus", 0).energy > 0.8
        want += [(c2.start_s, c2.end_s), (c3.start_s, part(plan, 0, take, "ending").end_s)]
    # The jam: its chorus, and of its two equally intense solos the later one.
    s1, s2 = parts(plan, 1, 1, "solo")
    assert s1.energy == s2.energy
    want += [(s2.start_s, s2.end_s),
             (part(plan, 1, 1, "chorus").start_s, part(plan, 1, 1, "ending").end_s)]
    # The cut-off retake: its solo is not whole, so riff and verse; no ending to keep.
    want += [(part(plan, 1, 2, "riff").start_s, part(plan, 1, 2, "verse").end_s)]
    assert_intervals(got, want)
    assert edit.segments[-1].fade_out_s > 0  # ends inside a part
    assert all(s.gain_db == 0 and s.fade_in_s == 0 for s in edit.segments)


def test_solo_cutter_drops_solos_and_the_jam_and_keeps_the_rest_of_each_take_whole(plan):
    edit, got = kept(plan, "solo_cutter")
    want = []
    for take in (1, 2):
        solo = part(plan, 0, take, "solo")
        want += [(part(plan, 0, take, "intro").start_s, solo.start_s),
                 (solo.end_s, part(plan, 0, take, "ending").end_s)]
    first, last = parts(plan, 1, 1, "solo")  # the jam: first solo to last, breakdown included
    want += [(part(plan, 1, 1, "riff").start_s, first.start_s),
             (last.end_s, part(plan, 1, 1, "ending").end_s)]
    want += [(part(plan, 1, 2, "riff").start_s, part(plan, 1, 2, "solo").start_s)]
    assert_intervals(got, want)
    for sec in plan.sections:
        if sec.label == "solo" or (sec.song == 1 and sec.label == "breakdown"):
            # Not one sample past the rounding of a cut to the sample grid.
            assert overlap_s(got, sec.start_s, sec.end_s) <= 2 / SR
    # Mistakes outside the solos are kept: the songs stay whole.
    kept_mistakes = [m for m in plan.mistakes if plan.sections[m.section].label != "solo"]
    assert kept_mistakes
    for m in kept_mistakes:
        assert overlap_s(got, m.start_s, m.end_s) == pytest.approx(m.end_s - m.start_s)


def test_last_take_keeps_the_last_full_take_of_each_song_in_one_piece(plan):
    edit, got = kept(plan, "last_take")
    # The song: its retake; the jam: its full take, not the retake the recording cut off.
    want = [(part(plan, 0, 2, "intro").start_s, part(plan, 0, 2, "ending").end_s),
            (part(plan, 1, 1, "riff").start_s, part(plan, 1, 1, "ending").end_s)]
    assert_intervals(got, want)
    assert edit.segments[-1].fade_out_s == 0  # the jam's last chord rings out
    assert any(want[0][0] <= m.start_s < want[0][1] for m in plan.mistakes)  # mistakes and all


def test_last_take_keeps_a_song_cut_off_before_any_full_take_as_far_as_it_went(plan):
    cut = Plan(plan.duration_s, [s for s in plan.sections if not (s.song == 1 and s.song_take == 1)],
               plan.songs, [], plan.programs)
    edit, got = kept(cut, "last_take")
    assert_intervals(got, [(part(plan, 0, 2, "intro").start_s, part(plan, 0, 2, "ending").end_s),
                           (part(plan, 1, 2, "riff").start_s, part(plan, 1, 2, "solo").bars_s[-1])])
    assert edit.segments[-1].fade_out_s > 0


@pytest.mark.parametrize("persona", NEW)
def test_new_personas_render_sample_exact_to_their_length(plan, persona):
    """Spliced from a raw whose every sample holds its own index: the edit plays the kept raw
    samples in order, and lasts exactly as long as what it keeps."""
    edit, got = kept(plan, persona)
    raw = np.arange(int(round(plan.duration_s * SR)), dtype=np.float32)[:, None]
    y = splice(raw, SR, edit)
    want = np.concatenate([np.arange(round(a * SR), round(b * SR)) for a, b in got])
    assert len(y) == len(want) == round(edit.duration_s * SR)
    assert edit.duration_s == pytest.approx(sum(b - a for a, b in got), abs=len(got) / SR)
    plain = ~crossfade_mask(edit, SR)
    n_fade = round(edit.segments[-1].fade_out_s * SR)
    plain[len(plain) - n_fade:] = False
    assert plain.mean() > 0.95
    assert np.array_equal(y[plain, 0], want[plain].astype(np.float32))


@pytest.mark.parametrize("persona", NEW)
def test_new_personas_decide_from_the_session_alone(plan, persona):
    """Another random stream changes crossfade and fade lengths, never what is kept."""
    (e0, got0), (e1, got1) = kept(plan, persona, seed=0), kept(plan, persona, seed=1)
    assert got0 == got1
    assert [s.crossfade_s for s in e0.segments] != [s.crossfade_s for s in e1.segments]


def test_no_retakes_by_default_and_song_takes_count_false_starts():
    pp = plan_pair(SynthConfig(), seed=0, index=0, minutes=20.0, persona="trimmer")
    for song in range(len(pp.plan.songs)):
        takes = sorted({s.song_take for s in pp.plan.sections if s.song == song})
        false_start = any(s.label == "false_start" for s in pp.plan.sections if s.song == song)
        assert takes == ([0, 1] if false_start else [0])


def test_pretraining_personas_hold_out_the_adaptation_personas():
    assert ADAPTATION_PERSONAS == set(NEW) and set(NEW) <= set(PERSONAS)
    assert pretraining_personas() == ("radio", "trimmer", "looper")
    assert not set(pretraining_personas()) & ADAPTATION_PERSONAS


def test_a_pretraining_corpus_never_uses_a_held_out_persona(tmp_path):
    cfg = SynthConfig()
    names = {plan_pair(cfg, seed=0, index=i, minutes=3.0, pretraining=True).persona for i in range(6)}
    assert names == set(pretraining_personas())
    for persona in NEW:
        with pytest.raises(UserError, match=f"'{persona}' is held out of pretraining"):
            plan_pair(cfg, seed=0, index=0, minutes=3.0, persona=persona, pretraining=True)
        assert plan_pair(cfg, seed=0, index=0, minutes=3.0, persona=persona).persona == persona
    cfg.personas.cycle = ["trimmer", "last_take"]  # a cycle that names one: refused up front
    with pytest.raises(UserError, match="'last_take' is held out of pretraining"):
        write_corpus(tmp_path / "refused", pairs=1, seed=0, minutes=0.3, config=cfg, pretraining=True,
                     progress=False)
    with pytest.raises(UserError, match="'solo_cutter' is held out of pretraining"):
        write_corpus(tmp_path / "refused", pairs=1, seed=0, minutes=0.3, persona="solo_cutter",
                     pretraining=True, progress=False)
    assert not (tmp_path / "refused").exists()
    # A pretraining corpus as written: every pair's truth names a pretraining persona.
    names = write_corpus(tmp_path / "base", pairs=3, seed=2, minutes=0.4, mastering="none",
                         write_unmastered=False, config=short_config(), pretraining=True, progress=False)
    personas = [json.loads((tmp_path / "base" / "truth" / f"{n}.json").read_text())["persona"] for n in names]
    assert personas == ["radio", "trimmer", "looper"]
