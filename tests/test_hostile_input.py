"""What a user hands editorbot never runs code, loses work or ends in a traceback (issue 24).

Each case asserts exit status 2, one line naming the file, no traceback, the input
unchanged, and the good work around it done.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from editorbot.audio import write
from editorbot.cache import atomic_write_text, remove_leftover_parts
from editorbot.checkpoint import load_checkpoint, save_checkpoint
from editorbot.edits import Edit, Segment
from editorbot.errors import UserError

from .conftest import run_cli
from .test_align import TRUTH, jam, splice

SR = 22050


def assert_refused(proc, *names: str) -> str:
    """Exit 2, no traceback, one error line naming every name; returns that line."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("editorbot: error:")]
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


class Payload:
    """A pickled object whose unpickling runs a shell command (the trojan of the issue)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def raw_wav(tmp_path_factory) -> Path:
    """A 40 s jam at 22050 Hz."""
    path = tmp_path_factory.mktemp("raw") / "song_raw.wav"
    write(path, jam(40, SR, seed=3), SR)
    return path


# --- checkpoints ---------------------------------------------------------------------------

def trojan(path: Path, marker: Path) -> Path:
    torch.save({"kind": "pointer", "config": {}, "feature_params": {}, "model_state": {},
                "extra": Payload(marker)}, path)
    return path


def test_a_checkpoint_holding_a_hostile_pickle_is_refused_and_never_runs(raw_wav, tmp_path):
    marker = tmp_path / "PWNED"
    ckpt = trojan(tmp_path / "trojan.pt", marker)
    before = ckpt.read_bytes()
    edit = run_cli("edit", raw_wav, "-o", tmp_path / "out.wav", "--checkpoint", ckpt)
    line = assert_refused(edit, ckpt)
    assert "refused" in line and "posix.system" in line and "could run code" in line
    data = tmp_path / "training_data"
    (data / "input").mkdir(parents=True)
    (data / "desired_output").mkdir()
    evaluate = run_cli("evaluate", "--checkpoint", ckpt, "--data-dir", data)
    assert "refused" in assert_refused(evaluate, ckpt)
    resume = run_cli("train", "pointer", "--resume", ckpt, "--save-dir", tmp_path / "run",
                     "--cache-dir", tmp_path / "cache", "--data-dir", tmp_path / "p")
    assert "refused" in assert_refused(resume, ckpt)
    assert not marker.exists(), "the pickled command ran"
    assert ckpt.read_bytes() == before and not (tmp_path / "out.wav").exists()


def test_checkpoints_of_random_bytes_or_missing_keys_are_one_line(raw_wav, tmp_path):
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not a readable checkpoint" in assert_refused(
        run_cli("edit", raw_wav, "-o", tmp_path / "a.wav", "--checkpoint", noise), noise)
    partial = tmp_path / "partial.pt"
    torch.save({"kind": "pointer", "config": {}}, partial)
    assert "without feature_params, model_state" in assert_refused(
        run_cli("edit", raw_wav, "-o", tmp_path / "b.wav", "--checkpoint", partial), partial)


def test_checkpoints_are_plain_data_and_old_torch_version_objects_still_load(tmp_path):
    payload = {"kind": "supervised", "config": {}, "feature_params": {"sr": 22050},
               "model_state": {"w": torch.zeros(2)}, "torch_version": torch.__version__,
               "metrics": {"iou": np.float64(0.5)}, "path": tmp_path}
    save_checkpoint(tmp_path / "new.pt", payload)
    loaded = load_checkpoint(tmp_path / "new.pt")
    assert type(loaded["torch_version"]) is str and type(loaded["metrics"]["iou"]) is float
    # Written by torch.save directly, as checkpoints were before: TorchVersion inside.
    torch.save(dict(payload, metrics={}, path="x"), tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt")["torch_version"] == torch.__version__


def test_demucs_weights_with_a_hostile_pickle_are_refused_without_trust(tmp_path):
    pytest.importorskip("demucs.htdemucs")
    from editorbot import stems
    marker = tmp_path / "PWNED"
    bad = tmp_path / "bad.th"
    torch.save({"klass": Payload(marker), "args": [], "kwargs": {}, "state": {}}, bad)
    with pytest.raises(stems.DemucsUnavailable, match="refused.*--trust-weights"):
        stems.load_demucs(bad)
    assert not marker.exists()


# --- formats -------------------------------------------------------------------------------

def test_an_mp3_raw_edits_and_renders_to_wav_flac_and_ogg(raw_wav, tmp_path):
    y, sr = sf.read(raw_wav, dtype="float32")
    mp3 = tmp_path / "song.mp3"
    sf.write(mp3, y, sr, format="MP3")
    assert sf.info(mp3).subtype == "MPEG_LAYER_III"
    out = tmp_path / "out.wav"
    done = run_cli("edit", mp3, "-o", out, "--keep", "0.5", "--no-review")
    assert done.returncode == 0, done.stderr
    info = sf.info(out)
    assert info.format == "WAV" and info.subtype == "PCM_24"
    assert abs(info.duration - 20.0) < 0.1 * 20.0
    segments = tmp_path / "cut_segments.json"
    Edit([Segment(2.0, 5.0), Segment(20.0, 5.0, crossfade_s=0.02)]).save(segments)
    for name, fmt, subtype in (("r.wav", "WAV", "PCM_24"), ("r.flac", "FLAC", "PCM_24"),
                               ("r.ogg", "OGG", "VORBIS")):
        proc = run_cli("render", mp3, "--segments", segments, "-o", tmp_path / name, "--no-exports")
        assert proc.returncode == 0, proc.stderr
        got = sf.info(tmp_path / name)
        assert (got.format, got.subtype) == (fmt, subtype)
        assert got.duration == pytest.approx(10.0, abs=0.1)


# --- prepare: one bad pair does not stop the others ----------------------------------------

def test_prepare_names_bad_pairs_and_prepares_the_good_one(tmp_path):
    y = jam(80, SR, seed=5)
    data, cache = tmp_path / "training_data", tmp_path / "cache"
    inp, out = data / "input", data / "desired_output"
    inp.mkdir(parents=True)
    out.mkdir()
    edit = splice(y, SR, TRUTH)
    for name in ("folder", "dangling", "short", "silent", "zgood"):
        write(out / f"{name}_edit.wav", edit, SR)
    write(inp / "zgood_raw.wav", y, SR)
    (inp / "folder_raw.wav").mkdir()
    (inp / "dangling_raw.wav").symlink_to(tmp_path / "moved_away.wav")
    write(inp / "short_raw.wav", y[: SR // 2], SR)
    write(inp / "silent_raw.wav", np.zeros((20 * SR, 1), np.float32), SR)
    proc = run_cli("prepare", "--data-dir", data, "--cache-dir", cache)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "zgood: 100.0% aligned" in proc.stdout
    assert (data / "pointer_sequences" / "zgood_pointers.npy").is_file()
    err = proc.stderr
    assert "prepared 1 of 1 pairs" in err and "4 failed" in err
    for name, says in (("folder", "is a directory"), ("dangling", "moved_away.wav, which does not exist"),
                       ("short", "0.50 s of audio, too short to align"),
                       ("silent", "silent (peak below -90 dBFS")):
        assert any(f"{name}: " in line and f"{name}_raw.wav" in line and says in line
                   for line in err.splitlines()), (name, err)

    # A pointer file cut short is aligned again, not called up to date.
    pointers = data / "pointer_sequences" / "zgood_pointers.npy"
    whole = pointers.read_bytes()
    pointers.write_bytes(whole[: len(whole) // 2])
    again = run_cli("prepare", "zgood", "--data-dir", data, "--cache-dir", cache)
    assert again.returncode == 0 and "(up to date)" not in again.stdout, again.stderr
    assert "zgood_pointers.npy: cut short or damaged" in again.stderr
    assert pointers.read_bytes() == whole


def test_a_cut_short_pointer_file_is_one_line_for_training_and_evaluate(tmp_path):
    from editorbot.dataset import read_pointer_files
    folder = tmp_path / "pointer_sequences"
    folder.mkdir()
    np.save(folder / "a_pointers.npy", np.arange(1000, dtype=np.int64))
    whole = (folder / "a_pointers.npy").read_bytes()
    (folder / "a_pointers.npy").write_bytes(whole[:3000])
    with pytest.raises(UserError, match=r"a_pointers.npy: cut short or damaged.*editorbot prepare"):
        read_pointer_files(folder, "a")
    (folder / "a_pointers.npy").write_bytes(whole)
    atomic_write_text(folder / "a_info.json", json.dumps({"edit_frames": 999, "raw_frames": 5000}))
    with pytest.raises(UserError, match="1000 pointers, but a_info.json records 999 edit frames"):
        read_pointer_files(folder, "a")
    np.save(folder / "a_pointers.npy", np.arange(1000, dtype=np.float32))
    with pytest.raises(UserError, match="integer array"):
        read_pointer_files(folder, "a")


def test_edit_of_silence_names_the_file(tmp_path):
    """An hour-long export of silence (here 30 s: the check is the same) is one line naming
    the file, not "shorter than one bar"."""
    raw = write(tmp_path / "quiet_raw.wav", np.zeros((30 * SR, 1), np.float32), SR)
    line = assert_refused(run_cli("edit", raw, "-o", tmp_path / "out.wav"), raw)
    assert "silent" in line and not (tmp_path / "out.wav").exists()


# --- work is never overwritten silently ----------------------------------------------------

def test_edit_onto_an_existing_file_needs_overwrite(raw_wav, tmp_path):
    out = tmp_path / "mine.wav"
    out.write_bytes(b"the user's own mix")
    proc = run_cli("edit", raw_wav, "-o", out, "--keep", "0.5", "--no-review")
    assert "--overwrite" in assert_refused(proc, out)
    assert out.read_bytes() == b"the user's own mix"
    assert "is the input recording" in assert_refused(
        run_cli("edit", raw_wav, "-o", raw_wav, "--overwrite"), raw_wav)
    proc = run_cli("edit", raw_wav, "-o", out, "--keep", "0.5", "--no-review", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert sf.info(out).duration == pytest.approx(20.0, rel=0.1)


def test_render_never_replaces_the_segment_list_it_reads(raw_wav, tmp_path):
    segments = tmp_path / "X_segments.json"
    Edit([Segment(2.0, 5.0)]).save(segments)
    before = segments.read_bytes()
    for extra in ([], ["--overwrite"]):
        proc = run_cli("render", raw_wav, "--segments", segments, "-o", tmp_path / "X.wav", *extra)
        assert "is the segment list" in assert_refused(proc, segments)
    assert segments.read_bytes() == before and not (tmp_path / "X.wav").exists()
    proc = run_cli("render", raw_wav, "--segments", segments, "-o", tmp_path / "Y.wav")
    assert proc.returncode == 0 and (tmp_path / "Y_segments.json").is_file(), proc.stderr


def test_evaluate_json_never_replaces_a_file_silently_nor_a_recording(raw_wav, tmp_path):
    data = tmp_path / "training_data"
    (data / "input").mkdir(parents=True)
    (data / "desired_output").mkdir()
    raw = data / "input" / "a_raw.wav"
    raw.write_bytes(raw_wav.read_bytes())
    write(data / "desired_output" / "a_edit.wav", sf.read(raw_wav, dtype="float32")[0][:10 * SR], SR)
    report = tmp_path / "report.json"
    report.write_text("{\"earlier\": 1}")
    assert "--overwrite" in assert_refused(run_cli("evaluate", "--data-dir", data, "--json", report), report)
    assert report.read_text() == "{\"earlier\": 1}"
    before = raw.read_bytes()
    proc = run_cli("evaluate", "--data-dir", data, "--json", raw, "--overwrite")
    assert "the raw recording of a" in assert_refused(proc, raw)
    assert raw.read_bytes() == before


@pytest.mark.parametrize("paradigm", ["pointer", "supervised", "rl"])
def test_a_new_run_never_replaces_another_runs_checkpoints(paradigm, tmp_path):
    save = tmp_path / "models"
    save.mkdir()
    (save / "best.pt").write_bytes(b"IoU 0.445, epoch 5")
    proc = run_cli("train", paradigm, "--save-dir", save, "--data-dir" if paradigm != "pointer" else
                   "--cache-dir", tmp_path / "nothing")
    line = assert_refused(proc, save)
    assert "best.pt" in line and "--overwrite" in line
    assert "--resume" in line  # every trainer's spelling
    assert (save / "best.pt").read_bytes() == b"IoU 0.445, epoch 5"


def test_leftovers_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    dead = tmp_path / ".a.npz.999999999.abcd1234.part"  # no such process
    old = tmp_path / ".b.npz.xyz_1234.part"              # from before pids were written
    live = tmp_path / f".c.npz.{os.getpid()}.abcd1234.part"
    for part in (dead, old, live):
        part.write_bytes(b"")
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    atomic_write_text(tmp_path / "new.txt", "x")
    assert not dead.exists() and not old.exists() and live.exists()
    assert (tmp_path / "new.txt").read_text() == "x"
    assert remove_leftover_parts(tmp_path) == []  # each folder swept once per process


# --- settings ------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, says", [
    ("train.lr=-0.1", "train.lr = -0.1: must be > 0"),
    ("train.batch_size=0", "train.batch_size = 0: must be >= 1"),
    ("model.dropout=1.5", "model.dropout = 1.5: must be in [0, 1)"),
    ("model.d_model=-48", "model.d_model = -48: must be >= 1"),
    ("model.d_model=50", "model.d_model = 50: must be a multiple of n_heads (4)"),
    ("train.epochs=-1", "train.epochs = -1: must be >= 1"),
])
def test_bad_settings_are_one_line_with_key_value_and_range(setting, says, tmp_path):
    proc = run_cli("train", "pointer", "--save-dir", tmp_path / "m", "--set", setting)
    assert says in assert_refused(proc)
    assert not (tmp_path / "m").exists()


def test_bad_command_line_numbers_are_one_line(tmp_path):
    assert "--minutes -1.0: must be a positive length" in assert_refused(
        run_cli("synth", "--out", tmp_path / "s", "--minutes", "-1"))
    # --epochs is the fine-tuning's (the default starts from the base), or a new model's
    assert "train.finetune.epochs = -1: must be >= 1" in assert_refused(
        run_cli("train", "pointer", "--save-dir", tmp_path / "m", "--epochs", "-1"))
    assert "train.epochs = -1: must be >= 1" in assert_refused(
        run_cli("train", "pointer", "--save-dir", tmp_path / "m", "--epochs", "-1", "--init", "scratch"))
    assert "train.epochs = -1: must be >= 1" in assert_refused(
        run_cli("train", "supervised", "--save-dir", tmp_path / "m", "--epochs", "-1",
                "--data-dir", tmp_path / "nothing"))
