/* test_scheduler_placement.c -- admission arithmetic: hosts in a scratch
 * database with the capacity their health would report, and placements
 * counted in memory as the workers count them (no agent involved).  */
#include <pthread.h>
#include <string.h>

#include "scheduler/internal.h"
#include "tests/testutil.h"

static char *g_dir;
static st_db_t *g_db;
static sched_t *g_s;

static void open_sched(const sched_config_t *cfg)
{
    sbx_error_t err = {0};
    sched_free(g_s);
    g_s = sched_new(cfg, g_db, &err);
    ck_assert_ptr_nonnull(g_s);
}

static void setup(void)
{
    g_dir = tu_tmpdir("sbx-placement");
    _cleanup_free_ char *path = xasprintf("%s/db", g_dir);
    sbx_error_t err = {0};
    g_db = st_open(path, NULL, &err);
    ck_assert_msg(g_db != NULL, "%s", err.msg);
    sched_config_t cfg = {0};
    open_sched(&cfg);
}

static void teardown(void)
{
    sched_free(g_s);
    g_s = NULL;
    st_close(g_db);
    tu_rmdir(g_dir);
    free(g_dir);
}

/* A host as its health check would have stored it.  */
static void add_host(const char *name, const char *env, const char *state, double cpu, int memory,
                     int pids, int slots)
{
    _cleanup_free_ char *url = xasprintf("https://%s.example:9443", name);
    st_host_t h = {.name = (char *)name,
                   .url = url,
                   .environment = (char *)env,
                   .state = (char *)state,
                   .last_seen_ms = sbx_now_ms(),
                   .info = json_pack("{s:[s],s:{s:f,s:i,s:i,s:i,s:i}}", "drivers", "process",
                                     "capacity", "cpu", cpu, "memoryMiB", memory, "diskMiB", memory,
                                     "pids", pids, "sandboxes", slots)};
    sbx_error_t err = {0};
    ck_assert_int_eq(st_host_put(g_db, &h, &err), 0);
    json_decref(h.info);
}

static sbx_need_t need(double cpu, double memory, double disk)
{
    return (sbx_need_t){.cpu = cpu, .memory_mib = memory, .disk_mib = disk, .pids = SANDBOX_PIDS};
}

/* Why the last place() was refused.  */
static _Thread_local sbx_failure_t g_why;

/* Place as a worker does; returns the host (owned) or NULL with err (and
 * g_why).  */
static char *place(const char *env, const char *driver, sbx_need_t n, sbx_error_t *err)
{
    char *host = NULL;
    memset(err, 0, sizeof(*err));
    g_why = SBX_FAIL_NONE;
    pthread_mutex_lock(&g_s->place_lock);
    if (sched_place_choose(g_s, env, driver, &n, &host, &g_why, err) == 0)
        sched_place_add(g_s, host, &n, +1);
    pthread_mutex_unlock(&g_s->place_lock);
    return host;
}

START_TEST(memory_is_admitted_on_the_sum)
{
    add_host("h1", "default", "Ready", 8, 1000, 100000, 100);
    sbx_error_t err;
    _cleanup_free_ char *first = place("default", "process", need(1, 600, 64), &err);
    ck_assert_str_eq(first, "h1");
    /* Each fits alone; together they do not.  */
    char *second = place("default", "process", need(1, 600, 64), &err);
    ck_assert_ptr_null(second);
    ck_assert_int_eq(err.code, SBX_ERR_UNAVAILABLE);
    ck_assert_int_eq(g_why, SBX_FAIL_NO_ROOM);
    ck_assert_msg(strstr(err.msg, "600 MiB of memory") && strstr(err.msg, "largest free: 400 MiB"),
                  "%s", err.msg);
    ck_assert_ptr_nonnull(strstr(err.msg, "environment 'default'"));
    /* The first goes: room again.  */
    sbx_need_t n = need(1, 600, 64);
    sched_place_add(g_s, "h1", &n, -1);
    second = place("default", "process", need(1, 600, 64), &err);
    ck_assert_str_eq(second, "h1");
    free(second);
}
END_TEST

START_TEST(pids_are_budgeted_per_host)
{
    /* Room for two sandboxes' pids limits, not three.  */
    add_host("h1", "default", "Ready", 64, 65536, 2 * SANDBOX_PIDS + 500, 1000);
    sbx_error_t err;
    for (int i = 0; i < 2; i++) {
        char *h = place("default", "process", need(0.1, 64, 64), &err);
        ck_assert_msg(h != NULL, "%d: %s", i, err.msg);
        free(h);
    }
    ck_assert_ptr_null(place("default", "process", need(0.1, 64, 64), &err));
    ck_assert_int_eq(g_why, SBX_FAIL_NO_ROOM);
    ck_assert_msg(strstr(err.msg, "1024 pids") && strstr(err.msg, "largest free: 500 pids"), "%s",
                  err.msg);
}
END_TEST

START_TEST(cpu_overcommit_ratio)
{
    add_host("h1", "default", "Ready", 2, 65536, 1000000, 1000);
    sbx_error_t err;
    /* default ratio 4: eight sandboxes of a core on two cores */
    for (int i = 0; i < 8; i++) {
        char *h = place("default", "process", need(1, 64, 64), &err);
        ck_assert_msg(h != NULL, "%d: %s", i, err.msg);
        free(h);
    }
    ck_assert_ptr_null(place("default", "process", need(1, 64, 64), &err));
    ck_assert_msg(strstr(err.msg, "1 cpu free"), "%s", err.msg);
    /* an operator's ratio of 1: two */
    sched_config_t cfg = {.overcommit_cpu = 1.0};
    open_sched(&cfg);
    for (int i = 0; i < 2; i++)
        free(place("default", "process", need(1, 64, 64), &err));
    ck_assert_ptr_null(place("default", "process", need(1, 64, 64), &err));
    ck_assert_int_eq(g_why, SBX_FAIL_NO_ROOM);
}
END_TEST

START_TEST(memory_overcommit_ratio)
{
    add_host("h1", "default", "Ready", 64, 1000, 1000000, 1000);
    sched_config_t cfg = {.overcommit_memory = 2.0};
    open_sched(&cfg);
    sbx_error_t err;
    for (int i = 0; i < 3; i++) {
        char *h = place("default", "process", need(0.1, 600, 64), &err);
        ck_assert_msg(h != NULL, "%d: %s", i, err.msg);
        free(h);
    }
    ck_assert_ptr_null(place("default", "process", need(0.1, 600, 64), &err));
}
END_TEST

START_TEST(isolation_no_host_offers_fails_at_once)
{
    add_host("h1", "default", "Ready", 8, 8192, 100000, 100);
    add_host("h2", "default", "Down", 8, 8192, 100000, 100);
    sbx_error_t err;
    ck_assert_ptr_null(place("default", "gvisor", need(1, 256, 1024), &err));
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(g_why, SBX_FAIL_NO_DRIVER);
    ck_assert_msg(strstr(err.msg, "'gvisor'") && strstr(err.msg, "they offer: process"), "%s",
                  err.msg);
    /* A host that says why it lacks the driver: the message names it.  */
    st_host_t why = {.name = "h4",
                     .url = "https://h4.example:9443",
                     .environment = "default",
                     .state = "Ready",
                     .last_seen_ms = sbx_now_ms(),
                     .info = json_pack("{s:[s],s:{s:s}}", "drivers", "process",
                                       "unavailableDrivers", "gvisor", "runsc not found")};
    ck_assert_int_eq(st_host_put(g_db, &why, NULL), 0);
    json_decref(why.info);
    ck_assert_ptr_null(place("default", "gvisor", need(1, 256, 1024), &err));
    ck_assert_int_eq(g_why, SBX_FAIL_NO_DRIVER);
    ck_assert_msg(strstr(err.msg, "host 'h4': runsc not found"), "%s", err.msg);
    /* A host that has not reported its drivers yet might offer it: wait.  */
    st_host_t h = {
        .name = "h3", .url = "https://h3.example:9443", .environment = "default", .state = "Down"};
    ck_assert_int_eq(st_host_put(g_db, &h, NULL), 0);
    ck_assert_ptr_null(place("default", "gvisor", need(1, 256, 1024), &err));
    ck_assert_int_eq(err.code, SBX_ERR_UNAVAILABLE);
    ck_assert_int_eq(g_why, SBX_FAIL_NO_HOST);
}
END_TEST

START_TEST(too_large_for_any_host_fails_at_once)
{
    add_host("h1", "default", "Ready", 8, 24000, 100000, 100);
    add_host("h2", "default", "Ready", 8, 16000, 100000, 100);
    sbx_error_t err;
    /* memory plus its tmpfs layer above the RAM of every host */
    ck_assert_ptr_null(place("default", "process", need(1, 32, 65536), &err));
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(g_why, SBX_FAIL_TOO_LARGE);
    ck_assert_msg(strstr(err.msg, "memoryMiB plus diskMiB") && strstr(err.msg, "24000"), "%s",
                  err.msg);
    ck_assert_ptr_null(place("default", "process", need(1, 20000, 8000), &err));
    ck_assert_int_eq(g_why, SBX_FAIL_TOO_LARGE);
    /* more cores than any host may promise at all (8 cores, ratio 4) */
    ck_assert_ptr_null(place("default", "process", need(40, 256, 64), &err));
    ck_assert_int_eq(g_why, SBX_FAIL_TOO_LARGE);
    ck_assert_msg(strstr(err.msg, "can ever hold 40 cpu (largest: 32 cpu)"), "%s", err.msg);
    /* fits the bigger host only */
    _cleanup_free_ char *h = place("default", "process", need(1, 20000, 1000), &err);
    ck_assert_str_eq(h, "h1");
}
END_TEST

START_TEST(no_ready_host_waits)
{
    sbx_error_t err;
    ck_assert_ptr_null(place("nowhere", "process", need(1, 256, 1024), &err));
    ck_assert_int_eq(err.code, SBX_ERR_UNAVAILABLE);
    ck_assert_int_eq(g_why, SBX_FAIL_NO_HOST);
    ck_assert_ptr_nonnull(strstr(err.msg, "no host is registered in environment 'nowhere'"));
    add_host("h1", "pool", "Draining", 8, 8192, 100000, 100);
    ck_assert_ptr_null(place("pool", "process", need(1, 256, 1024), &err));
    ck_assert_int_eq(g_why, SBX_FAIL_NO_HOST);
    ck_assert_ptr_nonnull(strstr(err.msg, "no Ready host"));
}
END_TEST

START_TEST(placed_rows_count_after_a_rebuild)
{
    add_host("h1", "default", "Ready", 8, 1000, 100000, 100);
    /* A sandbox row placed on h1, as the worker records it.  */
    const char *id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/"
                     "sandboxGroups/g/sandboxes/a";
    st_resource_t r = {.id = (char *)id,
                       .type = SANDBOX_TYPE,
                       .name = "a",
                       .subscription = "s",
                       .resource_group = "rg",
                       .host_id = "h1",
                       .runtime_id = "rid-a",
                       .need = need(1, 700, 64),
                       .body = json_pack("{s:{}}", "properties")};
    st_tx_t *tx = st_begin(g_db, NULL);
    ck_assert_int_eq(st_tx_resource_put(tx, &r, NULL), 0);
    ck_assert_int_eq(st_commit(tx, NULL), 0);
    json_decref(r.body);
    sched_place_rebuild(g_s);
    sbx_error_t err;
    ck_assert_ptr_null(place("default", "process", need(1, 400, 64), &err));
    ck_assert_msg(strstr(err.msg, "largest free: 300 MiB"), "%s", err.msg);
}
END_TEST

/* Placements from many threads never promise more than the host has.  */
typedef struct racer {
    int placed;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    for (int i = 0; i < 10; i++) {
        sbx_error_t err;
        char *h = place("default", "process", need(0.1, 100, 16), &err);
        if (h)
            r->placed++;
        free(h);
    }
    return NULL;
}

START_TEST(concurrent_placements_stay_within_capacity)
{
    add_host("h1", "default", "Ready", 64, 2000, 1000000, 1000);
    pthread_t t[8];
    racer_t r[8] = {0};
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, race, &r[i]);
    int total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        total += r[i].placed;
    }
    ck_assert_int_eq(total, 20);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scheduler_placement");
    TCase *tc = tcase_create("admission");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, memory_is_admitted_on_the_sum);
    tcase_add_test(tc, pids_are_budgeted_per_host);
    tcase_add_test(tc, cpu_overcommit_ratio);
    tcase_add_test(tc, memory_overcommit_ratio);
    tcase_add_test(tc, isolation_no_host_offers_fails_at_once);
    tcase_add_test(tc, too_large_for_any_host_fails_at_once);
    tcase_add_test(tc, no_ready_host_waits);
    tcase_add_test(tc, placed_rows_count_after_a_rebuild);
    tcase_add_test(tc, concurrent_placements_stay_within_capacity);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
