/* routes.c -- authentication and the top-level route table.  */
#include "server/routes.h"

#include <openssl/crypto.h>
#include <string.h>

#include "api/api.h"

#define FILES_MAX_BODY (64u << 20)

struct routes {
    routes_config_t rc;
    char *auth_token, *admin_token;
    api_t *api;
};

routes_t *routes_new(const routes_config_t *rc, st_db_t *db, sbx_error_t *err)
{
    routes_t *r = xcalloc(1, sizeof(*r));
    r->rc = *rc;
    r->auth_token = rc->auth_token ? xstrdup(rc->auth_token) : NULL;
    r->admin_token = rc->admin_token ? xstrdup(rc->admin_token) : NULL;
    api_config_t acfg = {.principal = "dev-token", .openapi_json = rc->openapi_json};
    r->api = api_new(&acfg, db, NULL);
    return r;
}

int routes_start_background(routes_t *r, sbx_error_t *err)
{
    return 0;
}

void routes_free(routes_t *r)
{
    if (!r)
        return;
    api_free(r->api);
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

static bool is_files_path(const char *path)
{
    size_t n = strlen(path);
    return n >= 6 && strcasecmp(path + n - 6, "/files") == 0;
}

size_t routes_body_limit(const routes_t *r, const char *method, const char *path)
{
    if (strcmp(method, "PUT") == 0 && is_files_path(path))
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
    if (!authenticated(r, req, res))
        return;
    api_handle(r->api, req, res);
}
