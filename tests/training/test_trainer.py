"""The Trainer against hand-written reference steps, on a synthetic data source (the protocol)."""

import json
import math

import pytest
import torch

import attnkit
from attnkit import GPT, GPTConfig
from attnkit.errors import CheckpointError, ConfigError, TrainingError
from attnkit.training import TrainConfig, Trainer
from attnkit.training.checkpoint import complete_checkpoints, verify_checkpoint
from attnkit.training.optim import decay_groups
from attnkit.training.schedules import make_schedule


class FixedBatches:
    """Yields the given batches in order (cycling); validation is the first batch."""

    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def next_batch(self, generator, rank=0, world_size=1):
        batch = self.batches[self.i % len(self.batches)]
        self.i += 1
        return batch

    def eval_batches(self, rank=0, world_size=1):
        yield self.batches[0]


def lm_batch(ids):
    return {"input_ids": ids, "labels": ids}


def tiny_model(seed=0, **fields):
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset("gpt-tiny", vocab_size=64, **fields))


def config(**fields):
    base = dict(max_steps=2, lr=1e-2, warmup_steps=1, eval_every=0, save_every=0, progress=False, device="cpu")
    return TrainConfig(**{**base, **fields})


def batches(n=4, b=8, t=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [lm_batch(torch.randint(0, 64, (b, t), generator=g)) for _ in range(n)]


def metrics(out):
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


def test_step_matches_a_hand_written_clipped_adamw_step(tmp_path):
    data = batches(1)
    model, ref = tiny_model(), tiny_model()
    cfg = config(max_steps=1, grad_clip=0.05, weight_decay=0.1, warmup_steps=4)
    record = Trainer(model, FixedBatches(data), cfg, tmp_path).train()[0]

    loss = ref(**data[0]).loss
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.05)
    lr = 1e-2 * make_schedule("cosine", warmup_steps=4, max_steps=1)(0)
    opt = torch.optim.AdamW(decay_groups(ref, 0.1), lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    opt.step()
    assert record["loss"] == pytest.approx(loss.item(), rel=1e-6)
    assert record["grad_norm"] == pytest.approx(norm.item(), rel=1e-5) and norm > 0.05  # clipping was active
    assert record["lr"] == pytest.approx(lr)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def train_recording_grads(data, cfg, out):
    """Train a fresh tiny model; return (history, gradients seen by each optimizer step)."""
    trainer = Trainer(tiny_model(), FixedBatches(data), cfg, out)
    grads = []
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: grads.append([p.grad.clone() for g in opt.param_groups for p in g["params"]]))
    return trainer.train(), grads, trainer


def assert_same_training(run_a, run_b):
    (hist_a, grads_a, _), (hist_b, grads_b, _) = run_a, run_b
    assert [r["loss"] for r in hist_b] == pytest.approx([r["loss"] for r in hist_a], rel=1e-6)
    assert len(grads_a) == len(grads_b) == len(hist_a)
    for step_a, step_b in zip(grads_a, grads_b):
        for ga, gb in zip(step_a, step_b):
            # Grads are ~1e-3. Adam's first update is about ±lr wherever |grad| >> eps, so entries
            # with grads near eps turn rounding differences into ~1e-6 at the next step; a scaling
            # or zeroing error would differ by ~1e-3.
            torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-5)


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    big = batches(2, b=8)
    halves = [lm_batch(b["input_ids"][i : i + 4]) for b in big for i in (0, 4)]
    assert_same_training(train_recording_grads(big, config(grad_clip=0.0), tmp_path / "a"),
                         train_recording_grads(halves, config(grad_clip=0.0, grad_accum_steps=2), tmp_path / "b"))


def test_activation_checkpointing_trains_identically(tmp_path):
    data = batches(2)
    plain = train_recording_grads(data, config(), tmp_path / "a")
    recomputed = train_recording_grads(data, config(gradient_checkpointing=True), tmp_path / "b")
    assert recomputed[2].model.decoder.gradient_checkpointing and not plain[2].model.decoder.gradient_checkpointing
    assert_same_training(plain, recomputed)


def test_bf16_autocast_on_cpu_runs_matmuls_in_bf16_and_keeps_fp32_weights(tmp_path):
    data = batches(1)
    seen = []
    model = tiny_model()
    ffn_out = model.decoder.layers[-1].ffn.fc_out
    ffn_out.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    hist = Trainer(model, FixedBatches(data), config(max_steps=1, precision="bf16"), tmp_path).train()
    assert seen == [torch.bfloat16] and ffn_out.weight.dtype == torch.float32
    assert hist[0]["loss"] == pytest.approx(tiny_model()(**data[0]).loss.item(), rel=2e-2)


def test_fp16_without_cuda_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="fp16"):
        Trainer(tiny_model(), FixedBatches(batches(1)), config(precision="fp16"), tmp_path)


def test_metrics_jsonl_has_train_and_eval_lines_and_the_schedule(tmp_path):
    cfg = config(max_steps=4, eval_every=2, warmup_steps=2)
    Trainer(tiny_model(), FixedBatches(batches()), cfg, tmp_path).train()
    lines = metrics(tmp_path)
    train = [r for r in lines if "loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(r["tokens_per_s"] > 0 for r in train)
    sched = make_schedule("cosine", warmup_steps=2, max_steps=4, min_lr_ratio=cfg.min_lr_ratio)
    assert [r["lr"] for r in train] == pytest.approx([1e-2 * sched(i) for i in range(4)])
    assert [(r["step"], "eval_loss" in r) for r in lines if "loss" not in r] == [(2, True), (4, True)]


def test_checkpoint_weights_load_alone_and_equal_the_trained_model(tmp_path):
    model = tiny_model()
    Trainer(model, FixedBatches(batches()), config(max_steps=2), tmp_path).train()
    (step, path), = complete_checkpoints(tmp_path)
    loaded = attnkit.from_pretrained(path)
    assert step == 2 and loaded.config == model.config
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    model = tiny_model()
    calls = []

    def poison(module, inputs, output):  # the 3rd training forward produces NaN
        calls.append(1)
        return output * float("nan") if len(calls) == 3 else output

    model.wte.register_forward_hook(poison)
    trainer = Trainer(model, FixedBatches(batches()), config(max_steps=5, save_every=2), tmp_path)
    good = tmp_path / "checkpoints" / "step-2"
    with pytest.raises(TrainingError, match=r"step 3.*step-2"):
        trainer.train()
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [2]
    verify_checkpoint(good)
    assert max(r["step"] for r in metrics(tmp_path)) == 2


def test_new_run_refuses_an_output_dir_holding_a_run(tmp_path):
    Trainer(tiny_model(), FixedBatches(batches()), config(max_steps=1), tmp_path).train()
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match="already holds a training run"):
        Trainer(tiny_model(), FixedBatches(batches()), config(max_steps=1), tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == before


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        Trainer(tiny_model(), FixedBatches(batches()), config(), tmp_path, resume=True)


def test_resume_with_longer_max_steps_follows_the_new_schedule(tmp_path):
    data = FixedBatches(batches())
    Trainer(tiny_model(), data, config(max_steps=2, warmup_steps=1), tmp_path).train()
    more = Trainer(tiny_model(seed=5), data, config(max_steps=6, warmup_steps=1, lr=2e-2), tmp_path, resume=True)
    assert more.step == 2
    hist = more.train()
    schedule = make_schedule("cosine", warmup_steps=1, max_steps=6)
    assert [r["lr"] for r in hist] == pytest.approx([2e-2 * schedule(i) for i in range(2, 6)])
    assert [r["step"] for r in metrics(tmp_path)] == [1, 2, 3, 4, 5, 6]


def test_resume_drops_metric_lines_after_the_checkpoint_and_a_torn_last_line(tmp_path):
    data = FixedBatches(batches())
    Trainer(tiny_model(), data, config(max_steps=2), tmp_path).train()
    with open(tmp_path / "metrics.jsonl", "a") as f:  # a crash after step 2's checkpoint, mid-write
        f.write('{"step": 3, "loss": 1.0}\n{"step": 4, "lo')
    Trainer(tiny_model(), data, config(max_steps=2), tmp_path, resume=True)
    assert [r["step"] for r in metrics(tmp_path)] == [1, 2]


def test_max_minutes_stops_early_with_a_checkpoint(tmp_path):
    hist = Trainer(tiny_model(), FixedBatches(batches()), config(max_steps=50, max_minutes=1e-9), tmp_path).train()
    assert [r["step"] for r in hist] == [1]
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [1]


def test_progress_bar_shows_loss_lr_and_tokens_per_second(tmp_path, capsys):
    hist = Trainer(tiny_model(), FixedBatches(batches()), config(max_steps=2, progress=True), tmp_path).train()
    err = capsys.readouterr().err
    assert "2/2" in err and f"loss={hist[-1]['loss']:.4f}" in err and "lr=" in err and "tok_s=" in err


def test_tensorboard_events_hold_the_logged_losses(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(tiny_model(), FixedBatches(batches()), config(max_steps=3), tmp_path).train()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = [(r["step"], r["loss"]) for r in metrics(tmp_path)]
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("loss")] == logged


@pytest.mark.slow
def test_torch_compile_trains_like_eager(tmp_path):
    data = batches(2)
    a, b = tiny_model(), tiny_model()
    hist_a = Trainer(a, FixedBatches(data), config(), tmp_path / "a").train()
    hist_b = Trainer(b, FixedBatches(data), config(compile=True), tmp_path / "b").train()
    assert [r["loss"] for r in hist_b] == pytest.approx([r["loss"] for r in hist_a], rel=1e-4)


def test_a_subclass_of_an_attnkit_model_trains_saves_and_resumes(tmp_path):
    class MyGPT(GPT):
        pass

    torch.manual_seed(0)
    model = MyGPT(GPTConfig.from_preset("gpt-tiny", vocab_size=64))
    data = FixedBatches(batches())
    Trainer(model, data, config(max_steps=2), tmp_path).train()
    (_, path), = complete_checkpoints(tmp_path)
    loaded = attnkit.from_pretrained(path)  # loads as its attnkit base class
    assert type(loaded) is GPT
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name
    torch.manual_seed(5)
    resumed = Trainer(MyGPT(GPTConfig.from_preset("gpt-tiny", vocab_size=64)), data, config(max_steps=3), tmp_path,
                      resume=True)
    assert resumed.step == 2 and type(resumed.model) is MyGPT
    assert all(torch.equal(p, q) for p, q in zip(resumed.model.state_dict().values(), model.state_dict().values()))


def test_a_model_attnkit_cannot_checkpoint_is_refused_before_training(tmp_path):
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(4, 4)

    with pytest.raises(CheckpointError, match="no checkpoint mapping is registered for Plain"):
        Trainer(Plain(), FixedBatches(batches()), config(), tmp_path)
    assert not any(tmp_path.iterdir())


def test_losses_are_means_over_targets_the_model_counts(tmp_path):
    """GPT's first label is never a target; a micro-batch without targets adds nothing."""
    model = tiny_model()
    x = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    few = x.clone()
    few[:, 3:] = -100  # 2 targets per row: positions 1 and 2 (position 0 predicts nothing)
    none = torch.full_like(x, -100)
    data = [{"input_ids": x, "labels": few}, {"input_ids": x, "labels": x}, {"input_ids": x, "labels": none}]
    assert [model.count_targets(b) for b in data] == [4, 14, 0]
    with torch.no_grad():
        l_few, l_all = model(**data[0]).loss.item(), model(**data[1]).loss.item()
    expected = (4 * l_few + 14 * l_all) / 18
    trainer = Trainer(model, FixedBatches(data), config(max_steps=1, grad_accum_steps=3, lr=1e-12), tmp_path)
    assert trainer.evaluate() == pytest.approx(l_few, rel=1e-6)  # eval_batches yields the first batch only
    trainer.data = type("All", (), {"eval_batches": lambda self, rank=0, world_size=1: iter(data)})()
    assert trainer.evaluate() == pytest.approx(expected, rel=1e-6)
    trainer.data = FixedBatches(data)
    assert trainer.train_step()["loss"] == pytest.approx(expected, rel=1e-6)


def test_a_step_without_any_target_is_a_training_error(tmp_path):
    x = torch.zeros(2, 8, dtype=torch.long)
    trainer = Trainer(tiny_model(), FixedBatches([{"input_ids": x, "labels": torch.full_like(x, -100)}]), config(),
                      tmp_path)
    with pytest.raises(TrainingError, match="step 1 has no targets"):
        trainer.train_step()


def test_compiled_models_and_head_subclasses_are_accepted_and_unsaveable_ones_refused_up_front(tmp_path):
    from attnkit.models.bert import BertConfig, BertForSequenceClassification

    class MyClassifier(BertForSequenceClassification):
        pass

    model = MyClassifier(BertConfig.from_preset("bert-tiny", vocab_size=64))
    batch = {"input_ids": torch.randint(0, 64, (4, 8)), "labels": torch.tensor([0, 1, 0, 1])}
    Trainer(model, FixedBatches([batch]), config(max_steps=1), tmp_path / "sub").train()
    assert type(attnkit.from_pretrained(complete_checkpoints(tmp_path / "sub")[-1][1])) is BertForSequenceClassification
    Trainer(torch.compile(tiny_model()), FixedBatches(batches()), config(), tmp_path / "compiled")

    class Extra(GPT):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.extra = torch.nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match="no Hugging Face name is known for attnkit parameter 'extra.weight'"):
        Trainer(Extra(GPTConfig.from_preset("gpt-tiny", vocab_size=64)), FixedBatches(batches()), config(),
                tmp_path / "extra")


def test_resuming_with_different_train_settings_says_which(tmp_path):
    data = FixedBatches(batches())
    recipe = {"train": {"schedule": "cosine", "max_steps": 2}}
    Trainer(tiny_model(), data, config(max_steps=2), tmp_path, run_info={"recipe": recipe}).train()
    changed = {"train": {"schedule": "inverse_sqrt", "max_steps": 4}}
    with pytest.warns(UserWarning, match=r"max_steps 2 -> 4, schedule 'cosine' -> 'inverse_sqrt'"):
        Trainer(tiny_model(), data, config(max_steps=4), tmp_path, resume=True, run_info={"recipe": changed})


def test_an_update_the_fp16_grad_scaler_skips_does_not_advance_the_schedule(tmp_path):
    """fp16 runs on CUDA only, so a CPU GradScaler stands in: a scale of 2^127 overflows the first
    step's gradients, the scaler skips that update and backs off, and the next one is made."""
    cfg = config(max_steps=3, warmup_steps=3, grad_clip=1.0)
    trainer = Trainer(tiny_model(), FixedBatches(batches()), cfg, tmp_path)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127, backoff_factor=2.0**-60)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    first = trainer.train_step()
    assert first["skipped"] and not math.isfinite(first["grad_norm"])  # inf or nan: the gradients overflowed
    trainer.log(first)
    assert metrics(tmp_path)[-1]["grad_norm"] is None  # JSON has no Infinity: null
    assert all(torch.equal(p, q) for p, q in zip(trainer.model.parameters(), before))
    second = trainer.train_step()
    assert "skipped" not in second and second["grad_norm"] > 0
    assert second["lr"] == first["lr"] == pytest.approx(1e-2 * make_schedule("cosine", warmup_steps=3, max_steps=3)(0))
    assert trainer.train_step()["lr"] > second["lr"]  # the schedule moves once an update is made
    assert trainer.step == 3


def test_bert_heads_weight_micro_batches_by_what_their_losses_average():
    """count_targets per head: float labels (regression, multi-label) count every element, even
    one equal to -100.0; question answering counts the answers inside the window."""
    from attnkit.models.bert import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

    cfg = BertConfig.from_preset("bert-tiny", num_labels=1)
    regression = BertForSequenceClassification(cfg)
    assert regression.count_targets({"labels": torch.tensor([0.5, -100.0, 2.0])}) == 3
    assert regression.count_targets({"labels": torch.tensor([1, -100, 2])}) == 3  # regression ignores no label
    classifier = BertForSequenceClassification(BertConfig.from_preset("bert-tiny", num_labels=3))
    assert classifier.count_targets({"labels": torch.tensor([1, -100, 2])}) == 2  # class ids: -100 is ignored
    assert classifier.count_targets({"labels": torch.rand(3, 3)}) == 9  # multi-label: every element
    qa = BertForQuestionAnswering(BertConfig.from_preset("bert-tiny"))
    ids = torch.zeros(4, 10, dtype=torch.long)
    batch = {"input_ids": ids, "start_positions": torch.tensor([0, 9, 10, 25]), "end_positions": torch.tensor([1, 9, 12, 30])}
    assert qa.count_targets(batch) == 2
    with pytest.raises(attnkit.InputError, match="a batch must hold tensors"):
        regression.count_targets({})


def test_a_batch_without_labels_and_an_eval_without_targets_are_reported_plainly(tmp_path):
    data = batches(1)
    trainer = Trainer(tiny_model(), FixedBatches([{"input_ids": data[0]["input_ids"]}]), config(), tmp_path / "a")
    with pytest.raises(TrainingError, match=r"GPT returned no loss for a batch with keys \['input_ids'\]: "
                                            "training batches need their targets"):
        trainer.train_step()

    class NoEvalTargets(FixedBatches):
        def eval_batches(self, rank=0, world_size=1):
            yield {"input_ids": data[0]["input_ids"], "labels": torch.full_like(data[0]["labels"], -100)}

    Trainer(tiny_model(), NoEvalTargets(data), config(max_steps=1, eval_every=1), tmp_path / "b").train()
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {"step": 1, "eval_loss": None}  # strict JSON: no NaN
    assert all("NaN" not in line for line in lines)


def test_weights_that_overflow_after_a_finite_loss_are_never_saved_as_a_good_checkpoint(tmp_path):
    trainer = Trainer(tiny_model(), FixedBatches(batches()), config(max_steps=4, save_every=1), tmp_path)
    trainer.train_step()
    trainer.save_checkpoint()
    trainer.train_step()
    with torch.no_grad():
        next(trainer.model.parameters())[0, 0] = float("inf")  # what an overflowing update leaves
    with pytest.raises(TrainingError, match=r"weights are not finite after step 2.*last good checkpoint is .*step-1"):
        trainer.save_checkpoint()
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [1]


class HeldOutBatches(FixedBatches):
    """Training batches in order; validation on a batch never trained on."""

    def __init__(self, batches, held_out):
        super().__init__(batches)
        self.held_out = held_out

    def eval_batches(self, rank=0, world_size=1):
        yield self.held_out


def counting(step: int, seed: int, b=8, t=16):
    """Rows that count up by ``step`` (mod 64) from a random start."""
    starts = torch.randint(0, 64, (b, 1), generator=torch.Generator().manual_seed(seed))
    return lm_batch((starts + step * torch.arange(t)) % 64)


def best_run(out, resume=False, first_batch=0, **fields):
    """Six steps of counting by 1, then counting by 3; validation counts by 1: the eval loss falls,
    then rises as the model learns the other rule."""
    data = [counting(1, seed=i) for i in range(6)] + [counting(3, seed=10 + i) for i in range(94)]
    held_out = counting(1, seed=99)
    cfg = config(**{**dict(max_steps=10, lr=1e-2, schedule="constant", eval_every=2, save_every=2, keep_last=10,
                           best_metric="eval_loss"),
                    **fields})
    source = HeldOutBatches(data, held_out)
    source.i = first_batch  # a resumed run continues where the data left off
    trainer = Trainer(tiny_model(), source, cfg, out, resume=resume)
    trainer.train()
    return trainer


def test_best_metric_keeps_the_best_evaluations_model(tmp_path):
    from safetensors.torch import load_file

    best_run(tmp_path / "a")
    evals = [r for r in metrics(tmp_path / "a") if "eval_loss" in r]
    lowest = min(evals, key=lambda r: r["eval_loss"])
    assert lowest["step"] not in (2, 10)  # falls, then rises: the best is in between
    info = json.loads((tmp_path / "a" / "best" / "best.json").read_text())
    assert info == {"metric": "eval_loss", "value": pytest.approx(lowest["eval_loss"]), "step": lowest["step"]}
    best = load_file(tmp_path / "a" / "best" / "model.safetensors")
    same_step = load_file(tmp_path / "a" / "checkpoints" / f"step-{lowest['step']}" / "model.safetensors")
    assert best.keys() == same_step.keys() and all(torch.equal(best[k], same_step[k]) for k in best)
    assert isinstance(attnkit.from_pretrained(tmp_path / "a" / "best"), GPT)
    from typer.testing import CliRunner

    from attnkit.cli import app

    shown = CliRunner().invoke(app, ["info", str(tmp_path / "a")])  # the newest checkpoint tells of the best
    assert f"best so far: eval_loss {lowest['eval_loss']:.4f} at step {lowest['step']}" in shown.output, shown.output
    # resumed half-way, the run keeps the same best
    best_run(tmp_path / "b", max_steps=6)
    best_run(tmp_path / "b", resume=True, first_batch=6)
    assert json.loads((tmp_path / "b" / "best" / "best.json").read_text()) == info


def test_early_stopping_stops_after_patience_evaluations_without_improvement(tmp_path):
    best_run(tmp_path / "a")
    lowest = min((r for r in metrics(tmp_path / "a") if "eval_loss" in r), key=lambda r: r["eval_loss"])
    trainer = best_run(tmp_path / "b", early_stopping_patience=2, max_steps=100)
    assert trainer.step == lowest["step"] + 2 * 2  # two more evaluations, none better
    assert complete_checkpoints(tmp_path / "b")[-1][0] == trainer.step  # a checkpoint where it stopped
    assert json.loads((tmp_path / "b" / "best" / "best.json").read_text())["step"] == lowest["step"]


def test_best_metric_mistakes_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="best_metric.*must name an evaluation metric"):
        config(best_metric="loss")
    with pytest.raises(ConfigError, match="eval_every.*must be > 0 when best_metric is set"):
        config(best_metric="eval_loss", eval_every=0)
    with pytest.raises(ConfigError, match="early_stopping_patience.*needs best_metric"):
        config(early_stopping_patience=3)
    with pytest.raises(ConfigError, match=r"train.best_metric 'eval_accuracy' is not among this run's evaluation "
                                          r"metrics: eval_loss"):
        best_run(tmp_path / "c", best_metric="eval_accuracy")
