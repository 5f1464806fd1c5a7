/* processes.c -- the agent's process calls: start a background process,
 * list them, look at one, attach to its output as a server-sent event
 * stream, write its stdin, signal it, resize its terminal; and exec with
 * Accept: text/event-stream, a process streamed from its start to its end.
 *
 * Event stream: every event names its kind (start, stdout, stderr, pty,
 * gap, exit); output events carry base64 bytes and an id that is the
 * offset after them, so a client resumes with ?offset= (or
 * Last-Event-ID); a comment line every PROC_KEEPALIVE_MS keeps idle
 * connections open and finds clients that left.  */
#include "agent/procs.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#define PROC_KEEPALIVE_MS 15000
#define STREAM_CHUNK (48u << 10)
#define STREAM_PIPE_CAP (128u << 10)
#define MAX_TERMINAL 1000
#define MAX_PROC_TIMEOUT (7 * 24 * 3600)
#define STDIN_TIMEOUT_MS 10000
#define MAX_STDIN (4u << 20)

static const char *const stream_names[] = {"stdout", "stderr", "pty"};

static const struct {
    const char *name;
    int sig;
} signals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM},   {"CONT", SIGCONT},
    {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"WINCH", SIGWINCH}, {"ALRM", SIGALRM},
};

/* ---- JSON ---- */

static json_t *proc_json(proc_t *p)
{
    proc_info_t i;
    proc_snapshot(p, &i);
    json_t *j = json_pack("{s:i,s:o,s:O,s:b,s:b,s:o,s:{s:I,s:I}}", "pid", i.pid, "tag",
                          i.tag[0] ? json_string(i.tag) : json_null(), "command", p->command, "pty",
                          i.pty, "running", i.running, "startedAt", agent_json_time(i.started_ms),
                          "output", "start", (json_int_t)i.start, "end", (json_int_t)i.end);
    if (!j || i.running)
        return j;
    json_object_set_new(j, "endedAt", agent_json_time(i.ended_ms));
    json_object_set_new(j, "timedOut", json_boolean(i.timed_out));
    if (i.lost) {
        json_object_set_new(j, "exitCode", json_integer(-1));
        json_object_set_new(j, "statusLost", json_true());
    } else if (WIFEXITED(i.status)) {
        json_object_set_new(j, "exitCode", json_integer(WEXITSTATUS(i.status)));
    } else {
        json_object_set_new(j, "exitCode", json_integer(-1));
        json_object_set_new(j, "signal", json_integer(WTERMSIG(i.status)));
    }
    return j;
}

static void reply_proc(http_response_t *res, int status, proc_t *p)
{
    json_t *j = proc_json(p);
    if (!j)
        return http_reply_error(res, 500, "InternalServerError", "cannot encode the process");
    http_reply_json(res, status, j);
}

/* ---- the event stream ---- */

typedef struct stream {
    agent_procs_t *m;
    proc_t *p;
    proc_reader_t *r;
    http_pipe_t *pipe;
} stream_t;

static int emit(stream_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int emit(stream_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    int r = http_pipe_write(s->pipe, text, (size_t)n);
    free(text);
    return r;
}

static int emit_exit(stream_t *s)
{
    _cleanup_json_ json_t *j = proc_json(s->p);
    json_t *e = json_object();
    const char *keys[] = {"exitCode", "signal", "timedOut", "statusLost", "endedAt"};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        if (json_object_get(j, keys[i]))
            json_object_set(e, keys[i], json_object_get(j, keys[i]));
    _cleanup_free_ char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    return emit(s, "event: exit\ndata: %s\n\n", text ? text : "{}");
}

static void *stream_main(void *arg)
{
    stream_t *s = arg;
    char *buf = xmalloc(STREAM_CHUNK);
    bool complete = false;
    proc_info_t info;
    proc_snapshot(s->p, &info);
    if (emit(s, "event: start\ndata: {\"pid\":%d}\n\n", info.pid) < 0)
        goto out;
    for (;;) {
        proc_item_t it;
        proc_next_t what = proc_next(s->p, s->r, buf, STREAM_CHUNK, PROC_KEEPALIVE_MS, &it);
        int rc = 0;
        if (what == PROC_NEXT_DATA) {
            _cleanup_free_ char *b64 = sbx_base64_encode(buf, it.len);
            rc = emit(s, "id: %llu\nevent: %s\ndata: {\"data\":\"%s\"}\n\n",
                      (unsigned long long)it.to, stream_names[it.stream], b64);
        } else if (what == PROC_NEXT_GAP) {
            rc = emit(s, "id: %llu\nevent: gap\ndata: {\"from\":%llu,\"to\":%llu}\n\n",
                      (unsigned long long)it.to, (unsigned long long)it.from,
                      (unsigned long long)it.to);
        } else if (what == PROC_NEXT_EXIT) {
            complete = emit_exit(s) == 0;
            break;
        } else {
            pthread_mutex_lock(&s->m->mu);
            bool stop = s->m->stopping;
            pthread_mutex_unlock(&s->m->mu);
            if (stop)
                break;
            rc = emit(s, ": keep-alive\n\n");
        }
        if (rc < 0)
            break; /* the client left; the process goes on */
    }
out:
    free(buf);
    proc_detach(s->p, s->r);
    proc_unref(s->p);
    http_pipe_close(s->pipe, complete);
    agent_procs_t *m = s->m;
    free(s);
    agent_procs_thread_end(m);
    return NULL;
}

/* Reply with p's output from `from` on, as it comes; takes p's reference. */
static void reply_stream(agent_api_t *api, proc_t *p, uint64_t from, http_response_t *res)
{
    stream_t *s = xcalloc(1, sizeof(*s));
    http_pipe_t *pipe = http_pipe_new(STREAM_PIPE_CAP); /* s may be gone once its thread runs */
    s->m = api->procs;
    s->p = p;
    s->r = proc_attach(p, from);
    s->pipe = pipe;
    pthread_mutex_lock(&api->procs->mu);
    int rc = agent_procs_thread_start_locked(api->procs, stream_main, s);
    pthread_mutex_unlock(&api->procs->mu);
    if (rc < 0) {
        proc_detach(p, s->r);
        proc_unref(p);
        http_pipe_close(s->pipe, false);
        http_pipe_abandon(s->pipe);
        free(s);
        return http_reply_error(res, 503, "ServiceUnavailable", "cannot stream now");
    }
    http_reply_pipe(res, 200, "text/event-stream", HTTP_SIZE_UNKNOWN, pipe);
    http_add_header(res, "Cache-Control", "no-cache");
    http_add_header(res, "X-Accel-Buffering", "no");
}

/* ---- requests ---- */

static bool tag_valid(const char *t, size_t n)
{
    if (n == 0 || n > PROC_MAX_TAG || strlen(t) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        bool letter = c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
        if (!letter && (i == 0 || !((c >= '0' && c <= '9') || c == '-' || c == '.')))
            return false;
    }
    return true;
}

static int parse_terminal(const json_t *v, rt_proc_request_t *req, http_response_t *res)
{
    if (!v || json_is_null(v) || json_is_false(v))
        return 0;
    req->pty = true;
    req->rows = 24;
    req->cols = 80;
    if (json_is_true(v))
        return 0;
    if (!json_is_object(v))
        return agent_reply_invalid(res, "pty must be true or an object {rows, cols}"), -1;
    const char *keys[] = {"rows", "cols"};
    unsigned short *dst[] = {&req->rows, &req->cols};
    for (int i = 0; i < 2; i++) {
        json_t *n = json_object_get(v, keys[i]);
        if (!n || json_is_null(n))
            continue;
        if (!json_is_integer(n) || json_integer_value(n) < 1 ||
            json_integer_value(n) > MAX_TERMINAL)
            return agent_reply_invalid(res, "pty.%s must be an integer 1..%d", keys[i],
                                       MAX_TERMINAL),
                   -1;
        *dst[i] = (unsigned short)json_integer_value(n);
    }
    return 0;
}

/* The body of a start (and of a streamed exec) into s; replies 400 and
 * returns -1 on anything malformed.  */
static int parse_start(const json_t *body, agent_cmd_t *cmd, proc_start_t *s, http_response_t *res)
{
    if (agent_cmd_parse(body, cmd, res) < 0)
        return -1;
    s->req.argv = cmd->argv;
    s->req.env = cmd->env;
    s->req.cwd = cmd->cwd;
    s->command = json_object_get(body, "command");
    json_t *v;
    if ((v = json_object_get(body, "tag")) && !json_is_null(v)) {
        if (!json_is_string(v) || !tag_valid(json_string_value(v), json_string_length(v)))
            return agent_reply_invalid(res,
                                       "tag must be 1..%d characters [A-Za-z0-9_.-], "
                                       "starting with a letter or _",
                                       PROC_MAX_TAG),
                   -1;
        s->tag = json_string_value(v);
    }
    if ((v = json_object_get(body, "stdin")) && !json_is_null(v) && !json_is_boolean(v))
        return agent_reply_invalid(res, "stdin must be true or false"), -1;
    s->keep_stdin = json_is_true(v);
    if (parse_terminal(json_object_get(body, "pty"), &s->req, res) < 0)
        return -1;
    if (s->req.pty)
        s->keep_stdin = true;
    if ((v = json_object_get(body, "timeoutSeconds")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > MAX_PROC_TIMEOUT)
            return agent_reply_invalid(res, "timeoutSeconds must be an integer 1..%d",
                                       MAX_PROC_TIMEOUT),
                   -1;
        s->timeout_ms = (int)json_integer_value(v) * 1000;
    }
    return 0;
}

static void start_process(agent_api_t *api, const char *id, const agent_call_t *c,
                          http_response_t *res)
{
    _cleanup_json_ json_t *body = agent_parse_object(c, false, res);
    if (!body)
        return;
    agent_cmd_t cmd = {0};
    proc_start_t s = {0};
    proc_t *p = NULL;
    sbx_error_t err = {0};
    if (parse_start(body, &cmd, &s, res) < 0 ||
        agent_user_resolve(api, id, body, &cmd, &s.req.user, res) < 0)
        return agent_cmd_done(&cmd);
    s.req.env = cmd.env; /* with the user's HOME and USER */
    if (agent_procs_start(api->procs, id, &s, &p, &err) < 0) {
        agent_reply_error(res, &err, id);
    } else {
        sbx_log(SBX_LOG_INFO, AGENT_MODULE, "sandbox %s: process %d started (%s)", id, p->pid,
                cmd.argv[0]);
        reply_proc(res, 201, p);
        proc_unref(p);
    }
    agent_cmd_done(&cmd);
}

static void list_processes(agent_api_t *api, const char *id, http_response_t *res)
{
    size_t n = 0;
    proc_t **v = agent_procs_list(api->procs, id, &n);
    json_t *value = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *j = proc_json(v[i]);
        if (j)
            json_array_append_new(value, j);
        proc_unref(v[i]);
    }
    free(v);
    http_reply_json(res, 200, json_pack("{s:o}", "value", value));
}

static int parse_signal(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) >= 1 && json_integer_value(v) <= 64
                   ? (int)json_integer_value(v)
                   : -1;
    if (!json_is_string(v))
        return -1;
    const char *s = json_string_value(v);
    if (strncasecmp(s, "SIG", 3) == 0)
        s += 3;
    for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
        if (strcasecmp(s, signals[i].name) == 0)
            return signals[i].sig;
    return -1;
}

static void post_stdin(proc_t *p, const agent_call_t *c, http_response_t *res)
{
    _cleanup_json_ json_t *body = agent_parse_object(c, false, res);
    if (!body)
        return;
    json_t *data = json_object_get(body, "data"), *b64 = json_object_get(body, "dataBase64");
    json_t *eof = json_object_get(body, "eof");
    if ((data && !json_is_null(data) && !json_is_string(data)) ||
        (b64 && !json_is_null(b64) && !json_is_string(b64)) ||
        (eof && !json_is_null(eof) && !json_is_boolean(eof)))
        return agent_reply_invalid(res, "stdin takes data (a string), dataBase64 (a string) "
                                        "and eof (a boolean)");
    _cleanup_free_ char *bytes = NULL;
    size_t n = 0;
    const char *d = NULL;
    if (json_is_string(b64)) {
        bytes = sbx_base64_decode(json_string_value(b64), json_string_length(b64), SIZE_MAX, &n);
        if (!bytes)
            return agent_reply_invalid(res, "dataBase64 is not base64");
        d = bytes;
    } else if (json_is_string(data)) {
        d = json_string_value(data);
        n = json_string_length(data);
    }
    if (n > MAX_STDIN)
        return http_reply_error(res, 413, "RequestEntityTooLarge",
                                "at most %u bytes of stdin "
                                "a call",
                                MAX_STDIN);
    sbx_error_t err = {0};
    if ((d && proc_write_stdin(p, d, n, STDIN_TIMEOUT_MS, &err) < 0) ||
        (json_is_true(eof) && proc_close_stdin(p, &err) < 0))
        return agent_reply_error(res, &err, p->sandbox);
    http_reply_json(res, 200, json_pack("{s:I}", "written", (json_int_t)n));
}

static void post_signal(proc_t *p, const agent_call_t *c, http_response_t *res)
{
    _cleanup_json_ json_t *body = agent_parse_object(c, false, res);
    if (!body)
        return;
    int sig = parse_signal(json_object_get(body, "signal"));
    if (sig < 0)
        return agent_reply_invalid(res, "signal must be a number 1..64 or a name (SIGTERM, "
                                        "SIGKILL, SIGINT, SIGHUP, ...)");
    sbx_error_t err = {0};
    if (proc_signal(p, sig, &err) < 0)
        return agent_reply_error(res, &err, p->sandbox);
    sbx_log(SBX_LOG_INFO, AGENT_MODULE, "sandbox %s: process %d sent signal %d", p->sandbox, p->pid,
            sig);
    reply_proc(res, 200, p);
}

static void post_resize(proc_t *p, const agent_call_t *c, http_response_t *res)
{
    _cleanup_json_ json_t *body = agent_parse_object(c, false, res);
    if (!body)
        return;
    json_t *rows = json_object_get(body, "rows"), *cols = json_object_get(body, "cols");
    if (!json_is_integer(rows) || !json_is_integer(cols) || json_integer_value(rows) < 1 ||
        json_integer_value(rows) > MAX_TERMINAL || json_integer_value(cols) < 1 ||
        json_integer_value(cols) > MAX_TERMINAL)
        return agent_reply_invalid(res, "rows and cols must be integers 1..%d", MAX_TERMINAL);
    sbx_error_t err = {0};
    if (proc_resize(p, (unsigned)json_integer_value(rows), (unsigned)json_integer_value(cols),
                    &err) < 0)
        return agent_reply_error(res, &err, p->sandbox);
    reply_proc(res, 200, p);
}

/* Where a reattaching client resumes: ?offset=, else Last-Event-ID, else
 * the oldest byte held.  -1 after replying 400.  */
static int stream_from(const agent_call_t *c, uint64_t *from, http_response_t *res)
{
    const char *s = c->query_offset ? c->query_offset : c->last_event_id;
    *from = 0;
    if (!s)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return agent_reply_invalid(res, "offset must be a byte offset (a non-negative integer)"),
               -1;
    *from = v;
    return 0;
}

static bool method_in(const char *allow, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = allow; n && (p = strstr(p, method)); p += n)
        if ((p == allow || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

static const char *const proc_actions[] = {"stream", "stdin", "signal", "resize"};

void agent_processes(agent_api_t *api, const char *id, const char *pid, const char *action,
                     const agent_call_t *c, http_response_t *res)
{
    const char *allow = !pid[0]                                   ? "GET, POST"
                        : !action[0] || !strcmp(action, "stream") ? "GET"
                                                                  : "POST";
    if (action[0]) {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(proc_actions); i++)
            known |= strcmp(action, proc_actions[i]) == 0;
        if (!known)
            return http_reply_error(res, 404, "NotFound", "no such route");
    }
    if (!method_in(allow, c->method)) {
        http_reply_error(res, 405, "MethodNotAllowed", "method not allowed here; use %s", allow);
        http_add_header(res, "Allow", "%s", allow);
        return;
    }
    rt_info_t info;
    sbx_error_t err = {0};
    if (rt_get(api->rt, id, &info, &err) < 0)
        return agent_reply_error(res, &err, id);
    if (!pid[0])
        return strcmp(c->method, "POST") == 0 ? start_process(api, id, c, res)
                                              : list_processes(api, id, res);
    proc_t *p = agent_procs_find(api->procs, id, pid);
    if (!p)
        return http_reply_error(res, 404, "ProcessNotFound",
                                "sandbox %s has no process '%.80s' (exit records are kept %d "
                                "minutes)",
                                id, pid, PROC_EXIT_KEEP_MS / 60000);
    uint64_t from;
    if (!action[0])
        reply_proc(res, 200, p);
    else if (!strcmp(action, "stream")) {
        if (stream_from(c, &from, res) == 0)
            return reply_stream(api, p, from, res); /* takes p */
    } else if (!strcmp(action, "stdin"))
        post_stdin(p, c, res);
    else if (!strcmp(action, "signal"))
        post_signal(p, c, res);
    else
        post_resize(p, c, res);
    proc_unref(p);
}

bool agent_wants_events(const agent_call_t *c)
{
    return c->accept && strstr(c->accept, "text/event-stream");
}

void agent_exec_stream(agent_api_t *api, const char *id, const json_t *body, http_response_t *res)
{
    agent_cmd_t cmd = {0};
    proc_start_t s = {0};
    proc_t *p = NULL;
    sbx_error_t err = {0};
    json_t *in = json_object_get(body, "stdin"), *t = json_object_get(body, "timeoutSeconds");
    json_int_t timeout = 30;
    if (agent_cmd_parse(body, &cmd, res) < 0 ||
        agent_user_resolve(api, id, body, &cmd, &s.req.user, res) < 0)
        goto out;
    if (in && !json_is_null(in) && !json_is_string(in)) {
        agent_reply_invalid(res, "stdin must be a string");
        goto out;
    }
    if (t && !json_is_null(t)) {
        if (!json_is_integer(t) || json_integer_value(t) < 1 || json_integer_value(t) > 3600) {
            agent_reply_invalid(res, "timeoutSeconds must be an integer 1..3600");
            goto out;
        }
        timeout = json_integer_value(t);
    }
    s.req.argv = cmd.argv;
    s.req.env = cmd.env;
    s.req.cwd = cmd.cwd;
    s.command = json_object_get(body, "command");
    s.keep_stdin = json_is_string(in) && json_string_length(in) > 0;
    s.timeout_ms = (int)timeout * 1000;
    if (agent_procs_start(api->procs, id, &s, &p, &err) < 0) {
        agent_reply_error(res, &err, id);
        goto out;
    }
    if (s.keep_stdin) {
        /* Its output goes to the ring meanwhile, so a command that writes
         * before it reads cannot stall this.  */
        sbx_error_t ierr = {0};
        if (proc_write_stdin(p, json_string_value(in), json_string_length(in), s.timeout_ms,
                             &ierr) < 0 &&
            ierr.code != SBX_ERR_CONFLICT)
            (void)proc_signal(p, SIGKILL, &ierr);
        (void)proc_close_stdin(p, &ierr);
    }
    reply_stream(api, p, 0, res); /* takes p */
out:
    agent_cmd_done(&cmd);
}
