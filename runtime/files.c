/* files.c -- read, write, list and delete files inside a sandbox.
 *
 * Every path is resolved with openat2(RESOLVE_IN_ROOT) against an fd on the
 * sandbox's root, so `..`, absolute symlinks and symlinks swapped in while
 * we resolve all stay inside it; the sandbox's processes may change the
 * tree under us at any moment.  Final components are opened non-blocking
 * and must be regular files (a FIFO planted by the sandbox cannot hang us),
 * and recursive deletes walk one component at a time with O_NOFOLLOW.  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

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
    case EISDIR:
        return sbx_error_set(err, SBX_ERR_INVALID, "%s %s: is a directory", op, path);
    case EACCES:
    case EPERM:
    case EROFS:
        return sbx_error_set(err, SBX_ERR_FORBIDDEN, "%s %s: permission denied", op, path);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "%s %s: sandbox disk is full", op, path);
    case ENOTEMPTY:
        return sbx_error_set(err, SBX_ERR_CONFLICT, "%s %s: directory not empty", op, path);
    default:
        return sbx_error_errno(err, SBX_ERR_INVALID, "%s %s", op, path);
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

int rt_file_read(rt_runtime_t *rt, const char *id, const char *path, size_t max, char **data,
                 size_t *len, sbx_error_t *err)
{
    if (path_check(path, err) < 0 || !data || !len)
        return -1;
    rt_sandbox_t *sb;
    int root = rt_sandbox_root_open(rt, id, &sb, err);
    if (root < 0)
        return -1;
    int ret = -1;
    _cleanup_close_ int fd = resolve(root, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
    struct stat st;
    if (fd < 0) {
        path_error(err, "read", path);
    } else if (fstat(fd, &st) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "stat %s", path);
    } else if (S_ISDIR(st.st_mode)) {
        sbx_error_set(err, SBX_ERR_INVALID, "read %s: is a directory", path);
    } else if (!S_ISREG(st.st_mode)) {
        sbx_error_set(err, SBX_ERR_INVALID, "read %s: not a regular file", path);
    } else if (max && (uint64_t)st.st_size > max) {
        sbx_error_set(err, SBX_ERR_TOO_LARGE, "read %s: larger than %zu bytes", path, max);
    } else {
        size_t cap = (size_t)st.st_size + 1, n = 0;
        char *buf = xmalloc(cap + 1);
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
            if (r <= 0) {
                if (r < 0)
                    n = SIZE_MAX;
                break;
            }
            n += (size_t)r;
        }
        if (n == SIZE_MAX) {
            sbx_error_errno(err, SBX_ERR_INTERNAL, "read %s", path);
            free(buf);
        } else if (max && n > max) {
            /* It grew while we read.  */
            sbx_error_set(err, SBX_ERR_TOO_LARGE, "read %s: larger than %zu bytes", path, max);
            free(buf);
        } else {
            buf[n] = 0;
            *data = buf;
            *len = n;
            ret = 0;
        }
    }
    rt_sandbox_root_close(sb, root);
    return ret;
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

int rt_file_write(rt_runtime_t *rt, const char *id, const char *path, const void *data,
                  size_t len, sbx_error_t *err)
{
    if (path_check(path, err) < 0)
        return -1;
    if (len && !data)
        return sbx_error_set(err, SBX_ERR_INVALID, "write: no data");
    _cleanup_free_ char *parent = NULL;
    const char *base;
    if (path_split(path, &parent, &base, err) < 0)
        return -1;
    rt_sandbox_t *sb;
    int root = rt_sandbox_root_open(rt, id, &sb, err);
    if (root < 0)
        return -1;
    int ret = -1;
    int flags = O_WRONLY | O_NONBLOCK | O_NOCTTY;
    bool created = false;
    _cleanup_close_ int fd = -1;
    struct stat st;
    const char *p = data;
    size_t left = len;
    if (mkdir_parents(root, parent, sb->host_uid, err) < 0)
        goto out;
    fd = resolve(root, path, flags, 0);
    if (fd < 0 && errno == ENOENT) {
        fd = resolve(root, path, flags | O_CREAT | O_EXCL, 0644);
        created = fd >= 0;
    }
    if (fd < 0) {
        path_error(err, "write", path);
        goto out;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        sbx_error_set(err, SBX_ERR_INVALID, "write %s: not a regular file", path);
        goto out;
    }
    /* Files we make belong to the sandbox's root, not the host's.  */
    if (created && fchown(fd, sb->host_uid, sb->host_uid) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "chown %s", path);
        goto out;
    }
    if (ftruncate(fd, 0) < 0) {
        path_error(err, "write", path);
        goto out;
    }
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            path_error(err, "write", path);
            goto out;
        }
        p += w;
        left -= (size_t)w;
    }
    ret = 0;
out:
    rt_sandbox_root_close(sb, root);
    return ret;
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
    rt_sandbox_t *sb;
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

static int dirent_cmp(const void *a, const void *b)
{
    return strcmp(((const rt_dirent_t *)a)->name, ((const rt_dirent_t *)b)->name);
}

int rt_file_list(rt_runtime_t *rt, const char *id, const char *path, rt_dirent_t **out,
                 size_t *n, sbx_error_t *err)
{
    if (path_check(path, err) < 0 || !out || !n)
        return -1;
    rt_sandbox_t *sb;
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
                 S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir"
                                            : S_ISLNK(st.st_mode) ? "symlink" : "other");
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
