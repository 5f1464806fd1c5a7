/* files.c -- read, write, list and delete files inside a sandbox.
 *
 * Every path is resolved with openat2(RESOLVE_IN_ROOT) against an fd on the
 * sandbox's root, so `..`, absolute symlinks and symlinks swapped in while
 * we resolve all stay inside it; the sandbox's processes may change the
 * tree under us at any moment.  Final components are opened non-blocking
 * and must be regular files (a FIFO planted by the sandbox cannot hang us),
 * and recursive deletes walk one component at a time with O_NOFOLLOW.
 * Reads hand out an fd and writes take a stream, so no file is ever held
 * whole in the agent's memory; written bytes are charged to the sandbox.  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "runtime/driver.h"

#define MAX_DELETE_DEPTH 256
/* A sandbox can fill a directory with millions of names; listing them all
 * would cost the agent gigabytes.  */
#define MAX_LIST_ENTRIES 100000

static int resolve(int rootfd, const char *path, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    for (int tries = 0; tries < 16; tries++) {
        int fd = (int)syscall(SYS_openat2, rootfd, path, &how, sizeof how);
        /* EAGAIN: a rename raced with the lookup; the kernel asks to retry.  */
        if (fd >= 0 || errno != EAGAIN)
            return fd;
    }
    return -1;
}

static int path_error(sbx_error_t *err, const char *op, const char *path)
{
    switch (errno) {
    case ENOENT:
    case ENOTDIR:
        return sbx_error_set(err, SBX_ERR_NOT_FOUND, "%s %s: no such file or directory", op, path);
    case EISDIR: return sbx_error_set(err, SBX_ERR_INVALID, "%s %s: is a directory", op, path);
    case EACCES:
    case EPERM:
    case EROFS: return sbx_error_set(err, SBX_ERR_FORBIDDEN, "%s %s: permission denied", op, path);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return sbx_error_arm(err, SBX_ERR_TOO_LARGE, "SandboxStorageFull",
                             "%s %s: the sandbox's disk is full", op, path);
    case ENOTEMPTY:
        return sbx_error_set(err, SBX_ERR_CONFLICT, "%s %s: directory not empty", op, path);
    default: return sbx_error_errno(err, SBX_ERR_INVALID, "%s %s", op, path);
    }
}

static int path_check(const char *path, sbx_error_t *err)
{
    if (!path || !*path)
        return sbx_error_set(err, SBX_ERR_INVALID, "a path is required");
    if (strlen(path) >= 4096)
        return sbx_error_set(err, SBX_ERR_INVALID, "path too long");
    return 0;
}

/* The sandbox, held, when its driver serves files itself (a microVM's
 * guest agent); NULL otherwise, and for errors the usual path reports.  */
static rt_sandbox_t *guest_files(rt_runtime_t *rt, const char *id)
{
    rt_sandbox_t *sb;
    if (rt_sandbox_hold(rt, id, &sb, NULL) < 0)
        return NULL;
    if (sb->ops->files)
        return sb;
    rt_sandbox_root_close(sb, -1);
    return NULL;
}

/* Split path into its parent (owned) and last component (inside path's
 * copy in *parent's buffer); fails for "/" and names "." or "..".  */
static int path_split(const char *path, char **parent, const char **base, sbx_error_t *err)
{
    char *p = xstrdup(path);
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = 0;
    char *slash = strrchr(p, '/');
    const char *b = slash ? slash + 1 : p;
    if (!*b || strcmp(b, ".") == 0 || strcmp(b, "..") == 0) {
        free(p);
        return sbx_error_set(err, SBX_ERR_INVALID, "path %s names no file", path);
    }
    /* parent and base share the buffer: "a/b" -> "a" + "b", "/b" -> "/" + "b".  */
    size_t blen = strlen(b);
    char *buf = xmalloc(len + 3);
    if (!slash)
        strcpy(buf, "/");
    else if (slash == p)
        strcpy(buf, "/");
    else
        snprintf(buf, len + 1, "%.*s", (int)(slash - p), p);
    size_t plen = strlen(buf);
    memcpy(buf + plen + 1, b, blen + 1);
    free(p);
    *parent = buf;
    *base = buf + plen + 1;
    return 0;
}

/* Open path as a regular file for reading; fills *size.  */
static int open_regular(int root, const char *path, uint64_t max, uint64_t *size, sbx_error_t *err)
{
    _cleanup_close_ int fd = resolve(root, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
    struct stat st;
    if (fd < 0)
        return path_error(err, "read", path);
    if (fstat(fd, &st) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "stat %s", path);
    if (S_ISDIR(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INVALID, "read %s: is a directory", path);
    if (!S_ISREG(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INVALID, "read %s: not a regular file", path);
    if (max && (uint64_t)st.st_size > max)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "read %s: larger than %llu bytes", path,
                             (unsigned long long)max);
    *size = (uint64_t)st.st_size;
    return TAKE_FD(fd);
}

int rt_file_open(rt_runtime_t *rt, const char *id, const char *path, uint64_t max, int *fdp,
                 uint64_t *size, sbx_error_t *err)
{
    if (path_check(path, err) < 0 || !fdp || !size)
        return -1;
    rt_sandbox_t *sb = guest_files(rt, id);
    if (sb) {
        int r = sb->ops->files->open(rt, sb, path, max, fdp, size, err);
        rt_sandbox_root_close(sb, -1);
        return r;
    }
    int root = rt_sandbox_root_open(rt, id, &sb, err);
    if (root < 0)
        return -1;
    /* The open file is all a reader needs: the sandbox is not held while
     * it is read (a slow client must not hold up a stop or a delete).  */
    int fd = open_regular(root, path, max, size, err);
    rt_sandbox_root_close(sb, root);
    if (fd < 0)
        return -1;
    *fdp = fd;
    return 0;
}

int rt_file_read(rt_runtime_t *rt, const char *id, const char *path, size_t max, char **data,
                 size_t *len, sbx_error_t *err)
{
    if (!data || !len)
        return -1;
    uint64_t size;
    int raw = -1;
    if (rt_file_open(rt, id, path, max, &raw, &size, err) < 0)
        return -1;
    _cleanup_close_ int fd = raw;
    size_t cap = (size_t)size + 1, n = 0;
    _cleanup_free_ char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (max && n > max)
                break;
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "read %s", path);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (max && n > max) /* it grew while we read */
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "read %s: larger than %zu bytes", path, max);
    buf[n] = 0;
    *data = TAKE_PTR(buf);
    *len = n;
    return 0;
}

/* Create the missing directories of `dir` (a path inside the root), each
 * owned by the sandbox's root user.  */
static int mkdir_parents(int root, const char *dir, uid_t uid, sbx_error_t *err)
{
    _cleanup_close_ int fd = resolve(root, dir, O_PATH | O_DIRECTORY, 0);
    if (fd >= 0)
        return 0;
    if (errno != ENOENT)
        return path_error(err, "mkdir", dir);
    _cleanup_free_ char *parent = NULL;
    const char *base;
    if (path_split(dir, &parent, &base, err) < 0 || mkdir_parents(root, parent, uid, err) < 0)
        return -1;
    _cleanup_close_ int pfd = resolve(root, parent, O_PATH | O_DIRECTORY, 0);
    if (pfd < 0)
        return path_error(err, "mkdir", parent);
    if (mkdirat(pfd, base, 0755) < 0) {
        if (errno == EEXIST)
            return 0;
        return path_error(err, "mkdir", dir);
    }
    (void)fchownat(pfd, base, uid, uid, AT_SYMLINK_NOFOLLOW);
    return 0;
}

/* ---- writes ---- */

#define UPLOAD_CHUNK (64u << 10)

/* Where a write is heading, from its first step (locked) to the rename.  */
typedef struct upload {
    rt_runtime_t *rt;
    const char *id, *path, *base;
    char tmp[48]; /* the temporary name, in the parent directory */
    char sub[24]; /* the writer's child cgroup */
    int pfd;      /* parent directory (O_PATH) */
    int data_w;   /* bytes to the writer */
    pid_t writer;
    bool have_tmp, have_cg;
} upload_t;

/* Open the cgroup.procs files the writer joins: the sandbox's memory
 * cgroup (its pages are charged there) and a child of its pids cgroup (so
 * a stop or delete kills it with the sandbox's processes).  Not the freezer
 * nor cpu: an upload into a suspended sandbox still goes through.  */
static int writer_cgroups_open(upload_t *u, int fds[2], int *n, sbx_error_t *err)
{
    const rt_cgroups_t *cg = &u->rt->cg;
    *n = 0;
    _cleanup_free_ char *mem = NULL, *pids = NULL;
    if (cg->v2) {
        if (rt_cg_is_frozen(cg, u->id))
            return sbx_error_set(err, SBX_ERR_CONFLICT,
                                 "sandbox %s is suspended; resume it to write files", u->id);
        pids = xasprintf("%s/%s/%s/%s", cg->root, cg->parent, u->id, u->sub);
    } else {
        if (cg->v1[RT_CG_MEMORY])
            mem = xasprintf("%s/%s/%s", cg->v1[RT_CG_MEMORY], cg->parent, u->id);
        if (cg->v1[RT_CG_PIDS])
            pids = xasprintf("%s/%s/%s/%s", cg->v1[RT_CG_PIDS], cg->parent, u->id, u->sub);
    }
    if (!cg->v2 && !mem)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "no memory cgroup to charge the write to");
    if (pids) {
        if (mkdir(pids, 0755) < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", pids);
        u->have_cg = true;
    }
    const char *dirs[2] = {mem, pids};
    for (int i = 0; i < 2; i++) {
        if (!dirs[i])
            continue;
        _cleanup_free_ char *procs = xasprintf("%s/cgroup.procs", dirs[i]);
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            for (int j = 0; j < *n; j++)
                close(fds[j]);
            *n = 0;
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", procs);
        }
        fds[(*n)++] = fd;
    }
    return 0;
}

/* The writer: a fork that joins the sandbox's cgroups, drops to the
 * sandbox's root uid, keeps nothing but the pipe (fd 0) and the file
 * (fd 1), and copies one into the other.  tmpfs charges a page to the
 * memory cgroup of the task that allocates it, so the sandbox pays for the
 * file and its memory limit bounds it.  When that memory is full the
 * kernel's OOM killer picks this process first (oom_score_adj 1000).  The
 * exit status is 0 or the errno of the failed write.  Only async-signal-safe
 * calls: the agent is multi-threaded.  */
static _Noreturn void writer_main(int data_r, int file_fd, const int *cg, int n_cg, uid_t uid)
{
    static char buf[UPLOAD_CHUNK];
    /* A copy of the agent: nobody but host root may look into it, from
     * its first instruction.  */
    if (prctl(PR_SET_DUMPABLE, 0) < 0)
        _exit(EIO);
    int adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (adj < 0 || write(adj, "1000", 4) != 4)
        _exit(EIO);
    close(adj);
    for (int i = 0; i < n_cg; i++)
        if (write(cg[i], "0", 1) != 1)
            _exit(EIO);
    if (dup2(data_r, 0) < 0 || dup2(file_fd, 1) < 0)
        _exit(EIO);
    /* Everything else goes before it runs as the sandbox's uid, the ready
     * pipe too: the agent sees its EOF.  */
    if (syscall(SYS_close_range, 2, ~0U, 0) < 0)
        _exit(EIO);
    if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, uid, uid, uid) < 0 ||
        syscall(SYS_setresuid, uid, uid, uid) < 0)
        _exit(EPERM);
    /* Again after the uid change, which clears both.  */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || prctl(PR_SET_DUMPABLE, 0) < 0)
        _exit(EIO);
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n == 0)
            _exit(0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            _exit(EIO);
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(1, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                _exit(w < 0 ? (errno & 0xff) : EIO);
            off += w;
        }
    }
}

static int storage_full(sbx_error_t *err, const char *path, const char *what)
{
    return sbx_error_arm(err, SBX_ERR_TOO_LARGE, "SandboxStorageFull",
                         "write %s: the sandbox's %s cannot hold the file", path, what);
}

/* Start the writer for u->tmp's fd; returns once it has joined the
 * sandbox's cgroups (or died trying).  */
static int writer_start(upload_t *u, rt_sandbox_t *sb, int file_fd, sbx_error_t *err)
{
    int cg[2], n_cg = 0;
    int data[2] = {-1, -1}, ready[2] = {-1, -1};
    if (writer_cgroups_open(u, cg, &n_cg, err) < 0)
        return -1;
    int ret = -1;
    if (pipe2(data, O_CLOEXEC) < 0 || pipe2(ready, O_CLOEXEC) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
        goto out;
    }
    /* fd 0 and 1 are the writer's targets: never one of ours.  */
    if (data[0] <= 2 || file_fd <= 2) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "standard descriptors are closed");
        goto out;
    }
    u->writer = fork();
    if (u->writer == 0)
        writer_main(data[0], file_fd, cg, n_cg, sb->host_uid);
    if (u->writer < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "fork");
        goto out;
    }
    close(TAKE_FD(ready[1]));
    char c;
    while (read(ready[0], &c, 1) < 0 && errno == EINTR)
        ;
    u->data_w = TAKE_FD(data[1]);
    ret = 0;
out:
    for (int i = 0; i < n_cg; i++)
        close(cg[i]);
    for (int i = 0; i < 2; i++) {
        if (data[i] >= 0)
            close(data[i]);
        if (ready[i] >= 0)
            close(ready[i]);
    }
    return ret;
}

/* First step, under the sandbox's lock: resolve, make the temporary file
 * beside the target (owner and mode of the file it replaces) and start the
 * writer on it.  */
static int upload_prepare(upload_t *u, rt_sandbox_t *sb, int root, const char *parent,
                          sbx_error_t *err)
{
    if (mkdir_parents(root, parent, sb->host_uid, err) < 0)
        return -1;
    u->pfd = resolve(root, parent, O_PATH | O_DIRECTORY, 0);
    if (u->pfd < 0)
        return path_error(err, "write", u->path);
    uid_t uid = sb->host_uid;
    gid_t gid = sb->host_uid;
    mode_t mode = 0644;
    struct stat st;
    if (fstatat(u->pfd, u->base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(st.st_mode))
            return sbx_error_set(err, SBX_ERR_INVALID, "write %s: is a directory", u->path);
        if (S_ISREG(st.st_mode)) {
            mode = st.st_mode & 07777;
            /* Only ids of the sandbox's own range are kept: an image file
             * of an unmapped id (nobody inside; host root where the image
             * is not id-mapped) must not make us create a file, maybe
             * set-id, that a host id outside the sandbox owns.  */
            if (st.st_uid - sb->host_uid < RT_UID_RANGE)
                uid = st.st_uid;
            else
                mode &= ~(mode_t)S_ISUID;
            if (st.st_gid - sb->host_uid < RT_UID_RANGE)
                gid = st.st_gid;
            else
                mode &= ~(mode_t)S_ISGID;
        } else if (!S_ISLNK(st.st_mode)) { /* a symlink is replaced, not followed */
            return sbx_error_set(err, SBX_ERR_INVALID, "write %s: not a regular file", u->path);
        }
    } else if (errno != ENOENT) {
        return path_error(err, "write", u->path);
    }
    _cleanup_close_ int fd = -1;
    for (int tries = 0; fd < 0 && tries < 8; tries++) {
        unsigned long long seq = (unsigned long long)atomic_fetch_add(&sb->exec_seq, 1);
        snprintf(u->sub, sizeof u->sub, "w%llx", seq);
        /* Random, so the sandbox cannot take the name ahead of us.  */
        unsigned long long rnd = 0;
        if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
            rnd = seq;
        snprintf(u->tmp, sizeof u->tmp, ".sandbox-upload-%016llx", rnd);
        fd = openat(u->pfd, u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return path_error(err, "write", u->path);
    }
    if (fd < 0)
        return sbx_error_set(err, SBX_ERR_CONFLICT, "write %s: no free temporary name", u->path);
    u->have_tmp = true;
    if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "chown %s", u->path);
    return writer_start(u, sb, fd, err);
}

/* Feed the writer from `read`; SIGPIPE (a writer gone) is held off.  */
static int upload_copy(upload_t *u, rt_read_fn read_fn, void *ud, uint64_t *written,
                       int *read_errno)
{
    _cleanup_free_ char *buf = xmalloc(UPLOAD_CHUNK);
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int ret = 0;
    for (;;) {
        ssize_t n = read_fn(ud, buf, UPLOAD_CHUNK);
        if (n == 0)
            break;
        if (n < 0) {
            *read_errno = errno ? errno : EIO;
            ret = -1;
            break;
        }
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(u->data_w, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += w;
        }
        if (off < n) { /* the writer is gone: its status says why */
            ret = -1;
            break;
        }
        *written += (uint64_t)n;
    }
    close(TAKE_FD(u->data_w));
    const struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
        ;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}

/* The writer's verdict: 0, or an error in err.  */
static int writer_wait(upload_t *u, sbx_error_t *err)
{
    int status = 0;
    while (waitpid(u->writer, &status, 0) < 0 && errno == EINTR)
        ;
    u->writer = 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) /* the OOM killer, or a stop */
        return storage_full(err, u->path, "memory");
    int e = WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
    if (e == ENOMEM)
        return storage_full(err, u->path, "memory");
    errno = e;
    return path_error(err, "write", u->path);
}

/* Last step, under the sandbox's lock again: the temporary file takes the
 * target's name, if the sandbox is still the one we started with.  */
static int upload_commit(upload_t *u, sbx_error_t *err)
{
    rt_sandbox_t *sb;
    int root = rt_sandbox_root_open(u->rt, u->id, &sb, err);
    if (root < 0)
        return -1;
    int ret = 0;
    struct stat a, b;
    if (fstat(root, &a) < 0 || fstat(u->pfd, &b) < 0 || a.st_dev != b.st_dev)
        ret = sbx_error_set(err, SBX_ERR_CONFLICT, "write %s: the sandbox was replaced", u->path);
    else if (renameat(u->pfd, u->tmp, u->pfd, u->base) < 0)
        ret = path_error(err, "write", u->path);
    else
        u->have_tmp = false;
    rt_sandbox_root_close(sb, root);
    return ret;
}

static void upload_done(upload_t *u)
{
    if (u->data_w >= 0)
        close(u->data_w);
    if (u->writer > 0) {
        kill(u->writer, SIGKILL);
        while (waitpid(u->writer, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (u->have_tmp)
        (void)unlinkat(u->pfd, u->tmp, 0);
    if (u->pfd >= 0)
        close(u->pfd);
    if (u->have_cg)
        rt_cg_exec_done(&u->rt->cg, u->id, u->sub);
}

/* The whole upload in memory (bounded by the driver's write_max and the
 * sandbox's disk), then one write through the driver.  */
static int guest_write(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, uint64_t expected,
                       rt_read_fn read_fn, void *ud, uint64_t *written, sbx_error_t *err)
{
    size_t max = sb->ops->files->write_max;
    if ((sb->disk_mib << 20) < max)
        max = (size_t)(sb->disk_mib << 20);
    if (expected != UINT64_MAX && expected > max)
        return storage_full(err, path, "disk");
    size_t cap = 65536, n = 0;
    _cleanup_free_ char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap > max)
                return storage_full(err, path, "disk");
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t r = read_fn(ud, buf + n, cap - n);
        if (r < 0 && errno == EFBIG)
            return sbx_error_arm(err, SBX_ERR_TOO_LARGE, "RequestEntityTooLarge",
                                 "the request body is larger than allowed");
        if (r < 0)
            return sbx_error_set(err, SBX_ERR_INVALID, "write %s: the upload was interrupted",
                                 path);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max)
        return storage_full(err, path, "disk");
    if (sb->ops->files->write(rt, sb, path, buf, n, err) < 0)
        return -1;
    *written = n;
    return 0;
}

int rt_file_write_stream(rt_runtime_t *rt, const char *id, const char *path, uint64_t expected,
                         rt_read_fn read_fn, void *ud, uint64_t *written, sbx_error_t *err)
{
    uint64_t dummy;
    if (!written)
        written = &dummy;
    *written = 0;
    if (path_check(path, err) < 0)
        return -1;
    if (!read_fn)
        return sbx_error_set(err, SBX_ERR_INVALID, "write: no data");
    _cleanup_free_ char *parent = NULL;
    upload_t u = {.rt = rt, .id = id, .path = path, .pfd = -1, .data_w = -1};
    if (path_split(path, &parent, &u.base, err) < 0)
        return -1;
    rt_sandbox_t *sb = guest_files(rt, id);
    if (sb) {
        int r = guest_write(rt, sb, path, expected, read_fn, ud, written, err);
        rt_sandbox_root_close(sb, -1);
        return r;
    }
    int root = rt_sandbox_root_open(rt, id, &sb, err);
    if (root < 0)
        return -1;
    int ret = -1;
    /* What can never fit is refused before a byte is read.  */
    if (expected != UINT64_MAX && expected > (sb->memory_mib << 20))
        storage_full(err, path, "memory");
    else if (expected != UINT64_MAX && expected > (sb->disk_mib << 20))
        storage_full(err, path, "disk");
    else
        ret = upload_prepare(&u, sb, root, parent, err);
    /* The bytes arrive at the client's pace: the sandbox is not held
     * meanwhile, so a stop or a delete goes on (and kills the writer).  */
    rt_sandbox_root_close(sb, root);
    int read_errno = 0;
    if (ret == 0 && upload_copy(&u, read_fn, ud, written, &read_errno) < 0 && read_errno) {
        ret = read_errno == EFBIG ? sbx_error_arm(err, SBX_ERR_TOO_LARGE, "RequestEntityTooLarge",
                                                  "the request body is larger than allowed")
                                  : sbx_error_set(err, SBX_ERR_INVALID,
                                                  "write %s: the upload was interrupted", path);
    }
    if (u.writer > 0) {
        int w = writer_wait(&u, ret == 0 ? err : NULL);
        if (ret == 0)
            ret = w;
    }
    if (ret == 0)
        ret = upload_commit(&u, err);
    upload_done(&u);
    return ret;
}

typedef struct mem_src {
    const char *p;
    size_t left;
} mem_src_t;

static ssize_t mem_read(void *ud, void *buf, size_t n)
{
    mem_src_t *m = ud;
    size_t k = m->left < n ? m->left : n;
    memcpy(buf, m->p, k);
    m->p += k;
    m->left -= k;
    return (ssize_t)k;
}

int rt_file_write(rt_runtime_t *rt, const char *id, const char *path, const void *data, size_t len,
                  sbx_error_t *err)
{
    if (len && !data)
        return sbx_error_set(err, SBX_ERR_INVALID, "write: no data");
    mem_src_t m = {data, len};
    return rt_file_write_stream(rt, id, path, len, mem_read, &m, NULL, err);
}

/* Remove name (in dirfd) and, for a directory, everything below it,
 * without following a symlink anywhere.  */
static int remove_at(int at, const char *name, int depth)
{
    if (unlinkat(at, name, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -1;
    if (depth >= MAX_DELETE_DEPTH) {
        errno = ELOOP;
        return -1;
    }
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    struct dirent *de;
    int ret = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (remove_at(dirfd(d), de->d_name, depth + 1) < 0 && errno != ENOENT) {
            ret = -1;
            break;
        }
    }
    int saved = errno;
    closedir(d);
    if (ret < 0) {
        errno = saved;
        return -1;
    }
    return unlinkat(at, name, AT_REMOVEDIR);
}

int rt_file_delete(rt_runtime_t *rt, const char *id, const char *path, sbx_error_t *err)
{
    if (path_check(path, err) < 0)
        return -1;
    _cleanup_free_ char *parent = NULL;
    const char *base;
    if (path_split(path, &parent, &base, err) < 0)
        return -1;
    rt_sandbox_t *sb = guest_files(rt, id);
    if (sb) {
        int r = sb->ops->files->remove(rt, sb, path, err);
        rt_sandbox_root_close(sb, -1);
        return r;
    }
    int root = rt_sandbox_root_open(rt, id, &sb, err);
    if (root < 0)
        return -1;
    int ret = 0;
    _cleanup_close_ int pfd = resolve(root, parent, O_PATH | O_DIRECTORY, 0);
    if (pfd < 0 || remove_at(pfd, base, 0) < 0)
        ret = path_error(err, "delete", path);
    rt_sandbox_root_close(sb, root);
    return ret;
}

int rt_dir_open(rt_runtime_t *rt, const char *id, const char *path, int *fdp, sbx_error_t *err)
{
    *fdp = -1;
    if (path_check(path, err) < 0)
        return -1;
    rt_sandbox_t *sb;
    int root = rt_sandbox_root_open(rt, id, &sb, err);
    if (root < 0)
        return -1;
    *fdp = resolve(root, path, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0);
    int ret = *fdp >= 0 ? 0 : path_error(err, "watch", path);
    rt_sandbox_root_close(sb, root);
    return ret;
}

static int dirent_cmp(const void *a, const void *b)
{
    return strcmp(((const rt_dirent_t *)a)->name, ((const rt_dirent_t *)b)->name);
}

int rt_file_list(rt_runtime_t *rt, const char *id, const char *path, rt_dirent_t **out, size_t *n,
                 sbx_error_t *err)
{
    if (path_check(path, err) < 0 || !out || !n)
        return -1;
    rt_sandbox_t *sb = guest_files(rt, id);
    if (sb) {
        int r = sb->ops->files->list(rt, sb, path, out, n, err);
        rt_sandbox_root_close(sb, -1);
        if (r == 0)
            qsort(*out, *n, sizeof **out, dirent_cmp);
        return r;
    }
    int root = rt_sandbox_root_open(rt, id, &sb, err);
    if (root < 0)
        return -1;
    int ret = -1;
    size_t count = 0, cap = 16;
    rt_dirent_t *ents = NULL;
    struct dirent *de;
    int fd = resolve(root, path, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        path_error(err, "list", path);
        if (fd >= 0)
            close(fd);
        goto out;
    }
    ents = xcalloc(cap, sizeof *ents);
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* removed meanwhile */
        if (count == MAX_LIST_ENTRIES) {
            closedir(d);
            rt_dirents_free(ents, count);
            sbx_error_set(err, SBX_ERR_TOO_LARGE, "list %s: more than %d entries", path,
                          MAX_LIST_ENTRIES);
            goto out;
        }
        if (count == cap)
            ents = xrealloc(ents, (cap *= 2) * sizeof *ents);
        rt_dirent_t *e = &ents[count++];
        memset(e, 0, sizeof *e);
        e->name = xstrdup(de->d_name);
        snprintf(e->type, sizeof e->type, "%s",
                 S_ISREG(st.st_mode)   ? "file"
                 : S_ISDIR(st.st_mode) ? "dir"
                 : S_ISLNK(st.st_mode) ? "symlink"
                                       : "other");
        e->size = (uint64_t)st.st_size;
        e->mode = st.st_mode & 07777;
        e->modified_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    }
    closedir(d);
    qsort(ents, count, sizeof *ents, dirent_cmp);
    *out = ents;
    *n = count;
    ret = 0;
out:
    rt_sandbox_root_close(sb, root);
    return ret;
}

void rt_dirents_free(rt_dirent_t *d, size_t n)
{
    for (size_t i = 0; d && i < n; i++)
        free(d[i].name);
    free(d);
}
