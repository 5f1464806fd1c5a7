/* arm.c -- ARM conventions shared by every resource type: api-versions,
 * request bodies, tags, locations, systemData, preconditions, the resource
 * envelope and asynchronous-operation headers.  */
#include "api/internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const supported_versions[] = {"2026-07-01", "2026-01-01"};

bool api_version_supported(const char *v)
{
    for (size_t i = 0; i < ARRAY_SIZE(supported_versions); i++)
        if (strcmp(v, supported_versions[i]) == 0)
            return true;
    return false;
}

int api_invalid(sbx_error_t *err, const char *target, const char *fmt, ...)
{
    if (!err)
        return -1;
    char msg[sizeof(err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sbx_error_arm(err, SBX_ERR_INVALID, "InvalidRequestContent", "%s", msg);
    if (target)
        sbx_error_target(err, target);
    return -1;
}

int api_check_content_type(const http_request_t *req, sbx_error_t *err)
{
    const char *ct = http_header(req, "Content-Type");
    if (!ct)
        return sbx_error_arm(err, SBX_ERR_MEDIA_TYPE, "UnsupportedMediaType",
                             "The request body must be JSON (Content-Type: application/json).");
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ')
        n--;
    if ((n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
        (n == 9 && strncasecmp(ct, "text/json", 9) == 0))
        return 0;
    return sbx_error_arm(err, SBX_ERR_MEDIA_TYPE, "UnsupportedMediaType",
                         "The content type '%.*s' is not supported; use application/json.", (int)n,
                         ct);
}

/* No ARM body of ours nests deeper than a few levels; a deep document is
 * refused rather than stored and echoed back (and walked recursively) on
 * every read.  The walk stops at the limit, so it cannot recurse deeply.  */
#define MAX_BODY_DEPTH 32

static bool depth_within(const json_t *j, int depth)
{
    if (depth > MAX_BODY_DEPTH)
        return false;
    const char *key;
    size_t i;
    json_t *v;
    if (json_is_object(j)) {
        json_object_foreach((json_t *)j, key, v)
        {
            if (!depth_within(v, depth + 1))
                return false;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
        {
            if (!depth_within(v, depth + 1))
                return false;
        }
    }
    return true;
}

json_t *api_parse_body(const http_request_t *req, sbx_error_t *err)
{
    if (req->body_len == 0) {
        api_invalid(err, NULL, "The request body is missing.");
        return NULL;
    }
    if (memchr(req->body, '\0', req->body_len) || !sbx_utf8_valid(req->body, req->body_len)) {
        api_invalid(err, NULL, "The request body is not valid UTF-8 JSON.");
        return NULL;
    }
    json_error_t jerr;
    json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        api_invalid(err, NULL, "The request body is not valid JSON: %s (line %d, column %d).",
                    jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        api_invalid(err, NULL, "The request body must be a JSON object.");
        return NULL;
    }
    if (!depth_within(j, 1)) {
        json_decref(j);
        api_invalid(err, NULL, "The request body nests deeper than %d levels.", MAX_BODY_DEPTH);
        return NULL;
    }
    return j;
}

/* ARM's tag limits count characters, not bytes.  */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

int api_validate_tags(const json_t *tags, sbx_error_t *err)
{
    if (!tags || json_is_null(tags))
        return 0;
    if (!json_is_object(tags))
        return api_invalid(err, "tags", "'tags' must be an object of strings.");
    if (json_object_size(tags) > MAX_TAGS)
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidTags",
                             "A resource can have at most %d tags.", MAX_TAGS);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)tags, key, v)
    {
        if (!json_is_string(v))
            return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidTags",
                                 "The value of tag '%.64s' must be a string.", key);
        size_t klen = utf8_chars(key, strlen(key));
        if (klen == 0 || klen > MAX_TAG_KEY || strpbrk(key, "<>%&\\?/"))
            return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidTags",
                                 "Tag names must be 1-%d characters without <>%%&\\?/.",
                                 MAX_TAG_KEY);
        if (utf8_chars(json_string_value(v), json_string_length(v)) > MAX_TAG_VALUE)
            return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidTags",
                                 "The value of tag '%.64s' is longer than %d characters.", key,
                                 MAX_TAG_VALUE);
    }
    return 0;
}

/* ARM compares locations without case or spaces: "West Europe" = "westeurope".  */
char *api_normalize_location(const char *loc)
{
    char *out = xmalloc(strlen(loc) + 1), *o = out;
    for (const char *p = loc; *p; p++)
        if (*p != ' ')
            *o++ = (char)tolower((unsigned char)*p);
    *o = '\0';
    return out;
}

static bool host_header_safe(const char *h)
{
    if (!h || !*h || strlen(h) > 255)
        return false;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-:[]_", *p))
            return false;
    return true;
}

char *api_base_url(const http_request_t *req)
{
    const char *host = http_header(req, "Host");
    return xasprintf("%s://%s", http_scheme(req), host_header_safe(host) ? host : "localhost");
}

json_t *api_system_data(const json_t *old, const char *principal, int64_t now_ms)
{
    char when[32];
    sbx_time_format(now_ms, when, sizeof(when));
    json_t *sd = json_pack("{s:s,s:s,s:s,s:s}", "lastModifiedBy", principal, "lastModifiedByType",
                           "User", "lastModifiedAt", when, "createdBy", principal);
    json_object_set_new(sd, "createdByType", json_string("User"));
    json_object_set_new(sd, "createdAt", json_string(when));
    if (json_is_object(old)) {
        const char *keep[] = {"createdBy", "createdByType", "createdAt"};
        for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
            json_t *v = json_object_get(old, keep[i]);
            if (json_is_string(v))
                json_object_set(sd, keep[i], v);
        }
    }
    return sd;
}

int api_check_preconditions(const http_request_t *req, const char *etag, sbx_error_t *err)
{
    const char *if_match = http_header(req, "If-Match");
    const char *if_none = http_header(req, "If-None-Match");
    if (if_match) {
        bool ok = etag && (strcmp(if_match, "*") == 0 || strcmp(if_match, etag) == 0);
        if (!ok)
            return sbx_error_arm(err, SBX_ERR_PRECONDITION, "PreconditionFailed",
                                 etag ? "The resource's ETag does not match If-Match."
                                      : "The resource does not exist (If-Match).");
    }
    if (if_none && etag && (strcmp(if_none, "*") == 0 || strcmp(if_none, etag) == 0))
        return sbx_error_arm(err, SBX_ERR_PRECONDITION, "PreconditionFailed",
                             "The resource already exists (If-None-Match).");
    return 0;
}

void api_add_async_headers(http_response_t *res, const http_request_t *req, const char *sub,
                           const char *loc, const char *op_id, bool with_location)
{
    _cleanup_free_ char *base = api_base_url(req);
    _cleanup_free_ char *nloc = api_normalize_location(loc);
    http_add_header(res, "Azure-AsyncOperation",
                    "%s/subscriptions/%s/providers/" API_PROVIDER
                    "/locations/%s/operationStatuses/%s?api-version=%s",
                    base, sub, nloc, op_id, API_VERSION_LATEST);
    if (with_location)
        http_add_header(res, "Location",
                        "%s/subscriptions/%s/providers/" API_PROVIDER
                        "/locations/%s/operationResults/%s?api-version=%s",
                        base, sub, nloc, op_id, API_VERSION_LATEST);
    http_add_header(res, "Retry-After", "%d", RETRY_AFTER_SECONDS);
}

json_t *api_envelope(const st_resource_t *r)
{
    json_t *out = json_pack("{s:s,s:s,s:s}", "id", r->id, "name", r->name, "type", "");
    json_t *type = json_object_get(r->body, "type");
    if (type)
        json_object_set(out, "type", type);
    const char *key;
    json_t *v;
    /* Keys starting with '_' are the server's own bookkeeping.  */
    json_object_foreach(r->body, key, v)
    {
        if (strcmp(key, "type") != 0 && key[0] != '_')
            json_object_set(out, key, v);
    }
    return out;
}

json_t *api_resource_json(const st_resource_t *r)
{
    return api_envelope(r);
}

void api_reply_resource(http_response_t *res, int status, const st_resource_t *r)
{
    http_add_header(res, "ETag", "%s", r->etag);
    http_reply_json(res, status, api_envelope(r));
}

/* "/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/...]"
 * whose last type segment equals required_type_suffix (case-insensitive).  */
bool api_arm_id_valid(const char *id, const char *required_type)
{
    if (!id || strlen(id) > 1024 || strncasecmp(id, "/subscriptions/", 15) != 0)
        return false;
    char *copy = xstrdup(id);
    char *save = NULL;
    size_t n = 0;
    char *segs[32];
    char *t = strtok_r(copy, "/", &save);
    for (; t && n < ARRAY_SIZE(segs); t = strtok_r(NULL, "/", &save))
        segs[n++] = t;
    /* t left over: more segments than we keep, so segs[n - 2] would not
     * be the id's real type.  */
    bool ok = !t && n >= 8 && n % 2 == 0 && strcasecmp(segs[2], "resourceGroups") == 0 &&
              strcasecmp(segs[4], "providers") == 0;
    if (ok && required_type)
        ok = strcasecmp(segs[n - 2], required_type) == 0;
    for (size_t i = 0; ok && i < n; i++)
        for (const char *p = segs[i]; *p; p++)
            if ((unsigned char)*p < 0x20 || strchr("?#\\\"", *p))
                ok = false;
    free(copy);
    return ok;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: break;
    }
    return "null";
}

int api_get_int(const json_t *obj, const char *key, const char *target, json_int_t min,
                json_int_t max, bool *present, json_int_t *out, sbx_error_t *err)
{
    json_t *v = json_object_get(obj, key);
    *present = v && !json_is_null(v);
    if (!*present)
        return 0;
    json_int_t n;
    if (json_is_integer(v))
        n = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
             fabs(json_real_value(v)) < 9e15)
        n = (json_int_t)json_real_value(v);
    else
        return api_invalid(err, target, "'%s' must be an integer, not %s.", target, type_name(v));
    if (n < min || n > max)
        return api_invalid(err, target, "'%s' must be between %lld and %lld.", target,
                           (long long)min, (long long)max);
    *out = n;
    return 0;
}

int api_get_number(const json_t *obj, const char *key, const char *target, double min, double max,
                   bool *present, double *out, sbx_error_t *err)
{
    json_t *v = json_object_get(obj, key);
    *present = v && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_number(v))
        return api_invalid(err, target, "'%s' must be a number, not %s.", target, type_name(v));
    double d = json_number_value(v);
    if (!(d >= min && d <= max))
        return api_invalid(err, target, "'%s' must be between %g and %g.", target, min, max);
    *out = d;
    return 0;
}

int api_get_string(const json_t *obj, const char *key, const char *target, size_t max_len,
                   bool *present, const char **out, sbx_error_t *err)
{
    json_t *v = json_object_get(obj, key);
    *present = v && !json_is_null(v);
    if (!*present)
        return 0;
    if (!json_is_string(v))
        return api_invalid(err, target, "'%s' must be a string, not %s.", target, type_name(v));
    if (json_string_length(v) > max_len)
        return api_invalid(err, target, "'%s' is longer than %zu characters.", target, max_len);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return api_invalid(err, target, "'%s' must not contain NUL characters.", target);
    *out = json_string_value(v);
    return 0;
}

static bool env_name_valid(const char *k)
{
    if (!*k || strlen(k) > 256 || !(isalpha((unsigned char)*k) || *k == '_'))
        return false;
    for (const char *p = k; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    return true;
}

int api_validate_env(const json_t *env, const char *target, sbx_error_t *err)
{
    if (!env || json_is_null(env))
        return 0;
    if (!json_is_object(env))
        return api_invalid(err, target, "'%s' must be an object of strings.", target);
    if (json_object_size(env) > 256)
        return api_invalid(err, target, "'%s' has more than 256 variables.", target);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)env, k, v)
    {
        if (!env_name_valid(k))
            return api_invalid(err, target, "'%.64s' is not a valid environment variable name.", k);
        if (!json_is_string(v) || json_string_length(v) > 32768 ||
            strlen(json_string_value(v)) != json_string_length(v))
            return api_invalid(err, target,
                               "The value of '%.64s' must be a string of at most 32768 "
                               "characters without NUL.",
                               k);
    }
    return 0;
}

/* ---- managed identity (ARM's ManagedServiceIdentity shape) ---- */

static const char *const identity_types[] = {"None", "SystemAssigned", "UserAssigned",
                                             "SystemAssigned,UserAssigned"};

static const char *identity_type_canonical(const char *t)
{
    _cleanup_free_ char *compact = xmalloc(strlen(t) + 1);
    char *o = compact;
    for (const char *p = t; *p; p++)
        if (*p != ' ')
            *o++ = *p;
    *o = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(identity_types); i++)
        if (strcasecmp(compact, identity_types[i]) == 0)
            return identity_types[i];
    return NULL;
}

static json_t *user_identity_entry(const json_t *old_entry)
{
    if (json_is_object(old_entry) && json_object_get(old_entry, "principalId"))
        return json_deep_copy(old_entry);
    char p[37], c[37];
    sbx_uuid(p);
    sbx_uuid(c);
    return json_pack("{s:s,s:s}", "principalId", p, "clientId", c);
}

int api_validate_identity(api_t *api, const json_t *in, const json_t *old, json_t **out,
                          sbx_error_t *err)
{
    *out = NULL;
    if (!in || json_is_null(in)) {
        *out = old ? json_deep_copy(old) : NULL;
        return 0;
    }
    if (!json_is_object(in))
        return api_invalid(err, "identity", "'identity' must be an object.");
    bool present;
    const char *t = NULL;
    if (api_get_string(in, "type", "identity.type", 64, &present, &t, err) < 0)
        return -1;
    const char *type = present ? identity_type_canonical(t) : NULL;
    if (!type)
        return api_invalid(err, "identity.type",
                           "'identity.type' must be one of None, SystemAssigned, UserAssigned, "
                           "'SystemAssigned,UserAssigned'.");
    json_t *res = json_pack("{s:s}", "type", type);
    bool system = strstr(type, "SystemAssigned") != NULL;
    bool user = strstr(type, "UserAssigned") != NULL;
    if (system) {
        json_t *op = old ? json_object_get(old, "principalId") : NULL;
        char p[37];
        sbx_uuid(p);
        json_object_set_new(res, "principalId",
                            json_is_string(op) ? json_copy(op) : json_string(p));
        json_object_set_new(res, "tenantId", json_string(api->tenant_id));
    }
    json_t *uai = json_object_get(in, "userAssignedIdentities");
    if (uai && !json_is_null(uai) && !json_is_object(uai)) {
        json_decref(res);
        return api_invalid(err, "identity.userAssignedIdentities",
                           "'userAssignedIdentities' must be an object keyed by identity ids.");
    }
    if (user) {
        if (!json_is_object(uai) || json_object_size(uai) == 0) {
            json_decref(res);
            return api_invalid(err, "identity.userAssignedIdentities",
                               "UserAssigned identity needs userAssignedIdentities.");
        }
        json_t *old_uai = old ? json_object_get(old, "userAssignedIdentities") : NULL;
        json_t *ids = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(uai, k, v)
        {
            if (!api_arm_id_valid(k, "userAssignedIdentities") ||
                !(json_is_object(v) || json_is_null(v))) {
                json_decref(ids);
                json_decref(res);
                return api_invalid(err, "identity.userAssignedIdentities",
                                   "'%.200s' is not a user-assigned identity resource id.", k);
            }
            json_object_set_new(ids, k, user_identity_entry(json_object_get(old_uai, k)));
        }
        json_object_set_new(res, "userAssignedIdentities", ids);
    } else if (json_is_object(uai) && json_object_size(uai) > 0) {
        json_decref(res);
        return api_invalid(err, "identity.userAssignedIdentities",
                           "userAssignedIdentities needs type UserAssigned.");
    }
    *out = res;
    return 0;
}

char *api_url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = xmalloc(strlen(s) * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || strchr("-._~", *p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}
