/* proxy.c -- sandbox actions through the sandbox's host: exec and files
 * pass through (the agent validates and answers; file bodies stream both
 * ways through bounded buffers), suspend, resume, stop and start also
 * record the new state (through the scheduler, which owns agent calls).  */
#include "server/routes.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "scheduler/scheduler.h"

#define EXEC_GRACE_MS 15000

static int sandbox_host(st_db_t *db, const st_resource_t *sb, st_host_t *h, http_response_t *res)
{
    const char *rid = sb->runtime_id;
    json_t *props = json_object_get(sb->body, "properties");
    sbx_state_t state = sbx_body_state(sb->body);
    if (!rid || !sb->host_id || state == SBX_STATE_STARTING || state == SBX_STATE_PENDING) {
        http_reply_error(res, 409, "SandboxNotReady",
                         "The sandbox is still being created; retry when its state is Running.");
        return -1;
    }
    if (state == SBX_STATE_FAILED) {
        const char *why = json_string_value(json_object_get(props, "statusMessage"));
        http_reply_error(res, 409, "SandboxFailed", "The sandbox failed: %s",
                         why && *why ? why : "no detail");
        return -1;
    }
    if (st_host_lookup(db, sb->host_id, h, NULL) <= 0 || strcmp(h->state, "Down") == 0) {
        http_reply_error(res, 503, "HostUnavailable", "The sandbox's host '%s' is not answering.",
                         sb->host_id);
        return -1;
    }
    return 0;
}

static const char *reply_type(const sched_reply_t *r)
{
    const char *ct = r->content_type ? r->content_type : "application/octet-stream";
    return strstr(ct, "json") ? "application/json; charset=utf-8" : "application/octet-stream";
}

/* The agent's reply becomes ours; its failures become ARM errors.  */
static void pass_reply(http_response_t *res, sched_reply_t *r)
{
    if (r->status == 0 && r->shutdown) {
        http_reply_error(res, 503, "ServiceUnavailable",
                         "sandboxd is shutting down; what the sandbox runs goes on. Retry.");
        return;
    }
    if (r->status == 0) {
        http_reply_error(res, 502, "HostCallFailed", "The sandbox's host did not answer: %s",
                         r->error);
        return;
    }
    if (r->status >= 500 || r->status < 200 || (r->status >= 300 && r->status < 400)) {
        http_reply_error(res, 502, "HostCallFailed", "The sandbox's host failed (%ld).", r->status);
        return;
    }
    /* The agent's error codes are stable and shared; its 404 for the
     * sandbox itself means the host lost it.  */
    http_reply_bytes(res, (int)r->status, reply_type(r), TAKE_PTR(r->body), r->body_len);
}

static int exec_timeout_ms(const http_request_t *req)
{
    json_t *j = json_loadb(req->body, req->body_len, 0, NULL);
    json_t *t = json_object_get(j, "timeoutSeconds");
    int secs = json_is_integer(t) && json_integer_value(t) > 0 && json_integer_value(t) <= 3600
                   ? (int)json_integer_value(t)
                   : 30;
    json_decref(j);
    return secs * 1000 + EXEC_GRACE_MS;
}

/* What an event stream's bytes wait in between the agent and the client:
 * the agent's stream is paused while it is full (and the process behind
 * it, once the agent's ring is a whole ring ahead), the client while it is
 * empty; memory stays bounded whatever the client's pace.  */
#define EVENTS_PIPE_CAP (64u << 10)

static bool wants_events(const http_request_t *req)
{
    const char *accept = http_header(req, "Accept");
    return accept && strstr(accept, "text/event-stream");
}

/* A call whose 2xx reply is a stream passed on as it comes: as the
 * response body, or (ws_base set) to the WebSocket the request asked for,
 * whose messages go to the process at ws_base.  */
static void call_streamed(sched_t *s, const st_host_t *h, const sched_stream_call_t *call,
                          const char *ws_base, const http_request_t *req, http_response_t *res)
{
    http_pipe_t *pipe = NULL;
    uint64_t length;
    sched_reply_t r;
    /* An attach that got no answer (a loaded host dropped the connection
     * before reading the request) is tried again: it changes nothing.  */
    for (int attempt = 0;; attempt++) {
        pipe = http_pipe_new(EVENTS_PIPE_CAP);
        sched_call_stream(s, h->url, call, pipe, &length, &r);
        if (r.status != 0 || r.shutdown || call->body || attempt == 2)
            break;
        http_pipe_abandon(pipe);
        sched_reply_done(&r);
        usleep(100000 << attempt);
    }
    if (r.status >= 200 && r.status < 300 && ws_base) {
        routes_ws_offer(s, h->url, ws_base, pipe, req, res);
    } else if (r.status >= 200 && r.status < 300) {
        http_reply_pipe(res, (int)r.status, "text/event-stream", HTTP_SIZE_UNKNOWN, pipe);
        http_add_header(res, "Cache-Control", "no-cache");
        http_add_header(res, "X-Accel-Buffering", "no");
    } else {
        http_pipe_abandon(pipe);
        pass_reply(res, &r);
    }
    sched_reply_done(&r);
}

/* processes[/{pid}[/{action}]]: the segments after "processes" are
 * re-encoded for the agent's URL (they arrive decoded).  */
static void call_processes(sched_t *s, const st_host_t *h, const char *rid, const char *action,
                           const http_request_t *req, http_response_t *res)
{
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/processes", rid);
    const char *rest = action + strlen("processes");
    bool stream = false;
    while (*rest == '/') {
        rest++;
        size_t n = strcspn(rest, "/");
        char *enc = curl_easy_escape(NULL, rest, (int)n);
        char *longer = xasprintf("%s/%s", path, enc ? enc : "");
        stream = n == 6 && strncmp(rest, "stream", 6) == 0 && !rest[n];
        curl_free(enc);
        free(path);
        path = longer;
        rest += n;
    }
    bool ws = stream && http_ws_requested(req);
    if (ws && !http_ws_handshake_ok(req, res))
        return;
    if (stream) {
        const char *offset = http_query(req, "offset");
        const char *last = http_header(req, "Last-Event-ID");
        const char *from = offset ? offset : last;
        char *enc = from ? curl_easy_escape(NULL, from, (int)strlen(from)) : NULL;
        _cleanup_free_ char *query = enc ? xasprintf("offset=%s", enc) : NULL;
        curl_free(enc);
        sched_stream_call_t call = {.method = "GET",
                                    .path = path,
                                    .query = query,
                                    .accept = "text/event-stream",
                                    .events = true};
        _cleanup_free_ char *base = xstrndup(path, strlen(path) - strlen("/stream"));
        return call_streamed(s, h, &call, ws ? base : NULL, req, res);
    }
    bool post = strcmp(req->method, "POST") == 0;
    sched_reply_t r;
    sched_call(s, h->url, req->method, path, NULL, "application/json", post ? req->body : NULL,
               post ? req->body_len : 0, 60000, &r);
    pass_reply(res, &r);
    sched_reply_done(&r);
}

static void call_exec(sched_t *s, const st_host_t *h, const char *rid, const http_request_t *req,
                      http_response_t *res)
{
    if (wants_events(req)) {
        _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/exec", rid);
        sched_stream_call_t call = {.method = "POST",
                                    .path = path,
                                    .accept = "text/event-stream",
                                    .body = req->body,
                                    .body_len = req->body_len,
                                    .events = true};
        return call_streamed(s, h, &call, NULL, req, res);
    }
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/exec", rid);
    sched_reply_t r;
    sched_call(s, h->url, "POST", path, NULL, "application/json", req->body, req->body_len,
               exec_timeout_ms(req), &r);
    pass_reply(res, &r);
    sched_reply_done(&r);
}

/* What a file download's bytes wait in between the agent and the client:
 * the agent is paused while it is full, the client while it is empty.  */
#define FILES_PIPE_CAP (256u << 10)

static void files_download(sched_t *s, const st_host_t *h, const char *path, const char *query,
                           http_response_t *res)
{
    http_pipe_t *pipe = http_pipe_new(FILES_PIPE_CAP);
    uint64_t length;
    sched_reply_t r;
    sched_call_download(s, h->url, path, query, pipe, &length, &r);
    if (r.status >= 200 && r.status < 300)
        http_reply_pipe(res, (int)r.status, reply_type(&r), length, pipe);
    else {
        http_pipe_abandon(pipe);
        pass_reply(res, &r);
    }
    sched_reply_done(&r);
}

static void files_upload(sched_t *s, const st_host_t *h, const char *path, const char *query,
                         const http_request_t *req, http_response_t *res)
{
    uint64_t size = http_body_size(req);
    /* From the first read on, req's headers and query are off limits: the
     * client may be gone.  */
    sched_reply_t r;
    int read_errno = 0;
    sched_call_upload(s, h->url, "PUT", path, query, size, http_body_reader, (void *)req,
                      &read_errno, &r);
    if (read_errno == EFBIG)
        http_reply_error(res, 413, "RequestEntityTooLarge",
                         "The request body is larger than allowed.");
    else
        pass_reply(res, &r);
    sched_reply_done(&r);
}

static void call_files(sched_t *s, const st_host_t *h, const char *rid, const http_request_t *req,
                       http_response_t *res)
{
    const char *p = http_query(req, "path");
    const char *list = http_query(req, "list");
    if (!p) {
        http_reply_error(res, 400, "InvalidPath", "The 'path' query parameter is required.");
        return;
    }
    char *enc = curl_easy_escape(NULL, p, (int)strlen(p));
    char *enc_list = list ? curl_easy_escape(NULL, list, (int)strlen(list)) : NULL;
    _cleanup_free_ char *query = enc_list ? xasprintf("path=%s&list=%s", enc, enc_list)
                                          : xasprintf("path=%s", enc ? enc : "");
    curl_free(enc);
    curl_free(enc_list);
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/files", rid);
    if (strcmp(req->method, "GET") == 0)
        return files_download(s, h, path, query, res);
    if (strcmp(req->method, "PUT") == 0)
        return files_upload(s, h, path, query, req, res);
    sched_reply_t r;
    sched_call(s, h->url, req->method, path, query, "application/octet-stream", NULL, 0, 120000,
               &r);
    pass_reply(res, &r);
    sched_reply_done(&r);
}

static void call_lifecycle(sched_t *s, st_db_t *db, const st_host_t *h, const st_resource_t *sb,
                           const char *action, http_response_t *res)
{
    sched_reply_t r;
    sbx_error_t err = {0};
    st_resource_t now = {0};
    int found = 1;
    if (sched_sandbox_lifecycle(s, h->url, sb, action, &r, &err) < 0 ||
        (r.status == 200 && (found = st_resource_lookup(db, sb->id, &now, &err)) <= 0)) {
        if (!found)
            sbx_error_arm(&err, SBX_ERR_NOT_FOUND, "ResourceNotFound",
                          "The resource '%s' was not found.", sb->id);
        http_reply_sbx_error(res, &err);
    } else if (r.status != 200) {
        pass_reply(res, &r);
    } else {
        http_add_header(res, "ETag", "%s", now.etag);
        http_reply_json(res, 200, api_resource_json(&now));
    }
    st_resource_done(&now);
    sched_reply_done(&r);
}

/* A directory's changes, streamed from the host as it sends them.  */
static void call_watch(sched_t *s, const st_host_t *h, const char *rid, const http_request_t *req,
                       http_response_t *res)
{
    const char *p = http_query(req, "path"), *rec = http_query(req, "recursive");
    if (!p || !*p) {
        http_reply_error(res, 400, "InvalidPath", "?path= names no directory.");
        return;
    }
    char *enc = curl_easy_escape(NULL, p, (int)strlen(p));
    _cleanup_free_ char *query = xasprintf("path=%s&recursive=%s", enc ? enc : "",
                                           rec && !strcmp(rec, "true") ? "true" : "false");
    curl_free(enc);
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/watch", rid);
    sched_stream_call_t call = {.method = "GET",
                                .path = path,
                                .query = query,
                                .accept = "text/event-stream",
                                .events = true};
    call_streamed(s, h, &call, NULL, req, res);
}

/* A non-negative integer member of an agent's reply, else 0.  */
static json_int_t agent_count(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

/* What the sandbox uses now, from its host's report of it: CPU time so far
 * (a client takes two readings for a rate), memory charged to its cgroup,
 * and its writable layer.  */
static void call_metrics(sched_t *s, const st_host_t *h, const st_resource_t *sb,
                         http_response_t *res)
{
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", sb->runtime_id);
    sched_reply_t r;
    sched_call(s, h->url, "GET", path, NULL, NULL, NULL, 0, 10000, &r);
    _cleanup_json_ json_t *j = r.status == 200 ? sched_reply_json(&r) : NULL;
    if (!j) {
        pass_reply(res, &r);
        sched_reply_done(&r);
        return;
    }
    sched_reply_done(&r);
    json_t *u = json_object_get(j, "usage");
    json_t *cpu = json_object_get(j, "cpu");
    json_int_t mib = agent_count(j, "memoryMiB");
    char now[40];
    sbx_time_format(sbx_now_ms(), now, sizeof(now));
    json_t *out = json_pack(
        "{s:s,s:f,s:I,s:I,s:I,s:I,s:I}", "timestamp", now, "cpu",
        json_is_number(cpu) && json_number_value(cpu) > 0 ? json_number_value(cpu) : 0.0,
        "cpuUsedMicroseconds", agent_count(u, "cpuMicroseconds"), "memoryUsedBytes",
        agent_count(u, "memoryBytes"), "memoryLimitBytes", mib < (1LL << 40) ? mib << 20 : 0,
        "diskUsedBytes", agent_count(u, "diskUsedBytes"), "diskLimitBytes",
        agent_count(u, "diskTotalBytes"));
    http_reply_json(res, 200, out);
}

/* The host keeps the decision log; it is passed on as it is.  */
static void call_decisions(sched_t *s, const st_host_t *h, const char *rid, http_response_t *res)
{
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/egressDecisions", rid);
    sched_reply_t r;
    sched_call(s, h->url, "GET", path, NULL, NULL, NULL, 0, 10000, &r);
    pass_reply(res, &r);
    sched_reply_done(&r);
}

void routes_proxy_call(sched_t *s, st_db_t *db, const st_resource_t *sb, const char *action,
                       const http_request_t *req, http_response_t *res)
{
    if (sbx_body_provisioning(sb->body) == SBX_PROV_DELETING) {
        http_reply_error(res, 409, "SandboxDeleting", "The sandbox is being deleted.");
        return;
    }
    st_host_t h = {0};
    if (sandbox_host(db, sb, &h, res) < 0)
        return;
    const char *rid = sb->runtime_id;
    if (strcmp(action, "exec") == 0)
        call_exec(s, &h, rid, req, res);
    else if (strncmp(action, "processes", 9) == 0)
        call_processes(s, &h, rid, action, req, res);
    else if (strcmp(action, "files") == 0)
        call_files(s, &h, rid, req, res);
    else if (strcmp(action, "egressDecisions") == 0)
        call_decisions(s, &h, rid, res);
    else if (strcmp(action, "metrics") == 0)
        call_metrics(s, &h, sb, res);
    else if (strcmp(action, "watch") == 0)
        call_watch(s, &h, rid, req, res);
    else
        call_lifecycle(s, db, &h, sb, action, res);
    st_host_done(&h);
}
