/* internal.h -- declarations shared by the files of the api module only.  */
#ifndef SBX_API_INTERNAL_H
#define SBX_API_INTERNAL_H

#include "api/api.h"

#define MODULE_NAME "api"
#define MAX_TAGS 50
#define MAX_TAG_KEY 512
#define MAX_TAG_VALUE 256
#define RETRY_AFTER_SECONDS 1

struct api {
    api_config_t cfg;
    st_db_t *db;
    api_hooks_t hooks;
    char *tenant_id;
};

typedef enum route_kind {
    R_NONE,
    R_OPENAPI,
    R_OPERATIONS_LIST,
    R_GROUPS_BY_SUB,
    R_GROUPS_BY_RG,
    R_GROUP,
    R_CHILD_LIST,
    R_CHILD,
    R_CHILD_ACTION,
    R_OP_STATUS,
    R_OP_RESULT,
} route_kind_t;

struct api_kind;

typedef struct route {
    route_kind_t kind;
    char *segs[16];
    size_t n;
    const char *sub, *rg, *group, *child_name, *action, *loc, *op_id;
    const char *action_rest[2]; /* sandboxes' processes/{pid}/{what}: the segments after */
    size_t n_action_rest;
    const struct api_kind *child; /* for R_CHILD* */
} route_t;

/* What differs between resource types; the CRUD engine does the rest.  */
typedef struct api_kind {
    const char *segment;  /* lower-case path segment: "vnetconnections" */
    const char *type;     /* "Microsoft.App/sandboxGroups/vnetConnections" */
    const char *type_key; /* lower-cased type, as stored */
    bool tracked;         /* has location and tags (groups) */
    bool async_put;       /* PUT answers as a long-running operation */
    bool patchable;
    /* Validate input properties (in may be NULL when absent) against the
     * stored ones (old may be NULL on create) and build the properties to
     * store in *out.  patch: merge semantics.  */
    int (*validate)(api_t *api, st_tx_t *tx, const st_resource_t *parent, const json_t *in,
                    const json_t *old, bool patch, json_t **out, sbx_error_t *err);
    /* Optional: decide the provisioningState of a new or replaced resource
     * and queue work; returns true when an operation stays InProgress.  */
    bool (*needs_work_on_put)(const json_t *props, const json_t *old);
    /* Optional: actions (POST .../{name}/{action}) and GET/PUT/DELETE files.  */
    void (*action)(api_t *api, const route_t *rt, const http_request_t *req, http_response_t *res);
    bool needs_work_on_delete;
    /* Optional: turn a new resource into a ready one from a warm pool, in
     * the same transaction; true when it did (next is updated).  */
    bool (*claim_warm)(api_t *api, st_tx_t *tx, const st_resource_t *parent, st_resource_t *next);
    /* Optional: write-only input (a sandbox's secureEnv) into the server's
     * private part of the body being built ('_' keys, never served), given
     * the input properties (may be NULL) and the stored body (NULL on
     * create).  Runs after validate, on the properties it built.  */
    int (*build_private)(api_t *api, const json_t *in, const json_t *old_body, json_t *body,
                         sbx_error_t *err);
    /* Optional: a new child may be refused by a quota of its parent.  */
    int (*check_quota)(api_t *api, st_tx_t *tx, const st_resource_t *parent, sbx_error_t *err);
    /* Optional: a resource still in use cannot be deleted (409).  */
    int (*check_delete)(api_t *api, const st_resource_t *r, sbx_error_t *err);
} api_kind_t;

extern const api_kind_t api_kind_group;

/* A group's execPolicy (exec_policy.c): the properties to store from the
 * input (NULL after filling err), the webhook secret into the private
 * part, and the admission of an exec or process start ("exec" |
 * "process") in a sandbox: 0 to go on, -1 after replying 403 ExecDenied. */
json_t *api_exec_policy_build(const json_t *in, sbx_error_t *err);
int api_exec_policy_private(api_t *api, const json_t *in, const json_t *old_body, json_t *body,
                            sbx_error_t *err);
int api_exec_admit(api_t *api, const st_resource_t *sandbox, const char *kind,
                   const http_request_t *req, http_response_t *res);
extern const api_kind_t api_kind_vnet;
extern const api_kind_t api_kind_egress;
extern const api_kind_t api_kind_sandbox;
const api_kind_t *api_child_kind(const char *segment);

/* api.c: systemData's principal for the request being answered */
const char *api_principal(const api_t *api);

/* routes.c */
int api_route_parse(const char *path, route_t *rt);
void api_route_done(route_t *rt);

/* arm.c: ARM conventions */
bool api_version_supported(const char *v);
int api_check_content_type(const http_request_t *req, sbx_error_t *err);
json_t *api_parse_body(const http_request_t *req, sbx_error_t *err);
int api_validate_tags(const json_t *tags, sbx_error_t *err);
char *api_normalize_location(const char *loc);
char *api_base_url(const http_request_t *req);
json_t *api_system_data(const json_t *old, const char *principal, int64_t now_ms);
/* If-Match / If-None-Match against the stored etag (NULL when absent).  */
int api_check_preconditions(const http_request_t *req, const char *etag, sbx_error_t *err);
void api_add_async_headers(http_response_t *res, const http_request_t *req, const char *sub,
                           const char *loc, const char *op_id, bool with_location);
/* Build the served envelope for a stored resource.  */
json_t *api_envelope(const st_resource_t *r);
void api_reply_resource(http_response_t *res, int status, const st_resource_t *r);
char *api_url_encode(const char *s);
bool api_arm_id_valid(const char *id, const char *required_type_suffix);
/* Integer/number/string getters that type-check and name the field.  */
int api_get_int(const json_t *obj, const char *key, const char *target, json_int_t min,
                json_int_t max, bool *present, json_int_t *out, sbx_error_t *err);
int api_get_number(const json_t *obj, const char *key, const char *target, double min, double max,
                   bool *present, double *out, sbx_error_t *err);
int api_get_string(const json_t *obj, const char *key, const char *target, size_t max_len,
                   bool *present, const char **out, sbx_error_t *err);
int api_invalid(sbx_error_t *err, const char *target, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool api_image_ref_valid(const char *ref);
int api_validate_sandbox_shape(const api_t *api, const json_t *in, const char *prefix,
                               sbx_error_t *err);
int api_validate_env(const json_t *env, const char *target, sbx_error_t *err);
int api_validate_identity(api_t *api, const json_t *in, const json_t *old, json_t **out,
                          sbx_error_t *err);

/* resources.c: the CRUD engine */
void api_resource_get(api_t *api, const route_t *rt, const api_kind_t *k, const http_request_t *req,
                      http_response_t *res);
void api_resource_put(api_t *api, const route_t *rt, const api_kind_t *k, const http_request_t *req,
                      http_response_t *res);
void api_resource_patch(api_t *api, const route_t *rt, const api_kind_t *k,
                        const http_request_t *req, http_response_t *res);
void api_resource_delete(api_t *api, const route_t *rt, const api_kind_t *k,
                         const http_request_t *req, http_response_t *res);
void api_resource_list(api_t *api, const route_t *rt, const api_kind_t *k,
                       const http_request_t *req, http_response_t *res);
char *api_group_id(const route_t *rt);
char *api_resource_id(const route_t *rt, const api_kind_t *k);

/* operations.c */
void api_operation_status(api_t *api, const route_t *rt, const http_request_t *req,
                          http_response_t *res);
void api_operation_result(api_t *api, const route_t *rt, const http_request_t *req,
                          http_response_t *res);
void api_operations_list(api_t *api, const http_request_t *req, http_response_t *res);

#endif
