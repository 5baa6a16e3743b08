"""What the launch files in launch/ start: a profile's nodes, exactly as the bringup starts them.

`plan()` is plain Python (profile + setting + overrides -> validated config, run folder,
and each node with its executable and ROS parameters), so it is tested without `launch`;
`generate()` wraps it in a LaunchDescription for `ros2 launch`. Which nodes a profile
starts follows from its mode and world (asyncrl_ros.learning.modes), the parameters each node gets
from asyncrl_ros.run.runs, as in the bringup.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence


from asyncrl_ros.run import bringup
from asyncrl_ros.run.config import ConfigError, ExperimentConfig, parse_override
from asyncrl_ros.run import runs
from asyncrl_ros.learning.modes import ASYNC_MODES
from asyncrl_ros.run.profiles import Profile, config_dir, load_profiles
from asyncrl_ros.run.runs import (LEARNING_NODES, MAIN_NODE, SAVE_TIMEOUT_S, STATEFUL_NODES,
                              STOP_SETTLE_S, node_parameters, prepare_run, run_nodes, stop_stages)

# Launch arguments that override one config value each (empty: the setting file's value).
VALUE_ARGS = {
    'image_width': 'image.width',
    'image_height': 'image.height',
    'batch_size': 'sac.batch_size',
    'action_cycle_ms': 'task.action_cycle_ms',
    'real_time_factor': 'sim.real_time_factor',
    'episodes': 'run.max_episodes',
}
SIM_ONLY_ARGS = ('real_time_factor',)
REAL_ONLY_ARGS = ('robot_ip',)

RVIZ_CONFIG = 'asyncrl.rviz'
RQT_PERSPECTIVE = 'asyncrl.perspective'


@dataclass
class NodeLaunch:
    """One process to start: what `launch_ros.actions.Node` gets."""
    name: str
    executable: str
    parameters: dict
    package: str = 'asyncrl_ros'
    arguments: list[str] = field(default_factory=list)
    output: str = 'screen'
    # Its exit ends the run (the bringup's rule: every node but the learning ones).
    ends_run: bool = True
    # Seconds between SIGINT and SIGTERM on shutdown (time to save its state).
    stop_timeout_s: float | None = None


@dataclass
class LaunchPlan:
    profile: Profile
    config: ExperimentConfig
    run_dir: Path
    resume: bool
    sim: bool
    nodes: list[NodeLaunch]
    env: dict[str, str]
    driver_hint: str | None = None

    @property
    def config_file(self) -> Path:
        return self.run_dir / 'config.yaml'

    def summary(self) -> str:
        names = ', '.join(n.name for n in self.nodes)
        return f'{self.profile.name} ({self.config.mode}): {names} -> {self.run_dir}'


def is_sim(profile: Profile) -> bool:
    """Known before any config is read: the profile's world (its config must agree)."""
    return profile.world == 'sim'


def profile_name(prefix_or_name: str, modes: Sequence[str] = (), mode: str = '') -> str:
    """'franka_sim' + mode 'async1' -> 'franka_sim_async1'; a plain profile name as is."""
    if not modes:
        return prefix_or_name
    if mode not in modes:
        raise ConfigError(f"unknown mode '{mode}' (choose one of {', '.join(modes)})")
    return f'{prefix_or_name}_{mode}'


def require_profile(name: str) -> Profile:
    profiles = load_profiles()
    if name not in profiles:
        raise ConfigError(f"profile '{name}' is not defined (defined: {', '.join(profiles)})")
    return profiles[name]


def bringup_parameters(node: str, config_file: Path, run_dir: Path, resume: bool,
                       sim_time: bool) -> dict:
    """The ROS parameters the bringup gives `node` (one source: asyncrl_ros.run.runs)."""
    return node_parameters(node, config_file, run_dir, resume, sim_time)


def launch_environment(run_dir: Path) -> dict[str, str]:
    """Variables to set for the nodes: the bringup's additions to this environment, except
    that a discovery range the user chose is kept (a learner on another host needs SUBNET)."""
    env = os.environ
    extra = {k: v for k, v in bringup.ros_environment(run_dir).items() if env.get(k) != v}
    if 'ROS_AUTOMATIC_DISCOVERY_RANGE' in env:
        extra.pop('ROS_AUTOMATIC_DISCOVERY_RANGE', None)
    # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE (Iron): its switch is ROS_LOCALHOST_ONLY.
    if (env.get('ROS_DISTRO') == 'humble' and 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in env
            and 'ROS_LOCALHOST_ONLY' not in env):
        extra['ROS_LOCALHOST_ONLY'] = '1'
    return extra


def plan(profile: str, setting: str | None = None, config_file: str | None = None,
         overrides: Sequence[dict] = (), run_dir: str | None = None, resume: str | None = None,
         record: bool = False, rviz: bool = False, rqt: bool = False,
         robot_ip: str = '') -> LaunchPlan:
    """Resolve a profile the way the bringup does; no file is written (see `write_run`)."""
    require_profile(profile)
    prof, cfg, run = prepare_run(profile, setting, config_file, overrides, run_dir, resume)
    sim = is_sim(prof)   # the config's world is the profile's (profiles.check_profile)
    config_path = run / 'config.yaml'
    names = run_nodes(prof, cfg, record)
    nodes = []
    for name in names:
        params = bringup_parameters(name, config_path, run, bool(resume), sim)
        stateful = name in STATEFUL_NODES
        nodes.append(NodeLaunch(name, name, params, ends_run=name not in LEARNING_NODES,
                                stop_timeout_s=SAVE_TIMEOUT_S if stateful else None))
    viewers = {'rviz2': (rviz, 'rviz2', ['-d', str(config_dir() / RVIZ_CONFIG)]),
               'rqt_gui': (rqt, 'rqt_gui', ['--perspective-file',
                                            str(config_dir() / RQT_PERSPECTIVE)])}
    for name, (wanted, package, arguments) in viewers.items():
        if wanted:
            nodes.append(NodeLaunch(name, name, {'use_sim_time': sim}, package=package,
                                    arguments=arguments, output='log', ends_run=False))
    # The drivers are the user's to start (they own the real-time loop); the profile's
    # description says how.
    hint = None if sim else prof.description.replace('robot_ip:=...',
                                                     f'robot_ip:={robot_ip or "..."}')
    return LaunchPlan(prof, cfg, run, bool(resume), sim, nodes, launch_environment(run), hint)


def parse_flag(name: str, value: str) -> bool:
    text = str(value).strip().lower()
    if text in ('true', '1', 'yes', 'on'):
        return True
    if text in ('false', '0', 'no', 'off', ''):
        return False
    raise ConfigError(f"launch argument '{name}' must be true or false, got {value!r}")


def overrides_from_arguments(args: Mapping[str, str]) -> list[dict]:
    """Value arguments, then `set` ('key=value;key=value'), later ones winning."""
    out = [parse_override(f'{VALUE_ARGS[k]}={v}') for k, v in args.items()
           if k in VALUE_ARGS and str(v).strip() != '']
    out += [parse_override(part.strip()) for part in str(args.get('set', '')).split(';')
            if part.strip()]
    return out


def plan_from_arguments(profile: str, args: Mapping[str, str]) -> LaunchPlan:
    """`plan` from launch arguments as strings (what `ros2 launch ... key:=value` gives)."""
    return plan(profile, setting=args.get('setting') or None,
                config_file=args.get('config_file') or None,
                overrides=overrides_from_arguments(args), run_dir=args.get('run_dir') or None,
                resume=args.get('resume') or None,
                record=parse_flag('record', args.get('record', 'false')),
                rviz=parse_flag('rviz', args.get('rviz', 'false')),
                rqt=parse_flag('rqt', args.get('rqt', 'false')),
                robot_ip=args.get('robot_ip', ''))


def write_run(p: LaunchPlan) -> Path:
    """Write the run folder's config.yaml (and run.yaml for a new run), as the bringup does."""
    return runs.write_run(p.run_dir, p.profile, p.config, p.resume)


def candidate_profiles(prefix_or_name: str, modes: Sequence[str] = ()) -> list[str]:
    return [profile_name(prefix_or_name, modes, m) for m in modes] if modes else [prefix_or_name]


def argument_specs(prefix_or_name: str, modes: Sequence[str] = (),
                   default_mode: str | None = None) -> list[tuple[str, str, str, list | None]]:
    """(name, default, description, choices) of every launch argument a launch file declares."""
    try:
        known = load_profiles()
    except ConfigError:
        known = {}
    existing = [known[n] for n in candidate_profiles(prefix_or_name, modes) if n in known]
    # Missing profiles fail at launch with their name; until then offer both kinds' arguments.
    sim = {is_sim(p) for p in existing}
    specs = []
    if modes:
        specs.append(('mode', default_mode or modes[-1], 'learning architecture', list(modes)))
    specs += [
        ('setting', '', "setting of the profile (e.g. baseline, hires); empty: its default", None),
        ('config_file', '', 'explicit setting YAML instead of the profile setting', None),
        ('image_width', '', 'image width in pixels; empty: from the setting', None),
        ('image_height', '', 'image height in pixels; empty: from the setting', None),
        ('batch_size', '', 'SAC mini-batch size; empty: from the setting', None),
        ('action_cycle_ms', '', 'action cycle in ms; empty: from the setting', None),
        ('real_time_factor', '', 'simulated world speed vs real time; empty: from the setting',
         None),
        ('episodes', '', 'stop after this many episodes; empty: from the setting', None),
        ('set', '', "more overrides: 'key=value;key=value' (e.g. sac.actor_lr=0.0003)", None),
        ('run_dir', '', 'run folder; empty: <run.runs_dir>/<time>-<profile>', None),
        ('resume', '', 'continue the run in this run folder', None),
        ('record', 'false', 'also record the run into <run folder>/bag (rosbag2, MCAP)', None),
        ('robot_ip', '', "the arm's IP, for the driver command printed at start", None),
        ('rviz', 'false', f'also start rviz2 with config/{RVIZ_CONFIG}', None),
        ('rqt', 'false', f'also start rqt with config/{RQT_PERSPECTIVE}', None),
    ]
    drop = set(REAL_ONLY_ARGS) if sim == {True} else set(SIM_ONLY_ARGS) if sim == {False} else set()
    return [s for s in specs if s[0] not in drop]


def generate(prefix_or_name: str, modes: Sequence[str] | None = None,
             default_mode: str | None = None):
    """LaunchDescription for one profile, or for '<prefix>_<mode>' with a `mode` argument
    (default: the last of `modes`)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    modes = tuple(modes or ())
    specs = argument_specs(prefix_or_name, modes, default_mode)
    declared = [DeclareLaunchArgument(name, default_value=default, description=text,
                                      choices=choices)
                for name, default, text, choices in specs]
    return LaunchDescription(declared + [OpaqueFunction(
        function=launch_setup, args=[prefix_or_name, modes, [s[0] for s in specs]])])


class StopOrder:
    """The run's stop order (runs.stop_stages, the bringup's too) in `launch`.

    `launch` itself stops every process at once: each one's own OnShutdown handler sends it
    SIGINT. The launch files' nodes (`StagedNode`) instead wait for their stage; whatever
    starts the shutdown (a node's exit, a Ctrl-C, a Shutdown action) begins this chain:
    SIGINT to the nodes of one stage (launch's ShutdownProcess event, so their SIGTERM and
    SIGKILL timers apply), and when all of them have exited (OnProcessExit) the next stage,
    STOP_SETTLE_S after the policy's. Its handlers are RegisterEventHandler actions
    (`event_handlers`). A Ctrl-C typed in a terminal reaches every node of the terminal's
    process group at once, as with any `ros2 launch`; the nodes take the chain's SIGINT as
    the same request.
    """

    def __init__(self, stages: Sequence[Sequence[tuple[str, object]]]):
        self.stages = [[id(action) for _, action in stage] for stage in stages]
        self.actions = {id(action): action for stage in stages for _, action in stage}
        self.names = {id(action): name for stage in stages for name, action in stage}
        self.index = 0
        self.begun = False
        self.released: set[int] = set()    # nodes whose turn has come
        self.started: set[int] = set()
        self.exited: set[int] = set()
        self.waiting: set[int] = set()

    def turn_of(self, action) -> bool:
        return id(action) in self.released

    def begin(self, context=None):
        """Start the ordered stop (called by every node and on Shutdown; the first counts)."""
        if self.begun:
            return None
        self.begun = True
        return self.advance(context)

    def advance(self, context=None):
        """Signal the current stage; past it while none of its nodes is running."""
        from launch.actions import EmitEvent, LogInfo
        from launch.events import matches_action
        from launch.events.process import ShutdownProcess

        actions = []
        while self.index < len(self.stages):
            pending = [n for n in self.stages[self.index] if n not in self.exited]
            if pending and not all(n in self.released for n in pending):
                self.released.update(pending)
                actions.append(LogInfo(msg='[asyncrl] stopping ' + ', '.join(
                    self.names[n] for n in pending)))
                actions += [EmitEvent(event=ShutdownProcess(
                    process_matcher=matches_action(self.actions[n]))) for n in pending]
            # A node whose process has not started yet gets its SIGINT when it does (launch
            # defers it); the chain waits for the running ones.
            self.waiting = {n for n in pending if n in self.started}
            if self.waiting:
                return actions
            settle = self.next_stage()
            if settle:
                return actions + settle
        return actions or None

    def next_stage(self) -> list:
        """Move on; after the policy's stage, a pause first (returned as a timer)."""
        from launch.actions import OpaqueFunction, TimerAction
        done = self.stages[self.index]
        self.index += 1
        if self.index < len(self.stages) and any(self.names[n] == MAIN_NODE for n in done):
            return [TimerAction(period=STOP_SETTLE_S, cancel_on_shutdown=False,
                                actions=[OpaqueFunction(function=self.advance)])]
        return []

    def on_exit(self, action, context):
        self.exited.add(id(action))
        if not (self.begun and id(action) in self.waiting):
            return None
        self.waiting.discard(id(action))
        if self.waiting:
            return None
        return self.next_stage() or self.advance(context)

    def event_handlers(self) -> list:
        """RegisterEventHandler actions: OnShutdown begins the chain; every node's
        OnProcessStart and OnProcessExit drive it."""
        from launch.actions import RegisterEventHandler
        from launch.event_handlers import OnProcessExit, OnProcessStart, OnShutdown

        out = [RegisterEventHandler(OnShutdown(
            on_shutdown=lambda event, context: self.begin(context)))]
        for action in self.actions.values():
            out.append(RegisterEventHandler(OnProcessStart(
                target_action=action,
                on_start=lambda event, context, a=action: self.started.add(id(a)))))
            out.append(RegisterEventHandler(OnProcessExit(
                target_action=action,
                on_exit=lambda event, context, a=action: self.on_exit(a, context))))
        return out


def staged_node_class():
    """launch_ros's Node whose shutdown waits for its turn in a StopOrder."""
    from launch_ros.actions import Node

    class StagedNode(Node):
        stop_order: StopOrder | None = None   # set once all the run's nodes exist

        def _shutdown_process(self, context, *, send_sigint):
            # Called by launch's own OnShutdown (every node at once) and by ShutdownProcess.
            if self.stop_order is None:
                return super()._shutdown_process(context, send_sigint=send_sigint)
            if self.stop_order.turn_of(self):
                # Always a SIGINT of its own: one from a terminal's Ctrl-C is the same request.
                return super()._shutdown_process(context, send_sigint=True)
            return self.stop_order.begin(context)

    return StagedNode


def launch_setup(context, prefix_or_name: str, modes: Sequence[str], arg_names: Sequence[str]):
    """OpaqueFunction body: resolve, write the run folder, return the actions."""
    from launch.actions import LogInfo, SetEnvironmentVariable, Shutdown

    StagedNode = staged_node_class()
    args = {name: context.launch_configurations.get(name, '') for name in arg_names}
    p = plan_from_arguments(profile_name(prefix_or_name, modes, args.get('mode', '')), args)
    measured = bringup.preflight(p.config)   # real_time_factor auto; a GPU replay that fits
    write_run(p)
    if measured:
        (p.run_dir / 'realtime.json').write_text(json.dumps(measured, indent=2))
    actions = [SetEnvironmentVariable(k, v) for k, v in p.env.items()]
    actions.append(LogInfo(msg=f'[asyncrl] {p.summary()}'))
    if p.driver_hint:
        actions.append(LogInfo(msg=f'[asyncrl] {p.driver_hint}'))
    nodes = {}
    for n in p.nodes:
        kwargs = {}
        if n.ends_run:
            kwargs['on_exit'] = Shutdown(reason=f'{n.name} exited')
        if n.stop_timeout_s is not None:
            kwargs['sigterm_timeout'] = str(n.stop_timeout_s)
        nodes[n.name] = StagedNode(package=n.package, executable=n.executable, name=n.name,
                                   parameters=[n.parameters], arguments=n.arguments or None,
                                   output=n.output, **kwargs)
    stop_order = StopOrder([[(name, nodes[name]) for name in stage]
                            for stage in stop_stages(list(nodes))])
    for node in nodes.values():
        node.stop_order = stop_order
    # The handlers first: a node that exits at once is still seen.
    return actions + stop_order.event_handlers() + list(nodes.values())
