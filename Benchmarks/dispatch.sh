#!/usr/bin/env bash
# Dispatch figure: requests/s that `foundry-batch run` gets from the emulator (latency 0,
# concurrency 64), against `wrk` on the same endpoint (the anchor, target >= 50%) and a
# Python `openai` AsyncAzureOpenAI + asyncio semaphore script (installed into a venv).
# Also CPU seconds (user + system, /usr/bin/time) per 1,000 requests of each client.
# Usage: Benchmarks/dispatch.sh [ROWS=30000] [PYTHON_ROWS=5000]   (PYTHON_ROWS=0 skips Python)
source "$(dirname "$0")/common.sh"
need /usr/bin/time time
need wrk wrk
ROWS=${1:-30000}
PYROWS=${2:-5000}
PORT=$(free_port)
start_emulator "$PORT" --latency-ms 0
URL="http://127.0.0.1:$PORT"

# Anchor: wrk posting the same chat body with the same key, 64 connections, 10 s.
wrk_post_script "$WORK/post.lua"
wrk -t2 -c64 -d10s -s "$WORK/post.lua" "$URL/openai/v1/chat/completions" > "$WORK/wrk.txt"
WRK=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")

# foundry-batch: load + run + export of ROWS rows.
gen_prompts "$ROWS" "$WORK/in.jsonl"
cat > "$WORK/job.yaml" <<YAML
name: bench-dispatch
input: in.jsonl
endpoint: $URL
deployment: gpt-5-mini
auth: api-key
request: {max_tokens: 64}
limits: {concurrency: 64}
YAML
"$BIN" load "$WORK/job.yaml" > /dev/null
AZURE_OPENAI_API_KEY=bench-key /usr/bin/time -f "%U %S" -o "$WORK/run.cpu" "$BIN" run "$WORK/job.yaml" --json --no-progress > "$WORK/run.json"
OURCPU=$(python3 -c "import json; u, s = map(float, open('$WORK/run.cpu').read().split()[-2:]); print((u + s) / json.load(open('$WORK/run.json'))['requests'] * 1000)")
OURS=$(python3 -c "import json; d=json.load(open('$WORK/run.json')); print(d['requests']/d['elapsed_seconds'])")
SUCCEEDED=$(python3 -c "import json; print(json.load(open('$WORK/run.json'))['succeeded'])")

# The script a data team would otherwise write.
if [ "$PYROWS" -le 0 ]; then
  PYRATE=""
  PYSKIP="python openai: skipped (PYTHON_ROWS=0)"
elif PY=$(python_venv openai) && [ -n "$PY" ]; then
  cat > "$WORK/client.py" <<'PYTHON'
import asyncio, json, sys, time
from openai import AsyncAzureOpenAI
url, rows = sys.argv[1], int(sys.argv[2])
async def main():
    client = AsyncAzureOpenAI(api_key="bench-key", azure_endpoint=url, api_version="2024-10-21", max_retries=8)
    gate = asyncio.Semaphore(64)
    async def one(i):
        async with gate:
            r = await client.chat.completions.create(model="gpt-5-mini", max_tokens=64,
                messages=[{"role": "user", "content": f"Summarise item {i} of the nightly batch in one short sentence."}])
            return r.choices[0].message.content
    start = time.time()
    results = await asyncio.gather(*(one(i) for i in range(rows)))
    print(json.dumps({"rows": len(results), "seconds": time.time() - start}))
asyncio.run(main())
PYTHON
  /usr/bin/time -f "%U %S" -o "$WORK/py.cpu" "$PY" "$WORK/client.py" "$URL" "$PYROWS" > "$WORK/py.json"
  PYCPU=$(python3 -c "u, s = map(float, open('$WORK/py.cpu').read().split()[-2:]); print((u + s) / $PYROWS * 1000)")
  PYRATE=$(python3 -c "import json; d=json.load(open('$WORK/py.json')); print(d['rows']/d['seconds'])")
else
  PYRATE=""
  PYSKIP="python openai: could not install the openai package into a venv; skipped"
fi

printf "wrk (anchor):           %8.0f req/s\n" "$WRK"
printf "foundry-batch run:      %8.0f req/s  (%s rows succeeded of %s)\n" "$OURS" "$SUCCEEDED" "$ROWS"
echo "ratio foundry-batch / wrk (target >= 0.50): $(ratio "$OURS" "$WRK")"
printf "foundry-batch CPU:      %8.3f s per 1,000 requests\n" "$OURCPU"
if [ -n "$PYRATE" ]; then
  printf "python openai asyncio:  %8.0f req/s  (%s rows)\n" "$PYRATE" "$PYROWS"
  echo "ratio foundry-batch / python: $(ratio "$OURS" "$PYRATE")"
  printf "python CPU:             %8.3f s per 1,000 requests (%sx foundry-batch's)\n" "$PYCPU" "$(ratio "$PYCPU" "$OURCPU")"
else
  echo "$PYSKIP"
fi
