"""`python -m asyncrl_ros.nodes NAME [--ros-args ...]`: one node process, as the bringup and
the tests start them (see the package docstring for why this comes before the imports)."""
import importlib
import sys

from asyncrl_ros.nodes import take_over_signals

if __name__ == '__main__':
    take_over_signals()
    if len(sys.argv) < 2:
        sys.exit('usage: python -m asyncrl_ros.nodes NAME [--ros-args ...]')
    name = sys.argv.pop(1)
    importlib.import_module(f'asyncrl_ros.nodes.{name}_node').main()
