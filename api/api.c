/* api.c -- entry point of the ARM layer: matches the route, checks the
 * api-version, method and body rules every handler shares, and dispatches.  */
#include "api/internal.h"

#include <ctype.h>
#include <string.h>

api_t *api_new(const api_config_t *cfg, st_db_t *db, const api_hooks_t *hooks)
{
    api_t *api = xcalloc(1, sizeof(*api));
    if (cfg)
        api->cfg = *cfg;
    if (!api->cfg.principal)
        api->cfg.principal = "sandboxd";
    api->db = db;
    if (hooks)
        api->hooks = *hooks;
    /* One tenant id per installation, kept so identities stay stable.  */
    if (st_kv_get(db, "tenant_id", &api->tenant_id, NULL) < 0) {
        char t[37];
        sbx_uuid(t);
        st_tx_t *tx = st_begin(db, NULL);
        if (tx && st_tx_kv_put(tx, "tenant_id", t, NULL) == 0 && st_commit(TAKE_PTR(tx), NULL) == 0)
            api->tenant_id = xstrdup(t);
        st_rollback(tx);
        if (!api->tenant_id)
            api->tenant_id = xstrdup(t);
    }
    return api;
}

void api_free(api_t *api)
{
    if (!api)
        return;
    free(api->tenant_id);
    free(api);
}

static void method_not_allowed(http_response_t *res, const char *method, const char *allow)
{
    http_add_header(res, "Allow", "%s", allow);
    http_reply_error(res, 405, "MethodNotAllowed",
                     "The HTTP method '%s' is not supported for this resource; allowed: %s.",
                     method, allow);
}

static bool is(const http_request_t *req, const char *m)
{
    return strcmp(req->method, m) == 0;
}

static const char *allowed_methods(const route_t *rt)
{
    switch (rt->kind) {
    case R_GROUP: return "GET, PUT, PATCH, DELETE";
    case R_CHILD: return "GET, PUT, DELETE";
    default: return "GET";
    }
}

static bool method_allowed(const route_t *rt, const http_request_t *req)
{
    if (is(req, "GET") || is(req, "HEAD"))
        return true;
    switch (rt->kind) {
    case R_GROUP: return is(req, "PUT") || is(req, "PATCH") || is(req, "DELETE");
    case R_CHILD: return is(req, "PUT") || is(req, "DELETE");
    default: return false;
    }
}

static bool subscription_valid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* Checks every ARM request goes through before its handler.  */
static int common_checks(const route_t *rt, const http_request_t *req, http_response_t *res)
{
    const char *ver = http_query(req, "api-version");
    if (!ver) {
        http_reply_error(res, 400, "MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=) is required for all "
                         "requests.");
        return -1;
    }
    if (!api_version_supported(ver)) {
        http_reply_error(res, 400, "InvalidApiVersionParameter",
                         "The api-version '%.40s' is invalid. The supported versions are "
                         "'2026-07-01,2026-01-01'.",
                         sbx_utf8_valid(ver, strlen(ver)) ? ver : "?");
        return -1;
    }
    if (rt->sub && !subscription_valid(rt->sub)) {
        http_reply_error(res, 400, "InvalidSubscriptionId", "The subscription id must be a GUID.");
        return -1;
    }
    if ((is(req, "GET") || is(req, "DELETE") || is(req, "HEAD")) && req->body_len > 0) {
        http_reply_error(res, 400, "InvalidRequestContent", "A %s request must not have a body.",
                         req->method);
        return -1;
    }
    return 0;
}

static void dispatch_child(api_t *api, const route_t *rt, const http_request_t *req,
                           http_response_t *res)
{
    if (is(req, "GET") || is(req, "HEAD"))
        api_resource_get(api, rt, rt->child, req, res);
    else if (is(req, "PUT"))
        api_resource_put(api, rt, rt->child, req, res);
    else
        api_resource_delete(api, rt, rt->child, req, res);
}

static void dispatch_group(api_t *api, const route_t *rt, const http_request_t *req,
                           http_response_t *res)
{
    if (is(req, "GET") || is(req, "HEAD"))
        api_resource_get(api, rt, &api_kind_group, req, res);
    else if (is(req, "PUT"))
        api_resource_put(api, rt, &api_kind_group, req, res);
    else if (is(req, "PATCH"))
        api_resource_patch(api, rt, &api_kind_group, req, res);
    else
        api_resource_delete(api, rt, &api_kind_group, req, res);
}

/* The caller of the request this thread is answering: handlers run on the
 * request's thread from start to end.  */
static _Thread_local const char *request_principal;

const char *api_principal(const api_t *api)
{
    return request_principal ? request_principal : api->cfg.principal;
}

void api_handle_as(api_t *api, const http_request_t *req, const char *principal,
                   http_response_t *res)
{
    request_principal = principal;
    api_handle(api, req, res);
    request_principal = NULL;
}

void api_handle(api_t *api, const http_request_t *req, http_response_t *res)
{
    route_t rt;
    if (api_route_parse(req->path, &rt) < 0) {
        api_route_done(&rt);
        http_reply_error(res, 404, "NotFound", "No route matches '%.200s'.",
                         sbx_utf8_valid(req->path, strlen(req->path)) ? req->path : "?");
        return;
    }
    if (rt.kind == R_OPENAPI) {
        if (api->cfg.openapi_json)
            http_reply_bytes(res, 200, "application/json; charset=utf-8",
                             xstrdup(api->cfg.openapi_json), strlen(api->cfg.openapi_json));
        else
            http_reply_error(res, 404, "NotFound", "No OpenAPI description is built in.");
        api_route_done(&rt);
        return;
    }
    /* Actions check their own methods: files take GET, PUT and DELETE.  */
    if (rt.kind != R_CHILD_ACTION && !method_allowed(&rt, req)) {
        method_not_allowed(res, req->method, allowed_methods(&rt));
    } else if (common_checks(&rt, req, res) == 0) {
        switch (rt.kind) {
        case R_OPERATIONS_LIST: api_operations_list(api, req, res); break;
        case R_GROUPS_BY_SUB:
        case R_GROUPS_BY_RG: api_resource_list(api, &rt, &api_kind_group, req, res); break;
        case R_GROUP: dispatch_group(api, &rt, req, res); break;
        case R_CHILD_LIST: api_resource_list(api, &rt, rt.child, req, res); break;
        case R_CHILD: dispatch_child(api, &rt, req, res); break;
        case R_CHILD_ACTION: rt.child->action(api, &rt, req, res); break;
        case R_OP_STATUS: api_operation_status(api, &rt, req, res); break;
        case R_OP_RESULT: api_operation_result(api, &rt, req, res); break;
        default: http_reply_error(res, 404, "NotFound", "No route matches."); break;
        }
    }
    api_route_done(&rt);
}
