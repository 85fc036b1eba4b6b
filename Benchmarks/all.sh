#!/usr/bin/env bash
# Every figure of the README's table, at smaller sizes, in a few minutes: runs each script,
# keeps its output under .build/bench-all/, and prints the table (markdown) with the lines
# each figure is read from. A script that cannot run says so in its row.
# Usage: Benchmarks/all.sh            (QUICK=0 for the README's full sizes, about 15 minutes)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=.build/bench-all
mkdir -p "$OUT"
# The release binary once, before any script times anything.
[ -x .build/release/foundry-batch ] && [ "${REBUILD:-0}" != 1 ] || swift build -c release --product foundry-batch >&2 || exit 1
QUICK=${QUICK:-1}

# figure | target | script and arguments (quick) | script and arguments (full) | lines to show (grep -E)
FIGURES=(
  "load of N lines vs sqlite3 .import|<= 2x|load.sh 200000|load.sh 1000000|ratio|sqlite3 .import|foundry-batch load"
  "dispatch vs wrk, latency 0, 64 workers; CPU per 1,000 requests|>= 0.50 of wrk; far ahead of Python|dispatch.sh 15000 1000|dispatch.sh 30000 5000|ratio|req/s|CPU"
  "4,000 in flight at 4 s latency|>= 0.95 of ideal, < 120 MiB|inflight.sh 4000 4000 20000|inflight.sh 4000 4000 20000|ratio|RSS|CPU|wrk"
  "quota used, 60k TPM, told|>= 95% used, < 2% 429|quota.sh 60000 30|quota.sh 60000 60|quota available|answered 429"
  "quota used, 60k TPM, not told|>= 95% used, < 2% 429|quota.sh 60000 30 not-told|quota.sh 60000 150 not-told|quota available|answered 429"
  "two targets, 30k + 60k TPM|<= 1.10x the combined bound|targets.sh 30000 60000 30|targets.sh 30000 60000 60|combined bound|served"
  "two processes, one 30k TPM quota|< 2% 429|shared-budget.sh 30000 30|shared-budget.sh 30000 40|answered 429|elapsed"
  "peak RSS as rows grow|largest within 1.5x of smallest|memory.sh \"10000 100000\"|memory.sh|rows: load peak"
  "token requests, 128 workers, 4 s tokens|= refreshes needed, no 401|tokens.sh 20000 4|tokens.sh 60000 4|token requests|401"
  "kill -9 at random moments|every row once|crash-torture.sh 5000 8|crash-torture.sh 20000 20|PASS|FAIL|twice"
  "kill -9 at random moments, PostgreSQL state|every row once|crash-torture.sh 5000 8 postgresql|crash-torture.sh 20000 20 postgresql|PASS|FAIL|twice"
  "claim+complete and run, 64 workers: PostgreSQL vs SQLite|a run on PostgreSQL as fast as on SQLite|queue.sh 20000 64|queue.sh 100000 64|rows/s|ratio"
  "faults: 429, 5xx, drops, slow answers|every row completes once|fault-torture.sh 2000|fault-torture.sh 5000|PASS|FAIL|succeeded"
  "kill -9 of engine: batch|every row once, never in two live batches|batch-torture.sh 3000 8|batch-torture.sh 10000 20|PASS|FAIL|two live"
  "one long line; rejects|linear; flat|input-shapes.sh|input-shapes.sh|long line|rejects"
  "report of a finished sweep|seconds, a small page|report.sh 200000|report.sh 1000000|foundry-batch report|foundry-batch status"
)

echo "| figure | target | measured | command |"
echo "| --- | --- | --- | --- |"
for entry in "${FIGURES[@]}"; do
  IFS='|' read -r name target quick full pattern <<< "$entry"
  command=$([ "$QUICK" = 1 ] && echo "$quick" || echo "$full")
  log="$OUT/$(echo "$command" | tr -c 'a-zA-Z0-9.' '_').log"
  eval "bash Benchmarks/$command" > "$log" 2>&1
  code=$?
  measured=$(grep -E "$pattern|^missing:" "$log" | sed 's/|/\\|/g' | paste -sd ';' - | sed 's/;/; /g')
  [ $code = 0 ] || measured="exit $code: ${measured:-$(tail -1 "$log")}"
  echo "| $name | $target | ${measured:-(no figure; see $log)} | \`Benchmarks/$command\` |"
done
