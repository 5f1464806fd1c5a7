/* children.c -- the plain child resources of a group: Azure's
 * vnetConnections and our egressPolicies.  */
#include "api/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_RULES 100
#define MAX_RULE_ITEMS 100

/* ---- vnetConnections ---- */

static int vnet_validate(api_t *api, st_tx_t *tx, const st_resource_t *parent, const json_t *in,
                         const json_t *old, bool patch, json_t **out, sbx_error_t *err)
{
    *out = json_object();
    bool present;
    const char *subnet = NULL;
    if (api_get_string(in, "subnetId", "properties.subnetId", 1024, &present, &subnet, err) < 0)
        return -1;
    if (!present)
        return api_invalid(err, "properties.subnetId", "'properties.subnetId' is required.");
    if (!api_arm_id_valid(subnet, "subnets"))
        return api_invalid(err, "properties.subnetId",
                           "'properties.subnetId' must be the ARM resource id of a subnet.");
    json_object_set_new(*out, "subnetId", json_string(subnet));
    return 0;
}

const api_kind_t api_kind_vnet = {
    .segment = "vnetconnections",
    .type = API_PROVIDER "/sandboxGroups/vnetConnections",
    .type_key = "microsoft.app/sandboxgroups/vnetconnections",
    .validate = vnet_validate,
};

/* ---- egressPolicies ---- */

static bool action_valid(const json_t *v)
{
    return json_is_string(v) && (strcmp(json_string_value(v), "Allow") == 0 ||
                                 strcmp(json_string_value(v), "Deny") == 0);
}

/* "pypi.org" or "*.githubusercontent.com": DNS labels, one leading
 * wildcard label at most.  */
static bool fqdn_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    if (strncmp(s, "*.", 2) == 0)
        s += 2;
    size_t label = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum((unsigned char)*p) || *p == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

static bool cidr_valid(const char *s)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(addr))
        return false;
    memcpy(addr, s, n);
    addr[n] = '\0';
    unsigned char buf[16];
    int max;
    if (inet_pton(AF_INET, addr, buf) == 1)
        max = 32;
    else if (inet_pton(AF_INET6, addr, buf) == 1)
        max = 128;
    else
        return false;
    if (!slash)
        return true;
    /* digits only, as the agent parses it (strtol would also take " 8", "+8") */
    char *end;
    long bits = strtol(slash + 1, &end, 10);
    return isdigit((unsigned char)slash[1]) && !*end && bits >= 0 && bits <= max;
}

static int validate_list(const json_t *rule, const char *key, size_t idx,
                         bool (*ok)(const json_t *), sbx_error_t *err)
{
    char t[64];
    snprintf(t, sizeof(t), "properties.rules[%zu].%s", idx, key);
    json_t *arr = json_object_get(rule, key);
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > MAX_RULE_ITEMS)
        return api_invalid(err, t, "'%s' must be an array of at most %d items.", t, MAX_RULE_ITEMS);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!ok(v))
            return api_invalid(err, t, "'%s' item %zu is not valid.", t, i);
    }
    return 0;
}

static bool fqdn_item(const json_t *v)
{
    return json_is_string(v) && fqdn_valid(json_string_value(v));
}

static bool cidr_item(const json_t *v)
{
    return json_is_string(v) && cidr_valid(json_string_value(v));
}

static bool port_item(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 65535;
}

static int validate_rule(const json_t *rule, size_t idx, json_t *seen, sbx_error_t *err)
{
    char t[64];
    snprintf(t, sizeof(t), "properties.rules[%zu]", idx);
    if (!json_is_object(rule))
        return api_invalid(err, t, "'%s' must be an object.", t);
    json_t *name = json_object_get(rule, "name");
    if (!json_is_string(name) || !api_name_valid(json_string_value(name)))
        return api_invalid(err, t, "'%s.name' must be a valid name.", t);
    _cleanup_free_ char *lname = xstrdup(json_string_value(name));
    sbx_str_lower(lname);
    if (json_object_get(seen, lname))
        return api_invalid(err, t, "Rule name '%s' is used twice.", json_string_value(name));
    json_object_set_new(seen, lname, json_true());
    if (!action_valid(json_object_get(rule, "action")))
        return api_invalid(err, t, "'%s.action' must be Allow or Deny.", t);
    if (validate_list(rule, "fqdns", idx, fqdn_item, err) < 0 ||
        validate_list(rule, "cidrs", idx, cidr_item, err) < 0 ||
        validate_list(rule, "ports", idx, port_item, err) < 0)
        return -1;
    return 0;
}

static int egress_validate(api_t *api, st_tx_t *tx, const st_resource_t *parent, const json_t *in,
                           const json_t *old, bool patch, json_t **out, sbx_error_t *err)
{
    *out = json_object();
    json_t *action = in ? json_object_get(in, "defaultAction") : NULL;
    if (action && !json_is_null(action) && !action_valid(action))
        return api_invalid(err, "properties.defaultAction",
                           "'properties.defaultAction' must be Allow or Deny.");
    json_object_set_new(
        *out, "defaultAction",
        json_string(action && json_is_string(action) ? json_string_value(action) : "Deny"));
    json_t *rules = in ? json_object_get(in, "rules") : NULL;
    if (rules && !json_is_null(rules) &&
        (!json_is_array(rules) || json_array_size(rules) > MAX_RULES))
        return api_invalid(err, "properties.rules",
                           "'properties.rules' must be an array of at most %d rules.", MAX_RULES);
    _cleanup_json_ json_t *seen = json_object();
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        if (validate_rule(r, i, seen, err) < 0)
            return -1;
    }
    /* Only the documented fields are kept, so what is served is what the
     * description promises.  */
    json_t *kept = json_array();
    json_array_foreach(rules, i, r)
    {
        json_t *k = json_object();
        const char *fields[] = {"name", "action", "fqdns", "cidrs", "ports"};
        for (size_t f = 0; f < ARRAY_SIZE(fields); f++) {
            json_t *v = json_object_get(r, fields[f]);
            if (v && !json_is_null(v))
                json_object_set_new(k, fields[f], json_deep_copy(v));
        }
        json_array_append_new(kept, k);
    }
    json_object_set_new(*out, "rules", kept);
    return 0;
}

typedef struct users {
    const char *name;
    json_t *names;
} users_t;

static void note_user(void *ud, const st_resource_t *r)
{
    users_t *u = ud;
    const char *p =
        json_string_value(json_object_get(json_object_get(r->body, "properties"), "egressPolicy"));
    if (p && strcasecmp(p, u->name) == 0)
        json_array_append_new(u->names, json_string(r->name));
}

/* A policy that its group or sandboxes name cannot go: they would
 * silently lose their network (or keep rules nobody can see).  */
static int egress_check_delete(api_t *api, const st_resource_t *r, sbx_error_t *err)
{
    users_t u = {.name = r->name, .names = json_array()};
    st_resource_t group = {0};
    if (r->parent_id && st_resource_get(api->db, r->parent_id, &group, NULL) == 0) {
        note_user(&u, &group);
        st_resource_done(&group);
    }
    _cleanup_free_ char *parent = r->parent_id ? xstrdup(r->parent_id) : NULL;
    if (parent)
        sbx_str_lower(parent);
    st_list_query_t q = {.type = API_SANDBOX_TYPE, .parent_id = parent, .limit = 1000};
    int rc = parent ? st_resource_each(api->db, &q, note_user, &u, err) : 0;
    if (rc == 0 && json_array_size(u.names) > 0) {
        char list[256] = "";
        size_t i, len = 0;
        json_t *v;
        json_array_foreach(u.names, i, v)
        {
            if (i == 10 || len >= sizeof list - 70) {
                snprintf(list + len, sizeof list - len, ", ...");
                break;
            }
            len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s'", i ? ", " : "",
                                    json_string_value(v));
        }
        rc = sbx_error_arm(err, SBX_ERR_CONFLICT, "EgressPolicyInUse",
                           "The egress policy '%s' is in use by %zu resource(s): %s. Point them "
                           "at another policy first.",
                           r->name, json_array_size(u.names), list);
    }
    json_decref(u.names);
    return rc;
}

const api_kind_t api_kind_egress = {
    .check_delete = egress_check_delete,
    .segment = "egresspolicies",
    .type = API_PROVIDER "/sandboxGroups/egressPolicies",
    .type_key = "microsoft.app/sandboxgroups/egresspolicies",
    .validate = egress_validate,
};

const api_kind_t *api_child_kind(const char *segment)
{
    const api_kind_t *kinds[] = {&api_kind_vnet, &api_kind_egress, &api_kind_sandbox};
    for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
        if (strcasecmp(segment, kinds[i]->segment) == 0)
            return kinds[i];
    return NULL;
}
