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

# The floor of this design: the sqlite3 shell copying the rows foundry-batch stored into an empty
# state database of the same schema (its indexes, WAL mode), with no parsing at all.
sqlite3 "$WORK/.foundry-batch/bench-load.sqlite" .schema | grep -v '^CREATE TABLE sqlite_' > "$WORK/schema.sql"
sqlite3 "$WORK/floor.sqlite" "PRAGMA journal_mode=WAL;" ".read $WORK/schema.sql" > /dev/null
columns="id, variant, source, load_id, content_hash, api, deployment, body, metadata, estimated_tokens, estimated_prompt_tokens"
start=$(now)
sqlite3 "$WORK/floor.sqlite" "ATTACH '$WORK/.foundry-batch/bench-load.sqlite' AS ours;" \
  "BEGIN; INSERT INTO rows($columns) SELECT $columns FROM ours.rows; COMMIT;"
floor=$(python3 -c "print($(now) - $start)")

echo "lines: $N (sqlite3 imported $rows, foundry-batch queued $loaded)"
printf "sqlite3 .import: %.2f s (%.0f rows/s)\n" "$anchor" "$(python3 -c "print($N/$anchor)")"
printf "foundry-batch load: %.2f s (%.0f rows/s)\n" "$ours" "$(python3 -c "print($N/$ours)")"
echo "ratio (load / sqlite3, target <= 2.00): $(ratio "$ours" "$anchor")"
printf "floor, sqlite3 inserting the same rows into the same schema: %.2f s (%sx the anchor; foundry-batch is %sx this floor)\n" \
  "$floor" "$(ratio "$floor" "$anchor")" "$(ratio "$ours" "$floor")"
