/* process.c -- the "process" driver: each sandbox is a long-lived init
 * process (pid 1) in its own user, pid, mount, network, ipc, uts and cgroup
 * namespaces, rooted in an overlay of the shared image and a per-sandbox
 * writable layer, with capabilities dropped, no_new_privs and a seccomp
 * filter; execs join its namespaces and cgroup.
 *
 * On the host, under the sandbox's state directory:
 *   layer/   tmpfs of disk_mib MiB holding upper/ and work/: the writable
 *            layer, bounded by the tmpfs size; it outlives stop/start and
 *            agent restarts, not a host reboot
 *   lower/   the image rootfs, bind-mounted read-only and id-mapped so the
 *            image's root-owned files belong to the sandbox's root
 *   rootfs/  the overlay; the files API works on it, the init pivots into
 *            a copy of it in its own mount namespace
 *
 * Code between fork/clone and execve runs in a copy of a multithreaded
 * process: it only makes system calls on data prepared beforehand.  */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>

#include "runtime/driver.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define GRACE_AFTER_EXIT_MS 100

/* ---- small system-call wrappers ---------------------------------------- */

static int sys_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_kill(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

/* fork-like clone3: returns 0 in the child.  */
#define INIT_REPORT_TIMEOUT_MS 10000

static pid_t sys_clone3(uint64_t flags, int *pidfd)
{
    struct clone3_args a = {.flags = flags | CLONE_PIDFD,
                            .pidfd = (uint64_t)(uintptr_t)pidfd,
                            .exit_signal = SIGCHLD};
    return (pid_t)syscall(SYS_clone3, &a, sizeof a);
}

static bool pidfd_exited(int pidfd, int wait_ms)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, wait_ms) > 0;
}

/* Start time of a process (clock ticks after boot), 0 when it is gone.  */
static uint64_t proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    /* Field 3 (state) comes first; starttime is field 22.  */
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* ---- child-side helpers (no allocation) -------------------------------- */

enum child_step {
    STEP_NONE, STEP_GO, STEP_SETGROUPS, STEP_SETGID, STEP_SETUID, STEP_CGROUPNS, STEP_MOUNTNS,
    STEP_PRIVATE, STEP_HOSTNAME, STEP_LOOPBACK, STEP_ROOT, STEP_PROC, STEP_DEV, STEP_PIVOT,
    STEP_OLDROOT, STEP_STDIO, STEP_CAPS, STEP_NNP, STEP_SECCOMP, STEP_EXEC, STEP_CGROUP,
    STEP_SETNS, STEP_FORK, STEP_CWD, STEP_SETSID,
};

static const char *const step_names[] = {
    "", "sync", "setgroups", "setgid", "setuid", "cgroup namespace", "mount namespace",
    "mount propagation", "hostname", "loopback", "chdir root", "mount /proc", "mount /dev",
    "pivot_root", "detach old root", "stdio", "drop capabilities", "no_new_privs",
    "seccomp", "execve", "join cgroup", "setns", "fork", "chdir", "setsid",
};

struct child_report {
    int step;
    int err;
};

static _Noreturn void child_fail(int fd, int step)
{
    struct child_report r = {step, errno};
    (void)!write(fd, &r, sizeof r);
    _exit(127);
}

/* Drop every capability, bounding set included, and lock root's
 * privileges away, so an execve cannot bring any back.  */
static int child_drop_privileges(int cap_last)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    for (int c = 0; c <= cap_last; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
                                     SECBIT_NO_CAP_AMBIENT_RAISE |
                                     SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) < 0)
        return -1;
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    return (int)syscall(SYS_capset, &hdr, data);
}

/* Root of the sandbox's user namespace, for this thread only.  glibc's
 * setgroups/setresgid/setresuid would signal every thread of the agent,
 * and a child made by raw clone3 of a multithreaded process waits for
 * threads it does not have, forever: use the raw system calls.  */
static int child_become_root(int rep)
{
    if (syscall(SYS_setgroups, 0, NULL) < 0)
        child_fail(rep, STEP_SETGROUPS);
    if (syscall(SYS_setresgid, 0, 0, 0) < 0)
        child_fail(rep, STEP_SETGID);
    return syscall(SYS_setresuid, 0, 0, 0) < 0 ? -1 : 0;
}

static void child_reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &dfl, NULL);
}

/* ---- the sandbox init --------------------------------------------------- */

struct init_prep {
    int go_r, go_w;
    int report_r, report_w;
    int null_fd;
    int memfd;
    const char *root;
    const char *hostname;
    const struct sock_fprog *seccomp;
    int cap_last;
};

static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

static int child_loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return r;
}

/* A minimal /dev: a small tmpfs with the harmless host devices bound in.  */
static int child_mount_dev(void)
{
    if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k,nr_inodes=64") < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++) {
        char host[32] = "/dev/", target[32] = "dev/";
        strcat(host, dev_nodes[i]);
        strcat(target, dev_nodes[i]);
        int fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0)
            return -1;
        close(fd);
        if (mount(host, target, NULL, MS_BIND, NULL) < 0)
            return -1;
    }
    if (mkdir("dev/shm", 01777) < 0 || mkdir("dev/pts", 0755) < 0 || mkdir("dev/mqueue", 0755) < 0)
        return -1;
    if (mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k") < 0)
        return -1;
    /* Ptys come from one host-wide pool (kernel.pty.max, 3072 beyond the
     * host's reserve): without max=, one sandbox could take them all.  */
    if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,max=64") < 0)
        return -1;
    if (symlink("/proc/self/fd", "dev/fd") < 0 || symlink("/proc/self/fd/0", "dev/stdin") < 0 ||
        symlink("/proc/self/fd/1", "dev/stdout") < 0 ||
        symlink("/proc/self/fd/2", "dev/stderr") < 0 || symlink("pts/ptmx", "dev/ptmx") < 0)
        return -1;
    /* Nothing else may be created in it.  */
    (void)mount(NULL, "dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL);
    return 0;
}

static _Noreturn void init_child(const struct init_prep *p)
{
    int rep = p->report_w;
    char go = 0;
    /* Until execve we are a copy of the agent, its secrets included: keep
     * /proc/<pid>/mem and ptrace away from us (execve resets this).  */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    close(p->go_w);
    close(p->report_r);
    if (read(p->go_r, &go, 1) != 1 || go != 'g')
        _exit(1); /* the parent gave up */
    if (unshare(CLONE_NEWCGROUP) < 0)
        child_fail(rep, STEP_CGROUPNS);
    if (unshare(CLONE_NEWNS) < 0)
        child_fail(rep, STEP_MOUNTNS);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail(rep, STEP_PRIVATE);
    /* Mounts copied into a namespace of a less privileged user namespace
     * are locked, and pivot_root refuses a locked new root: bind it onto
     * itself.  Still host uid 0 here, so the state directory (0700, ours)
     * can be walked; the sandbox's root user cannot.  */
    if (mount(p->root, p->root, NULL, MS_BIND | MS_REC, NULL) < 0 || chdir(p->root) < 0)
        child_fail(rep, STEP_ROOT);
    if (child_become_root(rep) < 0)
        child_fail(rep, STEP_SETUID);
    if (sethostname(p->hostname, strlen(p->hostname)) < 0)
        child_fail(rep, STEP_HOSTNAME);
    if (child_loopback_up() < 0)
        child_fail(rep, STEP_LOOPBACK);
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        child_fail(rep, STEP_PROC);
    if (child_mount_dev() < 0)
        child_fail(rep, STEP_DEV);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        child_fail(rep, STEP_PIVOT);
    /* The old root now sits on top of the new one: detach it, whole.  */
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        child_fail(rep, STEP_OLDROOT);
    if (dup2(p->null_fd, 0) < 0 || dup2(p->null_fd, 1) < 0 || dup2(p->null_fd, 2) < 0)
        child_fail(rep, STEP_STDIO);
    child_reset_signals();
    if (child_drop_privileges(p->cap_last) < 0)
        child_fail(rep, STEP_CAPS);
    (void)syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p->seccomp, 0, 0) < 0)
        child_fail(rep, STEP_SECCOMP);
    char *const argv[] = {"sandbox-init", NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, p->memfd, "", argv, envp, AT_EMPTY_PATH);
    child_fail(rep, STEP_EXEC);
}

static int report_error(sbx_error_t *err, const char *what, const struct child_report *r)
{
    int step = r->step >= 0 && (size_t)r->step < ARRAY_SIZE(step_names) ? r->step : 0;
    return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: %s: %s", what, step_names[step],
                         strerror(r->err));
}

/* ---- mounts --------------------------------------------------------------- */

static bool is_mount_root(const char *path)
{
    struct statx stx;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0)
        return false;
    return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
           (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static int mkdir_owned(int dirfd, const char *name, mode_t mode, uid_t uid)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        /* The sandbox replaced a mount point by something else; nothing of
         * it runs now (we are starting it), so this cannot race.  */
        if (unlinkat(dirfd, name, 0) < 0)
            return -1;
    }
    if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
        return -1;
    if (fchownat(dirfd, name, uid, uid, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    return fchmodat(dirfd, name, mode, 0);
}

static int mount_layer(rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *layer = xasprintf("%s/layer", sb->dir);
    if (is_mount_root(layer))
        return 0;
    _cleanup_free_ char *opts =
        xasprintf("size=%llum,mode=0700", (unsigned long long)sb->disk_mib);
    if (mount("sandboxd-layer", layer, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mount writable layer");
    _cleanup_close_ int fd = open(layer, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || mkdir_owned(fd, "upper", 0755, sb->host_uid) < 0 ||
        mkdir_owned(fd, "work", 0700, 0) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "prepare writable layer");
    return 0;
}

/* Bind the image read-only at lower/, id-mapped through the sandbox's user
 * namespace so files the image gives to uid N belong to uid N inside.  */
static int mount_lower(rt_sandbox_t *sb, pid_t userns_pid, sbx_error_t *err)
{
    _cleanup_free_ char *lower = xasprintf("%s/lower", sb->dir);
    if (is_mount_root(lower))
        return 0;
    char nspath[64];
    snprintf(nspath, sizeof nspath, "/proc/%d/ns/user", (int)userns_pid);
    _cleanup_close_ int userns = open(nspath, O_RDONLY | O_CLOEXEC);
    if (userns < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", nspath);
    _cleanup_close_ int tree = open_tree(AT_FDCWD, sb->rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open_tree %s", sb->rootfs);
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_IDMAP,
        .userns_fd = (uint64_t)userns,
    };
    if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) {
        /* A filesystem without id-mapped mounts: the image's files show
         * as nobody inside, but stay read-only.  */
        sbx_log(SBX_LOG_WARN, "runtime", "no id-mapped mount for %s (%s); image files show as nobody",
                sb->rootfs, strerror(errno));
        attr.attr_set &= ~(uint64_t)MOUNT_ATTR_IDMAP;
        attr.userns_fd = 0;
        if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "mount_setattr %s", sb->rootfs);
    }
    if (move_mount(tree, "", AT_FDCWD, lower, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "move_mount %s", lower);
    return 0;
}

static int mount_overlay(rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *root = xasprintf("%s/rootfs", sb->dir);
    if (is_mount_root(root))
        return 0;
    _cleanup_free_ char *opts = xasprintf(
        "lowerdir=%s/lower,upperdir=%s/layer/upper,workdir=%s/layer/work,xino=off,index=off",
        sb->dir, sb->dir, sb->dir);
    if (mount("sandboxd", root, "overlay", MS_NOSUID | MS_NODEV, opts) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mount overlay");
    return 0;
}

static int prepare_root(rt_sandbox_t *sb, pid_t userns_pid, sbx_error_t *err)
{
    if (mount_layer(sb, err) < 0 || mount_lower(sb, userns_pid, err) < 0 ||
        mount_overlay(sb, err) < 0)
        return -1;
    _cleanup_free_ char *root = xasprintf("%s/rootfs", sb->dir);
    _cleanup_close_ int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || mkdir_owned(fd, "proc", 0555, sb->host_uid) < 0 ||
        mkdir_owned(fd, "dev", 0755, sb->host_uid) < 0 ||
        mkdir_owned(fd, "tmp", 01777, sb->host_uid) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "prepare mount points in %s", root);
    return 0;
}

static void unmount_all(rt_sandbox_t *sb)
{
    const char *const names[] = {"rootfs", "lower", "layer"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", sb->dir, names[i]);
        while (is_mount_root(p)) {
            if (umount2(p, 0) < 0 && umount2(p, MNT_DETACH) < 0)
                break;
        }
    }
}

/* ---- lifecycle ------------------------------------------------------------- */

static bool proc_usable(rt_runtime_t *rt)
{
    return geteuid() == 0 && rt->init_memfd >= 0;
}

static int limits_apply(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    rt_cg_limits_t lim = {
        .cpu = sb->cpu,
        .memory_bytes = sb->memory_mib * 1024 * 1024,
        .pids_max = sb->pids_max,
    };
    return rt_cg_create(&rt->cg, sb->id, &lim, err);
}

static int proc_create(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    const char *const dirs[] = {"layer", "lower", "rootfs"};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", sb->dir, dirs[i]);
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", p);
    }
    if (limits_apply(rt, sb, err) < 0)
        return -1;
    return mount_layer(sb, err);
}

static int write_id_maps(pid_t pid, uid_t base, sbx_error_t *err)
{
    char map[64];
    snprintf(map, sizeof map, "0 %u %u\n", (unsigned)base, RT_UID_RANGE);
    const char *const files[] = {"uid_map", "gid_map"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, files[i]);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, map, strlen(map)) != (ssize_t)strlen(map))
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "write %s", path);
    }
    return 0;
}

static void reap(rt_sandbox_t *sb)
{
    if (sb->init_is_child) {
        siginfo_t si;
        (void)waitid(P_PIDFD, (id_t)sb->init_pidfd, &si, WEXITED);
    }
}

static int proc_start(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (limits_apply(rt, sb, err) < 0)
        return -1;
    _cleanup_free_ char *root = xasprintf("%s/rootfs", sb->dir);
    int go[2], report[2];
    if (pipe2(go, O_CLOEXEC) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
    if (pipe2(report, O_CLOEXEC) < 0) {
        close(go[0]);
        close(go[1]);
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
    }
    struct init_prep prep = {
        .go_r = go[0], .go_w = go[1], .report_r = report[0], .report_w = report[1],
        .null_fd = open("/dev/null", O_RDWR | O_CLOEXEC),
        .memfd = rt->init_memfd, .root = root, .hostname = sb->id,
        .seccomp = &rt->seccomp, .cap_last = rt->cap_last,
    };
    int pidfd = -1, ret = -1;
    pid_t pid = -1;
    struct child_report r;
    ssize_t n;
    struct pollfd pfd = {.fd = prep.report_r, .events = POLLIN};
    if (prep.null_fd < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "open /dev/null");
        goto out;
    }
    pid = sys_clone3(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS,
                     &pidfd);
    if (pid == 0)
        init_child(&prep);
    if (pid < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "clone sandbox init");
        goto out;
    }
    close(TAKE_FD(prep.go_r));
    close(TAKE_FD(prep.report_w));
    if (write_id_maps(pid, sb->host_uid, err) < 0 || rt_cg_attach(&rt->cg, sb->id, pid, err) < 0 ||
        prepare_root(sb, pid, err) < 0)
        goto out;
    if (write(prep.go_w, "g", 1) != 1) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "start sandbox init");
        goto out;
    }
    /* The init reports a failure or closes the pipe at exec; one that does
     * neither in time is killed rather than left holding the runtime.  */
    int pr;
    do
        pr = poll(&pfd, 1, INIT_REPORT_TIMEOUT_MS);
    while (pr < 0 && errno == EINTR);
    if (pr == 0) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "sandbox init did not start within %d ms",
                      INIT_REPORT_TIMEOUT_MS);
        goto out;
    }
    do
        n = read(prep.report_r, &r, sizeof r);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof r) {
        report_error(err, "sandbox init", &r);
        goto out;
    }
    if (n != 0) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "sandbox init: bad report");
        goto out;
    }
    sb->init_pid = pid;
    sb->init_pidfd = TAKE_FD(pidfd);
    sb->init_is_child = true;
    sb->init_start = proc_start_time(pid);
    ret = 0;
out:
    if (ret < 0 && pidfd >= 0) {
        (void)sys_pidfd_kill(pidfd, SIGKILL);
        siginfo_t si;
        (void)waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
    }
    if (pidfd >= 0)
        close(pidfd);
    const int fds[] = {prep.go_r, prep.go_w, prep.report_r, prep.report_w, prep.null_fd};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return ret;
}

/* End every process of the sandbox: SIGKILL to its pid 1 takes the whole
 * pid namespace with it; the cgroup sweep catches what is not in it yet
 * (an exec half-way through joining).  */
static int proc_stop(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt_cg_freeze(&rt->cg, sb->id, false, NULL);
    if (sb->init_pidfd >= 0) {
        (void)sys_pidfd_kill(sb->init_pidfd, SIGKILL);
        if (!pidfd_exited(sb->init_pidfd, 5000))
            return sbx_error_set(err, SBX_ERR_INTERNAL, "sandbox init does not exit");
        reap(sb);
        close(sb->init_pidfd);
        sb->init_pidfd = -1;
    }
    sb->init_pid = 0;
    sb->init_start = 0;
    if (rt_cg_kill(&rt->cg, sb->id, NULL, 5000, err) < 0)
        return -1;
    rt_cg_sweep(&rt->cg, sb->id);
    return 0;
}

static int proc_destroy(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (proc_stop(rt, sb, err) < 0)
        return -1;
    unmount_all(sb);
    if (rt_cg_destroy(&rt->cg, sb->id, err) < 0)
        return -1;
    return sbx_rm_rf(sb->dir, err);
}

static int proc_suspend(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    return rt_cg_freeze(&rt->cg, sb->id, true, err);
}

static int proc_resume(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    return rt_cg_freeze(&rt->cg, sb->id, false, err);
}

static int proc_list(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (sb->state != RT_STATE_RUNNING && sb->state != RT_STATE_SUSPENDED)
        return 0;
    if (sb->init_pidfd < 0 && sb->init_pid > 0) {
        /* Left by an earlier agent: adopt it if the pid is still the same
         * process (not a recycled pid).  */
        int fd = sys_pidfd_open(sb->init_pid);
        if (fd >= 0 && proc_start_time(sb->init_pid) == sb->init_start && sb->init_start) {
            sb->init_pidfd = fd;
            sb->init_is_child = false;
        } else if (fd >= 0) {
            close(fd);
        }
    }
    if (sb->init_pidfd >= 0 && !pidfd_exited(sb->init_pidfd, 0)) {
        sb->state = rt_cg_is_frozen(&rt->cg, sb->id) ? RT_STATE_SUSPENDED : RT_STATE_RUNNING;
        return 0;
    }
    /* The init is gone (killed, OOM, host reboot): what is left is a
     * stopped sandbox with its writable layer.  */
    if (proc_stop(rt, sb, err) < 0)
        return -1;
    sb->state = RT_STATE_STOPPED;
    snprintf(sb->message, sizeof sb->message, "sandbox init exited");
    return 0;
}

static int proc_root_fd(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *root = xasprintf("%s/rootfs", sb->dir);
    int fd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", root);
    /* Unmounted (a host reboot), the directory is an empty host one:
     * never read or write there.  */
    struct statfs sfs;
    if (fstatfs(fd, &sfs) < 0 || sfs.f_type != OVERLAYFS_SUPER_MAGIC) {
        close(fd);
        return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s has no mounted filesystem; start it",
                             sb->id);
    }
    return fd;
}

static void proc_usage(rt_runtime_t *rt, rt_sandbox_t *sb, uint64_t *memory_bytes, uint64_t *cpu_us)
{
    rt_cg_usage(&rt->cg, sb->id, memory_bytes, cpu_us);
}

/* ---- exec ------------------------------------------------------------------- */

struct exec_prep {
    int init_pidfd;
    int cg_fds[RT_CG_N + 1];
    int n_cg;
    int in_r, out_w, err_w; /* the command's stdin, stdout, stderr */
    int pid_w;              /* the first child sends the command's pid */
    int report_w;
    const char *cwd;
    char **argv, **envp;
    char **cands; /* where to look for argv[0] */
    const struct sock_fprog *seccomp;
    int cap_last;
};

static _Noreturn void exec_command(const struct exec_prep *p)
{
    int rep = p->report_w;
    /* Visible to the sandbox from here, and still a copy of the agent.  */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (setsid() < 0)
        child_fail(rep, STEP_SETSID);
    if (dup2(p->in_r, 0) < 0 || dup2(p->out_w, 1) < 0 || dup2(p->err_w, 2) < 0)
        child_fail(rep, STEP_STDIO);
    child_reset_signals();
    if (child_become_root(rep) < 0)
        child_fail(rep, STEP_SETUID);
    if (chdir(p->cwd) < 0)
        child_fail(rep, STEP_CWD);
    if (child_drop_privileges(p->cap_last) < 0)
        child_fail(rep, STEP_CAPS);
    (void)syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p->seccomp, 0, 0) < 0)
        child_fail(rep, STEP_SECCOMP);
    int saved = ENOENT;
    for (char **c = p->cands; *c; c++) {
        execve(*c, p->argv, p->envp);
        if (errno != ENOENT && errno != ENOTDIR)
            saved = errno;
    }
    errno = saved;
    child_fail(rep, STEP_EXEC);
}

/* First child: join the cgroup and the namespaces, then fork the command
 * as a child of the agent (CLONE_PARENT), inside the sandbox's pid
 * namespace.  */
static _Noreturn void exec_enter(const struct exec_prep *p)
{
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    for (int i = 0; i < p->n_cg; i++)
        if (write(p->cg_fds[i], "0", 1) != 1)
            child_fail(p->report_w, STEP_CGROUP);
    if (setns(p->init_pidfd, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
                                 CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP) < 0)
        child_fail(p->report_w, STEP_SETNS);
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid < 0)
        child_fail(p->report_w, STEP_FORK);
    if (pid == 0)
        exec_command(p);
    (void)!write(p->pid_w, &pid, sizeof pid);
    _exit(0);
}

/* Set "K=V" in env (n entries, NULL-terminated), replacing an earlier K.  */
static void env_put(char ***env, size_t *n, char *kv)
{
    size_t kl = strcspn(kv, "=");
    for (size_t i = 0; i < *n; i++) {
        if (strncmp((*env)[i], kv, kl + 1) == 0) {
            free((*env)[i]);
            (*env)[i] = kv;
            return;
        }
    }
    *env = xrealloc(*env, (*n + 2) * sizeof **env);
    (*env)[(*n)++] = kv;
    (*env)[*n] = NULL;
}

/* The command's environment: defaults, then the sandbox's env, then the
 * request's; a later value for a key replaces an earlier one.  */
static char **build_env(rt_sandbox_t *sb, char **extra, sbx_error_t *err)
{
    size_t n = 0;
    char **env = xcalloc(1, sizeof *env);
    env_put(&env, &n, xstrdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    env_put(&env, &n, xstrdup("HOME=/root"));
    env_put(&env, &n, xasprintf("HOSTNAME=%s", sb->id));
    const char *key;
    json_t *val;
    json_object_foreach(sb->env, key, val)
        env_put(&env, &n, xasprintf("%s=%s", key, json_string_value(val) ? json_string_value(val) : ""));
    for (size_t j = 0; extra && extra[j]; j++) {
        const char *eq = strchr(extra[j], '=');
        if (!eq || eq == extra[j]) {
            for (size_t i = 0; i < n; i++)
                free(env[i]);
            free(env);
            sbx_error_set(err, SBX_ERR_INVALID, "environment entry must be K=V");
            return NULL;
        }
        env_put(&env, &n, xstrdup(extra[j]));
    }
    return env;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static char **exec_candidates(const char *cmd, char **env)
{
    if (strchr(cmd, '/')) {
        char **c = xcalloc(2, sizeof *c);
        c[0] = xstrdup(cmd);
        return c;
    }
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], "PATH=", 5) == 0)
            path = env[i] + 5;
    size_t n = 1;
    for (const char *s = path; *s; s++)
        n += *s == ':';
    char **c = xcalloc(n + 1, sizeof *c);
    size_t k = 0;
    const char *s = path;
    for (;;) {
        size_t len = strcspn(s, ":");
        if (len > 0 && s[0] == '/') /* relative PATH entries are ignored */
            c[k++] = xasprintf("%.*s/%s", (int)len, s, cmd);
        if (!s[len])
            break;
        s += len + 1;
    }
    return c;
}

struct outbuf {
    char *data;
    size_t len, cap;
    bool truncated, eof;
};

static void outbuf_read(struct outbuf *b, int fd)
{
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            b->eof = true;
        return;
    }
    size_t room = b->cap - b->len, take = (size_t)n < room ? (size_t)n : room;
    if (take < (size_t)n)
        b->truncated = true;
    if (take) {
        b->data = xrealloc(b->data, b->len + take + 1);
        memcpy(b->data + b->len, tmp, take);
        b->len += take;
    }
}

static int proc_exec(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_exec_request_t *req,
                     rt_exec_result_t *out, sbx_error_t *err)
{
    int64_t t0 = sbx_monotonic_ms();
    char **env = build_env(sb, req->env, err);
    if (!env) {
        pthread_rwlock_unlock(&sb->lock);
        return -1;
    }
    char **cands = exec_candidates(req->argv[0], env);
    char sub[32];
    snprintf(sub, sizeof sub, "x%llx", (unsigned long long)atomic_fetch_add(&sb->exec_seq, 1));
    char id[64];
    memcpy(id, sb->id, sizeof id);

    struct exec_prep prep = {.init_pidfd = sb->init_pidfd, .cwd = req->cwd ? req->cwd : "/",
                             .argv = req->argv, .envp = env, .cands = cands,
                             .seccomp = &rt->seccomp, .cap_last = rt->cap_last};
    int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1}, pp[2] = {-1, -1}, rp[2] = {-1, -1};
    int ret = -1, pidfd = -1;
    pid_t first = -1, cmd = -1;
    struct outbuf ob = {0}, eb = {0};
    size_t cap = req->output_cap ? req->output_cap : RT_DEFAULT_OUTPUT_CAP;
    if (cap > RT_MAX_OUTPUT_CAP)
        cap = RT_MAX_OUTPUT_CAP;
    ob.cap = eb.cap = cap;
    bool have_cg = false;
    ssize_t n;
    const char *stdin_p = req->stdin_data;
    size_t stdin_left = req->stdin_data ? req->stdin_len : 0;
    int timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : RT_DEFAULT_TIMEOUT_MS;
    int64_t deadline = t0 + timeout_ms, exited_at = 0, hard_end = 0;
    bool exited = false, report_eof = false;
    struct child_report rep = {0, 0};
    siginfo_t si;
    memset(&si, 0, sizeof si);

    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0 ||
        pipe2(pp, O_CLOEXEC) < 0 || pipe2(rp, O_CLOEXEC) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
        pthread_rwlock_unlock(&sb->lock);
        goto out;
    }
    if (rt_cg_exec_open(&rt->cg, id, sub, prep.cg_fds, &prep.n_cg, err) < 0) {
        pthread_rwlock_unlock(&sb->lock);
        goto out;
    }
    have_cg = true;
    prep.in_r = in[0];
    prep.out_w = o[1];
    prep.err_w = e[1];
    prep.pid_w = pp[1];
    prep.report_w = rp[1];
    first = fork();
    if (first == 0)
        exec_enter(&prep);
    if (first < 0) {
        pthread_rwlock_unlock(&sb->lock);
        sbx_error_errno(err, SBX_ERR_INTERNAL, "fork");
        goto out;
    }
    for (int i = 0; i < prep.n_cg; i++)
        close(prep.cg_fds[i]);
    prep.n_cg = 0;
    close(TAKE_FD(in[0]));
    close(TAKE_FD(o[1]));
    close(TAKE_FD(e[1]));
    close(TAKE_FD(pp[1]));
    close(TAKE_FD(rp[1]));
    (void)waitpid(first, NULL, 0);
    /* The command has joined the sandbox (or failed to): from here on it
     * runs on its own and stop/destroy may go on.  */
    pthread_rwlock_unlock(&sb->lock);
    n = read(pp[0], &cmd, sizeof cmd);
    if (n != (ssize_t)sizeof cmd) {
        struct child_report r = {0, EIO};
        cmd = -1;
        if (read(rp[0], &r, sizeof r) != (ssize_t)sizeof r)
            sbx_error_set(err, SBX_ERR_INTERNAL, "exec: the sandbox is gone");
        else if (r.step == STEP_SETNS && r.err == ESRCH)
            sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is not running", id);
        else if (r.step == STEP_FORK && r.err == EAGAIN)
            sbx_error_set(err, SBX_ERR_UNAVAILABLE, "sandbox %s is at its process limit", id);
        else
            report_error(err, "exec", &r);
        goto out;
    }
    pidfd = sys_pidfd_open(cmd);
    if (pidfd < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "pidfd_open");
        goto out;
    }

    /* Feed stdin, collect stdout and stderr, watch the command, the
     * report pipe and the clock.  */
    if (!stdin_left)
        close(TAKE_FD(in[1]));
    else
        (void)fcntl(in[1], F_SETFL, O_NONBLOCK);
    (void)fcntl(o[0], F_SETFL, O_NONBLOCK);
    (void)fcntl(e[0], F_SETFL, O_NONBLOCK);
    for (;;) {
        int64_t now = sbx_monotonic_ms();
        if (exited && ((ob.eof && eb.eof) || now >= exited_at + GRACE_AFTER_EXIT_MS))
            break;
        if (!exited && !out->timed_out && now >= deadline) {
            out->timed_out = true;
            (void)rt_cg_kill(&rt->cg, id, sub, 2000, NULL);
            hard_end = now + 5000;
        }
        if (hard_end && now >= hard_end && !exited) {
            sbx_error_set(err, SBX_ERR_INTERNAL, "exec: command survives SIGKILL");
            goto out;
        }
        struct pollfd pfd[5];
        int np = 0, ip = -1, iout = -1, ierr = -1, irep = -1;
        if (!exited) {
            pfd[np] = (struct pollfd){.fd = pidfd, .events = POLLIN};
            np++;
        }
        if (!ob.eof) {
            iout = np;
            pfd[np++] = (struct pollfd){.fd = o[0], .events = POLLIN};
        }
        if (!eb.eof) {
            ierr = np;
            pfd[np++] = (struct pollfd){.fd = e[0], .events = POLLIN};
        }
        if (in[1] >= 0) {
            ip = np;
            pfd[np++] = (struct pollfd){.fd = in[1], .events = POLLOUT};
        }
        if (!report_eof) {
            irep = np;
            pfd[np++] = (struct pollfd){.fd = rp[0], .events = POLLIN};
        }
        int64_t until = exited ? exited_at + GRACE_AFTER_EXIT_MS
                               : (out->timed_out ? hard_end : deadline);
        int wait = (int)(until - now);
        if (poll(pfd, (nfds_t)np, wait < 0 ? 0 : wait) < 0 && errno != EINTR) {
            sbx_error_errno(err, SBX_ERR_INTERNAL, "poll");
            goto out;
        }
        if (iout >= 0 && pfd[iout].revents)
            outbuf_read(&ob, o[0]);
        if (ierr >= 0 && pfd[ierr].revents)
            outbuf_read(&eb, e[0]);
        if (irep >= 0 && pfd[irep].revents) {
            if (read(rp[0], &rep, sizeof rep) != (ssize_t)sizeof rep)
                report_eof = true;
        }
        if (ip >= 0 && pfd[ip].revents) {
            /* A command that does not read its input closes the pipe:
             * keep SIGPIPE from the agent while writing.  */
            sigset_t pipe_set, old;
            sigemptyset(&pipe_set);
            sigaddset(&pipe_set, SIGPIPE);
            pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
            ssize_t w = write(in[1], stdin_p, stdin_left);
            if (w < 0 && errno == EPIPE) {
                struct timespec zero = {0, 0};
                (void)sigtimedwait(&pipe_set, NULL, &zero);
            }
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (w > 0) {
                stdin_p += w;
                stdin_left -= (size_t)w;
            }
            if ((w < 0 && errno != EAGAIN) || stdin_left == 0)
                close(TAKE_FD(in[1]));
        }
        if (!exited && pfd[0].revents) {
            if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) == 0 || errno == ECHILD) {
                exited = true;
                exited_at = sbx_monotonic_ms();
                out->duration_ms = exited_at - t0;
            }
        }
    }
    if (rep.step == STEP_CWD) {
        errno = rep.err;
        sbx_error_errno(err, SBX_ERR_INVALID, "exec: cwd %s", prep.cwd);
        goto out;
    }
    if (rep.step && rep.step != STEP_EXEC) {
        report_error(err, "exec", &rep);
        goto out;
    }
    if (si.si_code == CLD_EXITED) {
        out->exit_code = si.si_status;
    } else if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED) {
        out->exit_code = -1;
        out->signal = si.si_status;
    } else {
        out->exit_code = -1;
    }
    if (rep.step == STEP_EXEC) {
        /* As a shell reports it: 127 not found, 126 not executable.  */
        out->exit_code = rep.err == ENOENT ? 127 : 126;
        char msg[512];
        int len = snprintf(msg, sizeof msg, "sandbox: %s: %s\n", req->argv[0], strerror(rep.err));
        eb.data = xrealloc(eb.data, eb.len + (size_t)len + 1);
        memcpy(eb.data + eb.len, msg, (size_t)len);
        eb.len += (size_t)len;
    }
    out->out = ob.data ? TAKE_PTR(ob.data) : xstrdup("");
    out->out[ob.len] = 0;
    out->out_len = ob.len;
    out->out_truncated = ob.truncated;
    out->err = eb.data ? TAKE_PTR(eb.data) : xstrdup("");
    out->err[eb.len] = 0;
    out->err_len = eb.len;
    out->err_truncated = eb.truncated;
    ret = 0;
out:
    if (ret < 0 && pidfd >= 0) {
        (void)sys_pidfd_kill(pidfd, SIGKILL);
        (void)waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED);
    }
    if (pidfd >= 0)
        close(pidfd);
    for (int i = 0; i < prep.n_cg; i++)
        close(prep.cg_fds[i]);
    const int fds[] = {in[0], in[1], o[0], o[1], e[0], e[1], pp[0], pp[1], rp[0], rp[1]};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(ob.data);
    free(eb.data);
    strv_free(env);
    strv_free(cands);
    if (have_cg)
        rt_cg_exec_done(&rt->cg, id, sub);
    if (ret == 0 && out->duration_ms == 0)
        out->duration_ms = sbx_monotonic_ms() - t0;
    return ret;
}

const rt_driver_ops_t rt_process_ops = {
    .name = "process",
    .usable = proc_usable,
    .create = proc_create,
    .start = proc_start,
    .exec = proc_exec,
    .suspend = proc_suspend,
    .resume = proc_resume,
    .stop = proc_stop,
    .destroy = proc_destroy,
    .list = proc_list,
    .root_fd = proc_root_fd,
    .usage = proc_usage,
};
