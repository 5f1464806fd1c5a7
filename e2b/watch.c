/* watch.c -- filesystem.Filesystem/WatchDir over the ARM API's
 * GET .../sandboxes/{s}/watch: the host's text/event-stream of a
 * directory's changes relayed as Connect messages (start, filesystem
 * events, keepalives).  */
#include <string.h>

#include "e2b/internal.h"

#define PIPE_CAP (64u << 10)
#define SSE_LINE_MAX (64u << 10)

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

static int on_event(e2b_relay_t *s, const char *event, const char *data)
{
    if (!event) /* the host's keep-alive, passed on */
        return connect_send(s->pipe, 0, json_pack("{s:{}}", "keepalive"));
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

void e2b_watch_handle(const envd_ctx_t *c, const http_request_t *req, http_response_t *res)
{
    bool streaming;
    _cleanup_json_ json_t *in = connect_request_json(req, &streaming);
    if (!json_is_object(in) || !streaming || strcmp(req->method, "POST") != 0) {
        e2b_stream_error(res, "invalid_argument", "a streaming JSON request was expected");
        return;
    }
    _cleanup_free_ char *path = envd_path(c, json_string_value(json_object_get(in, "path")));
    if (!path) {
        e2b_stream_error(res, "invalid_argument", "path is required");
        return;
    }
    e2b_relay_t *r = e2b_relay_new(c, PIPE_CAP, NULL);
    _cleanup_free_ char *enc = arm_escape(path);
    r->suffix = xstrdup("/watch");
    r->query = xasprintf("path=%s&recursive=%s", enc,
                         json_is_true(json_object_get(in, "recursive")) ? "true" : "false");
    r->ended_early = "the watch ended early";
    r->max_line = SSE_LINE_MAX;
    r->on_event = on_event;
    /* The start message comes with the host's: a directory that is not
     * there fails the call first, and the stream ends with that error.  */
    e2b_relay_start(r, res);
}
