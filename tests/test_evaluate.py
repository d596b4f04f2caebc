"""Tests of the edit-level metrics on edits with known answers, and of the editors table.

Budget: a few seconds (no model, two 6-second generated recordings).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from editorbot import audio
from editorbot.edits import Edit, Segment, pointers_to_segments, segments_to_pointers
from editorbot.evaluate import (cut_events, cut_f1, edit_metrics, evaluate_editors, kept_iou,
                                order_tau, pointer_accuracy)
from editorbot.features import DEFAULT_PARAMS
from editorbot.layout import Layout

FPS = DEFAULT_PARAMS.frames_per_s


def run(a: int, n: int) -> np.ndarray:
    return np.arange(a, a + n, dtype=np.int64)


def test_identical_edit_scores_perfectly():
    truth = np.concatenate([run(100, 300), run(1000, 200), run(500, 100)])
    m = edit_metrics(pointers_to_segments(truth), truth, raw_frames=2000, beat_period_s=0.5)
    assert m["pointer_accuracy"] == 1.0 and m["kept_iou"] == 1.0 and m["cut_f1"] == 1.0
    assert m["order_tau"] == 1.0 and m["duration_error"] == pytest.approx(0.0, abs=1e-12)


def test_pointer_accuracy_tolerates_50_ms_and_no_more():
    truth = run(100, 400)
    assert pointer_accuracy(truth + 4, truth, 4) == 1.0  # 4 frames = 46 ms
    assert pointer_accuracy(truth + 5, truth, 4) == 0.0
    # Half right, then an edit twice as long: 200 good of (400 true + 400 extra) frames.
    pred = np.concatenate([run(100, 200), run(5000, 600)])
    assert pointer_accuracy(pred, truth, 4) == pytest.approx(200 / 800)
    # Frames the human edit took from outside the raw are not counted.
    truth_gap = truth.copy()
    truth_gap[:100] = -1
    assert pointer_accuracy(truth, truth_gap, 4) == 1.0


def test_kept_iou_known_overlap():
    assert kept_iou(run(50, 100), run(0, 100), 1000) == pytest.approx(50 / 150)
    assert kept_iou(run(0, 10), run(500, 10), 1000) == 0.0
    # Playing a piece twice keeps it once.
    assert kept_iou(np.concatenate([run(0, 100), run(0, 100)]), run(0, 100), 1000) == 1.0


def test_cut_f1_within_one_beat():
    truth = np.concatenate([run(0, 100), run(400, 100), run(900, 100)])
    assert [k for k, _, _ in cut_events(truth)] == ["start", "cut", "cut", "end"]
    near = np.concatenate([run(0, 103), run(405, 95), run(900, 100)])  # cuts 3 and 5 frames off
    assert cut_f1(near, truth, 5) == (1.0, 1.0, 1.0)
    far = np.concatenate([run(0, 150), run(450, 50), run(900, 100)])  # first cut 50 frames off
    p, r, f = cut_f1(far, truth, 5)
    # Start and end match; the second cut leaves at 499 for 900 in both; the first does not.
    assert (p, r) == (0.75, 0.75) and f == pytest.approx(0.75)
    assert cut_f1(run(0, 10), np.zeros(0, np.int64), 5) == (0.0, 0.0, 0.0)


def test_order_tau_reversed_and_partial():
    a, b, c = run(0, 100), run(300, 100), run(600, 100)
    truth = np.concatenate([a, b, c])
    assert order_tau(np.concatenate([c, b, a]), truth) == pytest.approx(-1.0)
    assert order_tau(np.concatenate([a, c, b]), truth) == pytest.approx(1 / 3)
    assert math.isnan(order_tau(a, truth))  # one segment played: no order to compare


def test_duration_error_is_signed_share():
    truth = run(0, 1000)
    pred = Edit([Segment(0.0, 1200 / FPS)])
    m = edit_metrics(pred, truth, raw_frames=2000, beat_period_s=None)
    assert m["duration_error"] == pytest.approx(0.2, abs=1e-9)
    assert m["kept_iou"] == pytest.approx(1000 / 1200, abs=2e-3)


def test_evaluate_editors_prints_one_row_per_editor(tmp_path, capsys):
    layout = Layout(tmp_path / "training_data", tmp_path / "cache")
    sr = 22050
    rng = np.random.default_rng(0)
    truths = {}
    for name in ("a", "b"):
        raw = (0.1 * rng.standard_normal(6 * sr)).astype(np.float32)
        audio.write(layout.input_dir / f"{name}_raw.wav", raw, sr, subtype="FLOAT")
        edit = Edit([Segment(1.0, 2.0), Segment(4.0, 1.0)])
        audio.write(layout.output_dir / f"{name}_edit.wav", raw[:3 * sr], sr, subtype="FLOAT")
        truths[name] = segments_to_pointers(edit)
        layout.pointer_dir.mkdir(parents=True, exist_ok=True)
        np.save(layout.pointer_file(name, "pointers.npy"), truths[name])

    def oracle(raw_path, **kwargs):
        return pointers_to_segments(truths[raw_path.name[:-len("_raw.wav")]])

    def first_seconds(raw_path, *, target_duration_s=3.0):
        return Edit([Segment(0.0, target_duration_s)])

    results = evaluate_editors(layout.data_dir, {"oracle": oracle, "head": first_seconds},
                               cache_dir=layout.cache_dir, match_duration=True, progress=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 pairs") and out[1].split()[0] == "editor"
    rows = {line.split()[0]: line for line in out[3:]}
    assert set(rows) == {"oracle", "head"}
    assert results["oracle"]["mean"]["kept_iou"] == 1.0
    # head keeps raw 0-3 s; the truth keeps 1-3 s and 4-5 s: IoU = 2 / 4.
    assert results["head"]["mean"]["kept_iou"] == pytest.approx(0.5, abs=0.01)
    assert results["head"]["mean"]["abs_duration_error"] == pytest.approx(0.0, abs=0.01)
