#!/usr/bin/env bash
# Fault torture: 10% 429, 5% 500/503, 2% dropped connections, 1% answers slower than the
# timeout; every row must still complete, exactly once. Usage: Benchmarks/fault-torture.sh [ROWS=5000]
source "$(dirname "$0")/common.sh"
ROWS=${1:-5000}
PORT=$(free_port)
start_emulator "$PORT" --latency-ms 5 --throttle-rate 0.10 --fault-rate 0.05 --drop-rate 0.02 --slow-rate 0.01 --slow-seconds 4
gen_prompts "$ROWS" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: faults
input: in.jsonl
endpoint: http://127.0.0.1:$PORT
deployment: gpt-5-mini
auth: api-key
limits: {concurrency: 32, max_attempts: 12, timeout: 2}
YAML
AZURE_OPENAI_API_KEY=bench-key "$BIN" run "$WORK/job.yaml" --no-progress --json > "$WORK/run.json" || true
python3 - "$WORK" "$ROWS" "$PORT" <<'PY'
import json, sys, urllib.request
work, rows, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
run = json.load(open(f"{work}/run.json"))
ids = [json.loads(l)["custom_id"] for l in open(f"{work}/out/faults.jsonl")]
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/emulator/stats"))
print(f"succeeded {run['succeeded']} of {rows}, failed {run['failed']}; requests {run['requests']}, retries {run['retries']}, throttled {run['throttled']}")
print(f"emulator: by status {stats['by_status']}")
ok = run["succeeded"] == rows and len(ids) == rows and len(set(ids)) == rows
print("PASS: every row completed exactly once" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
