#!/usr/bin/env bash
# Shared-budget figure: two `run` processes on one job at once, with tokens_per_minute set to
# the deployment's quota (an emulator at TPM). Together they must stay within it: the share of
# requests answered 429 (target < 2%; two processes each pacing to the full quota drew about
# 23%), every row exactly once, and the time against one quota's bound.
# Usage: Benchmarks/shared-budget.sh [TPM=30000] [SECONDS=40]
source "$(dirname "$0")/common.sh"
TPM=${1:-30000}
SECONDS_RUN=${2:-40}
PORT=$(free_port)
start_emulator "$PORT" --tpm "$TPM" --latency-ms 20
ROWS=$(python3 -c "print(int($TPM * (1 + $SECONDS_RUN / 60) / 80))")
gen_prompts "$ROWS" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: shared
input: in.jsonl
endpoint: http://127.0.0.1:$PORT
deployment: gpt-5-mini
auth: api-key
request: {max_tokens: 64}
limits: {concurrency: 16, tokens_per_minute: $TPM, max_attempts: 50}
YAML
"$BIN" load "$WORK/job.yaml" > /dev/null
START=$(now)
AZURE_OPENAI_API_KEY=bench-key "$BIN" run "$WORK/job.yaml" --no-progress --json > "$WORK/a.json" 2> "$WORK/a.log" &
A=$!
AZURE_OPENAI_API_KEY=bench-key "$BIN" run "$WORK/job.yaml" --no-progress --json > "$WORK/b.json" 2> "$WORK/b.log" &
B=$!
wait "$A" || true; wait "$B" || true
END=$(now)
curl -s "http://127.0.0.1:$PORT/emulator/stats" > "$WORK/stats.json"
"$BIN" export "$WORK/job.yaml" > /dev/null
python3 - "$WORK" "$TPM" "$ROWS" "$START" "$END" <<'PY'
import json, sys
work, tpm, rows, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
a, b = (json.load(open(f"{work}/{n}.json")) for n in ("a", "b"))
stats = json.load(open(f"{work}/stats.json"))
ids = [json.loads(line)["custom_id"] for line in open(a["output"])]
requests, throttled = stats["requests"], stats["by_status"].get("429", 0)
bound = max(rows * 80 - tpm, 0) / (tpm / 60)
print(f"rows: {rows}; result lines {len(ids)}, distinct {len(set(ids))}; exits {a['exit_code']} {b['exit_code']}; sent {a['requests']} + {b['requests']}")
print(f"requests: {requests}; answered 429: {throttled} ({throttled / max(requests, 1):.2%})  target < 2%")
print(f"elapsed {end - start:.1f} s against one quota's bound {bound:.1f} s ({(end - start) / bound:.2f}x)")
PY
