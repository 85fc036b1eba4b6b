# Shared by the benchmark scripts: the release binary, a scratch folder, timing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.build/release/foundry-batch"
if [ ! -x "$BIN" ] || [ "${REBUILD:-0}" = 1 ]; then
  (cd "$ROOT" && swift build -c release --product foundry-batch >&2)
fi
WORK="$(mktemp -d /tmp/foundry-batch-bench.XXXXXX)"
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$WORK"' EXIT

# seconds since the epoch, with fractions
now() { python3 -c 'import time; print(time.time())'; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

# gen_prompts N FILE: N simple lines of about 120 bytes
gen_prompts() {
  python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write('{"id": "row-%d", "prompt": "Summarise item %d of the nightly batch in one short sentence.", "shard": %d}\n' % (i, i, i % 16))
PY
}

# start_emulator PORT ARGS...: the emulator in the background, waiting until it answers
start_emulator() {
  local port=$1; shift
  AZURE_OPENAI_API_KEY=bench-key AZURE_CLIENT_SECRET=bench-secret "$BIN" emulator --port "$port" "$@" > "$WORK/emulator-$port.log" 2>&1 &
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/emulator/stats" > /dev/null && return 0
    sleep 0.1
  done
  echo "the emulator did not start" >&2; return 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# need COMMAND PACKAGE: installs Debian's PACKAGE when COMMAND is missing (as root), else
# says in one line what is missing and stops.
need() {
  command -v "$1" > /dev/null && return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || { command -v sudo > /dev/null && sudo -n true 2>/dev/null && sudo="sudo -n"; }
  if { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; } && command -v apt-get > /dev/null; then
    # A new machine has no package lists yet: install, and update the lists only if needed.
    (export DEBIAN_FRONTEND=noninteractive
     $sudo apt-get install -y -q "$2" > /dev/null 2>&1 || { $sudo apt-get update -q > /dev/null && $sudo apt-get install -y -q "$2" > /dev/null; }) || true
  fi
  command -v "$1" > /dev/null || { echo "missing: $1 (install the Debian package $2, as root: apt-get install $2)" >&2; exit 1; }
}

# kill_runs JOB COUNT MIN MAX: starts `run JOB` COUNT times and kill -9s each after a random
# MIN..MAX seconds; sets `kills` to how many were killed (a run that finished first is not).
kill_runs() {
  kills=0
  for _ in $(seq "$2"); do
    "$BIN" run "$1" --no-progress > /dev/null 2>&1 &
    local pid=$!
    sleep "$(python3 -c "import random; print(round(random.uniform($3, $4), 2))")"
    if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    wait "$pid" 2>/dev/null || true
  done
}

# python_venv PACKAGE...: a venv with PACKAGE from PyPI, kept under .build/ between runs;
# prints its python, or nothing when it cannot be made (no venv module, no PyPI).
python_venv() {
  local venv="$ROOT/.build/bench-venv"
  if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" > /dev/null 2>&1; then
      rm -rf "$venv"
      # Debian keeps the venv module in a package of its own.
      if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        (export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q python3-venv > /dev/null 2>&1 || { apt-get update -q > /dev/null && apt-get install -y -q python3-venv > /dev/null; }) || true
      fi
      python3 -m venv "$venv" > /dev/null 2>&1 || { rm -rf "$venv"; return 0; }
    fi
  fi
  "$venv/bin/pip" install -q "$@" > /dev/null 2>&1 || return 0
  echo "$venv/bin/python"
}

# wrk_post_script FILE: a wrk script posting the chat body the benchmarks' rows send, with
# the emulator's key.
wrk_post_script() {
  cat > "$1" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"gpt-5-mini","messages":[{"role":"user","content":"Summarise item 1 of the nightly batch in one short sentence."}],"max_tokens":64}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["api-key"] = "bench-key"
LUA
}

# need_postgres: a PostgreSQL database for a `state:` URL, in PG_URL (PGPASSWORD exported).
# Uses FOUNDRY_BATCH_TEST_POSTGRES when set; else, as root, starts the test cluster of
# .ci/postgres.sh (installing Debian's PostgreSQL when missing); else says what is missing.
need_postgres() {
  if [ -z "${FOUNDRY_BATCH_TEST_POSTGRES:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
      local started
      started=$(bash "$ROOT/.ci/postgres.sh") || { echo "missing: PostgreSQL (.ci/postgres.sh could not start it)" >&2; exit 1; }
      eval "$started"
    else
      echo "missing: PostgreSQL (run as root, or eval \"\$(sudo .ci/postgres.sh)\" and export FOUNDRY_BATCH_TEST_POSTGRES and PGPASSWORD)" >&2; exit 1
    fi
  fi
  PG_URL=$FOUNDRY_BATCH_TEST_POSTGRES
  export PGPASSWORD
  need psql postgresql-client
}

# pg_state NAME: sets PG_STATE to a state URL naming a new schema of PG_URL's database;
# drop_pg_schemas drops every schema made so.
pg_schemas=()
pg_state() {
  local schema
  schema="bench_$1_$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
  pg_schemas+=("$schema")
  case $PG_URL in *\?*) PG_STATE="$PG_URL&schema=$schema" ;; *) PG_STATE="$PG_URL?schema=$schema" ;; esac
}
# pg_cleanup: the EXIT trap of a PostgreSQL script: children first (a live run holds locks a
# DROP SCHEMA would wait for), then the schemas, then the scratch folder.
pg_cleanup() {
  pkill -P $$ 2>/dev/null || true
  wait 2>/dev/null || true
  drop_pg_schemas
  rm -rf "$WORK"
}
drop_pg_schemas() {
  for schema in "${pg_schemas[@]}"; do psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS \"$schema\" CASCADE" > /dev/null 2>&1 || true; done
}
