/* routes.c -- authentication and the top-level route table.  */
#include "server/routes.h"

#include <openssl/crypto.h>
#include <string.h>

#include "api/api.h"
#include "scheduler/scheduler.h"

#define FILES_MAX_BODY (64u << 20)

struct routes {
    routes_config_t rc;
    char *auth_token, *admin_token;
    char *pki_dir, *ca, *cert, *key;
    api_t *api;
    sched_t *sched;
    st_db_t *db;
};

static void on_queued(void *ctx)
{
    routes_t *r = ctx;
    sched_notify(r->sched);
}

static void on_sandbox_call(void *ctx, const st_resource_t *sandbox, const char *action,
                            const http_request_t *req, http_response_t *res)
{
    routes_t *r = ctx;
    routes_proxy_call(r->sched, r->db, sandbox, action, req, res);
}

routes_t *routes_new(const routes_config_t *rc, st_db_t *db, sbx_error_t *err)
{
    routes_t *r = xcalloc(1, sizeof(*r));
    r->rc = *rc;
    r->db = db;
    r->auth_token = rc->auth_token ? xstrdup(rc->auth_token) : NULL;
    r->admin_token = rc->admin_token ? xstrdup(rc->admin_token) : NULL;
    r->pki_dir = xasprintf("%s/pki", rc->cfg->data_dir);
    if (sched_pki_ensure(r->pki_dir, err) < 0) {
        routes_free(r);
        return NULL;
    }
    r->ca = xasprintf("%s/ca.pem", r->pki_dir);
    r->cert = xasprintf("%s/client.pem", r->pki_dir);
    r->key = xasprintf("%s/client.key", r->pki_dir);
    const sbx_config_t *cfg = rc->cfg;
    sched_config_t scfg = {.ca_file = r->ca, .cert_file = r->cert, .key_file = r->key,
                           .overcommit_cpu = cfg->overcommit_cpu,
                           .overcommit_memory = cfg->overcommit_memory,
                           .overcommit_disk = cfg->overcommit_disk,
                           .overcommit_pids = cfg->overcommit_pids,
                           .placement_wait_ms = (int)cfg->placement_timeout_s * 1000,
                           .secret_key = rc->secret_key};
    r->sched = sched_new(&scfg, db, err);
    if (!r->sched) {
        routes_free(r);
        return NULL;
    }
    api_config_t acfg = {.principal = "dev-token", .openapi_json = rc->openapi_json,
                         .max_disk_mib = cfg->max_disk_mib, .secret_key = rc->secret_key};
    api_hooks_t hooks = {.ctx = r, .operations_queued = on_queued,
                         .sandbox_call = on_sandbox_call};
    r->api = api_new(&acfg, db, &hooks);
    return r;
}

int routes_start_background(routes_t *r, sbx_error_t *err)
{
    const sbx_config_t *cfg = r->rc.cfg;
    if (!cfg->no_local_agent) {
        _cleanup_free_ char *agent_dir = xasprintf("%s/agent", cfg->data_dir);
        sched_local_agent_config_t lc = {.agent_bin = cfg->agent_bin, .data_dir = agent_dir,
                                         .pki_dir = r->pki_dir,
                                         .default_image = cfg->default_image,
                                         .microvm_emulation = cfg->microvm_emulation,
                                         .allow_private_registries =
                                             cfg->allow_private_registries};
        if (sched_local_agent_start(r->sched, &lc, err) < 0) {
            sched_start(r->sched, NULL);
            return -1;
        }
    }
    return sched_start(r->sched, err);
}

void routes_shutdown_begin(routes_t *r, int grace_ms)
{
    if (r)
        sched_shutdown_begin(r->sched, grace_ms);
}

void routes_free(routes_t *r)
{
    if (!r)
        return;
    sched_free(r->sched);
    api_free(r->api);
    free(r->pki_dir);
    free(r->ca);
    free(r->cert);
    free(r->key);
    free(r->auth_token);
    free(r->admin_token);
    free(r);
}

/* Constant-time comparison of "Bearer <token>" with the expected token.  */
static bool bearer_matches(const http_request_t *req, const char *expected)
{
    const char *h = http_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *got = h + 7;
    size_t n = strlen(expected);
    return strlen(got) == n && CRYPTO_memcmp(got, expected, n) == 0;
}

const char *routes_token_name(const routes_t *r, const http_request_t *req)
{
    if (r->auth_token && bearer_matches(req, r->auth_token))
        return "token";
    if (r->admin_token && bearer_matches(req, r->admin_token))
        return "admin-token";
    return NULL;
}

bool routes_authenticated(const routes_t *r, const http_request_t *req)
{
    return !r->auth_token || routes_token_name(r, req) != NULL;
}

static bool authenticated(routes_t *r, const http_request_t *req, http_response_t *res)
{
    if (!r->auth_token || bearer_matches(req, r->auth_token))
        return true;
    http_add_header(res, "WWW-Authenticate", "Bearer realm=\"sandboxd\"");
    if (!http_header(req, "Authorization"))
        http_reply_error(res, 401, "AuthenticationFailed",
                         "Authentication failed. The 'Authorization' header is missing.");
    else
        http_reply_error(res, 401, "InvalidAuthenticationToken",
                         "The access token is invalid.");
    return false;
}

bool routes_is_processes_path(const char *path)
{
    /* .../sandboxes/{s}/processes[/{pid}[/{what}]] */
    const char *p = path ? strcasestr(path, "/processes") : NULL;
    return p && (p[10] == '\0' || p[10] == '/');
}

bool routes_is_files_path(const char *path)
{
    size_t n = strlen(path);
    return n >= 6 && strcasecmp(path + n - 6, "/files") == 0;
}

size_t routes_body_limit(const routes_t *r, const char *method, const char *path)
{
    if (strcmp(method, "PUT") == 0 && routes_is_files_path(path))
        return FILES_MAX_BODY;
    return r->rc.cfg->max_body;
}

void routes_handle(routes_t *r, const http_request_t *req, http_response_t *res)
{
    if (strcasecmp(req->path, "/openapi.json") == 0 || strcmp(req->path, "/healthz") == 0) {
        if (strcmp(req->path, "/healthz") == 0)
            http_reply_json(res, 200, json_pack("{s:s}", "status", "ok"));
        else
            api_handle(r->api, req, res);
        return;
    }
    if (strncasecmp(req->path, "/admin/hosts", 12) == 0) {
        if (!bearer_matches(req, r->admin_token)) {
            http_add_header(res, "WWW-Authenticate", "Bearer realm=\"sandboxd-admin\"");
            http_reply_error(res, 401, "InvalidAuthenticationToken",
                             "The admin API needs the admin token (data-dir/admin-token).");
            return;
        }
        routes_admin_hosts(r->sched, r->db, req, res);
        return;
    }
    if (!authenticated(r, req, res))
        return;
    api_handle(r->api, req, res);
}
