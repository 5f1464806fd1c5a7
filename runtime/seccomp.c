/* seccomp.c -- the system-call filter every sandbox process runs under: an
 * allow list (Docker's default profile for a process without capabilities,
 * less a few calls we refuse), EPERM for every other system call the filter
 * knows, ENOSYS for numbers newer than it.  Built once with libseccomp and
 * exported to raw BPF, so a freshly forked child installs it with one prctl
 * and no allocation.  */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>

#include <seccomp.h>

#include "runtime/driver.h"

/* Docker's default profile (moby profiles/seccomp/default.json), the part
 * granted without capabilities, minus: ptrace and process_vm_readv/writev
 * (other processes' memory), adjtimex and clock_adjtime (clock knobs),
 * name_to_handle_at (file handles, with open_by_handle_at a known escape)
 * and fanotify_mark (useless without fanotify_init).  clone, clone3,
 * socket, ioctl and personality are allowed with argument checks below.
 * Names this architecture lacks (the 32-bit ones) are skipped, and so are
 * names our libseccomp does not know (those calls get ENOSYS).  */
/* clang-format off */
static const char *const allowed[] = {
    "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_getres", "clock_getres_time64",
    "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close",
    "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod",
    "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64",
    "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex",
    "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid",
    "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
    "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday",
    "getuid", "getuid32", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
    "listmount", "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek",
    "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "modify_ldt", "mprotect", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv",
    "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep", "newfstatat",
    "_newselect", "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal",
    "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll",
    "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
    "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64",
    "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename", "renameat",
    "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
    "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto",
    "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat", "shmat", "shmctl",
    "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
    "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64",
    "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat",
    "uretprobe", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice",
    "wait4", "waitid", "waitpid", "write", "writev",
};
/* clang-format on */

/* Every system call number up to this one that libseccomp can name gets a
 * rule; the filter's default (ENOSYS) only answers numbers beyond what it
 * knows.  x86_64 numbers end in the 460s today.  */
#define MAX_NR 1024

typedef struct builder {
    scmp_filter_ctx ctx;
    uint8_t handled[MAX_NR / 8]; /* numbers that already have their rules */
} builder_t;

static void mark(builder_t *b, int nr)
{
    if (nr >= 0 && nr < MAX_NR)
        b->handled[nr / 8] |= (uint8_t)(1u << (nr % 8));
}

static bool marked(const builder_t *b, int nr)
{
    return nr >= 0 && nr < MAX_NR && (b->handled[nr / 8] & (1u << (nr % 8)));
}

/* The native number of a call, or -1 when this architecture (or our
 * libseccomp) has none; negative pseudo numbers stand for calls of other
 * architectures.  */
static int resolve(const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    return nr == __NR_SCMP_ERROR || nr < 0 ? -1 : nr;
}

static int arg_rule(builder_t *b, uint32_t action, int nr, unsigned arg, uint64_t mask,
                    uint64_t value)
{
    struct scmp_arg_cmp c = {
        .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = value};
    return seccomp_rule_add_exact_array(b->ctx, action, nr, 1, &c);
}

/* Action `in` when the low 32 bits of argument `arg` (all the kernel reads
 * of an int) are one of set[], `out` otherwise.  The two sides must be
 * disjoint conditions: libseccomp silently drops conditional rules when
 * an unconditional rule of another action exists for the same call.  So
 * walk the binary trie of set[] from the top bit and give every subtree
 * holding none of its values one `out` rule on its prefix.  */
static int split_rules(builder_t *b, int nr, unsigned arg, const uint32_t *set, size_t n,
                       uint32_t in, uint32_t out, int depth, uint32_t prefix)
{
    uint32_t mask = depth ? ~0u << (32 - depth) : 0;
    size_t hits = 0;
    for (size_t i = 0; i < n; i++)
        hits += (set[i] & mask) == prefix;
    if (hits == 0)
        return arg_rule(b, out, nr, arg, mask, prefix);
    if (depth == 32)
        return arg_rule(b, in, nr, arg, mask, prefix);
    int r = split_rules(b, nr, arg, set, n, in, out, depth + 1, prefix);
    if (r == 0)
        r = split_rules(b, nr, arg, set, n, in, out, depth + 1, prefix | 1u << (31 - depth));
    return r;
}

static int value_rules(builder_t *b, const char *name, unsigned arg, const uint32_t *set, size_t n,
                       uint32_t in, uint32_t out)
{
    int nr = resolve(name);
    if (nr < 0)
        return 0;
    mark(b, nr);
    return split_rules(b, nr, arg, set, n, in, out, 0, 0);
}

/* clone is allowed without namespace flags (a new user namespace would
 * give back every capability inside it); clone3 passes its flags in
 * memory a filter cannot read, so it reports ENOSYS and libc falls back to
 * clone.  clone reads its flags as 64 bits but uses the low 32 only.  */
static int clone_rules(builder_t *b)
{
    const uint32_t ns = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                        CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
    int nr = resolve("clone");
    int r = nr < 0 ? 0 : arg_rule(b, SCMP_ACT_ALLOW, nr, 0, ns, 0);
    for (int bit = 0; bit < 32 && r == 0 && nr >= 0; bit++)
        if (ns & (1u << bit))
            r = arg_rule(b, SCMP_ACT_ERRNO(EPERM), nr, 0, 1u << bit, 1u << bit);
    mark(b, nr);
    /* ENOSYS is the filter's default, and libseccomp refuses a rule that
     * repeats it: marking clone3 handled keeps it out of the EPERM set.  */
    mark(b, resolve("clone3"));
    return r;
}

static int arg_rules(builder_t *b)
{
    int r = clone_rules(b);
    /* vsock is not network-namespaced: on a VM host it reaches the
     * hypervisor's services (CID 2), and a socket bound in one sandbox
     * takes connections meant for the host or other sandboxes.  Refused
     * as if the kernel had no vsock.  */
    const uint32_t vsock[] = {AF_VSOCK};
    if (r == 0)
        r = value_rules(b, "socket", 0, vsock, ARRAY_SIZE(vsock), SCMP_ACT_ERRNO(EAFNOSUPPORT),
                        SCMP_ACT_ALLOW);
    /* Pushing input into a terminal another process reads.  */
    const uint32_t tty[] = {TIOCSTI, TIOCLINUX};
    if (r == 0)
        r = value_rules(b, "ioctl", 1, tty, ARRAY_SIZE(tty), SCMP_ACT_ERRNO(EPERM), SCMP_ACT_ALLOW);
    /* Docker's personalities: PER_LINUX, PER_LINUX32, with UNAME26, and
     * the query; not, for one, ADDR_NO_RANDOMIZE.  */
    const uint32_t persona[] = {0, 0x8, 0x20000, 0x20008, 0xffffffffu};
    if (r == 0)
        r = value_rules(b, "personality", 0, persona, ARRAY_SIZE(persona), SCMP_ACT_ALLOW,
                        SCMP_ACT_ERRNO(EPERM));
    return r;
}

static int build_rules(builder_t *b)
{
    int r = arg_rules(b);
    for (size_t i = 0; i < ARRAY_SIZE(allowed) && r == 0; i++) {
        int nr = resolve(allowed[i]);
        if (nr < 0 || marked(b, nr))
            continue;
        r = seccomp_rule_add_exact(b->ctx, SCMP_ACT_ALLOW, nr, 0);
        mark(b, nr);
    }
    /* The rest of what libseccomp can name is refused on purpose: EPERM,
     * as Docker answers.  A number it cannot name is a call newer than the
     * filter; it falls to the default, ENOSYS, what a kernel without the
     * call says, so libc falls back to the older call it replaces.  */
    for (int nr = 0; nr < MAX_NR && r == 0; nr++) {
        if (marked(b, nr))
            continue;
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        if (name)
            r = seccomp_rule_add_exact(b->ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
        free(name);
    }
    return r;
}

int rt_seccomp_build(struct sock_fprog *out, sbx_error_t *err)
{
    memset(out, 0, sizeof *out);
    builder_t b = {.ctx = seccomp_init(SCMP_ACT_ERRNO(ENOSYS))};
    if (!b.ctx)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "seccomp_init failed");
    /* A binary search over the numbers, not a walk down ~370 of them.  */
    int r = seccomp_attr_set(b.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (r == 0)
        r = build_rules(&b);
    if (r < 0) {
        seccomp_release(b.ctx);
        errno = -r;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "seccomp rule");
    }

    /* libseccomp 2.5 exports to a file descriptor only.  */
    int fd = memfd_create("seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        seccomp_release(b.ctx);
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "memfd_create");
    }
    r = seccomp_export_bpf(b.ctx, fd);
    seccomp_release(b.ctx);
    off_t len = lseek(fd, 0, SEEK_END);
    if (r < 0 || len <= 0 || len % sizeof(struct sock_filter) != 0 ||
        len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        close(fd);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "seccomp export failed");
    }
    struct sock_filter *prog = xmalloc((size_t)len);
    ssize_t got = pread(fd, prog, (size_t)len, 0);
    close(fd);
    if (got != len) {
        free(prog);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "seccomp export short read");
    }
    out->filter = prog;
    out->len = (unsigned short)(len / sizeof(struct sock_filter));
    return 0;
}
