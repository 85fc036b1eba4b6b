#!/usr/bin/env bash
# Long-answers figure: ROWS rows with CONCURRENCY requests in flight against the emulator at
# LATENCY_MS per answer. The ideal is CONCURRENCY / latency requests a second; prints the
# rate reached as a share of it (target >= 0.95), peak RSS (target < 120 MiB) and CPU seconds.
# Usage: Benchmarks/inflight.sh [CONCURRENCY=4000] [LATENCY_MS=4000] [ROWS=5 x CONCURRENCY]
# Also wrk at the same concurrency on the same emulator: the share of the ideal the emulator
# itself allows (its own cost per request on this machine's two cores).
source "$(dirname "$0")/common.sh"
need /usr/bin/time time
need wrk wrk
CONCURRENCY=${1:-4000}
LATENCY_MS=${2:-4000}
ROWS=${3:-$((CONCURRENCY * 5))}
# Every request in flight is a connection, in this process and in the emulator.
ulimit -n "$((CONCURRENCY * 2 + 512))" 2>/dev/null || { echo "missing: a file-descriptor limit of $((CONCURRENCY * 2 + 512)) (ulimit -n)" >&2; exit 1; }
PORT=$(free_port)
start_emulator "$PORT" --latency-ms "$LATENCY_MS"
gen_prompts "$ROWS" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: bench-inflight
input: in.jsonl
endpoint: http://127.0.0.1:$PORT
deployment: gpt-5-mini
auth: api-key
request: {max_tokens: 64}
limits: {concurrency: $CONCURRENCY, timeout: 120}
YAML
"$BIN" load "$WORK/job.yaml" > /dev/null
AZURE_OPENAI_API_KEY=bench-key /usr/bin/time -v "$BIN" run "$WORK/job.yaml" --json --no-progress > "$WORK/run.json" 2> "$WORK/run.time"
read -r elapsed requests succeeded < <(python3 -c "import json; d=json.load(open('$WORK/run.json')); print(d['elapsed_seconds'], d['requests'], d['succeeded'])")
rss_kb=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$WORK/run.time")
cpu=$(awk -F: '/User time|System time/ {s += $2} END {print s}' "$WORK/run.time")
ideal=$(python3 -c "print($CONCURRENCY / ($LATENCY_MS / 1000))")
bound=$(python3 -c "import math; print(math.ceil($ROWS / $CONCURRENCY) * $LATENCY_MS / 1000)")
wrk_post_script "$WORK/post.lua"
seconds=$(python3 -c "import math; print(math.ceil($bound))")
wrk -t2 -c"$CONCURRENCY" -d"${seconds}s" --timeout 120s -s "$WORK/post.lua" "http://127.0.0.1:$PORT/openai/v1/chat/completions" > "$WORK/wrk.txt" 2>&1
# wrk's mean latency at this concurrency: the emulator serves at most CONCURRENCY / mean.
wrk_mean=$(awk '/Latency/ {v = $2; if (v ~ /ms$/) {sub(/ms/, "", v); v /= 1000} else if (v ~ /us$/) {sub(/us/, "", v); v /= 1e6} else sub(/s$/, "", v); print v}' "$WORK/wrk.txt")
echo "rows: $ROWS ($succeeded succeeded, $requests requests), $CONCURRENCY in flight, ${LATENCY_MS} ms per answer"
printf "ideal: %.0f req/s (%.1f s); foundry-batch: %.0f req/s (%.1f s)\n" "$ideal" "$bound" "$(python3 -c "print($requests / $elapsed)")" "$elapsed"
echo "ratio to ideal (target >= 0.95): $(ratio "$bound" "$elapsed")"
echo "wrk, $CONCURRENCY connections on the same emulator: mean latency ${wrk_mean} s, so the emulator allows at most $(ratio "$LATENCY_MS / 1000" "$wrk_mean") of the ideal"
printf "peak RSS: %.1f MiB (target < 120)\n" "$(python3 -c "print($rss_kb / 1024)")"
printf "CPU: %.2f s (%.2f s per 1,000 requests)\n" "$cpu" "$(python3 -c "print($cpu / $requests * 1000)")"
