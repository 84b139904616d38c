#!/usr/bin/env bash
# Starts the real backing services the end-to-end suite runs against, on
# 127.0.0.1 only, and writes their settings to target/ci-services.env:
#
#   PostgreSQL  a throwaway cluster (initdb + pg_ctl) in a temp dir, port 55432,
#               trust auth, run as the `postgres` user when we are root
#   S3          moto_server (PyPI `moto[server]`) on port 9000, bucket easel-test
#
#   scripts/ci-services.sh          install what is missing, start, wait, write env
#   scripts/ci-services.sh stop     stop both and remove the cluster
#   scripts/ci-services.sh status   say what is running
#
# Idempotent: a service already answering on its port is reused. Installs
# Debian's `postgresql` with apt-get and `moto[server]` with pip only when
# missing (sudo only when not root). Then:
#
#   set -a; . target/ci-services.env; set +a; cargo test ...
#
# Exits non-zero, saying why, when a service cannot be installed or started.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/target/ci-services"
env_file="$root/target/ci-services.env"
pg_port="${EASEL_CI_PG_PORT:-55432}"
s3_port="${EASEL_CI_S3_PORT:-9000}"
bucket="easel-test"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/easel/moto-venv"

log() { echo "ci-services: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi

# Runs a command as the owner of the cluster: `postgres` when we are root
# (initdb refuses root), ourselves otherwise.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

pg_bin_dir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

pg_ready() {
    local bin
    bin="$(pg_bin_dir)"
    [ -n "$bin" ] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" >/dev/null 2>&1
}

s3_ready() {
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$s3_port/" 2>/dev/null
}

moto_bin() {
    if command -v moto_server >/dev/null 2>&1; then
        command -v moto_server
    elif [ -x "$venv/bin/moto_server" ]; then
        echo "$venv/bin/moto_server"
    fi
}

apt_install() {
    log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq || die "apt-get update failed"
    $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        die "apt-get install $* failed"
}

install_missing() {
    local missing=()
    [ -n "$(pg_bin_dir)" ] || missing+=(postgresql)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if [ -z "$(moto_bin)" ]; then
        command -v python3 >/dev/null 2>&1 || missing+=(python3)
        python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    fi
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    [ -n "$(pg_bin_dir)" ] || die "no initdb after installing postgresql"
    # Debian's package starts its own cluster on 5432; ours is separate and
    # does not need it, so it is left alone.
    if [ -z "$(moto_bin)" ]; then
        log "installing moto[server] from PyPI into $venv"
        python3 -m venv "$venv" || die "python3 -m venv failed"
        "$venv/bin/pip" install -q --disable-pip-version-check 'moto[server]' ||
            die "pip install moto[server] failed"
    fi
    [ -n "$(moto_bin)" ] || die "no moto_server after installing moto[server]"
}

start_postgres() {
    if pg_ready; then
        log "PostgreSQL already answers on 127.0.0.1:$pg_port, reusing it"
        return
    fi
    local bin data
    bin="$(pg_bin_dir)"
    # A cluster left by an earlier run that is not answering: start over.
    if [ -f "$state/pgdata" ]; then
        data="$(cat "$state/pgdata")"
        as_pg "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$data"
    fi
    data="$(mktemp -d "${TMPDIR:-/tmp}/easel-pg.XXXXXX")"
    echo "$data" >"$state/pgdata"
    [ "$(id -u)" -ne 0 ] || chown postgres: "$data"
    chmod 700 "$data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$state/initdb.log" 2>&1 ||
        as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale \
            >"$state/initdb.log" 2>&1 ||
        die "initdb failed: $(tail -n 5 "$state/initdb.log")"
    # The server log lives in the cluster dir (its owner can write there).
    as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories='$data' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null ||
        die "pg_ctl start failed: $(tail -n 5 "$data/server.log" 2>/dev/null)"
}

start_moto() {
    if s3_ready; then
        log "an S3 endpoint already answers on 127.0.0.1:$s3_port, reusing it"
        return
    fi
    local bin
    bin="$(moto_bin)"
    nohup setsid "$bin" -H 127.0.0.1 -p "$s3_port" >"$state/moto.log" 2>&1 </dev/null &
    echo $! >"$state/moto.pid"
}

wait_for() {
    local what="$1" check="$2" i
    for i in $(seq 1 150); do
        if "$check"; then return 0; fi
        sleep 0.1
    done
    die "$what did not answer within 15 s"
}

stop_all() {
    local bin data pid
    bin="$(pg_bin_dir)"
    if [ -f "$state/pgdata" ]; then
        data="$(cat "$state/pgdata")"
        if [ -n "$bin" ] && [ -d "$data" ]; then
            as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
        fi
        rm -rf "$data" "$state/pgdata"
        log "PostgreSQL stopped"
    fi
    if [ -f "$state/moto.pid" ]; then
        pid="$(cat "$state/moto.pid")"
        kill "$pid" 2>/dev/null || true
        rm -f "$state/moto.pid"
        log "moto_server stopped"
    fi
    rm -f "$env_file"
}

case "${1:-start}" in
start) ;;
stop)
    stop_all
    exit 0
    ;;
status)
    pg_ready && log "PostgreSQL: up on 127.0.0.1:$pg_port" || log "PostgreSQL: down"
    s3_ready && log "S3 (moto): up on 127.0.0.1:$s3_port" || log "S3 (moto): down"
    exit 0
    ;;
*) die "usage: $0 [start|stop|status]" ;;
esac

started=$(date +%s.%N)
mkdir -p "$state"
install_missing
installed=$(date +%s.%N)
start_postgres
start_moto
wait_for "PostgreSQL on 127.0.0.1:$pg_port" pg_ready
wait_for "moto_server on 127.0.0.1:$s3_port (log: $state/moto.log)" s3_ready
# Creating an existing bucket is fine (moto answers 200 in us-east-1, real S3
# 409 BucketAlreadyOwnedByYou); anything else is an error.
code="$(curl -s -o "$state/bucket.out" -w '%{http_code}' -X PUT "http://127.0.0.1:$s3_port/$bucket")"
case "$code" in
200 | 409) ;;
*) die "creating bucket $bucket answered HTTP $code: $(head -c 300 "$state/bucket.out")" ;;
esac

cat >"$env_file" <<EOF
export EASEL_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
export EASEL_TEST_S3_URL=s3://$bucket
export AWS_ENDPOINT=http://127.0.0.1:$s3_port
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export EASEL_TEST_PG_BIN=$(pg_bin_dir)
export EASEL_TEST_MOTO_SERVER=$(moto_bin)
EOF
done_at=$(date +%s.%N)
log "$(awk -v a="$started" -v b="$installed" -v c="$done_at" \
    'BEGIN { printf "ready in %.1f s (install check %.1f s, start %.1f s)", c - a, b - a, c - b }')"
log "env written to $env_file"
