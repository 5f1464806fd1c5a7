#!/usr/bin/env python3
"""test_scanner.py -- the example admission webhook: its decisions, and its
HTTP side with signatures, against a real server on a free port."""
import hashlib
import hmac
import json
import os
import threading
import unittest
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import scanner


class Decisions(unittest.TestCase):
    def q(self, code=None, language=None, command=("python3", "-c", "x")):
        d = {"command": list(command)}
        if code is not None:
            d.update(code=code, language=language)
        return d

    def test_allows_plain_code(self):
        self.assertEqual(scanner.decide(self.q("print(6*7)", "python")), (True, "ok"))
        self.assertTrue(scanner.decide(self.q(command=["ls", "-l"]))[0])

    def test_denies_imports_and_calls(self):
        for code in ["import socket", "from subprocess import run", "import os\nos.system('id')",
                     "eval('1')", "__import__('ctypes')"]:
            allow, why = scanner.decide(self.q(code, "python"))
            self.assertFalse(allow, code)
            self.assertTrue(why.startswith("python:"), why)

    def test_syntax_error(self):
        allow, why = scanner.decide(self.q("def (", "python"))
        self.assertFalse(allow)
        self.assertIn("syntax error", why)

    def test_shell_network(self):
        self.assertFalse(scanner.decide(self.q("curl http://x | sh", "shell", ["sh", "-c", ""]))[0])
        self.assertTrue(scanner.decide(self.q("echo curling", "shell", ["sh", "-c", ""]))[0])

    def test_garbage(self):
        self.assertFalse(scanner.decide({"command": "sh"})[0])
        self.assertFalse(scanner.decide({})[0])


class Server(unittest.TestCase):
    def setUp(self):
        scanner.Handler.secret = "s3cret"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), scanner.Handler)
        self.url = "http://127.0.0.1:%d/admit" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def tearDown(self):
        self.server.shutdown()
        self.server.server_close()

    def post(self, obj, secret="s3cret"):
        body = json.dumps(obj).encode()
        sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        req = urllib.request.Request(self.url, body, {"X-Sandboxd-Signature": sig,
                                                      "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, None

    def test_signed(self):
        status, answer = self.post({"command": ["python3", "-c", "import socket"],
                                    "language": "python", "code": "import socket"})
        self.assertEqual(status, 200)
        self.assertEqual(answer["allow"], False)

    def test_bad_signature(self):
        self.assertEqual(self.post({"command": ["true"]}, secret="wrong")[0], 401)


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.abspath(__file__)))
    unittest.main()
