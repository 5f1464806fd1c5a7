/* test_scheduler_reconcile.c -- the reconcile pass against a fake agent in
 * this process: what it destroys when storage answers, and that it
 * destroys nothing it could not look up when storage fails.  */
#include <pthread.h>
#include <string.h>

#include "scheduler/internal.h"
#include "tests/testutil.h"

#define SANDBOXES "microsoft.app/sandboxgroups/sandboxes"

/* ---- a fake host agent ---- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *g_deleted; /* runtime ids the agent was asked to destroy */

static void agent_handle(void *ctx, const http_request_t *req, http_response_t *res)
{
    (void)ctx;
    if (strcmp(req->path, "/v1/health") == 0) {
        http_reply_json(res, 200,
                        json_pack("{s:s,s:[s],s:{s:i,s:i,s:i,s:i,s:i}}", "status", "ok", "drivers",
                                  "process", "capacity", "cpu", 8, "memoryMiB", 8192, "diskMiB",
                                  8192, "pids", 24576, "sandboxes", 100));
    } else if (strcmp(req->path, "/v1/sandboxes") == 0) {
        http_reply_json(res, 200,
                        json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "value", "id", "rid-live", "state",
                                  "Running", "id", "rid-orphan", "state", "Running"));
    } else if (strcmp(req->method, "DELETE") == 0 &&
               sbx_str_has_prefix(req->path, "/v1/sandboxes/")) {
        pthread_mutex_lock(&g_mu);
        json_array_append_new(g_deleted, json_string(req->path + strlen("/v1/sandboxes/")));
        pthread_mutex_unlock(&g_mu);
        http_reply_empty(res, 204);
    } else {
        http_reply_error(res, 404, "NotFound", "no route");
    }
}

static bool deleted(const char *rid)
{
    pthread_mutex_lock(&g_mu);
    bool found = false;
    size_t i;
    json_t *v;
    json_array_foreach(g_deleted, i, v)
    {
        if (strcmp(json_string_value(v), rid) == 0)
            found = true;
    }
    pthread_mutex_unlock(&g_mu);
    return found;
}

/* ---- fixture ---- */

static char *g_dir;
static st_db_t *g_db;
static http_server_t *g_agent;
static sched_t *g_s;

static void setup(void)
{
    g_deleted = json_array();
    g_dir = tu_tmpdir("sbx-reconcile");
    _cleanup_free_ char *path = xasprintf("%s/db", g_dir);
    sbx_error_t err = {0};
    g_db = st_open(path, NULL, &err);
    ck_assert_msg(g_db != NULL, "%s", err.msg);
    http_config_t hc = {.name = "fake-agent", .listen = "127.0.0.1:0"};
    g_agent = http_server_start(&hc, agent_handle, NULL, &err);
    ck_assert_msg(g_agent != NULL, "%s", err.msg);
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d", http_server_port(g_agent));
    st_host_t h = {.name = "h1",
                   .url = url,
                   .environment = "default",
                   .state = "Ready",
                   .last_seen_ms = sbx_now_ms()};
    ck_assert_int_eq(st_host_put(g_db, &h, &err), 0);
    sched_config_t cfg = {0};
    g_s = sched_new(&cfg, g_db, &err);
    ck_assert_ptr_nonnull(g_s);
}

static void teardown(void)
{
    sched_free(g_s);
    http_server_stop(g_agent);
    st_close(g_db);
    tu_rmdir(g_dir);
    free(g_dir);
    json_decref(g_deleted);
}

/* A sandbox storage knows by its runtime id but does not list on this
 * host in this pass (a warm-pool member taken mid-pass, a row written
 * after the listing): only the lookup by runtime id vouches for it.  */
static void put_known_sandbox(void)
{
    const char *id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/"
                     "sandboxGroups/g/sandboxes/live";
    st_resource_t r = {.id = (char *)id,
                       .type = SANDBOXES,
                       .name = "live",
                       .subscription = "s",
                       .resource_group = "rg",
                       .runtime_id = "rid-live",
                       .body =
                           json_pack("{s:{s:s}}", "properties", "provisioningState", "Succeeded")};
    sbx_error_t err = {0};
    st_tx_t *tx = st_begin(g_db, &err);
    ck_assert_ptr_nonnull(tx);
    ck_assert_int_eq(st_tx_resource_put(tx, &r, &err), 0);
    ck_assert_int_eq(st_commit(tx, &err), 0);
    json_decref(r.body);
}

START_TEST(reconcile_keeps_sandboxes_storage_cannot_look_up)
{
    put_known_sandbox();
    /* Storage fails the lookups by value (busy, I/O error): no answer is
     * no licence to destroy, neither the known sandbox nor the orphan.  */
    st_fault_inject(g_db, "runtime_id =");
    sched_reconcile_once(g_s);
    ck_assert_msg(!deleted("rid-live"), "a live sandbox was destroyed on a storage error");
    ck_assert_msg(!deleted("rid-orphan"), "destroyed on a lookup that failed");
    /* Storage answers again: what it does not know goes, what it knows
     * stays.  */
    st_fault_inject(g_db, NULL);
    sched_reconcile_once(g_s);
    ck_assert_msg(deleted("rid-orphan"), "the orphan was not destroyed");
    ck_assert(!deleted("rid-live"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scheduler_reconcile");
    TCase *tc = tcase_create("reconcile");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, reconcile_keeps_sandboxes_storage_cannot_look_up);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
