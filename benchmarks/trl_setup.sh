#!/usr/bin/env bash
# Sets up the separate environment for the TRL side-by-side benchmarks of
# chapters 12 (PPO) and 13 (GRPO):
#
#     bash benchmarks/trl_setup.sh              # creates build/trl-venv
#     build/trl-venv/bin/python benchmarks/bench_ch12_ppo_vs_trl.py
#     build/trl-venv/bin/python benchmarks/bench_ch13_grpo_vs_trl.py
#
# TRL is a benchmark-only dependency: it never enters the course's own .venv.
# The course goes in with `-c constraints.txt`, so torch stays the pinned
# 2.13.0 (the CPU wheel where pip finds one) and transformers stays the
# course's 5.23.0; pip must never resolve an unpinned torch, which would pull
# several GB of CUDA wheels. requirements-trl.txt pins TRL 1.12.0 (the last
# release that still ships the PPO trainer, as trl.experimental.ppo) and what
# it pulls in on top of the course.
#
# Environment: PYTHON (default python3.11 or python3), TRL_VENV (default
# build/trl-venv). Re-running it is cheap: pip skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${TRL_VENV:-build/trl-venv}"

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is needed, found " + sys.version.split()[0])'
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
# Both files constrain one resolution: a package pinned in either cannot move.
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e . -r benchmarks/requirements-trl.txt
TRL_EXPERIMENTAL_SILENCE=1 "$VENV/bin/python" - <<'EOF'
import torch, transformers, trl
assert trl.__version__ == "1.12.0", f"expected TRL 1.12.0, got {trl.__version__}"
from trl.experimental.ppo import PPOConfig, PPOTrainer  # noqa: F401  (the trainer chapter 12 compares with)
from trl import GRPOConfig, GRPOTrainer  # noqa: F401
print(f"TRL venv ready: trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
EOF
