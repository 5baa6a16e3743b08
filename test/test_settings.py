"""Every profile's every setting resolves to what it did before the settings were composed
from overlays (issue 14, item 4): test/fixtures/resolved_settings.json was written from the
one-YAML-per-setting config/ it replaced (the defaults once, each setting as its differences
from them, and each profile's nodes)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncrl_ros.config import ExperimentConfig
from asyncrl_ros.profiles import load_profiles, resolve

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
