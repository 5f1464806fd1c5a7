/* egress_bench.c -- what egress costs, side by side in one run: per
 * connection latency and throughput from inside a sandbox to a server,
 * direct (a CIDR rule) against through the FQDN proxy; create latency of a
 * networked sandbox against a closed one; and all of it again with N
 * networked sandboxes on the host.
 *
 *   egress_bench [-n SANDBOXES] [-r ROUNDS] [-c CONNECTIONS] [-b BYTES]
 *
 * The server (HTTP on 8000 and 9000, DNS) runs in a network namespace the
 * bench makes (198.51.100.0/24); nothing leaves the machine.  Needs root and
 * the static client sbx-netbench beside it.  */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "egress/egress.h"
#include "runtime/runtime.h"

#define NETNS "sbxbench"
#define SERVER "198.51.100.2"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double median_ms(int64_t *us, size_t n)
{
    qsort(us, n, sizeof *us, cmp_i64);
    return n ? (double)us[n / 2] / 1000.0 : 0;
}

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

/* ---- the server side, on threads inside the server namespace ---- */

static int enter_server_ns(void)
{
    int fd = open("/run/netns/" NETNS, O_RDONLY | O_CLOEXEC);
    int rc = fd >= 0 ? setns(fd, CLONE_NEWNET) : -1;
    if (fd >= 0)
        close(fd);
    return rc;
}

static void *http_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char head[2048];
    size_t len = 0;
    while (len < sizeof head - 1) {
        ssize_t n = read(fd, head + len, sizeof head - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        head[len] = '\0';
        if (strstr(head, "\r\n\r\n"))
            break;
    }
    head[len] = '\0';
    const char *big = strstr(head, "X-Bytes: ");
    if (strncmp(head, "GET /big", 8) == 0 && big) {
        long long want = atoll(big + 9);
        static char zeros[256 * 1024];
        while (want > 0) {
            ssize_t n =
                send(fd, zeros, want < (long long)sizeof zeros ? (size_t)want : sizeof zeros,
                     MSG_NOSIGNAL);
            if (n <= 0)
                break;
            want -= n;
        }
    } else {
        const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        (void)!send(fd, r, strlen(r), MSG_NOSIGNAL);
    }
    close(fd);
    return NULL;
}

static void *http_server(void *arg)
{
    int port = (int)(intptr_t)arg;
    if (enter_server_ns() < 0)
        return NULL;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 1024) < 0)
        return NULL;
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_create(&t, &at, http_conn, (void *)(intptr_t)c);
        pthread_attr_destroy(&at);
    }
}

/* Every A question is answered with SERVER.  */
static void *dns_server(void *arg)
{
    (void)arg;
    if (enter_server_ns() < 0)
        return NULL;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0)
        return NULL;
    for (;;) {
        unsigned char q[512];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s, q, sizeof q - 16, 0, (struct sockaddr *)&from, &fl);
        if (n < 12)
            continue;
        size_t i = 12;
        while (i < (size_t)n && q[i])
            i += 1 + q[i];
        size_t end = i + 5;
        if (end > (size_t)n)
            continue;
        q[2] = 0x81, q[3] = 0x80, q[7] = 1;
        unsigned char rr[16] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
        inet_pton(AF_INET, SERVER, rr + 12);
        memcpy(q + end, rr, 16);
        sendto(s, q, end + 16, 0, (struct sockaddr *)&from, fl);
    }
}

static int sh(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* ---- sandboxes ---- */

static rt_runtime_t *rt;
static egress_t *eg;
static char *rootfs;
static json_t *policy;

static int create(const char *id, bool networked, int64_t *us)
{
    sbx_error_t err = {0};
    rt_spec_t spec = {.id = id, .rootfs = rootfs, .memory_mib = 64};
    rt_info_t info;
    int64_t t0 = now_us();
    if (rt_create(rt, &spec, &info, &err) < 0) {
        fprintf(stderr, "create %s: %s\n", id, err.msg);
        return -1;
    }
    if (networked) {
        int fd = rt_netns_open(rt, id, &err);
        int rc = egress_apply(eg, id, fd, policy, &err);
        close(fd);
        if (rc < 0) {
            fprintf(stderr, "egress %s: %s\n", id, err.msg);
            return -1;
        }
    }
    *us = now_us() - t0;
    return 0;
}

static void destroy(const char *id)
{
    egress_release(eg, id, true);
    rt_destroy(rt, id, NULL);
}

static char *run(const char *id, char **argv)
{
    rt_exec_request_t req = {.argv = argv, .timeout_ms = 120000};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    if (rt_exec(rt, id, &req, &r, &err) < 0)
        return xasprintf("exec failed: %s", err.msg);
    char *out = xstrdup(r.out ? r.out : "");
    if (r.exit_code != 0)
        fprintf(stderr, "netbench exit %d: %s %s\n", r.exit_code, out, r.err ? r.err : "");
    rt_exec_result_done(&r);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

static double field(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p ? atof(p + strlen(key)) : -1;
}

static void measure(const char *label, int rounds, int conns, const char *bytes)
{
    char n[16];
    snprintf(n, sizeof n, "%d", conns);
    char *rr_direct[] = {"/bin/netbench", "rr", SERVER, "9000", "bench.test", n, NULL};
    char *rr_proxy[] = {"/bin/netbench", "rr", SERVER, "8000", "bench.test", n, NULL};
    char *get_direct[] = {"/bin/netbench", "get",         SERVER, "9000",
                          "bench.test",    (char *)bytes, NULL};
    char *get_proxy[] = {"/bin/netbench", "get", SERVER, "8000", "bench.test", (char *)bytes, NULL};
    _cleanup_free_ char *a = run("bench-0", rr_direct);
    _cleanup_free_ char *b = run("bench-0", rr_proxy);
    _cleanup_free_ char *c = run("bench-0", get_direct);
    _cleanup_free_ char *d = run("bench-0", get_proxy);
    if (getenv("EGRESS_BENCH_DEBUG")) {
        _cleanup_json_ json_t *dj = egress_decisions(eg, "bench-0", NULL);
        _cleanup_free_ char *dt = json_dumps(dj, JSON_COMPACT);
        fprintf(stderr, "decisions: %s\n", dt);
    }
    double ld = field(a, "median_us="), lp = field(b, "median_us=");
    double td = field(c, "mbit_s="), tp = field(d, "mbit_s=");
    printf("[%s] connection + request, median of %d: direct %.0f us, proxy %.0f us, added %.0f "
           "us (p90 direct %.0f, proxy %.0f)\n",
           label, conns, ld, lp, lp - ld, field(a, "p90_us="), field(b, "p90_us="));
    printf("[%s] throughput (%s bytes): direct %.0f Mbit/s, proxy %.0f Mbit/s (%.0f%%)\n", label,
           bytes, td, tp, td > 0 ? 100 * tp / td : 0);
    int64_t closed[64], net[64], link[64], rules[64];
    int k = rounds < 64 ? rounds : 64;
    for (int i = 0; i < k; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-c%d", i);
        if (create(id, false, &closed[i]) == 0)
            destroy(id);
        snprintf(id, sizeof id, "bench-n%d", i);
        if (create(id, true, &net[i]) == 0)
            destroy(id);
        egress_last_link_us(eg, &link[i], &rules[i]);
    }
    double mc = median_ms(closed, (size_t)k), mn = median_ms(net, (size_t)k);
    printf("[%s] create, median of %d: closed %.1f ms, networked %.1f ms (+%.1f ms: link %.1f "
           "ms, rules %.1f ms)\n",
           label, k, mc, mn, mn - mc, median_ms(link, (size_t)k), median_ms(rules, (size_t)k));
}

int main(int argc, char **argv)
{
    int density = 500, rounds = 20, conns = 200;
    const char *bytes = "1073741824";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n"))
            density = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-c"))
            conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-b"))
            bytes = argv[i + 1];
    }
    char tmpl[] = "/tmp/sbx-egress-bench-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir)
        return 1;
    sh("ip netns del " NETNS " 2>/dev/null; ip link del sbxbench0 2>/dev/null");
    if (sh("ip netns add " NETNS " && ip link add sbxbench0 type veth peer name eth0 netns " NETNS
           " && ip addr add 198.51.100.1/24 dev sbxbench0 && ip link set sbxbench0 up && "
           "ip -n " NETNS " addr add " SERVER "/24 dev eth0 && ip -n " NETNS " link set eth0 up && "
           "ip -n " NETNS " link set lo up && ip -n " NETNS
           " route add default via 198.51.100.1") != 0)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, http_server, (void *)(intptr_t)8000);
    pthread_create(&t, NULL, http_server, (void *)(intptr_t)9000);
    pthread_create(&t, NULL, dns_server, NULL);

    rootfs = xasprintf("%s/rootfs", dir);
    _cleanup_free_ char *bin = xasprintf("%s/bin", rootfs);
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sl > 0 ? sl : 0] = '\0';
    *strrchr(self, '/') = '\0';
    _cleanup_free_ char *mk = xasprintf("mkdir -p %s %s/tmp && cp /usr/bin/busybox %s/ && "
                                        "ln -s busybox %s/sh && cp %s/sbx-netbench %s/netbench",
                                        bin, rootfs, bin, bin, self, bin);
    if (sh(mk) != 0)
        return 1;
    sbx_error_t err = {0};
    _cleanup_free_ char *state = xasprintf("%s/state", dir);
    _cleanup_free_ char *egs = xasprintf("%s/egress", dir);
    rt_config_t rc = {.state_dir = state, .cgroup_root = "sbx-egress-bench"};
    rt = rt_open(&rc, &err);
    egress_config_t ec = {
        .pool = "10.236.0.0/21", .tag = "bench", .resolver = SERVER, .state_dir = egs};
    eg = rt ? egress_open(&ec, &err) : NULL;
    if (!eg) {
        fprintf(stderr, "egress_bench: %s\n", err.msg);
        return 1;
    }
    json_error_t jerr;
    policy = json_loads("{\"rules\":[{\"name\":\"direct\",\"action\":\"Allow\",\"cidrs\":[\"" SERVER
                        "/32\"],\"ports\":[9000]},{\"name\":\"proxied\",\"action\":"
                        "\"Allow\",\"fqdns\":[\"bench.test\"],\"ports\":[8000]}]}",
                        0, &jerr);
    int64_t us;
    if (create("bench-0", true, &us) < 0)
        return 1;
    if (getenv("EGRESS_BENCH_PAUSE")) /* to look at the rules while it runs */
        sleep((unsigned)atoi(getenv("EGRESS_BENCH_PAUSE")));
    measure("1 networked sandbox", rounds, conns, bytes);
    printf("creating %d more networked sandboxes...\n", density - 1);
    int64_t t0 = now_us();
    for (int i = 1; i < density; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-%d", i);
        if (create(id, true, &us) < 0)
            break;
    }
    printf("(%d created in %.1f s)\n", density - 1, (double)(now_us() - t0) / 1e6);
    char label[64];
    snprintf(label, sizeof label, "%d networked sandboxes", density);
    measure(label, rounds, conns, bytes);
    for (int i = 0; i < density; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-%d", i);
        destroy(id);
    }
    egress_close(eg);
    rt_close(rt);
    json_decref(policy);
    sh("ip link del sbxbench0 2>/dev/null; ip netns del " NETNS " 2>/dev/null");
    _cleanup_free_ char *rm = xasprintf("rm -rf %s", dir);
    sh(rm);
    return 0;
}
