"""The ``XenAPIPlugin`` module of a (simulated) dom0.

Same interface as the one xapi ships for host plugins: ``Failure(code,
params)``, ``success_message``, ``failure_message`` and
``dispatch(fn_table)``, which decodes the XML-RPC methodCall xapi passes as
argv[1] (``fn(session_ref, {args})``), calls ``fn_table[fn](session, args)``
and prints the XML-RPC methodResponse on stdout:

- a return value -> ``{Status: Success, Value: value}``
- ``raise Failure(code, params)`` -> ``{Status: Failure, ErrorDescription:
  [code, *params]}``: the caller of host.call_plugin gets that error as is
- any other exception -> ``XENAPI_PLUGIN_FAILURE [fn, exception class, text]``
- an unknown fn -> ``UNKNOWN_XENAPI_PLUGIN_FUNCTION [fn]``

``session`` is a ``XenAPI.Session`` carrying the caller's session ref. On a
real dom0 ``XenAPI.xapi_local()`` reaches xapi over its Unix socket
``/var/lib/xcp/xapi``; here this module points it at the host's simulated
socket (``XAPISIM_XAPI_SOCKET``, in the scratch dom0 root), through the
SDK's own Unix-socket transport, or at the coordinator's URL
(``XAPISIM_URL``) when that path cannot be spelt for the SDK (it writes "/"
as "_"). Plugins that call ``XenAPI.xapi_local()`` themselves work too,
provided they import XenAPIPlugin first (every plugin does).
"""

import os
import sys
import xmlrpc.client

import XenAPI


class Failure(Exception):
    """An error for the host.call_plugin caller: ``[code] + params``."""

    def __init__(self, code, params):
        super().__init__(code, params)
        self.params = [code] + list(params)

    def __str__(self):
        return str(self.params)


def success_message(result):
    return xmlrpc.client.dumps(({"Status": "Success", "Value": result},), "", True)


def failure_message(description):
    return xmlrpc.client.dumps(({"Status": "Failure", "ErrorDescription": description},), "",
                               True)


def _simulator_session():
    sock = os.environ.get("XAPISIM_XAPI_SOCKET", "")
    if sock and "_" not in sock and os.path.exists(sock):
        return XenAPI.Session("http://" + sock.replace("/", "_") + "/",
                              transport=XenAPI.UDSTransport())
    return XenAPI.Session(os.environ["XAPISIM_URL"])


if os.environ.get("XAPISIM_URL"):
    XenAPI.xapi_local = _simulator_session


def dispatch(fn_table):
    if len(sys.argv) != 2:
        raise Exception("Incorrect number of commandline arguments")
    params, name = xmlrpc.client.loads(sys.argv[1])
    session_ref, args = params[0], params[1]
    if name not in fn_table:
        print(failure_message(["UNKNOWN_XENAPI_PLUGIN_FUNCTION", name]))
        return
    session = XenAPI.xapi_local()
    session._session = session_ref
    try:
        result = fn_table[name](session, args)
    except SystemExit:
        raise
    except Failure as e:
        print(failure_message(e.params))
    except Exception as e:  # the plugin's own bug: reported, not a crash of xapi
        print(failure_message(["XENAPI_PLUGIN_FAILURE", name, e.__class__.__name__, str(e)]))
    else:
        print(success_message(result))
