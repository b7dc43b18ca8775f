# shellcheck shell=bash
# Stand-ins for the DevStack functions devstack/plugin.sh calls. Each records
# its name and arguments, one call per line, fields separated by \x1f, in
# $STUB_CALLS; iniset also writes the real INI file so it can be validated.
# Inputs: STUB_CALLS, STUB_PYTHON, STUB_BIN_DIR, STUB_TRANSPORT_URL, STUB_DB_BASE,
# ENABLED_SERVICES (comma separated, as DevStack keeps it).
# With STUB_REAL=1, run_process really starts the command (in its own session,
# output to $STUB_LOG_DIR/<name>.log, "<name> <pid>" appended to $STUB_PIDS),
# stop_process stops it, and wait_for_service really waits for an HTTP answer.

function _stub_record {
    local IFS=$'\x1f'
    printf '%s\n' "$*" >> "$STUB_CALLS"
}

function is_service_enabled {
    local svc
    for svc in "$@"; do
        [[ ",$ENABLED_SERVICES," == *",$svc,"* ]] && return 0
    done
    return 1
}

function enable_service {
    local svc
    for svc in "$@"; do
        is_service_enabled "$svc" || ENABLED_SERVICES="${ENABLED_SERVICES:+$ENABLED_SERVICES,}$svc"
    done
}

function trueorfalse {
    local default=$1 name=$2
    case "${!name:-$default}" in
        1|yes|Yes|YES|true|True|TRUE|on|On|ON) echo True ;;
        *) echo False ;;
    esac
}

function iniset {
    _stub_record iniset "$@"
    "$STUB_PYTHON" - "$@" <<'PY'
import configparser, sys
path, section, key, value = sys.argv[1:5]
cp = configparser.RawConfigParser(interpolation=None)
cp.optionxform = str
cp.read(path)
if section != "DEFAULT" and not cp.has_section(section):
    cp.add_section(section)
cp.set(section, key, value)
with open(path, "w") as f:
    cp.write(f)
PY
}

function get_python_exec_prefix { echo "$STUB_BIN_DIR"; }
function get_transport_url { echo "$STUB_TRANSPORT_URL"; }
function database_connection_url { echo "$STUB_DB_BASE/$1"; }
function setup_develop { _stub_record setup_develop "$@"; }
function pip_install { _stub_record pip_install "$@"; }
function recreate_database { _stub_record recreate_database "$@"; }
function create_service_user { _stub_record create_service_user "$@"; }
function run_process {
    _stub_record run_process "$@"
    [[ "${STUB_REAL:-0}" == 1 ]] || return 0
    local name=$1 command=$2
    # $command is one string, as DevStack's run_process takes it: let bash split it.
    setsid bash -c "exec $command" >> "$STUB_LOG_DIR/$name.log" 2>&1 < /dev/null &
    echo "$name $!" >> "$STUB_PIDS"
}

function stop_process {
    _stub_record stop_process "$@"
    [[ "${STUB_REAL:-0}" == 1 ]] || return 0
    local name=$1 pid
    pid=$(awk -v n="$name" '$1 == n {print $2}' "$STUB_PIDS" | tail -n 1)
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
}

function wait_for_service {
    _stub_record wait_for_service "$@"
    [[ "${STUB_REAL:-0}" == 1 ]] || return 0
    "$STUB_PYTHON" - "$@" <<'PY'
import sys, time, urllib.error, urllib.request
timeout, url = float(sys.argv[1]), sys.argv[2]
deadline = time.monotonic() + timeout
while True:
    try:
        urllib.request.urlopen(url, timeout=2)
        break
    except urllib.error.HTTPError:
        break  # any HTTP answer means it is up, as DevStack's curl loop counts it
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.2)
PY
}
function echo_summary { _stub_record echo_summary "$@"; }
function warn { _stub_record warn "$@"; }
function die { _stub_record die "$@"; exit 1; }
# Runs the command unprivileged: the stub is about what the plugin asks for.
function sudo { _stub_record sudo "$@"; "$@"; }
