/* process.c -- the process.Process Connect service over the ARM API's
 * process routes (POST .../processes, .../processes/{p}/stream|stdin|signal|
 * resize): output streams as the command produces it, with stdin and
 * terminals.  */
#include <openssl/evp.h>
#include <string.h>

#include "e2b/internal.h"

#define PIPE_CAP (256u << 10)
#define SSE_LINE_MAX (4u << 20)

/* ---- Connect framing ---- */

static int send_event(http_pipe_t *pipe, json_t *event)
{
    return connect_send(pipe, 0, json_pack("{s:o}", "event", event));
}

/* ---- ARM calls ---- */

static void proc_call(const envd_ctx_t *c, const char *method, const char *suffix,
                      const json_t *body, arm_reply_t *r)
{
    _cleanup_free_ char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
    arm_req_t rq = {.method = method,
                    .sandbox = c->sandbox,
                    .suffix = suffix,
                    .bearer = c->e->arm_token,
                    .body = js,
                    .len = js ? strlen(js) : 0};
    arm_call(c->e, &rq, r);
}

/* The {processId} of a selector: its pid, else its tag; NULL for neither. */
static char *selector(const json_t *in)
{
    json_t *sel = json_object_get(in, "process");
    json_t *pid = json_object_get(sel, "pid");
    const char *tag = json_string_value(json_object_get(sel, "tag"));
    if (json_is_integer(pid) && json_integer_value(pid) > 0)
        return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(pid));
    if (tag && *tag && !strpbrk(tag, "/?#%"))
        return arm_escape(tag);
    return NULL;
}

/* ---- the event stream ---- */

static json_t *end_event(const json_t *exit)
{
    json_int_t code = json_integer_value(json_object_get(exit, "exitCode"));
    json_t *sig = json_object_get(exit, "signal");
    char status[64];
    if (json_is_integer(sig))
        snprintf(status, sizeof(status), "signal: %s",
                 json_integer_value(sig) == 9 ? "killed" : "terminated");
    else
        snprintf(status, sizeof(status), "exit status %d", (int)code);
    return json_pack("{s:{s:I,s:b,s:s}}", "end", "exitCode", code, "exited", !json_is_integer(sig),
                     "status", status);
}

/* One whole SSE event.  */
static int on_event(e2b_relay_t *s, const char *event, const char *data)
{
    if (!event) /* the host's keep-alive, passed on */
        return send_event(s->pipe, json_pack("{s:{}}", "keepalive"));
    _cleanup_json_ json_t *d = json_loads(data, 0, NULL);
    const char *ev = event;
    if (!strcmp(ev, "stdout") || !strcmp(ev, "stderr") || !strcmp(ev, "pty")) {
        const char *b64 = json_string_value(json_object_get(d, "data"));
        if (b64 && *b64)
            return send_event(s->pipe, json_pack("{s:{s:s}}", "data", ev, b64));
    } else if (!strcmp(ev, "exit")) {
        s->ended = true;
        if (json_is_true(json_object_get(d, "timedOut")))
            return connect_send(s->pipe, 2,
                                json_pack("{s:{s:s,s:s}}", "error", "code", "deadline_exceeded",
                                          "message", "the command ran past its timeout"));
        if (send_event(s->pipe, end_event(d)) < 0)
            return -1;
        return connect_send(s->pipe, 2, json_object());
    }
    return 0; /* start (already sent), gap */
}

/* Answer with the start event and the process's stream from then on.  */
static void stream_reply(const envd_ctx_t *c, const char *id, json_int_t pid, http_response_t *res)
{
    e2b_relay_t *r =
        e2b_relay_new(c, PIPE_CAP, json_pack("{s:{s:{s:I}}}", "event", "start", "pid", pid));
    r->suffix = xasprintf("/processes/%s/stream", id);
    r->ended_early = "the process's output stream ended early";
    r->max_line = SSE_LINE_MAX;
    r->on_event = on_event;
    e2b_relay_start(r, res);
}

/* ---- the calls ---- */

static int timeout_s(const http_request_t *req)
{
    const char *h = http_header(req, "Connect-Timeout-Ms");
    long ms = h ? strtol(h, NULL, 10) : 0;
    return ms <= 0 ? 0 : ms / 1000 + 1 > 86400 ? 86400 : (int)(ms / 1000 + 1);
}

static json_t *start_body(const envd_ctx_t *c, const http_request_t *req, const json_t *in)
{
    json_t *proc = json_object_get(in, "process");
    json_t *argv = json_pack("[s]", json_string_value(json_object_get(proc, "cmd")));
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(proc, "args"), i, a)
    {
        if (json_is_string(a))
            json_array_append(argv, a);
    }
    json_t *env = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(proc, "envs"), k, v)
    {
        if (json_is_string(v))
            json_object_set(env, k, v);
    }
    const char *cwd = json_string_value(json_object_get(proc, "cwd"));
    _cleanup_free_ char *dir = envd_path(c, cwd && *cwd ? cwd : c->home);
    json_t *b = json_pack("{s:o,s:o,s:s,s:b}", "command", argv, "env", env, "cwd", dir ? dir : "/",
                          "stdin", json_is_true(json_object_get(in, "stdin")));
    if (c->user[0])
        json_object_set_new(b, "user", json_string(c->user));
    const char *tag = json_string_value(json_object_get(in, "tag"));
    if (tag)
        json_object_set_new(b, "tag", json_string(tag));
    json_t *size = json_object_get(json_object_get(in, "pty"), "size");
    if (json_object_get(in, "pty"))
        json_object_set_new(
            b, "pty",
            json_pack("{s:I,s:I}", "rows", json_integer_value(json_object_get(size, "rows")) ?: 24,
                      "cols", json_integer_value(json_object_get(size, "cols")) ?: 80));
    int t = timeout_s(req);
    if (t > 0)
        json_object_set_new(b, "timeoutSeconds", json_integer(t));
    return b;
}

static void fail(http_response_t *res, bool streaming, arm_reply_t *r)
{
    char msg[400];
    arm_reply_message(r, msg, sizeof(msg));
    if (streaming)
        e2b_stream_error(res, connect_code_for(r), msg);
    else
        connect_reply_error(res, connect_code_for(r), "%s", msg);
}

static void start(const envd_ctx_t *c, const http_request_t *req, const json_t *in,
                  http_response_t *res)
{
    const char *cmd = json_string_value(json_object_get(json_object_get(in, "process"), "cmd"));
    if (!cmd || !*cmd) {
        e2b_stream_error(res, "invalid_argument", "process.cmd is required");
        return;
    }
    _cleanup_json_ json_t *body = start_body(c, req, in);
    arm_reply_t r;
    proc_call(c, "POST", "/processes", body, &r);
    _cleanup_json_ json_t *p = r.status == 201 || r.status == 200 ? arm_reply_json(&r) : NULL;
    json_int_t pid = json_integer_value(json_object_get(p, "pid"));
    if (pid <= 0)
        fail(res, true, &r);
    else {
        char id[32];
        snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, pid);
        stream_reply(c, id, pid, res);
    }
    arm_reply_done(&r);
}

static void connect_proc(const envd_ctx_t *c, const json_t *in, http_response_t *res)
{
    _cleanup_free_ char *id = selector(in);
    if (!id) {
        e2b_stream_error(res, "invalid_argument", "a pid or a tag is required");
        return;
    }
    _cleanup_free_ char *suffix = xasprintf("/processes/%s", id);
    arm_reply_t r;
    proc_call(c, "GET", suffix, NULL, &r);
    _cleanup_json_ json_t *p = r.status == 200 ? arm_reply_json(&r) : NULL;
    if (!p)
        fail(res, true, &r);
    else if (!json_is_true(json_object_get(p, "running")))
        e2b_stream_error(res, "not_found", "the process is not running");
    else
        stream_reply(c, id, json_integer_value(json_object_get(p, "pid")), res);
    arm_reply_done(&r);
}

static void list(const envd_ctx_t *c, http_response_t *res)
{
    arm_reply_t r;
    proc_call(c, "GET", "/processes", NULL, &r);
    _cleanup_json_ json_t *j = r.status == 200 ? arm_reply_json(&r) : NULL;
    if (!j) {
        fail(res, false, &r);
        arm_reply_done(&r);
        return;
    }
    arm_reply_done(&r);
    json_t *out = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(j, "value"), i, p)
    {
        if (!json_is_true(json_object_get(p, "running")))
            continue;
        json_t *cmd = json_object_get(p, "command");
        json_t *args = json_array();
        for (size_t k = 1; k < json_array_size(cmd); k++)
            json_array_append(args, json_array_get(cmd, k));
        const char *c0 = json_string_value(json_array_get(cmd, 0));
        json_t *info = json_pack("{s:{s:s,s:o,s:{}},s:O}", "config", "cmd", c0 ? c0 : "", "args",
                                 args, "envs", "pid", json_object_get(p, "pid"));
        const char *tag = json_string_value(json_object_get(p, "tag"));
        if (tag)
            json_object_set_new(info, "tag", json_string(tag));
        json_array_append_new(out, info);
    }
    http_reply_json(res, 200, json_pack("{s:o}", "processes", out));
}

/* SendInput, CloseStdin, SendSignal, Update: one POST each.  */
static void simple(const envd_ctx_t *c, const char *method, const json_t *in, http_response_t *res)
{
    _cleanup_free_ char *id = selector(in);
    if (!id) {
        connect_reply_error(res, "invalid_argument", "a pid or a tag is required");
        return;
    }
    const char *what;
    _cleanup_json_ json_t *body = NULL;
    if (!strcmp(method, "SendInput")) {
        json_t *input = json_object_get(in, "input");
        const char *b64 = json_string_value(json_object_get(input, "stdin"));
        if (!b64)
            b64 = json_string_value(json_object_get(input, "pty"));
        what = "stdin";
        body = json_pack("{s:s}", "dataBase64", b64 ? b64 : "");
    } else if (!strcmp(method, "CloseStdin")) {
        what = "stdin";
        body = json_pack("{s:s,s:b}", "dataBase64", "", "eof", 1);
    } else if (!strcmp(method, "SendSignal")) {
        json_t *sig = json_object_get(in, "signal");
        bool term = (json_is_string(sig) && strstr(json_string_value(sig), "SIGTERM")) ||
                    (json_is_integer(sig) && json_integer_value(sig) == 15);
        what = "signal";
        body = json_pack("{s:s}", "signal", term ? "SIGTERM" : "SIGKILL");
    } else {
        json_t *size = json_object_get(json_object_get(in, "pty"), "size");
        if (!size) {
            http_reply_json(res, 200, json_object());
            return;
        }
        what = "resize";
        body = json_pack("{s:I,s:I}", "rows", json_integer_value(json_object_get(size, "rows")),
                         "cols", json_integer_value(json_object_get(size, "cols")));
    }
    _cleanup_free_ char *suffix = xasprintf("/processes/%s/%s", id, what);
    arm_reply_t r;
    proc_call(c, "POST", suffix, body, &r);
    /* A process that has ended is not there for E2B.  */
    if (r.status == 409 && !strcmp(what, "signal"))
        r.status = 404;
    if (r.status >= 200 && r.status < 300)
        http_reply_json(res, 200, json_object());
    else
        fail(res, false, &r);
    arm_reply_done(&r);
}

void e2b_process_handle(const envd_ctx_t *c, const char *method, const http_request_t *req,
                        http_response_t *res)
{
    bool streaming;
    _cleanup_json_ json_t *in = connect_request_json(req, &streaming);
    bool want_stream = strcmp(method, "Start") == 0 || strcmp(method, "Connect") == 0;
    if (!json_is_object(in) || streaming != want_stream || strcmp(req->method, "POST") != 0) {
        if (want_stream)
            e2b_stream_error(res, "invalid_argument", "a streaming JSON request was expected");
        else
            connect_reply_error(res, "invalid_argument", "a unary JSON request was expected");
        return;
    }
    if (!strcmp(method, "Start"))
        start(c, req, in, res);
    else if (!strcmp(method, "Connect"))
        connect_proc(c, in, res);
    else if (!strcmp(method, "List"))
        list(c, res);
    else if (!strcmp(method, "SendInput") || !strcmp(method, "CloseStdin") ||
             !strcmp(method, "SendSignal") || !strcmp(method, "Update"))
        simple(c, method, in, res);
    else
        connect_reply_error(res, "unimplemented", "process.Process/%.64s is not implemented",
                            method);
}
