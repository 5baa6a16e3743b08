"""Safety filter and watchdog: one test per rule, then hostile commands by the 100 000."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncrl_ros.robot.kinematics import (PANDA_DQ_MAX, PANDA_Q_MAX, PANDA_Q_MIN, panda_fk,
                                    position_jacobian)
from asyncrl_ros.robot.safety import (SafetyFilter, SafetyLimits, Watchdog, max_stoppable_speed,
                                stop_travel)

N = 7
DT = 0.04                                     # one action cycle of the paper
MARGIN = 0.05
BOX_MIN = np.array([0.3, -0.3, 0.2])          # 40 x 60 x 30 cm, the paper's box size
BOX_MAX = np.array([0.7, 0.3, 0.5])
INSIDE = np.array([0.0, 0.0, 0.0, -2.4, 0.0, 2.4, 0.785])     # flange at (0.49, 0, 0.31)
NEAR_LID = np.array([0.0, -0.3, 0.0, -2.4, 0.0, 2.4, 0.785])  # flange at (0.47, 0, 0.46)
ABOVE = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])  # Franka's home: z = 0.59
# A ramp so steep that any output stops within one call: isolates the other rules, each of
# which then looks exactly one call (DT) ahead.
NO_RAMP = 1e9


def fk_position(q):
    return panda_fk(q)[..., :3, 3]


def make_limits(**override) -> SafetyLimits:
    kwargs = dict(velocity_limits=PANDA_DQ_MAX, joint_lower=PANDA_Q_MIN, joint_upper=PANDA_Q_MAX,
                  joint_margin=MARGIN, workspace_min=BOX_MIN, workspace_max=BOX_MAX,
                  max_acceleration=NO_RAMP)
    kwargs.update(override)
    return SafetyLimits(**kwargs)


def make_filter(**override) -> SafetyFilter:
    return SafetyFilter(make_limits(**override), fk_position)


def inside(p) -> np.ndarray:
    return np.all((p >= BOX_MIN) & (p <= BOX_MAX), axis=-1)


NO_BOX = dict(workspace_min=[-2.0] * 3, workspace_max=[2.0] * 3)   # isolates the joint rules


# ----------------------------------------------------------------------------- one rule each
def test_safe_command_passes_unchanged():
    f = make_filter()
    cmd = 0.1 * np.array([1, -1, 1, -1, 1, -1, 1.0])
    out, events = f.filter(cmd, INSIDE, DT)
    np.testing.assert_array_equal(out, cmd)
    assert events == []
    out[:] = 99                                    # the caller's copy, not the filter's state
    assert np.all(np.abs(f.filter(cmd, INSIDE, DT)[0]) < 1)


@pytest.mark.parametrize('command', [np.zeros(6), np.zeros(8), [], np.zeros((1, 7)), None,
                                     'fast', [[1, 2], [3]], [1j] * 7, 3.0])
def test_wrong_length_gives_zeros(command):
    out, events = make_filter().filter(command, INSIDE, DT)
    np.testing.assert_array_equal(out, np.zeros(N))
    assert events == ['wrong_length']


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_nan_and_inf_give_zeros(bad):
    cmd = np.full(N, 0.1)
    cmd[3] = bad
    out, events = make_filter().filter(cmd, INSIDE, DT)
    np.testing.assert_array_equal(out, np.zeros(N))
    assert events == ['nan']


def test_each_joint_is_clamped_to_its_velocity_limit():
    cmd = np.array([100, -100, 1e9, -3, 0.1, -2.7, 2.7])
    out, events = make_filter(**NO_BOX).filter(cmd, INSIDE, DT)
    lim = PANDA_DQ_MAX
    np.testing.assert_array_equal(out, [lim[0], -lim[1], lim[2], -lim[3], 0.1, -lim[5], lim[6]])
    assert events == ['clamped']


def test_joint_at_its_limit_margin_may_only_move_inward():
    f = make_filter(**NO_BOX)
    for at in (PANDA_Q_MAX - MARGIN, PANDA_Q_MAX + 0.1):      # at the margin, and past the limit
        q = INSIDE.copy()
        q[[0, 5]] = at[[0, 5]]
        out, events = f.filter(np.array([1.0, 1, 1, 0, 0, 1, 0]), q, DT)
        np.testing.assert_array_equal(out, [0, 1, 1, 0, 0, 0, 0])
        assert events == ['joint_limit']
        out, events = f.filter(np.array([-1.0, 0, 0, 0, 0, -1, 0]), q, DT)
        np.testing.assert_array_equal(out, [-1, 0, 0, 0, 0, -1, 0])
        assert events == []
    q = INSIDE.copy()
    q[3] = PANDA_Q_MIN[3] + MARGIN / 2                         # lower side
    out, events = f.filter(np.array([0, 0, 0, -1.0, 0, 0, 0]), q, DT)
    assert out[3] == 0 and events == ['joint_limit']


def test_joint_stops_at_the_margin_instead_of_overshooting():
    q = INSIDE.copy()
    q[1] = PANDA_Q_MAX[1] - MARGIN - 0.01
    out, events = make_filter(**NO_BOX).filter(np.array([0, 2.0, 0, 0, 0, 0, 0]), q, DT)
    assert out[1] == pytest.approx(0.01 / DT)
    assert q[1] + out[1] * DT == pytest.approx(PANDA_Q_MAX[1] - MARGIN)
    assert events == ['joint_limit']


def _cartesian_command(q, v):
    return np.linalg.pinv(position_jacobian(fk_position, q)) @ v


def test_command_leaving_the_box_is_scaled_to_stay_inside():
    f = make_filter()
    cmd = _cartesian_command(NEAR_LID, [0, 0, 1.0])           # up, through the lid
    assert np.all(np.abs(cmd) < PANDA_DQ_MAX)                # within limits: isolate the rule
    assert not inside(fk_position(NEAR_LID + cmd * DT))
    out, events = f.filter(cmd, NEAR_LID, DT)
    assert events == ['workspace']
    scale = out @ cmd / (cmd @ cmd)
    np.testing.assert_allclose(out, scale * cmd, atol=1e-12)
    assert 0 < scale < 1
    assert inside(fk_position(NEAR_LID + out * DT))
    # The bisection keeps as much of the command as its resolution allows.
    assert not inside(fk_position(NEAR_LID + (scale + 2 / 4096) * cmd * DT))


def test_outside_the_box_the_arm_is_brought_back():
    f = make_filter()
    p = fk_position(ABOVE)
    assert p[2] > BOX_MAX[2]
    out, events = f.filter(np.full(N, 1.0), ABOVE, DT)        # the policy's wish is ignored
    assert events == ['workspace']
    assert np.all(np.abs(out) <= PANDA_DQ_MAX)
    motion = position_jacobian(fk_position, ABOVE) @ out
    assert motion[2] < 0 and np.linalg.norm(motion) == pytest.approx(0.1, rel=0.05)
    # Closed loop with a hostile policy: back inside in time, and never out again.
    rng = np.random.default_rng(0)
    q, was_inside, steps_outside = ABOVE.copy(), False, 0
    for _ in range(150):
        out, _ = f.filter(rng.uniform(-3, 3, N), q, DT)
        q = q + out * DT
        now_inside = bool(inside(fk_position(q)))
        assert now_inside or not was_inside
        was_inside |= now_inside
        steps_outside += not now_inside
    assert was_inside and steps_outside * DT < 1.5             # 9 cm at 0.1 m/s, plus slack


def test_ramp_limits_the_change_per_cycle():
    f = make_filter(max_acceleration=10.0, **NO_BOX)
    step = 10.0 * DT
    big = PANDA_DQ_MAX.copy()
    out1, ev1 = f.filter(big, INSIDE, DT)
    np.testing.assert_allclose(out1, step)
    assert ev1 == ['ramped']
    out2, _ = f.filter(big, INSIDE, DT)
    np.testing.assert_allclose(out2, 2 * step)
    out3, ev3 = f.filter([np.nan] * N, INSIDE, DT)              # a stop is ramped too
    np.testing.assert_allclose(out3, step)
    assert ev3 == ['nan', 'ramped']
    out4, _ = f.filter(-big, INSIDE, 0.0)                       # no time, no change
    np.testing.assert_allclose(out4, step)
    f.reset()                                                   # e.g. after a watchdog stop
    np.testing.assert_allclose(f.filter(-big, INSIDE, DT)[0], -step)


def test_ramp_reserves_braking_distance_before_a_joint_limit():
    a = 10.0
    f = make_filter(max_acceleration=a, **NO_BOX)
    q = INSIDE.copy()
    q[0] = 0.0
    peak = 0.0
    while q[0] < PANDA_Q_MAX[0]:                                 # full speed at the limit
        out, events = f.filter(np.array([10.0, 0, 0, 0, 0, 0, 0]), q, DT)
        q[0] += out[0] * DT
        peak = max(peak, q[0])
        if out[0] == 0:
            break
    # The ramp's stop is reserved exactly: no overshoot of the margin at all.
    assert PANDA_Q_MAX[0] - MARGIN - 1e-3 < peak <= PANDA_Q_MAX[0] - MARGIN + 1e-12
    assert 'joint_limit' in events
    # Without ramping the joint stops exactly at the margin.
    f, q = make_filter(**NO_BOX), INSIDE.copy()
    for _ in range(200):
        q[0] += f.filter(np.array([10.0, 0, 0, 0, 0, 0, 0]), q, DT)[0][0] * DT
    assert q[0] == pytest.approx(PANDA_Q_MAX[0] - MARGIN)


def test_stop_travel_is_the_sum_of_the_ramp_ticks():
    rng = np.random.default_rng(1)
    for _ in range(200):
        a, tick = rng.uniform(0.5, 30), rng.choice([0.001, 0.01, 0.04])
        step, v = a * tick, rng.uniform(0, 3)
        ticks = []
        while v - len(ticks) * step > 0:
            ticks.append(v - len(ticks) * step)
        assert stop_travel(v, step, tick) == pytest.approx(tick * sum(ticks), rel=1e-12, abs=1e-15)
        # v^2 / 2a + v tick / 2, up to a tick^2 / 8
        excess = stop_travel(v, step, tick) - (v * v / (2 * a) + v * tick / 2)
        assert -1e-12 <= excess <= a * tick ** 2 / 8 + 1e-12
        room = rng.uniform(0, 0.5)
        top = max_stoppable_speed(room, step, tick)
        assert stop_travel(top, step, tick) == pytest.approx(room, rel=1e-9, abs=1e-15)
        assert stop_travel(top * 1.001 + 1e-9, step, tick) > room   # the largest such speed
    assert max_stoppable_speed(-0.1, 0.05, 0.01) == 0.0


def _lid_push_excursion(f, q, steps=300):
    """Kinematic closed loop (the arm does exactly what it is told), a full-speed push up
    through the lid: how far above the box the flange gets, m."""
    cmd = _cartesian_command(q, [0, 0, 1.0])
    cmd *= np.min(PANDA_DQ_MAX / np.maximum(np.abs(cmd), 1e-12))   # at the velocity limits
    worst = -np.inf
    for _ in range(steps):
        out, _ = f.filter(cmd, q, 0.01)
        q = q + out * 0.01
        worst = max(worst, fk_position(q)[2] - BOX_MAX[2])
    return worst


@pytest.mark.parametrize('a', [2.0, 5.0, 15.0])
def test_the_box_holds_the_whole_stop_at_full_speed(a):
    # INSIDE is 19 cm under the lid: room to reach full speed before braking must begin.
    assert _lid_push_excursion(make_filter(max_acceleration=a), INSIDE.copy()) <= 1e-9
    # ... and the filter does not stop short either: the flange arrives at the lid.
    assert _lid_push_excursion(make_filter(max_acceleration=a), INSIDE.copy()) > -1e-3


def test_homing_speed_replaces_the_velocity_bound_for_one_call():
    f = make_filter(velocity_limits=np.full(N, 0.2), **NO_BOX)
    out, _ = f.filter(np.full(N, 1.0), INSIDE, DT, bound_workspace=False,
                      velocity_limits=np.full(N, 0.5))
    np.testing.assert_allclose(out, 0.5)
    out, events = f.filter(np.full(N, 1.0), INSIDE, DT)
    np.testing.assert_allclose(out, 0.2)
    assert events == ['clamped']
    with pytest.raises(ValueError, match='velocity_limits'):
        f.filter(np.zeros(N), INSIDE, DT, velocity_limits=np.full(3, 0.5))


def test_a_stop_the_ramp_cannot_make_brakes_as_hard_as_it_can():
    f = make_filter(max_acceleration=5.0)
    near = NEAR_LID.copy()
    up = _cartesian_command(near, [0, 0, 1.0])
    up *= np.min(PANDA_DQ_MAX / np.maximum(np.abs(up), 1e-12))
    f._previous = up.copy()             # as if the arm had been flying at the lid
    out, events = f.filter(up, near, 0.01)
    np.testing.assert_allclose(np.abs(up) - np.abs(out), np.minimum(np.abs(up), 0.05))
    assert 'workspace' in events and 'ramped' in events


@pytest.mark.parametrize('q', [np.full(N, np.nan), np.zeros(6), None,
                               INSIDE + [0, 0, 0, np.inf, 0, 0, 0]])
def test_bad_state_stops_the_arm(q):
    f = make_filter(max_acceleration=10.0)
    f.filter(np.full(N, 0.2), INSIDE, DT)
    out, events = f.filter(np.full(N, 0.2), q, DT)
    np.testing.assert_allclose(out, 0.0)                        # 0.2 is within one ramp step
    assert events == ['bad_state']


@pytest.mark.parametrize('dt', [-0.01, np.nan, np.inf, None, '0.04'])
def test_bad_dt_is_an_error(dt):
    with pytest.raises(ValueError, match='dt'):
        make_filter().filter(np.zeros(N), INSIDE, dt)


def test_fk_returning_a_pose_is_an_error():
    with pytest.raises(ValueError, match='fk_position'):
        SafetyFilter(make_limits(), panda_fk).filter(np.zeros(N), INSIDE, DT)


@pytest.mark.parametrize('override, match', [
    (dict(velocity_limits=np.zeros(N)), 'velocity_limits'),
    (dict(velocity_limits=np.ones(6)), 'joint_lower'),
    (dict(joint_upper=PANDA_Q_MIN), 'joint_upper'),
    (dict(joint_margin=-0.1), 'joint_margin'),
    (dict(workspace_min=BOX_MAX), 'workspace_max'),
    (dict(workspace_min=[0, 0]), 'workspace_min'),
    (dict(max_acceleration=0.0), 'max_acceleration'),
    (dict(max_acceleration=None), 'max_acceleration'),     # every output is ramped
    (dict(max_acceleration=np.inf), 'max_acceleration'),
    (dict(latency=-0.01), 'latency'),
    (dict(joint_lower=[np.nan] * N), 'joint_lower'),
    (dict(return_speed=-1.0), 'return_speed'),
])
def test_limits_are_validated(override, match):
    with pytest.raises(ValueError, match=match):
        make_limits(**override)


def test_watchdog():
    dog = Watchdog(0.08)
    assert dog.expired(0.0)                    # nothing heard yet: stop
    dog.feed(1.0)
    assert not dog.expired(1.0) and not dog.expired(1.07)
    assert dog.expired(1.09)
    dog.feed(1.09)
    assert not dog.expired(1.1)
    assert dog.expired(0.5)                    # the clock went back (e.g. a restarted /clock)
    for bad in (0.0, -1.0, float('nan')):
        with pytest.raises(ValueError, match='timeout'):
            Watchdog(bad)


# ----------------------------------------------------------------------- hostile commands
def _random_states(rng, count):
    """Panda states, 95 % with the flange inside the box; some joints at or past a limit."""
    found_in, found_out, n_in = [], [], int(0.95 * count)
    while sum(map(len, found_in)) < n_in:
        pool = rng.uniform(PANDA_Q_MIN, PANDA_Q_MAX, (20_000, N))
        near = np.flatnonzero(rng.random(len(pool)) < 0.3)
        joint = rng.integers(0, N, len(near))
        pool[near, joint] = np.where(rng.random(len(near)) < 0.5,
                                     PANDA_Q_MAX[joint] + rng.uniform(-0.1, 0.03, len(near)),
                                     PANDA_Q_MIN[joint] + rng.uniform(-0.03, 0.1, len(near)))
        ins = inside(fk_position(pool))
        found_in.append(pool[ins])
        found_out.append(pool[~ins])
    found_in, found_out = np.concatenate(found_in), np.concatenate(found_out)
    return np.concatenate([found_in[:n_in], found_out[:count - n_in]])


def _random_command(rng):
    kind = rng.integers(6)
    if kind == 0:
        return rng.uniform(-1.5, 1.5, N) * PANDA_DQ_MAX
    if kind == 1:
        return rng.uniform(-0.1, 0.1, N) * PANDA_DQ_MAX
    if kind == 2:
        return rng.choice([-1, 1], N) * 10.0 ** rng.uniform(0, 300, N)
    if kind == 3:
        cmd = rng.uniform(-3, 3, N)
        cmd[rng.integers(N)] = rng.choice([np.nan, np.inf, -np.inf])
        return cmd
    if kind == 4:
        return rng.uniform(-3, 3, int(rng.choice([0, 1, 6, 8, 14])))
    return rng.uniform(-3, 3, (1, N))


def _violations(q, out, lim: SafetyLimits, dt: float = DT) -> dict[str, int]:
    """Counts over a batch of (state, output) pairs, one call of dt ahead; all must be zero."""
    upper, lower = lim.joint_upper - lim.joint_margin, lim.joint_lower + lim.joint_margin
    at_upper, at_lower = q >= upper, q <= lower
    free = ~at_upper & ~at_lower
    q_next = q + out * dt
    was_inside = inside(fk_position(q))
    return {
        'not finite or wrong shape': int(out.shape[1:] != (N,) or not np.isfinite(out).all()),
        'over velocity limit': int(np.sum(np.abs(out) > lim.velocity_limits)),
        'pushed past joint margin': int(np.sum(at_upper & (out > 0) | at_lower & (out < 0))),
        'overshoots joint margin': int(np.sum(free & ((q_next > upper + 1e-9)
                                                      | (q_next < lower - 1e-9)))),
        'leaves the box': int(np.sum(was_inside & ~inside(fk_position(q_next)))),
    }


def test_thirty_thousand_hostile_commands():
    rng = np.random.default_rng(12345)
    f = make_filter()
    states = _random_states(rng, 20_000)
    count = 30_000   # the closed-loop test (test_safety_closed_loop.py) drives the arms as well
    qs = states[rng.integers(len(states), size=count)]
    outs = np.empty((count, N))
    seen: dict[str, int] = {}
    for i in range(count):
        outs[i], events = f.filter(_random_command(rng), qs[i], DT)
        for event in events:
            seen[event] = seen.get(event, 0) + 1
    violations = _violations(qs, outs, f.limits)
    assert not any(violations.values()), violations
    # Every rule was exercised many times, so the zeros above mean something.
    for event in ('wrong_length', 'nan', 'clamped', 'joint_limit', 'workspace'):
        assert seen.get(event, 0) > count // 100, (event, seen)


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
command = st.one_of(st.lists(floats, min_size=N, max_size=N),
                    st.lists(st.floats(-5, 5), min_size=N, max_size=N),
                    st.lists(floats, max_size=2 * N), st.none(), st.text(max_size=3))
state = st.lists(st.floats(-1, 1), min_size=N, max_size=N).map(
    lambda u: np.array(u) * (PANDA_Q_MAX - PANDA_Q_MIN) * 0.55 + (PANDA_Q_MAX + PANDA_Q_MIN) / 2)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(command, state, st.floats(0, 0.1)), min_size=1, max_size=8),
       ramp=st.sampled_from([NO_RAMP, 5.0, 50.0]))
def test_hypothesis_command_sequences(steps, ramp):
    f = make_filter(max_acceleration=ramp)
    previous = np.zeros(N)
    for cmd, q, dt in steps:
        out, events = f.filter(cmd, q, dt)
        assert out.shape == (N,) and np.isfinite(out).all()
        assert np.all(np.abs(out) <= PANDA_DQ_MAX)
        assert np.all(np.abs(out - previous) <= ramp * dt + 1e-12)
        # States jump about here, so the ramp may be unable to stop in time (and says so);
        # otherwise every rule holds.
        if 'ramped' not in events:
            assert not any(_violations(q[None], out[None], f.limits, dt).values()), (cmd, q, out)
        previous = out
