"""Profiles: one arm x world x mode (asyncrl_ros.learning.modes), and their settings composed from
small overlays in config/overlays/.

A setting resolves, later layers winning, from:
  1. the defaults, which live once, in the dataclasses of asyncrl_ros.run.config and sac_config;
  2. the profile's arm, world and mode (the `arm`, `world` and `mode` keys: no file sets them);
  3. every overlay whose name's parts all match the run, general before specific: first the
     one-part ones in the order arm, world, setting, mode (`franka.yaml`, `sim.yaml`,
     `hires.yaml`, `sync.yaml`), then two parts (`franka+hires.yaml`, `franka+sync.yaml`),
     then three (`franka+hires+sync.yaml`);
  4. `--set key=value` overrides.
An explicit config file (`--config FILE`, or a run folder's resolved config.yaml on
`--resume`) takes the place of step 3. A config whose mode, world or arm is not the
profile's is one ConfigError line: the node list follows from the profile.

Read by the standalone bringup and by the launch files alike.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asyncrl_ros.run.config import ConfigError, ExperimentConfig, load_config, read_yaml
from asyncrl_ros.learning.modes import (ARMS, DEFAULT_SETTING, MODES, NODE_EXECUTABLES, SETTINGS, WORLDS,
                               profile_name, run_nodes)

__all__ = ['NODE_EXECUTABLES', 'OVERLAYS', 'Profile', 'config_dir', 'get_profile', 'load_profiles',
           'overlay_layers', 'read_overlays', 'resolve', 'check_profile']

OVERLAYS = 'overlays'
# Set by the profile, never by an overlay.
IDENTITY_KEYS = ('mode', 'world', 'arm')
# An overlay's name: parts of these kinds, in this order, joined by '+'.
PART_KINDS = (('arm', tuple(ARMS)), ('world', tuple(WORLDS)), ('setting', SETTINGS),
              ('mode', tuple(MODES)))


def config_dir() -> Path:
    """config/ of the source tree (editable install) or share/asyncrl_ros/config (colcon)."""
    env = os.environ.get('ASYNCRL_CONFIG_DIR')
    if env:
        return Path(env)
    source = Path(__file__).resolve().parents[2] / 'config'
    if (source / OVERLAYS).is_dir():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('asyncrl_ros')) / 'config'
    except Exception:  # noqa: BLE001 - any failure means: not installed that way
        return source


def overlay_parts(name: str) -> dict[str, str]:
    """'franka+hires+sync' -> {'arm': 'franka', 'setting': 'hires', 'mode': 'sync'}."""
    parts = name.split('+')
    kinds = []
    for part in parts:
        kind = next((k for k, names in PART_KINDS if part in names), None)
        if kind is None:
            known = '; '.join(f"{k}: {', '.join(names)}" for k, names in PART_KINDS)
            raise ConfigError(f"overlay '{name}': unknown part '{part}' (known: {known})")
        kinds.append(kind)
    order = [k for k, _ in PART_KINDS]
    if len(set(kinds)) != len(kinds) or kinds != sorted(kinds, key=order.index):
        raise ConfigError(f"overlay '{name}': name its parts once each, in the order "
                          f"{' + '.join(order)}")
    return dict(zip(kinds, parts))


def read_overlays(directory: Path | None = None) -> dict[str, tuple[Path, dict]]:
    """Every overlay in config/overlays/: name -> (file, data), checked for their names and
    for the keys only a profile sets."""
    directory = directory or config_dir() / OVERLAYS
    out = {}
    for path in sorted(directory.glob('*.yaml')):
        overlay_parts(path.stem)
        data = read_yaml(path)
        for key in IDENTITY_KEYS:
            if key in data:
                raise ConfigError(f"{path}: '{key}' is the profile's to set, not an overlay's")
        out[path.stem] = (path, data)
    return out


@dataclass(frozen=True)
class Profile:
    name: str
    arm: str
    world: str
    mode: str
    description: str
    nodes: tuple[str, ...]
    settings: tuple[str, ...]
    default_setting: str

    @property
    def identity(self) -> dict:
        """The keys a profile fixes: its mode, world and the config's arm."""
        return {'mode': self.mode, 'world': self.world, 'arm': ARMS[self.arm].config_arm[self.world]}

    def check_setting(self, setting: str | None) -> str:
        setting = setting or self.default_setting
        if setting not in self.settings:
            raise ConfigError(f"profile '{self.name}' has no setting '{setting}' "
                              f"(choose one of {', '.join(self.settings)})")
        return setting


def load_profiles() -> dict[str, Profile]:
    """Every arm x world x mode: simulated first, then the real arms."""
    profiles = {}
    for world in WORLDS.values():
        for arm in ARMS.values():
            for mode in MODES.values():
                name = profile_name(arm.name, world.name, mode.name)
                description = f'{arm.label[world.name]}, {mode.description}'
                if world.name == 'real':
                    description += f'; {arm.driver}'
                profiles[name] = Profile(name, arm.name, world.name, mode.name, description,
                                         run_nodes(world.name, mode.name),
                                         arm.settings + world.settings, DEFAULT_SETTING)
    return profiles


def get_profile(name: str) -> Profile:
    profiles = load_profiles()
    if name not in profiles:
        raise ConfigError(f"unknown profile '{name}' (choose one of {', '.join(profiles)})")
    return profiles[name]


def overlay_layers(profile: Profile, setting: str | None = None,
                   overlays: dict[str, tuple[Path, dict]] | None = None) -> list[Path]:
    """The overlay files of one setting of `profile`, in the order they apply."""
    setting = profile.check_setting(setting)
    run = {'arm': profile.arm, 'world': profile.world, 'setting': setting, 'mode': profile.mode}
    order = [k for k, _ in PART_KINDS]
    chosen = []
    for name, (path, _) in (overlays if overlays is not None else read_overlays()).items():
        parts = overlay_parts(name)
        if all(run[kind] == part for kind, part in parts.items()):
            chosen.append(((len(parts), [order.index(k) for k in parts]), path))
    return [path for _, path in sorted(chosen, key=lambda c: c[0])]


def check_profile(profile: Profile, cfg: ExperimentConfig) -> ExperimentConfig:
    """A config (a file, a resumed run's, or --set) must run the profile's mode, world and
    arm: the processes started follow from the profile. Checked before validation (an arm's
    bounds would fail first); names nobody knows are left to validation to report."""
    from asyncrl_ros.run.config import ARMS as CONFIG_ARMS
    known = {'mode': MODES, 'world': WORLDS, 'arm': CONFIG_ARMS}
    for key, want in profile.identity.items():
        got = getattr(cfg, key)
        if got not in known[key]:
            continue
        if key == 'arm':
            ok = got in ARMS[profile.arm].config_arm.values()
        else:
            ok = got == want
        if ok:
            continue
        hint = ''
        if key == 'mode':
            hint = f"; for {got}, start profile '{profile_name(profile.arm, profile.world, got)}'"
        elif key == 'world':
            hint = f"; for {got}, start profile '{profile_name(profile.arm, got, profile.mode)}'"
        raise ConfigError(f"profile '{profile.name}' runs {key} '{want}', the config says "
                          f"'{got}'{hint}")
    return cfg


def resolve(profile: str, setting: str | None = None, config_file: str | None = None,
            overrides: list[dict] | None = None) -> tuple[Profile, ExperimentConfig]:
    """Profile plus its composed setting (or an explicit file) plus overrides -> validated config."""
    prof = get_profile(profile)
    layers = [Path(config_file)] if config_file else overlay_layers(prof, setting)
    cfg = load_config(prof.identity, *layers, *(overrides or []), validate=False)
    return prof, check_profile(prof, cfg).validate()
