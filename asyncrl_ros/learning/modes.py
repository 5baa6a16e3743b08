"""The one table of what a run is made of: per learning mode, per world, per arm.

Everything that depends on the mode reads it here: which processes a run starts (the
bringup, the launch files, the profiles), how the policy learns (its backend), where the
learner's batches come from, which process owns the replay, and whose checkpoint holds the
acting weights. A profile is one arm x world x mode; its node list follows from them, and
its settings (composed from config/overlays/, see asyncrl_ros.run.profiles) from the arm and
the world. The node executables are listed here once (setup.py keeps its entry points
literal, so that building imports nothing; test_settings.py checks they are these).

No ROS and no package imports: setup.py, the node launcher and the config can all read it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    name: str
    description: str
    # Processes beyond the world's and the common ones, in start order.
    learning_nodes: tuple[str, ...]
    # How the policy node learns: 'in_process' (it samples and updates in its own timer
    # turn) or 'remote' (it sends transitions and reads weights another process publishes).
    policy_backend: str
    # Where the SAC updates get their batches: 'in_process' (the policy's own replay),
    # 'own_replay' (the learner samples its own replay) or 'ring' (the replay_sampler's
    # batches through the shared-memory ring).
    batch_source: str
    # The node that stores transitions and keeps <run>/replay/.
    replay_owner: str
    # The node that runs the SAC updates (its checkpoint holds the acting weights).
    updater: str


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode('sync', 'Seq-SAC (act, store, sample, update in one loop)', (),
         policy_backend='in_process', batch_source='in_process', replay_owner='policy',
         updater='policy'),
    Mode('async1', 'Async-SAC-1 (policy | one process that samples and updates)', ('learner',),
         policy_backend='remote', batch_source='own_replay', replay_owner='learner',
         updater='learner'),
    Mode('async2', 'Async-SAC-2 (policy | replay_sampler | learner)',
         ('replay_sampler', 'learner'),
         policy_backend='remote', batch_source='ring', replay_owner='replay_sampler',
         updater='learner'),
)}
# The modes with learning processes of their own (the async launch files' `mode` argument).
ASYNC_MODES = tuple(name for name, m in MODES.items() if m.learning_nodes)


@dataclass(frozen=True)
class World:
    name: str
    # The node(s) that stand for the world, started first.
    nodes: tuple[str, ...]
    # Settings this world adds to every arm's (a CPU-sized run only makes sense simulated).
    settings: tuple[str, ...]


WORLDS: dict[str, World] = {w.name: w for w in (
    World('sim', ('sim_world',), ('quick',)),
    World('real', ('camera',), ()),
)}

# Every run has these, after the world's node(s) and before the mode's learning nodes.
COMMON_NODES = ('reward', 'target_monitor', 'arm_driver', 'policy')


@dataclass(frozen=True)
class Arm:
    """An arm as profiles name it."""
    name: str
    # The config's `arm` per world (the simulated UR5 is the UR5e model).
    config_arm: dict
    # The profile description's head per world.
    label: dict
    # The paper's or thesis' settings (config/overlays/<setting>.yaml).
    settings: tuple[str, ...]
    # What a real-arm run needs started by the user (robot_ip:=... is filled in at launch).
    driver: str


ARMS: dict[str, Arm] = {a.name: a for a in (
    Arm('franka', {'sim': 'franka', 'real': 'franka'},
        {'sim': 'Simulated Franka Panda, visual reacher', 'real': 'Real Franka Panda'},
        ('baseline', 'hires'),
        'needs franka_ros2 (ros2 launch franka_bringup franka.launch.py robot_ip:=...) with '
        'forward_velocity_controller active and a USB camera'),
    Arm('ur5', {'sim': 'ur5e', 'real': 'ur5'},
        {'sim': 'Simulated UR5 (UR5e model) facing a monitor, thesis reacher/tracker '
                '(--set task.name=tracker)',
         'real': 'Real UR5, thesis reacher/tracker'},
        ('baseline', 'hires', 'large_batch'),
        'needs ur_robot_driver (ur_control.launch.py ur_type:=ur5 robot_ip:=... '
        'initial_joint_controller:=forward_velocity_controller) and a USB camera'),
)}

DEFAULT_SETTING = 'baseline'
# Every setting name, in the order profiles offer them.
SETTINGS = tuple(dict.fromkeys(s for a in ARMS.values() for s in a.settings)) + tuple(
    dict.fromkeys(s for w in WORLDS.values() for s in w.settings))

# Started on request (--record, run.record), in any world and mode.
OPTIONAL_NODES = ('recorder',)
# Every node executable the package ships.
NODE_EXECUTABLES = tuple(dict.fromkeys(
    [n for w in WORLDS.values() for n in w.nodes] + list(COMMON_NODES)
    + [n for m in MODES.values() for n in m.learning_nodes] + list(OPTIONAL_NODES)))


def node_module(node: str) -> str:
    """The module whose main() runs `node` (python -m asyncrl_ros.nodes NODE, setup.py)."""
    if node not in NODE_EXECUTABLES:
        raise ValueError(f"unknown node '{node}' (choose one of {', '.join(NODE_EXECUTABLES)})")
    return f'asyncrl_ros.nodes.{node}_node'


def entry_points() -> dict[str, str]:
    """The console scripts of the node executables, as setup.py declares them."""
    return {node: f'{node_module(node)}:main' for node in NODE_EXECUTABLES}


def run_nodes(world: str, mode: str) -> tuple[str, ...]:
    """The processes a run starts, in start order (the recorder comes on request)."""
    return WORLDS[world].nodes + COMMON_NODES + MODES[mode].learning_nodes


def profile_name(arm: str, world: str, mode: str) -> str:
    """franka, sim, async2 -> 'franka_sim_async2'; real arms go without the world."""
    return f'{arm}_sim_{mode}' if world == 'sim' else f'{arm}_{mode}'
