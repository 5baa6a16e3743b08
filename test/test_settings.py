"""Every profile's every setting resolves to what it did before the settings were composed
from overlays (issue 14, item 4): test/fixtures/resolved_settings.json was written from the
one-YAML-per-setting config/ it replaced (the defaults once, each setting as its differences
from them, and each profile's nodes). Changed on purpose since: run.realtime_priority
(0 by default, 50 on a real arm); sim.random_phase_real_time_factor (0 by default, 1 in the
simulated world), sac.torch_threads 2 for the async learners at quick, and
sim.follow_update_cost (true wherever real_time_factor is auto) (issue 12)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncrl_ros.run.config import ExperimentConfig
from asyncrl_ros.run.profiles import load_profiles, resolve

FIXTURE = json.loads((Path(__file__).parent / 'fixtures' / 'resolved_settings.json').read_text())


def flat(d: dict, prefix: str = '') -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


PAIRS = [(p, s) for p, e in sorted(FIXTURE['profiles'].items()) for s in e['settings']]


def test_defaults_are_unchanged():
    assert flat(ExperimentConfig().to_dict()) == FIXTURE['defaults']


def test_every_profile_and_setting_is_still_offered():
    profiles = load_profiles()
    assert sorted(profiles) == sorted(FIXTURE['profiles'])
    for name, entry in FIXTURE['profiles'].items():
        assert list(profiles[name].settings) == list(entry['settings']), name
        assert profiles[name].default_setting == entry['default_setting']
        assert list(profiles[name].nodes) == entry['nodes'], name


@pytest.mark.parametrize('profile, setting', PAIRS)
def test_resolved_values_are_unchanged(profile, setting):
    _, cfg = resolve(profile, setting)
    got = flat(cfg.to_dict())
    want = {**FIXTURE['defaults'], **FIXTURE['profiles'][profile]['settings'][setting]}
    assert got == want
    # Same types too (an int where a float was would be written differently).
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}


# ---- the overlays: each says only what differs from what lies below it ----
def layers_of(profile: str, setting: str) -> list[Path]:
    from asyncrl_ros.run.profiles import get_profile, overlay_layers
    return overlay_layers(get_profile(profile), setting)


@pytest.mark.parametrize('profile, setting', PAIRS)
def test_no_overlay_sets_what_lies_below_it(profile, setting):
    """Applied in order over the defaults and the profile's arm/world/mode, every value an
    overlay sets differs from the one it overrides: no file repeats a default, or a value an
    arm's, world's, setting's or mode's overlay already set."""
    from asyncrl_ros.run.config import _apply, read_yaml
    from asyncrl_ros.run.profiles import get_profile
    cfg = ExperimentConfig()
    _apply(cfg, get_profile(profile).identity)
    for path in layers_of(profile, setting):
        data = read_yaml(path)
        before = flat(cfg.to_dict())
        _apply(cfg, data)
        after = flat(cfg.to_dict())
        for key in flat(data):
            assert after[key] != before[key], (
                f'{path.name} sets {key} to {after[key]!r}, which it already is '
                f'({profile}, {setting})')


def test_every_overlay_is_used_and_named_in_order():
    from asyncrl_ros.run.profiles import read_overlays
    used = {path.stem for p, s in PAIRS for path in layers_of(p, s)}
    assert used == set(read_overlays())


def test_layers_apply_general_before_specific():
    assert [p.stem for p in layers_of('franka_sim_sync', 'quick')] == [
        'franka', 'sim', 'quick', 'sync', 'franka+quick', 'franka+sync', 'franka+quick+sync']
    assert [p.stem for p in layers_of('ur5_async2', 'baseline')] == ['ur5', 'real', 'baseline']


@pytest.mark.parametrize('name, says', [
    ('sync+franka', 'in the order arm + world + setting + mode'),
    ('franka+franka', 'once each'),
    ('franka+ultra', "unknown part 'ultra'"),
])
def test_a_badly_named_overlay_is_one_error(name, says):
    from asyncrl_ros.run.config import ConfigError
    from asyncrl_ros.run.profiles import overlay_parts
    with pytest.raises(ConfigError) as err:
        overlay_parts(name)
    assert says in str(err.value)


def test_an_overlay_cannot_set_the_profiles_keys(tmp_path):
    from asyncrl_ros.run.config import ConfigError
    from asyncrl_ros.run.profiles import read_overlays
    (tmp_path / 'sync.yaml').write_text('mode: async1\n')
    with pytest.raises(ConfigError, match="'mode' is the profile's to set"):
        read_overlays(tmp_path)


# ---- the mode registry: one table says what each mode runs ----
def test_profiles_follow_the_registry():
    from asyncrl_ros.learning import modes
    for prof in load_profiles().values():
        assert prof.nodes == modes.WORLDS[prof.world].nodes + modes.COMMON_NODES + \
            modes.MODES[prof.mode].learning_nodes
        assert prof.name == modes.profile_name(prof.arm, prof.world, prof.mode)
        assert set(prof.nodes) <= set(modes.NODE_EXECUTABLES)
        owner = modes.MODES[prof.mode].replay_owner
        assert owner in prof.nodes and modes.MODES[prof.mode].updater in prof.nodes
    assert modes.ASYNC_MODES == ('async1', 'async2')


def test_setup_py_entry_points_are_the_registrys():
    """setup.py keeps its node entry points literal (building imports nothing): the same."""
    import ast
    from asyncrl_ros.learning.modes import entry_points
    tree = ast.parse((Path(__file__).parents[1] / 'setup.py').read_text())
    nodes = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', '') == 'NODES')
    assert nodes == {**entry_points(), 'bringup': 'asyncrl_ros.run.bringup:main'}
    import importlib
    for target in entry_points().values():
        module = target.split(':')[0]
        assert importlib.util.find_spec(module) is not None, module


@pytest.mark.parametrize('kwargs, says', [
    ({'overrides': [{'mode': 'async1'}]},
     "profile 'franka_sim_async2' runs mode 'async2', the config says 'async1'; for async1, "
     "start profile 'franka_sim_async1'"),
    ({'overrides': [{'world': 'real'}]},
     "runs world 'sim', the config says 'real'; for real, start profile 'franka_async2'"),
    ({'overrides': [{'arm': 'ur5'}]}, "runs arm 'franka', the config says 'ur5'"),
    ({'config_file': 'SYNC'}, "runs mode 'async2', the config says 'sync'"),
])
def test_a_mode_the_profile_does_not_run_is_one_error_line(kwargs, says, tmp_path):
    from asyncrl_ros.run.config import ConfigError
    if kwargs.get('config_file') == 'SYNC':
        (tmp_path / 'sync.yaml').write_text('mode: sync\nsac: {batch_size: 64}\n')
        kwargs = {'config_file': str(tmp_path / 'sync.yaml')}
    with pytest.raises(ConfigError) as err:
        resolve('franka_sim_async2', **kwargs)
    assert says in str(err.value) and '\n' not in str(err.value)


def test_a_config_file_takes_the_settings_place_under_the_profiles_mode(tmp_path):
    """--config FILE: the defaults, the profile's arm/world/mode, then the file (a resolved
    run folder's config.yaml reproduces itself)."""
    path = tmp_path / 'mine.yaml'
    path.write_text('sac: {batch_size: 64}\n')
    prof, cfg = resolve('ur5_sim_async1', config_file=str(path))
    assert (cfg.mode, cfg.world, cfg.arm, cfg.sac.batch_size) == ('async1', 'sim', 'ur5e', 64)
    assert cfg.task.episode_s == 6.0   # no overlay: the file stands for the whole setting
    import yaml
    _, hires = resolve('ur5_sim_sync', 'hires')
    path.write_text(yaml.safe_dump(hires.to_dict()))
    assert resolve('ur5_sim_sync', config_file=str(path))[1].to_dict() == hires.to_dict()
