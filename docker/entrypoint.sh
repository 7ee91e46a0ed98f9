#!/usr/bin/env bash
# Entrypoint of the chatbot image: run one process of the Procfile, or any command.
#
#   web | worker | flower | release   that line of the Procfile, as written (extra
#                                     arguments are appended to it)
#   gpu-worker                        one solo-pool worker per GPU, each with its own
#                                     CUDA_VISIBLE_DEVICES (GPUs from CUDA_VISIBLE_DEVICES,
#                                     else nvidia-smi); GPU_LAYERS defaults to 100 (all)
#   up                                everything in one container: `chatbot up`
#   anything else                     run as given: `bash`, `chatbot models pull NAME`, …
#
# Workers first make sure the model is here (`chatbot models pull`: a checksum when the
# image or the /data volume already holds it, a download once otherwise).
set -euo pipefail

APP_DIR=${APP_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PROCFILE=${PROCFILE:-$APP_DIR/Procfile}
PYTHON=${PYTHON:-python}

say() { echo "entrypoint: $*" >&2; }

procfile_command() {  # the command line of process type $1
  local name=$1 line
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line == "$name:"* ]]; then
      line=${line#*:}
      printf '%s\n' "${line#"${line%%[![:space:]]*}"}"
      return 0
    fi
  done < "$PROCFILE"
  return 1
}

run_procfile() {  # run process type $1 as the Procfile says, with extra arguments
  local name=$1 command
  shift
  command=$(procfile_command "$name") || { say "no '$name' process in $PROCFILE"; exit 64; }
  cd "$APP_DIR"
  # bash -c, as Heroku and foreman run Procfile lines; exec keeps one process (signals
  # reach it directly) and "$@" appends the extra arguments.
  exec bash -c "exec $command \"\$@\"" "$name" "$@"
}

ensure_model() {
  (cd "$APP_DIR" && "$PYTHON" -m shared.cli models pull --quiet)
}

gpu_devices() {
  if [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then
    printf '%s\n' "$CUDA_VISIBLE_DEVICES"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | paste -sd, -
  fi
}

gpu_workers() {
  local devices device status=0 stopping=0
  local -a list pids=()
  devices=$(gpu_devices)
  if [[ -z $devices ]]; then
    say "gpu-worker: no GPU found (nvidia-smi lists none and CUDA_VISIBLE_DEVICES is unset)"
    exit 69
  fi
  export GPU_LAYERS=${GPU_LAYERS:-100}
  IFS=, read -ra list <<< "$devices"
  cd "$APP_DIR"
  for device in "${list[@]}"; do
    # The solo pool runs the generation in the worker process itself, so CUDA is set up
    # in the one process that uses it. Caveats: no Celery time limits (the generation
    # loop enforces GENERATION_TIME_LIMIT_S itself), and while it generates the worker
    # answers no remote control (ping, Flower's inspect) and sends no Celery heartbeats;
    # readiness uses the model heartbeat, which keeps beating from its own thread.
    CUDA_VISIBLE_DEVICES=$device "$PYTHON" -m celery -A worker.app worker -Q inference \
      --pool solo --concurrency 1 --prefetch-multiplier 1 -E --without-gossip \
      --without-mingle -n "gpu${device}@%h" "$@" &
    pids+=("$!")
    say "worker on GPU $device: pid $!"
  done
  stop() { stopping=1; kill -TERM "${pids[@]}" 2>/dev/null || true; }
  trap stop TERM INT
  # Until one worker exits or we are told to stop; then stop the others and wait for
  # each to finish its generation (Celery's warm shutdown).
  wait -n "${pids[@]}" || status=$?
  stop
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if (( stopping )) && (( status >= 128 )); then
    status=0  # stopped by a signal, as asked
  fi
  exit "$status"
}

process=${1:-web}
if (( $# )); then shift; fi
case $process in
  web | flower | release)
    run_procfile "$process" "$@"
    ;;
  worker)
    ensure_model
    run_procfile worker "$@"
    ;;
  gpu-worker)
    ensure_model
    gpu_workers "$@"
    ;;
  up)
    cd "$APP_DIR"
    exec "$PYTHON" -m shared.cli up --host "${HOST:-0.0.0.0}" "$@"
    ;;
  *)
    exec "$process" "$@"
    ;;
esac
