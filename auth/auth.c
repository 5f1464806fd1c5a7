/* auth.c -- the auth module's front: set-up from the configuration, the
 * public OIDC documents, the admin routes it serves (role assignments,
 * tokens, identity tokens), and key rotation.  */
#include "auth/internal.h"

#include <openssl/crypto.h>
#include <string.h>

static const char *const arm_audiences[] = {"https://management.azure.com/",
                                            "https://management.core.windows.net/", NULL};

static void audiences_init(auth_t *a)
{
    const char *const *src =
        a->cfg.audiences && a->cfg.audiences[0] ? a->cfg.audiences : arm_audiences;
    size_t n = 0;
    while (src[n])
        n++;
    /* API audiences, then the hosts' one (accepted, but only host routes
     * let such a token in), then NULL.  */
    a->audiences = xcalloc(n + 2, sizeof(*a->audiences));
    for (size_t i = 0; i < n; i++)
        a->audiences[i] = xstrdup(src[i]);
    a->n_audiences = n;
}

static void tenant_init(auth_t *a)
{
    /* The API module keeps the installation's tenant id under this key.  */
    if (st_kv_get(a->cfg.db, "tenant_id", &a->tenant_id, NULL) == 0)
        return;
    char t[37];
    sbx_uuid(t);
    st_tx_t *tx = st_begin(a->cfg.db, NULL);
    if (tx && st_tx_kv_put(tx, "tenant_id", t, NULL) == 0 && st_commit(TAKE_PTR(tx), NULL) == 0)
        a->tenant_id = xstrdup(t);
    st_rollback(tx);
    if (!a->tenant_id)
        a->tenant_id = xstrdup(t);
}

auth_t *auth_new(const auth_config_t *cfg, sbx_error_t *err)
{
    auth_t *a = xcalloc(1, sizeof(*a));
    a->cfg = *cfg;
    a->audit_fd = -1;
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->cache_lock, NULL);
    pthread_mutex_init(&a->audit_lock, NULL);
    a->data_dir = xstrdup(cfg->data_dir);
    a->issuer = xstrdup(cfg->issuer_url       ? cfg->issuer_url
                        : cfg->default_issuer ? cfg->default_issuer
                                              : "http://127.0.0.1:8080");
    a->signing_alg = xstrdup(cfg->signing_alg ? cfg->signing_alg : "RS256");
    a->rotation_s = cfg->rotation_s > 0 ? cfg->rotation_s : AUTH_DEFAULT_ROTATION_S;
    a->static_token = cfg->static_token ? xstrdup(cfg->static_token) : NULL;
    a->admin_token = cfg->admin_token ? xstrdup(cfg->admin_token) : NULL;
    a->cfg.static_token = a->cfg.admin_token = NULL;
    a->cfg.issuers = NULL;
    a->cfg.audiences = cfg->audiences;
    audiences_init(a);
    a->cfg.audiences = NULL;
    a->n_issuers = 0;
    tenant_init(a);
    if (audit_open(a, err) < 0 || keys_load(a, err) < 0) {
        auth_free(a);
        return NULL;
    }
    size_t n = strlen(a->issuer);
    a->host_audience = xasprintf("%.*s" AUTH_HOST_AUDIENCE_PATH,
                                 (int)(n && a->issuer[n - 1] == '/' ? n - 1 : n), a->issuer);
    a->audiences[a->n_audiences] = xstrdup(a->host_audience);
    a->cfg.issuers = cfg->issuers;
    issuers_init(a);
    a->cfg.issuers = NULL;
    if (roles_load(a, err) < 0 || (!cfg->no_auth && !cfg->static_token &&
                                   (roles_ensure_dev(a, err) < 0 || keys_dev_token(a, err) < 0))) {
        auth_free(a);
        return NULL;
    }
    return a;
}

void auth_free(auth_t *a)
{
    if (!a)
        return;
    auth_keyset_done(&a->own);
    issuers_done(a);
    for (size_t i = 0; a->audiences && a->audiences[i]; i++)
        free(a->audiences[i]);
    free(a->audiences);
    for (size_t i = 0; i < AUTH_CACHE_SLOTS; i++)
        auth_principal_done(&a->cache[i].p);
    json_decref(a->assignments);
    audit_close(a);
    if (a->static_token)
        OPENSSL_cleanse(a->static_token, strlen(a->static_token));
    if (a->admin_token)
        OPENSSL_cleanse(a->admin_token, strlen(a->admin_token));
    free(a->static_token);
    free(a->admin_token);
    free(a->data_dir);
    free(a->issuer);
    free(a->host_audience);
    free(a->tenant_id);
    free(a->signing_alg);
    pthread_mutex_destroy(&a->lock);
    pthread_mutex_destroy(&a->cache_lock);
    pthread_mutex_destroy(&a->audit_lock);
    free(a);
}

const char *auth_issuer(const auth_t *a)
{
    return a->issuer;
}

static int rotate(auth_t *a, bool force, sbx_error_t *err)
{
    pthread_mutex_lock(&a->lock);
    int64_t now = time(NULL);
    bool due = force || a->own.n == 0 || a->own.keys[a->own.n - 1].sign_until <= now ||
               a->own.keys[0].verify_until <= now;
    int r = due ? keys_maintain_locked(a, force, err) : 0;
    /* Signing and the JWKS add keys too when they find none current.  */
    bool rotated = a->rotated;
    a->rotated = false;
    pthread_mutex_unlock(&a->lock);
    /* The dev token follows the signing key, so it never outlives it.  */
    if (rotated && r == 0 && !a->cfg.no_auth && !a->static_token)
        r = keys_dev_token(a, err);
    return r;
}

int auth_rotate_if_due(auth_t *a, sbx_error_t *err)
{
    return rotate(a, false, err);
}

int auth_rotate(auth_t *a, sbx_error_t *err)
{
    return rotate(a, true, err);
}

static json_t *discovery(const auth_t *a)
{
    size_t n = strlen(a->issuer);
    _cleanup_free_ char *base = xstrndup(a->issuer, n && a->issuer[n - 1] == '/' ? n - 1 : n);
    _cleanup_free_ char *jwks = xasprintf("%s/.well-known/jwks.json", base);
    return json_pack("{s:s,s:s,s:[s],s:[s],s:[s,s],s:[s,s,s,s,s,s,s,s]}", "issuer", a->issuer,
                     "jwks_uri", jwks, "response_types_supported", "id_token",
                     "subject_types_supported", "public", "id_token_signing_alg_values_supported",
                     "RS256", "ES256", "claims_supported", "iss", "sub", "aud", "exp", "iat", "nbf",
                     "oid", "tid");
}

bool auth_handle_public(auth_t *a, const http_request_t *req, http_response_t *res)
{
    bool disc = strcmp(req->path, "/.well-known/openid-configuration") == 0;
    bool jwks = strcmp(req->path, "/.well-known/jwks.json") == 0;
    if (!disc && !jwks)
        return false;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        http_add_header(res, "Allow", "GET");
        http_reply_error(res, 405, "MethodNotAllowed", "The method %s is not allowed here.",
                         req->method);
        return true;
    }
    auth_rotate_if_due(a, NULL);
    /* Relying parties cache these; a rotated key is published at once and
     * the one before stays for the overlap, so an hour is safe.  */
    http_add_header(res, "Cache-Control", "public, max-age=%d", jwks ? 300 : 3600);
    http_reply_json(res, 200, disc ? discovery(a) : keys_jwks(a));
    return true;
}

/* A token of sandboxd's own issuer for a user (sub) or a host agent
 * (host), `by` the one asking (audit); the caller checks the ttl.  */
static char *mint_token(auth_t *a, const char *sub, const char *host, json_int_t ttl,
                        const char *by, int64_t *now_out, sbx_error_t *err)
{
    const char *name = sub ? sub : host;
    int64_t now = time(NULL);
    char jti[37];
    sbx_uuid(jti);
    _cleanup_free_ char *host_sub = host ? xasprintf("host:%s", host) : NULL;
    json_t *claims =
        json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s}", "iss", a->issuer, "sub",
                  host ? host_sub : sub, "aud", host ? a->host_audience : a->audiences[0], "tid",
                  a->tenant_id, "iat", (json_int_t)now, "nbf", (json_int_t)now, "exp",
                  (json_int_t)(now + ttl), "jti", jti, "name", name);
    if (host)
        json_object_set_new(claims, "sbx_host", json_string(host));
    char *tok = keys_sign(a, claims, err);
    if (tok)
        audit_token(a, host ? "host" : "user", claims, by);
    json_decref(claims);
    *now_out = now;
    return tok;
}

char *auth_host_token(auth_t *a, const char *host, int64_t ttl_s, int64_t *expires,
                      sbx_error_t *err)
{
    if (ttl_s > a->rotation_s)
        ttl_s = a->rotation_s;
    int64_t now = 0;
    char *tok = mint_token(a, NULL, host, ttl_s, "sandboxd", &now, err);
    *expires = now + ttl_s;
    return tok;
}

/* POST /admin/tokens {"subject", "ttlSeconds", "host"}: a token from
 * sandboxd's own issuer, for the API or (host) for a host agent.  */
static void tokens_handle(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                          http_response_t *res)
{
    if (strcmp(req->method, "POST") != 0) {
        http_add_header(res, "Allow", "POST");
        http_reply_error(res, 405, "MethodNotAllowed", "The method %s is not allowed here.",
                         req->method);
        return;
    }
    if (!auth_is_owner(a, p, "/")) {
        http_reply_error(res, 403, "AuthorizationFailed",
                         "Minting tokens needs the admin token or Owner at scope '/'.");
        return;
    }
    _cleanup_json_ json_t *body =
        json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, NULL);
    const char *sub = json_string_value(json_object_get(body, "subject"));
    const char *host = json_string_value(json_object_get(body, "host"));
    json_t *ttl_j = json_object_get(body, "ttlSeconds");
    json_int_t ttl = json_is_integer(ttl_j) ? json_integer_value(ttl_j)
                     : a->rotation_s < 3600 ? a->rotation_s
                                            : 3600;
    if (!json_is_object(body) || (!sub == !host) || (ttl_j && !json_is_integer(ttl_j)) ||
        (ttl_j && ttl < 60) || ttl > a->rotation_s) {
        http_reply_error(res, 400, "InvalidRequestContent",
                         "The body is {\"subject\": S} or {\"host\": H}, with \"ttlSeconds\" "
                         "from 60 to %lld (the key rotation period).",
                         (long long)a->rotation_s);
        return;
    }
    const char *name = sub ? sub : host;
    if (!*name || strlen(name) > 256 || !sbx_utf8_valid(name, strlen(name))) {
        http_reply_error(res, 400, "InvalidRequestContent",
                         "The subject or host is 1 to 256 characters of UTF-8.");
        return;
    }
    int64_t now = 0;
    sbx_error_t err = {0};
    char *tok = mint_token(a, sub, host, ttl, p->subject, &now, &err);
    _cleanup_free_ char *host_sub = host ? xasprintf("host:%s", host) : NULL;
    if (!tok) {
        http_reply_sbx_error(res, &err);
        return;
    }
    http_reply_json(res, 200,
                    json_pack("{s:s,s:I,s:s}", "token", tok, "expiresOn", (json_int_t)(now + ttl),
                              "subject", host ? host_sub : sub));
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
}

bool auth_handle_authorization(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                               http_response_t *res)
{
    static const char provider[] = "/providers/Microsoft.Authorization/";
    const char *at = strcasestr(req->path, provider);
    if (!at)
        return false;
    if (p->host) {
        http_reply_error(res, 403, "AuthorizationFailed",
                         "A host token serves identity tokens only.");
        return true;
    }
    /* Clients join "/" + scope, so "//subscriptions/..." is common.  */
    const char *from = req->path;
    while (from[0] == '/' && from[1] == '/')
        from++;
    _cleanup_free_ char *scope =
        at <= from ? xstrdup("/") : xasprintf("%.*s", (int)(at - from), from);
    roles_arm_handle(a, p, req, res, scope, at + strlen(provider));
    return true;
}

bool auth_handle_admin(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                       http_response_t *res)
{
    const char *path = req->path;
    if (strcasecmp(path, "/admin/identityTokens") == 0) {
        identity_token_handle(a, p, req, res);
        return true;
    }
    /* A host's token is for identity tokens, nothing else.  */
    if (p->host) {
        http_reply_error(res, 403, "AuthorizationFailed",
                         "A host token serves identity "
                         "tokens only.");
        return true;
    }
    if (strcasecmp(path, "/admin/tokens") == 0) {
        tokens_handle(a, p, req, res);
        return true;
    }
    const char *prefix = "/admin/roleAssignments";
    size_t n = strlen(prefix);
    if (strncasecmp(path, prefix, n) != 0 || (path[n] && path[n] != '/'))
        return false;
    const char *name = path[n] == '/' && path[n + 1] ? path + n + 1 : NULL;
    if (name && strchr(name, '/')) {
        http_reply_error(res, 404, "NotFound", "No route matches.");
        return true;
    }
    roles_admin(a, p, req, res, name);
    return true;
}
