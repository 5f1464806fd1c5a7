/* test_egress.c -- egress enforcement on real sandboxes: test servers
 * (HTTP, HTTPS, TCP, UDP, DNS) run in a network namespace this test makes,
 * sandboxes get links and nft rules from the egress module, and a static
 * client inside them (tests/probe/netprobe.c) tries what the policy allows
 * and what it must not.  No traffic leaves the machine.  */
#include <arpa/inet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/un.h>

#define POOL_SECOND_OCTET 234
#include "tests/integration/egress_fixture.h"
#include "tests/integration/test_runtime_fixture.h"
#include "tests/integration/egress_probe.h"

static void egress_start(void)
{
    /* an IPv6 pool of its own, outside fd5b:d0::/32, so deny6 must name it */
    char pool6[40];
    snprintf(pool6, sizeof pool6, "fd42:0:0:%x::/64", (unsigned)getpid() & 0xffff);
    eg_start(pool6);
}

static void setup(void)
{
    fx_setup();
    netprobe_install();
    egress_start();
}

static void teardown(void)
{
    eg_stop();
    fx_teardown();
}

static const char *const web_policy =
    "{\"defaultAction\":\"Deny\",\"rules\":["
    "{\"name\":\"web\",\"action\":\"Allow\",\"fqdns\":[\"ok.test\",\"*.wild.test\"],"
    "\"ports\":[80,443]},"
    "{\"name\":\"echo\",\"action\":\"Allow\",\"cidrs\":[\"" SRV_ADDR2 "/32\"],"
    "\"ports\":[7000,7001]},"
    "{\"name\":\"private\",\"action\":\"Allow\",\"fqdns\":[\"private.test\",\"loop.test\"],"
    "\"ports\":[80]},"
    "{\"name\":\"block7000\",\"action\":\"Deny\",\"cidrs\":[\"" SRV_ADDR "/32\"],"
    "\"ports\":[7000]}]}";

static int64_t apply_ms;

/* A running sandbox with the policy (NULL: none).  */
static void sandbox(const char *id, const char *pol)
{
    fx_create(id, NULL);
    sbx_error_t err = {0};
    _cleanup_json_ json_t *p = pol ? policy(pol) : NULL;
    int fd = rt_netns_open(fx_rt, id, &err);
    ck_assert_msg(fd >= 0, "%s", err.msg);
    int64_t t0 = sbx_now_ms();
    ck_assert_msg(egress_apply(eg, id, fd, p, &err) == 0, "egress_apply: %s", err.msg);
    apply_ms = sbx_now_ms() - t0;
    close(fd);
}

static void addrs(const char *id, char *sb, char *gw)
{
    ck_assert_int_eq(egress_addresses(eg, id, sb, gw, 64), 1);
}

START_TEST(allowed_and_denied)
{
    sandbox("eg-a", web_policy);
    fprintf(stderr, "egress_apply (link + rules) on create: %lld ms\n", (long long)apply_ms);
    char sb[64], gw[64];
    addrs("eg-a", sb, gw);

    /* allowed: FQDN over HTTP and HTTPS (exact and wildcard), CIDR + port */
    EXPECT("eg-a", true, "http", SRV_ADDR, "80", "ok.test");
    EXPECT("eg-a", true, "tls", SRV_ADDR, "443", "ok.test");
    EXPECT("eg-a", true, "tls", SRV_ADDR, "443", "a.wild.test");
    EXPECT("eg-a", true, "tcp", SRV_ADDR2, "7000", NULL);
    EXPECT("eg-a", true, "udp", SRV_ADDR2, "7001", NULL);
    EXPECT("eg-a", true, "dns", gw, "ok.test", NULL);

    /* denied, each fast */
    EXPECT("eg-a", false, "http", SRV_ADDR2, "8080", "ok.test"); /* other port */
    EXPECT("eg-a", false, "tcp", SRV_ADDR, "7000", NULL);        /* other address */
    EXPECT("eg-a", false, "http", SRV_ADDR, "80", "other.test");
    EXPECT("eg-a", false, "tls", SRV_ADDR, "443", "other.test");
    EXPECT("eg-a", false, "tls", SRV_ADDR, "443", "b.a.wild.test"); /* one label only */
    EXPECT("eg-a", false, "http", SRV_ADDR, "80", "private.test");  /* resolves to 10.77.0.2 */
    EXPECT("eg-a", false, "http", SRV_ADDR, "80", "loop.test");     /* resolves to 127.0.0.1 */
    EXPECT("eg-a", false, "http", SRV_ADDR, "80", SRV_ADDR);        /* IP literal */
    EXPECT("eg-a", false, "tls", SRV_ADDR, "443", SRV_ADDR);
    EXPECT("eg-a", false, "raw", NULL, NULL, NULL);
    EXPECT("eg-a", false, "packet", NULL, NULL, NULL);
    /* IPv6 when only IPv4 is allowed: the echo rule names its IPv4 address */
    EXPECT("eg-a", false, "tcp", SRV6_ADDR2, "7000", NULL);
    EXPECT("eg-a", false, "udp", SRV_ADDR, "7001", NULL);
    EXPECT("eg-a", false, "dns", SRV_ADDR, "ok.test", NULL); /* another resolver */
    EXPECT("eg-a", false, "dns", gw, "other.test", NULL);    /* a name no rule allows */
    EXPECT("eg-a", false, "tcp", "169.254.169.254", "80", NULL);

    /* the host: its link address, its other addresses, a service on it */
    char port[16];
    int lfd = host_listener(AF_INET, port, sizeof port);
    EXPECT("eg-a", false, "tcp", gw, port, NULL);
    EXPECT("eg-a", false, "tcp", HOST_ADDR, port, NULL);
    EXPECT("eg-a", false, "tcp", gw, "80", NULL);
    close(lfd);

    /* another sandbox, with the same policy */
    sandbox("eg-b", web_policy);
    char sb2[64], gw2[64];
    addrs("eg-b", sb2, gw2);
    EXPECT("eg-a", false, "tcp", sb2, "7000", NULL);
    EXPECT("eg-b", true, "tcp", SRV_ADDR2, "7000", NULL);
    /* a forged source (another sandbox's address): the sandbox's kernel
     * refuses to route it without privileges (and the host end would drop
     * it); either way the resolver never takes it as the other sandbox */
    EXPECT("eg-a", true, "dns", gw, "ok.test", NULL);
    bool ok;
    _cleanup_free_ char *forged = probe("eg-a", &ok, 4000, "dnsfrom", sb2, gw, "ok.test");
    ck_assert_msg(!ok, "forged DNS question: %s", forged);
    {
        sbx_error_t derr = {0};
        _cleanup_json_ json_t *db = egress_decisions(eg, "eg-b", &derr);
        ck_assert_msg(json_integer_value(json_object_get(db, "allowed")) == 0,
                      "the resolver took a forged question as eg-b's");
    }

    /* a sandbox without a policy has no link at all */
    sandbox("eg-c", NULL);
    EXPECT("eg-c", false, "tcp", SRV_ADDR2, "7000", NULL);
    ck_assert_int_eq(egress_addresses(eg, "eg-c", sb2, gw2, 64), 0);

    /* the decision log says why */
    sbx_error_t err = {0};
    _cleanup_json_ json_t *d = egress_decisions(eg, "eg-a", &err);
    ck_assert_msg(d, "%s", err.msg);
    ck_assert_int_ge(json_integer_value(json_object_get(d, "denied")), 5);
    ck_assert_int_ge(json_integer_value(json_object_get(d, "allowed")), 3);
    bool saw_other = false, saw_private = false, saw_cidr = false, saw_metadata = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(d, "recentDenied"), i, e)
    {
        const char *dest = json_string_value(json_object_get(e, "destination"));
        if (dest && strcmp(dest, "other.test") == 0)
            saw_other = true;
        const char *addr = json_string_value(json_object_get(e, "address"));
        const char *rule = json_string_value(json_object_get(e, "rule"));
        if (addr && strcmp(addr, SRV_ADDR) == 0 && rule && strcmp(rule, "block7000") == 0 &&
            json_integer_value(json_object_get(e, "port")) == 7000)
            saw_cidr = true;
        if (addr && strcmp(addr, "169.254.169.254") == 0)
            saw_metadata = true;
        if (dest && strcmp(dest, "private.test") == 0) {
            saw_private = true;
            ck_assert_str_eq(json_string_value(json_object_get(e, "rule")), "private");
        }
    }
    ck_assert(saw_other && saw_private);
    ck_assert_msg(saw_cidr && saw_metadata, "packet-level denials are missing from the log: %s",
                  json_dumps(d, JSON_COMPACT));
    json_t *last_allowed = json_array_get(json_object_get(d, "recentAllowed"), 0);
    ck_assert_ptr_nonnull(last_allowed);
}
END_TEST

typedef struct hold {
    pthread_t t;
    const char *id;
    const char *addr; /* NULL: SRV_ADDR2 */
    char *line;
    bool ok;
} hold_t;

static void *hold_main(void *arg)
{
    hold_t *h = arg;
    char *argv[] = {"/bin/netprobe", "hold", (char *)(h->addr ? h->addr : SRV_ADDR2),
                    "7000",          "6000", NULL};
    rt_exec_result_t r = fx_execv(h->id, argv, 20000);
    h->line = xstrdup(r.out ? r.out : "");
    h->ok = r.exit_code == 0 && strncmp(h->line, "ok ", 3) == 0;
    rt_exec_result_done(&r);
    return NULL;
}

/* The echo server sees the sandbox's connection established.  */
static bool echo_established(void)
{
    return sh("ip netns exec %s ss -Htn state established '( sport = :7000 )' | grep -q .",
              netns) == 0;
}

START_TEST(open_connections_follow_the_policy)
{
    sandbox("eg-o", web_policy);
    hold_t h = {.id = "eg-o"};
    ck_assert_int_eq(pthread_create(&h.t, NULL, hold_main, &h), 0);
    int64_t end = sbx_monotonic_ms() + 10000;
    while (!echo_established() && sbx_monotonic_ms() < end)
        usleep(20000);
    ck_assert_msg(echo_established(), "the held connection never came up");

    /* another policy that still allows it: the connection goes on */
    _cleanup_json_ json_t *still =
        policy("{\"rules\":[{\"name\":\"echo2\",\"action\":\"Allow\",\"cidrs\":[\"" SRV_ADDR2
               "/32\"],\"ports\":[7000]}]}");
    sbx_error_t err = {0};
    ck_assert_msg(egress_apply(eg, "eg-o", -1, still, &err) == 0, "%s", err.msg);
    int64_t t0 = sbx_monotonic_ms();
    while (sbx_monotonic_ms() - t0 < 500)
        usleep(50000);
    ck_assert_msg(echo_established(), "a still-allowed connection was cut");
    ck_assert_ptr_null(h.line); /* the probe is still pinging */

    /* narrowed: the open connection is cut at once */
    _cleanup_json_ json_t *narrow =
        policy("{\"rules\":[{\"name\":\"web\",\"action\":\"Allow\",\"fqdns\":[\"ok.test\"]}]}");
    t0 = sbx_monotonic_ms();
    ck_assert_msg(egress_apply(eg, "eg-o", -1, narrow, &err) == 0, "%s", err.msg);
    pthread_join(h.t, NULL);
    int64_t cut_ms = sbx_monotonic_ms() - t0;
    fprintf(stderr, "narrowed policy cut an open connection in %lld ms: %s", (long long)cut_ms,
            h.line);
    ck_assert_msg(!h.ok && strstr(h.line, "cut:"), "%s", h.line);
    ck_assert_msg(strstr(h.line, "cut:after=0") == NULL, "cut before the change: %s", h.line);
    ck_assert_int_le(cut_ms, 1500);
    free(h.line);
    egress_release(eg, "eg-o", true);
    ck_assert_int_eq(rt_destroy(fx_rt, "eg-o", &err), 0);
}
END_TEST

/* The same through the proxy: the FQDN rule sends port 7000 to the proxy,
 * which lets the nameless echo through on the CIDR rule, then re-decides
 * the spliced connection when the policy changes.  */
START_TEST(proxied_connections_follow_the_policy)
{
    const char *via_proxy =
        "{\"rules\":[{\"name\":\"name\",\"action\":\"Allow\",\"fqdns\":[\"ok.test\"],"
        "\"ports\":[7000]},{\"name\":\"%s\",\"action\":\"Allow\",\"cidrs\":[\"" SRV_ADDR2
        "/32\"],\"ports\":[7000]}]}";
    _cleanup_free_ char *p1 = xasprintf(via_proxy, "echo");
    sandbox("eg-p", p1);
    hold_t h = {.id = "eg-p"};
    ck_assert_int_eq(pthread_create(&h.t, NULL, hold_main, &h), 0);
    int64_t end = sbx_monotonic_ms() + 10000;
    while (!echo_established() && sbx_monotonic_ms() < end)
        usleep(20000);
    ck_assert_msg(echo_established(), "the held connection never came up");
    _cleanup_json_ json_t *d = egress_decisions(eg, "eg-p", NULL);
    ck_assert_int_ge(json_integer_value(json_object_get(d, "allowed")), 1); /* the proxy's */

    /* still allowed (the rule renamed): the spliced connection goes on */
    _cleanup_free_ char *p2 = xasprintf(via_proxy, "echo-renamed");
    _cleanup_json_ json_t *still = policy(p2);
    sbx_error_t err = {0};
    ck_assert_msg(egress_apply(eg, "eg-p", -1, still, &err) == 0, "%s", err.msg);
    int64_t t0 = sbx_monotonic_ms();
    while (sbx_monotonic_ms() - t0 < 500)
        usleep(50000);
    ck_assert_msg(echo_established(), "a still-allowed proxied connection was cut");
    ck_assert_ptr_null(h.line);

    /* the CIDR rule goes: the proxy closes it */
    _cleanup_json_ json_t *narrow =
        policy("{\"rules\":[{\"name\":\"name\",\"action\":\"Allow\",\"fqdns\":[\"ok.test\"],"
               "\"ports\":[7000]}]}");
    t0 = sbx_monotonic_ms();
    ck_assert_msg(egress_apply(eg, "eg-p", -1, narrow, &err) == 0, "%s", err.msg);
    pthread_join(h.t, NULL);
    int64_t cut_ms = sbx_monotonic_ms() - t0;
    fprintf(stderr, "narrowed policy closed a proxied connection in %lld ms: %s", (long long)cut_ms,
            h.line);
    ck_assert_msg(!h.ok && strstr(h.line, "cut:") && !strstr(h.line, "cut:after=0"), "%s", h.line);
    ck_assert_int_le(cut_ms, 1500);
    free(h.line);
    egress_release(eg, "eg-p", true);
    ck_assert_int_eq(rt_destroy(fx_rt, "eg-p", &err), 0);
}
END_TEST

START_TEST(live_update_and_cleanup)
{
    sandbox("eg-l", web_policy);
    char sb[64], gw[64], ifname[IFNAMSIZ];
    addrs("eg-l", sb, gw);
    EXPECT("eg-l", true, "tcp", SRV_ADDR2, "7000", NULL);
    EXPECT("eg-l", false, "tcp", SRV_ADDR, "7000", NULL);

    /* narrow: the CIDR rule goes; new connections follow within 2 s */
    _cleanup_json_ json_t *narrow =
        policy("{\"rules\":[{\"name\":\"web\",\"action\":\"Allow\",\"fqdns\":[\"ok.test\"]}]}");
    sbx_error_t err = {0};
    int64_t t0 = sbx_now_ms();
    ck_assert_msg(egress_apply(eg, "eg-l", -1, narrow, &err) == 0, "%s", err.msg);
    UNTIL("eg-l", false, 2000, "tcp", SRV_ADDR2, "7000");
    ck_assert_int_le(sbx_now_ms() - t0, 2000 + 1000);
    EXPECT("eg-l", true, "http", SRV_ADDR, "80", "ok.test");

    /* widen: a CIDR rule for the other address */
    _cleanup_json_ json_t *wide = policy(
        "{\"rules\":[{\"name\":\"all\",\"action\":\"Allow\",\"cidrs\":[\"203.0.113.0/24\"]}]}");
    ck_assert_msg(egress_apply(eg, "eg-l", -1, wide, &err) == 0, "%s", err.msg);
    UNTIL("eg-l", true, 2000, "tcp", SRV_ADDR, "7000");

    /* a policy that allows nothing takes the link away */
    _cleanup_json_ json_t *none = policy("{\"defaultAction\":\"Deny\",\"rules\":[]}");
    ck_assert_msg(egress_apply(eg, "eg-l", -1, none, &err) == 0, "%s", err.msg);
    snprintf(ifname, sizeof ifname, "sx%s-", tag);
    ck_assert_int_eq(egress_addresses(eg, "eg-l", sb, gw, 64), 0);
    EXPECT("eg-l", false, "tcp", SRV_ADDR, "7000", NULL);

    /* back on a running sandbox: the link comes back */
    int fd = rt_netns_open(fx_rt, "eg-l", &err);
    ck_assert_int_ge(fd, 0);
    ck_assert_msg(egress_apply(eg, "eg-l", fd, wide, &err) == 0, "%s", err.msg);
    close(fd);
    EXPECT("eg-l", true, "tcp", SRV_ADDR, "7000", NULL);

    /* delete: no link, no map element, no record */
    egress_release(eg, "eg-l", true);
    ck_assert_int_eq(rt_destroy(fx_rt, "eg-l", &err), 0);
    ck_assert_int_eq(sh("ip -o link | grep -q ' sx%s-'", tag), 1);
    ck_assert_int_eq(sh("nft list table inet sandboxd_%s | grep -q ' : jump '", tag), 1);
    ck_assert_int_eq(sh("nft list table inet sandboxd_%s | grep -q 'chain p[fnd]_'", tag), 1);
    ck_assert_ptr_null(egress_decisions(eg, "eg-l", &err));
}
END_TEST

/* The port numbers of the agent's listeners, from its host_in chain.  */
static size_t listener_ports(const char *proto, int *ports, size_t max)
{
    _cleanup_free_ char *cmd = xasprintf("nft list chain inet sandboxd_%s host_in", tag);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    size_t n = 0;
    _cleanup_free_ char *want = xasprintf("%s dport %%d drop", proto);
    while (fgets(line, sizeof line, f) && n < max) {
        const char *at = strstr(line, proto);
        int port;
        if (at && sscanf(at, want, &port) == 1)
            ports[n++] = port;
    }
    pclose(f);
    return n;
}

/* A socket on loopback of `family` bound to port, or -1 when that number
 * is taken there (each listener port number is bound in one family only,
 * egress/listen.c, so it is free in the other).  */
static int loop_socket(int family, int type, int port)
{
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
    socklen_t len = sizeof(struct sockaddr_in);
    if (family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        ((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        len = sizeof(struct sockaddr_in6);
    } else {
        ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        ck_assert_msg(errno == EADDRINUSE, "bind :%d: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The client on `port` in whichever family has it free, *family set.  */
static int client_socket(int type, int port, int *family)
{
    *family = AF_INET6;
    int fd = loop_socket(AF_INET6, type, port);
    if (fd < 0) {
        *family = AF_INET;
        fd = loop_socket(AF_INET, type, port);
    }
    ck_assert_msg(fd >= 0, "port %d is bound on both IPv4 and IPv6 loopback", port);
    return fd;
}

static socklen_t local_addr(int fd, struct sockaddr_storage *ss)
{
    socklen_t len = sizeof *ss;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)ss, &len), 0);
    return len;
}

static bool readable_within(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
    return poll(&p, 1, ms) == 1;
}

/* The rules that close the listeners' ports apply to flows that start at
 * them: a host client whose own port has one of those numbers still gets
 * its replies (the SYN-ACK to it once went the way of a probe).  */
START_TEST(host_clients_on_listener_port_numbers)
{
    int tcp[4], udp[4];
    size_t nt = listener_ports("tcp", tcp, 4), nu = listener_ports("udp", udp, 4);
    ck_assert_uint_ge(nt, 1);
    ck_assert_uint_ge(nu, 1);
    for (size_t i = 0; i < nt; i++) {
        int family;
        int cli = client_socket(SOCK_STREAM | SOCK_NONBLOCK, tcp[i], &family);
        int srv = loop_socket(family, SOCK_STREAM, 0);
        ck_assert_int_eq(listen(srv, 4), 0);
        struct sockaddr_storage to;
        socklen_t tlen = local_addr(srv, &to);
        int rc = connect(cli, (struct sockaddr *)&to, tlen);
        ck_assert(rc == 0 || errno == EINPROGRESS);
        ck_assert_msg(readable_within(cli, 3000), "a client on port %d got no SYN-ACK", tcp[i]);
        int soerr = -1;
        socklen_t len = sizeof soerr;
        ck_assert_int_eq(getsockopt(cli, SOL_SOCKET, SO_ERROR, &soerr, &len), 0);
        ck_assert_msg(soerr == 0, "a client on port %d: %s", tcp[i], strerror(soerr));
        close(cli);
        close(srv);
    }
    for (size_t i = 0; i < nu; i++) {
        int family;
        int cli = client_socket(SOCK_DGRAM | SOCK_NONBLOCK, udp[i], &family);
        int srv = loop_socket(family, SOCK_DGRAM, 0);
        struct sockaddr_storage to;
        socklen_t tlen = local_addr(srv, &to);
        ck_assert_int_eq(sendto(cli, "q", 1, 0, (struct sockaddr *)&to, tlen), 1);
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        char b;
        ck_assert_int_eq(recvfrom(srv, &b, 1, 0, (struct sockaddr *)&from, &flen), 1);
        ck_assert_int_eq(sendto(srv, "a", 1, 0, (struct sockaddr *)&from, flen), 1);
        struct pollfd p = {.fd = cli, .events = POLLIN};
        ck_assert_msg(poll(&p, 1, 3000) == 1, "a client on port %d got no answer", udp[i]);
        close(cli);
        close(srv);
    }
}
END_TEST

/* A starting agent removes the tables of agents that are gone and have
 * no sandbox link left, and only those.  */
START_TEST(stale_tables_swept)
{
    /* Tags of this run's own (tests may run side by side on one host).  */
    char gone_tag[8], run_tag[8], link_tag[8];
    unsigned id = (unsigned)getpid() % 0x10000;
    snprintf(gone_tag, sizeof gone_tag, "g%04x", id);
    snprintf(run_tag, sizeof run_tag, "r%04x", id);
    snprintf(link_tag, sizeof link_tag, "l%04x", id);
    ck_assert_int_eq(sh("nft add table inet sandboxd_%s && nft add table inet sandboxd_%s && "
                        "nft add table inet sandboxd_%s && "
                        "ip link add sx%s-1 type veth peer name sx%s-1p",
                        gone_tag, run_tag, link_tag, link_tag, link_tag),
                     0);
    /* run_tag's agent runs: it holds its claim */
    int held = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "sandboxd-egress-tag-%s", run_tag);
    int bound = bind(held, (struct sockaddr *)&a,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n));
    egress_close(eg);
    eg = NULL;
    egress_start();
    int gone = sh("nft list table inet sandboxd_%s >/dev/null 2>&1", gone_tag);
    int running = sh("nft list table inet sandboxd_%s >/dev/null 2>&1", run_tag);
    int linked = sh("nft list table inet sandboxd_%s >/dev/null 2>&1", link_tag);
    close(held);
    sh("nft delete table inet sandboxd_%s 2>/dev/null; nft delete table inet sandboxd_%s; "
       "nft delete table inet sandboxd_%s; ip link del sx%s-1",
       gone_tag, run_tag, link_tag, link_tag);
    ck_assert_int_eq(bound, 0);
    ck_assert_msg(gone != 0, "the table of a gone agent is still there");
    ck_assert_msg(running == 0, "the table of a running agent was removed");
    ck_assert_msg(linked == 0, "a table with sandbox links left was removed");
    ck_assert_int_eq(sh("nft list table inet sandboxd_%s >/dev/null", tag), 0);
}
END_TEST

/* `cmd` run by sh in sandbox id's network namespace: its exit status.  */
static int in_netns(const char *id, const char *cmd)
{
    sbx_error_t err = {0};
    int fd = rt_netns_open(fx_rt, id, &err);
    ck_assert_msg(fd >= 0, "%s", err.msg);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setns(fd, CLONE_NEWNET) < 0)
            _exit(126);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fd);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static ino_t my_netns(void)
{
    struct stat st;
    ck_assert_int_eq(stat("/proc/thread-self/ns/net", &st), 0);
    return st.st_ino;
}

/* What eg_link_create makes, end by end: addresses, the default route,
 * strict reverse-path filtering on the host end, one queue each way (the
 * kernel's default for a veth waits for RCU when cutting them down); and
 * the thread that made it is back in the agent's namespace.  */
START_TEST(link_shape)
{
    ino_t before = my_netns();
    sandbox("eg-k", web_policy);
    ck_assert(my_netns() == before);
    char sb[64], gw[64];
    addrs("eg-k", sb, gw);
    char ifname[IFNAMSIZ] = "";
    FILE *f = popen("ip -o -4 addr show", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    _cleanup_free_ char *want = xasprintf(" inet %s/31 ", gw);
    while (fgets(line, sizeof line, f))
        if (strstr(line, want))
            ck_assert_int_eq(sscanf(line, "%*d: %15s", ifname), 1);
    pclose(f);
    ck_assert_msg(ifname[0], "no host end with %s", gw);
    ck_assert_int_eq(sh("grep -qx 1 /proc/sys/net/ipv4/conf/%s/rp_filter", ifname), 0);
    ck_assert_int_eq(sh("ip -d link show %s | grep -q 'numtxqueues 1 numrxqueues 1'", ifname), 0);
    ck_assert_int_eq(sh("ip link show %s | grep -q 'state UP'", ifname), 0);
    _cleanup_free_ char *inside =
        xasprintf("ip -o -4 addr show dev eth0 | grep -q ' inet %s/31 ' && "
                  "ip -4 route show default | grep -q 'via %s dev eth0' && "
                  "ip -d link show eth0 | grep -q 'numtxqueues 1 numrxqueues 1'",
                  sb, gw);
    ck_assert_int_eq(in_netns("eg-k", inside), 0);
    egress_release(eg, "eg-k", true);
    ck_assert_int_eq(sh("ip link show %s >/dev/null 2>&1", ifname), 1);
}
END_TEST

START_TEST(bad_policies)
{
    static const struct {
        const char *policy, *target;
    } bad[] = {
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"cidrs\":[\"10.0.0.0/33\"]}]}",
         "rules[0].cidrs[0]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"cidrs\":[\"10.0.0\"]}]}",
         "rules[0].cidrs[0]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"fqdns\":[\"a.*.com\"]}]}",
         "rules[0].fqdns[0]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"fqdns\":[\"*\"]}]}",
         "rules[0].fqdns[0]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"ports\":[0]}]}", "rules[0].ports[0]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Maybe\"}]}", "rules[0]"},
        {"{\"defaultAction\":\"allow\"}", "defaultAction"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"cidrs\":[\"2001:db8::/129\"]}]}",
         "rules[0].cidrs[0]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"cidrs\":[\"10.0.0.0/8\","
         "\"2001:db8:::1/64\"]}]}",
         "rules[0].cidrs[1]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"cidrs\":[\"fe80::1%eth0\"]}]}",
         "rules[0].cidrs[0]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"cidrs\":[\"2001:db8::/\"]}]}",
         "rules[0].cidrs[0]"},
        {"{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\",\"cidrs\":[\"2001:db8::/-1\"]}]}",
         "rules[0].cidrs[0]"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        _cleanup_json_ json_t *p = policy(bad[i].policy);
        sbx_error_t err = {0};
        ck_assert_int_eq(egress_policy_check(p, &err), -1);
        ck_assert_int_eq(err.code, SBX_ERR_INVALID);
        ck_assert_str_eq(err.target, bad[i].target);
    }
    _cleanup_json_ json_t *many = json_pack("{s:[]}", "rules");
    for (int i = 0; i < 10000; i++)
        json_array_append_new(json_object_get(many, "rules"),
                              json_pack("{s:s,s:s}", "name", "r", "action", "Allow"));
    sbx_error_t err = {0};
    ck_assert_int_eq(egress_policy_check(many, &err), -1);
    ck_assert_str_eq(err.target, "rules");
}
END_TEST

/* IPv6: the link's own /127 of the agent's ULA pool, NAT66 out.  */
static const char *const v6_policy =
    "{\"defaultAction\":\"Deny\",\"rules\":["
    "{\"name\":\"web\",\"action\":\"Allow\",\"fqdns\":[\"ok.test\",\"v6only.test\"],"
    "\"ports\":[80,443]},"
    "{\"name\":\"echo6\",\"action\":\"Allow\",\"cidrs\":[\"" SRV6_ADDR2 "/128\"],"
    "\"ports\":[7000,7001]},"
    "{\"name\":\"mapped\",\"action\":\"Allow\",\"cidrs\":[\"::ffff:" SRV_ADDR2 "/128\"],"
    "\"ports\":[7000]},"
    "{\"name\":\"names\",\"action\":\"Allow\","
    "\"fqdns\":[\"private6.test\",\"mapped6.test\",\"loop6.test\"],\"ports\":[80]}]}";

static bool decided(const json_t *d, const char *list, const char *address, int port)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(d, list), i, e)
    {
        const char *a = json_string_value(json_object_get(e, "address"));
        if (a && strcmp(a, address) == 0 && json_integer_value(json_object_get(e, "port")) == port)
            return true;
    }
    return false;
}

START_TEST(ipv6)
{
    sandbox("eg-6", v6_policy);
    char sb[64], gw[64], sb6[64], gw6[64];
    addrs("eg-6", sb, gw);
    ck_assert_int_eq(egress_addresses6(eg, "eg-6", sb6, gw6, 64), 1);
    ck_assert_msg(strncmp(sb6, "fd42:", 5) == 0, "sandbox address %s", sb6);

    /* allowed: the IPv6 CIDR and its ports, names through the proxy over
     * IPv6 (SNI and Host), AAAA and A answers over UDP and TCP, on both
     * of the gateway's addresses */
    EXPECT("eg-6", true, "tcp", SRV6_ADDR2, "7000", NULL);
    EXPECT("eg-6", true, "udp", SRV6_ADDR2, "7001", NULL);
    EXPECT("eg-6", true, "http", SRV6_ADDR, "80", "ok.test");
    EXPECT("eg-6", true, "tls", SRV6_ADDR, "443", "v6only.test");
    bool ok;
    _cleanup_free_ char *aaaa = probe("eg-6", &ok, 3000, "aaaa", gw6, "ok.test", NULL);
    ck_assert_msg(ok && strstr(aaaa, "addr=" SRV6_ADDR " "), "%s", aaaa);
    _cleanup_free_ char *a = probe("eg-6", &ok, 3000, "dnstcp", gw, "ok.test", NULL);
    ck_assert_msg(ok && strstr(a, "addr=" SRV_ADDR " "), "%s", a);
    _cleanup_free_ char *a6 = probe("eg-6", &ok, 3000, "dnstcp", gw6, "ok.test", NULL);
    ck_assert_msg(ok && strstr(a6, "addr=" SRV_ADDR " "), "%s", a6);

    /* hostile DNS over TCP: hung up on at once, and the resolver goes on */
    EXPECT("eg-6", true, "dnsjunk", gw6, NULL, NULL);
    EXPECT("eg-6", true, "dnstcp", gw6, "ok.test", NULL);
    /* at most 8 TCP clients of one sandbox at once */
    _cleanup_free_ char *many = probe("eg-6", &ok, 3000, "dnsmany", gw, "10", NULL);
    ck_assert_msg(ok && strstr(many, "answered=8 refused=2"), "%s", many);

    /* denied, each fast */
    EXPECT("eg-6", false, "dnstcp", gw, "other.test", NULL);   /* NXDOMAIN */
    EXPECT("eg-6", false, "aaaa", gw6, "other.test", NULL);    /* NXDOMAIN */
    EXPECT("eg-6", false, "aaaa", gw6, "private6.test", NULL); /* rebinding: ULA */
    EXPECT("eg-6", false, "aaaa", gw6, "mapped6.test", NULL);  /* IPv4-mapped */
    EXPECT("eg-6", false, "aaaa", gw6, "loop6.test", NULL);
    EXPECT("eg-6", false, "tls", SRV6_ADDR, "443", "other.test");
    EXPECT("eg-6", false, "tcp", SRV6_ADDR2, "8080", NULL); /* another port */
    EXPECT("eg-6", false, "tcp", SRV6_ADDR, "7000", NULL);  /* another address */
    /* a mapped literal is IPv4 on the wire: the IPv4 rules decide, and
     * a mapped CIDR allows no IPv4 */
    EXPECT("eg-6", false, "tcp", "::ffff:" SRV_ADDR2, "7000", NULL);
    EXPECT("eg-6", false, "tcp", "::1", "7000", NULL);
    EXPECT("eg-6", false, "tcp", "fe80::1%eth0", "7000", NULL);
    EXPECT("eg-6", false, "tcp", "fd00:ec2::254", "80", NULL);
    EXPECT("eg-6", false, "udp", SRV6_ADDR, "53", NULL); /* another resolver */

    /* the host: its link address, its other addresses, a service on it */
    char port[16];
    int lfd = host_listener(AF_INET6, port, sizeof port);
    EXPECT("eg-6", false, "tcp", gw6, port, NULL);
    EXPECT("eg-6", false, "tcp", HOST6_ADDR, port, NULL);
    close(lfd);

    /* another sandbox */
    sandbox("eg-7", v6_policy);
    char sb7[64], gw7[64];
    ck_assert_int_eq(egress_addresses6(eg, "eg-7", sb7, gw7, 64), 1);
    EXPECT("eg-6", false, "tcp", sb7, "7000", NULL);
    EXPECT("eg-6", false, "tcp", gw7, "7000", NULL);

    /* the decision log has the IPv6 denials and answers */
    sbx_error_t err = {0};
    _cleanup_json_ json_t *d = egress_decisions(eg, "eg-6", &err);
    ck_assert_msg(d, "%s", err.msg);
    ck_assert_msg(decided(d, "recentDenied", SRV6_ADDR2, 8080) &&
                      decided(d, "recentAllowed", SRV6_ADDR, 53),
                  "%s", json_dumps(d, JSON_COMPACT));

    /* a held IPv6 connection: cut when the policy no longer allows it */
    hold_t h = {.id = "eg-6", .addr = SRV6_ADDR2};
    ck_assert_int_eq(pthread_create(&h.t, NULL, hold_main, &h), 0);
    int64_t end = sbx_monotonic_ms() + 10000;
    while (!echo_established() && sbx_monotonic_ms() < end)
        usleep(20000);
    ck_assert_msg(echo_established(), "the held connection never came up");
    _cleanup_json_ json_t *narrow =
        policy("{\"rules\":[{\"name\":\"web\",\"action\":\"Allow\",\"fqdns\":[\"ok.test\"]}]}");
    int64_t t0 = sbx_monotonic_ms();
    ck_assert_msg(egress_apply(eg, "eg-6", -1, narrow, &err) == 0, "%s", err.msg);
    pthread_join(h.t, NULL);
    ck_assert_msg(!h.ok && strstr(h.line, "cut:") && !strstr(h.line, "cut:after=0"), "%s", h.line);
    ck_assert_int_le(sbx_monotonic_ms() - t0, 1500);
    free(h.line);
    EXPECT("eg-6", false, "tcp", SRV6_ADDR2, "7000", NULL);

    /* ULA: not through a rule without CIDRs, only through one naming it */
    _cleanup_json_ json_t *any =
        policy("{\"rules\":[{\"name\":\"any\",\"action\":\"Allow\",\"ports\":[7000]}]}");
    ck_assert_msg(egress_apply(eg, "eg-6", -1, any, &err) == 0, "%s", err.msg);
    EXPECT("eg-6", true, "tcp", SRV6_ADDR2, "7000", NULL);
    EXPECT("eg-6", false, "tcp", SRV_ULA, "7000", NULL);
    _cleanup_json_ json_t *ula =
        policy("{\"rules\":[{\"name\":\"ula\",\"action\":\"Allow\",\"cidrs\":[\"fd00:77::/64\"],"
               "\"ports\":[7000]}]}");
    ck_assert_msg(egress_apply(eg, "eg-6", -1, ula, &err) == 0, "%s", err.msg);
    EXPECT("eg-6", true, "tcp", SRV_ULA, "7000", NULL);

    /* delete: nothing of either family left */
    egress_release(eg, "eg-6", true);
    egress_release(eg, "eg-7", true);
    ck_assert_int_eq(rt_destroy(fx_rt, "eg-6", &err), 0);
    ck_assert_int_eq(rt_destroy(fx_rt, "eg-7", &err), 0);
    ck_assert_int_eq(sh("nft list table inet sandboxd_%s | grep -q ' : jump '", tag), 1);
    ck_assert_int_eq(sh("ip -6 route | grep -q ' dev sx%s-'", tag), 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("egress");
    TCase *tc = tcase_create("egress");
    tcase_add_unchecked_fixture(tc, servers_start, servers_stop);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, allowed_and_denied);
    tcase_add_test(tc, live_update_and_cleanup);
    tcase_add_test(tc, open_connections_follow_the_policy);
    tcase_add_test(tc, proxied_connections_follow_the_policy);
    tcase_add_test(tc, link_shape);
    tcase_add_test(tc, bad_policies);
    tcase_add_test(tc, host_clients_on_listener_port_numbers);
    tcase_add_test(tc, stale_tables_swept);
    tcase_add_test(tc, ipv6);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
