/* test_common.c -- the shared helpers: errors, UTF-8 validation, time
 * formatting, ids, strings, and file helpers (rm_rf never follows a link).  */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/testutil.h"

static char *tmp;

static void setup(void)
{
    tmp = tu_tmpdir("sbx-common");
    ck_assert_ptr_nonnull(tmp);
}

static void teardown(void)
{
    tu_rmdir(tmp);
    free(tmp);
}

static char *in_tmp(const char *rel)
{
    return xasprintf("%s/%s", tmp, rel);
}

static void write_text(const char *path, const char *text)
{
    sbx_error_t err = {0};
    ck_assert_msg(sbx_write_file_atomic(path, text, strlen(text), 0644, &err) == 0, "%s", err.msg);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- errors ---- */

/* A deadline is normalised (nanoseconds below a second) and as far ahead
 * as asked, whole seconds and remainders alike.  */
START_TEST(deadlines)
{
    const int64_t cases[] = {0, 1, 999, 1000, 1500, 10000, 123456};
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        struct timespec d = sbx_deadline_in(cases[i]);
        ck_assert(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
        int64_t ahead_ms =
            ((int64_t)d.tv_sec - now.tv_sec) * 1000 + (d.tv_nsec - now.tv_nsec) / 1000000;
        ck_assert_msg(ahead_ms >= cases[i] - 5 && ahead_ms <= cases[i] + 50, "%lld ms: %lld",
                      (long long)cases[i], (long long)ahead_ms);
    }
}
END_TEST

/* A log line is written even when its message is not UTF-8.  */
START_TEST(log_lines_survive_bad_bytes)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    sbx_log(SBX_LOG_ERROR, "test", "bytes \xff\xfe from a host");
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    char buf[512] = "";
    ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
    close(fds[0]);
    ck_assert_int_gt(n, 0);
    json_t *j = json_loads(buf, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "msg")), "bytes ?? from a host");
    json_decref(j);
}
END_TEST

START_TEST(errors)
{
    sbx_error_t err = {0};
    ck_assert_int_eq(sbx_error_set(&err, SBX_ERR_INVALID, "bad %s", "thing"), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_str_eq(err.msg, "bad thing");
    ck_assert_str_eq(err.arm_code, "");
    ck_assert_int_eq(sbx_error_target(&err, "properties.cpu"), -1);
    ck_assert_str_eq(err.target, "properties.cpu");
    /* A new error forgets the old target.  */
    ck_assert_int_eq(sbx_error_arm(&err, SBX_ERR_CONFLICT, "InvalidX", "n=%d", 3), -1);
    ck_assert_str_eq(err.arm_code, "InvalidX");
    ck_assert_str_eq(err.target, "");
    ck_assert_str_eq(err.msg, "n=3");
    sbx_error_wrap(&err, "ctx %d", 1);
    ck_assert_str_eq(err.msg, "ctx 1: n=3");
    errno = ENOENT;
    sbx_error_errno(&err, SBX_ERR_NOT_FOUND, "open '%s'", "x");
    ck_assert_str_eq(err.msg, "open 'x': No such file or directory");
    ck_assert_int_eq(errno, ENOENT);
    sbx_error_clear(&err);
    ck_assert_int_eq(err.code, SBX_OK);
    ck_assert_str_eq(err.msg, "");

    /* NULL is allowed everywhere.  */
    ck_assert_int_eq(sbx_error_set(NULL, SBX_ERR_INTERNAL, "x"), -1);
    ck_assert_int_eq(sbx_error_arm(NULL, SBX_ERR_INTERNAL, "X", "x"), -1);
    ck_assert_int_eq(sbx_error_errno(NULL, SBX_ERR_INTERNAL, "x"), -1);
    ck_assert_int_eq(sbx_error_target(NULL, "t"), -1);
    sbx_error_wrap(NULL, "x");
    sbx_error_clear(NULL);

    /* Long messages are cut, never overflow.  */
    char big[2000];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    sbx_error_set(&err, SBX_ERR_INVALID, "%s", big);
    ck_assert_uint_eq(strlen(err.msg), sizeof(err.msg) - 1);
    sbx_error_wrap(&err, "%s", big);
    ck_assert_uint_eq(strlen(err.msg), sizeof(err.msg) - 1);
    sbx_error_arm(&err, SBX_ERR_INVALID, big, "x");
    ck_assert_uint_eq(strlen(err.arm_code), sizeof(err.arm_code) - 1);
    sbx_error_target(&err, big);
    ck_assert_uint_eq(strlen(err.target), sizeof(err.target) - 1);
}
END_TEST

START_TEST(error_codes_map_to_http)
{
    static const struct {
        sbx_code_t code;
        int status;
        const char *name;
    } map[] = {
        {SBX_ERR_INTERNAL, 500, "InternalServerError"},
        {SBX_ERR_INVALID, 400, "BadRequest"},
        {SBX_ERR_NOT_FOUND, 404, "NotFound"},
        {SBX_ERR_CONFLICT, 409, "Conflict"},
        {SBX_ERR_PRECONDITION, 412, "PreconditionFailed"},
        {SBX_ERR_TOO_LARGE, 413, "RequestEntityTooLarge"},
        {SBX_ERR_FORBIDDEN, 403, "Forbidden"},
        {SBX_ERR_UNAVAILABLE, 503, "ServiceUnavailable"},
        {SBX_ERR_TIMEOUT, 504, "GatewayTimeout"},
        {SBX_ERR_MEDIA_TYPE, 415, "UnsupportedMediaType"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
        ck_assert_int_eq(sbx_code_http_status(map[i].code), map[i].status);
        ck_assert_str_eq(sbx_code_arm_name(map[i].code), map[i].name);
    }
    ck_assert_int_eq(sbx_code_http_status((sbx_code_t)999), 500);
}
END_TEST

/* ---- UTF-8 ---- */

START_TEST(utf8_valid_inputs)
{
    static const char *const ok[] = {
        "",
        "plain ascii",
        "caf\xc3\xa9",      /* U+00E9 */
        "\xc2\x80",         /* U+0080, smallest 2-byte */
        "\xdf\xbf",         /* U+07FF */
        "\xe0\xa0\x80",     /* U+0800, smallest 3-byte */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",     /* U+E000, just above */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf0\x90\x80\x80", /* U+10000, smallest 4-byte */
        "\xf0\x9f\x98\x80", /* an emoji */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
    };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
        ck_assert_msg(sbx_utf8_valid(ok[i], strlen(ok[i])), "case %zu should be valid", i);
    /* NUL is a valid character; the length decides.  */
    ck_assert(sbx_utf8_valid("a\0b", 3));
    ck_assert(sbx_utf8_valid(NULL, 0));
}
END_TEST

START_TEST(utf8_invalid_inputs)
{
    static const char *const bad[] = {
        "\x80",                 /* lone continuation */
        "a\xbf",                /* lone continuation after ASCII */
        "\xc0\x80",             /* overlong NUL */
        "\xc1\xbf",             /* overlong */
        "\xe0\x80\x80",         /* overlong 3-byte */
        "\xe0\x9f\xbf",         /* overlong U+07FF */
        "\xf0\x80\x80\x80",     /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf",     /* overlong U+FFFF */
        "\xed\xa0\x80",         /* U+D800 surrogate */
        "\xed\xbf\xbf",         /* U+DFFF surrogate */
        "\xf4\x90\x80\x80",     /* U+110000 */
        "\xf5\x80\x80\x80",     /* past the range */
        "\xf8\x88\x80\x80\x80", /* 5-byte form */
        "\xfc\x84\x80\x80\x80\x80",
        "\xfe",
        "\xff",
        "\xc3", /* truncated at the end */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3(", /* continuation missing */
        "\xe2(\xa1",
        "\xf0\x9f(\x80",
        "ok then \xc3\xa9\xc3",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        ck_assert_msg(!sbx_utf8_valid(bad[i], strlen(bad[i])), "case %zu should be invalid", i);
    /* A sequence cut by the length is invalid even when the bytes after
     * the end would complete it (no reading past len).  */
    ck_assert(!sbx_utf8_valid("\xc3\xa9", 1));
    ck_assert(!sbx_utf8_valid("\xf0\x9f\x98\x80", 3));
    ck_assert(sbx_utf8_valid("\xf0\x9f\x98\x80", 4));
}
END_TEST

/* ---- time, ids, strings ---- */

START_TEST(time_format)
{
    char buf[32];
    sbx_time_format(0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
    sbx_time_format(1700000000123LL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "2023-11-14T22:13:20.123Z");
    sbx_time_format(951782400999LL, buf, sizeof(buf)); /* leap day */
    ck_assert_str_eq(buf, "2000-02-29T00:00:00.999Z");
    sbx_time_format(253402300799999LL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "9999-12-31T23:59:59.999Z");
    /* Before the epoch the milliseconds stay positive.  */
    sbx_time_format(-1, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1969-12-31T23:59:59.999Z");
    sbx_time_format(-1000, buf, sizeof(buf));
    ck_assert_str_eq(buf, "1969-12-31T23:59:59.000Z");
    /* A short buffer is cut and terminated.  */
    char small[11];
    memset(small, 'x', sizeof(small));
    sbx_time_format(0, small, sizeof(small));
    ck_assert_str_eq(small, "1970-01-01");

    int64_t a = sbx_now_ms();
    ck_assert_int_gt(a, 1700000000000LL);
    int64_t m1 = sbx_monotonic_us(), m2 = sbx_monotonic_us();
    ck_assert_int_ge(m2, m1);
    ck_assert_int_ge(sbx_monotonic_ms(), m1 / 1000);
}
END_TEST

START_TEST(uuids)
{
    char a[37], b[37];
    sbx_uuid(a);
    sbx_uuid(b);
    ck_assert_uint_eq(strlen(a), 36);
    ck_assert_str_ne(a, b);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            ck_assert_int_eq(a[i], '-');
        else
            ck_assert_msg(strchr("0123456789abcdef", a[i]), "char %d of %s", i, a);
    }
    ck_assert_int_eq(a[14], '4');                 /* version 4 */
    ck_assert_ptr_nonnull(strchr("89ab", a[19])); /* RFC 4122 variant */
}
END_TEST

START_TEST(strings)
{
    ck_assert(sbx_str_ieq("MiXeD", "mixed"));
    ck_assert(!sbx_str_ieq("a", "ab"));
    ck_assert(!sbx_str_ieq(NULL, "a"));
    ck_assert(!sbx_str_ieq("a", NULL));
    ck_assert(!sbx_str_ieq(NULL, NULL));
    ck_assert(sbx_str_has_prefix("subscriptions/x", "subscriptions/"));
    ck_assert(sbx_str_has_prefix("abc", ""));
    ck_assert(!sbx_str_has_prefix("ab", "abc"));
    char s[] = "ABC-def_\xc3\x89";
    sbx_str_lower(s);
    ck_assert_str_eq(s, "abc-def_\xc3\x89"); /* bytes >= 0x80 untouched */
    _cleanup_free_ char *f = xasprintf("%s-%d", "x", 42);
    ck_assert_str_eq(f, "x-42");
    _cleanup_free_ char *n = xstrndup("abcdef", 3);
    ck_assert_str_eq(n, "abc");
}
END_TEST

/* ---- files ---- */

START_TEST(read_write_files)
{
    sbx_error_t err = {0};
    _cleanup_free_ char *p = in_tmp("f.bin");
    const char data[] = "bin\0ary\nbytes";
    ck_assert_int_eq(sbx_write_file_atomic(p, data, sizeof(data), 0600, &err), 0);
    struct stat st;
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    char *got = NULL;
    size_t len = 0;
    ck_assert_int_eq(sbx_read_file(p, &got, &len, &err), 0);
    ck_assert_uint_eq(len, sizeof(data));
    ck_assert_mem_eq(got, data, sizeof(data));
    ck_assert_int_eq(got[len], '\0');
    free(got);

    /* Replace with something larger than the read buffer, then empty.  */
    size_t big = 300000;
    _cleanup_free_ char *blob = xmalloc(big);
    for (size_t i = 0; i < big; i++)
        blob[i] = (char)(i * 7);
    ck_assert_int_eq(sbx_write_file_atomic(p, blob, big, 0600, &err), 0);
    ck_assert_int_eq(sbx_read_file(p, &got, &len, &err), 0);
    ck_assert_uint_eq(len, big);
    ck_assert_mem_eq(got, blob, big);
    free(got);
    ck_assert_int_eq(sbx_write_file_atomic(p, "", 0, 0600, &err), 0);
    ck_assert_int_eq(sbx_read_file(p, &got, NULL, &err), 0);
    ck_assert_str_eq(got, "");
    free(got);
    /* No temporary file left behind.  */
    _cleanup_free_ char *tmpf = xasprintf("%s.tmp.%d", p, (int)getpid());
    ck_assert(!exists(tmpf));

    _cleanup_free_ char *missing = in_tmp("nope");
    got = NULL;
    ck_assert_int_eq(sbx_read_file(missing, &got, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_ptr_null(got);
    _cleanup_free_ char *in_missing_dir = in_tmp("no/such/dir/f");
    ck_assert_int_eq(sbx_write_file_atomic(in_missing_dir, "x", 1, 0600, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INTERNAL);
}
END_TEST

START_TEST(mkdir_p)
{
    sbx_error_t err = {0};
    _cleanup_free_ char *deep = in_tmp("a/b/c/d");
    ck_assert_int_eq(sbx_mkdir_p(deep, 0700, &err), 0);
    struct stat st;
    ck_assert_int_eq(stat(deep, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    ck_assert_int_eq(sbx_mkdir_p(deep, 0700, &err), 0); /* again: fine */
    _cleanup_free_ char *trailing = in_tmp("x/y/");
    ck_assert_int_eq(sbx_mkdir_p(trailing, 0700, &err), 0);
    _cleanup_free_ char *file = in_tmp("file");
    write_text(file, "x");
    _cleanup_free_ char *through = in_tmp("file/sub");
    ck_assert_int_eq(sbx_mkdir_p(through, 0700, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.msg, "file/sub"));
    /* Degenerate paths.  */
    ck_assert_int_eq(sbx_mkdir_p("/", 0700, &err), 0);
    sbx_error_clear(&err);
    ck_assert_int_eq(sbx_mkdir_p("", 0700, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
}
END_TEST

START_TEST(rm_rf_does_not_follow_links)
{
    sbx_error_t err = {0};
    /* Something outside the tree that links point at.  */
    _cleanup_free_ char *outside = in_tmp("outside");
    _cleanup_free_ char *precious = in_tmp("outside/precious");
    ck_assert_int_eq(sbx_mkdir_p(outside, 0700, &err), 0);
    write_text(precious, "keep me");

    _cleanup_free_ char *tree = in_tmp("tree");
    _cleanup_free_ char *sub = in_tmp("tree/a/b/c");
    ck_assert_int_eq(sbx_mkdir_p(sub, 0700, &err), 0);
    _cleanup_free_ char *f1 = in_tmp("tree/a/f1");
    _cleanup_free_ char *f2 = in_tmp("tree/a/b/c/f2");
    write_text(f1, "1");
    write_text(f2, "2");
    _cleanup_free_ char *dirlink = in_tmp("tree/a/to-outside");
    _cleanup_free_ char *filelink = in_tmp("tree/a/b/to-precious");
    _cleanup_free_ char *dangling = in_tmp("tree/dangling");
    ck_assert_int_eq(symlink(outside, dirlink), 0);
    ck_assert_int_eq(symlink(precious, filelink), 0);
    ck_assert_int_eq(symlink("/nonexistent/target", dangling), 0);
    /* An unreadable directory inside is still removed (we are root).  */
    _cleanup_free_ char *locked = in_tmp("tree/locked");
    ck_assert_int_eq(mkdir(locked, 0), 0);
    _cleanup_free_ char *fifo = in_tmp("tree/a/fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);

    ck_assert_msg(sbx_rm_rf(tree, &err) == 0, "%s", err.msg);
    ck_assert(!exists(tree));
    ck_assert(exists(precious));
    char *got = NULL;
    ck_assert_int_eq(sbx_read_file(precious, &got, NULL, &err), 0);
    ck_assert_str_eq(got, "keep me");
    free(got);

    /* The path itself a link to a directory: the link goes, not the target.  */
    _cleanup_free_ char *toplink = in_tmp("toplink");
    ck_assert_int_eq(symlink(outside, toplink), 0);
    ck_assert_int_eq(sbx_rm_rf(toplink, &err), 0);
    ck_assert(!exists(toplink));
    ck_assert(exists(precious));

    /* Missing is fine; a plain file is removed.  */
    _cleanup_free_ char *missing = in_tmp("missing");
    ck_assert_int_eq(sbx_rm_rf(missing, &err), 0);
    ck_assert_int_eq(sbx_rm_rf(precious, &err), 0);
    ck_assert(!exists(precious));
}
END_TEST

START_TEST(rm_rf_deep_tree)
{
    sbx_error_t err = {0};
    /* Deeper than one path may spell out (PATH_MAX), built with *at calls.  */
    _cleanup_free_ char *root = in_tmp("deep");
    ck_assert_int_eq(mkdir(root, 0700), 0);
    int fd = open(root, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(fd, 0);
    const char *name = "dddddddddddddddddddddddddddddddddddddddddddddddddd";
    for (int i = 0; i < 120; i++) {
        ck_assert_int_eq(mkdirat(fd, name, 0700), 0);
        int next = openat(fd, name, O_RDONLY | O_DIRECTORY);
        ck_assert_int_ge(next, 0);
        close(fd);
        fd = next;
    }
    close(fd);
    ck_assert_msg(sbx_rm_rf(root, &err) == 0, "%s", err.msg);
    ck_assert(!exists(root));
}
END_TEST

/* Bytes kept NUL-terminated up to max; one byte past it aborts.  */
START_TEST(sink_capped)
{
    sbx_sink_t s = {.max = 5};
    ck_assert_uint_eq(sbx_sink_write("abc", 1, 3, &s), 3);
    ck_assert_uint_eq(sbx_sink_write("de", 2, 1, &s), 2);
    ck_assert_str_eq(s.data, "abcde");
    ck_assert(!s.overflow);
    ck_assert_uint_eq(sbx_sink_write("f", 1, 1, &s), 0);
    ck_assert(s.overflow);
    ck_assert_uint_eq(s.len, 5);
    ck_assert_str_eq(s.data, "abcde");
    free(s.data);
}
END_TEST

START_TEST(cleanup_helpers)
{
    char *p = xstrdup("x");
    char *q = TAKE_PTR(p);
    ck_assert_ptr_null(p);
    free(q);
    int fd = open("/dev/null", O_RDONLY);
    int taken = TAKE_FD(fd);
    ck_assert_int_eq(fd, -1);
    close(taken);
    {
        _cleanup_close_ int none = -1; /* closing -1 is a no-op */
        _cleanup_free_ char *nothing = NULL;
        _cleanup_json_ json_t *j = NULL;
        (void)none;
        (void)nothing;
        (void)j;
    }
    void *z = xcalloc(0, 0);
    ck_assert_ptr_nonnull(z);
    z = xrealloc(z, 0);
    ck_assert_ptr_nonnull(z);
    free(z);
}
END_TEST

/* base64: round trips of every length mod 3; strict decoding; the bound.  */
START_TEST(base64_strict)
{
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
        char *e = sbx_base64_encode(plain[i], strlen(plain[i]));
        ck_assert_str_eq(e, coded[i]);
        size_t n = 99;
        char *d = sbx_base64_decode(e, strlen(e), SIZE_MAX, &n);
        ck_assert_ptr_nonnull(d);
        ck_assert_uint_eq(n, strlen(plain[i]));
        ck_assert_str_eq(d, plain[i]);
        free(e);
        free(d);
    }
    const char *bad[] = {"Zg=", "Zg=a", "Z===", "Zm9v!A==", "Zg==Zg==", "=Zg=", "Zm9\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        size_t n = 0;
        ck_assert_msg(sbx_base64_decode(bad[i], strlen(bad[i]), SIZE_MAX, &n) == NULL, "%s",
                      bad[i]);
    }
    size_t n = 0;
    ck_assert_ptr_null(sbx_base64_decode("Zm9vYmFy", 8, 5, &n));
    char *d = sbx_base64_decode("Zm9vYmFy", 8, 6, &n);
    ck_assert_ptr_nonnull(d);
    free(d);
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char *e = sbx_base64_encode(all, sizeof all);
    d = sbx_base64_decode(e, strlen(e), sizeof all, &n);
    ck_assert_uint_eq(n, sizeof all);
    ck_assert_int_eq(memcmp(d, all, sizeof all), 0);
    free(e);
    free(d);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("common");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, base64_strict);
    tcase_add_test(tc, deadlines);
    tcase_add_test(tc, log_lines_survive_bad_bytes);
    tcase_add_test(tc, error_codes_map_to_http);
    tcase_add_test(tc, utf8_valid_inputs);
    tcase_add_test(tc, utf8_invalid_inputs);
    tcase_add_test(tc, time_format);
    tcase_add_test(tc, uuids);
    tcase_add_test(tc, strings);
    tcase_add_test(tc, read_write_files);
    tcase_add_test(tc, mkdir_p);
    tcase_add_test(tc, rm_rf_does_not_follow_links);
    tcase_add_test(tc, rm_rf_deep_tree);
    tcase_add_test(tc, cleanup_helpers);
    tcase_add_test(tc, sink_capped);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(common_suite());
}
