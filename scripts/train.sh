#!/usr/bin/env bash
# The main job: set up (idempotent), then train on the simulated Panda.
#   scripts/train.sh                         # default profile, its paper setting
#   scripts/train.sh franka_sim_sync --setting hires --episodes 20
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST MUJOCO_GL="${MUJOCO_GL:-egl}"
cd "$ROOT"
if [ $# -eq 0 ] || [[ "$1" == -* ]]; then
  set -- franka_sim_async2 "$@"
fi
exec "$ROOT/.venv/bin/asyncrl" "$@"
