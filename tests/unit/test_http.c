/* test_http.c -- the HTTP front end in-process: request collection (bodies
 * with NUL bytes, percent-decoded paths, queries, headers), body caps
 * announced and chunked, request-id headers, the reply builders, admission
 * of slow requests, the header deadline, connection limits, ambiguous
 * framing and the loopback address checks.  */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "http/http.h"
#include "tests/testutil.h"

static http_server_t *server;
static char base[64];
static int handled;

static void on_query(void *ud, const char *key, const char *value)
{
    json_object_set_new(ud, key, json_string(value));
}

/* Reports what it received; a few paths exercise the reply builders.  */
static void handler(void *ctx, const http_request_t *req, http_response_t *res)
{
    __atomic_add_fetch(&handled, 1, __ATOMIC_SEQ_CST);
    if (strcmp(req->path, "/nothing") == 0)
        return; /* sets no status: the front end answers 500 */
    if (strcmp(req->path, "/bad-utf8") == 0) {
        http_reply_error(res, 418, "Teapot", "bytes \xff\xfe here");
        return;
    }
    if (strcmp(req->path, "/sbx-error") == 0) {
        sbx_error_t err = {0};
        sbx_error_arm(&err, SBX_ERR_CONFLICT, "Clash", "it clashed");
        sbx_error_target(&err, "properties.x");
        http_reply_sbx_error(res, &err);
        return;
    }
    if (strcmp(req->path, "/generic-error") == 0) {
        sbx_error_t err = {0};
        sbx_error_set(&err, SBX_ERR_TOO_LARGE, "too big");
        http_reply_sbx_error(res, &err);
        return;
    }
    if (strcmp(req->path, "/busy") == 0 || strcmp(req->path, "/down") == 0) {
        http_reply_error(res, req->path[1] == 'b' ? 429 : 503, "Later", "later");
        return;
    }
    if (strcmp(req->path, "/bytes") == 0) {
        char *data = xmalloc(5);
        memcpy(data, "a\0b\0c", 5);
        http_reply_bytes(res, 200, "application/octet-stream", data, 5);
        return;
    }
    if (strcmp(req->path, "/many-headers") == 0) {
        for (int i = 0; i < 40; i++)
            http_add_header(res, "X-Many", "%d", i);
        http_reply_empty(res, 204);
        return;
    }
    if (strcmp(req->path, "/replaced") == 0) {
        /* A handler may change its mind; the first body is freed.  */
        http_reply_json(res, 200, json_pack("{s:s}", "first", "x"));
        http_reply_error(res, 409, "Second", "second %d", 2);
        return;
    }
    json_t *q = json_object();
    size_t nq = http_query_each(req, on_query, q);
    const char *xt = http_header(req, "x-test");
    unsigned sum = 0;
    for (size_t i = 0; i < req->body_len; i++)
        sum = sum * 31 + (unsigned char)req->body[i];
    json_t *path = json_string(req->path);
    json_t *reply = json_pack("{s:s,s:o,s:I,s:I,s:o,s:I,s:s,s:s,s:b}", "method", req->method,
                              "path", path ? path : json_string("(invalid)"), "bodyLen",
                              (json_int_t)req->body_len, "sum", (json_int_t)sum, "query", q,
                              "nquery", (json_int_t)nq, "xTest", xt ? xt : "", "scheme",
                              http_scheme(req), "terminated", req->body[req->body_len] == '\0');
    const char *one = http_query(req, "one");
    if (one)
        json_object_set_new(reply, "one", json_string(one));
    http_add_header(res, "X-Custom", "v-%d", 7);
    http_reply_json(res, 200, reply);
}

static size_t body_limit(void *ctx, const char *method, const char *path)
{
    return strcmp(path, "/big") == 0 ? 64 * 1024 : 1024;
}

static void setup(void)
{
    http_config_t cfg = {
        .name = "test", .listen = "127.0.0.1:0", .max_body = 1024, .body_limit = body_limit};
    sbx_error_t err = {0};
    server = http_server_start(&cfg, handler, NULL, &err);
    ck_assert_msg(server != NULL, "%s", err.msg);
    ck_assert_int_gt(http_server_port(server), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", http_server_port(server));
    handled = 0;
}

static void teardown(void)
{
    http_server_stop(server);
    server = NULL;
}

static long req(const char *method, const char *path, const tu_request_opts_t *o, tu_response_t *r)
{
    _cleanup_free_ char *url = xasprintf("%s%s", base, path);
    ck_assert_msg(tu_http(method, url, o, r) == 0, "%s %s: no response", method, path);
    _cleanup_free_ char *rid = tu_header(r, "x-ms-request-id");
    ck_assert_msg(rid && strlen(rid) == 36, "no request id on %s", path);
    return r->status;
}

static json_t *req_json(const char *method, const char *path, const tu_request_opts_t *o)
{
    tu_response_t r;
    ck_assert_int_eq(req(method, path, o, &r), 200);
    json_t *j = tu_json(&r);
    ck_assert_ptr_nonnull(j);
    tu_response_free(&r);
    return j;
}

static const char *jstr(json_t *j, const char *k)
{
    const char *s = json_string_value(json_object_get(j, k));
    return s ? s : "(none)";
}

START_TEST(request_collected)
{
    const char body[] = "bi\0nary\0body";
    const char *hdrs[] = {"X-Test: hello", NULL};
    tu_request_opts_t o = {.body = body,
                           .body_len = sizeof(body),
                           .content_type = "application/octet-stream",
                           .headers = hdrs};
    json_t *j = req_json("PUT", "/some/path%20x?one=1&two=a%26b&empty=", &o);
    ck_assert_str_eq(jstr(j, "method"), "PUT");
    ck_assert_str_eq(jstr(j, "path"), "/some/path x");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "bodyLen")), sizeof(body));
    unsigned sum = 0;
    for (size_t i = 0; i < sizeof(body); i++)
        sum = sum * 31 + (unsigned char)body[i];
    ck_assert_int_eq(json_integer_value(json_object_get(j, "sum")), sum);
    ck_assert(json_is_true(json_object_get(j, "terminated")));
    ck_assert_str_eq(jstr(j, "xTest"), "hello");
    ck_assert_str_eq(jstr(j, "one"), "1");
    json_t *q = json_object_get(j, "query");
    ck_assert_str_eq(jstr(q, "two"), "a&b");
    ck_assert_str_eq(jstr(q, "empty"), "");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "nquery")), 3);
    ck_assert_str_eq(jstr(j, "scheme"), "http");
    json_decref(j);

    /* No body: an empty, terminated one.  */
    j = req_json("GET", "/", NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "bodyLen")), 0);
    ck_assert(json_is_true(json_object_get(j, "terminated")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "nquery")), 0);
    json_decref(j);

    tu_response_t r;
    req("GET", "/", NULL, &r);
    _cleanup_free_ char *custom = tu_header(&r, "X-Custom");
    ck_assert_str_eq(custom, "v-7");
    _cleanup_free_ char *ct = tu_header(&r, "Content-Type");
    ck_assert_str_eq(ct, "application/json; charset=utf-8");
    tu_response_free(&r);
}
END_TEST

/* Percent-decoding never yields a NUL that would cut a path or value
 * short: a URL with "%00" anywhere is refused before the handler.  */
START_TEST(percent_decoding)
{
    json_t *j = req_json("GET", "/a%25b/%41%42%4/%zz?w=%41&p=a%2Fb+c", NULL);
    ck_assert_str_eq(jstr(j, "path"), "/a%b/AB%4/%zz");
    json_t *q = json_object_get(j, "query");
    ck_assert_str_eq(jstr(q, "w"), "A");
    ck_assert_str_eq(jstr(q, "p"), "a/b c");
    json_decref(j);
    const char *with_nul[] = {"/a%00b", "/x?v=%00x", "/x?k%00=v", "/%00"};
    for (size_t i = 0; i < ARRAY_SIZE(with_nul); i++) {
        tu_response_t r;
        ck_assert_int_eq(req("GET", with_nul[i], NULL, &r), 400);
        tu_response_free(&r);
    }
    ck_assert_int_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 1);
}
END_TEST

START_TEST(request_ids)
{
    tu_response_t r;
    req("GET", "/", NULL, &r);
    _cleanup_free_ char *rid = tu_header(&r, "x-ms-request-id");
    _cleanup_free_ char *corr = tu_header(&r, "x-ms-correlation-request-id");
    ck_assert_ptr_null(tu_header(&r, "x-ms-client-request-id"));
    ck_assert_str_eq(corr, rid); /* none sent: our own id */
    tu_response_free(&r);

    const char *hdrs[] = {"x-ms-client-request-id: client-1", "x-ms-correlation-request-id: corr-1",
                          NULL};
    tu_request_opts_t o = {.headers = hdrs};
    req("GET", "/", &o, &r);
    _cleanup_free_ char *echo = tu_header(&r, "x-ms-client-request-id");
    _cleanup_free_ char *corr2 = tu_header(&r, "x-ms-correlation-request-id");
    _cleanup_free_ char *rid2 = tu_header(&r, "x-ms-request-id");
    ck_assert_str_eq(echo, "client-1");
    ck_assert_str_eq(corr2, "corr-1");
    ck_assert_str_ne(rid, rid2);
    tu_response_free(&r);

    /* An oversized client id is not echoed.  */
    char longid[400];
    memset(longid, 'c', sizeof(longid));
    memcpy(longid, "x-ms-client-request-id: ", 24);
    longid[sizeof(longid) - 1] = '\0';
    const char *hdrs2[] = {longid, NULL};
    o.headers = hdrs2;
    req("GET", "/", &o, &r);
    ck_assert_ptr_null(tu_header(&r, "x-ms-client-request-id"));
    tu_response_free(&r);
}
END_TEST

START_TEST(body_limits)
{
    tu_response_t r;
    char *body = xmalloc(70 * 1024);
    memset(body, 'b', 70 * 1024);
    /* Exactly at the cap is fine; one more byte is not.  */
    tu_request_opts_t o = {.body = body, .body_len = 1024, .content_type = "text/plain"};
    ck_assert_int_eq(req("PUT", "/x", &o, &r), 200);
    tu_response_free(&r);
    o.body_len = 1025;
    ck_assert_int_eq(req("PUT", "/x", &o, &r), 413);
    _cleanup_json_ json_t *e = tu_json(&r);
    ck_assert_str_eq(jstr(json_object_get(e, "error"), "code"), "RequestEntityTooLarge");
    tu_response_free(&r);
    /* The same without Content-Length (chunked): counted as it arrives.  */
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    o.headers = chunked;
    o.body_len = 5000;
    ck_assert_int_eq(req("PUT", "/x", &o, &r), 413);
    tu_response_free(&r);
    o.body_len = 1000;
    ck_assert_int_eq(req("PUT", "/x", &o, &r), 200);
    tu_response_free(&r);
    /* A per-path limit.  */
    o.headers = NULL;
    o.body_len = 60 * 1024;
    ck_assert_int_eq(req("PUT", "/big", &o, &r), 200);
    tu_response_free(&r);
    o.body_len = 70 * 1024;
    ck_assert_int_eq(req("PUT", "/big", &o, &r), 413);
    tu_response_free(&r);
    o.headers = chunked;
    ck_assert_int_eq(req("PUT", "/big", &o, &r), 413);
    tu_response_free(&r);
    free(body);
    /* Refused bodies never reached the handler.  */
    ck_assert_int_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 3);
}
END_TEST

/* A client still sending a refused body gets the 413, not a reset
 * connection: the rest of the body is read and dropped first.  */
START_TEST(refused_body_answered_cleanly)
{
    size_t len = 512 * 1024;
    char *body = xmalloc(len);
    memset(body, 'x', len);
    for (int i = 0; i < 30; i++) {
        tu_request_opts_t o = {.body = body, .body_len = len, .content_type = "text/plain"};
        tu_response_t r;
        _cleanup_free_ char *url = xasprintf("%s/x", base);
        ck_assert_msg(tu_http("PUT", url, &o, &r) == 0, "round %d: no answer", i);
        ck_assert_int_eq(r.status, 413);
        tu_response_free(&r);
    }
    /* A client that waits for "100 Continue" is answered before it sends.  */
    const char *expect[] = {"Expect: 100-continue", NULL};
    tu_request_opts_t o = {
        .body = body, .body_len = len, .content_type = "text/plain", .headers = expect};
    tu_response_t r;
    _cleanup_free_ char *url = xasprintf("%s/x", base);
    ck_assert_int_eq(tu_http("PUT", url, &o, &r), 0);
    ck_assert_int_eq(r.status, 413);
    tu_response_free(&r);
    free(body);
    ck_assert_int_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 0);
}
END_TEST

START_TEST(bogus_content_length)
{
    /* Content-Length that is not a number: refused before the handler.  */
    const char *hdrs[] = {"Content-Length: 12abc", NULL};
    tu_request_opts_t o = {.headers = hdrs};
    tu_response_t r;
    _cleanup_free_ char *url = xasprintf("%s/x", base);
    if (tu_http("GET", url, &o, &r) == 0) {
        ck_assert_int_ge(r.status, 400);
        tu_response_free(&r);
    } else {
        tu_response_free(&r);
    }
    ck_assert_int_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 0);
}
END_TEST

START_TEST(reply_builders)
{
    tu_response_t r;
    ck_assert_int_eq(req("GET", "/nothing", NULL, &r), 500);
    tu_response_free(&r);

    ck_assert_int_eq(req("GET", "/bad-utf8", NULL, &r), 418);
    _cleanup_json_ json_t *e = tu_json(&r);
    ck_assert_ptr_nonnull(e);
    json_t *err = json_object_get(e, "error");
    ck_assert_str_eq(jstr(err, "code"), "Teapot");
    ck_assert(json_is_string(json_object_get(err, "message")));
    tu_response_free(&r);

    ck_assert_int_eq(req("GET", "/sbx-error", NULL, &r), 409);
    _cleanup_json_ json_t *e2 = tu_json(&r);
    err = json_object_get(e2, "error");
    ck_assert_str_eq(jstr(err, "code"), "Clash");
    ck_assert_str_eq(jstr(err, "message"), "it clashed");
    ck_assert_str_eq(jstr(err, "target"), "properties.x");
    tu_response_free(&r);

    ck_assert_int_eq(req("GET", "/generic-error", NULL, &r), 413);
    _cleanup_json_ json_t *e3 = tu_json(&r);
    err = json_object_get(e3, "error");
    ck_assert_str_eq(jstr(err, "code"), "RequestEntityTooLarge");
    ck_assert_ptr_null(json_object_get(err, "target"));
    tu_response_free(&r);

    ck_assert_int_eq(req("GET", "/bytes", NULL, &r), 200);
    ck_assert_uint_eq(r.body_len, 5);
    ck_assert_mem_eq(r.body, "a\0b\0c", 5);
    _cleanup_free_ char *ct = tu_header(&r, "Content-Type");
    ck_assert_str_eq(ct, "application/octet-stream");
    tu_response_free(&r);

    ck_assert_int_eq(req("GET", "/many-headers", NULL, &r), 204);
    ck_assert_uint_eq(r.body_len, 0);
    tu_response_free(&r);

    ck_assert_int_eq(req("GET", "/replaced", NULL, &r), 409);
    _cleanup_json_ json_t *e4 = tu_json(&r);
    ck_assert_str_eq(jstr(json_object_get(e4, "error"), "code"), "Second");
    tu_response_free(&r);

    /* HEAD: headers only.  */
    ck_assert_int_eq(req("HEAD", "/", NULL, &r), 200);
    ck_assert_uint_eq(r.body_len, 0);
    tu_response_free(&r);
}
END_TEST

/* Every 429 and 503 says when to come back, not only the front end's own.  */
START_TEST(retry_after_on_every_busy_reply)
{
    const char *paths[] = {"/busy", "/down"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++) {
        tu_response_t r;
        long status = req("GET", paths[i], NULL, &r);
        ck_assert_int_eq(status, i == 0 ? 429 : 503);
        _cleanup_free_ char *ra = tu_header(&r, "Retry-After");
        ck_assert_msg(ra && atoi(ra) > 0, "no Retry-After on %s", paths[i]);
        tu_response_free(&r);
    }
}
END_TEST

START_TEST(response_headers_capped)
{
    /* Directly: more headers than the response holds are dropped, not
     * written past the array.  */
    http_response_t res = {0};
    for (int i = 0; i < 100; i++)
        http_add_header(&res, "X-N", "%d", i);
    ck_assert_uint_eq(res.n_headers, ARRAY_SIZE(res.headers));
    ck_assert_str_eq(res.headers[0].value, "0");
    for (size_t i = 0; i < res.n_headers; i++) {
        free(res.headers[i].name);
        free(res.headers[i].value);
    }
    http_reply_json(&res, 200, json_pack("{s:i}", "a", 1));
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.body, "{\"a\":1}");
    http_reply_empty(&res, 204); /* frees the previous body */
    ck_assert_ptr_null(res.body);
    ck_assert_uint_eq(res.body_len, 0);
}
END_TEST

START_TEST(listen_errors)
{
    static const char *const bad[] = {"nope", "127.0.0.1:notaport", "no.such.host.invalid:80",
                                      "127.0.0.1:99999"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        http_config_t cfg = {.name = "t", .listen = bad[i]};
        sbx_error_t err = {0};
        http_server_t *s = http_server_start(&cfg, handler, NULL, &err);
        ck_assert_msg(s == NULL, "%s accepted", bad[i]);
        ck_assert_str_ne(err.msg, "");
    }
    /* A port in use.  */
    char taken[64];
    snprintf(taken, sizeof(taken), "127.0.0.1:%d", http_server_port(server));
    http_config_t cfg = {.name = "t", .listen = taken};
    sbx_error_t err = {0};
    ck_assert_ptr_null(http_server_start(&cfg, handler, NULL, &err));
    http_server_stop(NULL);
}
END_TEST

START_TEST(thread_pool_mode)
{
    /* With the access log on, and a path that is not UTF-8 in it.  */
    http_config_t cfg = {
        .name = "pool", .listen = "127.0.0.1:0", .thread_pool = 2, .access_log = true};
    sbx_error_t err = {0};
    http_server_t *s = http_server_start(&cfg, handler, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", http_server_port(s));
    for (int i = 0; i < 20; i++) {
        json_t *j = req_json("POST", "/pool", &(tu_request_opts_t){.body = "{}"});
        ck_assert_int_eq(json_integer_value(json_object_get(j, "bodyLen")), 2);
        json_decref(j);
    }
    json_t *j = req_json("GET", "/%FF%FE", NULL);
    ck_assert_str_eq(jstr(j, "path"), "(invalid)");
    json_decref(j);
    http_server_stop(s);
}
END_TEST

/* ---- requests on threads of their own, and stopping under load ---- */

static bool all_apart(void *ctx, const http_request_t *req)
{
    return true;
}

static void apart_handler(void *ctx, const http_request_t *req, http_response_t *res)
{
    usleep(200);
    http_reply_json(res, 200, json_pack("{s:s}", "path", req->path));
}

typedef struct hammer {
    char url[96];
    bool *stop;
    int ok, bad;
} hammer_t;

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

/* One keep-alive connection sending requests back to back.  */
static void *hammer_main(void *arg)
{
    hammer_t *h = arg;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, h->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    while (!__atomic_load_n(h->stop, __ATOMIC_SEQ_CST)) {
        long status = 0;
        if (curl_easy_perform(c) == CURLE_OK &&
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 200)
            h->ok++;
        else if (status == 503)
            usleep(1000); /* arrived once the stop began: refused, not run */
        else if (status != 0)
            h->bad++;
        else
            usleep(1000); /* the server is gone: wait for the test to end */
    }
    curl_easy_cleanup(c);
    return NULL;
}

START_TEST(apart_requests_survive_stop)
{
    /* Stopping while kept-alive connections keep sending: a request that
     * arrives after the stop began must neither start a thread that
     * outlives the server nor leave a connection suspended.  */
    for (int round = 0; round < 25; round++) {
        http_config_t cfg = {
            .name = "apart", .listen = "127.0.0.1:0", .thread_pool = 1, .run_apart = all_apart};
        sbx_error_t err = {0};
        http_server_t *s = http_server_start(&cfg, apart_handler, NULL, &err);
        ck_assert_msg(s != NULL, "%s", err.msg);
        bool stop = false;
        hammer_t h[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
            h[i] = (hammer_t){.stop = &stop};
            snprintf(h[i].url, sizeof(h[i].url), "http://127.0.0.1:%d/r%d", http_server_port(s), i);
            ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
        }
        int64_t until = sbx_monotonic_ms() + 5000;
        while (h[0].ok + h[1].ok + h[2].ok + h[3].ok < 40 && sbx_monotonic_ms() < until)
            usleep(1000);
        int port = http_server_port(s);
        http_server_stop(s);
        __atomic_store_n(&stop, true, __ATOMIC_SEQ_CST);
        /* Stopped means not listening: no connection queues unanswered.  */
        ck_assert_msg(!tu_wait_port(port, 100), "port %d still accepts connections", port);
        int ok = 0;
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            ck_assert_int_eq(h[i].bad, 0);
            ok += h[i].ok;
        }
        ck_assert_int_ge(ok, 40);
    }
}
END_TEST

/* ---- raw connections ---- */

/* A TCP connection to 127.0.0.1:port from the local address `from` (NULL:
 * any); -1 when it cannot be made.  */
static int raw_connect(int port, const char *from)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (from) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        inet_pton(AF_INET, from, &a.sin_addr);
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
            close(fd);
            return -1;
        }
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool raw_send(int fd, const char *s)
{
    size_t n = strlen(s);
    return send(fd, s, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* Read what arrives within timeout_ms into buf (terminated); *closed says
 * whether the server closed (or reset) the connection by then.  */
static size_t raw_read(int fd, char *buf, size_t size, int timeout_ms, bool *closed)
{
    size_t len = 0;
    int64_t until = sbx_monotonic_ms() + timeout_ms;
    *closed = false;
    for (;;) {
        int64_t left = until - sbx_monotonic_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t r = recv(fd, buf + len, size - 1 - len, 0);
        if (r <= 0) {
            *closed = true;
            break;
        }
        len += (size_t)r;
        if (len == size - 1)
            break;
    }
    buf[len] = '\0';
    return len;
}

/* Whether the server closes the connection within timeout_ms.  */
static bool raw_closed_within(int fd, int timeout_ms)
{
    char buf[4096];
    bool closed = false;
    int64_t until = sbx_monotonic_ms() + timeout_ms;
    while (!closed && sbx_monotonic_ms() < until)
        raw_read(fd, buf, sizeof(buf), (int)(until - sbx_monotonic_ms()), &closed);
    return closed;
}

/* ---- streams and stopping ---- */

static int stream_readers, producers_done;

static bool upload_streamed(void *ctx, const http_request_t *req)
{
    return strcmp(req->method, "PUT") == 0;
}

static void *produce(void *arg)
{
    http_pipe_t *p = arg;
    char chunk[16384];
    memset(chunk, 'z', sizeof(chunk));
    while (http_pipe_write(p, chunk, sizeof(chunk)) == 0)
        ;
    http_pipe_close(p, false);
    __atomic_add_fetch(&producers_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* PUT reads its body as it streams in; GET answers an endless pipe.  */
static void stream_handler(void *ctx, const http_request_t *req, http_response_t *res)
{
    if (strcmp(req->method, "PUT") == 0) {
        char buf[4096];
        __atomic_add_fetch(&stream_readers, 1, __ATOMIC_SEQ_CST);
        ssize_t n;
        while ((n = http_body_read(req, buf, sizeof(buf))) > 0)
            ;
        http_reply_empty(res, n == 0 ? 204 : 400);
        return;
    }
    http_pipe_t *p = http_pipe_new(64 * 1024);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    ck_assert_int_eq(pthread_create(&t, &attr, produce, p), 0);
    pthread_attr_destroy(&attr);
    http_reply_pipe(res, 200, "application/octet-stream", HTTP_SIZE_UNKNOWN, p);
}

/* A client that stalls an upload or a download part way (or trickles a
 * byte now and then) cannot hold up a stop: its stream is cut.  */
START_TEST(stop_cuts_stalled_streams)
{
    http_config_t cfg = {.name = "streams",
                         .listen = "127.0.0.1:0",
                         .thread_pool = 1,
                         .run_apart = all_apart,
                         .stream_body = upload_streamed};
    sbx_error_t err = {0};
    stream_readers = producers_done = 0;
    http_server_t *s = http_server_start(&cfg, stream_handler, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    int port = http_server_port(s);
    int up = raw_connect(port, NULL), down = raw_connect(port, NULL);
    ck_assert_int_ge(up, 0);
    ck_assert_int_ge(down, 0);
    ck_assert(raw_send(up, "PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nabc"));
    ck_assert(raw_send(down, "GET /f HTTP/1.1\r\nHost: a\r\n\r\n"));
    char buf[4096];
    bool closed;
    ck_assert_uint_gt(raw_read(down, buf, sizeof(buf), 2000, &closed), 0);
    int64_t until = sbx_monotonic_ms() + 2000;
    while (!__atomic_load_n(&stream_readers, __ATOMIC_SEQ_CST) && sbx_monotonic_ms() < until)
        usleep(1000);
    ck_assert_int_eq(stream_readers, 1);
    /* Neither client sends or reads another byte.  */
    int64_t t0 = sbx_monotonic_ms();
    http_server_stop(s);
    int64_t took = sbx_monotonic_ms() - t0;
    ck_assert_msg(took < 3000, "stop waited %lld ms for stalled streams", (long long)took);
    until = sbx_monotonic_ms() + 2000;
    while (!__atomic_load_n(&producers_done, __ATOMIC_SEQ_CST) && sbx_monotonic_ms() < until)
        usleep(1000);
    ck_assert_int_eq(producers_done, 1);
    close(up);
    close(down);
}
END_TEST

/* ---- a client that goes away mid-upload ---- */

static int cut_aborted, cut_closed;

/* Reads slowly, so the pipe fills and the connection is suspended when
 * the client's close arrives.  */
static void slow_reader(void *ctx, const http_request_t *req, http_response_t *res)
{
    char buf[4096];
    ssize_t n = http_body_read(req, buf, sizeof(buf));
    /* Stalled until the client has sent what it will and gone.  */
    int64_t until = sbx_monotonic_ms() + 2000;
    while (!__atomic_load_n(&cut_closed, __ATOMIC_SEQ_CST) && sbx_monotonic_ms() < until)
        usleep(1000);
    usleep(50000);
    while (n > 0)
        n = http_body_read(req, buf, sizeof(buf));
    if (n < 0)
        __atomic_add_fetch(&cut_aborted, 1, __ATOMIC_SEQ_CST);
    http_reply_empty(res, n == 0 ? 204 : 400);
}

static size_t large_limit(void *ctx, const char *method, const char *path)
{
    return 128u << 20;
}

/* A client that closes part way through a streamed upload is noticed at
 * once, even when its close arrives while the connection is suspended
 * waiting for the reader.  */
START_TEST(cut_upload_noticed)
{
    http_config_t cfg = {.name = "cut",
                         .listen = "127.0.0.1:0",
                         .thread_pool = 1,
                         .run_apart = all_apart,
                         .stream_body = upload_streamed,
                         .body_limit = large_limit};
    sbx_error_t err = {0};
    cut_aborted = 0;
    http_server_t *s = http_server_start(&cfg, slow_reader, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    int port = http_server_port(s);
    /* Just past the body pipe's capacity, so the server holds the rest in
     * its own buffer, suspended, with nothing left unread in the socket.  */
    static const size_t extra[] = {1024, 4096, 12000, 30000};
    static char block[(256u << 10) + 30000];
    memset(block, 'c', sizeof(block));
    for (int i = 0; i < 8; i++) {
        int fd = raw_connect(port, NULL);
        ck_assert_int_ge(fd, 0);
        __atomic_store_n(&cut_closed, 0, __ATOMIC_SEQ_CST);
        ck_assert(raw_send(fd, "PUT /f HTTP/1.1\r\nHost: a\r\nContent-Length: 67108864\r\n\r\n"));
        size_t len = (256u << 10) + extra[i % 4];
        ck_assert_int_eq(write(fd, block, len), (ssize_t)len);
        usleep(100000); /* the server reads what it can hold, then waits */
        close(fd);
        __atomic_store_n(&cut_closed, 1, __ATOMIC_SEQ_CST);
        int64_t until = sbx_monotonic_ms() + 5000;
        while (__atomic_load_n(&cut_aborted, __ATOMIC_SEQ_CST) <= i && sbx_monotonic_ms() < until)
            usleep(2000);
        ck_assert_msg(cut_aborted == i + 1, "cut upload %d not noticed within 5 s", i);
    }
    http_server_stop(s);
}
END_TEST

/* ---- ambiguous framing ---- */

/* Two readings of where the body ends (Content-Length or chunked) would
 * let what follows the body pass for a request of its own behind a proxy
 * that takes the other reading: refused with 400, and the connection
 * closed so nothing after it is read as a request.  */
START_TEST(ambiguous_framing_refused)
{
    static const char *const heads[] = {
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 5\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        "Transfer-Encoding: chunked\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n"
        "Content-Length: 5\r\n\r\n",
        "POST /x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    /* Five bytes, or an empty chunked body, then a second request.  */
    const char *rest = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    for (size_t i = 0; i < ARRAY_SIZE(heads); i++) {
        int fd = raw_connect(http_server_port(server), NULL);
        ck_assert_int_ge(fd, 0);
        _cleanup_free_ char *msg = xasprintf("%s%s", heads[i], rest);
        ck_assert(raw_send(fd, msg));
        char buf[8192];
        bool closed = false;
        raw_read(fd, buf, sizeof(buf), 3000, &closed);
        close(fd);
        ck_assert_msg(strncmp(buf, "HTTP/1.1 400", 12) == 0, "case %zu answered: %.80s", i, buf);
        ck_assert_msg(strstr(buf, "\"InvalidRequest\""), "case %zu: %s", i, buf);
        ck_assert_msg(closed, "case %zu: connection left open", i);
        /* One answer only: the second request was never read.  */
        ck_assert_ptr_null(strstr(buf + 12, "HTTP/1.1"));
    }
    ck_assert_int_eq(__atomic_load_n(&handled, __ATOMIC_SEQ_CST), 0);

    /* Unambiguous requests still run: chunked alone, Content-Length alone.  */
    const char *good[] = {
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nhi\r\n0\r\n\r\n",
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    };
    for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
        int fd = raw_connect(http_server_port(server), NULL);
        ck_assert(raw_send(fd, good[i]));
        char buf[8192];
        bool closed = false;
        raw_read(fd, buf, sizeof(buf), 1000, &closed);
        close(fd);
        ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "good %zu: %.80s", i, buf);
        ck_assert_ptr_nonnull(strstr(buf, "\"bodyLen\":2"));
    }
}
END_TEST

/* ---- admission of slow requests ---- */

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int gate_waiting;

/* POSTs wait until the gate opens; anything else answers at once.  */
static void gate_handler(void *ctx, const http_request_t *req, http_response_t *res)
{
    if (strcmp(req->method, "POST") == 0) {
        pthread_mutex_lock(&gate_lock);
        gate_waiting++;
        pthread_cond_broadcast(&gate_cond);
        while (!gate_open)
            pthread_cond_wait(&gate_cond, &gate_lock);
        gate_waiting--;
        pthread_mutex_unlock(&gate_lock);
    }
    http_reply_json(res, 200, json_pack("{s:s}", "path", req->path));
}

static bool posts_apart(void *ctx, const http_request_t *req)
{
    return strcmp(req->method, "POST") == 0;
}

static bool client_from_header(void *ctx, const http_request_t *req, char *key, size_t size)
{
    const char *c = http_header(req, "X-Client");
    if (!c)
        return false;
    snprintf(key, size, "%s", c);
    return true;
}

typedef struct slow_call {
    char url[96], client[64];
    long status;
    pthread_t t;
} slow_call_t;

static void *slow_call_main(void *arg)
{
    slow_call_t *c = arg;
    const char *hdrs[] = {c->client, NULL};
    tu_request_opts_t o = {.body = "{}", .headers = hdrs, .timeout_ms = 20000};
    tu_response_t r;
    c->status = tu_http("POST", c->url, &o, &r) == 0 ? r.status : -1;
    tu_response_free(&r);
    return NULL;
}

static void gate_wait_for(int n)
{
    int64_t until = sbx_monotonic_ms() + 10000;
    pthread_mutex_lock(&gate_lock);
    while (gate_waiting < n && sbx_monotonic_ms() < until) {
        struct timespec ts = sbx_deadline_in(50);
        pthread_cond_timedwait(&gate_cond, &gate_lock, &ts);
    }
    int got = gate_waiting;
    pthread_mutex_unlock(&gate_lock);
    ck_assert_int_eq(got, n);
}

/* A request past a bound is answered 429 at once, never queued behind the
 * slow ones nor run on an event thread.  */
static void expect_429(int port, const char *client, const char *why)
{
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/more", port);
    _cleanup_free_ char *hdr = xasprintf("X-Client: %s", client);
    const char *hdrs[] = {hdr, NULL};
    tu_request_opts_t o = {.body = "{}", .headers = hdrs, .timeout_ms = 3000};
    tu_response_t r;
    int64_t t0 = sbx_monotonic_ms();
    ck_assert_int_eq(tu_http("POST", url, &o, &r), 0);
    ck_assert_int_lt(sbx_monotonic_ms() - t0, 1000);
    ck_assert_int_eq(r.status, 429);
    _cleanup_free_ char *retry = tu_header(&r, "Retry-After");
    ck_assert_ptr_nonnull(retry);
    ck_assert_int_ge(atoi(retry), 1);
    _cleanup_json_ json_t *e = tu_json(&r);
    ck_assert_str_eq(jstr(json_object_get(e, "error"), "code"), "TooManyRequests");
    ck_assert_ptr_nonnull(strstr(jstr(json_object_get(e, "error"), "message"), why));
    tu_response_free(&r);
}

START_TEST(slow_requests_admitted_within_bounds)
{
    /* Event threads (epoll) and a thread per connection alike.  */
    const unsigned pools[] = {1, 0};
    for (size_t m = 0; m < ARRAY_SIZE(pools); m++) {
        gate_open = false;
        http_config_t cfg = {.name = "admit",
                             .listen = "127.0.0.1:0",
                             .thread_pool = pools[m],
                             .run_apart = posts_apart,
                             .client_key = client_from_header,
                             .max_in_flight = 6,
                             .max_in_flight_per_client = 4};
        sbx_error_t err = {0};
        http_server_t *s = http_server_start(&cfg, gate_handler, NULL, &err);
        ck_assert_msg(s != NULL, "%s", err.msg);
        int port = http_server_port(s);
        slow_call_t calls[6];
        for (int i = 0; i < 6; i++) {
            snprintf(calls[i].url, sizeof(calls[i].url), "http://127.0.0.1:%d/slow%d", port, i);
            snprintf(calls[i].client, sizeof(calls[i].client), "X-Client: %s", i < 4 ? "a" : "b");
        }
        for (int i = 0; i < 4; i++)
            ck_assert_int_eq(pthread_create(&calls[i].t, NULL, slow_call_main, &calls[i]), 0);
        gate_wait_for(4);
        expect_429(port, "a", "of this client");
        for (int i = 4; i < 6; i++)
            ck_assert_int_eq(pthread_create(&calls[i].t, NULL, slow_call_main, &calls[i]), 0);
        gate_wait_for(6);
        expect_429(port, "c", "too many requests are in progress");
        /* Reads still answer at once.  */
        _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/read", port);
        tu_response_t r;
        int64_t t0 = sbx_monotonic_ms();
        ck_assert_int_eq(tu_http("GET", url, &(tu_request_opts_t){.timeout_ms = 2000}, &r), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert_int_lt(sbx_monotonic_ms() - t0, 500);
        tu_response_free(&r);

        pthread_mutex_lock(&gate_lock);
        gate_open = true;
        pthread_cond_broadcast(&gate_cond);
        pthread_mutex_unlock(&gate_lock);
        for (int i = 0; i < 6; i++) {
            pthread_join(calls[i].t, NULL);
            ck_assert_int_eq(calls[i].status, 200);
        }
        /* Finished requests no longer count.  */
        for (int i = 0; i < 6; i++) {
            calls[i].status = 0;
            ck_assert_int_eq(pthread_create(&calls[i].t, NULL, slow_call_main, &calls[i]), 0);
        }
        for (int i = 0; i < 6; i++) {
            pthread_join(calls[i].t, NULL);
            ck_assert_int_eq(calls[i].status, 200);
        }
        http_server_stop(s);
    }
}
END_TEST

/* ---- connections ---- */

static http_server_t *limits_server(unsigned max_conns, unsigned per_address, unsigned head_ms)
{
    http_config_t cfg = {.name = "limits",
                         .listen = "127.0.0.1:0",
                         .thread_pool = 1,
                         .max_connections = max_conns,
                         .max_connections_per_address = per_address,
                         .header_timeout_ms = head_ms};
    sbx_error_t err = {0};
    http_server_t *s = http_server_start(&cfg, handler, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

/* A GET on a new connection answered within ms.  */
static void get_within(int port, int ms)
{
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/", port);
    tu_response_t r;
    int64_t t0 = sbx_monotonic_ms();
    int rc = tu_http("GET", url, &(tu_request_opts_t){.timeout_ms = ms}, &r);
    int64_t took = sbx_monotonic_ms() - t0;
    ck_assert_msg(rc == 0 && r.status == 200, "GET unanswered after %lld ms", (long long)took);
    tu_response_free(&r);
}

/* The request head must be complete within the deadline, however steadily
 * it trickles in; a kept-alive connection gets the same time for its next
 * one.  */
START_TEST(header_deadline)
{
    http_server_t *s = limits_server(0, 0, 600);
    int port = http_server_port(s);
    int fd = raw_connect(port, NULL);
    ck_assert_int_ge(fd, 0);
    ck_assert(raw_send(fd, "GET / HTTP/1.1\r\n"));
    int64_t t0 = sbx_monotonic_ms();
    bool closed = false;
    while (!closed && sbx_monotonic_ms() - t0 < 5000) {
        char buf[256];
        raw_send(fd, "X-Slow: 1\r\n");
        raw_read(fd, buf, sizeof(buf), 100, &closed);
    }
    int64_t took = sbx_monotonic_ms() - t0;
    close(fd);
    ck_assert_msg(closed, "a trickling request head kept its connection for 5 s");
    ck_assert_int_ge(took, 500);
    ck_assert_int_lt(took, 2000);

    /* Kept alive after an answer: closed when no next request comes.  */
    fd = raw_connect(port, NULL);
    ck_assert(raw_send(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    char buf[4096];
    raw_read(fd, buf, sizeof(buf), 300, &closed);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%.80s", buf);
    ck_assert(!closed);
    ck_assert(raw_closed_within(fd, 2000));
    close(fd);
    http_server_stop(s);
}
END_TEST

static bool has_token(void *ctx, const http_request_t *req)
{
    return http_header(req, "Authorization") != NULL;
}

/* Whether a connection that sent a head for a large body and trickles it
 * is closed within ms.  */
static bool trickled_body_cut(int port, const char *auth, int ms)
{
    int fd = raw_connect(port, NULL);
    ck_assert_int_ge(fd, 0);
    char head[256];
    snprintf(head, sizeof(head), "PUT / HTTP/1.1\r\nHost: a\r\n%sContent-Length: 1000\r\n\r\n",
             auth);
    ck_assert(raw_send(fd, head));
    bool closed = false;
    int64_t t0 = sbx_monotonic_ms();
    while (!closed && sbx_monotonic_ms() - t0 < ms) {
        char buf[256];
        raw_send(fd, "x");
        raw_read(fd, buf, sizeof(buf), 100, &closed);
    }
    close(fd);
    return closed;
}

/* A head followed by a trickling body does not buy an unauthenticated
 * client a connection past the header deadline; a client with a token
 * may upload as slowly as it likes.  */
START_TEST(unauthenticated_body_under_header_deadline)
{
    http_config_t cfg = {.name = "limits",
                         .listen = "127.0.0.1:0",
                         .thread_pool = 1,
                         .header_timeout_ms = 500,
                         .authenticated = has_token};
    sbx_error_t err = {0};
    http_server_t *s = http_server_start(&cfg, handler, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    int port = http_server_port(s);
    ck_assert_msg(trickled_body_cut(port, "", 3000),
                  "an unauthenticated body kept its connection past the deadline");
    ck_assert_msg(!trickled_body_cut(port, "Authorization: Bearer t\r\n", 1500),
                  "an authenticated upload was cut by the header deadline");
    http_server_stop(s);
}
END_TEST

/* A route's larger body limit is for known clients: an unknown one's body
 * is never collected past max_body (it would be held in memory only to be
 * refused).  */
START_TEST(unauthenticated_body_small_limit)
{
    http_config_t cfg = {.name = "limits",
                         .listen = "127.0.0.1:0",
                         .max_body = 1024,
                         .body_limit = body_limit,
                         .authenticated = has_token};
    sbx_error_t err = {0};
    http_server_t *s = http_server_start(&cfg, handler, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/big", http_server_port(s));
    _cleanup_free_ char *body = xmalloc(4096);
    memset(body, 'b', 4096);
    const char *auth[] = {"Authorization: Bearer t", NULL};
    for (int known = 0; known < 2; known++) {
        tu_response_t r;
        tu_request_opts_t o = {.body = body, .body_len = 4096, .headers = known ? auth : NULL};
        ck_assert_int_eq(tu_http("PUT", url, &o, &r), 0);
        ck_assert_int_eq(r.status, known ? 200 : 413);
        tu_response_free(&r);
    }
    http_server_stop(s);
}
END_TEST

/* Connections that never finish a request head cannot keep a client that
 * sends one from being served: near the limit the oldest of them go.  */
START_TEST(waiting_connections_shed_at_limit)
{
    http_server_t *s = limits_server(64, 0, 30000);
    int port = http_server_port(s);
    int fds[150];
    for (int i = 0; i < 150; i++) {
        char from[32];
        snprintf(from, sizeof(from), "127.0.1.%d", 1 + i % 200);
        fds[i] = raw_connect(port, from);
        ck_assert_int_ge(fds[i], 0);
        raw_send(fds[i], "GET / HTTP/1.1\r\n");
    }
    get_within(port, 1000);
    /* The first ones were closed to make room.  */
    ck_assert(raw_closed_within(fds[0], 1000));
    for (int i = 0; i < 150; i++)
        close(fds[i]);
    http_server_stop(s);
}
END_TEST

START_TEST(connections_capped_per_address)
{
    http_server_t *s = limits_server(0, 4, 30000);
    int port = http_server_port(s);
    int fds[5];
    for (int i = 0; i < 5; i++) {
        fds[i] = raw_connect(port, "127.0.2.9");
        ck_assert_int_ge(fds[i], 0);
        raw_send(fds[i], "GET / HTTP/1.1\r\n");
    }
    ck_assert_msg(raw_closed_within(fds[4], 2000), "a fifth connection from one address");
    ck_assert(!raw_closed_within(fds[0], 200));
    get_within(port, 1000); /* from 127.0.0.1 */
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    http_server_stop(s);
}
END_TEST

/* ---- loopback addresses ---- */

START_TEST(loopback_parsed_not_prefixed)
{
    static const char *const yes[] = {
        "127.0.0.1",        "127.8.9.10",       "::1", "[::1]", "localhost", "LocalHost",
        "::ffff:127.0.0.1", "[0:0:0:0:0:0:0:1]"};
    static const char *const no[] = {"127.example.com",
                                     "127.0.0.1.evil.com",
                                     "localhost.evil.com",
                                     "127.1",
                                     "0x7f.0.0.1",
                                     "128.0.0.1",
                                     "0.0.0.0",
                                     "::",
                                     "[::]",
                                     "::2",
                                     "",
                                     "[::1",
                                     "127.0.0.1 ",
                                     "evil.com"};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
        ck_assert_msg(http_host_is_loopback(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < ARRAY_SIZE(no); i++)
        ck_assert_msg(!http_host_is_loopback(no[i]), "%s", no[i]);
    ck_assert(http_listen_is_loopback("127.0.0.1:8080"));
    ck_assert(http_listen_is_loopback("[::1]:8080"));
    ck_assert(http_listen_is_loopback("localhost:1"));
    ck_assert(!http_listen_is_loopback("127.example.com:8080"));
    ck_assert(!http_listen_is_loopback("127.0.0.1.evil.com:8080"));
    ck_assert(!http_listen_is_loopback("localhost.evil.com:1"));
    ck_assert(!http_listen_is_loopback("::1:8080"));
    ck_assert(!http_listen_is_loopback("127.0.0.1"));
    ck_assert(!http_listen_is_loopback("127.0.0.1:"));
    ck_assert(!http_listen_is_loopback("127.0.0.1:80x"));
    ck_assert(!http_listen_is_loopback("[::1:80"));
}
END_TEST

struct sse_seen {
    char log[512];
    int stop_at, n;
};

static int sse_record(void *ud, const char *event, const char *data, size_t len)
{
    struct sse_seen *s = ud;
    size_t used = strlen(s->log);
    snprintf(s->log + used, sizeof s->log - used, "[%s|%.*s]", event ? event : "#", (int)len,
             data ? data : "");
    return ++s->n == s->stop_at ? 7 : 0;
}

/* The event-stream reader: lines split anywhere, CRLF, comments, data
 * lines joined, events without data, the bound, and a stop.  */
START_TEST(sse_reader)
{
    const char *text = "event: a\r\ndata: {\"x\":1}\r\n\r\n: keep\n\nevent: b\ndata: one\n"
                       "data: two\n\nevent: c\n\n";
    for (size_t step = 1; step <= strlen(text); step++) {
        http_sse_reader_t r = {.max_line = 64};
        struct sse_seen seen = {.stop_at = -1};
        for (size_t i = 0; i < strlen(text); i += step) {
            size_t n = strlen(text) - i < step ? strlen(text) - i : step;
            ck_assert_int_eq(http_sse_feed(&r, text + i, n, sse_record, &seen), 0);
        }
        ck_assert_str_eq(seen.log, "[a|{\"x\":1}][#|][b|one\ntwo][c|]");
        http_sse_reader_done(&r);
    }
    http_sse_reader_t r = {.max_line = 64};
    struct sse_seen seen = {.stop_at = 1};
    ck_assert_int_eq(http_sse_feed(&r, text, strlen(text), sse_record, &seen), 7);
    ck_assert_str_eq(seen.log, "[a|{\"x\":1}]");
    http_sse_reader_done(&r);
    char big[200];
    memset(big, 'x', sizeof big);
    r = (http_sse_reader_t){.max_line = 64};
    ck_assert_int_eq(http_sse_feed(&r, big, sizeof big, sse_record, &seen), -1);
    ck_assert(r.overflow);
    http_sse_reader_done(&r);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 30); /* apart_requests_survive_stop starts 25 servers */
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, request_collected);
    tcase_add_test(tc, sse_reader);
    tcase_add_test(tc, percent_decoding);
    tcase_add_test(tc, request_ids);
    tcase_add_test(tc, body_limits);
    tcase_add_test(tc, refused_body_answered_cleanly);
    tcase_add_test(tc, bogus_content_length);
    tcase_add_test(tc, reply_builders);
    tcase_add_test(tc, response_headers_capped);
    tcase_add_test(tc, retry_after_on_every_busy_reply);
    tcase_add_test(tc, listen_errors);
    tcase_add_test(tc, thread_pool_mode);
    tcase_add_test(tc, apart_requests_survive_stop);
    tcase_add_test(tc, ambiguous_framing_refused);
    tcase_add_test(tc, slow_requests_admitted_within_bounds);
    tcase_add_test(tc, header_deadline);
    tcase_add_test(tc, waiting_connections_shed_at_limit);
    tcase_add_test(tc, connections_capped_per_address);
    tcase_add_test(tc, loopback_parsed_not_prefixed);
    tcase_add_test(tc, stop_cuts_stalled_streams);
    tcase_add_test(tc, cut_upload_noticed);
    tcase_add_test(tc, unauthenticated_body_under_header_deadline);
    tcase_add_test(tc, unauthenticated_body_small_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(http_suite());
}
