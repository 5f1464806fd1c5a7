/* api.c -- sandbox-agent's HTTP API: routes each call to its area
 * (sandboxes.c, exec.c, files.c, processes.c), the HTTP glue, and the API
 * object's lifetime.  */
#include "agent/internal.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

typedef enum {
    ROUTE_NONE,
    ROUTE_HEALTH,
    ROUTE_LIST,
    ROUTE_SANDBOX,
    ROUTE_ACTION,
    ROUTE_EXEC,
    ROUTE_FILES,
    ROUTE_PROCESSES,
    ROUTE_EGRESS,
    ROUTE_EGRESS_POLICY,
    ROUTE_WATCH,
} route_kind_t;

typedef struct route {
    route_kind_t kind;
    char id[80]; /* truncated ids fail validation anyway */
    char action[16];
    char proc[72], proc_action[16]; /* processes/{proc}/{proc_action}; "" when absent */
    bool id_too_long;
} route_t;

static const char *const route_methods[] = {
    [ROUTE_NONE] = "",
    [ROUTE_HEALTH] = "GET",
    [ROUTE_LIST] = "GET",
    [ROUTE_SANDBOX] = "GET, PUT, DELETE",
    [ROUTE_ACTION] = "POST",
    [ROUTE_EXEC] = "POST",
    [ROUTE_FILES] = "GET, PUT, DELETE",
    [ROUTE_PROCESSES] = "GET, POST", /* processes.c narrows it per path */
    [ROUTE_EGRESS] = "GET",
    [ROUTE_EGRESS_POLICY] = "GET, PUT",
    [ROUTE_WATCH] = "GET",
};

/* Split "/v1/sandboxes/{id}/{action}" into a route.  Empty segments (a
 * doubled or trailing slash) match nothing.  */
static void route_parse(const char *path, route_t *r)
{
    memset(r, 0, sizeof(*r));
    const char *seg[6];
    size_t len[6], n = 0;
    if (!path || path[0] != '/')
        return;
    const char *p = path + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        if (l == 0 || n == ARRAY_SIZE(seg))
            return;
        seg[n] = p;
        len[n++] = l;
        if (!slash)
            break;
        p = slash + 1;
    }
#define SEG_IS(i, s) (len[i] == strlen(s) && memcmp(seg[i], s, len[i]) == 0)
    if (n < 2 || !SEG_IS(0, "v1"))
        return;
    if (n == 2 && SEG_IS(1, "health")) {
        r->kind = ROUTE_HEALTH;
        return;
    }
    if (!SEG_IS(1, "sandboxes"))
        return;
    if (n == 2) {
        r->kind = ROUTE_LIST;
        return;
    }
    r->id_too_long = len[2] >= sizeof(r->id);
    memcpy(r->id, seg[2], r->id_too_long ? sizeof(r->id) - 1 : len[2]);
    if (n == 3) {
        r->kind = ROUTE_SANDBOX;
        return;
    }
    if (n >= 4 && SEG_IS(3, "processes")) {
        /* Too long a pid or action matches nothing.  */
        if ((n > 4 && len[4] >= sizeof(r->proc)) || (n > 5 && len[5] >= sizeof(r->proc_action)))
            return;
        r->kind = ROUTE_PROCESSES;
        if (n > 4)
            memcpy(r->proc, seg[4], len[4]);
        if (n > 5)
            memcpy(r->proc_action, seg[5], len[5]);
        return;
    }
    if (n != 4)
        return;
    static const char *const actions[] = {"suspend", "resume", "stop", "start"};
    for (size_t i = 0; i < ARRAY_SIZE(actions); i++) {
        if (SEG_IS(3, actions[i])) {
            r->kind = ROUTE_ACTION;
            snprintf(r->action, sizeof(r->action), "%s", actions[i]);
        }
    }
    if (SEG_IS(3, "exec"))
        r->kind = ROUTE_EXEC;
    if (SEG_IS(3, "files"))
        r->kind = ROUTE_FILES;
    if (SEG_IS(3, "egressDecisions"))
        r->kind = ROUTE_EGRESS;
    if (SEG_IS(3, "egress"))
        r->kind = ROUTE_EGRESS_POLICY;
    if (SEG_IS(3, "watch"))
        r->kind = ROUTE_WATCH;
#undef SEG_IS
}

static bool method_allowed(route_kind_t kind, const char *method)
{
    const char *allowed = route_methods[kind];
    size_t n = strlen(method);
    for (const char *p = allowed; (p = strstr(p, method)); p += n)
        if ((p == allowed || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

void agent_api_call(agent_api_t *api, const agent_call_t *c, http_response_t *res)
{
    route_t r;
    route_parse(c->path, &r);
    if (r.kind == ROUTE_NONE)
        return http_reply_error(res, 404, "NotFound", "no such route");
    if (!c->method || !method_allowed(r.kind, c->method)) {
        http_reply_error(res, 405, "MethodNotAllowed", "method not allowed here; use %s",
                         route_methods[r.kind]);
        http_add_header(res, "Allow", "%s", route_methods[r.kind]);
        return;
    }
    if (r.kind == ROUTE_HEALTH)
        return agent_health(api, res);
    if (r.kind == ROUTE_LIST)
        return agent_sandboxes_list(api, res);
    if (r.id_too_long || !rt_id_valid(r.id))
        return http_reply_error(res, 400, "InvalidSandboxId",
                                "sandbox ids are 1..63 characters [a-z0-9-], starting with a "
                                "letter or digit");
    switch (r.kind) {
    case ROUTE_SANDBOX:
        if (strcmp(c->method, "GET") == 0)
            return agent_sandbox_get(api, r.id, res);
        if (strcmp(c->method, "PUT") == 0)
            return agent_sandbox_put(api, r.id, c, res);
        return agent_sandbox_delete(api, r.id, res);
    case ROUTE_ACTION: return agent_sandbox_action(api, r.id, r.action, res);
    case ROUTE_EXEC: return agent_exec(api, r.id, c, res);
    case ROUTE_FILES: return agent_files(api, r.id, c, res);
    case ROUTE_PROCESSES: return agent_processes(api, r.id, r.proc, r.proc_action, c, res);
    case ROUTE_EGRESS: return agent_egress_decisions(api->egress, api->rt, r.id, res);
    case ROUTE_EGRESS_POLICY: return agent_egress_policy(api->egress, api->rt, r.id, c, res);
    case ROUTE_WATCH: return agent_watch(api, r.id, c, res);
    default: return http_reply_error(res, 404, "NotFound", "no such route");
    }
}

void agent_api_http_handler(void *ctx, const http_request_t *req, http_response_t *res)
{
    agent_call_t c = {
        .method = req->method,
        .path = req->path,
        .query_list = http_query(req, "list"),
        .query_offset = http_query(req, "offset"),
        .query_recursive = http_query(req, "recursive"),
        .accept = http_header(req, "Accept"),
        .last_event_id = http_header(req, "Last-Event-ID"),
        .body = req->body,
        .body_len = req->body_len,
        .body_size = HTTP_SIZE_UNKNOWN,
    };
    /* The length tells an embedded %00 apart from the end of the value.  */
    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, "path", 4, &c.query_path,
                                      &c.query_path_len) != MHD_YES)
        c.query_path = NULL;
    /* A streamed body: the connection (and the values it holds) may be gone
     * once reading starts, so what is needed afterwards is copied.  */
    _cleanup_free_ char *path = NULL, *list = NULL;
    if (!req->body) {
        if (c.query_path) {
            path = xmalloc(c.query_path_len + 1);
            memcpy(path, c.query_path, c.query_path_len);
            path[c.query_path_len] = '\0';
            c.query_path = path;
        }
        if (c.query_list)
            c.query_list = list = xstrdup(c.query_list);
        c.body_size = http_body_size(req);
        c.body_read = http_body_reader;
        c.body_ud = (void *)req;
    }
    agent_api_call(ctx, &c, res);
}

bool agent_api_stream_body(void *ctx, const http_request_t *req)
{
    route_t r;
    route_parse(req->path, &r);
    return r.kind == ROUTE_FILES && strcmp(req->method, "PUT") == 0;
}

size_t agent_api_body_limit(void *ctx, const char *method, const char *path)
{
    route_t r;
    route_parse(path, &r);
    if (r.kind == ROUTE_FILES && method && strcmp(method, "PUT") == 0)
        return AGENT_MAX_FILE_BODY;
    if (r.kind == ROUTE_EXEC)
        return AGENT_MAX_EXEC_BODY;
    return AGENT_MAX_JSON_BODY;
}

agent_api_t *agent_api_new(const agent_api_config_t *cfg, sbx_error_t *err)
{
    agent_api_t *api = xcalloc(1, sizeof(*api));
    api->rt = cfg->rt;
    api->img = cfg->img;
    api->egress = cfg->egress;
    api->egress_pool = cfg->egress_pool ? xstrdup(cfg->egress_pool) : NULL;
    api->egress_unavailable = cfg->egress_unavailable ? xstrdup(cfg->egress_unavailable) : NULL;
    api->imds = cfg->imds;
    api->environment = xstrdup(cfg->environment ? cfg->environment : "default");
    api->procs = agent_procs_new(cfg->rt);
    pthread_mutex_init(&api->lock, NULL);
    pthread_cond_init(&api->changed, NULL);
    return api;
}

void agent_api_free(agent_api_t *api)
{
    if (!api)
        return;
    agent_procs_free(api->procs);
    for (size_t i = 0; i < api->n_busy; i++)
        free(api->busy[i]);
    free(api->busy);
    pthread_mutex_destroy(&api->lock);
    pthread_cond_destroy(&api->changed);
    free(api->environment);
    free(api->egress_pool);
    free(api->egress_unavailable);
    free(api);
}
