#!/usr/bin/env python3
"""scanner.py -- an example exec admission webhook for sandboxd: it reads the
code of `python3 -c` calls with Python's own parser (ast) and refuses code
that imports or calls what the operator lists, and shell one-liners that
fetch from the network.  Standard library only.

Run:   SCANNER_SECRET=s3cret python3 scanner.py --listen 127.0.0.1:8089
Group: "execPolicy": {"webhook": {"url": "http://127.0.0.1:8089/admit",
                                  "secret": "s3cret", "failurePolicy": "Deny"}}
(a webhook on loopback or a private address needs sandboxd
--exec-webhook-allow-private; without it only public addresses are called)

sandboxd POSTs {"kind", "subscriptionId", "group", "sandbox", "command",
"envKeys", "cwd"?, "language"?, "code"?} signed with X-Sandboxd-Signature:
sha256=<hex HMAC-SHA256 of the body>; this answers {"allow": bool,
"reason": str}.  A request with a bad signature is answered 401, which
sandboxd treats as a failed webhook (its failurePolicy decides).
"""
import argparse
import ast
import hashlib
import hmac
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FORBIDDEN_MODULES = {"socket", "ctypes", "subprocess", "pty", "multiprocessing"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRS = {"system", "popen", "fork", "execv", "execve", "spawnv"}
SHELL_NETWORK = re.compile(r"(^|[\s;&|(])(curl|wget|nc|ncat|telnet)(\s|$)")
MAX_BODY = 1 << 20


def check_python(code):
    """None when the code may run, else why not."""
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as e:
        return "python: syntax error at line %s: %s" % (e.lineno, e.msg)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    return "python: imports %s" % alias.name
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
                return "python: imports from %s" % node.module
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in FORBIDDEN_CALLS:
                return "python: calls %s()" % f.id
            if isinstance(f, ast.Attribute) and f.attr in FORBIDDEN_ATTRS:
                return "python: calls .%s()" % f.attr
    return None


def decide(question):
    """(allow, reason) for one admission question."""
    command = question.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        return False, "no command"
    code = question.get("code")
    language = question.get("language")
    if isinstance(code, str) and language == "python":
        why = check_python(code)
        if why:
            return False, why
    if isinstance(code, str) and language == "shell" and SHELL_NETWORK.search(code):
        return False, "shell: fetches from the network"
    return True, "ok"


def signature_ok(secret, body, header):
    if not secret:
        return True
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, header or "")


class Handler(BaseHTTPRequestHandler):
    secret = None

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n <= 0 or n > MAX_BODY:
            return self.answer(400, {"error": "bad length"})
        body = self.rfile.read(n)
        if not signature_ok(self.secret, body, self.headers.get("X-Sandboxd-Signature")):
            return self.answer(401, {"error": "bad signature"})
        try:
            question = json.loads(body)
        except ValueError:
            return self.answer(400, {"error": "not JSON"})
        allow, reason = decide(question if isinstance(question, dict) else {})
        self.answer(200, {"allow": allow, "reason": reason})

    def answer(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("scanner: " + (fmt % args) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:8089", help="host:port")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    Handler.secret = os.environ.get("SCANNER_SECRET")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    sys.stderr.write("scanner: listening on %s\n" % a.listen)
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
