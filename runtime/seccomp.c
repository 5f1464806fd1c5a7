/* seccomp.c -- the system-call filter every sandbox process runs under:
 * allow by default, refuse (EPERM) the calls that reach kernel surface a
 * sandbox has no use for or that would let it change its own confinement.
 * Built once with libseccomp and exported to raw BPF, so a freshly forked
 * child installs it with one prctl and no allocation.  */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <termios.h>

#include <seccomp.h>

#include "runtime/driver.h"

/* Refused outright: mounting and moving roots, other processes' memory,
 * kernel modules and kexec, keyrings, bpf, perf, namespaces, tracing,
 * kernel-wide knobs, and io_uring (a large, frequently exploited surface).  */
static const char *const denied[] = {
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "setns", "unshare", "open_by_handle_at", "name_to_handle_at",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "syslog",
    "iopl", "ioperm", "lookup_dcookie", "nfsservctl", "uselib", "ustat", "_sysctl",
    "settimeofday", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime",
    "clock_adjtime64", "stime", "vhangup", "fanotify_init",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "create_module",
    "get_kernel_syms", "query_module", "vm86", "vm86old", "lsm_set_self_attr",
    "migrate_pages", "move_pages",
};

static int rule(scmp_filter_ctx ctx, int errnum, const char *name, unsigned n,
                const struct scmp_arg_cmp *args)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0; /* not on this architecture */
    return seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(errnum), nr, n, args);
}

int rt_seccomp_build(struct sock_fprog *out, sbx_error_t *err)
{
    memset(out, 0, sizeof *out);
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "seccomp_init failed");
    int r = 0;
    for (size_t i = 0; i < ARRAY_SIZE(denied) && r == 0; i++)
        r = rule(ctx, EPERM, denied[i], 0, NULL);
    /* clone with a new user namespace would give back every capability
     * inside it; clone3 passes its flags in memory a filter cannot read,
     * so it reports ENOSYS and libc falls back to clone.  */
    struct scmp_arg_cmp newuser = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER);
    if (r == 0)
        r = rule(ctx, EPERM, "clone", 1, &newuser);
    if (r == 0)
        r = rule(ctx, ENOSYS, "clone3", 0, NULL);
    /* vsock is not network-namespaced: on a VM host it reaches the
     * hypervisor's services (CID 2), and a socket bound in one sandbox
     * takes connections meant for the host or other sandboxes.  Refused
     * as if the kernel had no vsock.  The kernel reads the domain as an
     * int: compare the low 32 bits only, or high bits would slip past.  */
    struct scmp_arg_cmp vsock = SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, AF_VSOCK);
    if (r == 0)
        r = rule(ctx, EAFNOSUPPORT, "socket", 1, &vsock);
    /* Pushing input into a terminal another process reads.  */
    struct scmp_arg_cmp sti = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI);
    struct scmp_arg_cmp linux_ioctl = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX);
    if (r == 0)
        r = rule(ctx, EPERM, "ioctl", 1, &sti);
    if (r == 0)
        r = rule(ctx, EPERM, "ioctl", 1, &linux_ioctl);
    if (r < 0) {
        seccomp_release(ctx);
        errno = -r;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "seccomp rule");
    }

    /* libseccomp 2.5 exports to a file descriptor only.  */
    int fd = memfd_create("seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        seccomp_release(ctx);
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "memfd_create");
    }
    r = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    off_t len = lseek(fd, 0, SEEK_END);
    if (r < 0 || len <= 0 || len % sizeof(struct sock_filter) != 0) {
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
