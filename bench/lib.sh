# Shared by the scripts in bench/, after ops/lib.sh (which installs Swift and PostgreSQL when they are missing).
# shellcheck shell=bash

# tock and tock-bench, release builds, side by side (tock-bench runs the tock beside it). Sets $bin.
build_bench() {
    echo "$1: building tock and tock-bench (release)" >&2
    swift build -c release --product tock >&2
    swift build -c release --product tock-bench >&2
    bin="$(swift build -c release --show-bin-path)"
}

# A throwaway PostgreSQL cluster for a benchmark, made by the tock binary in $1 under /tmp/tock-$2.*: the settings
# the peers run with (initdb defaults, durable commits, clients on a unix socket). Sets $home and $url, and exports
# PGPASSWORD: the embedded cluster asks every connection for its superuser's password, and psql, pgbench and the
# peers' drivers connect with their own URLs. The cluster is stopped and removed when the calling script exits.
start_throwaway_cluster() {
    home="$(mktemp -d "/tmp/tock-$2.XXXXXX")"
    chmod 755 "$home"  # the cluster runs as the postgres OS user when we are root
    trap "\"$1/tock\" cluster stop --home \"$home\" >/dev/null 2>&1 || true; rm -rf \"$home\"" EXIT
    url="$("$1/tock" cluster start --home "$home")"
    PGPASSWORD="$(cat "$home/postgres/password")"
    export PGPASSWORD
}

# matplotlib from PyPI, in a virtualenv under .tock (kept between runs), as ops/lib.sh installs the tests' tools.
# Prints the virtualenv's directory.
ensure_plot_tools() {
    local venv=.tock/venv-bench
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        }
    fi
    "$venv/bin/python" -c "import matplotlib" 2>/dev/null || "$venv/bin/pip" install -q "matplotlib>=3.7" >&2
    echo "$venv"
}
