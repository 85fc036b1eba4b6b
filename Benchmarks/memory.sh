#!/usr/bin/env bash
# Memory figure: peak RSS of `load` and of `run` (against the emulator, latency 0) at each
# size; target: flat, the largest within 1.5x of the smallest. Usage: Benchmarks/memory.sh [SIZES="10000 100000 1000000"]
source "$(dirname "$0")/common.sh"
need /usr/bin/time time
SIZES=${1:-"10000 100000 1000000"}
PORT=$(free_port)
start_emulator "$PORT" --latency-ms 0
export AZURE_OPENAI_API_KEY=bench-key
first_load=""; first_run=""
for n in $SIZES; do
  mkdir -p "$WORK/$n"
  gen_prompts "$n" "$WORK/$n/in.jsonl"
  printf 'name: mem\ninput: in.jsonl\nendpoint: http://127.0.0.1:%s\ndeployment: gpt-5-mini\nauth: api-key\nlimits: {concurrency: 64}\n' "$PORT" > "$WORK/$n/job.yaml"
  /usr/bin/time -v "$BIN" load "$WORK/$n/job.yaml" > /dev/null 2> "$WORK/$n/load.time"
  /usr/bin/time -v "$BIN" run "$WORK/$n/job.yaml" --no-progress > /dev/null 2> "$WORK/$n/run.time" || true
  load_kb=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$WORK/$n/load.time")
  run_kb=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$WORK/$n/run.time")
  first_load=${first_load:-$load_kb}; first_run=${first_run:-$run_kb}
  printf "%8s rows: load peak %6.1f MiB (%sx), run peak %6.1f MiB (%sx)\n" "$n" "$(python3 -c "print($load_kb/1024)")" \
    "$(ratio "$load_kb" "$first_load")" "$(python3 -c "print($run_kb/1024)")" "$(ratio "$run_kb" "$first_run")"
done
echo "target: the largest within 1.50x of the smallest"
