#!/usr/bin/env python3
"""Test servers for test_egress, run inside a network namespace the test
made: HTTP on 80 and 8080, HTTPS on 443 (the certificate given), a TCP line
echo on 7000, a UDP echo on 7001 (of the address given) and a DNS server on 53 that answers A queries from
NAME=ADDR arguments (NXDOMAIN otherwise).  Prints "ready" once listening."""
import socket, ssl, struct, sys, threading

cert, key, udp_addr = sys.argv[1], sys.argv[2], sys.argv[3]
records = dict(a.split('=', 1) for a in sys.argv[4:])


def http_reply(conn):
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    body = b'hello\n'
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' % len(body) + body)


def serve_tcp(port, handler, wrap=None):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', port))
    s.listen(128)

    def one(c):
        try:
            if wrap:
                c = wrap.wrap_socket(c, server_side=True)
            handler(c)
        except Exception:
            pass
        finally:
            c.close()

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=one, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def echo(c):
    while True:
        d = c.recv(65536)
        if not d:
            return
        c.sendall(b'pong\n' if d == b'ping\n' else d)


def udp_echo():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((udp_addr, 7001))  # replies must come from the address asked
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(b'pong', a)


def dns():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', 53))
    while True:
        q, a = s.recvfrom(512)
        if len(q) < 12:
            continue
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
            i += 1 + q[i]
        qtype = struct.unpack('>H', q[i + 1:i + 3])[0]
        end = i + 5
        name = '.'.join(labels)
        addr = records.get(name)
        if addr is None:
            r = q[:2] + b'\x81\x83' + b'\x00\x01\x00\x00\x00\x00\x00\x00' + q[12:end]
        elif qtype != 1:
            r = q[:2] + b'\x81\x80' + b'\x00\x01\x00\x00\x00\x00\x00\x00' + q[12:end]
        else:
            r = (q[:2] + b'\x81\x80' + b'\x00\x01\x00\x01\x00\x00\x00\x00' + q[12:end] +
                 b'\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04' + socket.inet_aton(addr))
        s.sendto(r, a)


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
serve_tcp(80, http_reply)
serve_tcp(443, http_reply, ctx)
serve_tcp(7000, echo)
serve_tcp(8080, http_reply)
threading.Thread(target=udp_echo, daemon=True).start()
threading.Thread(target=dns, daemon=True).start()
print('ready', flush=True)
sys.stdin.read()
