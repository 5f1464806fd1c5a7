/* watch.c -- filesystem.Filesystem/WatchDir over the ARM API's
 * GET .../sandboxes/{s}/watch: the host's text/event-stream of a
 * directory's changes relayed as Connect messages (start, filesystem
 * events, keepalives).  */
#include <string.h>

#include "e2b/internal.h"

#define PIPE_CAP (64u << 10)
#define SSE_LINE_MAX (64u << 10)

typedef struct wstream {
    e2b_t *e;
    char *sandbox, *query;
    http_pipe_t *pipe;
    char *line;
    size_t len, cap;
    char event[32];
    char *data;
    bool ended, client_gone;
} wstream_t;

static int send_msg(http_pipe_t *pipe, unsigned flags, json_t *msg)
{
    size_t n;
    _cleanup_free_ char *env = connect_envelope(flags, msg, &n);
    json_decref(msg);
    return http_pipe_write(pipe, env, n);
}

static void stream_error(http_response_t *res, const char *code, const char *msg)
{
    json_t *m = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    size_t n;
    char *env = connect_envelope(2, m, &n);
    json_decref(m);
    http_reply_bytes(res, 200, "application/connect+json", env, n);
}

/* envd's EventType for the host's type.  */
static const char *event_type(const char *t)
{
    static const char *const map[][2] = {{"create", "EVENT_TYPE_CREATE"},
                                         {"write", "EVENT_TYPE_WRITE"},
                                         {"remove", "EVENT_TYPE_REMOVE"},
                                         {"rename", "EVENT_TYPE_RENAME"},
                                         {"chmod", "EVENT_TYPE_CHMOD"}};
    for (size_t i = 0; t && i < ARRAY_SIZE(map); i++)
        if (strcmp(t, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static int dispatch(wstream_t *s)
{
    _cleanup_json_ json_t *d = s->data ? json_loads(s->data, 0, NULL) : NULL;
    if (!strcmp(s->event, "fs")) {
        const char *name = json_string_value(json_object_get(d, "name"));
        const char *type = event_type(json_string_value(json_object_get(d, "type")));
        if (name && type)
            return send_msg(s->pipe, 0,
                            json_pack("{s:{s:s,s:s}}", "filesystem", "name", name, "type", type));
    } else if (!strcmp(s->event, "start")) {
        return send_msg(s->pipe, 0, json_pack("{s:{}}", "start"));
    } else if (!strcmp(s->event, "end")) {
        s->ended = true;
        return send_msg(s->pipe, 2, json_object());
    }
    return 0; /* overflow */
}

static int sse_line(wstream_t *s, const char *line)
{
    if (!*line) {
        int rc = s->event[0] ? dispatch(s) : 0;
        s->event[0] = '\0';
        free(s->data);
        s->data = NULL;
        return rc;
    }
    if (line[0] == ':')
        return send_msg(s->pipe, 0, json_pack("{s:{}}", "keepalive"));
    if (!strncmp(line, "event: ", 7))
        snprintf(s->event, sizeof(s->event), "%s", line + 7);
    else if (!strncmp(line, "data: ", 6)) {
        free(s->data);
        s->data = xstrdup(line + 6);
    }
    return 0;
}

static bool on_body(void *ud, const char *p, size_t n)
{
    wstream_t *s = ud;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r')
            continue;
        if (p[i] != '\n') {
            if (s->len + 2 > s->cap) {
                if (s->cap >= SSE_LINE_MAX)
                    return false;
                s->cap = s->cap ? s->cap * 2 : 1024;
                s->line = xrealloc(s->line, s->cap);
            }
            s->line[s->len++] = p[i];
            continue;
        }
        if (s->line)
            s->line[s->len] = '\0';
        s->len = 0;
        if (sse_line(s, s->line ? s->line : "") < 0) {
            s->client_gone = true;
            return false;
        }
    }
    return true;
}

static void wstream_free(wstream_t *s)
{
    free(s->sandbox);
    free(s->query);
    free(s->line);
    free(s->data);
    free(s);
}

static void *stream_main(void *ud)
{
    wstream_t *s = ud;
    e2b_t *e = s->e;
    arm_req_t rq = {.method = "GET",
                    .sandbox = s->sandbox,
                    .suffix = "/watch",
                    .query = s->query,
                    .bearer = e->arm_token,
                    .timeout_ms = -1,
                    .on_body = on_body,
                    .tick_ud = s};
    arm_reply_t r;
    arm_call(e, &rq, &r);
    if (!s->ended && !s->client_gone) {
        char msg[400];
        arm_reply_message(&r, msg, sizeof(msg));
        send_msg(s->pipe, 2,
                 json_pack("{s:{s:s,s:s}}", "error", "code",
                           r.status == 200 ? "unavailable" : connect_code_for(&r), "message",
                           r.status == 200 ? "the watch ended early" : msg));
    }
    arm_reply_done(&r);
    http_pipe_close(s->pipe, !s->client_gone);
    wstream_free(s);
    e2b_thread_leave(e);
    return NULL;
}

void e2b_watch_handle(const envd_ctx_t *c, const http_request_t *req, http_response_t *res)
{
    bool streaming;
    _cleanup_json_ json_t *in = connect_request_json(req, &streaming);
    if (!json_is_object(in) || !streaming || strcmp(req->method, "POST") != 0) {
        stream_error(res, "invalid_argument", "a streaming JSON request was expected");
        return;
    }
    _cleanup_free_ char *path = envd_path(c, json_string_value(json_object_get(in, "path")));
    if (!path) {
        stream_error(res, "invalid_argument", "path is required");
        return;
    }
    wstream_t *s = xcalloc(1, sizeof(*s));
    s->e = c->e;
    s->sandbox = xstrdup(c->sandbox);
    _cleanup_free_ char *enc = arm_escape(path);
    s->query = xasprintf("path=%s&recursive=%s", enc,
                         json_is_true(json_object_get(in, "recursive")) ? "true" : "false");
    s->pipe = http_pipe_new(PIPE_CAP);
    http_pipe_t *mine = s->pipe;
    /* The start message comes with the host's: a directory that is not
     * there fails the call first, and the stream ends with that error.  */
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    e2b_thread_enter(c->e);
    int rc = pthread_create(&th, &attr, stream_main, s);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        e2b_thread_leave(c->e);
        http_pipe_close(s->pipe, false);
        http_pipe_abandon(mine);
        wstream_free(s);
        stream_error(res, "resource_exhausted", "no thread for the watch");
        return;
    }
    http_reply_pipe(res, 200, "application/connect+json", HTTP_SIZE_UNKNOWN, mine);
}
