/* test_runtime_microvm.c -- the microvm driver end to end on the runtime
 * API, under software emulation (this machine's KVM cannot boot a guest):
 * a sandbox is a QEMU microVM with its own kernel; exec and files go
 * through the guest agent; the writable disk survives stop and start; a
 * killed QEMU makes the sandbox Failed; destroy leaves no QEMU, disk,
 * socket or cgroup.  Two boots in all, to keep the run short.  Skipped
 * (with a message) where QEMU or the guest kernel is missing.  */
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include "tests/integration/test_runtime_fixture.h"
#include "tests/integration/microvm_fixture.h"

static void exec_checks(const char *id)
{
    struct utsname u;
    uname(&u);
    rt_exec_result_t r = fx_sh(id, "uname -r; hostname; id -u; grep -c ^processor /proc/cpuinfo");
    ck_assert_int_eq(r.exit_code, 0);
    char rel[128];
    ck_assert_int_eq(sscanf(r.out, "%127s", rel), 1);
    ck_assert_msg(strcmp(rel, u.release) != 0, "the guest runs the host's kernel %s", rel);
    ck_assert_ptr_nonnull(strstr(r.out, id));
    /* Its /proc/cpuinfo is the VM's: one vCPU (the sandbox asked for no
     * more), whatever the host has.  */
    const char *last = strrchr(r.out, '\n');
    while (last && last > r.out && last[-1] != '\n')
        last--;
    ck_assert_int_eq(atoi(last ? last : r.out), 1);
    rt_exec_result_done(&r);

    r = fx_sh(id, "echo out; echo err >&2; exit 7");
    ck_assert_int_eq(r.exit_code, 7);
    ck_assert_str_eq(r.out, "out\n");
    ck_assert_str_eq(r.err, "err\n");
    rt_exec_result_done(&r);

    char *cat[] = {"cat", NULL};
    rt_exec_request_t req = {
        .argv = cat, .stdin_data = "from stdin", .stdin_len = 10, .env = (char *[]){"A=1", NULL}};
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(fx_rt, id, &req, &r, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(r.out, "from stdin");
    rt_exec_result_done(&r);

    /* A user of the request's: its uid, gid and groups, not root's.  */
    char *idcmd[] = {"id", NULL};
    req = (rt_exec_request_t){
        .argv = idcmd,
        .user = {.set = true, .uid = 1234, .gid = 1235, .groups = {7}, .n_groups = 1}};
    ck_assert_msg(rt_exec(fx_rt, id, &req, &r, &err) == 0, "%s", err.msg);
    ck_assert_msg(strstr(r.out, "uid=1234") && strstr(r.out, "gid=1235") &&
                      strstr(r.out, "groups=7"),
                  "%s", r.out);
    rt_exec_result_done(&r);

    char *missing[] = {"no-such-command", NULL};
    r = fx_execv(id, missing, 20000);
    ck_assert_int_eq(r.exit_code, 127);
    rt_exec_result_done(&r);

    req = (rt_exec_request_t){.argv = cat, .cwd = "/no/such/dir"};
    ck_assert_int_eq(rt_exec(fx_rt, id, &req, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);

    char *sleeper[] = {"sleep", "30", NULL};
    req = (rt_exec_request_t){.argv = sleeper, .timeout_ms = 1000};
    ck_assert_msg(rt_exec(fx_rt, id, &req, &r, &err) == 0, "%s", err.msg);
    ck_assert(r.timed_out);
    rt_exec_result_done(&r);

    /* Output past the cap is cut, not the command.  */
    char *yes[] = {"sh", "-c", "head -c 100000 /dev/zero; exit 3", NULL};
    req = (rt_exec_request_t){.argv = yes, .output_cap = 1000};
    ck_assert_msg(rt_exec(fx_rt, id, &req, &r, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r.exit_code, 3);
    ck_assert_uint_eq(r.out_len, 1000);
    ck_assert(r.out_truncated);
    rt_exec_result_done(&r);
}

static void file_checks(const char *id)
{
    sbx_error_t err = {0};
    ck_assert_msg(rt_file_write(fx_rt, id, "/tmp/a/b.txt", "hello\0x", 7, &err) == 0, "%s",
                  err.msg);
    char *data = NULL;
    size_t len = 0;
    /* .. cannot leave the guest's root.  */
    ck_assert_msg(rt_file_read(fx_rt, id, "/../../tmp/a/../a/b.txt", 0, &data, &len, &err) == 0,
                  "%s", err.msg);
    ck_assert_uint_eq(len, 7);
    ck_assert_mem_eq(data, "hello\0x", 7);
    free(data);
    rt_exec_result_t r = fx_sh(id, "cat /tmp/a/b.txt | head -c 5; cat /etc/image-marker");
    ck_assert_str_eq(r.out, "helloimage\n");
    rt_exec_result_done(&r);

    rt_dirent_t *ents = NULL;
    size_t n = 0;
    ck_assert_msg(rt_file_list(fx_rt, id, "/tmp/a", &ents, &n, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ents[0].name, "b.txt");
    ck_assert_str_eq(ents[0].type, "file");
    ck_assert_uint_eq(ents[0].size, 7);
    rt_dirents_free(ents, n);

    ck_assert_int_eq(rt_file_read(fx_rt, id, "/nope", 0, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_file_read(fx_rt, id, "/tmp", 0, &data, &len, &err), -1);
    ck_assert_int_eq(rt_file_read(fx_rt, id, "/bin/busybox", 10, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_TOO_LARGE);
    ck_assert_msg(rt_file_delete(fx_rt, id, "/tmp/a", &err) == 0, "%s", err.msg);
    ck_assert_int_eq(rt_file_list(fx_rt, id, "/tmp/a", &ents, &n, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    /* Kept for the restart check.  */
    ck_assert(rt_file_write(fx_rt, id, "/root/kept", "kept", 4, &err) == 0);
}

static long count_of(const char *id)
{
    rt_exec_result_t r = fx_sh(id, "cat /tmp/count");
    long n = atol(r.out);
    rt_exec_result_done(&r);
    return n;
}

/* Suspend writes the VM's memory to a file and ends QEMU; resume restores
 * it: a counting process goes on from its count, the same process.  */
static void snapshot_checks(const char *id)
{
    rt_exec_result_t r = fx_sh(id, "(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; "
                                   "sleep 0.1; done) >/dev/null 2>&1 & echo $! > /tmp/pid");
    ck_assert_int_eq(r.exit_code, 0);
    rt_exec_result_done(&r);
    long before = 0;
    for (int64_t end = sbx_monotonic_ms() + 20000; before < 3 && sbx_monotonic_ms() < end;
         usleep(100000))
        before = count_of(id);
    ck_assert_int_ge(before, 3);
    sbx_error_t err = {0};
    int64_t t0 = sbx_monotonic_ms();
    ck_assert_msg(rt_suspend(fx_rt, id, &err) == 0, "%s", err.msg);
    int64_t suspend_ms = sbx_monotonic_ms() - t0;
    ck_assert_int_eq(qemu_of(id), 0);
    _cleanup_free_ char *snap = xasprintf("%s/sandboxes/%s/snapshot.mem", fx_state, id);
    struct stat st;
    ck_assert_int_eq(stat(snap, &st), 0);
    rt_info_t info;
    ck_assert_int_eq(rt_get(fx_rt, id, &info, &err), 0);
    ck_assert_int_eq(info.state, RT_STATE_SUSPENDED);
    t0 = sbx_monotonic_ms();
    ck_assert_msg(rt_resume(fx_rt, id, &err) == 0, "%s", err.msg);
    int64_t resume_ms = sbx_monotonic_ms() - t0;
    fprintf(stderr, "microvm: snapshot %lld KiB, suspend %lld ms, resume %lld ms\n",
            (long long)st.st_size / 1024, (long long)suspend_ms, (long long)resume_ms);
    ck_assert_int_ne(access(snap, F_OK), 0);
    long after = count_of(id);
    ck_assert_int_ge(after, before);
    /* Counting on from there, not from 0 (a reboot would have lost it).  */
    long later = after;
    for (int64_t end = sbx_monotonic_ms() + 20000; later <= after && sbx_monotonic_ms() < end;
         usleep(100000))
        later = count_of(id);
    ck_assert_int_gt(later, after);
    r = fx_sh(id, "kill $(cat /tmp/pid) && echo killed");
    ck_assert_str_eq(r.out, "killed\n");
    rt_exec_result_done(&r);
}

START_TEST(test_microvm_end_to_end)
{
    if (!mv_open())
        return;
    const char *id = "mv-one";
    rt_spec_t spec = {.driver = "microvm", .memory_mib = 256, .disk_mib = 64};
    int64_t t0 = sbx_monotonic_ms();
    fx_create(id, &spec);
    fprintf(stderr, "microvm: created (booted) in %lld ms\n", (long long)(sbx_monotonic_ms() - t0));
    pid_t qemu = qemu_of(id);
    ck_assert_int_gt(qemu, 0);
    /* QEMU is not root, and is in the sandbox's cgroups.  */
    _cleanup_free_ char *status = xasprintf("/proc/%d/status", (int)qemu);
    _cleanup_free_ char *text = NULL;
    size_t len;
    ck_assert(sbx_read_file(status, &text, &len, NULL) == 0);
    ck_assert_ptr_null(strstr(text, "\nUid:\t0\t"));
    _cleanup_free_ char *procs = xasprintf("/sys/fs/cgroup/pids/%s/%s/cgroup.procs", fx_cgroot, id);
    _cleanup_free_ char *pids = NULL;
    ck_assert(sbx_read_file(procs, &pids, &len, NULL) == 0);
    ck_assert_int_eq(atoi(pids), qemu);

    exec_checks(id);
    file_checks(id);

    snapshot_checks(id);

    /* The writable disk outlives a stop; a second boot sees the file.  */
    sbx_error_t err = {0};
    ck_assert_msg(rt_stop(fx_rt, id, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(qemu_of(id), 0);
    t0 = sbx_monotonic_ms();
    ck_assert_msg(rt_start(fx_rt, id, &err) == 0, "%s", err.msg);
    fprintf(stderr, "microvm: restarted in %lld ms\n", (long long)(sbx_monotonic_ms() - t0));
    rt_exec_result_t r = fx_sh(id, "cat /root/kept");
    ck_assert_str_eq(r.out, "kept");
    rt_exec_result_done(&r);

    /* A new runtime on the same state directory (an agent restart)
     * adopts the running VM: the same QEMU answers.  */
    qemu = qemu_of(id);
    ck_assert_int_gt(qemu, 0);
    ck_assert(mv_open());
    rt_info_t info;
    ck_assert_int_eq(rt_get(fx_rt, id, &info, &err), 0);
    ck_assert_int_eq(info.state, RT_STATE_RUNNING);
    r = fx_sh(id, "cat /root/kept");
    ck_assert_str_eq(r.out, "kept");
    rt_exec_result_done(&r);
    ck_assert_int_eq(qemu_of(id), qemu);

    /* A killed QEMU: the sandbox is Failed.  */
    kill(qemu, SIGKILL);
    for (int64_t end = sbx_monotonic_ms() + 10000; sbx_monotonic_ms() < end; usleep(50000)) {
        ck_assert_int_eq(rt_get(fx_rt, id, &info, &err), 0);
        if (info.state == RT_STATE_FAILED)
            break;
    }
    ck_assert_int_eq(info.state, RT_STATE_FAILED);
    ck_assert_ptr_nonnull(strstr(info.message, "QEMU"));
    char *cat[] = {"cat", NULL};
    rt_exec_request_t req = {.argv = cat};
    ck_assert_int_eq(rt_exec(fx_rt, id, &req, &r, &err), -1);

    /* Destroy leaves nothing: no QEMU, disk, socket, directory or cgroup.  */
    ck_assert_msg(rt_destroy(fx_rt, id, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(qemu_of(id), 0);
    _cleanup_free_ char *dir = xasprintf("%s/sandboxes/%s", fx_state, id);
    ck_assert_int_ne(access(dir, F_OK), 0);
    _cleanup_free_ char *cg = xasprintf("/sys/fs/cgroup/pids/%s/%s", fx_cgroot, id);
    ck_assert_int_ne(access(cg, F_OK), 0);
}
END_TEST

/* Without emulation allowed and without a KVM that boots, the driver is
 * unavailable with its reason, and a create is refused with it.  */
START_TEST(test_microvm_needs_kvm_or_emulation)
{
    if (access("/dev/kvm", F_OK) == 0)
        return; /* the answer depends on whether this KVM boots a guest */
    rt_health_t h;
    sbx_error_t err = {0};
    ck_assert_int_eq(rt_health(fx_rt, &h, &err), 0);
    bool listed = false;
    for (size_t i = 0; i < ARRAY_SIZE(h.unavailable) && h.unavailable[i].name; i++)
        if (strcmp(h.unavailable[i].name, "microvm") == 0) {
            listed = true;
            ck_assert_msg(strstr(h.unavailable[i].why, "kvm") ||
                              strstr(h.unavailable[i].why, "qemu") ||
                              strstr(h.unavailable[i].why, "kernel"),
                          "%s", h.unavailable[i].why);
        }
    ck_assert(listed);
    rt_spec_t spec = {.id = "mv-no", .driver = "microvm", .rootfs = fx_rootfs};
    rt_info_t info;
    ck_assert_int_eq(rt_create(fx_rt, &spec, &info, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_UNAVAILABLE);
}
END_TEST

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_runtime_microvm: needs root, skipped\n");
        return 0;
    }
    Suite *s = suite_create("runtime_microvm");
    TCase *tc = tcase_create("microvm");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_microvm_needs_kvm_or_emulation);
    tcase_add_test(tc, test_microvm_end_to_end);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
