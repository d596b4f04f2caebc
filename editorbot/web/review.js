// The interactive review page of `editorbot review`: two wavesurfer.js lanes (the raw from
// precomputed peaks, the edit built from the same peaks segment by segment), panels that
// send operations to the server, and the state the server answers with. The server keeps
// the state and its journal; this page keeps nothing of its own.
(function () {
  "use strict";
  var TOKEN = document.body.dataset.token;
  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
                 "#ff9da7", "#9c755f", "#86bc86"];
  var state = null, rawPeaks = null, grid = null, selection = null, lastStateId = null;
  var selected = { cut: null, segment: null };
  var $ = function (id) { return document.getElementById(id); };

  function clock(s) {
    if (s === null || s === undefined || !isFinite(s)) { return "-"; }
    var m = Math.floor(s / 60), r = s - 60 * m;
    return m + ":" + (r < 10 ? "0" : "") + r.toFixed(2);
  }
  function withToken(url) { return url + (url.indexOf("?") < 0 ? "?" : "&") + "token=" + TOKEN; }
  function status(text, isError) {
    var el = $("status");
    el.textContent = text;
    el.className = isError ? "error" : "muted";
  }
  function api(method, path, body) {
    return fetch(path, {
      method: method, headers: { "X-Editorbot-Token": TOKEN, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.error || r.statusText); }
        return j;
      });
    });
  }
  function quietly(promise) { if (promise && promise.catch) { promise.catch(function () {}); } }

  // ---------------------------------------------------------------- the two lanes
  var rawAudio = $("raw-audio"), editAudio = $("edit-audio"), clipAudio = $("clip-audio");
  function lane(container, media, color) {
    var ws = WaveSurfer.create({
      container: container, height: 96, waveColor: color, progressColor: color,
      cursorColor: "#d62728", cursorWidth: 2, media: media, normalize: false,
      minPxPerSec: 0, autoScroll: true, autoCenter: false, dragToSeek: false
    });
    var regions = ws.registerPlugin(WaveSurfer.Regions.create());
    return { ws: ws, regions: regions };
  }
  var raw = lane("#raw-wave", rawAudio, "#4a4a4a");
  var edit = lane("#edit-wave", editAudio, "#2f2f2f");
  raw.regions.enableDragSelection({ color: "rgba(255, 196, 0, 0.35)" });

  raw.regions.on("region-created", function (region) {
    if (region.id.indexOf("sel") !== 0 && region.id.indexOf("seg-") !== 0 &&
        region.id.indexOf("bar-") !== 0) {
      if (selection) { selection.remove(); }
      selection = region;
      region.id = "sel";
      showSelection();
    }
  });
  raw.regions.on("region-updated", function (region) { if (region === selection) { showSelection(); } });
  edit.regions.on("region-clicked", function (region, ev) {
    ev.stopPropagation();
    if (region.id.indexOf("cut-") === 0) { selectCut(parseInt(region.id.slice(4), 10)); }
    else if (region.id.indexOf("seg-") === 0) {
      selectSegment(parseInt(region.id.slice(4), 10));
      edit.ws.setTime(region.start + (ev.offsetX || 0) / Math.max(1, region.element.clientWidth) *
                      (region.end - region.start));
    }
  });

  function showSelection() {
    var ok = selection && selection.end - selection.start >= 0.1;
    $("selection").textContent = ok ? "raw " + clock(selection.start) + " to " + clock(selection.end) +
      " (" + (selection.end - selection.start).toFixed(2) + " s)" : "none";
    $("insert").disabled = !ok;
  }

  function editPeaks() {
    var pps = state.peaks_per_s, total = Math.max(1, Math.round(state.duration_s * pps));
    var out = new Float32Array(2 * total);
    state.segments.forEach(function (s) {
      if (s.raw_start_s === null) { return; }
      var e0 = Math.round(s.edit_start_s * pps), n = Math.round(s.duration_s * pps);
      var r0 = Math.round(s.raw_start_s * pps), gain = Math.pow(10, s.gain_db / 20);
      for (var j = 0; j < n && e0 + j < total && 2 * (r0 + j) + 1 < rawPeaks.length; j++) {
        out[2 * (e0 + j)] = rawPeaks[2 * (r0 + j)] * gain;
        out[2 * (e0 + j) + 1] = rawPeaks[2 * (r0 + j) + 1] * gain;
      }
    });
    return out;
  }

  function color(i, alpha) {
    var c = PALETTE[i % PALETTE.length];
    var n = parseInt(c.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function drawRegions() {
    edit.regions.clearRegions();
    raw.regions.getRegions().slice().forEach(function (r) { if (r !== selection) { r.remove(); } });
    state.segments.forEach(function (s, i) {
      var chosen = selected.segment === i;
      edit.regions.addRegion({ id: "seg-" + i, start: s.edit_start_s, end: s.edit_start_s + s.duration_s,
        color: color(i, chosen ? 0.45 : 0.2), drag: false, resize: false, content: String(i + 1) });
      if (s.raw_start_s !== null) {
        raw.regions.addRegion({ id: "seg-" + i, start: s.raw_start_s, end: s.raw_end_s,
          color: color(i, chosen ? 0.5 : 0.25), drag: false, resize: false, content: String(i + 1) });
      }
      if (i > 0) {
        edit.regions.addRegion({ id: "cut-" + i, start: s.edit_start_s, drag: false, resize: false,
          color: selected.cut === i ? "#ff0000" : "rgba(214, 39, 40, 0.8)", content: "\u2702" + i });
      }
    });
    drawBars();
  }

  function drawBars() {
    // The raw's bar lines near the selected cut's raw points: where a move will land.
    if (!grid || selected.cut === null) { return; }
    var a = state.segments[selected.cut - 1], b = state.segments[selected.cut];
    [a.raw_end_s, b.raw_start_s].forEach(function (t, side) {
      if (t === null) { return; }
      grid.downbeats_s.forEach(function (d, j) {
        if (Math.abs(d - t) < 9) {
          raw.regions.addRegion({ id: "bar-" + side + "-" + j, start: d, drag: false, resize: false,
                                  color: "rgba(43, 108, 176, 0.55)" });
        }
      });
    });
  }

  // ---------------------------------------------------------------- state -> page
  function render(next) {
    var first = state === null;
    state = next;
    $("edit-name").textContent = state.edit_name;
    $("version").textContent = "version " + state.version + " (versions on disk: " +
                               state.versions.join(", ") + ")";
    $("dirty").textContent = state.dirty ? "unsaved changes" : "saved";
    $("dirty").className = "badge " + (state.dirty ? "unsaved" : "saved");
    $("undo").disabled = !state.can_undo;
    $("redo").disabled = !state.can_redo;
    $("save").disabled = !state.dirty;
    $("raw-facts").textContent = state.raw.name + ", " + clock(state.raw.duration_s) + ", " +
      state.raw.sr + " Hz, " + state.raw.channels + " ch";
    var kept = state.segments.reduce(function (t, s) { return t + (s.raw_start_s === null ? 0 : s.duration_s); }, 0);
    $("edit-facts").textContent = clock(state.duration_s) + ", " + state.segments.length +
      " segments, " + (state.segments.length - 1) + " cuts, " +
      Math.round(100 * kept / state.raw.duration_s) + "% of the raw" +
      (state.dirty ? (state.rendered ? " (unsaved: plays its render from the raw)" :
                      " (unsaved: rendering it from the raw\u2026)") : "");
    var g = state.grid;
    $("grid-facts").textContent = !g.ready ? "Finding the raw's beats and bars\u2026" :
      (g.bars ? "Beat grid: " + g.beats + " beats, " + g.bars + " bars, " +
       (g.tempo_bpm ? g.tempo_bpm.toFixed(1) + " bpm" : "") : "No steady beat: moves are in seconds.");
    $("learn-facts").textContent = state.learn ? "Save also writes this correction into " +
      state.learn.data_dir + " as pair \u201c" + state.learn.name + "\u201d" +
      ({caching: "; caching the raw's mel for training\u2026", cached: "; the raw's mel is cached: " +
        "ready to train."}[state.learn.mel] || (state.learn.mel ? "; " + state.learn.mel : ".")) :
      "Corrections are not written into a training layout (--no-learn).";
    var save = state.last_save;
    $("save-facts").textContent = save ? "Saved version " + save.version + " (" +
      clock(save.duration_s) + ", rendered in " + save.render_s.toFixed(2) + " s)" +
      (state.page_writing ? "; writing its static page\u2026" : "; static page written.") : "";
    var hist = $("history");
    hist.innerHTML = "";
    state.history.forEach(function (label) {
      var li = document.createElement("li");
      li.textContent = label;
      hist.appendChild(li);
    });
    if (selected.cut !== null && selected.cut >= state.segments.length) { selected.cut = null; }
    if (selected.segment !== null && selected.segment >= state.segments.length) { selected.segment = null; }
    fillTable();
    fillInsertAt();
    fillEditors();
    if (state.state_id !== lastStateId) {
      lastStateId = state.state_id;
      var t = first ? 0 : edit.ws.getCurrentTime();
      quietly(edit.ws.load(withToken(state.edit_audio), [editPeaks()], state.duration_s).then(function () {
        edit.ws.setTime(Math.min(t, state.duration_s));
        drawRegions();
      }));
    } else {
      drawRegions();
    }
    showCut();
    showSegment();
    if (!g.ready) { setTimeout(refresh, 1000); }
    else if (!grid) { api("GET", "/api/grid").then(function (j) { grid = j; drawRegions(); }); }
    if (state.page_writing || (state.learn && state.learn.mel === "caching") ||
        (state.dirty && !state.rendered)) { setTimeout(refresh, 1000); }
  }

  function refresh() { api("GET", "/api/state").then(render).catch(function (e) { status(e.message, true); }); }

  function fillTable() {
    var body = document.querySelector("#segments tbody");
    body.innerHTML = "";
    state.segments.forEach(function (s, i) {
      var tr = document.createElement("tr");
      if (selected.segment === i) { tr.className = "selected"; }
      var cells = ['<span class="swatch" style="background:' + PALETTE[i % PALETTE.length] + '"></span>' + (i + 1),
        clock(s.edit_start_s), clock(s.edit_start_s + s.duration_s), clock(s.raw_start_s), clock(s.raw_end_s),
        s.duration_s.toFixed(2), (s.gain_db >= 0 ? "+" : "") + s.gain_db.toFixed(1),
        Math.round(1000 * s.crossfade_s), i ? '<a href="#" data-cut="' + i + '">cut ' + i + "</a>" : "",
        s.touched ? "you" : "editor"];
      tr.innerHTML = cells.map(function (c) { return "<td>" + c + "</td>"; }).join("");
      tr.addEventListener("click", function (ev) {
        var cut = ev.target.getAttribute("data-cut");
        ev.preventDefault();
        if (cut) { selectCut(parseInt(cut, 10)); } else { selectSegment(i); }
      });
      body.appendChild(tr);
    });
  }

  var EDITOR_NAMES = { rule: "the rule-based editor", model: "the model" };
  function fillEditors() {
    var sel = $("repropose-editor");
    if (sel.options.length === state.editors.length) { return; }
    sel.innerHTML = "";
    state.editors.forEach(function (name) {
      var o = document.createElement("option");
      o.value = name; o.textContent = EDITOR_NAMES[name] || name;
      sel.appendChild(o);
    });
    if (!$("target").value) { $("target").value = clock(state.duration_s); }
  }
  function seconds(text) {  // "m:ss", "h:mm:ss" or seconds; NaN when neither
    var parts = text.trim().split(":"), total = 0;
    for (var k = 0; k < parts.length; k++) {
      if (!/^\d+(\.\d*)?$/.test(parts[k])) { return NaN; }
      total = total * 60 + parseFloat(parts[k]);
    }
    return parts.length ? total : NaN;
  }

  function fillInsertAt() {
    var sel = $("insert-at"), keep = sel.value;
    sel.innerHTML = "";
    for (var i = 0; i <= state.segments.length; i++) {
      var o = document.createElement("option");
      o.value = i;
      o.textContent = i === state.segments.length ? "at the end" : "before segment " + (i + 1);
      sel.appendChild(o);
    }
    sel.value = keep && keep <= state.segments.length ? keep : state.segments.length;
  }

  function selectCut(k) {
    selected.cut = k;
    selected.segment = null;
    showCut(); showSegment(); drawRegions(); fillTable();
    var a = state.segments[k - 1];
    if (a.raw_start_s !== null) { raw.ws.setScrollTime(Math.max(0, a.raw_end_s - 5)); }
  }
  function selectSegment(i) {
    selected.segment = i;
    selected.cut = null;
    showCut(); showSegment(); drawRegions(); fillTable();
  }

  function showCut() {
    var k = selected.cut, on = k !== null;
    $("cut-panel").classList.toggle("active", on);
    document.querySelectorAll("#cut-panel button").forEach(function (b) { b.disabled = !on; });
    $("cut-number").textContent = on ? k : "\u2013";
    if (!on) { $("cut-facts").textContent = "Select a cut (a red line, or the table below)."; return; }
    var a = state.segments[k - 1], b = state.segments[k];
    var jump = a.raw_end_s === null || b.raw_start_s === null ? "" :
      (b.raw_start_s >= a.raw_end_s - 1e-6 ? " \u2014 skips " + (b.raw_start_s - a.raw_end_s).toFixed(2) + " s of raw" :
       " \u2014 jumps back " + (a.raw_end_s - b.raw_start_s).toFixed(2) + " s");
    $("cut-facts").textContent = "At " + clock(b.edit_start_s) + " in the edit: raw " + clock(a.raw_end_s) +
      " \u2192 " + clock(b.raw_start_s) + jump + "; crossfade " + Math.round(1000 * b.crossfade_s) + " ms.";
  }

  function showSegment() {
    var i = selected.segment, on = i !== null;
    $("segment-panel").classList.toggle("active", on);
    document.querySelectorAll("#segment-panel button").forEach(function (b) { b.disabled = !on; });
    $("segment-number").textContent = on ? i + 1 : "\u2013";
    if (!on) { $("segment-facts").textContent = "Select a segment (click it in the edit, or in the table)."; return; }
    var s = state.segments[i];
    $("seg-earlier").disabled = i === 0;
    $("seg-later").disabled = i === state.segments.length - 1;
    $("seg-delete").disabled = state.segments.length === 1;
    $("segment-facts").textContent = "Raw " + clock(s.raw_start_s) + " to " + clock(s.raw_end_s) + " (" +
      s.duration_s.toFixed(2) + " s), at " + clock(s.edit_start_s) + " in the edit.";
  }

  // ---------------------------------------------------------------- operations
  function op(request, after) {
    status("working\u2026");
    return api("POST", "/api/op", request).then(function (next) {
      if (after) { after(next); }
      render(next);
      status("done: " + next.history[next.history.length - 1] + (next.note ? "; " + next.note : ""));
    }).catch(function (e) { status(e.message, true); });
  }
  $("veto").addEventListener("click", function () {
    op({ op: "veto", cut: selected.cut }, function () { selected.cut = null; });
  });
  document.querySelectorAll("[data-cut-move]").forEach(function (b) {
    b.addEventListener("click", function () {
      op({ op: "move_cut", cut: selected.cut, n: parseInt(b.dataset.cutMove, 10), unit: b.dataset.unit });
    });
  });
  document.querySelectorAll("[data-edge]").forEach(function (b) {
    b.addEventListener("click", function () {
      op({ op: "move_edge", segment: selected.segment, edge: b.dataset.edge,
           n: parseInt(b.dataset.n, 10), unit: b.dataset.unit });
    });
  });
  $("seg-earlier").addEventListener("click", function () {
    var i = selected.segment;
    op({ op: "move_segment", segment: i, to: i - 1 }, function () { selected.segment = i - 1; });
  });
  $("seg-later").addEventListener("click", function () {
    var i = selected.segment;
    op({ op: "move_segment", segment: i, to: i + 1 }, function () { selected.segment = i + 1; });
  });
  $("seg-delete").addEventListener("click", function () {
    op({ op: "delete", segment: selected.segment }, function () { selected.segment = null; });
  });
  $("insert").addEventListener("click", function () {
    var at = parseInt($("insert-at").value, 10);
    op({ op: "insert", raw_start_s: selection.start, raw_end_s: selection.end, at: at,
         snap: $("insert-snap").checked }, function () {
      selection.remove(); selection = null; showSelection(); selected.segment = at; selected.cut = null;
    });
  });
  $("repropose").addEventListener("click", function () {
    var target = seconds($("target").value);
    if (!(target > 0)) { status("target length: write m:ss or seconds, e.g. 3:30", true); return; }
    status("the editor is proposing\u2026");
    op({ op: "repropose", target_s: target, editor: $("repropose-editor").value }, function () {
      selected.segment = null; selected.cut = null;
    });
  });
  function history(which) {
    status("working\u2026");
    api("POST", "/api/" + which, {}).then(function (next) { render(next); status(which + " done"); })
      .catch(function (e) { status(e.message, true); });
  }
  $("undo").addEventListener("click", function () { history("undo"); });
  $("redo").addEventListener("click", function () { history("redo"); });
  $("save").addEventListener("click", function () {
    $("save").disabled = true;
    status("rendering a new version from the raw\u2026");
    api("POST", "/api/save", {}).then(function (next) {
      render(next);
      var level = next.last_save && next.last_save.level;
      status("saved version " + next.version + (level ? "; " + level : ""));
    }).catch(function (e) { status(e.message, true); $("save").disabled = false; });
  });
  document.addEventListener("keydown", function (ev) {
    if (!(ev.ctrlKey || ev.metaKey)) { return; }
    var key = ev.key.toLowerCase();
    if (key === "z") { ev.preventDefault(); history(ev.shiftKey ? "redo" : "undo"); }
    else if (key === "s") { ev.preventDefault(); if (state && state.dirty) { $("save").click(); } }
  });

  // ---------------------------------------------------------------- playing
  document.querySelectorAll("[data-audition]").forEach(function (b) {
    b.addEventListener("click", function () {
      var without = b.dataset.audition === "without";
      raw.ws.pause(); edit.ws.pause();
      clipAudio.src = withToken("/api/clip.wav?cut=" + selected.cut + "&state=" + state.state_id +
                                (without ? "&without=1" : ""));
      quietly(clipAudio.play());
    });
  });
  $("raw-play").addEventListener("click", function () { edit.ws.pause(); quietly(raw.ws.playPause()); });
  $("edit-play").addEventListener("click", function () { raw.ws.pause(); quietly(edit.ws.playPause()); });
  $("raw-zoom").addEventListener("input", function (ev) { raw.ws.zoom(Number(ev.target.value)); });

  // ---------------------------------------------------------------- start
  fetch(withToken("/api/peaks")).then(function (r) { return r.arrayBuffer(); }).then(function (buf) {
    var bytes = new Int8Array(buf);
    rawPeaks = new Float32Array(bytes.length);
    for (var i = 0; i < bytes.length; i++) { rawPeaks[i] = bytes[i] / 127; }
    return api("GET", "/api/state");
  }).then(function (first) {
    return raw.ws.load(withToken("/raw"), [rawPeaks], first.raw.duration_s).then(function () {
      render(first);
      document.body.dataset.ready = "1";
    });
  }).catch(function (e) { status(e.message, true); });
}());
