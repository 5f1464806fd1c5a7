/* test_runtime_files.c -- the files API on process-driver sandboxes: read,
 * write, list and delete inside the sandbox's filesystem, and the path
 * tricks (`..`, absolute and relative symlinks out, symlink/dir swaps
 * racing us, FIFOs) that must never reach the host.  */
#include <pthread.h>

#include "tests/integration/test_runtime_fixture.h"

START_TEST(test_runtime_files_basic)
{
    fx_create("fs-basic", NULL);
    sbx_error_t err = {0};
    ck_assert_msg(rt_file_write(fx_rt, "fs-basic", "/tmp/a.txt", "hello", 5, &err) == 0, "%s",
                  err.msg);
    rt_exec_result_t r = fx_sh("fs-basic", "cat /tmp/a.txt; echo; stat -c %u /tmp/a.txt");
    ck_assert_str_eq(r.out, "hello\n0\n");
    rt_exec_result_done(&r);
    /* Overwrite, and files the sandbox made.  */
    ck_assert(rt_file_write(fx_rt, "fs-basic", "/tmp/a.txt", "hi", 2, &err) == 0);
    r = fx_sh("fs-basic", "printf 'made inside' > /root/in.txt");
    rt_exec_result_done(&r);
    char *data;
    size_t len;
    ck_assert(rt_file_read(fx_rt, "fs-basic", "/tmp/a.txt", 0, &data, &len, &err) == 0);
    ck_assert_uint_eq(len, 2);
    ck_assert_str_eq(data, "hi");
    free(data);
    ck_assert(rt_file_read(fx_rt, "fs-basic", "root/in.txt", 0, &data, &len, &err) == 0);
    ck_assert_str_eq(data, "made inside");
    free(data);
    /* Image files read through the overlay.  */
    ck_assert(rt_file_read(fx_rt, "fs-basic", "/etc/image-marker", 0, &data, &len, &err) == 0);
    ck_assert_str_eq(data, "image\n");
    free(data);
    /* Parents are made as needed, owned by the sandbox's root.  */
    ck_assert_msg(rt_file_write(fx_rt, "fs-basic", "/work/deep/er/f.bin", "\0\1\2", 3, &err) == 0,
                  "%s", err.msg);
    r = fx_sh("fs-basic", "stat -c %u /work/deep; wc -c < /work/deep/er/f.bin");
    ck_assert_str_eq(r.out, "0\n3\n");
    rt_exec_result_done(&r);

    rt_dirent_t *ents;
    size_t n;
    ck_assert(rt_file_list(fx_rt, "fs-basic", "/tmp", &ents, &n, &err) == 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ents[0].name, "a.txt");
    ck_assert_str_eq(ents[0].type, "file");
    ck_assert_uint_eq(ents[0].size, 2);
    ck_assert_uint_eq(ents[0].mode, 0644);
    ck_assert_int_gt(ents[0].modified_ms, 0);
    rt_dirents_free(ents, n);
    ck_assert(rt_file_list(fx_rt, "fs-basic", "/", &ents, &n, &err) == 0);
    bool saw_bin = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(ents[i].name, "bin") == 0)
            saw_bin = strcmp(ents[i].type, "dir") == 0;
    ck_assert(saw_bin);
    rt_dirents_free(ents, n);
    ck_assert(rt_file_list(fx_rt, "fs-basic", "/bin", &ents, &n, &err) == 0);
    bool saw_link = false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(ents[i].name, "sh") == 0)
            saw_link = strcmp(ents[i].type, "symlink") == 0;
    ck_assert(saw_link);
    rt_dirents_free(ents, n);

    /* Delete a file, then a whole tree.  */
    ck_assert(rt_file_delete(fx_rt, "fs-basic", "/tmp/a.txt", &err) == 0);
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-basic", "/tmp/a.txt", 0, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_file_delete(fx_rt, "fs-basic", "/tmp/a.txt", &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_msg(rt_file_delete(fx_rt, "fs-basic", "/work", &err) == 0, "%s", err.msg);
    r = fx_sh("fs-basic", "ls /work 2>&1 >/dev/null | wc -l");
    ck_assert_str_eq(r.out, "1\n");
    rt_exec_result_done(&r);
    /* Deleting an image file hides it in this sandbox only.  */
    ck_assert(rt_file_delete(fx_rt, "fs-basic", "/etc/image-marker", &err) == 0);
    _cleanup_free_ char *m = fx_path("etc/image-marker");
    ck_assert_int_eq(access(m, F_OK), 0);
}
END_TEST

START_TEST(test_runtime_files_bad_requests)
{
    rt_spec_t spec = {.disk_mib = 8};
    fx_create("fs-bad", &spec);
    sbx_error_t err = {0};
    char *data;
    size_t len;
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-bad", "", 0, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(rt_file_delete(fx_rt, "fs-bad", "/", &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(rt_file_delete(fx_rt, "fs-bad", "/tmp/..", &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(rt_file_write(fx_rt, "fs-bad", "/", "x", 1, &err), -1);
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-bad", "/tmp", 0, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(rt_file_read(fx_rt, "nope", "/tmp/x", 0, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    rt_dirent_t *ents;
    size_t n;
    ck_assert_int_eq(rt_file_list(fx_rt, "fs-bad", "/etc/passwd", &ents, &n, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    /* Size limits: the read cap, and the sandbox's disk.  */
    ck_assert(rt_file_write(fx_rt, "fs-bad", "/tmp/100",
                            "0123456789012345678901234567890123456789"
                            "0123456789012345678901234567890123456789"
                            "01234567890123456789",
                            100, &err) == 0);
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-bad", "/tmp/100", 10, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_TOO_LARGE);
    size_t big = 16 << 20;
    char *blob = xcalloc(1, big);
    ck_assert_int_eq(rt_file_write(fx_rt, "fs-bad", "/tmp/big", blob, big, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_TOO_LARGE, "%s", err.msg);
    free(blob);
    /* A FIFO planted by the sandbox does not hang us.  */
    rt_exec_result_t r = fx_sh("fs-bad", "mkfifo /tmp/fifo && echo made");
    ck_assert_str_eq(r.out, "made\n");
    rt_exec_result_done(&r);
    int64_t t0 = sbx_monotonic_ms();
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-bad", "/tmp/fifo", 0, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(rt_file_write(fx_rt, "fs-bad", "/tmp/fifo", "x", 1, &err), -1);
    ck_assert_int_lt(sbx_monotonic_ms() - t0, 1000);
    /* The sandbox's /proc is not reachable from the host side.  */
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-bad", "/proc/self/status", 0, &data, &len, &err), -1);
}
END_TEST

/* A directory the sandbox filled with a huge number of names cannot make
 * a listing eat the agent's memory.  */
START_TEST(test_runtime_files_list_bounded)
{
    fx_create("fs-many", NULL);
    json_t *j = fx_probe("fs-many", "touchmany", "/tmp", "100001");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "made")), 100001);
    json_decref(j);
    rt_dirent_t *ents = NULL;
    size_t n = 0;
    sbx_error_t err = {0};
    ck_assert_int_eq(rt_file_list(fx_rt, "fs-many", "/tmp", &ents, &n, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_TOO_LARGE);
    /* At the bound it still lists.  */
    ck_assert(rt_file_delete(fx_rt, "fs-many", "/tmp/f0", &err) == 0);
    ck_assert_msg(rt_file_list(fx_rt, "fs-many", "/tmp", &ents, &n, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(n, 100000);
    rt_dirents_free(ents, n);
}
END_TEST

START_TEST(test_runtime_files_escapes)
{
    fx_create("fs-esc", NULL);
    _cleanup_free_ char *marker = xasprintf("%s/host-marker", fx_dir);
    sbx_error_t err = {0};
    ck_assert(sbx_write_file_atomic(marker, "host secret\n", 12, 0644, &err) == 0);
    char *data;
    size_t len;
    /* `..` stops at the sandbox's root: this is the sandbox's passwd.  */
    ck_assert_msg(rt_file_read(fx_rt, "fs-esc", "../../../../etc/passwd", 0, &data, &len, &err) ==
                      0,
                  "%s", err.msg);
    ck_assert_str_eq(data, "root:x:0:0:root:/root:/bin/sh\n");
    free(data);
    _cleanup_free_ char *dotdot = xasprintf("../../../../../..%s", marker);
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-esc", dotdot, 0, &data, &len, &err), -1);
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-esc", marker, 0, &data, &len, &err), -1);

    /* Symlinks the sandbox plants: absolute to the host path, relative
     * upwards, and to /.  */
    _cleanup_free_ char *script = xasprintf(
        "ln -s %s /tmp/abs && ln -s ../../../../../../../..%s /tmp/rel && ln -s / /tmp/root && "
        "mkdir -p %s && ln -s %s /tmp/hostdir && echo ok",
        marker, marker, fx_dir, fx_dir);
    rt_exec_result_t r = fx_sh("fs-esc", script);
    ck_assert_str_eq(r.out, "ok\n");
    rt_exec_result_done(&r);
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-esc", "/tmp/abs", 0, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_file_read(fx_rt, "fs-esc", "/tmp/rel", 0, &data, &len, &err), -1);
    ck_assert(rt_file_read(fx_rt, "fs-esc", "/tmp/root/etc/passwd", 0, &data, &len, &err) == 0);
    ck_assert_str_eq(data, "root:x:0:0:root:/root:/bin/sh\n");
    free(data);
    /* Writing through a link naming a host directory lands in the
     * sandbox's directory of that name.  */
    ck_assert_msg(rt_file_write(fx_rt, "fs-esc", "/tmp/hostdir/planted", "x", 1, &err) == 0, "%s",
                  err.msg);
    _cleanup_free_ char *planted = xasprintf("%s/planted", fx_dir);
    ck_assert_int_ne(access(planted, F_OK), 0);
    _cleanup_free_ char *inside = xasprintf("cat %s/planted", fx_dir);
    r = fx_sh("fs-esc", inside);
    ck_assert_str_eq(r.out, "x");
    rt_exec_result_done(&r);
    /* Deleting through the links removes the link or inside files only.  */
    ck_assert(rt_file_delete(fx_rt, "fs-esc", "/tmp/abs", &err) == 0);
    ck_assert_int_eq(access(marker, F_OK), 0);
    ck_assert_int_eq(rt_file_delete(fx_rt, "fs-esc", "/tmp/hostdir/host-marker", &err), -1);
    ck_assert_int_eq(access(marker, F_OK), 0);
    ck_assert(rt_file_delete(fx_rt, "fs-esc", "/tmp/root", &err) == 0); /* the link */
    r = fx_sh("fs-esc", "ls /bin/busybox");
    ck_assert_str_eq(r.out, "/bin/busybox\n");
    rt_exec_result_done(&r);
}
END_TEST

struct swap_arg {
    volatile bool stop;
    int escapes;
};

static void *swap_writer(void *p)
{
    struct swap_arg *a = p;
    _cleanup_free_ char *host = xasprintf("%s/swapped", fx_dir);
    for (int i = 0; i < 300 && !a->stop; i++) {
        char *data;
        size_t len;
        (void)rt_file_write(fx_rt, "fs-swap", "/tmp/s/swapped", "x", 1, NULL);
        if (rt_file_read(fx_rt, "fs-swap", "/tmp/s/host-marker", 0, &data, &len, NULL) == 0) {
            if (strcmp(data, "host secret\n") == 0)
                a->escapes++;
            free(data);
        }
        if (access(host, F_OK) == 0)
            a->escapes++;
    }
    return NULL;
}

START_TEST(test_runtime_files_symlink_swap_race)
{
    fx_create("fs-swap", NULL);
    _cleanup_free_ char *marker = xasprintf("%s/host-marker", fx_dir);
    ck_assert(sbx_write_file_atomic(marker, "host secret\n", 12, 0644, NULL) == 0);
    /* Inside: /tmp/s flips between a directory and a link to the host's
     * directory of the marker, as fast as the shell goes.  */
    _cleanup_free_ char *script = xasprintf(
        "(i=0; while [ $i -lt 100000 ]; do mkdir -p /tmp/d; mv -T /tmp/d /tmp/s 2>/dev/null; "
        "rm -rf /tmp/s; ln -s %s /tmp/s; rm -f /tmp/s; i=$((i+1)); done) >/dev/null 2>&1 & echo go",
        fx_dir);
    rt_exec_result_t r = fx_sh("fs-swap", script);
    ck_assert_str_eq(r.out, "go\n");
    rt_exec_result_done(&r);
    struct swap_arg a = {0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, swap_writer, &a), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.escapes, 0);
    _cleanup_free_ char *host = xasprintf("%s/swapped", fx_dir);
    ck_assert_int_ne(access(host, F_OK), 0);
}
END_TEST

/* A stream of `size` bytes of 'z' that fails with fail_errno after
 * fail_after bytes (0: never).  */
typedef struct zsrc {
    uint64_t size, fail_after, done;
    int fail_errno;
} zsrc_t;

static ssize_t zsrc_read(void *ud, void *buf, size_t n)
{
    zsrc_t *z = ud;
    if (z->fail_after && z->done >= z->fail_after) {
        errno = z->fail_errno;
        return -1;
    }
    size_t k = z->size - z->done < n ? (size_t)(z->size - z->done) : n;
    memset(buf, 'z', k);
    z->done += k;
    return (ssize_t)k;
}

/* Names in /tmp that are not `keep`: temporary upload files left behind.  */
static size_t tmp_strays(const char *id, const char *keep)
{
    rt_dirent_t *ents;
    size_t n, strays = 0;
    sbx_error_t err = {0};
    ck_assert_msg(rt_file_list(fx_rt, id, "/tmp", &ents, &n, &err) == 0, "%s", err.msg);
    for (size_t i = 0; i < n; i++)
        if (!keep || strcmp(ents[i].name, keep) != 0)
            strays++;
    rt_dirents_free(ents, n);
    return strays;
}

/* The files API writes with the sandbox's memory, not the agent's: a file
 * larger than the sandbox's memory is refused (announced or not), with a
 * clear error and nothing left behind, and what is written shows in the
 * sandbox's memory use.  */
START_TEST(test_runtime_files_write_charged)
{
    rt_spec_t spec = {.memory_mib = 32};
    fx_create("fs-charge", &spec);
    sbx_error_t err = {0};
    size_t big = 40 << 20;
    char *blob = xcalloc(1, big);
    ck_assert_int_eq(rt_file_write(fx_rt, "fs-charge", "/tmp/big", blob, big, &err), -1);
    free(blob);
    ck_assert_int_eq(err.code, SBX_ERR_TOO_LARGE);
    ck_assert_str_eq(err.arm_code, "SandboxStorageFull");
    /* Unannounced: the writer fills the sandbox's memory and is stopped.  */
    zsrc_t z = {.size = 40 << 20};
    uint64_t written = 0;
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(rt_file_write_stream(fx_rt, "fs-charge", "/tmp/big", UINT64_MAX, zsrc_read, &z,
                                          &written, &err),
                     -1);
    ck_assert_msg(err.code == SBX_ERR_TOO_LARGE, "%s", err.msg);
    ck_assert_str_eq(err.arm_code, "SandboxStorageFull");
    ck_assert_uint_eq(tmp_strays("fs-charge", NULL), 0);
    /* What fits is written, and the sandbox pays for it.  */
    rt_info_t before, after;
    ck_assert(rt_get(fx_rt, "fs-charge", &before, &err) == 0);
    z = (zsrc_t){.size = 12 << 20};
    ck_assert_msg(rt_file_write_stream(fx_rt, "fs-charge", "/tmp/ok", UINT64_MAX, zsrc_read, &z,
                                       &written, &err) == 0,
                  "%s", err.msg);
    ck_assert_uint_eq(written, 12 << 20);
    ck_assert(rt_get(fx_rt, "fs-charge", &after, &err) == 0);
    ck_assert_msg(after.memory_used_bytes >= before.memory_used_bytes + (10 << 20),
                  "memory %llu -> %llu", (unsigned long long)before.memory_used_bytes,
                  (unsigned long long)after.memory_used_bytes);
    rt_exec_result_t r = fx_sh("fs-charge", "wc -c < /tmp/ok; stat -c %u /tmp/ok");
    ck_assert_str_eq(r.out, "12582912\n0\n");
    rt_exec_result_done(&r);
}
END_TEST

/* A write whose source fails half-way (a client that went away) leaves no
 * partial file: the file it was to replace keeps its content, and a new
 * one never appears.  */
START_TEST(test_runtime_files_write_interrupted)
{
    fx_create("fs-cut", NULL);
    sbx_error_t err = {0};
    ck_assert(rt_file_write(fx_rt, "fs-cut", "/tmp/keep", "old", 3, &err) == 0);
    zsrc_t z = {.size = 8 << 20, .fail_after = 1 << 20, .fail_errno = ECONNABORTED};
    ck_assert_int_eq(
        rt_file_write_stream(fx_rt, "fs-cut", "/tmp/keep", 8 << 20, zsrc_read, &z, NULL, &err), -1);
    z = (zsrc_t){.size = 8 << 20, .fail_after = 1 << 20, .fail_errno = EFBIG};
    ck_assert_int_eq(
        rt_file_write_stream(fx_rt, "fs-cut", "/tmp/new", UINT64_MAX, zsrc_read, &z, NULL, &err),
        -1);
    ck_assert_int_eq(err.code, SBX_ERR_TOO_LARGE);
    char *data;
    size_t len;
    ck_assert(rt_file_read(fx_rt, "fs-cut", "/tmp/keep", 0, &data, &len, &err) == 0);
    ck_assert_str_eq(data, "old");
    free(data);
    ck_assert_uint_eq(tmp_strays("fs-cut", "keep"), 0);
    /* A full replace keeps the owner and mode of the file it replaces.  */
    rt_exec_result_t r = fx_sh("fs-cut", "chmod 600 /tmp/keep && echo ok");
    rt_exec_result_done(&r);
    ck_assert(rt_file_write(fx_rt, "fs-cut", "/tmp/keep", "new!", 4, &err) == 0);
    r = fx_sh("fs-cut", "cat /tmp/keep; stat -c ' %a %u' /tmp/keep");
    ck_assert_str_eq(r.out, "new! 600 0\n");
    rt_exec_result_done(&r);
}
END_TEST

/* A write over a file keeps its owner only when the sandbox maps it: a
 * file of an id outside the sandbox's range (nobody inside; an image that
 * could not be id-mapped shows its raw ids, host root's among them) is
 * replaced by one of the sandbox's root, its set-id bits dropped, never by
 * a file that host id owns.  The file is put in the writable layer from
 * the host, as such an image's files would show.  */
START_TEST(test_runtime_files_write_foreign_owner)
{
    fx_create("fs-own", NULL);
    _cleanup_free_ char *foreign = xasprintf("%s/sandboxes/fs-own/layer/upper/foreign", fx_state);
    sbx_error_t err = {0};
    ck_assert_msg(sbx_write_file_atomic(foreign, "img", 3, 0644, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(chown(foreign, 200000, 200000), 0);
    ck_assert_int_eq(chmod(foreign, 06755), 0);
    rt_exec_result_t r = fx_sh("fs-own", "stat -c '%u:%g' /foreign");
    ck_assert_str_eq(r.out, "65534:65534\n");
    rt_exec_result_done(&r);
    ck_assert_msg(rt_file_write(fx_rt, "fs-own", "/foreign", "new", 3, &err) == 0, "%s", err.msg);
    r = fx_sh("fs-own", "stat -c '%u:%g %a' /foreign; cat /foreign");
    ck_assert_str_eq(r.out, "0:0 755\nnew");
    rt_exec_result_done(&r);
}
END_TEST

/* The sandbox cannot block uploads into a directory of its own by taking
 * the temporary names ahead of them: an exec sees the number of its own
 * cgroup (/proc/self/cgroup), and uploads once counted on from there.  */
START_TEST(test_runtime_files_temp_names_unguessable)
{
    fx_create("fs-tmpname", NULL);
    rt_exec_result_t r =
        fx_sh("fs-tmpname", "seq=$(sed -n 's/^[0-9]*:pids:\\/x\\([0-9a-f]*\\).*/\\1/p' "
                            "/proc/self/cgroup); n=$((0x$seq)); i=1; "
                            "while [ $i -le 512 ]; do "
                            ": > /tmp/.sandbox-upload-$(printf %x $((n+i))); "
                            "i=$((i+1)); done; ls -a /tmp | wc -l");
    ck_assert_int_ge(atoi(r.out), 512);
    rt_exec_result_done(&r);
    sbx_error_t err = {0};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(rt_file_write(fx_rt, "fs-tmpname", "/tmp/up.txt", "up", 2, &err) == 0, "%s",
                      err.msg);
    r = fx_sh("fs-tmpname", "cat /tmp/up.txt");
    ck_assert_str_eq(r.out, "up");
    rt_exec_result_done(&r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("runtime_files");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_files_basic);
    tcase_add_test(tc, test_runtime_files_bad_requests);
    tcase_add_test(tc, test_runtime_files_list_bounded);
    tcase_add_test(tc, test_runtime_files_escapes);
    tcase_add_test(tc, test_runtime_files_symlink_swap_race);
    tcase_add_test(tc, test_runtime_files_write_charged);
    tcase_add_test(tc, test_runtime_files_write_interrupted);
    tcase_add_test(tc, test_runtime_files_write_foreign_owner);
    tcase_add_test(tc, test_runtime_files_temp_names_unguessable);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
