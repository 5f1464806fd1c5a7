/* roles_arm.c -- role assignments and role definitions in ARM's own shape
 * (Microsoft.Authorization, api-version 2022-04-01), so ARM clients manage
 * access the way they do on Azure; the same assignments /admin serves.  */
#include "auth/internal.h"

#include <ctype.h>
#include <string.h>
#include <time.h>

#define PROVIDER "/providers/Microsoft.Authorization"

/* Azure's built-in ids for the roles it has; Sandbox Executor is ours.  */
static const struct definition {
    const char *name, *guid, *description;
    const char *actions[4], *not_actions[2];
} definitions[] = {
    {"Reader",
     "acdd72a7-3385-48ef-bd42-f606fba81ae7",
     "View all resources, but make no changes.",
     {"*/read"},
     {NULL}},
    {"Sandbox Executor",
     "5d1e3f0a-6c2b-4f7e-9a41-8b0c2d7e5f13",
     "View sandbox groups and sandboxes, run commands in sandboxes and use their files; change "
     "no resources.",
     {"*/read", "Microsoft.App/sandboxGroups/sandboxes/exec/action",
      "Microsoft.App/sandboxGroups/sandboxes/processes/action",
      "Microsoft.App/sandboxGroups/sandboxes/files/*"},
     {NULL}},
    {"Contributor",
     "b24988ac-6180-42a0-ab88-20f7382dd24c",
     "Manage all resources, but not access to them.",
     {"*"},
     {"Microsoft.Authorization/*/Write", "Microsoft.Authorization/*/Delete"}},
    {"Owner",
     "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
     "Manage all resources, including access to them.",
     {"*"},
     {NULL}},
};

static const struct definition *definition_by(const char *name, const char *guid)
{
    for (size_t i = 0; i < ARRAY_SIZE(definitions); i++)
        if ((name && strcasecmp(definitions[i].name, name) == 0) ||
            (guid && strcasecmp(definitions[i].guid, guid) == 0))
            return &definitions[i];
    return NULL;
}

/* Where a definition's id lives: the subscription of the scope, as Azure
 * answers, or the root for "/".  */
static char *definitions_base(const char *scope)
{
    if (strncasecmp(scope, "/subscriptions/", 15) != 0)
        return xstrdup(PROVIDER "/roleDefinitions");
    size_t len = 15 + strcspn(scope + 15, "/");
    return xasprintf("%.*s" PROVIDER "/roleDefinitions", (int)len, scope);
}

static json_t *strings(const char *const *v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n && v[i]; i++)
        json_array_append_new(arr, json_string(v[i]));
    return arr;
}

static json_t *definition_served(const struct definition *d, const char *scope)
{
    _cleanup_free_ char *base = definitions_base(scope);
    _cleanup_free_ char *id = xasprintf("%s/%s", base, d->guid);
    json_t *perm = json_pack("{s:o,s:o,s:[],s:[]}", "actions", strings(d->actions, 4), "notActions",
                             strings(d->not_actions, 2), "dataActions", "notDataActions");
    return json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:[s],s:[o]}}", "id", id, "name", d->guid, "type",
                     "Microsoft.Authorization/roleDefinitions", "properties", "roleName", d->name,
                     "type", "BuiltInRole", "description", d->description, "assignableScopes", "/",
                     "permissions", perm);
}

static json_t *assignment_served(const json_t *as)
{
    const char *name = json_string_value(json_object_get(as, "name"));
    const char *scope = json_string_value(json_object_get(as, "scope"));
    const struct definition *d =
        definition_by(json_string_value(json_object_get(as, "roleDefinitionName")), NULL);
    _cleanup_free_ char *base = definitions_base(scope);
    _cleanup_free_ char *role_id = xasprintf("%s/%s", base, d ? d->guid : "unknown");
    _cleanup_free_ char *id =
        xasprintf("%s" PROVIDER "/roleAssignments/%s", strcmp(scope, "/") == 0 ? "" : scope, name);
    json_t *type = json_object_get(as, "principalType");
    json_t *props =
        json_pack("{s:s,s:s,s:s,s:s}", "roleDefinitionId", role_id, "principalId",
                  json_string_value(json_object_get(as, "principalId")), "principalType",
                  type ? json_string_value(type) : "User", "scope", scope);
    const char *keep[] = {"createdOn", "description"};
    for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
        if (json_object_get(as, keep[i]))
            json_object_set(props, keep[i], json_object_get(as, keep[i]));
    return json_pack("{s:s,s:s,s:s,s:o}", "id", id, "name", name, "type",
                     "Microsoft.Authorization/roleAssignments", "properties", props);
}

static bool is_guid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (strlen(s) != sizeof shape - 1)
        return false;
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == '-' ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* The value of a $filter of the form prefix + value + suffix, value
 * unquoted: "principalId eq '{id}'", "assignedTo('{id}')", "roleName eq
 * '{name}'"; "atScope()" has none.  */
static bool filter_value(const char *f, const char *prefix, const char *suffix, char *val,
                         size_t len)
{
    size_t n = strlen(prefix), sl = strlen(suffix), fl = strlen(f);
    if (fl < n + sl || strncasecmp(f, prefix, n) != 0 || strcmp(f + fl - sl, suffix) != 0)
        return false;
    size_t vl = fl - n - sl;
    if (vl >= len || memchr(f + n, '\'', vl))
        return false;
    memcpy(val, f + n, vl);
    val[vl] = '\0';
    return true;
}

static void list_assignments(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                             const char *scope, http_response_t *res)
{
    const char *filter = http_query(req, "$filter");
    char who[256] = "";
    bool at_scope = false;
    if (filter && strncasecmp(filter, "atScope()", 9) == 0) {
        at_scope = true;
        filter += 9;
        filter += strncasecmp(filter, " and ", 5) == 0 ? 5 : 0;
    }
    if (filter && *filter && !filter_value(filter, "principalId eq '", "'", who, sizeof who) &&
        !filter_value(filter, "assignedTo('", "')", who, sizeof who)) {
        http_reply_error(res, 400, "InvalidFilter",
                         "$filter may be atScope(), principalId eq '{id}' or assignedTo('{id}'), "
                         "or atScope() and one of the others.");
        return;
    }
    json_t *list = json_array();
    pthread_mutex_lock(&a->lock);
    if (!roles_may_read_locked(a, p, scope)) {
        pthread_mutex_unlock(&a->lock);
        json_decref(list);
        http_reply_error(res, 403, "AuthorizationFailed",
                         "The client '%.200s' does not have authorization to perform action "
                         "'Microsoft.Authorization/roleAssignments/read' over scope '%.600s'.",
                         p->name ? p->name : "?", scope);
        return;
    }
    size_t i;
    json_t *as;
    json_array_foreach(a->assignments, i, as)
    {
        const char *s = json_string_value(json_object_get(as, "scope"));
        const char *id = json_string_value(json_object_get(as, "principalId"));
        bool above = roles_scope_within(scope, s), below = roles_scope_within(s, scope);
        if (!(above || (below && !at_scope)) || (*who && strcasecmp(who, id) != 0))
            continue;
        json_array_append_new(list, assignment_served(as));
    }
    pthread_mutex_unlock(&a->lock);
    http_reply_json(res, 200, json_pack("{s:o}", "value", list));
}

/* The stored form of an ARM PUT body, or an ARM error.  */
static int parse_put(const http_request_t *req, const char *scope, const char *name, json_t **out,
                     sbx_error_t *err)
{
    _cleanup_json_ json_t *body =
        json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, NULL);
    json_t *props = json_object_get(body, "properties");
    if (!json_is_object(props))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidRequestContent",
                             "The body must be {\"properties\":{\"roleDefinitionId\", "
                             "\"principalId\"}}.");
    const char *role_id = json_string_value(json_object_get(props, "roleDefinitionId"));
    const char *who = json_string_value(json_object_get(props, "principalId"));
    json_t *type = json_object_get(props, "principalType");
    json_t *desc = json_object_get(props, "description");
    const char *guid = role_id ? strrchr(role_id, '/') : NULL;
    const struct definition *d = guid ? definition_by(NULL, guid + 1) : NULL;
    if (!d || guid - role_id < 16 || strncasecmp(guid - 16, "/roleDefinitions", 16) != 0)
        return sbx_error_arm(err, SBX_ERR_INVALID, "RoleDefinitionDoesNotExist",
                             "The role definition '%.300s' does not exist.",
                             role_id ? role_id : "");
    if (!who || !*who || strlen(who) > 1024 || !sbx_utf8_valid(who, strlen(who)))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidPrincipalId",
                             "'properties.principalId' must be a non-empty string.");
    static const char *const types[] = {"User", "Group", "ServicePrincipal", "ForeignGroup",
                                        "Device"};
    const char *t = type ? json_string_value(type) : "User";
    size_t k = 0;
    while (t && k < ARRAY_SIZE(types) && strcmp(types[k], t) != 0)
        k++;
    if (!t || k == ARRAY_SIZE(types))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidPrincipalType",
                             "'properties.principalType' must be User, Group, ServicePrincipal, "
                             "ForeignGroup or Device.");
    if (desc && (!json_is_string(desc) || json_string_length(desc) > 2048))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidRequestContent",
                             "'properties.description' must be a string of at most 2048.");
    char now[32];
    time_t secs = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&secs, &tm));
    *out = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "name", name, "principalId", who, "principalType",
                     t, "roleDefinitionName", d->name, "scope", scope, "createdOn", now);
    if (desc)
        json_object_set(*out, "description", desc);
    return 0;
}

static bool same_grant(const json_t *x, const json_t *y)
{
    const char *keys[] = {"principalId", "roleDefinitionName", "scope"};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const char *u = json_string_value(json_object_get(x, keys[i]));
        const char *v = json_string_value(json_object_get(y, keys[i]));
        if (!u || !v || strcasecmp(u, v) != 0)
            return false;
    }
    return true;
}

static json_t *find_grant(json_t *arr, const json_t *as)
{
    size_t i;
    json_t *other;
    json_array_foreach(arr, i, other)
    {
        if (same_grant(other, as))
            return other;
    }
    return NULL;
}

static void forbid_write(http_response_t *res, const auth_principal_t *p, const char *scope)
{
    http_reply_error(res, 403, "AuthorizationFailed",
                     "The client '%.200s' does not have authorization to perform action "
                     "'Microsoft.Authorization/roleAssignments/write' over scope '%.600s' (it "
                     "needs Owner there).",
                     p->name ? p->name : "?", scope);
}

/* Under one hold of the lock: an assignment's content never changes
 * (ARM's rule), and one grant has one name.  */
static void put_assignment(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                           const char *scope, const char *name, http_response_t *res)
{
    sbx_error_t err = {0};
    _cleanup_json_ json_t *as = NULL;
    if (parse_put(req, scope, name, &as, &err) < 0) {
        http_reply_sbx_error(res, &err);
        return;
    }
    pthread_mutex_lock(&a->lock);
    size_t at = 0;
    json_t *old = roles_find(a->assignments, name, &at);
    json_t *dup = find_grant(a->assignments, as);
    if (!roles_is_owner_locked(a, p, scope)) {
        forbid_write(res, p, scope);
    } else if (old && same_grant(old, as)) {
        http_reply_json(res, 201, assignment_served(old));
    } else if (old) {
        http_reply_error(res, 409, "RoleAssignmentUpdateNotPermitted",
                         "Tenant ID, application ID, principal ID, and scope are not allowed to "
                         "be updated.");
    } else if (dup) {
        http_reply_error(res, 409, "RoleAssignmentExists",
                         "The role assignment already exists (as '%s').",
                         json_string_value(json_object_get(dup, "name")));
    } else if (json_array_size(a->assignments) >= ROLES_MAX_ASSIGNMENTS) {
        http_reply_error(res, 409, "RoleAssignmentLimitExceeded", "Too many role assignments.");
    } else {
        json_t *next = json_deep_copy(a->assignments);
        json_array_append(next, as);
        if (roles_save_locked(a, next, &err) < 0)
            http_reply_sbx_error(res, &err);
        else
            http_reply_json(res, 201, assignment_served(as));
        json_decref(next);
    }
    pthread_mutex_unlock(&a->lock);
}

static void delete_assignment(auth_t *a, const auth_principal_t *p, const char *scope,
                              const char *name, http_response_t *res)
{
    pthread_mutex_lock(&a->lock);
    size_t at = 0;
    json_t *old = roles_find(a->assignments, name, &at);
    const char *s = old ? json_string_value(json_object_get(old, "scope")) : NULL;
    if (!old || strcasecmp(s, scope) != 0) {
        http_reply_empty(res, 204);
    } else if (!roles_is_owner_locked(a, p, scope)) {
        forbid_write(res, p, scope);
    } else {
        json_t *gone = assignment_served(old);
        json_t *next = json_deep_copy(a->assignments);
        json_array_remove(next, at);
        sbx_error_t err = {0};
        if (roles_save_locked(a, next, &err) < 0) {
            json_decref(gone);
            http_reply_sbx_error(res, &err);
        } else {
            http_reply_json(res, 200, gone);
        }
        json_decref(next);
    }
    pthread_mutex_unlock(&a->lock);
}

static void get_assignment(auth_t *a, const auth_principal_t *p, const char *scope,
                           const char *name, http_response_t *res)
{
    pthread_mutex_lock(&a->lock);
    size_t at = 0;
    json_t *as = roles_find(a->assignments, name, &at);
    const char *s = as ? json_string_value(json_object_get(as, "scope")) : NULL;
    json_t *body = as && strcasecmp(s, scope) == 0 && roles_may_read_locked(a, p, scope)
                       ? assignment_served(as)
                       : NULL;
    pthread_mutex_unlock(&a->lock);
    if (body)
        http_reply_json(res, 200, body);
    else
        http_reply_error(res, 404, "RoleAssignmentNotFound",
                         "The role assignment '%s' is not found.", name);
}

static void assignments(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                        const char *scope, const char *name, http_response_t *res)
{
    const char *m = req->method;
    if (name && !is_guid(name)) {
        http_reply_error(res, 400, "InvalidRoleAssignmentId",
                         "The role assignment ID '%.100s' is not valid. The role assignment ID "
                         "must be a GUID.",
                         name);
    } else if (!name && strcmp(m, "GET") == 0) {
        list_assignments(a, p, req, scope, res);
    } else if (name && strcmp(m, "GET") == 0) {
        get_assignment(a, p, scope, name, res);
    } else if (name && strcmp(m, "PUT") == 0) {
        put_assignment(a, p, req, scope, name, res);
    } else if (name && strcmp(m, "DELETE") == 0) {
        delete_assignment(a, p, scope, name, res);
    } else {
        http_add_header(res, "Allow", "%s", name ? "GET, PUT, DELETE" : "GET");
        http_reply_error(res, 405, "MethodNotAllowed", "The method %s is not allowed here.", m);
    }
}

static void role_definitions(const http_request_t *req, const char *scope, const char *guid,
                             http_response_t *res)
{
    if (strcmp(req->method, "GET") != 0) {
        http_add_header(res, "Allow", "GET");
        http_reply_error(res, 405, "MethodNotAllowed",
                         "Role definitions are built in; only GET is served.");
        return;
    }
    if (guid) {
        const struct definition *d = definition_by(NULL, guid);
        if (!d)
            http_reply_error(res, 404, "RoleDefinitionDoesNotExist",
                             "The role definition '%.100s' does not exist.", guid);
        else
            http_reply_json(res, 200, definition_served(d, scope));
        return;
    }
    const char *filter = http_query(req, "$filter");
    char want[128] = "";
    if (filter && *filter && !filter_value(filter, "roleName eq '", "'", want, sizeof want)) {
        http_reply_error(res, 400, "InvalidFilter", "$filter may be roleName eq '{name}'.");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(definitions); i++)
        if (!*want || strcasecmp(want, definitions[i].name) == 0)
            json_array_append_new(list, definition_served(&definitions[i], scope));
    http_reply_json(res, 200, json_pack("{s:o}", "value", list));
}

void roles_arm_handle(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                      http_response_t *res, const char *scope, const char *rest)
{
    if (!http_query(req, "api-version")) {
        http_reply_error(res, 400, "MissingApiVersionParameter",
                         "The api-version query parameter (?api-version=) is required for all "
                         "requests.");
        return;
    }
    if (!roles_scope_valid(scope)) {
        http_reply_error(res, 400, "InvalidScope",
                         "The scope '%.600s' is not valid: it must be '/', a subscription, a "
                         "resource group or a sandbox group.",
                         scope);
        return;
    }
    const char *kinds[] = {"roleAssignments", "roleDefinitions"};
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
        size_t n = strlen(kinds[i]);
        if (strncasecmp(rest, kinds[i], n) != 0 || (rest[n] && rest[n] != '/'))
            continue;
        const char *name = rest[n] == '/' && rest[n + 1] ? rest + n + 1 : NULL;
        if (name && strchr(name, '/'))
            break;
        if (i == 0)
            assignments(a, p, req, scope, name, res);
        else
            role_definitions(req, scope, name, res);
        return;
    }
    http_reply_error(res, 404, "NotFound", "No route matches.");
}
