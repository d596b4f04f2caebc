"""Tests of the pointer network: attention, step targets, decoding, training, inference.

Budget: about 100 s on a quiet 2-core machine without the slow test (tiny configs,
12-second toy recordings); the slow test trains a small model until it learns.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from editorbot import audio
from editorbot.checkpoint import load_checkpoint
from editorbot.config import load
from editorbot.edits import Edit, Op, Segment, ops_from_pointers, segments_to_pointers
from editorbot.features import DEFAULT_PARAMS
from editorbot.layout import Layout
from editorbot.pointer.config import ModelConfig, PointerConfig
from editorbot.pointer.data import (History, PointerData, expected_positions, make_batch,
                                    sample_steps, step_table)
from editorbot.pointer.decode import (KeepPlan, StepDecision, decode_pointers, keep_ahead, kept_stretches,
                                      merge_fragments)
from editorbot.training import Run
from editorbot.pointer.model import (N_COND, SKIP_UNIT, PointerNet, bucket_of, bucket_offset_ranges,
                                     jump_bucket_edges, linear_attention)

SR = 22050
REPO = Path(__file__).resolve().parents[1]
TINY = ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.n_global=4",
        "model.decoder_layers=1", "model.max_delta=8", "model.n_jump_buckets=6",
        "model.ff_mult=1", "train.batch_size=2", "train.random_steps=32", "train.context_steps=2",
        "train.warmup_steps=1", "train.val_decode_every=0", "train.select_by=val_loss",
        "train.keep_pretrain_steps=0", "train.structure_keep_steps=0"]


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ toy corpus

def toy_pair(rng: np.random.Generator, seconds: float, bpm: float = 120.0):
    """A raw of bar-long sections (loud 'groove' with a kick and a tone, quiet 'noodle',
    near-silence) and the edit a trimmer makes of it: every groove, in order."""
    beat = 60.0 / bpm
    bar = 4 * beat
    n = int(seconds * SR)
    y = 1e-3 * rng.standard_normal(n).astype(np.float32)
    t = np.arange(int(beat * SR)) / SR
    n_bars = int(seconds // bar)
    sections, b = [], 0
    while b < n_bars:
        kind = "noodle" if b == 0 else str(rng.choice(["groove", "noodle", "silence"], p=[0.5, 0.3, 0.2]))
        length = min(int(rng.integers(1, 4)), n_bars - b)
        sections.append((kind, b, b + length))
        b += length
    if all(kind != "groove" for kind, _, _ in sections):
        # A trimmer keeps nothing of a raw without a groove; the last section becomes one.
        sections[-1] = ("groove", *sections[-1][1:])
    for kind, b0, b1 in sections:
        f = 110 * 2 ** (rng.integers(0, 12) / 12)
        for k in range(4 * b0, 4 * b1):
            i = int(k * beat * SR)
            m = min(len(t), n - i)
            if kind == "groove":
                y[i:i + m] += 0.5 * np.sin(2 * np.pi * 60 * t[:m]) * np.exp(-t[:m] * 30)
                y[i:i + m] += 0.2 * np.sin(2 * np.pi * f * t[:m]) * np.exp(-t[:m] * 3)
            elif kind == "noodle" and rng.random() < 0.6:
                g = 200 * 2 ** (rng.integers(0, 24) / 12)
                y[i:i + m] += 0.05 * np.sin(2 * np.pi * g * t[:m]) * np.exp(-t[:m] * 8)
    keep: list[list[float]] = []
    for kind, b0, b1 in sections:
        if kind != "groove":
            continue
        if keep and abs(keep[-1][0] + keep[-1][1] - b0 * bar) < 1e-9:
            keep[-1][1] += (b1 - b0) * bar
        else:
            keep.append([b0 * bar, (b1 - b0) * bar])
    return y, Edit([Segment(s, d) for s, d in keep])


def write_toy_corpus(root: Path, n_pairs: int, *, seed: int = 0, seconds: float = 12.0) -> Layout:
    """Raw and edit audio, cached raw mels and truth pointers in the data layout."""
    from editorbot.precache import mel_for

    layout = Layout(root / "training_data", root / "cache")
    rng = np.random.default_rng(seed)
    for i in range(n_pairs):
        y, edit = toy_pair(rng, seconds)
        name = f"toy{i:02d}"
        raw = audio.write(layout.input_dir / f"{name}_raw.wav", y, SR, subtype="FLOAT")
        pieces = [y[int(round(s.raw_start_s * SR)):int(round(s.raw_end_s * SR))] for s in edit.segments]
        audio.write(layout.output_dir / f"{name}_edit.wav", np.concatenate(pieces), SR, subtype="FLOAT")
        mel = mel_for(raw, layout.features(name, "raw"))
        pointers = segments_to_pointers(edit, DEFAULT_PARAMS, raw_frames=mel.shape[1])
        assert pointers.max() < mel.shape[1]
        layout.pointer_dir.mkdir(parents=True, exist_ok=True)
        np.save(layout.pointer_dir / f"{name}_pointers.npy", pointers)
        np.save(layout.pointer_dir / f"{name}_ops.npy", ops_from_pointers(pointers))
    return layout


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Layout:
    return write_toy_corpus(tmp_path_factory.mktemp("pointer"), 4)


def tiny_config(*extra: str) -> PointerConfig:
    return load(PointerConfig, None, TINY + list(extra))


def tiny_run(layout: Layout, save_dir: Path, **kw) -> Run:
    return Run(save_dir, layout.data_dir, layout.cache_dir, progress=False, **kw)


# ------------------------------------------------------------------ model pieces

def test_linear_attention_equals_naive_reference():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 37, 8, generator=g), torch.randn(2, 3, 37, 8, generator=g)
    v = torch.randn(2, 3, 37, 5, generator=g)
    mask = torch.ones(2, 37, dtype=torch.bool)
    mask[1, 30:] = False
    out = linear_attention(q, k, v, mask)
    phi = lambda x: torch.nn.functional.elu(x) + 1  # noqa: E731
    a = torch.einsum("bhid,bhjd->bhij", phi(q), phi(k)) * mask[:, None, None, :]
    naive = (a @ v) / a.sum(-1, keepdim=True)
    torch.testing.assert_close(out, naive, rtol=1e-5, atol=1e-5)


def test_jump_buckets_cover_every_offset_once():
    edges = jump_bucket_edges(64, 24, 1 << 20)
    lo, hi = bucket_offset_ranges(edges)
    assert lo[0] < -(1 << 30) and hi[-1] > 1 << 30 and (hi[:-1] == lo[1:]).sum() == len(lo) - 2
    offsets = np.array([-500000, -9000, -65, 65, 66, 1000, 123456, 5 << 20])
    cls = bucket_of(offsets, edges)
    assert ((offsets >= lo[cls]) & (offsets < hi[cls])).all()
    assert (cls[offsets < 0] < 24).all() and (cls[offsets > 0] >= 24).all()
    np.testing.assert_array_equal(bucket_of(torch.from_numpy(offsets), torch.from_numpy(edges)).numpy(), cls)
    # The gap between the two directions is exactly the delta head's range.
    assert hi[23] == -64 and lo[24] == 65


@pytest.mark.parametrize("e0", [0, 40, 190])
def test_run_of_steps_equals_gathered_windows(e0):
    """Steps that run on (e0, e0+1, ...) take the slab-and-diagonals path at inference;
    it gives the same outputs as gathering each step's window, also at the raw's edges."""
    torch.manual_seed(0)
    net = PointerNet(ModelConfig(d_model=16, n_heads=2, n_layers=1, n_global=4, decoder_layers=2,
                                 max_delta=8, n_jump_buckets=6)).eval()
    mel = torch.rand(2, 128, 200)
    enc = net.encode(mel, torch.tensor([200, 150]))
    expected = torch.arange(e0, e0 + 11)
    rec = torch.zeros(11, dtype=torch.long)
    cond = torch.rand(11, N_COND)
    with torch.no_grad():
        fast = net.decode_steps(enc, rec, expected, cond)
    with torch.enable_grad():
        slow = net.decode_steps(enc, rec, expected, cond)
    for key in fast:
        torch.testing.assert_close(fast[key], slow[key].detach(), rtol=1e-5, atol=1e-5)


def test_jump_logits_equal_their_formula_and_jump_target_is_their_argmax():
    """Every frame's jump logit is content + keep + played + skip cost + distance prior
    (log-spaced bucket values, linear in log distance between bucket centres, less log
    distance), the end of the edit is the stop logit less the cost of skipping the rest;
    checked frame by frame. jump_target is the argmax of their softmax."""
    torch.manual_seed(1)
    net = PointerNet(ModelConfig(d_model=16, n_heads=2, n_layers=1, n_global=4, decoder_layers=1,
                                 max_delta=8, n_jump_buckets=6, max_jump_frames=400)).eval()
    n, w, nb = 500, 8, 6
    with torch.no_grad():
        net.keep_gain[0], net.played_gain[...], net.skip_gain[...] = 0.7, -1.3, 2.1
        enc = net.encode(torch.rand(1, 128, n), torch.tensor([n]))
        played = torch.rand(n) < 0.3
        edges = np.log(net.bucket_edges.numpy().astype(float))
        centre = 0.5 * (edges[:-1] + edges[1:])
        keep = enc.keep[0].numpy().astype(float)
        fresh = 1 / (1 + np.exp(-keep)) * ~played.numpy()
        for e in (0, 120, 499, 500):
            out = net.decode_steps(enc, torch.tensor([0]), torch.tensor([e]), torch.rand(1, N_COND))
            q, bucket, stop = out["query"][0], out["jump_bucket"][0].numpy(), out["stop"][0]
            logits = net.jump_logits(enc, 0, q[None], out["jump_bucket"], out["stop"], torch.tensor([e]),
                                     played[None])[0].numpy()
            content = (enc.jump_keys[0] @ net.jump_query(q)).numpy() / np.sqrt(net.d_key)
            for t in range(n):
                d = t - e
                if abs(d) <= w:
                    assert logits[t] == -np.inf
                    continue
                values = bucket[nb:] if d > 0 else bucket[:nb][::-1]  # nearest bucket first
                prior = np.interp(np.log(abs(d)), centre, values) - np.log(abs(d))
                skipped = fresh[e:t].sum() if d > 0 else fresh[t + 1:min(e, n - 1) + 1].sum()
                want = (content[t] + 0.7 * keep[t] - 1.3 * played[t].item() - 2.1 * skipped / SKIP_UNIT
                        + prior)
                assert logits[t] == pytest.approx(want, abs=1e-4)
            assert logits[n] == pytest.approx(float(stop) - 2.1 * fresh[e:].sum() / SKIP_UNIT, abs=1e-4)
            t, p = net.jump_target(enc, 0, q, out["jump_bucket"][0], out["stop"][0], e, played)
            soft = np.exp(logits - logits.max())
            soft /= soft.sum()
            assert t == int(np.argmax(logits)) and p == pytest.approx(soft[t], rel=1e-4)


# ------------------------------------------------------------------ step targets

def kept_028_pointers() -> np.ndarray:
    """A 20-minute raw edited to 28%: six pieces far apart, one played twice, one gap
    of audio that is not in the raw."""
    fps = DEFAULT_PARAMS.frames_per_s
    segs = [Segment(30.0, 40.0), Segment(200.0, 60.0), Segment(None, 2.0), Segment(500.0, 80.0),
            Segment(200.0, 20.0), Segment(900.0, 70.0), Segment(1100.0, 64.0)]
    p = segments_to_pointers(Edit(segs), DEFAULT_PARAMS)
    assert abs(len(p) / (1200 * fps) - 0.28) < 0.01
    return p


def test_expected_position_is_previous_pointer_plus_one():
    """The original measured the delta against output_position / 0.67: at a keep ratio of
    0.28 almost no frame fell within +-64 of that line. Here every frame that plays on has
    delta 0, and only the joins move."""
    p = kept_028_pointers()
    exp = expected_positions(p)
    valid = p >= 0
    n = len(p)
    np.testing.assert_array_equal(exp[1:n][valid[:-1]], p[:-1][valid[:-1]] + 1)
    assert exp[0] == 0
    # Through the -1 gap the expected position holds at the last valid pointer + 1.
    gap = np.flatnonzero(~valid)
    assert (exp[gap] == p[gap[0] - 1] + 1).all() and exp[gap[-1] + 1] == p[gap[0] - 1] + 1
    table = step_table(p, ops_from_pointers(p), n_raw=int(1200 * DEFAULT_PARAMS.frames_per_s) + 1)
    np.testing.assert_array_equal(table.expected, exp)
    delta = (table.target - table.expected)[:-1][valid]
    moves = np.flatnonzero(delta != 0)
    assert len(moves) == 6  # the first frame (from 0 to 30 s) and five joins after it
    assert (np.abs(delta) <= 64).mean() > 0.99
    old_line = np.arange(len(p)) / 0.67
    assert (np.abs(p - old_line)[valid] <= 64).mean() < 0.01  # what the original trained on


@pytest.mark.parametrize("target_given", [True, False])
def test_history_features_equal_teacher_forcing_and_oracle_decode_reproduces_truth(target_given):
    """Block decoding with an oracle that answers from the truth gives back the truth
    exactly, and sees at each step the same expected position and features that teacher
    forcing trains on (with the edit's length given, or not), and at each jump the frames
    played so far."""
    p = kept_028_pointers()
    p = p[p >= 0]  # the decoder emits raw frames only
    n_raw = int(1200 * DEFAULT_PARAMS.frames_per_s) + 1
    table = step_table(p, ops_from_pointers(p), n_raw)
    seen = {}
    j = [0]

    def step(expected, cond):
        k = len(expected)
        idx = j[0] + np.arange(k)
        truth = np.where(idx < len(p), p[np.minimum(idx, len(p) - 1)], -1)
        d = truth - expected
        leave = (idx >= len(p)) | (np.abs(d) > 64)  # the stop is a jump to the end
        runs_on = ~leave & (d == 0)
        n_ok = k if runs_on.all() else int(np.argmin(runs_on))
        for i in range(min(n_ok + 1, k)):  # the steps the decoder accepts
            seen[int(idx[i])] = (int(expected[i]), cond[i].copy())
        j[0] += n_ok if n_ok == k else n_ok + 1
        return StepDecision(leave, np.where(leave, 0, d), np.ones(k, np.float32), np.zeros(k, np.int64),
                            leave.astype(np.float32))

    def jump(i, e, allow_stop, played):
        assert allow_stop
        np.testing.assert_array_equal(np.flatnonzero(played), np.unique(p[:j[0] - 1]))
        return (int(p[j[0] - 1]) if j[0] - 1 < len(p) else n_raw), 1.0

    out = decode_pointers(step, jump, n_raw=n_raw, target_frames=len(p) if target_given else None,
                          max_frames=2 * len(p), use_stop=True, block_steps=512)
    np.testing.assert_array_equal(out.pointers, p)
    assert out.stopped
    assert sorted(seen) == list(range(len(p) + 1))
    cond = table.cond if target_given else table.cond_free
    for idx, (e, c) in seen.items():
        assert e == table.expected[idx]
        np.testing.assert_allclose(c, cond[idx], rtol=1e-6, atol=1e-6)
    assert (table.cond_free[:, :5] == 0).all() and (table.cond[:, 0] == 1).all()


def _scripted_decoder(leave_at, targets, p_jump=None, landings=()):
    """A step function that leaves the run where leave_at(expected) is true (use_jump
    probability p_jump(expected), default 0.9 there and 0.1 elsewhere), and a jump function
    that answers from the list `targets` in turn (n_raw = the stop), or, asked for a frame
    within (lo, hi), with the frame of `landings` in it (-1 if none)."""
    asked = []

    def step(expected, cond):
        k = len(expected)
        leave = leave_at(expected)
        p = p_jump(expected) if p_jump else np.where(leave, 0.9, 0.1)
        return StepDecision(leave, np.zeros(k, np.int64), np.full(k, 0.9, np.float32), np.zeros(k, np.int64),
                            np.asarray(p, np.float32))

    def jump(i, e, allow_stop, played, within=None):
        if within is not None:
            inside = [f for f in landings if within[0] <= f < within[1]]
            return (inside[0], 0.8) if inside else (-1, 0.0)
        asked.append(e)
        return targets[len(asked) - 1], 1.0

    return step, jump, asked


@pytest.mark.parametrize("veto", [False, True])
def test_keep_veto_stops_skips_forward_over_kept_audio_but_not_loops_back(veto):
    """The keep head says frames 0..519 are kept. The model plays 0..499, loops back to
    100, and at 500 again wants to stop. With the veto the stop waits for the end of the
    kept stretch (520); the loop back is not touched. Without it the edit ends at 500."""
    n_raw = 1000
    ahead = np.where(np.arange(n_raw + 1) < 520, 0.9, 0.1)
    step, jump, asked = _scripted_decoder(lambda e: (e == 500) | (e >= 520), [100, n_raw, n_raw])
    out = decode_pointers(step, jump, n_raw=n_raw, target_frames=None, max_frames=3000, use_stop=True,
                          block_steps=64, keep_ahead=ahead if veto else None)
    kept_to = 520 if veto else 500
    np.testing.assert_array_equal(out.pointers, np.concatenate([np.arange(500), np.arange(100, kept_to)]))
    assert out.stopped
    assert asked == ([500, 500, 520] if veto else [500, 500])


def test_keep_veto_refuses_loops_back_for_an_editor_that_never_goes_back():
    """The same script as above for an editor whose training edits never moved back
    (jumps_back=False): the loop at 500 is refused too, the pointer plays on to 520 and
    stops there."""
    n_raw = 1000
    ahead = np.where(np.arange(n_raw + 1) < 520, 0.9, 0.1)
    step, jump, asked = _scripted_decoder(lambda e: (e == 500) | (e >= 520), [100, n_raw])
    out = decode_pointers(step, jump, n_raw=n_raw, target_frames=None, max_frames=3000, use_stop=True,
                          block_steps=64, keep_ahead=ahead, jumps_back=False)
    np.testing.assert_array_equal(out.pointers, np.arange(520))
    assert out.stopped and asked == [500, 520]


def test_recording_says_whether_its_edit_jumps_back():
    from editorbot.pointer.data import StepRecording

    def rec(p):
        return StepRecording("x", 1000, np.asarray(p, np.int64), None)

    assert not rec(np.r_[np.arange(10, 50), np.arange(80, 120)]).jumps_back(5)
    assert not rec(np.r_[np.arange(10, 50), -1, -1, np.arange(46, 60)]).jumps_back(5)  # 4 back: jitter
    assert rec(np.r_[np.arange(10, 50), np.arange(20, 60)]).jumps_back(5)


def test_keep_veto_holds_a_forward_skip_until_the_kept_stretch_ends():
    """At 300 the model wants to skip to 800 and at 650 to stop; the keep head keeps
    0..599. With the veto the skip is refused and the pointer plays on, unasked, to 600;
    the stop at 650 (not kept ahead) is allowed."""
    n_raw = 1000
    ahead = np.where(np.arange(n_raw + 1) < 600, 0.8, 0.2)
    leave = lambda e: (e == 300) | (e >= 650) | ((e > 300) & (e < 600) & (e % 50 == 0))  # noqa: E731
    step, jump, asked = _scripted_decoder(leave, [800, n_raw])
    out = decode_pointers(step, jump, n_raw=n_raw, target_frames=None, max_frames=3000, use_stop=True,
                          block_steps=64, keep_ahead=ahead)
    np.testing.assert_array_equal(out.pointers, np.arange(650))
    assert out.stopped and asked == [300, 650]


def _plan(n_raw, kept, snap):
    keep = np.zeros(n_raw + 1, bool)
    for a, b in kept:
        keep[a:b] = True
    return KeepPlan(keep, snap)


def test_keep_plan_finds_its_boundaries_and_zones():
    """Kept 100..299 and 500..699 of 1000 frames, snap 20: exits at 300 and 700, entries at
    100 and 500; exit windows 280..320 and 680..720; the veto holds on kept frames and the
    20 before each entry; deep drops are the dropped frames farther than 20 from a boundary."""
    plan = _plan(1000, [(100, 300), (500, 700)], 20)
    assert plan.exits.tolist() == [300, 700] and plan.entries.tolist() == [100, 500]
    zone = plan.exit_zone
    assert (zone[280:321] == 300).all() and (zone[680:721] == 700).all()
    assert ((zone >= 0).sum()) == 2 * 41
    f = np.arange(1001)
    np.testing.assert_array_equal(np.flatnonzero(plan.protect), f[(f >= 80) & (f < 300) | (f >= 480) & (f < 700)])
    deep = ((f < 80) | ((f > 320) & (f < 480)) | ((f > 720) & (f < 1000)))
    np.testing.assert_array_equal(plan.deep_drop, deep)
    assert plan.next_entry(310) == 500 and plan.next_entry(500) is None
    # a plan kept to the raw's end has no exit there
    assert _plan(1000, [(100, 1000)], 20).exits.tolist() == []


def test_kept_stretches_merge_stretches_shorter_than_the_snap_window():
    """Above 0.5: 0..99, 110..399 (a 10-frame dip), 600..619 (a 20-frame blip), 700..999.
    With snap 10 (runs under 21 frames merge) the dip fills and the blip goes."""
    mean = np.full(1000, 0.2)
    mean[:400] = 0.8
    mean[100:110] = 0.3
    mean[600:620] = 0.9
    mean[700:] = 0.7
    got = kept_stretches(mean, 0.5, 10)
    want = np.zeros(1000, bool)
    want[:400] = want[700:] = True
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(kept_stretches(mean, 0.75, 10), np.r_[np.ones(400, bool), np.zeros(600, bool)])


def test_following_the_keep_plan_cuts_where_the_heads_point_near_each_boundary():
    """Kept 100..299 and 500..699, snap 20. The pointer starts deep in a dropped stretch, so
    it skips at once and lands where the jump head points near 100 (95). At 150 the model
    wants to skip to 900: refused, a kept stretch. Near the end of the kept stretch its
    use_jump head is surest at 310 (0.3, under one half): it leaves there and lands at
    505; near 700 it is surest at 690 and, nothing kept after, the edit ends there."""
    n_raw = 1000
    plan = _plan(n_raw, [(100, 300), (500, 700)], 20)
    p_jump = lambda e: np.select([e == 310, e == 690], [0.3, 0.4], 0.05)  # noqa: E731
    step, jump, asked = _scripted_decoder(lambda e: e == 150, [900], p_jump, landings=(95, 505))
    out = decode_pointers(step, jump, n_raw=n_raw, target_frames=None, max_frames=3000, use_stop=True,
                          block_steps=64, jumps_back=False, follow=plan)
    np.testing.assert_array_equal(out.pointers, np.r_[np.arange(95, 310), np.arange(505, 690)])
    assert out.stopped and asked == [150]


def test_following_the_keep_plan_lands_on_the_stretch_when_the_jump_head_has_nothing_near():
    """The same plan, no landing frame near either entry and use_jump never above 0.05: the
    pointer lands on the entries themselves (100, 500) and leaves each kept stretch at the
    first step of its exit window where use_jump is highest (ties: the first, 280 and 680)."""
    n_raw = 1000
    plan = _plan(n_raw, [(100, 300), (500, 700)], 20)
    step, jump, asked = _scripted_decoder(lambda e: np.zeros(len(e), bool), [],
                                          lambda e: np.full(len(e), 0.05))
    out = decode_pointers(step, jump, n_raw=n_raw, target_frames=None, max_frames=3000, use_stop=True,
                          block_steps=64, jumps_back=False, follow=plan)
    np.testing.assert_array_equal(out.pointers, np.r_[np.arange(100, 280), np.arange(500, 680)])
    assert out.stopped and asked == []


def test_keep_plan_is_none_when_the_keep_head_keeps_nothing():
    """A plan that keeps nothing (an untrained keep head) would end every edit at once:
    there is none, and the decoder falls back to the keep veto."""
    from editorbot.pointer.decode import keep_plan
    from editorbot.pointer.model import Encoded

    logits = torch.full((1, 400), -3.0)
    enc = Encoded(None, None, None, None, logits, None, torch.tensor([400]))
    assert keep_plan(enc, 0, smooth=10, threshold=0.5, snap=5) is None
    logits[0, 100:200] = 3.0
    plan = keep_plan(enc, 0, smooth=11, threshold=0.5, snap=5)
    assert plan.entries.tolist() == [100] and plan.exits.tolist() == [200]


def test_passages_are_not_kept_whole_where_one_spans_the_editors_cut():
    """The editor kept frames 0..499 of 1000 and the keep head says so (0.9, then 0.1), but
    a passage spans 250..749, across the cut: whole, its mean is one half, not above it, so
    by passages the plan keeps only 0..249. Frame by frame matches exactly."""
    from editorbot.pointer.train import choose_keep_plan

    kept = np.r_[np.ones(500), np.zeros(500)]
    mean = np.where(kept > 0, 0.9, 0.1)
    assert choose_keep_plan([mean], [np.array([250, 750])], [kept], snap=10, tol=50) == (
        False, 0.5, pytest.approx(1.0))


def test_the_threshold_leaves_one_half_only_for_a_clear_gain():
    """A keep head still unsure says 0.42 where the editor kept (0..499) and 0.1 after: at
    one half it keeps nothing (IoU 0, cut F1 0), at 0.4 (and below, farther from one half)
    exactly the editor's frames: 0.4 is chosen. A sure head
    (0.9 / 0.1) matches at every threshold: one half. One whose best threshold gains less
    than the margin stays at one half too."""
    from editorbot.pointer.train import THRESHOLD_MARGIN, choose_keep_plan

    kept = np.r_[np.ones(500), np.zeros(500)]
    none = [np.array([], np.int64)]
    assert choose_keep_plan([np.where(kept > 0, 0.42, 0.1)], none, [kept], snap=10, tol=50) == (
        False, 0.4, pytest.approx(1.0))
    assert choose_keep_plan([np.where(kept > 0, 0.9, 0.1)], none, [kept], snap=10, tol=50)[:2] == (False, 0.5)
    # 0.48 over 0..499 but 0.52 over its last 10 frames: at one half the plan keeps 490..499
    # (a short run, merged into its neighbours: nothing), at 0.45 all 500; one recording
    # of many where every threshold matches dilutes that gain below the margin.
    unsure = np.r_[np.full(490, 0.48), np.full(10, 0.52), np.full(500, 0.1)]
    sure = np.where(kept > 0, 0.9, 0.1)
    gain = choose_keep_plan([unsure], none, [kept], snap=10, tol=50)
    assert gain[1] != 0.5
    diluted = choose_keep_plan([unsure] + [sure] * int(2 / THRESHOLD_MARGIN), none * (1 + int(2 / THRESHOLD_MARGIN)),
                               [kept] * (1 + int(2 / THRESHOLD_MARGIN)), snap=10, tol=50)
    assert diluted[1] == 0.5


def test_the_plan_that_cuts_where_the_editor_did_wins_over_a_slightly_better_iou():
    """The editor kept 0..499. The keep head doubts 25 frames inside (300..324) and the 40
    after the take (500..539), and an edge of the sound comes 40 frames late (540). Frame by
    frame: IoU 0.95, but a cut inside the take (F1 of cuts 0.8): 0.875. By passages: the take
    and its late 40 frames whole, IoU 500/540, its start and end within tolerance (F1 1):
    0.963. Passages, though by IoU alone frames would win."""
    from editorbot.pointer.train import choose_keep_plan

    mean = np.r_[np.full(300, 0.9), np.full(25, 0.2), np.full(175, 0.9), np.full(500, 0.2)]
    kept = np.r_[np.ones(500), np.zeros(500)]
    per_passage, _, score = choose_keep_plan([mean], [np.array([540])], [kept], snap=10, tol=50, threshold=0.5)
    assert per_passage and score == pytest.approx((500 / 540 + 1.0) / 2)
    frames = choose_keep_plan([mean], [np.array([], np.int64)], [kept], snap=10, tol=50, threshold=0.5)
    assert frames == (False, 0.5, pytest.approx((0.95 + 0.8) / 2))  # one passage, the whole raw: worse


def test_passages_are_kept_whole_where_that_matches_the_editor_better():
    """A take (frames 0..499) whose quiet last tenth the keep head doubts (0.3), then
    noodling (500..699) whose first half it would keep (0.55), then silence (0.3). The editor
    kept the take. Frame by frame the best is IoU 0.9 (the take less its ending); by the
    passages between the edges of the sound (500, 700) the take's mean is 0.84, the noodle's
    0.425, the silence's 0.3: a threshold of one half keeps exactly the take."""
    from editorbot.pointer.decode import by_passages
    from editorbot.pointer.train import choose_keep_plan

    mean = np.r_[np.full(450, 0.9), np.full(50, 0.3), np.full(100, 0.55), np.full(100, 0.3), np.full(300, 0.3)]
    bounds = np.array([500, 700])
    assert np.allclose(by_passages(mean, bounds), np.r_[np.full(500, 0.84), np.full(200, 0.425), np.full(300, 0.3)])
    assert np.allclose(by_passages(mean, np.array([], np.int64)), mean.mean())  # one passage
    kept = np.r_[np.ones(500), np.zeros(500)]
    assert choose_keep_plan([mean], [bounds], [kept], snap=10, tol=50) == (True, 0.5, pytest.approx(1.0))


def test_a_validation_cut_short_is_compared_with_best_on_the_recordings_it_decoded():
    """best.pt's validation decoded all four recordings (mean 0.725: two easy, two hard); a
    later one the deadline stopped after the two easy ones (mean 0.9) is not better, for on
    those two best.pt scored 0.95; one that does better on them is."""
    from editorbot.pointer.train import beats_best

    best = [0.95, 0.95, 0.5, 0.5]
    assert not beats_best([0.9, 0.9], best)
    assert beats_best([0.96, 0.95], best) and beats_best([0.8, 0.8, 0.8, 0.8], best)
    assert not beats_best([], best)  # decoded none: chooses nothing


def test_validation_past_the_deadline_scores_one_recording_and_decodes_none(corpus):
    """A run's deadline bounds its validation too: past it, the teacher-forced scores stop
    after one recording (val/scored) and decoding stops at once, even inside a recording
    (no val/iou); a decode that passes its `until` raises DecodeStopped."""
    from editorbot.pointer.infer import DecodeStopped, decode_mel
    from editorbot.pointer.train import validate

    cfg = tiny_config()
    data = PointerData(corpus.cache_dir, corpus.pointer_dir)
    net = PointerNet(cfg.model).eval()
    names = sorted(data.names)
    late = validate(net, data, names, cfg, torch.device("cpu"), keep_ratio=0.5, decode=True,
                    until=time.time() - 1)
    assert late["val/scored"] == 1 and "val/decoded" not in late and "val/iou" not in late
    with pytest.raises(DecodeStopped):
        decode_mel(net, cfg, data.mel(names[0]), target_frames=50, fixed_length=False,
                   frames_per_s=data.params.frames_per_s, until=time.time() - 1)
    full = validate(net, data, names, cfg, torch.device("cpu"), keep_ratio=0.5, decode=True)
    assert full["val/scored"] == len(names) == full["val/decoded"] == 4


def test_validation_scores_the_decoded_edits_cuts_within_a_beat(corpus, monkeypatch):
    """val/cut_f1: an edit that plays the editor's own frames scores 1; the same edit moved
    0.3 s later in the raw still scores 1 (within a beat, though its IoU falls); moved 1 s
    earlier, every cut misses (the toy editor keeps nothing of the first 2 s)."""
    from editorbot.pointer import train as pointer_train
    from editorbot.pointer.decode import Decoded

    cfg = tiny_config()
    data = PointerData(corpus.cache_dir, corpus.pointer_dir)
    net = PointerNet(cfg.model).eval()
    names = sorted(data.names)
    shift = [0]

    def truth(net, cfg, mel, **kw):
        p = np.load(corpus.pointer_file(names[0], "pointers.npy"))
        p = p + shift[0]
        p = p[p < mel.shape[1]]  # a segment moved into the raw's end ends there
        return Decoded(p, np.ones(len(p), np.float32), np.full(len(p), -1), True)

    monkeypatch.setattr(pointer_train, "decode_mel", truth)
    exact = pointer_train.validate(net, data, names[:1], cfg, torch.device("cpu"), keep_ratio=0.5, decode=True)
    assert exact["val/iou"] == pytest.approx(1.0) and exact["val/cut_f1"] == pytest.approx(1.0)
    shift[0] = int(round(0.3 * data.params.frames_per_s))
    near = pointer_train.validate(net, data, names[:1], cfg, torch.device("cpu"), keep_ratio=0.5, decode=True)
    assert near["val/cut_f1"] == pytest.approx(1.0) and near["val/iou"] < 0.99
    shift[0] = -int(round(1.0 * data.params.frames_per_s))
    early = pointer_train.validate(net, data, names[:1], cfg, torch.device("cpu"), keep_ratio=0.5, decode=True)
    assert early["val/cut_f1"] == 0.0


@pytest.mark.parametrize("incumbent, model_plan, structure_plan, want", [
    ("model", 0.5, 0.7, "model+structure"), ("model", 0.5, 0.5, "model"), ("model", 0.5, 0.519, "model"),
    ("model", 0.5, 0.521, "model+structure"), ("model+structure", 0.5, 0.5, "model+structure"),
    ("model+structure", 0.519, 0.5, "model+structure"), ("model+structure", 0.7, 0.5, "model")])
def test_validation_leaves_the_incumbent_keep_logit_only_for_a_plan_better_by_the_margin(
        corpus, monkeypatch, incumbent, model_plan, structure_plan, want):
    """choose_keep_plan scores each keep logit's plan (the model's, and with the structure
    keep GRU's added); another logit than the run's incumbent is taken only when its plan
    scores more than KEEP_SOURCE_MARGIN (0.02) above: the edits are then decoded with it, and
    the model goes back to its own for training."""
    from editorbot.pointer import train as pointer_train
    from editorbot.pointer.decode import Decoded

    cfg = tiny_config("train.structure_keep_steps=0", "decode.keep_veto_s=1.0")
    data = PointerData(corpus.cache_dir, corpus.pointer_dir)
    net = PointerNet(cfg.model).eval()
    with torch.no_grad():  # trained (in a run before this one: this run's config trains it 0 steps)
        net.structure_keep_out.weight.fill_(0.1)
    names = sorted(data.names)[:2]
    scores = iter([model_plan, structure_plan])
    sources = []

    def plan(mean_keep, passages, kept, snap, tol, threshold=None):
        return False, 0.5, next(scores)

    def decode(net, cfg, mel, **kw):
        sources.append(net.keep_source)
        return Decoded(np.arange(10), np.ones(10, np.float32), np.full(10, -1), True)

    monkeypatch.setattr(pointer_train, "choose_keep_plan", plan)
    monkeypatch.setattr(pointer_train, "decode_mel", decode)
    metrics = pointer_train.validate(net, data, names, cfg, torch.device("cpu"), keep_ratio=0.5,
                                     decode=True, keep_source=incumbent)
    assert metrics["val/keep_source"] == float(want == "model+structure")
    assert metrics["val/keep_plan"] == (structure_plan if want == "model+structure" else model_plan)
    assert sources == [want, want] and net.keep_source == "model"


def test_validation_plans_with_the_structure_keep_gru_only_once_it_is_trained(corpus, monkeypatch):
    """An untrained structure keep GRU (its output layer still zero) gives no second keep
    logit to choose from, whatever the config's structure_keep_steps; a trained one does."""
    from editorbot.pointer import train as pointer_train

    cfg = tiny_config("train.structure_keep_steps=5", "decode.keep_veto_s=1.0")
    data = PointerData(corpus.cache_dir, corpus.pointer_dir)
    net = PointerNet(cfg.model).eval()
    plans = []

    def plan(mean_keep, passages, kept, snap, tol, threshold=None):
        plans.append(mean_keep)
        return False, 0.5, 0.5

    monkeypatch.setattr(pointer_train, "choose_keep_plan", plan)
    names = sorted(data.names)[:2]
    untrained = pointer_train.validate(net, data, names, cfg, torch.device("cpu"), keep_ratio=0.5, decode=False)
    assert len(plans) == 1 and untrained["val/keep_source"] == 0.0
    with torch.no_grad():
        net.structure_keep_out.weight.fill_(0.1)
    plans.clear()
    pointer_train.validate(net, data, names, cfg, torch.device("cpu"), keep_ratio=0.5, decode=False)
    assert len(plans) == 2 and not np.allclose(plans[0][0], plans[1][0])


def test_keep_threshold_comes_from_the_config_then_the_checkpoint():
    from editorbot.pointer.config import PointerConfig
    from editorbot.pointer.infer import keep_threshold_for

    cfg = PointerConfig()
    assert keep_threshold_for({}, cfg) == 0.5
    assert keep_threshold_for({"keep_threshold": 0.4}, cfg) == 0.4
    cfg.decode.keep_threshold = 0.6
    assert keep_threshold_for({"keep_threshold": 0.4}, cfg) == 0.6


def test_keep_ahead_is_the_mean_keep_probability_of_the_window_ahead():
    from editorbot.pointer.model import Encoded

    logits = torch.tensor([[0.0, 2.0, -2.0, 1.0, 3.0]])
    enc = Encoded(None, None, None, None, logits, None, torch.tensor([4]))
    ahead = keep_ahead(enc, 0, window=2)
    p = torch.sigmoid(logits[0, :4]).double().numpy()
    np.testing.assert_allclose(ahead, [(p[0] + p[1]) / 2, (p[1] + p[2]) / 2, (p[2] + p[3]) / 2, p[3], 0.0])
    assert keep_ahead(enc, 0, window=0) is None


def test_drift_rows_are_late_states_that_still_target_the_change():
    """Inference that decides a change k frames late is in a state teacher forcing never
    visits; the drift rows are those states (played on k more frames, features as the
    decoder would see them), still targeting the change, and training sees the frames
    they played."""
    from editorbot.pointer.train import played_before

    p = np.concatenate([np.arange(100, 150), np.arange(400, 420), np.arange(152, 160)])
    table = step_table(p, ops_from_pointers(p), n_raw=425, drift_steps=6)
    n = len(p)
    assert table.n_path == n + 1
    np.testing.assert_array_equal(table.expected[:n + 1], expected_positions(p))
    by_source = {j: np.flatnonzero(table.source == j) + n + 1 for j in np.unique(table.source)}
    assert sorted(by_source) == [0, 50, 70, 78]  # the first frame, two cuts, the stop
    rows = by_source[50]  # 150 -> 400: drifted to 151..156, still going to 400
    np.testing.assert_array_equal(table.expected[rows], np.arange(151, 157))
    assert (table.target[rows] == 400).all() and (table.stop[rows] == 0).all()
    rows = by_source[70]  # 420 -> 152, but the raw ends at 425: 421..424 only
    np.testing.assert_array_equal(table.expected[rows], np.arange(421, 425))
    rows = by_source[78]  # the stop, drifted to 161..166
    assert (table.stop[rows] == 1).all() and (table.target[rows] == -1).all()
    rows = by_source[0]  # 0 -> 100: drifted from 1 on
    np.testing.assert_array_equal(table.expected[rows], np.arange(1, 7))
    # the drift of a small forward move stops short of its target
    q = np.concatenate([np.arange(10, 20), np.arange(23, 30)])
    small = step_table(q, ops_from_pointers(q), n_raw=40, drift_steps=6)
    np.testing.assert_array_equal(small.expected[small.n_path:][small.source == 10], [21, 22])
    # features of a drift row: those of the decoder that played on instead
    h = History(425, n)
    for x in p[:50]:
        h.push(x)
    e, c = h.continuation(4)
    row = by_source[50][2]
    assert e[3] == table.expected[row]
    np.testing.assert_allclose(c[3], table.cond[row], atol=1e-6)
    # the frames played before a drift row: the edit so far and the drift
    batch = {"pointers": torch.from_numpy(p)[None], "rec": torch.zeros(len(table.expected), dtype=torch.long),
             "step": torch.from_numpy(table.step), "run_start": torch.from_numpy(table.run_start),
             "expected": torch.from_numpy(table.expected)}
    played = played_before(batch, torch.tensor([row, 60]), 425).numpy()
    np.testing.assert_array_equal(np.flatnonzero(played[0]), np.arange(100, 153))
    np.testing.assert_array_equal(np.flatnonzero(played[1]), np.concatenate([np.arange(100, 150), np.arange(400, 410)]))


def test_history_continuation_matches_single_steps():
    h1, h2 = History(1000, 300), History(1000, 300)
    for p in [5, 6, 7, 400, 401, 6, 7]:
        h1.push(p)
        h2.push(p)
    e_block, c_block = h1.continuation(50)
    for i in range(50):
        e, c = h2.continuation(1)
        assert e[0] == e_block[i]
        np.testing.assert_allclose(c[0], c_block[i], atol=1e-7)
        h2.push(int(e[0]))


def test_missing_pointers_are_masked_out_of_the_loss(tmp_path):
    from editorbot.pointer.train import step_losses

    layout = write_toy_corpus(tmp_path, 1, seed=3)
    name = "toy00"
    path = layout.pointer_file(name, "pointers.npy")
    p = np.load(path)
    p[40:60] = -1
    np.save(path, p)
    layout.pointer_file(name, "ops.npy").unlink()
    data = PointerData(layout.cache_dir, layout.pointer_dir)
    steps = data.recordings[name].steps
    assert (steps.op[40:60] == Op.NOT_IN_RAW).all()
    idx = np.arange(steps.n_path)
    batch = {k: torch.from_numpy(v) for k, v in
             make_batch(data, [(name, idx, np.ones(len(idx), np.float32), True)]).items()}
    cfg = PointerConfig(model=ModelConfig(d_model=16, n_heads=2, n_layers=1, n_global=4,
                                          decoder_layers=1, max_delta=8, n_jump_buckets=6))
    net = PointerNet(cfg.model).eval()
    with torch.no_grad():
        enc = net.encode(batch["mel"], batch["lengths"])
        out = net.decode_steps(enc, batch["rec"], batch["expected"], batch["cond"])
        base = step_losses(net, enc, out, batch, cfg)
        masked = (batch["target"] < 0) & (batch["stop"] == 0)
        assert masked.sum() == 20  # the gap
        spoiled = dict(out)
        for key in ("delta", "use_jump", "jump_bucket"):
            spoiled[key] = out[key].clone()
            spoiled[key][masked] = out[key][masked] * 50 + 7
        again = step_losses(net, enc, spoiled, batch, cfg)
    for key in ("delta_loss", "use_jump_loss", "jump_loss"):
        assert float(again[key]) == pytest.approx(float(base[key]), rel=1e-6)


def test_sampled_steps_include_every_change_and_weigh_the_rest():
    p = kept_028_pointers()
    table = step_table(p, ops_from_pointers(p), int(1200 * DEFAULT_PARAMS.frames_per_s) + 1)
    idx, w = sample_steps(table, np.random.default_rng(0), random_steps=100, context_steps=3,
                          max_changes=100)
    changes = np.flatnonzero((table.target >= 0) & (table.target != table.expected) | (table.stop > 0))
    assert set(changes) <= set(idx.tolist())
    assert w.sum() == pytest.approx(table.n_path, rel=1e-6)  # the weights stand for every step


def test_merge_fragments_keeps_length_and_removes_short_runs():
    p = np.concatenate([np.arange(100, 200), np.arange(500, 503), np.arange(200, 300),
                        np.arange(7, 9), np.arange(900, 1000)])
    out = merge_fragments(p, 10, 2000)
    assert len(out) == len(p)
    runs = np.flatnonzero(np.diff(out) != 1) + 1
    assert np.diff(np.concatenate([[0], runs, [len(out)]])).min() >= 10
    np.testing.assert_array_equal(out[:103], np.arange(100, 203))  # the 3-frame piece plays on


# ------------------------------------------------------------------ training and inference

def test_train_checkpoint_infer_and_evaluate_end_to_end(corpus, tmp_path):
    from editorbot.editors import load_checkpoint, propose
    from editorbot.evaluate import evaluate_editors
    from editorbot.pointer.infer import propose_edit
    from editorbot.pointer.train import train

    cfg = tiny_config("train.epochs=2", "train.val_fraction=0.25",
                      "train.val_decode_every=1", "train.select_by=val_iou")
    losses = []
    result = train(cfg, tiny_run(corpus, tmp_path / "run"), on_step=lambda step, parts: losses.append(parts))
    assert result.steps == 4 and not result.interrupted
    assert all(np.isfinite(list(d.values())).all() for d in losses)
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["kind"] == "pointer" and ckpt["editorbot_version"]
    assert ckpt["feature_params"] == DEFAULT_PARAMS.as_dict()
    assert ckpt["config"]["model"]["d_model"] == 16
    assert ckpt["split"]["val"] and not set(ckpt["split"]["train"]) & set(ckpt["split"]["val"])
    assert 0 < ckpt["keep_ratio"] < 1
    assert "optimizer_state" not in ckpt
    latest = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert latest["global_step"] == 4 and "optimizer_state" in latest and latest["epoch"] == 2
    assert (tmp_path / "run" / "logs").is_dir()

    held_out = ckpt["split"]["val"][0]
    raw = corpus.input_dir / f"{held_out}_raw.wav"
    edit = propose_edit(raw, ckpt, target_duration_s=5.0, progress=False)
    assert edit.duration_s == pytest.approx(5.0, abs=0.02)
    assert all(0 <= s.raw_start_s and s.raw_end_s <= edit.raw_duration_s + 0.02 for s in edit.segments)
    assert edit.raw_path == str(raw)
    free = propose(raw, checkpoint=tmp_path / "run" / "best.pt")  # the stop head decides
    # at most decode.max_length_ratio times the expected length, or the raw's if longer
    assert 0 < free.duration_s <= max(2.0 * ckpt["keep_ratio"], 1.0) * edit.raw_duration_s + 0.05

    def truth_editor(raw_path, **_):
        name = Path(raw_path).name[:-len("_raw.wav")]
        from editorbot.edits import pointers_to_segments
        return pointers_to_segments(np.load(corpus.pointer_file(name, "pointers.npy")))

    results = evaluate_editors(corpus.data_dir, {"truth": truth_editor,
                                                 "pointer": lambda r, **kw: propose_edit(r, ckpt, progress=False, **kw)},
                               names=ckpt["split"]["val"], cache_dir=corpus.cache_dir, print_table=False, progress=False)
    assert results["truth"]["mean"]["kept_iou"] == 1.0 and results["truth"]["mean"]["cut_f1"] == 1.0
    assert not results["pointer"]["failures"] and results["pointer"]["mean"]["pairs"] == len(ckpt["split"]["val"])


def test_an_edit_follows_whole_passages_when_its_checkpoint_says_so(corpus, tmp_path, monkeypatch):
    """Validation chooses frame by frame or whole passages (choose_keep_plan) and the
    checkpoint keeps the choice (keep_passages); an edit hands the decoder the raw's
    passage bounds, the edges of its sound, only when it is whole passages."""
    from editorbot.grid import sound_edges
    from editorbot.pointer import infer
    from editorbot.pointer.train import train

    train(tiny_config("train.epochs=1", "train.val_fraction=0.25"), tiny_run(corpus, tmp_path / "run"))
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["keep_passages"] is bool(ckpt["metrics"]["val/keep_passages"])
    seen = []
    decode_mel = infer.decode_mel
    monkeypatch.setattr(infer, "decode_mel", lambda *a, passages=None, **kw: seen.append(passages) or decode_mel(*a, **kw))
    raw = corpus.input_dir / f"{ckpt['split']['val'][0]}_raw.wav"
    infer.propose_edit(raw, ckpt | {"keep_passages": False}, progress=False)
    infer.propose_edit(raw, ckpt | {"keep_passages": True}, progress=False)
    starts, stops = sound_edges(infer.raw_features(raw, DEFAULT_PARAMS), DEFAULT_PARAMS)
    assert seen[0] is None and len(starts) + len(stops) > 0
    assert seen[1].tolist() == sorted(set(np.round(np.r_[starts, stops] * DEFAULT_PARAMS.frames_per_s).astype(int).tolist()))


def test_resume_continues_exactly(corpus, tmp_path):
    """Stopped after one epoch and resumed, a run ends with the same weights as one that
    ran straight through (same seed)."""
    from editorbot.pointer.train import train

    def stop_at_2(step, _):
        if step == 2:
            raise KeyboardInterrupt

    straight = train(tiny_config("train.epochs=2"), tiny_run(corpus, tmp_path / "a"))
    first = train(tiny_config("train.epochs=2"), tiny_run(corpus, tmp_path / "b"), on_step=stop_at_2)
    assert first.interrupted
    resumed = train(tiny_config("train.epochs=2"),
                    tiny_run(corpus, tmp_path / "b", resume=tmp_path / "b" / "latest.pt"))
    assert resumed.steps == straight.steps == 4
    a = torch.load(tmp_path / "a" / "latest.pt", weights_only=False)["model_state"]
    b = torch.load(tmp_path / "b" / "latest.pt", weights_only=False)["model_state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_ctrl_c_saves_latest_and_stops(corpus, tmp_path):
    from editorbot.pointer.train import train

    def interrupt(step, _):
        if step == 3:
            raise KeyboardInterrupt

    result = train(tiny_config("train.epochs=5"), tiny_run(corpus, tmp_path / "run"), on_step=interrupt)
    assert result.interrupted and result.steps == 3
    latest = torch.load(tmp_path / "run" / "latest.pt", weights_only=False)
    assert latest["global_step"] == 3 and latest["epoch"] == 1 and latest["step_in_epoch"] == 1


def test_cli_train_two_processes_with_gloo(corpus, tmp_path):
    """torchrun with 2 CPU processes (gloo): DDP keeps the parameters in sync and rank 0
    writes the checkpoints."""
    config = tmp_path / "tiny.json"
    cfg = tiny_config("train.epochs=1", "train.batch_size=1")
    from editorbot.config import to_dict
    config.write_text(json.dumps(to_dict(cfg)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "editorbot", "train", "pointer", "--config", str(config), "--no-progress",
         "--data-dir", str(corpus.data_dir), "--cache-dir", str(corpus.cache_dir),
         "--save-dir", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 processes, parameters in sync" in proc.stderr
    latest = torch.load(tmp_path / "ddp" / "latest.pt", weights_only=False)
    assert latest["world_size"] == 2
    assert latest["global_step"] == 2  # 3 training recordings, 1 per process per step: 2 steps


def test_cli_evaluate_holds_out_the_training_split(corpus, tmp_path, capsys):
    from editorbot.cli import main
    from editorbot.pointer.train import train

    train(tiny_config("train.epochs=1"), tiny_run(corpus, tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    status = main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--no-baseline",
                   "--data-dir", str(corpus.data_dir), "--cache-dir", str(corpus.cache_dir),
                   "--json", str(tmp_path / "eval.json")])
    assert status == 0
    printed = capsys.readouterr().out
    assert "pointer:run/best.pt" in printed and f"{len(ckpt['split']['val'])} pairs" in printed
    figures = json.loads((tmp_path / "eval.json").read_text())
    assert sorted(figures["pointer:run/best.pt"]["per_pair"]) == ckpt["split"]["val"]


@pytest.mark.slow
def test_learns_the_toy_trimmer(tmp_path):
    """A small model learns where the toy trimmer cuts: on held-out recordings it finds
    the changes far above chance and keeps mostly the right audio. CI runs fewer epochs."""
    from editorbot.pointer.train import train

    ci = os.environ.get("CI") == "true"
    layout = write_toy_corpus(tmp_path, 8 if ci else 16, seed=5, seconds=20.0)
    cfg = load(PointerConfig, REPO / "configs" / "pointer" / "small.json", [
        f"train.epochs={15 if ci else 60}", "train.val_every=5"])
    result = train(cfg, tiny_run(layout, tmp_path / "run"))
    # The keep pretraining teaches the keep head before the first validation, so the
    # figures are held against what an untrained model scores (changes found: 0).
    last = result.history[-1]
    assert last["val/change_accuracy"] > (0.2 if ci else 0.5)
    assert last["val/iou"] > (0.4 if ci else 0.7)


# ------------------------------------------------------------------ stems (model.use_stems)

def test_stems_model_records_its_backend_and_refuses_another(corpus, tmp_path, monkeypatch):
    """A model trained on cached hpss stems records stems_backend 'hpss', edits a raw
    whose stems are computed at edit time on the raw mel's frame grid (equal to the cached
    ones), reads cached stems in `evaluate`, and a model trained on demucs stems refuses the
    cached hpss stems, when editing and when resuming."""
    import shutil

    from editorbot import stems
    from editorbot.cache import load_npz, save_npz
    from editorbot.cli import main
    from editorbot.errors import UserError
    from editorbot.pointer.infer import propose_edit, raw_features
    from editorbot.pointer.train import train

    assert main(["stems", "--backend", "hpss", "--data-dir", str(corpus.data_dir),
                 "--cache-dir", str(corpus.cache_dir)]) == 0
    cfg = tiny_config("model.use_stems=true", "train.epochs=1")
    train(cfg, tiny_run(corpus, tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert ckpt["stems_backend"] == "hpss" and ckpt["config"]["model"]["use_stems"]
    name = ckpt["split"]["val"][0]
    raw = corpus.input_dir / f"{name}_raw.wav"

    # Stems computed now sit on the raw mel's grid and equal the cached ones (float16).
    fresh = raw_features(raw, DEFAULT_PARAMS, "hpss")
    cached = raw_features(raw, DEFAULT_PARAMS, "hpss", cache_dir=corpus.cache_dir)
    n_mels = DEFAULT_PARAMS.n_mels
    n_raw = load_npz(corpus.features(name, "raw"))[0]["mel"].shape[1]
    assert fresh.shape == cached.shape == (5 * n_mels, n_raw)
    np.testing.assert_array_equal(fresh[:n_mels], cached[:n_mels])
    np.testing.assert_allclose(fresh[n_mels:], cached[n_mels:], atol=1e-3)
    drums = fresh[n_mels:2 * n_mels].max(axis=0)
    assert drums.max() > 0.5  # the toy grooves' kicks are in the percussive stem

    edit = propose_edit(raw, ckpt, target_duration_s=5.0, progress=False)  # stems made now
    assert edit.duration_s == pytest.approx(5.0, abs=0.02)

    def no_separation(*args, **kwargs):
        raise AssertionError("stems were computed although they are cached")
    with monkeypatch.context() as m:
        m.setattr(stems, "separate", no_separation)
        assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--no-baseline",
                     "--data-dir", str(corpus.data_dir), "--cache-dir", str(corpus.cache_dir)]) == 0
        out = tmp_path / "edit" / "out.wav"
        assert main(["edit", str(raw), "-o", str(out), "--checkpoint", str(tmp_path / "run" / "best.pt"),
                     "--target-duration", "5", "--cache-dir", str(corpus.cache_dir), "--no-review"]) == 0
        assert sf.info(out).duration == pytest.approx(5.0, abs=0.05)

    demucs_ckpt = dict(ckpt, stems_backend="demucs")
    with pytest.raises(UserError) as err:
        propose_edit(raw, demucs_ckpt, cache_dir=corpus.cache_dir, progress=False)
    msg = str(err.value)
    assert "holds 'hpss' stems" in msg and "trained on 'demucs'" in msg
    assert str(corpus.cache_dir / "stems_mel" / f"{name}_stems.npz") in msg
    assert "editorbot stems --backend demucs" in msg

    latest = torch.load(tmp_path / "run" / "latest.pt", weights_only=False)
    torch.save(dict(latest, stems_backend="demucs"), tmp_path / "demucs_latest.pt")
    with pytest.raises(UserError, match="holds 'hpss' stems but the model was trained on 'demucs'"):
        train(cfg, tiny_run(corpus, tmp_path / "run", resume=tmp_path / "demucs_latest.pt"))

    # Recordings whose stems come from two backends are refused before training.
    mixed = tmp_path / "mixed_cache"
    shutil.copytree(corpus.cache_dir, mixed)
    path = Layout(cache_dir=mixed).stems_mel(name)
    arrays, meta = load_npz(path)
    save_npz(path, meta | {"backend": "demucs"}, **arrays)
    with pytest.raises(UserError, match="one backend for all"):
        PointerData(mixed, corpus.pointer_dir, use_stems=True)


def test_memory_savings_leave_the_losses_and_gradients_unchanged(corpus, monkeypatch):
    """Recomputing the encoder layers and the jump distributions in the backward pass, the
    latter in chunks of 3 rows, and the heap trimmed at every chunk (as on 20-minute raws)
    give the same losses and gradients, dropout included, as keeping everything."""
    from editorbot.pointer import train as pointer_train

    cfg = tiny_config()
    data = PointerData(corpus.cache_dir, corpus.pointer_dir, drift_steps=4)
    names = sorted(data.names)[:2]
    items = [(n, np.arange(data.recordings[n].steps.n_path),
              np.ones(data.recordings[n].steps.n_path, np.float32), True) for n in names]
    batch = {k: torch.from_numpy(v) for k, v in make_batch(data, items).items()}
    torch.manual_seed(0)
    net = PointerNet(cfg.model).train()

    def losses_and_grads():
        torch.manual_seed(1)
        net.zero_grad()
        loss, parts = pointer_train.Objective(net, cfg)(batch)
        loss.backward()
        return ({k: float(v.detach()) for k, v in parts.items()},
                {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None})

    kept_parts, kept_grads = losses_and_grads()
    assert kept_parts["jump_loss"] > 0 and kept_parts["stop_loss"] > 0
    trims = []
    monkeypatch.setattr(pointer_train, "LEAVE_ROWS_PER_PASS", 3)
    monkeypatch.setattr(pointer_train, "TRIM_FROM_FRAMES", 1)
    monkeypatch.setattr(pointer_train, "TRIM_EVERY_CHUNKS", 1)
    real_release = pointer_train.release_freed_memory
    monkeypatch.setattr(pointer_train, "release_freed_memory", lambda: trims.append(real_release()))
    net.activation_checkpointing = True
    parts, grads = losses_and_grads()
    assert len(trims) > 2  # forward and backward passes of every chunk
    for k, v in kept_parts.items():
        assert v == pytest.approx(parts[k], rel=1e-5), k
    assert kept_grads.keys() == grads.keys()
    for k, g in kept_grads.items():
        torch.testing.assert_close(grads[k], g, rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.parametrize("bound, recomputes", [(1, True), (1 << 30, False)])
def test_training_recomputes_in_the_backward_pass_only_groups_of_long_raws(corpus, tmp_path, monkeypatch,
                                                                           bound, recomputes):
    """A group of RECOMPUTE_FROM_FRAMES padded frames or more recomputes its encoder layers and
    its jump distributions in the backward pass; a smaller one keeps them (no recompute)."""
    from editorbot.pointer import model as pointer_model
    from editorbot.pointer import train as pointer_train

    calls = {"encoder": 0, "jump": 0}
    real = torch.utils.checkpoint.checkpoint

    def counting(where):
        def checkpoint(fn, *args, **kw):
            calls[where] += 1
            return real(fn, *args, **kw)
        return checkpoint

    monkeypatch.setattr(pointer_model, "checkpoint", counting("encoder"))
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting("jump"))
    monkeypatch.setattr(pointer_train, "RECOMPUTE_FROM_FRAMES", bound)
    pointer_train.train(tiny_config("train.epochs=1", "train.val_every=1000"), tiny_run(corpus, tmp_path / "run"))
    assert (calls["encoder"] > 0, calls["jump"] > 0) == (recomputes, recomputes)


def test_mels_exact_in_float16_are_cached_at_half_the_size(corpus):
    """A mel whose values float16 holds exactly (as the base's corpus stores them) is kept
    as float16 and handed back as the same float32 values; any other stays float32."""
    data = PointerData(corpus.cache_dir, corpus.pointer_dir)
    rng = np.random.default_rng(0)
    exact = rng.random((8, 300)).astype(np.float16).astype(np.float32)
    data._remember("halves", exact)
    assert data._mels["halves"].nbytes == exact.nbytes // 2
    back = data.mel("halves")
    assert back.dtype == np.float32 and np.array_equal(back, exact)
    inexact = exact + np.float32(1e-6)
    data._remember("singles", inexact)
    assert data._mels["singles"].dtype == np.float32 and np.array_equal(data.mel("singles"), inexact)


def test_a_step_in_groups_of_recordings_has_the_losses_and_gradients_of_one_batch(corpus, monkeypatch):
    """Recordings taken through the network one group at a time, each group's losses averaged
    over the whole step's weights, sum to the losses and gradients of the step in one batch."""
    from editorbot.pointer import train as pointer_train

    cfg = tiny_config()
    data = PointerData(corpus.cache_dir, corpus.pointer_dir, drift_steps=4)
    names = sorted(data.names)[:3]
    items = [(n, np.arange(data.recordings[n].steps.n_path),
              np.linspace(0.5, 1.5, data.recordings[n].steps.n_path).astype(np.float32), i != 1)
             for i, n in enumerate(names)]
    torch.manual_seed(0)
    net = PointerNet(cfg.model).eval()  # no dropout: its masks depend on the batch's shape
    objective = pointer_train.Objective(net, cfg)

    def tensors(some):
        return {k: torch.from_numpy(v) for k, v in make_batch(data, some).items()}

    net.zero_grad()
    loss, parts = objective(tensors(items))
    loss.backward()
    whole = {k: float(v.detach()) for k, v in parts.items()} | {"loss": float(loss.detach())}
    whole_grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    monkeypatch.setattr(pointer_train, "GROUP_FRAMES", 1)  # every recording alone
    lengths = [data.recordings[n].n_raw for n in names]
    groups = pointer_train.step_groups(lengths)
    assert groups == [[0], [1], [2]]
    batches = [tensors([items[i] for i in g]) for g in groups]
    totals = pointer_train.loss_totals(batches, cfg)
    net.zero_grad()
    summed: dict[str, float] = {}
    for batch in batches:
        loss, parts = objective(batch, totals)
        loss.backward()
        for k, v in (parts | {"loss": loss}).items():
            summed[k] = summed.get(k, 0.0) + float(v.detach())
    assert whole["jump_loss"] > 0 and whole["keep_loss"] > 0
    for k, v in whole.items():
        assert summed[k] == pytest.approx(v, rel=1e-5), k
    for k, g in whole_grads.items():
        torch.testing.assert_close(net.get_parameter(k).grad, g, rtol=1e-4, atol=1e-6, msg=k)
    # Each group averaged over its own weights alone would not sum to the step's loss.
    alone = sum(float(objective(b)[0].detach()) for b in batches)
    assert alone != pytest.approx(whole["loss"], rel=1e-3)


def test_step_groups_keep_order_and_fill_up_to_the_frame_bound(monkeypatch):
    from editorbot.pointer import train as pointer_train

    monkeypatch.setattr(pointer_train, "GROUP_FRAMES", 100)
    assert pointer_train.step_groups([30, 20, 40, 200, 10, 50]) == [[0, 1], [2], [3], [4, 5]]
    assert pointer_train.step_groups([50, 50]) == [[0, 1]]
    assert pointer_train.step_groups([]) == []
