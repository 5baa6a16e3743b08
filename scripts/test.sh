#!/usr/bin/env bash
# The test suite: set up (idempotent), then pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST MUJOCO_GL="${MUJOCO_GL:-egl}"
cd "$ROOT"
# The slowest tests are listed at the end: the suite must stay well under 15 minutes.
exec "$ROOT/.venv/bin/python" -m pytest -q --durations=15 "$@"
