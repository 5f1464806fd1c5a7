/* test_egress_e2e.c -- egress policies through the ARM API: sandboxd with
 * its local agent (egress on by default, its pool picked by the agent), a policy a sandbox uses, a
 * live change of the policy reaching the running sandbox both ways, 409 when deleting a policy in
 * use, and the decision log at .../egressDecisions.  The servers the sandbox reaches run in a
 * network namespace the test makes.  */
#include <curl/curl.h>

#define POOL_SECOND_OCTET 235
/* a network of its own: egress tests run side by side */
#define SRV_ADDR "203.0.113.66"
#define SRV_ADDR2 "203.0.113.67"
#define HOST_ADDR "203.0.113.65"
#define SRV_PREFIX "/26"
#define SRV6_ADDR "2001:db8:113:2::2"
#define SRV6_ADDR2 "2001:db8:113:2::3"
#define HOST6_ADDR "2001:db8:113:2::1"
#define SRV_ULA "fd00:77:0:2::3"
#define HOST_ULA "fd00:77:0:2::1"
#include "tests/integration/egress_fixture.h"

#define SUB "00000000-0000-0000-0000-0000000000e9"
#define TOKEN "egress-e2e-token"
#define API "?api-version=2026-07-01"
#define GROUP "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g1"

static char *root, *data, *log_path, *base;
static pid_t sandboxd;

static long call(const char *method, const char *path, const char *body, json_t **out)
{
    _cleanup_free_ char *url = xasprintf("%s%s", base, path);
    const char *hdrs[] = {"Authorization: Bearer " TOKEN, NULL};
    tu_request_opts_t o = {.headers = hdrs, .body = body, .timeout_ms = 60000};
    tu_response_t r;
    long st = tu_http(method, url, &o, &r) == 0 ? r.status : -1;
    if (out)
        *out = st > 0 ? tu_json(&r) : NULL;
    tu_response_free(&r);
    return st;
}

static void cluster_start(void)
{
    servers_start();
    root = tu_tmpdir("sbx-eg-e2e");
    data = xasprintf("%s/data", root);
    log_path = xasprintf("%s/sandboxd.log", root);
    int port = tu_free_port();
    base = xasprintf("http://127.0.0.1:%d", port);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    _cleanup_free_ char *bin = tu_bin("sandboxd");
    _cleanup_free_ char *agent = tu_bin("sandbox-agent");
    const char *image = getenv("SBX_DEFAULT_IMAGE");
    char *argv[] = {bin,           "--listen",
                    listen,        "--data-dir",
                    data,          "--auth-token",
                    TOKEN,         "--agent-bin",
                    agent,         image ? "--default-image" : NULL,
                    (char *)image, NULL};
    _cleanup_free_ char *cg = xasprintf("SANDBOX_AGENT_CGROUP_PARENT=sbx-eg-e2e-%d", (int)getpid());
    char *env[] = {cg, "SANDBOX_AGENT_EGRESS_RESOLVER=" SRV_ADDR, NULL};
    sandboxd = tu_spawn(argv, env, log_path);
    ck_assert_msg(tu_wait_port(port, 20000), "sandboxd did not listen");
}

/* The local agent's nft table: "sandboxd_" and six hex digits of a hash
 * of its data directory, as the agent names it.  */
static char *agent_table(void)
{
    _cleanup_free_ char *dir = xasprintf("%s/agent", data);
    char real[4096];
    const char *d = realpath(dir, real) ? real : dir;
    uint32_t h = 2166136261u;
    for (const char *p = d; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return xasprintf("sandboxd_%06x", h & 0xffffff);
}

static void cluster_stop(void)
{
    _cleanup_free_ char *table = data ? agent_table() : NULL;
    if (sandboxd > 0) {
        _cleanup_free_ char *g = xasprintf("%s" API, GROUP);
        call("DELETE", g, NULL, NULL);
        int64_t end = sbx_monotonic_ms() + 30000;
        while (call("GET", g, NULL, NULL) != 404 && sbx_monotonic_ms() < end)
            usleep(50000);
        tu_stop(sandboxd, 30000);
        sandboxd = 0;
    }
    /* the agent removed its table when it stopped */
    int left = table ? sh("nft list table inet %s >/dev/null 2>&1", table) : 1;
    if (left == 0)
        sh("nft delete table inet %s", table);
    ck_assert_msg(left != 0, "nft table %s was left behind", table);
    if (root)
        tu_rmdir(root);
    servers_stop();
}

static json_t *wait_sandbox(const char *path)
{
    int64_t end = sbx_monotonic_ms() + 120000; /* a loaded 2-core machine is slow */
    for (;;) {
        json_t *j = NULL;
        call("GET", path, NULL, &j);
        const char *ps = json_string_value(
            json_object_get(json_object_get(j, "properties"), "provisioningState"));
        if (ps && strcmp(ps, "InProgress") != 0)
            return j;
        json_decref(j);
        ck_assert_msg(sbx_monotonic_ms() < end, "the sandbox did not finish provisioning");
        usleep(50000);
    }
}

/* The sandbox reach() and until() try from.  */
static const char *probing = "s1";

/* Connect from inside the sandbox to SRV_ADDR2:port: the echo's reply.  */
static bool reach(const char *port)
{
    _cleanup_free_ char *p = xasprintf("%s/sandboxes/%s/exec" API, GROUP, probing);
    _cleanup_free_ char *script =
        xasprintf("import socket\ntry:\n s=socket.create_connection(('" SRV_ADDR2 "',%s),1)\n"
                  " s.send(b'ping\\n'); print(s.recv(10).decode().strip())\n"
                  "except Exception as e: print('fail', e)\n",
                  port);
    json_t *cmd = json_pack("{s:[s,s,s]}", "command", "python3", "-c", script);
    _cleanup_free_ char *body = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    json_t *j = NULL;
    ck_assert_int_eq(call("POST", p, body, &j), 200);
    const char *out = json_string_value(json_object_get(j, "stdout"));
    bool ok = out && strncmp(out, "pong", 4) == 0;
    json_decref(j);
    return ok;
}

static int64_t until(bool want, const char *port)
{
    int64_t t0 = sbx_monotonic_ms();
    while (reach(port) != want)
        ck_assert_msg(sbx_monotonic_ms() - t0 < 10000, "the policy change never arrived");
    return sbx_monotonic_ms() - t0;
}

/* The policy the tests flip between: the echo's port, or another.  */
static const char *const p7000 =
    "{\"properties\":{\"rules\":[{\"name\":\"echo\",\"action\":\"Allow\","
    "\"cidrs\":[\"" SRV_ADDR2 "/32\"],\"ports\":[7000]}]}}";
static const char *const p8080 =
    "{\"properties\":{\"rules\":[{\"name\":\"web\",\"action\":\"Allow\","
    "\"cidrs\":[\"" SRV_ADDR2 "/32\"],\"ports\":[8080]}]}}";

/* The sandbox's resolver is its gateway.  */
static void resolver_is_gateway(const char *sandbox)
{
    _cleanup_free_ char *ex = xasprintf("%s/sandboxes/%s/exec" API, GROUP, sandbox);
    json_t *r = NULL;
    ck_assert_int_eq(call("POST", ex, "{\"command\":[\"cat\",\"/etc/resolv.conf\"]}", &r), 200);
    const char *conf = json_string_value(json_object_get(r, "stdout"));
    ck_assert_msg(conf && strstr(conf, "nameserver 100."), "resolv.conf: %s", conf);
    json_decref(r);
}

/* The policy at pol changes under the running sandbox, both ways, and
 * each change reaches it within 2.5 s.  */
static void flip(const char *pol, const char *label)
{
    ck_assert_int_eq(call("PUT", pol, p8080, NULL), 200);
    int64_t off = until(false, "7000");
    ck_assert_int_eq(call("PUT", pol, p7000, NULL), 200);
    int64_t on = until(true, "7000");
    fprintf(stderr, "%spolicy change reached the sandbox in %lld ms (deny) and %lld ms (allow)\n",
            label, (long long)off, (long long)on);
    ck_assert_int_le(off, 2500);
    ck_assert_int_le(on, 2500);
}

/* Delete the sandbox at sb and wait until it is gone.  */
static void delete_sandbox(const char *sb)
{
    ck_assert_int_eq(call("DELETE", sb, NULL, NULL), 202);
    int64_t end = sbx_monotonic_ms() + 30000;
    while (call("GET", sb, NULL, NULL) != 404 && sbx_monotonic_ms() < end)
        usleep(50000);
}

START_TEST(policy_live_and_in_use)
{
    if (!getenv("SBX_DEFAULT_IMAGE"))
        return; /* python3 is in the real default image only */
    _cleanup_free_ char *g = xasprintf("%s" API, GROUP);
    ck_assert_int_le(call("PUT", g, "{\"location\":\"westus\",\"properties\":{}}", NULL), 201);
    _cleanup_free_ char *pol = xasprintf("%s/egressPolicies/echo" API, GROUP);
    ck_assert_int_eq(call("PUT", pol, p7000, NULL), 201);
    _cleanup_free_ char *sb = xasprintf("%s/sandboxes/s1" API, GROUP);
    ck_assert_int_eq(call("PUT", sb, "{\"properties\":{\"egressPolicy\":\"echo\"}}", NULL), 201);
    json_t *j = wait_sandbox(sb);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "properties"), "provisioningState")),
        "Succeeded");
    json_decref(j);
    ck_assert(reach("7000"));

    resolver_is_gateway("s1");

    /* the policy changes under the running sandbox, both ways */
    flip(pol, "");

    /* in use: 409 naming the user */
    json_t *e = NULL;
    ck_assert_int_eq(call("DELETE", pol, NULL, &e), 409);
    const char *msg = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
    ck_assert_msg(msg && strstr(msg, "'s1'"), "%s", msg);
    json_decref(e);

    /* the decision log of the sandbox */
    ck_assert(!reach("8080"));
    _cleanup_free_ char *dp = xasprintf("%s/sandboxes/s1/egressDecisions" API, GROUP);
    json_t *d = NULL;
    ck_assert_int_eq(call("GET", dp, NULL, &d), 200);
    ck_assert_int_ge(json_integer_value(json_object_get(d, "denied")), 1);
    json_decref(d);

    /* once no sandbox uses it, the policy can go */
    delete_sandbox(sb);
    long st = call("DELETE", pol, NULL, NULL);
    ck_assert_msg(st == 200 || st == 202 || st == 204, "DELETE policy: %ld", st);
    /* nothing of the sandbox is left on the host (this agent's links are
     * sx<tag>-*, its table sandboxd_<tag>) */
    _cleanup_free_ char *table = agent_table();
    ck_assert_int_eq(sh("ip -o link | grep -q ' sx%s-'", table + strlen("sandboxd_")), 1);
}
END_TEST

/* The same for a gVisor sandbox: its link is made before runsc boots it,
 * and policy changes reach gVisor's own network stack as they reach the
 * host's.  Skipped where this host has no working gvisor.  */
START_TEST(policy_live_gvisor)
{
    if (!getenv("SBX_DEFAULT_IMAGE"))
        return;
    _cleanup_free_ char *g = xasprintf("%s" API, GROUP);
    ck_assert_int_le(call("PUT", g, "{\"location\":\"westus\",\"properties\":{}}", NULL), 201);
    _cleanup_free_ char *pol = xasprintf("%s/egressPolicies/gvecho" API, GROUP);
    ck_assert_int_le(call("PUT", pol, p7000, NULL), 201);
    _cleanup_free_ char *sb = xasprintf("%s/sandboxes/gv1" API, GROUP);
    ck_assert_int_eq(call("PUT", sb,
                          "{\"properties\":{\"egressPolicy\":\"gvecho\",\"isolation\":\"gvisor\"}}",
                          NULL),
                     201);
    json_t *j = wait_sandbox(sb);
    json_t *props = json_object_get(j, "properties");
    const char *ps = json_string_value(json_object_get(props, "provisioningState"));
    if (strcmp(ps, "Succeeded") != 0) {
        fprintf(stderr, "gvisor sandbox not provisioned, test skipped: %s\n",
                json_string_value(json_object_get(props, "statusMessage")));
        json_decref(j);
        call("DELETE", sb, NULL, NULL);
        return;
    }
    json_decref(j);
    probing = "gv1";
    ck_assert(reach("7000"));
    resolver_is_gateway("gv1");
    flip(pol, "gvisor: ");

    delete_sandbox(sb);
    _cleanup_free_ char *table = agent_table();
    ck_assert_int_eq(sh("ip -o link | grep -q ' sx%s-'", table + strlen("sandboxd_")), 1);
    long st = call("DELETE", pol, NULL, NULL);
    ck_assert_msg(st == 200 || st == 202 || st == 204, "DELETE policy: %ld", st);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("egress_e2e");
    TCase *tc = tcase_create("e2e");
    tcase_add_unchecked_fixture(tc, cluster_start, cluster_stop);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, policy_live_and_in_use);
    tcase_add_test(tc, policy_live_gvisor);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
