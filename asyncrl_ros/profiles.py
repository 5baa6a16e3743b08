"""Profiles: which nodes a run starts and with which setting file (config/profiles.yaml).

Read by the standalone bringup and by the launch files, so the node list of a
profile is written once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asyncrl_ros.config import ConfigError, ExperimentConfig, load_config, read_yaml

# Every node executable the package ships; module = asyncrl_ros.nodes.<name>_node.
NODE_EXECUTABLES = ('sim_world', 'reward', 'target_monitor', 'arm_driver', 'policy',
                    'replay_sampler', 'learner', 'recorder', 'camera')


def config_dir() -> Path:
    """config/ of the source tree (editable install) or share/asyncrl_ros/config (colcon)."""
    env = os.environ.get('ASYNCRL_CONFIG_DIR')
    if env:
        return Path(env)
    source = Path(__file__).resolve().parents[1] / 'config'
    if (source / 'profiles.yaml').is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('asyncrl_ros')) / 'config'
    except Exception:  # noqa: BLE001 - any failure means: not installed that way
        return source


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    nodes: tuple[str, ...]
    settings: dict
    default_setting: str

    def setting_path(self, setting: str | None = None) -> Path:
        setting = setting or self.default_setting
        if setting not in self.settings:
            raise ConfigError(f"profile '{self.name}' has no setting '{setting}' "
                              f"(choose one of {', '.join(self.settings)})")
        return config_dir() / self.settings[setting]


def load_profiles(path: Path | None = None) -> dict[str, Profile]:
    data = read_yaml(path or config_dir() / 'profiles.yaml')
    profiles = {}
    for name, spec in data.items():
        unknown = set(spec) - {'description', 'settings', 'default_setting', 'nodes'}
        if unknown:
            raise ConfigError(f"profile '{name}': unknown key '{sorted(unknown)[0]}'")
        nodes = tuple(spec['nodes'])
        for node in nodes:
            if node not in NODE_EXECUTABLES:
                raise ConfigError(f"profile '{name}': unknown node '{node}'")
        profiles[name] = Profile(name, spec.get('description', ''), nodes, dict(spec['settings']),
                                 spec['default_setting'])
    return profiles


def get_profile(name: str) -> Profile:
    profiles = load_profiles()
    if name not in profiles:
        raise ConfigError(f"unknown profile '{name}' (choose one of {', '.join(profiles)})")
    return profiles[name]


def resolve(profile: str, setting: str | None = None, config_file: str | None = None,
            overrides: list[dict] | None = None) -> tuple[Profile, ExperimentConfig]:
    """Profile plus its setting file (or an explicit one) plus overrides -> validated config."""
    prof = get_profile(profile)
    path = Path(config_file) if config_file else prof.setting_path(setting)
    return prof, load_config(path, *(overrides or []))
