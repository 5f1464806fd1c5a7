/* test_agent_process_ws_e2e.c -- a process's stream as a WebSocket end to
 * end: the real sandboxd and its local sandbox-agent, real sandboxes, and a
 * minimal WebSocket client written here (masked frames, raw sockets) that
 * also sends the frames a client must not.  */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "tests/testutil.h"

#define SUB "00000000-0000-0000-0000-0000000000a9"
#define TOKEN "procs-ws-token"
#define API "?api-version=2026-07-01"
#define GROUP "procsws"
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static char *g_root, *g_image, *g_data, *g_log, *g_base;
static int g_port;
static pid_t g_pid = -1;

static int run_sh(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

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

static bool sandbox_running(const char *p)
{
    json_t *j = NULL;
    call("GET", p, NULL, &j);
    const char *state =
        json_string_value(json_object_get(json_object_get(j, "properties"), "state"));
    bool running = state && strcmp(state, "Running") == 0;
    json_decref(j);
    return running;
}

static int start(const char *body)
{
    _cleanup_free_ char *p = sb_path("w1", "/processes");
    json_t *j = NULL;
    long st = call("POST", p, body, &j);
    ck_assert_msg(st == 201, "start %s: %ld", body, st);
    int pid = (int)json_integer_value(json_object_get(j, "pid"));
    json_decref(j);
    return pid;
}

static json_t *proc_status(const char *proc)
{
    _cleanup_free_ char *suffix = xasprintf("/processes/%s", proc);
    _cleanup_free_ char *p = sb_path("w1", suffix);
    json_t *j = NULL;
    ck_assert_int_eq(call("GET", p, NULL, &j), 200);
    return j;
}

/* ---- a minimal WebSocket client ---- */

typedef struct wsc {
    int fd;
    unsigned char buf[1 << 17];
    size_t len;
} wsc_t;

/* Read until n bytes are buffered, within the deadline.  */
static bool wsc_fill(wsc_t *c, size_t n, int64_t deadline)
{
    while (c->len < n) {
        int left = (int)(deadline - sbx_monotonic_ms());
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return false;
        ssize_t k = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (k <= 0)
            return false;
        c->len += (size_t)k;
    }
    return true;
}

/* Open the stream of proc with extra request headers; the HTTP status
 * (101 leaves c connected).  */
static long wsc_open(wsc_t *c, const char *proc, const char *version)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    _cleanup_free_ char *suffix = xasprintf("/processes/%s/stream", proc);
    _cleanup_free_ char *path = sb_path("w1", suffix);
    _cleanup_free_ char *req =
        xasprintf("GET %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " TOKEN "\r\n"
                  "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                  "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: %s\r\n\r\n",
                  path, version);
    ck_assert_int_eq(send(c->fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
    int64_t deadline = sbx_monotonic_ms() + 30000;
    char *end = NULL;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
        ck_assert_msg(wsc_fill(c, c->len + 1, deadline), "no reply head");
    size_t head = (size_t)(end - (char *)c->buf) + 4;
    long status = strtol((char *)c->buf + 9, NULL, 10);
    if (status == 101)
        /* The accept key of the RFC's own example key.  */
        ck_assert_ptr_nonnull(memmem(c->buf, head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28));
    memmove(c->buf, c->buf + head, c->len - head);
    c->len -= head;
    return status;
}

static void wsc_close(wsc_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* A frame as given (raw header byte b0, masked or not).  */
static void wsc_send_raw(wsc_t *c, unsigned b0, bool mask, const void *data, size_t n)
{
    unsigned char *f = xmalloc(n + 14);
    size_t h = 0;
    f[h++] = (unsigned char)b0;
    unsigned char m = mask ? 0x80 : 0;
    if (n < 126) {
        f[h++] = (unsigned char)(m | n);
    } else if (n <= 0xffff) {
        f[h++] = m | 126;
        f[h++] = (unsigned char)(n >> 8);
        f[h++] = (unsigned char)n;
    } else {
        f[h++] = m | 127;
        for (int i = 0; i < 8; i++)
            f[h++] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    }
    unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (mask) {
        memcpy(f + h, key, 4);
        h += 4;
    }
    for (size_t i = 0; i < n; i++)
        f[h + i] = ((const unsigned char *)data)[i] ^ (mask ? key[i & 3] : 0);
    /* The server may close before it has read all of a frame it refuses.  */
    (void)send(c->fd, f, h + n, MSG_NOSIGNAL);
    free(f);
}

static void wsc_send(wsc_t *c, int op, const char *data, size_t n)
{
    wsc_send_raw(c, 0x80u | (unsigned)op, true, data, n);
}

static void wsc_text(wsc_t *c, const char *s)
{
    wsc_send(c, 1, s, strlen(s));
}

/* The next frame: its opcode (payload in *out, NUL-terminated, to free),
 * or -1 when none came in time or the connection ended.  */
static int wsc_recv(wsc_t *c, char **out, size_t *n, int timeout_ms)
{
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    if (!wsc_fill(c, 2, deadline))
        return -1;
    ck_assert_msg(!(c->buf[1] & 0x80), "a server frame must not be masked");
    size_t h = 2;
    uint64_t len = c->buf[1] & 0x7f;
    if (len == 126) {
        if (!wsc_fill(c, 4, deadline))
            return -1;
        len = (uint64_t)c->buf[2] << 8 | c->buf[3];
        h = 4;
    } else if (len == 127) {
        if (!wsc_fill(c, 10, deadline))
            return -1;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | c->buf[2 + i];
        h = 10;
    }
    ck_assert_uint_lt(len, sizeof(c->buf) - 16);
    if (!wsc_fill(c, h + (size_t)len, deadline))
        return -1;
    int op = c->buf[0] & 0x0f;
    *out = xmalloc((size_t)len + 1);
    memcpy(*out, c->buf + h, (size_t)len);
    (*out)[len] = '\0';
    *n = (size_t)len;
    memmove(c->buf, c->buf + h + len, c->len - h - (size_t)len);
    c->len -= h + (size_t)len;
    return op;
}

/* What the stream says until its close (or want appears in the output):
 * output bytes by tag into out, the JSON events' types into types.  */
typedef struct seen {
    char out[4][1 << 16];
    size_t out_len[4];
    uint64_t total;
    char types[256];
    json_t *exit;
    int close_code;
    char close_reason[128];
} seen_t;

static bool wsc_read_until(wsc_t *c, seen_t *s, const char *want, int timeout_ms)
{
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    for (;;) {
        if (want && strstr(s->out[1], want))
            return true;
        if (want && strstr(s->out[3], want))
            return true;
        int left = (int)(deadline - sbx_monotonic_ms());
        char *d = NULL;
        size_t n = 0;
        int op = left > 0 ? wsc_recv(c, &d, &n, left) : -1;
        if (op < 0)
            return false;
        if (op == 2) {
            ck_assert_uint_ge(n, 1);
            int tag = (unsigned char)d[0];
            ck_assert_msg(tag >= 1 && tag <= 3, "stream tag %d", tag);
            size_t room = sizeof(s->out[tag]) - 1 - s->out_len[tag];
            size_t k = n - 1 < room ? n - 1 : room;
            memcpy(s->out[tag] + s->out_len[tag], d + 1, k);
            s->out_len[tag] += k;
            s->out[tag][s->out_len[tag]] = '\0';
            s->total += n - 1;
        } else if (op == 1) {
            json_t *j = json_loads(d, 0, NULL);
            const char *type = json_string_value(json_object_get(j, "type"));
            ck_assert_msg(type, "a text frame without a type: %s", d);
            snprintf(s->types + strlen(s->types), sizeof(s->types) - strlen(s->types), "%s ", type);
            if (!strcmp(type, "exit")) {
                json_decref(s->exit);
                s->exit = json_incref(j);
            }
            json_decref(j);
        } else if (op == 9) {
            wsc_send(c, 10, d, n);
        } else if (op == 8) {
            s->close_code = n >= 2 ? ((unsigned char)d[0] << 8 | (unsigned char)d[1]) : 1005;
            snprintf(s->close_reason, sizeof(s->close_reason), "%.*s", (int)(n > 2 ? n - 2 : 0),
                     d + 2);
            free(d);
            return !want;
        }
        free(d);
    }
}

/* ---- the cluster ---- */

static void global_setup(void)
{
    g_root = tu_tmpdir("sbx-procws");
    const char *real = getenv("SBX_DEFAULT_IMAGE");
    _cleanup_free_ char *index = real ? xasprintf("%s/index.json", real) : NULL;
    if (index && access(index, R_OK) == 0) {
        g_image = xstrdup(real);
    } else {
        g_image = xasprintf("%s/busybox-layout", g_root);
        _cleanup_free_ char *script = tu_src("tests/fixtures/make-busybox-layout.sh");
        _cleanup_free_ char *cmd = xasprintf("'%s' '%s'", script, g_image);
        ck_assert_int_eq(run_sh(cmd), 0);
    }
    g_data = xasprintf("%s/data", g_root);
    g_log = xasprintf("%s/sandboxd.log", g_root);
    g_port = tu_free_port();
    g_base = xasprintf("http://127.0.0.1:%d", g_port);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", g_port);
    _cleanup_free_ char *bin = tu_bin("sandboxd");
    _cleanup_free_ char *agent = tu_bin("sandbox-agent");
    char *argv[] = {bin,   "--listen",        listen,  "--data-dir",  g_data, "--auth-token",
                    TOKEN, "--default-image", g_image, "--agent-bin", agent,  NULL};
    _cleanup_free_ char *cg = xasprintf("SANDBOX_AGENT_CGROUP_PARENT=sbx-procws-%d", (int)getpid());
    char *env[] = {cg, "SANDBOXD_OVERCOMMIT_PIDS=8", "SANDBOXD_OVERCOMMIT_CPU=64", NULL};
    g_pid = tu_spawn(argv, env, g_log);
    ck_assert_msg(tu_wait_port(g_port, 20000), "sandboxd did not listen");
    _cleanup_free_ char *gp = xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/"
                                        "Microsoft.App/sandboxGroups/" GROUP API);
    int64_t deadline = sbx_monotonic_ms() + 30000;
    long st;
    while ((st = call("PUT", gp, "{\"location\":\"westus\",\"properties\":{}}", NULL)) != 201 &&
           st != 200 && sbx_monotonic_ms() < deadline)
        usleep(100000);
    ck_assert_msg(st == 201 || st == 200, "PUT group: %ld", st);
    _cleanup_free_ char *p = sb_path("w1", NULL);
    st = call("PUT", p, "{\"properties\":{}}", NULL);
    ck_assert_msg(st == 201 || st == 200, "PUT sandbox: %ld", st);
    ck_assert_msg(tu_wait_until(sandbox_running(p), 60000), "the sandbox never ran");
}

static void global_teardown(void)
{
    if (g_pid > 0) {
        _cleanup_free_ char *p = sb_path("w1", NULL);
        call("DELETE", p, NULL, NULL);
        tu_wait_until(call("GET", p, NULL, NULL) == 404, 60000);
        _cleanup_free_ char *gp = xasprintf("/subscriptions/" SUB "/resourceGroups/rg/providers/"
                                            "Microsoft.App/sandboxGroups/" GROUP API);
        call("DELETE", gp, NULL, NULL);
        tu_wait_until(call("GET", gp, NULL, NULL) == 404, 60000);
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

/* stdin as binary and text messages, end of input, the exit event, and
 * the close handshake.  */
START_TEST(test_stdin_round_trip)
{
    int pid = start("{\"command\":[\"cat\"],\"stdin\":true}");
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", pid);
    wsc_t *c = xcalloc(1, sizeof(*c));
    seen_t *s = xcalloc(1, sizeof(*s));
    ck_assert_int_eq(wsc_open(c, ps, "13"), 101);
    wsc_send(c, 2, "hello ", 6);
    wsc_text(c, "{\"type\":\"stdin\",\"data\":\"world\\n\"}");
    ck_assert_msg(wsc_read_until(c, s, "hello world\n", 10000), "got: %s", s->out[1]);
    ck_assert_ptr_nonnull(strstr(s->types, "start "));
    /* A refused message is said, and the session goes on.  */
    wsc_text(c, "{\"type\":\"resize\",\"rows\":3,\"cols\":4}");
    wsc_text(c, "not json");
    wsc_text(c, "{\"type\":\"eof\"}");
    ck_assert(wsc_read_until(c, s, NULL, 10000));
    ck_assert_str_eq(s->types, "start error error exit ");
    ck_assert_int_eq(s->close_code, 1000);
    ck_assert_int_eq(json_integer_value(json_object_get(s->exit, "exitCode")), 0);
    /* Our close is answered by none: the server closed first, and the
     * connection ends.  */
    unsigned char code[2] = {0x03, 0xe8};
    wsc_send(c, 8, (char *)code, 2);
    char *d = NULL;
    size_t n;
    ck_assert_int_eq(wsc_recv(c, &d, &n, 10000), -1);
    wsc_close(c);
    json_decref(s->exit);
    free(s);
    free(c);
}
END_TEST

/* A terminal: the resize is seen by stty, and a signal ends the shell.  */
START_TEST(test_terminal_resize_and_signal)
{
    int pid = start("{\"command\":[\"sh\"],\"pty\":{\"rows\":24,\"cols\":80}}");
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", pid);
    wsc_t *c = xcalloc(1, sizeof(*c));
    seen_t *s = xcalloc(1, sizeof(*s));
    ck_assert_int_eq(wsc_open(c, ps, "13"), 101);
    wsc_text(c, "{\"type\":\"resize\",\"rows\":33,\"cols\":101}");
    wsc_send(c, 2, "stty size\n", 10);
    ck_assert_msg(wsc_read_until(c, s, "33 101", 10000), "got: %s", s->out[3]);
    wsc_text(c, "{\"type\":\"signal\",\"signal\":\"KILL\"}");
    ck_assert(wsc_read_until(c, s, NULL, 10000));
    ck_assert_int_eq(json_integer_value(json_object_get(s->exit, "signal")), 9);
    wsc_close(c);
    json_decref(s->exit);
    free(s);
    free(c);
}
END_TEST

/* A client that leaves (without a close) leaves the process running; it
 * is attached again by tag and all of its output is there.  */
START_TEST(test_disconnect_keeps_process)
{
    int pid = start("{\"command\":[\"sh\",\"-c\",\"echo one; read x; echo two $x\"],"
                    "\"stdin\":true,\"tag\":\"wsdetach\"}");
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", pid);
    wsc_t *c = xcalloc(1, sizeof(*c));
    seen_t *s = xcalloc(1, sizeof(*s));
    ck_assert_int_eq(wsc_open(c, "wsdetach", "13"), 101);
    ck_assert(wsc_read_until(c, s, "one\n", 10000));
    wsc_close(c);
    usleep(300000);
    json_t *j = proc_status(ps);
    ck_assert(json_is_true(json_object_get(j, "running")));
    json_decref(j);
    memset(s, 0, sizeof(*s));
    ck_assert_int_eq(wsc_open(c, ps, "13"), 101);
    wsc_send(c, 2, "back\n", 5);
    ck_assert(wsc_read_until(c, s, NULL, 10000));
    ck_assert_str_eq(s->out[1], "one\ntwo back\n");
    ck_assert_int_eq(s->close_code, 1000);
    wsc_close(c);
    json_decref(s->exit);
    free(s);
    free(c);
}
END_TEST

/* Frames a client must not send get a close with the matching code; the
 * process is untouched.  Bad handshakes are plain HTTP errors.  */
START_TEST(test_bad_frames)
{
    int pid = start("{\"command\":[\"sleep\",\"60\"],\"stdin\":true}");
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", pid);
    static const struct {
        const char *what;
        unsigned b0;
        bool mask;
        size_t len;
        int code;
    } bad[] = {
        {"unmasked", 0x82, false, 1, 1002},
        {"opcode 3", 0x83, true, 1, 1002},
        {"reserved bit", 0xc2, true, 1, 1002},
        {"oversized", 0x82, true, (256u << 10) + 1, 1009},
        {"long ping", 0x89, true, 126, 1002},
        {"fragmented ping", 0x09, true, 1, 1002},
        {"stray continuation", 0x80, true, 1, 1002},
    };
    wsc_t *c = xcalloc(1, sizeof(*c));
    seen_t *s = xcalloc(1, sizeof(*s));
    char *payload = xcalloc(1, (256u << 10) + 1);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        memset(s, 0, sizeof(*s));
        ck_assert_int_eq(wsc_open(c, ps, "13"), 101);
        wsc_send_raw(c, bad[i].b0, bad[i].mask, payload, bad[i].len);
        ck_assert_msg(wsc_read_until(c, s, NULL, 10000), "%s: no close", bad[i].what);
        ck_assert_msg(s->close_code == bad[i].code, "%s: close %d (%s)", bad[i].what, s->close_code,
                      s->close_reason);
        wsc_close(c);
    }
    /* Text that is not UTF-8.  */
    memset(s, 0, sizeof(*s));
    ck_assert_int_eq(wsc_open(c, ps, "13"), 101);
    wsc_send(c, 1, "\xff\xfe", 2);
    ck_assert(wsc_read_until(c, s, NULL, 10000));
    ck_assert_int_eq(s->close_code, 1007);
    wsc_close(c);
    /* A ping is answered with its payload; a fragmented message is joined.  */
    ck_assert_int_eq(wsc_open(c, ps, "13"), 101);
    wsc_send(c, 9, "abc", 3);
    char *d = NULL;
    size_t n = 0;
    int op;
    while ((op = wsc_recv(c, &d, &n, 10000)) == 1) /* the start event */
        free(d);
    ck_assert_int_eq(op, 10);
    ck_assert_str_eq(d, "abc");
    free(d);
    wsc_send_raw(c, 0x01, true, "{\"type\":", 8);
    wsc_send(c, 9, "x", 1); /* a ping between fragments is allowed */
    wsc_send_raw(c, 0x80, true, "\"nope\"}", 7);
    bool refused = false;
    while (!refused && (op = wsc_recv(c, &d, &n, 10000)) > 0) {
        refused = op == 1 && strstr(d, "InvalidMessage");
        free(d);
    }
    ck_assert(refused);
    wsc_close(c);

    ck_assert_int_eq(wsc_open(c, ps, "8"), 426);
    wsc_close(c);
    ck_assert_int_eq(wsc_open(c, "99999999", "13"), 404);
    wsc_close(c);
    json_t *j = proc_status(ps);
    ck_assert(json_is_true(json_object_get(j, "running")));
    json_decref(j);
    free(payload);
    free(s);
    free(c);
}
END_TEST

/* 8 MB through a reader that stops for 2 s: every byte arrives, none is
 * lost, and sandboxd holds no more than its bounded buffers meanwhile.  */
START_TEST(test_slow_reader)
{
    /* It waits for the reader to attach: a late one misses what fell out
     * of the host's ring.  */
    int pid = start("{\"command\":[\"sh\",\"-c\",\"sleep 1; head -c 8000000 /dev/zero\"]}");
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", pid);
    wsc_t *c = xcalloc(1, sizeof(*c));
    seen_t *s = xcalloc(1, sizeof(*s));
    ck_assert_int_eq(wsc_open(c, ps, "13"), 101);
    sleep(2);
    ck_assert(wsc_read_until(c, s, NULL, 60000));
    ck_assert_uint_eq(s->total, 8000000);
    ck_assert_ptr_null(strstr(s->types, "gap"));
    ck_assert_int_eq(s->close_code, 1000);
    wsc_close(c);
    json_decref(s->exit);
    free(s);
    free(c);
}
END_TEST

START_TEST(test_no_crash)
{
    _cleanup_free_ char *log = NULL;
    size_t len = 0;
    ck_assert_int_eq(sbx_read_file(g_log, &log, &len, NULL), 0);
    ck_assert_msg(!strstr(log, "ERROR: AddressSanitizer") && !strstr(log, "runtime error:"),
                  "a sanitizer report in %s", g_log);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("agent_process_ws_e2e");
    TCase *tc = tcase_create("websocket");
    tcase_add_unchecked_fixture(tc, global_setup, global_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_stdin_round_trip);
    tcase_add_test(tc, test_terminal_resize_and_signal);
    tcase_add_test(tc, test_disconnect_keeps_process);
    tcase_add_test(tc, test_bad_frames);
    tcase_add_test(tc, test_slow_reader);
    tcase_add_test(tc, test_no_crash);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
