/* operations.c -- operation-status and operation-result resources, the
 * provider's operations list, and finishing an operation.  */
#include "api/internal.h"

#include <string.h>

const char *api_failure_code(sbx_failure_t why)
{
    static const char *const codes[SBX_FAIL_COUNT] = {
        [SBX_FAIL_NONE] = "OperationFailed",         [SBX_FAIL_NO_HOST] = "NoHostAvailable",
        [SBX_FAIL_NO_ROOM] = "InsufficientCapacity", [SBX_FAIL_NO_DRIVER] = "IsolationNotOffered",
        [SBX_FAIL_TOO_LARGE] = "SandboxTooLarge",    [SBX_FAIL_HOST_CALL] = "HostCallFailed",
        [SBX_FAIL_CREATE] = "SandboxCreateFailed",   [SBX_FAIL_GONE] = "ResourceNotFound",
    };
    return why > 0 && why < SBX_FAIL_COUNT ? codes[why] : codes[SBX_FAIL_NONE];
}

static int load_operation(api_t *api, const route_t *rt, st_operation_t *op, sbx_error_t *err)
{
    int found = st_operation_lookup(api->db, rt->op_id, op, err);
    if (found < 0)
        return -1;
    _cleanup_free_ char *loc = api_normalize_location(rt->loc);
    if (!found || strcasecmp(op->subscription, rt->sub) != 0 || strcmp(op->location, loc) != 0) {
        if (found)
            st_operation_done(op);
        return sbx_error_arm(err, SBX_ERR_NOT_FOUND, "OperationNotFound",
                             "The operation '%s' was not found.", rt->op_id);
    }
    return 0;
}

void api_operation_status(api_t *api, const route_t *rt, const http_request_t *req,
                          http_response_t *res)
{
    sbx_error_t err = {0};
    st_operation_t op = {0};
    if (load_operation(api, rt, &op, &err) < 0) {
        http_reply_sbx_error(res, &err);
        return;
    }
    char start[32], end[32];
    sbx_time_format(op.start_ms, start, sizeof(start));
    _cleanup_free_ char *id =
        xasprintf("/subscriptions/%s/providers/" API_PROVIDER "/locations/%s/operationStatuses/%s",
                  rt->sub, op.location, op.id);
    json_t *body = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id, "name", op.id, "status", op.status,
                             "startTime", start, "resourceId", op.resource_id);
    bool done = strcmp(op.status, "InProgress") != 0;
    if (done && op.end_ms) {
        sbx_time_format(op.end_ms, end, sizeof(end));
        json_object_set_new(body, "endTime", json_string(end));
    }
    json_object_set_new(body, "percentComplete", json_real(done ? 100.0 : 0.0));
    if (op.error) {
        json_t *e = json_deep_copy(op.error);
        json_object_del(e, "httpStatus");
        json_object_set_new(body, "error", e);
    }
    if (!done)
        http_add_header(res, "Retry-After", "%d", RETRY_AFTER_SECONDS);
    http_reply_json(res, 200, body);
    st_operation_done(&op);
}

/* The Location URL of a 202: 202 again while running, 204 when it
 * succeeded, the operation's error when it failed.  */
void api_operation_result(api_t *api, const route_t *rt, const http_request_t *req,
                          http_response_t *res)
{
    sbx_error_t err = {0};
    st_operation_t op = {0};
    if (load_operation(api, rt, &op, &err) < 0) {
        http_reply_sbx_error(res, &err);
        return;
    }
    if (strcmp(op.status, "InProgress") == 0) {
        api_add_async_headers(res, req, rt->sub, op.location, op.id, true);
        http_reply_empty(res, 202);
    } else if (strcmp(op.status, "Succeeded") == 0) {
        http_reply_empty(res, 204);
    } else {
        json_t *st = json_object_get(op.error, "httpStatus");
        int status = json_is_integer(st) ? (int)json_integer_value(st) : 500;
        json_t *e = op.error ? json_deep_copy(op.error)
                             : json_pack("{s:s,s:s}", "code", "OperationFailed", "message",
                                         "The operation failed.");
        json_object_del(e, "httpStatus");
        http_reply_json(res, status, json_pack("{s:o}", "error", e));
    }
    st_operation_done(&op);
}

static json_t *operation_entry(const char *name, const char *resource, const char *op,
                               const char *desc)
{
    return json_pack("{s:s,s:b,s:{s:s,s:s,s:s,s:s},s:s}", "name", name, "isDataAction", 0,
                     "display", "provider", "Microsoft App (sandboxd)", "resource", resource,
                     "operation", op, "description", desc, "origin", "user,system");
}

void api_operations_list(api_t *api, const http_request_t *req, http_response_t *res)
{
    static const struct {
        const char *type, *resource;
    } types[] = {
        {"sandboxGroups", "Sandbox groups"},
        {"sandboxGroups/vnetConnections", "VNet connections"},
        {"sandboxGroups/sandboxes", "Sandboxes"},
        {"sandboxGroups/egressPolicies", "Egress policies"},
    };
    static const struct {
        const char *verb, *op, *desc;
    } verbs[] = {
        {"read", "Get or list", "Reads the resource or lists resources of this type."},
        {"write", "Create or update", "Creates or updates the resource."},
        {"delete", "Delete", "Deletes the resource."},
    };
    json_t *value = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(types); i++)
        for (size_t j = 0; j < ARRAY_SIZE(verbs); j++) {
            _cleanup_free_ char *name =
                xasprintf(API_PROVIDER "/%s/%s", types[i].type, verbs[j].verb);
            json_array_append_new(
                value, operation_entry(name, types[i].resource, verbs[j].op, verbs[j].desc));
        }
    const char *actions[] = {"exec", "suspend", "resume", "stop", "start"};
    for (size_t i = 0; i < ARRAY_SIZE(actions); i++) {
        _cleanup_free_ char *name =
            xasprintf(API_PROVIDER "/sandboxGroups/sandboxes/%s/action", actions[i]);
        json_array_append_new(value, operation_entry(name, "Sandboxes", actions[i],
                                                     "Runs this action on a sandbox."));
    }
    json_array_append_new(value, operation_entry(API_PROVIDER "/locations/operationStatuses/read",
                                                 "Operation statuses", "Get",
                                                 "Reads the status of an asynchronous operation."));
    http_reply_json(res, 200, json_pack("{s:o}", "value", value));
}

int api_operation_finish(st_db_t *db, const char *op_id, bool ok, const char *err_code,
                         const char *err_msg, json_t *props_patch, sbx_error_t *err)
{
    st_tx_t *tx = st_begin(db, err);
    if (!tx)
        return -1;
    st_operation_t op = {0};
    st_resource_t r = {0};
    bool have_r = false;
    int ret = st_tx_operation_get(tx, op_id, &op, err);
    if (ret == 0 && strcmp(op.status, "InProgress") != 0)
        goto done; /* finished already: finishing twice is harmless */
    have_r = ret == 0 && st_tx_resource_get(tx, op.resource_id, &r, NULL) == 0;
    /* A create that ends after a DELETE was accepted leaves the resource to
     * the delete: it must not read Succeeded again.  */
    if (have_r && strcmp(op.kind, "delete") != 0 &&
        sbx_body_provisioning(r.body) == SBX_PROV_DELETING)
        have_r = false;
    if (ret == 0 && have_r) {
        json_t *props = json_object_get(r.body, "properties");
        if (props_patch)
            json_object_update(props, props_patch);
        if (ok && strcmp(op.kind, "delete") == 0) {
            ret = st_tx_resource_delete_children(tx, r.id, err);
            if (ret == 0)
                ret = st_tx_resource_delete(tx, r.id, err);
        } else {
            json_object_set_new(props, "provisioningState",
                                json_string(ok ? "Succeeded" : "Failed"));
            ret = st_tx_resource_put(tx, &r, err);
        }
    }
    if (ret == 0) {
        free(op.status);
        op.status = xstrdup(ok ? "Succeeded" : "Failed");
        op.end_ms = sbx_now_ms();
        if (!ok) {
            json_decref(op.error);
            op.error = json_pack("{s:s,s:s}", "code", err_code ? err_code : "OperationFailed",
                                 "message", err_msg ? err_msg : "The operation failed.");
        }
        ret = st_tx_operation_put(tx, &op, err);
    }
done:
    if (ret == 0)
        ret = st_commit(TAKE_PTR(tx), err);
    st_rollback(tx);
    st_operation_done(&op);
    st_resource_done(&r);
    return ret;
}
