/* e2b.h -- an E2B-compatible front on sandboxd: E2B's REST API for sandbox
 * lifecycle and its in-sandbox API (envd: Connect-protocol services with
 * JSON, /files, /health, routed by the E2b-Sandbox-Id header), served on a
 * listener of its own so the unmodified E2B SDKs work with E2B_API_URL,
 * E2B_SANDBOX_URL and E2B_API_KEY.
 *
 * It is an adapter over sandboxd's public ARM API, which it calls over HTTP
 * like any client: every E2B sandbox is an ARM sandbox of one configured
 * group, visible and manageable through ARM, and nothing here reaches into
 * the model or the scheduler.  */
#ifndef SBX_E2B_H
#define SBX_E2B_H

#include "common/common.h"
#include "http/http.h"

typedef struct e2b e2b_t;

#define E2B_SECRET_KEY_LEN 32

typedef struct e2b_config {
    /* Base URL of sandboxd's ARM API, e.g. "http://127.0.0.1:8080".  */
    const char *arm_url;
    /* Its bearer token for envd calls (which carry no API key); NULL: none.  */
    const char *arm_token;
    /* The group E2B sandboxes belong to: "SUB/RG/GROUP" or an ARM id; NULL:
     * 00000000-0000-0000-0000-000000000000/e2b/e2b.  */
    const char *group;
    /* "alias=image,alias2=image2": template names for images; "base" (and
     * an empty template) is the default image; a name with '/', ':' or '@'
     * is taken as an image reference.  May be NULL.  */
    const char *templates;
    /* E2B_SECRET_KEY_LEN bytes that derive each sandbox's envd access
     * token; outlives the adapter.  */
    const unsigned char *secret_key;
    /* ARM calls skip certificate checks: arm_url is sandboxd's own HTTPS
     * listener on loopback, whose certificate need not name 127.0.0.1.  */
    bool arm_insecure_tls;
    size_t max_body; /* of requests other than file uploads */
    /* Where the adapter keeps what ARM does not (each sandbox's template
     * and metadata); created when missing.  */
    const char *state_dir;
} e2b_config_t;

e2b_t *e2b_new(const e2b_config_t *cfg, sbx_error_t *err);
/* Stopping: calls to ARM under way (commands) are cut short.  */
void e2b_shutdown_begin(e2b_t *e);
/* Waits for the commands under way (cut short by e2b_shutdown_begin).  */
void e2b_free(e2b_t *e);
/* Answer one request (REST or envd, told apart by path).  */
void e2b_handle(e2b_t *e, const http_request_t *req, http_response_t *res);
/* Largest body for this request: file uploads get E2B_FILES_MAX_BODY.  */
size_t e2b_body_limit(const e2b_t *e, const char *method, const char *path);
/* Whether a request carries credentials (an X-API-Key, or an access token
 * for the sandbox it names); answers are decided by e2b_handle.  */
bool e2b_has_credentials(const e2b_t *e, const http_request_t *req);

#define E2B_FILES_MAX_BODY (64u << 20)

#endif
