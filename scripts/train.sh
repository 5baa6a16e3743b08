#!/usr/bin/env bash
# The main job: set up (idempotent), then train on the simulated Panda.
#   scripts/train.sh                         # franka_sim_async2: 'quick' on a CPU, the paper's baseline on a GPU
#   scripts/train.sh franka_sim_sync --setting hires --episodes 20
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST MUJOCO_GL="${MUJOCO_GL:-egl}"
cd "$ROOT"
if [ $# -eq 0 ] || [[ "$1" == -* ]]; then
  set -- franka_sim_async2 "$@"
  # No setting named: a paper run takes a day on a CPU, so a CPU gets the setting that
  # learns in minutes; a GPU runs the paper's baseline (its real-time factor comes out at 1).
  if [[ " $* " != *" --setting "* && " $* " != *" --config "* && " $* " != *" --resume "* && " $* " != *" --list "* ]]; then
    if "$ROOT/.venv/bin/python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      echo "[train] CUDA found: the paper's baseline setting (--setting quick for a short run)"
      set -- "$@" --setting baseline
    else
      echo "[train] no GPU: the 'quick' setting (--setting baseline for the paper's, a day on a CPU)"
      set -- "$@" --setting quick
    fi
  fi
fi
exec "$ROOT/.venv/bin/asyncrl" "$@"
