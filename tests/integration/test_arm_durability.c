/* test_arm_durability.c -- sandboxd's state under contention and crashes:
 * racing conditional writes, a clean restart, and kill -9 in the middle of
 * a write load (every acknowledged write survives, the database is sound).  */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "storage/storage.h"
#include "tests/testutil.h"

#define SUB "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d"
#define API "api-version=2026-07-01"

static tu_server_t srv;
static char *tmp, *data;

static void dump_log(void)
{
    _cleanup_free_ char *log = NULL;
    size_t len;
    if (srv.log && sbx_read_file(srv.log, &log, &len, NULL) == 0) {
        size_t from = len > 12000 ? len - 12000 : 0;
        fprintf(stderr, "---- sandboxd log %s (tail) ----\n%s\n----\n", srv.log, log + from);
    }
}

static void start_server(void)
{
    if (tu_server_start(&srv, data, NULL) < 0)
        dump_log();
    ck_assert_msg(srv.pid > 0, "sandboxd did not start");
    ck_assert_ptr_nonnull(srv.token);
}

/* SIGTERM: a clean shutdown exits 0 (and, under the sanitizers, leaks nothing).  */
static void stop_server(void)
{
    int status = tu_server_stop(&srv);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        dump_log();
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "sandboxd did not exit 0 on SIGTERM (status 0x%x)", status);
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_ALL); /* before any thread uses libcurl */
    tmp = tu_tmpdir("sbx-armdur");
    ck_assert_ptr_nonnull(tmp);
    data = xasprintf("%s/data", tmp);
    start_server();
}

static void teardown(void)
{
    if (srv.pid > 0)
        tu_server_stop(&srv);
    tu_server_done(&srv);
    tu_rmdir(tmp);
    free(tmp);
    free(data);
    curl_global_cleanup();
}

/* One authenticated call; extra is one more header or NULL.  Returns -1
 * when no response arrived.  */
static long call(const char *method, const char *path, const char *body, const char *extra,
                 tu_response_t *r)
{
    _cleanup_free_ char *url = xasprintf("%s%s?" API, srv.base, path);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", srv.token);
    const char *hdrs[] = {auth, extra, NULL};
    tu_request_opts_t o = {.body = body, .headers = hdrs, .timeout_ms = 20000};
    if (tu_http(method, url, &o, r) < 0) {
        tu_response_free(r);
        return -1;
    }
    return r->status;
}

static char *gpath(const char *rg, const char *name)
{
    return xasprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/sandboxGroups/%s",
                     SUB, rg, name);
}

/* GET: status, and the ETag and body when 200.  */
static long get(const char *path, char **etag, char **body)
{
    tu_response_t r;
    long st = call("GET", path, NULL, NULL, &r);
    if (etag)
        *etag = st == 200 ? tu_header(&r, "ETag") : NULL;
    if (body)
        *body = st == 200 ? xstrdup(r.body) : NULL;
    if (st >= 0)
        tu_response_free(&r);
    return st;
}

/* ---- racing conditional writes ---- */

#define RACERS 16

typedef struct racer {
    int idx;
    const char *path, *if_match;
    bool if_none_match; /* If-None-Match: * instead of If-Match */
    pthread_barrier_t *go;
    long status;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    _cleanup_free_ char *body =
        xasprintf("{\"location\":\"westeurope\",\"tags\":{\"winner\":\"%d\"}}", r->idx);
    _cleanup_free_ char *hdr =
        r->if_none_match ? xstrdup("If-None-Match: *") : xasprintf("If-Match: %s", r->if_match);
    pthread_barrier_wait(r->go);
    tu_response_t res;
    r->status = call("PUT", r->path, body, hdr, &res);
    if (r->status >= 0)
        tu_response_free(&res);
    return NULL;
}

START_TEST(if_match_race)
{
    _cleanup_free_ char *p = gpath("race", "g1");
    for (int round = 0; round < 3; round++) {
        tu_response_t r;
        ck_assert_int_eq(call("PUT", p, "{\"location\":\"westeurope\"}", NULL, &r),
                         round == 0 ? 201 : 200);
        _cleanup_free_ char *etag = tu_header(&r, "ETag");
        tu_response_free(&r);
        ck_assert_ptr_nonnull(etag);

        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, RACERS);
        racer_t racers[RACERS];
        pthread_t th[RACERS];
        for (int i = 0; i < RACERS; i++) {
            racers[i] = (racer_t){.idx = i, .path = p, .if_match = etag, .go = &go};
            ck_assert_int_eq(pthread_create(&th[i], NULL, race, &racers[i]), 0);
        }
        int ok = 0, failed = 0, winner = -1;
        for (int i = 0; i < RACERS; i++) {
            pthread_join(th[i], NULL);
            if (racers[i].status == 200) {
                ok++;
                winner = i;
            } else if (racers[i].status == 412) {
                failed++;
            } else {
                ck_abort_msg("racer %d: status %ld", i, racers[i].status);
            }
        }
        pthread_barrier_destroy(&go);
        ck_assert_msg(ok == 1 && failed == RACERS - 1, "round %d: %d succeeded, %d failed", round,
                      ok, failed);
        /* The stored state is the winner's.  */
        _cleanup_free_ char *body = NULL, *now = NULL;
        ck_assert_int_eq(get(p, &now, &body), 200);
        ck_assert_str_ne(now, etag);
        _cleanup_json_ json_t *j = json_loads(body, 0, NULL);
        char want[16];
        snprintf(want, sizeof(want), "%d", winner);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "tags"), "winner")),
                         want);
    }
}
END_TEST

/* Sixteen creators of one new group with If-None-Match: *: one 201.  */
START_TEST(if_none_match_create_race)
{
    _cleanup_free_ char *p = gpath("race", "created-once");
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    racer_t racers[RACERS];
    pthread_t th[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer_t){.idx = i, .path = p, .if_none_match = true, .go = &go};
        ck_assert_int_eq(pthread_create(&th[i], NULL, race, &racers[i]), 0);
    }
    int created = 0, refused = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        if (racers[i].status == 201)
            created++;
        else if (racers[i].status == 412)
            refused++;
        else
            ck_abort_msg("racer %d: status %ld", i, racers[i].status);
    }
    pthread_barrier_destroy(&go);
    ck_assert_msg(created == 1 && refused == RACERS - 1, "%d created, %d refused", created,
                  refused);
}
END_TEST

/* Children created while their parent is deleted: either the child is
 * refused or it goes with the parent; none is left behind.  */
typedef struct child_racer {
    const char *group;
    int idx;
    pthread_barrier_t *go;
    long status;
} child_racer_t;

static void *race_child(void *arg)
{
    child_racer_t *c = arg;
    _cleanup_free_ char *p =
        c->idx < 0 ? xstrdup(c->group) : xasprintf("%s/vnetConnections/v%d", c->group, c->idx);
    pthread_barrier_wait(c->go);
    tu_response_t r;
    if (c->idx < 0)
        c->status = call("DELETE", p, NULL, NULL, &r);
    else
        c->status = call("PUT", p,
                         "{\"properties\":{\"subnetId\":\"/subscriptions/" SUB "/resourceGroups/"
                         "n/providers/Microsoft.Network/virtualNetworks/v/subnets/s\"}}",
                         NULL, &r);
    if (c->status >= 0)
        tu_response_free(&r);
    return NULL;
}

START_TEST(children_vs_parent_delete)
{
    enum { CHILDREN = 8 };
    _cleanup_free_ char *g = gpath("orphans", "g");
    for (int round = 0; round < 4; round++) {
        tu_response_t r;
        ck_assert_int_eq(call("PUT", g, "{\"location\":\"westeurope\"}", NULL, &r), 201);
        tu_response_free(&r);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, CHILDREN + 1);
        child_racer_t racers[CHILDREN + 1];
        pthread_t th[CHILDREN + 1];
        for (int i = 0; i <= CHILDREN; i++) {
            /* the deleter starts in the middle of the pack */
            int idx = i == CHILDREN / 2 ? -1 : i;
            racers[i] = (child_racer_t){.group = g, .idx = idx, .go = &go};
            ck_assert_int_eq(pthread_create(&th[i], NULL, race_child, &racers[i]), 0);
        }
        for (int i = 0; i <= CHILDREN; i++) {
            pthread_join(th[i], NULL);
            long st = racers[i].status;
            if (racers[i].idx < 0)
                ck_assert_int_eq(st, 202);
            else
                ck_assert_msg(st == 201 || st == 404, "child %d: %ld", racers[i].idx, st);
        }
        pthread_barrier_destroy(&go);
        ck_assert_int_eq(get(g, NULL, NULL), 404);
        for (int i = 0; i <= CHILDREN; i++) {
            _cleanup_free_ char *c = xasprintf("%s/vnetConnections/v%d", g, i);
            ck_assert_msg(get(c, NULL, NULL) == 404, "round %d: v%d outlived its group", round, i);
        }
    }
}
END_TEST

/* Many creates at once that each read outside their transaction (a new
 * sandbox looks for a warm-pool member): all succeed, none waits for the
 * storage busy timeout.  */
typedef struct creator {
    const char *group;
    int idx;
    pthread_barrier_t *go;
    long status;
} creator_t;

static void *create_sandbox(void *arg)
{
    creator_t *c = arg;
    _cleanup_free_ char *p = xasprintf("%s/sandboxes/s%d", c->group, c->idx);
    pthread_barrier_wait(c->go);
    tu_response_t r;
    c->status = call("PUT", p, "{\"properties\":{}}", NULL, &r);
    if (c->status >= 0)
        tu_response_free(&r);
    return NULL;
}

START_TEST(concurrent_sandbox_creates)
{
    enum { CREATORS = 16 };
    _cleanup_free_ char *g = gpath("burst", "g");
    tu_response_t r;
    ck_assert_int_eq(call("PUT", g, "{\"location\":\"westeurope\"}", NULL, &r), 201);
    tu_response_free(&r);
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, CREATORS);
    creator_t c[CREATORS];
    pthread_t th[CREATORS];
    int64_t t0 = sbx_monotonic_ms();
    for (int i = 0; i < CREATORS; i++) {
        c[i] = (creator_t){.group = g, .idx = i, .go = &go};
        ck_assert_int_eq(pthread_create(&th[i], NULL, create_sandbox, &c[i]), 0);
    }
    for (int i = 0; i < CREATORS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(c[i].status == 201, "sandbox %d: %ld", i, c[i].status);
    }
    pthread_barrier_destroy(&go);
    ck_assert_int_lt(sbx_monotonic_ms() - t0, 5000);
}
END_TEST

/* ---- restart ---- */

START_TEST(restart_keeps_everything)
{
    enum { N = 6 };
    char *paths[N + 3], *etags[N + 3], *bodies[N + 3];
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        char name[16], body[128];
        snprintf(name, sizeof(name), "Keep-%d", i);
        snprintf(body, sizeof(body), "{\"location\":\"westeurope\",\"tags\":{\"i\":\"%d\"}}", i);
        paths[n] = gpath(i % 2 ? "rg-odd" : "rg-even", name);
        tu_response_t r;
        ck_assert_int_eq(call("PUT", paths[n], body, NULL, &r), 201);
        tu_response_free(&r);
        n++;
    }
    _cleanup_free_ char *g0 = gpath("rg-even", "keep-0");
    paths[n++] = xasprintf("%s/vnetConnections/v1", g0);
    paths[n++] = xasprintf("%s/egressPolicies/web", g0);
    paths[n++] = xasprintf("%s/vnetConnections/v2", g0);
    tu_response_t r;
    const char *vnet = "{\"properties\":{\"subnetId\":\"/subscriptions/" SUB "/resourceGroups/n/"
                       "providers/Microsoft.Network/virtualNetworks/v/subnets/s\"}}";
    ck_assert_int_eq(call("PUT", paths[N], vnet, NULL, &r), 201);
    tu_response_free(&r);
    ck_assert_int_eq(call("PUT", paths[N + 1],
                          "{\"properties\":{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\","
                          "\"fqdns\":[\"pypi.org\"]}]}}",
                          NULL, &r),
                     201);
    tu_response_free(&r);
    ck_assert_int_eq(call("PUT", paths[N + 2], vnet, NULL, &r), 201);
    tu_response_free(&r);
    ck_assert_int_eq(call("DELETE", paths[N + 2], NULL, NULL, &r), 202);
    _cleanup_free_ char *op_url = tu_header(&r, "Azure-AsyncOperation");
    tu_response_free(&r);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(get(paths[i], &etags[i], &bodies[i]), i == N + 2 ? 404 : 200);

    _cleanup_free_ char *token = xstrdup(srv.token);
    stop_server();
    _cleanup_free_ char *token_file = xasprintf("%s/dev-token", data);
    struct stat st;
    ck_assert_int_eq(stat(token_file, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    start_server();
    ck_assert_str_eq(srv.token, token); /* the same development token */

    for (size_t i = 0; i < n; i++) {
        _cleanup_free_ char *etag = NULL, *body = NULL;
        if (i == N + 2) {
            ck_assert_int_eq(get(paths[i], NULL, NULL), 404);
            continue;
        }
        ck_assert_int_eq(get(paths[i], &etag, &body), 200);
        ck_assert_str_eq(etag, etags[i]);
        ck_assert_str_eq(body, bodies[i]);
    }
    /* Lists and the finished operation as well (under the new port).  */
    _cleanup_free_ char *list =
        xasprintf("/subscriptions/%s/providers/Microsoft.App/sandboxGroups", SUB);
    ck_assert_int_eq(call("GET", list, NULL, NULL, &r), 200);
    _cleanup_json_ json_t *j = tu_json(&r);
    tu_response_free(&r);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "value")), N);
    ck_assert_ptr_nonnull(op_url);
    const char *op_path = strstr(op_url, "/subscriptions/");
    ck_assert_ptr_nonnull(op_path);
    _cleanup_free_ char *op_only = xstrndup(op_path, strcspn(op_path, "?"));
    ck_assert_int_eq(call("GET", op_only, NULL, NULL, &r), 200);
    _cleanup_json_ json_t *op = tu_json(&r);
    tu_response_free(&r);
    ck_assert_str_eq(json_string_value(json_object_get(op, "status")), "Succeeded");
    stop_server();
    for (size_t i = 0; i < n; i++) {
        free(paths[i]);
        free(etags[i]);
        free(bodies[i]);
    }
}
END_TEST

/* ---- kill -9 under a write load ---- */

#define WRITERS 4
#define MAX_ACKS 4096

typedef struct writer {
    int idx;
    atomic_int *acked_total;
    int acked[MAX_ACKS]; /* sequence numbers acknowledged with 201 */
    int n_acked;
    int other; /* statuses that were neither 201 nor a dropped connection */
} writer_t;

static void *write_load(void *arg)
{
    writer_t *w = arg;
    for (int seq = 0; seq < MAX_ACKS; seq++) {
        char name[32];
        snprintf(name, sizeof(name), "w%d-%d", w->idx, seq);
        _cleanup_free_ char *p = gpath("load", name);
        tu_response_t r;
        long st =
            call("PUT", p, "{\"location\":\"westeurope\",\"tags\":{\"load\":\"1\"}}", NULL, &r);
        if (st < 0)
            break; /* the server is gone */
        tu_response_free(&r);
        if (st == 503)
            break; /* the server is stopping: it refuses new work, cleanly */
        if (st == 201) {
            w->acked[w->n_acked++] = seq;
            atomic_fetch_add(w->acked_total, 1);
        } else {
            w->other++;
        }
    }
    return NULL;
}

START_TEST(kill9_under_load)
{
    atomic_int total = 0;
    writer_t *w = xcalloc(WRITERS, sizeof(*w));
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i].idx = i;
        w[i].acked_total = &total;
        ck_assert_int_eq(pthread_create(&th[i], NULL, write_load, &w[i]), 0);
    }
    /* Let a good number of writes land, then pull the plug mid-stream.  */
    tu_wait_until(atomic_load(&total) >= 200, 20000);
    ck_assert_int_ge(atomic_load(&total), 200);
    int status = tu_server_kill(&srv);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    int acked = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].other, 0);
        acked += w[i].n_acked;
    }

    /* The database as the crash left it: sound, holding every ack.  */
    _cleanup_free_ char *db_path = xasprintf("%s/sandboxd.db", data);
    sbx_error_t err = {0};
    st_db_t *db = st_open(db_path, NULL, &err);
    ck_assert_msg(db != NULL, "st_open: %s", err.msg);
    _cleanup_free_ char *check = st_integrity_check(db);
    ck_assert_str_eq(check, "ok");
    size_t stored = 0;
    ck_assert_int_eq(st_resource_count(db, "microsoft.app/sandboxgroups", NULL, &stored, &err), 0);
    ck_assert_uint_ge(stored, (size_t)acked);
    st_close(db);

    start_server();
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < w[i].n_acked; k++) {
            char name[32];
            snprintf(name, sizeof(name), "w%d-%d", i, w[i].acked[k]);
            _cleanup_free_ char *p = gpath("load", name);
            ck_assert_msg(get(p, NULL, NULL) == 200, "acknowledged %s is gone", name);
        }
    /* And the restarted server takes writes again.  */
    _cleanup_free_ char *p = gpath("load", "after-crash");
    tu_response_t r;
    ck_assert_int_eq(call("PUT", p, "{\"location\":\"westeurope\"}", NULL, &r), 201);
    tu_response_free(&r);
    stop_server();
    free(w);
}
END_TEST

/* SIGTERM while writers are busy: in-flight requests finish, the process
 * exits 0, and what was acknowledged is there.  */
START_TEST(sigterm_under_load)
{
    atomic_int total = 0;
    writer_t *w = xcalloc(WRITERS, sizeof(*w));
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i].idx = i;
        w[i].acked_total = &total;
        ck_assert_int_eq(pthread_create(&th[i], NULL, write_load, &w[i]), 0);
    }
    tu_wait_until(atomic_load(&total) >= 100, 20000);
    stop_server();
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].other, 0);
    }
    start_server();
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < w[i].n_acked; k++) {
            char name[32];
            snprintf(name, sizeof(name), "w%d-%d", i, w[i].acked[k]);
            _cleanup_free_ char *p = gpath("load", name);
            ck_assert_msg(get(p, NULL, NULL) == 200, "acknowledged %s is gone", name);
        }
    stop_server();
    free(w);
}
END_TEST

static Suite *durability_suite(void)
{
    Suite *s = suite_create("arm_durability");
    TCase *tc = tcase_create("state");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, if_match_race);
    tcase_add_test(tc, if_none_match_create_race);
    tcase_add_test(tc, children_vs_parent_delete);
    tcase_add_test(tc, concurrent_sandbox_creates);
    tcase_add_test(tc, restart_keeps_everything);
    tcase_add_test(tc, kill9_under_load);
    tcase_add_test(tc, sigterm_under_load);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(durability_suite());
}
