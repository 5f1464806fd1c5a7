/* routes.h -- the route table in front of the modules: public documents,
 * the host admin API, and the authenticated ARM API.  */
#ifndef SBX_SERVER_ROUTES_H
#define SBX_SERVER_ROUTES_H

#include "http/http.h"
#include "scheduler/scheduler.h"
#include "server/server.h"
#include "storage/storage.h"

typedef struct routes routes_t;

typedef struct routes_config {
    const sbx_config_t *cfg;
    const char *auth_token; /* --auth-token: a fixed token (NULL: JWTs only) */
    const char *admin_token;
    const char *openapi_json;
    const unsigned char *secret_key; /* API_SECRET_KEY_LEN bytes; outlives the routes */
} routes_config_t;

routes_t *routes_new(const routes_config_t *rc, st_db_t *db, sbx_error_t *err);
/* Start background work (the scheduler and the local agent).  */
int routes_start_background(routes_t *r, sbx_error_t *err);
/* Shutdown begins: calls to hosts still running grace_ms from now are cut
 * off (their clients get 503), so the stop that follows never waits on a
 * sandbox.  */
void routes_shutdown_begin(routes_t *r, int grace_ms);
void routes_free(routes_t *r);
/* Whether path names a sandbox's files (ends in /files).  */
bool routes_is_files_path(const char *path);
/* Whether path names a sandbox's processes (a GET of which waits on the
 * sandbox's host, and may stream for long).  */
bool routes_is_processes_path(const char *path);
void routes_handle(routes_t *r, const http_request_t *req, http_response_t *res);
/* Whether the request carries a token that would be accepted.  */
bool routes_authenticated(const routes_t *r, const http_request_t *req);
/* Who the request comes from (issuer and subject of its token), for
 * admission counts; false when it carries no accepted token.  */
bool routes_client_key(const routes_t *r, const http_request_t *req, char *key, size_t size);
size_t routes_body_limit(const routes_t *r, const char *method, const char *path);

/* The host admin API under /admin/hosts (admin.c); the caller checked the
 * admin token.  */
void routes_admin_hosts(sched_t *s, st_db_t *db, const http_request_t *req, http_response_t *res);
/* GET /admin/execAdmission: the exec admission counts (admin.c).  */
void routes_admin_exec_admission(const http_request_t *req, http_response_t *res);
/* A sandbox action through its host (proxy.c): "exec", "files", "suspend",
 * "resume", "stop", "start".  Fills res with the ARM reply.  */
void routes_proxy_call(sched_t *s, st_db_t *db, const st_resource_t *sandbox, const char *action,
                       const http_request_t *req, http_response_t *res);

/* Answer a process stream's WebSocket handshake (ws_proxy.c): the host's
 * event stream already flows into pipe (taken); base is the host's path of
 * the process, for its stdin, resize and signal calls.  */
void routes_ws_offer(sched_t *s, const char *host_url, const char *base, http_pipe_t *pipe,
                     const http_request_t *req, http_response_t *res);

int sbx_token_file(const char *dir, const char *name, char **out, sbx_error_t *err);

#endif
