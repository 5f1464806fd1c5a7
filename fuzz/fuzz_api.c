/* fuzz_api.c -- libFuzzer target for the ARM layer: each input is a short
 * sequence of requests (method, path, query, headers chosen by leading
 * bytes; the rest is the body) answered by api_handle over a real SQLite
 * storage that starts empty for every input.
 *
 * Input: records separated by "\n----\n" (at most MAX_RECORDS).  A record is
 *   byte 0  method (see methods[]); 0xFF instead finishes every due
 *           operation, successfully when byte 1 is even
 *   byte 1  path (see paths[]); the last entry takes "path?query" from the
 *           first line of the body instead
 *   byte 2  flags: bits 0-1 api-version, 2-3 Content-Type, 4 If-Match: *,
 *           5 If-None-Match: *, 6 $top=2, 7 odd Host header
 *   rest    the body
 *
 * Besides the sanitizers, every answer is checked: a status ARM knows, a
 * JSON body that parses and, for errors, an ARM error object.  A 500 from
 * a request is a crash too: hostile input must never reach one.  */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "fuzz/fake_http.h"
#include "storage/storage.h"

#define MAX_RECORDS 16
#define SEPARATOR "\n----\n"
#define SUB "00000000-0000-0000-0000-000000000001"
#define RG_PATH "/subscriptions/" SUB "/resourceGroups/rg1/providers/Microsoft.App"
#define GROUP_PATH RG_PATH "/sandboxGroups/g1"
#define LOC_PATH "/subscriptions/" SUB "/providers/Microsoft.App/locations/westeurope"

static const char *const methods[] = {"GET", "PUT", "PATCH", "DELETE", "POST", "HEAD", "OPTIONS"};

static const char *const paths[] = {
    GROUP_PATH,
    RG_PATH "/sandboxGroups",
    "/subscriptions/" SUB "/providers/Microsoft.App/sandboxGroups",
    GROUP_PATH "/vnetConnections/v1",
    GROUP_PATH "/vnetConnections",
    GROUP_PATH "/sandboxes/s1",
    GROUP_PATH "/sandboxes",
    GROUP_PATH "/egressPolicies/p1",
    GROUP_PATH "/egressPolicies",
    GROUP_PATH "/sandboxes/s1/exec",
    GROUP_PATH "/sandboxes/s1/files",
    "/providers/Microsoft.App/operations",
    LOC_PATH "/operationStatuses/", /* + the last operation id */
    LOC_PATH "/operationResults/",  /* + the last operation id */
    "//subscriptions/" SUB "/resourceGroups/RG1/providers/microsoft.app/SANDBOXGROUPS/G1",
    "/openapi.json",
    NULL, /* raw: first line of the body */
};
#define N_PATHS ARRAY_SIZE(paths)

static const char *const versions[] = {"2026-07-01", "2026-01-01", NULL, "2021-01-01"};
static const char *const content_types[] = {"application/json", NULL, "text/plain",
                                            "application/json; charset=utf-8"};

typedef struct fuzz_state {
    st_db_t *db;
    api_t *api;
    char last_op[64]; /* from the last Azure-AsyncOperation header */
} fuzz_state_t;

/* A scheduler stand-in: sandbox actions get an answer without a host.  */
static void fake_sandbox_call(void *ctx, const st_resource_t *sandbox, const char *action,
                              const http_request_t *req, http_response_t *res)
{
    http_reply_json(res, 200,
                    json_pack("{s:s,s:I}", "action", action, "bytes", (json_int_t)req->body_len));
}

static void check_reply(const http_request_t *req, const http_response_t *res)
{
    if (res->status < 200 || res->status > 599 || res->status == 500) {
        fprintf(stderr, "fuzz_api: %s %s answered %d: %.*s\n", req->method, req->raw_url,
                res->status, (int)res->body_len, res->body ? res->body : "");
        abort();
    }
    if (!res->body_len)
        return;
    json_error_t jerr;
    json_t *j = json_loadb(res->body, res->body_len, 0, &jerr);
    if (!j) {
        fprintf(stderr, "fuzz_api: %s %s: reply is not JSON: %s\n", req->method, req->raw_url,
                jerr.text);
        abort();
    }
    if (res->status >= 400) {
        json_t *code = json_object_get(json_object_get(j, "error"), "code");
        if (!json_is_string(code) || json_string_length(code) == 0) {
            fprintf(stderr, "fuzz_api: %s %s: %d without an ARM error code\n", req->method,
                    req->raw_url, res->status);
            abort();
        }
    }
    json_decref(j);
}

static void remember_operation(fuzz_state_t *s, const http_response_t *res)
{
    for (size_t i = 0; i < res->n_headers; i++) {
        if (strcasecmp(res->headers[i].name, "Azure-AsyncOperation") != 0)
            continue;
        const char *id = strstr(res->headers[i].value, "/operationStatuses/");
        if (!id)
            continue;
        id += strlen("/operationStatuses/");
        size_t n = strcspn(id, "?");
        if (n >= sizeof(s->last_op))
            n = sizeof(s->last_op) - 1;
        memcpy(s->last_op, id, n);
        s->last_op[n] = '\0';
    }
}

/* What the scheduler would do once the hosts answered.  */
static void finish_due_operations(fuzz_state_t *s, bool ok)
{
    st_operation_t *ops = NULL;
    size_t n = 0;
    if (st_operations_due(s->db, INT64_MAX, 64, &ops, &n, NULL) < 0)
        return;
    for (size_t i = 0; i < n; i++)
        api_operation_finish(s->db, ops[i].id, ok, ok ? NULL : "HostFailed",
                             ok ? NULL : "the host failed", NULL, NULL);
    st_operations_free(ops, n);
}

static void run_record(fuzz_state_t *s, const uint8_t *d, size_t n)
{
    if (n < 3)
        return;
    if (d[0] == 0xFF) {
        finish_due_operations(s, d[1] % 2 == 0);
        return;
    }
    const char *method = methods[d[0] % ARRAY_SIZE(methods)];
    size_t path_i = d[1] % N_PATHS;
    uint8_t flags = d[2];
    const char *body = (const char *)d + 3;
    size_t body_len = n - 3;

    _cleanup_free_ char *path = NULL;
    if (paths[path_i]) {
        bool op_path = strstr(paths[path_i], "/operation") != NULL;
        path = xasprintf("%s%s", paths[path_i], op_path ? s->last_op : "");
    } else {
        const char *nl = memchr(body, '\n', body_len);
        size_t line = nl ? (size_t)(nl - body) : body_len;
        path = xstrndup(body, line);
        if (strlen(path) != line) /* a NUL cannot reach a handler in a URL */
            return;
        body += nl ? line + 1 : line;
        body_len -= nl ? line + 1 : line;
    }
    const char *ver = versions[flags & 3];
    _cleanup_free_ char *url = NULL;
    const char *sep = strchr(path, '?') ? "&" : "?";
    if (ver)
        url = xasprintf("%s%sapi-version=%s%s", path, sep, ver, flags & 64 ? "&$top=2" : "");
    else
        url = xasprintf("%s%s", path, flags & 64 ? (*sep == '?' ? "?$top=2" : "&$top=2") : "");

    fake_request_t f;
    fake_request_init(&f, method, url, body, body_len);
    fake_request_header(&f, "Host", flags & 128 ? "evil.example/\r\nX: y" : "127.0.0.1:8080");
    const char *ct = content_types[(flags >> 2) & 3];
    if (ct)
        fake_request_header(&f, "Content-Type", ct);
    if (flags & 16)
        fake_request_header(&f, "If-Match", "*");
    if (flags & 32)
        fake_request_header(&f, "If-None-Match", "*");

    http_response_t res = {0};
    api_handle(s->api, &f.req, &res);
    check_reply(&f.req, &res);
    remember_operation(s, &res);
    fake_response_done(&res);
    fake_request_done(&f);
}

static char db_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* A file in memory when the machine has /dev/shm: SQLite's WAL and
     * locking are real, the disk is not in the way.  */
    struct stat st;
    const char *dir = stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp";
    snprintf(db_path, sizeof(db_path), "%s/fuzz-api-%d.db", dir, (int)getpid());
    sbx_log_set_level(SBX_LOG_ERROR);
    return 0;
}

static void remove_db(void)
{
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        char p[80];
        snprintf(p, sizeof(p), "%s%s", db_path, suffixes[i]);
        unlink(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    remove_db();
    sbx_error_t err = {0};
    st_options_t opts = {.pool_size = 2};
    fuzz_state_t s = {0};
    s.db = st_open(db_path, &opts, &err);
    if (!s.db) {
        fprintf(stderr, "fuzz_api: st_open: %s\n", err.msg);
        abort();
    }
    api_hooks_t hooks = {.sandbox_call = fake_sandbox_call};
    api_config_t cfg = {.principal = "fuzz", .openapi_json = "{}"};
    s.api = api_new(&cfg, s.db, &hooks);

    const uint8_t *p = data, *end = data + size;
    size_t sep_len = strlen(SEPARATOR);
    for (int i = 0; i < MAX_RECORDS && p < end; i++) {
        const uint8_t *next = memmem(p, (size_t)(end - p), SEPARATOR, sep_len);
        size_t len = next ? (size_t)(next - p) : (size_t)(end - p);
        run_record(&s, p, len);
        p = next ? next + sep_len : end;
    }
    api_free(s.api);
    st_close(s.db);
    remove_db();
    return 0;
}
