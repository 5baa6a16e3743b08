"""run.realtime_priority: the action path's processes under SCHED_FIFO, or a clear fallback."""
import json
import resource
import shutil
import subprocess
import sys

import pytest

from asyncrl_ros.run.config import ConfigError, ExperimentConfig
from asyncrl_ros.run.profiles import resolve

# A process with a few threads, made real-time, reporting every thread's policy.
PROBE = '''
import json, os, sys, threading
from asyncrl_ros.run.scheduling import make_process_realtime
ready, done = threading.Barrier(4), threading.Event()
before = [threading.Thread(target=lambda: (ready.wait(), done.wait())) for _ in range(3)]
[t.start() for t in before]
ready.wait()
note = make_process_realtime(int(sys.argv[1]))
later = threading.Thread(target=done.wait); later.start()   # started after: inherits it
policies = {tid: (os.sched_getscheduler(int(tid)), os.sched_getparam(int(tid)).sched_priority)
            for tid in os.listdir('/proc/self/task')}
done.set()
print(json.dumps({'note': note, 'threads': len(policies),
                  'policies': sorted(set(policies.values()))}))
'''


def probe(priority: int, preexec=None, prefix=()) -> dict:
    out = subprocess.run([*prefix, sys.executable, '-c', PROBE, str(priority)],
                         capture_output=True, text=True, timeout=120, preexec_fn=preexec)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def permitted() -> bool:
    import os
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except PermissionError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


@pytest.mark.skipif(not permitted(), reason='this machine does not allow SCHED_FIFO')
def test_every_thread_and_every_later_thread_becomes_fifo():
    import os
    got = probe(37)
    assert got['threads'] == 5
    assert got['policies'] == [[os.SCHED_FIFO, 37]], got
    assert got['note'] == 'SCHED_FIFO priority 37 for all 4 threads'


def test_without_permission_the_process_keeps_normal_scheduling_and_says_how_to_allow_it():
    import os
    setpriv = shutil.which('setpriv')

    def no_rtprio():
        resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
    # root would still have CAP_SYS_NICE: drop it from the bounding set for the child.
    prefix = ((setpriv, '--bounding-set', '-sys_nice', '--inh-caps', '-sys_nice')
              if os.geteuid() == 0 and setpriv else ())
    if os.geteuid() == 0 and not setpriv:
        pytest.skip('root without setpriv: cannot take CAP_SYS_NICE away')
    got = probe(37, no_rtprio, prefix)
    assert got['policies'] == [[os.SCHED_OTHER, 0]], got
    assert 'not permitted' in got['note'] and 'ulimit -r' in got['note'], got['note']


def test_priority_zero_changes_nothing_and_bad_priorities_are_config_errors():
    import os
    got = probe(0)
    assert got['policies'] == [[os.SCHED_OTHER, 0]]
    for bad in (-1, 90):
        cfg = ExperimentConfig()
        cfg.run.realtime_priority = bad
        with pytest.raises(ConfigError, match='run.realtime_priority'):
            cfg.validate()


def test_real_arm_profiles_run_their_action_path_realtime_and_sim_profiles_do_not():
    for mode in ('sync', 'async1', 'async2'):
        assert resolve(f'franka_{mode}')[1].run.realtime_priority == 50
        assert resolve(f'ur5_{mode}')[1].run.realtime_priority == 50
        assert resolve(f'franka_sim_{mode}')[1].run.realtime_priority == 0


def test_the_arm_driver_preempts_the_rest_of_the_action_path():
    from asyncrl_ros.run.scheduling import REALTIME_NODES, node_priority
    assert {n: node_priority(n, 50) for n in REALTIME_NODES} == {
        'camera': 50, 'reward': 50, 'policy': 50, 'arm_driver': 60}
    assert {node_priority(n, 0) for n in REALTIME_NODES} == {0}
