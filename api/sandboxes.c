/* sandboxes.c -- sandboxes (our extension): desired state written here,
 * made real by the scheduler; actions and files proxied to the host.  */
#include "api/internal.h"

#include <ctype.h>
#include <string.h>

/* Properties a client may set; the rest are the scheduler's to report.  */
static const char *const writable[] = {"image",
                                       "cpu",
                                       "memoryMiB",
                                       "diskMiB",
                                       "env",
                                       "egressPolicy",
                                       "identity",
                                       "idleTimeoutSeconds",
                                       "maxLifetimeSeconds",
                                       "lifetimeEndAction",
                                       "isolation"};
/* Reported by the scheduler; kept across a replace.  */
static const char *const reported[] = {"state",          "host",          "createdAt",
                                       "lastActivityAt", "statusMessage", "lifetimeStartedAt"};
/* Changing these needs a new sandbox.  */
static const char *const immutable[] = {"image", "cpu",       "memoryMiB", "diskMiB",
                                        "env",   "isolation", "identity"};

static bool provisioning_failed(const json_t *props)
{
    return sbx_provisioning_parse(json_string_value(json_object_get(props, "provisioningState"))) ==
           SBX_PROV_FAILED;
}

/* A sandbox may use one of its group's identities: "system" or a key of
 * its userAssignedIdentities.  */
static bool group_has_identity(const st_resource_t *group, const char *ident)
{
    json_t *id = group ? json_object_get(group->body, "identity") : NULL;
    const char *type = json_string_value(json_object_get(id, "type"));
    if (strcasecmp(ident, "system") == 0 || strcasecmp(ident, "SystemAssigned") == 0)
        return type && strstr(type, "SystemAssigned");
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(id, "userAssignedIdentities"), k,
                        v) if (strcasecmp(k, ident) == 0) return true;
    return false;
}

static int sandbox_validate(api_t *api, st_tx_t *tx, const st_resource_t *parent, const json_t *in,
                            const json_t *old, bool patch, json_t **out, sbx_error_t *err)
{
    json_t *props = json_object();
    *out = props;
    if (in && api_validate_sandbox_shape(api, in, "properties", err) < 0)
        return -1;
    bool present;
    const char *ident = NULL;
    if (in &&
        api_get_string(in, "identity", "properties.identity", 1024, &present, &ident, err) < 0)
        return -1;
    if (ident && !group_has_identity(parent, ident))
        return api_invalid(err, "properties.identity",
                           "'properties.identity' must be 'system' (the group's system-assigned "
                           "identity) or the id of one of the group's user-assigned identities.");
    for (size_t i = 0; in && i < ARRAY_SIZE(writable); i++) {
        json_t *v = json_object_get(in, writable[i]);
        if (v && !json_is_null(v))
            json_object_set(props, writable[i], v);
    }
    if (!old) {
        json_object_set_new(props, "state", json_string("Pending"));
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(immutable); i++) {
        json_t *a = json_object_get(props, immutable[i]), *b = json_object_get(old, immutable[i]);
        if (!json_equal(a, b) && (a || b)) {
            sbx_error_arm(err, SBX_ERR_CONFLICT, "PropertyCannotChange",
                          "'properties.%s' of an existing sandbox cannot change; create a new "
                          "sandbox instead.",
                          immutable[i]);
            return sbx_error_target(err, immutable[i]);
        }
    }
    if (provisioning_failed(old)) {
        /* ARM's way to retry a failed resource is to PUT it again.  */
        json_object_set_new(props, "state", json_string("Pending"));
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(reported); i++) {
        json_t *v = json_object_get(old, reported[i]);
        if (v)
            json_object_set(props, reported[i], v);
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *sorted_names(const json_t *obj)
{
    size_t n = json_object_size(obj), i = 0;
    _cleanup_free_ const char **keys = xcalloc(n + 1, sizeof(*keys));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) keys[i++] = k;
    qsort(keys, n, sizeof(*keys), cmp_str);
    json_t *names = json_array();
    for (i = 0; i < n; i++)
        json_array_append_new(names, json_string(keys[i]));
    return names;
}

static int secure_env_changed(sbx_error_t *err)
{
    sbx_error_arm(err, SBX_ERR_CONFLICT, "PropertyCannotChange",
                  "'properties.secureEnv' of an existing sandbox cannot change; create a new "
                  "sandbox instead.");
    return sbx_error_target(err, "properties.secureEnv");
}

/* secureEnv is write-only: stored sealed (API_SECURE_ENV_KEY), served as
 * its names only (secureEnvNames).  Absent or null keeps what is stored, so
 * a GET-modify-PUT never wipes it; an object replaces it, which on an
 * existing sandbox must give the same values (the environment is fixed at
 * creation, as for env); {} means none.  A name in both env and secureEnv
 * is refused rather than one silently winning.  */
static int sandbox_private(api_t *api, const json_t *in, const json_t *old_body, json_t *body,
                           sbx_error_t *err)
{
    json_t *props = json_object_get(body, "properties");
    json_t *given = json_object_get(in, "secureEnv");
    json_t *old_sealed = json_object_get(old_body, API_SECURE_ENV_KEY);
    if (!json_is_string(old_sealed))
        old_sealed = NULL;
    if (!given || json_is_null(given)) {
        json_t *names = json_object_get(json_object_get(old_body, "properties"), "secureEnvNames");
        if (old_sealed)
            json_object_set(body, API_SECURE_ENV_KEY, old_sealed);
        if (old_sealed && names)
            json_object_set(props, "secureEnvNames", names);
        return 0;
    }
    if (api_validate_env(given, "properties.secureEnv", err) < 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach(given, k, v)
    {
        if (json_object_get(json_object_get(props, "env"), k))
            return api_invalid(err, "properties.secureEnv",
                               "'%.64s' is in both 'env' and 'secureEnv'; name it once.", k);
    }
    if (json_object_size(given) > 0 && !api->cfg.secret_key)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                             "This server has no secrets key; secureEnv cannot be stored.");
    if (old_sealed) {
        if (!api->cfg.secret_key)
            return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "This server has no secrets key.");
        _cleanup_json_ json_t *stored =
            api_secret_open(api->cfg.secret_key, json_string_value(old_sealed), err);
        if (!stored)
            return -1;
        if (!json_equal(stored, given))
            return secure_env_changed(err);
        json_object_set(body, API_SECURE_ENV_KEY, old_sealed);
    } else if (json_object_size(given) > 0) {
        if (old_body)
            return secure_env_changed(err);
        char *sealed = api_secret_seal(api->cfg.secret_key, given, err);
        if (!sealed)
            return -1;
        json_object_set_new(body, API_SECURE_ENV_KEY, json_string(sealed));
        free(sealed);
    }
    if (json_object_size(given) > 0)
        json_object_set_new(props, "secureEnvNames", sorted_names(given));
    return 0;
}

/* A replace with the same spec changes only metadata, unless the sandbox
 * failed: then it is made again.  */
static bool sandbox_needs_work(const json_t *props, const json_t *old)
{
    return old == NULL || provisioning_failed(old);
}

static int sandbox_quota(api_t *api, st_tx_t *tx, const st_resource_t *parent, sbx_error_t *err)
{
    json_t *scale = json_object_get(json_object_get(parent->body, "properties"), "scale");
    json_t *maxv = json_object_get(scale, "maxSandboxes");
    size_t max = json_is_integer(maxv)
                     ? (size_t)json_integer_value(maxv)
                     : (api->cfg.max_sandboxes_default ? api->cfg.max_sandboxes_default : 100);
    size_t n = 0;
    if (st_tx_resource_count(tx, api_kind_sandbox.type_key, parent->id, &n, err) < 0)
        return -1;
    if (n >= max)
        return sbx_error_arm(err, SBX_ERR_CONFLICT, "MaxSandboxesReached",
                             "The sandbox group '%s' already has %zu sandboxes, its maximum "
                             "(properties.scale.maxSandboxes).",
                             parent->name, n);
    return 0;
}

static const char *const actions[] = {"exec",  "suspend",   "resume",          "stop",    "start",
                                      "files", "processes", "egressDecisions", "metrics", "watch"};

/* The methods of processes[/{pid}[/{what}]], or NULL for no such route. */
static const char *process_methods(const route_t *rt)
{
    if (rt->n_action_rest == 0)
        return "GET, POST";
    if (rt->n_action_rest == 1)
        return "GET";
    const char *what = rt->action_rest[1];
    if (strcasecmp(what, "stream") == 0)
        return "GET";
    if (!strcasecmp(what, "stdin") || !strcasecmp(what, "signal") || !strcasecmp(what, "resize"))
        return "POST";
    return NULL;
}

static bool method_listed(const char *allow, const char *m)
{
    size_t n = strlen(m);
    for (const char *p = allow; n && (p = strstr(p, m)); p += n)
        if ((p == allow || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

/* "processes/{pid}/{what}" as the host call names it (lower-case what). */
static char *process_action(const route_t *rt)
{
    if (rt->n_action_rest == 0)
        return xstrdup("processes");
    if (rt->n_action_rest == 1)
        return xasprintf("processes/%s", rt->action_rest[0]);
    char what[16];
    snprintf(what, sizeof(what), "%s", rt->action_rest[1]);
    for (char *c = what; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return xasprintf("processes/%s/%s", rt->action_rest[0], what);
}

static void sandbox_action(api_t *api, const route_t *rt, const http_request_t *req,
                           http_response_t *res)
{
    const char *action = NULL;
    for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
        if (strcasecmp(rt->action, actions[i]) == 0)
            action = actions[i];
    if (!action) {
        http_reply_error(res, 404, "NotFound", "No action '%s' on sandboxes.", rt->action);
        return;
    }
    bool files = strcmp(action, "files") == 0, procs = strcmp(action, "processes") == 0;
    if (!procs && rt->n_action_rest) {
        http_reply_error(res, 404, "NotFound", "No route matches.");
        return;
    }
    bool decisions = strcmp(action, "egressDecisions") == 0 || strcmp(action, "metrics") == 0 ||
                     strcmp(action, "watch") == 0;
    const char *allow = files       ? "GET, PUT, DELETE"
                        : procs     ? process_methods(rt)
                        : decisions ? "GET"
                                    : "POST";
    if (!allow) {
        http_reply_error(res, 404, "NotFound", "No action '%s' on processes.", rt->action_rest[1]);
        return;
    }
    const char *m = req->method;
    if (!method_listed(allow, m)) {
        http_add_header(res, "Allow", "%s", allow);
        http_reply_error(res, 405, "MethodNotAllowed", "The method %s is not allowed here.", m);
        return;
    }
    sbx_error_t err = {0};
    bool json_body = strcmp(action, "exec") == 0 || (procs && strcmp(m, "POST") == 0);
    if (json_body && api_check_content_type(req, &err) < 0) {
        http_reply_sbx_error(res, &err);
        return;
    }
    _cleanup_free_ char *id = api_resource_id(rt, &api_kind_sandbox);
    st_resource_t r = {0};
    if (st_resource_get(api->db, id, &r, &err) < 0) {
        if (err.code == SBX_ERR_NOT_FOUND)
            sbx_error_arm(&err, SBX_ERR_NOT_FOUND, "ResourceNotFound",
                          "The sandbox '%s' was not found.", rt->child_name);
        http_reply_sbx_error(res, &err);
        return;
    }
    _cleanup_free_ char *call = procs ? process_action(rt) : xstrdup(action);
    bool starts =
        strcmp(action, "exec") == 0 || (procs && rt->n_action_rest == 0 && strcmp(m, "POST") == 0);
    if (starts && api_exec_admit(api, &r, procs ? "process" : "exec", req, res) < 0) {
    } else if (!api->hooks.sandbox_call)
        http_reply_error(res, 503, "ServiceUnavailable", "No scheduler is running.");
    else
        api->hooks.sandbox_call(api->hooks.ctx, &r, call, req, res);
    st_resource_done(&r);
}

/* Only a sandbox that asks for nothing but the group's defaults can be a
 * warm-pool member, which was started from exactly those.  */
static bool pool_eligible(const json_t *props)
{
    static const char *const own[] = {"image", "cpu",       "memoryMiB", "diskMiB",
                                      "env",   "isolation", "identity"};
    for (size_t i = 0; i < ARRAY_SIZE(own); i++)
        if (json_object_get(props, own[i]))
            return false;
    return true;
}

static bool sandbox_claim_warm(api_t *api, st_tx_t *tx, const st_resource_t *parent,
                               st_resource_t *next)
{
    json_t *props = json_object_get(next->body, "properties");
    /* A pool member was started without this sandbox's secrets.  */
    if (!pool_eligible(props) || json_object_get(next->body, API_SECURE_ENV_KEY))
        return false;
    /* Candidates come from the last committed state; each is checked again
     * inside this (write) transaction, so two creates never take one.  */
    st_list_query_t q = {.type = API_POOL_TYPE, .parent_id = parent->id, .limit = 16};
    st_list_t l = {0};
    if (st_resource_list(api->db, &q, &l, NULL) < 0)
        return false;
    bool claimed = false;
    for (size_t i = 0; i < l.n && !claimed; i++) {
        st_resource_t m = {0};
        if (st_tx_resource_get(tx, l.items[i].id, &m, NULL) < 0)
            continue;
        if (sbx_body_state(m.body) == SBX_STATE_READY && m.host_id &&
            st_tx_resource_delete(tx, m.id, NULL) == 0) {
            /* the member's place on its host, as admission counted it */
            free(next->runtime_id);
            next->runtime_id = TAKE_PTR(m.runtime_id);
            next->need = m.need;
            char now[32];
            sbx_time_format(sbx_now_ms(), now, sizeof(now));
            json_object_set_new(props, "state", json_string("Running"));
            json_object_set_new(props, "host", json_string(m.host_id));
            json_object_set_new(props, "createdAt", json_string(now));
            json_object_set_new(props, "lastActivityAt", json_string(now));
            json_object_set_new(props, "statusMessage", json_string(""));
            json_object_set_new(props, "provisioningState", json_string("Succeeded"));
            free(next->host_id);
            next->host_id = xstrdup(m.host_id);
            claimed = true;
        }
        st_resource_done(&m);
    }
    st_list_done(&l);
    return claimed;
}

const api_kind_t api_kind_sandbox = {
    .claim_warm = sandbox_claim_warm,
    .segment = "sandboxes",
    .type = API_PROVIDER "/sandboxGroups/sandboxes",
    .type_key = "microsoft.app/sandboxgroups/sandboxes",
    .async_put = true,
    .validate = sandbox_validate,
    .needs_work_on_put = sandbox_needs_work,
    .build_private = sandbox_private,
    .needs_work_on_delete = true,
    .check_quota = sandbox_quota,
    .action = sandbox_action,
};
