"""Experiment configuration: typed dataclasses whose defaults are the seeds' values.

The defaults live here (and in sac_config.py) once; a profile's setting is composed from
small overlays in config/overlays/ that say only what differs (asyncrl_ros.run.profiles).
`load_config` applies the layers in order and rejects unknown keys and wrong types with one
line naming the key (and the file), before any node starts.

The merge is hand-written (`_apply`, ~20 lines) rather than a library's (OmegaConf, Hydra):
the dataclasses already give every key's type, the errors name the key and the file, and a
dozen overlays need no interpolation, defaults lists or a new dependency.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from asyncrl_ros.learning import modes
from asyncrl_ros.agent.device import check_device, check_precision
from asyncrl_ros.robot.reward import FRANKA_ALPHA
from asyncrl_ros.agent.sac_config import SACConfig

# The mode and world names, in the registry's order (asyncrl_ros.learning.modes says what each means).
MODES = tuple(modes.MODES)
ARMS = ('franka', 'ur5', 'ur5e')
WORLDS = tuple(modes.WORLDS)
TASKS = ('reacher', 'tracker')
WEIGHT_TRANSPORTS = ('shm', 'topic')


class ConfigError(ValueError):
    """A configuration problem, reported as one line naming the offending key."""


@dataclass
class ImageConfig:
    width: int = 160
    height: int = 90


@dataclass
class TaskConfig:
    """The visual reacher of the paper (Franka); the UR5 settings override what differs."""
    # 'tracker' moves the target (UR5 monitor task of the thesis).
    name: str = 'reacher'
    action_cycle_ms: float = 40.0
    episode_s: float = 6.0
    # R = reward_scale * dt[ms] * mean(mask)   (paper, Eq. 3)
    reward_scale: float = FRANKA_ALPHA
    # The arm returns home in about 4 s after every episode.
    reset_s: float = 4.0


@dataclass
class RunConfig:
    # The paper trains for 72 minutes of episode time per run, whatever the step count.
    training_minutes: float = 72.0
    # Replay initialisation with random actions (5000 of 108000 steps at 40 ms).
    init_random_steps: int = 5000
    # Stop early after this many episodes (0: run until training_minutes).
    max_episodes: int = 0
    # The networks (and the policy's counters) are saved this often; the replay is committed
    # at every episode's start into <run>/replay/ (a crash loses at most the open episode).
    checkpoint_every_episodes: int = 10
    # Cap on SAC updates per environment step (the thesis needed 1 at baseline).
    max_updates_per_step: float = 1.0
    seed: int = 0
    # Where run folders go (relative paths are relative to the current directory).
    runs_dir: str = 'runs'
    # Record the run's topics into <run folder>/bag (rosbag2, MCAP).
    record: bool = False
    # TensorBoard event files in <run folder>/tensorboard/<process> (`tensorboard --logdir runs`).
    tensorboard: bool = True
    # Learner losses, temperature and entropy: the mean of every this many updates (cheap).
    tensorboard_every_updates: int = 50
    # The frames the policy acted on and their reward masks, every this many episodes (0: never).
    tensorboard_images_every: int = 10
    # SCHED_FIFO priority of the action path's processes (camera, reward, policy; arm_driver
    # 10 above: asyncrl_ros.run.scheduling); 0: normal scheduling. The real-arm profiles set it
    # (config/overlays/real.yaml); without permission a node keeps normal scheduling and says so.
    realtime_priority: int = 0


@dataclass
class SimConfig:
    # < 1 lets a slow CPU stand in for the seeds' GPU without pausing the world. 'auto': set
    # from a measured sample + update (asyncrl_ros.learning.realtime.resolve_real_time_factor).
    real_time_factor: float | str = 1.0
    # The world's speed until the policy's first learned action. The random phase has no
    # update to keep in ratio with the cycle, so a slowed world only costs wall time there.
    # 0: real_time_factor throughout.
    random_phase_real_time_factor: float = 0.0
    # Once learning begins, re-time the update as the run goes (every FOLLOW_EVERY_S wall
    # seconds) and follow it, from real_time_factor on (asyncrl_ros.learning.world_speed).
    # 'auto' turns it on; a number alone keeps that speed all run (as reproduce's runs do).
    follow_update_cost: bool = False
    physics_dt: float = 0.001
    joint_state_rate_hz: float = 100.0
    image_period_ms: float = 40.0
    # 5 ms divides the papers' 40, 75 and 80 ms cycles, so sim-time timers fire on time.
    clock_period_ms: float = 5.0


@dataclass
class CameraConfig:
    """The real arms' USB camera (the papers: a Logitech webcam at the wrist, 40 ms)."""
    # Index ('0'), device path ('/dev/video2'), video file or stream URL.
    device: str = '0'
    period_ms: float = 40.0


@dataclass
class SafetyConfig:
    # The policy is silent when no command came for this many action cycles.
    watchdog_cycles: float = 2.0
    joint_margin_rad: float = 0.05
    # Every output is ramped (rad/s^2 per joint, > 0, every arm): a Panda stops on velocity
    # steps, and the ramp is what stops the arm in time (v / a s, v^2 / 2a rad per joint). 5 is
    # below each Franka joint's limit (7.5 on joint 2); UR publishes none.
    max_acceleration: float = 5.0
    # Bound on every commanded joint velocity, rad/s; 0: each joint's own limit (Franka
    # datasheet, UR5 the thesis' 0.7). The Franka paper settings: 0.2 (ReLoD's).
    max_velocity: float = 0.0
    # Fraction of each joint's velocity bound the policy may use (actions in [-1, 1] scale to it).
    velocity_fraction: float = 0.5
    # Task joint ranges, one [lower, upper] (rad) per joint; []: the arm's hardware limits.
    joint_ranges: list = field(default_factory=list)
    # The end effector's box in the arm's base frame, [x, y, z] (m); []: the arm's task box.
    workspace_min: list = field(default_factory=list)
    workspace_max: list = field(default_factory=list)


@dataclass
class AsyncConfig:
    """How the async modes' processes exchange data (ignored in sync mode)."""
    # 'shm': shared memory on this host; 'topic': a ROS topic, for a learner on another host.
    weights_transport: str = 'shm'
    # Slots of the sampler -> learner batch ring (async2).
    ring_slots: int = 3
    # Ship weights to the policy every this many updates.
    publish_weights_every: int = 1
    # The learning processes yield the CPU to the policy and the world.
    learner_niceness: int = 10
    # A learner or replay_sampler that dies is restarted from its last checkpoint this
    # many times in a run (0: never; the policy then acts on its last weights).
    max_restarts: int = 3
    # The learner saves its networks this often; the replay owner commits the replay at
    # every episode's start. A restart continues from there.
    learner_checkpoint_s: float = 120.0


@dataclass
class ExperimentConfig:
    mode: str = 'sync'
    arm: str = 'franka'
    world: str = 'sim'
    image: ImageConfig = field(default_factory=ImageConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    run: RunConfig = field(default_factory=RunConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    asynchronous: AsyncConfig = field(default_factory=AsyncConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def warnings(self) -> list[str]:
        """Lines to print at start: bounds wider than the paper's on the Franka."""
        from asyncrl_ros.robot.arms import paper_bound_warnings
        return paper_bound_warnings(self)

    @property
    def learning_starts(self) -> int:
        """Transitions before the first update: the random phase, and at least one batch."""
        return max(self.run.init_random_steps, self.sac.batch_size)

    def validate(self) -> 'ExperimentConfig':
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode '{self.mode}' (choose one of {', '.join(MODES)})")
        if self.arm not in ARMS:
            raise ConfigError(f"unknown arm '{self.arm}' (choose one of {', '.join(ARMS)})")
        if self.task.name not in TASKS:
            raise ConfigError(f"unknown task.name '{self.task.name}' (choose one of {', '.join(TASKS)})")
        if self.world not in WORLDS:
            raise ConfigError(f"unknown world '{self.world}' (choose one of {', '.join(WORLDS)})")
        positive = {
            'image.width': self.image.width, 'image.height': self.image.height,
            'task.action_cycle_ms': self.task.action_cycle_ms, 'task.episode_s': self.task.episode_s,
            'sim.physics_dt': self.sim.physics_dt,
            'sac.batch_size': self.sac.batch_size, 'sac.replay_capacity': self.sac.replay_capacity,
            'run.training_minutes': self.run.training_minutes,
            'safety.watchdog_cycles': self.safety.watchdog_cycles,
        }
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"'{key}' must be > 0, got {value}")
        rtf = self.sim.real_time_factor
        if not isinstance(self.sim.follow_update_cost, bool):
            raise ConfigError("'sim.follow_update_cost' must be true or false, got "
                              f'{self.sim.follow_update_cost!r}')
        if rtf == 'auto':
            self.sim.follow_update_cost = True
        else:
            if isinstance(rtf, bool) or not isinstance(rtf, (int, float)) or not rtf > 0:
                raise ConfigError(f"'sim.real_time_factor' must be > 0 or 'auto', got {rtf!r}")
            self.sim.real_time_factor = float(rtf)
        fast = self.sim.random_phase_real_time_factor
        if not fast >= 0:
            raise ConfigError(f"'sim.random_phase_real_time_factor' must be >= 0 (0: as "
                              f"sim.real_time_factor), got {fast!r}")
        try:  # unknown names, and a CUDA device this machine lacks, before any node starts
            check_device('sac.device', self.sac.device)
            check_device('sac.act_device', self.sac.act_device)
            check_precision('sac.precision', self.sac.precision)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.sac.crop_height > self.image.height or self.sac.crop_width > self.image.width:
            raise ConfigError(
                f"crop {self.sac.crop_height}x{self.sac.crop_width} is larger than the image "
                f"{self.image.height}x{self.image.width} (set sac.crop_height/crop_width)")
        steps = self.sim.clock_period_ms / 1000.0 / self.sim.physics_dt
        if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
            raise ConfigError(f"'sim.clock_period_ms' ({self.sim.clock_period_ms:g}) must be a "
                              f"whole number of physics steps ({self.sim.physics_dt:g} s)")
        if self.world == 'sim':
            # A sim-time timer fires on a /clock tick: a cycle between ticks would run late.
            for key, period in (('task.action_cycle_ms', self.task.action_cycle_ms),
                                ('sim.image_period_ms', self.sim.image_period_ms)):
                ticks = period / self.sim.clock_period_ms
                if abs(ticks - round(ticks)) > 1e-6:
                    raise ConfigError(f"'{key}' ({period:g}) must be a whole number of "
                                      f"'sim.clock_period_ms' ({self.sim.clock_period_ms:g})")
        if self.asynchronous.weights_transport not in WEIGHT_TRANSPORTS:
            raise ConfigError(f"unknown asynchronous.weights_transport "
                              f"'{self.asynchronous.weights_transport}' (choose one of "
                              f"{', '.join(WEIGHT_TRANSPORTS)})")
        if self.asynchronous.ring_slots < 2 or self.asynchronous.publish_weights_every < 1:
            raise ConfigError("'asynchronous.ring_slots' must be >= 2 and "
                              "'asynchronous.publish_weights_every' >= 1")
        from asyncrl_ros.robot.arms import configured_arm   # imports the arm models' constants
        try:   # bounds beyond the arm's limits, a box or joint range without the home pose
            configured_arm(self)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if not 0 < self.safety.velocity_fraction <= 1:
            raise ConfigError("'safety.velocity_fraction' must be in (0, 1]")
        if self.run.init_random_steps < 0:
            raise ConfigError("'run.init_random_steps' must be >= 0")
        if self.run.tensorboard_every_updates < 1 or self.run.tensorboard_images_every < 0:
            raise ConfigError("'run.tensorboard_every_updates' must be >= 1 and "
                              "'run.tensorboard_images_every' >= 0")
        from asyncrl_ros.run.scheduling import MAX_SETTING
        if not 0 <= self.run.realtime_priority <= MAX_SETTING:
            raise ConfigError(f"'run.realtime_priority' must be in 0..{MAX_SETTING} (0: normal "
                              f"scheduling; the arm_driver runs 10 above it), got "
                              f"{self.run.realtime_priority}")
        if self.asynchronous.max_restarts < 0 or not self.asynchronous.learner_checkpoint_s > 0:
            raise ConfigError("'asynchronous.max_restarts' must be >= 0 and "
                              "'asynchronous.learner_checkpoint_s' > 0")
        return self


def _type_name(tp: Any) -> str:
    return getattr(tp, '__name__', str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and
                                              not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"'{key}' must be {_type_name(tp)}, got {value!r}")
    return value


def _apply(obj: Any, data: dict, prefix: str = '') -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.') or 'config'}' must be a mapping, got {data!r}")
    hints = get_type_hints(type(obj))
    for key, value in data.items():
        full = f'{prefix}{key}'
        if key not in hints:
            known = ', '.join(hints)
            raise ConfigError(f"unknown key '{full}' (known here: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, full + '.')
        else:
            setattr(obj, key, _coerce(full, value, hints[key]))


def parse_override(text: str) -> dict:
    """'sac.batch_size=32' -> {'sac': {'batch_size': 32}} (value parsed as YAML)."""
    if '=' not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split('=', 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': value is not valid YAML ({err})") from None
    out: dict = {}
    node = out
    parts = key.strip().split('.')
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def read_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else 'parse error'
        raise ConfigError(f"{path}: malformed YAML ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(*sources: dict | str | os.PathLike, validate: bool = True) -> ExperimentConfig:
    """Build a validated config from defaults plus dicts or YAML files, later ones winning
    (validate=False: merged only, for a caller that checks something first)."""
    cfg = ExperimentConfig()
    for source in sources:
        data = source if isinstance(source, dict) else read_yaml(source)
        try:
            _apply(cfg, data)
        except ConfigError as err:
            where = '' if isinstance(source, dict) else f'{source}: '
            raise ConfigError(f'{where}{err}') from None
    return cfg.validate() if validate else cfg


