"""Replay a sequence of RL actions on a recording: actions -> pieces -> an editorbot Edit
(segments with gains, fades and effects) -> audio through editorbot.render.

This is how a human listens to what an agent did, and how an agent's episode becomes
the Edit that `editorbot edit` writes.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..cache import atomic_write_text
from ..edits import Edit, Segment
from ..errors import UserError
from ..features import DEFAULT_PARAMS, FeatureParams
from .actions import EditTrack, Piece, describe, parse
from .beat_features import BeatFeatures, beat_features
from .env import EnvConfig
from .reward import piece_seconds


def piece_segment(piece: Piece, bounds_s: np.ndarray) -> Segment:
    """The Segment that plays one piece (fades in seconds of edit time)."""
    duration_s = piece_seconds(piece, bounds_s)
    return Segment(raw_start_s=float(bounds_s[piece.start]), duration_s=duration_s,
                   gain_db=piece.gain_db, fade_in_s=piece.fade_in * duration_s,
                   fade_out_s=piece.fade_out * duration_s,
                   effect=None if piece.effect is None else
                   {"name": piece.effect["name"], "params": dict(piece.effect["params"])})


def track_to_edit(track: EditTrack, bounds_s: np.ndarray, *, raw_path: str | None = None,
                  crossfade_s: float = 0.0) -> Edit:
    """The Edit of an episode's pieces.

    Pieces that continue each other in the raw with no effect, the same gain and no fade
    between them merge into one segment. Every segment after a jump gets crossfade_s
    (0: the renderer's default short crossfade).

    Args:
        bounds_s : np.ndarray [shape=(n_beats + 1,)], the beat grid (BeatFeatures.bounds_s).
    """
    segs: list[Segment] = []
    prev: Piece | None = None
    for piece in track.pieces:
        seg = piece_segment(piece, bounds_s)
        if prev is not None:
            continuous = prev.start + prev.n_beats == piece.start
            last = segs[-1]
            if (continuous and last.effect is None and seg.effect is None
                    and last.gain_db == seg.gain_db and last.fade_out_s == 0 and seg.fade_in_s == 0):
                segs[-1] = replace(last, duration_s=last.duration_s + seg.duration_s,
                                   fade_out_s=seg.fade_out_s)
                prev = piece
                continue
            if not continuous:
                seg = replace(seg, crossfade_s=crossfade_s)
        segs.append(seg)
        prev = piece
    return Edit(segs, raw_path, float(bounds_s[-1]))


@dataclass
class Replay:
    """A replayed episode: the track, its Edit and the beat grid it used."""

    track: EditTrack
    edit: Edit
    features: BeatFeatures


def replay(raw_path: str | os.PathLike, actions, *, features: BeatFeatures | None = None,
           cache_dir: str | os.PathLike = "cache", beats_s=None, downbeats_s=None,
           config: EnvConfig | None = None, crossfade_s: float = 0.0,
           params: FeatureParams = DEFAULT_PARAMS) -> Replay:
    """Apply `actions` to a recording from its first beat, as the environment would.

    Args:
        raw_path: the recording.
        actions: (type, size, amount) triples (ints or IntEnums) or 'TYPE SIZE AMOUNT'
            strings. Every action must be valid where it is applied (an agent's logged
            actions are: the environment records the action it resolved to).
        features: the recording's BeatFeatures (else computed or read from cache_dir,
            with beats_s / downbeats_s as in beat_features, on the analysis grid `params`).
        config: the environment settings the actions were taken under (for the masks).
        crossfade_s: crossfade at every jump (see track_to_edit).

    Raises UserError naming the first invalid action.
    """
    config = config or EnvConfig()
    bf = features or beat_features(raw_path, cache_dir=cache_dir, beats_s=beats_s,
                                   downbeats_s=downbeats_s, params=params)
    track = EditTrack(bf.n_beats, downbeat_phase=bf.downbeat_phase,
                      max_played_beats=math.floor(config.max_played_ratio * bf.n_beats))
    for i, action in enumerate(actions):
        a = parse(action) if isinstance(action, str) else tuple(int(x) for x in action)
        if track.done:
            raise UserError(f"{raw_path}: action {i} ({describe(a)}) comes after the last "
                            "beat; drop the actions after it")
        if not track.mask()[a]:
            raise UserError(f"{raw_path}: action {i} ({describe(a)}) is not valid at beat "
                            f"{track.cursor} of {bf.n_beats}; fix the action list")
        track.apply(a)
    edit = track_to_edit(track, bf.bounds_s, raw_path=str(raw_path), crossfade_s=crossfade_s)
    return Replay(track, edit, bf)


def render_replay(raw_path: str | os.PathLike, actions, out_path: str | os.PathLike, **kwargs):
    """Replay `actions` on a recording and render the result to out_path (.wav/.flac).

    Keyword arguments go to `replay`. Returns (Replay, editorbot.render.RenderReport).
    """
    from ..render import render

    result = replay(raw_path, actions, **kwargs)
    if not result.edit.segments:
        raise UserError(f"{raw_path}: the actions keep nothing, so there is nothing to render")
    report = render(raw_path, result.edit, out_path, beats_s=result.features.bounds_s[1:-1])
    return result, report


def save_actions(path: str | os.PathLike, actions) -> Path:
    """Write actions as a JSON list of 'TYPE SIZE AMOUNT' strings (readable, editable)."""
    return atomic_write_text(path, json.dumps([describe(a) for a in actions], indent=1))


def load_actions(path: str | os.PathLike) -> list[tuple[int, int, int]]:
    """Read actions written by save_actions (or a JSON list of [type, size, amount])."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON action list ({err})") from None
    if not isinstance(items, list):
        raise UserError(f"{path}: expected a JSON list of actions like \"KEEP BAR NEUTRAL\"")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse(item) if isinstance(item, str) else
                       tuple(int(x) for x in item))
        except (ValueError, TypeError) as err:
            raise UserError(f"{path}: action {i}: {err}") from None
    return out
