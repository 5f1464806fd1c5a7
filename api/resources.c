/* resources.c -- the CRUD engine every resource type shares: GET, PUT,
 * PATCH, DELETE and paged lists, with ARM's preconditions, envelope,
 * systemData and asynchronous-operation replies.  Type-specific rules come
 * from the api_kind_t of the resource.  */
#include "api/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define MAX_PAGE 1000

bool api_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n < 1 || n > 63 || !isalnum((unsigned char)name[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-')
            return false;
    return true;
}

bool api_resource_group_valid(const char *rg)
{
    size_t n = strlen(rg);
    if (n < 1 || n > 90 || rg[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)rg[i]) && !strchr("-_.()", rg[i]))
            return false;
    return true;
}

char *api_group_id(const route_t *rt)
{
    return xasprintf("/subscriptions/%s/resourceGroups/%s/providers/" API_PROVIDER
                     "/sandboxGroups/%s",
                     rt->sub, rt->rg, rt->group);
}

/* The canonical path segment of a child type: "vnetConnections".  */
static const char *child_segment(const api_kind_t *k)
{
    return strrchr(k->type, '/') + 1;
}

char *api_resource_id(const route_t *rt, const api_kind_t *k)
{
    _cleanup_free_ char *gid = api_group_id(rt);
    if (k == &api_kind_group)
        return TAKE_PTR(gid);
    return xasprintf("%s/%s/%s", gid, child_segment(k), rt->child_name);
}

static void reply_err(http_response_t *res, const sbx_error_t *err)
{
    http_reply_sbx_error(res, err);
}

static const char *route_name(const route_t *rt, const api_kind_t *k)
{
    return k == &api_kind_group ? rt->group : rt->child_name;
}

/* ---- GET ---- */

void api_resource_get(api_t *api, const route_t *rt, const api_kind_t *k, const http_request_t *req,
                      http_response_t *res)
{
    sbx_error_t err = {0};
    _cleanup_free_ char *id = api_resource_id(rt, k);
    st_resource_t r = {0};
    if (st_resource_get(api->db, id, &r, &err) < 0) {
        if (err.code == SBX_ERR_NOT_FOUND)
            sbx_error_arm(&err, SBX_ERR_NOT_FOUND, "ResourceNotFound",
                          "The Resource '%s/%s' under resource group '%s' was not found.", k->type,
                          route_name(rt, k), rt->rg);
        reply_err(res, &err);
        return;
    }
    const char *inm = http_header(req, "If-None-Match");
    if (inm && (strcmp(inm, "*") == 0 || strcmp(inm, r.etag) == 0)) {
        http_add_header(res, "ETag", "%s", r.etag);
        http_reply_empty(res, 304);
    } else {
        api_reply_resource(res, 200, &r);
    }
    st_resource_done(&r);
}

/* ---- PUT / PATCH ---- */

typedef struct put_ctx {
    api_t *api;
    const route_t *rt;
    const api_kind_t *k;
    const http_request_t *req;
    bool patch;
    st_tx_t *tx;
    st_resource_t parent, old, next;
    bool have_parent, have_old;
    char *location; /* normalized, for the operation URL */
    bool work;      /* an operation stays InProgress */
} put_ctx_t;

static void put_ctx_done(put_ctx_t *c)
{
    st_rollback(c->tx);
    st_resource_done(&c->parent);
    st_resource_done(&c->old);
    st_resource_done(&c->next);
    free(c->location);
}

static bool is_deleting(const st_resource_t *r)
{
    return r && sbx_body_provisioning(r->body) == SBX_PROV_DELETING;
}

static int load_parent_and_old(put_ctx_t *c, sbx_error_t *err)
{
    if (c->k != &api_kind_group) {
        _cleanup_free_ char *gid = api_group_id(c->rt);
        if (st_tx_resource_get(c->tx, gid, &c->parent, err) < 0) {
            if (err->code == SBX_ERR_NOT_FOUND)
                sbx_error_arm(err, SBX_ERR_NOT_FOUND, "ParentResourceNotFound",
                              "The parent sandbox group '%s' was not found.", c->rt->group);
            return -1;
        }
        c->have_parent = true;
    }
    _cleanup_free_ char *id = api_resource_id(c->rt, c->k);
    int found = st_tx_resource_lookup(c->tx, id, &c->old, err);
    if (found < 0)
        return -1;
    c->have_old = found;
    if (is_deleting(c->have_old ? &c->old : NULL) ||
        is_deleting(c->have_parent ? &c->parent : NULL))
        return sbx_error_arm(err, SBX_ERR_CONFLICT, "ResourceDeleting",
                             "The resource or its sandbox group is being deleted.");
    if (c->patch && !c->have_old)
        return sbx_error_arm(err, SBX_ERR_NOT_FOUND, "ResourceNotFound",
                             "The Resource '%s/%s' under resource group '%s' was not found.",
                             c->k->type, route_name(c->rt, c->k), c->rt->rg);
    sbx_error_clear(err);
    return 0;
}

/* Locations end up in operation URLs: letters, digits, spaces, hyphens.  */
static bool location_chars_valid(const char *loc)
{
    for (const char *p = loc; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != ' ' && *p != '-')
            return false;
    return true;
}

static int build_location(put_ctx_t *c, const json_t *in, json_t *body, sbx_error_t *err)
{
    if (!c->k->tracked) {
        json_t *ploc = json_object_get(c->parent.body, "location");
        c->location =
            api_normalize_location(json_is_string(ploc) ? json_string_value(ploc) : "local");
        return 0;
    }
    json_t *old_loc = c->have_old ? json_object_get(c->old.body, "location") : NULL;
    json_t *loc = json_object_get(in, "location");
    if (c->patch)
        loc = old_loc;
    if (!loc || json_is_null(loc))
        return sbx_error_arm(err, SBX_ERR_INVALID, "LocationRequired",
                             "The location property is required for this definition.");
    if (!json_is_string(loc) || json_string_length(loc) == 0 || json_string_length(loc) > 64 ||
        !location_chars_valid(json_string_value(loc)))
        return api_invalid(err, "location",
                           "'location' must be 1-64 letters, digits, spaces or hyphens.");
    c->location = api_normalize_location(json_string_value(loc));
    if (old_loc) {
        _cleanup_free_ char *was = api_normalize_location(json_string_value(old_loc));
        if (strcmp(was, c->location) != 0)
            return sbx_error_arm(err, SBX_ERR_CONFLICT, "InvalidResourceLocation",
                                 "The resource already exists in location '%s'; it cannot be "
                                 "moved to '%s'.",
                                 json_string_value(old_loc), json_string_value(loc));
        json_object_set(body, "location", old_loc);
    } else {
        json_object_set(body, "location", loc);
    }
    return 0;
}

static int build_tags(put_ctx_t *c, const json_t *in, json_t *body, sbx_error_t *err)
{
    if (!c->k->tracked)
        return 0;
    json_t *tags = json_object_get(in, "tags");
    if (api_validate_tags(tags, err) < 0)
        return -1;
    if (c->patch && !tags)
        tags = json_object_get(c->old.body, "tags");
    json_object_set_new(body, "tags", json_is_object(tags) ? json_deep_copy(tags) : json_object());
    return 0;
}

static int build_identity(put_ctx_t *c, const json_t *in, json_t *body, sbx_error_t *err)
{
    if (c->k != &api_kind_group)
        return 0;
    json_t *old_id = c->have_old ? json_object_get(c->old.body, "identity") : NULL;
    json_t *in_id = json_object_get(in, "identity");
    json_t *out = NULL;
    if (!in_id && !c->patch)
        return 0; /* PUT without identity: none */
    if (api_validate_identity(c->api, in_id, old_id, &out, err) < 0)
        return -1;
    if (out)
        json_object_set_new(body, "identity", out);
    return 0;
}

static int build_properties(put_ctx_t *c, const json_t *in, json_t *body, sbx_error_t *err)
{
    json_t *props = json_object_get(in, "properties");
    if (props && !json_is_null(props) && !json_is_object(props))
        return api_invalid(err, "properties", "'properties' must be an object.");
    if (json_is_null(props))
        props = NULL;
    json_t *old_props = c->have_old ? json_object_get(c->old.body, "properties") : NULL;
    json_t *out = NULL;
    /* validate hands out what it built so far even when it fails.  */
    if (c->k->validate(c->api, c->tx, c->have_parent ? &c->parent : NULL, props, old_props,
                       c->patch, &out, err) < 0) {
        json_decref(out);
        return -1;
    }
    c->work = c->k->needs_work_on_put && c->k->needs_work_on_put(out, old_props);
    const char *state = c->work ? (c->have_old ? "Updating" : "InProgress") : "Succeeded";
    /* A replace that needs no host work changes metadata only: a sandbox
     * still being created, or one that failed, stays so.  */
    json_t *old_ps = json_object_get(old_props, "provisioningState");
    if (!c->work && c->have_old && c->k->needs_work_on_put && json_is_string(old_ps))
        state = json_string_value(old_ps);
    json_object_set_new(out, "provisioningState", json_string(state));
    json_object_set_new(body, "properties", out);
    return 0;
}

static int build_resource(put_ctx_t *c, const json_t *in, sbx_error_t *err)
{
    json_t *body = json_pack("{s:s}", "type", c->k->type);
    c->next.body = body;
    if (build_location(c, in, body, err) < 0 || build_tags(c, in, body, err) < 0 ||
        build_identity(c, in, body, err) < 0 || build_properties(c, in, body, err) < 0)
        return -1;
    json_object_set_new(
        body, "systemData",
        api_system_data(c->have_old ? json_object_get(c->old.body, "systemData") : NULL,
                        api_principal(c->api), sbx_now_ms()));
    json_t *in_props = json_object_get(in, "properties");
    if (c->k->build_private &&
        c->k->build_private(c->api, json_is_object(in_props) ? in_props : NULL,
                            c->have_old ? c->old.body : NULL, body, err) < 0)
        return -1;
    if (c->have_old) {
        /* The server's own bookkeeping (the runtime id and need columns,
         * '_' keys of the body) survives a replace; without it the
         * scheduler would no longer know the sandbox its host runs, and
         * destroy it.  What build_private set (or removed) stands.  */
        const char *key;
        json_t *v;
        json_object_foreach(c->old.body, key, v)
        {
            if (key[0] == '_' && !json_object_get(body, key) &&
                !(c->k->build_private && strcmp(key, API_SECURE_ENV_KEY) == 0))
                json_object_set(body, key, v);
        }
        c->next.id = xstrdup(c->old.id);
        c->next.name = xstrdup(c->old.name);
        c->next.created_ms = c->old.created_ms;
        c->next.host_id = c->old.host_id ? xstrdup(c->old.host_id) : NULL;
        c->next.runtime_id = c->old.runtime_id ? xstrdup(c->old.runtime_id) : NULL;
        c->next.need = c->old.need;
    } else if (c->have_parent) {
        c->next.id = xasprintf("%s/%s/%s", c->parent.id, child_segment(c->k), c->rt->child_name);
        c->next.name = xstrdup(c->rt->child_name);
    } else {
        c->next.id = api_resource_id(c->rt, c->k);
        c->next.name = xstrdup(c->rt->group);
    }
    c->next.type = xstrdup(c->k->type_key);
    c->next.subscription = xstrdup(c->rt->sub);
    c->next.resource_group = xstrdup(c->rt->rg);
    c->next.parent_id = c->have_parent ? xstrdup(c->parent.id) : NULL;
    return 0;
}

static int write_operation(put_ctx_t *c, const char *kind, char op_id[37], sbx_error_t *err)
{
    st_operation_t op = {0};
    sbx_uuid(op.id);
    memcpy(op_id, op.id, 37);
    op.resource_id = c->next.id;
    op.kind = (char *)kind;
    op.status = c->work ? "InProgress" : "Succeeded";
    op.location = c->location;
    op.subscription = c->next.subscription;
    op.start_ms = sbx_now_ms();
    op.end_ms = c->work ? 0 : op.start_ms;
    return st_tx_operation_put(c->tx, &op, err);
}

/* A new sandbox that a warm pool can serve needs no work at all.  Always
 * true: it only decides whether work remains.  */
static bool claim_warm(put_ctx_t *c)
{
    if (!c->have_old && c->work && c->k->claim_warm &&
        c->k->claim_warm(c->api, c->tx, &c->parent, &c->next))
        c->work = false;
    return true;
}

static int validate_names(const route_t *rt, const api_kind_t *k, sbx_error_t *err)
{
    if (!api_resource_group_valid(rt->rg))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidResourceGroupName",
                             "Resource group names are 1-90 letters, digits, '-', '_', '.', "
                             "'(' or ')', not ending in '.'.");
    const char *name = route_name(rt, k);
    if (!api_name_valid(rt->group) || !api_name_valid(name))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidResourceName",
                             "The resource name '%.80s' is invalid: names are 1-63 letters, "
                             "digits and hyphens, starting with a letter or digit.",
                             api_name_valid(rt->group) ? name : rt->group);
    return 0;
}

static void put_or_patch(api_t *api, const route_t *rt, const api_kind_t *k,
                         const http_request_t *req, http_response_t *res, bool patch)
{
    sbx_error_t err = {0};
    put_ctx_t c = {.api = api, .rt = rt, .k = k, .req = req, .patch = patch};
    _cleanup_json_ json_t *in = NULL;
    char op_id[37] = "";
    if (validate_names(rt, k, &err) < 0 || api_check_content_type(req, &err) < 0 ||
        !(in = api_parse_body(req, &err)) || !(c.tx = st_begin(api->db, &err)) ||
        load_parent_and_old(&c, &err) < 0 ||
        api_check_preconditions(req, c.have_old ? c.old.etag : NULL, &err) < 0 ||
        build_resource(&c, in, &err) < 0 ||
        (!c.have_old && k->check_quota && k->check_quota(api, c.tx, &c.parent, &err) < 0) ||
        !claim_warm(&c) || st_tx_resource_put(c.tx, &c.next, &err) < 0 ||
        ((k->async_put || c.work) &&
         write_operation(&c, c.have_old ? "update" : "create", op_id, &err) < 0)) {
        put_ctx_done(&c);
        reply_err(res, &err);
        return;
    }
    int r = st_commit(TAKE_PTR(c.tx), &err);
    if (r < 0) {
        put_ctx_done(&c);
        reply_err(res, &err);
        return;
    }
    if (c.work && api->hooks.operations_queued)
        api->hooks.operations_queued(api->hooks.ctx);
    if (op_id[0] && !patch)
        api_add_async_headers(res, req, rt->sub, c.location, op_id, false);
    api_reply_resource(res, c.have_old || patch ? 200 : 201, &c.next);
    put_ctx_done(&c);
}

void api_resource_put(api_t *api, const route_t *rt, const api_kind_t *k, const http_request_t *req,
                      http_response_t *res)
{
    put_or_patch(api, rt, k, req, res, false);
}

void api_resource_patch(api_t *api, const route_t *rt, const api_kind_t *k,
                        const http_request_t *req, http_response_t *res)
{
    put_or_patch(api, rt, k, req, res, true);
}

/* ---- DELETE ---- */

static bool has_children_needing_work(st_tx_t *tx, const st_resource_t *r, sbx_error_t *err)
{
    size_t n = 0, pool = 0;
    if (st_tx_resource_count(tx, api_kind_sandbox.type_key, r->id, &n, err) < 0 ||
        st_tx_resource_count(tx, API_POOL_TYPE, r->id, &pool, err) < 0)
        return true; /* when in doubt, let the scheduler look */
    return n + pool > 0;
}

void api_resource_delete(api_t *api, const route_t *rt, const api_kind_t *k,
                         const http_request_t *req, http_response_t *res)
{
    sbx_error_t err = {0};
    _cleanup_free_ char *id = api_resource_id(rt, k);
    st_resource_t r = {0};
    st_tx_t *tx = st_begin(api->db, &err);
    if (!tx) {
        reply_err(res, &err);
        return;
    }
    if (st_tx_resource_get(tx, id, &r, &err) < 0) {
        st_rollback(tx);
        if (err.code != SBX_ERR_NOT_FOUND) {
            reply_err(res, &err);
            return;
        }
        sbx_error_clear(&err);
        if (api_check_preconditions(req, NULL, &err) < 0)
            reply_err(res, &err);
        else
            http_reply_empty(res, 204);
        return;
    }
    st_resource_t parent = {0};
    const char *loc = "local";
    if (k->tracked) {
        loc = json_string_value(json_object_get(r.body, "location"));
    } else if (r.parent_id && st_tx_resource_get(tx, r.parent_id, &parent, NULL) == 0) {
        loc = json_string_value(json_object_get(parent.body, "location"));
    }
    _cleanup_free_ char *nloc = api_normalize_location(loc ? loc : "local");
    /* Deleting already: answer with the delete that is under way, rather
     * than queue a second one.  */
    char running[37] = "";
    if (is_deleting(&r) &&
        st_operation_find(api->db, r.id, "delete", "InProgress", running, NULL) == 1) {
        st_rollback(tx);
        api_add_async_headers(res, req, rt->sub, nloc, running, true);
        http_reply_empty(res, 202);
        st_resource_done(&parent);
        st_resource_done(&r);
        return;
    }
    bool work = k->needs_work_on_delete ||
                (k == &api_kind_group && has_children_needing_work(tx, &r, &err));
    st_operation_t op = {.resource_id = r.id,
                         .kind = "delete",
                         .status = work ? "InProgress" : "Succeeded",
                         .location = nloc,
                         .subscription = r.subscription,
                         .start_ms = sbx_now_ms()};
    sbx_uuid(op.id);
    op.end_ms = work ? 0 : op.start_ms;
    int ret = api_check_preconditions(req, r.etag, &err);
    if (ret == 0 && k->check_delete)
        ret = k->check_delete(api, &r, &err);
    if (ret == 0 && work) {
        json_object_set_new(json_object_get(r.body, "properties"), "provisioningState",
                            json_string("Deleting"));
        ret = st_tx_resource_put(tx, &r, &err);
    } else if (ret == 0) {
        ret = st_tx_resource_delete_children(tx, r.id, &err);
        if (ret == 0)
            ret = st_tx_resource_delete(tx, r.id, &err);
    }
    if (ret == 0)
        ret = st_tx_operation_put(tx, &op, &err);
    if (ret == 0)
        ret = st_commit(TAKE_PTR(tx), &err);
    st_rollback(tx);
    if (ret < 0) {
        reply_err(res, &err);
    } else {
        if (work && api->hooks.operations_queued)
            api->hooks.operations_queued(api->hooks.ctx);
        api_add_async_headers(res, req, rt->sub, nloc, op.id, true);
        http_reply_empty(res, 202);
    }
    st_resource_done(&parent);
    st_resource_done(&r);
}

/* ---- lists ---- */

static int page_size(api_t *api, const http_request_t *req, size_t *out, sbx_error_t *err)
{
    const char *top = http_query(req, "$top");
    *out = api->cfg.page_size ? api->cfg.page_size : 100;
    if (!top)
        return 0;
    char *end;
    long n = strtol(top, &end, 10);
    if (!*top || *end || n < 1 || n > MAX_PAGE)
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidParameter",
                             "$top must be an integer between 1 and %d.", MAX_PAGE);
    *out = (size_t)n;
    return 0;
}

static char *next_link(const http_request_t *req, const char *next, size_t top, bool top_given)
{
    _cleanup_free_ char *base = api_base_url(req);
    _cleanup_free_ char *path = api_url_encode(req->path);
    _cleanup_free_ char *token = api_url_encode(next);
    /* The encoded path keeps its slashes readable.  */
    for (char *p = strstr(path, "%2F"); p; p = strstr(p, "%2F")) {
        *p = '/';
        memmove(p + 1, p + 3, strlen(p + 3) + 1);
    }
    const char *ver = http_query(req, "api-version");
    _cleanup_free_ char *topq = top_given ? xasprintf("&%%24top=%zu", top) : xstrdup("");
    return xasprintf("%s%s?api-version=%s%s&%%24skiptoken=%s", base, path, ver, topq, token);
}

void api_resource_list(api_t *api, const route_t *rt, const api_kind_t *k,
                       const http_request_t *req, http_response_t *res)
{
    sbx_error_t err = {0};
    size_t limit;
    if (page_size(api, req, &limit, &err) < 0) {
        reply_err(res, &err);
        return;
    }
    _cleanup_free_ char *parent = k != &api_kind_group ? api_group_id(rt) : NULL;
    if (parent) {
        st_resource_t g = {0};
        if (st_resource_get(api->db, parent, &g, &err) < 0) {
            if (err.code == SBX_ERR_NOT_FOUND)
                sbx_error_arm(&err, SBX_ERR_NOT_FOUND, "ParentResourceNotFound",
                              "The parent sandbox group '%s' was not found.", rt->group);
            reply_err(res, &err);
            return;
        }
        st_resource_done(&g);
    }
    st_list_query_t q = {.type = k->type_key,
                         .subscription = rt->sub,
                         .resource_group = rt->rg,
                         .parent_id = parent,
                         .after = http_query(req, "$skiptoken"),
                         .limit = limit};
    st_list_t l = {0};
    if (st_resource_list(api->db, &q, &l, &err) < 0) {
        reply_err(res, &err);
        return;
    }
    json_t *value = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(value, api_envelope(&l.items[i]));
    json_t *body = json_pack("{s:o}", "value", value);
    if (l.next) {
        _cleanup_free_ char *link = next_link(req, l.next, limit, http_query(req, "$top") != NULL);
        json_object_set_new(body, "nextLink", json_string(link));
    }
    st_list_done(&l);
    http_reply_json(res, 200, body);
}
