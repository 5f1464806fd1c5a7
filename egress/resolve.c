/* resolve.c -- asks the upstream DNS server (the host's, or the one
 * configured) for a name's IPv4 or IPv6 addresses: one UDP query, a
 * deadline, the answer parsed with libresolv.  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <poll.h>
#include <resolv.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* "ADDR", "ADDR:PORT", "IPV6ADDR" or "[IPV6ADDR]:PORT".  */
static int server_parse(eg_resolver_t *r, const char *spec, sbx_error_t *err)
{
    char host[64], rest[2];
    unsigned port = 53;
    memset(r, 0, sizeof *r);
    struct sockaddr_in *sin = (struct sockaddr_in *)&r->server;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r->server;
    if (sscanf(spec, "%63[0-9.]%1s", host, rest) == 1 ||
        (sscanf(spec, "%63[0-9.]:%u%1s", host, &port, rest) == 2)) {
        if (port && port <= 65535 && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons((uint16_t)port);
            r->server_len = sizeof *sin;
            return 0;
        }
    } else if (sscanf(spec, "%63[0-9a-fA-F:]%1s", host, rest) == 1 ||
               sscanf(spec, "[%63[0-9a-fA-F:]]:%u%1s", host, &port, rest) == 2) {
        if (port && port <= 65535 && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons((uint16_t)port);
            r->server_len = sizeof *sin6;
            return 0;
        }
    }
    return sbx_error_set(err, SBX_ERR_INVALID,
                         "the egress resolver must be ADDR, ADDR:PORT or [IPV6]:PORT, not '%s'",
                         spec);
}

int eg_resolver_init(eg_resolver_t *r, const char *spec, sbx_error_t *err)
{
    if (spec)
        return server_parse(r, spec, err);
    FILE *f = fopen("/etc/resolv.conf", "re");
    char line[256], addr[64];
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, " nameserver %63s", addr) == 1 && server_parse(r, addr, NULL) == 0) {
            fclose(f);
            return 0;
        }
    }
    if (f)
        fclose(f);
    return sbx_error_set(err, SBX_ERR_INVALID,
                         "no nameserver in /etc/resolv.conf; give the egress resolver");
}

static size_t query_build(const char *name, int type, uint16_t id, unsigned char *q, size_t max)
{
    int n = res_mkquery(ns_o_query, name, ns_c_in, type, NULL, 0, NULL, q, (int)max);
    if (n < 12)
        return 0;
    q[0] = (unsigned char)(id >> 8);
    q[1] = (unsigned char)id;
    return (size_t)n;
}

static int answers(const unsigned char *a, size_t len, int family, struct sockaddr_storage *out,
                   size_t max, size_t *n, sbx_error_t *err)
{
    int type = family == AF_INET ? ns_t_a : ns_t_aaaa;
    unsigned size = family == AF_INET ? 4 : 16;
    ns_msg msg;
    if (ns_initparse(a, (int)len, &msg) < 0)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "the resolver's answer is malformed");
    int rcode = ns_msg_getflag(msg, ns_f_rcode);
    if (rcode == ns_r_nxdomain)
        return 0;
    if (rcode != ns_r_noerror)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "the resolver answered rcode %d", rcode);
    for (int i = 0; i < ns_msg_count(msg, ns_s_an) && *n < max; i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
            break;
        if ((int)ns_rr_type(rr) != type || ns_rr_class(rr) != ns_c_in || ns_rr_rdlen(rr) != size)
            continue;
        struct sockaddr_storage *ss = &out[(*n)++];
        memset(ss, 0, sizeof *ss);
        ss->ss_family = (sa_family_t)family;
        if (family == AF_INET)
            memcpy(&((struct sockaddr_in *)ss)->sin_addr, ns_rr_rdata(rr), 4);
        else
            memcpy(&((struct sockaddr_in6 *)ss)->sin6_addr, ns_rr_rdata(rr), 16);
    }
    return 0;
}

int eg_resolve(const eg_resolver_t *r, const char *name, int family, struct sockaddr_storage *out,
               size_t max, size_t *n, int timeout_ms, sbx_error_t *err)
{
    *n = 0;
    uint16_t id;
    if (getrandom(&id, sizeof id, 0) != sizeof id)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "getrandom");
    unsigned char q[512], a[4096];
    size_t qlen = query_build(name, family == AF_INET ? ns_t_a : ns_t_aaaa, id, q, sizeof q);
    if (!qlen)
        return sbx_error_set(err, SBX_ERR_INVALID, "cannot make a query for '%s'", name);
    _cleanup_close_ int fd = socket(r->server.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)&r->server, r->server_len) < 0 ||
        send(fd, q, qlen, 0) != (ssize_t)qlen)
        return sbx_error_errno(err, SBX_ERR_UNAVAILABLE, "cannot ask the resolver");
    int64_t deadline = sbx_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - sbx_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return sbx_error_set(err, SBX_ERR_TIMEOUT, "the resolver did not answer for '%s'",
                                 name);
        ssize_t len = recv(fd, a, sizeof a, 0);
        if (len < 0)
            return sbx_error_errno(err, SBX_ERR_UNAVAILABLE, "the resolver");
        /* same id and the same question, or it is not our answer */
        if (len >= (ssize_t)qlen && a[0] == q[0] && a[1] == q[1] && (a[2] & 0x80) &&
            memcmp(a + 12, q + 12, qlen - 12) == 0)
            return answers(a, (size_t)len, family, out, max, n, err);
    }
}
