/* test_scheduler_logic.c -- the scheduler's decisions without an agent
 * process or a thread: a fake agent behind sched_agent_ops_t and a clock
 * the test moves, with placement, backoff, reconcile, warm pools and host
 * failure driven one step at a time (sched_work_once,
 * sched_reconcile_once).  */
#include <string.h>

#include "api/api.h"
#include "scheduler/internal.h"
#include "tests/testutil.h"

#define SUBSCRIPTION "00000000-0000-0000-0000-00000000aaaa"
#define GROUP_ID                                                                                   \
    "/subscriptions/" SUBSCRIPTION "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g"

/* ---- a fake agent per host URL, in this process ---- */

typedef struct fake_host {
    const char *url;
    bool down;       /* answers nothing */
    int fail_puts;   /* this many creates answer 500 */
    json_t *running; /* runtime id -> {"id", "state"} */
    int puts, deletes;
} fake_host_t;

static fake_host_t g_hosts[2];
static int64_t g_clock_offset;

static fake_host_t *host_of(const char *url)
{
    for (size_t i = 0; i < ARRAY_SIZE(g_hosts); i++)
        if (g_hosts[i].url && strcmp(g_hosts[i].url, url) == 0)
            return &g_hosts[i];
    return NULL;
}

static void reply(sched_reply_t *out, long status, json_t *body)
{
    out->status = status;
    if (body) {
        out->body = json_dumps(body, JSON_COMPACT);
        out->body_len = strlen(out->body);
        out->content_type = xstrdup("application/json");
        json_decref(body);
    }
}

static void sandbox_call(fake_host_t *h, const char *method, const char *rid, sched_reply_t *out)
{
    if (strcmp(method, "PUT") == 0) {
        h->puts++;
        if (h->fail_puts > 0) {
            h->fail_puts--;
            reply(
                out, 500,
                json_pack("{s:{s:s,s:s}}", "error", "code", "Internal", "message", "disk on fire"));
            return;
        }
        json_t *sb = json_pack("{s:s,s:s}", "id", rid, "state", "Running");
        json_object_set(h->running, rid, sb);
        reply(out, 201, sb);
    } else if (strcmp(method, "DELETE") == 0) {
        h->deletes++;
        json_object_del(h->running, rid);
        reply(out, 204, NULL);
    } else {
        reply(out, 404, NULL);
    }
}

static int fake_call(void *ctx, const char *base_url, const char *method, const char *path,
                     const char *query, const char *content_type, const char *body, size_t body_len,
                     int timeout_ms, sched_reply_t *out)
{
    fake_host_t *h = host_of(base_url);
    if (!h || h->down) {
        snprintf(out->error, sizeof(out->error), "connection refused");
        return -1;
    }
    if (strcmp(path, "/v1/health") == 0) {
        reply(out, 200,
              json_pack("{s:s,s:[s],s:{s:i,s:i,s:i,s:i,s:i}}", "status", "ok", "drivers", "process",
                        "capacity", "cpu", 4, "memoryMiB", 4096, "diskMiB", 4096, "pids", 24576,
                        "sandboxes", 100));
    } else if (strcmp(path, "/v1/sandboxes") == 0) {
        json_t *value = json_array();
        const char *k;
        json_t *v;
        json_object_foreach(h->running, k, v) json_array_append(value, v);
        reply(out, 200, json_pack("{s:o}", "value", value));
    } else if (sbx_str_has_prefix(path, "/v1/sandboxes/") && !strchr(path + 14, '/')) {
        sandbox_call(h, method, path + 14, out);
    } else {
        reply(out, 404, NULL);
    }
    return 0;
}

static const sched_agent_ops_t fake_ops = {.call = fake_call};

static int64_t fake_now(void *ctx)
{
    /* Ahead of the wall clock by what the test advanced, never behind it:
     * storage stamps rows with the wall clock.  */
    return sbx_now_ms() + g_clock_offset;
}

static void advance(int64_t ms)
{
    g_clock_offset += ms;
}

/* ---- fixture ---- */

static char *g_dir;
static st_db_t *g_db;
static sched_t *g_s;

static void add_host(int i, const char *name)
{
    g_hosts[i] =
        (fake_host_t){.url = xasprintf("https://%s.test:9443", name), .running = json_object()};
    sbx_error_t err = {0};
    ck_assert_msg(sched_host_register(g_s, name, g_hosts[i].url, "default", &err) == 0, "%s",
                  err.msg);
}

static void setup(void)
{
    g_clock_offset = 0;
    memset(g_hosts, 0, sizeof(g_hosts));
    g_dir = tu_tmpdir("sbx-sched-logic");
    _cleanup_free_ char *path = xasprintf("%s/db", g_dir);
    sbx_error_t err = {0};
    g_db = st_open(path, NULL, &err);
    ck_assert_msg(g_db != NULL, "%s", err.msg);
    sched_config_t cfg = {
        .agent_ops = &fake_ops, .now_ms = fake_now, .max_attempts = 3, .placement_wait_ms = 5000};
    g_s = sched_new(&cfg, g_db, &err);
    ck_assert_ptr_nonnull(g_s);
}

static void teardown(void)
{
    sched_free(g_s);
    st_close(g_db);
    tu_rmdir(g_dir);
    free(g_dir);
    for (size_t i = 0; i < ARRAY_SIZE(g_hosts); i++) {
        free((char *)g_hosts[i].url);
        json_decref(g_hosts[i].running);
    }
}

static void put_row(const char *id, const char *type, const char *name, const char *parent,
                    json_t *body)
{
    st_resource_t r = {.id = (char *)id,
                       .type = (char *)type,
                       .name = (char *)name,
                       .subscription = SUBSCRIPTION,
                       .resource_group = "rg",
                       .parent_id = (char *)parent,
                       .body = body};
    st_tx_t *tx = st_begin(g_db, NULL);
    ck_assert_ptr_nonnull(tx);
    ck_assert_int_eq(st_tx_resource_put(tx, &r, NULL), 0);
    ck_assert_int_eq(st_commit(tx, NULL), 0);
    json_decref(body);
}

static void put_group(json_t *props)
{
    put_row(GROUP_ID, API_GROUP_TYPE, "g", NULL,
            json_pack("{s:s,s:o}", "location", "local", "properties", props));
}

/* A sandbox and its create operation, as the API writes them.  */
static void request_sandbox(const char *name, json_t *props)
{
    _cleanup_free_ char *id = xasprintf(GROUP_ID "/sandboxes/%s", name);
    json_object_set_new(props, "state", json_string("Pending"));
    json_object_set_new(props, "provisioningState", json_string("InProgress"));
    put_row(id, API_SANDBOX_TYPE, name, GROUP_ID, json_pack("{s:o}", "properties", props));
    st_operation_t op = {.resource_id = id,
                         .kind = "create",
                         .status = "InProgress",
                         .location = "local",
                         .subscription = SUBSCRIPTION,
                         .start_ms = fake_now(NULL)};
    snprintf(op.id, sizeof(op.id), "op-%s", name);
    st_tx_t *tx = st_begin(g_db, NULL);
    ck_assert_int_eq(st_tx_operation_put(tx, &op, NULL), 0);
    ck_assert_int_eq(st_commit(tx, NULL), 0);
}

static st_resource_t sandbox(const char *name)
{
    _cleanup_free_ char *id = xasprintf(GROUP_ID "/sandboxes/%s", name);
    st_resource_t r = {0};
    ck_assert_int_eq(st_resource_lookup(g_db, id, &r, NULL), 1);
    return r;
}

static const char *prop(const st_resource_t *r, const char *key)
{
    return json_string_value(json_object_get(json_object_get(r->body, "properties"), key));
}

static st_operation_t operation(const char *name)
{
    _cleanup_free_ char *id = xasprintf("op-%s", name);
    st_operation_t op = {0};
    ck_assert_int_eq(st_operation_lookup(g_db, id, &op, NULL), 1);
    return op;
}

/* ---- placement ---- */

START_TEST(creates_spread_over_hosts)
{
    add_host(0, "h0");
    add_host(1, "h1");
    put_group(json_object());
    for (int i = 0; i < 4; i++) {
        char name[8];
        snprintf(name, sizeof(name), "s%d", i);
        request_sandbox(name, json_pack("{s:f,s:i}", "cpu", 1.0, "memoryMiB", 512));
    }
    ck_assert_uint_eq(sched_work_once(g_s), 4);
    ck_assert_int_eq(g_hosts[0].puts, 2);
    ck_assert_int_eq(g_hosts[1].puts, 2);
    st_resource_t r = sandbox("s0");
    ck_assert_str_eq(prop(&r, "state"), "Running");
    ck_assert_str_eq(prop(&r, "provisioningState"), "Succeeded");
    ck_assert_ptr_nonnull(r.runtime_id);
    ck_assert(r.need.cpu == 1.0 && r.need.memory_mib == 512 && r.need.pids == SBX_PIDS_DEFAULT);
    ck_assert_ptr_nonnull(json_object_get(g_hosts[0].running, r.runtime_id)
                              ?: json_object_get(g_hosts[1].running, r.runtime_id));
    st_resource_done(&r);
}
END_TEST

/* The model's defaults fill what neither the sandbox nor its group say.  */
START_TEST(defaults_come_from_the_model)
{
    add_host(0, "h0");
    put_group(json_pack("{s:{s:i}}", "sandboxDefaults", "diskMiB", 64));
    request_sandbox("d", json_object());
    ck_assert_uint_eq(sched_work_once(g_s), 1);
    st_resource_t r = sandbox("d");
    ck_assert(r.need.cpu == SBX_CPU_DEFAULT);
    ck_assert(r.need.memory_mib == SBX_MEMORY_MIB_DEFAULT);
    ck_assert(r.need.disk_mib == 64);
    st_resource_done(&r);
}
END_TEST

/* No room: the create waits Pending, saying why, and fails once the
 * placement wait has passed on the scheduler's clock.  */
START_TEST(no_room_waits_then_fails)
{
    add_host(0, "h0");
    put_group(json_object());
    request_sandbox("big", json_pack("{s:i,s:i}", "memoryMiB", 3500, "diskMiB", 64));
    request_sandbox("late", json_pack("{s:i,s:i}", "memoryMiB", 3500, "diskMiB", 64));
    sched_work_once(g_s);
    st_resource_t r = sandbox("late");
    ck_assert_str_eq(prop(&r, "state"), "Pending");
    ck_assert_msg(strstr(prop(&r, "statusMessage"), "waiting for a host with room"), "%s",
                  prop(&r, "statusMessage"));
    st_resource_done(&r);
    st_operation_t op = operation("late");
    ck_assert_str_eq(op.status, "InProgress");
    ck_assert_int_eq(op.attempts, 0); /* waiting costs no attempt */
    st_operation_done(&op);
    advance(6000);
    sched_work_once(g_s);
    op = operation("late");
    ck_assert_str_eq(op.status, "Failed");
    ck_assert_str_eq(json_string_value(json_object_get(op.error, "code")), "InsufficientCapacity");
    st_operation_done(&op);
}
END_TEST

/* ---- backoff ---- */

START_TEST(host_errors_back_off_then_fail)
{
    add_host(0, "h0");
    put_group(json_object());
    g_hosts[0].fail_puts = 10;
    request_sandbox("b", json_object());
    ck_assert_uint_eq(sched_work_once(g_s), 1);
    st_operation_t op = operation("b");
    ck_assert_int_eq(op.attempts, 1);
    int64_t wait = op.next_attempt_ms - fake_now(NULL);
    ck_assert_msg(wait > 900 && wait <= 1000, "backoff %lld", (long long)wait);
    st_operation_done(&op);
    /* Not due yet: nothing runs.  */
    ck_assert_uint_eq(sched_work_once(g_s), 0);
    ck_assert_int_eq(g_hosts[0].puts, 1);
    advance(1000);
    ck_assert_uint_eq(sched_work_once(g_s), 1);
    op = operation("b");
    ck_assert_int_eq(op.attempts, 2);
    wait = op.next_attempt_ms - fake_now(NULL);
    ck_assert_msg(wait > 1900 && wait <= 2000, "backoff doubles: %lld", (long long)wait);
    st_operation_done(&op);
    advance(2000);
    sched_work_once(g_s);
    op = operation("b");
    ck_assert_str_eq(op.status, "Failed"); /* max_attempts 3 */
    ck_assert_str_eq(json_string_value(json_object_get(op.error, "code")), "HostCallFailed");
    st_operation_done(&op);
    st_resource_t r = sandbox("b");
    ck_assert_str_eq(prop(&r, "state"), "Failed");
    ck_assert_msg(strstr(prop(&r, "statusMessage"), "disk on fire"), "%s",
                  prop(&r, "statusMessage"));
    st_resource_done(&r);
}
END_TEST

/* ---- reconcile ---- */

START_TEST(reconcile_records_what_hosts_report)
{
    add_host(0, "h0");
    put_group(json_object());
    request_sandbox("a", json_object());
    request_sandbox("b", json_object());
    sched_work_once(g_s);
    st_resource_t a = sandbox("a"), b = sandbox("b");
    /* The host suspended a, lost b, and runs one nobody asked for.  */
    json_object_set_new(json_object_get(g_hosts[0].running, a.runtime_id), "state",
                        json_string("Suspended"));
    json_object_del(g_hosts[0].running, b.runtime_id);
    json_object_set_new(g_hosts[0].running, "stray",
                        json_pack("{s:s,s:s}", "id", "stray", "state", "Running"));
    advance(1000);
    sched_reconcile_once(g_s);
    st_resource_done(&a);
    st_resource_done(&b);
    a = sandbox("a");
    b = sandbox("b");
    ck_assert_str_eq(prop(&a, "state"), "Suspended");
    ck_assert_str_eq(prop(&b, "state"), "Failed");
    ck_assert_str_eq(prop(&b, "statusMessage"), "the host no longer runs this sandbox");
    ck_assert_ptr_null(json_object_get(g_hosts[0].running, "stray"));
    ck_assert_ptr_nonnull(json_object_get(g_hosts[0].running, a.runtime_id));
    st_resource_done(&a);
    st_resource_done(&b);
}
END_TEST

/* ---- warm pools ---- */

START_TEST(warm_pool_kept_at_its_size)
{
    add_host(0, "h0");
    put_group(json_pack("{s:{s:i}}", "scale", "readySandboxes", 2));
    sched_reconcile_once(g_s);
    size_t n = 0;
    ck_assert_int_eq(st_resource_count(g_db, API_POOL_TYPE, GROUP_ID, &n, NULL), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(json_object_size(g_hosts[0].running), 2);
    /* The group's defaults change: members of the old spec are replaced.  */
    put_group(json_pack("{s:{s:i},s:{s:i}}", "scale", "readySandboxes", 1, "sandboxDefaults",
                        "memoryMiB", 256));
    advance(1000);
    sched_reconcile_once(g_s);
    ck_assert_int_eq(st_resource_count(g_db, API_POOL_TYPE, GROUP_ID, &n, NULL), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(json_object_size(g_hosts[0].running), 1);
    ck_assert_int_eq(g_hosts[0].deletes, 2);
}
END_TEST

/* ---- host failure ---- */

START_TEST(silent_host_goes_down_and_fails_its_sandboxes)
{
    add_host(0, "h0");
    put_group(json_object());
    request_sandbox("a", json_object());
    sched_work_once(g_s);
    g_hosts[0].down = true;
    sched_reconcile_once(g_s); /* silent, but not for host_down_ms yet */
    st_host_t h = {0};
    ck_assert_int_eq(st_host_lookup(g_db, "h0", &h, NULL), 1);
    ck_assert_str_eq(h.state, "Ready");
    st_host_done(&h);
    advance(6000);
    sched_reconcile_once(g_s);
    ck_assert_int_eq(st_host_lookup(g_db, "h0", &h, NULL), 1);
    ck_assert_str_eq(h.state, "Down");
    st_host_done(&h);
    st_resource_t a = sandbox("a");
    ck_assert_str_eq(prop(&a, "state"), "Failed");
    ck_assert_msg(strstr(prop(&a, "statusMessage"), "stopped answering its health checks"), "%s",
                  prop(&a, "statusMessage"));
    st_resource_done(&a);
    /* It answers again: Ready, and new sandboxes go there.  */
    g_hosts[0].down = false;
    sched_reconcile_once(g_s);
    ck_assert_int_eq(st_host_lookup(g_db, "h0", &h, NULL), 1);
    ck_assert_str_eq(h.state, "Ready");
    st_host_done(&h);
}
END_TEST

/* hostFailurePolicy Recreate: a removed host's sandbox is made again on
 * another host, fresh, with the need moved with it.  */
START_TEST(removed_host_sandboxes_recreated_elsewhere)
{
    add_host(0, "h0");
    put_group(json_pack("{s:s}", "hostFailurePolicy", "Recreate"));
    request_sandbox("r", json_object());
    sched_work_once(g_s);
    st_resource_t r = sandbox("r");
    ck_assert_str_eq(r.host_id, "h0");
    st_resource_done(&r);
    add_host(1, "h1");
    ck_assert_uint_eq(sched_host_sandboxes(g_s, "h0"), 1);
    sbx_error_t err = {0};
    ck_assert_int_eq(sched_host_remove(g_s, "h0", &err), 1);
    r = sandbox("r");
    ck_assert_str_eq(prop(&r, "state"), "Pending");
    ck_assert_ptr_null(r.runtime_id);
    ck_assert_ptr_null(r.host_id);
    st_resource_done(&r);
    ck_assert_uint_eq(sched_work_once(g_s), 1);
    r = sandbox("r");
    ck_assert_str_eq(r.host_id, "h1");
    ck_assert_str_eq(prop(&r, "state"), "Running");
    ck_assert_ptr_nonnull(json_object_get(g_hosts[1].running, r.runtime_id));
    st_resource_done(&r);
    ck_assert_uint_eq(sched_host_sandboxes(g_s, "h1"), 1);
    ck_assert_int_eq(sched_host_remove(g_s, "h0", &err), 0); /* gone already */
}
END_TEST

static Suite *logic_suite(void)
{
    Suite *s = suite_create("scheduler_logic");
    TCase *tc = tcase_create("fake_agent");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, creates_spread_over_hosts);
    tcase_add_test(tc, defaults_come_from_the_model);
    tcase_add_test(tc, no_room_waits_then_fails);
    tcase_add_test(tc, host_errors_back_off_then_fail);
    tcase_add_test(tc, reconcile_records_what_hosts_report);
    tcase_add_test(tc, warm_pool_kept_at_its_size);
    tcase_add_test(tc, silent_host_goes_down_and_fails_its_sandboxes);
    tcase_add_test(tc, removed_host_sandboxes_recreated_elsewhere);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(logic_suite());
}
