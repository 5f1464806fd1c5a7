/* store.c -- the image store on disk: verified blobs by digest, one
 * unpacked rootfs per manifest digest, refs from names to digests, and the
 * locks that let threads and processes share it.
 *
 *   blobs/sha256/<hex>   content whose sha256 was checked on the way in
 *   rootfs/<hex>/        an unpacked image; present means complete
 *   rootfs/.tmp-<hex>/   an unpack in progress (under the lock of <hex>)
 *   refs/<sha256(name)>.json  {"ref": name, "digest": manifest digest}
 *   locks/               flock files: one per manifest, one per name
 *   tmp/                 blobs being written  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "image/image_internal.h"

#define ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"
#define STALE_TMP_SECONDS (24 * 3600)

/* ---- locks ---- */

/* An exclusive flock on locks/<name>; closing the descriptor releases it.
 * Each call opens the file anew, so threads of one process exclude each
 * other as well as other processes do.  */
static int lock_take(img_store_t *s, const char *name, bool wait, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", s->locks_dir, name);
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open lock '%s'", path);
    int r;
    while ((r = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB))) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return sbx_error_errno(err, errno == EWOULDBLOCK ? SBX_ERR_CONFLICT : SBX_ERR_INTERNAL,
                               "lock '%s'", path);
    return TAKE_FD(fd);
}

static int lock_ref(img_store_t *s, const char *key, sbx_error_t *err)
{
    char d[IMG_DIGEST_LEN];
    img_sha256_digest(key, strlen(key), d);
    _cleanup_free_ char *name = xasprintf("ref-%s", img_digest_hex(d));
    return lock_take(s, name, true, err);
}

static int lock_manifest(img_store_t *s, const char *hex, bool wait, sbx_error_t *err)
{
    _cleanup_free_ char *name = xasprintf("manifest-%s", hex);
    return lock_take(s, name, wait, err);
}

/* ---- blobs ---- */

struct img_blob_writer {
    img_store_t *s;
    char *digest, *tmp;
    int64_t size, written;
    int fd;
    img_hasher_t *hasher;
};

char *img_blob_path(img_store_t *s, const char *digest)
{
    return xasprintf("%s/%s", s->blobs_dir, img_digest_hex(digest));
}

bool img_blob_exists(img_store_t *s, const char *digest)
{
    _cleanup_free_ char *path = img_blob_path(s, digest);
    struct stat st;
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int img_blob_read(img_store_t *s, const char *digest, size_t max, char **data, size_t *len,
                  sbx_error_t *err)
{
    _cleanup_free_ char *path = img_blob_path(s, digest);
    struct stat st;
    if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return sbx_error_set(err, SBX_ERR_NOT_FOUND, "blob %s is not in the store", digest);
    if ((uint64_t)st.st_size > max)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "blob %s is larger than %zu bytes", digest,
                             max);
    return sbx_read_file(path, data, len, err);
}

img_blob_writer_t *img_blob_writer_new(img_store_t *s, const char *digest, int64_t size,
                                       sbx_error_t *err)
{
    _cleanup_free_ char *tmp = xasprintf("%s/blob-XXXXXX", s->tmp_dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "create '%s'", tmp), NULL;
    img_blob_writer_t *w = xcalloc(1, sizeof(*w));
    *w = (img_blob_writer_t){.s = s,
                             .digest = xstrdup(digest),
                             .tmp = TAKE_PTR(tmp),
                             .size = size,
                             .fd = fd,
                             .hasher = img_hasher_new()};
    return w;
}

int img_blob_writer_write(img_blob_writer_t *w, const void *data, size_t len, sbx_error_t *err)
{
    if ((uint64_t)len > (uint64_t)(w->size - w->written))
        return sbx_error_set(err, SBX_ERR_INVALID, "blob %s is larger than its %lld bytes",
                             w->digest, (long long)w->size);
    img_hasher_update(w->hasher, data, len);
    w->written += (int64_t)len;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(w->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "write '%s'", w->tmp);
        p += n, len -= (size_t)n;
    }
    return 0;
}

int img_blob_writer_reset(img_blob_writer_t *w, sbx_error_t *err)
{
    char discard[IMG_DIGEST_LEN];
    img_hasher_final(w->hasher, discard);
    w->written = 0;
    if (ftruncate(w->fd, 0) < 0 || lseek(w->fd, 0, SEEK_SET) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "truncate '%s'", w->tmp);
    return 0;
}

int img_blob_writer_commit(img_blob_writer_t *w, sbx_error_t *err)
{
    char got[IMG_DIGEST_LEN];
    img_hasher_final(w->hasher, got);
    if (w->written != w->size)
        return sbx_error_set(err, SBX_ERR_INVALID, "blob %s has %lld bytes, not %lld", w->digest,
                             (long long)w->written, (long long)w->size);
    if (strcmp(got, w->digest) != 0)
        return sbx_error_set(err, SBX_ERR_INVALID, "blob digest mismatch: expected %s, got %s",
                             w->digest, got);
    _cleanup_free_ char *path = img_blob_path(w->s, w->digest);
    if (fchmod(w->fd, 0600) < 0 || fsync(w->fd) < 0 || rename(w->tmp, path) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "store blob %s", w->digest);
    w->tmp = (free(w->tmp), NULL);
    return 0;
}

void img_blob_writer_free(img_blob_writer_t *w)
{
    if (!w)
        return;
    if (w->tmp)
        unlink(w->tmp);
    if (w->fd >= 0)
        close(w->fd);
    img_hasher_free(w->hasher);
    free(w->tmp);
    free(w->digest);
    free(w);
}

int img_blob_put_mem(img_store_t *s, const char *digest, const void *data, size_t len,
                     sbx_error_t *err)
{
    if (img_blob_exists(s, digest)) {
        char got[IMG_DIGEST_LEN];
        img_sha256_digest(data, len, got);
        if (strcmp(got, digest) != 0)
            return sbx_error_set(err, SBX_ERR_INVALID, "digest mismatch: expected %s, got %s",
                                 digest, got);
        return 0;
    }
    img_blob_writer_t *w = img_blob_writer_new(s, digest, (int64_t)len, err);
    if (!w)
        return -1;
    int ret = img_blob_writer_write(w, data, len, err) < 0 ? -1 : img_blob_writer_commit(w, err);
    img_blob_writer_free(w);
    return ret;
}

/* ---- refs ---- */

static char *ref_path(img_store_t *s, const char *key)
{
    char d[IMG_DIGEST_LEN];
    img_sha256_digest(key, strlen(key), d);
    return xasprintf("%s/%s.json", s->refs_dir, img_digest_hex(d));
}

/* 1 with *digest set when the store has the name, 0 when not.  */
static int ref_read(img_store_t *s, const char *key, char digest[IMG_DIGEST_LEN], sbx_error_t *err)
{
    _cleanup_free_ char *path = ref_path(s, key), *data = NULL;
    size_t len;
    sbx_error_t e = {0};
    if (sbx_read_file(path, &data, &len, &e) < 0) {
        if (e.code == SBX_ERR_NOT_FOUND)
            return 0;
        *err = e;
        return -1;
    }
    _cleanup_json_ json_t *j = json_loadb(data, len, 0, NULL);
    const char *name = json_string_value(json_object_get(j, "ref"));
    const char *d = json_string_value(json_object_get(j, "digest"));
    if (!name || strcmp(name, key) != 0 || !img_digest_valid(d)) {
        sbx_log(SBX_LOG_WARN, "image", "ignoring damaged ref file %s", path);
        return 0;
    }
    memcpy(digest, d, IMG_DIGEST_LEN);
    return 1;
}

/* Callers hold the name's lock.  */
static int ref_write(img_store_t *s, const char *key, const char *digest, sbx_error_t *err)
{
    _cleanup_free_ char *path = ref_path(s, key);
    _cleanup_json_ json_t *j = json_pack("{s:s,s:s}", "ref", key, "digest", digest);
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    if (!text)
        abort();
    return sbx_write_file_atomic(path, text, strlen(text), 0600, err);
}

/* ---- unpacking ---- */

static char *rootfs_path(img_store_t *s, const char *digest)
{
    return xasprintf("%s/%s", s->rootfs_dir, img_digest_hex(digest));
}

static bool rootfs_exists(img_store_t *s, const char *digest)
{
    _cleanup_free_ char *path = rootfs_path(s, digest);
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static json_t *load_manifest(img_store_t *s, const char *digest, sbx_error_t *err)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    img_doc_kind_t kind;
    if (img_blob_read(s, digest, IMG_MAX_MANIFEST_BYTES, &data, &len, err) < 0)
        return NULL;
    json_t *doc = img_doc_parse(data, len, NULL, &kind, err);
    if (doc && kind != IMG_DOC_MANIFEST) {
        json_decref(doc);
        return sbx_error_set(err, SBX_ERR_INVALID, "%s is an index, not a manifest", digest), NULL;
    }
    return doc;
}

static int unpack_into(img_store_t *s, json_t *manifest, const char *dir, sbx_error_t *err)
{
    json_t *layers = json_object_get(manifest, "layers");
    size_t n = json_array_size(layers), i;
    char **paths = xcalloc(n + 1, sizeof(char *));
    json_t *layer;
    int ret = 0;
    json_array_foreach(layers, i, layer)
    {
        const char *digest;
        if (img_descriptor(layer, &digest, NULL, err) < 0) {
            ret = -1;
            break;
        }
        if (!img_blob_exists(s, digest)) {
            ret = sbx_error_set(err, SBX_ERR_NOT_FOUND, "layer %s is not in the store", digest);
            break;
        }
        paths[i] = img_blob_path(s, digest);
    }
    if (ret == 0) {
        /* What fits in the store bounds the unpack as much as the image's
         * own bound does (measuring it walks the store: only when needed). */
        uint64_t used = img_store_usage(s);
        uint64_t room = used < s->max_store_bytes ? s->max_store_bytes - used : 0;
        img_unpack_limits_t limits = {
            .max_bytes = room < s->max_unpacked_bytes ? room : s->max_unpacked_bytes,
            .max_entries = IMG_MAX_ENTRIES,
            .max_layer_bytes = s->max_layer_bytes};
        ret = img_unpack_layers(dir, (const char *const *)paths, n, &limits, err);
    }
    for (i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return ret;
}

/* Unpack a manifest's layers to rootfs/<hex> unless they are there.  The
 * tree is built under a temporary name, synced, then renamed: a rootfs
 * under its final name is always complete.  */
static int ensure_unpacked(img_store_t *s, const char *digest, sbx_error_t *err)
{
    if (rootfs_exists(s, digest))
        return 0;
    const char *hex = img_digest_hex(digest);
    _cleanup_close_ int lock = lock_manifest(s, hex, true, err);
    if (lock < 0)
        return -1;
    if (rootfs_exists(s, digest)) /* another caller finished it meanwhile */
        return 0;
    _cleanup_json_ json_t *manifest = load_manifest(s, digest, err);
    if (!manifest)
        return -1;
    const char *config;
    if (img_descriptor(json_object_get(manifest, "config"), &config, NULL, err) < 0)
        return -1;
    if (!img_blob_exists(s, config))
        return sbx_error_set(err, SBX_ERR_NOT_FOUND, "config %s is not in the store", config);

    _cleanup_free_ char *tmp = xasprintf("%s/.tmp-%s", s->rootfs_dir, hex);
    _cleanup_free_ char *final = rootfs_path(s, digest);
    if (sbx_rm_rf(tmp, err) < 0)
        return -1;
    if (mkdir(tmp, 0755) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir '%s'", tmp);
    int64_t start = sbx_monotonic_ms();
    if (unpack_into(s, manifest, tmp, err) < 0) {
        sbx_error_t ignored;
        sbx_rm_rf(tmp, &ignored);
        return -1;
    }
    _cleanup_close_ int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int parent = open(s->rootfs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || parent < 0 || syncfs(fd) < 0 || rename(tmp, final) < 0 || fsync(parent) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "commit '%s'", final);
        sbx_error_t ignored;
        sbx_rm_rf(tmp, &ignored);
        return -1;
    }
    pthread_mutex_lock(&s->stats_lock);
    s->unpack_count++;
    pthread_mutex_unlock(&s->stats_lock);
    sbx_log(SBX_LOG_INFO, "image", "unpacked %s in %lld ms", digest,
            (long long)(sbx_monotonic_ms() - start));
    return 0;
}

/* Bytes of the regular files under the directory fd (which it closes);
 * the walk stays on this file system and follows no link.  */
static uint64_t tree_bytes(int fd, dev_t dev, int depth)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    uint64_t sum = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
            continue;
        if (S_ISREG(st.st_mode)) {
            sum += (uint64_t)st.st_size;
        } else if (S_ISDIR(st.st_mode) && depth < 256) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                sum += tree_bytes(sub, dev, depth + 1);
        }
    }
    closedir(d);
    return sum;
}

uint64_t img_store_usage(img_store_t *s)
{
    int fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    return tree_bytes(fd, st.st_dev, 0);
}

int img_store_reserve(img_store_t *s, uint64_t more, sbx_error_t *err)
{
    uint64_t used = img_store_usage(s);
    if (used > s->max_store_bytes || more > s->max_store_bytes - used)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE,
                             "the image store is full: it holds %llu bytes, this image needs "
                             "%llu more, and the store may hold %llu (max-image-store-size)",
                             (unsigned long long)used, (unsigned long long)more,
                             (unsigned long long)s->max_store_bytes);
    return 0;
}

unsigned img_store_unpack_count(img_store_t *s)
{
    pthread_mutex_lock(&s->stats_lock);
    unsigned n = s->unpack_count;
    pthread_mutex_unlock(&s->stats_lock);
    return n;
}

/* ---- layouts ---- */

static int copy_layout_blob(img_store_t *s, const char *layout, json_t *desc, int64_t max,
                            sbx_error_t *err)
{
    const char *digest;
    int64_t size;
    if (img_descriptor(desc, &digest, &size, err) < 0)
        return -1;
    if (size > max)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "blob %s is larger than %lld bytes", digest,
                             (long long)max);
    if (img_blob_exists(s, digest))
        return 0;
    _cleanup_free_ char *src = xasprintf("%s/blobs/sha256/%s", layout, img_digest_hex(digest));
    /* O_NONBLOCK: a FIFO planted in a layout must not hang the import.  */
    _cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return sbx_error_errno(err, errno == ENOENT ? SBX_ERR_NOT_FOUND : SBX_ERR_INTERNAL,
                               "open '%s'", src);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INVALID, "'%s' is not a regular file", src);
    img_blob_writer_t *w = img_blob_writer_new(s, digest, size, err);
    if (!w)
        return -1;
    static const size_t bufsize = 256 * 1024;
    _cleanup_free_ char *buf = xmalloc(bufsize);
    int ret = 0;
    for (;;) {
        ssize_t n = read(fd, buf, bufsize);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ret = sbx_error_errno(err, SBX_ERR_INTERNAL, "read '%s'", src);
            break;
        }
        if (n == 0) {
            ret = img_blob_writer_commit(w, err);
            break;
        }
        if ((ret = img_blob_writer_write(w, buf, (size_t)n, err)) < 0)
            break;
    }
    img_blob_writer_free(w);
    return ret;
}

/* Bring a layout's manifest (following an index to this host's platform)
 * and its blobs into the store; out is the platform manifest's digest.  */
static int import_descriptor(img_store_t *s, const char *layout, json_t *desc, int depth,
                             char out[IMG_DIGEST_LEN], sbx_error_t *err)
{
    const char *digest;
    if (depth > 4)
        return sbx_error_set(err, SBX_ERR_INVALID, "image indexes nested too deep");
    if (img_descriptor(desc, &digest, NULL, err) < 0 ||
        copy_layout_blob(s, layout, desc, IMG_MAX_MANIFEST_BYTES, err) < 0)
        return -1;
    _cleanup_free_ char *data = NULL;
    size_t len;
    img_doc_kind_t kind;
    if (img_blob_read(s, digest, IMG_MAX_MANIFEST_BYTES, &data, &len, err) < 0)
        return -1;
    _cleanup_json_ json_t *doc =
        img_doc_parse(data, len, json_string_value(json_object_get(desc, "mediaType")), &kind, err);
    if (!doc)
        return -1;
    if (kind == IMG_DOC_INDEX) {
        json_t *pick = img_index_pick(doc, err);
        return pick ? import_descriptor(s, layout, pick, depth + 1, out, err) : -1;
    }
    if (copy_layout_blob(s, layout, json_object_get(doc, "config"), IMG_MAX_CONFIG_BYTES, err) < 0)
        return -1;
    size_t i;
    json_t *layer;
    json_array_foreach(json_object_get(doc, "layers"), i, layer)
    {
        if (copy_layout_blob(s, layout, layer, INT64_MAX, err) < 0)
            return -1;
    }
    memcpy(out, digest, IMG_DIGEST_LEN);
    return 0;
}

/* The name an index entry is filed under: its ref.name annotation when it
 * is a whole reference, a bare tag joined to the repository of `ref`, else
 * `ref` itself; NULL when there is none.  */
static char *layout_entry_name(json_t *desc, const char *ref)
{
    const char *name = json_string_value(
        json_object_get(json_object_get(desc, "annotations"), ANNOTATION_REF_NAME));
    if (!name)
        return ref ? xstrdup(ref) : NULL;
    if (strpbrk(name, "/:@"))
        return xstrdup(name);
    img_ref_t r;
    sbx_error_t ignored;
    if (!ref || img_ref_parse_full(ref, &r, &ignored) < 0)
        return NULL;
    char *full = xasprintf("%s%s%s:%s", r.registry ? r.registry : "", r.registry ? "/" : "",
                           r.repository, name);
    img_ref_done(&r);
    return full;
}

static int name_image(img_store_t *s, const char *name, const char *digest, sbx_error_t *err)
{
    img_ref_t r;
    if (img_ref_parse_full(name, &r, err) < 0)
        return -1;
    int ret = -1;
    int lock = lock_ref(s, r.key, err);
    if (lock >= 0) {
        ret = ref_write(s, r.key, digest, err);
        close(lock);
    }
    img_ref_done(&r);
    return ret;
}

static int import_layout(img_store_t *s, const char *layout, const char *ref,
                         char first[IMG_DIGEST_LEN], sbx_error_t *err)
{
    _cleanup_free_ char *marker_path = xasprintf("%s/oci-layout", layout);
    _cleanup_free_ char *index_path = xasprintf("%s/index.json", layout);
    _cleanup_free_ char *marker = NULL, *data = NULL;
    size_t len;
    if (sbx_read_file(marker_path, &marker, &len, err) < 0) {
        sbx_error_wrap(err, "not an OCI image layout");
        return -1;
    }
    _cleanup_json_ json_t *mj = json_loadb(marker, len, 0, NULL);
    if (!json_is_string(json_object_get(mj, "imageLayoutVersion")))
        return sbx_error_set(err, SBX_ERR_INVALID, "'%s' has no imageLayoutVersion", marker_path);
    struct stat st;
    if (stat(index_path, &st) == 0 && !S_ISREG(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INVALID, "'%s' is not a regular file", index_path);
    if (stat(index_path, &st) == 0 && st.st_size > IMG_MAX_MANIFEST_BYTES)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "'%s' is too large", index_path);
    if (sbx_read_file(index_path, &data, &len, err) < 0)
        return -1;
    img_doc_kind_t kind;
    _cleanup_json_ json_t *index = img_doc_parse(data, len, NULL, &kind, err);
    if (!index)
        return -1;
    if (kind != IMG_DOC_INDEX)
        return sbx_error_set(err, SBX_ERR_INVALID, "'%s' is not an image index", index_path);

    size_t i, imported = 0;
    json_t *desc;
    json_array_foreach(json_object_get(index, "manifests"), i, desc)
    {
        json_t *platform = json_object_get(desc, "platform");
        if (platform && !img_platform_fits(platform))
            continue; /* another architecture's image */
        char digest[IMG_DIGEST_LEN];
        if (import_descriptor(s, layout, desc, 0, digest, err) < 0 ||
            ensure_unpacked(s, digest, err) < 0)
            return -1;
        _cleanup_free_ char *name = layout_entry_name(desc, ref);
        if (name && name_image(s, name, digest, err) < 0)
            return -1;
        if (imported++ == 0 && first)
            memcpy(first, digest, IMG_DIGEST_LEN);
    }
    if (!imported)
        return sbx_error_set(err, SBX_ERR_NOT_FOUND, "'%s' holds no image for this platform",
                             layout);
    return 0;
}

int img_import_layout(img_store_t *s, const char *layout_dir, const char *ref, sbx_error_t *err)
{
    if (ref) {
        img_ref_t r;
        if (img_ref_parse_full(ref, &r, err) < 0)
            return -1;
        img_ref_done(&r);
    }
    return import_layout(s, layout_dir, ref, NULL, err);
}

/* ---- resolving ---- */

static int resolved(img_store_t *s, const char *digest, char **rootfs_dir, char **digest_out)
{
    *rootfs_dir = rootfs_path(s, digest);
    *digest_out = xstrdup(digest);
    return 0;
}

int img_resolve(img_store_t *s, const char *ref, char **rootfs_dir, char **digest_out,
                sbx_error_t *err)
{
    if (ref && sbx_str_has_prefix(ref, "sha256:")) {
        if (!img_digest_valid(ref))
            return sbx_error_set(err, SBX_ERR_INVALID, "invalid digest '%.80s'", ref);
        if (ensure_unpacked(s, ref, err) < 0)
            return -1;
        return resolved(s, ref, rootfs_dir, digest_out);
    }
    img_ref_t r;
    if (img_ref_parse_full(ref, &r, err) < 0)
        return -1;
    char digest[IMG_DIGEST_LEN];
    int ret = ref_read(s, r.key, digest, err);
    if (ret > 0 && rootfs_exists(s, digest)) { /* the common case takes no lock */
        img_ref_done(&r);
        return resolved(s, digest, rootfs_dir, digest_out);
    }
    int lock = ret < 0 ? -1 : lock_ref(s, r.key, err);
    if (lock < 0) {
        img_ref_done(&r);
        return -1;
    }
    if ((ret = ref_read(s, r.key, digest, err)) > 0) {
        sbx_error_t e = {0};
        if (ensure_unpacked(s, digest, &e) == 0)
            ret = 0;
        else if (e.code != SBX_ERR_NOT_FOUND || !r.registry)
            ret = (*err = e, -1);
        else
            ret = 1; /* blobs gone from the store: pull them again */
    } else if (ret == 0) {
        ret = r.registry ? 1
                         : sbx_error_set(err, SBX_ERR_NOT_FOUND,
                                         "image '%s' is not in the store (a name without a "
                                         "registry host is never pulled)",
                                         r.key);
    }
    if (ret == 1) {
        _cleanup_free_ char *pulled = NULL;
        ret = img_registry_pull(s, &r, &pulled, err);
        if (ret == 0)
            ret = ensure_unpacked(s, pulled, err);
        if (ret == 0)
            ret = ref_write(s, r.key, pulled, err);
        if (ret == 0)
            memcpy(digest, pulled, IMG_DIGEST_LEN);
    }
    close(lock);
    img_ref_done(&r);
    return ret < 0 ? -1 : resolved(s, digest, rootfs_dir, digest_out);
}

int img_image_config(img_store_t *s, const char *digest, json_t **config, sbx_error_t *err)
{
    if (!img_digest_valid(digest))
        return sbx_error_set(err, SBX_ERR_INVALID, "invalid digest");
    _cleanup_json_ json_t *manifest = load_manifest(s, digest, err);
    if (!manifest)
        return -1;
    const char *cdigest;
    if (img_descriptor(json_object_get(manifest, "config"), &cdigest, NULL, err) < 0)
        return -1;
    _cleanup_free_ char *data = NULL;
    size_t len;
    if (img_blob_read(s, cdigest, IMG_MAX_CONFIG_BYTES, &data, &len, err) < 0)
        return -1;
    _cleanup_json_ json_t *doc = json_loadb(data, len, 0, NULL);
    if (!json_is_object(doc))
        return sbx_error_set(err, SBX_ERR_INVALID, "image config is not a JSON object");
    json_t *c = json_object_get(doc, "config");
    *config = json_is_object(c) ? json_incref(c) : json_object();
    return 0;
}

/* ---- opening ---- */

/* Leftovers of a crashed process: old temporary blobs, and unpacks whose
 * manifest lock nobody holds.  */
static void sweep_leftovers(img_store_t *s)
{
    sbx_error_t ignored;
    DIR *d = opendir(s->tmp_dir);
    struct dirent *de;
    time_t now = time(NULL);
    while (d && (de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (now - st.st_mtime > STALE_TMP_SECONDS)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    if (d)
        closedir(d);
    d = opendir(s->rootfs_dir);
    while (d && (de = readdir(d))) {
        if (!sbx_str_has_prefix(de->d_name, ".tmp-") || strlen(de->d_name) != 5 + 64)
            continue;
        int lock = lock_manifest(s, de->d_name + 5, false, &ignored);
        if (lock < 0)
            continue; /* an unpack is running */
        _cleanup_free_ char *path = xasprintf("%s/%s", s->rootfs_dir, de->d_name);
        sbx_rm_rf(path, &ignored);
        close(lock);
    }
    if (d)
        closedir(d);
}

static int import_default(img_store_t *s, const char *layout, sbx_error_t *err)
{
    char digest[IMG_DIGEST_LEN];
    if (import_layout(s, layout, IMG_DEFAULT_REF, digest, err) < 0) {
        sbx_error_wrap(err, "default image '%s'", layout);
        return -1;
    }
    /* Whatever the layout calls it, this image is the default.  */
    return name_image(s, IMG_DEFAULT_REF, digest, err);
}

img_store_t *img_store_open(const img_config_t *cfg, sbx_error_t *err)
{
    if (!cfg || !cfg->store_dir || !*cfg->store_dir)
        return sbx_error_set(err, SBX_ERR_INVALID, "image store directory not set"), NULL;
    if (sbx_mkdir_p(cfg->store_dir, 0700, err) < 0)
        return NULL;
    char real[PATH_MAX];
    if (!realpath(cfg->store_dir, real))
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "resolve '%s'", cfg->store_dir), NULL;

    img_store_t *s = xcalloc(1, sizeof(*s));
    s->dir = xstrdup(real);
    s->blobs_dir = xasprintf("%s/blobs/sha256", real);
    s->rootfs_dir = xasprintf("%s/rootfs", real);
    s->refs_dir = xasprintf("%s/refs", real);
    s->tmp_dir = xasprintf("%s/tmp", real);
    s->locks_dir = xasprintf("%s/locks", real);
    s->ca_file = cfg->ca_file ? xstrdup(cfg->ca_file) : NULL;
    s->allow_insecure_registry = cfg->allow_insecure_registry;
    s->allow_private_registries = cfg->allow_private_registries;
    s->max_unpacked_bytes =
        cfg->max_unpacked_bytes ? cfg->max_unpacked_bytes : IMG_DEFAULT_MAX_UNPACKED;
    s->max_layer_bytes = cfg->max_layer_bytes ? cfg->max_layer_bytes : IMG_DEFAULT_MAX_LAYER;
    s->max_store_bytes = cfg->max_store_bytes;
    struct statvfs vfs;
    if (!s->max_store_bytes)
        s->max_store_bytes =
            statvfs(real, &vfs) == 0 ? (uint64_t)vfs.f_blocks * vfs.f_frsize / 2 : UINT64_MAX;
    pthread_mutex_init(&s->stats_lock, NULL);
    const char *dirs[] = {s->blobs_dir, s->rootfs_dir, s->refs_dir, s->tmp_dir, s->locks_dir};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        if (sbx_mkdir_p(dirs[i], 0700, err) < 0) {
            img_store_close(s);
            return NULL;
        }
    }
    sweep_leftovers(s);
    if (cfg->default_layout && import_default(s, cfg->default_layout, err) < 0) {
        img_store_close(s);
        return NULL;
    }
    return s;
}

void img_store_close(img_store_t *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->stats_lock);
    free(s->dir);
    free(s->blobs_dir);
    free(s->rootfs_dir);
    free(s->refs_dir);
    free(s->tmp_dir);
    free(s->locks_dir);
    free(s->ca_file);
    free(s);
}
