/* netprobe.c -- one network attempt from inside a sandbox, for the egress
 * tests: prints "ok <detail>" (exit 0) or "fail <why>" (exit 1) and how
 * long it took, so a test sees both what happened and that a denial was
 * fast.  Static, like the probe.
 *
 * Every ADDR may be IPv4 or IPv6 (IPv6 link-local with %IFNAME).
 *
 *   netprobe tcp ADDR PORT          connect, send a line, read a reply
 *   netprobe http ADDR PORT HOST    GET / with Host: HOST, print the status
 *   netprobe tls ADDR PORT SNI      a ClientHello with SNI, expect a handshake reply
 *   netprobe udp ADDR PORT          send a datagram, expect one back
 *   netprobe dns SERVER NAME        an A query, print the rcode and first address
 *   netprobe dnsfrom SRC SERVER NAME the same from a forged source (IP_FREEBIND)
 *   netprobe aaaa SERVER NAME       an AAAA query, print the rcode and first address
 *   netprobe dnstcp SERVER NAME     an A query over TCP (two-byte length)
 *   netprobe dnsjunk SERVER         DNS over TCP: an oversized length, then
 *                                   garbage; "ok closed" when the server hangs up
 *   netprobe dnsmany SERVER N       N DNS-over-TCP connections held open at once,
 *                                   a question on each: "ok answered=A refused=R"
 *   netprobe raw | packet           open a raw / packet socket
 *   netprobe tcp6 ADDR PORT         connect only
 *   netprobe hold ADDR PORT MS      one connection, a ping every 100 ms for MS
 *                                   ms: "ok held" or "fail cut" with when
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 3000

static struct timespec t0;

static long elapsed_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
}

static int done(int ok, const char *fmt, const char *detail)
{
    printf("%s ", ok ? "ok" : "fail");
    printf(fmt, detail);
    printf(" ms=%ld\n", elapsed_ms());
    return ok ? 0 : 1;
}

static int fail_errno(const char *what)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s:%s", what, strerror(errno));
    return done(0, "%s", buf);
}

static void set_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = TIMEOUT_MS / 1000, .tv_usec = (TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* "1.2.3.4", "2001:db8::1" or "fe80::1%eth0".  */
static socklen_t parse_addr(const char *addr, const char *port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    uint16_t p = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = p;
        return sizeof *a4;
    }
    char host[64];
    snprintf(host, sizeof host, "%s", addr);
    char *pct = strchr(host, '%');
    if (pct) {
        *pct = '\0';
        a6->sin6_scope_id = if_nametoindex(pct + 1);
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
        return 0;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = p;
    return sizeof *a6;
}

static int connect_addr(const char *addr, const char *port, int type)
{
    struct sockaddr_storage a;
    socklen_t len = parse_addr(addr, port, &a);
    if (!len) {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(a.ss_family, type, 0);
    if (fd < 0)
        return -1;
    set_timeouts(fd);
    if (connect(fd, (struct sockaddr *)&a, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static ssize_t read_some(int fd, char *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len - 1, 0);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

static int cmd_tcp(char **av)
{
    int fd = connect_addr(av[0], av[1], SOCK_STREAM);
    if (fd < 0)
        return fail_errno("connect");
    char buf[256];
    if (send(fd, "ping\n", 5, MSG_NOSIGNAL) != 5)
        return fail_errno("send");
    ssize_t n = read_some(fd, buf, sizeof buf);
    if (n <= 0)
        return n == 0 ? done(0, "%s", "closed") : fail_errno("recv");
    buf[strcspn(buf, "\r\n")] = '\0';
    return done(1, "reply=%s", buf);
}

static int cmd_hold(char **av)
{
    int fd = connect_addr(av[0], av[1], SOCK_STREAM);
    if (fd < 0)
        return fail_errno("connect");
    long until = elapsed_ms() + atol(av[2]);
    char buf[256], detail[96];
    for (int n = 0; elapsed_ms() < until; n++) {
        ssize_t r = -1;
        if (send(fd, "ping\n", 5, MSG_NOSIGNAL) == 5)
            r = read_some(fd, buf, sizeof buf);
        if (r <= 0) {
            snprintf(detail, sizeof detail, "cut:after=%d:%s", n,
                     r == 0 ? "closed" : strerror(errno));
            return done(0, "%s", detail);
        }
        usleep(100000);
    }
    return done(1, "%s", "held");
}

static int cmd_http(char **av)
{
    int fd = connect_addr(av[0], av[1], SOCK_STREAM);
    if (fd < 0)
        return fail_errno("connect");
    char req[512], buf[4096];
    int n =
        snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", av[2]);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return fail_errno("send");
    ssize_t got = read_some(fd, buf, sizeof buf);
    if (got <= 0)
        return got == 0 ? done(0, "%s", "closed") : fail_errno("recv");
    buf[strcspn(buf, "\r\n")] = '\0';
    return done(strstr(buf, " 200 ") != NULL, "status=%s", buf);
}

/* A TLS 1.2 ClientHello (ECDHE-RSA/ECDSA AES-GCM) with server_name.  */
static size_t client_hello(const char *sni, unsigned char *out)
{
    size_t sl = strlen(sni);
    unsigned char ext[512];
    size_t e = 0;
    /* server_name */
    ext[e++] = 0, ext[e++] = 0;
    ext[e++] = (unsigned char)((sl + 5) >> 8), ext[e++] = (unsigned char)(sl + 5);
    ext[e++] = (unsigned char)((sl + 3) >> 8), ext[e++] = (unsigned char)(sl + 3);
    ext[e++] = 0;
    ext[e++] = (unsigned char)(sl >> 8), ext[e++] = (unsigned char)sl;
    memcpy(ext + e, sni, sl);
    e += sl;
    static const unsigned char rest[] = {
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, /* groups x25519, p256 */
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,                         /* point formats */
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x01, 0x04, 0x03, 0x08, 0x04, /* sig algs */
        0xff, 0x01, 0x00, 0x01, 0x00, /* renegotiation_info */
    };
    memcpy(ext + e, rest, sizeof rest);
    e += sizeof rest;
    static const unsigned char suites[] = {0x00, 0x06, 0xc0, 0x2f, 0xc0, 0x2b, 0x00, 0x9c};
    unsigned char body[1024];
    size_t b = 0;
    body[b++] = 3, body[b++] = 3;
    for (int i = 0; i < 32; i++)
        body[b++] = (unsigned char)(rand() & 0xff);
    body[b++] = 0; /* session id */
    memcpy(body + b, suites, sizeof suites);
    b += sizeof suites;
    body[b++] = 1, body[b++] = 0; /* compression: null */
    body[b++] = (unsigned char)(e >> 8), body[b++] = (unsigned char)e;
    memcpy(body + b, ext, e);
    b += e;
    size_t o = 0;
    out[o++] = 0x16, out[o++] = 3, out[o++] = 1;
    out[o++] = (unsigned char)((b + 4) >> 8), out[o++] = (unsigned char)(b + 4);
    out[o++] = 1, out[o++] = 0, out[o++] = (unsigned char)(b >> 8), out[o++] = (unsigned char)b;
    memcpy(out + o, body, b);
    return o + b;
}

static int cmd_tls(char **av)
{
    int fd = connect_addr(av[0], av[1], SOCK_STREAM);
    if (fd < 0)
        return fail_errno("connect");
    unsigned char hello[1600];
    size_t n = client_hello(av[2], hello);
    if (send(fd, hello, n, MSG_NOSIGNAL) != (ssize_t)n)
        return fail_errno("send");
    char buf[64];
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got <= 0)
        return got == 0 ? done(0, "%s", "closed") : fail_errno("recv");
    /* a handshake record (ServerHello) or an alert: a TLS server answered */
    return done(buf[0] == 0x16 || buf[0] == 0x15, "%s", buf[0] == 0x16 ? "server_hello" : "alert");
}

static int cmd_udp(char **av)
{
    int fd = connect_addr(av[0], av[1], SOCK_DGRAM);
    if (fd < 0)
        return fail_errno("connect");
    char buf[256];
    if (send(fd, "ping", 4, 0) != 4)
        return fail_errno("send");
    ssize_t n = read_some(fd, buf, sizeof buf);
    if (n <= 0)
        return fail_errno("recv");
    return done(1, "reply=%s", buf);
}

static const char *dns_source;
static int dns_type = 1; /* A; 28: AAAA */
static int dns_tcp;

static int cmd_dns(char **av)
{
    int fd;
    if (dns_source) {
        struct sockaddr_in src = {.sin_family = AF_INET},
                           dst = {.sin_family = AF_INET, .sin_port = htons(53)};
        inet_pton(AF_INET, dns_source, &src.sin_addr);
        inet_pton(AF_INET, av[0], &dst.sin_addr);
        int one = 1;
        fd = socket(AF_INET, SOCK_DGRAM, 0);
        set_timeouts(fd);
        if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
            connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0)
            return fail_errno("bind");
    } else {
        fd = connect_addr(av[0], "53", dns_tcp ? SOCK_STREAM : SOCK_DGRAM);
    }
    if (fd < 0)
        return fail_errno("connect");
    unsigned char q[512] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    size_t o = 12;
    for (const char *p = av[1]; *p;) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        q[o++] = (unsigned char)l;
        memcpy(q + o, p, l);
        o += l;
        p += l + (dot ? 1 : 0);
    }
    q[o++] = 0;
    q[o++] = 0, q[o++] = (unsigned char)dns_type, q[o++] = 0, q[o++] = 1;
    unsigned char a[514];
    ssize_t n;
    if (dns_tcp) {
        unsigned char len[2] = {(unsigned char)(o >> 8), (unsigned char)o};
        if (send(fd, len, 2, MSG_NOSIGNAL) != 2 || send(fd, q, o, MSG_NOSIGNAL) != (ssize_t)o)
            return fail_errno("send");
        n = recv(fd, a, 2, MSG_WAITALL);
        if (n != 2)
            return n == 0 ? done(0, "%s", "closed") : fail_errno("recv");
        size_t want = ((size_t)a[0] << 8) | a[1];
        n = want <= 512 ? recv(fd, a, want, MSG_WAITALL) : -1;
    } else {
        if (send(fd, q, o, 0) != (ssize_t)o)
            return fail_errno("send");
        n = recv(fd, a, 512, 0);
    }
    if (n < 12)
        return fail_errno("recv");
    int rcode = a[3] & 0xf, an = (a[6] << 8) | a[7];
    char detail[96], text[INET6_ADDRSTRLEN];
    size_t size = dns_type == 28 ? 16 : 4;
    if (rcode == 0 && an > 0 && n >= (ssize_t)(o + 12 + size) && a[o + 3] == dns_type)
        snprintf(detail, sizeof detail, "rcode=0 addr=%s",
                 inet_ntop(size == 4 ? AF_INET : AF_INET6, a + o + 12, text, sizeof text));
    else
        snprintf(detail, sizeof detail, "rcode=%d answers=%d", rcode, an);
    return done(rcode == 0 && an > 0, "%s", detail);
}

static int cmd_dnsjunk(char **av)
{
    int fd = connect_addr(av[0], "53", SOCK_STREAM);
    if (fd < 0)
        return fail_errno("connect");
    unsigned char junk[600];
    memset(junk, 0xa5, sizeof junk);
    junk[0] = 0xff, junk[1] = 0xff; /* 65,535 bytes to come */
    if (send(fd, junk, sizeof junk, MSG_NOSIGNAL) < 0)
        return done(1, "%s", "closed");
    char b[64];
    ssize_t n = recv(fd, b, sizeof b, 0);
    if (n > 0)
        return done(0, "%s", "answered");
    return n == 0 || errno == ECONNRESET ? done(1, "%s", "closed") : fail_errno("recv");
}

static int cmd_dnsmany(char **av)
{
    int n = atoi(av[1]), fds[64], answered = 0, refused = 0;
    if (n < 1 || n > 64)
        return done(0, "%s", "bad-count");
    for (int i = 0; i < n; i++)
        if ((fds[i] = connect_addr(av[0], "53", SOCK_STREAM)) < 0)
            return fail_errno("connect");
    usleep(200000); /* the server has taken (or refused) each */
    static const unsigned char q[] = {0, 25,  0x12, 0x34, 1,   0,   0,   1,   0, 0, 0, 0, 0, 0,
                                      2, 'o', 'k',  4,    't', 'e', 's', 't', 0, 0, 1, 0, 1};
    for (int i = 0; i < n; i++) {
        unsigned char a[514];
        if (send(fds[i], q, sizeof q, MSG_NOSIGNAL) == (ssize_t)sizeof q &&
            recv(fds[i], a, sizeof a, 0) > 2)
            answered++;
        else
            refused++;
        close(fds[i]);
    }
    char detail[64];
    snprintf(detail, sizeof detail, "answered=%d refused=%d", answered, refused);
    return done(1, "%s", detail);
}

static int cmd_socket(int family, int type, int proto, const char *what)
{
    int fd = socket(family, type, proto);
    if (fd < 0)
        return fail_errno(what);
    return done(1, "%s", what);
}

static int cmd_tcp6(char **av)
{
    int fd = connect_addr(av[0], av[1], SOCK_STREAM);
    if (fd < 0)
        return fail_errno("connect");
    return done(1, "%s", "connected");
}

int main(int argc, char **argv)
{
    clock_gettime(CLOCK_MONOTONIC, &t0);
    srand((unsigned)t0.tv_nsec);
    if (argc < 2)
        return 2;
    const char *c = argv[1];
    if (!strcmp(c, "tcp") && argc == 4)
        return cmd_tcp(argv + 2);
    if (!strcmp(c, "http") && argc == 5)
        return cmd_http(argv + 2);
    if (!strcmp(c, "tls") && argc == 5)
        return cmd_tls(argv + 2);
    if (!strcmp(c, "udp") && argc == 4)
        return cmd_udp(argv + 2);
    if (!strcmp(c, "dns") && argc == 4)
        return cmd_dns(argv + 2);
    if (!strcmp(c, "aaaa") && argc == 4) {
        dns_type = 28;
        return cmd_dns(argv + 2);
    }
    if (!strcmp(c, "dnstcp") && argc == 4) {
        dns_tcp = 1;
        return cmd_dns(argv + 2);
    }
    if (!strcmp(c, "dnsmany") && argc == 4)
        return cmd_dnsmany(argv + 2);
    if (!strcmp(c, "dnsjunk") && argc == 3)
        return cmd_dnsjunk(argv + 2);
    if (!strcmp(c, "dnsfrom") && argc == 5) {
        dns_source = argv[2];
        return cmd_dns(argv + 3);
    }
    if (!strcmp(c, "raw"))
        return cmd_socket(AF_INET, SOCK_RAW, IPPROTO_TCP, "raw");
    if (!strcmp(c, "packet"))
        return cmd_socket(AF_PACKET, SOCK_RAW, 0, "packet");
    if (!strcmp(c, "hold") && argc == 5)
        return cmd_hold(argv + 2);
    if (!strcmp(c, "tcp6") && argc == 4)
        return cmd_tcp6(argv + 2);
    fprintf(stderr, "usage: see netprobe.c\n");
    return 2;
}
