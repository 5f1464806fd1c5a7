/* e2b.c -- the adapter's entry: configuration, routing of REST and envd
 * requests, access tokens, and the E2B and Connect error replies.  */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <string.h>

#include "e2b/internal.h"

#define DEFAULT_GROUP "00000000-0000-0000-0000-000000000000/e2b/e2b"
#define E2B_ID_MAX 63

static int parse_templates(e2b_t *e, const char *spec, sbx_error_t *err)
{
    e->templates = json_object();
    if (!spec)
        return 0;
    _cleanup_free_ char *copy = xstrdup(spec);
    char *save = NULL;
    for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq || eq == kv || !eq[1])
            return sbx_error_set(err, SBX_ERR_INVALID,
                                 "E2B templates must be alias=image pairs, not '%s'", kv);
        *eq = '\0';
        json_object_set_new(e->templates, kv, json_string(eq + 1));
    }
    return 0;
}

/* "SUB/RG/GROUP" or an ARM id becomes the group's ARM path.  */
static int parse_group(e2b_t *e, const char *g, sbx_error_t *err)
{
    if (g[0] == '/') {
        e->group_path = xstrdup(g);
        return 0;
    }
    char sub[64], rg[128], name[128];
    if (sscanf(g, "%63[^/]/%127[^/]/%127[^/]", sub, rg, name) != 3)
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "the E2B group must be SUBSCRIPTION/RESOURCE_GROUP/GROUP or an "
                             "ARM id, not '%s'",
                             g);
    e->group_path = xasprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/"
                              "sandboxGroups/%s",
                              sub, rg, name);
    return 0;
}

e2b_t *e2b_new(const e2b_config_t *cfg, sbx_error_t *err)
{
    /* Counted: a no-op when sandboxd's scheduler has done it, as it has
     * before any request can arrive here.  */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e2b_t *e = xcalloc(1, sizeof(*e));
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->idle, NULL);
    e->arm_url = xstrdup(cfg->arm_url);
    e->arm_token = cfg->arm_token ? xstrdup(cfg->arm_token) : NULL;
    e->insecure_tls = cfg->arm_insecure_tls;
    e->max_body = cfg->max_body ? cfg->max_body : (1u << 20);
    e->state_dir = xstrdup(cfg->state_dir);
    if (sbx_mkdir_p(e->state_dir, 0700, err) < 0) {
        e2b_free(e);
        return NULL;
    }
    /* A key of its own, derived: access tokens never use the key that seals
     * secrets in storage directly.  */
    unsigned len = sizeof(e->key);
    static const char label[] = "sandboxd e2b envd access tokens";
    HMAC(EVP_sha256(), cfg->secret_key, E2B_SECRET_KEY_LEN, (const unsigned char *)label,
         sizeof(label) - 1, e->key, &len);
    if (parse_group(e, cfg->group ? cfg->group : DEFAULT_GROUP, err) < 0 ||
        parse_templates(e, cfg->templates, err) < 0) {
        e2b_free(e);
        return NULL;
    }
    return e;
}

void e2b_free(e2b_t *e)
{
    if (!e)
        return;
    /* Commands under way hold the adapter; their ARM calls end quickly once
     * stopping is set.  */
    pthread_mutex_lock(&e->lock);
    e->stopping = true;
    while (e->threads > 0)
        pthread_cond_wait(&e->idle, &e->lock);
    pthread_mutex_unlock(&e->lock);
    pthread_cond_destroy(&e->idle);
    OPENSSL_cleanse(e->key, sizeof(e->key));
    free(e->arm_url);
    free(e->arm_token);
    free(e->group_path);
    free(e->state_dir);
    json_decref(e->templates);
    json_decref(e->cpu_seen);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

void e2b_shutdown_begin(e2b_t *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    e->stopping = true;
    pthread_mutex_unlock(&e->lock);
}

bool e2b_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > E2B_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (i > 0 && c == '-');
        if (!ok)
            return false;
    }
    return true;
}

void e2b_access_token(const e2b_t *e, const char *sandbox, char out[65])
{
    unsigned char mac[32];
    unsigned len = sizeof(mac);
    _cleanup_free_ char *msg = xasprintf("e2b-envd:%s", sandbox);
    _cleanup_free_ char *lower = xstrdup(msg);
    sbx_str_lower(lower); /* ARM names, and so ids, compare without case */
    HMAC(EVP_sha256(), e->key, E2B_SECRET_KEY_LEN, (const unsigned char *)lower, strlen(lower), mac,
         &len);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static bool access_token_ok(const e2b_t *e, const http_request_t *req, const char *sandbox)
{
    const char *got = http_header(req, "X-Access-Token");
    if (!got || !sandbox || !e2b_id_valid(sandbox))
        return false;
    char want[65];
    e2b_access_token(e, sandbox, want);
    return strlen(got) == 64 && CRYPTO_memcmp(got, want, 64) == 0;
}

static bool is_envd_path(const char *path)
{
    return strcmp(path, "/health") == 0 || strcmp(path, "/files") == 0 ||
           sbx_str_has_prefix(path, "/process.Process/") ||
           sbx_str_has_prefix(path, "/filesystem.Filesystem/");
}

size_t e2b_body_limit(const e2b_t *e, const char *method, const char *path)
{
    if (strcmp(method, "POST") == 0 && strcmp(path, "/files") == 0)
        return E2B_FILES_MAX_BODY;
    return e->max_body;
}

bool e2b_has_credentials(const e2b_t *e, const http_request_t *req)
{
    if (is_envd_path(req->path))
        return access_token_ok(e, req, http_header(req, "E2b-Sandbox-Id"));
    return http_header(req, "X-API-Key") != NULL;
}

/* ---- replies ---- */

void e2b_reply_error(http_response_t *res, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_json(res, status, json_pack("{s:i,s:s}", "code", status, "message", msg));
}

void e2b_reply_arm_error(http_response_t *res, const arm_reply_t *r)
{
    char msg[400];
    arm_reply_message(r, msg, sizeof(msg));
    int status = r->status == 0 ? 502 : (int)r->status;
    if (status == 401)
        http_add_header(res, "WWW-Authenticate", "ApiKey");
    e2b_reply_error(res, status, "%s", msg);
}

static int connect_status(const char *code)
{
    static const struct {
        const char *code;
        int status;
    } map[] = {
        {"canceled", 499},           {"invalid_argument", 400},    {"deadline_exceeded", 504},
        {"not_found", 404},          {"already_exists", 409},      {"permission_denied", 403},
        {"resource_exhausted", 429}, {"failed_precondition", 400}, {"aborted", 409},
        {"out_of_range", 400},       {"unimplemented", 501},       {"unavailable", 503},
        {"unauthenticated", 401},
    };
    for (size_t i = 0; i < ARRAY_SIZE(map); i++)
        if (strcmp(map[i].code, code) == 0)
            return map[i].status;
    return 500;
}

void connect_reply_error(http_response_t *res, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_json(res, connect_status(code),
                    json_pack("{s:s,s:s}", "code", code, "message", msg));
}

const char *connect_code_for(const arm_reply_t *r)
{
    if (arm_reply_sandbox_gone(r))
        return "unavailable";
    switch (r->status) {
    case 0: return "unavailable";
    case 400: return "invalid_argument";
    case 401: return "unauthenticated";
    case 403: return "permission_denied";
    case 404: return "not_found";
    case 409: return "failed_precondition";
    case 413: return "resource_exhausted";
    case 429: return "resource_exhausted";
    case 502:
    case 503: return "unavailable";
    case 504: return "deadline_exceeded";
    default: return "internal";
    }
}

char *connect_envelope(unsigned flags, const json_t *msg, size_t *len)
{
    _cleanup_free_ char *js = json_dumps(msg, JSON_COMPACT);
    size_t n = strlen(js);
    char *out = xmalloc(n + 5);
    out[0] = (char)flags;
    out[1] = (char)((n >> 24) & 0xff);
    out[2] = (char)((n >> 16) & 0xff);
    out[3] = (char)((n >> 8) & 0xff);
    out[4] = (char)(n & 0xff);
    memcpy(out + 5, js, n);
    *len = n + 5;
    return out;
}

int connect_send(http_pipe_t *pipe, unsigned flags, json_t *msg)
{
    size_t n;
    _cleanup_free_ char *env = connect_envelope(flags, msg, &n);
    json_decref(msg);
    return http_pipe_write(pipe, env, n);
}

json_t *connect_request_json(const http_request_t *req, bool *streaming)
{
    const char *ct = http_header(req, "Content-Type");
    *streaming = ct && sbx_str_has_prefix(ct, "application/connect+json");
    if (!*streaming)
        return json_loadb(req->body, req->body_len, 0, NULL);
    if (req->body_len < 5)
        return NULL;
    const unsigned char *b = (const unsigned char *)req->body;
    size_t n = ((size_t)b[1] << 24) | ((size_t)b[2] << 16) | ((size_t)b[3] << 8) | b[4];
    /* Compressed messages (flag 1) were never offered: no Accept-Encoding.  */
    if (b[0] != 0 || n > req->body_len - 5)
        return NULL;
    return json_loadb(req->body + 5, n, 0, NULL);
}

/* ---- envd requests ---- */

/* The user of a request: ?username= or HTTP Basic "user:"; commands run
 * as that account (the SDK names one only when asked to); its home is
 * where relative paths start (root's is /root, others' /home/NAME).  */
static void envd_user(const http_request_t *req, envd_ctx_t *c)
{
    const char *user = http_query(req, "username");
    char decoded[128] = "";
    const char *basic = http_header(req, "Authorization");
    if (!user && basic && strncasecmp(basic, "Basic ", 6) == 0) {
        unsigned char out[128];
        size_t in = strlen(basic + 6);
        if (in < 160) {
            int n = EVP_DecodeBlock(out, (const unsigned char *)basic + 6, (int)in);
            if (n > 0) {
                out[n < 127 ? n : 127] = '\0';
                snprintf(decoded, sizeof(decoded), "%s", (char *)out);
                char *colon = strchr(decoded, ':');
                if (colon)
                    *colon = '\0';
                user = decoded;
            }
        }
    }
    bool plain = user && *user && !strchr(user, '/') && strcmp(user, "..") && strcmp(user, ".") &&
                 strlen(user) < sizeof(c->user);
    if (plain)
        snprintf(c->user, sizeof(c->user), "%s", user);
    if (!plain || strcmp(user, "root") == 0)
        snprintf(c->home, sizeof(c->home), "/root");
    else
        snprintf(c->home, sizeof(c->home), "/home/%s", user);
}

char *envd_path(const envd_ctx_t *c, const char *p)
{
    if (!p || !*p || strlen(p) > 4096)
        return NULL;
    if (p[0] == '/')
        return xstrdup(p);
    if (p[0] == '~' && (p[1] == '/' || !p[1]))
        return xasprintf("%s%s", c->home, p + 1);
    return xasprintf("%s/%s", c->home, p);
}

int envd_exec(const envd_ctx_t *c, json_t *argv, int timeout_s, json_t **out, arm_reply_t *r)
{
    _cleanup_json_ json_t *body =
        json_pack("{s:O,s:i}", "command", argv, "timeoutSeconds", timeout_s);
    if (c->user[0])
        json_object_set_new(body, "user", json_string(c->user));
    _cleanup_free_ char *js = json_dumps(body, JSON_COMPACT);
    arm_req_t rq = {.method = "POST",
                    .sandbox = c->sandbox,
                    .suffix = "/exec",
                    .bearer = c->e->arm_token,
                    .body = js,
                    .len = strlen(js),
                    .timeout_ms = (long)timeout_s * 1000 + 30000};
    arm_call(c->e, &rq, r);
    if (r->status != 200)
        return -1;
    *out = arm_reply_json(r);
    arm_reply_done(r);
    return *out ? 0 : -1;
}

static void envd_handle(e2b_t *e, const http_request_t *req, http_response_t *res)
{
    const char *sandbox = http_header(req, "E2b-Sandbox-Id");
    envd_ctx_t c = {.e = e, .sandbox = sandbox};
    envd_user(req, &c);
    if (!sandbox || !e2b_id_valid(sandbox)) {
        e2b_reply_error(res, 400, "The E2b-Sandbox-Id header names no sandbox.");
        return;
    }
    if (strcmp(req->path, "/health") == 0) {
        arm_req_t rq = {.method = "GET", .sandbox = sandbox, .suffix = "", .bearer = e->arm_token};
        arm_reply_t r;
        arm_call(e, &rq, &r);
        if (r.status == 200)
            http_reply_empty(res, 204);
        else
            e2b_reply_error(res, 502, "The sandbox %s was not found.", sandbox);
        arm_reply_done(&r);
        return;
    }
    if (!access_token_ok(e, req, sandbox)) {
        if (strcmp(req->path, "/files") == 0)
            e2b_reply_error(res, 401, "Invalid or missing X-Access-Token.");
        else
            connect_reply_error(res, "unauthenticated", "Invalid or missing X-Access-Token.");
        return;
    }
    if (strcmp(req->path, "/files") == 0)
        e2b_files_handle(&c, req, res);
    else if (sbx_str_has_prefix(req->path, "/filesystem.Filesystem/"))
        e2b_fs_handle(&c, req->path + strlen("/filesystem.Filesystem/"), req, res);
    else
        e2b_process_handle(&c, req->path + strlen("/process.Process/"), req, res);
}

void e2b_handle(e2b_t *e, const http_request_t *req, http_response_t *res)
{
    if (is_envd_path(req->path) && http_header(req, "E2b-Sandbox-Id"))
        envd_handle(e, req, res);
    else
        e2b_rest_handle(e, req, res);
}
