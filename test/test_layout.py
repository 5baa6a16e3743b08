"""The layout is the architecture: the core packages load without ROS, nodes are adapters."""
import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import asyncrl_ros

PACKAGE = Path(asyncrl_ros.__file__).parent
CORE = ('agent', 'learning', 'transport', 'robot', 'sim')


def modules_of(sub: str) -> list[str]:
    return [m.name for m in pkgutil.walk_packages([str(PACKAGE / sub)], f'asyncrl_ros.{sub}.')]


def test_core_packages_import_without_ros():
    # A fresh interpreter: what this test process already imported must not hide an import.
    names = [n for sub in CORE for n in modules_of(sub)]
    assert len(names) > 30
    code = ('import importlib, json, sys\n'
            f'for n in {names!r}: importlib.import_module(n)\n'
            'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in '
            '("rclpy", "rosidl_runtime_py", "launch", "launch_ros") '
            'or m.startswith("asyncrl_ros.nodes") or m.startswith("asyncrl_ros_interfaces"))))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_nodes_do_not_import_each_other_and_the_package_root_holds_no_modules():
    nodes = {p.stem for p in (PACKAGE / 'nodes').glob('*_node.py')}
    offenders = []
    for path in (PACKAGE / 'nodes').glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = ([node.module or ''] if isinstance(node, ast.ImportFrom)
                       else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [(path.name, t) for t in targets
                          if t.startswith('asyncrl_ros.nodes.') and t.rsplit('.', 1)[1] in nodes]
    assert offenders == []
    # Every module lives in the part it belongs to (README, "Layout").
    assert sorted(p.name for p in PACKAGE.glob('*.py')) == ['__init__.py']
    assert {p.name for p in PACKAGE.iterdir() if (p / '__init__.py').exists()} == {
        *CORE, 'run', 'nodes'}
