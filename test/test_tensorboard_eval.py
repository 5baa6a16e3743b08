"""TensorBoard event files (read back with tensorboard's own reader) and the pieces of
`--eval` that need no node: the acting backend, the evaluation log, its checks and
asyncrl-compare's table. The end-to-end runs are in test_reproduce.py."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from asyncrl_ros.learning.checkpoint import save_checkpoint
from asyncrl_ros.run.config import ConfigError, load_config
from asyncrl_ros.learning.evaluate import EvalBackend, EvalLog, prepare_eval, summarise
from asyncrl_ros.learning.remote import make_agent
from asyncrl_ros.run.tensorboard_log import TensorBoardLog
from conftest import ROOT

T95_DF2 = 4.303


def events(path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance={'scalars': 0, 'images': 0})
    acc.Reload()
    return acc


def scalar(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_policy_and_learner_scalars_and_images(tmp_path):
    tb = TensorBoardLog(tmp_path, 'policy', every_updates=3)
    steps = [{'action_ms': 2.0, 'sampling_ms': 0.0, 'update_ms': 0.0, 'environment_ms': 1.0,
              'wall_cycle_ms': 40.0}] * 3 + [{'action_ms': 4.0, 'sampling_ms': 5.0,
                                              'update_ms': 100.0, 'environment_ms': 3.0,
                                              'wall_cycle_ms': 'nan'}]
    row = {'episode': 1, 'return': 12.5, 'steps': 4, 'sim_time_s': 0.2, 'wall_time_s': 90.0,
           'cycle_mean_ms': 40.0, 'cycle_p99_ms': 41.0, 'updates': 7, 'updates_per_step': 0.5,
           'weights_version': 7, 'weights_age_steps_mean': 1.5, 'weights_age_ms_mean': 30.0,
           'transitions_sent': 4, 'transitions_stored': 4}
    tb.episode(row, steps, replay_size=4, training_min=0.1)
    for k in range(1, 7):   # means of every 3 updates; the actor's only on every second
        tb.update({'critic_loss': float(k), 'alpha': 0.1, 'entropy': -1.0,
                   **({'actor_loss': 10.0 * k} if k % 2 == 0 else {})}, k, update_ms=20.0)
    red = np.zeros((3, 8, 10), np.uint8)
    red[0] = 200   # a red frame: all mask
    tb.images(10, np.concatenate([red, np.zeros_like(red), red]))
    tb.close()

    acc = events(tmp_path / 'tensorboard' / 'policy')
    assert scalar(acc, 'episode/return') == [(1, 12.5)]
    assert scalar(acc, 'time/wall_min') == [(1, 1.5)]
    assert scalar(acc, 'replay/size') == [(1, 4.0)]
    assert scalar(acc, 'learning/updates_per_step') == [(1, 0.5)]
    assert scalar(acc, 'learning/weights_age_steps') == [(1, 1.5)]
    assert scalar(acc, 'cycle/p99_ms') == [(1, 41.0)]
    assert scalar(acc, 'components/action_ms') == [(1, 2.0)]      # median of 2, 2, 2, 4
    assert scalar(acc, 'components/update_ms') == [(1, 100.0)]    # the one step that updated
    assert scalar(acc, 'cycle/wall_mean_ms') == [(1, 40.0)]       # the nan left out
    assert scalar(acc, 'loss/critic') == [(3, 2.0), (6, 5.0)]
    assert scalar(acc, 'loss/actor') == [(3, 20.0), (6, 50.0)]
    for tag in ('loss/temperature',):
        assert tag not in acc.Tags()['scalars']   # never given: not invented
    assert scalar(acc, 'sac/temperature')[0][1] == pytest.approx(0.1)
    assert scalar(acc, 'sac/entropy') == [(3, -1.0), (6, -1.0)]
    assert scalar(acc, 'learner/update_ms') == [(3, 20.0), (6, 20.0)]
    assert set(acc.Tags()['images']) == {'observation/frames', 'observation/reward_mask'}
    frames = acc.Images('observation/frames')
    # The stack's 3 frames side by side; the mask white where the frame is red.
    assert frames[0].step == 10 and (frames[0].width, frames[0].height) == (30, 8)
    import cv2
    png = acc.Images('observation/reward_mask')[0].encoded_image_string
    mask = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (8, 30)
    assert (mask[:, :10] == 255).all() and (mask[:, 10:20] == 0).all() and (mask[:, 20:] == 255).all()


def test_disabled_writer_writes_nothing(tmp_path):
    tb = TensorBoardLog(tmp_path, 'policy', enabled=False)
    tb.episode({'episode': 1, 'return': 1.0})
    tb.update({'critic_loss': 1.0}, 50)
    tb.close()
    assert not (tmp_path / 'tensorboard').exists()
    with pytest.raises(ConfigError, match='tensorboard_every_updates'):
        load_config({'run': {'tensorboard_every_updates': 0}})


def write_run(tmp_path, mode: str, checkpoint: bool = True):
    """A run folder as the bringup and policy leave it, with real networks saved."""
    cfg = load_config({'mode': mode, 'sac': {'hidden_dim': 32, 'num_filters': 8}})
    run = tmp_path / mode
    run.mkdir()
    (run / 'config.yaml').write_text(yaml.safe_dump(cfg.to_dict()))
    (run / 'run.yaml').write_text(yaml.safe_dump({'profile': f'franka_sim_{mode}'}))
    agent = make_agent(cfg, 21, 7)
    agent.num_updates = 99 if mode == 'sync' else 123   # the count travels with the agent
    if checkpoint:
        if mode == 'sync':
            save_checkpoint(run / 'checkpoint.pt', agent, None,
                            {'episode': 4, 'total_steps': 300, 'learner': {'steps': 300}})
        else:
            save_checkpoint(run / 'learner_checkpoint.pt', agent, None)
            save_checkpoint(run / 'checkpoint.pt', None, None, {'episode': 6, 'total_steps': 900})
    return cfg, run, agent


@pytest.mark.parametrize('mode', ['sync', 'async2'])
def test_eval_backend_acts_on_the_saved_mean_and_learns_nothing(tmp_path, mode):
    cfg, run, saved = write_run(tmp_path, mode)
    backend = EvalBackend(cfg, 21, 7, run)
    assert backend.info == ({'checkpoint': 'checkpoint.pt', 'updates': 99, 'training_episode': 4,
                             'training_steps': 300} if mode == 'sync' else
                            {'checkpoint': 'learner_checkpoint.pt', 'updates': 123,
                             'training_episode': 6, 'training_steps': 900})
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (9, 90, 160), dtype=np.uint8)
    proprio = rng.normal(size=21).astype(np.float32)
    # explore=True is ignored: always the mean, the same as the saved agent's deterministic act.
    a = backend.act(image, proprio, explore=True)
    assert np.array_equal(a, backend.act(image, proprio, explore=True))
    assert np.array_equal(a, saved.act(image, proprio, deterministic=True))
    fresh = make_agent(load_config({'mode': mode, 'sac': {'hidden_dim': 32, 'num_filters': 8},
                                    'run': {'seed': 7}}), 21, 7)
    assert not np.array_equal(a, fresh.act(image, proprio, deterministic=True))
    before = {k: v.clone() for k, v in backend.agent.actor.state_dict().items()}
    backend.add(a, 1.0, image[:3], proprio, False)
    assert backend.learn() == {'sampling_ms': 0.0, 'update_ms': 0.0}
    assert len(backend.replay) == 0 and backend.sent == 0
    assert all(torch.equal(v, backend.agent.actor.state_dict()[k]) for k, v in before.items())


def test_eval_refuses_other_profiles_and_runs_without_a_checkpoint(tmp_path):
    _, run, _ = write_run(tmp_path, 'async1', checkpoint=False)
    with pytest.raises(ConfigError, match="it is a 'franka_sim_async1' run"):
        prepare_eval(str(run), 3, 'franka_sim_sync')
    with pytest.raises(ConfigError, match=r'no checkpoint \(learner_checkpoint.pt'):
        prepare_eval(str(run), 3)
    with pytest.raises(ConfigError, match='not a run folder'):
        prepare_eval(str(tmp_path), 3)
    with pytest.raises(ConfigError, match='episodes >= 1'):
        prepare_eval(str(run), 0)


def test_eval_log_and_compare_table(tmp_path, capsys):
    assert summarise([1.0, 2.0, 6.0])['ci95_half'] == pytest.approx(
        T95_DF2 * np.std([1, 2, 6], ddof=1) / math.sqrt(3))
    assert math.isnan(summarise([5.0])['ci95_half'])
    from test_compare import make_run
    from asyncrl_ros.run.compare import main
    dirs = []
    for k, returns in enumerate(([1.0, 2.0, 6.0], [3.0, 3.0, 3.0])):
        run = make_run(tmp_path, f's{k}', 'sync', 'franka_sim_sync', [(1, 1.0, 10), (2, 2.0, 20)])
        log = EvalLog(run, 3, {'checkpoint': 'checkpoint.pt', 'updates': 20, 'training_episode': 2})
        for r in returns:
            log.episode(r, 10, 40.0)
        assert log.complete
        summary = log.finish(tensorboard=k == 0)
        assert summary['explore'] is False and summary['returns'] == returns
        dirs.append(run)
    saved = json.loads((dirs[0] / 'eval.json').read_text())
    assert saved['mean_return'] == pytest.approx(3.0) and saved['updates'] == 20
    assert scalar(events(dirs[0] / 'tensorboard' / 'eval'), 'eval/mean_return') == [(2, 3.0)]
    assert len((dirs[0] / 'eval.csv').read_text().splitlines()) == 4

    out = tmp_path / 'out'
    assert main([*map(str, dirs), '--out', str(out)]) == 0
    assert 'deterministic return      3.0 ± 0.0' in capsys.readouterr().out
    from test_compare import read
    rows = {r['run']: r for r in read(out / 'evaluation.csv')}
    assert float(rows[str(dirs[0])]['ci95_half']) == pytest.approx(saved['ci95_half'])
    assert float(rows['all']['mean_return']) == 3.0 and rows['all']['n'] == '2'


def test_bringup_eval_bad_input_is_one_line_exit_2(tmp_path):
    _, run, _ = write_run(tmp_path, 'sync', checkpoint=False)
    result = subprocess.run([sys.executable, '-m', 'asyncrl_ros.run.bringup', '--eval', '2', str(run)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env=dict(os.environ))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'asyncrl: error: cannot evaluate {run}: no checkpoint (checkpoint.pt: the policy has '
        'not saved its networks yet)']
    assert not (run / 'eval_config.yaml').exists()   # refused before anything was written
