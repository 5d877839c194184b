"""The Trainer: one training loop for every model family, on one CPU/GPU or under torchrun.

Each step it takes ``grad_accum_steps`` batches (dicts of tensors) from a
:class:`~attnkit.training.sources.DataSource`, calls ``model(**batch).loss``, clips the
gradient norm and makes one AdamW update. It logs to ``OUT/metrics.jsonl`` (and TensorBoard
when installed), evaluates every ``eval_every`` steps and checkpoints every ``save_every``
steps. A resumed run continues bitwise like one never interrupted (same device and threads).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from tqdm.auto import tqdm

from attnkit.allocator import keep_freed_memory
from attnkit.nn.lora import add_lora
from attnkit.errors import CheckpointError, ConfigError, TrainingError
from attnkit.interop.files import write_text_atomic
from attnkit.models.config import Config
from attnkit.training import checkpoint as ckpt
from attnkit.training.distributed import DistInfo, barrier, init_distributed, sum_over_ranks, wrap_model
from attnkit.training.optim import make_optimizer
from attnkit.training.schedules import SCHEDULES, lr_scheduler, make_schedule

BEST, BEST_INFO = "best", "best.json"  # OUT/best/: the model of the best evaluation (train.best_metric)



@dataclass(frozen=True)
class TrainConfig(Config):
    """Hyperparameters of a run (the ``[train]`` table of a recipe).

    ``batch_size`` is the global batch of one forward pass, split over ranks; one optimizer
    step sees ``batch_size * grad_accum_steps`` sequences. ``save_every``/``eval_every`` = 0
    disable periodic saves/evaluations (a checkpoint is always written at ``max_steps``).
    ``max_minutes`` > 0 stops early (with a checkpoint) once that much time has passed.
    ``best_metric`` keeps the model of the best evaluation so far in ``OUT/best/`` (a model
    directory, with ``best.json``: step, metric, value); ``early_stopping_patience`` stops the
    run (with a checkpoint) after that many evaluations without improvement.
    """

    max_steps: int = 1000
    batch_size: int = 16
    grad_accum_steps: int = 1
    lr: float = 3e-4
    schedule: Literal["cosine", "inverse_sqrt", "constant"] = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 1337
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    gradient_checkpointing: bool = False
    device: str = "auto"
    distributed: Literal["ddp", "fsdp"] = "ddp"
    eval_every: int = 100
    eval_iters: int = 8
    save_every: int = 100
    keep_last: int = 3
    max_minutes: float = 0.0
    progress: bool = True
    # Keep the best model by an evaluation metric in OUT/best ("eval_loss", "eval_accuracy",
    # "eval_f1", "eval_bleu", ...); higher is better unless the name ends in "loss" (or say so).
    best_metric: str | None = None
    greater_is_better: bool | None = None
    early_stopping_patience: int = 0  # stop after this many evaluations without a better best_metric (0: never)

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_iters", "keep_last"):
            self.require(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("warmup_steps", "eval_every", "save_every", "grad_clip", "weight_decay", "max_minutes"):
            self.require(getattr(self, name) >= 0, name, "must be >= 0")
        self.require_positive("lr", "eps")
        self.require(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", "must be in [0, 1] (a fraction of lr)")
        self.require_fraction("beta1", "beta2")
        self.require(self.schedule != "inverse_sqrt" or self.warmup_steps >= 1, "warmup_steps",
                     "must be >= 1 for the inverse_sqrt schedule")
        self.require(self.schedule in SCHEDULES, "schedule", f"must be one of {SCHEDULES}")
        self.require(self.device in ("auto", "cpu", "cuda"), "device", "must be 'auto', 'cpu' or 'cuda'")
        self.require(self.best_metric is None or self.best_metric.startswith("eval_"), "best_metric",
                     "must name an evaluation metric (eval_loss, eval_accuracy, eval_f1, ...)")
        self.require(self.best_metric is None or self.eval_every > 0, "eval_every",
                     "must be > 0 when best_metric is set (the best model is chosen at evaluations)")
        self.require(self.early_stopping_patience >= 0, "early_stopping_patience", "must be >= 0")
        self.require(not self.early_stopping_patience or self.best_metric is not None, "early_stopping_patience",
                     "needs best_metric (the metric whose improvement it waits for)")


def _step_of(line: str) -> float:
    """The step of a metrics line; a line torn by a crash mid-write counts as past every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class Trainer:
    """Train ``model`` on ``data`` into ``out_dir``.

    Args:
        model: an attnkit model, or a subclass of one (``model(**batch).loss`` is a scalar;
            checkpoints are its ``save_pretrained`` directories).
        data: a :class:`~attnkit.training.sources.DataSource`.
        config: the :class:`TrainConfig`.
        out_dir: receives ``metrics.jsonl`` and ``checkpoints/step-N/``.
        tokenizer: saved into every checkpoint (anything with ``save_pretrained(dir)``).
        run_info: JSON-able facts saved in every checkpoint's ``trainer_state.json`` (the recipe).
        resume: continue from the newest complete checkpoint in ``out_dir`` (or this checkpoint path).
    """

    def __init__(self, model, data, config: TrainConfig, out_dir: str | Path, *, tokenizer=None,
                 run_info: dict | None = None, resume: bool | str | Path = False, dist: DistInfo | None = None):
        from attnkit.interop import check_saveable

        check_saveable(model)  # checkpoints need an attnkit model: say so now, not at the first save
        self.config, self.data, self.tokenizer = config, data, tokenizer
        self.out_dir, self.run_info = Path(out_dir), dict(run_info or {})
        self.info = dist or init_distributed(config.device)
        c, dev = config, self.info.device
        if c.precision == "fp16" and dev.type != "cuda":
            raise ConfigError("train.precision 'fp16' needs CUDA (GradScaler); use 'bf16' or 'fp32' on CPU")
        self.step = 0
        resume_dir = self._find_resume_dir(resume)
        if resume_dir is None:
            self._refuse_existing_run()
        if resume_dir is not None:
            self._load_weights(model, resume_dir)
        for module in model.modules():  # the nn stacks recompute activations in backward when set
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = c.gradient_checkpointing
        keep_freed_memory()  # reuse freed activations instead of unmapping them (ATTNKIT_MALLOC_TUNING=0: off)
        self.model = model.to(dev)
        self.wrapped = wrap_model(self.model, c.distributed, self.info)
        self.optimizer = make_optimizer(self.wrapped, c.lr, c.weight_decay, (c.beta1, c.beta2), c.eps)
        d_model = getattr(model.config, "d_model", None)
        schedule = make_schedule(c.schedule, warmup_steps=c.warmup_steps, max_steps=c.max_steps,
                                 min_lr_ratio=c.min_lr_ratio, d_model=d_model)
        self.scheduler = lr_scheduler(self.optimizer, schedule)
        self.scaler = torch.amp.GradScaler(dev.type, enabled=c.precision == "fp16")
        self.generator = torch.Generator().manual_seed(c.seed)
        self.forward = torch.compile(self.wrapped) if c.compile else self.wrapped
        self.tb, self.last_metrics = None, {}
        self.best: dict | None = None  # {"metric", "value", "step", "stale"}: the best evaluation so far
        if resume_dir is not None:
            self._load_training_state(resume_dir)
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._truncate_metrics()
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.out_dir / ckpt.TENSORBOARD))
            except ImportError:  # tensorboard is optional
                self.tb = None

    # -- resume ------------------------------------------------------------------------------
    def _find_resume_dir(self, resume) -> Path | None:
        if resume is False or resume is None:
            return None
        if resume is not True:
            return Path(resume)
        return ckpt.prepare_run_dir(self.out_dir, resume=True)

    def _refuse_existing_run(self) -> None:
        if (self.out_dir / ckpt.METRICS).exists() or ckpt.complete_checkpoints(self.out_dir):
            raise CheckpointError(
                f"{self.out_dir} already holds a training run; pass resume=True (attnkit train --resume) to continue it "
                "or choose another output directory (nothing was overwritten)"
            )

    def _load_weights(self, model, path: Path) -> None:
        ckpt.verify_checkpoint(path)
        state = ckpt.read_trainer_state(path)
        saved, mine = state.get("model_config", {}), model.config.to_dict()
        diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if diff:
            details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs recipe {mine.get(k)!r}" for k in diff)
            raise CheckpointError(f"checkpoint {path} does not match the recipe's model config ({details})")
        # Training settings may change on resume (max_steps, lr), but never without a word.
        before, now = state.get("recipe", {}).get("train", {}), self.run_info.get("recipe", {}).get("train", {})
        changed = [f"{k} {before[k]!r} -> {now[k]!r}" for k in sorted(set(before) & set(now)) if before[k] != now[k]]
        if changed and self.info.is_main:
            warnings.warn(f"resuming {path} with train settings that differ from the run's: {', '.join(changed)}",
                          stacklevel=2)
        from attnkit.interop import from_pretrained

        try:
            loaded = from_pretrained(path)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - report which checkpoint could not be read
            raise CheckpointError(f"cannot load the weights of checkpoint {path}: {e}") from None
        model.load_state_dict(loaded.state_dict())

    def _load_training_state(self, path: Path) -> None:
        state = ckpt.load_training_state(path)
        set_optimizer_state_dict(self.wrapped, self.optimizer, state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True))
        # Restore the schedule's position; its shape and base lr come from this run's config, so a
        # resumed run may change train.max_steps or train.lr (identical configs resume exactly).
        sched = self.scheduler
        position = {k: v for k, v in state["scheduler"].items() if k not in ("lr_lambdas", "base_lrs", "_last_lr")}
        sched.load_state_dict({**position, "lr_lambdas": [None] * len(sched.lr_lambdas), "base_lrs": sched.base_lrs})
        for group, base, schedule in zip(self.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["initial_lr"], group["lr"] = base, base * schedule(sched.last_epoch)
        sched._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["data_generator"])
        ckpt.set_rng_state(state["rng"], self.info.device)
        self.step = int(state["step"])
        self.best = ckpt.read_trainer_state(path).get("best")

    def _truncate_metrics(self) -> None:
        """Drop metric lines past the resumed step (written after the checkpoint, before a crash)."""
        path = self.out_dir / ckpt.METRICS
        if not path.exists():
            return
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        kept = [ln for ln in lines if _step_of(ln) <= self.step]
        if len(kept) != len(lines):
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(ln + "\n" for ln in kept))
            os.replace(tmp, path)

    # -- the loop ----------------------------------------------------------------------------
    def _autocast(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.precision)
        return torch.autocast(self.info.device.type, dtype=dtype) if dtype else nullcontext()

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.info.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _forward(self, batch: dict):
        """The model's output for ``batch``, which must include a loss."""
        out = self.forward(**batch)
        if out.loss is None:
            raise TrainingError(f"{type(self.model).__name__} returned no loss for a batch with keys {sorted(batch)}: "
                                "training batches need their targets (labels)")
        return out

    def _grad_sync(self, sync: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
        if self.info.world_size > 1 and self.config.distributed == "ddp" and not sync:
            return self.wrapped.no_sync()
        if self.info.world_size > 1 and self.config.distributed == "fsdp":
            self.wrapped.set_requires_gradient_sync(sync)
        return nullcontext()

    def train_step(self) -> dict:
        """One optimizer update over ``grad_accum_steps`` micro-batches; returns its metrics.

        The loss is the mean over every target of the step (all micro-batches, all ranks): each
        micro-batch's mean loss is weighted by its share of the targets (the model's ``count_targets``),
        so padded batches of different sizes (translation) train as one process with the whole batch
        would. A micro-batch without targets adds nothing (its mean loss is nan, its gradients zero).
        """
        c, info = self.config, self.info
        t0 = time.perf_counter()
        self.wrapped.train()
        batches = [self.data.next_batch(self.generator, info.rank, info.world_size) for _ in range(c.grad_accum_steps)]
        counts = [self.model.count_targets(b) for b in batches]  # before the copy: no device sync
        batches = [self._to_device(b) for b in batches]
        n_step = sum_over_ranks(torch.tensor(float(sum(counts)), device=info.device), info)
        if n_step.item() == 0:
            raise TrainingError(f"step {self.step + 1} has no targets (every label is -100); check the data")
        total, tokens = torch.zeros((), device=info.device), 0
        for micro, (batch, n) in enumerate(zip(batches, counts)):
            tokens += int(batch["input_ids"].numel()) if "input_ids" in batch else 0
            with self._grad_sync(micro == c.grad_accum_steps - 1), self._autocast():
                # DDP and FSDP average gradients over ranks: hence the world size
                loss = self._forward(batch).loss * (n * info.world_size / n_step)
            self.scaler.scale(loss).backward()
            if n:
                total += loss.detach().float()
        loss = sum_over_ranks(total, info).item() / info.world_size
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            self._stop(f"loss is {loss} at step {self.step + 1}")
        grad_norm = None
        if c.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), c.grad_clip)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        lr = self.optimizer.param_groups[0]["lr"]
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        # fp16: the scaler skips an update whose gradients overflowed, and lowers its scale. The
        # schedule follows the updates made (as in Hugging Face's Trainer); the step still counts.
        skipped = scale is not None and self.scaler.get_scale() < scale
        if not skipped:
            self.scheduler.step()
        self.step += 1
        if info.device.type == "cuda":
            torch.cuda.synchronize()
        record = {"step": self.step, "loss": loss, "lr": lr,
                  "tokens_per_s": tokens * info.world_size / (time.perf_counter() - t0)}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        if skipped:
            record["skipped"] = True
        return record

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over every target of the data source's fixed validation batches (all ranks)."""
        return self.evaluate_metrics()["eval_loss"]

    def evaluate_metrics(self) -> dict[str, float]:
        """``eval_loss`` (as :meth:`evaluate`) and, for data sources that set ``reports_accuracy``
        (classification: logits ``(..., K)`` over integer labels of their shape, -100 ignored),
        ``eval_accuracy``: the share of targets whose argmax is right, over all ranks; and
        ``eval_<name>`` for each score of the data source's ``task_metrics(model)``, if it has one."""
        self.wrapped.eval()
        accuracy = getattr(self.data, "reports_accuracy", False)
        sums = torch.zeros(3, dtype=torch.float64, device=self.info.device)  # loss x targets, targets, correct
        for batch in self.data.eval_batches(self.info.rank, self.info.world_size):
            n = self.model.count_targets(batch)
            batch = self._to_device(batch)
            with self._autocast():
                out = self._forward(batch)
            loss = out.loss.double()
            correct = loss.new_zeros(())
            if accuracy:
                labels = batch["labels"]
                correct = ((out.logits.argmax(-1) == labels) & (labels != -100)).sum().double()
            if n:  # a batch without targets has a nan mean loss: it adds nothing
                sums += torch.stack([loss * n, loss.new_tensor(n), correct])
        self.wrapped.train()
        if hasattr(self.wrapped, "reshard"):  # FSDP keeps the root's parameters gathered after a forward
            self.wrapped.reshard()
        total, n, correct = sum_over_ranks(sums, self.info).tolist()
        metrics = {"eval_loss": total / n if n else float("nan")}
        if accuracy:
            metrics["eval_accuracy"] = correct / n if n else float("nan")
        if hasattr(self.data, "task_metrics"):  # scores of the task's own output (QA: answers found)
            metrics.update({f"eval_{k}": v for k, v in self.data.task_metrics(self.model).items()})
        return metrics

    def train(self) -> list[dict]:
        """Run until ``max_steps``; returns the metric records of this call."""
        c, history, start = self.config, [], time.monotonic()
        bar = tqdm(total=c.max_steps, initial=self.step, disable=not (self.info.is_main and c.progress),
                   desc="train", dynamic_ncols=True)
        try:
            while self.step < c.max_steps:
                record = self.train_step()
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
                bar.update(1)
                self.log(record)
                history.append(record)
                out_of_time = self._out_of_time(start)
                patience_ran_out = False
                if c.eval_every and (self.step % c.eval_every == 0 or self.step == c.max_steps or out_of_time):
                    eval_record = {"step": self.step, **self.evaluate_metrics()}
                    self.log(eval_record)
                    history.append(eval_record)
                    if not bar.disable:
                        bar.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in eval_record.items()
                                                                    if k != "step"))
                    patience_ran_out = self._track_best(eval_record)
                stopping = out_of_time or patience_ran_out
                if (c.save_every and self.step % c.save_every == 0) or self.step == c.max_steps or stopping:
                    self.save_checkpoint()
                if out_of_time:
                    bar.write(f"stopping at step {self.step}: train.max_minutes={c.max_minutes} reached")
                if patience_ran_out:
                    bar.write(f"stopping at step {self.step}: {c.best_metric} has not improved for "
                              f"{c.early_stopping_patience} evaluations (best {self.best['value']:.4f} at step "
                              f"{self.best['step']}, in {self.out_dir / BEST}); train.early_stopping_patience")
                if stopping:
                    break
        finally:
            bar.close()
            if self.tb is not None:
                self.tb.flush()
        return history

    def _track_best(self, record: dict) -> bool:
        """With ``best_metric``: keep ``record``'s model in ``OUT/best`` when it improves on the best
        so far (every rank calls this: gathering FSDP weights is collective). Returns whether
        ``early_stopping_patience`` evaluations have passed without improvement."""
        c = self.config
        if c.best_metric is None:
            return False
        if c.best_metric not in record:
            known = ", ".join(k for k in record if k != "step")
            raise ConfigError(f"train.best_metric {c.best_metric!r} is not among this run's evaluation metrics: {known}")
        value = record[c.best_metric]
        higher = c.greater_is_better if c.greater_is_better is not None else not c.best_metric.endswith("loss")
        better = math.isfinite(value) and (
            self.best is None or (value > self.best["value"] if higher else value < self.best["value"]))
        if better:
            self.best = {"metric": c.best_metric, "value": value, "step": self.step, "stale": 0}
            model = self._model_to_save()
            if self.info.is_main:
                best = self.out_dir / BEST
                model.save_pretrained(best)  # each file replaced atomically; best.json last
                if self.tokenizer is not None:
                    self.tokenizer.save_pretrained(best)
                write_text_atomic(best / BEST_INFO, json.dumps({k: v for k, v in self.best.items() if k != "stale"},
                                                               indent=1) + "\n")
            barrier(self.info)
        elif self.best is not None:
            self.best["stale"] += 1
        return bool(c.early_stopping_patience) and self.best is not None \
            and self.best["stale"] >= c.early_stopping_patience

    def _out_of_time(self, start: float) -> bool:
        """Whether ``max_minutes`` has passed (decided by rank 0's clock, so all ranks agree)."""
        if not self.config.max_minutes or self.step >= self.config.max_steps:
            return False
        late = torch.tensor(float(time.monotonic() - start > 60 * self.config.max_minutes), device=self.info.device)
        if self.info.world_size > 1:
            torch.distributed.broadcast(late, src=0)
        return bool(late.item())

    # -- output ------------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        """Append ``record`` to ``metrics.jsonl`` (and TensorBoard), on the main process only."""
        if not self.info.is_main:
            return
        # JSON has no inf or nan (an overflowed fp16 step's gradient norm, an eval without targets): null
        line = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        self.last_metrics.update(line)
        with open(self.out_dir / ckpt.METRICS, "a") as f:
            f.write(json.dumps(line) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    def _stop(self, what: str):
        last = ckpt.latest_checkpoint(self.out_dir)
        raise TrainingError(f"{what}; training stopped. The last good checkpoint is "
                            f"{last if last else 'none (no checkpoint was saved yet)'}. Lower train.lr or check the data.")

    def _model_to_save(self):
        """The model with its full weights, on rank 0 (None elsewhere): the model itself, or under
        FSDP a plain copy with the gathered shards (collective: every rank calls this)."""
        sharded = self.info.world_size > 1 and self.config.distributed == "fsdp"
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state = get_model_state_dict(self.wrapped, options=opts) if sharded else None
        if not self.info.is_main:
            return None
        if not sharded:
            return self.model
        with torch.random.fork_rng(devices=[]):  # its random init must not move rank 0's RNG (dropout)
            model = type(self.model)(self.model.config)
            if hasattr(self.model, "generation_config"):
                model.generation_config = self.model.generation_config
            if hasattr(self.model, "lora_config"):  # the same adapters, to receive their gathered values
                add_lora(model, **self.model.lora_config)
        model.load_state_dict(model_state)
        return model

    def save_checkpoint(self) -> Path | None:
        """Write ``OUT/checkpoints/step-N`` (collective under FSDP; only rank 0 writes); never of
        non-finite weights (an update can overflow after a finite loss)."""
        local = [p.to_local() if hasattr(p, "to_local") else p for p in self.model.parameters()]
        if sum_over_ranks((~torch.stack([torch.isfinite(p).all() for p in local])).sum().float(), self.info).item():
            self._stop(f"the weights are not finite after step {self.step}, so no checkpoint was written")
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optim_state = get_optimizer_state_dict(self.wrapped, self.optimizer, options=opts)
        model = self._model_to_save()
        path = None
        if self.info.is_main:
            state = {
                "step": self.step, "optimizer": optim_state, "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": ckpt.rng_state(self.info.device), "data_generator": self.generator.get_state(),
            }
            trainer_state = {"step": self.step, "max_steps": self.config.max_steps, "world_size": self.info.world_size,
                             "model_config": self.model.config.to_dict(), "metrics": self.last_metrics,
                             "best": self.best, **self.run_info}

            def write(tmp: Path) -> None:
                model.save_pretrained(tmp)
                if self.tokenizer is not None:
                    self.tokenizer.save_pretrained(tmp)
                torch.save(state, tmp / ckpt.TRAINING_STATE)
                (tmp / ckpt.TRAINER_STATE).write_text(json.dumps(trainer_state, indent=1) + "\n")

            path = ckpt.save_checkpoint(self.out_dir, self.step, write, self.config.keep_last)
        barrier(self.info)
        return path
