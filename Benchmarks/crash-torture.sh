#!/usr/bin/env bash
# Crash torture: kill -9 `run` at KILLS random moments over a ROWS-row job, then finish it,
# and check: one result line per input row, no duplicates, no row lost, the database agrees
# with the files, and the emulator answered at most concurrency rows twice per kill.
# BACKEND postgresql keeps the state in PostgreSQL (need_postgres in common.sh).
# Usage: Benchmarks/crash-torture.sh [ROWS=20000] [KILLS=20] [sqlite|postgresql]
source "$(dirname "$0")/common.sh"
ROWS=${1:-20000}
KILLS=${2:-20}
BACKEND=${3:-sqlite}
case $BACKEND in sqlite | postgresql) ;; *) echo "usage: crash-torture.sh [ROWS] [KILLS] [sqlite|postgresql]" >&2; exit 2 ;; esac
STATE=""
if [ "$BACKEND" = postgresql ]; then
  need_postgres
  trap pg_cleanup EXIT
  pg_state torture
  STATE="state: $PG_STATE"
fi
PORT=$(free_port)
start_emulator "$PORT" --latency-ms 5 --fault-rate 0.02
gen_prompts "$ROWS" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: torture
input: in.jsonl
endpoint: http://127.0.0.1:$PORT
deployment: gpt-5-mini
auth: api-key
limits: {concurrency: 32, max_attempts: 20}
$STATE
YAML
export AZURE_OPENAI_API_KEY=bench-key
# A run on PostgreSQL takes longer to reach its first request (connect, check the loaded
# rows over the wire): its kills come later, so that they land while rows are in flight.
if [ "$BACKEND" = postgresql ]; then kill_runs "$WORK/job.yaml" "$KILLS" 0.6 1.8; else kill_runs "$WORK/job.yaml" "$KILLS" 0.15 0.6; fi
BEFORE=$(curl -sf "http://127.0.0.1:$PORT/emulator/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["requests"])')
"$BIN" run "$WORK/job.yaml" --no-progress --json > "$WORK/final.json"
"$BIN" status "$WORK/job.yaml" --json > "$WORK/status.json"
python3 - "$WORK" "$ROWS" "$kills" "$PORT" "$BACKEND" "$BEFORE" <<'PY'
import json, sys, urllib.request
work, rows, kills, port, backend, before = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
ids = [json.loads(l)["custom_id"] for l in open(f"{work}/out/torture.jsonl")]
errors = [json.loads(l)["custom_id"] for l in open(f"{work}/out/torture.errors.jsonl")]
# What the state database says, read by `status` (the same on both backends).
status = json.load(open(f"{work}/status.json"))
states = {k: status[k] for k in ("pending", "running", "succeeded", "failed")}
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/emulator/stats"))
expected = {f"row-{i}" for i in range(rows)}
print(f"backend: {backend}; kills: {kills}; result lines: {len(ids)}, error lines: {len(errors)}, unique: {len(set(ids) | set(errors))}")
print(f"database: {states}")
print(f"requests by the killed runs: {before} (the final run sent the rest)")
print(f"rows answered twice (repeated 200s): {stats['repeated_answers']} (bound: {kills} kills x 32 workers = {kills * 32})")
ok = (len(ids) + len(errors) == rows and set(ids) | set(errors) == expected and len(set(ids)) == len(ids)
      and states.get("succeeded", 0) == len(ids) and states.get("failed", 0) == len(errors)
      and stats["repeated_answers"] <= kills * 32)
print("PASS: every row has exactly one result" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
