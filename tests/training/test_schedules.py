"""Learning-rate schedules against the paper's formula and PyTorch's own cosine annealing."""

import math

import pytest
import torch

from attnkit.errors import ConfigError
from attnkit.training.schedules import InverseSqrt, lr_scheduler, make_schedule


def lrs(schedule, steps, base_lr=1.0):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = lr_scheduler(opt, schedule)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_inverse_sqrt_is_vaswani_eq3():
    d_model, warmup = 512, 4000  # the paper's base model
    got = lrs(InverseSqrt(d_model, warmup), 10000)
    for step in (1, 10, 1000, 3999, 4000, 4001, 10000):  # step_num counts from 1
        assert got[step - 1] == pytest.approx(d_model**-0.5 * min(step**-0.5, step * warmup**-1.5), rel=1e-12)
    assert max(got) == pytest.approx(512**-0.5 * 4000**-0.5) == got[warmup - 1]  # peak ~7.0e-4 at warmup
    assert got[1999] == pytest.approx(got[999] * 2)  # linear increase during warmup
    assert got[8999] == pytest.approx(got[4999] * math.sqrt(5000 / 9000))  # then ∝ step^-0.5


def test_warmup_cosine_matches_torch_cosine_annealing_after_linear_warmup():
    base, warmup, total, min_ratio = 3e-3, 10, 60, 0.1
    got = lrs(make_schedule("cosine", warmup_steps=warmup, max_steps=total, min_lr_ratio=min_ratio), total + 5, base)
    assert got[:warmup] == pytest.approx([base * (i + 1) / warmup for i in range(warmup)])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    ref_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=base * min_ratio)
    ref = []
    for _ in range(total - warmup + 1):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        ref_sched.step()
    assert got[warmup : total + 1] == pytest.approx(ref, rel=1e-9)
    assert got[total:] == pytest.approx([base * min_ratio] * 5)  # stays at the floor past max_steps


def test_unknown_schedule_and_missing_d_model_are_config_errors():
    with pytest.raises(ConfigError, match="train.schedule"):
        make_schedule("linear", warmup_steps=1, max_steps=2)
    with pytest.raises(ConfigError, match="d_model"):
        make_schedule("inverse_sqrt", warmup_steps=10, max_steps=2)
