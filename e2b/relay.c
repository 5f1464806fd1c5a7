/* relay.c -- one thread per streamed envd call that reads the host's
 * text/event-stream through the ARM API and writes Connect messages to
 * the client; what each event becomes is the caller's.  */
#include <pthread.h>
#include <string.h>

#include "e2b/internal.h"

void e2b_stream_error(http_response_t *res, const char *code, const char *msg)
{
    json_t *m = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    size_t n;
    char *env = connect_envelope(2, m, &n);
    json_decref(m);
    http_reply_bytes(res, 200, "application/connect+json", env, n);
}

e2b_relay_t *e2b_relay_new(const envd_ctx_t *c, size_t pipe_cap, json_t *first)
{
    e2b_relay_t *r = xcalloc(1, sizeof(*r));
    r->e = c->e;
    r->sandbox = xstrdup(c->sandbox);
    r->pipe = http_pipe_new(pipe_cap);
    if (first)
        connect_send(r->pipe, 0, first);
    return r;
}

static void relay_free(e2b_relay_t *r)
{
    free(r->sandbox);
    free(r->suffix);
    free(r->query);
    http_sse_reader_done(&r->sse);
    free(r);
}

static int on_event(void *ud, const char *event, const char *data, size_t len)
{
    (void)len;
    e2b_relay_t *r = ud;
    return r->on_event(r, event, data);
}

static bool on_body(void *ud, const char *p, size_t n)
{
    e2b_relay_t *r = ud;
    if (http_sse_feed(&r->sse, p, n, on_event, r) == 0)
        return true;
    if (!r->sse.overflow)
        r->client_gone = true;
    return false;
}

static void *relay_main(void *ud)
{
    e2b_relay_t *r = ud;
    e2b_t *e = r->e;
    arm_req_t rq = {.method = "GET",
                    .sandbox = r->sandbox,
                    .suffix = r->suffix,
                    .query = r->query,
                    .bearer = e->arm_token,
                    .timeout_ms = -1,
                    .on_body = on_body,
                    .tick_ud = r};
    arm_reply_t rep;
    arm_call(e, &rq, &rep);
    if (!r->ended && !r->client_gone) {
        char msg[400];
        arm_reply_message(&rep, msg, sizeof(msg));
        connect_send(r->pipe, 2,
                     json_pack("{s:{s:s,s:s}}", "error", "code",
                               rep.status == 200 ? "unavailable" : connect_code_for(&rep),
                               "message", rep.status == 200 ? r->ended_early : msg));
    }
    arm_reply_done(&rep);
    http_pipe_close(r->pipe, !r->client_gone);
    relay_free(r);
    e2b_thread_leave(e);
    return NULL;
}

void e2b_relay_start(e2b_relay_t *r, http_response_t *res)
{
    r->sse.max_line = r->max_line;
    http_pipe_t *mine = r->pipe;
    e2b_t *e = r->e;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    e2b_thread_enter(e);
    int rc = pthread_create(&th, &attr, relay_main, r);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        e2b_thread_leave(e);
        http_pipe_close(r->pipe, false);
        http_pipe_abandon(mine);
        relay_free(r);
        e2b_stream_error(res, "resource_exhausted", "no thread for the stream");
        return;
    }
    http_reply_pipe(res, 200, "application/connect+json", HTTP_SIZE_UNKNOWN, mine);
}
