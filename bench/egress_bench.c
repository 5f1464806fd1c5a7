/* egress_bench.c -- what egress costs, side by side in one run: per
 * connection latency and throughput from inside a sandbox to a server,
 * direct (a CIDR rule) against through the FQDN proxy; create latency of a
 * networked sandbox against a closed one; and all of it again with N
 * networked sandboxes on the host.
 *
 *   egress_bench [-n SANDBOXES] [-r ROUNDS] [-l LINK_ROUNDS] [-c CONNECTIONS]
 *                [-b BYTES]
 *   (EGRESS_BENCH_POOL6=off: links without IPv6)
 *
 * -c 0 leaves out the connection and throughput figures (create and link
 * only).  The create and link figures end in one table, 1 and N networked
 * sandboxes side by side.  The server (HTTP on 8000 and 9000, DNS) runs in
 * a network namespace the bench makes (a /24 of 198.18.0.0/15); nothing
 * leaves the machine.  Every name a run uses (directory, cgroup, namespace,
 * links, nft table, egress pool) is its own, so runs side by side do not
 * meet; what a run makes goes at its end, on an error or SIGINT/SIGTERM, and
 * what a killed run left is swept by the next one.  Needs root and the
 * static client sbx-netbench beside it.  */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>

#include "egress/egress.h"
#include "runtime/runtime.h"

/* The names of run `pid`.  */
typedef struct names {
    char dir[64], state[80], cgroot[40], netns[32], host_if[16], tag[8];
    char host[16], server[16]; /* the server namespace's link: host end, server */
    int pid_self;
} names_t;

static void names_of(int pid, names_t *n)
{
    snprintf(n->dir, sizeof n->dir, "/tmp/sbx-egress-bench.%d", pid);
    snprintf(n->state, sizeof n->state, "%s/state", n->dir);
    snprintf(n->cgroot, sizeof n->cgroot, "sbx-egress-bench-%d", pid);
    snprintf(n->netns, sizeof n->netns, "sbxbench-%d", pid);
    snprintf(n->host_if, sizeof n->host_if, "sbxb%d", pid);
    snprintf(n->tag, sizeof n->tag, "b%05x", (unsigned)pid & 0xfffff);
    snprintf(n->host, sizeof n->host, "198.%d.%d.1", 18 + ((pid >> 8) & 1), pid & 255);
    snprintf(n->server, sizeof n->server, "198.%d.%d.2", 18 + ((pid >> 8) & 1), pid & 255);
}

static names_t me;
#define SERVER me.server

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
    _cleanup_free_ char *path = xasprintf("/run/netns/%s", me.netns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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
static const char *rootfs;
static json_t *policy;

static int64_t last_apply_us; /* the egress part of the last networked create */

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
        int64_t t1 = now_us();
        int fd = rt_netns_open(rt, id, &err);
        int rc = egress_apply(eg, id, fd, policy, &err);
        close(fd);
        last_apply_us = now_us() - t1;
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

typedef struct figures {
    double closed, networked, apply, link, rules; /* create, medians */
    double link_alone, link_alone_p90;            /* relinking a running sandbox */
} figures_t;

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static double p90_ms(int64_t *us, size_t n)
{
    qsort(us, n, sizeof *us, cmp_i64);
    return n ? (double)us[n * 9 / 10] / 1000.0 : 0;
}

static void connections(const char *label, int conns, const char *bytes)
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
}

/* bench-0's link taken away and made again, `rounds` times: the link's own
 * cost without a sandbox being made or destroyed around it.  */
static int relink(int rounds, figures_t *f)
{
    int64_t us[256];
    int k = rounds < 256 ? rounds : 256, done = 0;
    sbx_error_t err = {0};
    for (int i = 0; i < k && !stopping; i++, done++) {
        int fd = rt_netns_open(rt, "bench-0", &err);
        int rc = fd >= 0 ? egress_apply(eg, "bench-0", -1, NULL, &err) : -1;
        if (rc == 0)
            rc = egress_apply(eg, "bench-0", fd, policy, &err);
        if (fd >= 0)
            close(fd);
        if (rc < 0) {
            fprintf(stderr, "relink: %s\n", err.msg);
            return -1;
        }
        int64_t rules;
        egress_last_link_us(eg, &us[i], &rules);
    }
    f->link_alone = median_ms(us, (size_t)done);
    f->link_alone_p90 = p90_ms(us, (size_t)done);
    return 0;
}

static int measure(const char *label, int rounds, int link_rounds, int conns, const char *bytes,
                   figures_t *f)
{
    if (conns > 0)
        connections(label, conns, bytes);
    int64_t closed[64], net[64], apply[64], link[64], rules[64];
    int k = rounds < 64 ? rounds : 64, done = 0;
    for (int i = 0; i < k && !stopping; i++, done++) {
        char id[32];
        snprintf(id, sizeof id, "bench-c%d", i);
        if (create(id, false, &closed[i]) < 0)
            return -1;
        destroy(id);
        snprintf(id, sizeof id, "bench-n%d", i);
        if (create(id, true, &net[i]) < 0)
            return -1;
        apply[i] = last_apply_us;
        destroy(id);
        egress_last_link_us(eg, &link[i], &rules[i]);
    }
    f->closed = median_ms(closed, (size_t)done);
    f->networked = median_ms(net, (size_t)done);
    f->apply = median_ms(apply, (size_t)done);
    f->link = median_ms(link, (size_t)done);
    f->rules = median_ms(rules, (size_t)done);
    printf("[%s] create, median of %d: closed %.1f ms, networked %.1f ms (egress %.2f ms: link "
           "%.2f ms, rules %.2f ms)\n",
           label, done, f->closed, f->networked, f->apply, f->link, f->rules);
    if (relink(link_rounds, f) < 0)
        return -1;
    printf("[%s] link alone (relinking a running sandbox), median of %d: %.2f ms (p90 %.2f)\n",
           label, link_rounds, f->link_alone, f->link_alone_p90);
    return 0;
}

static void table(int rounds, int link_rounds, int density, const figures_t *a, const figures_t *b)
{
    printf("\n| what | 1 networked sandbox | %d networked sandboxes |\n| --- | --- | --- |\n",
           density);
    printf("| create, closed (median of %d) | %.1f ms | %.1f ms |\n", rounds, a->closed, b->closed);
    printf("| create, networked | %.1f ms | %.1f ms |\n", a->networked, b->networked);
    printf("| networked minus closed (medians of different creates) | %+.1f ms | %+.1f ms |\n",
           a->networked - a->closed, b->networked - b->closed);
    printf("| egress in the networked create: netns fd + egress_apply (median) | %.2f ms | %.2f "
           "ms |\n",
           a->apply, b->apply);
    printf("| of which the link (median) | %.2f ms | %.2f ms |\n", a->link, b->link);
    printf("| of which the rules (median) | %.2f ms | %.2f ms |\n", a->rules, b->rules);
    printf("| link alone, median of %d (p90) | %.2f ms (%.2f) | %.2f ms (%.2f) |\n", link_rounds,
           a->link_alone, a->link_alone_p90, b->link_alone, b->link_alone_p90);
}

/* Whatever run `pid` made: the sandboxes of its runtime state, its links,
 * nft table, namespace and directory (kept, with a warning, while a
 * sandbox of it could not be destroyed).  */
static void sweep(int pid)
{
    names_t n;
    names_of(pid, &n);
    if (pid == me.pid_self && eg) {
        _cleanup_json_ json_t *ids = egress_ids(eg);
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) egress_release(eg, json_string_value(v), true);
        egress_close(eg);
        eg = NULL;
    }
    sbx_error_t err = {0};
    rt_runtime_t *r = pid == me.pid_self ? rt : NULL;
    struct stat st;
    if (!r && stat(n.state, &st) == 0) {
        rt_config_t rc = {.state_dir = n.state, .cgroup_root = n.cgroot};
        r = rt_open(&rc, &err);
    }
    size_t left = 0;
    if (r) {
        rt_info_t *list = NULL;
        size_t count = 0;
        if (rt_list(r, &list, &count, NULL) == 0)
            for (size_t i = 0; i < count; i++)
                left += rt_destroy(r, list[i].id, NULL) < 0;
        free(list);
        rt_close(r);
    }
    if (pid == me.pid_self)
        rt = NULL;
    _cleanup_free_ char *cmd =
        xasprintf("for l in $(ip -o link | sed -n 's/^[0-9]*: \\(sx%s-[0-9]*\\)[@:].*/\\1/p'); do "
                  "ip link del $l; done; nft delete table inet sandboxd_%s 2>/dev/null; "
                  "ip link del %s 2>/dev/null; ip netns del %s 2>/dev/null; %s",
                  n.tag, n.tag, n.host_if, n.netns, left ? "true" : "rm -rf");
    if (!left) {
        char *full = xasprintf("%s %s", cmd, n.dir);
        free(cmd);
        cmd = full;
    } else {
        fprintf(stderr, "egress_bench: %zu sandboxes of run %d remain; %s kept\n", left, pid,
                n.dir);
    }
    sh(cmd);
}

/* Runs whose process is gone but whose directory is still there.  */
static void sweep_dead_runs(void)
{
    DIR *d = opendir("/tmp");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int pid;
        char rest;
        if (sscanf(de->d_name, "sbx-egress-bench.%d%c", &pid, &rest) == 1 && pid > 0 &&
            kill(pid, 0) < 0 && errno == ESRCH)
            sweep(pid);
    }
    closedir(d);
}

static void at_exit(void)
{
    sweep(me.pid_self);
    json_decref(policy);
    policy = NULL;
}

int main(int argc, char **argv)
{
    int density = 500, rounds = 20, link_rounds = 50, conns = 200;
    const char *bytes = "1073741824";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-n"))
            density = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-r"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-l"))
            link_rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-c"))
            conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-b"))
            bytes = argv[i + 1];
    }
    if (density < 1 || rounds < 1 || link_rounds < 1) {
        fprintf(stderr, "egress_bench: -n, -r and -l take a number >= 1\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    names_of(getpid(), &me);
    me.pid_self = getpid();
    sweep_dead_runs();
    atexit(at_exit);
    if (mkdir(me.dir, 0700) < 0)
        return 1;
    _cleanup_free_ char *net =
        xasprintf("ip netns add %1$s && ip link add %2$s type veth peer name eth0 netns %1$s && "
                  "ip addr add %3$s/24 dev %2$s && ip link set %2$s up && "
                  "ip -n %1$s addr add %4$s/24 dev eth0 && ip -n %1$s link set eth0 up && "
                  "ip -n %1$s link set lo up && ip -n %1$s route add default via %3$s",
                  me.netns, me.host_if, me.host, me.server);
    if (sh(net) != 0)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, http_server, (void *)(intptr_t)8000);
    pthread_create(&t, NULL, http_server, (void *)(intptr_t)9000);
    pthread_create(&t, NULL, dns_server, NULL);

    rootfs = xasprintf("%s/rootfs", me.dir);
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sl > 0 ? sl : 0] = '\0';
    *strrchr(self, '/') = '\0';
    _cleanup_free_ char *mk =
        xasprintf("mkdir -p %s/bin %s/tmp && cp /usr/bin/busybox %s/bin/ && "
                  "ln -s busybox %s/bin/sh && cp %s/sbx-netbench %s/bin/netbench",
                  rootfs, rootfs, rootfs, rootfs, self, rootfs);
    if (sh(mk) != 0)
        return 1;
    sbx_error_t err = {0};
    rt_config_t rc = {.state_dir = me.state, .cgroup_root = me.cgroot};
    rt = rt_open(&rc, &err);
    /* a pool no other agent or run holds (claimed while claim is open) */
    _cleanup_free_ char *egs = xasprintf("%s/egress", me.dir);
    char pool[32];
    int claim = -1;
    if (rt && egress_pool_pick(me.tag, egs, pool, sizeof pool, &claim, &err) < 0)
        rt_close(rt), rt = NULL;
    /* EGRESS_BENCH_POOL6=off: links without IPv6, to compare */
    egress_config_t ec = {.pool = pool,
                          .tag = me.tag,
                          .resolver = SERVER,
                          .state_dir = egs,
                          .pool6 = getenv("EGRESS_BENCH_POOL6")};
    eg = rt ? egress_open(&ec, &err) : NULL;
    if (!eg) {
        fprintf(stderr, "egress_bench: %s\n", err.msg);
        return 1;
    }
    json_error_t jerr;
    _cleanup_free_ char *ptext =
        xasprintf("{\"rules\":[{\"name\":\"direct\",\"action\":\"Allow\",\"cidrs\":[\"%s/32\"],"
                  "\"ports\":[9000]},{\"name\":\"proxied\",\"action\":\"Allow\",\"fqdns\":"
                  "[\"bench.test\"],\"ports\":[8000]}]}",
                  SERVER);
    policy = json_loads(ptext, 0, &jerr);
    int64_t us;
    if (create("bench-0", true, &us) < 0)
        return 1;
    if (getenv("EGRESS_BENCH_PAUSE")) /* to look at the rules while it runs */
        sleep((unsigned)atoi(getenv("EGRESS_BENCH_PAUSE")));
    figures_t one = {0}, many = {0};
    if (measure("1 networked sandbox", rounds, link_rounds, conns, bytes, &one) < 0)
        return 1;
    printf("creating %d more networked sandboxes...\n", density - 1);
    int64_t t0 = now_us();
    for (int i = 1; i < density && !stopping; i++) {
        char id[32];
        snprintf(id, sizeof id, "bench-%d", i);
        if (create(id, true, &us) < 0)
            return 1;
    }
    printf("(%d created in %.1f s)\n", density - 1, (double)(now_us() - t0) / 1e6);
    char label[64];
    snprintf(label, sizeof label, "%d networked sandboxes", density);
    if (stopping || measure(label, rounds, link_rounds, conns, bytes, &many) < 0 || stopping)
        return 1;
    table(rounds, link_rounds, density, &one, &many);
    return 0;
}
