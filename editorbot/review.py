"""The review page of an edit: one self-contained HTML file to judge it by eye and ear.

It shows the raw and the edit as waveforms with ribbons from each segment to its place in
the raw, every cut with its seam scores and a player for a few seconds around it, and the
segment list to download. Everything is inline (SVG, base64 WAV clips, data URIs); the
only outside reference is the full edit's audio file, by its name, next to the page.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from . import __version__, audio
from .cache import atomic_write_text
from .edits import Edit, clock

COLUMNS = 1000          # waveform columns (peaks per column)
CLIP_S = 5.0            # seconds of edit audio around each cut
CLIP_SR = 22050         # clips are mono at this rate (keeps the page small)
LABEL_CHAR_W = 6.5      # width of one label character, in overview units (font-size 10)
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#86bc86"]


def waveform_peaks(path: str | os.PathLike, columns: int = COLUMNS) -> tuple[np.ndarray, np.ndarray, float]:
    """Min and max of the mono mix in `columns` equal slices of a file, read block by block.

    Returns:
        lo, hi : np.ndarray [shape=(columns,)], float32 in [-1, 1]
        duration_s : float
    """
    info = audio.probe(path)
    edges = np.linspace(0, info.frames, columns + 1).astype(np.int64)
    lo = np.zeros(columns, np.float32)
    hi = np.zeros(columns, np.float32)
    pos = 0
    for block in audio.iter_blocks(path, info=info):
        mono = block.mean(axis=1)
        # Columns this block touches, reduced with np.minimum/maximum.reduceat.
        first = int(np.searchsorted(edges, pos, side="right")) - 1
        last = int(np.searchsorted(edges, pos + len(mono), side="left"))
        cuts = np.clip(edges[first:last + 1] - pos, 0, len(mono))
        starts = cuts[:-1]
        valid = starts < cuts[1:]
        if valid.any():
            idx = np.arange(first, first + len(starts))[valid]
            lo[idx] = np.minimum(lo[idx], np.minimum.reduceat(mono, starts[valid]))
            hi[idx] = np.maximum(hi[idx], np.maximum.reduceat(mono, starts[valid]))
        pos += len(mono)
    return lo, hi, info.duration_s


def wav_data_uri(x: np.ndarray, sr: int) -> str:
    """A base64 data URI of 16-bit PCM WAV audio."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def cut_clip(edit_audio_path: str | os.PathLike, edit_s: float, clip_s: float = CLIP_S,
             sr: int = CLIP_SR) -> tuple[str, float]:
    """The edit's audio from clip_s / 2 before a cut to clip_s / 2 after it, as a data URI.

    Returns:
        (uri, offset_s): the data URI and where the cut falls inside the clip.
    """
    info = audio.probe(edit_audio_path)
    start = max(0, int(round((edit_s - clip_s / 2) * info.sr)))
    stop = min(info.frames, int(round((edit_s + clip_s / 2) * info.sr)))
    data, _ = audio.read(edit_audio_path, start=start, frames=max(1, stop - start), info=info)
    mono = data.mean(axis=1)
    if info.sr != sr:
        mono = soxr.resample(mono, info.sr, sr)
    return wav_data_uri(mono, sr), edit_s - start / info.sr


def _wave_path(lo: np.ndarray, hi: np.ndarray, x0: float, width: float, y0: float, height: float) -> str:
    """SVG path of a filled waveform: the max edge left to right, the min edge back."""
    n = len(lo)
    xs = x0 + (np.arange(n) + 0.5) * width / n
    mid = y0 + height / 2
    top = mid - np.clip(hi, -1, 1) * height / 2
    bot = mid - np.clip(lo, -1, 1) * height / 2
    bot = np.maximum(bot, top + 0.3)  # a visible line through silence
    pts = [f"{x:.1f},{y:.1f}" for x, y in zip(xs, top)] + \
          [f"{x:.1f},{y:.1f}" for x, y in zip(xs[::-1], bot[::-1])]
    return "M" + " L".join(pts) + " Z"


def _ticks(length_s: float, width: float, y: float) -> list[str]:
    """Time ticks under a lane: about 10, at a round step."""
    steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800]
    step = next((s for s in steps if length_s / s <= 12), 3600)
    out = []
    for t in np.arange(0.0, length_s + 1e-9, step):
        x = width * t / max(length_s, 1e-9)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y:.0f}" y2="{y + 4:.0f}" class="tick"/>'
                   f'<text x="{x + 2:.1f}" y="{y + 13:.0f}" class="ticklabel">{clock(t, 2)[:-3]}</text>')
    return out


def place_labels(spans: list[tuple[float, float, str]], rows: int,
                 taken_to: float = -np.inf) -> list[int | None]:
    """A row for each label so that no two labels in a row overlap, or None (skipped).

    Args:
        spans: (x0, x1, text) per label: the label is centred on x0..x1, in overview units.
        rows: rows available (one under the other).
        taken_to: every row is taken up to this x already (by a lane's title).

    Returns:
        per label, the first row where it fits, or None where it fits in none; labels are
        placed from left to right, so the leftmost keep the top row.
    """
    right_edge = [taken_to] * rows
    out: list[int | None] = [None] * len(spans)
    for i in sorted(range(len(spans)), key=lambda k: (spans[k][0] + spans[k][1]) / 2):
        x0, x1, text = spans[i]
        half = LABEL_CHAR_W * len(text) / 2 + 2
        centre = (x0 + x1) / 2
        for row in range(rows):
            if centre - half >= right_edge[row]:
                right_edge[row] = centre + half
                out[i] = row
                break
    return out


def plural(n: int, word: str) -> str:
    """'1 segment', '2 segments', '0 cuts'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def raw_coverage_s(edit: Edit) -> tuple[float, float]:
    """Seconds of the raw the edit plays at least once, and of those, more than once."""
    events = sorted([(s.raw_start_s, 1) for s in edit.segments if s.raw_start_s is not None]
                    + [(s.raw_end_s, -1) for s in edit.segments if s.raw_start_s is not None])
    once = again = 0.0
    depth, last = 0, 0.0
    for t, step in events:
        if depth >= 1:
            once += t - last
        if depth >= 2:
            again += t - last
        depth, last = depth + step, t
    return once, again


def level_line(render: dict | None) -> str | None:
    """One line about what the render did to the edit's level, from the "render" dict that
    the segment list carries (editorbot.render's RenderReport.level_json); None without
    one. Keys it does not find are left out of the line."""
    if not render:
        return None

    def num(key):
        value = render.get(key)
        return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None

    reduction, gain, peak = num("gain_reduction_db"), num("gain_db"), num("peak_dbfs")
    if render.get("method") == "clipping allowed":
        line = f"level: clipping allowed, {render.get('clipped_samples', '?')} samples clipped"
    elif render.get("method") == "limiter":
        line = (f"level: {gain or 0.0:+.1f} dB on the whole edit for its loudness, its peaks "
                f"limited by {num('limit_db') or 0.0:.1f} dB")
        if reduction:
            line += f", and the whole edit lowered by {reduction:.1f} dB (the limiter's most)"
    elif reduction:
        line = f"level: the whole edit lowered by {reduction:.1f} dB so that nothing clips"
    elif gain:
        line = f"level: one gain of {gain:+.1f} dB on the whole edit"
    else:
        line = "level: as the segments' gains make it"
    if peak is not None:
        line += f", peak {peak:.1f} dBFS"
    if num("loudness_lufs") is not None:
        line += f", loudness {num('loudness_lufs'):.1f} LUFS"
    return line


def _seams(edit: Edit, render_report) -> list[dict]:
    """One dict per cut: from the render's seam reports, or (no render) from the segments."""
    if render_report is not None:
        out = []
        for s in render_report.seams:
            out.append({"index": s.index, "edit_s": s.edit_s, "raw_out_s": s.raw_out_s,
                        "raw_in_s": s.raw_in_s, "moved_ms": s.moved_ms,
                        "crossfade_ms": s.crossfade_ms, "step_ratio": s.step_ratio,
                        "burst_ratio": s.burst_ratio, "loudness_step_db": s.loudness_step_db,
                        "clean": s.clean})
        return out
    starts = edit.edit_starts_s()
    out = []
    for i in range(1, len(edit.segments)):
        prev, seg = edit.segments[i - 1], edit.segments[i]
        out.append({"index": i, "edit_s": float(starts[i]), "raw_out_s": prev.raw_end_s,
                    "raw_in_s": seg.raw_start_s, "crossfade_ms": 1000 * seg.crossfade_s})
    return out


def _score_cells(seam: dict) -> str:
    if "step_ratio" not in seam:
        return '<span class="muted">no seam scores (not rendered by editorbot.render)</span>'
    verdict = "clean" if seam["clean"] else "rough"
    return (f'<span class="badge {verdict}">{verdict}</span> '
            f'click step &times;{seam["step_ratio"]:.2f}, burst &times;{seam["burst_ratio"]:.2f} '
            f'of the raw&rsquo;s 99th percentile; loudness step {seam["loudness_step_db"]:+.1f} dB; '
            f'moved {seam["moved_ms"]:+.1f} ms; crossfade {seam["crossfade_ms"]:.0f} ms')


def write_review_page(out_html: str | os.PathLike, *, raw_path: str | os.PathLike,
                      edit_audio_path: str | os.PathLike, edit: Edit, render_report=None,
                      render: dict | None = None, title: str | None = None,
                      notes: list[str] | None = None) -> Path:
    """Write the review page of an edit, atomically.

    Args:
        out_html: the page to write (put it next to the edit's audio).
        raw_path: the raw recording the edit was cut from.
        edit_audio_path: the rendered edit (clips around the cuts come from it).
        edit: the segments; with a render report, its `edit` (the cuts as rendered) is shown.
        render_report: editorbot.render.RenderReport, for the seam scores (None: no scores).
        render: what the render did to the level, as the segment list's "render" dict
            records it (default: the report's, when it has one); shown in one line and
            kept in the segment list the page offers for download.
        title: page title (default: the edit file's name).
        notes: lines to show at the top (which editor made it, warnings...).

    Returns:
        the page's path.
    """
    out_html = Path(out_html)
    edit_audio_path = Path(edit_audio_path)
    if render_report is not None:
        edit = render_report.edit
        if render is None and hasattr(render_report, "level_json"):
            render = render_report.level_json()
    raw_lo, raw_hi, raw_s = waveform_peaks(raw_path)
    ed_lo, ed_hi, edit_s = waveform_peaks(edit_audio_path)
    seams = _seams(edit, render_report)
    starts = edit.edit_starts_s()
    title = title or edit_audio_path.name

    # Overview: raw lane on top, edit lane below, a ribbon from each segment to its source.
    W, lane_h, gap = 1000.0, 90.0, 110.0
    raw_y, edit_y = 20.0, 20.0 + lane_h + gap
    svg = [f'<svg id="overview" viewBox="0 0 {W:.0f} {edit_y + lane_h + 20:.0f}" '
           'preserveAspectRatio="none" role="img" aria-label="raw and edit waveforms">']
    svg.append(f'<text x="0" y="{raw_y - 6:.0f}" class="lane">raw {html.escape(Path(raw_path).name)} '
               f'({clock(raw_s, 2)})</text>')
    svg.append(f'<text x="0" y="{edit_y - 6:.0f}" class="lane">edit ({clock(edit_s, 2)})</text>')
    raw_labels: list[tuple[float, float, str]] = []
    edit_labels: list[tuple[float, float, str]] = []
    for i, (seg, e0) in enumerate(zip(edit.segments, starts)):
        if seg.raw_start_s is None:
            continue
        color = PALETTE[i % len(PALETTE)]
        r0 = W * seg.raw_start_s / raw_s
        r1 = W * seg.raw_end_s / raw_s
        x0 = W * e0 / max(edit_s, 1e-9)
        x1 = W * (e0 + seg.duration_s) / max(edit_s, 1e-9)
        svg.append(f'<rect x="{r0:.1f}" y="{raw_y:.0f}" width="{max(r1 - r0, 0.5):.1f}" '
                   f'height="{lane_h:.0f}" fill="{color}" opacity="0.25"/>')
        svg.append(f'<path d="M{r0:.1f},{raw_y + lane_h:.0f} L{r1:.1f},{raw_y + lane_h:.0f} '
                   f'L{x1:.1f},{edit_y:.0f} L{x0:.1f},{edit_y:.0f} Z" fill="{color}" opacity="0.3"/>')
        svg.append(f'<rect x="{x0:.1f}" y="{edit_y:.0f}" width="{max(x1 - x0, 0.5):.1f}" '
                   f'height="{lane_h:.0f}" fill="{color}" opacity="0.25"/>')
        raw_labels.append((r0, r1, str(i + 1)))
        edit_labels.append((x0, x1, str(i + 1)))
    # Labels in up to three rows; one that fits in none is left out (the table lists all).
    for labels, y in ((raw_labels, raw_y), (edit_labels, edit_y)):
        for (a, b, text), row in zip(labels, place_labels(labels, rows=3)):
            if row is not None:
                svg.append(f'<text x="{(a + b) / 2:.1f}" y="{y + 12 + 12 * row:.0f}" '
                           f'class="seglabel">{text}</text>')
    svg += _ticks(raw_s, W, raw_y + lane_h)
    svg += _ticks(edit_s, W, edit_y + lane_h)
    svg.append(f'<path class="wave" d="{_wave_path(raw_lo, raw_hi, 0, W, raw_y, lane_h)}"/>')
    svg.append(f'<path class="wave" d="{_wave_path(ed_lo, ed_hi, 0, W, edit_y, lane_h)}"/>')
    # Cut labels right of their line, in one row after the lane's title; a label that
    # would overlap another is left out (its line stays, and the list below names it).
    cut_x = [W * seam["edit_s"] / max(edit_s, 1e-9) for seam in seams]
    edit_title_w = LABEL_CHAR_W * len(f"edit ({clock(edit_s, 2)})") * 1.1
    cut_rows = place_labels([(x + 2, x + 4 + LABEL_CHAR_W * (2 + len(str(k + 1))), "x" + str(k + 1))
                             for k, x in enumerate(cut_x)], rows=1, taken_to=edit_title_w)
    for k, (x, row) in enumerate(zip(cut_x, cut_rows)):
        label = ("" if row is None else f'<text x="{x + 2:.1f}" y="{edit_y - 8:.0f}" '
                 f'class="cutlabel">&#9986;{k + 1}</text>')
        svg.append(f'<a href="#cut-{k + 1}"><line x1="{x:.1f}" x2="{x:.1f}" y1="{edit_y - 4:.0f}" '
                   f'y2="{edit_y + lane_h + 4:.0f}" class="cutline"/>{label}</a>')
    svg.append("</svg>")

    # Cuts, each with a player around it.
    cut_html = []
    for k, seam in enumerate(seams):
        uri, offset = cut_clip(edit_audio_path, seam["edit_s"])
        skipped = (seam["raw_in_s"] - seam["raw_out_s"]
                   if seam["raw_in_s"] is not None and seam["raw_out_s"] is not None else None)
        jump = ("" if skipped is None else
                f" &mdash; {'skips' if skipped >= 0 else 'jumps back'} {abs(skipped):.2f} s of raw")
        cut_html.append(
            f'<li class="cut" id="cut-{k + 1}"><div><b>Cut {k + 1}</b> at {clock(seam["edit_s"], 2)} in '
            f'the edit: raw {clock(seam["raw_out_s"], 2)} &rarr; {clock(seam["raw_in_s"], 2)}{jump}</div>'
            f'<div class="scores">{_score_cells(seam)}</div>'
            f'<audio controls preload="auto" src="{uri}"></audio> '
            f'<span class="muted">the cut is {offset:.2f} s into this clip</span></li>')

    rows = []
    has_confidence = any(seg.confidence is not None for seg in edit.segments)
    for i, (seg, e0) in enumerate(zip(edit.segments, starts)):
        color = PALETTE[i % len(PALETTE)]
        conf = ("" if not has_confidence else
                f"<td>{'-' if seg.confidence is None else f'{seg.confidence:.2f}'}</td>")
        effect = "-" if not seg.effect else html.escape(json.dumps(seg.effect))
        rows.append(
            f'<tr><td><span class="swatch" style="background:{color}"></span>{i + 1}</td>'
            f'<td>{clock(e0, 2)}</td><td>{clock(e0 + seg.duration_s, 2)}</td>'
            f'<td>{clock(seg.raw_start_s, 2)}</td><td>{clock(seg.raw_end_s, 2)}</td>'
            f'<td>{seg.duration_s:.2f}</td><td>{seg.gain_db:+.1f}</td><td>{seg.fade_in_s:.2f}</td>'
            f'<td>{seg.fade_out_s:.2f}</td><td>{1000 * seg.crossfade_s:.0f}</td>{conf}'
            f'<td>{effect}</td></tr>')

    listed = edit.to_json() if render is None else {**edit.to_json(), "render": render}
    segments_json = json.dumps(listed, indent=1)
    segments_uri = "data:application/json;base64," + base64.b64encode(segments_json.encode()).decode()
    kept_s, again_s = raw_coverage_s(edit)
    kept = f"{100 * kept_s / max(raw_s, 1e-9):.0f}% of the raw kept"
    if again_s > 0:
        kept += f", {again_s:.0f} s of it played more than once"
    level = level_line(render)
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in ([level] if level else []) + (notes or []))
    rel_audio = os.path.relpath(edit_audio_path.resolve(), out_html.resolve().parent)
    page = _PAGE.format(
        title=html.escape(title), raw=html.escape(str(raw_path)),
        edit_audio=html.escape(str(edit_audio_path)), rel_audio=html.escape(Path(rel_audio).as_posix()),
        raw_len=clock(raw_s, 2), edit_len=clock(edit_s, 2), kept=kept,
        segments_cuts=f"{plural(len(edit.segments), 'segment')}, {plural(len(seams), 'cut')}",
        notes=note_html, overview="\n".join(svg),
        cuts=(f'<ol class="cuts">\n{chr(10).join(cut_html)}\n</ol>' if cut_html
              else '<p class="muted">no cuts: the edit is one piece of the raw</p>'),
        rows="\n".join(rows), confidence_th="<th>confidence</th>" if has_confidence else "",
        segments_uri=segments_uri,
        segments_name=html.escape(f"{edit_audio_path.stem}_segments.json"),
        edit_len_s=f"{edit_s:.6f}", version=__version__, clip_s=CLIP_S, clip_sr=CLIP_SR)
    return atomic_write_text(out_html, page)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>editorbot review: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1300px; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 24px 0 8px; }}
.muted {{ color: #777; }} .facts span {{ margin-right: 18px; }}
#overview {{ width: 100%; height: 360px; background: #fafafa; border: 1px solid #ddd; cursor: pointer; }}
.wave {{ fill: #333; }} .tick {{ stroke: #999; }} .ticklabel {{ font-size: 9px; fill: #999; }} .lane {{ font-size: 11px; fill: #555; }}
.seglabel {{ font-size: 10px; fill: #111; text-anchor: middle; }}
.cutline {{ stroke: #d62728; stroke-width: 1.2; }} .cutlabel {{ font-size: 10px; fill: #d62728; }}
ol.cuts {{ padding-left: 20px; }} .cut {{ margin: 0 0 12px; }} .cut audio {{ height: 32px; vertical-align: middle; }}
.scores {{ margin: 2px 0 4px; }}
.badge {{ padding: 1px 6px; border-radius: 3px; color: white; font-size: 12px; }}
.clean {{ background: #2ca02c; }} .rough {{ background: #d62728; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #e5e5e5; padding: 3px 8px; text-align: right; }}
.swatch {{ display: inline-block; width: 10px; height: 10px; margin-right: 6px; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="facts"><span>raw <b>{raw}</b> ({raw_len})</span><span>edit <b>{edit_audio}</b> ({edit_len})</span>
<span>{kept}</span><span>{segments_cuts}</span></div>
<ul class="notes">{notes}</ul>
<h2>Where the edit comes from</h2>
<p class="muted">Top: the raw, with each kept segment shaded; bottom: the edit, segment by segment;
red lines: cuts (click one to jump to it). Click the edit lane to play from there.</p>
{overview}
<p><audio id="full" controls preload="metadata" src="{rel_audio}"></audio>
<span class="muted">the whole edit ({rel_audio})</span></p>
<h2>Cuts</h2>
<p class="muted">Each player holds {clip_s:.0f} s of the edit around its cut (mono, {clip_sr} Hz).
Seam scores compare the cut with the raw's own clicks: &times;1 or less is as smooth as the music itself.</p>
{cuts}
<h2>Segments</h2>
<p><a id="download" href="{segments_uri}" download="{segments_name}">Download the segment list (JSON)</a></p>
<table><thead><tr><th>#</th><th>edit in</th><th>edit out</th><th>raw in</th><th>raw out</th>
<th>length s</th><th>gain dB</th><th>fade in s</th><th>fade out s</th><th>crossfade ms</th>
{confidence_th}<th>effect</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<p class="muted">editorbot {version}</p>
<script>
(function () {{
  var svg = document.getElementById("overview");
  var full = document.getElementById("full");
  var editLength = {edit_len_s};
  svg.addEventListener("click", function (ev) {{
    if (ev.target.closest("a")) {{ return; }}
    var box = svg.getBoundingClientRect();
    var t = (ev.clientX - box.left) / box.width * editLength;
    full.currentTime = Math.max(0, Math.min(editLength, t));
    full.play().catch(function () {{}});
  }});
}})();
</script>
</body></html>
"""
