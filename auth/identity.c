/* identity.c -- tokens for sandboxes' managed identities: the host running
 * a sandbox (or the admin token) asks for a short-lived token for the
 * group identity the sandbox names, for one audience.  The subject names
 * the sandbox and the identity, so a token is bound to its sandbox, and a
 * host gets tokens only for the sandboxes placed on it.  */
#include "auth/internal.h"

#include <string.h>

#define SANDBOX_TYPE "microsoft.app/sandboxgroups/sandboxes"

typedef struct chosen {
    const char *oid, *client_id, *mirid, *label;
} chosen_t;

/* Printable ASCII without spaces: a URI or an app id URI.  */
static bool resource_valid(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 512)
        return false;
    for (const char *c = r; *c; c++)
        if (*c <= 0x20 || *c >= 0x7f)
            return false;
    return true;
}

static int choose(const json_t *group_identity, const char *want, chosen_t *out, sbx_error_t *err)
{
    const char *type = json_string_value(json_object_get(group_identity, "type"));
    if (strcasecmp(want, "system") == 0 || strcasecmp(want, "SystemAssigned") == 0) {
        if (!type || !strstr(type, "SystemAssigned"))
            return sbx_error_arm(err, SBX_ERR_INVALID, "IdentityNotFound",
                                 "The sandbox group has no system-assigned identity.");
        out->oid = json_string_value(json_object_get(group_identity, "principalId"));
        out->client_id = out->oid;
        out->label = "system";
        return out->oid ? 0 : sbx_error_set(err, SBX_ERR_INTERNAL, "no principalId");
    }
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(group_identity, "userAssignedIdentities"), k, v)
    {
        if (strcasecmp(k, want) != 0)
            continue;
        out->oid = json_string_value(json_object_get(v, "principalId"));
        out->client_id = json_string_value(json_object_get(v, "clientId"));
        out->mirid = k;
        const char *slash = strrchr(k, '/');
        out->label = slash ? slash + 1 : k;
        return out->oid && out->client_id ? 0
                                          : sbx_error_set(err, SBX_ERR_INTERNAL, "no principalId");
    }
    return sbx_error_arm(err, SBX_ERR_INVALID, "IdentityNotFound",
                         "The sandbox's identity is not one of its group's identities.");
}

/* The identity a request may select (IMDS's client_id, object_id,
 * mi_res_id) must be the sandbox's own.  */
static int selection_ok(const json_t *body, const chosen_t *c, sbx_error_t *err)
{
    const char *cid = json_string_value(json_object_get(body, "clientId"));
    const char *oid = json_string_value(json_object_get(body, "objectId"));
    const char *mri = json_string_value(json_object_get(body, "miResId"));
    if ((cid && strcasecmp(cid, c->client_id) != 0) || (oid && strcasecmp(oid, c->oid) != 0) ||
        (mri && (!c->mirid || strcasecmp(mri, c->mirid) != 0)))
        return sbx_error_arm(err, SBX_ERR_INVALID, "IdentityNotFound",
                             "The requested identity is not assigned to this sandbox.");
    return 0;
}

static json_t *mint(auth_t *a, const auth_principal_t *p, const st_resource_t *sb,
                    const chosen_t *c, const char *resource, sbx_error_t *err)
{
    int64_t now = time(NULL), ttl = AUTH_IDENTITY_TTL_S;
    if (ttl > a->rotation_s)
        ttl = a->rotation_s;
    char jti[37];
    sbx_uuid(jti);
    _cleanup_free_ char *sub = xasprintf("%s/identities/%s", sb->id, c->label);
    json_t *claims =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s}", "iss", a->issuer, "sub",
                  sub, "aud", resource, "oid", c->oid, "tid", a->tenant_id, "appid", c->client_id,
                  "azp", c->client_id, "sbx_sandbox", sb->id, "iat", (json_int_t)now, "nbf",
                  (json_int_t)now, "exp", (json_int_t)(now + ttl), "jti", jti, "idtyp", "app");
    if (c->mirid)
        json_object_set_new(claims, "xms_mirid", json_string(c->mirid));
    char *tok = keys_sign(a, claims, err);
    if (tok)
        audit_token(a, "identity", claims, p->subject ? p->subject : "?");
    json_decref(claims);
    if (!tok)
        return NULL;
    char exp_s[24], nbf_s[24], ttl_s[24];
    snprintf(exp_s, sizeof(exp_s), "%lld", (long long)(now + ttl));
    snprintf(nbf_s, sizeof(nbf_s), "%lld", (long long)now);
    snprintf(ttl_s, sizeof(ttl_s), "%lld", (long long)ttl);
    /* Azure IMDS's reply, numbers as strings included.  */
    json_t *out =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "access_token", tok, "refresh_token", "",
                  "expires_in", ttl_s, "expires_on", exp_s, "not_before", nbf_s, "resource",
                  resource, "token_type", "Bearer", "client_id", c->client_id);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    return out;
}

typedef struct by_runtime {
    const char *rid;
    char *id;
} by_runtime_t;

static void match_runtime(void *ud, const st_resource_t *r)
{
    by_runtime_t *b = ud;
    const char *rid = r->runtime_id;
    if (!b->id && rid && strcmp(rid, b->rid) == 0)
        b->id = xstrdup(r->id);
}

/* The ARM id of the sandbox a host knows by its runtime id: among that
 * host's sandboxes only (all of them for the admin token).  */
static char *sandbox_by_runtime(auth_t *a, const auth_principal_t *p, const char *rid)
{
    st_list_query_t q = {.type = SANDBOX_TYPE, .host_id = p->host};
    by_runtime_t b = {.rid = rid};
    if (st_resource_each(a->cfg.db, &q, match_runtime, &b, NULL) < 0) {
        free(b.id);
        return NULL;
    }
    return b.id;
}

static json_t *issue(auth_t *a, const auth_principal_t *p, const json_t *body, sbx_error_t *err)
{
    const char *sid = json_string_value(json_object_get(body, "sandboxId"));
    const char *rid = json_string_value(json_object_get(body, "runtimeId"));
    const char *resource = json_string_value(json_object_get(body, "resource"));
    _cleanup_free_ char *found = NULL;
    if (!sid && rid && *rid && strlen(rid) <= 128) {
        found = sandbox_by_runtime(a, p, rid);
        if (!found)
            return sbx_error_arm(err, SBX_ERR_NOT_FOUND, "SandboxNotFound",
                                 "No sandbox with that runtime id on this host."),
                   NULL;
        sid = found;
    }
    if (!sid || strlen(sid) > 1024)
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidRequestContent",
                             "'sandboxId' (the sandbox's ARM id) or 'runtimeId' is required."),
               NULL;
    if (!resource || !resource_valid(resource))
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidResource",
                             "'resource' must be a URI of at most 512 printable characters."),
               NULL;
    st_resource_t sb = {0}, group = {0};
    json_t *out = NULL;
    if (st_resource_get(a->cfg.db, sid, &sb, NULL) < 0 || strcmp(sb.type, SANDBOX_TYPE) != 0) {
        sbx_error_arm(err, SBX_ERR_NOT_FOUND, "SandboxNotFound", "No such sandbox.");
    } else if (p->kind != AUTH_ADMIN &&
               (!p->host || !sb.host_id || strcasecmp(p->host, sb.host_id) != 0)) {
        /* Hosts ask for the sandboxes they run, and for no others.  */
        sbx_error_arm(err, SBX_ERR_FORBIDDEN, "AuthorizationFailed",
                      "The sandbox does not run on the asking host.");
    } else {
        const char *want =
            json_string_value(json_object_get(json_object_get(sb.body, "properties"), "identity"));
        chosen_t c = {0};
        if (!want)
            sbx_error_arm(err, SBX_ERR_INVALID, "IdentityNotFound",
                          "The sandbox names no identity (properties.identity).");
        else if (st_resource_get(a->cfg.db, sb.parent_id, &group, err) == 0 &&
                 choose(json_object_get(group.body, "identity"), want, &c, err) == 0 &&
                 selection_ok(body, &c, err) == 0)
            out = mint(a, p, &sb, &c, resource, err);
    }
    st_resource_done(&group);
    st_resource_done(&sb);
    return out;
}

void identity_token_handle(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                           http_response_t *res)
{
    if (strcmp(req->method, "POST") != 0) {
        http_add_header(res, "Allow", "POST");
        http_reply_error(res, 405, "MethodNotAllowed", "The method %s is not allowed here.",
                         req->method);
        return;
    }
    if (p->kind != AUTH_ADMIN && !p->host) {
        http_reply_error(res, 403, "AuthorizationFailed",
                         "Identity tokens are issued to hosts (a host token) and the admin "
                         "token only.");
        return;
    }
    _cleanup_json_ json_t *body =
        json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, NULL);
    sbx_error_t err = {0};
    json_t *out = NULL;
    if (!json_is_object(body))
        sbx_error_arm(&err, SBX_ERR_INVALID, "InvalidRequestContent",
                      "The body must be a JSON object.");
    else
        out = issue(a, p, body, &err);
    if (out)
        http_reply_json(res, 200, out);
    else
        http_reply_sbx_error(res, &err);
}
