/* roles.c -- role assignments (Reader, Sandbox Executor, Contributor,
 * Owner at "/", a subscription, a resource group or a sandbox group),
 * kept in storage and managed through /admin/roleAssignments, and the
 * check of an ARM request against them.  */
#include "auth/internal.h"

#include <ctype.h>
#include <string.h>

#define KV_KEY "role_assignments"

enum {
    P_READ = 1,  /* GET of resources */
    P_DATA = 2,  /* exec and files of a sandbox */
    P_WRITE = 4, /* create, change, delete, start and stop */
    P_ADMIN = 8, /* role assignments, hosts, tokens */
};

static const struct role {
    const char *name;
    unsigned perms;
} roles[] = {
    {"Reader", P_READ},
    {"Sandbox Executor", P_READ | P_DATA},
    {"Contributor", P_READ | P_DATA | P_WRITE},
    {"Owner", P_READ | P_DATA | P_WRITE | P_ADMIN},
};

static const struct role *role_named(const char *name);

const char *roles_canonical(const char *name)
{
    const struct role *r = role_named(name);
    return r ? r->name : NULL;
}

static const struct role *role_named(const char *name)
{
    for (size_t i = 0; name && i < ARRAY_SIZE(roles); i++)
        if (strcasecmp(roles[i].name, name) == 0)
            return &roles[i];
    return NULL;
}

/* Path segments, lower case, empty ones dropped ("a//b" is "a/b", as the
 * ARM router reads it).  Returns the count, or -1 past max.  */
static int segments(const char *path, char segs[][160], int max)
{
    int n = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, "/");
        if (n == max || len >= 160)
            return -1;
        for (size_t i = 0; i < len; i++)
            segs[n][i] = (char)tolower((unsigned char)p[i]);
        segs[n][len] = '\0';
        n++;
        p += len;
    }
    return n;
}

/* Whether scope (an assignment's) covers the request's segments.  */
static bool scope_covers(const char *scope, char req[][160], int nreq)
{
    char s[16][160];
    int n = segments(scope, s, 16);
    if (n < 0 || n > nreq)
        return false;
    for (int i = 0; i < n; i++)
        if (strcmp(s[i], req[i]) != 0)
            return false;
    return true;
}

/* The shapes a scope may take: "/", a subscription, a resource group, or
 * a sandbox group.  */
bool roles_scope_valid(const char *scope)
{
    char s[16][160];
    int n = segments(scope, s, 16);
    if (n < 0 || scope[0] != '/')
        return false;
    if (n == 0)
        return true;
    if (n != 2 && n != 4 && n != 8)
        return false;
    if (strcmp(s[0], "subscriptions") != 0 || (n >= 4 && strcmp(s[2], "resourcegroups") != 0))
        return false;
    return n != 8 || (strcmp(s[4], "providers") == 0 && strcmp(s[5], "microsoft.app") == 0 &&
                      strcmp(s[6], "sandboxgroups") == 0);
}

static bool principal_matches(const auth_principal_t *p, const json_t *as)
{
    const char *who = json_string_value(json_object_get(as, "principalId"));
    const char *iss = json_string_value(json_object_get(as, "principalIssuer"));
    if (!who || (iss && (!p->issuer || strcmp(iss, p->issuer) != 0)))
        return false;
    if ((p->subject && strcmp(who, p->subject) == 0) ||
        (p->object_id && strcasecmp(who, p->object_id) == 0) ||
        (p->app_id && strcasecmp(who, p->app_id) == 0))
        return true;
    size_t i;
    json_t *g;
    json_array_foreach(p->groups, i, g)
    {
        if (json_is_string(g) && strcasecmp(who, json_string_value(g)) == 0)
            return true;
    }
    return false;
}

/* The permissions p holds over the request's scope.  any_below: also
 * count assignments at scopes under it (for a subscription's operation
 * statuses, which anyone working in it polls).  */
static unsigned perms_over_locked(auth_t *a, const auth_principal_t *p, char req[][160], int nreq,
                                  bool any_below)
{
    if (p->kind == AUTH_ADMIN)
        return P_READ | P_DATA | P_WRITE | P_ADMIN;
    /* --no-auth opens the ARM API only; the admin API keeps its token.  */
    if (p->kind == AUTH_STATIC || p->kind == AUTH_ANON)
        return P_READ | P_DATA | P_WRITE;
    /* A host's token gets identity tokens for its sandboxes, no more.  */
    if (p->host)
        return 0;
    unsigned perms = 0;
    size_t i;
    json_t *as;
    json_array_foreach(a->assignments, i, as)
    {
        if (!principal_matches(p, as))
            continue;
        const char *scope = json_string_value(json_object_get(as, "scope"));
        const struct role *r =
            role_named(json_string_value(json_object_get(as, "roleDefinitionName")));
        if (!r || !scope)
            continue;
        bool covers = scope_covers(scope, req, nreq);
        if (!covers && any_below) {
            char s[16][160];
            int n = segments(scope, s, 16);
            covers = n > nreq;
            for (int k = 0; covers && k < nreq; k++)
                covers = strcmp(s[k], req[k]) == 0;
        }
        if (covers)
            perms |= r->perms;
    }
    return perms;
}

static unsigned perms_over(auth_t *a, const auth_principal_t *p, char req[][160], int nreq,
                           bool any_below)
{
    pthread_mutex_lock(&a->lock);
    unsigned perms = perms_over_locked(a, p, req, nreq, any_below);
    pthread_mutex_unlock(&a->lock);
    return perms;
}

static bool holds_locked(auth_t *a, const auth_principal_t *p, const char *scope, unsigned perm)
{
    char s[16][160];
    int n = segments(scope, s, 16);
    return n >= 0 && (perms_over_locked(a, p, s, n, false) & perm);
}

static bool is_owner_locked(auth_t *a, const auth_principal_t *p, const char *scope)
{
    return holds_locked(a, p, scope, P_ADMIN);
}

bool roles_is_owner_locked(auth_t *a, const auth_principal_t *p, const char *scope)
{
    return holds_locked(a, p, scope, P_ADMIN);
}

bool roles_may_read_locked(auth_t *a, const auth_principal_t *p, const char *scope)
{
    return holds_locked(a, p, scope, P_READ);
}

bool roles_scope_within(const char *scope, const char *outer)
{
    char s[16][160];
    int n = segments(scope, s, 16);
    return n >= 0 && scope_covers(outer, s, n);
}

bool auth_is_owner(auth_t *a, const auth_principal_t *p, const char *scope)
{
    pthread_mutex_lock(&a->lock);
    bool owner = is_owner_locked(a, p, scope);
    pthread_mutex_unlock(&a->lock);
    return owner;
}

/* What an ARM request needs, and the action name a refusal quotes.  */
static unsigned needed(const char *method, char s[][160], int n, bool *status_poll,
                       const char **verb)
{
    bool read = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool sandbox_sub = n == 11 && strcmp(s[8], "sandboxes") == 0;
    *status_poll = n >= 5 && strcmp(s[2], "providers") == 0 && strcmp(s[4], "locations") == 0;
    /* Watching a directory reads names inside the sandbox, as listing does. */
    if (sandbox_sub && (strcmp(s[10], "files") == 0 || strcmp(s[10], "watch") == 0)) {
        *verb = read ? "files/read" : "files/write";
        return P_DATA;
    }
    /* A sandbox's processes (started, listed, signalled) are exec's kin.  */
    if (n >= 11 && strcmp(s[8], "sandboxes") == 0 && strcmp(s[10], "processes") == 0) {
        *verb = "processes/action";
        return P_DATA;
    }
    if (sandbox_sub && !strcmp(method, "POST")) {
        bool data = !strcmp(s[10], "exec") || !strcmp(s[10], "processes");
        *verb = data ? "exec/action" : "lifecycle/action";
        return data ? P_DATA : P_WRITE;
    }
    *verb = read ? "read" : !strcmp(method, "DELETE") ? "delete" : "write";
    return read ? P_READ : P_WRITE;
}

int auth_authorize(auth_t *a, const auth_principal_t *p, const char *method, const char *path,
                   sbx_error_t *err)
{
    char s[16][160];
    int n = segments(path, s, 16);
    /* Paths the ARM router does not serve are its to answer (404).  */
    if (n < 2 || strcmp(s[0], "subscriptions") != 0)
        return 0;
    bool poll = false;
    const char *verb = "read";
    unsigned need = needed(method, s, n, &poll, &verb);
    unsigned have = perms_over(a, p, s, poll ? 2 : n, poll);
    if ((have & need) == need)
        return 0;
    _cleanup_free_ char *scope = xstrdup("");
    for (int i = 0; i < n; i++) {
        char *next = xasprintf("%s/%s", scope, s[i]);
        free(scope);
        scope = next;
    }
    const char *kind = n >= 9 ? s[8] : "";
    sbx_error_arm(err, SBX_ERR_FORBIDDEN, "AuthorizationFailed",
                  "The client '%.200s' with object id '%.100s' does not have authorization to "
                  "perform action 'Microsoft.App/sandboxGroups%s%s/%s' over scope '%.600s' or "
                  "the scope is invalid.",
                  p->name ? p->name : "?", p->object_id ? p->object_id : p->subject,
                  *kind ? "/" : "", kind, verb, scope);
    return -1;
}

int roles_load(auth_t *a, sbx_error_t *err)
{
    _cleanup_free_ char *text = NULL;
    json_t *arr = NULL;
    sbx_error_t gerr = {0};
    if (st_kv_get(a->cfg.db, KV_KEY, &text, &gerr) == 0) {
        arr = json_loads(text, 0, NULL);
        if (!json_is_array(arr)) {
            json_decref(arr);
            return sbx_error_set(err, SBX_ERR_INTERNAL,
                                 "the stored role assignments are "
                                 "damaged");
        }
    } else if (gerr.code != SBX_ERR_NOT_FOUND) {
        *err = gerr;
        return -1;
    }
    json_decref(a->assignments);
    a->assignments = arr ? arr : json_array();
    return 0;
}

int roles_save_locked(auth_t *a, json_t *next, sbx_error_t *err)
{
    _cleanup_free_ char *text = json_dumps(next, JSON_COMPACT);
    st_tx_t *tx = st_begin(a->cfg.db, err);
    if (!tx || st_tx_kv_put(tx, KV_KEY, text, err) < 0) {
        st_rollback(tx);
        return -1;
    }
    if (st_commit(tx, err) < 0)
        return -1;
    json_decref(a->assignments);
    a->assignments = json_incref(next);
    return 0;
}

int roles_ensure_dev(auth_t *a, sbx_error_t *err)
{
    pthread_mutex_lock(&a->lock);
    json_t *next = json_deep_copy(a->assignments);
    size_t i;
    json_t *as;
    bool found = false;
    json_array_foreach(next, i, as)
    {
        const char *name = json_string_value(json_object_get(as, "name"));
        if (name && strcmp(name, "dev") == 0) {
            /* The issuer URL may have been changed by the operator.  */
            json_object_set_new(as, "principalIssuer", json_string(a->issuer));
            found = true;
        }
    }
    if (!found)
        json_array_append_new(next, json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", "dev", "principalId",
                                              AUTH_DEV_SUBJECT, "principalIssuer", a->issuer,
                                              "roleDefinitionName", "Contributor", "scope", "/"));
    int r = json_equal(next, a->assignments) ? 0 : roles_save_locked(a, next, err);
    json_decref(next);
    pthread_mutex_unlock(&a->lock);
    return r;
}

/* ---- /admin/roleAssignments[/{name}] ---- */

static json_t *served(const json_t *as)
{
    const char *name = json_string_value(json_object_get(as, "name"));
    json_t *props = json_deep_copy(as);
    json_object_del(props, "name");
    _cleanup_free_ char *id =
        xasprintf("/providers/Microsoft.Authorization/roleAssignments/%s", name);
    return json_pack("{s:s,s:s,s:s,s:o}", "id", id, "name", name, "type",
                     "Microsoft.Authorization/roleAssignments", "properties", props);
}

static bool name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return false;
    for (const char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
            return false;
    return true;
}

static int parse_assignment(const http_request_t *req, const char *name, json_t **out,
                            sbx_error_t *err)
{
    _cleanup_json_ json_t *body =
        json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, NULL);
    json_t *props = json_object_get(body, "properties");
    if (!json_is_object(props))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidRequestContent",
                             "The body must be {\"properties\":{\"principalId\", "
                             "\"roleDefinitionName\", \"scope\"}}.");
    const char *who = json_string_value(json_object_get(props, "principalId"));
    const char *role = json_string_value(json_object_get(props, "roleDefinitionName"));
    const char *scope = json_string_value(json_object_get(props, "scope"));
    json_t *iss = json_object_get(props, "principalIssuer");
    if (!who || !*who || strlen(who) > 1024 || !sbx_utf8_valid(who, strlen(who)))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidPrincipalId",
                             "'properties.principalId' must be a non-empty string.");
    if (!role_named(role))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidRoleDefinition",
                             "'properties.roleDefinitionName' must be Reader, Sandbox "
                             "Executor, Contributor or Owner.");
    if (!scope || strlen(scope) > 1024 || !roles_scope_valid(scope))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidScope",
                             "'properties.scope' must be '/', a subscription, a resource group "
                             "or a sandbox group id.");
    if (iss && (!json_is_string(iss) || json_string_length(iss) > 1024))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidRequestContent",
                             "'properties.principalIssuer' must be a string.");
    *out = json_pack("{s:s,s:s,s:s,s:s}", "name", name, "principalId", who, "roleDefinitionName",
                     role_named(role)->name, "scope", scope);
    if (iss)
        json_object_set(*out, "principalIssuer", iss);
    return 0;
}

json_t *roles_find(json_t *arr, const char *name, size_t *at)
{
    size_t i;
    json_t *as;
    json_array_foreach(arr, i, as)
    {
        if (strcmp(json_string_value(json_object_get(as, "name")), name) == 0) {
            *at = i;
            return as;
        }
    }
    return NULL;
}

static void forbid(http_response_t *res, const auth_principal_t *p, const char *scope)
{
    http_reply_error(res, 403, "AuthorizationFailed",
                     "The client '%.200s' does not have authorization to manage role "
                     "assignments over scope '%.600s' (it needs Owner there).",
                     p->name ? p->name : "?", scope);
}

/* Read, check and write under one hold of the lock, so two changes made
 * at once never lose one another.  */
static void put_one(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                    const char *name, http_response_t *res)
{
    sbx_error_t err = {0};
    json_t *as = NULL;
    if (parse_assignment(req, name, &as, &err) < 0) {
        http_reply_sbx_error(res, &err);
        return;
    }
    const char *scope = json_string_value(json_object_get(as, "scope"));
    pthread_mutex_lock(&a->lock);
    json_t *next = json_deep_copy(a->assignments);
    size_t at = 0;
    json_t *old = roles_find(next, name, &at);
    const char *old_scope = old ? json_string_value(json_object_get(old, "scope")) : NULL;
    if (!is_owner_locked(a, p, scope)) {
        forbid(res, p, scope);
    } else if (old_scope && !is_owner_locked(a, p, old_scope)) {
        /* Replacing one moves it away from where it was: Owner there too.  */
        forbid(res, p, old_scope);
    } else if (!old && json_array_size(next) >= ROLES_MAX_ASSIGNMENTS) {
        http_reply_error(res, 409, "RoleAssignmentLimitExceeded", "Too many role assignments.");
    } else {
        bool created = !old;
        if (old)
            json_array_set(next, at, as);
        else
            json_array_append(next, as);
        if (roles_save_locked(a, next, &err) < 0)
            http_reply_sbx_error(res, &err);
        else
            http_reply_json(res, created ? 201 : 200, served(as));
    }
    pthread_mutex_unlock(&a->lock);
    json_decref(next);
    json_decref(as);
}

static void delete_one(auth_t *a, const auth_principal_t *p, const char *name, http_response_t *res)
{
    pthread_mutex_lock(&a->lock);
    json_t *next = json_deep_copy(a->assignments);
    size_t at = 0;
    json_t *old = roles_find(next, name, &at);
    const char *scope = old ? json_string_value(json_object_get(old, "scope")) : NULL;
    if (!old) {
        http_reply_empty(res, 204);
    } else if (!is_owner_locked(a, p, scope)) {
        forbid(res, p, scope);
    } else {
        json_t *gone = served(old);
        json_array_remove(next, at);
        sbx_error_t err = {0};
        if (roles_save_locked(a, next, &err) < 0) {
            json_decref(gone);
            http_reply_sbx_error(res, &err);
        } else {
            http_reply_json(res, 200, gone);
        }
    }
    pthread_mutex_unlock(&a->lock);
    json_decref(next);
}

void roles_admin(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                 http_response_t *res, const char *name)
{
    const char *m = req->method;
    if (name && !name_valid(name)) {
        http_reply_error(res, 400, "InvalidRoleAssignmentName",
                         "A role assignment name is 1 to 64 letters, digits, '-', '_' or '.'.");
        return;
    }
    if (!name && strcmp(m, "GET") == 0) {
        json_t *list = json_array();
        pthread_mutex_lock(&a->lock);
        size_t i;
        json_t *as;
        json_array_foreach(a->assignments, i, as)
        {
            if (is_owner_locked(a, p, json_string_value(json_object_get(as, "scope"))))
                json_array_append_new(list, served(as));
        }
        pthread_mutex_unlock(&a->lock);
        http_reply_json(res, 200, json_pack("{s:o}", "value", list));
    } else if (name && strcmp(m, "GET") == 0) {
        pthread_mutex_lock(&a->lock);
        size_t at = 0;
        json_t *as = roles_find(a->assignments, name, &at);
        json_t *copy = as ? json_deep_copy(as) : NULL;
        pthread_mutex_unlock(&a->lock);
        if (!copy || !auth_is_owner(a, p, json_string_value(json_object_get(copy, "scope"))))
            http_reply_error(res, 404, "RoleAssignmentNotFound",
                             "No role assignment '%s' that you may see.", name);
        else
            http_reply_json(res, 200, served(copy));
        json_decref(copy);
    } else if (name && strcmp(m, "PUT") == 0) {
        put_one(a, p, req, name, res);
    } else if (name && strcmp(m, "DELETE") == 0) {
        delete_one(a, p, name, res);
    } else {
        http_add_header(res, "Allow", "%s", name ? "GET, PUT, DELETE" : "GET");
        http_reply_error(res, 405, "MethodNotAllowed", "The method %s is not allowed here.", m);
    }
}
