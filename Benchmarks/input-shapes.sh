#!/usr/bin/env bash
# Odd input shapes: very long lines and files full of rejects.
# - Long lines: `load` time for one line of 25, 50 and 100 MB; the anchor is the 25 MB line.
#   Linear time gives 2x and 4x; rescanning each line from its start gave 3.1x and 11.4x.
# - Rejects: peak RSS of `load --skip-invalid` on a file of invalid lines at 20 MB and 200 MB;
#   the anchor is the 20 MB file. Rejects streamed to their file keep it flat (1x); held in
#   memory it grew with the file (282 MB at 205 MB).
# Usage: Benchmarks/input-shapes.sh
source "$(dirname "$0")/common.sh"
need /usr/bin/time time

job() { printf 'name: shapes\ninput: in.jsonl\nendpoint: emulator\ndeployment: gpt-5-mini\nauth: api-key\n' > "$1/job.yaml"; }

first=""
for mb in 25 50 100; do
  mkdir -p "$WORK/long$mb"; job "$WORK/long$mb"
  python3 - "$mb" "$WORK/long$mb/in.jsonl" <<'PY'
import sys
mb, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write('{"id": "long", "prompt": "' + "x" * (mb * 1000 * 1000) + '"}\n')
PY
  start=$(now)
  "$BIN" load "$WORK/long$mb/job.yaml" > /dev/null
  took=$(python3 -c "print($(now) - $start)")
  first=${first:-$took}
  printf "long line %3d MB: load %6.2f s (%sx the 25 MB line; linear is %sx)\n" "$mb" "$took" "$(ratio "$took" "$first")" "$(ratio "$mb" 25)"
done

first=""
for mb in 20 200; do
  mkdir -p "$WORK/rejects$mb"; job "$WORK/rejects$mb"
  python3 - "$mb" "$WORK/rejects$mb/in.jsonl" <<'PY'
import sys
mb, path = int(sys.argv[1]), sys.argv[2]
line = "not json " + "y" * 190 + "\n"
with open(path, "w") as f:
    for _ in range(mb * 1000 * 1000 // len(line)):
        f.write(line)
PY
  /usr/bin/time -v "$BIN" load "$WORK/rejects$mb/job.yaml" --skip-invalid > /dev/null 2> "$WORK/rejects$mb/time"
  kb=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$WORK/rejects$mb/time")
  first=${first:-$kb}
  printf "rejects %3d MB: load --skip-invalid peak %6.1f MiB (%sx the 20 MB file)\n" "$mb" "$(python3 -c "print($kb/1024)")" "$(ratio "$kb" "$first")"
done
