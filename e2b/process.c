/* process.c -- the process.Process Connect service over the ARM API's
 * one-shot exec: Start streams a start event at once and the command's
 * output, exit code and end when the exec returns; List, Connect and
 * SendSignal know the commands this adapter has under way.  Input (stdin,
 * PTY) needs the streaming process routes and is refused as unimplemented.  */
#include <openssl/evp.h>
#include <string.h>

#include "e2b/internal.h"

#define DEFAULT_TIMEOUT_S 60
#define MAX_TIMEOUT_S 3600
#define PIPE_CAP (256u << 10)
#define CHUNK (48u << 10)

struct e2b_proc {
    e2b_proc_t *next;
    unsigned pid;
    char *sandbox, *tag;
    json_t *config; /* ProcessConfig as started */
    bool done;
    json_t *result;          /* the exec reply, or NULL */
    char code[32], msg[400]; /* the failure when there is no result */
    int refs;
    pthread_cond_t cv;
};

static void proc_unref(e2b_t *e, e2b_proc_t *p)
{
    pthread_mutex_lock(&e->lock);
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&e->lock);
    if (!last)
        return;
    free(p->sandbox);
    free(p->tag);
    json_decref(p->config);
    json_decref(p->result);
    pthread_cond_destroy(&p->cv);
    free(p);
}

/* ---- streaming replies ---- */

static int send_msg(http_pipe_t *pipe, unsigned flags, json_t *msg)
{
    size_t n;
    _cleanup_free_ char *env = connect_envelope(flags, msg, &n);
    json_decref(msg);
    return http_pipe_write(pipe, env, n);
}

static int send_event(http_pipe_t *pipe, json_t *event)
{
    return send_msg(pipe, 0, json_pack("{s:o}", "event", event));
}

static int send_data(http_pipe_t *pipe, const char *stream, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    for (size_t off = 0; off < len; off += CHUNK) {
        size_t k = len - off < CHUNK ? len - off : CHUNK;
        _cleanup_free_ char *b64 = xmalloc(4 * ((k + 2) / 3) + 1);
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)s + off, (int)k);
        if (send_event(pipe, json_pack("{s:{s:s}}", "data", stream, b64)) < 0)
            return -1;
    }
    return 0;
}

static void send_end_stream(http_pipe_t *pipe, const char *code, const char *msg)
{
    json_t *end =
        code ? json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg) : json_object();
    send_msg(pipe, 2, end);
}

/* The output and end of a finished command, then the end of the stream.  */
static void send_outcome(http_pipe_t *pipe, const e2b_proc_t *p)
{
    if (!p->result) {
        send_end_stream(pipe, p->code, p->msg);
        return;
    }
    json_t *r = p->result;
    if (send_data(pipe, "stdout", json_string_value(json_object_get(r, "stdout"))) < 0 ||
        send_data(pipe, "stderr", json_string_value(json_object_get(r, "stderr"))) < 0)
        return;
    if (json_is_true(json_object_get(r, "timedOut"))) {
        send_end_stream(pipe, "deadline_exceeded", "the command ran past its timeout");
        return;
    }
    int code = (int)json_integer_value(json_object_get(r, "exitCode"));
    char status[64];
    /* The wrapper's shell reports a command killed by signal N as 128+N.  */
    if (code > 128 && code < 160)
        snprintf(status, sizeof(status), "signal: %s", code == 137 ? "killed" : "terminated");
    else
        snprintf(status, sizeof(status), "exit status %d", code);
    send_event(pipe, json_pack("{s:{s:i,s:b,s:s}}", "end", "exitCode", code, "exited", 1, "status",
                               status));
    send_end_stream(pipe, NULL, NULL);
}

/* A streaming call's failure: 200 and an end-of-stream message.  */
static void stream_error(http_response_t *res, const char *code, const char *msg)
{
    json_t *m = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
    size_t n;
    char *env = connect_envelope(2, m, &n);
    json_decref(m);
    http_reply_bytes(res, 200, "application/connect+json", env, n);
}

/* ---- Start ---- */

typedef struct run {
    e2b_t *e;
    e2b_proc_t *p;
    http_pipe_t *pipe;
    json_t *exec; /* the ARM exec body */
    int keepalive_s;
    int64_t last_ms; /* of the last message sent */
} run_t;

/* A keepalive event now and then while the command runs silently (the
 * client asks for them every Keepalive-Ping-Interval seconds): proxies and
 * clients cut responses idle for too long.  A client gone cuts the exec.  */
static bool run_tick(void *ud)
{
    run_t *r = ud;
    int64_t now = sbx_monotonic_ms();
    if (now - r->last_ms < (int64_t)r->keepalive_s * 1000)
        return true;
    r->last_ms = now;
    return send_event(r->pipe, json_pack("{s:{}}", "keepalive")) == 0;
}

static int keepalive_s(const http_request_t *req)
{
    const char *h = http_header(req, "Keepalive-Ping-Interval");
    long s = h ? strtol(h, NULL, 10) : 0;
    return s < 5 ? 30 : s > 300 ? 300 : (int)s;
}

static void *run_main(void *ud)
{
    run_t *r = ud;
    e2b_t *e = r->e;
    envd_ctx_t c = {.e = e, .sandbox = r->p->sandbox};
    _cleanup_free_ char *js = json_dumps(r->exec, JSON_COMPACT);
    json_int_t t = json_integer_value(json_object_get(r->exec, "timeoutSeconds"));
    arm_req_t rq = {.method = "POST",
                    .sandbox = c.sandbox,
                    .suffix = "/exec",
                    .bearer = e->arm_token,
                    .body = js,
                    .len = strlen(js),
                    .timeout_ms = (long)t * 1000 + 30000,
                    .tick = run_tick,
                    .tick_ud = r};
    arm_reply_t ar;
    arm_call(e, &rq, &ar);
    json_t *result = ar.status == 200 ? arm_reply_json(&ar) : NULL;
    pthread_mutex_lock(&e->lock);
    e2b_proc_t *p = r->p;
    p->result = result;
    if (!result) {
        snprintf(p->code, sizeof(p->code), "%s", connect_code_for(&ar));
        arm_reply_message(&ar, p->msg, sizeof(p->msg));
    }
    p->done = true;
    for (e2b_proc_t **pp = &e->procs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            p->refs--; /* the list's reference; ours is dropped below */
            break;
        }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&e->lock);
    arm_reply_done(&ar);
    send_outcome(r->pipe, p);
    http_pipe_close(r->pipe, true);
    proc_unref(e, p);
    json_decref(r->exec);
    free(r);
    e2b_thread_leave(e);
    return NULL;
}

static int timeout_s(const http_request_t *req)
{
    const char *h = http_header(req, "Connect-Timeout-Ms");
    long ms = h ? strtol(h, NULL, 10) : 0;
    if (ms <= 0)
        return DEFAULT_TIMEOUT_S;
    long s = (ms + 999) / 1000;
    return s > MAX_TIMEOUT_S ? MAX_TIMEOUT_S : (int)s;
}

/* The command runs under a small shell that records its pid in the
 * sandbox, so SendSignal can reach it, and removes the record at its end.  */
static json_t *exec_body(const envd_ctx_t *c, unsigned pid, const json_t *proc, int tmo)
{
    const char *cmd = json_string_value(json_object_get(proc, "cmd"));
    const char *cwd = json_string_value(json_object_get(proc, "cwd"));
    char pidbuf[16];
    snprintf(pidbuf, sizeof(pidbuf), "%u", pid);
    json_t *argv = json_pack("[s,s,s,s,s]", "/bin/sh", "-c",
                             "f=/tmp/.e2b-proc-$0; \"$@\" </dev/null & c=$!; "
                             "echo $c >\"$f\"; wait $c; rc=$?; rm -f \"$f\"; exit $rc",
                             pidbuf, cmd);
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
    _cleanup_free_ char *dir = envd_path(c, cwd && *cwd ? cwd : c->home);
    return json_pack("{s:o,s:o,s:s,s:i}", "command", argv, "env", env, "cwd", dir ? dir : "/",
                     "timeoutSeconds", tmo);
}

static void start(const envd_ctx_t *c, const http_request_t *req, const json_t *in,
                  http_response_t *res)
{
    e2b_t *e = c->e;
    json_t *proc = json_object_get(in, "process");
    const char *cmd = json_string_value(json_object_get(proc, "cmd"));
    if (!cmd || !*cmd) {
        stream_error(res, "invalid_argument", "process.cmd is required");
        return;
    }
    if (json_object_get(in, "pty")) {
        stream_error(res, "unimplemented",
                     "PTY sessions need sandboxd's streaming process routes, which this "
                     "server does not have yet");
        return;
    }
    e2b_proc_t *p = xcalloc(1, sizeof(*p));
    pthread_cond_init(&p->cv, NULL);
    p->sandbox = xstrdup(c->sandbox);
    const char *tag = json_string_value(json_object_get(in, "tag"));
    p->tag = tag ? xstrdup(tag) : NULL;
    p->config = json_deep_copy(proc);
    p->refs = 2; /* the list's and the thread's */
    pthread_mutex_lock(&e->lock);
    p->pid = ++e->next_pid;
    p->next = e->procs;
    e->procs = p;
    pthread_mutex_unlock(&e->lock);

    run_t *r = xcalloc(1, sizeof(*r));
    r->e = e;
    r->p = p;
    r->exec = exec_body(c, p->pid, proc, timeout_s(req));
    r->keepalive_s = keepalive_s(req);
    r->last_ms = sbx_monotonic_ms();
    r->pipe = http_pipe_new(PIPE_CAP);
    /* The pipe has room: the start event goes out before the command ends.  */
    send_event(r->pipe, json_pack("{s:{s:i}}", "start", "pid", (int)p->pid));
    http_pipe_t *mine = r->pipe;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    e2b_thread_enter(e);
    if (pthread_create(&th, &attr, run_main, r) != 0) {
        e2b_thread_leave(e);
        pthread_attr_destroy(&attr);
        http_pipe_close(r->pipe, false);
        http_pipe_abandon(mine);
        json_decref(r->exec);
        free(r);
        pthread_mutex_lock(&e->lock);
        for (e2b_proc_t **pp = &e->procs; *pp; pp = &(*pp)->next)
            if (*pp == p) {
                *pp = p->next;
                break;
            }
        p->refs = 1;
        pthread_mutex_unlock(&e->lock);
        proc_unref(e, p);
        stream_error(res, "resource_exhausted", "no thread for the command");
        return;
    }
    pthread_attr_destroy(&attr);
    http_reply_pipe(res, 200, "application/connect+json", HTTP_SIZE_UNKNOWN, mine);
}

/* ---- the others ---- */

/* The command a selector names in this sandbox, with a reference; NULL
 * when none is under way.  */
static e2b_proc_t *find(const envd_ctx_t *c, const json_t *in)
{
    json_t *sel = json_object_get(in, "process");
    json_t *pid = json_object_get(sel, "pid");
    const char *tag = json_string_value(json_object_get(sel, "tag"));
    e2b_proc_t *found = NULL;
    pthread_mutex_lock(&c->e->lock);
    for (e2b_proc_t *p = c->e->procs; p && !found; p = p->next) {
        if (strcasecmp(p->sandbox, c->sandbox) != 0)
            continue;
        if ((json_is_integer(pid) && (json_int_t)p->pid == json_integer_value(pid)) ||
            (tag && p->tag && strcmp(tag, p->tag) == 0))
            found = p;
    }
    if (found)
        found->refs++;
    pthread_mutex_unlock(&c->e->lock);
    return found;
}

typedef struct watch {
    e2b_t *e;
    e2b_proc_t *p;
    http_pipe_t *pipe;
    int keepalive_s;
} watch_t;

static void *watch_main(void *ud)
{
    watch_t *w = ud;
    bool client_gone = false;
    pthread_mutex_lock(&w->e->lock);
    while (!w->p->done && !client_gone) {
        struct timespec until = sbx_deadline_in((int64_t)w->keepalive_s * 1000);
        if (pthread_cond_timedwait(&w->p->cv, &w->e->lock, &until) != 0 && !w->p->done) {
            /* Not under the lock: the write may wait for the client.  */
            pthread_mutex_unlock(&w->e->lock);
            client_gone = send_event(w->pipe, json_pack("{s:{}}", "keepalive")) < 0;
            pthread_mutex_lock(&w->e->lock);
        }
    }
    pthread_mutex_unlock(&w->e->lock);
    if (!client_gone)
        send_outcome(w->pipe, w->p);
    http_pipe_close(w->pipe, !client_gone);
    e2b_t *e = w->e;
    proc_unref(e, w->p);
    free(w);
    e2b_thread_leave(e);
    return NULL;
}

/* Connect: the start event now, the output when the command ends (the
 * one-shot exec has it only then).  */
static void connect_proc(const envd_ctx_t *c, const http_request_t *req, const json_t *in,
                         http_response_t *res)
{
    e2b_proc_t *p = find(c, in);
    if (!p) {
        stream_error(res, "not_found", "no such process");
        return;
    }
    watch_t *w = xcalloc(1, sizeof(*w));
    w->e = c->e;
    w->p = p;
    w->pipe = http_pipe_new(PIPE_CAP);
    w->keepalive_s = keepalive_s(req);
    http_pipe_t *mine = w->pipe;
    send_event(w->pipe, json_pack("{s:{s:i}}", "start", "pid", (int)p->pid));
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    e2b_thread_enter(c->e);
    int rc = pthread_create(&th, &attr, watch_main, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        e2b_thread_leave(c->e);
        http_pipe_close(w->pipe, false);
        http_pipe_abandon(mine);
        proc_unref(c->e, p);
        free(w);
        stream_error(res, "resource_exhausted", "no thread to watch the command");
        return;
    }
    http_reply_pipe(res, 200, "application/connect+json", HTTP_SIZE_UNKNOWN, mine);
}

static void list_procs(const envd_ctx_t *c, http_response_t *res)
{
    json_t *out = json_array();
    pthread_mutex_lock(&c->e->lock);
    for (e2b_proc_t *p = c->e->procs; p; p = p->next) {
        if (strcasecmp(p->sandbox, c->sandbox) != 0)
            continue;
        json_t *info = json_pack("{s:O,s:i}", "config", p->config, "pid", (int)p->pid);
        if (p->tag)
            json_object_set_new(info, "tag", json_string(p->tag));
        json_array_append_new(out, info);
    }
    pthread_mutex_unlock(&c->e->lock);
    http_reply_json(res, 200, json_pack("{s:o}", "processes", out));
}

static void send_signal(const envd_ctx_t *c, const json_t *in, http_response_t *res)
{
    e2b_proc_t *p = find(c, in);
    if (!p) {
        connect_reply_error(res, "not_found", "no such process");
        return;
    }
    json_t *sig = json_object_get(in, "signal");
    const char *name = (json_is_string(sig) && strstr(json_string_value(sig), "SIGTERM")) ||
                               (json_is_integer(sig) && json_integer_value(sig) == 15)
                           ? "TERM"
                           : "KILL";
    char pidbuf[16];
    snprintf(pidbuf, sizeof(pidbuf), "%u", p->pid);
    proc_unref(c->e, p);
    json_t *argv = json_pack("[s,s,s,s,s,s]", "/bin/sh", "-c",
                             "f=/tmp/.e2b-proc-$1; [ -s \"$f\" ] || exit 3; "
                             "kill -s \"$2\" \"$(cat \"$f\")\"",
                             "sh", pidbuf, name);
    json_t *out = NULL;
    arm_reply_t r;
    int rc = envd_exec(c, argv, 30, &out, &r);
    json_decref(argv);
    if (rc < 0) {
        char msg[400];
        connect_reply_error(res, connect_code_for(&r), "%s",
                            arm_reply_message(&r, msg, sizeof(msg)));
        arm_reply_done(&r);
        return;
    }
    int code = (int)json_integer_value(json_object_get(out, "exitCode"));
    json_decref(out);
    if (code != 0)
        connect_reply_error(res, "not_found", "the process is not running");
    else
        http_reply_json(res, 200, json_object());
}

void e2b_process_handle(const envd_ctx_t *c, const char *method, const http_request_t *req,
                        http_response_t *res)
{
    bool streaming;
    _cleanup_json_ json_t *in = connect_request_json(req, &streaming);
    bool want_stream = strcmp(method, "Start") == 0 || strcmp(method, "Connect") == 0;
    if (!json_is_object(in) || streaming != want_stream || strcmp(req->method, "POST") != 0) {
        if (want_stream)
            stream_error(res, "invalid_argument", "a streaming JSON request was expected");
        else
            connect_reply_error(res, "invalid_argument", "a unary JSON request was expected");
        return;
    }
    if (e2b_procroutes_handle(c, method, req, in, res))
        return;
    if (strcmp(method, "Start") == 0)
        start(c, req, in, res);
    else if (strcmp(method, "Connect") == 0)
        connect_proc(c, req, in, res);
    else if (strcmp(method, "List") == 0)
        list_procs(c, res);
    else if (strcmp(method, "SendSignal") == 0)
        send_signal(c, in, res);
    else
        connect_reply_error(res, "unimplemented",
                            "process.Process/%.64s needs sandboxd's streaming process routes "
                            "(stdin, PTY), which this server does not have yet",
                            method);
}
