/* unpack.c -- applies OCI layer tars, one after the other, onto a root
 * directory, treating every entry as hostile.
 *
 * Every path is resolved by the kernel inside the root (openat2 with
 * RESOLVE_IN_ROOT): a symlink, absolute or not, met on the way is followed
 * as if the root were "/", so neither a symlink planted by an earlier entry
 * or layer nor a hardlink target can reach outside.  Entry names that are
 * absolute or hold ".." are refused outright (no tool makes such layers),
 * device nodes are skipped (the runtime provides /dev), setuid and setgid
 * bits are dropped from files, extended attributes are not applied.
 * Whiteouts (".wh.<name>", ".wh..wh..opq") remove what lower layers left,
 * never what the same layer wrote, whatever the order of entries.  */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "image/image_internal.h"

#define WHITEOUT_PREFIX ".wh."
#define OPAQUE_MARKER ".wh..wh..opq"
#define MAX_DEPTH 128

/* ---- a set of strings: the paths the current layer wrote ---- */

typedef struct strset {
    char **slots;
    size_t cap, len;
} strset_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static bool strset_has(const strset_t *set, const char *s)
{
    if (!set->cap)
        return false;
    for (size_t i = hash_str(s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
        if (!set->slots[i])
            return false;
        if (strcmp(set->slots[i], s) == 0)
            return true;
    }
}

static void strset_put_owned(strset_t *set, char *s)
{
    size_t i = hash_str(s) & (set->cap - 1);
    while (set->slots[i])
        i = (i + 1) & (set->cap - 1);
    set->slots[i] = s;
    set->len++;
}

static void strset_add(strset_t *set, const char *s)
{
    if (strset_has(set, s))
        return;
    if (2 * (set->len + 1) > set->cap) {
        strset_t bigger = {.cap = set->cap ? set->cap * 2 : 256};
        bigger.slots = xcalloc(bigger.cap, sizeof(char *));
        for (size_t i = 0; i < set->cap; i++)
            if (set->slots[i])
                strset_put_owned(&bigger, set->slots[i]);
        free(set->slots);
        *set = bigger;
    }
    strset_put_owned(set, xstrdup(s));
}

static void strset_free(strset_t *set)
{
    for (size_t i = 0; i < set->cap; i++)
        free(set->slots[i]);
    free(set->slots);
    memset(set, 0, sizeof(*set));
}

/* ---- per-layer state ---- */

typedef struct dir_meta {
    char *path;
    mode_t mode;
    struct timespec mtime;
} dir_meta_t;

typedef struct layer_ctx {
    int rootfd;
    struct archive *a;
    strset_t touched;
    dir_meta_t *dirs;
    size_t ndirs, capdirs;
    uint64_t *bytes, *entries;
    uint64_t layer_bytes; /* file data of this layer */
    const img_unpack_limits_t *limits;
    unsigned skipped;
} layer_ctx_t;

/* A failed file-system call: a layer that does not fit together (a file
 * where a directory should be, a missing link target) is the image's fault;
 * anything else is ours.  */
static int fs_error(sbx_error_t *err, const char *op, const char *path)
{
    bool image_fault = errno == ENOENT || errno == ENOTDIR || errno == EEXIST || errno == ELOOP ||
                       errno == ENAMETOOLONG || errno == EXDEV || errno == EISDIR ||
                       errno == EMLINK || errno == EINVAL || errno == ENOTEMPTY || errno == EPERM;
    return sbx_error_errno(err, image_fault ? SBX_ERR_INVALID : SBX_ERR_INTERNAL, "%s '%.200s'", op,
                           path);
}

static int open_in_root(int rootfd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    };
    for (int tries = 0;; tries++) {
        long fd = syscall(SYS_openat2, rootfd, *path ? path : ".", &how, sizeof(how));
        /* EAGAIN: a rename raced the lookup; nothing else writes here, so
         * it cannot last, but the kernel asks for a retry.  */
        if (fd < 0 && (errno == EINTR || errno == EAGAIN) && tries < 16)
            continue;
        return (int)fd;
    }
}

/* Normalise an entry name to "a/b/c" ("" for the root).  Refuses absolute
 * names, "..", and names too deep or too long to be real.  */
static int clean_path(const char *in, char out[PATH_MAX], sbx_error_t *err)
{
    size_t n = 0, depth = 0;
    const char *p = in;
    if (*p == '/')
        return sbx_error_set(err, SBX_ERR_INVALID, "layer entry with absolute path '%.200s'", in);
    while (*p) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return sbx_error_set(err, SBX_ERR_INVALID, "layer entry escapes the root: '%.200s'",
                                 in);
        if (len > NAME_MAX)
            return sbx_error_set(err, SBX_ERR_INVALID, "layer entry name too long");
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (n + len + 2 >= PATH_MAX || ++depth > MAX_DEPTH)
                return sbx_error_set(err, SBX_ERR_INVALID, "layer entry path too long");
            if (n)
                out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p += len;
        while (*p == '/')
            p++;
    }
    out[n] = '\0';
    return 0;
}

/* Split "a/b/c" in place into "a/b" and "c" ("" and "c" for "c").  */
static const char *split_last(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash) {
        memmove(path + 1, path, strlen(path) + 1);
        path[0] = '\0';
        return path + 1;
    }
    *slash = '\0';
    return slash + 1;
}

/* Mark a path and its ancestors as written by this layer.  */
static void touch(layer_ctx_t *ctx, const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (;;) {
        strset_add(&ctx->touched, buf);
        char *slash = strrchr(buf, '/');
        if (!slash)
            break;
        *slash = '\0';
    }
}

/* A directory of the root as an O_PATH descriptor, created (with its
 * missing ancestors, mode 0755) when `create` is set.  */
static int open_dir(layer_ctx_t *ctx, const char *dir, bool create, sbx_error_t *err)
{
    int fd = open_in_root(ctx->rootfd, dir, O_PATH | O_DIRECTORY);
    if (fd >= 0)
        return fd;
    if (errno != ENOENT || !create)
        return fs_error(err, "open directory", dir);

    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", dir);
    int parent = open_in_root(ctx->rootfd, "", O_PATH | O_DIRECTORY);
    if (parent < 0)
        return fs_error(err, "open", "/");
    for (char *comp = buf; comp;) {
        char *slash = strchr(comp, '/');
        if (slash)
            *slash = '\0';
        /* Always resolve from the root, so a symlink among the ancestors
         * is followed the way it will be inside the sandbox.  */
        int next = open_in_root(ctx->rootfd, buf, O_PATH | O_DIRECTORY);
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(parent, comp, 0755) < 0 && errno != EEXIST) {
                close(parent);
                return fs_error(err, "mkdir", buf);
            }
            next = open_in_root(ctx->rootfd, buf, O_PATH | O_DIRECTORY);
        }
        if (next < 0) {
            close(parent);
            return fs_error(err, "open directory", buf);
        }
        close(parent);
        parent = next;
        if (slash)
            *slash = '/';
        comp = slash ? slash + 1 : NULL;
    }
    return parent;
}

/* Remove `name` in dirfd, a whole tree when it is a directory; symlinks
 * are removed, never followed.  */
static int remove_tree(int at, const char *name, sbx_error_t *err)
{
    if (unlinkat(at, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return fs_error(err, "remove", name);
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return fs_error(err, "open", name);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return fs_error(err, "opendir", name);
    }
    int ret = 0;
    struct dirent *de;
    while (ret == 0 && (de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            ret = remove_tree(dirfd(d), de->d_name, err);
    closedir(d);
    if (ret == 0 && unlinkat(at, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return fs_error(err, "rmdir", name);
    return ret;
}

/* Make room for a new entry `base` in parent: a directory is kept when a
 * directory is coming (returns 1), anything else is removed.  */
static int clear_slot(int parent, const char *base, bool want_dir, sbx_error_t *err)
{
    struct stat st;
    if (fstatat(parent, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : fs_error(err, "stat", base);
    if (S_ISDIR(st.st_mode))
        return want_dir ? 1 : remove_tree(parent, base, err);
    if (unlinkat(parent, base, 0) < 0)
        return fs_error(err, "remove", base);
    return 0;
}

static mode_t safe_mode(struct archive_entry *e, bool dir)
{
    mode_t mode = archive_entry_perm(e) & 07777;
    /* No set-user-id files: nothing in a sandbox may gain privileges by
     * exec (it runs with no_new_privs anyway), and the store lives on the
     * host.  Set-group-id on a directory only means group inheritance.  */
    return dir ? mode & ~(mode_t)S_ISUID : mode & ~(mode_t)(S_ISUID | S_ISGID);
}

static void set_owner(int parent, const char *base, struct archive_entry *e)
{
    /* Unprivileged, or an id this user namespace cannot map: the files
     * stay ours, which is all an unprivileged store can do.  */
    if (fchownat(parent, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
                 AT_SYMLINK_NOFOLLOW) < 0 &&
        errno != EPERM && errno != EINVAL)
        sbx_log(SBX_LOG_DEBUG, "image", "chown '%.200s': %s", base, strerror(errno));
}

static void set_times(int parent, const char *base, struct archive_entry *e)
{
    struct timespec ts[2] = {
        {.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
        {.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
    };
    utimensat(parent, base, ts, AT_SYMLINK_NOFOLLOW);
}

/* Directory modes and times wait for the end of the layer: entries added
 * below would change the times, and a read-only mode could stop them.  */
static void defer_dir(layer_ctx_t *ctx, const char *path, struct archive_entry *e)
{
    if (ctx->ndirs == ctx->capdirs) {
        ctx->capdirs = ctx->capdirs ? 2 * ctx->capdirs : 64;
        ctx->dirs = xrealloc(ctx->dirs, ctx->capdirs * sizeof(*ctx->dirs));
    }
    ctx->dirs[ctx->ndirs++] = (dir_meta_t){
        .path = xstrdup(path),
        .mode = safe_mode(e, true),
        .mtime = {.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
    };
}

static void apply_dirs(layer_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->ndirs; i++) {
        dir_meta_t *d = &ctx->dirs[i];
        int fd = open_in_root(ctx->rootfd, d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd >= 0) { /* gone or replaced later in the layer: nothing to do */
            struct timespec ts[2] = {d->mtime, d->mtime};
            fchmod(fd, d->mode);
            futimens(fd, ts);
            close(fd);
        }
        free(d->path);
    }
    ctx->ndirs = 0;
}

static const char *entry_name(const char *mbs, const char *utf8)
{
    /* In the C locale libarchive cannot turn UTF-8 pax names into the
     * locale's charset; the UTF-8 spelling is the real name then.  */
    return mbs ? mbs : utf8;
}

/* ---- whiteouts ---- */

static int whiteout(layer_ctx_t *ctx, const char *dir, const char *name, sbx_error_t *err)
{
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return sbx_error_set(err, SBX_ERR_INVALID, "bad whiteout in '%.200s'", dir);
    _cleanup_free_ char *target = *dir ? xasprintf("%s/%s", dir, name) : xstrdup(name);
    if (strset_has(&ctx->touched, target))
        return 0; /* this layer's own entry: whiteouts hide lower layers only */
    _cleanup_close_ int parent = open_in_root(ctx->rootfd, dir, O_PATH | O_DIRECTORY);
    if (parent < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : fs_error(err, "open", dir);
    return remove_tree(parent, name, err);
}

/* Remove from dirfd everything this layer did not write, descending into
 * the directories it did write.  */
static int clear_lower(layer_ctx_t *ctx, int dirfd, const char *path, sbx_error_t *err)
{
    int fd = dup(dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return fs_error(err, "opendir", path);
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);

    int ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        _cleanup_free_ char *child = *path ? xasprintf("%s/%s", path, names[i]) : xstrdup(names[i]);
        if (!strset_has(&ctx->touched, child)) {
            ret = remove_tree(dirfd, names[i], err);
            continue;
        }
        int cfd = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd >= 0) { /* a directory this layer wrote: its lower content goes */
            ret = clear_lower(ctx, cfd, child, err);
            close(cfd);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return ret;
}

static int opaque(layer_ctx_t *ctx, const char *dir, sbx_error_t *err)
{
    _cleanup_close_ int fd = open_in_root(ctx->rootfd, dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : fs_error(err, "open", dir);
    return clear_lower(ctx, fd, dir, err);
}

/* ---- entries ---- */

static int write_data(layer_ctx_t *ctx, int fd, struct archive_entry *e, const char *path,
                      sbx_error_t *err)
{
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : 0;
    if (size < 0 || (uint64_t)size > ctx->limits->max_bytes - *ctx->bytes)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "image unpacks to more than %llu bytes",
                             (unsigned long long)ctx->limits->max_bytes);
    uint64_t layer_max = ctx->limits->max_layer_bytes;
    if (layer_max && (uint64_t)size > layer_max - ctx->layer_bytes)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "layer unpacks to more than %llu bytes",
                             (unsigned long long)layer_max);
    ctx->layer_bytes += (uint64_t)size;
    *ctx->bytes += (uint64_t)size;
    const void *buf;
    size_t len;
    la_int64_t off;
    int r;
    while ((r = archive_read_data_block(ctx->a, &buf, &len, &off)) == ARCHIVE_OK ||
           r == ARCHIVE_WARN) {
        if (off < 0 || (uint64_t)off + len > (uint64_t)size)
            return sbx_error_set(err, SBX_ERR_INVALID, "layer entry '%.200s' overflows its size",
                                 path);
        const char *p = buf;
        while (len > 0) {
            ssize_t w = pwrite(fd, p, len, off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return sbx_error_errno(err, SBX_ERR_INTERNAL, "write '%.200s'", path);
            p += w, len -= (size_t)w, off += w;
        }
    }
    if (r != ARCHIVE_EOF)
        return sbx_error_set(err, SBX_ERR_INVALID, "layer data of '%.200s': %s", path,
                             archive_error_string(ctx->a));
    if (ftruncate(fd, size) < 0) /* sparse files end in a hole */
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "truncate '%.200s'", path);
    return 0;
}

static int put_file(layer_ctx_t *ctx, int parent, const char *base, const char *path,
                    struct archive_entry *e, sbx_error_t *err)
{
    if (clear_slot(parent, base, false, err) < 0)
        return -1;
    _cleanup_close_ int fd =
        openat(parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return fs_error(err, "create", path);
    if (write_data(ctx, fd, e, path, err) < 0)
        return -1;
    set_owner(parent, base, e);
    if (fchmod(fd, safe_mode(e, false)) < 0)
        return fs_error(err, "chmod", path);
    set_times(parent, base, e);
    return 0;
}

static int put_dir(layer_ctx_t *ctx, int parent, const char *base, const char *path,
                   struct archive_entry *e, sbx_error_t *err)
{
    int kept = clear_slot(parent, base, true, err);
    if (kept < 0)
        return -1;
    if (!kept && mkdirat(parent, base, 0700) < 0)
        return fs_error(err, "mkdir", path);
    set_owner(parent, base, e);
    defer_dir(ctx, path, e);
    return 0;
}

static int put_symlink(int parent, const char *base, const char *path, struct archive_entry *e,
                       sbx_error_t *err)
{
    const char *target = entry_name(archive_entry_symlink(e), archive_entry_symlink_utf8(e));
    /* Any target is fine, absolute or dangling: it is only ever resolved
     * inside the root, here and in the sandbox.  */
    if (!target || !*target || strlen(target) >= PATH_MAX)
        return sbx_error_set(err, SBX_ERR_INVALID, "bad symlink target for '%.200s'", path);
    if (clear_slot(parent, base, false, err) < 0)
        return -1;
    if (symlinkat(target, parent, base) < 0)
        return fs_error(err, "symlink", path);
    set_owner(parent, base, e);
    set_times(parent, base, e);
    return 0;
}

static int put_hardlink(layer_ctx_t *ctx, int parent, const char *base, const char *path,
                        const char *link, sbx_error_t *err)
{
    char target[PATH_MAX];
    if (clean_path(link, target, err) < 0)
        return -1;
    if (!*target || strcmp(target, path) == 0)
        return sbx_error_set(err, SBX_ERR_INVALID, "bad hardlink '%.200s'", path);
    const char *tbase = split_last(target);
    _cleanup_close_ int tparent = open_dir(ctx, target, false, err);
    if (tparent < 0)
        return -1;
    struct stat st;
    if (fstatat(tparent, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return fs_error(err, "hardlink target", link);
    if (S_ISDIR(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INVALID, "hardlink to a directory '%.200s'", path);
    if (clear_slot(parent, base, false, err) < 0)
        return -1;
    /* No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself,
     * so the new name can only be an inode that already is in the root.  */
    if (linkat(tparent, tbase, parent, base, 0) < 0)
        return fs_error(err, "hardlink", path);
    return 0;
}

static int put_fifo(int parent, const char *base, const char *path, struct archive_entry *e,
                    sbx_error_t *err)
{
    if (clear_slot(parent, base, false, err) < 0)
        return -1;
    if (mknodat(parent, base, S_IFIFO | 0600, 0) < 0)
        return fs_error(err, "mkfifo", path);
    set_owner(parent, base, e);
    if (fchmodat(parent, base, safe_mode(e, false), 0) < 0)
        return fs_error(err, "chmod", path);
    set_times(parent, base, e);
    return 0;
}

static int apply_entry(layer_ctx_t *ctx, struct archive_entry *e, sbx_error_t *err)
{
    const char *name = entry_name(archive_entry_pathname(e), archive_entry_pathname_utf8(e));
    if (!name)
        return sbx_error_set(err, SBX_ERR_INVALID, "layer entry without a usable name");
    char path[PATH_MAX], dir[PATH_MAX];
    if (clean_path(name, path, err) < 0)
        return -1;
    const char *link = archive_entry_hardlink(e) || archive_entry_hardlink_utf8(e)
                           ? entry_name(archive_entry_hardlink(e), archive_entry_hardlink_utf8(e))
                           : NULL;
    mode_t type = archive_entry_filetype(e);

    if (!*path) { /* the root itself */
        if (type != AE_IFDIR || link)
            return sbx_error_set(err, SBX_ERR_INVALID, "layer replaces the root directory");
        defer_dir(ctx, "", e);
        return 0;
    }
    memcpy(dir, path, sizeof(dir));
    const char *base = split_last(dir);

    if (sbx_str_has_prefix(base, WHITEOUT_PREFIX)) {
        if (*dir)
            touch(ctx, dir);
        if (strcmp(base, OPAQUE_MARKER) == 0)
            return opaque(ctx, dir, err);
        if (sbx_str_has_prefix(base, WHITEOUT_PREFIX WHITEOUT_PREFIX))
            return 0; /* other aufs metadata */
        return whiteout(ctx, dir, base + strlen(WHITEOUT_PREFIX), err);
    }
    if (!link && (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK ||
                  (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFIFO))) {
        ctx->skipped++;
        return 0;
    }

    touch(ctx, path);
    _cleanup_close_ int parent = open_dir(ctx, dir, true, err);
    if (parent < 0)
        return -1;
    if (link)
        return put_hardlink(ctx, parent, base, path, link, err);
    switch (type) {
    case AE_IFDIR: return put_dir(ctx, parent, base, path, e, err);
    case AE_IFREG: return put_file(ctx, parent, base, path, e, err);
    case AE_IFLNK: return put_symlink(parent, base, path, e, err);
    default: return put_fifo(parent, base, path, e, err);
    }
}

static int apply_layer(layer_ctx_t *ctx, const char *layer, sbx_error_t *err)
{
    _cleanup_close_ int fd = open(layer, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_NOT_FOUND, "open layer");
    ctx->a = archive_read_new();
    archive_read_support_filter_gzip(ctx->a);
    archive_read_support_filter_zstd(ctx->a);
    archive_read_support_format_tar(ctx->a);
    int ret = 0;
    if (archive_read_open_fd(ctx->a, fd, 128 * 1024) != ARCHIVE_OK) {
        ret = sbx_error_set(err, SBX_ERR_INVALID, "not a tar layer: %s",
                            archive_error_string(ctx->a));
        goto out;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(ctx->a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            ret =
                sbx_error_set(err, SBX_ERR_INVALID, "bad layer: %s", archive_error_string(ctx->a));
            break;
        }
        if (++*ctx->entries > ctx->limits->max_entries) {
            ret = sbx_error_set(err, SBX_ERR_TOO_LARGE, "image has more than %llu entries",
                                (unsigned long long)ctx->limits->max_entries);
            break;
        }
        if ((ret = apply_entry(ctx, e, err)) < 0)
            break;
    }
out:
    apply_dirs(ctx);
    archive_read_free(ctx->a);
    ctx->a = NULL;
    return ret;
}

int img_unpack_layers(const char *root, const char *const *layers, size_t n,
                      const img_unpack_limits_t *limits, sbx_error_t *err)
{
    _cleanup_close_ int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (rootfd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open '%s'", root);
    uint64_t bytes = 0, entries = 0;
    for (size_t i = 0; i < n; i++) {
        layer_ctx_t ctx = {
            .rootfd = rootfd,
            .bytes = &bytes,
            .entries = &entries,
            .limits = limits,
        };
        int ret = apply_layer(&ctx, layers[i], err);
        strset_free(&ctx.touched);
        free(ctx.dirs);
        if (ret < 0) {
            sbx_error_wrap(err, "layer %zu", i + 1);
            return -1;
        }
        if (ctx.skipped)
            sbx_log(SBX_LOG_DEBUG, "image", "layer %zu: skipped %u device nodes or sockets", i + 1,
                    ctx.skipped);
    }
    return 0;
}
