# Shared by ops/up, ops/test and the scripts in bench/: install what is missing, never by hand.
# shellcheck shell=bash

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "ops: need root to run: $*" >&2; exit 1; fi
}

# PostgreSQL's server tools (initdb, pg_ctl, postgres) and psql: from Debian when absent.
ensure_postgres() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v psql >/dev/null; then return; fi
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v psql >/dev/null; then return; fi
    echo "ops: installing PostgreSQL (apt-get install -y postgresql)" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
    # Debian starts a system cluster on install; Tock uses its own, so leave that one alone but do not need it.
}

ensure_swift() {
    if command -v swift >/dev/null; then return; fi
    for dir in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
        if [ -x "$dir/swift" ]; then export PATH="$dir:$PATH"; return; fi
    done
    echo "ops: Swift 6 is not installed and Debian does not package it: install it from https://swift.org/install/linux/ and re-run" >&2
    exit 1
}

# runuser (util-linux) lets root run the cluster as the postgres user.
ensure_runuser() {
    if [ "$(id -u)" = 0 ] && ! command -v runuser >/dev/null; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux >/dev/null
    fi
}

# The portal's browser test: Debian's chromium and its driver.
ensure_browser() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then return; fi
    echo "ops: installing chromium and chromium-driver (apt-get install -y chromium chromium-driver)" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}

# selenium, schemathesis, hypothesis and psycopg from PyPI, in a virtualenv under .tock (kept between runs).
ensure_python_tools() {
    local venv=.tock/venv-test
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        }
    fi
    "$venv/bin/python" -c "import selenium, schemathesis, hypothesis, psycopg, standardwebhooks" 2>/dev/null \
        || "$venv/bin/pip" install -q "selenium>=4.20" "schemathesis>=4,<5" "hypothesis>=6" "psycopg[binary]>=3.1" \
            "standardwebhooks>=1.0" >&2
    echo "$venv"
}

# The operations checks: PgBouncer (the pooling test), promtool (Debian's prometheus package) for the alert rules.
# systemd-analyze comes with systemd, which every Debian has.
ensure_ops_tools() {
    local missing=()
    command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    # The fault suite builds hosts as network namespaces.
    command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
    [ ${#missing[@]} -eq 0 ] && return
    echo "ops: installing ${missing[*]} (apt-get install -y ${missing[*]})" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian's prometheus package starts a server where it can; Tock's tests only need promtool.
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
}
