#!/usr/bin/env bash
# Distributed training with torchrun (PyTorch DDP through mmengine).
#   bash tools/dist_train.sh CONFIG GPUS [tools/train.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
#
# A lost process (killed, out of memory, a crash) stops the whole run: torchrun's agent polls its
# processes every MONITOR_INTERVAL seconds (0.1 here), sends SIGTERM to the others as soon as one
# has died and SIGKILL 30 s later, then this script says how to resume. A process of another node
# is not watched by this node's agent: there the survivors' next collective fails when the peer's
# connection drops, or after env_cfg.dist_cfg.timeout seconds (docs/tools.md).
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
MONITOR_INTERVAL=${MONITOR_INTERVAL:-0.1}
PYTHON=${PYTHON:-python}

status=0
PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    --monitor_interval="$MONITOR_INTERVAL" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}" || status=$?
if [ "$status" -ne 0 ]; then
  resume=" --resume"
  for arg in "${@:3}"; do [[ "$arg" == --resume* ]] && resume=""; done
  echo "dist_train.sh: training stopped: a process failed or was lost (torchrun exit status" \
       "$status; the first failure is reported above) and the others were stopped. To continue" \
       "from the last checkpoint: bash $0 $*$resume" >&2
fi
exit "$status"
