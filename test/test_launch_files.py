"""The launch files and the rviz/rqt set-up for a ROS 2 install.

`ros2 launch` itself (launch_ros) is not on PyPI: scripts/setup_env.sh installs the real
`launch`, `launch_ros` and `ros2launch` from ../shared/ros2-launch where that folder exists.
Then the launch files are loaded and their actions checked against `plan()`, and one is run
the way `ros2 launch` runs it, to its end, checking the stop order. Everywhere, `plan()` is
checked against the profiles (asyncrl_ros.learning.modes), setup.py and the bringup, the stop order against its one
definition (runs.stop_stages), and the viewer configs against the topics and QoS the nodes
really use.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TEST_TAG_ENV, _tagged_processes

from asyncrl_ros.run import bringup
from asyncrl_ros.run import runs
from asyncrl_ros.run import launch_support as ls
from asyncrl_ros.run.config import ConfigError
from asyncrl_ros.run.profiles import load_profiles

LAUNCH_FILES = sorted((ROOT / 'launch').glob('*.launch.py'))
EXPECTED_FILES = {f'{arm}{world}_{kind}.launch.py' for arm in ('franka', 'ur5')
                  for world in ('_sim', '') for kind in ('sync', 'async')}


def launch_call(path: Path) -> tuple[str, tuple[str, ...]]:
    """The (profile or prefix, modes) a launch file hands to launch_support.generate."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'generate':
            name = ast.literal_eval(node.args[0])
            modes = next((kw.value for kw in node.keywords if kw.arg == 'modes'), None)
            if modes is None:
                return name, ()
            if isinstance(modes, ast.Name):
                return name, tuple(getattr(ls, modes.id))
            return name, tuple(ast.literal_eval(modes))
    raise AssertionError(f'{path.name} does not call launch_support.generate')


def console_scripts() -> set[str]:
    """Console-script names declared in setup.py (read, not executed)."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'NODES':
            return set(ast.literal_eval(node.value))
    raise AssertionError('setup.py has no NODES table')


def expected_parameters(node: str, run_dir: Path, sim: bool, resume: bool = False) -> dict:
    # In simulation every node but the world (the clock itself) runs on /clock.
    params = {'config_file': str(run_dir / 'config.yaml'),
              'use_sim_time': sim and node != 'sim_world'}
    if node in runs.STATEFUL_NODES:
        params.update(run_dir=str(run_dir), resume=resume)
    if node == 'recorder':
        params['bag_path'] = str(run_dir / 'bag')
    return params


def test_every_launch_file_exists_and_compiles():
    assert {p.name for p in LAUNCH_FILES} >= EXPECTED_FILES
    for path in LAUNCH_FILES:
        compile(path.read_text(), str(path), 'exec')


def test_launch_files_name_existing_profiles_or_fail_clearly(tmp_path):
    profiles = load_profiles()
    missing = []
    for path in LAUNCH_FILES:
        name, modes = launch_call(path)
        for profile in ls.candidate_profiles(name, modes):
            if profile in profiles:
                continue
            missing.append(f'{path.name}: {profile}')
            with pytest.raises(ConfigError, match=f"profile '{profile}' is not defined"):
                ls.plan(profile, run_dir=str(tmp_path / profile))
    if missing:
        warnings.warn('launch files whose profiles are not defined yet: '
                      + '; '.join(missing))


@pytest.mark.parametrize('profile', sorted(load_profiles()))
def test_plan_starts_the_profile_nodes_as_the_bringup_does(profile, tmp_path):
    prof = load_profiles()[profile]
    run_dir = tmp_path / 'run'
    p = ls.plan(profile, run_dir=str(run_dir))
    assert [n.name for n in p.nodes] == list(prof.nodes)   # record is off by default
    assert {n.executable for n in p.nodes} <= console_scripts()
    assert all(n.package == 'asyncrl_ros' and n.name == n.executable for n in p.nodes)
    sim = 'sim_world' in prof.nodes
    assert p.sim == sim == (p.config.world == 'sim') == ls.is_sim(prof)
    assert (p.driver_hint is None) == sim
    for n in p.nodes:
        assert n.parameters == expected_parameters(n.name, run_dir, sim), n.name
        # Exactly what the bringup's command line carries.
        cmd = bringup.node_command(n.name, run_dir / 'config.yaml', run_dir, False, sim)
        ours = {f'{k}:={str(v).lower() if isinstance(v, bool) else v}'
                for k, v in n.parameters.items()}
        assert ours == {r for r in cmd if ':=' in r}
        assert n.ends_run == (n.name not in runs.LEARNING_NODES)
        assert (n.stop_timeout_s is not None) == (n.name in runs.STATEFUL_NODES)
    # Nothing written until write_run; then what the bringup writes.
    assert not run_dir.exists()
    ls.write_run(p)
    written = yaml.safe_load((run_dir / 'config.yaml').read_text())
    assert written == p.config.to_dict()
    meta = yaml.safe_load((run_dir / 'run.yaml').read_text())
    assert meta['profile'] == profile and meta['nodes'] == list(prof.nodes)
    assert (run_dir / 'logs').is_dir()


def test_arguments_override_config_and_add_recorder_and_viewers(tmp_path):
    run_dir = tmp_path / 'run'
    args = {'setting': 'hires', 'image_width': '330', 'batch_size': '32',
            'action_cycle_ms': '50', 'real_time_factor': '0.1', 'episodes': '3',
            'set': 'sac.hidden_dim=256; run.seed=7', 'run_dir': str(run_dir),
            'record': 'true', 'rviz': 'true', 'rqt': 'true', 'image_height': ''}
    p = ls.plan_from_arguments('franka_sim_sync', args)
    cfg = p.config
    assert (cfg.image.width, cfg.image.height) == (330, 180)   # height from the hires file
    assert cfg.sac.batch_size == 32
    assert (cfg.task.action_cycle_ms, cfg.sim.real_time_factor) == (50.0, 0.1)
    assert (cfg.run.max_episodes, cfg.sac.hidden_dim, cfg.run.seed) == (3, 256, 7)
    names = [n.name for n in p.nodes]
    assert names[-3:] == ['recorder', 'rviz2', 'rqt_gui']
    rec = p.nodes[-3]
    assert rec.parameters['bag_path'] == str(run_dir / 'bag')
    rviz, rqt = p.nodes[-2:]
    assert (rviz.package, rqt.package) == ('rviz2', 'rqt_gui')
    for viewer, file in ((rviz, 'asyncrl.rviz'), (rqt, 'asyncrl.perspective')):
        path = Path(viewer.arguments[-1])
        assert path.name == file and path.is_file()
    assert not rviz.ends_run and rviz.parameters == {'use_sim_time': True}
    # `set` wins over the value arguments.
    p2 = ls.plan_from_arguments('franka_sim_sync', {'batch_size': '32', 'set': 'sac.batch_size=16',
                                                    'run_dir': str(run_dir)})
    assert p2.config.sac.batch_size == 16


@pytest.mark.parametrize('call, message', [
    (lambda d: ls.plan('no_such_profile', run_dir=d), "profile 'no_such_profile' is not defined"),
    (lambda d: ls.profile_name('franka_sim', ls.ASYNC_MODES, 'async9'), "unknown mode 'async9'"),
    (lambda d: ls.profile_name('franka_sim', ls.ASYNC_MODES, 'sync'), "unknown mode 'sync'"),
    (lambda d: ls.plan('franka_sim_sync', setting='ultra', run_dir=d), "has no setting 'ultra'"),
    (lambda d: ls.plan_from_arguments('franka_sim_sync', {'batch_size': 'many', 'run_dir': d}),
     "'sac.batch_size' must be int"),
    (lambda d: ls.plan_from_arguments('franka_sim_sync', {'set': 'sac.bogus=1', 'run_dir': d}),
     "unknown key 'sac.bogus'"),
    (lambda d: ls.plan_from_arguments('franka_sim_sync', {'set': 'nonsense', 'run_dir': d}),
     "is not of the form key=value"),
    (lambda d: ls.plan_from_arguments('franka_sim_sync', {'record': 'maybe', 'run_dir': d}),
     "'record' must be true or false"),
])
def test_bad_arguments_are_one_clear_error(call, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        call(str(tmp_path / 'run'))
    assert not (tmp_path / 'run').exists()


def test_real_arm_plan_names_the_driver_to_start(tmp_path):
    real = [name for name, prof in load_profiles().items() if not ls.is_sim(prof)]
    if not real:
        pytest.skip('no real-arm profile')
    p = ls.plan_from_arguments(real[0], {'robot_ip': '172.16.0.2', 'run_dir': str(tmp_path)})
    assert not p.sim and all(n.parameters['use_sim_time'] is False for n in p.nodes)
    assert 'robot_ip:=172.16.0.2' in p.driver_hint


def test_async_mode_picks_the_profile(tmp_path):
    assert ls.profile_name('franka_sim', ls.ASYNC_MODES, 'async1') == 'franka_sim_async1'
    p = ls.plan(ls.profile_name('franka_sim', ls.ASYNC_MODES, 'async2'), run_dir=str(tmp_path))
    assert p.config.mode == 'async2' and 'replay_sampler' in [n.name for n in p.nodes]


def test_resume_reuses_the_run_folder_and_checks_its_profile(tmp_path):
    run_dir = tmp_path / 'run'
    ls.write_run(ls.plan('franka_sim_sync', run_dir=str(run_dir),
                         overrides=[{'sac': {'batch_size': 24}}]))
    (run_dir / 'checkpoint.pt').write_bytes(b'x')
    with pytest.raises(ConfigError, match='already holds a run'):
        ls.plan('franka_sim_sync', run_dir=str(run_dir))
    p = ls.plan_from_arguments('franka_sim_sync', {'resume': str(run_dir), 'episodes': '5'})
    assert p.resume and p.run_dir == run_dir.resolve()
    assert (p.config.sac.batch_size, p.config.run.max_episodes) == (24, 5)
    assert p.nodes[-1].parameters['resume'] is True
    with pytest.raises(ConfigError, match="it is a 'franka_sim_sync' run"):
        ls.plan('franka_sim_async2', resume=str(run_dir))
    with pytest.raises(ConfigError, match='drop setting/config'):
        ls.plan('franka_sim_sync', setting='hires', resume=str(run_dir))


def test_environment_keeps_dds_on_loopback_unless_the_user_chose(monkeypatch, tmp_path):
    monkeypatch.delenv('ROS_AUTOMATIC_DISCOVERY_RANGE', raising=False)
    monkeypatch.delenv('ROS_LOCALHOST_ONLY', raising=False)
    monkeypatch.setenv('ROS_DISTRO', 'kilted')
    env = ls.launch_environment(tmp_path)
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST' and 'ROS_LOCALHOST_ONLY' not in env
    monkeypatch.setenv('ROS_DISTRO', 'humble')   # no discovery range before Iron
    assert ls.launch_environment(tmp_path)['ROS_LOCALHOST_ONLY'] == '1'
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'SUBNET')
    env = ls.launch_environment(tmp_path)
    assert 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in env and 'ROS_LOCALHOST_ONLY' not in env


def test_declared_arguments_follow_the_world():
    names = lambda *a: [s[0] for s in ls.argument_specs(*a)]   # noqa: E731
    sim = names('franka_sim', ls.ASYNC_MODES)
    assert sim[0] == 'mode' and 'real_time_factor' in sim and 'robot_ip' not in sim
    assert ls.argument_specs('franka_sim', ls.ASYNC_MODES)[0][1:] == (
        'async2', 'learning architecture', ['async1', 'async2'])
    assert 'mode' not in names('franka_sim_sync')
    for arg in ('setting', 'config_file', 'image_width', 'image_height', 'batch_size',
                'action_cycle_ms', 'run_dir', 'record', 'resume', 'set'):
        assert arg in sim


@pytest.mark.parametrize('profile', sorted(load_profiles()))
def test_stop_order_is_one_definition(profile, tmp_path):
    """runs.stop_stages: the policy first, then the learning nodes, then the arm_driver, then
    the rest (viewers too); every node exactly once. The bringup and launch_setup use it."""
    names = [n.name for n in ls.plan_from_arguments(profile, {
        'run_dir': str(tmp_path), 'record': 'true', 'rviz': 'true'}).nodes]
    stages = runs.stop_stages(names)
    assert sorted(n for stage in stages for n in stage) == sorted(names)
    assert stages[0] == [runs.MAIN_NODE]
    order = [n for stage in stages for n in stage]
    if runs.SAFETY_NODE in names:
        assert stages[-2] == [runs.SAFETY_NODE]
        assert all(order.index(n) < order.index(runs.SAFETY_NODE)
                   for n in runs.LEARNING_NODES if n in names)
    assert set(stages[-1]) == set(names) - {runs.MAIN_NODE, runs.SAFETY_NODE,
                                            *runs.LEARNING_NODES}


# Stands in for a node: says it is up, and on SIGINT notes when it began and ended stopping.
FAKE_NODE = """
import signal, sys, time
name, log = sys.argv[1], sys.argv[2]
def on_int(*_):
    with open(log, 'a') as f:
        f.write(f'{name} stopping {time.monotonic()}\\n')
    time.sleep(0.3)   # saving
    with open(log, 'a') as f:
        f.write(f'{name} ended {time.monotonic()}\\n')
    sys.exit(0)
signal.signal(signal.SIGINT, on_int)
print('up', flush=True)
while True:
    time.sleep(1)
"""


def test_bringup_stops_in_the_one_order(tmp_path, capsys):
    """bringup.stop_in_order: each stage of runs.stop_stages is signalled only after every
    node of the stage before has ended."""
    import time
    log = tmp_path / 'stops.log'
    names = ['sim_world', 'reward', 'target_monitor', 'arm_driver', 'policy', 'replay_sampler',
             'learner', 'recorder']
    procs = {n: subprocess.Popen([sys.executable, '-c', FAKE_NODE, n, str(log)],
                                 stdout=subprocess.PIPE, text=True) for n in names}
    for proc in procs.values():
        assert proc.stdout.readline().strip() == 'up'
    started = time.monotonic()
    bringup.stop_in_order(procs)
    assert all(p.returncode == 0 for p in procs.values())
    times = {}
    for line in log.read_text().splitlines():
        name, what, at = line.split()
        times[(name, what)] = float(at)
    stages = runs.stop_stages(names)
    assert stages[0] == ['policy'] and stages[-2] == ['arm_driver']
    for before, after in zip(stages, stages[1:]):
        assert max(times[(n, 'ended')] for n in before) < \
            min(times[(n, 'stopping')] for n in after), (before, after, times)
    # The policy's last transitions get STOP_SETTLE_S to reach the replay owner.
    assert min(times[(n, 'stopping')] for n in stages[1]) - times[('policy', 'ended')] >= \
        runs.STOP_SETTLE_S * 0.9
    assert time.monotonic() - started < 15
    printed = [line for line in capsys.readouterr().out.splitlines() if 'stopping' in line]
    assert printed == [f'[bringup] stopping {", ".join(stage)}' for stage in stages]


# ---- rviz and rqt ----

def test_rviz_config_shows_the_package_topics_with_matching_qos():
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from asyncrl_ros.nodes.common import (LATCHED_QOS, SENSOR_QOS, TOPIC_EE_MARKERS, TOPIC_IMAGE,
                                          TOPIC_MARKERS, TOPIC_REWARD_MASK)
    from asyncrl_ros.nodes.target_monitor_node import FRAME
    data = yaml.safe_load((ROOT / 'config' / 'asyncrl.rviz').read_text())
    manager = data['Visualization Manager']
    assert manager['Global Options']['Fixed Frame'] == FRAME == 'world'
    displays = {d['Topic']['Value']: d for d in manager['Displays'] if 'Topic' in d}
    assert set(displays) == {TOPIC_MARKERS, TOPIC_EE_MARKERS, TOPIC_IMAGE, TOPIC_REWARD_MASK}
    for topic in (TOPIC_MARKERS, TOPIC_EE_MARKERS):
        assert displays[topic]['Class'] == 'rviz_default_plugins/MarkerArray'
    names = {'Best Effort': ReliabilityPolicy.BEST_EFFORT, 'Reliable': ReliabilityPolicy.RELIABLE,
             'Transient Local': DurabilityPolicy.TRANSIENT_LOCAL,
             'Volatile': DurabilityPolicy.VOLATILE}
    # The arm_driver publishes its markers with a plain depth (rclpy: reliable, volatile).
    for topic, qos in ((TOPIC_MARKERS, LATCHED_QOS), (TOPIC_EE_MARKERS, QoSProfile(depth=10)),
                       (TOPIC_IMAGE, SENSOR_QOS), (TOPIC_REWARD_MASK, SENSOR_QOS)):
        sub = displays[topic]['Topic']
        # A subscriber asking more than the publisher offers never matches.
        assert names[sub['Reliability Policy']] == qos.reliability, topic
        assert names[sub['Durability Policy']] == qos.durability, topic
    for topic in (TOPIC_IMAGE, TOPIC_REWARD_MASK):
        assert displays[topic]['Class'] == 'rviz_default_plugins/Image'


def test_rqt_perspective_plots_real_message_fields():
    from asyncrl_ros_interfaces.msg import EpisodeMetrics, StepMetrics

    from asyncrl_ros.nodes.common import (TOPIC_DIAGNOSTICS, TOPIC_EPISODE_METRICS, TOPIC_IMAGE,
                                          TOPIC_STEP_METRICS)
    data = json.loads((ROOT / 'config' / 'asyncrl.perspective').read_text())
    manager = data['groups']['pluginmanager']
    # qt_gui evals every 'repr'; plain literals need no Qt types.
    running = ast.literal_eval(manager['keys']['running-plugins']['repr'])
    assert running == {'rqt_image_view/ImageView': [1], 'rqt_plot/Plot': [1, 2],
                       'rqt_runtime_monitor/RuntimeMonitor': [1]}
    expected_groups = {f"plugin__{plugin.replace('/', '__')}__{serial}"
                       for plugin, serials in running.items() for serial in serials}
    assert set(manager['groups']) == expected_groups

    def settings(group):
        keys = manager['groups'][group]['groups']['plugin']['keys']
        assert all(v['type'] == 'repr' for v in keys.values())
        return {k: ast.literal_eval(v['repr']) for k, v in keys.items()}

    assert settings('plugin__rqt_image_view__ImageView__1')['topic'] == TOPIC_IMAGE
    plotted = [t for serial in (1, 2)
               for t in settings(f'plugin__rqt_plot__Plot__{serial}')['topics']]
    assert plotted == [f'{TOPIC_EPISODE_METRICS}/episode_return', f'{TOPIC_STEP_METRICS}/cycle_ms']
    for path, msg in zip(plotted, (EpisodeMetrics, StepMetrics)):
        assert path.rsplit('/', 1)[1] in msg.get_fields_and_field_types()
    # rqt_runtime_monitor listens on /diagnostics (fixed), where the nodes report.
    assert TOPIC_DIAGNOSTICS == '/diagnostics'


# ---- the launch files themselves, where ros2 launch exists ----

def launch_available() -> bool:
    try:
        return (importlib.util.find_spec('launch_ros') is not None
                and hasattr(importlib.import_module('launch'), 'LaunchDescription'))
    except ImportError:
        return False


NO_LAUNCH = ('launch_ros is not on PyPI and ../shared/ros2-launch was not installed '
             '(scripts/setup_env.sh); the standalone bringup is tested instead')


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_matches_plan(path, tmp_path):
    if not launch_available():
        pytest.skip(NO_LAUNCH)
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler
    from launch_ros.actions import Node
    from launch_ros.utilities import evaluate_parameters

    spec = importlib.util.spec_from_file_location(path.stem.replace('.', '_'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    name, modes = launch_call(path)
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert [a.name for a in declared] == [s[0] for s in ls.argument_specs(name, modes)]
    profiles = load_profiles()
    for profile in ls.candidate_profiles(name, modes):
        context = LaunchContext()
        run_dir = tmp_path / profile
        context.launch_configurations['run_dir'] = str(run_dir)
        # A fixed world speed: `auto` would time the learner (the bringup's tests do).
        context.launch_configurations['real_time_factor'] = '0.5'
        if modes:
            context.launch_configurations['mode'] = profile.rsplit('_', 1)[1]
        for arg in declared:
            arg.execute(context)   # fills in the defaults
        opaque = next(e for e in description.entities if isinstance(e, OpaqueFunction))
        if profile not in profiles:
            with pytest.raises(ConfigError, match=f"profile '{profile}' is not defined"):
                opaque.execute(context)
            continue
        actions = opaque.execute(context)
        nodes = [a for a in actions if isinstance(a, Node)]
        expected = ls.plan(profile, run_dir=str(run_dir)).nodes
        assert [(n.node_package, n.node_executable) for n in nodes] == \
            [(e.package, e.executable) for e in expected]
        for node, exp in zip(nodes, expected):
            # launch_ros keeps the parameter dicts only privately; evaluate them as it would.
            (params,) = evaluate_parameters(context, node._Node__parameters)
            assert params == exp.parameters
        # Every node waits for its turn in the one stop order, driven by registered handlers.
        names = [e.executable for e in expected]
        order = nodes[0].stop_order
        assert all(node.stop_order is order for node in nodes)
        assert [[order.names[n] for n in stage] for stage in order.stages] == \
            runs.stop_stages(names)
        handlers = [a for a in actions if isinstance(a, RegisterEventHandler)]
        assert len(handlers) == 1 + 2 * len(nodes)
        assert actions.index(handlers[-1]) < actions.index(nodes[0])
        assert (run_dir / 'config.yaml').is_file() and (run_dir / 'run.yaml').is_file()


# A short run: episodes of 1.5 s at a world speed of 0.25 (the bringup tests' SHORT).
SHORT_RUN_SET = ('set:=task.episode_s=1.5;task.reset_s=1.0;run.init_random_steps=20;'
                 'sac.batch_size=16;sac.hidden_dim=256;sac.torch_threads=1')
# A shell starts a background job (`cmd &`, as CI scripts and nohup do) with SIGINT ignored, and
# children inherit that; launch only hears SIGINT through Python's default handler, so under such
# a job it would never see the test's Ctrl-C. A terminal's foreground `ros2 launch` has the
# default handler: give it back.
LAUNCH_SCRIPT = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from ros2launch.api import get_share_file_path_from_package, launch_a_launch_file
path = get_share_file_path_from_package(package_name='asyncrl_ros', file_name=sys.argv[1])
sys.exit(launch_a_launch_file(launch_file_path=path, launch_file_arguments=sys.argv[2:],
                              noninteractive=True))
"""


def start_ros2_launch(file: str, args: list[str], tmp_path: Path) -> subprocess.Popen:
    """`ros2 launch asyncrl_ros <file> <args>`, as ros2launch runs it, with the package
    installed as ros2 launch finds it (share/ and lib/ of the venv: scripts/setup_env.sh)."""
    if not launch_available():
        pytest.skip(NO_LAUNCH)
    prefix = Path(sys.prefix)
    if not (prefix / 'lib' / 'asyncrl_ros' / 'policy').exists() or not (
            prefix / 'share' / 'asyncrl_ros' / 'launch' / file).exists():
        pytest.skip(f'asyncrl_ros is not installed as ros2 launch finds it in {prefix} '
                    '(scripts/setup_env.sh)')
    env = dict(os.environ, AMENT_PREFIX_PATH=str(prefix), ROS_LOG_DIR=str(tmp_path / 'ros_log'),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    # One stream: launch's lines in the order things happened. Into a file, not a pipe: a
    # pipe nobody reads while the run goes on fills up (64 KiB) and blocks launch's writes.
    out = (tmp_path / 'ros2_launch_output.txt').open('w')
    proc = subprocess.Popen([sys.executable, '-c', LAUNCH_SCRIPT, file, *args], env=env,
                            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    return proc


def launch_output(proc: subprocess.Popen, tmp_path: Path, timeout: float) -> str:
    """Wait for `ros2 launch` to end; what it wrote."""
    proc.wait(timeout=timeout)
    return (tmp_path / 'ros2_launch_output.txt').read_text()


def check_stop_order(out: str, nodes: list[str]) -> list[str]:
    """From launch's own lines: every node started and finished cleanly (SIGINT only, no
    escalation), and each stage of runs.stop_stages was signalled only once the stage before
    it had ended. Returns the nodes in the order they ended."""
    events = [(m['what'], m['name']) for m in re.finditer(
        r"^\[INFO\] \[(?P<name>\w+)-\d+\]: (?P<what>process started|sending signal '\w+'|"
        r"process has finished cleanly)", out, re.M)]
    started = [n for what, n in events if what == 'process started']
    ended = [n for what, n in events if what == 'process has finished cleanly']
    assert sorted(started) == sorted(ended) == sorted(nodes), out[-4000:]
    assert 'process has died' not in out and 'failed to terminate' not in out, out[-4000:]
    signals = [(what, n) for what, n in events if what.startswith('sending signal')]
    assert all(what == "sending signal 'SIGINT'" for what, _ in signals), signals
    assert len({n for _, n in signals}) == len(signals), signals   # one each, from the chain
    position = {e: i for i, e in enumerate(events)}
    stages = runs.stop_stages(nodes)
    for before, after in zip(stages, stages[1:]):
        for b in before:
            for a in after:
                if ("sending signal 'SIGINT'", a) in position:
                    assert position[('process has finished cleanly', b)] < \
                        position[("sending signal 'SIGINT'", a)], (b, a, events)
    stopping = [out.index(f'[asyncrl] stopping {", ".join(stage)}') for stage in stages
                if f'[asyncrl] stopping {", ".join(stage)}' in out]
    assert stopping == sorted(stopping), out[-4000:]
    return ended


ASYNC2_NODES = ['sim_world', 'reward', 'target_monitor', 'arm_driver', 'policy',
                'replay_sampler', 'learner']


def test_ros2_launch_runs_to_its_end_and_stops_in_order(tmp_path):
    """franka_sim_async.launch.py as `ros2 launch asyncrl_ros franka_sim_async.launch.py`
    runs it: the policy ends the run after its 2 episodes, then the learning nodes are
    stopped, then the arm_driver, then the rest; every process ends cleanly, none is left."""
    run_dir = tmp_path / 'run'
    proc = start_ros2_launch('franka_sim_async.launch.py',
                             ['mode:=async2', 'episodes:=2', 'real_time_factor:=0.25',
                              SHORT_RUN_SET, f'run_dir:={run_dir}'], tmp_path)
    out = launch_output(proc, tmp_path, 240)
    assert proc.returncode == 0, out[-4000:]
    assert [int(e['episode']) for e in read_csv(run_dir / 'episodes.csv')] == [1, 2]
    ended = check_stop_order(out, ASYNC2_NODES)
    assert ended[0] == 'policy' and "to process[policy" not in out   # it ended by itself
    for stage in ('learner, replay_sampler', 'arm_driver', 'sim_world, reward, target_monitor'):
        assert f'[asyncrl] stopping {stage}' in out
    assert 'zero velocity commanded and acknowledged' in out
    # Nothing of the run is left: every process this test started has ended.
    assert _tagged_processes(os.environ[TEST_TAG_ENV]) == []


def test_ros2_launch_ctrl_c_stops_the_policy_first(tmp_path):
    """A SIGINT to `ros2 launch` (noninteractive: launch signals the nodes itself) while the
    policy runs: the policy is stopped first and saves, then the arm_driver, then the rest."""
    import signal
    import time
    run_dir = tmp_path / 'run'
    proc = start_ros2_launch('franka_sim_sync.launch.py',
                             ['episodes:=50', 'real_time_factor:=0.25', SHORT_RUN_SET,
                              f'run_dir:={run_dir}'], tmp_path)
    deadline = time.monotonic() + 150

    def episodes() -> int:
        path = run_dir / 'episodes.csv'
        return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0

    # Mid-run: after the second episode, while the third runs.
    while episodes() < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, 'not two episodes within 150 s'
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out = launch_output(proc, tmp_path, 120)
    assert proc.returncode == 0, out[-4000:]
    ended = check_stop_order(out, ['sim_world', 'reward', 'target_monitor', 'arm_driver',
                                   'policy'])
    assert ended[:2] == ['policy', 'arm_driver'], ended
    assert out.index('[asyncrl] stopping policy') < out.index('[asyncrl] stopping arm_driver')
    assert (run_dir / 'checkpoint.pt').is_file()   # the policy saved
    assert _tagged_processes(os.environ[TEST_TAG_ENV]) == []


def read_csv(path: Path) -> list[dict]:
    import csv
    with path.open() as f:
        return list(csv.DictReader(f))
