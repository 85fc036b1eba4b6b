#!/usr/bin/env bash
# Targets figure: one job over two deployments with different quotas (emulators at TPM_A and
# TPM_B, each target paced to its own). The anchor is the combined bound: both buckets start
# full (a minute's quota each) and refill at (TPM_A + TPM_B) / 60 tokens a second, so N rows
# of E tokens cannot finish before (N*E - TPM_A - TPM_B) / ((TPM_A + TPM_B) / 60) seconds.
# Prints elapsed / bound (target <= 1.10), the rows each target served (about TPM_A:TPM_B),
# and the share of 429s. Usage: Benchmarks/targets.sh [TPM_A=30000] [TPM_B=60000] [SECONDS=60]
source "$(dirname "$0")/common.sh"
A=${1:-30000}
B=${2:-60000}
SECONDS_RUN=${3:-60}
PA=$(free_port); start_emulator "$PA" --tpm "$A" --latency-ms 20
PB=$(free_port); start_emulator "$PB" --tpm "$B" --latency-ms 20
# Each row is estimated at 16 prompt + 64 max tokens = 80 tokens.
ROWS=$(python3 -c "print(int(($A + $B) * (1 + $SECONDS_RUN / 60) / 80))")
gen_prompts "$ROWS" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: targets
input: in.jsonl
deployment: gpt-5-mini
auth: api-key
request: {max_tokens: 64}
limits: {concurrency: 32}
targets:
  - { name: a, endpoint: "http://127.0.0.1:$PA", tokens_per_minute: $A }
  - { name: b, endpoint: "http://127.0.0.1:$PB", tokens_per_minute: $B }
YAML
"$BIN" load "$WORK/job.yaml" > /dev/null
START=$(now)
AZURE_OPENAI_API_KEY=bench-key "$BIN" run "$WORK/job.yaml" --no-progress --json > "$WORK/run.json" 2> "$WORK/run.log" || true
END=$(now)
curl -s "http://127.0.0.1:$PA/emulator/stats" > "$WORK/a.json"
curl -s "http://127.0.0.1:$PB/emulator/stats" > "$WORK/b.json"
python3 - "$WORK" "$A" "$B" "$ROWS" "$START" "$END" <<'PY'
import collections, json, sys
work, a, b, rows, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
run = json.load(open(f"{work}/run.json"))
served = collections.Counter(json.loads(line).get("target") for line in open(run["output"]))
stats = [json.load(open(f"{work}/{name}.json")) for name in ("a", "b")]
requests = sum(s["requests"] for s in stats)
throttled = sum(s["by_status"].get("429", 0) for s in stats)
bound = max(rows * 80 - a - b, 0) / ((a + b) / 60)
elapsed = end - start
print(f"rows: {rows}, succeeded {run['succeeded']}, exit {run['exit_code']}")
print(f"combined bound: {bound:.1f} s; elapsed: {elapsed:.1f} s; ratio {elapsed / bound:.2f}  target <= 1.10")
print(f"served: a {served['a']}, b {served['b']} (quota ratio 1:{b / a:.2f}, served 1:{served['b'] / max(served['a'], 1):.2f})")
print(f"requests: {requests}; answered 429: {throttled} ({throttled / max(requests, 1):.2%})")
PY
