/* test_scheduler_e2e.c -- sandboxes end to end through the ARM API: the
 * real sandboxd with its local sandbox-agent (and extra agents started by
 * the test), over loopback, with real namespaces and cgroups.  */
#include <sys/socket.h>
#include <netinet/in.h>
#include <poll.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <sys/utsname.h>

#include "tests/testutil.h"

#define SUB "00000000-0000-0000-0000-0000000000e2"
#define TOKEN "e2e-test-token"
#define API "?api-version=2026-07-01"
#define E2E_OVERCOMMIT_PIDS "8"
#define E2E_OVERCOMMIT_CPU "64"
#define E2E_PLACEMENT_TIMEOUT "10" /* seconds */

typedef struct cluster {
    char *dir, *data, *log;
    pid_t pid;
    int port;
    char *base, *admin;
} cluster_t;

static char *g_root;  /* scratch */
static char *g_image; /* the default image layout sandboxd hands its agent */
static bool g_python; /* the image has python3 (the real default image) */
static cluster_t g_c;

static int run_sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the cluster ---- */

static char *read_token(const char *dir, const char *name)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    char *t = NULL;
    size_t n = 0;
    if (sbx_read_file(path, &t, &n, NULL) < 0)
        return NULL;
    while (n > 0 && (t[n - 1] == '\n'))
        t[--n] = '\0';
    return t;
}

static long call(const char *method, const char *path, const char *body, json_t **out);
static bool wait_gone(const char *path, int timeout_ms);
static void delete_group(const char *g);

/* A call to the admin API: /admin/hosts followed by `path`, with the
 * admin token.  Returns the status (-1 without an answer).  */
static long admin_call(const char *method, const char *path, const char *body, json_t **out)
{
    _cleanup_free_ char *url = xasprintf("%s/admin/hosts%s", g_c.base, path);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", g_c.admin);
    const char *hdrs[] = {auth, NULL};
    tu_request_opts_t o = {.headers = hdrs, .body = body};
    tu_response_t r;
    long status = tu_http(method, url, &o, &r) == 0 ? r.status : -1;
    if (out)
        *out = status > 0 ? tu_json(&r) : NULL;
    tu_response_free(&r);
    return status;
}

static bool host_ready(const char *name)
{
    _cleanup_free_ char *path = xasprintf("/%s", name);
    json_t *j = NULL;
    bool ok = admin_call("GET", path, NULL, &j) == 200 &&
              strcmp(json_string_value(json_object_get(j, "state")), "Ready") == 0;
    json_decref(j);
    return ok;
}

static void cluster_start(cluster_t *c)
{
    c->port = tu_free_port();
    free(c->base);
    c->base = xasprintf("http://127.0.0.1:%d", c->port);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->port);
    _cleanup_free_ char *bin = tu_bin("sandboxd");
    _cleanup_free_ char *agent = tu_bin("sandbox-agent");
    char *argv[] = {bin,   "--listen",        listen,  "--data-dir",  c->data, "--auth-token",
                    TOKEN, "--default-image", g_image, "--agent-bin", agent,   NULL};
    /* The local agent inherits this: its cgroups stay apart from other
     * tests' agents running at the same time.  */
    _cleanup_free_ char *cg = xasprintf("SANDBOX_AGENT_CGROUP_PARENT=sbx-e2e-%d", (int)getpid());
    /* A test machine's pid_max (32768 here) budgets 24 sandboxes of 1,024
     * pids and its 2 cores 8 of a core; the hundred-at-once case needs
     * more, so the cluster overcommits both, as an operator who knows its
     * sandboxes use little may.  Creates that find no room fail after
     * E2E_PLACEMENT_TIMEOUT.  Set in the environment, which sandboxd
     * reads too, so this test also runs against builds without the flags
     * (and shows what they lacked).  */
    char *env[] = {cg, "SANDBOXD_OVERCOMMIT_PIDS=" E2E_OVERCOMMIT_PIDS,
                   "SANDBOXD_OVERCOMMIT_CPU=" E2E_OVERCOMMIT_CPU,
                   "SANDBOXD_PLACEMENT_TIMEOUT=" E2E_PLACEMENT_TIMEOUT, NULL};
    c->pid = tu_spawn(argv, env, c->log);
    ck_assert_msg(tu_wait_port(c->port, 20000), "sandboxd did not listen");
    free(c->admin);
    c->admin = read_token(c->data, "admin-token");
    ck_assert_ptr_nonnull(c->admin);
    /* Generous: other tests boot emulated VMs beside this one.  */
    tu_wait_until(host_ready("local"), 60000);
    ck_assert_msg(host_ready("local"), "the local agent did not become Ready");
}

static void cluster_stop(cluster_t *c, bool kill9)
{
    if (c->pid <= 0)
        return;
    if (kill9) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    } else {
        int st = tu_stop(c->pid, 30000);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sandboxd did not exit 0");
    }
    c->pid = -1;
}

static void global_setup(void)
{
    g_root = tu_tmpdir("sbx-e2e");
    const char *real = getenv("SBX_DEFAULT_IMAGE");
    _cleanup_free_ char *index = real ? xasprintf("%s/index.json", real) : NULL;
    if (index && access(index, R_OK) == 0) {
        g_image = xstrdup(real);
        g_python = true;
    } else {
        g_image = xasprintf("%s/busybox-layout", g_root);
        _cleanup_free_ char *script = tu_src("tests/fixtures/make-busybox-layout.sh");
        _cleanup_free_ char *cmd = xasprintf("'%s' '%s'", script, g_image);
        ck_assert_int_eq(run_sh(cmd), 0);
    }
    g_c.dir = xstrdup(g_root);
    g_c.data = xasprintf("%s/data", g_root);
    g_c.log = xasprintf("%s/sandboxd.log", g_root);
    cluster_start(&g_c);
}

static void extras_down(void);
static void small_hosts_down(void);

/* Delete every group the tests left, so no sandbox outlives the test.  */
static void delete_all_groups(void)
{
    _cleanup_free_ char *list = xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/"
                                          "Microsoft.App/sandboxGroups" API);
    json_t *j = NULL;
    if (call("GET", list, NULL, &j) != 200) {
        json_decref(j);
        return;
    }
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(j, "value"), i, g)
    {
        _cleanup_free_ char *p = xasprintf("%s" API, json_string_value(json_object_get(g, "id")));
        call("DELETE", p, NULL, NULL);
        wait_gone(p, 60000);
    }
    json_decref(j);
}

static void global_teardown(void)
{
    if (g_c.pid > 0)
        delete_all_groups();
    extras_down();
    small_hosts_down();
    cluster_stop(&g_c, false);
    /* Sandboxes outlive sandboxd by design; the test's own go with it.  */
    _cleanup_free_ char *cmd = xasprintf(
        "for m in $(awk '{print $2}' /proc/mounts | grep '^%s' | sort -r); do umount -l $m; done",
        g_root);
    run_sh(cmd);
    tu_rmdir(g_root);
    free(g_root);
    free(g_image);
    free(g_c.dir);
    free(g_c.data);
    free(g_c.log);
    free(g_c.base);
    free(g_c.admin);
    /* The next case's set-up starts from nothing.  */
    g_c = (cluster_t){0};
    g_root = g_image = NULL;
}

/* ---- calls ---- */

static long call_ex(const char *method, const char *path, const char *body, size_t len,
                    const char *ctype, tu_response_t *r)
{
    _cleanup_free_ char *url = xasprintf("%s%s", g_c.base, path);
    const char *hdrs[] = {"Authorization: Bearer " TOKEN, NULL};
    tu_request_opts_t o = {
        .headers = hdrs, .body = body, .body_len = len, .content_type = ctype, .timeout_ms = 60000};
    if (tu_http(method, url, &o, r) < 0)
        return -1;
    return r->status;
}

static long call(const char *method, const char *path, const char *body, json_t **out)
{
    tu_response_t r;
    long st = call_ex(method, path, body, 0, NULL, &r);
    if (out)
        *out = tu_json(&r);
    tu_response_free(&r);
    return st;
}

static char *group_path(const char *g)
{
    return xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/"
                     "sandboxGroups/%s",
                     g);
}

static char *sandbox_path(const char *g, const char *s, const char *suffix)
{
    _cleanup_free_ char *gp = group_path(g);
    return xasprintf("%s/sandboxes/%s%s" API, gp, s, suffix ? suffix : "");
}

static void put_group(const char *g, const char *props)
{
    _cleanup_free_ char *gp = group_path(g);
    _cleanup_free_ char *p = xasprintf("%s" API, gp);
    _cleanup_free_ char *body =
        xasprintf("{\"location\":\"westus\",\"properties\":%s}", props ? props : "{}");
    long st = call("PUT", p, body, NULL);
    ck_assert_msg(st == 201 || st == 200, "PUT group %s: %ld", g, st);
}

static const char *prop(json_t *j, const char *key)
{
    return json_string_value(json_object_get(json_object_get(j, "properties"), key));
}

/* GET path into *cur (replacing what it held); its property key, or NULL.
 * The conditions below poll with it under tu_wait_until.  */
static const char *refetch_prop(const char *path, json_t **cur, const char *key)
{
    json_decref(*cur);
    *cur = NULL;
    return call("GET", path, NULL, cur) == 200 ? prop(*cur, key) : NULL;
}

/* Whether the property is one of the values want ("A" or "A|B").  */
static bool fetched_prop_is(const char *path, json_t **cur, const char *key, const char *want)
{
    const char *v = refetch_prop(path, cur, key);
    size_t n = v ? strlen(v) : 0;
    for (const char *w = want; n && w; w = strchr(w, '|') ? strchr(w, '|') + 1 : NULL)
        if (strncmp(w, v, n) == 0 && (w[n] == '|' || w[n] == '\0'))
            return true;
    return false;
}

/* Whether the property contains want.  */
static bool fetched_prop_has(const char *path, json_t **cur, const char *key, const char *want)
{
    const char *v = refetch_prop(path, cur, key);
    return v && strstr(v, want);
}

/* Poll a sandbox until its provisioningState is final; returns its JSON.  */
static json_t *wait_sandbox(const char *g, const char *s, int timeout_ms)
{
    _cleanup_free_ char *p = sandbox_path(g, s, NULL);
    json_t *j = NULL;
    if (tu_wait_until(fetched_prop_is(p, &j, "provisioningState", "Succeeded|Failed"), timeout_ms))
        return j;
    json_decref(j);
    return NULL;
}

static bool wait_gone(const char *path, int timeout_ms)
{
    return tu_wait_until(call("GET", path, NULL, NULL) == 404, timeout_ms);
}

static json_t *create_sandbox(const char *g, const char *s, const char *props)
{
    _cleanup_free_ char *p = sandbox_path(g, s, NULL);
    _cleanup_free_ char *body = xasprintf("{\"properties\":%s}", props ? props : "{}");
    long st = call("PUT", p, body, NULL);
    ck_assert_msg(st == 201, "PUT sandbox %s: %ld", s, st);
    json_t *j = wait_sandbox(g, s, 30000);
    ck_assert_msg(j != NULL, "sandbox %s never finished provisioning", s);
    return j;
}

static json_t *exec_sh(const char *g, const char *s, const char *script)
{
    _cleanup_free_ char *p = sandbox_path(g, s, "/exec");
    json_t *cmd = json_pack("{s:[s,s,s]}", "command", "sh", "-c", script);
    _cleanup_free_ char *body = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    json_t *j = NULL;
    long st = call("POST", p, body, &j);
    ck_assert_msg(st == 200, "exec in %s: %ld", s, st);
    return j;
}

/* What the host agent itself runs, asked with sandboxd's client certificate.  */
static size_t host_sandbox_count(const char *host);

static size_t agent_sandbox_count(void)
{
    return host_sandbox_count("local");
}

static size_t host_sandbox_count(const char *host)
{
    _cleanup_free_ char *path = xasprintf("/%s", host);
    json_t *h = NULL;
    ck_assert_int_eq(admin_call("GET", path, NULL, &h), 200);
    _cleanup_free_ char *url =
        xasprintf("%s/v1/sandboxes", json_string_value(json_object_get(h, "url")));
    json_decref(h);
    _cleanup_free_ char *ca = xasprintf("%s/pki/ca.pem", g_c.data);
    _cleanup_free_ char *cert = xasprintf("%s/pki/client.pem", g_c.data);
    _cleanup_free_ char *key = xasprintf("%s/pki/client.key", g_c.data);
    tu_request_opts_t o = {.ca_file = ca, .cert_file = cert, .key_file = key};
    tu_response_t r;
    ck_assert_int_eq(tu_http("GET", url, &o, &r), 0);
    ck_assert_int_eq(r.status, 200);
    json_t *j = tu_json(&r);
    size_t n = json_array_size(json_object_get(j, "value"));
    json_decref(j);
    tu_response_free(&r);
    return n;
}

/* ---- tests ---- */

START_TEST(test_scheduler_e2e_lifecycle)
{
    put_group("life", NULL);
    size_t before = agent_sandbox_count();
    json_t *sb = create_sandbox("life", "s1", "{\"env\":{\"GREETING\":\"hello\"}}");
    ck_assert_str_eq(prop(sb, "provisioningState"), "Succeeded");
    ck_assert_str_eq(prop(sb, "state"), "Running");
    ck_assert_str_eq(prop(sb, "host"), "local");
    ck_assert_ptr_nonnull(prop(sb, "createdAt"));
    json_decref(sb);
    ck_assert_uint_eq(agent_sandbox_count(), before + 1);
    _cleanup_free_ char *gp = group_path("life");
    _cleanup_free_ char *list = xasprintf("%s/sandboxes" API, gp);
    json_t *all = NULL;
    ck_assert_int_eq(call("GET", list, NULL, &all), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(all, "value")), 1);
    ck_assert_str_eq(json_string_value(
                         json_object_get(json_array_get(json_object_get(all, "value"), 0), "name")),
                     "s1");
    json_decref(all);

    json_t *r = exec_sh("life", "s1", "echo $GREETING; echo oops >&2; exit 3");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "hello\n");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stderr")), "oops\n");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "exitCode")), 3);
    ck_assert(json_is_false(json_object_get(r, "timedOut")));
    json_decref(r);

    if (g_python) {
        r = exec_sh("life", "s1", "python3 -c 'print(6*7)'");
        ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "42\n");
        json_decref(r);
    }

    /* files: write, read back, list, delete */
    _cleanup_free_ char *f = sandbox_path("life", "s1", "/files");
    _cleanup_free_ char *fput = xasprintf("%s&path=/tmp/a.txt", f);
    tu_response_t resp;
    ck_assert_int_eq(call_ex("PUT", fput, "data\x01\x02", 6, "application/octet-stream", &resp),
                     201);
    tu_response_free(&resp);
    ck_assert_int_eq(call_ex("GET", fput, NULL, 0, NULL, &resp), 200);
    ck_assert_uint_eq(resp.body_len, 6);
    ck_assert(memcmp(resp.body, "data\x01\x02", 6) == 0);
    tu_response_free(&resp);
    _cleanup_free_ char *flist = xasprintf("%s&path=/tmp&list=true", f);
    json_t *l = NULL;
    ck_assert_int_eq(call("GET", flist, NULL, &l), 200);
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(l, "value"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "name")), "a.txt") == 0) {
            found = true;
            ck_assert_int_eq(json_integer_value(json_object_get(e, "size")), 6);
        }
    }
    ck_assert(found);
    json_decref(l);
    r = exec_sh("life", "s1", "cat /tmp/a.txt | wc -c");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "6\n");
    json_decref(r);
    ck_assert_int_eq(call("DELETE", fput, NULL, NULL), 204);
    ck_assert_int_eq(call("GET", fput, NULL, NULL), 404);

    /* suspend / resume / exec resumes / stop / start */
    _cleanup_free_ char *sus = sandbox_path("life", "s1", "/suspend");
    _cleanup_free_ char *res = sandbox_path("life", "s1", "/resume");
    _cleanup_free_ char *stop = sandbox_path("life", "s1", "/stop");
    _cleanup_free_ char *start = sandbox_path("life", "s1", "/start");
    json_t *j = NULL;
    ck_assert_int_eq(call("POST", sus, "{}", &j), 200);
    ck_assert_str_eq(prop(j, "state"), "Suspended");
    json_decref(j);
    ck_assert_int_eq(call("POST", res, "{}", &j), 200);
    ck_assert_str_eq(prop(j, "state"), "Running");
    json_decref(j);
    ck_assert_int_eq(call("POST", sus, "{}", NULL), 200);
    r = exec_sh("life", "s1", "echo awake");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "awake\n");
    json_decref(r);
    r = exec_sh("life", "s1", "echo kept > /root/kept");
    json_decref(r);
    ck_assert_int_eq(call("POST", stop, "{}", &j), 200);
    ck_assert_str_eq(prop(j, "state"), "Stopped");
    json_decref(j);
    ck_assert_int_eq(call("POST", start, "{}", &j), 200);
    ck_assert_str_eq(prop(j, "state"), "Running");
    json_decref(j);
    r = exec_sh("life", "s1", "cat /root/kept");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "kept\n");
    json_decref(r);

    /* delete: 202, then gone from storage and from the host; a second
     * DELETE while it runs answers with the same operation */
    _cleanup_free_ char *p = sandbox_path("life", "s1", NULL);
    tu_response_t dr;
    ck_assert_int_eq(call_ex("DELETE", p, NULL, 0, NULL, &dr), 202);
    char *loc = tu_header(&dr, "Location");
    ck_assert_ptr_nonnull(loc);
    tu_response_free(&dr);
    long again = call_ex("DELETE", p, NULL, 0, NULL, &dr);
    if (again == 202) {
        char *loc2 = tu_header(&dr, "Location");
        ck_assert_str_eq(loc2, loc);
        free(loc2);
    } else {
        ck_assert_int_eq(again, 204); /* it was already gone */
    }
    free(loc);
    tu_response_free(&dr);
    ck_assert(wait_gone(p, 20000));
    ck_assert_uint_eq(agent_sandbox_count(), before);
}
END_TEST

START_TEST(test_scheduler_e2e_bad_requests)
{
    put_group("bad", "{\"scale\":{\"maxSandboxes\":1}}");
    json_t *sb = create_sandbox("bad", "only", NULL);
    json_decref(sb);
    json_t *j = NULL;
    _cleanup_free_ char *second = sandbox_path("bad", "second", NULL);
    ck_assert_int_eq(call("PUT", second, "{\"properties\":{}}", &j), 409);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                     "MaxSandboxesReached");
    json_decref(j);
    _cleanup_free_ char *bad = sandbox_path("bad", "x2", NULL);
    ck_assert_int_eq(call("PUT", bad, "{\"properties\":{\"cpu\":\"lots\"}}", NULL), 400);
    _cleanup_free_ char *exec = sandbox_path("bad", "only", "/exec");
    ck_assert_int_eq(call("POST", exec, "{\"command\":\"notalist\"}", NULL), 400);
    ck_assert_int_eq(call("POST", exec, "not json", NULL), 400);
    tu_response_t r;
    ck_assert_int_eq(call_ex("POST", exec, "{}", 2, "text/plain", &r), 415);
    tu_response_free(&r);
    _cleanup_free_ char *nope = sandbox_path("bad", "nope", "/exec");
    ck_assert_int_eq(call("POST", nope, "{\"command\":[\"true\"]}", NULL), 404);
    _cleanup_free_ char *verb = sandbox_path("bad", "only", "/explode");
    ck_assert_int_eq(call("POST", verb, "{}", NULL), 404);
    ck_assert_int_eq(call("GET", exec, NULL, NULL), 405);
    _cleanup_free_ char *files = sandbox_path("bad", "only", "/files&path=../../etc/passwd");
    long st = call("GET", files, NULL, NULL);
    ck_assert_msg(st == 400 || st == 404, "path escape answered %ld", st);
    /* locations end up in URLs: only letters, digits, spaces, hyphens */
    _cleanup_free_ char *bad_loc_g = group_path("badloc");
    _cleanup_free_ char *bad_loc = xasprintf("%s" API, bad_loc_g);
    ck_assert_int_eq(call("PUT", bad_loc, "{\"location\":\"west/us?x\"}", NULL), 400);
    ck_assert_int_eq(call("PUT", bad_loc, "{\"location\":\"west\\r\\nus\"}", NULL), 400);
    ck_assert_int_eq(call("GET", bad_loc, NULL, NULL), 404);
    /* an image that cannot be had fails the create, with the reason */
    put_group("failing", NULL);
    _cleanup_free_ char *fp = sandbox_path("failing", "f1", NULL);
    ck_assert_int_eq(call("PUT", fp, "{\"properties\":{\"image\":\"no-such/image:1\"}}", NULL),
                     201);
    j = wait_sandbox("failing", "f1", 30000);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(prop(j, "provisioningState"), "Failed");
    ck_assert_str_eq(prop(j, "state"), "Failed");
    ck_assert_ptr_nonnull(strstr(prop(j, "statusMessage"), "no-such/image"));
    json_decref(j);
    _cleanup_free_ char *fexec = sandbox_path("failing", "f1", "/exec");
    ck_assert_int_eq(call("POST", fexec, "{\"command\":[\"true\"]}", &j), 409);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                     "SandboxFailed");
    json_decref(j);
    /* PUT again: ARM's retry; it runs again (and fails again, same image) */
    ck_assert_int_eq(call("PUT", fp, "{\"properties\":{\"image\":\"no-such/image:1\"}}", &j), 200);
    ck_assert_str_eq(prop(j, "provisioningState"), "Updating");
    ck_assert_str_eq(prop(j, "state"), "Pending");
    json_decref(j);
    j = wait_sandbox("failing", "f1", 30000);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(prop(j, "provisioningState"), "Failed");
    json_decref(j);
    /* deleting the group deletes its sandboxes on the host first */
    size_t before = agent_sandbox_count();
    _cleanup_free_ char *gp = group_path("bad");
    _cleanup_free_ char *g = xasprintf("%s" API, gp);
    ck_assert_int_eq(call("DELETE", g, NULL, NULL), 202);
    ck_assert(wait_gone(g, 20000));
    ck_assert_uint_eq(agent_sandbox_count(), before - 1);
}
END_TEST

typedef struct creator {
    int first, count;
} creator_t;

static void *create_many(void *arg)
{
    creator_t *c = arg;
    for (int i = c->first; i < c->first + c->count; i++) {
        char name[32];
        snprintf(name, sizeof(name), "many-%03d", i);
        _cleanup_free_ char *p = sandbox_path("many", name, NULL);
        long st =
            call("PUT", p, "{\"properties\":{\"memoryMiB\":64,\"cpu\":0.1,\"diskMiB\":64}}", NULL);
        if (st != 201)
            return (void *)1;
    }
    return NULL;
}

START_TEST(test_scheduler_e2e_hundred_at_once)
{
    put_group("many", "{\"scale\":{\"maxSandboxes\":100}}");
    size_t before = agent_sandbox_count();
    pthread_t t[10];
    creator_t c[10];
    for (int i = 0; i < 10; i++) {
        c[i] = (creator_t){i * 10, 10};
        pthread_create(&t[i], NULL, create_many, &c[i]);
    }
    for (int i = 0; i < 10; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        ck_assert_ptr_null(rv);
    }
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "many-%03d", i);
        json_t *j = wait_sandbox("many", name, 120000);
        ck_assert_msg(j != NULL, "%s never finished", name);
        ck_assert_msg(strcmp(prop(j, "state"), "Running") == 0, "%s: %s (%s)", name,
                      prop(j, "state"), prop(j, "statusMessage"));
        json_decref(j);
    }
    ck_assert_uint_eq(agent_sandbox_count(), before + 100);
    _cleanup_free_ char *gp = group_path("many");
    _cleanup_free_ char *g = xasprintf("%s" API, gp);
    ck_assert_int_eq(call("DELETE", g, NULL, NULL), 202);
    ck_assert(wait_gone(g, 120000));
    ck_assert_uint_eq(agent_sandbox_count(), before);
}
END_TEST

/* kill -9 sandboxd with creates in flight; after a restart every accepted
 * operation ends, and storage and the host agree.  */
START_TEST(test_scheduler_e2e_crash_restart)
{
    put_group("crash", NULL);
    size_t before = agent_sandbox_count();
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        _cleanup_free_ char *p = sandbox_path("crash", name, NULL);
        ck_assert_int_eq(call("PUT", p, "{\"properties\":{}}", NULL), 201);
    }
    cluster_stop(&g_c, true);
    cluster_start(&g_c);
    int running = 0;
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        json_t *j = wait_sandbox("crash", name, 60000);
        ck_assert_msg(j != NULL, "%s never finished after the restart", name);
        if (strcmp(prop(j, "provisioningState"), "Succeeded") == 0 &&
            strcmp(prop(j, "state"), "Running") == 0)
            running++;
        else
            fprintf(stderr, "%s: %s %s (%s)\n", name, prop(j, "provisioningState"),
                    prop(j, "state"), prop(j, "statusMessage"));
        json_decref(j);
    }
    ck_assert_int_eq(running, 8);
    /* the reconcile pass has had time to remove anything unknown */
    tu_wait_until(agent_sandbox_count() == before + 8, 10000);
    ck_assert_uint_eq(agent_sandbox_count(), before + 8);
    json_t *r = exec_sh("crash", "c3", "echo alive");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "alive\n");
    json_decref(r);
    _cleanup_free_ char *gp = group_path("crash");
    _cleanup_free_ char *g = xasprintf("%s" API, gp);
    ck_assert_int_eq(call("DELETE", g, NULL, NULL), 202);
    ck_assert(wait_gone(g, 60000));
    ck_assert_uint_eq(agent_sandbox_count(), before);
}
END_TEST

/* ---- extra hosts ---- */

typedef struct extra_agent {
    char name[16];
    char *data, *log;
    int port;
    pid_t pid;
} extra_agent_t;

static void extra_start(extra_agent_t *a)
{
    _cleanup_free_ char *bin = tu_bin("sandbox-agent");
    _cleanup_free_ char *ca = xasprintf("%s/pki/ca.pem", g_c.data);
    _cleanup_free_ char *cert = xasprintf("%s/pki/agent.pem", g_c.data);
    _cleanup_free_ char *key = xasprintf("%s/pki/agent.key", g_c.data);
    _cleanup_free_ char *cg = xasprintf("sbx-e2e-%d-%s", (int)getpid(), a->name);
    if (!a->port)
        a->port = tu_free_port();
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", a->port);
    char *argv[] = {
        bin,        "--listen",        listen, "--data-dir",      a->data, "--ca",
        ca,         "--cert",          cert,   "--key",           key,     "--environment",
        "e2e-pool", "--cgroup-parent", cg,     "--default-image", g_image, NULL};
    a->pid = tu_spawn(argv, NULL, a->log);
    ck_assert(tu_wait_port(a->port, 20000));
}

static void extra_register(extra_agent_t *a)
{
    _cleanup_free_ char *path = xasprintf("/%s", a->name);
    _cleanup_free_ char *body =
        xasprintf("{\"url\":\"https://127.0.0.1:%d\",\"environment\":\"e2e-pool\"}", a->port);
    long st = admin_call("PUT", path, body, NULL);
    ck_assert_msg(st == 201 || st == 200, "register %s: %ld", a->name, st);
    tu_wait_until(host_ready(a->name), 10000);
    ck_assert(host_ready(a->name));
}

static void admin_post(const char *host, const char *action)
{
    _cleanup_free_ char *path = xasprintf("/%s/%s", host, action);
    ck_assert_int_eq(admin_call("POST", path, NULL, NULL), 200);
}

static extra_agent_t g_extra[3];

static void extras_up(void)
{
    for (int i = 0; i < 3; i++) {
        extra_agent_t *a = &g_extra[i];
        if (a->pid > 0)
            continue;
        snprintf(a->name, sizeof(a->name), "h%d", i + 1);
        if (!a->data) {
            a->data = xasprintf("%s/%s", g_root, a->name);
            a->log = xasprintf("%s/%s.log", g_root, a->name);
        }
        extra_start(a);
        extra_register(a);
    }
}

#define POOL_ENV                                                                                   \
    "{\"environmentId\":\"/subscriptions/" SUB "/resourceGroups/rg/providers/"                     \
    "Microsoft.App/managedEnvironments/e2e-pool\"}"

START_TEST(test_scheduler_e2e_spread_over_hosts)
{
    extras_up();
    put_group("pool", POOL_ENV);
    int per_host[3] = {0};
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p%d", i);
        json_t *j = create_sandbox("pool", name, "{\"cpu\":0.1,\"memoryMiB\":64}");
        ck_assert_str_eq(prop(j, "state"), "Running");
        const char *host = prop(j, "host");
        ck_assert_msg(host && host[0] == 'h', "placed outside the pool: %s", host);
        per_host[host[1] - '1']++;
        json_decref(j);
    }
    /* Spread: every host gets some, none gets half.  */
    for (int i = 0; i < 3; i++)
        ck_assert_msg(per_host[i] >= 1 && per_host[i] <= 3, "host h%d got %d of 6", i + 1,
                      per_host[i]);
    /* a drained host takes nothing new */
    admin_post("h1", "drain");
    json_t *j = create_sandbox("pool", "p6", "{\"cpu\":0.1,\"memoryMiB\":64}");
    ck_assert_str_ne(prop(j, "host"), "h1");
    json_decref(j);
    admin_post("h1", "ready");
}
END_TEST

/* A host that dies: its sandboxes are reported Failed within the bound
 * (5 s without health, plus a pass); back, they are Running again and the
 * host takes new work.  */
START_TEST(test_scheduler_e2e_host_dies_and_returns)
{
    extras_up();
    put_group("dying", POOL_ENV);
    admin_post("h2", "drain");
    admin_post("h3", "drain");
    json_t *j = create_sandbox("dying", "d1", "{\"cpu\":0.1,\"memoryMiB\":64}");
    ck_assert_str_eq(prop(j, "host"), "h1");
    json_decref(j);
    kill(g_extra[0].pid, SIGKILL);
    waitpid(g_extra[0].pid, NULL, 0);
    g_extra[0].pid = -1;
    int64_t killed = sbx_monotonic_ms();
    _cleanup_free_ char *p = sandbox_path("dying", "d1", NULL);
    const char *state = NULL;
    json_t *cur = NULL;
    while (sbx_monotonic_ms() - killed < 15000) {
        json_decref(cur);
        cur = NULL;
        ck_assert_int_eq(call("GET", p, NULL, &cur), 200);
        state = prop(cur, "state");
        if (state && strcmp(state, "Failed") == 0)
            break;
        usleep(100000);
    }
    ck_assert_msg(state && strcmp(state, "Failed") == 0, "not reported Failed in 15 s");
    ck_assert_ptr_nonnull(strstr(prop(cur, "statusMessage"), "stopped answering"));
    json_decref(cur);
    ck_assert_int_lt(sbx_monotonic_ms() - killed, 9000);
    extra_start(&g_extra[0]); /* same port and data dir */
    tu_wait_until(host_ready("h1"), 15000);
    ck_assert(host_ready("h1"));
    cur = NULL;
    tu_wait_until(fetched_prop_is(p, &cur, "state", "Running"), 10000);
    state = prop(cur, "state");
    if (!state || strcmp(state, "Running") != 0) {
        _cleanup_free_ char *cmd = xasprintf("grep -v '\"access\"' '%s' | tail -30; tail -5 '%s'",
                                             g_c.log, g_extra[0].log);
        run_sh(cmd);
    }
    ck_assert_msg(state && strcmp(state, "Running") == 0, "the sandbox did not come back: %s",
                  state);
    json_decref(cur);
    json_t *r = exec_sh("dying", "d1", "echo back");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "back\n");
    json_decref(r);
    j = create_sandbox("dying", "d2", "{\"cpu\":0.1,\"memoryMiB\":64}");
    ck_assert_str_eq(prop(j, "host"), "h1");
    ck_assert_str_eq(prop(j, "state"), "Running");
    json_decref(j);
    admin_post("h2", "ready");
    admin_post("h3", "ready");
}
END_TEST

/* How many sandboxes storage places on a host (the admin API's count).  */
static size_t placed_on(const char *host)
{
    _cleanup_free_ char *path = xasprintf("/%s", host);
    json_t *j = NULL;
    ck_assert_int_eq(admin_call("GET", path, NULL, &j), 200);
    size_t n = (size_t)json_integer_value(json_object_get(j, "sandboxes"));
    json_decref(j);
    return n;
}

/* hostFailurePolicy Recreate: the sandboxes of a host that dies are made
 * again on another host of the pool.  */
START_TEST(test_scheduler_e2e_recreate_on_host_failure)
{
    extras_up();
    put_group("phoenix", "{\"environmentId\":\"/subscriptions/" SUB "/resourceGroups/rg/providers/"
                         "Microsoft.App/managedEnvironments/e2e-pool\","
                         "\"hostFailurePolicy\":\"Recreate\"}");
    admin_post("h2", "drain");
    admin_post("h3", "drain");
    json_t *j = create_sandbox("phoenix", "r1", "{\"cpu\":0.1,\"memoryMiB\":64}");
    ck_assert_str_eq(prop(j, "host"), "h1");
    json_decref(j);
    admin_post("h2", "ready");
    kill(g_extra[0].pid, SIGKILL);
    waitpid(g_extra[0].pid, NULL, 0);
    g_extra[0].pid = -1;
    _cleanup_free_ char *p = sandbox_path("phoenix", "r1", NULL);
    json_t *cur = NULL;
    tu_wait_until(fetched_prop_is(p, &cur, "host", "h2") &&
                      strcmp(prop(cur, "state") ? prop(cur, "state") : "", "Running") == 0,
                  20000);
    const char *host = prop(cur, "host"), *state = prop(cur, "state");
    ck_assert_msg(host && strcmp(host, "h2") == 0 && state && strcmp(state, "Running") == 0,
                  "not recreated on h2: host %s, state %s", host, state);
    json_decref(cur);
    json_t *r = exec_sh("phoenix", "r1", "echo reborn");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "reborn\n");
    json_decref(r);
    /* h1 comes back: its stale copy is destroyed, the sandbox stays on h2 */
    extra_start(&g_extra[0]);
    tu_wait_until(host_ready("h1"), 15000);
    ck_assert(host_ready("h1"));
    admin_post("h3", "ready");
    j = NULL;
    ck_assert_int_eq(call("GET", p, NULL, &j), 200);
    ck_assert_str_eq(prop(j, "host"), "h2");
    json_decref(j);
    /* whatever h1 still ran that storage no longer places there (r1's old
     * copy) is destroyed: h1 runs exactly what storage places on it */
    size_t keep = placed_on("h1");
    tu_wait_until(host_sandbox_count("h1") <= keep, 10000);
    ck_assert_uint_eq(host_sandbox_count("h1"), keep);
}
END_TEST

static void extras_down(void)
{
    for (int i = 0; i < 3; i++) {
        if (g_extra[i].pid > 0)
            tu_stop(g_extra[i].pid, 20000);
        free(g_extra[i].data);
        free(g_extra[i].log);
        g_extra[i] = (extra_agent_t){0}; /* the next case starts its own */
    }
}

/* idleTimeoutSeconds suspends, the next exec resumes; maxLifetimeSeconds
 * deletes.  */
START_TEST(test_scheduler_e2e_idle_and_lifetime)
{
    put_group("timers", "{\"sandboxDefaults\":{\"idleTimeoutSeconds\":1}}");
    json_t *j = create_sandbox("timers", "idle", NULL);
    json_decref(j);
    _cleanup_free_ char *p = sandbox_path("timers", "idle", NULL);
    json_t *cur = NULL;
    tu_wait_until(fetched_prop_is(p, &cur, "state", "Suspended"), 10000);
    const char *state = prop(cur, "state");
    ck_assert_msg(state && strcmp(state, "Suspended") == 0, "idle sandbox not suspended: %s",
                  state);
    json_decref(cur);
    json_t *r = exec_sh("timers", "idle", "echo resumed");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "resumed\n");
    json_decref(r);

    j = create_sandbox("timers", "short", "{\"maxLifetimeSeconds\":2,\"idleTimeoutSeconds\":0}");
    json_decref(j);
    _cleanup_free_ char *sp = sandbox_path("timers", "short", NULL);
    ck_assert_msg(wait_gone(sp, 10000), "sandbox past its lifetime was not deleted");
}
END_TEST

/* lifetimeEndAction Suspend (here the group's default): the end of the
 * lifetime suspends, a resume (explicit, or an exec's) restarts the clock;
 * a sandbox's own Delete overrides the default.  */
START_TEST(test_scheduler_e2e_lifetime_suspend)
{
    _cleanup_free_ char *gp = group_path("ends");
    _cleanup_free_ char *gpath = xasprintf("%s" API, gp);
    json_t *j = NULL;
    ck_assert_int_eq(call("PUT", gpath,
                          "{\"location\":\"westus\",\"properties\":{\"sandboxDefaults\":"
                          "{\"lifetimeEndAction\":\"Pause\"}}}",
                          &j),
                     400);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "target")),
                     "properties.sandboxDefaults.lifetimeEndAction");
    json_decref(j);
    put_group("ends", "{\"sandboxDefaults\":{\"lifetimeEndAction\":\"Suspend\","
                      "\"maxLifetimeSeconds\":2}}");
    _cleanup_free_ char *bad = sandbox_path("ends", "bad", NULL);
    ck_assert_int_eq(call("PUT", bad, "{\"properties\":{\"lifetimeEndAction\":5}}", NULL), 400);

    j = create_sandbox("ends", "s1", NULL);
    json_decref(j);
    json_decref(exec_sh("ends", "s1", "echo kept > /tmp/k"));
    _cleanup_free_ char *mp = sandbox_path("ends", "s1", "/metrics");
    j = NULL;
    ck_assert_int_eq(call("GET", mp, NULL, &j), 200);
    ck_assert_int_gt(json_integer_value(json_object_get(j, "memoryUsedBytes")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "memoryLimitBytes")), 512 << 20);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "diskLimitBytes")), 1024 << 20);
    ck_assert_int_gt(json_integer_value(json_object_get(j, "diskUsedBytes")), 0);
    ck_assert_int_gt(json_integer_value(json_object_get(j, "cpuUsedMicroseconds")), 0);
    json_decref(j);
    ck_assert_int_eq(call("POST", mp, "{}", NULL), 405);
    _cleanup_free_ char *p = sandbox_path("ends", "s1", NULL);
    json_t *cur = NULL;
    tu_wait_until(fetched_prop_is(p, &cur, "state", "Suspended"), 10000);
    ck_assert_msg(prop(cur, "state") && strcmp(prop(cur, "state"), "Suspended") == 0,
                  "not suspended at its end: %s", prop(cur, "state"));
    ck_assert_ptr_nonnull(strstr(prop(cur, "statusMessage"), "maxLifetimeSeconds"));

    _cleanup_free_ char *resume = sandbox_path("ends", "s1", "/resume");
    j = NULL;
    ck_assert_int_eq(call("POST", resume, "{}", &j), 200);
    ck_assert_str_eq(prop(j, "state"), "Running");
    _cleanup_free_ char *started = xstrdup(prop(j, "lifetimeStartedAt"));
    json_decref(j);
    tu_wait_until(fetched_prop_is(p, &cur, "state", "Suspended"), 10000);
    ck_assert_str_eq(prop(cur, "state"), "Suspended");

    /* An exec resumes it on the host; the next pass restarts the clock.  */
    j = exec_sh("ends", "s1", "cat /tmp/k");
    ck_assert_str_eq(json_string_value(json_object_get(j, "stdout")), "kept\n");
    json_decref(j);
    tu_wait_until(!fetched_prop_is(p, &cur, "lifetimeStartedAt", started), 5000);
    ck_assert_str_ne(prop(cur, "lifetimeStartedAt"), started);
    json_decref(cur);

    j = create_sandbox("ends", "s2", "{\"lifetimeEndAction\":\"Delete\"}");
    json_decref(j);
    _cleanup_free_ char *p2 = sandbox_path("ends", "s2", NULL);
    ck_assert_msg(wait_gone(p2, 10000), "a Delete sandbox past its lifetime was not deleted");
    delete_group("ends");
}
END_TEST

/* Whether a 200 head comes on fd within 10 s.  */
static bool head_is_200(int fd)
{
    char head[1024];
    size_t len = 0;
    for (int64_t until = sbx_monotonic_ms() + 10000;
         len < sizeof head - 1 && sbx_monotonic_ms() < until;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        ssize_t n = recv(fd, head + len, sizeof head - 1 - len, 0);
        if (n <= 0)
            return false;
        len += (size_t)n;
        head[len] = '\0';
        if (strstr(head, "\r\n\r\n"))
            return strncmp(head, "HTTP/1.1 200", 12) == 0;
    }
    return false;
}

/* A watch stream left open: the fd once its 200 head is in, else -1.  */
static int watch_open(const char *path)
{
    int port = atoi(strrchr(g_c.base, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    _cleanup_free_ char *req =
        xasprintf("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " TOKEN "\r\n\r\n", path);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req) && head_is_200(fd);
    if (!ok && fd >= 0)
        close(fd);
    return ok ? fd : -1;
}

/* GET .../watch streams a directory's changes until it is removed; bad
 * paths are refused.  A process of the sandbox makes the changes while
 * the watch runs.  */
START_TEST(test_scheduler_e2e_watch)
{
    put_group("watch", NULL);
    json_decref(create_sandbox("watch", "w1", NULL));
    json_decref(exec_sh("watch", "w1", "mkdir -p /tmp/wd/sub && echo x > /tmp/file"));
    _cleanup_free_ char *procs = sandbox_path("watch", "w1", "/processes");
    ck_assert_int_eq(call("POST", procs,
                          "{\"command\":[\"sh\",\"-c\",\"sleep 2; echo a > /tmp/wd/f; "
                          "touch /tmp/wd/sub/g; rm -rf /tmp/wd\"]}",
                          NULL),
                     201);
    _cleanup_free_ char *w = sandbox_path("watch", "w1", "/watch");
    _cleanup_free_ char *ok = xasprintf("%s&path=/tmp/wd&recursive=true", w);
    tu_response_t r;
    ck_assert_int_eq(call_ex("GET", ok, NULL, 0, NULL, &r), 200);
    _cleanup_free_ char *body = xstrndup(r.body ? r.body : "", r.body_len);
    tu_response_free(&r);
    ck_assert_msg(strstr(body, "event: start\n"), "%s", body);
    ck_assert_msg(strstr(body, "{\"name\":\"f\",\"type\":\"create\",\"isDir\":false}"), "%s", body);
    ck_assert_msg(strstr(body, "{\"name\":\"sub/g\",\"type\":\"create\""), "%s", body);
    ck_assert_msg(strstr(body, "event: end\n"), "%s", body);

    /* A sandbox holds at most 16 open watches; the 17th gets 429.  */
    json_decref(exec_sh("watch", "w1", "mkdir -p /tmp/wd"));
    int open_fds[16];
    for (int i = 0; i < 16; i++) {
        open_fds[i] = watch_open(ok);
        ck_assert_msg(open_fds[i] >= 0, "watch %d was not answered with 200", i);
    }
    tu_response_t over;
    ck_assert_int_eq(call_ex("GET", ok, NULL, 0, NULL, &over), 429);
    _cleanup_json_ json_t *why = tu_json(&over);
    tu_response_free(&over);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(why, "error"), "code")),
                     "TooManyWatches");
    for (int i = 0; i < 16; i++)
        close(open_fds[i]);

    _cleanup_free_ char *none = xasprintf("%s&path=/tmp/none", w);
    _cleanup_free_ char *file = xasprintf("%s&path=/tmp/file", w);
    ck_assert_int_eq(call("GET", w, NULL, NULL), 400);
    ck_assert_int_eq(call("GET", none, NULL, NULL), 404);
    ck_assert_int_eq(call("GET", file, NULL, NULL) / 100, 4);
    delete_group("watch");
}
END_TEST

static bool wait_agent_count(size_t want, int timeout_ms)
{
    tu_wait_until(agent_sandbox_count() == want, timeout_ms);
    return agent_sandbox_count() == want;
}

/* scale.readySandboxes keeps started sandboxes; a create that asks for
 * nothing but the defaults takes one and is Running in its 201.  */
START_TEST(test_scheduler_e2e_warm_pool)
{
    size_t before = agent_sandbox_count();
    put_group("warm", "{\"scale\":{\"readySandboxes\":2,\"maxSandboxes\":10}}");
    ck_assert_msg(wait_agent_count(before + 2, 20000), "the pool was not filled");
    _cleanup_free_ char *p = sandbox_path("warm", "w1", NULL);
    json_t *j = NULL;
    tu_response_t r;
    ck_assert_int_eq(call_ex("PUT", p, "{\"properties\":{}}", 0, NULL, &r), 201);
    j = tu_json(&r);
    tu_response_free(&r);
    ck_assert_str_eq(prop(j, "provisioningState"), "Succeeded");
    ck_assert_str_eq(prop(j, "state"), "Running");
    json_decref(j);
    json_t *out = exec_sh("warm", "w1", "echo warm");
    ck_assert_str_eq(json_string_value(json_object_get(out, "stdout")), "warm\n");
    json_decref(out);
    /* the pool is refilled: w1 plus two ready ones */
    ck_assert_msg(wait_agent_count(before + 3, 20000), "the pool was not refilled");
    /* asking for more than the defaults is a cold start */
    _cleanup_free_ char *p2 = sandbox_path("warm", "w2", NULL);
    ck_assert_int_eq(call_ex("PUT", p2, "{\"properties\":{\"memoryMiB\":128}}", 0, NULL, &r), 201);
    j = tu_json(&r);
    tu_response_free(&r);
    ck_assert_str_eq(prop(j, "provisioningState"), "InProgress");
    json_decref(j);
    j = wait_sandbox("warm", "w2", 30000);
    ck_assert_str_eq(prop(j, "state"), "Running");
    json_decref(j);
    /* deleting the group takes the pool with it */
    _cleanup_free_ char *gp = group_path("warm");
    _cleanup_free_ char *g = xasprintf("%s" API, gp);
    ck_assert_int_eq(call("DELETE", g, NULL, NULL), 202);
    ck_assert(wait_gone(g, 30000));
    ck_assert_msg(wait_agent_count(before, 10000), "pool members outlived their group");
}
END_TEST

/* A PUT of an existing sandbox (GET-modify-PUT, as the Azure CLI and
 * Terraform do) changes metadata only: the sandbox keeps running on its
 * host through the reconcile passes that follow.  */
START_TEST(test_scheduler_e2e_replace_keeps_sandbox)
{
    put_group("again", NULL);
    size_t before = agent_sandbox_count();
    json_t *j = create_sandbox("again", "s1", "{\"idleTimeoutSeconds\":600}");
    ck_assert_str_eq(prop(j, "state"), "Running");
    json_decref(j);
    _cleanup_free_ char *p = sandbox_path("again", "s1", NULL);
    ck_assert_int_eq(call("PUT", p, "{\"properties\":{\"idleTimeoutSeconds\":600}}", &j), 200);
    ck_assert_str_eq(prop(j, "provisioningState"), "Succeeded");
    ck_assert_str_eq(prop(j, "state"), "Running");
    json_decref(j);
    /* Three reconcile passes: the host's sandbox must stay known.  */
    int64_t until = sbx_monotonic_ms() + 3000;
    while (sbx_monotonic_ms() < until) {
        ck_assert_uint_eq(agent_sandbox_count(), before + 1);
        ck_assert_int_eq(call("GET", p, NULL, &j), 200);
        ck_assert_str_eq(prop(j, "state"), "Running");
        json_decref(j);
        usleep(100000);
    }
    json_t *r = exec_sh("again", "s1", "echo still here");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "still here\n");
    json_decref(r);
    ck_assert_int_eq(call("DELETE", p, NULL, NULL), 202);
    ck_assert(wait_gone(p, 30000));
    /* Deleted through its runtime id, not left to the reconcile pass.  */
    ck_assert_uint_eq(agent_sandbox_count(), before);
}
END_TEST

/* A group's delete destroys its sandboxes before the group goes, whatever
 * its resource group is called (here "sandboxes").  */
START_TEST(test_scheduler_e2e_group_delete_in_rg_named_sandboxes)
{
    size_t before = agent_sandbox_count();
    const char *gp = "/subscriptions/" SUB "/resourceGroups/sandboxes/providers/Microsoft.App/"
                     "sandboxGroups/odd";
    _cleanup_free_ char *g = xasprintf("%s" API, gp);
    ck_assert_int_eq(call("PUT", g, "{\"location\":\"westus\"}", NULL), 201);
    _cleanup_free_ char *sp = xasprintf("%s/sandboxes/s1" API, gp);
    ck_assert_int_eq(call("PUT", sp, "{\"properties\":{}}", NULL), 201);
    int64_t until = sbx_monotonic_ms() + 30000;
    json_t *j = NULL;
    const char *ps = NULL;
    do {
        json_decref(j);
        j = NULL;
        ck_assert_int_eq(call("GET", sp, NULL, &j), 200);
        ps = prop(j, "provisioningState");
        if (ps && strcmp(ps, "InProgress") != 0)
            break;
        usleep(20000);
    } while (sbx_monotonic_ms() < until);
    ck_assert_str_eq(ps, "Succeeded");
    json_decref(j);
    ck_assert_uint_eq(agent_sandbox_count(), before + 1);
    ck_assert_int_eq(call("DELETE", g, NULL, NULL), 202);
    ck_assert(wait_gone(g, 30000));
    ck_assert_uint_eq(agent_sandbox_count(), before);
}
END_TEST

/* ---- admission: hosts that report small capacities ---- */

static extra_agent_t g_small[3];

/* An agent in environment env whose health reports what `cap` (a
 * SANDBOX_AGENT_CAPACITY_*=N setting) leaves of this machine.  */
static void small_host(extra_agent_t *a, const char *name, const char *env, const char *cap)
{
    if (a->pid > 0)
        return;
    snprintf(a->name, sizeof(a->name), "%s", name);
    if (!a->data) {
        a->data = xasprintf("%s/%s", g_root, a->name);
        a->log = xasprintf("%s/%s.log", g_root, a->name);
    }
    _cleanup_free_ char *bin = tu_bin("sandbox-agent");
    _cleanup_free_ char *ca = xasprintf("%s/pki/ca.pem", g_c.data);
    _cleanup_free_ char *cert = xasprintf("%s/pki/agent.pem", g_c.data);
    _cleanup_free_ char *key = xasprintf("%s/pki/agent.key", g_c.data);
    _cleanup_free_ char *cg = xasprintf("sbx-e2e-%d-%s", (int)getpid(), a->name);
    a->port = tu_free_port();
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", a->port);
    char *argv[] = {
        bin,         "--listen",        listen, "--data-dir",      a->data, "--ca",
        ca,          "--cert",          cert,   "--key",           key,     "--environment",
        (char *)env, "--cgroup-parent", cg,     "--default-image", g_image, NULL};
    char *envp[] = {(char *)cap, NULL};
    a->pid = tu_spawn(argv, envp, a->log);
    ck_assert(tu_wait_port(a->port, 20000));
    _cleanup_free_ char *path = xasprintf("/%s", a->name);
    _cleanup_free_ char *body =
        xasprintf("{\"url\":\"https://127.0.0.1:%d\",\"environment\":\"%s\"}", a->port, env);
    long st = admin_call("PUT", path, body, NULL);
    ck_assert_msg(st == 201 || st == 200, "register %s: %ld", a->name, st);
    tu_wait_until(host_ready(a->name), 10000);
    ck_assert(host_ready(a->name));
}

static void small_hosts_down(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(g_small); i++) {
        if (g_small[i].pid > 0)
            tu_stop(g_small[i].pid, 20000);
        free(g_small[i].data);
        free(g_small[i].log);
        g_small[i] = (extra_agent_t){0}; /* the next case starts its own */
    }
}

#define ENV_OF(e)                                                                                  \
    "{\"environmentId\":\"/subscriptions/" SUB "/resourceGroups/rg/providers/"                     \
    "Microsoft.App/managedEnvironments/" e "\"}"

static void put_sandbox(const char *g, const char *s, const char *props)
{
    _cleanup_free_ char *p = sandbox_path(g, s, NULL);
    _cleanup_free_ char *body = xasprintf("{\"properties\":%s}", props);
    long st = call("PUT", p, body, NULL);
    ck_assert_msg(st == 201, "PUT sandbox %s: %ld", s, st);
}

/* Poll a sandbox until property key contains want; its JSON, or NULL.  */
static json_t *wait_prop(const char *g, const char *s, const char *key, const char *want,
                         int timeout_ms)
{
    _cleanup_free_ char *p = sandbox_path(g, s, NULL);
    json_t *j = NULL;
    if (tu_wait_until(fetched_prop_has(p, &j, key, want), timeout_ms))
        return j;
    json_decref(j);
    return NULL;
}

static void delete_sandbox(const char *g, const char *s)
{
    _cleanup_free_ char *p = sandbox_path(g, s, NULL);
    ck_assert_int_eq(call("DELETE", p, NULL, NULL), 202);
    ck_assert(wait_gone(p, 30000));
}

/* ---- files streamed through sandboxd and the agent ---- */

/* The byte at offset i of every file these tests move: it changes from
 * byte to byte and from block to block, so a lost, doubled or reordered
 * chunk shows.  */
static unsigned char file_byte(uint64_t i)
{
    return (unsigned char)(i ^ (i >> 8) ^ (i >> 16) ^ 0x5a);
}

/* One transfer that holds nothing: an upload generates the bytes, a
 * download checks them as they come.  stop_after > 0 cuts it there.  */
typedef struct xfer {
    bool upload;
    char *url;
    uint64_t size; /* upload: bytes to send */
    uint64_t stop_after;
    bool chunked;  /* upload without a Content-Length */
    uint64_t done; /* bytes moved */
    bool bad_byte;
    long status;     /* 0: no answer */
    char body[1024]; /* a JSON reply (upload, or an error) */
    size_t body_len;
    CURL *c;
} xfer_t;

static size_t xfer_read(char *buf, size_t size, size_t n, void *ud)
{
    xfer_t *x = ud;
    if (x->stop_after && x->done >= x->stop_after)
        return CURL_READFUNC_ABORT;
    size_t k = size * n;
    if (k > x->size - x->done)
        k = (size_t)(x->size - x->done);
    for (size_t i = 0; i < k; i++)
        buf[i] = (char)file_byte(x->done + i);
    x->done += k;
    return k;
}

static size_t xfer_write(char *p, size_t size, size_t n, void *ud)
{
    xfer_t *x = ud;
    size_t k = size * n;
    long status = 0;
    curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &status);
    if (x->upload || status != 200) {
        size_t room = sizeof(x->body) - 1 - x->body_len;
        memcpy(x->body + x->body_len, p, k < room ? k : room);
        x->body_len += k < room ? k : room;
        x->body[x->body_len] = '\0';
        return k;
    }
    for (size_t i = 0; i < k; i++)
        if ((unsigned char)p[i] != file_byte(x->done + i))
            x->bad_byte = true;
    x->done += k;
    if (x->stop_after && x->done >= x->stop_after)
        return 0;
    return k;
}

static void *xfer_run(void *arg)
{
    xfer_t *x = arg;
    x->c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    h = curl_slist_append(h, "Content-Type: application/octet-stream");
    h = curl_slist_append(h, "Expect:");
    if (x->upload && x->chunked)
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
    curl_easy_setopt(x->c, CURLOPT_URL, x->url);
    curl_easy_setopt(x->c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, xfer_write);
    curl_easy_setopt(x->c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->c, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(x->c, CURLOPT_NOSIGNAL, 1L);
    if (x->upload) {
        curl_easy_setopt(x->c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(x->c, CURLOPT_READFUNCTION, xfer_read);
        curl_easy_setopt(x->c, CURLOPT_READDATA, x);
        if (!x->chunked)
            curl_easy_setopt(x->c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->size);
    }
    if (curl_easy_perform(x->c) == CURLE_OK)
        curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &x->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(x->c);
    return NULL;
}

/* n transfers at once; xs[i].url etc. set by the caller.  */
static void xfer_parallel(xfer_t *xs, size_t n)
{
    pthread_t t[32];
    ck_assert_uint_le(n, 32);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, xfer_run, &xs[i]), 0);
    for (size_t i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

static char *files_url(const char *g, const char *s, const char *file)
{
    _cleanup_free_ char *p = sandbox_path(g, s, "/files");
    return xasprintf("%s%s&path=%s", g_c.base, p, file);
}

/* The local agent: sandboxd's child.  */
static pid_t agent_pid(void)
{
    _cleanup_free_ char *cmd =
        xasprintf("pgrep -P %d -x sandbox-agent || pgrep -P %d sandbox-agent", g_c.pid, g_c.pid);
    FILE *f = popen(cmd, "r");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        pclose(f);
    }
    return pid;
}

static long proc_kib(pid_t pid, const char *field)
{
    _cleanup_free_ char *p = xasprintf("/proc/%d/status", pid);
    FILE *f = fopen(p, "re");
    ck_assert_ptr_nonnull(f);
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

/* Forget the peak so far: VmHWM starts again from VmRSS.  */
static void hwm_reset(pid_t pid)
{
    _cleanup_free_ char *p = xasprintf("/proc/%d/clear_refs", pid);
    FILE *f = fopen(p, "we");
    ck_assert_ptr_nonnull(f);
    fputs("5", f);
    fclose(f);
}

static json_t *list_dir(const char *g, const char *s, const char *dir)
{
    _cleanup_free_ char *p = sandbox_path(g, s, "/files");
    _cleanup_free_ char *q = xasprintf("%s&path=%s&list=true", p, dir);
    json_t *j = NULL;
    ck_assert_int_eq(call("GET", q, NULL, &j), 200);
    return j;
}

/* Total size of the files in dir, and whether a temporary upload file is
 * among them.  */
static uint64_t dir_bytes(const char *g, const char *s, const char *dir, bool *temp_left)
{
    json_t *j = list_dir(g, s, dir);
    uint64_t total = 0;
    size_t i;
    json_t *e;
    *temp_left = false;
    json_array_foreach(json_object_get(j, "value"), i, e)
    {
        total += (uint64_t)json_integer_value(json_object_get(e, "size"));
        if (strstr(json_string_value(json_object_get(e, "name")), "upload"))
            *temp_left = true;
    }
    json_decref(j);
    return total;
}

/* dir_bytes once no upload is under way any more (a cut one is cleaned
 * up by the agent as soon as it notices).  */
static uint64_t settled_bytes(const char *g, const char *s, const char *dir)
{
    bool temp_left = true;
    uint64_t bytes = 0;
    int64_t t0 = sbx_monotonic_ms(), deadline = t0 + 20000;
    while (temp_left && sbx_monotonic_ms() < deadline) {
        bytes = dir_bytes(g, s, dir, &temp_left);
        if (temp_left)
            usleep(50000);
    }
    ck_assert_msg(!temp_left, "an upload left its temporary file for 20 s");
    if (sbx_monotonic_ms() - t0 > 5000) /* slow, though not wrong: say so */
        fprintf(stderr, "settled_bytes: a cut upload's temporary file lasted %lld ms\n",
                (long long)(sbx_monotonic_ms() - t0));
    return bytes;
}

static void delete_group(const char *g)
{
    _cleanup_free_ char *gp = group_path(g);
    _cleanup_free_ char *p = xasprintf("%s" API, gp);
    ck_assert_int_eq(call("DELETE", p, NULL, NULL), 202);
    ck_assert(wait_gone(p, 60000));
}

/* Two sandboxes whose memory fits a host alone but not together: the
 * second waits Pending saying so, runs once the first is deleted; a third
 * that never gets room fails after the bound.  */
START_TEST(test_scheduler_e2e_admission_memory_sums)
{
    small_host(&g_small[0], "s1", "e2e-small", "SANDBOX_AGENT_CAPACITY_MEMORY_MIB=1000");
    put_group("small", ENV_OF("e2e-small"));
    const char *spec = "{\"cpu\":0.1,\"memoryMiB\":600,\"diskMiB\":64}";
    json_t *j = create_sandbox("small", "m1", spec);
    ck_assert_str_eq(prop(j, "state"), "Running");
    ck_assert_str_eq(prop(j, "host"), "s1");
    json_decref(j);
    put_sandbox("small", "m2", spec);
    j = wait_prop("small", "m2", "statusMessage", "memory", 10000);
    ck_assert_msg(j != NULL, "m2 does not wait for memory");
    ck_assert_str_eq(prop(j, "state"), "Pending");
    ck_assert_str_eq(prop(j, "provisioningState"), "InProgress");
    ck_assert_msg(strstr(prop(j, "statusMessage"), "largest free: 400 MiB"), "%s",
                  prop(j, "statusMessage"));
    json_decref(j);
    delete_sandbox("small", "m1");
    j = wait_sandbox("small", "m2", 8000);
    ck_assert_msg(j != NULL, "m2 did not start once m1 was gone");
    ck_assert_str_eq(prop(j, "state"), "Running");
    ck_assert_str_eq(prop(j, "statusMessage"), "");
    json_decref(j);
    int64_t put_at = sbx_monotonic_ms();
    put_sandbox("small", "m3", spec);
    j = wait_sandbox("small", "m3", 30000);
    ck_assert_msg(j != NULL, "m3 neither ran nor failed");
    ck_assert_str_eq(prop(j, "provisioningState"), "Failed");
    ck_assert_str_eq(prop(j, "state"), "Failed");
    const char *msg = prop(j, "statusMessage");
    ck_assert_msg(strstr(msg, "within " E2E_PLACEMENT_TIMEOUT " s") && strstr(msg, "memory"), "%s",
                  msg);
    ck_assert_int_ge(sbx_monotonic_ms() - put_at, atoi(E2E_PLACEMENT_TIMEOUT) * 1000 - 1000);
    json_decref(j);
    delete_group("small");
}
END_TEST

/* The pids limits of a host's sandboxes are budgeted: two fit this
 * host's pid budget, the third waits until one goes.  */
START_TEST(test_scheduler_e2e_admission_pids)
{
    /* 300 times the cluster's overcommit of 8: 2,400 pids, two sandboxes
     * of 1,024 */
    small_host(&g_small[1], "s2", "e2e-pids", "SANDBOX_AGENT_CAPACITY_PIDS=300");
    put_group("pidsg", ENV_OF("e2e-pids"));
    const char *spec = "{\"cpu\":0.1,\"memoryMiB\":64,\"diskMiB\":64}";
    for (int i = 1; i <= 2; i++) {
        char name[8];
        snprintf(name, sizeof(name), "p%d", i);
        json_t *j = create_sandbox("pidsg", name, spec);
        ck_assert_str_eq(prop(j, "state"), "Running");
        json_decref(j);
    }
    put_sandbox("pidsg", "p3", spec);
    json_t *j = wait_prop("pidsg", "p3", "statusMessage", "pids", 10000);
    ck_assert_msg(j != NULL, "p3 does not wait for pids");
    ck_assert_str_eq(prop(j, "state"), "Pending");
    json_decref(j);
    delete_sandbox("pidsg", "p1");
    j = wait_sandbox("pidsg", "p3", 8000);
    ck_assert_msg(j != NULL, "p3 did not start once p1 was gone");
    ck_assert_str_eq(prop(j, "state"), "Running");
    json_decref(j);
    delete_group("pidsg");
}
END_TEST

/* What no host could ever take fails at once, saying why; a diskMiB past
 * the server's maximum is refused by the API.  */
START_TEST(test_scheduler_e2e_admission_fails_fast)
{
    small_host(&g_small[0], "s1", "e2e-small", "SANDBOX_AGENT_CAPACITY_MEMORY_MIB=1000");
    put_group("never", NULL);
    int64_t t0 = sbx_monotonic_ms();
    /* No agent here offers microvm yet (gvisor may be offered).  */
    put_sandbox("never", "mv", "{\"isolation\":\"microvm\"}");
    json_t *j = wait_sandbox("never", "mv", 8000);
    ck_assert_msg(j != NULL, "a microvm sandbox stayed Pending");
    ck_assert_str_eq(prop(j, "provisioningState"), "Failed");
    ck_assert_str_eq(prop(j, "state"), "Failed");
    ck_assert_msg(strstr(prop(j, "statusMessage"), "offers the 'microvm' isolation"), "%s",
                  prop(j, "statusMessage"));
    ck_assert_int_lt(sbx_monotonic_ms() - t0, 5000);
    json_decref(j);

    put_group("tiny", ENV_OF("e2e-small"));
    put_sandbox("tiny", "big", "{\"memoryMiB\":600,\"diskMiB\":1024}");
    j = wait_sandbox("tiny", "big", 8000);
    ck_assert_msg(j != NULL, "a sandbox larger than every host stayed Pending");
    ck_assert_str_eq(prop(j, "provisioningState"), "Failed");
    ck_assert_msg(strstr(prop(j, "statusMessage"), "memoryMiB plus diskMiB"), "%s",
                  prop(j, "statusMessage"));
    json_decref(j);

    _cleanup_free_ char *p = sandbox_path("never", "huge", NULL);
    j = NULL;
    ck_assert_int_eq(call("PUT", p, "{\"properties\":{\"memoryMiB\":32,\"diskMiB\":65536}}", &j),
                     400);
    json_t *e = json_object_get(j, "error");
    ck_assert_str_eq(json_string_value(json_object_get(e, "target")), "properties.diskMiB");
    json_decref(j);
    delete_group("never");
    delete_group("tiny");
}
END_TEST

#define MIB (1024ull * 1024)

/* 64 MiB files go through both processes a chunk at a time: parallel
 * downloads arrive intact and leave sandboxd's and the agent's peak memory
 * where it was; a client that hangs up mid-way, up or down, leaves no
 * partial file and nothing leaked (sandboxd and its agent run under ASan
 * and must exit cleanly at the end).  */
START_TEST(test_scheduler_e2e_files_streamed)
{
    put_group("fstream", NULL);
    json_decref(create_sandbox("fstream", "s1", "{\"memoryMiB\":512}"));
    _cleanup_free_ char *url = files_url("fstream", "s1", "/tmp/big.bin");
    xfer_t up = {.upload = true, .url = url, .size = 64 * MIB};
    xfer_run(&up);
    ck_assert_msg(up.status == 201, "upload: %ld %s", up.status, up.body);
    json_t *j = json_loads(up.body, 0, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "size")), (json_int_t)(64 * MIB));
    json_decref(j);

    pid_t sd = g_c.pid, ag = agent_pid();
    ck_assert_int_gt(ag, 0);
    enum { N = 8 };
    long growth_sd = 0, growth_ag = 0;
    /* Round one also fills ASan's quarantine of freed blocks (TLS records
     * churn through it); round two shows what streaming itself holds.  */
    for (int round = 0; round < 2; round++) {
        long rss_sd = proc_kib(sd, "VmRSS"), rss_ag = proc_kib(ag, "VmRSS");
        hwm_reset(sd);
        hwm_reset(ag);
        xfer_t xs[N];
        for (int i = 0; i < N; i++)
            xs[i] = (xfer_t){.url = url};
        xfer_parallel(xs, N);
        for (int i = 0; i < N; i++) {
            ck_assert_msg(xs[i].status == 200, "download %d: %ld %s", i, xs[i].status, xs[i].body);
            ck_assert_uint_eq(xs[i].done, 64 * MIB);
            ck_assert_msg(!xs[i].bad_byte, "download %d: wrong bytes", i);
        }
        growth_sd = proc_kib(sd, "VmHWM") - rss_sd;
        growth_ag = proc_kib(ag, "VmHWM") - rss_ag;
    }
    /* Whole files held would be 8 x 64 MiB in each.  */
    ck_assert_msg(growth_sd < 64 * 1024, "sandboxd grew %ld KiB", growth_sd);
    ck_assert_msg(growth_ag < 64 * 1024, "the agent grew %ld KiB", growth_ag);

    /* A download cut off by its client.  */
    xfer_t cut = {.url = url, .stop_after = 3 * MIB};
    xfer_run(&cut);
    ck_assert_uint_ge(cut.done, 3 * MIB);
    ck_assert_uint_lt(cut.done, 64 * MIB);
    ck_assert(!cut.bad_byte);

    /* Uploads cut off by their client, with and without a length: no
     * file, and the one they were to replace is intact.  */
    _cleanup_free_ char *url2 = files_url("fstream", "s1", "/tmp/cut.bin");
    for (int round = 0; round < 4; round++) {
        int chunked = round % 2;
        xfer_t c1 = {.upload = true,
                     .url = url2,
                     .size = 32 * MIB,
                     .stop_after = 5 * MIB,
                     .chunked = chunked};
        xfer_run(&c1);
        xfer_t c2 = {.upload = true,
                     .url = url,
                     .size = 32 * MIB,
                     .stop_after = 5 * MIB,
                     .chunked = chunked};
        xfer_run(&c2);
    }
    ck_assert_uint_eq(settled_bytes("fstream", "s1", "/tmp"), 64 * MIB); /* big.bin alone */
    xfer_t again = {.url = url};
    xfer_run(&again);
    ck_assert_int_eq(again.status, 200);
    ck_assert_uint_eq(again.done, 64 * MIB);
    ck_assert(!again.bad_byte);

    /* A chunked upload past the cap is refused with 413, and a listing
     * shows nothing of it.  */
    xfer_t over = {.upload = true, .url = url2, .size = 65 * MIB, .chunked = true};
    xfer_run(&over);
    ck_assert_msg(over.status == 413 && strstr(over.body, "RequestEntityTooLarge"), "%ld %s",
                  over.status, over.body);
    ck_assert_uint_eq(settled_bytes("fstream", "s1", "/tmp"), 64 * MIB);
    delete_group("fstream");
}
END_TEST

/* What the files API writes is the sandbox's memory: 16 uploads of 64 MiB
 * at once into a sandbox of 64 MiB leave at most its memory in it, and the
 * rest are refused with a clear error (no 5xx), the sandbox still alive.  */
START_TEST(test_scheduler_e2e_files_charged_to_sandbox)
{
    put_group("fcharge", NULL);
    json_decref(create_sandbox("fcharge", "s1", "{\"memoryMiB\":64}"));
    enum { N = 16 };
    xfer_t xs[N];
    char *urls[N];
    for (int i = 0; i < N; i++) {
        _cleanup_free_ char *name = xasprintf("/tmp/up%d.bin", i);
        urls[i] = files_url("fcharge", "s1", name);
        xs[i] = (xfer_t){.upload = true, .url = urls[i], .size = 64 * MIB, .chunked = i % 2};
    }
    xfer_parallel(xs, N);
    int refused = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_msg(xs[i].status == 201 ||
                          (xs[i].status == 413 && strstr(xs[i].body, "SandboxStorageFull")),
                      "upload %d: %ld %s", i, xs[i].status, xs[i].body);
        refused += xs[i].status == 413;
        free(urls[i]);
    }
    ck_assert_int_gt(refused, 0);
    uint64_t bytes = settled_bytes("fcharge", "s1", "/tmp");
    ck_assert_msg(bytes <= 64 * MIB, "%llu bytes written into a 64 MiB sandbox",
                  (unsigned long long)bytes);
    json_t *r = exec_sh("fcharge", "s1", "echo alive");
    ck_assert_str_eq(json_string_value(json_object_get(r, "stdout")), "alive\n");
    json_decref(r);
    delete_group("fcharge");
}
END_TEST

/* The group's isolation is what runs, a sandbox may ask for another, and
 * one no host offers fails at once naming what is missing.  */
START_TEST(test_scheduler_e2e_isolation)
{
    put_group("isomv", "{\"sandboxDefaults\":{\"isolation\":\"microvm\"}}");
    _cleanup_free_ char *mp = sandbox_path("isomv", "m1", NULL);
    ck_assert_int_eq(call("PUT", mp, "{\"properties\":{}}", NULL), 201);
    json_t *j = wait_sandbox("isomv", "m1", 10000);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(prop(j, "provisioningState"), "Failed");
    ck_assert_msg(strstr(prop(j, "statusMessage"), "'microvm' isolation") &&
                      strstr(prop(j, "statusMessage"), "host 'local': "),
                  "%s", prop(j, "statusMessage"));
    json_decref(j);
    delete_group("isomv");
    if (access("/usr/bin/runsc", X_OK) != 0) {
        fprintf(stderr, "runsc not installed: gvisor part skipped\n");
        return;
    }
    struct utsname u;
    uname(&u);
    put_group("isogv", "{\"sandboxDefaults\":{\"isolation\":\"gvisor\"}}");
    const char *const names[] = {"g1", "p1"};
    const char *const props[] = {NULL, "{\"isolation\":\"process\"}"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        j = create_sandbox("isogv", names[i], props[i]);
        ck_assert_msg(strcmp(prop(j, "state"), "Running") == 0, "%s: %s", names[i],
                      prop(j, "statusMessage"));
        json_decref(j);
        json_t *r = exec_sh("isogv", names[i], "uname -r");
        const char *out = json_string_value(json_object_get(r, "stdout"));
        /* gVisor's kernel for the group's default, the host's for the
         * sandbox that asked for process.  */
        ck_assert_msg((strncmp(out, u.release, strlen(u.release)) == 0) == (i == 1), "%s: %s",
                      names[i], out);
        json_decref(r);
    }
    delete_group("isogv");
}
END_TEST

/* A group whose isolation is microvm, on a host that allows emulation
 * (SANDBOXD_MICROVM_EMULATION=1): its sandbox boots its own kernel and
 * answers exec and files through the ARM API.  A case of its own
 * (CK_RUN_CASE=microvm runs it alone).  */
START_TEST(test_scheduler_e2e_microvm)
{
    if (access("/usr/bin/qemu-system-x86_64", X_OK) != 0 ||
        access("/var/cache/sandboxd/microvm-kernel/vmlinuz", R_OK) != 0) {
        fprintf(stderr, "qemu or the guest kernel missing: microvm part skipped\n");
        return;
    }
    small_host(&g_small[2], "mv", "e2e-mv", "SANDBOXD_MICROVM_EMULATION=1");
    put_group("isomv2", "{\"environmentId\":\"/subscriptions/" SUB
                        "/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/e2e-mv\","
                        "\"sandboxDefaults\":{\"isolation\":\"microvm\"}}");
    _cleanup_free_ char *p = sandbox_path("isomv2", "v1", NULL);
    ck_assert_int_eq(call("PUT", p, "{\"properties\":{}}", NULL), 201);
    json_t *j = wait_sandbox("isomv2", "v1", 180000);
    ck_assert_msg(j != NULL, "the microvm sandbox never finished provisioning");
    ck_assert_msg(strcmp(prop(j, "state"), "Running") == 0, "%s", prop(j, "statusMessage"));
    json_decref(j);
    struct utsname u;
    uname(&u);
    json_t *r = exec_sh("isomv2", "v1", "uname -r");
    const char *out = json_string_value(json_object_get(r, "stdout"));
    ck_assert_msg(out && strncmp(out, u.release, strlen(u.release)) != 0, "%s", out);
    json_decref(r);
    _cleanup_free_ char *f = sandbox_path("isomv2", "v1", "/files");
    _cleanup_free_ char *fput = xasprintf("%s&path=/tmp/a.txt", f);
    tu_response_t resp;
    ck_assert_int_eq(call_ex("PUT", fput, "data\x01\x02", 6, "application/octet-stream", &resp),
                     201);
    tu_response_free(&resp);
    ck_assert_int_eq(call_ex("GET", fput, NULL, 0, NULL, &resp), 200);
    ck_assert_uint_eq(resp.body_len, 6);
    ck_assert(memcmp(resp.body, "data\x01\x02", 6) == 0);
    tu_response_free(&resp);
    delete_group("isomv2");
}
END_TEST

static Suite *e2e_suite(void)
{
    Suite *s = suite_create("scheduler_e2e");
    TCase *tc = tcase_create("e2e");
    tcase_add_unchecked_fixture(tc, global_setup, global_teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_scheduler_e2e_lifecycle);
    tcase_add_test(tc, test_scheduler_e2e_bad_requests);
    tcase_add_test(tc, test_scheduler_e2e_hundred_at_once);
    tcase_add_test(tc, test_scheduler_e2e_crash_restart);
    tcase_add_test(tc, test_scheduler_e2e_spread_over_hosts);
    tcase_add_test(tc, test_scheduler_e2e_host_dies_and_returns);
    tcase_add_test(tc, test_scheduler_e2e_recreate_on_host_failure);
    tcase_add_test(tc, test_scheduler_e2e_idle_and_lifetime);
    tcase_add_test(tc, test_scheduler_e2e_lifetime_suspend);
    tcase_add_test(tc, test_scheduler_e2e_watch);
    suite_add_tcase(s, tc);
    /* A second case with a sandboxd of its own, so ctest runs the halves
     * side by side (CK_RUN_CASE).  */
    tc = tcase_create("more");
    tcase_add_unchecked_fixture(tc, global_setup, global_teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_scheduler_e2e_warm_pool);
    tcase_add_test(tc, test_scheduler_e2e_replace_keeps_sandbox);
    tcase_add_test(tc, test_scheduler_e2e_group_delete_in_rg_named_sandboxes);
    tcase_add_test(tc, test_scheduler_e2e_admission_memory_sums);
    tcase_add_test(tc, test_scheduler_e2e_admission_pids);
    tcase_add_test(tc, test_scheduler_e2e_admission_fails_fast);
    tcase_add_test(tc, test_scheduler_e2e_files_streamed);
    tcase_add_test(tc, test_scheduler_e2e_files_charged_to_sandbox);
    tcase_add_test(tc, test_scheduler_e2e_isolation);
    suite_add_tcase(s, tc);
    TCase *mv = tcase_create("microvm");
    tcase_add_unchecked_fixture(mv, global_setup, global_teardown);
    tcase_set_timeout(mv, 300);
    tcase_add_test(mv, test_scheduler_e2e_microvm);
    suite_add_tcase(s, mv);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(e2e_suite());
    /* One sandboxd for all cases: no fork, so state carries across them.  */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
