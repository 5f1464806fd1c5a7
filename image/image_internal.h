/* image_internal.h -- what the files of the image module share with each
 * other and with their tests; not part of the public API.  */
#ifndef SBX_IMAGE_INTERNAL_H
#define SBX_IMAGE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "image/image.h"

/* "sha256:" + 64 hex digits + NUL.  */
#define IMG_DIGEST_LEN 72

/* Bounds on what a manifest, index or config may weigh.  */
#define IMG_MAX_MANIFEST_BYTES (4 * 1024 * 1024)
#define IMG_MAX_CONFIG_BYTES (8 * 1024 * 1024)
/* Default bound on the bytes of file data one image may unpack to.  */
#define IMG_DEFAULT_MAX_UNPACKED ((uint64_t)16 << 30)
/* Entries one image may hold, across its layers (inode bombs).  */
#define IMG_MAX_ENTRIES 2000000
/* Default bound on one pulled layer, compressed and unpacked.  */
#define IMG_DEFAULT_MAX_LAYER ((uint64_t)4 << 30)
/* What a client learns of a pull that found no registry it may talk to.  */
#define IMG_UNREACHABLE "registry unreachable or not allowed"

struct img_store {
    char *dir; /* absolute, symlinks resolved */
    char *blobs_dir, *rootfs_dir, *refs_dir, *tmp_dir, *locks_dir;
    char *ca_file;
    bool allow_insecure_registry;
    bool allow_private_registries;
    uint64_t max_unpacked_bytes;
    uint64_t max_layer_bytes;
    uint64_t max_store_bytes;
    pthread_mutex_t stats_lock;
    unsigned unpack_count; /* layers stacks unpacked since open, for tests */
};

/* A parsed reference.  `registry` is NULL for a local name (one that only
 * the store knows, such as the default image).  Exactly one of tag and
 * digest is set.  `key` is the canonical spelling the store files it under.  */
typedef struct img_ref {
    char *registry, *repository, *tag, *digest, *key;
} img_ref_t;
int img_ref_parse_full(const char *ref, img_ref_t *out, sbx_error_t *err);
void img_ref_done(img_ref_t *r);

/* ---- digests (digest.c) ---- */

/* "sha256:<64 lower-case hex>"; the only algorithm the store accepts.  */
bool img_digest_valid(const char *digest);
/* The 64 hex digits of a valid digest.  */
static inline const char *img_digest_hex(const char *digest)
{
    return digest + 7;
}
void img_sha256_digest(const void *data, size_t len, char out[IMG_DIGEST_LEN]);

typedef struct img_hasher img_hasher_t;
img_hasher_t *img_hasher_new(void);
void img_hasher_update(img_hasher_t *h, const void *data, size_t len);
void img_hasher_final(img_hasher_t *h, char out[IMG_DIGEST_LEN]); /* then reusable */
void img_hasher_free(img_hasher_t *h);

/* ---- blobs (store.c) ---- */

char *img_blob_path(img_store_t *s, const char *digest);
bool img_blob_exists(img_store_t *s, const char *digest);
/* Read a small blob (manifest, config) of at most `max` bytes.  */
int img_blob_read(img_store_t *s, const char *digest, size_t max, char **data, size_t *len,
                  sbx_error_t *err);
/* Store bytes under `digest` after checking that they hash to it.  */
int img_blob_put_mem(img_store_t *s, const char *digest, const void *data, size_t len,
                     sbx_error_t *err);

/* A blob being written: bytes are hashed as they arrive and the file only
 * enters the store when the digest and size match.  */
typedef struct img_blob_writer img_blob_writer_t;
img_blob_writer_t *img_blob_writer_new(img_store_t *s, const char *digest, int64_t size,
                                       sbx_error_t *err);
/* -1 once more bytes arrive than the descriptor announced.  */
int img_blob_writer_write(img_blob_writer_t *w, const void *data, size_t len, sbx_error_t *err);
int img_blob_writer_reset(img_blob_writer_t *w, sbx_error_t *err);
int img_blob_writer_commit(img_blob_writer_t *w, sbx_error_t *err);
void img_blob_writer_free(img_blob_writer_t *w); /* discards an uncommitted blob */

/* ---- manifests (manifest.c) ---- */

typedef enum { IMG_DOC_MANIFEST, IMG_DOC_INDEX } img_doc_kind_t;

/* Parse a manifest or an index; `media_type` (from a descriptor or a
 * Content-Type header) may be NULL.  Checks the shape, not the blobs.  */
json_t *img_doc_parse(const char *data, size_t len, const char *media_type, img_doc_kind_t *kind,
                      sbx_error_t *err);
/* The descriptor (borrowed) of an index that fits this host (linux and
 * this machine's architecture).  */
json_t *img_index_pick(json_t *index, sbx_error_t *err);
/* A descriptor's "platform" is linux on this machine's architecture.  */
bool img_platform_fits(json_t *platform);
/* A descriptor's digest and size, checked.  */
int img_descriptor(json_t *desc, const char **digest, int64_t *size, sbx_error_t *err);

/* ---- unpacking (unpack.c) ---- */

typedef struct img_unpack_limits {
    uint64_t max_bytes;       /* file data, summed over layers */
    uint64_t max_entries;     /* entries, summed over layers */
    uint64_t max_layer_bytes; /* file data of one layer; 0: no bound of its own */
} img_unpack_limits_t;

/* Apply layer tars (gzip, zstd or plain) in order onto the directory
 * `root`, which must exist and is private to the caller while this runs.
 * Whiteouts are applied layer by layer; nothing is written outside root.  */
int img_unpack_layers(const char *root, const char *const *layers, size_t n,
                      const img_unpack_limits_t *limits, sbx_error_t *err);

/* ---- registry (registry.c) ---- */

/* Bearer challenge of a WWW-Authenticate header; NULL fields when absent.  */
typedef struct img_challenge {
    char *realm, *service, *scope;
} img_challenge_t;
/* 0 when `header` carries a Bearer challenge with a realm.  */
int img_challenge_parse(const char *header, img_challenge_t *out, sbx_error_t *err);
void img_challenge_done(img_challenge_t *c);

/* Fetch the manifest `ref` names and every blob it needs into the store;
 * *manifest_digest is the platform manifest's digest (owned).  */
int img_registry_pull(img_store_t *s, const img_ref_t *ref, char **manifest_digest,
                      sbx_error_t *err);

/* Whether a registry may be at this address (IPv4 or IPv6): false for
 * loopback, private, link-local (cloud metadata), shared, unspecified,
 * multicast and reserved ones, also when embedded in an IPv6 address.  */
bool img_addr_public(const struct sockaddr *sa);

/* ---- store (store.c) ---- */

unsigned img_store_unpack_count(img_store_t *s);
/* Bytes of the files in the store now.  */
uint64_t img_store_usage(img_store_t *s);
/* Room for `more` bytes under max_store_bytes, or SBX_ERR_TOO_LARGE.  */
int img_store_reserve(img_store_t *s, uint64_t more, sbx_error_t *err);

#endif
