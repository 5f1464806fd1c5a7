/* imds.c -- managed identity tokens for code in a sandbox, in the two forms
 * Azure SDKs know: IMDS (GET /metadata/identity/oauth2/token with
 * "Metadata: true") and App Service's (GET $IDENTITY_ENDPOINT with
 * "X-IDENTITY-HEADER: $IDENTITY_HEADER").  The listener that receives them on
 * a sandbox's own network tells which sandbox asked; this file checks the
 * request and asks sandboxd for a token for that sandbox with the host's
 * token, so a sandbox only ever gets its own identity.  */
#include "agent/agent.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <string.h>

#define IMDS_PATH "/metadata/identity/oauth2/token"
#define APPSERVICE_PATH "/msi/token"
#define MAX_QUERY 4096
#define MAX_REPLY (64 * 1024)
#define UPSTREAM_TIMEOUT_S 10

static int fail(char **body, int status, const char *error, const char *desc)
{
    json_t *j = json_pack("{s:s,s:s}", "error", error, "error_description", desc);
    *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return status;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decoded; NULL for a bad escape or a decoded NUL.  */
static char *url_decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            *o++ = ' ';
        } else if (s[i] == '%') {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* The decoded query as an object; a repeated or undecodable name is an
 * error (-1).  */
static json_t *parse_query(const char *q)
{
    json_t *out = json_object();
    while (q && *q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        char *k = url_decode(q, eq ? (size_t)(eq - q) : n);
        char *v = eq ? url_decode(eq + 1, n - (size_t)(eq - q) - 1) : xstrdup("");
        bool ok = k && v && *k && !json_object_get(out, k);
        if (ok)
            json_object_set_new(out, k, json_string(v));
        free(k);
        free(v);
        if (!ok) {
            json_decref(out);
            return NULL;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return out;
}

/* POST sandboxd's /admin/identityTokens; returns the HTTP status (0: no
 * answer) and the reply.  */
static long upstream(const agent_imds_t *m, const json_t *req, sbx_sink_t *reply)
{
    _cleanup_free_ char *url = xasprintf("%s/admin/identityTokens", m->sandboxd_url);
    _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", m->host_token);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    CURL *c = curl_easy_init();
    long status = 0;
    if (c) {
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sbx_sink_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, reply);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)UPSTREAM_TIMEOUT_S);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROXY, "");
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        if (m->ca_file)
            curl_easy_setopt(c, CURLOPT_CAINFO, m->ca_file);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
    }
    curl_slist_free_all(h);
    OPENSSL_cleanse(auth, strlen(auth));
    return status;
}

/* Which form the request takes, checked: 0, or an error status.  */
static int check_form(const agent_imds_request_t *rq, const char *secret, char **body)
{
    bool imds = strcmp(rq->path, IMDS_PATH) == 0;
    bool appservice = strcmp(rq->path, APPSERVICE_PATH) == 0;
    if (!imds && !appservice)
        return fail(body, 404, "invalid_request", "No such endpoint.");
    if (strcmp(rq->method, "GET") != 0)
        return fail(body, 405, "invalid_request", "Only GET is served.");
    if (imds && !(rq->metadata && strcasecmp(rq->metadata, "true") == 0))
        return fail(body, 400, "invalid_request", "Required metadata header not specified");
    if (appservice) {
        const char *got = rq->identity_header;
        size_t n = secret ? strlen(secret) : 0;
        if (!got || !n || strlen(got) != n || CRYPTO_memcmp(got, secret, n) != 0)
            return fail(body, 401, "invalid_request",
                        "The X-IDENTITY-HEADER header is missing or wrong.");
    }
    if (rq->query && strlen(rq->query) > MAX_QUERY)
        return fail(body, 400, "invalid_request", "The query is too long.");
    return 0;
}

int agent_imds_answer(const agent_imds_t *m, const char *runtime_id, const char *secret,
                      const agent_imds_request_t *rq, char **body)
{
    *body = NULL;
    int st = check_form(rq, secret, body);
    if (st)
        return st;
    _cleanup_json_ json_t *q = parse_query(rq->query);
    if (!q)
        return fail(body, 400, "invalid_request", "The query is not well-formed.");
    const char *ver = json_string_value(json_object_get(q, "api-version"));
    const char *resource = json_string_value(json_object_get(q, "resource"));
    if (!ver || !*ver)
        return fail(body, 400, "invalid_request",
                    "Required query variable 'api-version' is "
                    "missing");
    if (!resource || !*resource)
        return fail(body, 400, "invalid_request",
                    "Required query variable 'resource' is "
                    "missing");
    json_t *req = json_pack("{s:s,s:s}", "runtimeId", runtime_id, "resource", resource);
    const char *sel[][2] = {{"client_id", "clientId"},
                            {"object_id", "objectId"},
                            {"mi_res_id", "miResId"},
                            {"msi_res_id", "miResId"},
                            {"principal_id", "objectId"}};
    for (size_t i = 0; i < ARRAY_SIZE(sel); i++) {
        json_t *v = json_object_get(q, sel[i][0]);
        if (v)
            json_object_set(req, sel[i][1], v);
    }
    sbx_sink_t reply = {.max = MAX_REPLY};
    long status = upstream(m, req, &reply);
    json_decref(req);
    json_t *j = reply.data ? json_loadb(reply.data, reply.len, 0, NULL) : NULL;
    if (reply.data)
        OPENSSL_cleanse(reply.data, reply.len);
    free(reply.data);
    if (status == 200 && json_is_string(json_object_get(j, "access_token"))) {
        *body = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        return 200;
    }
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    _cleanup_free_ char *desc = xstrdup(msg ? msg : "sandboxd did not answer.");
    json_decref(j);
    if (status >= 400 && status < 500 && status != 401)
        return fail(body, status == 403 ? 403 : 400, "invalid_request", desc);
    return fail(body, 503, "service_unavailable", desc);
}
