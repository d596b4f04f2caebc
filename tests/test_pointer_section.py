"""The section GRU: what it adds depends on the order of far-apart material, padding never
reaches it, and it can be pretrained alone on the keep label."""
import copy
import math
import time

import numpy as np
import pytest
import torch

from editorbot.features import FeatureParams
from editorbot.pointer.config import ModelConfig, TrainConfig
from editorbot.pointer.data import StepRecording
from editorbot.pointer.model import PointerNet, recording_block_means
from editorbot.pointer.train import pretrain_section_keep

BLOCK = 8     # frames per section block in these tests
N_BLOCKS = 48
N_MELS = 8


def _recording(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocks of three tones: one 4-block stretch of A somewhere in the middle, the rest B or
    C at random. A B block is to be kept when A came before it (a chorus after the solo),
    dropped when A is still to come. Returns the mel (N_MELS, T), the keep label of each
    frame and a mask of the B frames."""
    kinds = rng.integers(1, 3, N_BLOCKS)           # 1 = B, 2 = C
    a0 = int(rng.integers(10, N_BLOCKS - 14))
    kinds[a0:a0 + 4] = 0                            # A
    mel = np.full((N_MELS, N_BLOCKS * BLOCK), 0.1, np.float32)
    for b, k in enumerate(kinds):
        mel[2 * k:2 * k + 2, b * BLOCK:(b + 1) * BLOCK] = 0.9
    after = np.arange(N_BLOCKS) >= a0 + 4
    keep = np.repeat((kinds == 1) & after, BLOCK).astype(np.float32)
    is_b = np.repeat(kinds == 1, BLOCK)
    return torch.from_numpy(mel), torch.from_numpy(keep), torch.from_numpy(is_b)


def _keep_accuracy_on_b(section_context: int, steps: int = 120) -> float:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = ModelConfig(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=1, conv_kernel=3, stride=1,
                      n_global=4, max_delta=4, n_jump_buckets=4, decoder_layers=1, dropout=0.0,
                      section_context=section_context, section_block=BLOCK)
    model = PointerNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    lengths = torch.full((4,), N_BLOCKS * BLOCK)
    for _ in range(steps):
        mel, keep, _ = map(torch.stack, zip(*[_recording(rng) for _ in range(4)]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model.encode(mel, lengths).keep, keep)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    mel, keep, is_b = map(torch.stack, zip(*[_recording(np.random.default_rng(99 + i)) for i in range(16)]))
    with torch.no_grad():
        pred = model.encode(mel, torch.full((16,), N_BLOCKS * BLOCK)).keep > 0
    return float((pred == (keep > 0.5))[is_b].float().mean())


def test_section_gru_learns_what_came_before_and_the_encoder_alone_does_not():
    # Without order beyond its convolutions, the encoder can tell a B from a C but not
    # whether the A stretch lies before or after it: about the share of the majority answer.
    without = _keep_accuracy_on_b(0)
    with_gru = _keep_accuracy_on_b(16)
    assert with_gru > 0.95, with_gru
    assert without < 0.8, without


def test_block_means_average_each_recordings_own_frames():
    x = torch.arange(20.0).view(1, 1, 20).repeat(2, 1, 1)
    lengths = torch.tensor([20, 10])
    means = recording_block_means(x, lengths, 8)
    assert means.shape == (2, 3, 1)
    # 0..7, 8..15, 16..19; the second recording ends at 10: 0..7, 8..9 (its padding is not
    # averaged in, whatever it holds), nothing.
    torch.testing.assert_close(means[:, :, 0], torch.tensor([[3.5, 11.5, 17.5], [3.5, 8.5, 0.0]]))


def test_section_context_ignores_padding():
    torch.manual_seed(0)
    cfg = ModelConfig(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=1, n_global=4, max_delta=4,
                      n_jump_buckets=4, section_context=8, section_block=BLOCK)
    model = PointerNet(cfg).eval()
    mel = torch.rand(2, N_MELS, 300)
    lengths = torch.tensor([203, 300])               # 203: a last block of 3 frames
    with torch.no_grad():
        inputs, _ = model.input_channels(mel, lengths)
        batch = model.section_blocks(recording_block_means(inputs, lengths, BLOCK), -(-lengths // BLOCK))
        inputs, _ = model.input_channels(mel[:1, :, :203], lengths[:1])
        alone = model.section_blocks(recording_block_means(inputs, lengths[:1], BLOCK), -(-lengths[:1] // BLOCK))
    n = alone.shape[1]
    assert n == 26
    torch.testing.assert_close(batch[0, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert batch[0, n:].abs().max() == 0
    assert alone.abs().max() > 0.01


class _Blocks:
    """What pretrain_section_keep reads of a PointerData: mels and recordings."""

    def __init__(self, recordings):
        self.mels = {f"r{i}": mel.numpy() for i, (mel, _, _) in enumerate(recordings)}
        self.recordings = {f"r{i}": StepRecording(f"r{i}", len(keep), np.flatnonzero(keep.numpy()), None)
                           for i, (_, keep, _) in enumerate(recordings)}

    def mel(self, name):
        return self.mels[name]


def _pretrained(steps: int, deadline: float = math.inf) -> tuple[PointerNet, int, PointerNet]:
    torch.manual_seed(0)
    cfg = ModelConfig(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=1, n_global=4, max_delta=4,
                      n_jump_buckets=4, section_context=16, section_block=BLOCK)
    model = PointerNet(cfg)
    before = copy.deepcopy(model)
    rng = np.random.default_rng(0)
    data = _Blocks([_recording(rng) for _ in range(32)])
    tc = TrainConfig(lr=1e-2, keep_pretrain_steps=steps, keep_pretrain_batch=8, structure_keep_steps=0)
    taken = pretrain_section_keep(model, data, list(data.mels), tc, torch.device("cpu"),
                                  deadline=deadline, progress=False)
    return model, taken, before


def test_pretraining_teaches_the_section_gru_alone_what_came_before():
    model, taken, before = _pretrained(150)
    assert taken == 150
    model.eval()
    mel, keep, is_b = map(torch.stack, zip(*[_recording(np.random.default_rng(99 + i)) for i in range(16)]))
    lengths = torch.full((16,), N_BLOCKS * BLOCK)
    with torch.no_grad():
        inputs, _ = model.input_channels(mel, lengths)
        out = model.section_blocks(recording_block_means(inputs, lengths, BLOCK), lengths // BLOCK)
        pred = (model.section_keep(out)[..., 0] > 0).repeat_interleave(BLOCK, dim=1)
    accuracy = float((pred == (keep > 0.5))[is_b].float().mean())
    assert accuracy > 0.95, accuracy
    # Only the section branch moved; the rest of the model is as initialised.
    section = ("section_in.", "section_gru.", "section_keep.")
    for (name, p), q in zip(model.named_parameters(), before.parameters()):
        assert torch.equal(p, q) != name.startswith(section), name


def test_pretraining_stops_at_the_deadline():
    _, taken, _ = _pretrained(150, deadline=0.0)
    assert taken == 1


def test_training_pretrains_the_section_gru_first_and_refuses_without_one(tmp_path):
    from editorbot.errors import UserError
    from editorbot.pointer.train import train

    from .test_pointer import tiny_config, tiny_run, write_toy_corpus

    corpus = write_toy_corpus(tmp_path / "corpus", 3)
    with pytest.raises(UserError, match="section_context"):
        train(tiny_config("model.section_context=0", "train.keep_pretrain_steps=5"), tiny_run(corpus, tmp_path / "no"))
    cfg = tiny_config("model.section_context=8", "train.epochs=1",
                      "train.keep_pretrain_steps=5", "train.keep_pretrain_batch=2")
    result = train(cfg, tiny_run(corpus, tmp_path / "run"))
    assert result.steps == 1
    assert (tmp_path / "run" / "best.pt").is_file()


def test_a_time_limit_holds_for_the_whole_run_and_leaves_a_best_checkpoint(tmp_path):
    """Keep pretraining long enough to outlast any budget, a 6-second budget and
    validation that decodes only every 1000th time (so no score chooses a best.pt before the
    deadline): the pretraining stops at its share, the model still trains, and the run
    leaves best.pt and latest.pt and says so (a 25-minute run once spent it all pretraining and wrote
    only latest.pt while its log named both)."""
    from editorbot.pointer.train import train

    from .test_pointer import tiny_config, tiny_run, write_toy_corpus

    corpus = write_toy_corpus(tmp_path / "corpus", 4)
    result = train(tiny_config("model.section_context=4", "train.keep_pretrain_steps=1000000",
                               "train.epochs=100000", "train.select_by=val_iou",
                               "train.val_decode_every=1000"),
                   tiny_run(corpus, tmp_path / "run", max_minutes=0.1))
    assert result.steps > 0 and not result.interrupted and result.out_of_time
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "latest.pt").is_file()
    assert result.wrote == ("best.pt", "latest.pt")


def test_the_margin_for_the_last_validation_is_a_decoding_validations_length(tmp_path, monkeypatch):
    """Validations that decode every second time, a decoding one 3 s longer than the other
    kind, and epochs far shorter than either: the final (decoding) validation ends by the
    deadline. Timing the margin by the last validation of either kind, or starting a
    validation that leaves no time for the final one, overran by about a decode's length."""
    import editorbot.pointer.train as pointer_train

    from .test_pointer import tiny_config, tiny_run, write_toy_corpus

    real_validate = pointer_train.validate
    calls: list[tuple[bool, float, float]] = []  # (decoded, ended at, deadline)

    def slow_decoding(*args, decode: bool, until: float, **kw):
        metrics = real_validate(*args, decode=decode, until=until, **kw)
        if decode:
            time.sleep(3.0)
        calls.append((decode, time.time(), until))
        return metrics

    monkeypatch.setattr(pointer_train, "validate", slow_decoding)
    corpus = write_toy_corpus(tmp_path / "corpus", 4)
    result = pointer_train.train(
        tiny_config("train.epochs=100000", "train.val_every=1", "train.val_decode_every=2"),
        tiny_run(corpus, tmp_path / "run", max_minutes=0.25))
    assert result.out_of_time
    assert [d for d, _, _ in calls[:2]] == [False, True] and len(calls) >= 4
    decoded, ended, deadline = calls[-1]
    assert decoded and ended <= deadline + 0.5


def test_training_stops_when_the_next_step_would_end_past_the_deadline(tmp_path):
    """Steps of 5 s and a 15 s run whose validation takes a moment: the run stops after a step
    when another would end past the deadline (less the validation's margin), and the whole
    run ends by the deadline. Checking only the clock after each step let the last step
    start 3 s before the margin and the run end 2 s late (20-minute raws on a CPU: minutes)."""
    from editorbot.pointer.train import train

    from .test_pointer import tiny_config, tiny_run, write_toy_corpus

    corpus = write_toy_corpus(tmp_path / "corpus", 4)
    started = time.time()
    result = train(tiny_config("train.epochs=100000"), tiny_run(corpus, tmp_path / "run", max_minutes=0.25),
                   on_step=lambda step, parts: time.sleep(5.0))
    assert result.out_of_time and result.steps >= 1
    assert time.time() - started <= 15.0


def test_validation_starts_no_recording_that_would_end_past_the_deadline(tmp_path, monkeypatch):
    """The first recording takes 0.6 s to score and the others in proportion to the steps of
    their edits, and 0.7 s are left: the first is scored (one always is), the second (a third
    of the first's steps) is not started, as at the first's pace it would end at about 0.8 s
    (before, it was started because the clock had not yet passed the deadline)."""
    import editorbot.pointer.train as pointer_train
    from editorbot.pointer.data import PointerData
    from editorbot.pointer.model import PointerNet

    from .test_pointer import tiny_config, write_toy_corpus

    corpus = write_toy_corpus(tmp_path / "corpus", 3)
    cfg = tiny_config()
    data = PointerData(corpus.cache_dir, corpus.pointer_dir)
    net = PointerNet(cfg.model).eval()
    make_batch = pointer_train.make_batch
    first = data.recordings[sorted(data.names)[0]].steps.n_path

    def slow(data, items, **kw):  # 0.6 s for the first recording, in proportion for the others
        time.sleep(0.6 * len(items[0][1]) / first)
        return make_batch(data, items, **kw)

    monkeypatch.setattr(pointer_train, "make_batch", slow)
    metrics = pointer_train.validate(net, data, sorted(data.names), cfg, torch.device("cpu"), keep_ratio=0.5,
                                     decode=False, until=time.time() + 0.7)
    assert metrics["val/scored"] == 1
    everything = pointer_train.validate(net, data, sorted(data.names), cfg, torch.device("cpu"), keep_ratio=0.5,
                                        decode=False, until=time.time() + 60)
    assert everything["val/scored"] == 3


def _last_take_recording(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sections of three parts in random order, each part a new random sound in every
    recording, so that no sound can be learnt: the editor keeps the last take of each part
    and drops the takes before it. Returns the mel, the keep label of each frame and a
    mask of all frames."""
    from .test_pointer_structure import _again, _part

    parts = [_part(rng, 6) for _ in range(3)]
    order = rng.integers(0, 3, 8)
    mel = np.concatenate([_again(parts[p], rng) for p in order], axis=1).astype(np.float32)
    last = [int(p) not in order[i + 1:] for i, p in enumerate(order)]
    keep = np.repeat(np.array(last, np.float32), mel.shape[1] // len(order))
    return torch.from_numpy(mel), torch.from_numpy(keep), torch.ones(len(keep), dtype=torch.bool)


def test_the_structure_keep_gru_learns_the_last_take_from_where_each_moment_sits():
    """Pretrained alone (train.structure_keep_steps), it follows an editor who keeps each
    part's last take on recordings it never saw, and nothing else in the model moves."""
    from .test_pointer_structure import BLOCK as SBLOCK, GAP, N_MELS as SMELS, SMOOTH

    torch.manual_seed(0)
    cfg = ModelConfig(n_mels=SMELS, d_model=16, n_heads=2, n_layers=1, n_global=4, max_delta=4,
                      n_jump_buckets=4, section_context=8, section_block=SBLOCK, repeat_context=False,
                      repeat_block=SBLOCK, repeat_min_lag=2 * SBLOCK, repeat_max_lag=48 * SBLOCK,
                      repeat_smooth=SMOOTH, structure_gap=GAP, structure_keep=16)
    model = PointerNet(cfg)
    before = copy.deepcopy(model)
    rng = np.random.default_rng(0)
    data = _Blocks([_last_take_recording(rng) for _ in range(16)])
    tc = TrainConfig(keep_pretrain_steps=0, structure_keep_steps=300, structure_keep_lr=1e-2,
                     keep_pretrain_batch=8)
    assert pretrain_section_keep(model, data, list(data.mels), tc, torch.device("cpu"), progress=False) == 300
    model.eval()
    mel, keep, _ = map(torch.stack, zip(*[_last_take_recording(np.random.default_rng(99 + i)) for i in range(8)]))
    lengths = torch.full((8,), mel.shape[2])
    with torch.no_grad():
        enc = model.encode(mel, lengths)
        model.keep_source = "model+structure"
        chosen = model.encode(mel, lengths)
    accuracy = float(((enc.keep_structure > 0) == (keep > 0.5)).float().mean())
    assert accuracy > 0.9, accuracy
    torch.testing.assert_close(chosen.keep, enc.keep + enc.keep_structure)  # the logit that plans
    moved = ("structure_keep_in.", "structure_keep_gru.", "structure_keep_out.")
    for (name, p), q in zip(model.named_parameters(), before.parameters()):
        assert torch.equal(p, q) != name.startswith(moved), name


def test_a_checkpoint_from_before_the_structure_keep_gru_loads_with_the_models_own_keep(tmp_path):
    from editorbot.pointer.infer import load_model

    cfg = ModelConfig(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=1, n_global=4, max_delta=4,
                      n_jump_buckets=4, section_context=8, section_block=BLOCK)
    old = {k: v for k, v in PointerNet(cfg).state_dict().items() if not k.startswith("structure_keep_")}
    checkpoint = {"kind": "pointer", "config": {"model": {"n_mels": N_MELS, "d_model": 16, "n_heads": 2,
                  "n_layers": 1, "n_global": 4, "max_delta": 4, "n_jump_buckets": 4, "section_context": 8,
                  "section_block": BLOCK}}, "feature_params": FeatureParams().as_dict(), "model_state": old}
    model, _, _ = load_model(checkpoint)
    assert model.keep_source == "model" and model.structure_keep_gru is not None
    assert not model.structure_keep_out.weight.any()  # fresh: says nothing until trained
    model, _, _ = load_model({**checkpoint, "keep_source": "model+structure"})
    assert model.keep_source == "model+structure"
    from editorbot.errors import UserError
    with pytest.raises(UserError, match="keep_source 'mel'"):
        load_model({**checkpoint, "keep_source": "mel"})
