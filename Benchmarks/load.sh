#!/usr/bin/env bash
# Load figure: `foundry-batch load` of N generated lines vs the sqlite3 shell importing the
# same lines into a one-column table. Target: within 2x. Usage: Benchmarks/load.sh [N=1000000]
source "$(dirname "$0")/common.sh"
need sqlite3 sqlite3
N=${1:-1000000}
gen_prompts "$N" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: bench-load
input: in.jsonl
endpoint: emulator
deployment: gpt-5-mini
request: {max_tokens: 64}
YAML

# Anchor: the sqlite3 shell, one TEXT column, one transaction, same disk.
start=$(now)
# Tab mode: the lines hold no tabs, and a field starting with "{" is taken as is.
sqlite3 "$WORK/anchor.sqlite" "CREATE TABLE lines(line TEXT);" ".mode tabs" ".import $WORK/in.jsonl lines"
anchor=$(python3 -c "print($(now) - $start)")
rows=$(sqlite3 "$WORK/anchor.sqlite" "SELECT count(*) FROM lines")

start=$(now)
"$BIN" load "$WORK/job.yaml" > /dev/null
ours=$(python3 -c "print($(now) - $start)")
loaded=$(sqlite3 "$WORK/.foundry-batch/bench-load.sqlite" "SELECT count(*) FROM rows")

echo "lines: $N (sqlite3 imported $rows, foundry-batch queued $loaded)"
printf "sqlite3 .import: %.2f s (%.0f rows/s)\n" "$anchor" "$(python3 -c "print($N/$anchor)")"
printf "foundry-batch load: %.2f s (%.0f rows/s)\n" "$ours" "$(python3 -c "print($N/$ours)")"
echo "ratio (load / sqlite3, target <= 2.00): $(ratio "$ours" "$anchor")"
