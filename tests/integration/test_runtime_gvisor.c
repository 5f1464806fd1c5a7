/* test_runtime_gvisor.c -- the gvisor driver end to end on the runtime API:
 * a sandbox behind runsc runs commands under gVisor's kernel, with the
 * same root, files API, limits and probe view as the process driver;
 * suspend to a checkpoint keeps a counting process's count; a sandbox
 * whose gVisor process is killed is Failed, and destroy leaves nothing.
 * Skipped (with a message) where health says gvisor does not work.  */
#include <signal.h>
#include <sys/utsname.h>

#include "tests/integration/test_runtime_fixture.h"

static void gv_create(const char *id, uint64_t memory_mib)
{
    rt_spec_t spec = {.driver = "gvisor", .memory_mib = memory_mib};
    fx_create(id, &spec);
}

/* Host pids of the processes in the sandbox's pids cgroup.  */
static size_t cgroup_pids(const char *id)
{
    _cleanup_free_ char *p = xasprintf("/sys/fs/cgroup/pids/%s/%s/cgroup.procs", fx_cgroot, id);
    FILE *f = fopen(p, "r");
    size_t n = 0;
    int pid;
    while (f && fscanf(f, "%d", &pid) == 1)
        n++;
    if (f)
        fclose(f);
    return n;
}

/* Any host process whose command line names the sandbox id.  */
static bool runsc_left(const char *id)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    bool found = false;
    while (d && !found && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        _cleanup_free_ char *p = xasprintf("/proc/%s/cmdline", de->d_name);
        char buf[4096];
        FILE *f = fopen(p, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        for (size_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[n] = 0;
        found = strstr(buf, "runsc") && strstr(buf, id) && fx_pid_alive(atoi(de->d_name));
    }
    if (d)
        closedir(d);
    return found;
}

START_TEST(test_gvisor_exec_and_files)
{
    if (!fx_driver_available("gvisor"))
        return;
    gv_create("gv-exec", 0);
    /* gVisor's kernel, not the host's.  */
    struct utsname u;
    uname(&u);
    rt_exec_result_t r = fx_sh("gv-exec", "uname -r; hostname; id -u; stat -c %u:%g /bin/busybox; "
                                          "cat /root/secret");
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_msg(strncmp(r.out, u.release, strlen(u.release)) != 0, "host kernel: %s", r.out);
    ck_assert_msg(strstr(r.out, "\ngv-exec\n0\n0:0\nroot only\n"), "got '%s' '%s'", r.out, r.err);
    rt_exec_result_done(&r);

    /* Exit codes, stdin, stderr, env.  */
    r = fx_sh("gv-exec", "cat; echo err >&2; echo $FOO; exit 3");
    rt_exec_result_done(&r);
    char *argv[] = {"sh", "-c", "cat; echo err >&2; echo $FOO; exit 3", NULL};
    char *env[] = {"FOO=bar", NULL};
    rt_exec_request_t req = {.argv = argv, .env = env, .stdin_data = "in\n", .stdin_len = 3};
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(fx_rt, "gv-exec", &req, &r, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r.exit_code, 3);
    ck_assert_str_eq(r.out, "in\nbar\n");
    ck_assert_str_eq(r.err, "err\n");
    rt_exec_result_done(&r);

    /* Not found is 127; a bad cwd is refused; a timeout kills.  */
    char *nf[] = {"no-such-command", NULL};
    r = fx_execv("gv-exec", nf, 10000);
    ck_assert_int_eq(r.exit_code, 127);
    rt_exec_result_done(&r);
    char *sh[] = {"sh", "-c", "true", NULL};
    rt_exec_request_t bad = {.argv = sh, .cwd = "/no/such/dir"};
    ck_assert_int_eq(rt_exec(fx_rt, "gv-exec", &bad, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    char *sl[] = {"sleep", "30", NULL};
    int64_t t0 = sbx_monotonic_ms();
    r = fx_execv("gv-exec", sl, 500);
    ck_assert(r.timed_out);
    ck_assert_int_lt(sbx_monotonic_ms() - t0, 10000);
    rt_exec_result_done(&r);

    /* Another user: ids and groups as given, and root's files are closed.  */
    char *who[] = {"sh", "-c", "id -u; id -g; id -G; cat /root/secret", NULL};
    rt_exec_request_t as = {
        .argv = who,
        .user = {.set = true, .uid = 1000, .gid = 1000, .groups = {1000, 2000}, .n_groups = 2}};
    ck_assert_msg(rt_exec(fx_rt, "gv-exec", &as, &r, &err) == 0, "%s", err.msg);
    ck_assert_msg(strcmp(r.out, "1000\n1000\n1000 2000\n") == 0 && r.exit_code != 0,
                  "got '%s' '%s' %d", r.out, r.err, r.exit_code);
    rt_exec_result_done(&r);

    /* Files written through the API are root's inside and read back.  */
    ck_assert_msg(rt_file_write(fx_rt, "gv-exec", "/tmp/up.txt", "hello", 5, &err) == 0, "%s",
                  err.msg);
    r = fx_sh("gv-exec", "stat -c %u /tmp/up.txt; cat /tmp/up.txt; echo made > /tmp/down.txt");
    ck_assert_msg(strcmp(r.out, "0\nhello") == 0, "got '%s' '%s'", r.out, r.err);
    rt_exec_result_done(&r);
    char *data = NULL;
    size_t len = 0;
    ck_assert_msg(rt_file_read(fx_rt, "gv-exec", "/tmp/down.txt", 1024, &data, &len, &err) == 0,
                  "%s", err.msg);
    ck_assert_str_eq(data, "made\n");
    free(data);
}
END_TEST

/* The probe's view: its own processes, root without capabilities,
 * loopback only, no host paths.  */
START_TEST(test_gvisor_probe_view)
{
    if (!fx_driver_available("gvisor"))
        return;
    gv_create("gv-view", 0);
    json_t *j = fx_probe("gv-view", "info", NULL, NULL);
    json_t *pids = json_object_get(j, "pids");
    ck_assert_int_le(json_array_size(pids), 3);
    ck_assert_int_eq(json_integer_value(json_array_get(pids, 0)), 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "hostname")), "gv-view");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "uid")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "CapEff")), "0000000000000000");
    /* gVisor's /proc/self/status has no NoNewPrivs or Seccomp lines.  */
    json_t *ifaces = json_object_get(j, "ifaces");
    ck_assert_int_eq(json_array_size(ifaces), 1);
    ck_assert_str_eq(json_string_value(json_array_get(ifaces, 0)), "lo");
    _cleanup_free_ char *dump = json_dumps(j, JSON_COMPACT);
    ck_assert_msg(!strstr(dump, fx_dir), "host path visible: %s", dump);
    json_decref(j);
}
END_TEST

/* The probe's refused system calls, host files, the image unchanged,
 * and a memory hog held to the sandbox's limit.  */
START_TEST(test_gvisor_probe_refused)
{
    if (!fx_driver_available("gvisor"))
        return;
    gv_create("gv-sys", 128);
    json_t *j = fx_probe("gv-sys", "syscalls", NULL, NULL);
    const char *must_fail[] = {
        "mount",
        "mount_proc",
        "umount",
        "pivot_root",
        "chroot",
        "ptrace_pid1",
        "kexec_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "keyctl",
        "add_key",
        "setns",
        "perf_event_open",
        "open_by_handle_at",
        "swapon",
        "reboot",
        "acct",
        "mknod",
        "socket_vsock",
    };
    for (size_t i = 0; i < ARRAY_SIZE(must_fail); i++) {
        json_t *v = json_object_get(j, must_fail[i]);
        ck_assert_msg(v && json_integer_value(v) != 0, "%s succeeded inside the sandbox",
                      must_fail[i]);
    }
    json_decref(j);
    _cleanup_free_ char *marker = xasprintf("%s/host-marker", fx_dir);
    sbx_error_t err = {0};
    ck_assert(sbx_write_file_atomic(marker, "host secret\n", 12, 0644, &err) == 0);
    _cleanup_free_ char *script = xasprintf(
        "cat %s; ln -s %s /tmp/l; cat /tmp/l; cat /proc/1/root%s; echo image > /etc/image-marker;"
        " echo done",
        marker, marker, marker);
    rt_exec_result_t r = fx_sh("gv-sys", script);
    ck_assert_str_eq(r.out, "done\n");
    rt_exec_result_done(&r);
    _cleanup_free_ char *img = NULL;
    size_t len;
    _cleanup_free_ char *img_marker = xasprintf("%s/etc/image-marker", fx_rootfs);
    ck_assert(sbx_read_file(img_marker, &img, &len, NULL) == 0);
    ck_assert_str_eq(img, "image\n");
    /* gVisor has no OOM killer: a hog takes the whole sandbox, which is
     * then Failed saying so, and never more than its limit.  */
    char *argv[] = {"/bin/probe", "memhog", "1024", NULL};
    rt_exec_request_t req = {.argv = argv, .timeout_ms = 30000};
    int ret = rt_exec(fx_rt, "gv-sys", &req, &r, &err);
    if (ret == 0) {
        ck_assert_int_ne(r.exit_code, 0);
        rt_exec_result_done(&r);
    }
    rt_info_t info;
    ck_assert(rt_get(fx_rt, "gv-sys", &info, NULL) == 0);
    ck_assert_uint_le(info.memory_used_bytes, 128u << 20);
    if (ret < 0) {
        ck_assert_int_eq(info.state, RT_STATE_FAILED);
        ck_assert_msg(strstr(info.message, "out of memory"), "%s", info.message);
    }
}
END_TEST

static long read_count(const char *id)
{
    rt_exec_result_t r = fx_sh(id, "cat /tmp/count");
    long n = atol(r.out);
    rt_exec_result_done(&r);
    return n;
}

/* A counting process keeps its count across suspend and resume; while
 * suspended to a checkpoint nothing of the sandbox runs.  */
START_TEST(test_gvisor_suspend_resume)
{
    if (!fx_driver_available("gvisor"))
        return;
    gv_create("gv-susp", 0);
    rt_exec_result_t r = fx_sh("gv-susp", "(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; "
                                          "sleep 0.05; done) </dev/null >/dev/null 2>&1 &");
    rt_exec_result_done(&r);
    long before = 0;
    for (int64_t end = sbx_monotonic_ms() + 10000; before < 5 && sbx_monotonic_ms() < end;
         usleep(50000))
        before = read_count("gv-susp");
    ck_assert_int_ge(before, 5);
    sbx_error_t err = {0};
    int64_t t0 = sbx_monotonic_ms();
    ck_assert_msg(rt_suspend(fx_rt, "gv-susp", &err) == 0, "%s", err.msg);
    int64_t t1 = sbx_monotonic_ms();
    rt_info_t info;
    ck_assert_int_eq(rt_get(fx_rt, "gv-susp", &info, &err), 0);
    ck_assert_int_eq(info.state, RT_STATE_SUSPENDED);
    _cleanup_free_ char *img =
        xasprintf("%s/sandboxes/gv-susp/checkpoint/checkpoint.img", fx_state);
    struct stat st;
    bool snapshot = stat(img, &st) == 0;
    if (snapshot) /* a checkpoint: no process of the sandbox is left */
        ck_assert_int_eq(cgroup_pids("gv-susp"), 0);
    fprintf(stderr, "gvisor suspend: %s, %lld ms, %lld KiB\n", snapshot ? "checkpoint" : "freezer",
            (long long)(t1 - t0), snapshot ? (long long)st.st_size / 1024 : 0LL);
    ck_assert_msg(rt_resume(fx_rt, "gv-susp", &err) == 0, "%s", err.msg);
    fprintf(stderr, "gvisor resume: %lld ms\n", (long long)(sbx_monotonic_ms() - t1));
    long after = read_count("gv-susp");
    ck_assert_msg(after >= before, "count went back from %ld to %ld", before, after);
    long later = after;
    for (int64_t end = sbx_monotonic_ms() + 10000; later <= after && sbx_monotonic_ms() < end;
         usleep(50000))
        later = read_count("gv-susp");
    ck_assert_msg(later > after, "the counter does not run after resume (%ld)", later);
}
END_TEST

/* Stop and start keep the writable layer; a new runtime on the same
 * state dir (an agent restart) adopts the running sandbox.  */
START_TEST(test_gvisor_stop_start_adopt)
{
    if (!fx_driver_available("gvisor"))
        return;
    gv_create("gv-again", 0);
    rt_exec_result_t r = fx_sh("gv-again", "echo kept > /root/note");
    rt_exec_result_done(&r);
    sbx_error_t err = {0};
    ck_assert_msg(rt_stop(fx_rt, "gv-again", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cgroup_pids("gv-again"), 0);
    ck_assert_msg(rt_start(fx_rt, "gv-again", &err) == 0, "%s", err.msg);
    r = fx_sh("gv-again", "cat /root/note; sleep 1000 </dev/null >/dev/null 2>&1 &");
    ck_assert_str_eq(r.out, "kept\n");
    rt_exec_result_done(&r);
    rt_close(fx_rt);
    fx_rt = NULL;
    fx_open();
    rt_info_t info;
    ck_assert_int_eq(rt_get(fx_rt, "gv-again", &info, &err), 0);
    ck_assert_int_eq(info.state, RT_STATE_RUNNING);
    r = fx_sh("gv-again", "ps -o comm | grep -c sleep");
    ck_assert_str_eq(r.out, "1\n");
    rt_exec_result_done(&r);
}
END_TEST

/* Killed from outside: Failed, and destroy leaves nothing behind.  */
START_TEST(test_gvisor_killed_and_destroyed)
{
    if (!fx_driver_available("gvisor"))
        return;
    gv_create("gv-kill", 128);
    _cleanup_free_ char *lim =
        xasprintf("/sys/fs/cgroup/memory/%s/gv-kill/memory.limit_in_bytes", fx_cgroot);
    char *text = NULL;
    size_t len;
    ck_assert(sbx_read_file(lim, &text, &len, NULL) == 0);
    ck_assert_int_eq(atoll(text), 128LL << 20);
    free(text);
    ck_assert_int_gt(cgroup_pids("gv-kill"), 0);
    _cleanup_free_ char *procs =
        xasprintf("/sys/fs/cgroup/pids/%s/gv-kill/cgroup.procs", fx_cgroot);
    FILE *f = fopen(procs, "r");
    int pid;
    while (f && fscanf(f, "%d", &pid) == 1)
        kill(pid, SIGKILL);
    if (f)
        fclose(f);
    rt_info_t info;
    sbx_error_t err = {0};
    for (int64_t end = sbx_monotonic_ms() + 10000; sbx_monotonic_ms() < end; usleep(50000)) {
        ck_assert_int_eq(rt_get(fx_rt, "gv-kill", &info, &err), 0);
        if (info.state == RT_STATE_FAILED)
            break;
    }
    ck_assert_int_eq(info.state, RT_STATE_FAILED);
    ck_assert_msg(rt_destroy(fx_rt, "gv-kill", &err) == 0, "%s", err.msg);
    _cleanup_free_ char *dir = xasprintf("%s/sandboxes/gv-kill", fx_state);
    ck_assert_int_ne(access(dir, F_OK), 0);
    _cleanup_free_ char *cg = xasprintf("/sys/fs/cgroup/pids/%s/gv-kill", fx_cgroot);
    ck_assert_int_ne(access(cg, F_OK), 0);
    ck_assert(!runsc_left("gv-kill"));
}
END_TEST

/* Health names the drivers that do not work here with a reason; a create
 * asking for one is refused with it and leaves nothing.  */
START_TEST(test_gvisor_health_reasons)
{
    rt_health_t h;
    sbx_error_t err = {0};
    ck_assert_int_eq(rt_health(fx_rt, &h, &err), 0);
    ck_assert_str_eq(h.drivers[0], "process");
    for (size_t i = 0; i < ARRAY_SIZE(h.unavailable) && h.unavailable[i].name; i++) {
        ck_assert_msg(h.unavailable[i].why[0], "%s without a reason", h.unavailable[i].name);
        rt_spec_t spec = {.id = "gv-no", .driver = h.unavailable[i].name, .rootfs = fx_rootfs};
        rt_info_t info;
        ck_assert_int_eq(rt_create(fx_rt, &spec, &info, &err), -1);
        ck_assert_int_eq(err.code, SBX_ERR_UNAVAILABLE);
        ck_assert_msg(strstr(err.msg, h.unavailable[i].why), "%s", err.msg);
        ck_assert_int_eq(rt_get(fx_rt, "gv-no", &info, &err), -1);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("runtime_gvisor");
    TCase *tc = tcase_create("gvisor");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gvisor_health_reasons);
    tcase_add_test(tc, test_gvisor_exec_and_files);
    tcase_add_test(tc, test_gvisor_probe_view);
    tcase_add_test(tc, test_gvisor_probe_refused);
    tcase_add_test(tc, test_gvisor_suspend_resume);
    tcase_add_test(tc, test_gvisor_stop_start_adopt);
    tcase_add_test(tc, test_gvisor_killed_and_destroyed);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
