# A throwaway PostgreSQL cluster for the tests of crates/postgres.
# Sourced by .ci/run; by hand:
#   source .ci/postgres.sh && pg_start && cargo nextest run -p stackhook-postgres; pg_stop
#
# pg_start installs PostgreSQL with apt-get if initdb and pg_ctl are missing
# (on PATH or under /usr/lib/postgresql/*/bin), initialises a cluster in a
# fresh temporary directory, listening only on 127.0.0.1 on a free port,
# with TLS (a CA and a server certificate for localhost and 127.0.0.1, made
# here), and a login role and database `stackhook` with a random password.
# It exports:
#   STACKHOOK_TEST_POSTGRES_URL  postgres://stackhook:…@127.0.0.1:PORT/stackhook?sslmode=disable
#   STACKHOOK_TEST_POSTGRES_CA   the CA's certificate, for sslmode=verify-full
# As root (CI), the server runs as the `postgres` system user, which
# PostgreSQL requires. pg_stop stops it and removes the directory.

pg_bin_dir() {
    local dir
    local initdb
    initdb="$(command -v initdb 2>/dev/null || true)"
    for dir in ${initdb:+"$(dirname "$(readlink -f "$initdb")")"} $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

pg_as_server_user() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    local bin port password
    if ! bin="$(pg_bin_dir)"; then
        echo "postgres: initdb not found; installing PostgreSQL with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bin="$(pg_bin_dir)" || { echo "postgres: still no initdb after installing"; return 1; }
    fi
    if ! command -v openssl >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
    fi
    PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/stackhook-pg.XXXXXX")"
    export PG_DIR
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$PG_DIR"
    fi
    chmod 700 "$PG_DIR"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    password="$(openssl rand -hex 16)"

    pg_as_server_user "$bin/initdb" -D "$PG_DIR/data" -U postgres -E UTF8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log"; return 1; }

    # TLS: a CA, and a server certificate it signs for localhost/127.0.0.1.
    (
        set -e
        cd "$PG_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj "/CN=stackhook test CA" -keyout ca.key -out ca.crt \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=localhost" -keyout data/server.key -out server.csr 2>/dev/null
        printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out data/server.crt 2>/dev/null
        rm -f ca.key server.csr server.ext ca.srl
        chmod 600 data/server.key
        chmod 644 ca.crt
    ) || return 1
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres:postgres "$PG_DIR"
    fi

    pg_as_server_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PG_DIR -c ssl=on -c max_connections=200" \
        >/dev/null || { cat "$PG_DIR/server.log"; return 1; }
    PG_BIN="$bin"
    export PG_BIN PG_PORT="$port"

    pg_as_server_user "$bin/psql" -q -X -h "$PG_DIR" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE stackhook LOGIN PASSWORD '$password'" \
        -c "CREATE DATABASE stackhook OWNER stackhook" >/dev/null \
        || return 1

    export STACKHOOK_TEST_POSTGRES_URL="postgres://stackhook:$password@127.0.0.1:$port/stackhook?sslmode=disable"
    export STACKHOOK_TEST_POSTGRES_CA="$PG_DIR/ca.crt"
    echo "postgres: $("$bin/postgres" --version) on 127.0.0.1:$port (data in $PG_DIR)"
}

pg_stop() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ]; then
        if [ -n "${PG_BIN:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
            pg_as_server_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
                || pg_as_server_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 \
                || true
        fi
        rm -rf "$PG_DIR"
    fi
    unset PG_DIR
}
