/* runtime_bench.c -- measures the isolation drivers on this host: median
 * create-to-first-exec latency with an unpacked rootfs, median exec round
 * trip, memory per idle sandbox with N of them running, and for drivers
 * that snapshot (gvisor, microvm) suspend/resume time and snapshot size;
 * each figure also as a ratio to the first driver's, measured in the same
 * run.  microvm runs at most 3 rounds and 3 idle VMs (each boots a kernel
 * and holds its RAM); --microvm-emulation allows it without KVM.  A driver
 * named with "+net" (gvisor+net) gets an egress link into each sandbox's
 * namespace before it boots, as the agent gives one (addresses from
 * --egress-pool, default 10.239.0.0/20; no policy, so all is denied).
 *
 *   runtime_bench [-n DENSITY] [-r ROUNDS] [-e EXECS] [--rootfs DIR]
 *                 [--drivers process,gvisor,gvisor+net,microvm] [--microvm-emulation]
 *                 [--egress-pool CIDR]
 *
 * Without --rootfs it builds a tiny one from the host's static busybox.
 * Needs root (namespaces, cgroups, mounts).  */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "egress/egress.h"
#include "runtime/runtime.h"

static const char *g_driver = "process", *g_label = "process";
static char *g_state;
static egress_t *g_eg;

static int64_t g_hook_us[1024];
static size_t g_hook_n;

/* The agent's hook, timed: what the link adds to a boot.  */
static int net_hook(void *arg, const char *id, int netns_fd, sbx_error_t *err)
{
    int64_t t0 = sbx_monotonic_us();
    int rc = egress_boot_link(arg, id, netns_fd, err);
    if (g_hook_n < ARRAY_SIZE(g_hook_us))
        g_hook_us[g_hook_n++] = sbx_monotonic_us() - t0;
    return rc;
}

/* "gvisor+net": the driver gvisor, with egress links (egress opened once).  */
static const char *net_driver(rt_runtime_t *rt, char *name, const char *pool, const char *dir)
{
    char *plus = strstr(name, "+net");
    rt_set_net_hook(rt, NULL, NULL);
    if (!plus)
        return name;
    *plus = '\0';
    if (!g_eg) {
        _cleanup_free_ char *state = xasprintf("%s/egress", dir);
        egress_config_t ec = {.pool = pool, .tag = "rtbnch", .state_dir = state};
        sbx_error_t err = {0};
        if (!(g_eg = egress_open(&ec, &err))) {
            fprintf(stderr, "runtime_bench: egress: %s\n", err.msg);
            return NULL;
        }
    }
    rt_set_net_hook(rt, net_hook, g_eg);
    return name;
}

/* One driver's figures, for the ratios at the end.  */
typedef struct figures {
    double first_exec_ms, exec_ms, kib_per_sandbox;
} figures_t;

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

static uint64_t mem_available_kib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    uint64_t v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lu kB", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static int build_rootfs(const char *dir)
{
    sbx_error_t err = {0};
    _cleanup_free_ char *bin = xasprintf("%s/bin", dir);
    _cleanup_free_ char *tmp = xasprintf("%s/tmp", dir);
    if (sbx_mkdir_p(bin, 0755, &err) < 0 || sbx_mkdir_p(tmp, 01777, &err) < 0)
        return -1;
    _cleanup_free_ char *data = NULL;
    size_t len;
    _cleanup_free_ char *bb = xasprintf("%s/busybox", bin);
    if (sbx_read_file("/usr/bin/busybox", &data, &len, &err) < 0 ||
        sbx_write_file_atomic(bb, data, len, 0755, &err) < 0 || chmod(bb, 0755) < 0) {
        fprintf(stderr, "runtime_bench: needs /usr/bin/busybox (busybox-static): %s\n", err.msg);
        return -1;
    }
    const char *applets[] = {"sh", "true", "sleep", "echo"};
    for (size_t i = 0; i < ARRAY_SIZE(applets); i++) {
        _cleanup_free_ char *l = xasprintf("%s/%s", bin, applets[i]);
        if (symlink("busybox", l) < 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

static int exec_true(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    char *argv[] = {"true", NULL};
    rt_exec_request_t req = {.argv = argv};
    rt_exec_result_t res;
    if (rt_exec(rt, id, &req, &res, err) < 0)
        return -1;
    int code = res.exit_code;
    rt_exec_result_done(&res);
    return code == 0 ? 0 : sbx_error_set(err, SBX_ERR_INTERNAL, "true exited %d", code);
}

/* 1. create-to-first-exec.  */
static int bench_first_exec(rt_runtime_t *rt, const char *rootfs, int rounds, int64_t *lat,
                            figures_t *f, sbx_error_t *err)
{
    g_hook_n = 0;
    for (int i = 0; i < rounds; i++) {
        char id[32];
        snprintf(id, sizeof id, "lat-%d", i);
        rt_spec_t spec = {.id = id, .rootfs = rootfs, .driver = g_driver};
        int64_t t0 = sbx_monotonic_us();
        int r = rt_create(rt, &spec, NULL, err);
        if (r == 0)
            r = exec_true(rt, id, err);
        lat[i] = sbx_monotonic_us() - t0;
        rt_destroy(rt, id, NULL);
        if (r < 0)
            return -1;
    }
    f->first_exec_ms = median_ms(lat, (size_t)rounds);
    printf("%s: create-to-first-exec median: %.2f ms (%d rounds)\n", g_label, f->first_exec_ms,
           rounds);
    if (g_hook_n)
        printf("%s: of which the egress link (veth, addresses, rules) median: %.2f ms\n", g_label,
               median_ms(g_hook_us, g_hook_n));
    g_hook_n = 0;
    return 0;
}

/* Suspend and resume of an idle sandbox, with the snapshot's size where
 * the driver writes one.  */
static int bench_suspend(rt_runtime_t *rt, sbx_error_t *err)
{
    int64_t t0 = sbx_monotonic_us();
    if (rt_suspend(rt, "rtt", err) < 0)
        return -1;
    int64_t t1 = sbx_monotonic_us();
    /* gvisor's checkpoint, microvm's memory snapshot.  */
    _cleanup_free_ char *img = xasprintf("%s/sandboxes/rtt/checkpoint/checkpoint.img", g_state);
    _cleanup_free_ char *mem = xasprintf("%s/sandboxes/rtt/snapshot.mem", g_state);
    struct stat st;
    long long kib = stat(img, &st) == 0 || stat(mem, &st) == 0 ? (long long)st.st_size / 1024 : -1;
    if (rt_resume(rt, "rtt", err) < 0 || exec_true(rt, "rtt", err) < 0)
        return -1;
    int64_t t2 = sbx_monotonic_us();
    if (kib >= 0)
        printf("%s: suspend %.1f ms (snapshot %lld KiB), resume to first exec %.1f ms\n", g_label,
               (double)(t1 - t0) / 1000.0, kib, (double)(t2 - t1) / 1000.0);
    else
        printf("%s: suspend %.1f ms (freezer), resume to first exec %.1f ms\n", g_label,
               (double)(t1 - t0) / 1000.0, (double)(t2 - t1) / 1000.0);
    return 0;
}

/* 2. exec round trip.  */
static int bench_round_trip(rt_runtime_t *rt, const char *rootfs, int execs, int64_t *lat,
                            figures_t *f, sbx_error_t *err)
{
    rt_spec_t spec = {.id = "rtt", .rootfs = rootfs, .driver = g_driver};
    if (rt_create(rt, &spec, NULL, err) < 0)
        return -1;
    int r = 0;
    for (int i = 0; i < execs && r == 0; i++) {
        int64_t t0 = sbx_monotonic_us();
        r = exec_true(rt, "rtt", err);
        lat[i] = sbx_monotonic_us() - t0;
    }
    if (r == 0) {
        f->exec_ms = median_ms(lat, (size_t)execs);
        printf("%s: exec round trip median: %.2f ms (%d execs)\n", g_label, f->exec_ms, execs);
        r = bench_suspend(rt, err);
    }
    rt_destroy(rt, "rtt", NULL);
    return r;
}

/* 3. density: N idle sandboxes; returns 0 when all N were made.  */
static int bench_density(rt_runtime_t *rt, const char *rootfs, int density, figures_t *f)
{
    sbx_error_t err = {0};
    uint64_t before = mem_available_kib();
    int64_t t0 = sbx_monotonic_ms();
    int made = 0;
    for (; made < density; made++) {
        char id[32];
        snprintf(id, sizeof id, "idle-%d", made);
        rt_spec_t s = {.id = id, .rootfs = rootfs, .driver = g_driver};
        if (rt_create(rt, &s, NULL, &err) < 0) {
            fprintf(stderr, "runtime_bench: sandbox %d: %s\n", made, err.msg);
            break;
        }
    }
    int64_t took = sbx_monotonic_ms() - t0;
    uint64_t after = mem_available_kib();
    rt_info_t *infos;
    size_t n;
    uint64_t charged = 0;
    if (rt_list(rt, &infos, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++)
            charged += infos[i].memory_used_bytes;
        free(infos);
    }
    if (made > 0) {
        /* The ratio uses the charged figure: MemAvailable is too noisy on
         * a shared machine to compare drivers.  */
        f->kib_per_sandbox = (double)charged / 1024.0 / made;
        printf("%s: density: %d idle sandboxes in %.1f s; host memory per sandbox: %.0f KiB "
               "(MemAvailable drop), cgroup-charged: %.0f KiB\n",
               g_label, made, (double)took / 1000.0, ((double)before - (double)after) / made,
               (double)charged / 1024.0 / made);
    }
    t0 = sbx_monotonic_ms();
    for (int i = 0; i < made; i++) {
        char id[32];
        snprintf(id, sizeof id, "idle-%d", i);
        rt_destroy(rt, id, NULL);
    }
    printf("%s: destroyed %d sandboxes in %.1f s\n", g_label, made,
           (double)(sbx_monotonic_ms() - t0) / 1000.0);
    return made == density ? 0 : 1;
}

#define MICROVM_MAX 3

int main(int argc, char **argv)
{
    int density = 500, rounds = 30, execs = 200;
    const char *rootfs = NULL, *driver_list = "process", *pool = "10.239.0.0/20";
    bool emulation = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            density = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-e") && i + 1 < argc)
            execs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rootfs") && i + 1 < argc)
            rootfs = argv[++i];
        else if (!strcmp(argv[i], "--drivers") && i + 1 < argc)
            driver_list = argv[++i];
        else if (!strcmp(argv[i], "--microvm-emulation"))
            emulation = true;
        else if (!strcmp(argv[i], "--egress-pool") && i + 1 < argc)
            pool = argv[++i];
        else {
            fprintf(stderr,
                    "usage: runtime_bench [-n DENSITY] [-r ROUNDS] [-e EXECS] [--rootfs DIR] "
                    "[--drivers process,gvisor,gvisor+net,microvm] [--microvm-emulation] "
                    "[--egress-pool CIDR]\n");
            return 2;
        }
    }
    char tmpl[] = "/tmp/sbx-bench-XXXXXX";
    if (!mkdtemp(tmpl))
        return 1;
    _cleanup_free_ char *state = xasprintf("%s/state", tmpl);
    g_state = state;
    _cleanup_free_ char *image = xasprintf("%s/image", tmpl);
    if (!rootfs) {
        if (build_rootfs(image) < 0)
            return 1;
        rootfs = image;
    }
    _cleanup_free_ char *cgroot = xasprintf("sbxbench-%d", (int)getpid());
    rt_config_t cfg = {
        .state_dir = state, .cgroup_root = cgroot, .allow_microvm_emulation = emulation};
    sbx_error_t err = {0};
    rt_runtime_t *rt = rt_open(&cfg, &err);
    if (!rt) {
        fprintf(stderr, "runtime_bench: %s\n", err.msg);
        return 1;
    }
    int64_t *lat = xcalloc((size_t)(rounds > execs ? rounds : execs) + 1, sizeof *lat);
    int rc = 0;
    _cleanup_free_ char *list = xstrdup(driver_list);
    figures_t first = {0};
    char first_name[32] = "";
    char *save = NULL;
    for (char *d = strtok_r(list, ",", &save); d; d = strtok_r(NULL, ",", &save)) {
        char label[32];
        snprintf(label, sizeof label, "%s", d);
        if (!(g_driver = net_driver(rt, d, pool, tmpl))) {
            rc = 1;
            continue;
        }
        g_label = label;
        figures_t f = {0};
        /* A microVM boots a kernel (seconds under emulation) and holds its
         * RAM: a few of them say enough.  */
        bool vm = strcmp(d, "microvm") == 0;
        int d_rounds = vm && rounds > MICROVM_MAX ? MICROVM_MAX : rounds;
        int d_density = vm && density > MICROVM_MAX ? MICROVM_MAX : density;
        if (bench_first_exec(rt, rootfs, d_rounds, lat, &f, &err) < 0 ||
            bench_round_trip(rt, rootfs, execs, lat, &f, &err) < 0) {
            fprintf(stderr, "runtime_bench: %s: %s\n", d, err.msg);
            rc = 1;
            continue;
        }
        rc |= bench_density(rt, rootfs, d_density, &f);
        if (!first.first_exec_ms) {
            first = f;
            snprintf(first_name, sizeof first_name, "%s", label);
        } else
            printf("%s vs %s: create-to-first-exec x%.1f, exec x%.1f, cgroup-charged memory "
                   "per idle sandbox x%.1f\n",
                   label, first_name, f.first_exec_ms / first.first_exec_ms,
                   f.exec_ms / first.exec_ms,
                   first.kib_per_sandbox > 0 ? f.kib_per_sandbox / first.kib_per_sandbox : 0);
    }
    free(lat);
    if (g_eg) {
        _cleanup_json_ json_t *ids = egress_ids(g_eg);
        size_t i;
        json_t *v;
        json_array_foreach(ids, i, v) egress_release(g_eg, json_string_value(v), true);
        rt_set_net_hook(rt, NULL, NULL);
        egress_close(g_eg);
    }
    rt_close(rt);
    const char *ctrls[] = {"cpu", "cpuacct", "memory", "pids", "freezer", "unified", ""};
    for (size_t i = 0; i < ARRAY_SIZE(ctrls); i++) {
        _cleanup_free_ char *p =
            xasprintf("/sys/fs/cgroup/%s%s%s", ctrls[i], *ctrls[i] ? "/" : "", cgroot);
        (void)rmdir(p);
    }
    sbx_rm_rf(tmpl, NULL);
    return rc;
}
