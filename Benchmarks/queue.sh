#!/usr/bin/env bash
# Queue figure: claim+complete throughput of the PostgreSQL queue against the SQLite queue
# (the anchor) with WORKERS workers, as a run drives them (one row source claiming up to 256
# rows at a time, group commits, each worker waiting for its own) but with no service in
# between (foundry-batch-bench); then `foundry-batch run` of the same rows on both backends
# against the emulator at latency 0, which says what the queue costs a real run.
# Usage: Benchmarks/queue.sh [ROWS=50000] [WORKERS=64]
source "$(dirname "$0")/common.sh"
need /usr/bin/time time
need_postgres
trap pg_cleanup EXIT
ROWS=${1:-50000}
WORKERS=${2:-64}
BENCH="$ROOT/.build/release/foundry-batch-bench"
if [ ! -x "$BENCH" ] || [ "${REBUILD:-0}" = 1 ]; then (cd "$ROOT" && swift build -c release --product foundry-batch-bench >&2); fi
PORT=$(free_port)
start_emulator "$PORT" --latency-ms 0
gen_prompts "$ROWS" "$WORK/in.jsonl"
job() { # job FILE NAME STATE
  printf 'name: %s\ninput: in.jsonl\nendpoint: http://127.0.0.1:%s\ndeployment: gpt-5-mini\nauth: api-key\nstate: %s\nlimits: {concurrency: %s}\n' \
    "$2" "$PORT" "$3" "$WORKERS" > "$1"
}
rate() { sed -n 's/.* \([0-9]*\) rows\/s.*/\1/p' "$1"; }
# step NAME COMMAND...: runs COMMAND with its stderr kept, and shows it when COMMAND fails.
step() {
  local name=$1; shift
  "$@" 2> "$WORK/$name.err" || { echo "$name failed:" >&2; tail -5 "$WORK/$name.err" >&2; exit 1; }
}

job "$WORK/q-sqlite.yaml" q-sqlite "$WORK/q-sqlite.sqlite"
pg_state q; job "$WORK/q-pg.yaml" q-pg "$PG_STATE"
step bench-sqlite "$BENCH" "$WORK/q-sqlite.yaml" "$WORKERS" > "$WORK/q-sqlite.txt"
step bench-pg "$BENCH" "$WORK/q-pg.yaml" "$WORKERS" > "$WORK/q-pg.txt"
for backend in sqlite pg; do
  grep -q "claim+complete: $ROWS rows" "$WORK/q-$backend.txt" || { echo "the $backend bench did not complete $ROWS rows: $(cat "$WORK/q-$backend.txt")" >&2; exit 1; }
done
SQ=$(rate "$WORK/q-sqlite.txt"); PQ=$(rate "$WORK/q-pg.txt")
echo "claim+complete, $WORKERS workers, $ROWS rows: sqlite $SQ rows/s; postgresql $PQ rows/s"
echo "ratio postgresql / sqlite (claim+complete): $(ratio "$PQ" "$SQ")"

export AZURE_OPENAI_API_KEY=bench-key
job "$WORK/r-sqlite.yaml" r-sqlite "$WORK/r-sqlite.sqlite"
pg_state r; job "$WORK/r-pg.yaml" r-pg "$PG_STATE"
for backend in sqlite pg; do
  step "load-$backend" "$BIN" load "$WORK/r-$backend.yaml" > /dev/null
  step "run-$backend" /usr/bin/time -f "%U %S" -o "$WORK/r-$backend.cpu" "$BIN" run "$WORK/r-$backend.yaml" --json --no-progress > "$WORK/r-$backend.json"
done
figures=$(python3 - "$WORK" "$ROWS" <<'PY'
import json, sys
work, rows = sys.argv[1], int(sys.argv[2])
runs = [json.load(open(f"{work}/r-{b}.json")) for b in ("sqlite", "pg")]
cpu = [sum(map(float, open(f"{work}/r-{b}.cpu").read().split()[-2:])) / rows * 1000 for b in ("sqlite", "pg")]
print(*(round(r["succeeded"] / r["elapsed_seconds"]) for r in runs), all(r["succeeded"] == rows for r in runs), *(f"{c:.3f}" for c in cpu))
PY
)
read -r SR PR OK SC PC <<< "$figures"
echo "run, latency 0, $WORKERS workers: sqlite $SR rows/s; postgresql $PR rows/s (every row succeeded: $OK)"
echo "ratio postgresql / sqlite (run): $(ratio "$PR" "$SR") (the server shares this machine's cores with the run and the emulator)"
echo "CPU of the run process per 1,000 rows: sqlite $SC s; postgresql $PC s (the server's own not counted)"
