# shellcheck shell=bash
# Stand-ins for the DevStack functions devstack/plugin.sh calls. Each records
# its name and arguments, one call per line, fields separated by \x1f, in
# $STUB_CALLS; iniset also writes the real INI file so it can be validated.
# Inputs: STUB_CALLS, STUB_PYTHON, STUB_BIN_DIR, STUB_TRANSPORT_URL, STUB_DB_BASE,
# ENABLED_SERVICES (comma separated, as DevStack keeps it).

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
function run_process { _stub_record run_process "$@"; }
function stop_process { _stub_record stop_process "$@"; }
function wait_for_service { _stub_record wait_for_service "$@"; }
function echo_summary { _stub_record echo_summary "$@"; }
function warn { _stub_record warn "$@"; }
function die { _stub_record die "$@"; exit 1; }
# Runs the command unprivileged: the stub is about what the plugin asks for.
function sudo { _stub_record sudo "$@"; "$@"; }
