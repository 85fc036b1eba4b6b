#!/usr/bin/env bash
# Auth figure: token requests during a long run with short-lived tokens and 128 workers.
# Target: token requests = refreshes needed (about run time / half the lifetime), not x workers;
# zero rows failed by expiry. Usage: Benchmarks/tokens.sh [ROWS=60000] [TTL=4]
source "$(dirname "$0")/common.sh"
ROWS=${1:-60000}
TTL=${2:-4}
PORT=$(free_port)
start_emulator "$PORT" --latency-ms 5 --token-ttl "$TTL"
gen_prompts "$ROWS" "$WORK/in.jsonl"
printf 'name: tokens\ninput: in.jsonl\nendpoint: http://127.0.0.1:%s\ndeployment: gpt-5-mini\nauth: client-secret\nlimits: {concurrency: 128}\n' "$PORT" > "$WORK/job.yaml"
AZURE_TENANT_ID=00000000-0000-4000-8000-00000000e0e0 AZURE_CLIENT_ID=11111111-1111-4111-8111-111111111111 \
AZURE_CLIENT_SECRET=bench-secret AZURE_AUTHORITY_HOST="http://127.0.0.1:$PORT" \
  "$BIN" run "$WORK/job.yaml" --no-progress --json > "$WORK/run.json" || true
python3 - "$WORK/run.json" "$TTL" "$PORT" <<'PY'
import json, sys, urllib.request
run, ttl, port = json.load(open(sys.argv[1])), float(sys.argv[2]), sys.argv[3]
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/emulator/stats"))
needed = run["elapsed_seconds"] / (ttl / 2) + 1
print(f"{run['succeeded']} rows succeeded, {run['failed']} failed, in {run['elapsed_seconds']:.1f} s with 128 workers")
print(f"token requests: {run['token_requests']} (emulator saw {sum(stats['token_requests'].values())}); refreshes needed at half of a {ttl:.0f} s lifetime: about {needed:.0f}")
print(f"401 answers (a request with an expired token): {stats['by_status'].get('401', 0)}")
PY
