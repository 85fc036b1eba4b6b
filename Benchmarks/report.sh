#!/usr/bin/env bash
# Report figure: `foundry-batch report` of a finished N-row sweep (two variants, answers that
# differ on one row in ten, 0.1% failed) vs two anchors on the same state: `status` (which reads
# the same aggregates) and the sqlite3 shell reading every stored answer once. Target: seconds
# for 1M rows, and a small page. Usage: Benchmarks/report.sh [N=1000000]
source "$(dirname "$0")/common.sh"
need sqlite3 sqlite3
need /usr/bin/time time
N=${1:-1000000}
gen_prompts "$((N / 2))" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: bench-report
input: in.jsonl
output: out/bench-report.jsonl
endpoint: emulator
request: {max_tokens: 64}
variants:
  - { name: mini, deployment: gpt-5-mini }
  - { name: large, deployment: gpt-4.1 }
prices: {prompt_per_1k: 0.0004, completion_per_1k: 0.0016}
YAML
"$BIN" load "$WORK/job.yaml" > /dev/null
STATE="$WORK/.foundry-batch/bench-report.sqlite"
# Answer every row as a run would have: a chat answer, tokens, a latency and an end time spread
# over an hour; the large variant answers otherwise on one row in ten; one row in 1,000 failed.
sqlite3 "$STATE" <<'SQL'
UPDATE rows SET state = 'succeeded', attempts = 1, status_code = 200, request_id = 'req-' || seq,
  client_request_id = 'cid-' || seq,
  response = json_object('id', 'chatcmpl-' || seq, 'object', 'chat.completion', 'model', deployment,
    'choices', json_array(json_object('index', 0, 'finish_reason', 'stop', 'message', json_object('role', 'assistant',
      'content', 'The item ' || id || CASE WHEN variant = 'large' AND seq % 20 < 2 THEN ' is different.' ELSE ' is summarised.' END))),
    'usage', json_object('prompt_tokens', 21, 'completion_tokens', 9, 'total_tokens', 30)),
  prompt_tokens = 21, completion_tokens = 9, total_tokens = 30, latency_ms = 200 + (seq * 7919) % 1800,
  first_sent_at = 1800000000 + seq * 0.0036, finished_at = 1800000000 + seq * 0.0036 + 1;
UPDATE rows SET state = 'failed', response = NULL, error_code = 'server_error', error_message = 'The server had an error', status_code = 500
  WHERE seq % 1000 = 7;
SQL
rows=$(sqlite3 "$STATE" "SELECT count(*) FROM rows")

start=$(now)
sqlite3 "$STATE" "SELECT count(*), sum(length(response)) FROM rows" > /dev/null
scan=$(python3 -c "print($(now) - $start)")
start=$(now)
"$BIN" status "$WORK/job.yaml" > /dev/null
status=$(python3 -c "print($(now) - $start)")
start=$(now)
"$BIN" report "$WORK/job.yaml" > "$WORK/report.out"
ours=$(python3 -c "print($(now) - $start)")
bytes=$(stat -c %s "$WORK/out/bench-report.report.html")
peak=$( { /usr/bin/time -f "%M" "$BIN" report "$WORK/job.yaml" --output "$WORK/again.html" > /dev/null; } 2>&1 | tail -1)

echo "rows: $rows ($((N / 2)) ids x 2 variants); $(cat "$WORK/report.out")"
printf "sqlite3 reading every answer once: %.2f s\n" "$scan"
printf "foundry-batch status: %.2f s\n" "$status"
printf "foundry-batch report: %.2f s, %d KiB, peak RSS %d MiB\n" "$ours" "$((bytes / 1024))" "$((peak / 1024))"
echo "ratios: report / status $(ratio "$ours" "$status"), report / one sqlite3 scan $(ratio "$ours" "$scan")"
