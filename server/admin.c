/* admin.c -- the host admin API under /admin/hosts (authenticated by the
 * route table): list, register, read, drain, undrain and remove hosts of
 * the scheduler's registry.  */
#include "server/routes.h"

#include <string.h>

#include "api/api.h"
#include "scheduler/scheduler.h"

static json_t *host_json(sched_t *s, const st_host_t *h)
{
    char seen[32];
    sbx_time_format(h->last_seen_ms, seen, sizeof(seen));
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", h->name, "url", h->url, "environment",
                  h->environment, "state", h->state, "lastSeenAt", h->last_seen_ms ? seen : "");
    json_object_set(o, "health", h->info ? h->info : json_null());
    json_object_set_new(o, "sandboxes", json_integer(sched_host_sandboxes(s, h->name)));
    return o;
}

static void reply_host(sched_t *s, st_db_t *db, http_response_t *res, int status, const char *name)
{
    st_host_t h = {0};
    sbx_error_t err = {0};
    int found = st_host_lookup(db, name, &h, &err);
    if (found <= 0) {
        if (!found)
            sbx_error_arm(&err, SBX_ERR_NOT_FOUND, "HostNotFound", "No host '%s'.", name);
        http_reply_sbx_error(res, &err);
        return;
    }
    http_reply_json(res, status, host_json(s, &h));
    st_host_done(&h);
}

/* The scheduler names the bad argument; the API's code for it.  */
static void reply_register_error(http_response_t *res, sbx_error_t *err)
{
    static const char *const codes[][2] = {{"name", "InvalidHostName"},
                                           {"url", "InvalidHostUrl"},
                                           {"environment", "InvalidEnvironment"}};
    for (size_t i = 0; err->code == SBX_ERR_INVALID && i < ARRAY_SIZE(codes); i++)
        if (strcmp(err->target, codes[i][0]) == 0) {
            snprintf(err->arm_code, sizeof(err->arm_code), "%s", codes[i][1]);
            err->target[0] = '\0';
        }
    http_reply_sbx_error(res, err);
}

static void admin_put(sched_t *s, st_db_t *db, const char *name, const http_request_t *req,
                      http_response_t *res)
{
    sbx_error_t err = {0};
    _cleanup_json_ json_t *in = json_loadb(req->body, req->body_len, 0, NULL);
    const char *url = json_string_value(json_object_get(in, "url"));
    json_t *envj = json_object_get(in, "environment");
    const char *env = envj ? json_string_value(envj) : "default";
    if (!json_is_object(in) || !url || !env) {
        http_reply_error(res, 400, "InvalidRequestContent",
                         "Expected {\"url\": \"https://...\", \"environment\": \"label\"}.");
        return;
    }
    st_host_t old = {0};
    bool existed = st_host_lookup(db, name, &old, NULL) > 0;
    st_host_done(&old);
    if (sched_host_register(s, name, url, env, &err) < 0) {
        reply_register_error(res, &err);
        return;
    }
    reply_host(s, db, res, existed ? 200 : 201, name);
}

static void admin_drain(sched_t *s, st_db_t *db, const char *name, bool drain, http_response_t *res)
{
    sbx_error_t err = {0};
    int found = sched_host_drain(s, name, drain, &err);
    if (found == 0)
        sbx_error_arm(&err, SBX_ERR_NOT_FOUND, "HostNotFound", "No host '%s'.", name);
    if (found <= 0)
        http_reply_sbx_error(res, &err);
    else
        reply_host(s, db, res, 200, name);
}

static void admin_list(sched_t *s, st_db_t *db, http_response_t *res)
{
    st_host_t *hosts = NULL;
    size_t n = 0;
    sbx_error_t err = {0};
    if (st_host_list(db, &hosts, &n, &err) < 0) {
        http_reply_sbx_error(res, &err);
        return;
    }
    json_t *value = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(value, host_json(s, &hosts[i]));
    st_hosts_free(hosts, n);
    http_reply_json(res, 200, json_pack("{s:o}", "value", value));
}

static void admin_delete(sched_t *s, const char *name, http_response_t *res)
{
    sbx_error_t err = {0};
    if (sched_host_remove(s, name, &err) < 0)
        http_reply_sbx_error(res, &err);
    else
        http_reply_empty(res, 204);
}

static void method_not_allowed(http_response_t *res, const char *allow, const char *msg)
{
    http_add_header(res, "Allow", "%s", allow);
    http_reply_error(res, 405, "MethodNotAllowed", "%s", msg);
}

static void admin_host(sched_t *s, st_db_t *db, const char *name, const http_request_t *req,
                       http_response_t *res)
{
    const char *m = req->method;
    if (strcmp(m, "GET") == 0)
        reply_host(s, db, res, 200, name);
    else if (strcmp(m, "PUT") == 0)
        admin_put(s, db, name, req, res);
    else if (strcmp(m, "DELETE") == 0)
        admin_delete(s, name, res);
    else
        method_not_allowed(res, "GET, PUT, DELETE", "Method not allowed.");
}

void routes_admin_exec_admission(const http_request_t *req, http_response_t *res)
{
    if (strcmp(req->method, "GET") != 0)
        return method_not_allowed(res, "GET", "Use GET.");
    api_exec_counts_t c;
    api_exec_counters(&c);
    http_reply_json(res, 200,
                    json_pack("{s:I,s:I,s:I,s:I,s:I}", "checked", (json_int_t)c.checked, "denied",
                              (json_int_t)c.denied, "webhookCalls", (json_int_t)c.webhook_calls,
                              "webhookFailures", (json_int_t)c.webhook_failures,
                              "webhookRefusedAddresses", (json_int_t)c.webhook_refused));
}

/* /admin/hosts, /admin/hosts/{name}, /admin/hosts/{name}/{drain|ready} */
void routes_admin_hosts(sched_t *s, st_db_t *db, const http_request_t *req, http_response_t *res)
{
    const char *p = req->path + strlen("/admin/hosts");
    if (*p == '\0' || strcmp(p, "/") == 0) {
        if (strcmp(req->method, "GET") == 0)
            admin_list(s, db, res);
        else
            method_not_allowed(res, "GET", "Use GET to list hosts.");
        return;
    }
    if (*p != '/') {
        http_reply_error(res, 404, "NotFound", "No such admin route.");
        return;
    }
    _cleanup_free_ char *name = xstrdup(p + 1);
    char *action = strchr(name, '/');
    if (action)
        *action++ = '\0';
    if (!sched_host_name_valid(name))
        http_reply_error(res, 400, "InvalidHostName",
                         "Host names are 1-63 letters, digits, '-', '_' or '.'.");
    else if (!action)
        admin_host(s, db, name, req, res);
    else if (strcmp(action, "drain") != 0 && strcmp(action, "ready") != 0)
        http_reply_error(res, 404, "NotFound", "No such admin route.");
    else if (strcmp(req->method, "POST") != 0)
        method_not_allowed(res, "POST", "Use POST.");
    else
        admin_drain(s, db, name, strcmp(action, "drain") == 0, res);
}
