/* test_runtime_microvm_protocol.c -- the host side of the microvm guest
 * agent's protocol against a fake, hostile guest (a thread serving the
 * VM's agent.sock): oversized frames, bad JSON, wrong types and ranges,
 * bad base64, output past the cap asked for, path names in a listing, and
 * stale replies to earlier requests.  No VM is started.  */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/microvm.h"
#include "tests/testutil.h"

typedef struct frame {
    const char *body; /* "%ID%" is replaced by the request's id */
    uint32_t len;     /* 0: the body's length */
} frame_t;

typedef struct fake {
    int lfd;
    const frame_t *frames;
    size_t n;
} fake_t;

static char *g_dir;
static int g_dirfd = -1;

static bool read_n(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static void *fake_run(void *ud)
{
    fake_t *f = ud;
    int c = accept(f->lfd, NULL, NULL);
    unsigned char hdr[4];
    if (c < 0 || !read_n(c, hdr, 4))
        return NULL;
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    char *body = xmalloc(len + 1);
    if (!read_n(c, body, len)) {
        free(body);
        close(c);
        return NULL;
    }
    json_t *req = json_loadb(body, len, 0, NULL);
    free(body);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(req, "id")));
    json_decref(req);
    for (size_t i = 0; i < f->n; i++) {
        char *text = xstrdup(f->frames[i].body);
        char *at;
        while ((at = strstr(text, "%ID%"))) {
            *at = 0;
            char *next = xasprintf("%s%s%s", text, id, at + 4);
            free(text);
            text = next;
        }
        uint32_t n = f->frames[i].len ? f->frames[i].len : (uint32_t)strlen(text);
        unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                              (unsigned char)(n >> 8), (unsigned char)n};
        /* The host may hang up early: no SIGPIPE.  */
        (void)!send(c, h, 4, MSG_NOSIGNAL);
        (void)!send(c, text, strlen(text), MSG_NOSIGNAL);
        free(text);
    }
    close(c);
    return NULL;
}

/* Serve `frames` to the next connection on <dir>/agent.sock.  */
static pthread_t fake_start(fake_t *f, const frame_t *frames, size_t n)
{
    _cleanup_free_ char *path = xasprintf("%s/" MV_AGENT_SOCK, g_dir);
    unlink(path);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f->lfd, 0);
    ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(f->lfd, 4), 0);
    f->frames = frames;
    f->n = n;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, fake_run, f), 0);
    return t;
}

static void fake_done(fake_t *f, pthread_t t)
{
    pthread_join(t, NULL);
    close(f->lfd);
}

/* One call against frames; its result, *reply when it worked.  */
static int call_with(const frame_t *frames, size_t n, size_t reply_max, json_t **reply,
                     sbx_error_t *err)
{
    fake_t f;
    pthread_t t = fake_start(&f, frames, n);
    json_t *req = json_pack("{s:s}", "op", "health");
    int r = mv_agent_call(g_dirfd, req, reply_max, sbx_monotonic_ms() + 5000, reply, err);
    json_decref(req);
    fake_done(&f, t);
    return r;
}

static void setup(void)
{
    g_dir = tu_tmpdir("sbx-mvproto");
    ck_assert_ptr_nonnull(g_dir);
    g_dirfd = open(g_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(g_dirfd, 0);
}

static void teardown(void)
{
    close(g_dirfd);
    tu_rmdir(g_dir);
    free(g_dir);
}

START_TEST(test_microvm_protocol_frames)
{
    sbx_error_t err = {0};
    json_t *reply = NULL;
    const frame_t good[] = {{"{\"ok\":true,\"id\":%ID%,\"kernel\":\"6.1\"}", 0}};
    ck_assert_msg(call_with(good, 1, 4096, &reply, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(json_string_value(json_object_get(reply, "kernel")), "6.1");
    json_decref(reply);

    /* A reply to an earlier request first: skipped.  */
    const frame_t stale[] = {{"{\"ok\":true,\"id\":-5,\"kernel\":\"old\"}", 0},
                             {"{\"ok\":true,\"id\":%ID%,\"kernel\":\"new\"}", 0}};
    ck_assert_msg(call_with(stale, 2, 4096, &reply, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(json_string_value(json_object_get(reply, "kernel")), "new");
    json_decref(reply);

    /* A length past every bound is refused before anything is allocated.  */
    const frame_t huge[] = {{"{}", 0xffffffffu}};
    ck_assert_int_eq(call_with(huge, 1, 4096, &reply, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INTERNAL);

    /* Not JSON, not an object, no "ok", duplicate keys.  */
    const char *const bad[] = {"not json", "[1,2]", "{\"id\":%ID%}",
                               "{\"ok\":true,\"ok\":false,\"id\":%ID%}"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        const frame_t fr[] = {{bad[i], 0}};
        ck_assert_msg(call_with(fr, 1, 4096, &reply, &err) == -1, "%s accepted", bad[i]);
        ck_assert_int_eq(err.code, SBX_ERR_INTERNAL);
    }

    /* Replies that never answer this request.  */
    frame_t others[10];
    for (size_t i = 0; i < ARRAY_SIZE(others); i++)
        others[i] = (frame_t){"{\"ok\":true,\"id\":1}", 0};
    ck_assert_int_eq(call_with(others, ARRAY_SIZE(others), 4096, &reply, &err), -1);

    /* The guest goes away mid-reply.  */
    const frame_t cut[] = {{"{\"ok\":true", 100}};
    ck_assert_int_eq(call_with(cut, 1, 4096, &reply, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_CONFLICT);
}
END_TEST

/* An exec's result as the host takes it from a reply body.  */
static int exec_with(const char *body, size_t cap, rt_exec_result_t *out, sbx_error_t *err)
{
    rt_sandbox_t sb = {.dir = g_dir, .state = RT_STATE_RUNNING};
    snprintf(sb.id, sizeof sb.id, "proto");
    pthread_rwlock_init(&sb.lock, NULL);
    pthread_rwlock_rdlock(&sb.lock); /* mv_exec releases it */
    const frame_t fr[] = {{body, 0}};
    fake_t f;
    pthread_t t = fake_start(&f, fr, 1);
    char *argv[] = {"true", NULL};
    rt_exec_request_t req = {.argv = argv, .output_cap = cap, .timeout_ms = 2000};
    memset(out, 0, sizeof *out);
    int r = mv_exec(NULL, &sb, &req, out, err);
    fake_done(&f, t);
    pthread_rwlock_destroy(&sb.lock);
    return r;
}

START_TEST(test_microvm_protocol_exec)
{
    sbx_error_t err = {0};
    rt_exec_result_t out;
    const char *ok = "{\"ok\":true,\"id\":%ID%,\"exit\":3,\"signal\":0,\"timed_out\":false,"
                     "\"stdout\":\"aGk=\",\"stderr\":\"\"}";
    ck_assert_msg(exec_with(ok, 100, &out, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(out.exit_code, 3);
    ck_assert_str_eq(out.out, "hi");
    ck_assert_uint_eq(out.err_len, 0);
    rt_exec_result_done(&out);

    const char *const bad[] = {
        /* exit code and signal out of range, wrong types */
        "{\"ok\":true,\"id\":%ID%,\"exit\":999,\"signal\":0,\"timed_out\":false,\"stdout\":\"\","
        "\"stderr\":\"\"}",
        "{\"ok\":true,\"id\":%ID%,\"exit\":0,\"signal\":-1,\"timed_out\":false,\"stdout\":\"\","
        "\"stderr\":\"\"}",
        "{\"ok\":true,\"id\":%ID%,\"exit\":\"0\",\"signal\":0,\"timed_out\":false,\"stdout\":\"\","
        "\"stderr\":\"\"}",
        "{\"ok\":true,\"id\":%ID%,\"exit\":0,\"signal\":0,\"timed_out\":1,\"stdout\":\"\","
        "\"stderr\":\"\"}",
        /* bad base64; a missing stream */
        "{\"ok\":true,\"id\":%ID%,\"exit\":0,\"signal\":0,\"timed_out\":false,\"stdout\":\"a*==\","
        "\"stderr\":\"\"}",
        "{\"ok\":true,\"id\":%ID%,\"exit\":0,\"signal\":0,\"timed_out\":false,\"stdout\":\"aGk\","
        "\"stderr\":\"\"}",
        "{\"ok\":true,\"id\":%ID%,\"exit\":0,\"signal\":0,\"timed_out\":false,\"stdout\":\"\"}",
        /* more output than the cap asked for (8 bytes > 4) */
        "{\"ok\":true,\"id\":%ID%,\"exit\":0,\"signal\":0,\"timed_out\":false,"
        "\"stdout\":\"MDEyMzQ1Njc=\",\"stderr\":\"\"}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ck_assert_msg(exec_with(bad[i], 4, &out, &err) == -1, "accepted: %s", bad[i]);
        ck_assert_ptr_null(out.out);
        ck_assert_ptr_null(out.err);
    }
    /* The guest's refusal of a cwd is the client's 400, in our words.  */
    ck_assert_int_eq(
        exec_with("{\"ok\":false,\"id\":%ID%,\"errno\":2,\"bad_cwd\":true,\"error\":\"<script>\"}",
                  4, &out, &err),
        -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_ptr_null(strstr(err.msg, "<script>"));
}
END_TEST

static int list_with(const char *body, rt_dirent_t **ents, size_t *n, sbx_error_t *err)
{
    rt_sandbox_t sb = {.dir = g_dir, .state = RT_STATE_RUNNING};
    snprintf(sb.id, sizeof sb.id, "proto");
    const frame_t fr[] = {{body, 0}};
    fake_t f;
    pthread_t t = fake_start(&f, fr, 1);
    int r = mv_files.list(NULL, &sb, "/tmp", ents, n, err);
    fake_done(&f, t);
    return r;
}

START_TEST(test_microvm_protocol_files)
{
    sbx_error_t err = {0};
    rt_dirent_t *ents = NULL;
    size_t n = 0;
    ck_assert_msg(list_with("{\"ok\":true,\"id\":%ID%,\"entries\":[{\"name\":\"a\",\"type\":"
                            "\"file\",\"size\":3,\"mode\":420,\"mtime_ms\":1}]}",
                            &ents, &n, &err) == 0,
                  "%s", err.msg);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ents[0].name, "a");
    rt_dirents_free(ents, n);

    const char *const names[] = {"\"..\"", "\"a/b\"", "\"\"", "\".\"", "7"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        _cleanup_free_ char *body =
            xasprintf("{\"ok\":true,\"id\":%%ID%%,\"entries\":[{\"name\":%s,\"type\":\"file\","
                      "\"size\":3,\"mode\":420,\"mtime_ms\":1}]}",
                      names[i]);
        ck_assert_msg(list_with(body, &ents, &n, &err) == -1, "accepted %s", names[i]);
    }
    ck_assert_int_eq(list_with("{\"ok\":true,\"id\":%ID%,\"entries\":[{\"name\":\"a\",\"type\":"
                               "\"fifo\",\"size\":3,\"mode\":420,\"mtime_ms\":1}]}",
                               &ents, &n, &err),
                     -1);
    ck_assert_int_eq(list_with("{\"ok\":true,\"id\":%ID%,\"entries\":[{\"name\":\"a\",\"type\":"
                               "\"file\",\"size\":-1,\"mode\":99999,\"mtime_ms\":1}]}",
                               &ents, &n, &err),
                     -1);
    /* An error is mapped by its number only.  */
    ck_assert_int_eq(
        list_with("{\"ok\":false,\"id\":%ID%,\"errno\":2,\"error\":\"x\"}", &ents, &n, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("runtime_microvm_protocol");
    TCase *tc = tcase_create("protocol");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_microvm_protocol_frames);
    tcase_add_test(tc, test_microvm_protocol_exec);
    tcase_add_test(tc, test_microvm_protocol_files);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
