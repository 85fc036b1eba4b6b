#!/usr/bin/env bash
# Starts a PostgreSQL server on loopback for the tests (installing Debian's package when it is
# missing), with a role and a database of their own, and prints the two variables the tests read:
#   eval "$(.ci/postgres.sh)"   # FOUNDRY_BATCH_TEST_POSTGRES=postgresql://..., PGPASSWORD=...
# Run as root (it runs the server as the postgres user). Safe to run again: it reuses the cluster.
set -euo pipefail
PORT=${FOUNDRY_BATCH_PG_PORT:-55432}
DATA=${FOUNDRY_BATCH_PG_DATA:-/tmp/foundry-batch-postgres}
ROLE=foundry_test
DB=foundry_test
PASSWORD=${FOUNDRY_BATCH_PG_PASSWORD:-foundry-test-only-password}

if [ "$(id -u)" != 0 ]; then echo "postgres.sh: run as root (it installs and starts PostgreSQL as the postgres user)" >&2; exit 1; fi
if ! ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -q --no-install-recommends postgresql || { apt-get update -q && apt-get install -y -q --no-install-recommends postgresql; }; } >&2
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_postgres() { su postgres -s /bin/sh -c "$*"; }

if [ ! -f "$DATA/PG_VERSION" ]; then
  mkdir -p "$DATA" && chown postgres: "$DATA" && chmod 700 "$DATA"
  as_postgres "'$BIN/initdb' -D '$DATA' --auth-local=trust --auth-host=scram-sha-256 -U postgres" > /dev/null
fi
if ! as_postgres "'$BIN/pg_ctl' -D '$DATA' status" > /dev/null 2>&1; then
  as_postgres "'$BIN/pg_ctl' -D '$DATA' -l '$DATA/server.log' -w -o \"-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories='$DATA' -c max_connections=200 -c fsync=off\" start" > /dev/null
fi
psql() { as_postgres "'$BIN/psql' -h '$DATA' -p $PORT -U postgres -v ON_ERROR_STOP=1 -qAt $*"; }
if [ "$(psql "-c \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"")" != 1 ]; then
  psql "-c \"CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'\""
fi
if [ "$(psql "-c \"SELECT 1 FROM pg_database WHERE datname = '$DB'\"")" != 1 ]; then
  psql "-c \"CREATE DATABASE $DB OWNER $ROLE\""
fi
echo "export FOUNDRY_BATCH_TEST_POSTGRES=postgresql://$ROLE@127.0.0.1:$PORT/$DB"
echo "export PGPASSWORD=$PASSWORD"
