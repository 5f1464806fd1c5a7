/* gvisor.c -- the "gvisor" driver: each sandbox runs behind gVisor's
 * user-space kernel (runsc), on the same root as the process driver (the
 * shared image id-mapped read-only under a writable tmpfs layer, see
 * process.c), in the sandbox's own cgroups.
 *
 * runsc runs with --ignore-cgroups: the runtime's cgroups (limits, kill,
 * freezer, usage) hold the sandbox's processes (sentry, gofer, ptrace
 * stubs) because runsc itself is started inside them.  The OCI spec maps
 * the sandbox's host uid range to 0..65535 inside, so files the files API
 * writes (as the sandbox's root uid) are root's inside, as with `process`.
 * The sandbox's pid 1 is a small static program of ours (gvisor_pause.c)
 * bound read-only from the state directory.  An exec is `runsc exec` with
 * the command, environment and cwd in a root-only process.json; the
 * command runs inside the sentry and holds only its three pipes.
 * Suspend is `runsc checkpoint` (memory to a file, the sandbox's processes
 * gone) and resume `runsc restore`; where checkpointing fails, the freezer.
 * The sandbox boots with --network=sandbox in a network namespace of its
 * own (gvisor_net.c): runsc copies what it finds there (loopback, and the
 * egress link the runtime's net hook puts in first) into gVisor's own
 * network stack at start and at restore, and never looks again.
 *
 * Under <state_dir>/gvisor: state/ (runsc --root) and pause (pid 1).
 * Under a sandbox's directory, beside process.c's layer/ lower/ rootfs/:
 * bundle/config.json, netns (the bound namespace) from start to stop,
 * checkpoint/ while suspended to a file, and each exec's process.json and
 * pid file while it runs.  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/driver.h"

extern const unsigned char rt_gvisor_pause_blob[], rt_gvisor_pause_blob_end[];

#define GV_CMD_TIMEOUT_MS 30000
#define GV_PROBE_TIMEOUT_MS 10000
#define GV_SNAPSHOT_TIMEOUT_MS 120000
#define GV_KILL_TIMEOUT_MS 5000
#define GV_ERR_MAX 4096
/* After runsc exec exits, the sentry may still be closing the command's
 * pipes: output is read this much longer.  */
#define GV_GRACE_AFTER_EXIT_MS 500
#define GV_PAUSE_PATH "/.sandboxd-pause"
/* The gofer runs as the sandbox's host uid, so what it opens must be
 * reachable by that uid: not under the state dir (root only), but here,
 * each sandbox's root behind a directory only its gid may search.  */
#define GV_RUN_DIR "/run/sandboxd-gvisor"
#define GV_PROC_DIR GV_RUN_DIR "/proc"

/* ---- finding runsc and a platform that works ----------------------------- */

static struct {
    pthread_mutex_t mu;
    bool done, ok;
    char runsc[256];
    const char *platform;
    char why[192];
} probe = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int sys_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static bool find_runsc(char *out, size_t len)
{
    const char *env = getenv("SANDBOXD_RUNSC");
    if (env && env[0] == '/') {
        snprintf(out, len, "%s", env);
        return access(out, X_OK) == 0;
    }
    const char *const dirs[] = {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                "/usr/bin",        "/sbin",          "/bin"};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        snprintf(out, len, "%s/runsc", dirs[i]);
        if (access(out, X_OK) == 0)
            return true;
    }
    return false;
}

/* runsc before mid-2023 takes any namespace where
 * /proc/sys/net/core/rmem_default exists for the host's own and refuses to
 * copy its interfaces ("cannot run with network enabled in root network
 * namespace"); recent kernels (6.18 here) have that file in every
 * namespace.  An empty /proc/sys/net in a mount namespace of runsc's own
 * makes the check pass (the directory is the same for every network
 * namespace, unlike the entries below it); runsc reads nothing else there
 * with gVisor's own network stack.  That /proc is no longer fully visible,
 * and the kernel lets a process in a user namespace (the sandbox's, which
 * runsc restore starts from here) mount a new proc only where some proc
 * mount is: hence a whole one at GV_PROC_DIR, seen by nobody else.  Only
 * system calls: runs after fork.  */
static int proc_sys_net_hide(void)
{
    const unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("proc", GV_PROC_DIR, "proc", flags, NULL) < 0)
        return -1;
    return mount("none", "/proc/sys/net", "tmpfs", flags | MS_RDONLY, "size=4k,mode=0555");
}

/* Spawn argv with stdio on in/out/errfd (-1: /dev/null); with cg_id, the
 * child joins that sandbox's cgroups before it execs, so all runsc starts
 * (sentry, gofer) is counted and killed with the sandbox; with net, runsc
 * runs with /proc/sys/net hidden (proc_sys_net_hide).  */
static pid_t spawn(rt_runtime_t *rt, char *const *argv, int in, int out, int errfd,
                   const char *cg_id, bool net, int *pidfd, sbx_error_t *err)
{
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          NULL};
    pid_t pid = fork();
    if (pid == 0) {
        /* Only system calls from here: the agent has other threads.  */
        int src[4] = {in >= 0 ? in : null_fd, out >= 0 ? out : null_fd,
                      errfd >= 0 ? errfd : null_fd, gate[0]};
        int hi = 10;
        for (int i = 0; i < 4; i++)
            if (src[i] >= hi)
                hi = src[i] + 1;
        for (int i = 0; i < 4; i++) /* above every source first, then down */
            if (src[i] < 0 || (src[i] = fcntl(src[i], F_DUPFD, hi + i)) < 0)
                _exit(127);
        for (int i = 0; i < 4; i++)
            if (dup2(src[i], i) < 0)
                _exit(127);
        if (syscall(SYS_close_range, 4, ~0U, 0) < 0 || (net && proc_sys_net_hide() < 0))
            _exit(127);
        char c;
        if (read(3, &c, 1) != 1)
            _exit(127);
        close(3);
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
        ret = sbx_error_errno(err, SBX_ERR_INTERNAL, "start runsc");
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

/* Wait for a child until deadline (monotonic ms, 0: none), killing it
 * then; *status gets its wait status.  false when it had to be killed.  */
static bool reap_by(pid_t pid, int pidfd, int64_t deadline, int *status)
{
    bool in_time = true;
    for (;;) {
        int64_t left = deadline ? deadline - sbx_monotonic_ms() : 1000;
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

/* The last non-empty line of a command's error output.  */
static void last_line(char *buf, size_t n, char *out, size_t len)
{
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = 0;
    char *nl = strrchr(buf, '\n');
    snprintf(out, len, "%s", nl ? nl + 1 : buf);
}

static void err_read(int fd, char *buf, size_t *n, size_t cap)
{
    char tmp[1024];
    ssize_t r;
    while ((r = read(fd, tmp, sizeof tmp)) > 0) {
        size_t take = (size_t)r < cap - 1 - *n ? (size_t)r : cap - 1 - *n;
        memcpy(buf + *n, tmp, take);
        *n += take;
    }
}

/* Run argv to its end (deadline timeout_ms), its error output kept.  Not
 * until the pipe's end: runsc create hands its stdio to the sandbox's pid
 * 1, which keeps them open.  */
static int run_argv(rt_runtime_t *rt, char *const *argv, const char *cg_id, bool net,
                    int timeout_ms, const char *what, sbx_error_t *err)
{
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
    int pidfd = -1;
    pid_t pid = spawn(rt, argv, -1, -1, ep[1], cg_id, net, &pidfd, err);
    close(ep[1]);
    if (pid < 0) {
        close(ep[0]);
        return -1;
    }
    (void)fcntl(ep[0], F_SETFL, O_NONBLOCK);
    char buf[GV_ERR_MAX];
    size_t n = 0;
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    bool open_ = true;
    for (;;) {
        int64_t left = deadline - sbx_monotonic_ms();
        struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = ep[0], .events = POLLIN}};
        if (left <= 0 || poll(p, open_ ? 2 : 1, (int)left) <= 0)
            break;
        if (open_ && p[1].revents) {
            err_read(ep[0], buf, &n, sizeof buf);
            if (p[1].revents & (POLLHUP | POLLERR))
                open_ = false;
        }
        if (p[0].revents)
            break;
    }
    err_read(ep[0], buf, &n, sizeof buf);
    close(ep[0]);
    int status = 0;
    bool in_time = reap_by(pid, pidfd, deadline, &status);
    if (in_time && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    char line[512];
    last_line(buf, n, line, sizeof line);
    if (!in_time)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: runsc did not finish within %d ms", what,
                             timeout_ms);
    return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: %s", what, line[0] ? line : "runsc failed");
}

static void probe_once(void);

/* argv of `runsc <global flags> <args...>` (NULL-terminated args); free
 * the result with rt_strv_free.  net: the sandbox's network namespace
 * (--network=sandbox), for the commands that boot it (create, start,
 * restore); the others do not look at the network.  The probe runs first:
 * a restarted agent may stop or exec into an adopted sandbox before
 * anything asked for its health.  */
static char **runsc_argv(rt_runtime_t *rt, bool net, const char *const *args)
{
    probe_once();
    size_t n = 0;
    while (args[n])
        n++;
    char **v = xcalloc(n + 16, sizeof *v);
    size_t k = 0;
    v[k++] = xstrdup(probe.runsc[0] ? probe.runsc : "/nonexistent/runsc");
    v[k++] = xasprintf("--root=%s/gvisor/state", rt->state_dir);
    /* Without a working platform the command fails, as it should.  */
    v[k++] = xasprintf("--platform=%s", probe.platform ? probe.platform : "ptrace");
    v[k++] = xstrdup(net ? "--network=sandbox" : "--network=none");
    v[k++] = xstrdup("--ignore-cgroups");
    /* The files API writes the root from the host: the sentry must not
     * trust its cache of it.  */
    v[k++] = xstrdup("--file-access=shared");
    v[k++] = xstrdup("--overlay2=none");
    /* For the operator chasing a failure: runsc's own debug logs.  */
    const char *dbg = getenv("SANDBOXD_RUNSC_DEBUG_LOG");
    if (dbg && dbg[0] == '/') {
        v[k++] = xstrdup("--debug");
        v[k++] = xasprintf("--debug-log=%s/", dbg);
    }
    for (size_t i = 0; i < n; i++)
        v[k++] = xstrdup(args[i]);
    return v;
}

static int runsc(rt_runtime_t *rt, const char *cg_id, bool net, int timeout_ms, const char *what,
                 sbx_error_t *err, const char *const *args)
{
    char **argv = runsc_argv(rt, net, args);
    int ret = run_argv(rt, argv, cg_id, net, timeout_ms, what, err);
    rt_strv_free(argv);
    return ret;
}

/* Try a platform: a sandbox that runs /bin/true on the host's root.  */
static bool platform_works(const char *platform, char *why, size_t len)
{
    char root[] = "/tmp/sandboxd-runsc-probe-XXXXXX";
    if (!mkdtemp(root)) {
        snprintf(why, len, "mkdtemp: %s", strerror(errno));
        return false;
    }
    _cleanup_free_ char *root_flag = xasprintf("--root=%s", root);
    _cleanup_free_ char *plat_flag = xasprintf("--platform=%s", platform);
    char *argv[] = {probe.runsc,        root_flag, plat_flag,   "--network=none",
                    "--ignore-cgroups", "do",      "/bin/true", NULL};
    rt_runtime_t none = {0};
    sbx_error_t err = {0};
    bool ok = run_argv(&none, argv, NULL, false, GV_PROBE_TIMEOUT_MS, platform, &err) == 0;
    if (!ok)
        snprintf(why, len, "%s", err.msg);
    sbx_rm_rf(root, NULL);
    return ok;
}

/* Once per process: runsc present, and the first platform that runs a
 * sandbox (kvm only where /dev/kvm opens; systrap where this runsc has
 * it; ptrace everywhere else).  */
static void probe_once(void)
{
    pthread_mutex_lock(&probe.mu);
    if (probe.done) {
        pthread_mutex_unlock(&probe.mu);
        return;
    }
    if (geteuid() != 0) {
        snprintf(probe.why, sizeof probe.why, "the agent does not run as root");
    } else if (!find_runsc(probe.runsc, sizeof probe.runsc)) {
        snprintf(probe.why, sizeof probe.why,
                 "runsc not found (install the Debian package runsc, or set SANDBOXD_RUNSC)");
    } else {
        const char *const platforms[] = {"kvm", "systrap", "ptrace"};
        char tried[192] = "";
        for (size_t i = 0; i < ARRAY_SIZE(platforms) && !probe.ok; i++) {
            if (strcmp(platforms[i], "kvm") == 0 && access("/dev/kvm", R_OK | W_OK) != 0)
                continue;
            char why[160];
            if (platform_works(platforms[i], why, sizeof why)) {
                probe.ok = true;
                probe.platform = platforms[i];
            } else {
                size_t l = strlen(tried);
                snprintf(tried + l, sizeof tried - l, "%s%s", l ? "; " : "", why);
            }
        }
        if (!probe.ok)
            snprintf(probe.why, sizeof probe.why, "runsc runs no sandbox here: %s", tried);
        else
            sbx_log(SBX_LOG_INFO, "runtime", "gvisor: %s, platform %s", probe.runsc,
                    probe.platform);
    }
    probe.done = true;
    pthread_mutex_unlock(&probe.mu);
}

static bool gv_usable(rt_runtime_t *rt, char *why, size_t len)
{
    (void)rt;
    probe_once();
    if (!probe.ok)
        snprintf(why, len, "%s", probe.why);
    return probe.ok;
}

/* ---- files the sandbox needs ---------------------------------------------- */

static int mkdir_mode(const char *path, mode_t mode, gid_t gid, sbx_error_t *err)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", path);
    if (chown(path, 0, gid) < 0 || chmod(path, mode) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "chmod %s", path);
    return 0;
}

/* <state_dir>/gvisor/state (runsc's), GV_RUN_DIR/pause (rewritten when it
 * differs) and GV_RUN_DIR/<cgroup parent>/.  */
static int gvisor_dir_prepare(rt_runtime_t *rt, sbx_error_t *err)
{
    _cleanup_free_ char *dir = xasprintf("%s/gvisor", rt->state_dir);
    _cleanup_free_ char *state = xasprintf("%s/state", dir);
    _cleanup_free_ char *mine = xasprintf(GV_RUN_DIR "/%s", rt->cg_parent);
    if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || (mkdir(state, 0700) < 0 && errno != EEXIST))
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", state);
    if (mkdir_mode(GV_RUN_DIR, 0711, 0, err) < 0 || mkdir_mode(mine, 0711, 0, err) < 0 ||
        mkdir_mode(GV_PROC_DIR, 0700, 0, err) < 0)
        return -1;
    const char *pause = GV_RUN_DIR "/pause";
    size_t len = (size_t)(rt_gvisor_pause_blob_end - rt_gvisor_pause_blob);
    _cleanup_free_ char *have = NULL;
    size_t have_len = 0;
    if (sbx_read_file(pause, &have, &have_len, NULL) == 0 && have_len == len &&
        memcmp(have, rt_gvisor_pause_blob, len) == 0)
        return 0;
    _cleanup_free_ char *tmp = xasprintf("%s.%d", pause, (int)getpid());
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0555);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "create %s", tmp);
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, rt_gvisor_pause_blob + done, len - done);
        if (w <= 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "write %s", tmp);
        done += (size_t)w;
    }
    if (fchmod(fd, 0555) < 0 || rename(tmp, pause) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "install %s", pause);
    return 0;
}

/* GV_RUN_DIR/<cgroup parent>/<id>/root: the sandbox's root bound where
 * its gofer can reach it.  */
static char *run_root(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    return xasprintf(GV_RUN_DIR "/%s/%s/root", rt->cg_parent, sb->id);
}

static bool is_mount_root(const char *path)
{
    struct statx stx;
    if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) < 0)
        return false;
    return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
           (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static int run_root_bind(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *root = run_root(rt, sb);
    _cleanup_free_ char *dir = xstrdup(root);
    *strrchr(dir, '/') = 0;
    if (mkdir_mode(dir, 0710, sb->host_uid, err) < 0)
        return -1;
    /* Mounted already, chmod would change the sandbox's own root.  */
    if (is_mount_root(root))
        return 0;
    if (mkdir(root, 0700) < 0 && errno != EEXIST)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", root);
    _cleanup_free_ char *src = xasprintf("%s/rootfs", sb->dir);
    if (mount(src, root, NULL, MS_BIND, NULL) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "bind %s", root);
    return 0;
}

static void run_root_remove(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    _cleanup_free_ char *root = run_root(rt, sb);
    while (is_mount_root(root))
        if (umount2(root, 0) < 0 && umount2(root, MNT_DETACH) < 0)
            break;
    /* root, <id>, and <cgroup parent> once no sandbox is left in it.  */
    for (int i = 0; i < 3; i++) {
        (void)rmdir(root);
        *strrchr(root, '/') = 0;
    }
}

static json_t *id_map(uid_t host)
{
    return json_pack("[{s:i,s:I,s:i}]", "containerID", 0, "hostID", (json_int_t)host, "size",
                     (int)RT_UID_RANGE);
}

/* bundle/config.json: pid 1 is the pause program, the root the overlay,
 * ids mapped as for the process driver, no capabilities, the network
 * namespace the driver made.  */
static int bundle_write(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *bundle = xasprintf("%s/bundle", sb->dir);
    if (mkdir(bundle, 0700) < 0 && errno != EEXIST)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", bundle);
    _cleanup_free_ char *root = run_root(rt, sb);
    const char *pause = GV_RUN_DIR "/pause";
    _cleanup_free_ char *hostname = xstrdup(sb->id);
    /* runsc puts a tmpfs of its own on /tmp unless the spec mounts it:
     * then the files API would not see the sandbox's /tmp.  */
    _cleanup_free_ char *tmp = xasprintf("%s/tmp", root);
    _cleanup_free_ char *netns = xasprintf("%s/netns", sb->dir);
    json_t *spec = json_pack(
        "{s:s,s:{s:[s],s:s,s:[s],s:{s:i,s:i},s:b},s:{s:s,s:b},s:s,"
        "s:[{s:s,s:s,s:s},{s:s,s:s,s:s,s:[s,s,s,s]},{s:s,s:s,s:s,s:[s,s,s]}],"
        "s:{s:o,s:o,s:[{s:s},{s:s,s:s},{s:s},{s:s},{s:s},{s:s}]}}",
        "ociVersion", "1.0.2", "process", "args", GV_PAUSE_PATH, "cwd", "/", "env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "user", "uid", 0,
        "gid", 0, "noNewPrivileges", 1, "root", "path", root, "readonly", 0, "hostname", hostname,
        "mounts", "destination", "/proc", "type", "proc", "source", "proc", "destination",
        GV_PAUSE_PATH, "type", "bind", "source", pause, "options", "rbind", "ro", "nosuid", "nodev",
        "destination", "/tmp", "type", "bind", "source", tmp, "options", "rbind", "nosuid", "nodev",
        "linux", "uidMappings", id_map(sb->host_uid), "gidMappings", id_map(sb->host_uid),
        "namespaces", "type", "pid", "type", "network", "path", netns, "type", "ipc", "type", "uts",
        "type", "mount", "type", "user");
    if (!spec)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "cannot encode the gVisor spec");
    _cleanup_free_ char *path = xasprintf("%s/config.json", bundle);
    int r = json_dump_file(spec, path, JSON_COMPACT);
    json_decref(spec);
    if (r < 0)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "write %s", path);
    return 0;
}

/* A process in a new user namespace with the sandbox's id maps, for the
 * id-mapped image mount; the caller kills it once the root is mounted.  */
static pid_t userns_holder(uid_t base, sbx_error_t *err)
{
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    if (pid < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "clone user namespace");
    char map[64];
    snprintf(map, sizeof map, "0 %u %u\n", (unsigned)base, RT_UID_RANGE);
    const char *const files[] = {"uid_map", "gid_map"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, files[i]);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, map, strlen(map)) != (ssize_t)strlen(map)) {
            sbx_error_errno(err, SBX_ERR_INTERNAL, "write %s", path);
            kill(pid, SIGKILL);
            (void)waitpid(pid, NULL, 0);
            return -1;
        }
    }
    return pid;
}

static int root_mount(rt_sandbox_t *sb, sbx_error_t *err)
{
    pid_t holder = userns_holder(sb->host_uid, err);
    if (holder < 0)
        return -1;
    int ret = rt_root_prepare(sb, holder, err);
    kill(holder, SIGKILL);
    (void)waitpid(holder, NULL, 0);
    return ret;
}

/* ---- lifecycle -------------------------------------------------------------- */

static int limits_apply(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    rt_cg_limits_t lim = {
        .cpu = sb->cpu,
        .memory_bytes = sb->memory_mib * 1024 * 1024,
        .pids_max = sb->pids_max,
    };
    return rt_cg_create(&rt->cg, sb->id, &lim, err);
}

static int gv_create(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (gvisor_dir_prepare(rt, err) < 0)
        return -1;
    return rt_process_ops.create(rt, sb, err);
}

static bool file_exists(const char *dir, const char *name)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Hold the sandbox process (runsc's pid file) by a pidfd.  */
static int adopt_pid_file(rt_sandbox_t *sb, const char *file, sbx_error_t *err)
{
    char buf[32] = "";
    _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "read %s", file);
    pid_t pid = (pid_t)strtol(buf, NULL, 10);
    int pidfd = pid > 0 ? sys_pidfd_open(pid) : -1;
    if (pidfd < 0)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "the gVisor sandbox exited at its start");
    if (sb->init_pidfd >= 0)
        close(sb->init_pidfd);
    sb->init_pidfd = pidfd;
    sb->init_pid = pid;
    sb->init_start = rt_pid_start_time(pid);
    sb->init_is_child = false; /* runsc's child, reaped by the host's init */
    unlink(file);
    return 0;
}

/* Forget the sandbox in runsc's state, its processes already gone: its
 * two files go directly (`runsc delete` spends over a second polling a
 * sandbox that is already dead); anything else of it found there, from
 * a runsc that names its files otherwise, goes through runsc delete.  */
static void runsc_forget(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    _cleanup_free_ char *dir = xasprintf("%s/gvisor/state", rt->state_dir);
    const char *const ext[] = {"state", "lock"};
    for (size_t i = 0; i < ARRAY_SIZE(ext); i++) {
        _cleanup_free_ char *f = xasprintf("%s/%s_sandbox:%s.%s", dir, sb->id, sb->id, ext[i]);
        (void)unlink(f);
    }
    _cleanup_free_ char *prefix = xasprintf("%s_", sb->id);
    DIR *d = opendir(dir);
    struct dirent *de;
    bool left = false;
    while (d && !left && (de = readdir(d)))
        left = strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    if (left) {
        sbx_error_t derr = {0};
        const char *const del[] = {"delete", "--force", sb->id, NULL};
        (void)runsc(rt, NULL, false, GV_KILL_TIMEOUT_MS, "runsc delete", &derr, del);
    }
}

/* Kill every process of the sandbox (all are in its cgroups: runsc
 * started there) and forget it in runsc's state.  */
static int gv_stop(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt_cg_freeze(&rt->cg, sb->id, false, NULL);
    if (rt_cg_kill(&rt->cg, sb->id, NULL, GV_KILL_TIMEOUT_MS, err) < 0)
        return -1;
    rt_cg_sweep(&rt->cg, sb->id);
    runsc_forget(rt, sb);
    rt_gv_netns_remove(sb);
    if (sb->init_pidfd >= 0) {
        close(sb->init_pidfd);
        sb->init_pidfd = -1;
    }
    sb->init_pid = 0;
    sb->init_start = 0;
    _cleanup_free_ char *ckpt = xasprintf("%s/checkpoint", sb->dir);
    (void)sbx_rm_rf(ckpt, NULL);
    return 0;
}

static int gv_start(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (!probe.ok)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "gvisor: %s", probe.why);
    if (gvisor_dir_prepare(rt, err) < 0 || limits_apply(rt, sb, err) < 0 ||
        root_mount(sb, err) < 0 || run_root_bind(rt, sb, err) < 0 || bundle_write(rt, sb, err) < 0)
        return -1;
    /* Whatever an earlier run left in runsc's state goes first.  */
    runsc_forget(rt, sb);
    /* The namespace with its link before runsc: it copies them at start.  */
    if (rt_gv_netns_make(sb, err) < 0 || rt_gv_netns_boot(rt, sb, err) < 0) {
        sbx_error_t serr = {0};
        (void)gv_stop(rt, sb, &serr);
        return -1;
    }
    _cleanup_free_ char *bundle = xasprintf("--bundle=%s/bundle", sb->dir);
    _cleanup_free_ char *pidf = xasprintf("%s/sandbox.pid", sb->dir);
    _cleanup_free_ char *pid_flag = xasprintf("--pid-file=%s", pidf);
    const char *const create[] = {"create", bundle, pid_flag, sb->id, NULL};
    const char *const start[] = {"start", sb->id, NULL};
    if (runsc(rt, sb->id, true, GV_CMD_TIMEOUT_MS, "runsc create", err, create) < 0 ||
        adopt_pid_file(sb, pidf, err) < 0 ||
        runsc(rt, NULL, true, GV_CMD_TIMEOUT_MS, "runsc start", err, start) < 0) {
        sbx_error_t serr = {0};
        (void)gv_stop(rt, sb, &serr);
        return -1;
    }
    return 0;
}

static int gv_destroy(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (gv_stop(rt, sb, err) < 0)
        return -1;
    run_root_remove(rt, sb);
    /* The process driver's destroy removes the same root, cgroups and
     * directory; its stop finds nothing left to stop.  */
    return rt_process_ops.destroy(rt, sb, err);
}

/* Memory to a file: the sandbox's processes end and their RAM is freed.
 * Where runsc cannot checkpoint, the freezer holds them instead.  */
static int gv_suspend(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    /* runsc (20221219) refuses to save a TCP connection through a real
     * link (open, or in TIME_WAIT for a minute after it closed), and a
     * refused save ends the whole sandbox: one whose link has carried a
     * packet is held by the freezer.  */
    if (rt_gv_netns_exists(sb) && rt_gv_netns_used(sb)) {
        sbx_log(SBX_LOG_INFO, "runtime",
                "sandbox %s: its network link has been used; suspending with the freezer", sb->id);
        return rt_cg_freeze(&rt->cg, sb->id, true, err);
    }
    _cleanup_free_ char *ckpt = xasprintf("%s/checkpoint", sb->dir);
    _cleanup_free_ char *flag = xasprintf("--image-path=%s", ckpt);
    const char *const args[] = {"checkpoint", flag, sb->id, NULL};
    sbx_error_t cerr = {0};
    if (mkdir(ckpt, 0700) == 0 &&
        runsc(rt, NULL, false, GV_SNAPSHOT_TIMEOUT_MS, "runsc checkpoint", &cerr, args) == 0) {
        /* The sandbox exits after its checkpoint; what is left of it (a
         * gofer on its way out) goes now.  */
        (void)rt_cg_kill(&rt->cg, sb->id, NULL, GV_KILL_TIMEOUT_MS, NULL);
        runsc_forget(rt, sb);
        if (sb->init_pidfd >= 0)
            close(sb->init_pidfd);
        sb->init_pidfd = -1;
        sb->init_pid = 0;
        sb->init_start = 0;
        return 0;
    }
    sbx_log(SBX_LOG_WARN, "runtime", "sandbox %s: %s; suspending with the freezer instead", sb->id,
            cerr.msg[0] ? cerr.msg : "cannot make the checkpoint directory");
    (void)sbx_rm_rf(ckpt, NULL);
    return rt_cg_freeze(&rt->cg, sb->id, true, err);
}

static int gv_resume(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    _cleanup_free_ char *ckpt = xasprintf("%s/checkpoint", sb->dir);
    if (!file_exists(ckpt, "checkpoint.img"))
        return rt_cg_freeze(&rt->cg, sb->id, false, err);
    /* runsc restore copies the namespace's interfaces anew, and took the
     * addresses off them at the last boot: the link is made again (same
     * addresses).  A sandbox checkpointed without a namespace of its own
     * (an earlier version) comes back without one.  */
    bool net = rt_gv_netns_exists(sb);
    if (limits_apply(rt, sb, err) < 0 || root_mount(sb, err) < 0 ||
        run_root_bind(rt, sb, err) < 0 || (net && rt_gv_netns_boot(rt, sb, err) < 0))
        return -1;
    _cleanup_free_ char *image = xasprintf("--image-path=%s", ckpt);
    _cleanup_free_ char *bundle = xasprintf("--bundle=%s/bundle", sb->dir);
    _cleanup_free_ char *pidf = xasprintf("%s/sandbox.pid", sb->dir);
    _cleanup_free_ char *pid_flag = xasprintf("--pid-file=%s", pidf);
    const char *const args[] = {"restore", image, bundle, pid_flag, "--detach", sb->id, NULL};
    if (runsc(rt, sb->id, net, GV_SNAPSHOT_TIMEOUT_MS, "runsc restore", err, args) < 0 ||
        adopt_pid_file(sb, pidf, err) < 0) {
        (void)rt_cg_kill(&rt->cg, sb->id, NULL, GV_KILL_TIMEOUT_MS, NULL);
        runsc_forget(rt, sb);
        return -1;
    }
    (void)sbx_rm_rf(ckpt, NULL);
    return 0;
}

static bool init_alive(rt_sandbox_t *sb)
{
    if (sb->init_pidfd < 0 && sb->init_pid > 0) {
        /* Left by an earlier agent: the same process, not a recycled pid.  */
        int fd = sys_pidfd_open(sb->init_pid);
        if (fd >= 0 && sb->init_start && rt_pid_start_time(sb->init_pid) == sb->init_start)
            sb->init_pidfd = fd;
        else if (fd >= 0)
            close(fd);
    }
    struct pollfd p = {.fd = sb->init_pidfd, .events = POLLIN};
    return sb->init_pidfd >= 0 && poll(&p, 1, 0) == 0;
}

/* Whether the kernel's OOM killer has acted in the sandbox's memory
 * cgroup: gVisor has no OOM killer of its own, so a sandbox at its memory
 * limit loses its Sentry, and with it everything.  */
static bool oom_killed(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    _cleanup_free_ char *path =
        rt->cg.v2 ? xasprintf("%s/%s/%s/memory.events", rt->cg.root, rt->cg.parent, sb->id)
        : rt->cg.v1[RT_CG_MEMORY] ? xasprintf("%s/%s/%s/memory.oom_control",
                                              rt->cg.v1[RT_CG_MEMORY], rt->cg.parent, sb->id)
                                  : NULL;
    _cleanup_free_ char *text = NULL;
    size_t len;
    if (!path || sbx_read_file(path, &text, &len, NULL) < 0)
        return false;
    const char *k = strstr(text, "oom_kill ");
    return k && strtoull(k + 9, NULL, 10) > 0;
}

static int gv_list(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (sb->state != RT_STATE_RUNNING && sb->state != RT_STATE_SUSPENDED)
        return 0;
    _cleanup_free_ char *ckpt = xasprintf("%s/checkpoint", sb->dir);
    if (sb->state == RT_STATE_SUSPENDED && file_exists(ckpt, "checkpoint.img"))
        return 0;
    if (init_alive(sb)) {
        sb->state = rt_cg_is_frozen(&rt->cg, sb->id) ? RT_STATE_SUSPENDED : RT_STATE_RUNNING;
        return 0;
    }
    /* Killed, crashed or a host reboot: the writable layer stays.  */
    bool oom = oom_killed(rt, sb);
    if (gv_stop(rt, sb, err) < 0)
        return -1;
    sb->state = RT_STATE_FAILED;
    if (oom)
        snprintf(sb->message, sizeof sb->message,
                 "out of memory (memoryMiB %llu): a gvisor sandbox ends whole at its memory limit",
                 (unsigned long long)sb->memory_mib);
    else
        snprintf(sb->message, sizeof sb->message, "the gVisor sandbox process exited");
    return 0;
}

static int gv_root_fd(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    return rt_process_ops.root_fd(rt, sb, err);
}

static void gv_usage(rt_runtime_t *rt, rt_sandbox_t *sb, uint64_t *memory_bytes, uint64_t *cpu_us)
{
    rt_cg_usage(&rt->cg, sb->id, memory_bytes, cpu_us);
}

/* ---- exec --------------------------------------------------------------------- */

struct gv_exec {
    rt_runtime_t *rt;
    char id[64];
    char *spec_path, *pid_path;
    int init_pidfd;
    pid_t pid;
    int pidfd, in_w;
    rt_outbuf_t o, e;
    const char *stdin_p;
    size_t stdin_left;
    bool ended, timed_out;
    int status;
    int64_t t0, deadline, hard_end, ended_at;
};

/* process.json: the command, its environment and cwd, as root inside
 * without capabilities (what `process` gives an exec).  */
static int exec_spec_write(struct gv_exec *x, rt_sandbox_t *sb, const rt_exec_request_t *req,
                           sbx_error_t *err)
{
    char **env = rt_exec_env(sb, req->env, err);
    if (!env)
        return -1;
    json_t *args = json_array(), *jenv = json_array();
    for (size_t i = 0; req->argv[i]; i++)
        json_array_append_new(args, json_string(req->argv[i]));
    for (size_t i = 0; env[i]; i++)
        json_array_append_new(jenv, json_string(env[i]));
    rt_strv_free(env);
    /* The user, as the agent resolved it from the sandbox's own files.  */
    const rt_user_t *u = &req->user;
    json_t *groups = json_array();
    for (unsigned i = 0; u->set && i < u->n_groups; i++)
        json_array_append_new(groups, json_integer(u->groups[i]));
    json_t *spec = json_pack(
        "{s:o,s:o,s:s,s:{s:I,s:I,s:o},s:b}", "args", args, "env", jenv, "cwd",
        req->cwd ? req->cwd : "/", "user", "uid", (json_int_t)(u->set ? u->uid : 0), "gid",
        (json_int_t)(u->set ? u->gid : 0), "additionalGids", groups, "noNewPrivileges", 1);
    if (!spec)
        return sbx_error_set(err, SBX_ERR_INVALID, "exec: arguments and environment must be UTF-8");
    _cleanup_free_ char *text = json_dumps(spec, JSON_COMPACT);
    json_decref(spec);
    _cleanup_close_ int fd =
        open(x->spec_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    size_t len = text ? strlen(text) : 0;
    if (fd < 0 || !text || write(fd, text, len) != (ssize_t)len)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "write %s", x->spec_path);
    return 0;
}

static int exec_launch(struct gv_exec *x, rt_sandbox_t *sb, const rt_exec_request_t *req,
                       sbx_error_t *err)
{
    if (exec_spec_write(x, sb, req, err) < 0)
        return -1;
    x->init_pidfd = fcntl(sb->init_pidfd, F_DUPFD_CLOEXEC, 3);
    if (x->init_pidfd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "dup pidfd");
    int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1}, ret = -1;
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
    } else {
        _cleanup_free_ char *pflag = xasprintf("--process=%s", x->spec_path);
        _cleanup_free_ char *iflag = xasprintf("--internal-pid-file=%s", x->pid_path);
        const char *const args[] = {"exec", pflag, iflag, x->id, NULL};
        char **argv = runsc_argv(x->rt, false, args);
        x->pid = spawn(x->rt, argv, in[0], o[1], e[1], NULL, false, &x->pidfd, err);
        rt_strv_free(argv);
        if (x->pid > 0) {
            x->in_w = TAKE_FD(in[1]);
            x->o.fd = TAKE_FD(o[0]);
            x->e.fd = TAKE_FD(e[0]);
            ret = 0;
        }
    }
    const int fds[] = {in[0], in[1], o[0], o[1], e[0], e[1]};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return ret;
}

/* The command's pid inside the sandbox, once runsc has started it.  */
static long exec_inner_pid(const struct gv_exec *x)
{
    char buf[32] = "";
    _cleanup_close_ int fd = open(x->pid_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof buf - 1) <= 0)
        return -1;
    return strtol(buf, NULL, 10);
}

static void exec_kill(struct gv_exec *x)
{
    long pid = exec_inner_pid(x);
    if (pid > 0) {
        char pflag[32];
        snprintf(pflag, sizeof pflag, "--pid=%ld", pid);
        const char *const args[] = {"kill", pflag, x->id, "KILL", NULL};
        sbx_error_t kerr = {0};
        (void)runsc(x->rt, NULL, false, GV_KILL_TIMEOUT_MS, "runsc kill", &kerr, args);
    } else {
        kill(x->pid, SIGKILL);
    }
}

static int exec_wait(struct gv_exec *x, sbx_error_t *err)
{
    if (!x->stdin_left)
        close(TAKE_FD(x->in_w));
    else
        (void)fcntl(x->in_w, F_SETFL, O_NONBLOCK);
    (void)fcntl(x->o.fd, F_SETFL, O_NONBLOCK);
    (void)fcntl(x->e.fd, F_SETFL, O_NONBLOCK);
    for (;;) {
        int64_t now = sbx_monotonic_ms();
        if (x->ended &&
            ((x->o.fd < 0 && x->e.fd < 0) || now >= x->ended_at + GV_GRACE_AFTER_EXIT_MS))
            return 0;
        if (!x->ended && !x->timed_out && now >= x->deadline) {
            x->timed_out = true;
            exec_kill(x);
            x->hard_end = sbx_monotonic_ms() + GV_KILL_TIMEOUT_MS;
        }
        if (!x->ended && x->hard_end && now >= x->hard_end) {
            kill(x->pid, SIGKILL);
            x->hard_end = 0;
        }
        struct pollfd pfd[4];
        int np = 0, ip = -1, io = -1, ie = -1, ih = -1;
        if (!x->ended) {
            ih = np;
            pfd[np++] = (struct pollfd){.fd = x->pidfd, .events = POLLIN};
        }
        if (x->o.fd >= 0) {
            io = np;
            pfd[np++] = (struct pollfd){.fd = x->o.fd, .events = POLLIN};
        }
        if (x->e.fd >= 0) {
            ie = np;
            pfd[np++] = (struct pollfd){.fd = x->e.fd, .events = POLLIN};
        }
        if (x->in_w >= 0) {
            ip = np;
            pfd[np++] = (struct pollfd){.fd = x->in_w, .events = POLLOUT};
        }
        int64_t until = x->ended       ? x->ended_at + GV_GRACE_AFTER_EXIT_MS
                        : x->timed_out ? (x->hard_end ? x->hard_end : now + 1000)
                                       : x->deadline;
        int wait = (int)(until - now);
        if (wait > 1000)
            wait = 1000;
        if (poll(pfd, (nfds_t)np, wait < 0 ? 0 : wait) < 0 && errno != EINTR)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "poll");
        if (io >= 0 && pfd[io].revents)
            rt_outbuf_read(&x->o);
        if (ie >= 0 && pfd[ie].revents)
            rt_outbuf_read(&x->e);
        if (ip >= 0 && pfd[ip].revents)
            rt_stdin_feed(&x->in_w, &x->stdin_p, &x->stdin_left);
        if (ih >= 0 && pfd[ih].revents) {
            while (waitpid(x->pid, &x->status, 0) < 0 && errno == EINTR)
                ;
            close(TAKE_FD(x->pidfd));
            x->ended = true;
            x->ended_at = sbx_monotonic_ms();
        }
    }
}

/* runsc exec exits 128 with a message of its own when the command never
 * started (no pid file): a bad cwd, a command not found.  */
static int exec_not_started(struct gv_exec *x, const rt_exec_request_t *req, rt_exec_result_t *out,
                            sbx_error_t *err)
{
    char line[512];
    last_line(x->e.data ? x->e.data : (char[1]){0}, x->e.data ? x->e.len : 0, line, sizeof line);
    struct pollfd p = {.fd = x->init_pidfd, .events = POLLIN};
    if (poll(&p, 1, 0) > 0)
        return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is not running", x->id);
    if (strstr(line, "initial working directory"))
        return sbx_error_set(err, SBX_ERR_INVALID, "exec: cwd %s: no such directory",
                             req->cwd ? req->cwd : "/");
    int code = strstr(line, "no such file")                                       ? 127
               : strstr(line, "permission denied") || strstr(line, "exec format") ? 126
                                                                                  : -1;
    if (code < 0)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "exec: %s", line[0] ? line : "runsc failed");
    out->exit_code = code;
    free(x->e.data);
    x->e.data = xasprintf("sandbox: %s: %s\n", req->argv[0],
                          code == 127 ? "No such file or directory" : "Permission denied");
    x->e.len = strlen(x->e.data);
    return 0;
}

static int exec_result(struct gv_exec *x, const rt_exec_request_t *req, rt_exec_result_t *out,
                       sbx_error_t *err)
{
    bool started = exec_inner_pid(x) > 0;
    out->timed_out = x->timed_out;
    if (x->timed_out) {
        out->exit_code = -1;
        out->signal = SIGKILL;
    } else if (WIFEXITED(x->status) && WEXITSTATUS(x->status) == 128 && !started) {
        if (exec_not_started(x, req, out, err) < 0)
            return -1;
    } else if (WIFEXITED(x->status) && WEXITSTATUS(x->status) == 128 &&
               poll(&(struct pollfd){.fd = x->init_pidfd, .events = POLLIN}, 1, 0) > 0) {
        return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s stopped while the command ran",
                             x->id);
    } else if (WIFEXITED(x->status)) {
        /* A command killed by signal n shows as 128 + n, as a shell
         * reports it: runsc exits that way.  */
        out->exit_code = WEXITSTATUS(x->status);
    } else {
        struct pollfd p = {.fd = x->init_pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0)
            return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s stopped while the command ran",
                                 x->id);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "exec: runsc was killed");
    }
    out->out = rt_outbuf_take(&x->o, &out->out_len, &out->out_truncated);
    out->err = rt_outbuf_take(&x->e, &out->err_len, &out->err_truncated);
    out->duration_ms = (x->ended ? x->ended_at : sbx_monotonic_ms()) - x->t0;
    return 0;
}

static int gv_exec(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_exec_request_t *req,
                   rt_exec_result_t *out, sbx_error_t *err)
{
    struct gv_exec x = {
        .rt = rt,
        .init_pidfd = -1,
        .pidfd = -1,
        .in_w = -1,
        .o = {.fd = -1},
        .e = {.fd = -1},
        .stdin_p = req->stdin_data,
        .stdin_left = req->stdin_data ? req->stdin_len : 0,
        .t0 = sbx_monotonic_ms(),
    };
    size_t cap = req->output_cap ? req->output_cap : RT_DEFAULT_OUTPUT_CAP;
    x.o.cap = x.e.cap = cap > RT_MAX_OUTPUT_CAP ? RT_MAX_OUTPUT_CAP : cap;
    x.deadline = x.t0 + (req->timeout_ms > 0 ? req->timeout_ms : RT_DEFAULT_TIMEOUT_MS);
    memcpy(x.id, sb->id, sizeof x.id);
    unsigned long long seq = (unsigned long long)atomic_fetch_add(&sb->exec_seq, 1);
    x.spec_path = xasprintf("%s/exec-%llx.json", sb->dir, seq);
    x.pid_path = xasprintf("%s/exec-%llx.pid", sb->dir, seq);
    int ret = exec_launch(&x, sb, req, err);
    /* The command runs inside the sentry from here; a stop ends it.  */
    pthread_rwlock_unlock(&sb->lock);
    if (ret == 0)
        ret = exec_wait(&x, err);
    if (ret == 0)
        ret = exec_result(&x, req, out, err);
    if (x.pidfd >= 0) {
        kill(x.pid, SIGKILL);
        (void)reap_by(x.pid, TAKE_FD(x.pidfd), 0, &x.status);
    }
    const int fds[] = {x.init_pidfd, x.in_w, x.o.fd, x.e.fd};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    unlink(x.spec_path);
    unlink(x.pid_path);
    free(x.spec_path);
    free(x.pid_path);
    free(x.o.data);
    free(x.e.data);
    return ret;
}

const rt_driver_ops_t rt_gvisor_ops = {
    .name = "gvisor",
    .usable = gv_usable,
    .create = gv_create,
    .start = gv_start,
    .exec = gv_exec,
    .suspend = gv_suspend,
    .resume = gv_resume,
    .stop = gv_stop,
    .destroy = gv_destroy,
    .list = gv_list,
    .root_fd = gv_root_fd,
    .usage = gv_usage,
};
