/* test_agent_config.c -- sandbox-agent's flags and environment, and the API's
 * routing and request validation called directly, without a socket (every
 * case here is refused before the runtime is touched).  */
#include "tests/testutil.h"

#include <string.h>

#include "agent/agent.h"

static int parse(agent_config_t *cfg, char **argv, char **envp, agent_config_action_t *action,
                 sbx_error_t *err)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    FILE *out = fopen("/dev/null", "w");
    int rc = agent_config_parse(cfg, argc, argv, envp, out, action, err);
    fclose(out);
    return rc;
}

START_TEST(test_agent_config_flags)
{
    char *argv[] = {"sandbox-agent",
                    "--listen",
                    "127.0.0.1:9555",
                    "--data-dir",
                    "/tmp/x",
                    "--ca",
                    "ca.pem",
                    "--cert",
                    "a.pem",
                    "--key",
                    "a.key",
                    "--environment",
                    "pool-1",
                    "--max-sandboxes",
                    "7",
                    "--microvm-emulation",
                    "--default-image",
                    "/img",
                    NULL};
    agent_config_t cfg;
    agent_config_action_t action;
    sbx_error_t err = {0};
    ck_assert_msg(parse(&cfg, argv, NULL, &action, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(action, AGENT_CONFIG_RUN);
    ck_assert_str_eq(cfg.listen, "127.0.0.1:9555");
    ck_assert_str_eq(cfg.data_dir, "/tmp/x");
    ck_assert_str_eq(cfg.ca_file, "ca.pem");
    ck_assert_str_eq(cfg.environment, "pool-1");
    ck_assert_str_eq(cfg.default_image, "/img");
    ck_assert_uint_eq(cfg.max_sandboxes, 7);
    ck_assert(cfg.microvm_emulation);
    ck_assert(!cfg.insecure_http);
    agent_config_done(&cfg);
}
END_TEST

START_TEST(test_agent_config_env)
{
    char *argv[] = {"sandbox-agent", "--environment", "from-flag", NULL};
    char *envp[] = {"SANDBOX_AGENT_LISTEN=[::1]:9000",
                    "SANDBOX_AGENT_DATA_DIR=/d",
                    "SANDBOX_AGENT_INSECURE_HTTP=true",
                    "SANDBOX_AGENT_ENVIRONMENT=from-env",
                    "SANDBOXD_MICROVM_EMULATION=1",
                    "SANDBOX_AGENT_LOG_LEVEL=debug",
                    NULL};
    agent_config_t cfg;
    agent_config_action_t action;
    sbx_error_t err = {0};
    ck_assert_msg(parse(&cfg, argv, envp, &action, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(cfg.listen, "[::1]:9000");
    ck_assert_str_eq(cfg.data_dir, "/d");
    ck_assert_str_eq(cfg.environment, "from-flag"); /* flags win */
    ck_assert(cfg.insecure_http);
    ck_assert(cfg.microvm_emulation);
    ck_assert_int_eq(cfg.log_level, SBX_LOG_DEBUG);
    agent_config_done(&cfg);
}
END_TEST

START_TEST(test_agent_config_refusals)
{
    static const char *const cases[][8] = {
        {"--listen", "0.0.0.0:1", "--insecure-http", NULL},
        {"--listen", "10.1.2.3:1", "--insecure-http", NULL},
        {"--listen", ":9443", "--insecure-http", NULL},
        {"--listen", "127.0.0.1:1", NULL}, /* TLS files missing */
        {"--listen", "127.0.0.1:1", "--ca", "c", "--cert", "c", NULL},
        {"--insecure-http", "--max-sandboxes", "-1", NULL},
        {"--insecure-http", "--max-sandboxes", "12x", NULL},
        {"--insecure-http", "--environment", "bad label", NULL},
        {"--insecure-http", "--log-level", "loud", NULL},
        {"--insecure-http", "--no-such-flag", NULL},
        {"--insecure-http", "stray", NULL},
        {"--insecure-http", "--listen", NULL},
        {"--insecure-http", "--cgroup-parent", "../x", NULL},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        char *argv[10] = {"sandbox-agent"};
        for (size_t k = 0; cases[i][k]; k++)
            argv[k + 1] = (char *)cases[i][k];
        agent_config_t cfg;
        agent_config_action_t action;
        sbx_error_t err = {0};
        ck_assert_msg(parse(&cfg, argv, NULL, &action, &err) < 0, "case %zu accepted", i);
        ck_assert(err.msg[0]);
        agent_config_done(&cfg);
    }
    char *envp[] = {"SANDBOX_AGENT_INSECURE_HTTP=maybe", NULL};
    char *argv[] = {"sandbox-agent", NULL};
    agent_config_t cfg;
    agent_config_action_t action;
    sbx_error_t err = {0};
    ck_assert_int_lt(parse(&cfg, argv, envp, &action, &err), 0);
    agent_config_done(&cfg);

    char *help[] = {"sandbox-agent", "--version", NULL};
    ck_assert_int_eq(parse(&cfg, help, NULL, &action, &err), 0);
    ck_assert_int_eq(action, AGENT_CONFIG_EXIT);
    agent_config_done(&cfg);
}
END_TEST

/* The image flags: the private-registry switch and sizes with units.  */
START_TEST(test_agent_config_image_flags)
{
    char *argv[] = {"sandbox-agent",    "--insecure-http", "--allow-private-registries",
                    "--max-layer-size", "512MiB",          NULL};
    char *envp[] = {"SANDBOX_AGENT_MAX_IMAGE_STORE_SIZE=20G", NULL};
    agent_config_t cfg;
    agent_config_action_t action;
    sbx_error_t err = {0};
    ck_assert_msg(parse(&cfg, argv, envp, &action, &err) == 0, "%s", err.msg);
    ck_assert(cfg.allow_private_registries);
    ck_assert_uint_eq(cfg.max_layer_bytes, 512ull << 20);
    ck_assert_uint_eq(cfg.max_image_store_bytes, 20ull << 30);
    agent_config_done(&cfg);
    static const char *const bad[] = {"0", "-1", "12x", "4GG", "G", "", "99999999999T", "1.5G"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *a[] = {"sandbox-agent", "--insecure-http", "--max-layer-size", (char *)bad[i], NULL};
        ck_assert_msg(parse(&cfg, a, NULL, &action, &err) < 0, "'%s' accepted", bad[i]);
        agent_config_done(&cfg);
    }
}
END_TEST

START_TEST(test_agent_config_loopback)
{
    ck_assert(agent_listen_is_loopback("127.0.0.1:1"));
    ck_assert(agent_listen_is_loopback("127.8.9.10:1"));
    ck_assert(agent_listen_is_loopback("[::1]:1"));
    ck_assert(agent_listen_is_loopback("localhost:1"));
    ck_assert(!agent_listen_is_loopback("[::]:1"));
    ck_assert(!agent_listen_is_loopback("0.0.0.0:1"));
    ck_assert(!agent_listen_is_loopback("128.0.0.1:1"));
    ck_assert(!agent_listen_is_loopback("localhost.example.com:1"));
    ck_assert(!agent_listen_is_loopback("127.0.0.1"));
    ck_assert(!agent_listen_is_loopback("[::1:1"));
}
END_TEST

/* ---- the API without a socket ---- */

static char *g_data;
static agent_api_t *g_api;

static void api_setup(void)
{
    g_data = tu_tmpdir("sbx-agent-api");
    sbx_error_t err = {0};
    agent_api_config_t cfg = {.data_dir = g_data, .environment = "unit"};
    g_api = agent_api_new(&cfg, &err);
    ck_assert_msg(g_api != NULL, "%s", err.msg);
}

static void api_teardown(void)
{
    agent_api_free(g_api);
    tu_rmdir(g_data);
    free(g_data);
}

static void expect(const char *method, const char *path, const char *query_path, const char *body,
                   int status, const char *code)
{
    agent_call_t c = {.method = method,
                      .path = path,
                      .query_path = query_path,
                      .query_path_len = query_path ? strlen(query_path) : 0,
                      .body = body,
                      .body_len = body ? strlen(body) : 0};
    http_response_t res = {0};
    agent_api_call(g_api, &c, &res);
    ck_assert_msg(res.status == status, "%s %s: %d, want %d", method, path, res.status, status);
    json_t *j = json_loadb(res.body ? res.body : "", res.body_len, 0, NULL);
    const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    ck_assert_msg(got && strcmp(got, code) == 0, "%s %s: code %s, want %s", method, path,
                  got ? got : "(none)", code);
    json_decref(j);
    free(res.body);
    for (size_t i = 0; i < res.n_headers; i++) {
        free(res.headers[i].name);
        free(res.headers[i].value);
    }
}

START_TEST(test_agent_api_routes)
{
    expect("GET", "/", NULL, NULL, 404, "NotFound");
    expect("GET", "", NULL, NULL, 404, "NotFound");
    expect("GET", "/v1", NULL, NULL, 404, "NotFound");
    expect("GET", "/v1/health/x", NULL, NULL, 404, "NotFound");
    expect("GET", "/v1/sandboxes/a/b/c", NULL, NULL, 404, "NotFound");
    expect("GET", "/v1/sandboxes/a/exec/", NULL, NULL, 404, "NotFound");
    expect("DELETE", "/v1/health", NULL, NULL, 405, "MethodNotAllowed");
    expect("PUT", "/v1/sandboxes", NULL, "{}", 405, "MethodNotAllowed");
    expect("POST", "/v1/sandboxes/a", NULL, "{}", 405, "MethodNotAllowed");
    expect("GE", "/v1/health", NULL, NULL, 405, "MethodNotAllowed");
    expect("POST", "/v1/sandboxes/a/files", "/x", "", 405, "MethodNotAllowed");
    expect("PUT", "/v1/sandboxes/A/files", "/x", "", 400, "InvalidSandboxId");
    expect("GET", "/v1/sandboxes/a.b", NULL, NULL, 400, "InvalidSandboxId");
}
END_TEST

START_TEST(test_agent_api_validation)
{
    expect("PUT", "/v1/sandboxes/ok-1", NULL, "{\"memoryMiB\":true}", 400, "InvalidRequestContent");
    expect("PUT", "/v1/sandboxes/ok-1", NULL, "{\"env\":{\"PATH\":null}}", 400,
           "InvalidRequestContent");
    expect("POST", "/v1/sandboxes/ok-1/exec", NULL, "{\"command\":[\"sh\",null]}", 400,
           "InvalidRequestContent");
    expect("POST", "/v1/sandboxes/ok-1/exec", NULL, "{\"command\":[\"sh\"],\"env\":{\"X\":5}}", 400,
           "InvalidRequestContent");
    expect("GET", "/v1/sandboxes/ok-1/files", NULL, NULL, 400, "InvalidPath");
    expect("DELETE", "/v1/sandboxes/ok-1/files", "x/y", NULL, 400, "InvalidPath");
    /* A NUL inside the decoded value: the length gives it away.  */
    agent_call_t c = {.method = "GET",
                      .path = "/v1/sandboxes/ok-1/files",
                      .query_path = "/etc\0/passwd",
                      .query_path_len = 12};
    http_response_t res = {0};
    agent_api_call(g_api, &c, &res);
    ck_assert_int_eq(res.status, 400);
    free(res.body);
}
END_TEST

START_TEST(test_agent_api_body_limits)
{
    ck_assert_uint_eq(agent_api_body_limit(NULL, "PUT", "/v1/sandboxes/a/files"),
                      AGENT_MAX_FILE_BODY);
    ck_assert_uint_eq(agent_api_body_limit(NULL, "POST", "/v1/sandboxes/a/exec"),
                      AGENT_MAX_EXEC_BODY);
    ck_assert_uint_eq(agent_api_body_limit(NULL, "PUT", "/v1/sandboxes/a"), AGENT_MAX_JSON_BODY);
    ck_assert_uint_eq(agent_api_body_limit(NULL, "GET", "/v1/sandboxes/a/files"),
                      AGENT_MAX_JSON_BODY);
    ck_assert_uint_eq(agent_api_body_limit(NULL, "PUT", "/elsewhere"), AGENT_MAX_JSON_BODY);
}
END_TEST

/* --uid-range START:COUNT gives the runtime its host uids; anything but
 * whole sandboxes' worth, clear of the host's users, is refused.  */
START_TEST(test_agent_config_uid_range)
{
    char *argv[] = {"sandbox-agent", "--insecure-http", "--uid-range", "1879048192:131072", NULL};
    agent_config_t cfg;
    agent_config_action_t action;
    sbx_error_t err = {0};
    ck_assert_msg(parse(&cfg, argv, NULL, &action, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.uid_start, 1879048192u);
    ck_assert_uint_eq(cfg.uid_count, 131072u);
    agent_config_done(&cfg);
    char *envp[] = {"SANDBOX_AGENT_UID_RANGE=2147483648:65536", NULL};
    char *plain[] = {"sandbox-agent", "--insecure-http", NULL};
    ck_assert_msg(parse(&cfg, plain, envp, &action, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.uid_start, 2147483648u);
    agent_config_done(&cfg);
    ck_assert_msg(parse(&cfg, plain, NULL, &action, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(cfg.uid_count, 0); /* the runtime picks */
    agent_config_done(&cfg);
    const char *bad[] = {"abc",
                         "1879048192",
                         "1879048192:",
                         ":65536",
                         "1879048192:1000",
                         "0:65536",
                         "-1:65536",
                         "1879048192:-65536",
                         "0x70000000:65536",
                         "4294901760:65536",
                         "99999999999:65536",
                         "1879048192:65536x"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *a[] = {"sandbox-agent", "--insecure-http", "--uid-range", (char *)bad[i], NULL};
        ck_assert_msg(parse(&cfg, a, NULL, &action, &err) < 0, "%s accepted", bad[i]);
        ck_assert_int_eq(err.code, SBX_ERR_INVALID);
        agent_config_done(&cfg);
    }
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("agent_config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_agent_config_flags);
    tcase_add_test(tc, test_agent_config_env);
    tcase_add_test(tc, test_agent_config_refusals);
    tcase_add_test(tc, test_agent_config_loopback);
    tcase_add_test(tc, test_agent_config_uid_range);
    tcase_add_test(tc, test_agent_config_image_flags);
    suite_add_tcase(s, tc);
    tc = tcase_create("api");
    tcase_add_checked_fixture(tc, api_setup, api_teardown);
    tcase_add_test(tc, test_agent_api_routes);
    tcase_add_test(tc, test_agent_api_validation);
    tcase_add_test(tc, test_agent_api_body_limits);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(config_suite());
}
