/* ws_proxy.c -- a process's stream as a WebSocket: sandboxd ends the
 * WebSocket itself and drives the host's event stream (turned into
 * frames) and its stdin, resize and signal calls (made from the client's
 * messages), so the agent speaks only plain HTTP.
 *
 * To the client: binary frames of one stream tag byte (1 stdout, 2 stderr,
 * 3 pty) and the bytes; text frames of JSON {"type":"start"|"gap"|"exit"|
 * "error", ...}; after exit a close with 1000.  From the client: binary
 * frames are stdin; text frames are JSON {"type":"stdin","data"|
 * "dataBase64"}, {"type":"eof"}, {"type":"resize","rows","cols"},
 * {"type":"signal","signal"}.  A refused message gets an "error" frame and
 * the session goes on; a client that breaks the protocol gets a close
 * frame; a client that leaves leaves the process running.  */
#include "server/routes.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* A ping after this long without a frame from the client, and the end
 * after this long (it did not answer).  */
#define PING_MS 20000
#define DEAD_MS 60000
/* How long the client has to answer our close.  */
#define CLOSE_WAIT_MS 5000
/* Largest event line from the host (48 KiB of output is 64 KiB base64).  */
#define MAX_EVENT (256u << 10)
#define HOST_CALL_MS 20000

enum { TAG_STDOUT = 1, TAG_STDERR = 2, TAG_PTY = 3 };

typedef struct ws_proxy {
    sched_t *s;
    char *host_url;
    char *base; /* the host's /v1/sandboxes/{id}/processes/{pid} */
    http_pipe_t *pipe;
    http_ws_t *ws;
    atomic_bool stop, out_done;
    atomic_llong out_done_ms;
    http_sse_reader_t sse; /* the host's events (output thread only) */
} ws_proxy_t;

static void proxy_free(void *ud)
{
    ws_proxy_t *w = ud;
    if (!w)
        return;
    if (w->pipe)
        http_pipe_abandon(w->pipe);
    free(w->host_url);
    free(w->base);
    http_sse_reader_done(&w->sse);
    free(w);
}

/* ---- host to client ---- */

static int send_json(http_ws_t *ws, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return 0;
    int rc = http_ws_send(ws, HTTP_WS_TEXT, text, strlen(text), NULL, 0);
    free(text);
    return rc;
}

static void out_finish(ws_proxy_t *w, unsigned code, const char *why)
{
    http_ws_close(w->ws, code, why);
    atomic_store(&w->out_done_ms, sbx_monotonic_ms());
    atomic_store(&w->out_done, true);
}

/* One whole event from the host: 0 to go on, 1 after the exit, -1 when
 * the client cannot take more.  */
static int dispatch(void *ud, const char *t, const char *data, size_t len)
{
    ws_proxy_t *w = ud;
    if (!t)
        return 0; /* the host's keep-alive: the client gets pings instead */
    _cleanup_json_ json_t *j = json_loadb(data, len, 0, NULL);
    int tag = !strcmp(t, "stdout")   ? TAG_STDOUT
              : !strcmp(t, "stderr") ? TAG_STDERR
              : !strcmp(t, "pty")    ? TAG_PTY
                                     : 0;
    if (!json_is_object(j))
        return 0;
    if (tag) {
        json_t *d = json_object_get(j, "data");
        if (!json_is_string(d))
            return 0;
        size_t k = 0;
        _cleanup_free_ char *bytes =
            sbx_base64_decode(json_string_value(d), json_string_length(d), SIZE_MAX, &k);
        unsigned char b = (unsigned char)tag;
        return !bytes ? 0 : http_ws_send(w->ws, HTTP_WS_BINARY, &b, 1, bytes, k);
    }
    if (strcmp(t, "start") && strcmp(t, "gap") && strcmp(t, "exit"))
        return 0;
    json_t *e = json_deep_copy(j);
    json_object_set_new(e, "type", json_string(t));
    if (send_json(w->ws, e) < 0)
        return -1;
    if (strcmp(t, "exit") != 0)
        return 0;
    out_finish(w, 1000, "process exited");
    return 1;
}

static int feed(ws_proxy_t *w, const char *buf, size_t n)
{
    int rc = http_sse_feed(&w->sse, buf, n, dispatch, w);
    if (rc < 0 && w->sse.overflow)
        out_finish(w, 1011, "the host sent an event too large");
    return rc;
}

static void *out_main(void *arg)
{
    ws_proxy_t *w = arg;
    char *buf = xmalloc(64u << 10);
    while (!atomic_load(&w->stop)) {
        ssize_t k = http_pipe_read(w->pipe, buf, 64u << 10, 500);
        if (k < 0) {
            out_finish(w, errno ? 1011 : 1000,
                       errno ? "the host's stream ended" : "the stream ended");
            break;
        }
        if (k > 0 && feed(w, buf, (size_t)k) != 0)
            break;
    }
    free(buf);
    return NULL;
}

/* ---- client to host ---- */

static void send_error(ws_proxy_t *w, long status, json_t *error)
{
    send_json(w->ws,
              json_pack("{s:s,s:i,s:o}", "type", "error", "status", (int)status, "error", error));
}

static void send_invalid(ws_proxy_t *w, const char *msg)
{
    send_error(w, 400, json_pack("{s:s,s:s}", "code", "InvalidMessage", "message", msg));
}

/* POST body to the host's .../{what}; a refusal is told to the client.  */
static void host_call(ws_proxy_t *w, const char *what, json_t *body)
{
    _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    _cleanup_free_ char *path = xasprintf("%s/%s", w->base, what);
    sched_reply_t r;
    sched_call(w->s, w->host_url, "POST", path, NULL, "application/json", text,
               text ? strlen(text) : 0, HOST_CALL_MS, &r);
    if (r.status >= 200 && r.status < 300) {
        sched_reply_done(&r);
        return;
    }
    json_t *j = r.status >= 400 && r.status < 500 ? sched_reply_json(&r) : NULL;
    json_t *e = json_object_get(j, "error");
    if (json_is_object(e))
        send_error(w, r.status, json_incref(e));
    else
        send_error(w, 502,
                   json_pack("{s:s,s:s}", "code", "HostCallFailed", "message",
                             r.status ? "the sandbox's host failed" : "no answer from the host"));
    json_decref(j);
    sched_reply_done(&r);
}

static void on_text(ws_proxy_t *w, const char *d, size_t n)
{
    _cleanup_json_ json_t *j = json_loadb(d, n, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !type)
        return send_invalid(w, "a text message is a JSON object with a \"type\"");
    if (!strcmp(type, "stdin")) {
        json_t *b = json_object();
        const char *keys[] = {"data", "dataBase64", "eof"};
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
            if (json_object_get(j, keys[i]))
                json_object_set(b, keys[i], json_object_get(j, keys[i]));
        return host_call(w, "stdin", b);
    }
    if (!strcmp(type, "eof"))
        return host_call(w, "stdin", json_pack("{s:b}", "eof", 1));
    if (!strcmp(type, "resize"))
        return host_call(w, "resize",
                         json_pack("{s:O*,s:O*}", "rows", json_object_get(j, "rows"), "cols",
                                   json_object_get(j, "cols")));
    if (!strcmp(type, "signal"))
        return host_call(w, "signal", json_pack("{s:O*}", "signal", json_object_get(j, "signal")));
    send_invalid(w, "type must be stdin, eof, resize or signal");
}

static void on_binary(ws_proxy_t *w, const char *d, size_t n)
{
    if (n == 0)
        return;
    char *b64 = sbx_base64_encode(d, n);
    host_call(w, "stdin", json_pack("{s:s%}", "dataBase64", b64, strlen(b64)));
    free(b64);
}

/* The client's side, until it closes or leaves, or does not answer pings,
 * or does not answer our close.  */
static void input_loop(ws_proxy_t *w)
{
    int64_t last_ping = 0;
    for (;;) {
        const char *d;
        size_t n;
        int op = http_ws_recv(w->ws, &d, &n, 1000);
        if (op < 0)
            return;
        int64_t now = sbx_monotonic_ms();
        if (atomic_load(&w->out_done)) {
            if (now - atomic_load(&w->out_done_ms) > CLOSE_WAIT_MS)
                return;
            continue; /* after our close, the client's messages are dropped */
        }
        if (op == HTTP_WS_TEXT)
            on_text(w, d, n);
        else if (op == HTTP_WS_BINARY)
            on_binary(w, d, n);
        int64_t quiet = now - http_ws_last_heard_ms(w->ws);
        if (quiet >= DEAD_MS) {
            http_ws_close(w->ws, 1001, "no answer to pings");
            return;
        }
        if (quiet >= PING_MS && now - last_ping >= PING_MS) {
            last_ping = now;
            (void)http_ws_send(w->ws, HTTP_WS_PING, "sbx", 3, NULL, 0);
        }
    }
}

static void session(void *ud, http_ws_t *ws)
{
    ws_proxy_t *w = ud;
    w->ws = ws;
    pthread_t t;
    if (pthread_create(&t, NULL, out_main, w) != 0) {
        http_ws_close(ws, 1011, "cannot stream now");
        return proxy_free(w);
    }
    input_loop(w);
    /* The process goes on whatever happened here.  */
    atomic_store(&w->stop, true);
    http_ws_cut(ws);
    pthread_join(t, NULL);
    proxy_free(w);
}

void routes_ws_offer(sched_t *s, const char *host_url, const char *base, http_pipe_t *pipe,
                     const http_request_t *req, http_response_t *res)
{
    ws_proxy_t *w = xcalloc(1, sizeof(*w));
    w->sse.max_line = MAX_EVENT;
    w->s = s;
    w->host_url = xstrdup(host_url);
    w->base = xstrdup(base);
    w->pipe = pipe;
    http_reply_websocket(req, res, session, proxy_free, w);
}
