/* test_runtime_isolation.c -- what a process-driver sandbox can see and do,
 * as reported by the probe from inside: its own processes only, its own
 * hostname and loopback-only network, no capabilities, refused dangerous
 * system calls, no way to the host's files or the shared image, contained
 * fork bombs and memory hogs, and no reach into another sandbox.  */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "tests/integration/test_runtime_fixture.h"

/* Host pid of a process named comm in sandbox id (0 if none).  */
static pid_t host_pid_of(const char *id, const char *comm)
{
    const char *base = access("/sys/fs/cgroup/pids", F_OK) == 0 ? "/sys/fs/cgroup/pids"
                                                                  : "/sys/fs/cgroup";
    _cleanup_free_ char *dir = xasprintf("%s/%s/%s", base, fx_cgroot, id);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    pid_t found = 0;
    struct dirent *de;
    /* The sandbox's own cgroup and its exec children.  */
    for (int pass = 0; (de = pass ? readdir(d) : NULL) || pass == 0; pass = 1) {
        if (pass && (de->d_type != DT_DIR || de->d_name[0] == '.'))
            continue;
        _cleanup_free_ char *procs =
            pass ? xasprintf("%s/%s/cgroup.procs", dir, de->d_name) : xasprintf("%s/cgroup.procs", dir);
        FILE *f = fopen(procs, "r");
        int pid;
        while (f && !found && fscanf(f, "%d", &pid) == 1) {
            char path[64], name[64] = "";
            snprintf(path, sizeof path, "/proc/%d/comm", pid);
            FILE *c = fopen(path, "r");
            if (c && fgets(name, sizeof name, c)) {
                name[strcspn(name, "\n")] = 0;
                if (strcmp(name, comm) == 0)
                    found = pid;
            }
            if (c)
                fclose(c);
        }
        if (f)
            fclose(f);
        if (found)
            break;
    }
    closedir(d);
    return found;
}

START_TEST(test_runtime_isolation_view)
{
    fx_create("iso-view", NULL);
    json_t *j = fx_probe("iso-view", "info", NULL, NULL);
    /* Its own pid namespace: pid 1 (the init) and the probe, nothing else.  */
    json_t *pids = json_object_get(j, "pids");
    ck_assert_int_le(json_array_size(pids), 2);
    ck_assert_int_eq(json_integer_value(json_array_get(pids, 0)), 1);
    ck_assert_int_lt(json_integer_value(json_object_get(j, "pid")), 10);
    ck_assert_str_eq(json_string_value(json_object_get(j, "hostname")), "iso-view");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "uid")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "CapEff")), "0000000000000000");
    ck_assert_str_eq(json_string_value(json_object_get(j, "CapPrm")), "0000000000000000");
    ck_assert_str_eq(json_string_value(json_object_get(j, "CapBnd")), "0000000000000000");
    ck_assert_str_eq(json_string_value(json_object_get(j, "CapAmb")), "0000000000000000");
    ck_assert_str_eq(json_string_value(json_object_get(j, "NoNewPrivs")), "1");
    ck_assert_str_eq(json_string_value(json_object_get(j, "Seccomp")), "2");
    ck_assert_str_eq(json_string_value(json_object_get(j, "Groups")), "");
    /* Loopback only, and up.  */
    json_t *ifaces = json_object_get(j, "ifaces");
    ck_assert_int_eq(json_array_size(ifaces), 1);
    ck_assert_str_eq(json_string_value(json_array_get(ifaces, 0)), "lo");
    /* Its own cgroup namespace: it sees itself at the root.  */
    ck_assert_ptr_null(strstr(json_string_value(json_object_get(j, "cgroup")), fx_cgroot));
    json_decref(j);

    /* The image's root-owned files belong to root inside (id-mapped).  */
    rt_exec_result_t r = fx_sh("iso-view", "stat -c %u:%g /bin/busybox; cat /root/secret; ls /");
    ck_assert_msg(strncmp(r.out, "0:0\nroot only\n", 14) == 0, "got '%s' '%s'", r.out, r.err);
    ck_assert_ptr_null(strstr(r.out, "layer"));
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_isolation_syscalls_refused)
{
    fx_create("iso-sys", NULL);
    json_t *j = fx_probe("iso-sys", "syscalls", NULL, NULL);
    const char *must_fail[] = {
        "mount", "mount_proc", "umount", "pivot_root", "chroot", "ptrace_pid1", "kexec_load",
        "init_module", "finit_module", "delete_module", "bpf", "keyctl", "add_key",
        "unshare_user", "unshare_net", "clone_newuser", "setns", "perf_event_open",
        "userfaultfd", "open_by_handle_at", "swapon", "reboot", "acct", "io_uring_setup",
        "mknod", "socket_vsock", "socket_vsock_high",
    };
    for (size_t i = 0; i < ARRAY_SIZE(must_fail); i++) {
        json_t *v = json_object_get(j, must_fail[i]);
        ck_assert_msg(v && json_integer_value(v) != 0, "%s succeeded inside the sandbox",
                      must_fail[i]);
    }
    ck_assert_int_eq(json_integer_value(json_object_get(j, "mount")), EPERM);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "init_module")), EPERM);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "ptrace_pid1")), EPERM);
    /* vsock, which no network namespace confines, is as if absent.  */
    ck_assert_int_eq(json_integer_value(json_object_get(j, "socket_vsock")), EAFNOSUPPORT);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "socket_vsock_high")), EAFNOSUPPORT);
    json_decref(j);
    /* System calls of the other x86 ABIs, which the filter does not
     * describe, end the process.  */
    j = fx_probe("iso-sys", "abi", NULL, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "x32")), SIGSYS);
    /* A kernel built without 32-bit emulation faults on int 0x80 before
     * any filter runs: as safe, and what some hosts do.  */
    int i386 = (int)json_integer_value(json_object_get(j, "i386"));
    ck_assert_msg(i386 == SIGSYS || i386 == SIGSEGV, "i386 system call ended by signal %d", i386);
    json_decref(j);

    /* Nor can it trace a sibling process.  */
    rt_exec_result_t r = fx_sh("iso-sys", "sleep 60 & echo $!");
    int pid = atoi(r.out);
    rt_exec_result_done(&r);
    char pidstr[16];
    snprintf(pidstr, sizeof pidstr, "%d", pid);
    j = fx_probe("iso-sys", "ptrace", pidstr, NULL);
    ck_assert(!json_is_true(json_object_get(j, "ok")));
    json_decref(j);
}
END_TEST

START_TEST(test_runtime_isolation_host_files)
{
    fx_create("iso-host", NULL);
    _cleanup_free_ char *marker = xasprintf("%s/host-marker", fx_dir);
    sbx_error_t err = {0};
    ck_assert(sbx_write_file_atomic(marker, "host secret\n", 12, 0644, &err) == 0);
    json_t *j = fx_probe("iso-host", "read", marker, NULL);
    ck_assert(!json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    /* Through a symlink, .. chains, and the init's root.  */
    _cleanup_free_ char *script = xasprintf(
        "ln -s %s /tmp/l; cat /tmp/l; cat /../../../..%s; cat /proc/1/root%s; "
        "cat /proc/self/cwd/../../..%s; echo done", marker, marker, marker, marker);
    rt_exec_result_t r = fx_sh("iso-host", script);
    ck_assert_str_eq(r.out, "done\n");
    rt_exec_result_done(&r);
    j = fx_probe("iso-host", "read", "/etc/shadow", NULL);
    ck_assert(!json_is_true(json_object_get(j, "ok")));
    json_decref(j);
}
END_TEST

START_TEST(test_runtime_isolation_image_unchanged)
{
    fx_create("iso-img", NULL);
    fx_create("iso-img2", NULL);
    rt_exec_result_t r = fx_sh("iso-img", "rm /bin/sh.bak 2>/dev/null; echo changed > /etc/image-marker && "
                                          "rm /bin/ls && echo new > /newfile && mkdir /usr/newdir && "
                                          "cat /etc/image-marker");
    ck_assert_str_eq(r.out, "changed\n");
    ck_assert_int_eq(r.exit_code, 0);
    rt_exec_result_done(&r);
    json_t *j = fx_probe("iso-img", "write", "/bin/busybox", NULL);
    json_decref(j);
    /* The shared image on the host is untouched...  */
    _cleanup_free_ char *m = fx_path("etc/image-marker");
    _cleanup_free_ char *data = NULL;
    size_t len;
    ck_assert(sbx_read_file(m, &data, &len, NULL) == 0);
    ck_assert_str_eq(data, "image\n");
    _cleanup_free_ char *ls = fx_path("bin/ls");
    _cleanup_free_ char *nf = fx_path("newfile");
    _cleanup_free_ char *nd = fx_path("usr/newdir");
    _cleanup_free_ char *bb = fx_path("bin/busybox");
    struct stat st;
    ck_assert_int_eq(lstat(ls, &st), 0);
    ck_assert_int_eq(stat(bb, &st), 0);
    ck_assert_int_gt(st.st_size, 100000);
    ck_assert_int_ne(access(nf, F_OK), 0);
    ck_assert_int_ne(access(nd, F_OK), 0);
    /* ...and another sandbox of the same image sees the original.  */
    r = fx_sh("iso-img2", "cat /etc/image-marker; ls /bin/ls; ls /newfile 2>&1 >/dev/null | wc -l");
    ck_assert_str_eq(r.out, "image\n/bin/ls\n1\n");
    rt_exec_result_done(&r);
}
END_TEST

struct bomb_arg {
    rt_exec_result_t res;
};

static void *run_bomb(void *p)
{
    struct bomb_arg *a = p;
    char *argv[] = {"/bin/probe", "forkbomb", "30", NULL};
    a->res = fx_execv("iso-bomb", argv, 2500);
    return NULL;
}

START_TEST(test_runtime_isolation_forkbomb)
{
    rt_spec_t spec = {.pids_max = 64};
    fx_create("iso-bomb", &spec);
    fx_create("iso-calm", NULL);
    struct bomb_arg a;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, run_bomb, &a), 0);
    /* While it rages, the other sandbox and the host keep working.  */
    for (int i = 0; i < 5; i++) {
        usleep(200 * 1000);
        rt_exec_result_t r = fx_sh("iso-calm", "echo calm");
        ck_assert_str_eq(r.out, "calm\n");
        rt_exec_result_done(&r);
        pid_t p = fork();
        if (p == 0)
            _exit(7);
        int st;
        ck_assert_int_eq(waitpid(p, &st, 0), p);
        ck_assert_int_eq(WEXITSTATUS(st), 7);
    }
    char path[256];
    snprintf(path, sizeof path, "/sys/fs/cgroup/pids/%s/iso-bomb/pids.current", fx_cgroot);
    _cleanup_free_ char *cur = NULL;
    size_t len;
    if (sbx_read_file(path, &cur, &len, NULL) == 0)
        ck_assert_int_le(atoi(cur), 64);
    pthread_join(th, NULL);
    /* The timeout took the whole tree down, and the sandbox works again.  */
    ck_assert(a.res.timed_out);
    rt_exec_result_done(&a.res);
    rt_exec_result_t r = fx_sh("iso-bomb", "ps -o comm | grep -c probe");
    ck_assert_str_eq(r.out, "0\n");
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_isolation_memory_hog)
{
    rt_spec_t spec = {.memory_mib = 64};
    fx_create("iso-hog", &spec);
    fx_create("iso-calm2", NULL);
    /* cgroup v1: swap counts against the limit too (the host may have
     * swap the memory limit alone would let it fill).  */
    _cleanup_free_ char *memsw = xasprintf("/sys/fs/cgroup/memory/%s/iso-hog/memory.memsw.limit_in_bytes",
                                           fx_cgroot);
    if (access(memsw, F_OK) == 0) {
        _cleanup_free_ char *lim = NULL;
        size_t len;
        ck_assert(sbx_read_file(memsw, &lim, &len, NULL) == 0);
        ck_assert_msg(strtoull(lim, NULL, 10) == 64ull << 20, "memsw limit %s", lim);
    }
    char *argv[] = {"/bin/probe", "memhog", "1024", NULL};
    rt_exec_result_t r = fx_execv("iso-hog", argv, 20000);
    /* The kernel's OOM killer ends it inside its cgroup.  */
    ck_assert_msg(r.signal == SIGKILL, "memhog: exit %d signal %d out '%s'", r.exit_code, r.signal,
                  r.out);
    rt_exec_result_done(&r);
    r = fx_sh("iso-calm2", "echo fine");
    ck_assert_str_eq(r.out, "fine\n");
    rt_exec_result_done(&r);
    r = fx_sh("iso-hog", "echo recovered");
    ck_assert_str_eq(r.out, "recovered\n");
    rt_exec_result_done(&r);
    rt_info_t info;
    ck_assert(rt_get(fx_rt, "iso-hog", &info, NULL) == 0);
    ck_assert_int_eq(info.state, RT_STATE_RUNNING);
}
END_TEST

START_TEST(test_runtime_isolation_between_sandboxes)
{
    fx_create("iso-a", NULL);
    fx_create("iso-b", NULL);
    rt_exec_result_t r = fx_sh("iso-a", "echo a-private > /tmp/a-file; sleep 300 & echo ok");
    rt_exec_result_done(&r);
    pid_t victim = host_pid_of("iso-a", "sleep");
    ck_assert_int_gt(victim, 0);
    char pidstr[16];
    snprintf(pidstr, sizeof pidstr, "%d", (int)victim);
    /* B cannot signal A's process by its host pid...  */
    json_t *j = fx_probe("iso-b", "kill", pidstr, "9");
    ck_assert(!json_is_true(json_object_get(j, "ok")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "errno")), ESRCH);
    json_decref(j);
    /* ...nor by killing everything it can see, nor read A's files.  */
    r = fx_sh("iso-b", "cat /tmp/a-file; kill -9 -1; echo after");
    rt_exec_result_done(&r);
    ck_assert(fx_pid_alive(victim));
    r = fx_sh("iso-a", "cat /tmp/a-file");
    ck_assert_str_eq(r.out, "a-private\n");
    rt_exec_result_done(&r);
    /* Nor take every pty of the host's shared pool (kernel.pty.max), which
     * the others draw from too: its devpts has a limit of its own.  */
    j = fx_probe("iso-b", "ptys", NULL, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "opened")), 64);
    json_decref(j);
    /* Different host users outside.  */
    pid_t b_init = host_pid_of("iso-b", "sandbox-init");
    pid_t a_init = host_pid_of("iso-a", "sandbox-init");
    ck_assert(a_init > 0 && b_init > 0);
    char p1[64], p2[64];
    snprintf(p1, sizeof p1, "/proc/%d", (int)a_init);
    snprintf(p2, sizeof p2, "/proc/%d", (int)b_init);
    struct stat sa, sb;
    ck_assert(stat(p1, &sa) == 0 && stat(p2, &sb) == 0);
    ck_assert_int_ne(sa.st_uid, sb.st_uid);
    ck_assert_int_ne(sa.st_uid, 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("runtime_isolation");
    TCase *tc = tcase_create("isolation");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_isolation_view);
    tcase_add_test(tc, test_runtime_isolation_syscalls_refused);
    tcase_add_test(tc, test_runtime_isolation_host_files);
    tcase_add_test(tc, test_runtime_isolation_image_unchanged);
    tcase_add_test(tc, test_runtime_isolation_forkbomb);
    tcase_add_test(tc, test_runtime_isolation_memory_hog);
    tcase_add_test(tc, test_runtime_isolation_between_sandboxes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
