#!/bin/bash
# shellcheck shell=bash
#
# devstack/plugin.sh: DevStack plugin for compute-agent.
#
# DevStack sources this file as `plugin.sh <mode> [<phase>]`: mode stack with
# the phases install, post-config and extra; unstack; clean. The functions it
# calls (iniset, run_process, ...) are DevStack's; settings sets the variables.

_XTRACE_COMPUTE_AGENT=$(set +o | grep xtrace)
set +o xtrace

# Where setup_develop put the console scripts (the global venv, normally).
function compute_agent_bin_dir {
    echo "${COMPUTE_AGENT_BIN_DIR:-$(get_python_exec_prefix)}"
}

function compute_agent_uses_simulator {
    [[ -z "$XENAPI_CONNECTION_URL" ]]
}

function compute_agent_database_url {
    if is_service_enabled mysql postgresql; then
        database_connection_url "$COMPUTE_AGENT_DB_NAME"
    else
        echo "sqlite:///$COMPUTE_AGENT_STATE_DIR/compute-agent.sqlite"
    fi
}

function install_compute_agent {
    setup_develop "$COMPUTE_AGENT_DIR"
}

function configure_compute_agent {
    local conf=$COMPUTE_AGENT_CONF
    sudo install -d -o "$STACK_USER" -m 755 "$COMPUTE_AGENT_CONF_DIR"
    sudo install -d -o "$STACK_USER" -m 750 "$COMPUTE_AGENT_STATE_DIR"
    # Start from an empty file: iniset only edits, so a re-stack must not keep stale keys.
    rm -f "$conf"
    touch "$conf"
    chmod 640 "$conf"

    iniset "$conf" DEFAULT debug "$ENABLE_DEBUG_LOG_LEVEL"
    iniset "$conf" DEFAULT state_path "$COMPUTE_AGENT_STATE_DIR"
    iniset "$conf" DEFAULT transport_url "$(get_transport_url)"
    iniset "$conf" DEFAULT compute_driver "$COMPUTE_AGENT_DRIVER"
    iniset "$conf" DEFAULT concurrency_backend "$COMPUTE_AGENT_CONCURRENCY_BACKEND"
    if [[ -n "$COMPUTE_AGENT_HOST" ]]; then
        iniset "$conf" DEFAULT host "$COMPUTE_AGENT_HOST"
    fi
    iniset "$conf" oslo_messaging_notifications driver messagingv2

    if is_service_enabled mysql postgresql; then
        recreate_database "$COMPUTE_AGENT_DB_NAME"
    fi
    iniset "$conf" database connection "$(compute_agent_database_url)"

    if compute_agent_uses_simulator; then
        iniset "$conf" xenserver connection_url "http://$XAPI_SIM_HOST:$XAPI_SIM_PORT"
        iniset "$conf" xenserver connection_username root
        iniset "$conf" xenserver connection_password "$XAPI_SIM_PASSWORD"
    else
        iniset "$conf" xenserver connection_url "$XENAPI_CONNECTION_URL"
        iniset "$conf" xenserver connection_username "$XENAPI_USER"
        iniset "$conf" xenserver connection_password "$XENAPI_PASSWORD"
        if [[ -n "$XENAPI_CA_FILE" ]]; then
            iniset "$conf" xenserver ca_file "$XENAPI_CA_FILE"
        fi
        iniset "$conf" xenserver insecure "$XENAPI_INSECURE"
    fi
    configure_compute_agent_glance
}

# Builds from Glance images and snapshots into Glance: point [glance] at
# DevStack's Glance through Keystone, with a service user of the agent's own
# (keystoneauth1 finds the image endpoint in the catalog). Without Glance the
# agent boots blank disks and images given by URL.
function configure_compute_agent_glance {
    local conf=$COMPUTE_AGENT_CONF
    is_service_enabled g-api glance || return 0
    create_service_user "$COMPUTE_AGENT_SERVICE_USER" "admin"
    iniset "$conf" glance auth_type password
    iniset "$conf" glance auth_url "$KEYSTONE_SERVICE_URI"
    iniset "$conf" glance username "$COMPUTE_AGENT_SERVICE_USER"
    iniset "$conf" glance password "$SERVICE_PASSWORD"
    iniset "$conf" glance user_domain_name "$SERVICE_DOMAIN_NAME"
    iniset "$conf" glance project_name "$SERVICE_PROJECT_NAME"
    iniset "$conf" glance project_domain_name "$SERVICE_DOMAIN_NAME"
    iniset "$conf" glance region_name "$REGION_NAME"
    iniset "$conf" glance valid_interfaces public
}

function init_compute_agent {
    "$(compute_agent_bin_dir)/compute-agent-manage" --config-file "$COMPUTE_AGENT_CONF" db sync \
        || die $LINENO "compute-agent-manage db sync failed"
}

function start_xapi_sim {
    local url="http://$XAPI_SIM_HOST:$XAPI_SIM_PORT/"
    mkdir -p "$COMPUTE_AGENT_STATE_DIR/xapi-sim"
    # The password goes in a file only its owner reads: a command line is
    # visible to every user of the machine (ps, /proc/*/cmdline).
    local pwfile="$COMPUTE_AGENT_STATE_DIR/xapi-sim/password"
    (umask 077 && printf '%s\n' "$XAPI_SIM_PASSWORD" > "$pwfile")
    run_process xapi-sim "$(compute_agent_bin_dir)/xapi-sim \
--listen $XAPI_SIM_HOST:$XAPI_SIM_PORT --hosts $XAPI_SIM_HOSTS \
--task-duration $XAPI_SIM_TASK_DURATION \
--user root --password-file $pwfile \
--state-dir $COMPUTE_AGENT_STATE_DIR/xapi-sim \
--plugins-dir $COMPUTE_AGENT_DIR/etc/xapi.d/plugins"
    wait_for_service "$SERVICE_TIMEOUT" "$url" \
        || die $LINENO "xapi-sim did not answer on $url"
}

# The same checks an operator runs before an upgrade: database at head, dom0 and
# broker reachable. A failure (exit 2) stops the stack; a warning (1) is shown.
function check_compute_agent {
    local rc=0
    "$(compute_agent_bin_dir)/compute-agent-status" --config-file "$COMPUTE_AGENT_CONF" \
        upgrade check || rc=$?
    if [[ $rc -ge 2 ]]; then
        die $LINENO "compute-agent-status upgrade check failed"
    elif [[ $rc -eq 1 ]]; then
        warn $LINENO "compute-agent-status upgrade check reported warnings"
    fi
}

function start_compute_agent {
    if is_service_enabled xapi-sim; then
        start_xapi_sim
    fi
    check_compute_agent
    run_process compute-agent "$(compute_agent_bin_dir)/compute-agent \
--config-file $COMPUTE_AGENT_CONF"
}

function stop_compute_agent {
    stop_process compute-agent
    if is_service_enabled xapi-sim; then
        stop_process xapi-sim
    fi
}

function cleanup_compute_agent {
    sudo rm -rf "$COMPUTE_AGENT_STATE_DIR" "$COMPUTE_AGENT_CONF_DIR"
}

if is_service_enabled compute-agent; then
    case "$1" in
        stack)
            case "$2" in
                install)
                    echo_summary "Installing compute-agent"
                    install_compute_agent
                    ;;
                post-config)
                    echo_summary "Configuring compute-agent"
                    configure_compute_agent
                    ;;
                extra)
                    echo_summary "Initializing and starting compute-agent"
                    init_compute_agent
                    start_compute_agent
                    ;;
            esac
            ;;
        unstack)
            stop_compute_agent
            ;;
        clean)
            cleanup_compute_agent
            ;;
    esac
fi

$_XTRACE_COMPUTE_AGENT
