/* egress_probe.h -- the egress tests' view from inside a sandbox: the test's
 * egress module, and the static client tests/probe/netprobe.c run in the
 * fixture's sandboxes (one try, an expectation, a wait for a policy change
 * to arrive).  Header-only; include it after egress_fixture.h and
 * test_runtime_fixture.h.  A test may define PROBE_OK_MS and PROBE_DENY_MS
 * first: how long a try that succeeds and one that fails may take.  */
#ifndef SBX_TEST_EGRESS_PROBE_H
#define SBX_TEST_EGRESS_PROBE_H

#include <arpa/inet.h>
#include <sys/socket.h>

#include "egress/egress.h"

#ifndef PROBE_OK_MS
#define PROBE_OK_MS 3000
#endif
#ifndef PROBE_DENY_MS
#define PROBE_DENY_MS 1000 /* denials are fast */
#endif

static egress_t *eg;

/* The egress module on the servers' network, its state in the fixture's
 * dir; pool6 NULL for the module's own IPv6 pool.  */
static __attribute__((unused)) void eg_start(const char *pool6)
{
    _cleanup_free_ char *state = xasprintf("%s/egress", fx_dir);
    egress_config_t cfg = {
        .pool = pool, .tag = tag, .resolver = SRV_ADDR, .state_dir = state, .pool6 = pool6};
    sbx_error_t err = {0};
    eg = egress_open(&cfg, &err);
    ck_assert_msg(eg, "egress_open: %s", err.msg);
}

/* Every sandbox's link and rules released, and the module closed.  */
static __attribute__((unused)) void eg_stop(void)
{
    if (!eg)
        return;
    _cleanup_json_ json_t *ids = egress_ids(eg);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) egress_release(eg, json_string_value(v), true);
    egress_close(eg);
    eg = NULL;
}

/* /bin/netprobe in the fixture's image.  */
static __attribute__((unused)) void netprobe_install(void)
{
    _cleanup_free_ char *np = tu_bin("sbx-netprobe");
    _cleanup_free_ char *dst = fx_path("bin/netprobe");
    fx_copy(np, dst, 0755);
}

/* A service on the host, as the agent's API is: a TCP listener on every
 * host address of `family`; its fd, and its port number in port.  */
static __attribute__((unused)) int host_listener(int family, char *port, size_t len)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
    socklen_t sl = family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, sl), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    in_port_t p = family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port;
    snprintf(port, len, "%d", ntohs(p));
    return fd;
}

static __attribute__((unused)) json_t *policy(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);
    ck_assert_msg(j, "bad test policy: %s", jerr.text);
    return j;
}

static char probe_last[512]; /* the last try's arguments and answer, for messages */

/* netprobe's line; *ok whether it succeeded, and it must have ended within
 * max_ms.  */
static __attribute__((unused)) char *probe(const char *id, bool *ok, int max_ms, const char *a1,
                                           const char *a2, const char *a3, const char *a4)
{
    char *argv[] = {"/bin/netprobe", (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
    _cleanup_free_ char *args =
        xasprintf("%s %s %s %s", a1, a2 ? a2 : "", a3 ? a3 : "", a4 ? a4 : "");
    rt_exec_result_t r = fx_execv(id, argv, 20000);
    char *line = xstrdup(r.out ? r.out : "");
    line[strcspn(line, "\n")] = '\0';
    *ok = r.exit_code == 0 && strncmp(line, "ok ", 3) == 0;
    snprintf(probe_last, sizeof probe_last, "%s: %s", args, line);
    const char *ms = strstr(line, "ms=");
    ck_assert_msg(ms, "netprobe %s: '%s' (stderr %s)", args, line, r.err);
    ck_assert_msg(atoi(ms + 3) <= max_ms, "netprobe %s took too long (over %d ms): %s", args,
                  max_ms, line);
    rt_exec_result_done(&r);
    return line;
}

/* EXPECT(id, want, a1, a2, a3, a4): netprobe in sandbox id succeeds or
 * fails as wanted, in time.  A macro, so a failure names the test's line.  */
#define EXPECT(id, want, ...)                                                                      \
    do {                                                                                           \
        bool ok_;                                                                                  \
        free(probe(id, &ok_, (want) ? PROBE_OK_MS : PROBE_DENY_MS, __VA_ARGS__));                  \
        ck_assert_msg(ok_ == (want), "%s: expected %s, got '%s'", #__VA_ARGS__,                    \
                      (want) ? "success" : "failure", probe_last);                                 \
    } while (0)

/* The first try that gives `want`, within ms of now: how long it took, or
 * -1 (probe_last has the last answer).  */
static __attribute__((unused)) int64_t probe_until(const char *id, bool want, int ms,
                                                   const char *a1, const char *a2, const char *a3)
{
    int64_t t0 = sbx_monotonic_ms();
    for (;;) {
        bool ok;
        free(probe(id, &ok, PROBE_OK_MS, a1, a2, a3, NULL));
        int64_t took = sbx_monotonic_ms() - t0;
        if (ok == want)
            return took;
        if (took >= ms)
            return -1;
    }
}

/* UNTIL(id, want, ms, a1, a2, a3): probe_until that must arrive in time;
 * gives how long it took.  */
#define UNTIL(id, want, ms, a1, a2, a3)                                                            \
    ({                                                                                             \
        int64_t took_ = probe_until(id, want, ms, a1, a2, a3);                                     \
        ck_assert_msg(took_ >= 0, "%s %s %s: still %s after %d ms: %s", a1, a2, a3,                \
                      (want) ? "unreachable" : "reachable", ms, probe_last);                       \
        took_;                                                                                     \
    })

#endif
