/* dns.c -- the resolver sandboxes see at their gateway (port 53, redirected
 * here): it answers only names some Allow rule of the asking sandbox's
 * policy names, with the upstream's IPv4 addresses less those a name from
 * outside must not have (DNS rebinding); every other name is NXDOMAIN.
 * Each query is answered by a thread of its own, at most MAX_INFLIGHT at
 * once, so a slow upstream does not hold up other sandboxes.  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <resolv.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_INFLIGHT 64
#define MAX_ADDRS 16
#define ANSWER_TTL 30
#define UPSTREAM_TIMEOUT_MS 2000

struct eg_dns {
    egress_t *eg;
    const eg_resolver_t *resolver;
    int fd;
    int stop_pipe[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int inflight;
};

typedef struct query {
    eg_dns_t *d;
    struct sockaddr_in from;
    unsigned char q[512];
    size_t qlen, question_end;
    char name[256];
    int type;
} query_t;

static void reply(eg_dns_t *d, const query_t *q, int rcode, const struct in_addr *addrs, size_t n)
{
    unsigned char r[512];
    size_t len = q->question_end;
    memcpy(r, q->q, len);
    r[2] = (unsigned char)(0x80 | (q->q[2] & 0x01)); /* QR, RD copied */
    r[3] = (unsigned char)(0x80 | rcode);            /* RA */
    r[6] = 0, r[7] = (unsigned char)n;               /* answers */
    memset(r + 8, 0, 4);                             /* no authority, no additional */
    for (size_t i = 0; i < n && len + 16 <= sizeof r; i++) {
        unsigned char rr[16] = {0xc0, 0x0c, 0, ns_t_a, 0, ns_c_in, 0, 0, 0, ANSWER_TTL, 0, 4};
        memcpy(rr + 12, &addrs[i], 4);
        memcpy(r + len, rr, 16);
        len += 16;
    }
    (void)sendto(d->fd, r, len, MSG_DONTWAIT, (const struct sockaddr *)&q->from, sizeof q->from);
}

static void log_decision(egress_t *eg, eg_lookup_t *l, const query_t *q, bool allow,
                         const char *rule, const char *reason, const struct in_addr *a)
{
    eg_decision_t dec = {
        .ms = sbx_now_ms(), .port = 53, .protocol = "dns", .allow = allow, .reason = reason};
    snprintf(dec.name, sizeof dec.name, "%s", q->name);
    snprintf(dec.rule, sizeof dec.rule, "%s", rule ? rule : "");
    if (a)
        inet_ntop(AF_INET, a, dec.address, sizeof dec.address);
    eg_decision_log(eg, l->sb, &dec);
}

/* The upstream's addresses that the policy lets this name have.  */
static size_t filter_rebinding(const eg_policy_t *p, struct in_addr *a, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss = {.ss_family = AF_INET};
        ((struct sockaddr_in *)&ss)->sin_addr = a[i];
        if ((eg_addr_private(&ss) || eg_addr_is_host(&ss)) && !eg_policy_cidr_allows(p, &ss))
            continue;
        a[k++] = a[i];
    }
    return k;
}

static void answer(query_t *q)
{
    eg_dns_t *d = q->d;
    eg_lookup_t l;
    if (!eg_lookup(d->eg, q->from.sin_addr, &l))
        return;
    const char *rule = NULL;
    if (!eg_policy_name_allowed(l.policy, q->name, &rule)) {
        reply(d, q, ns_r_nxdomain, NULL, 0);
        log_decision(d->eg, &l, q, false, rule, "no rule allows this name", NULL);
    } else if (q->type != ns_t_a) {
        reply(d, q, ns_r_noerror, NULL, 0); /* IPv4 only: no AAAA */
    } else {
        struct in_addr a[MAX_ADDRS];
        size_t n = 0;
        sbx_error_t err = {0};
        if (eg_resolve_a(d->resolver, q->name, a, MAX_ADDRS, &n, UPSTREAM_TIMEOUT_MS, &err) < 0) {
            reply(d, q, ns_r_servfail, NULL, 0);
        } else {
            size_t got = n;
            n = filter_rebinding(l.policy, a, n);
            reply(d, q, n || !got ? ns_r_noerror : ns_r_nxdomain, a, n);
            if (got && !n)
                log_decision(d->eg, &l, q, false, rule,
                             "the name resolves only to private or host addresses", NULL);
            else
                log_decision(d->eg, &l, q, true, rule, "resolved", n ? &a[0] : NULL);
        }
    }
    eg_lookup_done(d->eg, &l);
}

static void *answer_thread(void *arg)
{
    query_t *q = arg;
    eg_dns_t *d = q->d;
    answer(q);
    free(q);
    pthread_mutex_lock(&d->mu);
    if (--d->inflight == 0)
        pthread_cond_broadcast(&d->idle);
    pthread_mutex_unlock(&d->mu);
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

static void *serve(void *arg)
{
    eg_dns_t *d = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = d->fd, .events = POLLIN},
                              {.fd = d->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        query_t *q = xcalloc(1, sizeof *q);
        q->d = d;
        socklen_t flen = sizeof q->from;
        ssize_t n =
            recvfrom(d->fd, q->q, sizeof q->q, MSG_DONTWAIT, (struct sockaddr *)&q->from, &flen);
        q->qlen = n > 0 ? (size_t)n : 0;
        if (n <= 0 || !query_parse(q)) {
            free(q);
            continue;
        }
        pthread_mutex_lock(&d->mu);
        bool room = d->inflight < MAX_INFLIGHT;
        if (room)
            d->inflight++;
        pthread_mutex_unlock(&d->mu);
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 128 * 1024);
        if (!room) {
            reply(d, q, ns_r_servfail, NULL, 0);
            free(q);
        } else if (pthread_create(&t, &attr, answer_thread, q) != 0) {
            free(q);
            pthread_mutex_lock(&d->mu);
            d->inflight--;
            pthread_mutex_unlock(&d->mu);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

eg_dns_t *eg_dns_start(egress_t *eg, const eg_resolver_t *r, uint16_t *port, sbx_error_t *err)
{
    eg_dns_t *d = xcalloc(1, sizeof *d);
    d->eg = eg;
    d->resolver = r;
    d->stop_pipe[0] = d->stop_pipe[1] = -1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->idle, NULL);
    d->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof a;
    if (d->fd < 0 || bind(d->fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(d->fd, (struct sockaddr *)&a, &alen) < 0 ||
        pipe2(d->stop_pipe, O_CLOEXEC) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "the sandboxes' resolver socket");
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
    *port = ntohs(a.sin_port);
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
    while (d->inflight > 0)
        pthread_cond_wait(&d->idle, &d->mu);
    pthread_mutex_unlock(&d->mu);
    for (int i = 0; i < 2; i++)
        if (d->stop_pipe[i] >= 0)
            close(d->stop_pipe[i]);
    if (d->fd >= 0)
        close(d->fd);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->idle);
    free(d);
}
