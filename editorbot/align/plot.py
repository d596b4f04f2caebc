"""The alignment picture: raw time against edit time, one line per segment coloured by
what the editor did, joins marked, and a strip of per-frame confidence (with its colour
scale) underneath when there is a confidence to show.

Drawn with matplotlib's Agg canvas (no display, no pyplot state), readable for an hour of raw.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..cache import atomic_write_bytes
from ..edits import Edit, Op
from ..features import FeatureParams

COLOURS = {"copy": "#1f77b4", "cut": "#2ca02c", "reorder": "#9467bd", "loop": "#ff7f0e",
           "not in raw": "#d62728"}
STRIP_COLUMNS = 3000  # confidence values drawn (worst frame of each column)


def segment_kinds(edit: Edit, ops: np.ndarray, params: FeatureParams) -> list[str]:
    """What each segment is, from the op at its first frame: 'copy' (the first segment,
    or after "not in raw", or carrying straight on), 'cut', 'reorder', 'loop' or 'not in raw'."""
    fps = params.frames_per_s
    kinds = []
    prev_end = None
    for seg, start in zip(edit.segments, edit.edit_starts_s()):
        if seg.raw_start_s is None:
            kinds.append("not in raw")
            prev_end = None
            continue
        j = min(int(np.ceil(start * fps - 1e-6)), len(ops) - 1)
        if j >= 0 and ops[j] == Op.LOOP_START:
            kinds.append("loop")
        elif prev_end is None:
            kinds.append("copy")
        elif seg.raw_start_s < prev_end - 1.5 / fps:
            kinds.append("reorder")
        elif seg.raw_start_s <= prev_end + 1.5 / fps:  # carries straight on (a split piece)
            kinds.append("copy")
        else:
            kinds.append("cut")
        prev_end = seg.raw_end_s
    return kinds


def plot_alignment(out_path: str | os.PathLike, *, edit: Edit, ops: np.ndarray,
                   confidence: np.ndarray | None, params: FeatureParams, raw_duration_s: float,
                   title: str = "", alternatives: list[list[float]] | None = None) -> Path:
    """Write the alignment picture as a PNG (atomically).

    Args:
        edit: the aligned segments.
        ops : np.ndarray [shape=(edit_frames,)], int8, per-frame ops
        confidence : np.ndarray [shape=(edit_frames,)], float in [0, 1]; None: the editor
            has none (the rule-based one), and the strip is left out.
        raw_duration_s: length of the raw recording (the y axis).
        alternatives: per segment, the raw starts of identical copies that play it as
            well (drawn thin and faint: "this could also come from there").
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    n_conf = 0 if confidence is None else len(confidence)
    edit_s = max(edit.duration_s, n_conf / params.frames_per_s, 1e-3)
    unit, scale = ("min", 60.0) if max(edit_s, raw_duration_s) > 120 else ("s", 1.0)
    fig = Figure(figsize=(14, 8.5), dpi=100)
    FigureCanvasAgg(fig)
    if confidence is not None:
        grid = fig.add_gridspec(2, 1, height_ratios=[12, 1], hspace=0.08)
        ax = fig.add_subplot(grid[0])
        strip = fig.add_subplot(grid[1], sharex=ax)
    else:
        ax = fig.add_subplot(1, 1, 1)
    kinds = segment_kinds(edit, ops, params)
    lines, colours, joins, copies = [], [], [], []
    alternatives = alternatives or [[] for _ in edit.segments]
    for seg, start, kind, alts in zip(edit.segments, edit.edit_starts_s(), kinds, alternatives):
        end = start + seg.duration_s
        copies += [[(start / scale, a / scale), (end / scale, (a + seg.duration_s) / scale)]
                   for a in alts]
        if seg.raw_start_s is None:
            ax.axvspan(start / scale, end / scale, color=COLOURS[kind], alpha=0.18, lw=0)
            continue
        lines.append([(start / scale, seg.raw_start_s / scale), (end / scale, seg.raw_end_s / scale)])
        colours.append(COLOURS[kind])
        if kind != "copy":
            joins.append(start / scale)
        if seg.fade_in_s:
            ax.axvspan(start / scale, (start + seg.fade_in_s) / scale, color="grey", alpha=0.15, lw=0)
        if seg.fade_out_s:
            ax.axvspan((end - seg.fade_out_s) / scale, end / scale, color="grey", alpha=0.15, lw=0)
    if copies:
        ax.add_collection(LineCollection(copies, colors="0.45", linewidths=1.0, alpha=0.6,
                                         linestyles=(0, (2, 1)), capstyle="butt"))
    ax.add_collection(LineCollection(lines, colors=colours, linewidths=2.6, capstyle="butt"))
    for x in joins:
        ax.axvline(x, color="0.55", lw=0.6, ls=":", zorder=0)
    if joins:
        ax.plot(joins, np.full(len(joins), 0.0), "|", color="0.3", ms=10, clip_on=False,
                transform=ax.get_xaxis_transform())
    ax.set_xlim(0, edit_s / scale)
    ax.set_ylim(0, max(raw_duration_s, 1e-3) / scale)
    ax.set_ylabel(f"raw time ({unit})")
    ax.grid(True, color="0.92", lw=0.6)
    ax.tick_params(labelbottom=confidence is None)
    handles = [Line2D([], [], color=c, lw=3, label=k) for k, c in COLOURS.items()
               if k in kinds]
    handles.append(Line2D([], [], color="0.55", lw=0.8, ls=":", label="join"))
    if copies:
        handles.append(Line2D([], [], color="0.45", lw=1.0, ls=(0, (2, 1)),
                              label="identical audio elsewhere (alternative)"))
    ax.legend(handles=handles, loc="upper left", fontsize=9, framealpha=0.9)
    ax.set_title(title, fontsize=11, loc="left")
    if confidence is None:
        ax.set_xlabel(f"edit time ({unit})")
    else:
        _confidence_strip(fig, strip, np.asarray(confidence, np.float32), params, scale)
        strip.set_xlabel(f"edit time ({unit})")
    fig.subplots_adjust(left=0.07, right=0.93, top=0.94, bottom=0.07)
    return atomic_write_bytes(out_path, lambda tmp: fig.savefig(tmp, format="png"))


def _confidence_strip(fig, strip, conf: np.ndarray, params: FeatureParams, scale: float) -> None:
    """The confidence strip: the worst frame of each column (short doubts stay visible),
    red 0 to green 1, with its colour scale beside it and the lowest value in the label."""
    if len(conf):
        cols = min(STRIP_COLUMNS, len(conf))
        edges = np.linspace(0, len(conf), cols + 1).astype(int)
        worst = np.minimum.reduceat(conf, edges[:-1])
        image = strip.imshow(worst[None, :], aspect="auto", cmap="RdYlGn", vmin=0, vmax=1,
                             extent=(0, len(conf) / params.frames_per_s / scale, 0, 1),
                             interpolation="nearest")
        bar = fig.colorbar(image, cax=strip.inset_axes([1.01, 0.0, 0.012, 1.0]), ticks=[0, 0.5, 1])
        bar.ax.tick_params(labelsize=8)
        strip.set_title(f"confidence per frame (lowest {float(conf.min()):.2f})", fontsize=9,
                        loc="left", pad=3)
    strip.set_yticks([])
    strip.set_ylabel("conf.", rotation=0, ha="right", va="center", fontsize=9)
