/* test_runtime_lifecycle.c -- process-driver sandboxes over their life:
 * create (idempotent, bad specs), suspend/resume (no CPU while frozen),
 * stop/start (processes end, the writable layer stays), destroy (nothing
 * left: processes, mounts, cgroups, files), limits, and recovery when a new
 * runtime opens the state dir of one that went away.  */
#include <signal.h>

#include "tests/integration/test_runtime_fixture.h"

static uint64_t cpu_us(const char *id)
{
    rt_info_t info;
    sbx_error_t err = {0};
    ck_assert_msg(rt_get(fx_rt, id, &info, &err) == 0, "%s", err.msg);
    return info.cpu_used_us;
}

static pid_t init_pid_of(const char *id)
{
    _cleanup_free_ char *path = xasprintf("%s/sandboxes/%s/state.json", fx_state, id);
    json_t *j = json_load_file(path, 0, NULL);
    ck_assert_ptr_nonnull(j);
    pid_t pid = (pid_t)json_integer_value(json_object_get(j, "initPid"));
    json_decref(j);
    return pid;
}

static bool mounted(const char *needle)
{
    _cleanup_free_ char *mi = NULL;
    size_t len;
    ck_assert(sbx_read_file("/proc/self/mountinfo", &mi, &len, NULL) == 0);
    return strstr(mi, needle) != NULL;
}

START_TEST(test_runtime_lifecycle_create_checks)
{
    sbx_error_t err = {0};
    rt_info_t info;
    rt_spec_t bad[] = {
        {.id = "Bad_Id", .rootfs = fx_rootfs},
        {.id = "-x", .rootfs = fx_rootfs},
        {.id = "ok1", .rootfs = NULL},
        {.id = "ok1", .rootfs = "relative/path"},
        {.id = "ok1", .rootfs = "/does/not/exist"},
        {.id = "ok1", .rootfs = fx_rootfs, .driver = "hypervisor9000"},
        {.id = "ok1", .rootfs = fx_rootfs, .cpu = -1},
        {.id = "ok1", .rootfs = fx_rootfs, .memory_mib = 1},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ck_assert_int_eq(rt_create(fx_rt, &bad[i], &info, &err), -1);
        ck_assert_msg(err.code == SBX_ERR_INVALID, "case %zu: %s", i, err.msg);
    }
    json_t *env = json_pack("{s:i}", "N", 1);
    rt_spec_t badenv = {.id = "ok1", .rootfs = fx_rootfs, .env = env};
    ck_assert_int_eq(rt_create(fx_rt, &badenv, &info, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    json_decref(env);

    rt_spec_t spec = {.id = "lc-idem",
                      .rootfs = fx_rootfs,
                      .image = "test/image:1",
                      .cpu = 0.5,
                      .memory_mib = 128};
    ck_assert_msg(rt_create(fx_rt, &spec, &info, &err) == 0, "%s", err.msg);
    int64_t created = info.created_ms;
    ck_assert_str_eq(info.image, "test/image:1");
    ck_assert_str_eq(info.driver, "process");
    ck_assert_uint_eq(info.memory_mib, 128);
    /* Again: the same sandbox.  */
    ck_assert(rt_create(fx_rt, &spec, &info, &err) == 0);
    ck_assert_int_eq(info.created_ms, created);
    rt_info_t *list;
    size_t n;
    ck_assert(rt_list(fx_rt, &list, &n, &err) == 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(list[0].id, "lc-idem");
    ck_assert_int_eq(list[0].state, RT_STATE_RUNNING);
    free(list);
    rt_health_t h;
    ck_assert(rt_health(fx_rt, &h, &err) == 0);
    /* process first; gvisor where runsc works here; microvm only where
     * KVM boots a guest (this runtime does not allow emulation).  */
    ck_assert_str_eq(h.drivers[0], "process");
    ck_assert(!h.drivers[1] || strcmp(h.drivers[1], "gvisor") == 0 ||
              strcmp(h.drivers[1], "microvm") == 0);
    ck_assert_uint_eq(h.slots_used, 1);
    ck_assert(h.cpu_allocated == 0.5);
    ck_assert_uint_eq(h.memory_allocated_mib, 128);

    /* Unknown ids and calls the state does not allow.  */
    ck_assert_int_eq(rt_get(fx_rt, "nope", &info, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_stop(fx_rt, "nope", &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_destroy(fx_rt, "nope", &err), 0);
    ck_assert_int_eq(rt_stop(fx_rt, "lc-idem", &err), 0);
    ck_assert_int_eq(rt_suspend(fx_rt, "lc-idem", &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_CONFLICT);
    char *argv[] = {"true", NULL};
    rt_exec_result_t r;
    ck_assert_int_eq(rt_exec(fx_rt, "lc-idem", &(rt_exec_request_t){.argv = argv}, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_CONFLICT);
    /* A second runtime on the same state dir is refused.  */
    rt_config_t cfg = {.state_dir = fx_state, .cgroup_root = fx_cgroot};
    ck_assert_ptr_null(rt_open(&cfg, &err));
    ck_assert_int_eq(err.code, SBX_ERR_CONFLICT);
}
END_TEST

START_TEST(test_runtime_lifecycle_suspend_resume)
{
    fx_create("lc-susp", NULL);
    rt_exec_result_t r = fx_sh("lc-susp", "(while :; do :; done) >/dev/null 2>&1 & echo spinning");
    ck_assert_str_eq(r.out, "spinning\n");
    rt_exec_result_done(&r);
    /* Running: CPU time grows.  */
    uint64_t c0 = cpu_us("lc-susp");
    tu_wait_until(cpu_us("lc-susp") >= c0 + 100000, 5000);
    ck_assert_uint_ge(cpu_us("lc-susp"), c0 + 100000);

    sbx_error_t err = {0};
    ck_assert_msg(rt_suspend(fx_rt, "lc-susp", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(rt_suspend(fx_rt, "lc-susp", &err), 0); /* idempotent */
    rt_info_t info;
    ck_assert(rt_get(fx_rt, "lc-susp", &info, &err) == 0);
    ck_assert_int_eq(info.state, RT_STATE_SUSPENDED);
    ck_assert_uint_gt(info.memory_used_bytes, 0);
    /* Suspended: it stays where it was (a fixed window: we are measuring
     * that nothing happens).  */
    uint64_t c1 = cpu_us("lc-susp");
    usleep(400 * 1000);
    uint64_t c2 = cpu_us("lc-susp");
    ck_assert_msg(c2 - c1 < 10000, "frozen sandbox used %llu us", (unsigned long long)(c2 - c1));

    ck_assert_msg(rt_resume(fx_rt, "lc-susp", &err) == 0, "%s", err.msg);
    tu_wait_until(cpu_us("lc-susp") >= c2 + 100000, 5000);
    ck_assert_uint_ge(cpu_us("lc-susp"), c2 + 100000);

    /* Exec into a suspended sandbox resumes it.  */
    ck_assert(rt_suspend(fx_rt, "lc-susp", &err) == 0);
    r = fx_sh("lc-susp", "echo awake");
    ck_assert_str_eq(r.out, "awake\n");
    rt_exec_result_done(&r);
    ck_assert(rt_get(fx_rt, "lc-susp", &info, &err) == 0);
    ck_assert_int_eq(info.state, RT_STATE_RUNNING);
}
END_TEST

START_TEST(test_runtime_lifecycle_stop_start)
{
    fx_create("lc-stop", NULL);
    rt_exec_result_t r = fx_sh("lc-stop", "echo kept > /root/keep; sleep 300 & echo ok");
    rt_exec_result_done(&r);
    pid_t init = init_pid_of("lc-stop");
    sbx_error_t err = {0};
    ck_assert_msg(rt_stop(fx_rt, "lc-stop", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(rt_stop(fx_rt, "lc-stop", &err), 0);
    ck_assert(!fx_pid_alive(init));
    rt_info_t info;
    ck_assert(rt_get(fx_rt, "lc-stop", &info, &err) == 0);
    ck_assert_int_eq(info.state, RT_STATE_STOPPED);
    /* The writable layer is there while stopped, through the files API...  */
    char *data;
    size_t len;
    ck_assert_msg(rt_file_read(fx_rt, "lc-stop", "/root/keep", 0, &data, &len, &err) == 0, "%s",
                  err.msg);
    ck_assert_str_eq(data, "kept\n");
    free(data);
    /* ...and after a start; the processes are not.  */
    ck_assert_msg(rt_start(fx_rt, "lc-stop", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(rt_start(fx_rt, "lc-stop", &err), 0);
    r = fx_sh("lc-stop", "cat /root/keep; ps -o comm | grep -c sleep");
    ck_assert_str_eq(r.out, "kept\n0\n");
    rt_exec_result_done(&r);
    ck_assert_int_ne(init_pid_of("lc-stop"), init);

    /* Its init killed behind our back: exec says so, and it is Stopped.  */
    ck_assert_int_eq(kill(init_pid_of("lc-stop"), SIGKILL), 0);
    while (fx_pid_alive(init_pid_of("lc-stop")))
        usleep(1000);
    char *argv[] = {"true", NULL};
    ck_assert_int_eq(rt_exec(fx_rt, "lc-stop", &(rt_exec_request_t){.argv = argv}, &r, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_CONFLICT, "%s", err.msg);
    ck_assert(rt_get(fx_rt, "lc-stop", &info, &err) == 0);
    ck_assert_int_eq(info.state, RT_STATE_STOPPED);
    ck_assert_str_eq(info.message, "sandbox init exited");
}
END_TEST

START_TEST(test_runtime_lifecycle_destroy_leaves_nothing)
{
    fx_create("lc-gone", NULL);
    rt_exec_result_t r = fx_sh("lc-gone", "sleep 300 & (sleep 301 &) ; echo x > /tmp/f");
    rt_exec_result_done(&r);
    pid_t init = init_pid_of("lc-gone");
    _cleanup_free_ char *dir = xasprintf("%s/sandboxes/lc-gone", fx_state);
    _cleanup_free_ char *needle = xasprintf("%s/", dir);
    ck_assert(mounted(needle));
    sbx_error_t err = {0};
    ck_assert_msg(rt_destroy(fx_rt, "lc-gone", &err) == 0, "%s", err.msg);
    ck_assert(!fx_pid_alive(init));
    ck_assert(!mounted(needle));
    ck_assert_int_ne(access(dir, F_OK), 0);
    const char *ctrls[] = {"cpu", "cpuacct", "memory", "pids", "freezer"};
    for (size_t i = 0; i < ARRAY_SIZE(ctrls); i++) {
        _cleanup_free_ char *cg = xasprintf("/sys/fs/cgroup/%s/%s/lc-gone", ctrls[i], fx_cgroot);
        ck_assert_msg(access(cg, F_OK) != 0, "%s still there", cg);
    }
    /* No process of any sandbox uid range is left behind either.  */
    rt_info_t info;
    ck_assert_int_eq(rt_get(fx_rt, "lc-gone", &info, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_destroy(fx_rt, "lc-gone", &err), 0);
    /* The id can be used again.  */
    fx_create("lc-gone", NULL);
    r = fx_sh("lc-gone", "cat /tmp/f 2>/dev/null || echo fresh");
    ck_assert_str_eq(r.out, "fresh\n");
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_lifecycle_limits)
{
    rt_spec_t spec = {.cpu = 0.2};
    fx_create("lc-cpu", &spec);
    uint64_t c0 = cpu_us("lc-cpu");
    char *argv[] = {"/bin/probe", "spin", "1", NULL};
    int64_t t0 = sbx_monotonic_ms();
    rt_exec_result_t r = fx_execv("lc-cpu", argv, 10000);
    int64_t wall = sbx_monotonic_ms() - t0;
    rt_exec_result_done(&r);
    uint64_t used = cpu_us("lc-cpu") - c0;
    /* A fifth of a core for about a second.  */
    ck_assert_msg(used < (uint64_t)wall * 1000 / 2, "used %llu us in %lld ms",
                  (unsigned long long)used, (long long)wall);
}
END_TEST

START_TEST(test_runtime_lifecycle_recovery)
{
    fx_create("lc-keep", NULL);
    fx_create("lc-dead", NULL);
    fx_create("lc-stopped", NULL);
    fx_create("lc-half", NULL);
    fx_create("lc-frozen", NULL);
    rt_exec_result_t r = fx_sh("lc-keep", "echo state > /root/s; sleep 300 & echo ok");
    rt_exec_result_done(&r);
    sbx_error_t err = {0};
    ck_assert(rt_stop(fx_rt, "lc-stopped", &err) == 0);
    ck_assert(rt_suspend(fx_rt, "lc-frozen", &err) == 0);
    pid_t keep_init = init_pid_of("lc-keep"), dead_init = init_pid_of("lc-dead");
    pid_t half_init = init_pid_of("lc-half");

    /* The agent goes away; sandboxes keep running.  */
    rt_close(fx_rt);
    fx_rt = NULL;
    ck_assert(fx_pid_alive(keep_init));
    /* Meanwhile one sandbox dies, and one looks half-created.  */
    ck_assert_int_eq(kill(dead_init, SIGKILL), 0);
    _cleanup_free_ char *half = xasprintf("%s/sandboxes/lc-half/state.json", fx_state);
    json_t *j = json_load_file(half, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_object_set_new(j, "state", json_string("Creating"));
    ck_assert_int_eq(json_dump_file(j, half, 0), 0);
    json_decref(j);
    _cleanup_free_ char *junk = xasprintf("%s/sandboxes/not-a-sandbox", fx_state);
    ck_assert_int_eq(mkdir(junk, 0700), 0);

    fx_open();
    rt_info_t info;
    ck_assert_msg(rt_get(fx_rt, "lc-keep", &info, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(info.state, RT_STATE_RUNNING);
    ck_assert_int_eq(init_pid_of("lc-keep"), keep_init);
    r = fx_sh("lc-keep", "cat /root/s; ps -o comm | grep -c sleep");
    ck_assert_str_eq(r.out, "state\n1\n");
    rt_exec_result_done(&r);

    ck_assert(rt_get(fx_rt, "lc-dead", &info, &err) == 0);
    ck_assert_int_eq(info.state, RT_STATE_STOPPED);
    ck_assert_msg(rt_start(fx_rt, "lc-dead", &err) == 0, "%s", err.msg);
    r = fx_sh("lc-dead", "echo back");
    ck_assert_str_eq(r.out, "back\n");
    rt_exec_result_done(&r);

    ck_assert(rt_get(fx_rt, "lc-stopped", &info, &err) == 0);
    ck_assert_int_eq(info.state, RT_STATE_STOPPED);
    ck_assert(rt_get(fx_rt, "lc-frozen", &info, &err) == 0);
    ck_assert_int_eq(info.state, RT_STATE_SUSPENDED);
    ck_assert(rt_resume(fx_rt, "lc-frozen", &err) == 0);

    /* The half-created one is gone, whole.  */
    ck_assert_int_eq(rt_get(fx_rt, "lc-half", &info, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert(!fx_pid_alive(half_init));
    _cleanup_free_ char *half_dir = xasprintf("%s/sandboxes/lc-half", fx_state);
    ck_assert_int_ne(access(half_dir, F_OK), 0);
    _cleanup_free_ char *half_cg = xasprintf("/sys/fs/cgroup/pids/%s/lc-half", fx_cgroot);
    ck_assert_int_ne(access(half_cg, F_OK), 0);

    /* Adopted sandboxes stop and go like any other.  */
    ck_assert_msg(rt_destroy(fx_rt, "lc-keep", &err) == 0, "%s", err.msg);
    ck_assert(!fx_pid_alive(keep_init));
    rmdir(junk);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("runtime_lifecycle");
    TCase *tc = tcase_create("lifecycle");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_lifecycle_create_checks);
    tcase_add_test(tc, test_runtime_lifecycle_suspend_resume);
    tcase_add_test(tc, test_runtime_lifecycle_stop_start);
    tcase_add_test(tc, test_runtime_lifecycle_destroy_leaves_nothing);
    tcase_add_test(tc, test_runtime_lifecycle_limits);
    tcase_add_test(tc, test_runtime_lifecycle_recovery);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
