"""The edit model: ops of known pointer sequences, and time-stretched segments."""
from __future__ import annotations

import numpy as np

from editorbot.edits import Edit, Op, Segment, ops_from_pointers, segments_to_pointers


def test_ops_name_cuts_loops_reorders_fades_and_foreign_audio():
    #        copy copy | cut fwd | loop back onto played 1 | reorder back to unplayed 0 | -1
    p = np.array([10, 11, 12, 40, 41, 11, 12, 13, 0, 1, -1, -1, 2])
    ops = ops_from_pointers(p, fade_in_frames=2, fade_out_frames=0)
    assert list(ops) == [Op.FADE_IN, Op.FADE_IN, Op.COPY, Op.SKIP, Op.LOOP_END, Op.LOOP_START,
                         Op.COPY, Op.COPY, Op.SKIP, Op.COPY, Op.NOT_IN_RAW, Op.NOT_IN_RAW, Op.STOP]
    assert ops.dtype == np.int8
    fade_out = ops_from_pointers(np.arange(10), fade_out_frames=3)
    assert list(fade_out[-4:]) == [Op.COPY, Op.FADE_OUT, Op.FADE_OUT, Op.STOP]


def test_a_speed_segment_reads_raw_faster_than_it_plays():
    fps = 22050 / 256
    edit = Edit([Segment(10.0, 2.0, effect={"name": "speed", "params": {"ratio": 1.5}}),
                 Segment(0.0, 1.0)])
    p = segments_to_pointers(edit)
    assert edit.segments[0].raw_end_s == 13.0
    j = np.arange(int(2.0 * fps))
    np.testing.assert_array_equal(p[j], np.rint((10.0 + j / fps * 1.5) * fps).astype(np.int64))
    assert p[int(np.ceil(2.0 * fps))] <= 1  # the second segment starts at raw 0
