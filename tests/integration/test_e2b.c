/* test_e2b.c -- the E2B-compatible listener's answers to bad and hostile
 * requests, against a real sandboxd without hosts (the e2b SDK tests in
 * tests/e2b drive the working paths end to end).  */
#include <check.h>
#include <string.h>

#include "tests/testutil.h"

#define GROUP                                                                                      \
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/e2b/providers/"            \
    "Microsoft.App/sandboxGroups/e2b"
#define API "api-version=2026-07-01"

static tu_server_t srv;
static char *tmp, *e2b_base;

static void setup(void)
{
    tmp = tu_tmpdir("sbx-e2b");
    ck_assert_ptr_nonnull(tmp);
    _cleanup_free_ char *data = xasprintf("%s/data", tmp);
    for (int attempt = 0; attempt < 3 && srv.pid <= 0; attempt++) {
        int port = tu_free_port();
        _cleanup_free_ char *listen = xasprintf("127.0.0.1:%d", port);
        const char *args[] = {"--e2b-listen", listen, NULL};
        if (tu_server_start(&srv, data, args) == 0 && tu_wait_port(port, 5000)) {
            e2b_base = xasprintf("http://127.0.0.1:%d", port);
            break;
        }
        if (srv.pid > 0)
            tu_server_stop(&srv);
        tu_server_done(&srv);
        memset(&srv, 0, sizeof(srv));
    }
    ck_assert_msg(e2b_base, "sandboxd with an E2B listener did not start");
}

static void teardown(void)
{
    int status = tu_server_stop(&srv);
    tu_server_done(&srv);
    tu_rmdir(tmp);
    free(tmp);
    free(e2b_base);
    tmp = e2b_base = NULL;
    memset(&srv, 0, sizeof(srv));
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "sandboxd did not exit 0 on SIGTERM (status 0x%x)", status);
}

/* One call to the E2B listener; headers NULL-terminated.  */
static long e2b(const char *method, const char *path, const char *const *headers, const char *body,
                size_t len, const char *ct, json_t **out)
{
    _cleanup_free_ char *url = xasprintf("%s%s", e2b_base, path);
    tu_request_opts_t o = {.headers = headers, .body = body, .body_len = len, .content_type = ct};
    tu_response_t r = {0};
    ck_assert_int_eq(tu_http(method, url, &o, &r), 0);
    long status = r.status;
    if (out)
        *out = tu_json(&r);
    tu_response_free(&r);
    return status;
}

static long arm(const char *method, const char *path, const char *body, json_t **out)
{
    _cleanup_free_ char *url = xasprintf("%s%s?%s", srv.base, path, API);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", srv.token);
    const char *h[] = {auth, NULL};
    tu_request_opts_t o = {.headers = h, .body = body};
    tu_response_t r = {0};
    ck_assert_int_eq(tu_http(method, url, &o, &r), 0);
    long status = r.status;
    if (out)
        *out = tu_json(&r);
    tu_response_free(&r);
    return status;
}

static void assert_e2b_error(json_t *j, long status)
{
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "code")), status);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "message")));
}

START_TEST(rest_refuses_bad_requests)
{
    _cleanup_free_ char *key = xasprintf("X-API-Key: %s", srv.token);
    const char *good[] = {key, NULL};
    const char *bad[] = {"X-API-Key: not-the-key", NULL};
    json_t *j = NULL;

    ck_assert_int_eq(e2b("GET", "/v2/sandboxes", NULL, NULL, 0, NULL, &j), 401);
    assert_e2b_error(j, 401);
    json_decref(j);
    ck_assert_int_eq(e2b("GET", "/v2/sandboxes", bad, NULL, 0, NULL, &j), 401);
    assert_e2b_error(j, 401);
    json_decref(j);
    ck_assert_int_eq(e2b("POST", "/sandboxes", bad, "{\"templateID\":\"base\"}", 0, NULL, NULL),
                     401);

    /* No group yet: an empty list, not an error.  */
    ck_assert_int_eq(e2b("GET", "/v2/sandboxes", good, NULL, 0, NULL, &j), 200);
    ck_assert(json_is_array(j) && json_array_size(j) == 0);
    json_decref(j);

    static const char *const bodies[] = {
        "not json",
        "[]",
        "{}",
        "{\"templateID\":5}",
        "{\"templateID\":\"base\",\"timeout\":-1}",
        "{\"templateID\":\"base\",\"timeout\":\"10\"}",
        "{\"templateID\":\"base\",\"metadata\":{\"a\":1}}",
        "{\"templateID\":\"base\",\"metadata\":[]}",
        "{\"templateID\":\"base\",\"envVars\":{\"A\":null}}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
        ck_assert_msg(e2b("POST", "/sandboxes", good, bodies[i], 0, NULL, &j) == 400, "%s",
                      bodies[i]);
        assert_e2b_error(j, 400);
        json_decref(j);
    }
    ck_assert_int_eq(e2b("POST", "/sandboxes", good, "{\"templateID\":\"nope\"}", 0, NULL, &j),
                     404);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(j, "message")), "template"));
    json_decref(j);

    static const char *const unknown[] = {"/sandboxes/inosuchsandbox", "/sandboxes/a%2Fb",
                                          "/sandboxes/..", "/sandboxes/-x"};
    for (size_t i = 0; i < ARRAY_SIZE(unknown); i++) {
        ck_assert_int_eq(e2b("GET", unknown[i], good, NULL, 0, NULL, &j), 404);
        assert_e2b_error(j, 404);
        json_decref(j);
    }
    ck_assert_int_eq(e2b("DELETE", "/sandboxes/inosuchsandbox", good, NULL, 0, NULL, NULL), 404);
    ck_assert_int_eq(
        e2b("POST", "/sandboxes/inosuchsandbox/timeout", good, "{\"timeout\":5}", 0, NULL, NULL),
        404);
    ck_assert_int_eq(
        e2b("POST", "/sandboxes/inosuchsandbox/timeout", good, "{\"timeout\":-5}", 0, NULL, NULL),
        400);
    ck_assert_int_eq(
        e2b("POST", "/v2/sandboxes/inosuchsandbox/connect", good, "{\"timeout\":5}", 0, NULL, NULL),
        404);
    ck_assert_int_eq(e2b("GET", "/templates", good, NULL, 0, NULL, NULL), 404);
}
END_TEST

/* A sandbox made through ARM in the E2B group (it stays Pending: there is
 * no host) and its access token, from E2B's get.  */
static char *pending_sandbox(const char *name, const char *const *key)
{
    ck_assert_int_le(arm("PUT", GROUP, "{\"location\":\"local\"}", NULL), 201);
    _cleanup_free_ char *p = xasprintf("%s/sandboxes/%s", GROUP, name);
    ck_assert_int_eq(arm("PUT", p, "{\"properties\":{}}", NULL), 201);
    _cleanup_free_ char *path = xasprintf("/sandboxes/%s", name);
    json_t *j = NULL;
    ck_assert_int_eq(e2b("GET", path, key, NULL, 0, NULL, &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "sandboxID")), name);
    ck_assert_str_eq(json_string_value(json_object_get(j, "templateID")), "base");
    const char *tok = json_string_value(json_object_get(j, "envdAccessToken"));
    ck_assert_ptr_nonnull(tok);
    char *out = xstrdup(tok);
    json_decref(j);
    return out;
}

START_TEST(envd_refuses_bad_requests)
{
    _cleanup_free_ char *key = xasprintf("X-API-Key: %s", srv.token);
    const char *rest[] = {key, NULL};
    _cleanup_free_ char *tok = pending_sandbox("ipending", rest);
    _cleanup_free_ char *tok2 = pending_sandbox("iother", rest);
    ck_assert_str_ne(tok, tok2);
    _cleanup_free_ char *good_tok = xasprintf("X-Access-Token: %s", tok);
    _cleanup_free_ char *other_tok = xasprintf("X-Access-Token: %s", tok2);
    const char *good[] = {"E2b-Sandbox-Id: ipending", good_tok, NULL};
    const char *swapped[] = {"E2b-Sandbox-Id: ipending", other_tok, NULL};
    const char *none[] = {"E2b-Sandbox-Id: ipending", NULL};
    const char *badid[] = {"E2b-Sandbox-Id: ../x", good_tok, NULL};
    json_t *j = NULL;

    /* Tokens are per sandbox.  */
    ck_assert_int_eq(e2b("GET", "/files?path=/etc/hostname", none, NULL, 0, NULL, &j), 401);
    assert_e2b_error(j, 401);
    json_decref(j);
    ck_assert_int_eq(e2b("GET", "/files?path=/etc/hostname", swapped, NULL, 0, NULL, NULL), 401);
    ck_assert_int_eq(
        e2b("POST", "/filesystem.Filesystem/Stat", swapped, "{\"path\":\"/\"}", 0, NULL, &j), 401);
    ck_assert_str_eq(json_string_value(json_object_get(j, "code")), "unauthenticated");
    json_decref(j);
    ck_assert_int_eq(e2b("GET", "/files?path=/x", badid, NULL, 0, NULL, NULL), 400);
    /* /health needs no token; an unknown sandbox is a 502, as E2B's proxy says.  */
    ck_assert_int_eq(e2b("GET", "/health", none, NULL, 0, NULL, NULL), 204);
    const char *ghost[] = {"E2b-Sandbox-Id: inosuchsandbox", NULL};
    ck_assert_int_eq(e2b("GET", "/health", ghost, NULL, 0, NULL, NULL), 502);

    /* Files: a path is required; multipart needs a boundary and a file.  */
    ck_assert_int_eq(e2b("GET", "/files", good, NULL, 0, NULL, NULL), 400);
    ck_assert_int_eq(e2b("POST", "/files", good, "x", 1, "application/octet-stream", NULL), 400);
    ck_assert_int_eq(e2b("POST", "/files?path=/a", good, "x", 1, "multipart/form-data", NULL), 400);
    ck_assert_int_eq(
        e2b("POST", "/files?path=/a", good, "garbage", 7, "multipart/form-data; boundary=zz", NULL),
        400);
    static const char part[] = "--zz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n"
                               "data with no end";
    ck_assert_int_eq(e2b("POST", "/files?path=/a", good, part, sizeof(part) - 1,
                         "multipart/form-data; boundary=zz", NULL),
                     400);
    ck_assert_int_eq(e2b("DELETE", "/files?path=/a", good, NULL, 0, NULL, NULL), 405);
    /* A sandbox that is not running yet: ARM's 409 comes through.  */
    ck_assert_int_eq(e2b("GET", "/files?path=/etc/hostname", good, NULL, 0, NULL, NULL), 409);

    /* Connect unary calls: JSON objects only, known methods only.  */
    static const char *const junk[] = {"", "null", "[1]", "{\"path\":5}", "{\"path\":\"\"}"};
    for (size_t i = 0; i < ARRAY_SIZE(junk); i++) {
        ck_assert_msg(e2b("POST", "/filesystem.Filesystem/Stat", good, junk[i], strlen(junk[i]),
                          "application/json", &j) == 400,
                      "%s", junk[i]);
        ck_assert_str_eq(json_string_value(json_object_get(j, "code")), "invalid_argument");
        json_decref(j);
    }
    ck_assert_int_eq(e2b("POST", "/filesystem.Filesystem/CreateWatcher", good, "{\"path\":\"/\"}",
                         0, "application/json", &j),
                     501);
    ck_assert_str_eq(json_string_value(json_object_get(j, "code")), "unimplemented");
    json_decref(j);
    /* The sandbox's init is no process of the API's: refused, not 5xx.  */
    int st = e2b("POST", "/process.Process/SendInput", good, "{\"process\":{\"pid\":1}}", 0,
                 "application/json", &j);
    ck_assert_msg(st == 400 || st == 404, "SendInput to pid 1: %d", st);
    json_decref(j);
    ck_assert_int_eq(e2b("POST", "/process.Process/SendSignal", good,
                         "{\"process\":{\"pid\":12345},\"signal\":9}", 0, "application/json", &j),
                     404);
    ck_assert_str_eq(json_string_value(json_object_get(j, "code")), "not_found");
    json_decref(j);
    /* The sandbox is Pending (no host here): its processes cannot be listed,
     * and the answer is a Connect error, not an empty list.  */
    st = e2b("POST", "/process.Process/List", good, "{}", 0, "application/json", &j);
    ck_assert_msg(st >= 400 && st < 500, "List of a pending sandbox: %d", st);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "code")));
    json_decref(j);

    /* Streaming calls: a bad envelope ends the stream with an error.  */
    static const char *const envelopes[] = {"", "\x00\x00\x00", "\x00\x00\x00\x00\x09{}",
                                            "\x01\x00\x00\x00\x02{}", "\x00\x00\x00\x00\x02{}"};
    static const size_t lens[] = {0, 3, 7, 7, 7};
    for (size_t i = 0; i < ARRAY_SIZE(envelopes); i++) {
        _cleanup_free_ char *url = xasprintf("%s/process.Process/Start", e2b_base);
        tu_request_opts_t o = {.headers = good,
                               .body = envelopes[i],
                               .body_len = lens[i],
                               .content_type = "application/connect+json"};
        tu_response_t r = {0};
        ck_assert_int_eq(tu_http("POST", url, &o, &r), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_ge(r.body_len, 5);
        ck_assert_int_eq((unsigned char)r.body[0], 2); /* the end of the stream */
        ck_assert_ptr_nonnull(strstr(r.body + 5, "invalid_argument"));
        tu_response_free(&r);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("e2b");
    TCase *tc = tcase_create("listener");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, rest_refuses_bad_requests);
    tcase_add_test(tc, envd_refuses_bad_requests);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
