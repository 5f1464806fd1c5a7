/* test_agent_processes_e2e.c -- background processes and streamed output
 * end to end through the ARM API: the real sandboxd with its local
 * sandbox-agent, real sandboxes, server-sent event streams read as they
 * arrive.  */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "tests/testutil.h"

#define SUB "00000000-0000-0000-0000-0000000000a7"
#define TOKEN "procs-test-token"
#define API "?api-version=2026-07-01"
#define GROUP "procs"

static char *g_root, *g_image, *g_data, *g_log, *g_base;
static bool g_python;
static pid_t g_pid = -1;

static int run_sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- plain calls ---- */

static long call(const char *method, const char *path, const char *body, json_t **out)
{
    _cleanup_free_ char *url = xasprintf("%s%s", g_base, path);
    const char *hdrs[] = {"Authorization: Bearer " TOKEN, NULL};
    tu_request_opts_t o = {.headers = hdrs, .body = body, .timeout_ms = 60000};
    tu_response_t r;
    long st = tu_http(method, url, &o, &r) == 0 ? r.status : -1;
    if (out)
        *out = st > 0 ? tu_json(&r) : NULL;
    tu_response_free(&r);
    return st;
}

static char *sb_path(const char *s, const char *suffix)
{
    return xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/"
                     "sandboxGroups/" GROUP "/sandboxes/%s%s" API,
                     s, suffix ? suffix : "");
}

static const char *err_code(json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

static void create_sandbox(const char *s)
{
    _cleanup_free_ char *p = sb_path(s, NULL);
    long st = call("PUT", p, "{\"properties\":{}}", NULL);
    ck_assert_msg(st == 201 || st == 200, "PUT sandbox %s: %ld", s, st);
    int64_t deadline = sbx_monotonic_ms() + 60000;
    for (;;) {
        json_t *j = NULL;
        call("GET", p, NULL, &j);
        const char *state =
            json_string_value(json_object_get(json_object_get(j, "properties"), "state"));
        bool running = state && strcmp(state, "Running") == 0;
        json_decref(j);
        if (running)
            return;
        ck_assert_msg(sbx_monotonic_ms() < deadline, "sandbox %s never ran", s);
        usleep(50000);
    }
}

static void delete_sandbox(const char *s)
{
    _cleanup_free_ char *p = sb_path(s, NULL);
    call("DELETE", p, NULL, NULL);
    int64_t deadline = sbx_monotonic_ms() + 60000;
    while (call("GET", p, NULL, NULL) != 404 && sbx_monotonic_ms() < deadline)
        usleep(50000);
}

/* Start a process; returns its pid (asserting 201).  */
static int start(const char *s, const char *body_fmt, ...) __attribute__((format(printf, 2, 3)));
static int start(const char *s, const char *body_fmt, ...)
{
    va_list ap;
    va_start(ap, body_fmt);
    char *body = NULL;
    ck_assert_int_ge(vasprintf(&body, body_fmt, ap), 0);
    va_end(ap);
    _cleanup_free_ char *p = sb_path(s, "/processes");
    json_t *j = NULL;
    long st = call("POST", p, body, &j);
    ck_assert_msg(st == 201, "start %s: %ld %s", body, st, err_code(j) ? err_code(j) : "");
    int pid = (int)json_integer_value(json_object_get(j, "pid"));
    ck_assert_int_gt(pid, 0);
    json_decref(j);
    free(body);
    return pid;
}

static long proc_call(const char *method, const char *s, const char *proc, const char *what,
                      const char *body, json_t **out)
{
    _cleanup_free_ char *suffix =
        xasprintf("/processes/%s%s%s", proc, what ? "/" : "", what ? what : "");
    _cleanup_free_ char *p = sb_path(s, suffix);
    return call(method, p, body, out);
}

/* ---- event streams ---- */

typedef struct event {
    char type[16];
    char *data; /* decoded bytes for output events, the JSON otherwise */
    size_t len;
    int64_t at_ms;
} event_t;

typedef struct sse {
    char *url;
    char *body; /* POST (a streamed exec) when set */
    pthread_mutex_t mu;
    event_t ev[4096];
    size_t n;
    char line[1 << 17];
    size_t line_len;
    char type[16];
    char *data;
    size_t data_len;
    size_t out_bytes; /* decoded stdout/pty bytes, all events counted */
    bool saw_gap, done, abort_now, joined;
    long status;
    int pause_ms_after_first; /* a slow reader */
    char head[256];           /* the first bytes, to tell what an error reply said */
    size_t head_len;
    int64_t t0;
    pthread_t thread;
} sse_t;

static size_t unb64(const char *s, size_t n, char *out)
{
    static int8_t map[256];
    static bool init;
    if (!init) {
        memset(map, -1, sizeof(map));
        const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int i = 0; i < 64; i++)
            map[(unsigned char)tab[i]] = (int8_t)i;
        init = true;
    }
    size_t o = 0;
    unsigned v = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (map[(unsigned char)s[i]] < 0)
            continue;
        v = v << 6 | (unsigned)map[(unsigned char)s[i]];
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(v >> bits & 255);
        }
    }
    return o;
}

/* One complete event: output events are decoded, the rest kept as JSON.  */
static void sse_event(sse_t *x)
{
    if (!x->type[0])
        return;
    bool output =
        !strcmp(x->type, "stdout") || !strcmp(x->type, "stderr") || !strcmp(x->type, "pty");
    char *payload = x->data ? x->data : xstrdup("");
    size_t len = x->data_len;
    if (output) {
        json_t *j = json_loads(payload, 0, NULL);
        const char *b = json_string_value(json_object_get(j, "data"));
        char *dec = xmalloc(b ? strlen(b) : 1);
        len = b ? unb64(b, strlen(b), dec) : 0;
        json_decref(j);
        free(payload);
        payload = dec;
    }
    pthread_mutex_lock(&x->mu);
    if (output && strcmp(x->type, "stderr") != 0)
        x->out_bytes += len;
    if (!strcmp(x->type, "gap"))
        x->saw_gap = true;
    /* Big streams keep counts only.  */
    if (x->n < ARRAY_SIZE(x->ev) && (x->out_bytes < (1u << 20) || !output)) {
        event_t *e = &x->ev[x->n++];
        snprintf(e->type, sizeof(e->type), "%s", x->type);
        e->data = payload;
        e->len = len;
        e->at_ms = sbx_monotonic_ms() - x->t0;
        payload = NULL;
    }
    pthread_mutex_unlock(&x->mu);
    free(payload);
    x->type[0] = 0;
    x->data = NULL;
    x->data_len = 0;
}

static void sse_line(sse_t *x, const char *l, size_t n)
{
    if (n == 0)
        return sse_event(x);
    if (n > 7 && !memcmp(l, "event: ", 7))
        snprintf(x->type, sizeof(x->type), "%.*s", (int)(n - 7), l + 7);
    else if (n > 6 && !memcmp(l, "data: ", 6)) {
        x->data = xrealloc(x->data, x->data_len + n - 6 + 1);
        memcpy(x->data + x->data_len, l + 6, n - 6);
        x->data_len += n - 6;
        x->data[x->data_len] = 0;
    }
}

static size_t sse_write(char *p, size_t size, size_t nmemb, void *ud)
{
    sse_t *x = ud;
    size_t n = size * nmemb;
    size_t keep = sizeof(x->head) - 1 - x->head_len < n ? sizeof(x->head) - 1 - x->head_len : n;
    memcpy(x->head + x->head_len, p, keep);
    x->head_len += keep;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            sse_line(x, x->line, x->line_len);
            x->line_len = 0;
        } else if (x->line_len < sizeof(x->line) - 1) {
            x->line[x->line_len++] = p[i];
        }
    }
    if (x->pause_ms_after_first && x->n > 1) {
        usleep((useconds_t)x->pause_ms_after_first * 1000);
        x->pause_ms_after_first = 0;
    }
    return n;
}

static int sse_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    sse_t *x = ud;
    return __atomic_load_n(&x->abort_now, __ATOMIC_RELAXED) ? 1 : 0;
}

static void *sse_main(void *arg)
{
    sse_t *x = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    h = curl_slist_append(h, "Accept: text/event-stream");
    if (x->body) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, x->body);
    }
    curl_easy_setopt(c, CURLOPT_URL, x->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sse_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, sse_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    pthread_mutex_lock(&x->mu);
    x->done = true;
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

/* Attach (body NULL) or exec streamed (body set) in the background.  */
static sse_t *sse_open(const char *path, const char *body)
{
    sse_t *x = xcalloc(1, sizeof(*x));
    x->url = xasprintf("%s%s", g_base, path);
    x->body = body ? xstrdup(body) : NULL;
    pthread_mutex_init(&x->mu, NULL);
    x->t0 = sbx_monotonic_ms();
    ck_assert_int_eq(pthread_create(&x->thread, NULL, sse_main, x), 0);
    return x;
}

static sse_t *attach(const char *s, const char *proc, const char *query)
{
    _cleanup_free_ char *suffix = xasprintf("/processes/%s/stream", proc);
    _cleanup_free_ char *p = sb_path(s, suffix);
    _cleanup_free_ char *full = xasprintf("%s%s", p, query ? query : "");
    return sse_open(full, NULL);
}

/* The index of the first event of type (after `from`), waiting up to
 * timeout_ms; -1 if none came.  */
static ssize_t sse_wait(sse_t *x, const char *type, size_t from, int timeout_ms)
{
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&x->mu);
        for (size_t i = from; i < x->n; i++)
            if (!strcmp(x->ev[i].type, type)) {
                pthread_mutex_unlock(&x->mu);
                return (ssize_t)i;
            }
        bool done = x->done;
        pthread_mutex_unlock(&x->mu);
        if (done || sbx_monotonic_ms() > deadline)
            return -1;
        usleep(5000);
    }
}

/* All output of the listed events, concatenated.  */
static char *sse_output(sse_t *x)
{
    pthread_mutex_lock(&x->mu);
    size_t n = 0;
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->ev[i].type, "exit") && strcmp(x->ev[i].type, "start") &&
            strcmp(x->ev[i].type, "gap"))
            n += x->ev[i].len;
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->ev[i].type, "exit") && strcmp(x->ev[i].type, "start") &&
            strcmp(x->ev[i].type, "gap")) {
            memcpy(o, x->ev[i].data, x->ev[i].len);
            o += x->ev[i].len;
        }
    *o = 0;
    pthread_mutex_unlock(&x->mu);
    return out;
}

/* Wait for the stream to end on its own (status is then known).  */
static void sse_finish(sse_t *x)
{
    if (!x->joined)
        pthread_join(x->thread, NULL);
    x->joined = true;
}

static void sse_close(sse_t *x)
{
    __atomic_store_n(&x->abort_now, true, __ATOMIC_RELAXED);
    sse_finish(x);
    for (size_t i = 0; i < x->n; i++)
        free(x->ev[i].data);
    free(x->data);
    free(x->url);
    free(x->body);
    pthread_mutex_destroy(&x->mu);
    free(x);
}

/* The exit event's JSON of a finished stream.  */
static json_t *sse_exit(sse_t *x, int timeout_ms)
{
    ssize_t i = sse_wait(x, "exit", 0, timeout_ms);
    return i < 0 ? NULL : json_loads(x->ev[i].data, 0, NULL);
}

/* ---- the cluster ---- */

static void global_setup(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    g_root = tu_tmpdir("sbx-procs");
    const char *real = getenv("SBX_DEFAULT_IMAGE");
    _cleanup_free_ char *index = real ? xasprintf("%s/index.json", real) : NULL;
    if (index && access(index, R_OK) == 0) {
        g_image = xstrdup(real);
        g_python = true;
    } else {
        g_image = xasprintf("%s/busybox-layout", g_root);
        _cleanup_free_ char *script = tu_src("tests/fixtures/make-busybox-layout.sh");
        _cleanup_free_ char *cmd = xasprintf("'%s' '%s'", script, g_image);
        ck_assert_int_eq(run_sh(cmd), 0);
    }
    g_data = xasprintf("%s/data", g_root);
    g_log = xasprintf("%s/sandboxd.log", g_root);
    int port = tu_free_port();
    g_base = xasprintf("http://127.0.0.1:%d", port);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    _cleanup_free_ char *bin = tu_bin("sandboxd");
    _cleanup_free_ char *agent = tu_bin("sandbox-agent");
    char *argv[] = {bin,     "--listen",     listen, "--data-dir",
                    g_data,  "--auth-token", TOKEN,  "--default-image",
                    g_image, "--agent-bin",  agent,  "--exec-webhook-allow-private",
                    NULL};
    _cleanup_free_ char *cg = xasprintf("SANDBOX_AGENT_CGROUP_PARENT=sbx-procs-%d", (int)getpid());
    char *env[] = {cg, "SANDBOXD_OVERCOMMIT_PIDS=8", "SANDBOXD_OVERCOMMIT_CPU=64", NULL};
    g_pid = tu_spawn(argv, env, g_log);
    ck_assert_msg(tu_wait_port(port, 20000), "sandboxd did not listen");
    _cleanup_free_ char *gp = xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/"
                                        "Microsoft.App/sandboxGroups/" GROUP API);
    int64_t deadline = sbx_monotonic_ms() + 30000;
    long st;
    while ((st = call("PUT", gp, "{\"location\":\"westus\",\"properties\":{}}", NULL)) != 201 &&
           st != 200 && sbx_monotonic_ms() < deadline)
        usleep(100000);
    ck_assert_msg(st == 201 || st == 200, "PUT group: %ld", st);
    create_sandbox("p1");
}

static void global_teardown(void)
{
    if (g_pid > 0) {
        delete_sandbox("p1");
        delete_sandbox("p2");
        _cleanup_free_ char *gp = xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/"
                                            "Microsoft.App/sandboxGroups/" GROUP API);
        call("DELETE", gp, NULL, NULL);
        int64_t deadline = sbx_monotonic_ms() + 60000;
        while (call("GET", gp, NULL, NULL) != 404 && sbx_monotonic_ms() < deadline)
            usleep(50000);
        tu_stop(g_pid, 30000);
    }
    _cleanup_free_ char *cmd = xasprintf(
        "for m in $(awk '{print $2}' /proc/mounts | grep '^%s' | sort -r); do umount -l $m; done",
        g_root);
    run_sh(cmd);
    tu_rmdir(g_root);
    free(g_root);
    free(g_image);
    free(g_data);
    free(g_log);
    free(g_base);
}

/* ---- tests ---- */

/* The first line arrives while the command still sleeps, through exec
 * with Accept: text/event-stream and through an attached stream.  */
START_TEST(test_output_before_end)
{
    _cleanup_free_ char *exec = sb_path("p1", "/exec");
    sse_t *x = sse_open(exec, "{\"command\":[\"sh\",\"-c\",\"echo first; sleep 2; echo second\"]}");
    ssize_t first = sse_wait(x, "stdout", 0, 10000);
    ck_assert_int_ge(first, 0);
    json_t *e = sse_exit(x, 20000);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "exitCode")), 0);
    json_decref(e);
    ssize_t exit_i = sse_wait(x, "exit", 0, 0);
    int64_t gap = x->ev[exit_i].at_ms - x->ev[first].at_ms;
    ck_assert_msg(gap >= 1500, "the first line came only %lld ms before the end", (long long)gap);
    _cleanup_free_ char *out = sse_output(x);
    ck_assert_str_eq(out, "first\nsecond\n");
    sse_finish(x);
    ck_assert_int_eq(x->status, 200);
    sse_close(x);

    int pid = start("p1", "{\"command\":[\"sh\",\"-c\",\"echo a; sleep 2; echo b >&2\"]}");
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", pid);
    x = attach("p1", ps, NULL);
    first = sse_wait(x, "stdout", 0, 10000);
    ck_assert_int_ge(first, 0);
    ssize_t err_i = sse_wait(x, "stderr", 0, 20000);
    ck_assert_int_ge(err_i, 0);
    ck_assert_int_ge(x->ev[err_i].at_ms - x->ev[first].at_ms, 1500);
    ck_assert_int_eq(x->ev[err_i].len, 2);
    ck_assert_int_ge(sse_wait(x, "exit", 0, 10000), 0);
    sse_close(x);
}
END_TEST

/* A client that goes away leaves the process running; it is found again
 * by pid and by tag, with the output it wrote meanwhile.  */
START_TEST(test_reattach_after_disconnect)
{
    int pid = start("p1", "{\"command\":[\"sh\",\"-c\",\"i=0; while [ $i -lt 20 ]; do echo "
                          "line$i; i=$((i+1)); sleep 0.1; done\"],\"tag\":\"counter\"}");
    sse_t *x = attach("p1", "counter", NULL);
    ck_assert_int_ge(sse_wait(x, "stdout", 0, 10000), 0);
    sse_close(x); /* disconnect */
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", pid);
    json_t *j = NULL;
    ck_assert_int_eq(proc_call("GET", "p1", ps, NULL, NULL, &j), 200);
    ck_assert(json_is_true(json_object_get(j, "running")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "tag")), "counter");
    json_decref(j);
    /* By pid, from the start: everything, to the end.  */
    x = attach("p1", ps, "&offset=0");
    json_t *e = sse_exit(x, 20000);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "exitCode")), 0);
    json_decref(e);
    _cleanup_free_ char *out = sse_output(x);
    ck_assert_msg(strstr(out, "line0\n") && strstr(out, "line19\n"), "output: %s", out);
    sse_close(x);
    /* By tag, after the end: the held output from an offset, then exit.  */
    x = attach("p1", "counter", "&offset=6");
    ck_assert_int_ge(sse_wait(x, "exit", 0, 10000), 0);
    _cleanup_free_ char *rest = sse_output(x);
    ck_assert_msg(strncmp(rest, "line1\n", 6) == 0, "from offset 6: %.20s", rest);
    sse_close(x);
    ck_assert_int_eq(proc_call("GET", "p1", "counter", NULL, NULL, &j), 200);
    ck_assert(json_is_false(json_object_get(j, "running")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "exitCode")), 0);
    json_decref(j);
}
END_TEST

START_TEST(test_stdin_and_terminal)
{
    start("p1", "{\"command\":[\"cat\"],\"stdin\":true,\"tag\":\"cat\"}");
    ck_assert_int_eq(proc_call("POST", "p1", "cat", "stdin", "{\"data\":\"hello \"}", NULL), 200);
    ck_assert_int_eq(
        proc_call("POST", "p1", "cat", "stdin", "{\"dataBase64\":\"d29ybGQK\",\"eof\":true}", NULL),
        200);
    sse_t *x = attach("p1", "cat", NULL);
    json_t *e = sse_exit(x, 10000);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "exitCode")), 0);
    json_decref(e);
    _cleanup_free_ char *out = sse_output(x);
    ck_assert_str_eq(out, "hello world\n");
    sse_close(x);
    json_t *j = NULL;
    ck_assert_int_eq(proc_call("POST", "p1", "cat", "stdin", "{\"data\":\"late\"}", &j), 409);
    ck_assert_str_eq(err_code(j), "ProcessEnded");
    json_decref(j);

    /* A REPL on a terminal.  */
    const char *repl = g_python ? "[\"python3\",\"-i\",\"-q\"]" : "[\"sh\",\"-i\"]";
    start("p1", "{\"command\":%s,\"pty\":{\"rows\":30,\"cols\":100},\"tag\":\"repl\"}", repl);
    x = attach("p1", "repl", NULL);
    ck_assert_int_eq(
        proc_call("POST", "p1", "repl", "stdin",
                  g_python ? "{\"data\":\"print(6*7)\\n\"}" : "{\"data\":\"echo $((6*7))\\n\"}",
                  NULL),
        200);
    ck_assert_int_eq(proc_call("POST", "p1", "repl", "stdin",
                               g_python ? "{\"data\":\"exit()\\n\"}" : "{\"data\":\"exit\\n\"}",
                               NULL),
                     200);
    e = sse_exit(x, 10000);
    ck_assert_ptr_nonnull(e);
    json_decref(e);
    _cleanup_free_ char *repl_out = sse_output(x);
    ck_assert_msg(strstr(repl_out, "42\r\n"), "repl said: %s", repl_out);
    ck_assert_int_ge(sse_wait(x, "pty", 0, 0), 0);
    sse_close(x);

    /* stty sees the size it started with, then the new one.  */
    start("p1", "{\"command\":[\"sh\"],\"pty\":{\"rows\":30,\"cols\":100},\"tag\":\"tty\"}");
    x = attach("p1", "tty", NULL);
    ck_assert_int_eq(proc_call("POST", "p1", "tty", "stdin", "{\"data\":\"stty size\\n\"}", NULL),
                     200);
    int64_t deadline = sbx_monotonic_ms() + 10000;
    for (;;) {
        _cleanup_free_ char *o = sse_output(x);
        if (strstr(o, "30 100"))
            break;
        ck_assert_msg(sbx_monotonic_ms() < deadline, "no stty size: %s", o);
        usleep(10000);
    }
    ck_assert_int_eq(proc_call("POST", "p1", "tty", "resize", "{\"rows\":50,\"cols\":120}", NULL),
                     200);
    ck_assert_int_eq(
        proc_call("POST", "p1", "tty", "stdin", "{\"data\":\"stty size; exit 3\\n\"}", NULL), 200);
    e = sse_exit(x, 10000);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "exitCode")), 3);
    json_decref(e);
    _cleanup_free_ char *tty_out = sse_output(x);
    ck_assert_msg(strstr(tty_out, "50 120"), "after resize: %s", tty_out);
    sse_close(x);
}
END_TEST

START_TEST(test_signals)
{
    int term = start("p1", "{\"command\":[\"sleep\",\"100\"]}");
    int kill9 = start("p1", "{\"command\":[\"sh\",\"-c\",\"trap '' TERM; sleep 100\"]}");
    char a[16], b[16];
    snprintf(a, sizeof(a), "%d", term);
    snprintf(b, sizeof(b), "%d", kill9);
    ck_assert_int_eq(proc_call("POST", "p1", a, "signal", "{\"signal\":\"SIGTERM\"}", NULL), 200);
    ck_assert_int_eq(proc_call("POST", "p1", b, "signal", "{\"signal\":9}", NULL), 200);
    const char *pids[] = {a, b};
    const int sigs[] = {SIGTERM, SIGKILL};
    for (int i = 0; i < 2; i++) {
        sse_t *x = attach("p1", pids[i], NULL);
        json_t *e = sse_exit(x, 10000);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(json_integer_value(json_object_get(e, "exitCode")), -1);
        ck_assert_int_eq(json_integer_value(json_object_get(e, "signal")), sigs[i]);
        json_decref(e);
        sse_close(x);
    }
    json_t *j = NULL;
    ck_assert_int_eq(proc_call("POST", "p1", a, "signal", "{\"signal\":\"TERM\"}", &j), 409);
    ck_assert_str_eq(err_code(j), "ProcessEnded");
    json_decref(j);
    ck_assert_int_eq(proc_call("POST", "p1", a, "signal", "{\"signal\":\"SIGFOO\"}", NULL), 400);
    ck_assert_int_eq(proc_call("POST", "p1", a, "signal", "{\"signal\":0}", NULL), 400);
}
END_TEST

/* 10 MB through sandboxd, read slowly at first: the stream slows down
 * rather than dropping anything.  */
START_TEST(test_big_output_backpressure)
{
    _cleanup_free_ char *exec = sb_path("p1", "/exec");
    sse_t *x = xcalloc(1, sizeof(*x));
    x->url = xasprintf("%s%s", g_base, exec);
    x->body = xstrdup("{\"command\":[\"head\",\"-c\",\"10000000\",\"/dev/zero\"]}");
    x->pause_ms_after_first = 3000;
    pthread_mutex_init(&x->mu, NULL);
    x->t0 = sbx_monotonic_ms();
    ck_assert_int_eq(pthread_create(&x->thread, NULL, sse_main, x), 0);
    json_t *e = sse_exit(x, 90000);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "exitCode")), 0);
    json_decref(e);
    ck_assert_uint_eq(x->out_bytes, 10000000);
    ck_assert(!x->saw_gap);
    sse_close(x);
}
END_TEST

typedef struct many {
    sse_t *x;
} many_t;

/* 200 streams of one process at once.  */
START_TEST(test_many_streams)
{
    start("p1", "{\"command\":[\"sh\",\"-c\",\"sleep 3; echo done\"],\"tag\":\"shared\"}");
    enum { N = 200 };
    sse_t **xs = xcalloc(N, sizeof(*xs));
    for (int i = 0; i < N; i++) {
        xs[i] = attach("p1", "shared", NULL);
        usleep(2000); /* concurrent streams, not a burst of handshakes */
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        json_t *e = sse_exit(xs[i], 60000);
        sse_finish(xs[i]);
        _cleanup_free_ char *out = sse_output(xs[i]);
        if (e && strcmp(out, "done\n") == 0 && xs[i]->status == 200)
            ok++;
        else if (ok + 5 > i)
            fprintf(stderr, "stream %d: status %ld, exit %s, output '%s', %zu events: %s\n", i,
                    xs[i]->status, e ? "yes" : "no", out, xs[i]->n, xs[i]->head);
        json_decref(e);
    }
    for (int i = 0; i < N; i++)
        sse_close(xs[i]);
    free(xs);
    ck_assert_int_eq(ok, N);
}
END_TEST

/* At most 64 running a sandbox, at most 64 exit records.  */
START_TEST(test_limits)
{
    for (int i = 0; i < 64 + 8; i++)
        start("p1", "{\"command\":[\"true\"]}");
    int64_t deadline = sbx_monotonic_ms() + 20000;
    _cleanup_free_ char *list = sb_path("p1", "/processes");
    for (;;) {
        json_t *j = NULL;
        ck_assert_int_eq(call("GET", list, NULL, &j), 200);
        size_t n = json_array_size(json_object_get(j, "value")), running = 0, i;
        json_t *p;
        json_array_foreach(json_object_get(j, "value"), i, p) running +=
            json_is_true(json_object_get(p, "running"));
        json_decref(j);
        /* One list may catch a process ending after the pruning.  */
        if (running == 0 && n <= 64)
            break;
        ck_assert(sbx_monotonic_ms() < deadline);
        usleep(50000);
    }
    int pids[64];
    for (int i = 0; i < 64; i++)
        pids[i] = start("p1", "{\"command\":[\"sleep\",\"60\"]}");
    json_t *j = NULL;
    ck_assert_int_eq(call("POST", list, "{\"command\":[\"sleep\",\"60\"]}", &j), 409);
    ck_assert_str_eq(err_code(j), "TooManyProcesses");
    json_decref(j);
    for (int i = 0; i < 64; i++) {
        char ps[16];
        snprintf(ps, sizeof(ps), "%d", pids[i]);
        ck_assert_int_eq(proc_call("POST", "p1", ps, "signal", "{\"signal\":\"SIGKILL\"}", NULL),
                         200);
    }
}
END_TEST

/* A sandbox delete ends its processes and their streams.  */
START_TEST(test_delete_ends_streams)
{
    create_sandbox("p2");
    start("p2", "{\"command\":[\"sh\",\"-c\",\"while true; do echo x; sleep 0.2; done\"],"
                "\"tag\":\"loop\"}");
    sse_t *x = attach("p2", "loop", NULL);
    ck_assert_int_ge(sse_wait(x, "stdout", 0, 10000), 0);
    delete_sandbox("p2");
    json_t *e = sse_exit(x, 20000);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(json_integer_value(json_object_get(e, "signal")), SIGKILL);
    json_decref(e);
    sse_close(x);
}
END_TEST

START_TEST(test_hostile_input)
{
    _cleanup_free_ char *list = sb_path("p1", "/processes");
    json_t *j = NULL;
    /* Huge argv and env.  */
    json_t *argv = json_array();
    for (int i = 0; i < 4097; i++)
        json_array_append_new(argv, json_string("x"));
    json_t *body = json_pack("{s:o}", "command", argv);
    _cleanup_free_ char *big = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    ck_assert_int_eq(call("POST", list, big, NULL), 400);
    json_t *env = json_object();
    for (int i = 0; i < 1100; i++) {
        char k[16];
        snprintf(k, sizeof(k), "K%d", i);
        json_object_set_new(env, k, json_string("v"));
    }
    body = json_pack("{s:[s],s:o}", "command", "true", "env", env);
    _cleanup_free_ char *bigenv = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    ck_assert_int_eq(call("POST", list, bigenv, NULL), 400);
    ck_assert_int_eq(call("POST", list, "{\"command\":[\"true\"],\"tag\":\"1bad\"}", NULL), 400);
    ck_assert_int_eq(call("POST", list, "{\"command\":[\"true\"],\"pty\":{\"rows\":0}}", NULL),
                     400);
    ck_assert_int_eq(call("POST", list, "{\"command\":[\"true\"],\"user\":\"nosuchuser\"}", &j),
                     400);
    ck_assert_str_eq(err_code(j), "UserNotFound");
    json_decref(j);
    const char *bad_users[] = {"a:b", "70000", "-1", "", "../etc"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_users); i++) {
        _cleanup_free_ char *b =
            xasprintf("{\"command\":[\"true\"],\"user\":\"%s\"}", bad_users[i]);
        ck_assert_msg(call("POST", list, b, NULL) == 400, "user %s", bad_users[i]);
    }
    ck_assert_int_eq(call("POST", list, "{\"command\":[\"/no/such\"]}", &j), 400);
    ck_assert_str_eq(err_code(j), "CommandNotFound");
    json_decref(j);
    /* Pids that are not there: negative, huge, a tag nobody has.  */
    const char *bad[] = {"-1", "0", "99999999", "nosuchtag"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ck_assert_int_eq(proc_call("GET", "p1", bad[i], NULL, NULL, &j), 404);
        ck_assert_str_eq(err_code(j), "ProcessNotFound");
        json_decref(j);
        ck_assert_int_eq(proc_call("GET", "p1", bad[i], "stream", NULL, NULL), 404);
    }
    /* Another sandbox's pid is not this one's.  */
    create_sandbox("p3");
    int other = start("p3", "{\"command\":[\"sleep\",\"30\"],\"tag\":\"theirs\"}");
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", other);
    json_t *mine = NULL;
    long st = proc_call("GET", "p1", ps, NULL, NULL, &mine);
    /* p1 may have its own process of that pid: then it is p1's own.  */
    ck_assert(st == 404 || (st == 200 && !json_object_get(mine, "tag")) ||
              strcmp(json_string_value(json_object_get(mine, "tag")), "theirs") != 0);
    json_decref(mine);
    ck_assert_int_eq(proc_call("GET", "p1", "theirs", NULL, NULL, NULL), 404);
    ck_assert_int_eq(proc_call("POST", "p1", "theirs", "signal", "{\"signal\":9}", NULL), 404);
    delete_sandbox("p3");
    /* Bad requests on a real process.  */
    int pid = start("p1", "{\"command\":[\"echo\",\"hi\"]}");
    snprintf(ps, sizeof(ps), "%d", pid);
    ck_assert_int_eq(proc_call("POST", "p1", ps, "resize", "{\"rows\":10,\"cols\":10}", &j), 400);
    ck_assert_str_eq(err_code(j), "NoTerminal");
    json_decref(j);
    ck_assert_int_eq(proc_call("POST", "p1", ps, "stdin", "{\"data\":5}", NULL), 400);
    ck_assert_int_eq(proc_call("POST", "p1", ps, "stdin", "{\"dataBase64\":\"@@@\"}", NULL), 400);
    ck_assert_int_eq(proc_call("POST", "p1", ps, "stream", "{}", NULL), 405);
    ck_assert_int_eq(proc_call("POST", "p1", ps, "bogus", "{}", NULL), 404);
    ck_assert_int_eq(proc_call("DELETE", "p1", ps, NULL, NULL, NULL), 405);
    /* A stream of an exited process: what is held, then its exit.  */
    sse_t *x = attach("p1", ps, NULL);
    json_t *e = sse_exit(x, 10000);
    ck_assert_ptr_nonnull(e);
    json_decref(e);
    _cleanup_free_ char *out = sse_output(x);
    ck_assert_str_eq(out, "hi\n");
    sse_close(x);
    x = attach("p1", ps, "&offset=-5");
    ck_assert_int_eq(sse_wait(x, "exit", 0, 10000), -1);
    sse_finish(x);
    ck_assert_int_eq(x->status, 400);
    sse_close(x);
}
END_TEST

/* ---- exec admission ---- */

/* A webhook that misbehaves as told: answers late, or with garbage.  */
static int g_mock_fd = -1, g_mock_port;
static volatile int g_mock_mode; /* 0: garbage, 1: slow */

static void *mock_main(void *arg)
{
    for (;;) {
        int c = accept(g_mock_fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[8192];
        (void)!read(c, buf, sizeof(buf));
        if (g_mock_mode == 1)
            usleep(1500 * 1000);
        const char *reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: 9\r\nConnection: close\r\n\r\nnot json!";
        (void)!write(c, reply, strlen(reply));
        close(c);
    }
}

static void mock_start(void)
{
    g_mock_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(g_mock_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    getsockname(g_mock_fd, (struct sockaddr *)&a, &l);
    g_mock_port = ntohs(a.sin_port);
    ck_assert_int_eq(listen(g_mock_fd, 16), 0);
    pthread_t t;
    pthread_create(&t, NULL, mock_main, NULL);
    pthread_detach(t);
}

static void put_policy(const char *policy)
{
    _cleanup_free_ char *gp = xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/"
                                        "Microsoft.App/sandboxGroups/" GROUP API);
    _cleanup_free_ char *body =
        xasprintf("{\"location\":\"westus\",\"properties\":{\"execPolicy\":%s}}", policy);
    json_t *j = NULL;
    long st = call("PUT", gp, body, &j);
    ck_assert_msg(st == 200 || st == 201, "PUT execPolicy: %ld %s", st, err_code(j));
    json_decref(j);
}

static long exec_body(const char *body, json_t **out)
{
    _cleanup_free_ char *p = sb_path("p1", "/exec");
    return call("POST", p, body, out);
}

static void expect_denied(const char *body, const char *reason_part)
{
    json_t *j = NULL;
    long st = exec_body(body, &j);
    ck_assert_msg(st == 403, "%s: %ld", body, st);
    ck_assert_str_eq(err_code(j), "ExecDenied");
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    ck_assert_msg(msg && strstr(msg, reason_part), "%s: denied with '%s'", body, msg);
    json_decref(j);
}

START_TEST(test_exec_admission)
{
    /* The allow list.  */
    put_policy("{\"allowedExecutables\":[\"echo\",\"/bin/cat\",\"sh\",\"python3\"]}");
    ck_assert_int_eq(exec_body("{\"command\":[\"echo\",\"ok\"]}", NULL), 200);
    expect_denied("{\"command\":[\"ls\"]}", "allowed executables");
    expect_denied("{\"command\":[\"/bin/echo\",\"x\"]}", "allowed executables");
    expect_denied("{\"command\":[\"cat\"]}", "allowed executables");
    _cleanup_free_ char *procs = sb_path("p1", "/processes");
    json_t *j = NULL;
    ck_assert_int_eq(call("POST", procs, "{\"command\":[\"id\"]}", &j), 403);
    ck_assert_str_eq(err_code(j), "ExecDenied");
    json_decref(j);

    /* The example scanner as the webhook, with a secret.  */
    int port = tu_free_port();
    _cleanup_free_ char *scanner = tu_src("examples/exec-admission/scanner.py");
    _cleanup_free_ char *listen = xasprintf("127.0.0.1:%d", port);
    char *argv[] = {"/usr/bin/env", "python3", scanner, "--listen", listen, NULL};
    char *env[] = {"SCANNER_SECRET=s3cret", NULL};
    _cleanup_free_ char *slog = xasprintf("%s/scanner.log", g_root);
    pid_t spid = tu_spawn(argv, env, slog);
    ck_assert(tu_wait_port(port, 10000));
    _cleanup_free_ char *pol =
        xasprintf("{\"webhook\":{\"url\":\"http://127.0.0.1:%d/admit\",\"secret\":\"s3cret\","
                  "\"failurePolicy\":\"Deny\",\"timeoutMs\":5000}}",
                  port);
    put_policy(pol);
    /* The secret is not served.  */
    _cleanup_free_ char *gp = xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/"
                                        "Microsoft.App/sandboxGroups/" GROUP API);
    ck_assert_int_eq(call("GET", gp, NULL, &j), 200);
    json_t *hook =
        json_object_get(json_object_get(json_object_get(j, "properties"), "execPolicy"), "webhook");
    ck_assert(json_is_true(json_object_get(hook, "hasSecret")));
    ck_assert_ptr_null(json_object_get(hook, "secret"));
    _cleanup_free_ char *served = json_dumps(j, JSON_COMPACT);
    ck_assert_ptr_null(strstr(served, "s3cret"));
    json_decref(j);
    ck_assert_int_eq(exec_body("{\"command\":[\"python3\",\"-c\",\"print(6*7)\"]}", &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "stdout")), g_python ? "42\n" : "");
    json_decref(j);
    expect_denied("{\"command\":[\"python3\",\"-c\",\"import socket\"]}", "imports socket");
    expect_denied("{\"command\":[\"sh\",\"-ec\",\"wget http://x\"]}", "network");
    ck_assert_int_eq(call("POST", procs, "{\"command\":[\"sh\",\"-c\",\"curl x\"]}", NULL), 403);
    /* A wrong secret: the scanner says 401, a failure, and Deny holds.  */
    pol = (free(pol), xasprintf("{\"webhook\":{\"url\":\"http://127.0.0.1:%d/admit\",\"secret\":"
                                "\"wrong\",\"failurePolicy\":\"Deny\"}}",
                                port));
    put_policy(pol);
    expect_denied("{\"command\":[\"echo\",\"x\"]}", "answered with an error");
    tu_stop(spid, 5000);

    /* A webhook that answers too late, failing closed and open; one that
     * answers garbage.  */
    mock_start();
    g_mock_mode = 1;
    pol = (free(pol), xasprintf("{\"webhook\":{\"url\":\"http://127.0.0.1:%d/\","
                                "\"timeoutMs\":300,\"failurePolicy\":\"Deny\"}}",
                                g_mock_port));
    put_policy(pol);
    int64_t t0 = sbx_monotonic_ms();
    expect_denied("{\"command\":[\"echo\",\"x\"]}", "in time");
    ck_assert_int_lt(sbx_monotonic_ms() - t0, 1400);
    pol = (free(pol), xasprintf("{\"webhook\":{\"url\":\"http://127.0.0.1:%d/\","
                                "\"timeoutMs\":300,\"failurePolicy\":\"Allow\"}}",
                                g_mock_port));
    put_policy(pol);
    ck_assert_int_eq(exec_body("{\"command\":[\"echo\",\"x\"]}", NULL), 200);
    g_mock_mode = 0;
    ck_assert_int_eq(exec_body("{\"command\":[\"echo\",\"x\"]}", NULL), 200);
    pol = (free(pol), xasprintf("{\"webhook\":{\"url\":\"http://127.0.0.1:%d/\","
                                "\"failurePolicy\":\"Deny\"}}",
                                g_mock_port));
    put_policy(pol);
    expect_denied("{\"command\":[\"echo\",\"x\"]}", "not {\"allow\": bool}");
    /* Bad policies.  */
    _cleanup_free_ char *bad1 = xasprintf("{\"location\":\"westus\",\"properties\":{\"execPolicy\":"
                                          "{\"allowedExecutables\":[\"a/b\"]}}}");
    ck_assert_int_eq(call("PUT", gp, bad1, NULL), 400);
    ck_assert_int_eq(call("PUT", gp,
                          "{\"location\":\"westus\",\"properties\":{\"execPolicy\":{\"webhook\":"
                          "{\"url\":\"ftp://x\"}}}}",
                          NULL),
                     400);
    put_policy("null");
    ck_assert_int_eq(exec_body("{\"command\":[\"ls\"]}", NULL), 200);
}
END_TEST

/* Commands as a user of the sandbox's own /etc/passwd: its uid, gid and
 * groups, its HOME; root's files are out of its reach.  */
START_TEST(test_user)
{
    json_t *j = NULL;
    ck_assert_int_eq(exec_body("{\"command\":[\"sh\",\"-c\",\"echo alice:x:1000:1000::/home/"
                               "alice:/bin/sh >> /etc/passwd && echo alice:x:1000: >> /etc/group "
                               "&& echo devs:x:2000:bob,alice >> /etc/group && echo secret > "
                               "/root-only && chmod 600 /root-only\"]}",
                               &j),
                     200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "exitCode")), 0);
    json_decref(j);
    const char *as[] = {"alice", "1000"};
    for (size_t i = 0; i < ARRAY_SIZE(as); i++) {
        _cleanup_free_ char *b = xasprintf(
            "{\"command\":[\"sh\",\"-c\",\"id; echo $HOME; echo x > /etc/x || echo no-etc; "
            "cat /root-only || echo no-read; echo y >> /root-only || echo no-write\"],"
            "\"user\":\"%s\"}",
            as[i]);
        ck_assert_int_eq(exec_body(b, &j), 200);
        const char *out = json_string_value(json_object_get(j, "stdout"));
        ck_assert_msg(strstr(out, "uid=1000(alice) gid=1000(alice) groups=1000(alice),2000(devs)"),
                      "%s: %s", as[i], out);
        ck_assert_msg(strstr(out, "/home/alice\nno-etc\nno-read\nno-write\n"), "%s", out);
        json_decref(j);
    }
    /* A process too, and a uid the sandbox has no entry for.  */
    start("p1", "{\"command\":[\"id\"],\"user\":\"4242\",\"tag\":\"asuser\"}");
    sse_t *x = attach("p1", "asuser", NULL);
    json_decref(sse_exit(x, 10000));
    _cleanup_free_ char *out = sse_output(x);
    ck_assert_msg(strncmp(out, "uid=4242 gid=0", 14) == 0, "%s", out);
    sse_close(x);
    /* The file root wrote is as it was.  */
    ck_assert_int_eq(exec_body("{\"command\":[\"cat\",\"/root-only\"]}", &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "stdout")), "secret\n");
    json_decref(j);
    ck_assert_int_eq(exec_body("{\"command\":[\"id\"],\"user\":\"nosuchuser\"}", &j), 400);
    ck_assert_str_eq(err_code(j), "UserNotFound");
    json_decref(j);
}
END_TEST

/* Last: neither sandboxd nor its agent reported a sanitizer error (nor
 * was the agent restarted after a crash).  */
START_TEST(test_no_crash)
{
    _cleanup_free_ char *log = NULL;
    size_t len = 0;
    ck_assert_int_eq(sbx_read_file(g_log, &log, &len, NULL), 0);
    ck_assert_msg(!strstr(log, "ERROR: AddressSanitizer") && !strstr(log, "runtime error:"),
                  "a sanitizer report in %s", g_log);
    ck_assert_msg(!strstr(log, "sandbox-agent exited"), "the agent crashed: %s", g_log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("agent_processes_e2e");
    TCase *tc = tcase_create("processes");
    tcase_add_unchecked_fixture(tc, global_setup, global_teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_output_before_end);
    tcase_add_test(tc, test_reattach_after_disconnect);
    tcase_add_test(tc, test_stdin_and_terminal);
    tcase_add_test(tc, test_signals);
    tcase_add_test(tc, test_big_output_backpressure);
    tcase_add_test(tc, test_many_streams);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_delete_ends_streams);
    tcase_add_test(tc, test_hostile_input);
    tcase_add_test(tc, test_exec_admission);
    tcase_add_test(tc, test_user);
    tcase_add_test(tc, test_no_crash);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
