#!/bin/sh
# Trestle image install steps, generated beside the Dockerfile that runs them (as root, during the
# image build). The same script runs unprivileged outside Docker, into a virtualenv, for tests:
#
#   TRESTLE_VENV       the virtualenv to create or reuse (default /opt/trestle/venv)
#   TRESTLE_PYTHON     the interpreter for a new virtualenv: a version such as 3.11, or a path
#   TRESTLE_SKIP_APT   1: skip apt-get for system_packages (skipped anyway when not root)
#   TRESTLE_SKIP_SYSTEM  1: act as if not root: no apt-get, no user, no chown (for tests run as root)
#   TRESTLE_ROOT       a prefix for the directories it creates (default: none, i.e. /)
#   UV                 the uv executable (default: uv on PATH)
set -eu

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
venv=${TRESTLE_VENV:-/opt/trestle/venv}
python=${TRESTLE_PYTHON:-python3}
uv=${UV:-uv}
root=${TRESTLE_ROOT:-}
app_uid=60000

log() { printf 'trestle-install: %s\n' "$*"; }
is_root() { [ "${TRESTLE_SKIP_SYSTEM:-0}" != 1 ] && [ "$(id -u)" = 0 ]; }

# 1. system_packages, through apt.
if [ -s "$here/system_packages.txt" ]; then
    if [ "${TRESTLE_SKIP_APT:-0}" = 1 ] || ! is_root; then
        log "skipping apt-get install of: $(tr '\n' ' ' < "$here/system_packages.txt")"
    else
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        xargs apt-get install -y --no-install-recommends < "$here/system_packages.txt"
        rm -rf /var/lib/apt/lists/*
    fi
fi

# 2. The virtualenv (an existing one is reused).
if [ -x "$venv/bin/python" ]; then
    log "using the virtualenv at $venv"
else
    "$uv" venv --python "$python" "$venv"
fi

# 3. Trestle and the truss's requirements, resolved together (a conflict is reported, not hidden).
cd "$here"
set -- -r trestle.txt
if [ -s requirements.txt ]; then
    set -- "$@" -r requirements.txt
fi
"$uv" pip install --python "$venv/bin/python" "$@"

# 4. build_commands, in order, as Truss runs them.
if [ -s build_commands.sh ]; then
    log "running build_commands"
    sh -eu build_commands.sh
fi

# 5. The non-root user (uid 60000, as in Truss images) and the directories it writes to.
if is_root; then
    if ! id -u "$app_uid" >/dev/null 2>&1; then
        if command -v useradd >/dev/null 2>&1; then
            useradd --uid "$app_uid" --user-group --create-home --shell /bin/sh app
        else
            adduser -D -u "$app_uid" app
        fi
    fi
fi
if [ -s writable_dirs.txt ]; then
    while IFS= read -r dir; do
        [ -n "$dir" ] || continue
        mkdir -p "$root$dir"
        if is_root; then chown -R "$app_uid:$app_uid" "$root$dir"; fi
    done < writable_dirs.txt
fi
log "done"
