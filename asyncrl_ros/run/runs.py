"""A run folder and the nodes of a run: shared by the standalone bringup and the launch files.

No ROS imports: it decides names, parameters and files, the callers start processes.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Sequence

import yaml

from asyncrl_ros.run.config import ConfigError, ExperimentConfig, load_config
from asyncrl_ros.run.profiles import Profile, check_profile, get_profile, resolve
from asyncrl_ros.agent.replay_files import REPLAY_FOLDER, ReplayFolderError, check_signature, replay_signature

# The node whose exit ends the run.
MAIN_NODE = 'policy'
# Nodes that keep state in the run folder (they get run_dir and resume).
STATEFUL_NODES = ('policy', 'learner', 'replay_sampler')
# Their death is reported but does not stop the run: the policy keeps acting on its last
# weights and the arm stays under the arm_driver's watch.
LEARNING_NODES = ('learner', 'replay_sampler')
# The safety layer stops before the robot side, so its last zero command is heard.
SAFETY_NODE = 'arm_driver'
# Time a stateful node may take to save when stopped (a replay can be GBs).
SAVE_TIMEOUT_S = 600.0
# The time any other node gets between SIGINT and being killed, in the bringup.
STOP_TIMEOUT_S = 20.0
# After the policy has stopped, before the learning nodes are asked to: its last
# transitions reach the replay owner.
STOP_SETTLE_S = 1.0


def stop_stages(nodes: Sequence[str]) -> list[list[str]]:
    """The order a run's nodes stop in, for the bringup and the launch files alike: the
    policy first (it saves, and the arm stops being commanded), then the learning nodes
    (they save their parts), then the safety layer (its last zero command is still heard by
    the robot side), then the rest at once. Each stage starts when the one before it has
    ended; stages without a node of `nodes` are left out."""
    first = [[MAIN_NODE], list(LEARNING_NODES), [SAFETY_NODE]]
    placed = {n for stage in first for n in stage}
    stages = [[n for n in stage if n in nodes] for stage in first]
    stages.append([n for n in nodes if n not in placed])
    return [stage for stage in stages if stage]


def prepare_run(profile: str | None, setting: str | None = None, config_file: str | None = None,
                overrides: Sequence[dict] = (), run_dir: str | None = None,
                resume: str | None = None) -> tuple[Profile, ExperimentConfig, Path]:
    """Resolve and validate a new run (or the one to resume); writes nothing."""
    if resume:
        run = Path(resume).resolve()
        meta_path = run / 'run.yaml'
        if not meta_path.is_file():
            raise ConfigError(f'cannot resume {run}: no run.yaml there')
        if setting or config_file:
            raise ConfigError('a resumed run keeps its own config.yaml; drop setting/config')
        started_as = (yaml.safe_load(meta_path.read_text()) or {}).get('profile')
        if profile and started_as != profile:
            raise ConfigError(f"cannot resume {run} as '{profile}': it is a '{started_as}' run")
        prof = get_profile(started_as)
        cfg = check_profile(prof, load_config(run / 'config.yaml', *overrides,
                                              validate=False)).validate()
        check_replay_folder(run, cfg)
        return prof, cfg, run
    if not profile:
        raise ConfigError('no profile given (use --list to see them)')
    prof, cfg = resolve(profile, setting, config_file, list(overrides))
    stamp = datetime.now().strftime('%Y%m%d-%H%M%S')
    run = Path(run_dir or Path(cfg.run.runs_dir) / f'{stamp}-{prof.name}').resolve()
    if (run / 'checkpoint.pt').exists() or (run / REPLAY_FOLDER / 'meta.json').exists():
        raise ConfigError(f'{run} already holds a run; resume it instead')
    return prof, cfg, run


def check_replay_folder(run: Path, cfg: ExperimentConfig) -> None:
    """A resumed run's replay folder must have been written with its settings (an override
    of the image size or the capacity, or a folder copied from another run, would not map)."""
    from asyncrl_ros.robot.arms import get_arm
    n = get_arm(cfg.arm).n_actuated
    signature = replay_signature(cfg.sac.replay_capacity, (3, cfg.image.height, cfg.image.width),
                                 3 * n, n, cfg.sac.frame_stack)
    try:
        check_signature(run / REPLAY_FOLDER, signature)
    except ReplayFolderError as err:
        raise ConfigError(str(err)) from None


def write_run(run_dir: Path, profile: Profile, cfg: ExperimentConfig, resume: bool) -> Path:
    """Write config.yaml (and run.yaml for a new run); returns the config file's path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / 'logs').mkdir(exist_ok=True)
    config_file = run_dir / 'config.yaml'
    config_file.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    if not resume:
        (run_dir / 'run.yaml').write_text(yaml.safe_dump(
            {'profile': profile.name, 'nodes': list(profile.nodes),
             'started': datetime.now().isoformat(timespec='seconds')}))
    return config_file


def run_nodes(profile: Profile, cfg: ExperimentConfig, record: bool = False) -> list[str]:
    return list(profile.nodes) + (['recorder'] if record or cfg.run.record else [])


def node_parameters(node: str, config_file: Path, run_dir: Path, resume: bool,
                    sim_time: bool) -> dict:
    """The ROS parameters one node of a run gets."""
    # In simulation every node runs on the world's /clock; the world itself is the clock.
    params = {'config_file': str(config_file), 'use_sim_time': sim_time and node != 'sim_world'}
    if node in STATEFUL_NODES:
        params.update(run_dir=str(run_dir), resume=bool(resume))
    if node == 'recorder':
        params['bag_path'] = str(run_dir / 'bag')
    return params
