/* api.h -- the ARM resource provider for Microsoft.App/sandboxGroups: route
 * matching, api-version checks, validation of input JSON, the ARM envelope
 * (id, name, type, location, tags, identity, systemData, properties), ARM
 * error bodies and asynchronous-operation replies.
 *
 * Handlers never block on a host: they write desired state and a pending
 * operation in one transaction, and return; the scheduler (through the
 * hooks below) does the work and finishes the operation.  */
#ifndef SBX_API_H
#define SBX_API_H

#include "common/common.h"
#include "http/http.h"
#include "storage/storage.h"

typedef struct api api_t;

#define API_PROVIDER "Microsoft.App"
#define API_VERSION_LATEST "2026-07-01"

/* Stored types the scheduler also reads.  Warm-pool members are kept as
 * hidden children of their group (no route serves them).  */
#define API_SANDBOX_TYPE "microsoft.app/sandboxgroups/sandboxes"
#define API_GROUP_TYPE "microsoft.app/sandboxgroups"
#define API_POOL_TYPE "microsoft.app/sandboxgroups/poolsandboxes"

/* What the scheduler lends the API: sandbox actions that need a host answer
 * at once (exec, files) and a nudge when new operations are queued.  All
 * optional; without them sandbox actions answer 503.  */
typedef struct api_hooks {
    void *ctx;
    /* New InProgress operations were committed.  */
    void (*operations_queued)(void *ctx);
    /* Proxy a sandbox action (exec, files) to the sandbox's host.
     * `sandbox` is the stored resource; fills res.  */
    void (*sandbox_call)(void *ctx, const st_resource_t *sandbox, const char *action,
                         const http_request_t *req, http_response_t *res);
} api_hooks_t;

#define API_MAX_DISK_MIB 16384

typedef struct api_config {
    const char *principal;          /* systemData.createdBy for requests; default "sandboxd" */
    size_t page_size;               /* default list page size; default 100 */
    unsigned max_sandboxes_default; /* when a group sets none; 0: 100 */
    /* Largest diskMiB a sandbox (or sandboxDefaults) may ask for; 0:
     * API_MAX_DISK_MIB.  The writable layer is tmpfs, RAM on its host;
     * placement also refuses one whose memory plus disk no host holds.  */
    unsigned max_disk_mib;
    const char *openapi_json; /* served at /openapi.json; may be NULL */
    /* API_SECRET_KEY_LEN bytes that seal secureEnv values in storage;
     * NULL: secureEnv is refused.  */
    const unsigned char *secret_key;
    /* Admission webhooks may be at loopback, private, link-local (cloud
     * metadata) and other non-public addresses.  */
    bool exec_webhook_allow_private;
} api_config_t;

api_t *api_new(const api_config_t *cfg, st_db_t *db, const api_hooks_t *hooks);

/* Exec admission since sandboxd started (exec_policy.c), for operators.  */
typedef struct api_exec_counts {
    uint64_t checked;          /* execs and process starts in groups with an execPolicy */
    uint64_t denied;           /* answered 403 ExecDenied */
    uint64_t webhook_calls;    /* admission webhooks asked */
    uint64_t webhook_failures; /* ... that failed (timeout, error, garbage, address) */
    uint64_t webhook_refused;  /* ... of those, at an address that is not public */
} api_exec_counts_t;
void api_exec_counters(api_exec_counts_t *out);
void api_free(api_t *api);
/* Answer one request (already authenticated).  */
void api_handle(api_t *api, const http_request_t *req, http_response_t *res);
/* The same for a known caller: principal is systemData's createdBy and
 * lastModifiedBy for what the request writes (NULL: cfg->principal).  */
void api_handle_as(api_t *api, const http_request_t *req, const char *principal,
                   http_response_t *res);

/* The ARM error code of a scheduler failure.  */
const char *api_failure_code(sbx_failure_t why);

/* Shared with the scheduler: finish an operation (Succeeded, or Failed with
 * an ARM error) and set the resource's provisioningState accordingly in one
 * transaction; `props_patch` (may be NULL) is merged into the resource's
 * properties; a Succeeded delete removes the resource.  */
int api_operation_finish(st_db_t *db, const char *op_id, bool ok, const char *err_code,
                         const char *err_msg, json_t *props_patch, sbx_error_t *err);

/* Write-only values (a sandbox's secureEnv) are stored sealed with
 * AES-256-GCM: "v1:" and base64 of nonce, ciphertext and tag.  The sealed
 * text of a sandbox is its body's "_secureEnv"; its names are served as
 * properties.secureEnvNames, its values never.  */
#define API_SECRET_KEY_LEN 32
#define API_SECURE_ENV_KEY "_secureEnv"
char *api_secret_seal(const unsigned char key[API_SECRET_KEY_LEN], const json_t *obj,
                      sbx_error_t *err);
/* The JSON object sealed in `sealed` (new reference), or NULL.  */
json_t *api_secret_open(const unsigned char key[API_SECRET_KEY_LEN], const char *sealed,
                        sbx_error_t *err);

/* The served JSON of a stored resource (the ARM envelope).  */
json_t *api_resource_json(const st_resource_t *r);

/* Name rules, exported for tests and the scheduler.  */
bool api_name_valid(const char *name);
bool api_resource_group_valid(const char *rg);

#endif
