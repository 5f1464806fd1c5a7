/* dns.c -- the resolver sandboxes see at their gateway (port 53, UDP and
 * TCP, IPv4 and IPv6, redirected here): it answers only names some Allow
 * rule of the asking sandbox's policy names, with the upstream's A or AAAA
 * addresses less those a name from outside must not have (DNS
 * rebinding); every other name is NXDOMAIN.  Each UDP query is answered
 * by a thread of its own, each TCP connection served by one (RFC 7766:
 * two-byte length, several queries in turn), at most MAX_INFLIGHT and
 * MAX_TCP at once (MAX_TCP_PER_SANDBOX of one sandbox), so a slow upstream
 * or a slow client does not hold up other sandboxes.  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <resolv.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_INFLIGHT 64
#define MAX_TCP 64
#define MAX_TCP_PER_SANDBOX 8
#define MAX_ADDRS 16
#define ANSWER_TTL 30
#define UPSTREAM_TIMEOUT_MS 2000
/* A TCP client: its first query within, and each next one within, this;
 * at most TCP_QUERIES on one connection.  */
#define TCP_IDLE_MS 5000
#define TCP_QUERIES 32
#define QUERY_MAX 512

struct eg_dns {
    egress_t *eg;
    const eg_resolver_t *resolver;
    int udp[2], tcp[2]; /* [0] IPv4, [1] IPv6 */
    int stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int inflight, n_tcp;
    bool stopping;
    int tcp_fds[MAX_TCP]; /* open TCP clients (shut down on stop) */
    struct sockaddr_storage tcp_from[MAX_TCP];
};

typedef struct query {
    eg_dns_t *d;
    int udp_fd; /* -1: a TCP query, the reply goes to out */
    struct sockaddr_storage from;
    socklen_t from_len;
    unsigned char q[QUERY_MAX];
    size_t qlen, question_end;
    char name[256];
    int type;
    unsigned char out[QUERY_MAX];
    size_t out_len;
} query_t;

/* The answer in q->out (UDP: also sent).  `addrs` of the question's type.  */
static void reply(query_t *q, int rcode, const struct sockaddr_storage *addrs, size_t n)
{
    unsigned char *r = q->out;
    size_t len = q->question_end, size = q->type == ns_t_aaaa ? 16 : 4, k = 0;
    memcpy(r, q->q, len);
    r[2] = (unsigned char)(0x80 | (q->q[2] & 0x01)); /* QR, RD copied */
    r[3] = (unsigned char)(0x80 | rcode);            /* RA */
    memset(r + 6, 0, 6);                             /* answers set below; no others */
    for (size_t i = 0; i < n && len + 12 + size <= QUERY_MAX; i++, k++) {
        /* name: a pointer to the question's; type, class, TTL, length */
        unsigned char rr[12] = {0xc0, 0x0c, 0, (unsigned char)q->type, 0, ns_c_in};
        rr[9] = ANSWER_TTL;
        rr[11] = (unsigned char)size;
        memcpy(r + len, rr, 12);
        if (size == 4)
            memcpy(r + len + 12, &((const struct sockaddr_in *)&addrs[i])->sin_addr, 4);
        else
            memcpy(r + len + 12, &((const struct sockaddr_in6 *)&addrs[i])->sin6_addr, 16);
        len += 12 + size;
    }
    r[7] = (unsigned char)k;
    q->out_len = len;
    if (q->udp_fd >= 0)
        (void)sendto(q->udp_fd, r, len, MSG_DONTWAIT, (const struct sockaddr *)&q->from,
                     q->from_len);
}

static void log_decision(egress_t *eg, eg_lookup_t *l, const query_t *q, bool allow,
                         const char *rule, const char *reason, const struct sockaddr_storage *a)
{
    eg_decision_t dec = {.ms = sbx_now_ms(),
                         .port = 53,
                         .protocol = q->udp_fd >= 0 ? "dns" : "dns-tcp",
                         .allow = allow,
                         .reason = reason};
    snprintf(dec.name, sizeof dec.name, "%s", q->name);
    snprintf(dec.rule, sizeof dec.rule, "%s", rule ? rule : "");
    if (a && a->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, dec.address,
                  sizeof dec.address);
    else if (a)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, dec.address,
                  sizeof dec.address);
    eg_decision_log(eg, l->sb, &dec);
}

/* The upstream's addresses that the policy lets this name have: never
 * one no policy reaches, nor an IPv4-mapped one (IPv4 goes by A records
 * and the IPv4 rules); private and host ones only through a CIDR rule.  */
static size_t filter_rebinding(const eg_policy_t *p, struct sockaddr_storage *a, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (eg_addr_never(&a[i]) || ((eg_addr_private(&a[i]) || eg_addr_is_host(&a[i])) &&
                                     !eg_policy_cidr_allows(p, &a[i])))
            continue;
        a[k++] = a[i];
    }
    return k;
}

static void answer(query_t *q)
{
    eg_dns_t *d = q->d;
    eg_lookup_t l;
    if (!eg_lookup(d->eg, &q->from, &l))
        return;
    const char *rule = NULL;
    if (!eg_policy_name_allowed(l.policy, q->name, &rule)) {
        reply(q, ns_r_nxdomain, NULL, 0);
        log_decision(d->eg, &l, q, false, rule, "no rule allows this name", NULL);
    } else if (q->type != ns_t_a && q->type != ns_t_aaaa) {
        reply(q, ns_r_noerror, NULL, 0); /* addresses only */
    } else {
        struct sockaddr_storage a[MAX_ADDRS];
        size_t n = 0;
        sbx_error_t err = {0};
        int family = q->type == ns_t_a ? AF_INET : AF_INET6;
        if (eg_resolve(d->resolver, q->name, family, a, MAX_ADDRS, &n, UPSTREAM_TIMEOUT_MS, &err) <
            0) {
            reply(q, ns_r_servfail, NULL, 0);
        } else {
            size_t got = n;
            n = filter_rebinding(l.policy, a, n);
            reply(q, n || !got ? ns_r_noerror : ns_r_nxdomain, a, n);
            if (got && !n)
                log_decision(d->eg, &l, q, false, rule,
                             "the name resolves only to private or host addresses", NULL);
            else
                log_decision(d->eg, &l, q, true, rule, "resolved", n ? &a[0] : NULL);
        }
    }
    eg_lookup_done(d->eg, &l);
}

static void inflight_done(eg_dns_t *d)
{
    pthread_mutex_lock(&d->mu);
    if (--d->inflight == 0)
        pthread_cond_broadcast(&d->idle);
    pthread_mutex_unlock(&d->mu);
}

static void *answer_thread(void *arg)
{
    query_t *q = arg;
    eg_dns_t *d = q->d;
    answer(q);
    free(q);
    inflight_done(d);
    return NULL;
}

/* One question of class IN, as a name the policy can compare.  */
static bool query_parse(query_t *q)
{
    ns_msg msg;
    if (q->qlen < 12 || (q->q[2] & 0x80) || (q->q[2] & 0x78) ||
        ns_initparse(q->q, (int)q->qlen, &msg) < 0 || ns_msg_count(msg, ns_s_qd) != 1)
        return false;
    ns_rr rr;
    if (ns_parserr(&msg, ns_s_qd, 0, &rr) < 0 || ns_rr_class(rr) != ns_c_in)
        return false;
    const char *name = ns_rr_name(rr);
    if (!eg_name_normalise(name, strlen(name), q->name, sizeof q->name))
        return false;
    q->type = ns_rr_type(rr);
    /* the question ends where the first answer would start */
    const unsigned char *p = q->q + 12;
    int skip = dn_skipname(p, q->q + q->qlen);
    if (skip < 0 || 12 + (size_t)skip + 4 > q->qlen)
        return false;
    q->question_end = 12 + (size_t)skip + 4;
    return true;
}

static pthread_attr_t *small_detached(pthread_attr_t *attr)
{
    pthread_attr_init(attr);
    pthread_attr_setdetachstate(attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(attr, 128 * 1024);
    return attr;
}

static void serve_udp(eg_dns_t *d, int fd)
{
    query_t *q = xcalloc(1, sizeof *q);
    q->d = d;
    q->udp_fd = fd;
    q->from_len = sizeof q->from;
    ssize_t n =
        recvfrom(fd, q->q, sizeof q->q, MSG_DONTWAIT, (struct sockaddr *)&q->from, &q->from_len);
    q->qlen = n > 0 ? (size_t)n : 0;
    if (n <= 0 || !query_parse(q)) {
        free(q);
        return;
    }
    pthread_mutex_lock(&d->mu);
    bool room = d->inflight < MAX_INFLIGHT;
    if (room)
        d->inflight++;
    pthread_mutex_unlock(&d->mu);
    pthread_t t;
    pthread_attr_t attr;
    if (!room) {
        reply(q, ns_r_servfail, NULL, 0);
        free(q);
    } else if (pthread_create(&t, small_detached(&attr), answer_thread, q) != 0) {
        free(q);
        inflight_done(d);
    }
    if (room)
        pthread_attr_destroy(&attr);
}

/* ---- TCP ---- */

/* Exactly len bytes before the deadline; false on end, error or time.  */
static bool read_full(int fd, unsigned char *b, size_t len, int64_t deadline)
{
    while (len > 0) {
        int64_t left = deadline - sbx_monotonic_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return false;
        ssize_t n = recv(fd, b, len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return false;
        if (n > 0)
            b += n, len -= (size_t)n;
    }
    return true;
}

static void tcp_untrack(eg_dns_t *d, int fd)
{
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < d->n_tcp; i++)
        if (d->tcp_fds[i] == fd) {
            d->n_tcp--;
            d->tcp_fds[i] = d->tcp_fds[d->n_tcp];
            d->tcp_from[i] = d->tcp_from[d->n_tcp];
            break;
        }
    pthread_mutex_unlock(&d->mu);
}

typedef struct tcp_client {
    eg_dns_t *d;
    int fd;
    struct sockaddr_storage from;
    socklen_t from_len;
} tcp_client_t;

/* Queries in turn until the client closes, idles, sends what is not one
 * question, or has asked TCP_QUERIES.  A query longer than QUERY_MAX ends
 * the connection (a question fits in far less).  */
static void *tcp_thread(void *arg)
{
    tcp_client_t *c = arg;
    eg_dns_t *d = c->d;
    query_t *q = xcalloc(1, sizeof *q);
    for (int i = 0; i < TCP_QUERIES; i++) {
        memset(q, 0, sizeof *q);
        q->d = d;
        q->udp_fd = -1;
        q->from = c->from;
        q->from_len = c->from_len;
        unsigned char len[2];
        int64_t deadline = sbx_monotonic_ms() + TCP_IDLE_MS;
        if (!read_full(c->fd, len, 2, deadline))
            break;
        q->qlen = ((size_t)len[0] << 8) | len[1];
        if (q->qlen > QUERY_MAX || !read_full(c->fd, q->q, q->qlen, deadline) || !query_parse(q))
            break;
        answer(q);
        if (q->out_len == 0)
            break;
        unsigned char head[2] = {(unsigned char)(q->out_len >> 8), (unsigned char)q->out_len};
        struct iovec iov[2] = {{head, 2}, {q->out, q->out_len}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
        if (sendmsg(c->fd, &mh, MSG_NOSIGNAL) != (ssize_t)(2 + q->out_len))
            break;
    }
    free(q);
    tcp_untrack(d, c->fd);
    close(c->fd);
    free(c);
    inflight_done(d);
    return NULL;
}

/* Room for one more TCP client from this address (under d->mu): one
 * sandbox cannot take every slot.  */
static bool tcp_room_locked(const eg_dns_t *d, const struct sockaddr_storage *from)
{
    int same = 0;
    for (int i = 0; i < d->n_tcp; i++)
        same += eg_ss_same_addr(&d->tcp_from[i], from);
    return d->n_tcp < MAX_TCP && same < MAX_TCP_PER_SANDBOX && !d->stopping;
}

static void serve_tcp(eg_dns_t *d, int lfd)
{
    tcp_client_t *c = xcalloc(1, sizeof *c);
    c->d = d;
    c->from_len = sizeof c->from;
    c->fd = accept4(lfd, (struct sockaddr *)&c->from, &c->from_len, SOCK_CLOEXEC);
    if (c->fd < 0) {
        free(c);
        return;
    }
    /* a reply the client does not read ends the connection */
    struct timeval tv = {.tv_sec = TCP_IDLE_MS / 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    pthread_mutex_lock(&d->mu);
    bool room = tcp_room_locked(d, &c->from);
    if (room) {
        d->tcp_from[d->n_tcp] = c->from;
        d->tcp_fds[d->n_tcp++] = c->fd;
        d->inflight++;
    }
    pthread_mutex_unlock(&d->mu);
    pthread_t t;
    pthread_attr_t attr;
    if (room && pthread_create(&t, small_detached(&attr), tcp_thread, c) == 0) {
        pthread_attr_destroy(&attr);
        return;
    }
    if (room) {
        pthread_attr_destroy(&attr);
        tcp_untrack(d, c->fd);
        inflight_done(d);
    }
    /* full: a reset rather than a client that waits */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    free(c);
}

static void *serve(void *arg)
{
    eg_dns_t *d = arg;
    for (;;) {
        struct pollfd p[5] = {{.fd = d->udp[0], .events = POLLIN},
                              {.fd = d->udp[1], .events = POLLIN},
                              {.fd = d->tcp[0], .events = POLLIN},
                              {.fd = d->tcp[1], .events = POLLIN},
                              {.fd = d->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 5, -1) < 0 && errno != EINTR)
            break;
        if (p[4].revents)
            break;
        for (int i = 0; i < 2; i++) {
            if (p[i].revents & POLLIN)
                serve_udp(d, d->udp[i]);
            if (p[2 + i].revents & POLLIN)
                serve_tcp(d, d->tcp[i]);
        }
    }
    return NULL;
}

eg_dns_t *eg_dns_start(egress_t *eg, const eg_resolver_t *r, uint16_t udp[2], uint16_t tcp[2],
                       sbx_error_t *err)
{
    eg_dns_t *d = xcalloc(1, sizeof *d);
    d->eg = eg;
    d->resolver = r;
    d->stop_pipe[0] = d->stop_pipe[1] = -1;
    d->udp[0] = d->udp[1] = d->tcp[0] = d->tcp[1] = -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->idle, NULL);
    if (eg_listen_pair(SOCK_DGRAM, d->udp, udp, err) < 0 ||
        eg_listen_pair(SOCK_STREAM, d->tcp, tcp, err) < 0 || pipe2(d->stop_pipe, O_CLOEXEC) < 0) {
        if (err && !err->code)
            sbx_error_errno(err, SBX_ERR_INTERNAL, "the sandboxes' resolver");
        eg_dns_stop(d);
        return NULL;
    }
    if (pthread_create(&d->thread, NULL, serve, d) != 0) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "cannot start the resolver thread");
        close(d->stop_pipe[1]);
        d->stop_pipe[1] = -1;
        eg_dns_stop(d);
        return NULL;
    }
    return d;
}

void eg_dns_stop(eg_dns_t *d)
{
    if (!d)
        return;
    if (d->stop_pipe[1] >= 0) {
        (void)!write(d->stop_pipe[1], "x", 1);
        pthread_join(d->thread, NULL);
    }
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    for (int i = 0; i < d->n_tcp; i++)
        shutdown(d->tcp_fds[i], SHUT_RDWR);
    while (d->inflight > 0)
        pthread_cond_wait(&d->idle, &d->mu);
    pthread_mutex_unlock(&d->mu);
    for (int i = 0; i < 2; i++) {
        if (d->stop_pipe[i] >= 0)
            close(d->stop_pipe[i]);
        if (d->udp[i] >= 0)
            close(d->udp[i]);
        if (d->tcp[i] >= 0)
            close(d->tcp[i]);
    }
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->idle);
    free(d);
}
