/* microvm.c -- the "microvm" driver: each sandbox is a QEMU microVM
 * (`-M microvm`, virtio-mmio devices, no PCI, no firmware beyond QEMU's
 * minimal one) with its own Linux kernel (Debian's cloud kernel, fetched
 * by scripts/microvm-kernel.sh), and the guest agent (guest/agent.c,
 * embedded in this library) as pid 1 of an initramfs this file writes.
 *
 * Disks: the image as an ext4 file made once per image with `mkfs.ext4 -d`
 * and shared read-only by every VM of that image, and a per-sandbox ext4
 * disk of diskMiB (sparse) that the guest puts over it as an overlay's
 * upper layer; the writable disk survives stop and start.  The guest agent
 * answers exec and files over a virtio-serial port (microvm_agent.c).
 *
 * QEMU runs as the sandbox's host uid (not root), under QEMU's own seccomp
 * sandbox, in a network namespace of its own and in the sandbox's cgroups
 * (memoryMiB plus QEMU's overhead, pids, cpu, freezer).  Its files are
 * handed over as open fds, so it needs no access to the state directory.
 *
 * Acceleration: KVM where a trial boot under it finishes within a
 * deadline (not merely where /dev/kvm opens: nested or emulated KVM can
 * be thousands of times slower); otherwise TCG emulation, only when the
 * operator allows it (--microvm-emulation).
 *
 * Suspend writes the VM's memory and device state to a file (QEMU's
 * migration to an fd, microvm_qmp.c) and ends QEMU; resume starts QEMU
 * again with -incoming from that file.
 *
 * Under <state_dir>/microvm: initrd.cpio, images/<hash>.ext4.  In a
 * sandbox's directory: disk.ext4, agent.sock and qmp.sock while it runs,
 * snapshot.mem while suspended.  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/microvm.h"

extern const unsigned char rt_guest_agent_blob[], rt_guest_agent_blob_end[];

#define MV_KERNEL_DIR_DEFAULT "/var/cache/sandboxd/microvm-kernel"
#define MV_TRIAL_TIMEOUT_MS 10000
#define MV_BOOT_TIMEOUT_KVM_MS 20000
#define MV_BOOT_TIMEOUT_TCG_MS 120000
#define MV_MKFS_TIMEOUT_MS 300000
#define MV_KILL_TIMEOUT_MS 5000
#define MV_SYNC_TIMEOUT_MS 5000
#define MV_SNAPSHOT_TIMEOUT_MS 120000
/* What QEMU itself takes beyond the guest's RAM (TCG's translation cache
 * is bounded to 64 MiB below).  */
#define MV_QEMU_OVERHEAD_MIB 192
#define MV_MIN_MEMORY_MIB 128

/* ---- the host: QEMU, the kernel, an accelerator that works --------------- */

static struct {
    pthread_mutex_t mu;
    bool done, ok;
    char qemu[256], kernel_dir[256], mkfs[64];
    const char *accel; /* "kvm" or "tcg" */
    char why[192];
} probe = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t image_mu = PTHREAD_MUTEX_INITIALIZER;

static int sys_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static bool first_executable(const char *const *paths, size_t n, char *out, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (paths[i] && access(paths[i], X_OK) == 0) {
            snprintf(out, len, "%s", paths[i]);
            return true;
        }
    return false;
}

/* Spawn argv with fds[i] as its fd i (fds[i] < 0: /dev/null for 0..2);
 * with cg_id it joins the sandbox's cgroups before it execs; with uid it
 * leaves the host's network namespace (for netns_fd's, or a new empty
 * one) and drops to that uid and gid, without privileges.  */
static pid_t spawn(rt_runtime_t *rt, char *const *argv, const int *fds, int nfds, const char *cg_id,
                   uid_t uid, int netns_fd, int *pidfd, sbx_error_t *err)
{
    int gate[2];
    if (nfds > 16 || pipe2(gate, O_CLOEXEC) < 0)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "spawn %s: setup", argv[0]);
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    pid_t pid = fork();
    if (pid == 0) {
        /* Only system calls from here: the agent has other threads.  */
        if (uid && netns_fd >= 0 && syscall(SYS_setns, netns_fd, CLONE_NEWNET) < 0)
            _exit(126);
        int src[17];
        int hi = 20;
        for (int i = 0; i < nfds; i++) {
            src[i] = fds[i] >= 0 ? fds[i] : i < 3 ? null_fd : -1;
            if (src[i] >= hi)
                hi = src[i] + 1;
        }
        src[nfds] = gate[0];
        if (gate[0] >= hi)
            hi = gate[0] + 1;
        for (int i = 0; i <= nfds; i++) /* above every source first, then down */
            if (src[i] >= 0 && (src[i] = fcntl(src[i], F_DUPFD, hi + i)) < 0)
                _exit(127);
        for (int i = 0; i <= nfds; i++)
            if (src[i] >= 0 && dup2(src[i], i) < 0)
                _exit(127);
        if (syscall(SYS_close_range, nfds + 1, ~0U, 0) < 0)
            _exit(127);
        char c;
        if (read(nfds, &c, 1) != 1)
            _exit(127);
        close(nfds);
        if (uid) {
            /* Raw calls: glibc's would signal the agent's other threads,
             * which the child does not have.  */
            if ((netns_fd < 0 && unshare(CLONE_NEWNET) < 0) ||
                syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, uid, uid, uid) < 0 ||
                syscall(SYS_setresuid, uid, uid, uid) < 0 ||
                prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                _exit(126);
        }
        execve(argv[0], argv, envp);
        _exit(127);
    }
    int saved = errno;
    close(gate[0]);
    if (null_fd >= 0)
        close(null_fd);
    if (pid < 0) {
        close(gate[1]);
        errno = saved;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "fork");
    }
    *pidfd = sys_pidfd_open(pid);
    int ret = *pidfd < 0 ? sbx_error_errno(err, SBX_ERR_INTERNAL, "pidfd_open") : 0;
    if (ret == 0 && cg_id)
        ret = rt_cg_attach(&rt->cg, cg_id, pid, err);
    if (ret == 0 && write(gate[1], "g", 1) != 1)
        ret = sbx_error_errno(err, SBX_ERR_INTERNAL, "start %s", argv[0]);
    close(gate[1]);
    if (ret < 0) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, NULL, 0);
        if (*pidfd >= 0)
            close(*pidfd);
        *pidfd = -1;
        return -1;
    }
    return pid;
}

/* Wait for a child until deadline, killing it then; false if killed.  */
static bool reap_by(pid_t pid, int pidfd, int64_t deadline, int *status)
{
    bool in_time = true;
    for (;;) {
        int64_t left = deadline - sbx_monotonic_ms();
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        if (left > 0 && poll(&p, 1, (int)(left > 1000 ? 1000 : left)) > 0)
            break;
        if (left <= 0) {
            kill(pid, SIGKILL);
            in_time = false;
            break;
        }
    }
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    close(pidfd);
    return in_time;
}

/* Run argv to its end within timeout_ms, its error output kept for the
 * message.  */
static int run_argv(char *const *argv, int timeout_ms, const char *what, sbx_error_t *err)
{
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
    int pidfd = -1;
    const int fds[] = {-1, -1, ep[1]};
    pid_t pid = spawn(NULL, argv, fds, 3, NULL, 0, -1, &pidfd, err);
    close(ep[1]);
    if (pid < 0) {
        close(ep[0]);
        return -1;
    }
    char buf[2048];
    size_t n = 0;
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    for (;;) {
        struct pollfd p = {.fd = ep[0], .events = POLLIN};
        int64_t left = deadline - sbx_monotonic_ms();
        if (left <= 0 || poll(&p, 1, (int)(left > 1000 ? 1000 : left)) < 0)
            break;
        if (!p.revents)
            continue;
        ssize_t r = read(ep[0], buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof buf - 1)
            n = 0; /* keep the end, where the reason is */
    }
    close(ep[0]);
    buf[n] = 0;
    int status = 0;
    bool in_time = reap_by(pid, pidfd, deadline, &status);
    if (in_time && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    char *nl = strrchr(buf, '\n');
    if (!in_time)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: did not finish within %d ms", what,
                             timeout_ms);
    return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: %s", what, n ? (nl ? nl + 1 : buf) : "failed");
}

static const char *kernel_dir(void)
{
    const char *env = getenv("SANDBOXD_MICROVM_KERNEL");
    return env && env[0] == '/' ? env : MV_KERNEL_DIR_DEFAULT;
}

/* The host's TSC rate: an emulated guest that calibrates it itself can
 * hang at boot.  */
static unsigned long tsc_khz(void)
{
    _cleanup_free_ char *text = NULL;
    size_t len;
    unsigned long khz = 0;
    if (sbx_read_file("/sys/devices/system/cpu/cpu0/tsc_freq_khz", &text, &len, NULL) == 0)
        khz = strtoul(text, NULL, 10);
    free(TAKE_PTR(text));
    if (!khz && sbx_read_file("/proc/cpuinfo", &text, &len, NULL) == 0) {
        const char *m = strstr(text, "cpu MHz");
        m = m ? strchr(m, ':') : NULL;
        if (m)
            khz = (unsigned long)(strtod(m + 1, NULL) * 1000);
    }
    return khz ? khz : 2000000;
}

/* The trial's answer holds until the host reboots: kept host-wide under
 * this boot's id, so each new agent does not pay up to
 * MV_TRIAL_TIMEOUT_MS again.  "<boot id>\n<kernel>\n<0|1>\n<why>".  */
#define MV_TRIAL_CACHE RT_CLAIM_DIR "/kvm-trial"

static char *trial_key(const char *kernel)
{
    _cleanup_free_ char *boot = NULL;
    size_t n = 0;
    if (sbx_read_file("/proc/sys/kernel/random/boot_id", &boot, &n, NULL) < 0)
        return NULL;
    boot[strcspn(boot, "\n")] = '\0';
    return xasprintf("%s\n%s\n", boot, kernel);
}

static int trial_cached(const char *key, char *why, size_t len)
{
    _cleanup_free_ char *text = NULL;
    size_t n = 0;
    if (!key || sbx_read_file(MV_TRIAL_CACHE, &text, &n, NULL) < 0 ||
        strncmp(text, key, strlen(key)) != 0)
        return -1;
    const char *v = text + strlen(key);
    if ((v[0] != '0' && v[0] != '1') || v[1] != '\n')
        return -1;
    snprintf(why, len, "%.*s", (int)strcspn(v + 2, "\n"), v + 2);
    return v[0] == '1';
}

static void trial_keep(const char *key, bool ok, const char *why)
{
    if (!key)
        return;
    _cleanup_free_ char *text = xasprintf("%s%d\n%s\n", key, ok ? 1 : 0, why);
    _cleanup_free_ char *tmp = xasprintf("%s.%d", MV_TRIAL_CACHE, (int)getpid());
    (void)mkdir(RT_CLAIM_DIR, 0755);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text))
        (void)rename(tmp, MV_TRIAL_CACHE);
    else
        (void)unlink(tmp);
}

/* A kernel with no root to mount panics and, with panic=-1 and
 * -no-reboot, QEMU exits: the time that takes under KVM says whether KVM
 * really runs a guest here.  */
static bool kvm_boots(char *why, size_t len)
{
    _cleanup_free_ char *kernel = xasprintf("%s/vmlinuz", probe.kernel_dir);
    _cleanup_free_ char *cmdline =
        xasprintf("console=ttyS0 quiet panic=-1 tsc_early_khz=%lu", tsc_khz());
    char *argv[] = {probe.qemu, "-M",      "microvm",    "-nodefaults", "-no-user-config",
                    "-display", "none",    "-no-reboot", "-accel",      "kvm",
                    "-cpu",     "host",    "-m",         "128",         "-kernel",
                    kernel,     "-append", cmdline,      "-serial",     "null",
                    NULL};
    _cleanup_free_ char *key = trial_key(kernel);
    int cached = trial_cached(key, why, len);
    if (cached >= 0)
        return cached == 1;
    sbx_error_t err = {0};
    int64_t t0 = sbx_monotonic_ms();
    if (run_argv(argv, MV_TRIAL_TIMEOUT_MS, "KVM trial boot", &err) == 0) {
        sbx_log(SBX_LOG_INFO, "runtime", "microvm: KVM trial boot in %lld ms",
                (long long)(sbx_monotonic_ms() - t0));
        trial_keep(key, true, "");
        return true;
    }
    snprintf(why, len, "%s", err.msg);
    trial_keep(key, false, err.msg);
    return false;
}

static void probe_once(rt_runtime_t *rt)
{
    pthread_mutex_lock(&probe.mu);
    if (probe.done) {
        pthread_mutex_unlock(&probe.mu);
        return;
    }
    const char *env = getenv("SANDBOXD_QEMU");
    const char *const qemus[] = {env && env[0] == '/' ? env : NULL, "/usr/bin/qemu-system-x86_64",
                                 "/usr/local/bin/qemu-system-x86_64"};
    const char *const mkfs[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/bin/mkfs.ext4"};
    snprintf(probe.kernel_dir, sizeof probe.kernel_dir, "%s", kernel_dir());
    _cleanup_free_ char *vmlinuz = xasprintf("%s/vmlinuz", probe.kernel_dir);
    _cleanup_free_ char *mods = xasprintf("%s/modules.list", probe.kernel_dir);
    char kvm_why[160] = "";
    if (geteuid() != 0) {
        snprintf(probe.why, sizeof probe.why, "the agent does not run as root");
    } else if (!first_executable(qemus, ARRAY_SIZE(qemus), probe.qemu, sizeof probe.qemu)) {
        snprintf(probe.why, sizeof probe.why,
                 "qemu-system-x86_64 not found (install the Debian package qemu-system-x86)");
    } else if (access(vmlinuz, R_OK) != 0 || access(mods, R_OK) != 0) {
        snprintf(probe.why, sizeof probe.why,
                 "no guest kernel in %s (run scripts/microvm-kernel.sh)", probe.kernel_dir);
    } else if (!first_executable(mkfs, ARRAY_SIZE(mkfs), probe.mkfs, sizeof probe.mkfs)) {
        snprintf(probe.why, sizeof probe.why, "mkfs.ext4 not found (Debian package e2fsprogs)");
    } else if (access("/dev/kvm", R_OK | W_OK) == 0 && kvm_boots(kvm_why, sizeof kvm_why)) {
        probe.accel = "kvm";
    } else if (rt->cfg.allow_microvm_emulation) {
        probe.accel = "tcg";
    } else {
        snprintf(probe.why, sizeof probe.why,
                 "%s%s, and software emulation is not allowed (--microvm-emulation)",
                 kvm_why[0] ? "KVM does not boot a guest here: " : "no usable /dev/kvm", kvm_why);
    }
    probe.ok = probe.accel != NULL;
    if (probe.ok)
        sbx_log(SBX_LOG_INFO, "runtime", "microvm: %s, %s, kernel %s", probe.qemu, probe.accel,
                probe.kernel_dir);
    probe.done = true;
    pthread_mutex_unlock(&probe.mu);
}

static bool mv_usable(rt_runtime_t *rt, char *why, size_t len)
{
    probe_once(rt);
    if (!probe.ok)
        snprintf(why, len, "%s", probe.why);
    return probe.ok;
}

/* ---- the initramfs: the guest agent as /init and the modules --------------- */

typedef struct cpio {
    char *data;
    size_t len, cap;
    unsigned ino;
} cpio_t;

static void cpio_put(cpio_t *c, const void *p, size_t n)
{
    if (c->len + n + 4 > c->cap) {
        c->cap = (c->len + n + 4) * 2;
        c->data = xrealloc(c->data, c->cap);
    }
    memcpy(c->data + c->len, p, n);
    c->len += n;
    while (c->len % 4)
        c->data[c->len++] = 0;
}

/* One entry of the "newc" format the kernel unpacks.  */
static void cpio_entry(cpio_t *c, const char *name, unsigned mode, const void *data, size_t size)
{
    char hdr[111];
    snprintf(hdr, sizeof hdr, "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X",
             ++c->ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, strlen(name) + 1, 0);
    /* The header and name are padded together to 4 bytes.  */
    size_t hn = 110 + strlen(name) + 1;
    char *buf = xmalloc(hn);
    memcpy(buf, hdr, 110);
    memcpy(buf + 110, name, strlen(name) + 1);
    cpio_put(c, buf, hn);
    free(buf);
    if (size)
        cpio_put(c, data, size);
}

/* The modules a list names, into lib/modules/, and the list as /<name>.  */
static int initrd_modules(cpio_t *c, const char *name, const char *list, size_t list_len,
                          sbx_error_t *err)
{
    _cleanup_free_ char *list_path = xasprintf("%s/%s", probe.kernel_dir, name);
    char *save = NULL;
    _cleanup_free_ char *copy = xstrdup(list);
    for (char *m = strtok_r(copy, "\n", &save); m; m = strtok_r(NULL, "\n", &save)) {
        if (strchr(m, '/') || m[0] == '.')
            return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: bad module name", list_path);
        _cleanup_free_ char *path = xasprintf("%s/%s", probe.kernel_dir, m);
        _cleanup_free_ char *mod = NULL;
        size_t mlen;
        if (sbx_read_file(path, &mod, &mlen, err) < 0)
            return -1;
        _cleanup_free_ char *entry = xasprintf("lib/modules/%s", m);
        cpio_entry(c, entry, S_IFREG | 0644, mod, mlen);
    }
    cpio_entry(c, name, S_IFREG | 0644, list, list_len);
    return 0;
}

static int initrd_build(cpio_t *c, sbx_error_t *err)
{
    _cleanup_free_ char *list_path = xasprintf("%s/modules.list", probe.kernel_dir);
    _cleanup_free_ char *net_path = xasprintf("%s/modules-net.list", probe.kernel_dir);
    _cleanup_free_ char *list = NULL, *net = NULL;
    size_t list_len, net_len = 0;
    if (sbx_read_file(list_path, &list, &list_len, err) < 0)
        return -1;
    cpio_entry(c, "lib", S_IFDIR | 0755, NULL, 0);
    cpio_entry(c, "lib/modules", S_IFDIR | 0755, NULL, 0);
    if (initrd_modules(c, "modules.list", list, list_len, err) < 0)
        return -1;
    /* The network card's, loaded by the guest only when it gets a link;
     * a kernel directory made without them gives guests no network.  */
    if (sbx_read_file(net_path, &net, &net_len, NULL) == 0 &&
        initrd_modules(c, "modules-net.list", net, net_len, err) < 0)
        return -1;
    cpio_entry(c, "init", S_IFREG | 0755, rt_guest_agent_blob,
               (size_t)(rt_guest_agent_blob_end - rt_guest_agent_blob));
    cpio_entry(c, "TRAILER!!!", 0, NULL, 0);
    return 0;
}

static int write_file_atomic(const char *path, const void *data, size_t len, sbx_error_t *err)
{
    _cleanup_free_ char *tmp = xasprintf("%s.%d", path, (int)getpid());
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "create %s", tmp);
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, (const char *)data + done, len - done);
        if (w <= 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "write %s", tmp);
        done += (size_t)w;
    }
    if (rename(tmp, path) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "rename %s", path);
    return 0;
}

/* <state_dir>/microvm/{,images/} and initrd.cpio, rewritten when it differs
 * (another agent binary, another kernel).  */
static int microvm_dir_prepare(rt_runtime_t *rt, sbx_error_t *err)
{
    _cleanup_free_ char *dir = xasprintf("%s/microvm", rt->state_dir);
    _cleanup_free_ char *images = xasprintf("%s/images", dir);
    if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || (mkdir(images, 0700) < 0 && errno != EEXIST))
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", images);
    cpio_t c = {0};
    int ret = initrd_build(&c, err);
    _cleanup_free_ char *path = xasprintf("%s/initrd.cpio", dir);
    _cleanup_free_ char *have = NULL;
    size_t have_len = 0;
    if (ret == 0 && !(sbx_read_file(path, &have, &have_len, NULL) == 0 && have_len == c.len &&
                      memcmp(have, c.data, c.len) == 0))
        ret = write_file_atomic(path, c.data, c.len, err);
    free(c.data);
    return ret;
}

/* ---- disks --------------------------------------------------------------------- */

static uint64_t walk_bytes, walk_inodes;

static int walk_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)flag;
    (void)ftw;
    walk_bytes += (uint64_t)st->st_blocks * 512 + 256;
    walk_inodes++;
    return 0;
}

/* images/<hash>.ext4: a hash of the rootfs's real path, inode and times, so
 * a changed or replaced image gets a file of its own.  */
static char *image_path(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    struct stat st;
    _cleanup_free_ char *real = realpath(sb->rootfs, NULL);
    if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
        return sbx_error_errno(err, SBX_ERR_INVALID, "image %s", sb->rootfs), NULL;
    uint64_t h = 1469598103934665603ULL;
    char key[64];
    snprintf(key, sizeof key, ":%llu:%llu:%lld.%ld", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    const char *parts[] = {real, key};
    for (size_t p = 0; p < 2; p++)
        for (const char *s = parts[p]; *s; s++)
            h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return xasprintf("%s/microvm/images/%016llx.ext4", rt->state_dir, (unsigned long long)h);
}

/* The image's ext4 file, made once (no journal: it is only read).  */
static int image_prepare(rt_runtime_t *rt, rt_sandbox_t *sb, char **out, sbx_error_t *err)
{
    _cleanup_free_ char *path = image_path(rt, sb, err);
    if (!path)
        return -1;
    pthread_mutex_lock(&image_mu);
    int ret = 0;
    if (access(path, R_OK) != 0) {
        walk_bytes = walk_inodes = 0;
        if (nftw(sb->rootfs, walk_one, 64, FTW_PHYS) < 0) {
            ret = sbx_error_errno(err, SBX_ERR_INVALID, "image %s", sb->rootfs);
        } else {
            uint64_t mib = (walk_bytes + walk_inodes * 256) * 5 / 4 / (1 << 20) + 16;
            _cleanup_free_ char *tmp = xasprintf("%s.%d.tmp", path, (int)getpid());
            _cleanup_free_ char *size = xasprintf("%lluM", (unsigned long long)mib);
            _cleanup_free_ char *inodes =
                xasprintf("%llu", (unsigned long long)(walk_inodes * 5 / 4 + 1024));
            char *argv[] = {probe.mkfs, "-q",   "-F", "-t",       "ext4", "-O", "^has_journal",
                            "-N",       inodes, "-d", sb->rootfs, tmp,    size, NULL};
            ret = run_argv(argv, MV_MKFS_TIMEOUT_MS, "mkfs.ext4 (image)", err);
            if (ret == 0 && (chmod(tmp, 0644) < 0 || rename(tmp, path) < 0))
                ret = sbx_error_errno(err, SBX_ERR_INTERNAL, "rename %s", path);
            if (ret < 0)
                unlink(tmp);
        }
    }
    pthread_mutex_unlock(&image_mu);
    if (ret == 0)
        *out = TAKE_PTR(path);
    return ret;
}

/* disk.ext4: the sandbox's writable layer, sparse, diskMiB, owned by its
 * uid (QEMU runs as that uid).  Kept across stop and start.  */
static int disk_prepare(rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *disk = xasprintf("%s/disk.ext4", sb->dir);
    if (access(disk, F_OK) == 0)
        return 0;
    _cleanup_free_ char *tmp = xasprintf("%s/disk.ext4.tmp", sb->dir);
    _cleanup_free_ char *size = xasprintf("%lluM", (unsigned long long)sb->disk_mib);
    char *argv[] = {
        probe.mkfs, "-q", "-F", "-t", "ext4", "-E", "lazy_itable_init=1,lazy_journal_init=1",
        tmp,        size, NULL};
    int ret = run_argv(argv, MV_MKFS_TIMEOUT_MS, "mkfs.ext4 (disk)", err);
    if (ret == 0 && (chown(tmp, sb->host_uid, sb->host_uid) < 0 || chmod(tmp, 0600) < 0 ||
                     rename(tmp, disk) < 0))
        ret = sbx_error_errno(err, SBX_ERR_INTERNAL, "install %s", disk);
    if (ret < 0)
        unlink(tmp);
    return ret;
}

/* ---- lifecycle ----------------------------------------------------------------- */

static int limits_apply(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    rt_cg_limits_t lim = {
        .cpu = sb->cpu,
        .memory_bytes = (sb->memory_mib + MV_QEMU_OVERHEAD_MIB) * 1024 * 1024,
        .pids_max = sb->pids_max,
    };
    return rt_cg_create(&rt->cg, sb->id, &lim, err);
}

static int mv_create(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    probe_once(rt);
    if (!probe.ok)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "microvm: %s", probe.why);
    _cleanup_free_ char *image = NULL;
    if (microvm_dir_prepare(rt, err) < 0 || limits_apply(rt, sb, err) < 0 ||
        image_prepare(rt, sb, &image, err) < 0)
        return -1;
    return disk_prepare(sb, err);
}

/* A socket QEMU listens on (the guest agent's port, the monitor), bound
 * through the directory's fd (its path may be longer than an address
 * holds).  */
static int sock_listen(rt_sandbox_t *sb, int dirfd, const char *name, sbx_error_t *err)
{
    (void)unlinkat(dirfd, name, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/%s", dirfd, name);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "listen on %s/%s", sb->dir, name);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static char *kernel_cmdline(rt_sandbox_t *sb)
{
    /* Fast boot: no PCI bus to scan, no keyboard controller to probe, a
     * known TSC rate, quiet console; the agent is /init.  tsc=reliable:
     * an emulated TSC fails the kernel's watchdog, and the jiffies clock
     * it falls back to ticks 250 times a second even when idle.  */
    return xasprintf(
        "console=ttyS0 quiet loglevel=1 panic=-1 pci=off i8042.noaux i8042.nomux "
        "i8042.nopnp i8042.dumbkbd nomodeset tsc_early_khz=%lu tsc=reliable rdinit=/init "
        "sbx.hostname=%s",
        tsc_khz(), sb->id);
}

/* The guest card's MAC until the guest takes its link's: locally
 * administered, from the id.  */
static char *guest_mac(const rt_sandbox_t *sb)
{
    uint32_t h = 2166136261u;
    for (const char *p = sb->id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return xasprintf("52:54:00:%02x:%02x:%02x", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
}

/* QEMU's argv; its files are fds 3..9 (9: the tap), and 10 the snapshot
 * to restore when `restore` (see vm_boot).  */
static char **qemu_argv(rt_sandbox_t *sb, bool restore)
{
    bool kvm = strcmp(probe.accel, "kvm") == 0;
    unsigned smp = sb->cpu > 1 ? (unsigned)(sb->cpu + 0.999) : 1;
    uint64_t mem = sb->memory_mib < MV_MIN_MEMORY_MIB ? MV_MIN_MEMORY_MIB : sb->memory_mib;
    const char *const fixed[] = {
        "-M", "microvm", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        /* QEMU's own seccomp filter: no new processes, no privileges.  */
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-kernel", "/dev/fd/4", "-initrd", "/dev/fd/5", "-drive",
        "id=root,file=/dev/fd/6,format=raw,if=none,readonly=on", "-device",
        "virtio-blk-device,drive=root,serial=sbxroot", "-drive",
        "id=disk,file=/dev/fd/7,format=raw,if=none,cache=unsafe", "-device",
        "virtio-blk-device,drive=disk,serial=sbxdisk", "-device", "virtio-serial-device",
        "-chardev", "socket,id=agent,fd=3,server=on,wait=off", "-device",
        "virtserialport,chardev=agent,name=sbx.agent", "-chardev",
        "socket,id=qmp,fd=8,server=on,wait=off", "-mon", "chardev=qmp,mode=control",
        /* Always there (microvm has no hot-plug), its modules loaded by the
         * guest only once it has a link: no cost to a boot without one.  */
        "-netdev", "tap,id=net0,fd=9,vhost=off"};
    char **v = xcalloc(ARRAY_SIZE(fixed) + 24, sizeof *v);
    size_t k = 0;
    v[k++] = xstrdup(probe.qemu);
    for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
        v[k++] = xstrdup(fixed[i]);
    v[k++] = xstrdup("-accel");
    v[k++] = xstrdup(kvm ? "kvm" : "tcg,tb-size=64");
    v[k++] = xstrdup("-cpu");
    v[k++] = xstrdup(kvm ? "host" : "max");
    v[k++] = xstrdup("-m");
    v[k++] = xasprintf("%llu", (unsigned long long)mem);
    v[k++] = xstrdup("-smp");
    v[k++] = xasprintf("%u", smp);
    v[k++] = xstrdup("-device");
    _cleanup_free_ char *mac = guest_mac(sb);
    v[k++] = xasprintf("virtio-net-device,netdev=net0,mac=%s", mac);
    v[k++] = xstrdup("-append");
    v[k++] = kernel_cmdline(sb);
    /* For an operator chasing a guest that does not boot: its console.  */
    const char *con = getenv("SANDBOXD_MICROVM_CONSOLE_DIR");
    v[k++] = xstrdup("-serial");
    v[k++] = con && con[0] == '/' ? xasprintf("file:%s/%s.log", con, sb->id) : xstrdup("null");
    if (restore) {
        v[k++] = xstrdup("-incoming");
        v[k++] = xstrdup("fd:10");
    }
    return v;
}

static void vm_forget(rt_sandbox_t *sb)
{
    if (sb->init_pidfd >= 0)
        close(sb->init_pidfd);
    sb->init_pidfd = -1;
    sb->init_pid = 0;
    sb->init_start = 0;
    const char *const socks[] = {MV_AGENT_SOCK, MV_QMP_SOCK};
    for (size_t i = 0; i < ARRAY_SIZE(socks); i++) {
        _cleanup_free_ char *sock = xasprintf("%s/%s", sb->dir, socks[i]);
        (void)unlink(sock);
    }
}

/* The guest's dirty pages to its disk, before QEMU is killed: what the
 * sandbox wrote is there after a stop and start.  Bounded: a guest that
 * does not answer is killed all the same.  */
static void guest_sync(rt_sandbox_t *sb)
{
    struct pollfd p = {.fd = sb->init_pidfd, .events = POLLIN};
    _cleanup_close_ int dirfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (sb->init_pidfd < 0 || poll(&p, 1, 0) != 0 || dirfd < 0)
        return;
    json_t *req = json_pack("{s:s}", "op", "sync"), *reply = NULL;
    if (mv_agent_call(dirfd, req, 4096, sbx_monotonic_ms() + MV_SYNC_TIMEOUT_MS, &reply, NULL) == 0)
        json_decref(reply);
    json_decref(req);
}

static int vm_kill(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (sb->init_pidfd >= 0) {
        (void)syscall(SYS_pidfd_send_signal, sb->init_pidfd, SIGKILL, NULL, 0);
        if (sb->init_is_child) {
            siginfo_t si;
            (void)waitid(P_PIDFD, (id_t)sb->init_pidfd, &si, WEXITED);
        }
    }
    if (rt_cg_kill(&rt->cg, sb->id, NULL, MV_KILL_TIMEOUT_MS, err) < 0)
        return -1;
    vm_forget(sb);
    return 0;
}

static int mv_stop(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt_cg_freeze(&rt->cg, sb->id, false, NULL);
    guest_sync(sb);
    return vm_kill(rt, sb, err);
}

/* Until the guest agent answers its health request, or QEMU exits.  */
static int wait_agent(rt_sandbox_t *sb, int dirfd, int64_t deadline, sbx_error_t *err)
{
    for (;;) {
        json_t *req = json_pack("{s:s}", "op", "health"), *reply = NULL;
        sbx_error_t cerr = {0};
        int64_t step = sbx_monotonic_ms() + 2000;
        int r = mv_agent_call(dirfd, req, 4096, step < deadline ? step : deadline, &reply, &cerr);
        json_decref(req);
        bool ok = r == 0 && json_is_true(json_object_get(reply, "ok"));
        json_decref(reply);
        if (ok)
            return 0;
        struct pollfd p = {.fd = sb->init_pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0)
            return sbx_error_set(err, SBX_ERR_INTERNAL, "microvm: QEMU exited while the VM booted");
        if (sbx_monotonic_ms() >= deadline)
            return sbx_error_set(err, SBX_ERR_TIMEOUT,
                                 "microvm: the guest agent did not answer within %d s of boot",
                                 (strcmp(probe.accel, "kvm") == 0 ? MV_BOOT_TIMEOUT_KVM_MS
                                                                  : MV_BOOT_TIMEOUT_TCG_MS) /
                                     1000);
        if (r < 0 && cerr.code == SBX_ERR_CONFLICT)
            usleep(50 * 1000); /* not connected yet */
    }
}

/* After an incoming migration the VM waits, paused as it was saved:
 * continue it once the state is in.  */
static int restore_finish(rt_sandbox_t *sb, int dirfd, int64_t deadline, sbx_error_t *err)
{
    mv_qmp_t *q = NULL;
    while (!q) {
        sbx_error_t qerr = {0};
        q = mv_qmp_open(dirfd, deadline, &qerr);
        struct pollfd p = {.fd = sb->init_pidfd, .events = POLLIN};
        if (!q && (poll(&p, 1, 0) > 0 || sbx_monotonic_ms() >= deadline))
            return sbx_error_set(err, SBX_ERR_INTERNAL, "microvm: restore: %s", qerr.msg);
        if (!q)
            usleep(20 * 1000);
    }
    char status[64] = "inmigrate";
    int ret = 0;
    while (ret == 0 && strcmp(status, "inmigrate") == 0) {
        ret = mv_qmp_query(q, "query-status", "status", status, sizeof status, deadline, err);
        if (ret == 0 && strcmp(status, "inmigrate") == 0)
            usleep(20 * 1000);
    }
    json_t *r = NULL;
    if (ret == 0 && strcmp(status, "running") != 0 &&
        !(r = mv_qmp_cmd(q, "cont", NULL, -1, deadline, err)))
        ret = -1;
    json_decref(r);
    mv_qmp_close(q);
    return ret;
}

/* Start QEMU: a fresh boot, or (restore_fd >= 0) a VM restored from a
 * snapshot.  Returns once the guest agent answers.  */
static int vm_boot(rt_runtime_t *rt, rt_sandbox_t *sb, int restore_fd, sbx_error_t *err)
{
    probe_once(rt);
    if (!probe.ok)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "microvm: %s", probe.why);
    _cleanup_free_ char *image = NULL;
    if (microvm_dir_prepare(rt, err) < 0 || limits_apply(rt, sb, err) < 0 ||
        image_prepare(rt, sb, &image, err) < 0 || disk_prepare(sb, err) < 0)
        return -1;
    _cleanup_close_ int dirfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", sb->dir);
    _cleanup_free_ char *kernel = xasprintf("%s/vmlinuz", probe.kernel_dir);
    _cleanup_free_ char *initrd = xasprintf("%s/microvm/initrd.cpio", rt->state_dir);
    _cleanup_free_ char *disk = xasprintf("%s/disk.ext4", sb->dir);
    _cleanup_close_ int sock = sock_listen(sb, dirfd, MV_AGENT_SOCK, err);
    _cleanup_close_ int qmp = sock < 0 ? -1 : sock_listen(sb, dirfd, MV_QMP_SOCK, err);
    _cleanup_close_ int kfd = open(kernel, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int ifd = open(initrd, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int rfd = open(image, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int dfd = open(disk, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (sock < 0 || qmp < 0)
        return -1;
    if (kfd < 0 || ifd < 0 || rfd < 0 || dfd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "microvm: open the VM's files");
    _cleanup_close_ int nsfd = -1;
    _cleanup_close_ int tapfd = -1;
    if (mv_net_prepare(sb, &nsfd, &tapfd, err) < 0)
        return -1;
    char **argv = qemu_argv(sb, restore_fd >= 0);
    const int fds[] = {-1, -1, -1, sock, kfd, ifd, rfd, dfd, qmp, tapfd, restore_fd};
    int pidfd = -1;
    int nfds = (int)ARRAY_SIZE(fds) - (restore_fd < 0);
    pid_t pid = spawn(rt, argv, fds, nfds, sb->id, sb->host_uid, nsfd, &pidfd, err);
    rt_strv_free(argv);
    if (pid < 0)
        return -1;
    sb->init_pid = pid;
    sb->init_pidfd = pidfd;
    sb->init_start = rt_pid_start_time(pid);
    sb->init_is_child = true;
    int64_t boot =
        strcmp(probe.accel, "kvm") == 0 ? MV_BOOT_TIMEOUT_KVM_MS : MV_BOOT_TIMEOUT_TCG_MS;
    int64_t deadline = sbx_monotonic_ms() + boot;
    if ((restore_fd >= 0 && restore_finish(sb, dirfd, deadline, err) < 0) ||
        wait_agent(sb, dirfd, deadline, err) < 0) {
        sbx_error_t serr = {0};
        (void)vm_kill(rt, sb, &serr);
        return -1;
    }
    mv_net_boot(rt, sb, restore_fd < 0);
    return 0;
}

static int mv_destroy(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt_cg_freeze(&rt->cg, sb->id, false, NULL);
    if (vm_kill(rt, sb, err) < 0 || rt_cg_destroy(&rt->cg, sb->id, err) < 0)
        return -1;
    mv_net_remove(sb);
    return sbx_rm_rf(sb->dir, err);
}

static int mv_start(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    return vm_boot(rt, sb, -1, err);
}

/* Pause the VM and migrate its memory and device state into fd.  */
static int snapshot_write(rt_sandbox_t *sb, int dirfd, int fd, sbx_error_t *err)
{
    int64_t deadline = sbx_monotonic_ms() + MV_SNAPSHOT_TIMEOUT_MS;
    mv_qmp_t *q = mv_qmp_open(dirfd, deadline, err);
    if (!q)
        return -1;
    json_t *r = mv_qmp_cmd(q, "stop", NULL, -1, deadline, err);
    int ret = r ? 0 : -1;
    json_decref(r);
    if (ret == 0) {
        r = mv_qmp_cmd(q, "getfd", json_pack("{s:s}", "fdname", "snapshot"), fd, deadline, err);
        ret = r ? 0 : -1;
        json_decref(r);
    }
    if (ret == 0) {
        r = mv_qmp_cmd(q, "migrate", json_pack("{s:s}", "uri", "fd:snapshot"), -1, deadline, err);
        ret = r ? 0 : -1;
        json_decref(r);
    }
    char status[64] = "active";
    while (ret == 0 && strcmp(status, "completed") != 0) {
        ret = mv_qmp_query(q, "query-migrate", "status", status, sizeof status, deadline, err);
        if (ret == 0 && (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0))
            ret = sbx_error_set(err, SBX_ERR_INTERNAL, "microvm: the snapshot of %s %s", sb->id,
                                status);
        else if (ret == 0 && strcmp(status, "completed") != 0)
            usleep(20 * 1000);
    }
    if (ret < 0) /* the VM runs on as it was */
        json_decref(mv_qmp_cmd(q, "cont", NULL, -1, sbx_monotonic_ms() + 5000, NULL));
    mv_qmp_close(q);
    return ret;
}

/* Memory to a file: the VM's state goes to <dir>/snapshot.mem and QEMU
 * ends, so a suspended sandbox holds no RAM.  Where that fails, the
 * freezer holds the VM instead.  */
static int mv_suspend(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_close_ int dirfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    _cleanup_free_ char *path = xasprintf("%s/" MV_SNAPSHOT, sb->dir);
    _cleanup_close_ int fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    sbx_error_t serr = {0};
    if (dirfd >= 0 && fd >= 0 && snapshot_write(sb, dirfd, fd, &serr) == 0 && fsync(fd) == 0) {
        sbx_error_t kerr = {0};
        if (vm_kill(rt, sb, &kerr) < 0)
            sbx_log(SBX_LOG_WARN, "runtime", "sandbox %s: %s", sb->id, kerr.msg);
        return 0;
    }
    sbx_log(SBX_LOG_WARN, "runtime", "sandbox %s: %s; suspending with the freezer instead", sb->id,
            serr.msg[0] ? serr.msg : "cannot write the snapshot");
    (void)unlink(path);
    return rt_cg_freeze(&rt->cg, sb->id, true, err);
}

static int mv_resume(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/" MV_SNAPSHOT, sb->dir);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        /* frozen, not snapshotted: its link may have changed meanwhile */
        if (rt_cg_freeze(&rt->cg, sb->id, false, err) < 0)
            return -1;
        mv_net_boot(rt, sb, false);
        return 0;
    }
    if (vm_boot(rt, sb, fd, err) < 0)
        return -1;
    (void)unlink(path);
    return 0;
}

static bool has_snapshot(rt_sandbox_t *sb)
{
    _cleanup_free_ char *path = xasprintf("%s/" MV_SNAPSHOT, sb->dir);
    return access(path, F_OK) == 0;
}

static bool vm_alive(rt_sandbox_t *sb)
{
    if (sb->init_pidfd < 0 && sb->init_pid > 0) {
        /* Left by an earlier agent: the same process, not a recycled pid.  */
        int fd = sys_pidfd_open(sb->init_pid);
        if (fd >= 0 && sb->init_start && rt_pid_start_time(sb->init_pid) == sb->init_start) {
            sb->init_pidfd = fd;
            sb->init_is_child = false;
        } else if (fd >= 0) {
            close(fd);
        }
    }
    struct pollfd p = {.fd = sb->init_pidfd, .events = POLLIN};
    return sb->init_pidfd >= 0 && poll(&p, 1, 0) == 0;
}

static int mv_list(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (sb->state != RT_STATE_RUNNING && sb->state != RT_STATE_SUSPENDED)
        return 0;
    if (sb->state == RT_STATE_SUSPENDED && sb->init_pidfd < 0 && sb->init_pid == 0 &&
        has_snapshot(sb))
        return 0;
    if (vm_alive(sb)) {
        sb->state = rt_cg_is_frozen(&rt->cg, sb->id) ? RT_STATE_SUSPENDED : RT_STATE_RUNNING;
        return 0;
    }
    /* QEMU was killed, crashed or the guest powered off: the disk stays.  */
    if (vm_kill(rt, sb, err) < 0)
        return -1;
    sb->state = RT_STATE_FAILED;
    snprintf(sb->message, sizeof sb->message, "the microVM's QEMU process exited");
    return 0;
}

static int mv_root_fd(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt;
    return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                         "sandbox %s: a microVM's root is reached through its guest agent", sb->id);
}

static void mv_usage(rt_runtime_t *rt, rt_sandbox_t *sb, uint64_t *memory_bytes, uint64_t *cpu_us)
{
    rt_cg_usage(&rt->cg, sb->id, memory_bytes, cpu_us);
}

const rt_driver_ops_t rt_microvm_ops = {
    .name = "microvm",
    .usable = mv_usable,
    .create = mv_create,
    .start = mv_start,
    .exec = mv_exec,
    .suspend = mv_suspend,
    .resume = mv_resume,
    .stop = mv_stop,
    .destroy = mv_destroy,
    .list = mv_list,
    .root_fd = mv_root_fd,
    .usage = mv_usage,
    .files = &mv_files,
    .netns_open = mv_netns_open,
    .net_changed = mv_net_changed,
};
