/* proxy.c -- the transparent proxy for FQDN rules.  nft redirects a
 * sandbox's TCP to ports that FQDN rules name here; the proxy reads the
 * name the client asks for (the TLS ClientHello's SNI, or the HTTP Host
 * header), decides with the sandbox's policy, resolves the name itself
 * (refusing private and host addresses a CIDR rule does not allow: DNS
 * rebinding), connects, replays the bytes it read and then splices both
 * directions in the kernel.  No TLS is terminated: see README.md for what
 * SNI matching can and cannot stop.  One thread a connection (small
 * stacks), at most MAX_CONNS at once.  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_CONNS 4096
#define HELLO_MAX (16384 + 5)
#define HELLO_TIMEOUT_MS 5000
#define CONNECT_TIMEOUT_MS 5000
#define PIPE_SIZE (256 * 1024)
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80 /* linux/netfilter_ipv6/ip6_tables.h */
#endif

struct eg_proxy {
    egress_t *eg;
    const eg_resolver_t *resolver;
    int fd[2]; /* IPv4, IPv6 listeners */
    int stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    bool stopping;
    int *fds; /* open client fds (shut down on stop) */
    size_t n_fds, cap_fds;
    struct live **live; /* spliced connections, re-checked when a policy changes */
    size_t n_live, cap_live;
};

/* A spliced connection: what it was allowed on.  */
typedef struct live {
    int client, upstream;
    struct sockaddr_storage sandbox, orig;
    char name[256];
} live_t;

typedef struct conn {
    eg_proxy_t *p;
    int client, upstream;
    unsigned char buf[HELLO_MAX];
    size_t len;
} conn_t;

/* ---- the name the client asks for ---- */

typedef enum { NAME_MORE, NAME_FOUND, NAME_NONE } name_state_t;

/* SNI from a ClientHello in buf (one TLS record, the usual case).  */
static name_state_t tls_sni(const unsigned char *b, size_t len, char *out, size_t out_len)
{
    if (len < 5)
        return NAME_MORE;
    size_t rec = ((size_t)b[3] << 8) | b[4];
    if (len < 5 + rec)
        return NAME_MORE;
    const unsigned char *p = b + 5, *end = b + 5 + rec;
#define NEED(n)                                                                                    \
    do {                                                                                           \
        if ((size_t)(end - p) < (size_t)(n))                                                       \
            return NAME_NONE;                                                                      \
    } while (0)
    NEED(4);
    if (p[0] != 1) /* ClientHello */
        return NAME_NONE;
    p += 4;
    NEED(34);
    p += 34; /* version, random */
    NEED(1);
    p += 1 + p[0]; /* session id */
    NEED(2);
    p += 2 + (((size_t)p[0] << 8) | p[1]); /* cipher suites */
    NEED(1);
    p += 1 + p[0]; /* compression */
    NEED(2);
    size_t ext_len = ((size_t)p[0] << 8) | p[1];
    p += 2;
    NEED(ext_len);
    const unsigned char *ext_end = p + ext_len;
    while (ext_end - p >= 4) {
        unsigned type = ((unsigned)p[0] << 8) | p[1];
        size_t l = ((size_t)p[2] << 8) | p[3];
        p += 4;
        if ((size_t)(ext_end - p) < l)
            return NAME_NONE;
        if (type == 0 && l >= 5) { /* server_name: list, type 0 host_name */
            size_t nl = ((size_t)p[3] << 8) | p[4];
            if (p[2] != 0 || nl + 5 > l)
                return NAME_NONE;
            return eg_name_normalise((const char *)p + 5, nl, out, out_len) ? NAME_FOUND
                                                                            : NAME_NONE;
        }
        p += l;
    }
#undef NEED
    return NAME_NONE;
}

/* Host from an HTTP/1 request head in buf.  */
static name_state_t http_host(const unsigned char *b, size_t len, char *out, size_t out_len)
{
    const char *s = (const char *)b;
    const char *head_end = memmem(s, len, "\r\n\r\n", 4);
    if (!head_end)
        return len >= 8192 ? NAME_NONE : NAME_MORE;
    for (const char *line = memmem(s, len, "\r\n", 2); line && line < head_end;
         line = memmem(line + 2, (size_t)(head_end - line), "\r\n", 2)) {
        const char *v = line + 2;
        if (head_end - v < 5 || strncasecmp(v, "host:", 5) != 0)
            continue;
        v += 5;
        while (*v == ' ' || *v == '\t')
            v++;
        const char *e = v;
        while (e < head_end && *e != '\r' && *e != ':' && *e != ' ')
            e++;
        return eg_name_normalise(v, (size_t)(e - v), out, out_len) ? NAME_FOUND : NAME_NONE;
    }
    return NAME_NONE;
}

static bool looks_like_http(const unsigned char *b, size_t len)
{
    static const char *const methods[] = {"GET ",     "POST ",  "PUT ",     "HEAD ", "DELETE ",
                                          "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "};
    for (size_t i = 0; i < ARRAY_SIZE(methods); i++) {
        size_t n = strlen(methods[i]);
        if (memcmp(b, methods[i], len < n ? len : n) == 0)
            return true;
    }
    return false;
}

/* Read until the name is known, or known to be absent.  */
static name_state_t read_name(conn_t *c, char *name, size_t name_len, const char **kind)
{
    int64_t deadline = sbx_now_ms() + HELLO_TIMEOUT_MS;
    for (;;) {
        name_state_t st = NAME_MORE;
        if (c->len > 0 && c->buf[0] == 0x16) {
            *kind = "tls";
            st = tls_sni(c->buf, c->len, name, name_len);
        } else if (c->len > 0 && looks_like_http(c->buf, c->len)) {
            *kind = "http";
            st = http_host(c->buf, c->len, name, name_len);
        } else if (c->len > 0) {
            *kind = "tcp";
            st = NAME_NONE;
        }
        if (st != NAME_MORE || c->len == sizeof c->buf)
            return st == NAME_MORE ? NAME_NONE : st;
        int64_t left = deadline - sbx_now_ms();
        struct pollfd pfd = {.fd = c->client, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return NAME_NONE;
        ssize_t n = recv(c->client, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n <= 0)
            return NAME_NONE;
        c->len += (size_t)n;
    }
}

/* ---- connecting ---- */

static socklen_t ss_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static uint16_t ss_port(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                           : ((const struct sockaddr_in *)ss)->sin_port);
}

static void ss_set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static int connect_to(const struct sockaddr_storage *to)
{
    int fd = socket(to->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)to, ss_len(to)) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int soerr = 0;
    socklen_t l = sizeof soerr;
    if (poll(&pfd, 1, CONNECT_TIMEOUT_MS) <= 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) < 0 || soerr) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, 0);
    return fd;
}

/* The first of addrs that the policy lets the name have: never one no
 * policy reaches, an IPv4-mapped one, the host's or a sandbox's; a
 * private one only through a CIDR rule (DNS rebinding).  */
static bool usable(conn_t *c, const eg_policy_t *policy, const struct sockaddr_storage *a)
{
    eg_lookup_t other;
    bool sandbox = eg_lookup(c->p->eg, a, &other);
    eg_lookup_done(c->p->eg, &other);
    return !sandbox && !eg_addr_never(a) && !eg_addr_is_host(a) &&
           (!eg_addr_private(a) || eg_policy_cidr_allows(policy, a));
}

/* The address to connect to for an allowed name: of the family the
 * sandbox dialled first, then of the other (a name with only IPv4
 * addresses is reached from an IPv6 client, and back).  */
static bool pick_address(conn_t *c, const eg_policy_t *policy, const char *name, int family,
                         struct sockaddr_storage *out, const char **why)
{
    *why = "the name does not resolve";
    bool answered = false;
    for (int k = 0; k < 2; k++) {
        int f = k == 0 ? family : family == AF_INET ? AF_INET6 : AF_INET;
        struct sockaddr_storage a[16];
        size_t n = 0;
        sbx_error_t err = {0};
        if (eg_resolve(c->p->resolver, name, f, a, ARRAY_SIZE(a), &n, 2000, &err) < 0)
            continue;
        answered = true;
        for (size_t i = 0; i < n; i++) {
            if (!usable(c, policy, &a[i])) {
                *why = "the name resolves to a private, host or sandbox address";
                continue;
            }
            *out = a[i];
            return true;
        }
    }
    if (!answered)
        *why = "the name could not be resolved";
    return false;
}

static void refuse(conn_t *c, const char *kind, const char *name, const char *why)
{
    if (strcmp(kind, "http") == 0) {
        char body[512];
        int n = snprintf(body, sizeof body, "egress denied: %s (%s)\n", name[0] ? name : "-", why);
        char head[256];
        int h = snprintf(head, sizeof head,
                         "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
                         "Content-Length: %d\r\nConnection: close\r\n\r\n",
                         n);
        (void)!send(c->client, head, (size_t)h, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)!send(c->client, body, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        return;
    }
    /* a reset, so the client fails at once rather than waiting */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->client, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* ---- moving bytes ---- */

static bool send_all(int fd, const unsigned char *b, size_t len)
{
    while (len) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            return false;
        }
        b += n;
        len -= (size_t)n;
    }
    return true;
}

typedef struct dir {
    int from, to;
    int pipe[2];
    size_t in_pipe;
    bool eof, done;
} dir_t;

/* Move what is ready from -> pipe -> to without copying to user space.
 * Returns false on an error that ends the connection.  */
static bool pump(dir_t *d)
{
    if (!d->eof && d->in_pipe < PIPE_SIZE) {
        ssize_t n = splice(d->from, NULL, d->pipe[1], NULL, PIPE_SIZE - d->in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n == 0)
            d->eof = true;
        else if (n > 0)
            d->in_pipe += (size_t)n;
        else if (errno != EAGAIN && errno != EINTR)
            return false;
    }
    while (d->in_pipe > 0) {
        ssize_t n =
            splice(d->pipe[0], NULL, d->to, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->in_pipe -= (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        return false;
    }
    if (d->eof && d->in_pipe == 0 && !d->done) {
        shutdown(d->to, SHUT_WR);
        d->done = true;
    }
    return true;
}

static void relay(int a, int b)
{
    dir_t d[2] = {{.from = a, .to = b, .pipe = {-1, -1}}, {.from = b, .to = a, .pipe = {-1, -1}}};
    for (int i = 0; i < 2; i++) {
        if (pipe2(d[i].pipe, O_CLOEXEC | O_NONBLOCK) < 0)
            goto out;
        fcntl(d[i].pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
    }
    fcntl(a, F_SETFL, O_NONBLOCK);
    fcntl(b, F_SETFL, O_NONBLOCK);
    while (!(d[0].done && d[1].done)) {
        struct pollfd p[2] = {{.fd = a}, {.fd = b}};
        for (int i = 0; i < 2; i++) {
            /* read side when there is room, write side when bytes wait */
            if (!d[i].eof && d[i].in_pipe < PIPE_SIZE)
                p[i].events |= POLLIN;
            if (d[i].in_pipe > 0)
                p[1 - i].events |= POLLOUT;
        }
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if ((p[0].revents | p[1].revents) & (POLLERR | POLLNVAL))
            break;
        if (!pump(&d[0]) || !pump(&d[1]))
            break;
    }
out:
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++)
            if (d[i].pipe[k] >= 0)
                close(d[i].pipe[k]);
}

/* ---- one connection ---- */

static void fd_track(eg_proxy_t *p, int fd, bool add)
{
    pthread_mutex_lock(&p->mu);
    if (add) {
        if (p->n_fds == p->cap_fds) {
            p->cap_fds = p->cap_fds ? p->cap_fds * 2 : 64;
            p->fds = xrealloc(p->fds, p->cap_fds * sizeof(int));
        }
        p->fds[p->n_fds++] = fd;
        if (p->stopping)
            shutdown(fd, SHUT_RDWR);
    } else {
        for (size_t i = 0; i < p->n_fds; i++)
            if (p->fds[i] == fd) {
                p->fds[i] = p->fds[--p->n_fds];
                break;
            }
        if (p->n_fds == 0)
            pthread_cond_broadcast(&p->idle);
    }
    pthread_mutex_unlock(&p->mu);
}

static void log_decision(eg_proxy_t *p, eg_lookup_t *l, const char *name,
                         const struct sockaddr_storage *addr, uint16_t port, const char *rule,
                         bool allow, const char *reason)
{
    eg_decision_t d = {
        .ms = sbx_now_ms(), .port = port, .protocol = "tcp", .allow = allow, .reason = reason};
    snprintf(d.name, sizeof d.name, "%s", name);
    if (addr->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addr)->sin6_addr, d.address,
                  sizeof d.address);
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)addr)->sin_addr, d.address,
                  sizeof d.address);
    snprintf(d.rule, sizeof d.rule, "%s", rule ? rule : "");
    eg_decision_log(p->eg, l->sb, &d);
}

static void live_track(eg_proxy_t *p, live_t *lv, bool add)
{
    pthread_mutex_lock(&p->mu);
    if (add) {
        if (p->n_live == p->cap_live) {
            p->cap_live = p->cap_live ? p->cap_live * 2 : 64;
            p->live = xrealloc(p->live, p->cap_live * sizeof *p->live);
        }
        p->live[p->n_live++] = lv;
    } else {
        for (size_t i = 0; i < p->n_live; i++)
            if (p->live[i] == lv) {
                p->live[i] = p->live[--p->n_live];
                break;
            }
    }
    pthread_mutex_unlock(&p->mu);
}

size_t eg_proxy_recheck(eg_proxy_t *p, const eg_addrs_t *sandbox, const eg_policy_t *policy)
{
    size_t cut = 0;
    if (!p)
        return 0;
    struct sockaddr_storage sb4, sb6;
    eg_addrs_to_ss(sandbox, AF_INET, &sb4);
    eg_addrs_to_ss(sandbox, AF_INET6, &sb6);
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n_live; i++) {
        live_t *lv = p->live[i];
        if (!eg_ss_same_addr(&lv->sandbox, &sb4) &&
            !(sandbox->has_v6 && eg_ss_same_addr(&lv->sandbox, &sb6)))
            continue;
        const char *rule = NULL;
        bool by_name = false;
        bool allow = policy && eg_policy_decide(policy, lv->name[0] ? lv->name : NULL, &lv->orig,
                                                ss_port(&lv->orig), &rule, &by_name);
        if (!allow) {
            /* both ends see the connection end; relay() returns */
            shutdown(lv->client, SHUT_RDWR);
            shutdown(lv->upstream, SHUT_RDWR);
            cut++;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return cut;
}

/* Decide, and connect when allowed: the upstream fd, or -1 (refused).  */
static int decide(conn_t *c, eg_lookup_t *l, const struct sockaddr_storage *orig, char *name_out,
                  size_t name_len)
{
    char name[256] = "";
    const char *kind = "tcp";
    name_state_t st = read_name(c, name, sizeof name, &kind);
    if (st != NAME_FOUND)
        name[0] = '\0';
    uint16_t port = ss_port(orig);
    const char *rule = NULL, *why;
    bool by_name = false;
    bool allow = eg_policy_decide(l->policy, name[0] ? name : NULL, orig, port, &rule, &by_name);
    struct sockaddr_storage to = *orig;
    if (!allow) {
        why = name[0] ? "no rule allows this name"
                      : "no name (SNI or Host) and no rule allows "
                        "the address";
    } else if (by_name) {
        allow = pick_address(c, l->policy, name, orig->ss_family, &to, &why);
        if (allow)
            why = strcmp(kind, "tls") == 0 ? "TLS SNI" : "HTTP Host";
    } else {
        why = "address";
    }
    log_decision(c->p, l, name, &to, port, rule, allow, why);
    snprintf(name_out, name_len, "%s", name);
    if (!allow) {
        refuse(c, kind, name, why);
        return -1;
    }
    ss_set_port(&to, port);
    int fd = connect_to(&to);
    if (fd < 0)
        refuse(c, "tcp", name, "connect failed");
    return fd;
}

static void *conn_thread(void *arg)
{
    conn_t *c = arg;
    eg_proxy_t *p = c->p;
    struct sockaddr_storage peer, orig = {0};
    socklen_t plen = sizeof peer, olen = sizeof orig;
    eg_lookup_t l = {0};
    bool got = getpeername(c->client, (struct sockaddr *)&peer, &plen) == 0;
    if (got && peer.ss_family == AF_INET)
        got = getsockopt(c->client, SOL_IP, SO_ORIGINAL_DST, &orig, &olen) == 0;
    else if (got && peer.ss_family == AF_INET6)
        got = getsockopt(c->client, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &orig, &olen) == 0;
    else
        got = false;
    if (got && orig.ss_family == peer.ss_family && eg_lookup(p->eg, &peer, &l)) {
        live_t lv = {.client = c->client, .sandbox = peer, .orig = orig};
        c->upstream = decide(c, &l, &orig, lv.name, sizeof lv.name);
        eg_lookup_done(p->eg, &l);
        if (c->upstream >= 0) {
            lv.upstream = c->upstream;
            fd_track(p, c->upstream, true);
            live_track(p, &lv, true);
            if (send_all(c->upstream, c->buf, c->len))
                relay(c->client, c->upstream);
            live_track(p, &lv, false);
            fd_track(p, c->upstream, false);
            close(c->upstream);
        }
    }
    fd_track(p, c->client, false);
    close(c->client);
    free(c);
    return NULL;
}

static void *accept_loop(void *arg)
{
    eg_proxy_t *p = arg;
    for (;;) {
        struct pollfd pf[3] = {{.fd = p->fd[0], .events = POLLIN},
                               {.fd = p->fd[1], .events = POLLIN},
                               {.fd = p->stop_pipe[0], .events = POLLIN}};
        if (poll(pf, 3, -1) < 0 && errno != EINTR)
            break;
        if (pf[2].revents)
            break;
        int lfd = pf[0].revents & POLLIN ? p->fd[0] : pf[1].revents & POLLIN ? p->fd[1] : -1;
        int fd = lfd >= 0 ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;
        if (fd < 0)
            continue;
        pthread_mutex_lock(&p->mu);
        bool room = p->n_fds < MAX_CONNS;
        pthread_mutex_unlock(&p->mu);
        if (!room) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = xmalloc(sizeof *c);
        c->p = p;
        c->client = fd;
        c->upstream = -1;
        c->len = 0;
        fd_track(p, fd, true);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 128 * 1024);
        if (pthread_create(&t, &attr, conn_thread, c) != 0) {
            fd_track(p, fd, false);
            close(fd);
            free(c);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

eg_proxy_t *eg_proxy_start(egress_t *eg, const eg_resolver_t *r, uint16_t ports[2],
                           sbx_error_t *err)
{
    eg_proxy_t *p = xcalloc(1, sizeof *p);
    p->eg = eg;
    p->resolver = r;
    p->stop_pipe[0] = p->stop_pipe[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->idle, NULL);
    if (eg_listen_pair(SOCK_STREAM, p->fd, ports, err) < 0 || pipe2(p->stop_pipe, O_CLOEXEC) < 0) {
        if (err && !err->code)
            sbx_error_errno(err, SBX_ERR_INTERNAL, "the egress proxy's socket");
        eg_proxy_stop(p);
        return NULL;
    }
    if (pthread_create(&p->thread, NULL, accept_loop, p) != 0) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "cannot start the egress proxy");
        close(p->stop_pipe[1]);
        p->stop_pipe[1] = -1;
        eg_proxy_stop(p);
        return NULL;
    }
    return p;
}

void eg_proxy_stop(eg_proxy_t *p)
{
    if (!p)
        return;
    if (p->stop_pipe[1] >= 0) {
        (void)!write(p->stop_pipe[1], "x", 1);
        pthread_join(p->thread, NULL);
    }
    /* open connections end: their threads see the shutdown and exit */
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    for (size_t i = 0; i < p->n_fds; i++)
        shutdown(p->fds[i], SHUT_RDWR);
    while (p->n_fds > 0)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < 2; i++)
        if (p->stop_pipe[i] >= 0)
            close(p->stop_pipe[i]);
    for (int i = 0; i < 2; i++)
        if (p->fd[i] >= 0)
            close(p->fd[i]);
    free(p->fds);
    free(p->live);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->idle);
    free(p);
}
