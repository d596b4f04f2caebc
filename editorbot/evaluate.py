"""Edit-level metrics of a proposed edit against the human edit, and one table of editors.

Metrics compare pointers (raw frame per edit frame, editorbot.edits): frame pointer accuracy
within 50 ms, IoU of the raw frames kept, cut F1 within one beat, Kendall tau of segment
order, and duration error. `evaluate_editors` runs several editors over held-out pairs.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import kendalltau
from tqdm import tqdm

from .cache import load_npz
from .edits import Edit, segments_to_pointers
from .errors import UserError, log
from .features import DEFAULT_PARAMS, FeatureParams
from .dataset import read_pointer_files
from .layout import Layout, discover

POINTER_TOLERANCE_S = 0.05
DEFAULT_BEAT_PERIOD_S = 0.5  # 120 BPM, when no tempo is known

Editor = Callable[..., Edit]


def pointer_accuracy(pred: np.ndarray, truth: np.ndarray, tol_frames: int) -> float:
    """Share of edit frames whose predicted raw frame is within tol_frames of the truth.

    Frames are compared at the same edit time. The denominator is the number of truth
    frames that point into the raw plus the frames the prediction runs past the truth's
    end, so a longer or shorter edit is penalised.

    Args:
        pred, truth : np.ndarray [shape=(n_pred,), (n_truth,)], int64, -1 = not in raw
    """
    pred, truth = np.asarray(pred, np.int64), np.asarray(truth, np.int64)
    n = min(len(pred), len(truth))
    p, t = pred[:n], truth[:n]
    good = (t >= 0) & (p >= 0) & (np.abs(p - t) <= tol_frames)
    denom = int((truth >= 0).sum()) + max(0, len(pred) - len(truth))
    return float(good.sum() / denom) if denom else 1.0


def kept_iou(pred: np.ndarray, truth: np.ndarray, raw_frames: int) -> float:
    """Intersection over union of the sets of raw frames the two edits play.

    Args:
        pred, truth : np.ndarray, int64 raw frames, -1 ignored
        raw_frames: length of the raw in frames (pointers beyond it still count)
    """
    pred, truth = np.asarray(pred, np.int64), np.asarray(truth, np.int64)
    size = max(int(raw_frames), int(pred.max(initial=-1)) + 1, int(truth.max(initial=-1)) + 1)
    a = np.zeros(size, bool)
    b = np.zeros(size, bool)
    a[pred[pred >= 0]] = True
    b[truth[truth >= 0]] = True
    return mask_iou(a, b)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks of one length (1.0 when both are empty)."""
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else 1.0


def cut_events(pointers: np.ndarray) -> list[tuple[str, int, int]]:
    """The edit's cuts as (kind, raw frame left, raw frame entered).

    kind 'start' (the first raw frame played; left = -1), 'cut' (a jump between two
    consecutive played frames, frames not in the raw skipped) or 'end' (the last raw frame
    played; entered = -1).
    """
    p = np.asarray(pointers, np.int64)
    p = p[p >= 0]
    if len(p) == 0:
        return []
    jumps = np.flatnonzero(p[1:] != p[:-1] + 1) + 1
    events = [("start", -1, int(p[0]))]
    events += [("cut", int(p[j - 1]), int(p[j])) for j in jumps]
    events.append(("end", int(p[-1]), -1))
    return events


def cut_f1(pred: np.ndarray, truth: np.ndarray, tol_frames: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of cuts: a predicted cut matches a true one of the same kind
    when both the frame it leaves and the frame it enters are within tol_frames (one-to-one
    matching).

    Returns:
        (precision, recall, f1)
    """
    pe, te = cut_events(pred), cut_events(truth)
    if not pe and not te:
        return 1.0, 1.0, 1.0
    if not pe or not te:
        return 0.0, 0.0, 0.0
    big = 1e12
    cost = np.full((len(pe), len(te)), big)
    for i, (kp, op, ip) in enumerate(pe):
        for j, (kt, ot, it) in enumerate(te):
            if kp != kt:
                continue
            dist = max(abs(op - ot), abs(ip - it))
            if dist <= tol_frames:
                cost[i, j] = dist
    rows, cols = linear_sum_assignment(cost)
    matches = int((cost[rows, cols] < big).sum())
    precision, recall = matches / len(pe), matches / len(te)
    f1 = 2 * matches / (len(pe) + len(te))
    return precision, recall, f1


def order_tau(pred: np.ndarray, truth: np.ndarray) -> float:
    """Kendall tau between the order of the human edit's segments and the order in which
    the prediction plays them (NaN when fewer than two of them are played at all).

    Each true segment (a run of consecutive raw frames) is placed in the prediction at the
    median edit frame where the prediction plays raw frames inside it.
    """
    truth = np.asarray(truth, np.int64)
    pred = np.asarray(pred, np.int64)
    t = truth[truth >= 0]
    if len(t) == 0:
        return math.nan
    breaks = np.flatnonzero(t[1:] != t[:-1] + 1) + 1
    bounds = np.concatenate([[0], breaks, [len(t)]])
    order, where = [], []
    edit_index = np.arange(len(pred))
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        lo, hi = t[a], t[b - 1]
        inside = (pred >= lo) & (pred <= hi)
        if inside.any():
            order.append(k)
            where.append(float(np.median(edit_index[inside])))
    if len(order) < 2 or len(set(where)) < 2:
        return math.nan
    return float(kendalltau(order, where).statistic)


def edit_metrics(pred: Edit, truth_pointers: np.ndarray, *, raw_frames: int,
                 beat_period_s: float | None, params: FeatureParams = DEFAULT_PARAMS) -> dict:
    """Compare a proposed edit with the human edit's pointers.

    Args:
        pred: the proposed edit.
        truth_pointers : np.ndarray [shape=(edit_frames,)], int64, the human edit
        raw_frames: frames of the raw mel.
        beat_period_s: one beat, the tolerance of cut F1 (None: 0.5 s).
        params: the analysis grid of the pointers.

    Returns:
        dict: pointer_accuracy (within 50 ms), kept_iou, cut_precision, cut_recall, cut_f1
        (within one beat), order_tau (NaN when undefined), duration_error (signed share of
        the human edit's length), duration_s, truth_duration_s.
    """
    fps = params.frames_per_s
    pred_pointers = segments_to_pointers(pred, params)
    truth = np.asarray(truth_pointers, np.int64)
    tol = int(math.floor(POINTER_TOLERANCE_S * fps))
    beat = beat_period_s if beat_period_s else DEFAULT_BEAT_PERIOD_S
    precision, recall, f1 = cut_f1(pred_pointers, truth, int(round(beat * fps)))
    truth_s = len(truth) / fps
    return {
        "pointer_accuracy": pointer_accuracy(pred_pointers, truth, tol),
        "kept_iou": kept_iou(pred_pointers, truth, raw_frames),
        "cut_precision": precision, "cut_recall": recall, "cut_f1": f1,
        "order_tau": order_tau(pred_pointers, truth),
        "duration_error": (pred.duration_s - truth_s) / truth_s if truth_s else math.nan,
        "duration_s": pred.duration_s, "truth_duration_s": truth_s,
    }


def beat_period_for(layout: Layout, name: str, mel: np.ndarray | None,
                    params: FeatureParams) -> float | None:
    """One beat in seconds: from the synthetic corpus' truth/{name}.json or the pair's
    info.json when they give a tempo, else estimated from the raw mel, else None."""
    for path in (layout.data_dir / "truth" / f"{name}.json", layout.pointer_file(name, "info.json")):
        if path.is_file():
            try:
                bpm = json.loads(path.read_text()).get("tempo_bpm")
            except json.JSONDecodeError:
                continue
            if bpm:
                return 60.0 / float(bpm)
    if mel is None:
        return None
    import librosa

    env = librosa.onset.onset_strength(S=mel * params.top_db, sr=params.sr, hop_length=params.hop_length)
    bpm = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=env, sr=params.sr,
                                                    hop_length=params.hop_length))[0])
    return 60.0 / bpm if bpm > 0 else None


METRIC_COLUMNS = [("pointer_accuracy", "ptr acc 50ms", "{:.3f}"), ("kept_iou", "kept IoU", "{:.3f}"),
                  ("cut_f1", "cut F1 1 beat", "{:.3f}"), ("order_tau", "order tau", "{:.3f}"),
                  ("abs_duration_error", "|dur err|", "{:.1%}"), ("seconds", "s/edit", "{:.1f}")]


def summarize(per_pair: dict[str, dict]) -> dict:
    """Mean of each metric over pairs (NaNs left out), plus abs_duration_error."""
    out: dict[str, float] = {}
    keys = [k for k, _, _ in METRIC_COLUMNS]
    for k in keys:
        vals = [abs(m["duration_error"]) if k == "abs_duration_error" else m.get(k, math.nan)
                for m in per_pair.values()]
        vals = [v for v in vals if v is not None and not math.isnan(v)]
        out[k] = float(np.mean(vals)) if vals else math.nan
    out["pairs"] = len(per_pair)
    return out


def format_table(results: dict[str, dict]) -> str:
    """One row per editor: mean metrics over the pairs it edited, and how many failed."""
    header = ["editor", "pairs", "failed"] + [title for _, title, _ in METRIC_COLUMNS]
    rows = []
    for editor, res in results.items():
        mean = res["mean"]
        row = [editor, str(mean["pairs"]), str(len(res["failures"]))]
        row += ["-" if math.isnan(mean[k]) else fmt.format(mean[k]) for k, _, fmt in METRIC_COLUMNS]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def evaluate_editors(data_dir: str | os.PathLike, editors: dict[str, Editor], *,
                     names: list[str] | None = None, cache_dir: str | os.PathLike = "cache",
                     params: FeatureParams = DEFAULT_PARAMS, match_duration: bool = False,
                     print_table: bool = True, file: TextIO | None = None,
                     progress: bool = True) -> dict[str, dict]:
    """Run every editor on every pair and print one table, a row per editor.

    The human edit is the pair's pointer_sequences/{name}_pointers.npy (from `editorbot
    prepare`, or the synthetic corpus' truth written in that layout).

    Args:
        data_dir: the training-data layout holding the pairs.
        editors: display name -> callable(raw_path) -> Edit; with match_duration it is
            called as callable(raw_path, target_duration_s=...) with the human edit's length.
        names: evaluate only these pairs (default: all).
        cache_dir: where cached raw mels are looked up (for tempo estimates).
        params: the analysis grid of the pointers.
        print_table: print the table, to `file` (default: standard output).

    Returns:
        {editor: {"per_pair": {name: metrics}, "failures": {name: message}, "mean": {...}}}
    """
    layout = Layout(Path(data_dir), Path(cache_dir))
    found = discover(data_dir, names)
    if not found.pairs:
        raise UserError(f"{data_dir}: no (raw, edit) pairs to evaluate")
    results: dict[str, dict] = {e: {"per_pair": {}, "failures": {}} for e in editors}
    truths = {}
    for pair in found.pairs:
        truths[pair.name] = read_pointer_files(layout.pointer_dir, pair.name)[0]
    bar = tqdm(total=len(found.pairs) * len(editors), unit="edit", desc="evaluate",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for pair in found.pairs:
            entry = load_npz(layout.features(pair.name, "raw"))
            mel = entry[0]["mel"] if entry is not None and "mel" in entry[0] else None
            if mel is not None:
                raw_frames = mel.shape[1]
            else:
                from .audio import probe
                info = probe(pair.raw)
                raw_frames = params.n_frames(int(math.ceil(info.frames * params.sr / info.sr)))
            beat = beat_period_for(layout, pair.name, mel, params)
            truth = truths[pair.name]
            for editor_name, editor in editors.items():
                kwargs = {"target_duration_s": len(truth) / params.frames_per_s} if match_duration else {}
                t0 = time.time()
                try:
                    edit = editor(pair.raw, **kwargs)
                except UserError as err:
                    results[editor_name]["failures"][pair.name] = str(err)
                    log.warning("%s on %s: %s", editor_name, pair.name, err)
                    bar.update(1)
                    continue
                m = edit_metrics(edit, truth, raw_frames=raw_frames, beat_period_s=beat, params=params)
                m["seconds"] = time.time() - t0
                results[editor_name]["per_pair"][pair.name] = m
                bar.update(1)
    finally:
        bar.close()
    for res in results.values():
        res["mean"] = summarize(res["per_pair"])
    if print_table:
        file = file or sys.stdout
        print(f"{len(found.pairs)} pairs under {data_dir}"
              + (" (each editor asked for the human edit's length)" if match_duration else ""), file=file)
        print(format_table(results), file=file)
    return results
