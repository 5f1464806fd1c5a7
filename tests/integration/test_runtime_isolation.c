/* test_runtime_isolation.c -- what a process-driver sandbox can see and do,
 * as reported by the probe from inside: its own processes only, its own
 * hostname and loopback-only network, no capabilities, refused dangerous
 * system calls, no way to the host's files or the shared image, no host
 * paths or kernel command line in /proc, contained fork bombs and memory
 * hogs, sandboxes out of memory or processes that still answer and go away
 * whole, and no reach into another sandbox.  */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "image/image.h"
#include "tests/integration/test_runtime_fixture.h"

/* Host pid of a process named comm in sandbox id (0 if none).  */
static pid_t host_pid_of_now(const char *id, const char *comm)
{
    const char *base =
        access("/sys/fs/cgroup/pids", F_OK) == 0 ? "/sys/fs/cgroup/pids" : "/sys/fs/cgroup";
    _cleanup_free_ char *dir = xasprintf("%s/%s/%s", base, fx_cgroot, id);
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    pid_t found = 0;
    struct dirent *de;
    /* The sandbox's own cgroup and its exec children.  */
    for (int pass = 0; (de = pass ? readdir(d) : NULL) || pass == 0; pass = 1) {
        if (pass && (de->d_type != DT_DIR || de->d_name[0] == '.'))
            continue;
        _cleanup_free_ char *procs = pass ? xasprintf("%s/%s/cgroup.procs", dir, de->d_name)
                                          : xasprintf("%s/cgroup.procs", dir);
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

/* The same, waiting a little: a new process takes its name only once it
 * runs.  */
static pid_t host_pid_of(const char *id, const char *comm)
{
    pid_t pid = 0;
    for (int64_t end = sbx_monotonic_ms() + 5000; !pid && sbx_monotonic_ms() < end; usleep(5000))
        pid = host_pid_of_now(id, comm);
    return pid;
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

/* "Max <what>  <soft>  <hard> ..." of a /proc/<pid>/limits text: both 0?  */
static bool limit_is_zero(const char *limits, const char *what)
{
    const char *line = strstr(limits, what);
    if (!line)
        return false;
    char soft[32], hard[32];
    return sscanf(line + strlen(what), "%31s %31s", soft, hard) == 2 && strcmp(soft, "0") == 0 &&
           strcmp(hard, "0") == 0;
}

/* No core dumps (the host's core_pattern handler would take the sandbox's
 * memory, running as host root and writing to the host's disk) and no
 * real-time priority (past the CPU quota), for the init, the commands,
 * and whatever they try: the hard limits are 0.  */
START_TEST(test_runtime_isolation_rlimits)
{
    fx_create("iso-lim", NULL);
    const char *const pids[] = {"self", "1"};
    for (size_t i = 0; i < ARRAY_SIZE(pids); i++) {
        _cleanup_free_ char *cmd = xasprintf("cat /proc/%s/limits", pids[i]);
        rt_exec_result_t r = fx_sh("iso-lim", cmd);
        ck_assert_msg(limit_is_zero(r.out, "Max core file size") &&
                          limit_is_zero(r.out, "Max realtime priority"),
                      "/proc/%s/limits: %s", pids[i], r.out);
        rt_exec_result_done(&r);
    }
    rt_exec_result_t r = fx_sh("iso-lim", "ulimit -c unlimited || ulimit -H -c");
    ck_assert_msg(strcmp(r.out, "0\n") == 0, "raised the core limit: '%s' '%s'", r.out, r.err);
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_isolation_syscalls_refused)
{
    fx_create("iso-sys", NULL);
    json_t *j = fx_probe("iso-sys", "syscalls", NULL, NULL);
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
        "unshare_user",
        "unshare_net",
        "clone_newuser",
        "setns",
        "perf_event_open",
        "userfaultfd",
        "open_by_handle_at",
        "swapon",
        "reboot",
        "acct",
        "io_uring_setup",
        "mknod",
        "socket_vsock",
        "socket_vsock_high",
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
    _cleanup_free_ char *script =
        xasprintf("ln -s %s /tmp/l; cat /tmp/l; cat /../../../..%s; cat /proc/1/root%s; "
                  "cat /proc/self/cwd/../../..%s; echo done",
                  marker, marker, marker, marker);
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
    rt_exec_result_t r =
        fx_sh("iso-img", "rm /bin/sh.bak 2>/dev/null; echo changed > /etc/image-marker && "
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
    _cleanup_free_ char *memsw =
        xasprintf("/sys/fs/cgroup/memory/%s/iso-hog/memory.memsw.limit_in_bytes", fx_cgroot);
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

/* ---- the seccomp allow list ---------------------------------------------- */

/* Run one raw system call in sandbox id; its errno (0 when it worked).  */
static int sys_errno(const char *id, long nr, const char *a1, const char *a2, const char *a3)
{
    char num[24];
    snprintf(num, sizeof num, "%ld", nr);
    char *argv[] = {"/bin/sysc", num, (char *)a1, (char *)a2, (char *)a3, NULL};
    rt_exec_result_t r = fx_execv(id, argv, 10000);
    json_t *j = json_loads(r.out, 0, NULL);
    ck_assert_msg(j != NULL, "syscall %ld: '%s' '%s' exit %d", nr, r.out, r.err, r.exit_code);
    int e = (int)json_integer_value(json_object_get(j, "errno"));
    json_decref(j);
    rt_exec_result_done(&r);
    return e;
}

/* What Docker's profile leaves out is refused even where the old deny
 * list let it through; numbers newer than the filter say ENOSYS.  */
START_TEST(test_runtime_isolation_unlisted_syscalls)
{
    _cleanup_free_ char *src = tu_bin("sbx-syscall");
    _cleanup_free_ char *dst = fx_path("bin/sysc");
    fx_copy(src, dst, 0755);
    fx_create("iso-allow", NULL);
    /* NUMA policy, the personality that turns off ASLR, the old sysfs
     * call, fanotify: not on the list, so EPERM before the kernel looks.  */
    ck_assert_int_eq(sys_errno("iso-allow", SYS_set_mempolicy, "0", "0", "0"), EPERM);
    ck_assert_int_eq(sys_errno("iso-allow", SYS_get_mempolicy, "0", "0", "0"), EPERM);
    ck_assert_int_eq(sys_errno("iso-allow", SYS_personality, "0x0040000", NULL, NULL), EPERM);
    ck_assert_int_eq(sys_errno("iso-allow", SYS_sysfs, "3", NULL, NULL), EPERM);
    ck_assert_int_eq(sys_errno("iso-allow", SYS_fanotify_mark, "-1", "1", "1"), EPERM);
    ck_assert_int_eq(sys_errno("iso-allow", SYS_process_madvise, "-1", "0", "0"), EPERM);
    /* Numbers no kernel had when the filter was built: ENOSYS, so libc
     * falls back; clone3 too (its flags are out of the filter's reach).  */
    ck_assert_int_eq(sys_errno("iso-allow", 1000, NULL, NULL, NULL), ENOSYS);
    ck_assert_int_eq(sys_errno("iso-allow", SYS_clone3, "0", "0", NULL), ENOSYS);
    /* The query personality stays allowed, and so does an ordinary ioctl;
     * TIOCSTI is refused, high bits or not.  */
    ck_assert_int_eq(sys_errno("iso-allow", SYS_personality, "0xffffffff", NULL, NULL), 0);
    ck_assert_int_ne(sys_errno("iso-allow", SYS_ioctl, "0", "0x5401", "0"), EPERM);
    _cleanup_free_ char *sti = xasprintf("%#lx", (unsigned long)TIOCSTI | (1ul << 32));
    ck_assert_int_eq(sys_errno("iso-allow", SYS_ioctl, "0", sti, "0"), EPERM);
    /* clone with any namespace flag, not only CLONE_NEWUSER.  */
    _cleanup_free_ char *newnet = xasprintf("%#x", CLONE_NEWNET | SIGCHLD);
    ck_assert_int_eq(sys_errno("iso-allow", SYS_clone, newnet, "0", "0"), EPERM);
}
END_TEST

/* The default image's python3 under the filter: threads, a subprocess,
 * loopback sockets served by a thread, epoll, select, eventfd, memfd.  */
static const char py_workload[] =
    "import os, select, socket, subprocess, threading\n"
    "srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
    "srv.bind(('127.0.0.1', 0)); srv.listen(4)\n"
    "port = srv.getsockname()[1]\n"
    "def serve():\n"
    "    for _ in range(2):\n"
    "        c, _ = srv.accept()\n"
    "        with c: c.sendall(c.recv(64).upper())\n"
    "t = threading.Thread(target=serve); t.start()\n"
    "out = []\n"
    "c = socket.create_connection(('127.0.0.1', port)); c.sendall(b'epoll')\n"
    "ep = select.epoll(); ep.register(c.fileno(), select.EPOLLIN)\n"
    "assert ep.poll(10); out.append(c.recv(64).decode()); c.close()\n"
    "c = socket.create_connection(('127.0.0.1', port)); c.sendall(b'select')\n"
    "r, _, _ = select.select([c], [], [], 10); assert r\n"
    "out.append(c.recv(64).decode()); c.close(); t.join()\n"
    "out.append(subprocess.run(['sh', '-c', 'echo sub'], capture_output=True, text=True,\n"
    "                          check=True).stdout.strip())\n"
    "fd = os.eventfd(0); os.eventfd_write(fd, 3); out.append(str(os.eventfd_read(fd)))\n"
    "m = os.memfd_create('x'); os.write(m, b'memfd'); out.append(os.pread(m, 5, 0).decode())\n"
    "a, b = socket.socketpair(); a.send(b'pair'); out.append(b.recv(4).decode())\n"
    "print(' '.join(out))\n";

START_TEST(test_runtime_isolation_default_image_python)
{
    const char *layout = getenv("SBX_DEFAULT_IMAGE");
    _cleanup_free_ char *index = layout ? xasprintf("%s/index.json", layout) : NULL;
    if (!index || access(index, R_OK) != 0) {
        fprintf(stderr, "no $SBX_DEFAULT_IMAGE: python3 workload skipped\n");
        return;
    }
    _cleanup_free_ char *store = xasprintf("%s/images", fx_dir);
    img_config_t icfg = {.store_dir = store, .default_layout = layout};
    sbx_error_t err = {0};
    img_store_t *s = img_store_open(&icfg, &err);
    ck_assert_msg(s != NULL, "image store: %s", err.msg);
    char *root = NULL, *digest = NULL;
    ck_assert_msg(img_resolve(s, IMG_DEFAULT_REF, &root, &digest, &err) == 0, "%s", err.msg);
    img_store_close(s);
    free(digest);
    rt_spec_t spec = {.id = "iso-py", .rootfs = root};
    rt_info_t info;
    ck_assert_msg(rt_create(fx_rt, &spec, &info, &err) == 0, "rt_create: %s", err.msg);
    free(root);
    char *argv[] = {"python3", "-c", (char *)py_workload, NULL};
    rt_exec_result_t r = fx_execv("iso-py", argv, 30000);
    ck_assert_msg(r.exit_code == 0, "python3: exit %d signal %d out '%s' err '%s'", r.exit_code,
                  r.signal, r.out, r.err);
    ck_assert_str_eq(r.out, "EPOLL SELECT sub 3 memfd pair\n");
    rt_exec_result_done(&r);
}
END_TEST

/* ---- two runtimes on one host --------------------------------------------- */

static rt_runtime_t *rt2;
static char *rt2_cg;

static void rt2_cleanup(void)
{
    if (rt2) {
        rt_destroy(rt2, "iso-other", NULL);
        rt_close(rt2);
        rt2 = NULL;
    }
    const char *ctrls[] = {"cpu", "cpuacct", "memory", "pids", "freezer", "unified", ""};
    for (size_t i = 0; rt2_cg && i < ARRAY_SIZE(ctrls); i++) {
        _cleanup_free_ char *p =
            xasprintf("/sys/fs/cgroup/%s%s%s", ctrls[i], *ctrls[i] ? "/" : "", rt2_cg);
        (void)rmdir(p);
    }
    free(rt2_cg);
    rt2_cg = NULL;
}

/* The first host uid of a sandbox's range, as its own uid_map shows.  */
static unsigned long host_uid_base(rt_runtime_t *rt, const char *id)
{
    char *argv[] = {"cat", "/proc/self/uid_map", NULL};
    rt_exec_request_t req = {.argv = argv, .timeout_ms = 10000};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(rt, id, &req, &r, &err) == 0, "%s", err.msg);
    unsigned long inside = 1, outside = 0, count = 0;
    ck_assert_msg(sscanf(r.out, "%lu %lu %lu", &inside, &outside, &count) == 3, "'%s'", r.out);
    ck_assert_uint_eq(inside, 0);
    ck_assert_uint_eq(count, 65536);
    rt_exec_result_done(&r);
    return outside;
}

/* Two agents on one host (two runtimes on different state dirs) give
 * their sandboxes different host uids, not both the same first slot.  */
START_TEST(test_runtime_isolation_two_runtimes_disjoint_uids)
{
    atexit(rt2_cleanup);
    fx_create("iso-first", NULL);
    _cleanup_free_ char *state2 = xasprintf("%s/state2", fx_dir);
    rt2_cg = xasprintf("%s-other", fx_cgroot);
    rt_config_t cfg = {.state_dir = state2, .cgroup_root = rt2_cg};
    sbx_error_t err = {0};
    rt2 = rt_open(&cfg, &err);
    ck_assert_msg(rt2 != NULL, "second runtime: %s", err.msg);
    rt_spec_t spec = {.id = "iso-other", .rootfs = fx_rootfs};
    ck_assert_msg(rt_create(rt2, &spec, NULL, &err) == 0, "%s", err.msg);
    unsigned long a = host_uid_base(fx_rt, "iso-first"), b = host_uid_base(rt2, "iso-other");
    ck_assert_msg(a + 65536 <= b || b + 65536 <= a, "host uids %lu and %lu overlap", a, b);
    rt2_cleanup();
}
END_TEST

static void add_host_tests(Suite *s)
{
    TCase *tc = tcase_create("allow_list");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_isolation_unlisted_syscalls);
    tcase_add_test(tc, test_runtime_isolation_default_image_python);
    suite_add_tcase(s, tc);
    tc = tcase_create("runtimes");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_isolation_two_runtimes_disjoint_uids);
    suite_add_tcase(s, tc);
}

/* ---- /proc, and sandboxes in trouble ------------------------------------ */

START_TEST(test_runtime_isolation_proc_masked)
{
    fx_create("iso-proc", NULL);
    json_t *j = fx_probe("iso-proc", "mounts", NULL, NULL);
    const char *mountinfo = json_string_value(json_object_get(j, "mountinfo"));
    const char *mounts = json_string_value(json_object_get(j, "mounts"));
    ck_assert_ptr_nonnull(mountinfo);
    ck_assert_ptr_nonnull(mounts);
    ck_assert_ptr_nonnull(strstr(mountinfo, " / / "));
    /* Neither the host's layout (the overlay's lowerdir, upperdir...)...  */
    ck_assert_msg(!strstr(mountinfo, fx_dir) && !strstr(mountinfo, "sandboxes/"),
                  "mountinfo shows host paths: %s", mountinfo);
    ck_assert_msg(!strstr(mounts, fx_dir) && !strstr(mounts, "sandboxes/"),
                  "/proc/mounts shows host paths: %s", mounts);
    /* ...nor the host's kernel command line, nor its memory.  */
    _cleanup_free_ char *host_cmdline = NULL;
    size_t len;
    ck_assert(sbx_read_file("/proc/cmdline", &host_cmdline, &len, NULL) == 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "cmdline")), "");
    ck_assert_str_eq(json_string_value(json_object_get(j, "kcore")), "");
    json_decref(j);
    /* The masks cannot be written through or removed.  */
    rt_exec_result_t r = fx_sh("iso-proc", "echo x > /proc/cmdline 2>/dev/null && echo wrote; "
                                           "umount /proc/cmdline 2>/dev/null && echo unmounted; "
                                           "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null "
                                           "&& echo sysctl; echo end");
    ck_assert_str_eq(r.out, "end\n");
    rt_exec_result_done(&r);
}
END_TEST

/* What a sandbox leaves on the host while it exists.  */
static bool leaves_trace(const char *id, char *what, size_t len)
{
    const char *ctrls[] = {"cpu", "cpuacct", "memory", "pids", "freezer", "unified", ""};
    for (size_t i = 0; i < ARRAY_SIZE(ctrls); i++) {
        _cleanup_free_ char *p =
            xasprintf("/sys/fs/cgroup/%s%s%s/%s", ctrls[i], *ctrls[i] ? "/" : "", fx_cgroot, id);
        if (access(p, F_OK) == 0) {
            snprintf(what, len, "cgroup %s", p);
            return true;
        }
    }
    _cleanup_free_ char *mi = NULL;
    size_t n;
    _cleanup_free_ char *dir = xasprintf("%s/sandboxes/%s", fx_state, id);
    ck_assert(sbx_read_file("/proc/self/mountinfo", &mi, &n, NULL) == 0);
    if (strstr(mi, dir)) {
        snprintf(what, len, "a mount under %s", dir);
        return true;
    }
    if (access(dir, F_OK) == 0) {
        snprintf(what, len, "directory %s", dir);
        return true;
    }
    return false;
}

/* Zombie children of this process (the agent): every helper is reaped.  */
static int zombie_children(void)
{
    DIR *d = opendir("/proc");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        FILE *f = de->d_name[0] >= '0' && de->d_name[0] <= '9' ? fopen(path, "r") : NULL;
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        char state;
        int ppid;
        char *p = strrchr(buf, ')');
        if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && state == 'Z' && ppid == getpid())
            n++;
    }
    closedir(d);
    return n;
}

/* An exec into a sandbox in trouble answers (a result or a clear error)
 * within 10 s, and destroying the sandbox takes under 10 s and leaves no
 * process, mount, cgroup or uid slot behind.  */
static void exec_and_destroy_in_time(const char *id, pid_t init, const char *expect)
{
    char *argv[] = {"echo", "hi", NULL};
    rt_exec_request_t req = {.argv = argv, .timeout_ms = 3000};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    int64_t t0 = sbx_monotonic_ms();
    int rc = rt_exec(fx_rt, id, &req, &r, &err);
    int64_t took = sbx_monotonic_ms() - t0;
    ck_assert_msg(took < 10000, "exec took %lld ms", (long long)took);
    if (rc == 0) {
        /* It ran, or it started and the timeout ended it.  */
        ck_assert_msg(strcmp(r.out, "hi\n") == 0 || (r.timed_out && r.signal == SIGKILL),
                      "exec: out '%s' err '%s' exit %d signal %d timed out %d", r.out, r.err,
                      r.exit_code, r.signal, r.timed_out);
        rt_exec_result_done(&r);
    } else {
        ck_assert_msg(err.code == SBX_ERR_UNAVAILABLE || err.code == SBX_ERR_CONFLICT, "exec: %s",
                      err.msg);
        ck_assert_msg(err.code == SBX_ERR_CONFLICT || strstr(err.msg, expect), "exec: %s", err.msg);
    }
    rt_health_t h0, h1;
    ck_assert(rt_health(fx_rt, &h0, NULL) == 0);
    t0 = sbx_monotonic_ms();
    ck_assert_msg(rt_destroy(fx_rt, id, &err) == 0, "destroy: %s", err.msg);
    took = sbx_monotonic_ms() - t0;
    ck_assert_msg(took < 10000, "destroy took %lld ms", (long long)took);
    ck_assert(rt_health(fx_rt, &h1, NULL) == 0);
    ck_assert_uint_eq(h1.slots_used + 1, h0.slots_used);
    char what[512];
    ck_assert_msg(!leaves_trace(id, what, sizeof what), "destroyed %s leaves %s", id, what);
    ck_assert(!fx_pid_alive(init));
    ck_assert_int_eq(zombie_children(), 0);
}

START_TEST(test_runtime_isolation_memory_full)
{
    rt_spec_t spec = {.memory_mib = 64};
    fx_create("iso-full", &spec);
    pid_t init = host_pid_of("iso-full", "sandbox-init");
    ck_assert_int_gt(init, 0);
    /* Fill its memory with what the OOM killer cannot free: shm pages.  */
    char *fill[] = {"/bin/probe", "fill", "/dev/shm/fill", "64", NULL};
    rt_exec_request_t req = {.argv = fill, .timeout_ms = 20000};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    if (rt_exec(fx_rt, "iso-full", &req, &r, &err) == 0)
        rt_exec_result_done(&r);
    exec_and_destroy_in_time("iso-full", init, "out of memory");
}
END_TEST

/* The same with the OOM killer off (cgroup v1): whatever needs memory in
 * the sandbox now waits for it forever, the start of a command too.  */
START_TEST(test_runtime_isolation_memory_stuck)
{
    rt_spec_t spec = {.memory_mib = 64};
    fx_create("iso-stuck", &spec);
    pid_t init = host_pid_of("iso-stuck", "sandbox-init");
    _cleanup_free_ char *oom =
        xasprintf("/sys/fs/cgroup/memory/%s/iso-stuck/memory.oom_control", fx_cgroot);
    if (access(oom, F_OK) != 0)
        return; /* cgroup v2 has no such switch */
    FILE *f = fopen(oom, "w");
    ck_assert_ptr_nonnull(f);
    fputs("1", f);
    ck_assert_int_eq(fclose(f), 0);
    /* A process takes all its memory and waits at the limit for more.  */
    rt_exec_result_t r = fx_sh("iso-stuck", "/bin/probe memhog 100 >/dev/null 2>&1 & echo started");
    ck_assert_str_eq(r.out, "started\n");
    rt_exec_result_done(&r);
    _cleanup_free_ char *usage =
        xasprintf("/sys/fs/cgroup/memory/%s/iso-stuck/memory.usage_in_bytes", fx_cgroot);
    for (int64_t end = sbx_monotonic_ms() + 10000; sbx_monotonic_ms() < end; usleep(20000)) {
        _cleanup_free_ char *u = NULL;
        size_t len;
        if (sbx_read_file(usage, &u, &len, NULL) == 0 && strtoull(u, NULL, 10) > (63ull << 20))
            break;
    }
    exec_and_destroy_in_time("iso-stuck", init, "out of memory");
}
END_TEST

START_TEST(test_runtime_isolation_pids_full)
{
    rt_spec_t spec = {.pids_max = 16};
    fx_create("iso-pids", &spec);
    pid_t init = host_pid_of("iso-pids", "sandbox-init");
    ck_assert_int_gt(init, 0);
    /* A fork bomb that keeps going in the background: every process slot
     * taken, and taken again as soon as one frees.  */
    rt_exec_result_t r =
        fx_sh("iso-pids", "/bin/probe forkbomb 3600 >/dev/null 2>&1 & echo started");
    ck_assert_str_eq(r.out, "started\n");
    rt_exec_result_done(&r);
    _cleanup_free_ char *cur = xasprintf("/sys/fs/cgroup/pids/%s/iso-pids/pids.current", fx_cgroot);
    for (int64_t end = sbx_monotonic_ms() + 10000; sbx_monotonic_ms() < end; usleep(20000)) {
        _cleanup_free_ char *n = NULL;
        size_t len;
        if (sbx_read_file(cur, &n, &len, NULL) < 0 || atoi(n) >= 16)
            break;
    }
    exec_and_destroy_in_time("iso-pids", init, "process limit");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("runtime_isolation");
    TCase *tc = tcase_create("isolation");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_isolation_view);
    tcase_add_test(tc, test_runtime_isolation_rlimits);
    tcase_add_test(tc, test_runtime_isolation_syscalls_refused);
    tcase_add_test(tc, test_runtime_isolation_host_files);
    tcase_add_test(tc, test_runtime_isolation_image_unchanged);
    tcase_add_test(tc, test_runtime_isolation_forkbomb);
    tcase_add_test(tc, test_runtime_isolation_memory_hog);
    tcase_add_test(tc, test_runtime_isolation_between_sandboxes);
    tcase_add_test(tc, test_runtime_isolation_proc_masked);
    tcase_add_test(tc, test_runtime_isolation_memory_full);
    tcase_add_test(tc, test_runtime_isolation_memory_stuck);
    tcase_add_test(tc, test_runtime_isolation_pids_full);
    suite_add_tcase(s, tc);
    add_host_tests(s);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
