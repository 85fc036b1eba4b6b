#!/usr/bin/env bash
# Quota figure: against an emulator TPM limit, the share of the quota used over a minute
# (target >= 95%) and the share of requests answered 429 (target < 2%), with the job's
# tokens_per_minute set to the deployment's quota, or (MODE=not-told) with no tokens_per_minute,
# so the run must learn the quota from the service's 429s and x-ratelimit-remaining-tokens.
# Usage: Benchmarks/quota.sh [TPM=60000] [SECONDS=60] [MODE=told|not-told]
source "$(dirname "$0")/common.sh"
TPM=${1:-60000}
SECONDS_RUN=${2:-60}
MODE=${3:-told}
if [ "$MODE" = told ]; then PACING=", tokens_per_minute: $TPM"; else PACING=""; fi
PORT=$(free_port)
start_emulator "$PORT" --tpm "$TPM" --latency-ms 20
# Each row is estimated at about 16 prompt + 64 max tokens = 80 tokens: enough rows for the
# full bucket the quota starts with and twice the window, so the run is still busy at the end.
ROWS=$(python3 -c "print(int($TPM / 80 * ($SECONDS_RUN / 60 + 1) * 2))")
gen_prompts "$ROWS" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: quota
input: in.jsonl
endpoint: http://127.0.0.1:$PORT
deployment: gpt-5-mini
auth: api-key
request: {max_tokens: 64}
limits: {concurrency: 32$PACING}
YAML
"$BIN" load "$WORK/job.yaml" > /dev/null
AZURE_OPENAI_API_KEY=bench-key "$BIN" run "$WORK/job.yaml" --no-progress > /dev/null 2>&1 &
RUN=$!
sleep "$SECONDS_RUN"
curl -s "http://127.0.0.1:$PORT/emulator/stats" > "$WORK/stats.json"
kill -INT "$RUN" 2>/dev/null || echo "note: the run finished before the window ended; the figure is short of rows" >&2
wait "$RUN" || true
echo "mode: $MODE"
python3 - "$WORK/stats.json" "$TPM" "$SECONDS_RUN" <<'PY'
import json, sys
stats, tpm, seconds = json.load(open(sys.argv[1])), int(sys.argv[2]), float(sys.argv[3])
# The emulator's bucket starts full (one minute's quota) and refills at TPM/60 per second:
# over the window the quota available is one bucket plus the refill.
available = tpm + tpm / 60 * seconds
used = stats["tokens_charged"]
requests = stats["requests"]
throttled = stats["by_status"].get("429", 0)
print(f"quota available over {seconds:.0f} s: {available:.0f} tokens; charged: {used} ({used / available:.1%})  target >= 95%")
print(f"requests: {requests}; answered 429: {throttled} ({throttled / max(requests, 1):.2%})  target < 2%")
PY
