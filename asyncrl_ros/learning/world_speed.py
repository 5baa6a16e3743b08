"""How fast a simulated world runs so that learning keeps the thesis' pace: the rule, and
the world following it during a run. No ROS and no torch here (sim_world imports it).

The thesis' baseline spent 45 ms on sampling + update (Table 5.2: 21 + 24 ms, RTX 2080Ti)
against a 40 ms async action cycle. A world slowed by factor f turns m ms of wall time into
m * f ms of simulated time, so one sample + update of m ms costs the thesis' 45 ms of world
time when f = min(1, 45 / m). The factor does not depend on the cycle: sync's longer cycle
(75 ms) must meet the same update cost in world time as async's 40 ms, or the comparison of
the two would favour one by construction.
"""
from __future__ import annotations

import numpy as np

THESIS_SAMPLE_UPDATE_MS = 21.0 + 24.0   # thesis Table 5.2, baseline, Seq-SAC
THESIS_CYCLE_MS = 40.0


def factor_for(measured_ms: float) -> float:
    """The real-time factor at which a sample + update of `measured_ms` costs the world the
    thesis' 45 ms."""
    if not measured_ms > 0:
        raise ValueError(f"measured cost must be > 0 ms, got {measured_ms}")
    return min(1.0, THESIS_SAMPLE_UPDATE_MS / measured_ms)


# How often a following world re-times the update (wall seconds of learning): ~80 updates
# of quick's learner on a CPU, enough for a steady figure, short next to a 10-minute run.
FOLLOW_EVERY_S = 10.0
# At most this factor of change per re-timing: the update's cost itself depends on the
# world's speed (they share the CPU), so a full jump would overshoot.
FOLLOW_MAX_STEP = 1.5


class UpdateCostFollower:
    """`auto` during the run: keep one update's cost at the thesis' 45 ms of world time.

    The preflight times the update on a quiet machine; in the run it shares the CPU with a
    world, a renderer and the policy, whose load grows with the world's speed, and was seen
    to cost 1.5-2.5x its preflight time. A world set from the quiet figure then gives the
    learner fewer updates per step than the thesis had (0.35 instead of ~0.9 in one run).
    Every `every_s` wall seconds this re-times the update from what the run itself shows
    and moves the factor half-way (geometrically, at most FOLLOW_MAX_STEP) towards
    factor_for(that cost).

    The cost is the learner's busy time per update: an async learner's wall time less the
    time it waited for a batch, over its updates (sampling, copying, updating and shipping
    weights included; waiting excluded, because a learner held at max_updates_per_step, or
    idle while the arm homes, is not slow); sync's in-cycle sample + update time. Whichever
    the run's mode provides. No figure in a window (a learner restarting, nothing learned
    yet): the factor stays.

    The factor then depends on the mode's own efficiency, so runs that compare modes give
    every mode one fixed speed instead (asyncrl-reproduce does).
    """

    def __init__(self, factor: float, every_s: float = FOLLOW_EVERY_S):
        if not factor > 0 or not every_s > 0:
            raise ValueError(f'factor and every_s must be > 0, got {factor}, {every_s}')
        self.factor = factor
        self.every_s = every_s
        self.window_start: float | None = None
        self.first_count: tuple[float, int, float] | None = None   # (wall, updates, wait_ms)
        self.last_count: tuple[float, int, float] | None = None
        self.in_cycle_ms: list[float] = []
        self.cost_ms: float | None = None   # the last in-run figure

    def start(self, wall: float) -> None:
        """Learning began (first learned action): windows count from here."""
        if self.window_start is None:
            self.window_start = wall

    def learner_updates(self, updates: int, wait_ms: float, wall: float) -> None:
        """An async learner's status: its update count and the total time it waited (ms)."""
        first = self.first_count
        if first is not None and (updates < first[1] or wait_ms < first[2]):
            first = None   # a restarted learner counts from its checkpoint
        self.last_count = (wall, updates, wait_ms)
        self.first_count = first or self.last_count

    def in_cycle_update(self, ms: float) -> None:
        if ms > 0:
            self.in_cycle_ms.append(ms)

    def window_cost_ms(self) -> float | None:
        if self.in_cycle_ms:
            return float(np.median(self.in_cycle_ms))
        if self.first_count and self.last_count and self.last_count[1] > self.first_count[1]:
            (w0, u0, wait0), (w1, u1, wait1) = self.first_count, self.last_count
            busy_ms = (w1 - w0) * 1e3 - (wait1 - wait0)
            return max(busy_ms, 0.0) / (u1 - u0) or None
        return None

    def poll(self, wall: float) -> float | None:
        """The new factor when a window closed with a figure that moves it, else None."""
        if self.window_start is None or wall - self.window_start < self.every_s:
            return None
        cost = self.window_cost_ms()
        self.window_start = wall
        self.first_count, self.in_cycle_ms = self.last_count, []
        if cost is None:
            return None
        self.cost_ms = cost
        ratio = factor_for(cost) / self.factor
        if abs(ratio - 1) < 0.02:   # within the figure's own noise
            return None
        self.factor = min(1.0, self.factor * float(np.clip(np.sqrt(ratio), 1 / FOLLOW_MAX_STEP,
                                                             FOLLOW_MAX_STEP)))
        return self.factor
