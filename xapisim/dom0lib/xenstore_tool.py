"""The simulated dom0's xenstore command-line tools (``xenstore-read``,
``-write``, ``-rm``, ``-list``, ``-exists``): same arguments, output and
exit status as the real ones, working on the simulator's xenstore of this
host through the control API (``XAPISIM_HOST_URL``, ``XAPISIM_HOST_UUID``).
"""

import json
import os
import ssl
import sys
import urllib.error
import urllib.request


def _call(doc):
    url = os.environ["XAPISIM_HOST_URL"].rstrip("/") + "/_sim/xenstore"
    doc = dict(doc, host=os.environ["XAPISIM_HOST_UUID"])
    req = urllib.request.Request(url, data=json.dumps(doc).encode(),
                                 headers={"Content-Type": "application/json"})
    ctx = ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE"))
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return {"error": json.loads(e.read() or b"{}").get("error", str(e))}


def main(tool, args):
    verb = tool.rsplit("-", 1)[-1]
    if verb == "write":
        if len(args) < 2 or len(args) % 2:
            print(f"Usage: {tool} key value [...]", file=sys.stderr)
            return 2
        for path, value in zip(args[::2], args[1::2], strict=True):
            answer = _call({"op": "write", "path": path, "value": value})
            if "error" in answer:
                print(f"{tool}: could not write path {path}", file=sys.stderr)
                return 1
        return 0
    if not args:
        print(f"Usage: {tool} key [...]", file=sys.stderr)
        return 2
    op = {"read": "read", "rm": "rm", "list": "ls", "exists": "exists"}[verb]
    for path in args:
        answer = _call({"op": op, "path": path})
        if "error" in answer or (op == "exists" and not answer.get("exists")):
            if op != "exists":
                what = "read" if op == "read" else "remove" if op == "rm" else "list"
                print(f"{tool}: couldn't {what} path {path}", file=sys.stderr)
            return 1
        if op == "read":
            print(answer["value"])
        elif op == "ls":
            for entry in answer["entries"]:
                print(entry)
    return 0


if __name__ == "__main__":
    sys.exit(main(os.path.basename(sys.argv[1]), sys.argv[2:]))
