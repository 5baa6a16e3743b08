"""Device and precision settings, their resolution, the host<->device copy helpers and the
auto real-time factor. Everything runs on the CPU; CUDA-only branches are not exercised here."""
import numpy as np
import pytest
import torch

from asyncrl_ros.agent import device as dev
from asyncrl_ros.learning import realtime, world_speed
from asyncrl_ros.run.config import ConfigError, load_config
from asyncrl_ros.agent.sac import BATCH_KEYS, SACAgent, SACConfig
from asyncrl_ros.transport.shm_weights import WeightStore
from asyncrl_ros.transport.transfer import DeviceBatchLoader, HostSnapshot

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize('sac, message', [
    ({'device': 'gpu'}, "unknown sac.device 'gpu' (choose one of auto, cpu, cuda, cuda:N)"),
    ({'device': 'cuda:x'}, "unknown sac.device 'cuda:x'"),
    ({'act_device': 'tpu'}, "unknown sac.act_device 'tpu'"),
    ({'precision': 'fp16'}, "unknown sac.precision 'fp16' (choose one of auto, fp32, bf16)"),
    ({'device': 'cuda:99'}, "'sac.device' is 'cuda:99' but" if not NO_CUDA else
     "'sac.device' is 'cuda:99' but CUDA is not available here"),
    ({'device': 7}, "'sac.device' must be str"),
])
def test_device_and_precision_errors_are_one_line_from_load_config(sac, message):
    with pytest.raises(ConfigError) as err:
        load_config({'sac': sac})
    text = str(err.value)
    assert message in text and '\n' not in text, text


@pytest.mark.skipif(not NO_CUDA, reason='this machine has CUDA')
def test_cuda_without_cuda_says_what_to_use_instead():
    with pytest.raises(ConfigError, match="use sac.device: auto or cpu"):
        load_config({'sac': {'device': 'cuda'}})
    assert load_config({'sac': {'device': 'auto', 'precision': 'bf16'}}).sac.precision == 'bf16'


def test_real_time_factor_takes_a_number_or_auto():
    assert load_config({'sim': {'real_time_factor': 'auto'}}).sim.real_time_factor == 'auto'
    rtf = load_config({'sim': {'real_time_factor': 1}}).sim.real_time_factor
    assert rtf == 1.0 and isinstance(rtf, float)
    for bad in ('fast', 0, -0.5, True):
        with pytest.raises(ConfigError, match="'sim.real_time_factor' must be > 0 or 'auto'"):
            load_config({'sim': {'real_time_factor': bad}})
    assert load_config({'sim': {'random_phase_real_time_factor': 0}}).sim.random_phase_real_time_factor == 0
    with pytest.raises(ConfigError, match="'sim.random_phase_real_time_factor' must be >= 0"):
        load_config({'sim': {'random_phase_real_time_factor': -1.0}})
    with pytest.raises(ConfigError, match=r"'task.action_cycle_ms' \(75\) must be a whole number of "
                                          r"'sim.clock_period_ms' \(10\)"):
        load_config({'task': {'action_cycle_ms': 75.0}, 'sim': {'clock_period_ms': 10.0}})
    assert load_config({'task': {'action_cycle_ms': 40.0}, 'sim': {'clock_period_ms': 10.0}})
    with pytest.raises(ConfigError, match="'sim.random_phase_real_time_factor' must be float"):
        load_config({'sim': {'random_phase_real_time_factor': 'fast'}})


def test_auto_resolves_to_the_cpu_and_fp32_or_bf16_by_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(dev, 'cpu_bf16_flags', lambda: ())
    p = dev.resolve(SACConfig())
    assert (p.device, p.act_device, p.bf16) == (torch.device('cpu'), torch.device('cpu'), False)
    assert any('no CUDA' in n for n in p.notes)
    assert any('neither AVX-512 BF16 nor AMX' in n and 'fp32' in n for n in p.notes)
    monkeypatch.setattr(dev, 'cpu_bf16_flags', lambda: ('amx_bf16',))
    p = dev.resolve(SACConfig())
    assert p.bf16 and any('amx_bf16' in n for n in p.notes)
    # Explicit settings are taken as they are, with nothing to explain.
    p = dev.resolve(SACConfig(device='cpu', precision='bf16'))
    assert p.bf16 and p.notes == ()
    assert dev.resolve(SACConfig(), device='cpu').act_device == torch.device('cpu')


def test_cpu_bf16_flags_read_proc_cpuinfo():
    flags = dev.cpu_bf16_flags()
    assert set(flags) <= {'avx512_bf16', 'amx_bf16'}
    try:
        text = open('/proc/cpuinfo').read()
    except OSError:
        pytest.skip('no /proc/cpuinfo')
    assert ('avx512_bf16' in flags) == (' avx512_bf16' in text)


# ------------------------------------------------------------------ host <-> device copies
def test_host_snapshot_holds_the_values_of_start_and_publishes():
    live = {'a.weight': torch.randn(4, 3), 'b.bias': torch.randn(5)}
    snap = HostSnapshot(live)
    assert snap.ready() is None, 'nothing started yet'
    assert snap.start()
    expected = {k: v.clone() for k, v in live.items()}
    for v in live.values():
        v.add_(1.0)                     # the next update changes the live weights in place
    assert not snap.start(), 'a snapshot not yet picked up is not overwritten'
    host = snap.ready()
    assert host is not None and snap.ready() is None
    assert all(torch.equal(host[k], expected[k]) and host[k].device.type == 'cpu' for k in live)
    assert snap.start() and torch.equal(snap.wait()['b.bias'], live['b.bias'])
    with WeightStore.create(f'asyncrl_test_snap_{np.random.randint(1 << 30)}', snap.host) as store:
        snap.start()
        assert store.publish(snap.ready()) == 1
        out = {k: torch.empty_like(v) for k, v in live.items()}
        assert store.try_read(out) == 1 and all(torch.equal(out[k], live[k]) for k in live)


def test_batch_loader_on_the_cpu_wraps_without_copying_and_feeds_an_update():
    cfg = SACConfig(hidden_dim=64, num_filters=8, batch_size=8, crop_height=36, crop_width=36,
                    device='cpu', precision='fp32')
    agent = SACAgent(cfg, (9, 40, 40), 6, 2)
    rng = np.random.default_rng(0)
    image = lambda: rng.integers(0, 256, (8, 9, 36, 36), dtype=np.uint8)  # noqa: E731
    batch = {'obs_image': image(), 'obs_proprio': rng.normal(size=(8, 6)).astype(np.float32),
             'action': rng.uniform(-1, 1, (8, 2)).astype(np.float32),
             'reward': rng.normal(size=8).astype(np.float32), 'next_obs_image': image(),
             'next_obs_proprio': rng.normal(size=(8, 6)).astype(np.float32),
             'not_done': np.ones(8, np.float32), 'counts': np.array([5, 0])}
    loaded = DeviceBatchLoader('cpu')(batch)
    assert set(loaded) == set(BATCH_KEYS), 'only the batch keys travel (not the ring counts)'
    for k, v in loaded.items():
        assert isinstance(v, torch.Tensor) and np.array_equal(v.numpy(), batch[k])
        assert v.data_ptr() == batch[k].ctypes.data, 'the CPU path must not copy'
    assert agent.update(loaded)['num_updates'] == 1


# ------------------------------------------------------------------ auto real-time factor
def test_real_time_factor_follows_the_measured_cost():
    cfg = load_config({'sim': {'real_time_factor': 'auto'}, 'task': {'action_cycle_ms': 40.0}})
    # The thesis: 45 ms of sample + update per 40 ms cycle. Twice that cost: the world at half speed.
    factor, measured, message = realtime.resolve_real_time_factor(cfg, measure=lambda c: 90.0)
    assert (factor, measured) == (0.5, 90.0) and '90.0 ms' in message and '0.5' in message
    assert realtime.resolve_real_time_factor(cfg, measure=lambda c: 900.0)[0] == pytest.approx(0.05)
    cfg.task.action_cycle_ms = 75.0   # sync's cycle: the same world-time cost per update
    assert realtime.resolve_real_time_factor(cfg, measure=lambda c: 900.0)[0] == pytest.approx(0.05)
    factor, _, message = realtime.resolve_real_time_factor(cfg, measure=lambda c: 10.0)
    assert factor == 1.0 and 'capped at 1' in message   # a fast learner never speeds the world up
    fixed = load_config({'sim': {'real_time_factor': 0.25}})
    assert realtime.resolve_real_time_factor(fixed, measure=None)[:2] == (0.25, None)


def test_real_time_factor_from_a_real_short_measurement():
    cfg = load_config({'sim': {'real_time_factor': 'auto'}, 'image': {'width': 40, 'height': 40},
                       'sac': {'hidden_dim': 64, 'num_filters': 8, 'batch_size': 8, 'crop_height': 36,
                               'crop_width': 36, 'device': 'cpu', 'precision': 'fp32'}})
    measured = realtime.measure_sample_update_ms(cfg, iters=2, warmup=1)
    assert 0 < measured < 5000
    factor, got, message = realtime.resolve_real_time_factor(cfg, measure=lambda c: measured)
    assert factor == world_speed.factor_for(measured) and got == measured
    assert 'on cpu in fp32' in message
    assert torch.get_num_threads() == 1, 'the measurement restores the thread count'


def test_a_following_world_settles_where_an_update_costs_the_thesis_world_time():
    """In a run the update slows as the world speeds up (they share the CPU): here it costs
    60 + 150 f ms at factor f. Started from a quiet preflight's 0.67x, the world must settle
    where one update costs 45 ms of world time, not overshoot, and hold without figures."""
    follower = world_speed.UpdateCostFollower(0.67, every_s=10.0)
    cost = lambda f: 60.0 + 150.0 * f   # noqa: E731
    assert follower.poll(100.0) is None, 'nothing learned yet: no window'
    wall, updates, waited = 0.0, 500, 0.0
    follower.start(wall)
    factors = []
    for _ in range(12):
        end = wall + 10.0
        while wall < end:   # the learner's status after each update, and after each wait
            wall += cost(follower.factor) / 1e3
            updates += 1
            follower.learner_updates(updates, waited, wall)
            wall += 0.02   # held back for a batch (max_updates_per_step): not its cost
            waited += 20.0
            follower.learner_updates(updates, waited, wall)
        before = follower.factor
        new = follower.poll(wall)
        if new is not None:
            assert 1 / world_speed.FOLLOW_MAX_STEP - 1e-9 <= new / before <= world_speed.FOLLOW_MAX_STEP + 1e-9
        factors.append(follower.factor)
    settled = follower.factor
    assert settled * cost(settled) == pytest.approx(45.0, rel=0.05)   # f* = 0.383
    assert min(factors) > 0.3, 'it must approach, not overshoot far below'
    # A learner that goes quiet (dying, restarting): no figure, the speed stays.
    wall += 10.0
    assert follower.poll(wall) is None and follower.factor == settled
    # Restarted from an older checkpoint: its counts drop; the next window counts from there.
    for i in range(1, 60):
        follower.learner_updates(100 + i, 0.0, wall + i * 0.2)
    assert follower.poll(wall + 12.0) is not None
    assert follower.cost_ms == pytest.approx(200.0, rel=0.01)


def test_a_following_sync_world_uses_the_in_cycle_update_and_never_exceeds_real_time():
    follower = world_speed.UpdateCostFollower(0.5, every_s=5.0)
    follower.start(0.0)
    for ms in [0.0, 180.0, 0.0, 200.0, 220.0]:   # 0: a cycle without an update
        follower.in_cycle_update(ms)
    assert follower.poll(5.0) == pytest.approx(0.5 * (45.0 / 200.0 / 0.5) ** 0.5)
    assert follower.cost_ms == 200.0
    fast = world_speed.UpdateCostFollower(0.9, every_s=5.0)
    fast.start(0.0)
    for window in range(1, 8):
        fast.in_cycle_update(10.0)
        fast.poll(5.0 * window)
        assert fast.factor <= 1.0   # a fast learner never runs the world faster than real time
    assert fast.factor >= 0.98
    with pytest.raises(ValueError):
        world_speed.UpdateCostFollower(0.0)


def test_auto_follows_and_a_fixed_speed_does_not():
    from asyncrl_ros.run.config import ConfigError, parse_override
    from asyncrl_ros.run.profiles import resolve
    assert resolve('franka_sim_async2', 'quick')[1].sim.follow_update_cost is True
    # asyncrl-reproduce gives every run one number over the same setting: it must stay put.
    _, fixed = resolve('franka_sim_async2', 'quick', None,
                       [parse_override('sim.real_time_factor=0.4')])
    assert (fixed.sim.real_time_factor, fixed.sim.follow_update_cost) == (0.4, False)
    with pytest.raises(ConfigError, match='follow_update_cost'):
        load_config({'sim': {'follow_update_cost': 'yes'}})
