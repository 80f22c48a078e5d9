#!/usr/bin/env bash
# pgbench baseline for `flashsale bench --scenario hot`: the statements one purchase issues on
# `atomic` (purchase.sql), or one group of purchases on `queue` (group.sql, GROUP purchases per
# transaction: purchases/s = tps × GROUP), on the same PostgreSQL server, with as many connections
# as the inventory pool (DB_POOL_SIZE, default 10). Prints pgbench's summary.
#   usage: bench/pgbench/run.sh [postgres://user@127.0.0.1:5432/postgres] [seconds] [clients] [purchase|group] [GROUP]
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/postgres}
seconds=${2:-10}
clients=${3:-${DB_POOL_SIZE:-10}}
script=${4:-purchase}
group=${5:-20}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pgbench=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -n 1)
db="flashsale_pgbench_$$"
scratch="${url%/*}/$db"
psql "$url" -qc "create database $db"
trap 'psql "$url" -qc "drop database if exists $db with (force)" >/dev/null' EXIT
# Both modules' tables in one database: pgbench connects to one; the server does the same work.
for file in "$root"/src/inventory/migrations/*.sql "$root"/src/orders/migrations/*.sql; do
  psql "$scratch" -q -v ON_ERROR_STOP=1 -f "$file" >/dev/null
done
product=$(psql "$scratch" -qAtc "insert into products (id, name, price_cents, stock, remaining, hold_seconds, strategy)
  values (gen_random_uuid(), 'pgbench', 1000, 1000000000, 1000000000, 300, 'atomic') returning id")
"$pgbench" -n -M prepared -c "$clients" -j 2 -T "$seconds" -D product="$product" -D group="$group" -f "$here/$script.sql" "$scratch"
