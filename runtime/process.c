/* process.c -- the "process" driver: each sandbox is a long-lived init
 * process (pid 1) in its own user, pid, mount, network, ipc, uts and cgroup
 * namespaces, rooted in an overlay of the shared image and a per-sandbox
 * writable layer, with capabilities dropped, no_new_privs and a seccomp
 * filter; an exec is started by a small static helper (sandbox_init.c in
 * its exec role) that joins the sandbox's namespaces and cgroups and forks
 * the command as its own child.
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
 * Code between clone and execve runs in a copy of a multithreaded process
 * (the init child) or in the agent's own memory (the exec helper's
 * launch): it only makes system calls on data prepared beforehand.  */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <linux/openat2.h>
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
#include <sys/mman.h>
#include <sys/wait.h>
#include <linux/seccomp.h>

#include "runtime/driver.h"
#include "runtime/sandbox_child.h"
#include "runtime/sandbox_proto.h"

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
    struct clone3_args a = {
        .flags = flags | CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)pidfd, .exit_signal = SIGCHLD};
    return (pid_t)syscall(SYS_clone3, &a, sizeof a);
}

static bool pidfd_exited(int pidfd, int wait_ms)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, wait_ms) > 0;
}

uint64_t rt_pid_start_time(pid_t pid)
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

static const char *const step_names[RT_STEP_N] = {
    "",
    "sync",
    "setgroups",
    "setgid",
    "setuid",
    "cgroup namespace",
    "mount namespace",
    "mount propagation",
    "hostname",
    "loopback",
    "chdir root",
    "mount /proc",
    "mount /dev",
    "pivot_root",
    "detach old root",
    "stdio",
    "drop capabilities",
    "no_new_privs",
    "seccomp",
    "execve",
    "join cgroup",
    "setns",
    "fork",
    "chdir",
    "setsid",
    "mask /proc",
    "exec parameters",
    "start exec helper",
};

static _Noreturn void child_fail(int fd, int step)
{
    struct rt_report r = {step, errno};
    (void)!write(fd, &r, sizeof r);
    _exit(127);
}

#define CHILD_MAX_FDS (RT_EXEC_FD_FORK_CG + 1 + RT_EXEC_MAX_CG_FDS + 1)

/* Put src[i] on fd i (close-on-exec where bit i of cloexec is set) and
 * really close every other fd: close-on-exec alone would leave the agent's
 * fds reachable through /proc/self/fd until execve.  Every source is first
 * copied above the highest target, so none is overwritten before it has
 * moved.  Raw system calls on the stack only: this also runs in a child
 * sharing the agent's memory (CLONE_VM).  */
__attribute__((no_sanitize("address", "undefined"))) static int
child_remap_fds(const int *src, int n, unsigned cloexec)
{
    int tmp[CHILD_MAX_FDS];
    if (n > CHILD_MAX_FDS)
        return -1;
    for (int i = 0; i < n; i++) {
        tmp[i] = (int)syscall(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, n);
        if (tmp[i] < 0)
            return -1;
    }
    for (int i = 0; i < n; i++)
        if (syscall(SYS_dup3, tmp[i], i, (cloexec >> i) & 1 ? O_CLOEXEC : 0) < 0)
            return -1;
    return (int)syscall(SYS_close_range, n, ~0U, 0);
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

/* What the sandbox must not see of the host in its /proc (the OCI runtime
 * spec's defaults, plus the host's kernel command line): files get
 * /dev/null, directories an empty tmpfs; all read-only.  */
static const char *const masked_proc[] = {
    "proc/cmdline",    "proc/kcore",       "proc/keys",        "proc/latency_stats",
    "proc/timer_list", "proc/timer_stats", "proc/sched_debug", "proc/sysrq-trigger",
    "proc/acpi",       "proc/asound",      "proc/scsi",
};
static const char *const readonly_proc[] = {"proc/bus", "proc/fs", "proc/irq", "proc/sys"};

static int child_remount_ro(const char *path)
{
    return mount(NULL, path, NULL,
                 MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

static int child_mask_proc(void)
{
    for (size_t i = 0; i < ARRAY_SIZE(masked_proc); i++) {
        struct stat st;
        if (lstat(masked_proc[i], &st) < 0) {
            if (errno == ENOENT)
                continue;
            return -1;
        }
        if (S_ISDIR(st.st_mode)) {
            if (mount("tmpfs", masked_proc[i], "tmpfs",
                      MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "size=4k,nr_inodes=2,mode=555") < 0)
                return -1;
        } else if (mount("/dev/null", masked_proc[i], NULL, MS_BIND, NULL) < 0 ||
                   child_remount_ro(masked_proc[i]) < 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(readonly_proc); i++) {
        if (mount(readonly_proc[i], readonly_proc[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT)
                continue;
            return -1;
        }
        if (child_remount_ro(readonly_proc[i]) < 0)
            return -1;
    }
    return 0;
}

/* fds of the init child once child_remap_fds has run.  */
enum { INIT_FD_GO = 3, INIT_FD_REPORT, INIT_FD_EXE, INIT_FD_N };

static _Noreturn void init_child(const struct init_prep *p)
{
    char go = 0;
    /* Until execve we are a copy of the agent, its secrets included: keep
     * /proc/<pid>/mem and ptrace away from us (execve resets this).  */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Keep only what the init needs, everything else really closed: the
     * report pipe and the binary close on exec, stdio is /dev/null.  */
    const int src[INIT_FD_N] = {p->null_fd, p->null_fd, p->null_fd, p->go_r, p->report_w, p->memfd};
    if (child_remap_fds(src, INIT_FD_N, 1u << INIT_FD_REPORT | 1u << INIT_FD_EXE) < 0)
        child_fail(p->report_w, RT_STEP_STDIO);
    int rep = INIT_FD_REPORT;
    if (read(INIT_FD_GO, &go, 1) != 1 || go != 'g')
        _exit(1); /* the parent gave up */
    close(INIT_FD_GO);
    if (unshare(CLONE_NEWCGROUP) < 0)
        child_fail(rep, RT_STEP_CGROUPNS);
    if (unshare(CLONE_NEWNS) < 0)
        child_fail(rep, RT_STEP_MOUNTNS);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail(rep, RT_STEP_PRIVATE);
    /* Mounts copied into a namespace of a less privileged user namespace
     * are locked, and pivot_root refuses a locked new root: bind it onto
     * itself.  Still host uid 0 here, so the state directory (0700, ours)
     * can be walked; the sandbox's root user cannot.  */
    if (mount(p->root, p->root, NULL, MS_BIND | MS_REC, NULL) < 0 || chdir(p->root) < 0)
        child_fail(rep, RT_STEP_ROOT);
    int step = child_become_root();
    if (step)
        child_fail(rep, step);
    if (sethostname(p->hostname, strlen(p->hostname)) < 0)
        child_fail(rep, RT_STEP_HOSTNAME);
    if (child_loopback_up() < 0)
        child_fail(rep, RT_STEP_LOOPBACK);
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        child_fail(rep, RT_STEP_PROC);
    if (child_mask_proc() < 0)
        child_fail(rep, RT_STEP_MASK);
    if (child_mount_dev() < 0)
        child_fail(rep, RT_STEP_DEV);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        child_fail(rep, RT_STEP_PIVOT);
    /* The old root now sits on top of the new one: detach it, whole.  */
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        child_fail(rep, RT_STEP_OLDROOT);
    child_reset_signals();
    if (child_drop_privileges(p->cap_last) < 0)
        child_fail(rep, RT_STEP_CAPS);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, p->seccomp, 0, 0) < 0)
        child_fail(rep, RT_STEP_SECCOMP);
    char *const argv[] = {"sandbox-init", NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, INIT_FD_EXE, "", argv, envp, AT_EMPTY_PATH);
    child_fail(rep, RT_STEP_EXEC);
}

static int report_error(sbx_error_t *err, const char *what, const struct rt_report *r)
{
    int step = r->step >= 0 && r->step < RT_STEP_N ? r->step : 0;
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
    _cleanup_free_ char *opts = xasprintf("size=%llum,mode=0700", (unsigned long long)sb->disk_mib);
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
        sbx_log(SBX_LOG_WARN, "runtime",
                "no id-mapped mount for %s (%s); image files show as nobody", sb->rootfs,
                strerror(errno));
        attr.attr_set &= ~(uint64_t)MOUNT_ATTR_IDMAP;
        attr.userns_fd = 0;
        if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "mount_setattr %s", sb->rootfs);
    }
    if (move_mount(tree, "", AT_FDCWD, lower, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "move_mount %s", lower);
    return 0;
}

struct overlay_mount {
    const char *dir;
    int err;
};

static void *overlay_mount_thread(void *arg)
{
    struct overlay_mount *m = arg;
    /* A cwd of this thread's own, so the agent's other threads keep
     * theirs.  */
    if (unshare(CLONE_FS) < 0 || chdir(m->dir) < 0 ||
        mount("sandboxd", "rootfs", "overlay", MS_NOSUID | MS_NODEV,
              "lowerdir=lower,upperdir=layer/upper,workdir=layer/work,xino=off,index=off") < 0)
        m->err = errno;
    return NULL;
}

/* overlayfs shows its options as given in /proc/self/mountinfo, which the
 * sandbox reads: relative paths, from the sandbox's directory, keep the
 * host's layout out of them.  */
static int mount_overlay(rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *root = xasprintf("%s/rootfs", sb->dir);
    if (is_mount_root(root))
        return 0;
    struct overlay_mount m = {.dir = sb->dir};
    pthread_t th;
    int r = pthread_create(&th, NULL, overlay_mount_thread, &m);
    if (r != 0) {
        errno = r;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mount overlay");
    }
    pthread_join(th, NULL);
    if (m.err) {
        errno = m.err;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mount overlay");
    }
    return 0;
}

int rt_root_prepare(rt_sandbox_t *sb, pid_t userns_pid, sbx_error_t *err)
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

static bool proc_usable(rt_runtime_t *rt, char *why, size_t len)
{
    if (geteuid() != 0)
        snprintf(why, len, "the agent does not run as root");
    else if (rt->init_memfd < 0)
        snprintf(why, len, "the sandbox init binary could not be loaded");
    else
        return true;
    return false;
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
        .go_r = go[0],
        .go_w = go[1],
        .report_r = report[0],
        .report_w = report[1],
        .null_fd = open("/dev/null", O_RDWR | O_CLOEXEC),
        .memfd = rt->init_memfd,
        .root = root,
        .hostname = sb->id,
        .seccomp = &rt->seccomp,
        .cap_last = rt->cap_last,
    };
    int pidfd = -1, ret = -1;
    pid_t pid = -1;
    struct rt_report r;
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
        rt_root_prepare(sb, pid, err) < 0)
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
    sb->init_start = rt_pid_start_time(pid);
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
        if (fd >= 0 && rt_pid_start_time(sb->init_pid) == sb->init_start && sb->init_start) {
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
        return sbx_error_set(err, SBX_ERR_CONFLICT,
                             "sandbox %s has no mounted filesystem; start it", sb->id);
    }
    return fd;
}

static void proc_usage(rt_runtime_t *rt, rt_sandbox_t *sb, uint64_t *memory_bytes, uint64_t *cpu_us)
{
    rt_cg_usage(&rt->cg, sb->id, memory_bytes, cpu_us);
}

/* ---- exec ------------------------------------------------------------------- */

/* The agent's own deadline for a command to reach execve: the helper's
 * (RT_EXEC_START_TIMEOUT_MS, from its fork) plus its own start-up.  */
#define EXEC_START_BACKSTOP_MS (RT_EXEC_START_TIMEOUT_MS + 1000)
/* Past its cap a stream is still read and dropped up to this much, so a
 * command that prints a little too much ends normally; then its pipe is
 * closed and further writes fail (EPIPE, SIGPIPE) instead of costing the
 * agent CPU that no sandbox quota counts.  */
#define HELPER_STACK_SIZE (64 * 1024)

/* Helpers that did not die in time after SIGKILL (stuck in the kernel)
 * are reaped later rather than left as zombies.  */
static pthread_mutex_t leftover_mu = PTHREAD_MUTEX_INITIALIZER;
static int leftover_pidfds[64];
static size_t n_leftover;

static void leftovers_reap(void)
{
    pthread_mutex_lock(&leftover_mu);
    for (size_t i = 0; i < n_leftover;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PIDFD, (id_t)leftover_pidfds[i], &si, WEXITED | WNOHANG) == 0 &&
            si.si_pid == 0) {
            i++;
            continue;
        }
        close(leftover_pidfds[i]);
        leftover_pidfds[i] = leftover_pidfds[--n_leftover];
    }
    pthread_mutex_unlock(&leftover_mu);
}

/* Reap a helper that was given up on.  It gets grace_ms to reap its
 * command and exit on its own (its command is being killed): a helper
 * killed first leaves its command to the host's init, not the sandbox's,
 * as orphans go to the init of their parent's pid namespace.  Then
 * SIGKILL; one that does not die is kept to be reaped later.  */
static void helper_reap(int pidfd, int grace_ms)
{
    if (!pidfd_exited(pidfd, grace_ms))
        (void)sys_pidfd_kill(pidfd, SIGKILL);
    siginfo_t si;
    if (pidfd_exited(pidfd, 2000) && waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) == 0) {
        close(pidfd);
        return;
    }
    pthread_mutex_lock(&leftover_mu);
    if (n_leftover < ARRAY_SIZE(leftover_pidfds)) {
        leftover_pidfds[n_leftover++] = pidfd;
        pidfd = -1;
    }
    pthread_mutex_unlock(&leftover_mu);
    if (pidfd >= 0) {
        sbx_log(SBX_LOG_WARN, "runtime", "an exec helper survives SIGKILL; not reaped");
        close(pidfd);
    }
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
char **rt_exec_env(rt_sandbox_t *sb, char **extra, sbx_error_t *err)
{
    size_t n = 0;
    char **env = xcalloc(1, sizeof *env);
    env_put(&env, &n, xstrdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    env_put(&env, &n, xstrdup("HOME=/root"));
    env_put(&env, &n, xasprintf("HOSTNAME=%s", sb->id));
    const char *key;
    json_t *val;
    json_object_foreach(sb->env, key, val) env_put(
        &env, &n, xasprintf("%s=%s", key, json_string_value(val) ? json_string_value(val) : ""));
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

void rt_strv_free(char **v)
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

/* The exec helper's parameters as NUL-separated strings in a memfd (see
 * sandbox_proto.h): user, cwd, candidates, argv, environment.  */
static int exec_params_memfd(const rt_user_t *user, const char *cwd, char **cands, char **argv,
                             char **env, sbx_error_t *err)
{
    char who[16 * (RT_MAX_GROUPS + 2)] = "";
    for (unsigned i = 0; user && user->set && i < user->n_groups + 2; i++)
        snprintf(who + strlen(who), sizeof(who) - strlen(who), "%s%u", i == 0 ? "" : ":",
                 i == 0   ? user->uid
                 : i == 1 ? user->gid
                          : user->groups[i - 2]);
    size_t nc = 0, na = 0, len = strlen(who) + 1 + strlen(cwd) + 1 + 2 * 24;
    for (; cands[nc]; nc++)
        len += strlen(cands[nc]) + 1;
    for (; argv[na]; na++)
        len += strlen(argv[na]) + 1;
    for (size_t i = 0; env[i]; i++)
        len += strlen(env[i]) + 1;
    _cleanup_free_ char *buf = xmalloc(len);
    size_t at = 0;
#define PUT(s) (memcpy(buf + at, (s), strlen(s) + 1), at += strlen(s) + 1)
    char num[24];
    PUT(who);
    PUT(cwd);
    snprintf(num, sizeof num, "%zu", nc);
    PUT(num);
    for (size_t i = 0; i < nc; i++)
        PUT(cands[i]);
    snprintf(num, sizeof num, "%zu", na);
    PUT(num);
    for (size_t i = 0; i < na; i++)
        PUT(argv[i]);
    for (size_t i = 0; env[i]; i++)
        PUT(env[i]);
#undef PUT
    int fd = memfd_create("sandbox-exec", MFD_CLOEXEC);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "memfd_create");
    for (size_t done = 0; done < at;) {
        ssize_t w = write(fd, buf + done, at - done);
        if (w <= 0) {
            close(fd);
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "write exec parameters");
        }
        done += (size_t)w;
    }
    return fd;
}

struct helper_spawn {
    int src[CHILD_MAX_FDS]; /* become fds 0..n-1; the last is the binary */
    int n;
    char *argv[6];
};

/* Runs on its own stack in the agent's memory (CLONE_VM) until execve:
 * only system calls, nothing written but its stack.  */
__attribute__((no_sanitize("address", "undefined"))) static int helper_child(void *arg)
{
    const struct helper_spawn *h = arg;
    if (child_remap_fds(h->src, h->n, 1u << (h->n - 1)) == 0) {
        char *const envp[] = {NULL};
        syscall(SYS_execveat, h->n - 1, "", h->argv, envp, AT_EMPTY_PATH);
        struct rt_report r = {RT_STEP_SPAWN, errno};
        (void)syscall(SYS_write, RT_EXEC_FD_REPORT, &r, sizeof r);
    }
    syscall(SYS_exit_group, 127);
    return 127;
}

/* Start the exec helper with exactly fds[0..n-1] as its fds 0..n-1.  Like
 * posix_spawn, the child shares the agent's memory and the caller waits
 * (CLONE_VFORK) until its execve: nothing of the agent is copied, so
 * launching costs the same whatever the agent's size.  */
static int helper_spawn(rt_runtime_t *rt, const int *fds, int n, int ncg, bool fork_cg, int flags,
                        int *pidfd, sbx_error_t *err)
{
    struct helper_spawn h = {.n = n + 1};
    char ncg_s[16], cap_s[16], flags_s[16];
    snprintf(ncg_s, sizeof ncg_s, "%d", ncg);
    snprintf(cap_s, sizeof cap_s, "%d", rt->cap_last);
    snprintf(flags_s, sizeof flags_s, "%d", flags);
    h.argv[0] = RT_EXEC_ARGV0;
    h.argv[1] = ncg_s;
    h.argv[2] = fork_cg ? "1" : "0";
    h.argv[3] = cap_s;
    h.argv[4] = flags_s;
    h.argv[5] = NULL;
    memcpy(h.src, fds, (size_t)n * sizeof *fds);
    h.src[n] = rt->init_memfd;
    void *stack = mmap(NULL, HELPER_STACK_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mmap");
    /* No handler of the agent may run on the child's stack.  */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(helper_child, (char *)stack + HELPER_STACK_SIZE,
                      CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &h, pidfd);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, HELPER_STACK_SIZE);
    if (pid < 0) {
        errno = saved;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "start exec helper");
    }
    return 0;
}

/* One exec, from launch to result.  */
struct exec_run {
    rt_runtime_t *rt;
    rt_sandbox_t *sb; /* read-locked while `locked` */
    bool locked, have_cg;
    char id[64], sub[32];
    const char *cwd;
    int init_pidfd; /* our copy of the sandbox init's pidfd */
    int pidfd;      /* the helper's; -1 once reaped */
    int in_w, rep_r;
    int ctl_w; /* the helper's control pipe: signals for the command */
    bool pty;  /* stdio is a terminal: in_w and ob.fd are its master */
    int nspid; /* the command's pid in the sandbox, once started */
    rt_outbuf_t ob, eb;
    const char *stdin_p;
    size_t stdin_left;
    struct rt_report fail; /* the first failure reported */
    bool forked, started, done, ended, timed_out, backstop;
    bool detached;      /* given up on at a stop: the command goes on */
    bool start_timeout; /* the helper killed its command before its execve */
    int status;         /* the command's wait status, when done */
    int64_t t0, start_deadline, deadline, hard_end, ended_at, next_kill;
};

static void run_unlock(struct exec_run *x)
{
    if (x->locked) {
        x->locked = false;
        pthread_rwlock_unlock(&x->sb->lock);
    }
}

/* A terminal of the sandbox's own devpts (so the command sees
 * /dev/pts/N, and the sandbox's pty limit counts it): its master through
 * the init's root, resolved without symlinks or magic links and checked
 * to be a devpts node, and the peer without any path lookup.  Under
 * sb->lock (read), so the init is the one recorded.  */
static int pty_open(rt_sandbox_t *sb, unsigned short rows, unsigned short cols, int *master,
                    int *peer, sbx_error_t *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/root", (int)sb->init_pid);
    _cleanup_close_ int root = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0 || pidfd_exited(sb->init_pidfd, 0))
        return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is not running", sb->id);
    struct open_how how = {.flags = O_RDWR | O_NOCTTY | O_CLOEXEC,
                           .resolve =
                               RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS};
    _cleanup_close_ int m = (int)syscall(SYS_openat2, root, "dev/pts/ptmx", &how, sizeof how);
    struct statfs fs;
    struct stat st;
    if (m < 0)
        return sbx_error_errno(err, errno == ENOSPC ? SBX_ERR_UNAVAILABLE : SBX_ERR_INTERNAL,
                               "sandbox %s: open a terminal", sb->id);
    if (fstatfs(m, &fs) < 0 || fs.f_type != DEVPTS_SUPER_MAGIC || fstat(m, &st) < 0 ||
        !S_ISCHR(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INTERNAL, "sandbox %s: its ptmx is not a devpts node",
                             sb->id);
    int unlock = 0;
    struct winsize ws = {.ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80};
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCSWINSZ, &ws) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "sandbox %s: set up a terminal", sb->id);
    int p = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (p < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "sandbox %s: open a terminal's peer", sb->id);
    *master = TAKE_FD(m);
    *peer = p;
    return 0;
}

/* What a launch starts: the command, and how its stdio is wired.  */
struct launch {
    const rt_user_t *user;
    char **argv, **env;
    bool pty;
    unsigned short rows, cols;
};

/* The command's stdio: three pipes, or one terminal.  io[0..2] are the
 * command's ends, mine[0..2] ours (stdin, stdout, stderr; -1 where none).  */
static int stdio_open(struct exec_run *x, const struct launch *l, int io[3], int mine[3],
                      sbx_error_t *err)
{
    if (l->pty) {
        int m = -1, p = -1;
        if (pty_open(x->sb, l->rows, l->cols, &m, &p, err) < 0)
            return -1;
        io[0] = p;
        io[1] = fcntl(p, F_DUPFD_CLOEXEC, 3);
        io[2] = fcntl(p, F_DUPFD_CLOEXEC, 3);
        mine[0] = fcntl(m, F_DUPFD_CLOEXEC, 3);
        mine[1] = m;
        mine[2] = -1;
        if (io[1] < 0 || io[2] < 0 || mine[0] < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "dup");
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        int pp[2];
        if (pipe2(pp, O_CLOEXEC) < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
        io[i] = pp[i == 0 ? 0 : 1];
        mine[i] = pp[i == 0 ? 1 : 0];
    }
    return 0;
}

static int exec_launch(struct exec_run *x, const struct launch *l, sbx_error_t *err)
{
    rt_runtime_t *rt = x->rt;
    int io[3] = {-1, -1, -1}, mine[3] = {-1, -1, -1}, rp[2] = {-1, -1}, ctl[2] = {-1, -1};
    int cg[RT_EXEC_MAX_CG_FDS], ncg = 0, fork_cg = -1, params = -1, ret = -1, n = 0;
    int fds[CHILD_MAX_FDS];
    char **env = rt_exec_env(x->sb, l->env, err);
    if (!env)
        return -1;
    char **cands = exec_candidates(l->argv[0], env);
    params = exec_params_memfd(l->user, x->cwd, cands, l->argv, env, err);
    rt_strv_free(env);
    rt_strv_free(cands);
    if (params < 0)
        return -1;
    x->init_pidfd = fcntl(x->sb->init_pidfd, F_DUPFD_CLOEXEC, 3);
    if (x->init_pidfd < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "dup pidfd");
        goto out;
    }
    if (stdio_open(x, l, io, mine, err) < 0)
        goto out;
    if (pipe2(rp, O_CLOEXEC) < 0 || pipe2(ctl, O_CLOEXEC) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
        goto out;
    }
    if (rt_cg_exec_open(&rt->cg, x->id, x->sub, cg, &ncg, err) < 0)
        goto out;
    x->have_cg = true;
    if (rt_cg_fork_open(&rt->cg, x->id, &fork_cg, err) < 0)
        goto out;
    /* In the order of sandbox_proto.h.  */
    fds[n++] = io[0];
    fds[n++] = io[1];
    fds[n++] = io[2];
    fds[n++] = rp[1];
    fds[n++] = x->init_pidfd;
    fds[n++] = rt->seccomp_memfd;
    fds[n++] = params;
    fds[n++] = ctl[0];
    if (fork_cg >= 0)
        fds[n++] = fork_cg;
    for (int i = 0; i < ncg; i++)
        fds[n++] = cg[i];
    if (helper_spawn(rt, fds, n, ncg, fork_cg >= 0, l->pty ? RT_EXEC_F_PTY : 0, &x->pidfd, err) < 0)
        goto out;
    x->in_w = TAKE_FD(mine[0]);
    x->ob.fd = TAKE_FD(mine[1]);
    x->eb.fd = TAKE_FD(mine[2]);
    x->rep_r = TAKE_FD(rp[0]);
    x->ctl_w = TAKE_FD(ctl[1]);
    ret = 0;
out:;
    const int left[] = {io[0], io[1], io[2],  mine[0], mine[1], mine[2],
                        rp[0], rp[1], ctl[0], ctl[1],  fork_cg, params};
    for (size_t i = 0; i < ARRAY_SIZE(left); i++)
        if (left[i] >= 0)
            close(left[i]);
    for (int i = 0; i < ncg; i++)
        close(cg[i]);
    return ret;
}

static void run_report(struct exec_run *x, const struct rt_report *r)
{
    switch (r->step) {
    case RT_REPORT_FORKED: x->forked = true; break;
    case RT_REPORT_STARTED:
        x->started = true;
        x->nspid = r->err;
        break;
    case RT_REPORT_START_TIMEOUT:
    case RT_REPORT_LOST: x->start_timeout = true; break;
    case RT_REPORT_DONE:
        x->done = true;
        x->status = r->err;
        break;
    default:
        if (!x->fail.step && r->step > 0 && r->step < RT_STEP_N)
            x->fail = *r;
    }
}

static void run_read_reports(struct exec_run *x)
{
    struct rt_report r[16];
    while (x->rep_r >= 0) {
        ssize_t n = read(x->rep_r, r, sizeof r);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close(TAKE_FD(x->rep_r));
            return;
        }
        for (size_t i = 0; i < (size_t)n / sizeof *r; i++)
            run_report(x, &r[i]);
    }
}

/* The helper has exited: reap it and take its last reports.  */
static void run_helper_ended(struct exec_run *x)
{
    siginfo_t si;
    (void)waitid(P_PIDFD, (id_t)x->pidfd, &si, WEXITED);
    close(TAKE_FD(x->pidfd));
    run_read_reports(x);
    x->ended = true;
    x->ended_at = sbx_monotonic_ms();
}

static int64_t min_deadline(int64_t a, int64_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

/* Feed stdin, collect stdout and stderr, follow the helper's reports and
 * watch the clock until the helper has exited and the output is read.  */
static int exec_wait(struct exec_run *x, sbx_error_t *err)
{
    if (!x->stdin_left)
        close(TAKE_FD(x->in_w));
    else
        (void)fcntl(x->in_w, F_SETFL, O_NONBLOCK);
    (void)fcntl(x->ob.fd, F_SETFL, O_NONBLOCK);
    (void)fcntl(x->eb.fd, F_SETFL, O_NONBLOCK);
    (void)fcntl(x->rep_r, F_SETFL, O_NONBLOCK);
    for (;;) {
        /* From the fork on, the command is in the sandbox's pid namespace
         * and ends with it: stop and destroy may go on.  */
        if (x->locked && (x->forked || x->fail.step || x->ended || x->backstop))
            run_unlock(x);
        int64_t now = sbx_monotonic_ms();
        if (x->ended &&
            ((x->ob.fd < 0 && x->eb.fd < 0) || now >= x->ended_at + GRACE_AFTER_EXIT_MS))
            return 0;
        int64_t cut = __atomic_load_n(&x->rt->cut_execs_at_ms, __ATOMIC_RELAXED);
        if (!x->ended && cut && now >= cut) {
            x->detached = true;
            return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                                 "the host agent is stopping; the command goes on in the sandbox");
        }
        bool starting = !x->started && !x->fail.step && !x->start_timeout && !x->backstop;
        if (!x->ended && starting && now >= x->start_deadline) {
            /* The helper's own deadline should have ended the command by
             * now.  Before its fork, the helper is alone: kill it; after,
             * kill the command and let the helper reap it.  */
            x->backstop = true;
            (void)rt_cg_kill(&x->rt->cg, x->id, x->sub, 500, NULL);
            if (!x->forked)
                (void)sys_pidfd_kill(x->pidfd, SIGKILL);
            x->hard_end = sbx_monotonic_ms() + 2000;
        }
        if (!x->ended && !x->timed_out && now >= x->deadline) {
            x->timed_out = true;
            x->next_kill = now;
            x->hard_end = min_deadline(x->hard_end, now + 5000);
        }
        /* Again and again: a command that was not yet in the exec's
         * cgroup at the first kill joins it later.  */
        if (!x->ended && x->timed_out && now >= x->next_kill) {
            (void)rt_cg_kill(&x->rt->cg, x->id, x->sub, 500, NULL);
            x->next_kill = sbx_monotonic_ms() + 250;
        }
        if (!x->ended && x->hard_end && now >= x->hard_end)
            return sbx_error_set(err, SBX_ERR_INTERNAL, "exec: the command survives SIGKILL");
        struct pollfd pfd[5];
        int np = 0, ip = -1, iout = -1, ierr = -1, irep = -1, ihelper = -1;
        if (!x->ended) {
            ihelper = np;
            pfd[np++] = (struct pollfd){.fd = x->pidfd, .events = POLLIN};
        }
        if (x->ob.fd >= 0) {
            iout = np;
            pfd[np++] = (struct pollfd){.fd = x->ob.fd, .events = POLLIN};
        }
        if (x->eb.fd >= 0) {
            ierr = np;
            pfd[np++] = (struct pollfd){.fd = x->eb.fd, .events = POLLIN};
        }
        if (x->in_w >= 0) {
            ip = np;
            pfd[np++] = (struct pollfd){.fd = x->in_w, .events = POLLOUT};
        }
        if (x->rep_r >= 0) {
            irep = np;
            pfd[np++] = (struct pollfd){.fd = x->rep_r, .events = POLLIN};
        }
        int64_t until = x->ended_at + GRACE_AFTER_EXIT_MS;
        if (!x->ended) {
            until = x->hard_end;
            until = min_deadline(until, x->timed_out ? x->next_kill : x->deadline);
            if (starting)
                until = min_deadline(until, x->start_deadline);
        }
        int wait = (int)(until - now);
        if (wait > 1000) /* so a stop of the agent is seen within a second */
            wait = 1000;
        if (poll(pfd, (nfds_t)np, wait < 0 ? 0 : wait) < 0 && errno != EINTR)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "poll");
        if (irep >= 0 && pfd[irep].revents)
            run_read_reports(x);
        if (iout >= 0 && pfd[iout].revents)
            rt_outbuf_read(&x->ob);
        if (ierr >= 0 && pfd[ierr].revents)
            rt_outbuf_read(&x->eb);
        if (ip >= 0 && pfd[ip].revents)
            rt_stdin_feed(&x->in_w, &x->stdin_p, &x->stdin_left);
        if (ihelper >= 0 && pfd[ihelper].revents)
            run_helper_ended(x);
    }
}

/* Why a command could not start, from what its cgroup shows.  */
static int exec_unavailable(struct exec_run *x, sbx_error_t *err)
{
    rt_cg_pressure_t p;
    rt_cg_pressure(&x->rt->cg, x->id, &p);
    if (p.under_oom || (p.memory_limit && p.memory_bytes + p.memory_limit / 32 >= p.memory_limit))
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                             "sandbox %s is out of memory (%llu of %llu MiB used); the command "
                             "could not start",
                             x->id, (unsigned long long)(p.memory_bytes >> 20),
                             (unsigned long long)(p.memory_limit >> 20));
    if (p.pids_max && p.pids >= p.pids_max)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                             "sandbox %s is at its process limit (%llu); the command could not "
                             "start",
                             x->id, (unsigned long long)p.pids_max);
    return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                         "sandbox %s did not start the command within %d ms", x->id,
                         EXEC_START_BACKSTOP_MS);
}

/* A failure the helper or the command reported before execve.  */
static int exec_failed(struct exec_run *x, bool init_gone, sbx_error_t *err)
{
    const struct rt_report *f = &x->fail;
    if (f->step == RT_STEP_CWD) {
        errno = f->err;
        return sbx_error_errno(err, SBX_ERR_INVALID, "exec: cwd %s", x->cwd);
    }
    if (init_gone || (f->step == RT_STEP_SETNS && f->err == ESRCH))
        return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is not running", x->id);
    if (f->step == RT_STEP_FORK && f->err == EAGAIN)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "sandbox %s is at its process limit", x->id);
    if (f->err == ENOMEM || f->err == EAGAIN)
        return exec_unavailable(x, err);
    return report_error(err, "exec", f);
}

static int exec_result(struct exec_run *x, const rt_exec_request_t *req, rt_exec_result_t *out,
                       sbx_error_t *err)
{
    bool init_gone = pidfd_exited(x->init_pidfd, 0);
    bool not_found = x->fail.step == RT_STEP_EXEC && x->fail.err != ENOMEM;
    if (x->fail.step && !not_found)
        return exec_failed(x, init_gone, err);
    if (!x->forked && !x->backstop && !x->timed_out)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "exec: the helper ended without a report");
    if (!x->started && !not_found && !(x->timed_out && x->done)) {
        if (init_gone)
            return sbx_error_set(err, SBX_ERR_CONFLICT,
                                 "sandbox %s stopped before the command started", x->id);
        return exec_unavailable(x, err);
    }
    if (!x->done && !not_found) {
        /* Its helper was killed: by a stop of the sandbox, or by us.  */
        if (init_gone)
            return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s stopped while the command ran",
                                 x->id);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "exec: the command's exit status is lost");
    }
    out->timed_out = x->timed_out;
    if (WIFEXITED(x->status)) {
        out->exit_code = WEXITSTATUS(x->status);
    } else {
        out->exit_code = -1;
        out->signal = WIFSIGNALED(x->status) ? WTERMSIG(x->status) : 0;
    }
    if (not_found) {
        /* As a shell reports it: 127 not found, 126 not executable.  */
        out->exit_code = x->fail.err == ENOENT ? 127 : 126;
        out->signal = 0;
        char msg[512];
        int len =
            snprintf(msg, sizeof msg, "sandbox: %s: %s\n", req->argv[0], strerror(x->fail.err));
        len = len < (int)sizeof msg ? len : (int)sizeof msg - 1;
        rt_outbuf_append(&x->eb, msg, (size_t)len);
    }
    out->out = rt_outbuf_take(&x->ob, &out->out_len, &out->out_truncated);
    out->err = rt_outbuf_take(&x->eb, &out->err_len, &out->err_truncated);
    out->duration_ms = (x->ended ? x->ended_at : sbx_monotonic_ms()) - x->t0;
    return 0;
}

static void exec_run_done(struct exec_run *x)
{
    run_unlock(x);
    if (x->pidfd >= 0 && x->detached) {
        close(TAKE_FD(x->pidfd)); /* the helper reaps its command, later */
    } else if (x->pidfd >= 0) {
        /* Given up on: end its command first, so the helper can reap it.
         * A command that has ended leaves what it started in the
         * background running, as exec does: its helper only has to exit.  */
        if (x->have_cg && !x->done)
            (void)rt_cg_kill(&x->rt->cg, x->id, x->sub, 500, NULL);
        helper_reap(TAKE_FD(x->pidfd), x->forked ? 1000 : 0);
    }
    const int fds[] = {x->init_pidfd, x->in_w, x->rep_r, x->ob.fd, x->eb.fd, x->ctl_w};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(x->ob.data);
    free(x->eb.data);
    if (x->have_cg)
        rt_cg_exec_done(&x->rt->cg, x->id, x->sub);
}

/* Start the exec helper (sandbox_init.c) with the command's pipes, the
 * init's pidfd and the exec's cgroup files; it enters the sandbox, forks
 * the command as its own child and reports on it.  */
static int proc_exec(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_exec_request_t *req,
                     rt_exec_result_t *out, sbx_error_t *err)
{
    struct exec_run x = {
        .rt = rt,
        .sb = sb,
        .locked = true,
        .cwd = req->cwd ? req->cwd : "/",
        .init_pidfd = -1,
        .pidfd = -1,
        .in_w = -1,
        .rep_r = -1,
        .ctl_w = -1,
        .ob = {.fd = -1},
        .eb = {.fd = -1},
        .stdin_p = req->stdin_data,
        .stdin_left = req->stdin_data ? req->stdin_len : 0,
        .t0 = sbx_monotonic_ms(),
    };
    leftovers_reap();
    size_t cap = req->output_cap ? req->output_cap : RT_DEFAULT_OUTPUT_CAP;
    x.ob.cap = x.eb.cap = cap > RT_MAX_OUTPUT_CAP ? RT_MAX_OUTPUT_CAP : cap;
    x.start_deadline = x.t0 + EXEC_START_BACKSTOP_MS;
    x.deadline = x.t0 + (req->timeout_ms > 0 ? req->timeout_ms : RT_DEFAULT_TIMEOUT_MS);
    memcpy(x.id, sb->id, sizeof x.id);
    snprintf(x.sub, sizeof x.sub, "x%llx", (unsigned long long)atomic_fetch_add(&sb->exec_seq, 1));
    struct launch l = {.user = &req->user, .argv = req->argv, .env = req->env};
    int ret = exec_launch(&x, &l, err);
    if (ret == 0)
        ret = exec_wait(&x, err);
    if (ret == 0)
        ret = exec_result(&x, req, out, err);
    exec_run_done(&x);
    return ret;
}

/* ---- processes: commands that run on their own ------------------------------ */

struct rt_proc {
    struct exec_run x;
};

/* Wait until the command runs (its pid known) or could not start; the
 * lock is released once it is in the sandbox's pid namespace.  */
static int spawn_wait(struct exec_run *x, const char *cmd, sbx_error_t *err)
{
    (void)fcntl(x->rep_r, F_SETFL, O_NONBLOCK);
    while (!x->started && !x->fail.step && !x->ended && !x->start_timeout) {
        if (x->locked && x->forked)
            run_unlock(x);
        int64_t now = sbx_monotonic_ms();
        if (now >= x->start_deadline) {
            x->backstop = true;
            break;
        }
        struct pollfd pfd[2] = {{.fd = x->rep_r, .events = POLLIN},
                                {.fd = x->pidfd, .events = POLLIN}};
        int64_t wait = x->start_deadline - now;
        if (poll(pfd, 2, (int)(wait > 1000 ? 1000 : wait)) < 0 && errno != EINTR)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "poll");
        if (pfd[0].revents)
            run_read_reports(x);
        else if (pfd[1].revents)
            run_helper_ended(x);
    }
    run_unlock(x);
    if (x->started)
        return 0;
    if (x->fail.step == RT_STEP_EXEC && x->fail.err != ENOMEM)
        return sbx_error_arm(err, SBX_ERR_INVALID,
                             x->fail.err == ENOENT ? "CommandNotFound" : "CommandNotExecutable",
                             "%s: %s", cmd, strerror(x->fail.err));
    bool init_gone = pidfd_exited(x->init_pidfd, 0);
    if (x->fail.step)
        return exec_failed(x, init_gone, err);
    if (init_gone)
        return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s stopped before the command started",
                             x->id);
    return exec_unavailable(x, err);
}

static int proc_spawn(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_proc_request_t *req,
                      rt_proc_t **out, sbx_error_t *err)
{
    rt_proc_t *p = xcalloc(1, sizeof *p);
    struct exec_run *x = &p->x;
    *x = (struct exec_run){
        .rt = rt,
        .sb = sb,
        .locked = true,
        .cwd = req->cwd ? req->cwd : "/",
        .init_pidfd = -1,
        .pidfd = -1,
        .in_w = -1,
        .rep_r = -1,
        .ctl_w = -1,
        .ob = {.fd = -1},
        .eb = {.fd = -1},
        .pty = req->pty,
        .t0 = sbx_monotonic_ms(),
    };
    leftovers_reap();
    x->start_deadline = x->t0 + EXEC_START_BACKSTOP_MS;
    memcpy(x->id, sb->id, sizeof x->id);
    snprintf(x->sub, sizeof x->sub, "p%llx",
             (unsigned long long)atomic_fetch_add(&sb->exec_seq, 1));
    struct launch l = {.user = &req->user,
                       .argv = req->argv,
                       .env = req->env,
                       .pty = req->pty,
                       .rows = req->rows,
                       .cols = req->cols};
    if (exec_launch(x, &l, err) < 0 || spawn_wait(x, req->argv[0], err) < 0) {
        exec_run_done(x);
        free(p);
        return -1;
    }
    x->sb = NULL; /* unlocked: it may go away */
    x->cwd = NULL;
    (void)fcntl(x->ctl_w, F_SETFL, O_NONBLOCK);
    *out = p;
    return 0;
}

int rt_proc_pid(const rt_proc_t *p)
{
    return p->x.nspid;
}

int rt_proc_fd(const rt_proc_t *p, rt_proc_fd_t which)
{
    switch (which) {
    case RT_PROC_STDIN: return p->x.in_w;
    case RT_PROC_STDOUT: return p->x.ob.fd;
    case RT_PROC_STDERR: return p->x.eb.fd;
    case RT_PROC_EVENTS: return p->x.rep_r;
    }
    return -1;
}

bool rt_proc_poll(rt_proc_t *p, int *status)
{
    struct exec_run *x = &p->x;
    run_read_reports(x);
    /* The report pipe ends when the helper exits, right after its last
     * report: reap it.  */
    if (x->rep_r < 0 && !x->ended && x->pidfd >= 0 && pidfd_exited(x->pidfd, 1000))
        run_helper_ended(x);
    if (!x->done && !x->ended)
        return false;
    *status = x->done ? x->status : -1;
    return true;
}

void rt_proc_close_stdin(rt_proc_t *p)
{
    struct exec_run *x = &p->x;
    if (x->pty) {
        /* A terminal stays: end-of-file is ^D, at the start of a line.  */
        if (x->in_w >= 0)
            (void)!write(x->in_w, "\x04", 1);
        return;
    }
    if (x->in_w >= 0)
        close(TAKE_FD(x->in_w));
}

int rt_proc_signal(rt_proc_t *p, int sig, sbx_error_t *err)
{
    struct exec_run *x = &p->x;
    if (sig < 1 || sig > 64)
        return sbx_error_set(err, SBX_ERR_INVALID, "no signal %d", sig);
    if (x->done || x->ended || x->ctl_w < 0)
        return sbx_error_set(err, SBX_ERR_CONFLICT, "the process has ended");
    if (write(x->ctl_w, &sig, sizeof sig) != (ssize_t)sizeof sig)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "signal the process");
    /* Whatever it started too: the whole of its cgroup.  */
    if (sig == SIGKILL)
        (void)rt_cg_kill(&x->rt->cg, x->id, x->sub, 500, NULL);
    return 0;
}

int rt_proc_resize(rt_proc_t *p, unsigned short rows, unsigned short cols, sbx_error_t *err)
{
    struct exec_run *x = &p->x;
    if (!x->pty)
        return sbx_error_set(err, SBX_ERR_INVALID, "the process has no terminal");
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    if (x->ob.fd < 0 || ioctl(x->ob.fd, TIOCSWINSZ, &ws) < 0)
        return sbx_error_errno(err, SBX_ERR_CONFLICT, "resize the terminal");
    return 0;
}

void rt_proc_free(rt_proc_t *p, bool kill)
{
    if (!p)
        return;
    struct exec_run *x = &p->x;
    if (!kill && !x->ended)
        x->detached = true; /* the agent stops: the command goes on */
    exec_run_done(x);
    free(p);
}

const rt_driver_ops_t rt_process_ops = {
    .name = "process",
    .usable = proc_usable,
    .create = proc_create,
    .start = proc_start,
    .exec = proc_exec,
    .spawn = proc_spawn,
    .suspend = proc_suspend,
    .resume = proc_resume,
    .stop = proc_stop,
    .destroy = proc_destroy,
    .list = proc_list,
    .root_fd = proc_root_fd,
    .usage = proc_usage,
};
