"""`python -m asyncrl_ros.nodes NAME [--ros-args ...]`: one node process, as the bringup and
the tests start them (see the package docstring for why this comes before the imports)."""
import faulthandler
import importlib
import os
import signal
import sys

from asyncrl_ros.nodes import NODE_LOG_ENV, take_over_signals

if __name__ == '__main__':
    take_over_signals()
    # `kill -USR1 PID` writes every thread's Python stack into the node's log: what a node
    # that does not end is doing, without a debugger.
    log = os.environ.get(NODE_LOG_ENV)
    faulthandler.register(signal.SIGUSR1, file=open(log, 'a') if log else sys.stderr, all_threads=True)
    if len(sys.argv) < 2:
        sys.exit('usage: python -m asyncrl_ros.nodes NAME [--ros-args ...]')
    from asyncrl_ros.learning.modes import node_module   # the one naming rule (no heavy imports)
    try:
        module = node_module(sys.argv.pop(1))
    except ValueError as err:
        sys.exit(f'asyncrl_ros.nodes: {err}')
    importlib.import_module(module).main()
