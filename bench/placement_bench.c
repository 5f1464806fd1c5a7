/* placement_bench.c -- how long the scheduler takes to place 1,000
 * sandboxes over 50 hosts: each placement is a host choice against the
 * registry in SQLite plus the in-memory loads, as a create does it (agent
 * calls excluded).  Prints the total and the per-placement median.  */
#include <stdio.h>
#include <string.h>

#include "scheduler/internal.h"

#define HOSTS 50
#define SANDBOXES 1000

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    char dir[] = "/tmp/sbx-place-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char *path = xasprintf("%s/db", dir);
    sbx_error_t err = {0};
    st_db_t *db = st_open(path, NULL, &err);
    if (!db) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < HOSTS; i++) {
        char name[16], url[64];
        snprintf(name, sizeof(name), "h%02d", i);
        snprintf(url, sizeof(url), "https://10.0.0.%d:9443", i + 1);
        st_host_t h = {.name = name,
                       .url = url,
                       .environment = "default",
                       .state = "Ready",
                       .info = json_pack("{s:[s],s:{s:i,s:i,s:i,s:i}}", "drivers", "process",
                                         "capacity", "cpu", 16, "memoryMiB", 65536, "pids", 1 << 20,
                                         "sandboxes", 500),
                       .last_seen_ms = sbx_now_ms()};
        st_host_put(db, &h, NULL);
        json_decref(h.info);
    }
    sched_config_t cfg = {0};
    sched_t *s = sched_new(&cfg, db, &err);
    double *t = xcalloc(SANDBOXES, sizeof(double));
    int per_host[HOSTS] = {0};
    int64_t start = sbx_monotonic_us();
    for (int i = 0; i < SANDBOXES; i++) {
        int64_t t0 = sbx_monotonic_us();
        char *host = NULL;
        sbx_failure_t why = SBX_FAIL_NONE;
        sbx_need_t need = {.cpu = 0.5, .memory_mib = 256, .disk_mib = 256, .pids = 1024};
        if (sched_place_choose(s, "default", "process", &need, &host, &why, &err) < 0) {
            fprintf(stderr, "placement %d: %s\n", i, err.msg);
            return 1;
        }
        sched_place_add(s, host, &need, +1);
        per_host[atoi(host + 1)]++;
        free(host);
        t[i] = (double)(sbx_monotonic_us() - t0) / 1000.0;
    }
    double total = (double)(sbx_monotonic_us() - start) / 1000.0;
    qsort(t, SANDBOXES, sizeof(double), cmp);
    int lo = SANDBOXES, hi = 0;
    for (int i = 0; i < HOSTS; i++) {
        lo = per_host[i] < lo ? per_host[i] : lo;
        hi = per_host[i] > hi ? per_host[i] : hi;
    }
    printf("placed %d sandboxes over %d hosts in %.1f ms (median %.3f ms, p99 %.3f ms each);"
           " per host %d..%d\n",
           SANDBOXES, HOSTS, total, t[SANDBOXES / 2], t[SANDBOXES * 99 / 100], lo, hi);
    free(t);
    sched_free(s);
    st_close(db);
    char *rm = xasprintf("rm -rf %s", dir);
    if (system(rm) != 0)
        return 1;
    free(rm);
    free(path);
    return 0;
}
