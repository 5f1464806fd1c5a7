#!/usr/bin/env python3
"""Test servers for test_egress, run inside a network namespace the test
made: HTTP on 80 and 8080, HTTPS on 443 (the certificate given), a TCP line
echo on 7000, each on IPv4 and IPv6, a UDP echo on 7001 (of the IPv4 and
IPv6 addresses given) and a DNS server on 53 that answers A and AAAA queries
from NAME=ADDR arguments (NXDOMAIN for other names).  Prints "ready" once
listening."""
import socket, ssl, struct, sys, threading

cert, key, udp_addr, udp6_addr = sys.argv[1:5]
records = {}
for a in sys.argv[5:]:
    name, addr = a.split('=', 1)
    records.setdefault(name, []).append(addr)


def http_reply(conn):
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    body = b'hello\n'
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' % len(body) + body)


def serve_tcp(port, handler, wrap=None, family=socket.AF_INET):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind(('::' if family == socket.AF_INET6 else '0.0.0.0', port))
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


def udp_echo(addr, family):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((addr, 7001))  # replies must come from the address asked
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
        addrs = records.get(name)
        if addrs is None:
            s.sendto(q[:2] + b'\x81\x83' + b'\x00\x01\x00\x00\x00\x00\x00\x00' + q[12:end], a)
            continue
        fam = {1: socket.AF_INET, 28: socket.AF_INET6}.get(qtype)
        rrs = [socket.inet_pton(fam, x) for x in addrs
               if fam and (':' in x) == (fam == socket.AF_INET6)]
        r = q[:2] + b'\x81\x80' + struct.pack('>HHHH', 1, len(rrs), 0, 0) + q[12:end]
        for rd in rrs:
            r += b'\xc0\x0c' + struct.pack('>HHIH', qtype, 1, 60, len(rd)) + rd
        s.sendto(r, a)


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
for fam in (socket.AF_INET, socket.AF_INET6):
    serve_tcp(80, http_reply, None, fam)
    serve_tcp(443, http_reply, ctx, fam)
    serve_tcp(7000, echo, None, fam)
    serve_tcp(8080, http_reply, None, fam)
threading.Thread(target=udp_echo, args=(udp_addr, socket.AF_INET), daemon=True).start()
threading.Thread(target=udp_echo, args=(udp6_addr, socket.AF_INET6), daemon=True).start()
threading.Thread(target=dns, daemon=True).start()
print('ready', flush=True)
sys.stdin.read()
