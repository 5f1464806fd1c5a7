/* routes.c -- the top-level route table: public documents, then the
 * caller authenticated and authorized (auth module), then the admin and
 * ARM APIs, with an audit line for everything that changes state.  */
#include "server/routes.h"

#include <string.h>

#include "api/api.h"
#include "auth/auth.h"
#include "scheduler/scheduler.h"

#define FILES_MAX_BODY (64u << 20)

struct routes {
    routes_config_t rc;
    char *pki_dir, *ca, *cert, *key;
    api_t *api;
    auth_t *auth;
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

/* "ISSUER" or "ISSUER=JWKS" (a file or URL).  */
static auth_issuer_config_t *issuers_of(const sbx_config_t *cfg)
{
    auth_issuer_config_t *out = xcalloc(cfg->n_oidc_issuers + 1, sizeof(*out));
    for (size_t i = 0; i < cfg->n_oidc_issuers; i++) {
        char *eq = strchr(cfg->oidc_issuers[i], '=');
        out[i].issuer = cfg->oidc_issuers[i];
        out[i].jwks = eq ? eq + 1 : NULL;
    }
    return out;
}

static auth_t *routes_auth_new(const routes_config_t *rc, st_db_t *db, sbx_error_t *err)
{
    const sbx_config_t *cfg = rc->cfg;
    _cleanup_free_ auth_issuer_config_t *issuers = issuers_of(cfg);
    /* An "ISSUER=JWKS" entry is split in a copy: the configuration stays.  */
    char **names = xcalloc(cfg->n_oidc_issuers + 1, sizeof(*names));
    for (size_t i = 0; i < cfg->n_oidc_issuers; i++) {
        names[i] = xstrndup(issuers[i].issuer, strcspn(issuers[i].issuer, "="));
        issuers[i].issuer = names[i];
    }
    _cleanup_free_ char *default_issuer =
        xasprintf("%s://%s", cfg->tls_cert ? "https" : "http", cfg->listen);
    auth_config_t ac = {
        .data_dir = cfg->data_dir,
        .issuer_url = cfg->issuer_url,
        .default_issuer = default_issuer,
        .signing_alg = cfg->signing_alg,
        .rotation_s = cfg->key_rotation_s,
        .issuers = issuers,
        .n_issuers = cfg->n_oidc_issuers,
        .audiences = (const char *const *)cfg->oidc_audiences,
        .static_token = rc->auth_token,
        .admin_token = rc->admin_token,
        .no_auth = cfg->no_auth,
        .db = db,
    };
    auth_t *a = auth_new(&ac, err);
    for (size_t i = 0; i < cfg->n_oidc_issuers; i++)
        free(names[i]);
    free(names);
    return a;
}

routes_t *routes_new(const routes_config_t *rc, st_db_t *db, sbx_error_t *err)
{
    routes_t *r = xcalloc(1, sizeof(*r));
    r->rc = *rc;
    r->db = db;
    r->auth = routes_auth_new(rc, db, err);
    if (!r->auth) {
        routes_free(r);
        return NULL;
    }
    r->pki_dir = xasprintf("%s/pki", rc->cfg->data_dir);
    if (sched_pki_ensure(r->pki_dir, err) < 0) {
        routes_free(r);
        return NULL;
    }
    r->ca = xasprintf("%s/ca.pem", r->pki_dir);
    r->cert = xasprintf("%s/client.pem", r->pki_dir);
    r->key = xasprintf("%s/client.key", r->pki_dir);
    const sbx_config_t *cfg = rc->cfg;
    sched_config_t scfg = {.ca_file = r->ca,
                           .cert_file = r->cert,
                           .key_file = r->key,
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
    api_config_t acfg = {.principal = "dev-token",
                         .openapi_json = rc->openapi_json,
                         .max_disk_mib = cfg->max_disk_mib,
                         .secret_key = rc->secret_key,
                         .exec_webhook_allow_private = cfg->exec_webhook_allow_private};
    api_hooks_t hooks = {.ctx = r, .operations_queued = on_queued, .sandbox_call = on_sandbox_call};
    r->api = api_new(&acfg, db, &hooks);
    return r;
}

static char *local_host_token(void *ctx, const char *host, int64_t *expires)
{
    routes_t *r = ctx;
    return auth_host_token(r->auth, host, 24 * 3600, expires, NULL);
}

/* How the local agent reaches sandboxd: its listen address, a wildcard
 * one as loopback.  */
static char *local_url(const sbx_config_t *cfg)
{
    const char *colon = strrchr(cfg->listen, ':');
    if (!colon)
        return NULL;
    _cleanup_free_ char *host = xstrndup(cfg->listen, (size_t)(colon - cfg->listen));
    const char *h = host;
    if (!*h || strcmp(h, "0.0.0.0") == 0)
        h = "127.0.0.1";
    else if (strcmp(h, "[::]") == 0)
        h = "[::1]";
    return xasprintf("%s://%s%s", cfg->tls_cert ? "https" : "http", h, colon);
}

int routes_start_background(routes_t *r, sbx_error_t *err)
{
    const sbx_config_t *cfg = r->rc.cfg;
    if (!cfg->no_local_agent) {
        _cleanup_free_ char *agent_dir = xasprintf("%s/agent", cfg->data_dir);
        _cleanup_free_ char *url = local_url(cfg);
        sched_local_agent_config_t lc = {.agent_bin = cfg->agent_bin,
                                         .data_dir = agent_dir,
                                         .pki_dir = r->pki_dir,
                                         .default_image = cfg->default_image,
                                         .microvm_emulation = cfg->microvm_emulation,
                                         .allow_private_registries = cfg->allow_private_registries,
                                         .egress_pool =
                                             cfg->egress_pool ? cfg->egress_pool : "auto",
                                         .identity_url = url,
                                         .identity_ca = cfg->tls_cert,
                                         .host_token = local_host_token,
                                         .host_token_ctx = r};
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
    auth_free(r->auth);
    free(r->pki_dir);
    free(r->ca);
    free(r->cert);
    free(r->key);
    free(r);
}

bool routes_client_key(const routes_t *r, const http_request_t *req, char *key, size_t size)
{
    return auth_client_key(r->auth, http_header(req, "Authorization"), key, size);
}

bool routes_authenticated(const routes_t *r, const http_request_t *req)
{
    return auth_accepts(r->auth, http_header(req, "Authorization"));
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

static bool is_read(const http_request_t *req)
{
    return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

/* The host admin API: the admin token, or Owner over everything.  */
static void admin_hosts(routes_t *r, const auth_principal_t *p, const http_request_t *req,
                        http_response_t *res)
{
    if (!auth_is_owner(r->auth, p, "/")) {
        http_reply_error(res, 403, "AuthorizationFailed",
                         "The admin API needs the admin token (data-dir/admin-token) or the "
                         "Owner role at scope '/'.");
        return;
    }
    routes_admin_hosts(r->sched, r->db, req, res);
}

static void dispatch(routes_t *r, const auth_principal_t *p, const http_request_t *req,
                     http_response_t *res)
{
    if (strncasecmp(req->path, "/admin/hosts", 12) == 0) {
        admin_hosts(r, p, req, res);
        return;
    }
    if (strcasecmp(req->path, "/admin/execAdmission") == 0) {
        if (!auth_is_owner(r->auth, p, "/"))
            http_reply_error(res, 403, "AuthorizationFailed",
                             "The admin API needs the admin token (data-dir/admin-token) or the "
                             "Owner role at scope '/'.");
        else
            routes_admin_exec_admission(req, res);
        return;
    }
    if (strncasecmp(req->path, "/admin/", 7) == 0) {
        if (!auth_handle_admin(r->auth, p, req, res))
            http_reply_error(res, 404, "NotFound", "No route matches.");
        return;
    }
    if (auth_handle_authorization(r->auth, p, req, res))
        return;
    sbx_error_t err = {0};
    if (auth_authorize(r->auth, p, req->method, req->path, &err) < 0) {
        http_reply_sbx_error(res, &err);
        return;
    }
    api_handle_as(r->api, req, p->subject, res);
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
    if (auth_handle_public(r->auth, req, res))
        return;
    auth_rotate_if_due(r->auth, NULL);
    auth_principal_t p = {0};
    sbx_error_t err = {0};
    if (auth_authenticate(r->auth, http_header(req, "Authorization"), &p, &err) < 0)
        auth_reply_unauthenticated(r->auth, req, &err, res);
    else
        dispatch(r, &p, req, res);
    if (!is_read(req))
        auth_audit_request(r->auth, p.kind == AUTH_NONE ? NULL : &p, req, res->status);
    auth_principal_done(&p);
}
