"""The poly LR schedule's movable horizon and the time budget that moves it."""

from __future__ import annotations

import pytest
import torch

from atrous.train.budget import TimeBudget
from atrous.train.schedules import PolyScheduler, PolyWarmup


def _scheduler(total: int, warmup: int, lr: float = 0.1) -> PolyScheduler:
    weight = torch.nn.Parameter(torch.zeros(2))
    return PolyScheduler(torch.optim.SGD([weight], lr=lr), total, 0.9, warmup)


@pytest.mark.parametrize("horizon", [4, 3, 1])  # at the warmup length, and inside it
def test_replan_to_or_below_the_warmup_never_divides_by_zero(horizon):
    poly = PolyWarmup(total_iters=100, power=0.9, warmup_iters=4)
    poly.replan(horizon)
    factors = [poly(step) for step in range(10)]
    assert all(0.0 <= f <= 1.0 for f in factors), factors
    assert factors[horizon:] == [0.0] * (10 - horizon)  # nothing past the horizon
    assert factors[horizon - 1] > 0.0  # the last planned step still trains


def test_replan_keeps_the_curve_of_the_new_horizon():
    poly = PolyWarmup(total_iters=100, power=0.9, warmup_iters=10)
    poly.replan(55)
    assert poly(9) == pytest.approx(10 / 11) and poly(10) == pytest.approx(1.0)
    assert poly(10 + 45 // 2) == pytest.approx((1 - 22 / 45) ** 0.9)
    assert poly(55) == 0.0 and poly(70) == 0.0


def test_set_total_iters_moves_the_current_lr_and_survives_a_state_dict():
    scheduler = _scheduler(total=100, warmup=0)
    for _ in range(20):
        scheduler.optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * 0.8**0.9)
    scheduler.set_total_iters(40)
    assert scheduler.total_iters == 40
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**0.9)
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1 * 0.5**0.9)
    again = _scheduler(total=100, warmup=0)
    again.load_state_dict(scheduler.state_dict())
    assert again.total_iters == 40 and again.state_dict()["lr_lambdas"][0]["total_iters"] == 40


class _Clock:
    """A fake monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_replans_a_run_down_to_its_warmup_and_steps_on():
    """The crash of issue 24: 4 steps per epoch, warmup 4, a budget that fits one epoch only
    moves the horizon to exactly the warmup length; stepping on must not divide by zero."""
    clock, scheduler = _Clock(), _scheduler(total=30 * 4, warmup=4)
    budget = TimeBudget(1.0, 30, scheduler, iters_per_epoch=4, clock=clock)
    for _ in range(4):
        scheduler.optimizer.step()
        scheduler.step()
    clock.now += 35.0  # one 35 s epoch done, 25 s left: no second epoch fits
    planned, message = budget.after_epoch(done=1, planned=30, epoch_start=clock.now - 35.0)
    assert planned == 1 and scheduler.total_iters == 4
    assert message is not None and "1 epochs planned (of 30)" in message
    for _ in range(3):  # a hard stop may still let a step or two run: the LR stays 0
        scheduler.optimizer.step()
        scheduler.step()
        assert scheduler.get_last_lr()[0] == 0.0


def test_budget_stops_at_the_deadline_and_extends_when_time_is_left():
    clock, scheduler = _Clock(), _scheduler(total=10 * 4, warmup=2)
    budget = TimeBudget(1.0, 10, scheduler, iters_per_epoch=4, clock=clock)
    assert not budget.expired()
    clock.now += 5.0
    budget.record(5.0)
    planned, _ = budget.after_epoch(done=1, planned=10, epoch_start=clock.now - 5.0)
    assert planned == 10  # 55 s left at 5 s an epoch: all 10 fit
    clock.now += 60.0
    assert budget.expired()
    planned, message = budget.after_epoch(done=2, planned=10, epoch_start=clock.now - 5.0)
    assert planned == 2 and scheduler.total_iters == 8 and "reached" in message
