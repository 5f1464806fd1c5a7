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
    http_sse_reader_t sse;
    bool ended, client_gone;
} wstream_t;

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

static int dispatch(wstream_t *s, const char *event, const char *data)
{
    _cleanup_json_ json_t *d = json_loads(data, 0, NULL);
    if (!strcmp(event, "fs")) {
        const char *name = json_string_value(json_object_get(d, "name"));
        const char *type = event_type(json_string_value(json_object_get(d, "type")));
        if (name && type)
            return connect_send(
                s->pipe, 0, json_pack("{s:{s:s,s:s}}", "filesystem", "name", name, "type", type));
    } else if (!strcmp(event, "start")) {
        return connect_send(s->pipe, 0, json_pack("{s:{}}", "start"));
    } else if (!strcmp(event, "end")) {
        s->ended = true;
        return connect_send(s->pipe, 2, json_object());
    }
    return 0; /* overflow */
}

static int on_event(void *ud, const char *event, const char *data, size_t len)
{
    (void)len;
    wstream_t *s = ud;
    if (!event) /* the host's keep-alive, passed on */
        return connect_send(s->pipe, 0, json_pack("{s:{}}", "keepalive"));
    return dispatch(s, event, data);
}

static bool on_body(void *ud, const char *p, size_t n)
{
    wstream_t *s = ud;
    if (http_sse_feed(&s->sse, p, n, on_event, s) == 0)
        return true;
    if (!s->sse.overflow)
        s->client_gone = true;
    return false;
}

static void wstream_free(wstream_t *s)
{
    free(s->sandbox);
    free(s->query);
    http_sse_reader_done(&s->sse);
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
        connect_send(s->pipe, 2,
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
    s->sse.max_line = SSE_LINE_MAX;
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
