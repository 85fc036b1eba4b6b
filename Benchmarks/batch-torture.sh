#!/usr/bin/env bash
# Batch crash torture: kill -9 `run` of an `engine: batch` job at KILLS random moments (while
# files are written, uploaded, batches created, polled and collected), then finish it, and
# check: one result line per input row, none lost or doubled, the database agrees with the
# files, no row was ever in two live batches at the provider, and no answered row was sent
# again. The emulator fails 2% of lines and expires its first two batches half done.
# Usage: Benchmarks/batch-torture.sh [ROWS=10000] [KILLS=15]
source "$(dirname "$0")/common.sh"
ROWS=${1:-10000}
KILLS=${2:-15}
PORT=$(free_port)
start_emulator "$PORT" --batch-seconds 3 --batch-fail-rate 0.02 --batch-expire-first 2
gen_prompts "$ROWS" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: torture
input: in.jsonl
endpoint: http://127.0.0.1:$PORT
deployment: gpt-5-mini
auth: api-key
engine: batch
batch: {max_requests_per_file: 500, poll_interval: 0.2}
limits: {max_attempts: 20}
YAML
export AZURE_OPENAI_API_KEY=bench-key
kill_runs "$WORK/job.yaml" "$KILLS" 0.1 2.5
"$BIN" run "$WORK/job.yaml" --no-progress --json > "$WORK/final.json" 2> "$WORK/final.log" || true
python3 - "$WORK" "$ROWS" "$kills" "$PORT" <<'PY'
import json, sqlite3, sys, urllib.request
work, rows, kills, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ids = [json.loads(l)["custom_id"] for l in open(f"{work}/out/torture.jsonl")]
try:
    errors = [json.loads(l)["custom_id"] for l in open(f"{work}/out/torture.errors.jsonl")]
except FileNotFoundError:
    errors = []
db = sqlite3.connect(f"{work}/.foundry-batch/torture.sqlite")
states = dict(db.execute("SELECT state, count(*) FROM rows GROUP BY state").fetchall())
batches = db.execute("SELECT count(*), sum(phase != 'collected') FROM batches").fetchone()
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/emulator/stats"))
expected = {f"row-{i}" for i in range(rows)}
doubled = stats.get("batch_rows_in_two_live_batches", 0)
print(f"kills: {kills}; result lines: {len(ids)}, error lines: {len(errors)}, unique: {len(set(ids) | set(errors))}")
print(f"database: {states}; batches: {batches[0]} ({batches[1] or 0} live); provider: {stats['batches_created']} created, {stats['files_uploaded']} files")
print(f"rows in two live batches: {doubled}; answered rows sent again: {stats['batch_repeated_answers']}; online requests: {stats['requests']}")
ok = (len(ids) + len(errors) == rows and set(ids) | set(errors) == expected and len(set(ids)) == len(ids)
      and states.get("succeeded", 0) == len(ids) and states.get("failed", 0) == len(errors)
      and doubled == 0 and stats["batch_repeated_answers"] == 0 and stats["requests"] == 0)
print("PASS: every row has exactly one result, never in two live batches" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
