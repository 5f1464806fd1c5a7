/* image.h -- OCI images on a host: a content-addressed store of blobs and
 * unpacked root filesystems, filled from OCI image layouts on disk or pulled
 * from an OCI registry (distribution API, bearer-token auth).
 *
 * An unpacked rootfs is shared read-only by every sandbox of that image.
 * Errors follow common.h: SBX_ERR_INVALID for a bad reference or a malformed
 * image, SBX_ERR_NOT_FOUND for an image that does not exist, SBX_ERR_UNAVAILABLE
 * when a registry cannot be reached or its address is not allowed (one
 * message for every such case, so pulls cannot map a network; the agent's
 * log has the details), SBX_ERR_FORBIDDEN when it refuses us,
 * SBX_ERR_TOO_LARGE for an image past the store's bounds.  Thread-safe, and
 * several processes may share one store directory.
 *
 * References: "host[:port]/repo[:tag]" and "host[:port]/repo@sha256:<hex>"
 * name an image in a registry (the first component is a host when it holds
 * a '.' or ':' or is "localhost", as Docker decides).  A name without a host
 * ("sandboxd/default:latest", "python:3.12") is a local name: it resolves
 * only to an image already in the store (imported from a layout); nothing is
 * pulled for it, since there is no implicit Docker Hub here.  A missing tag
 * means "latest".  A bare "sha256:<hex>" names a manifest already in the
 * store.  Tags are resolved once and then served from the store.
 *
 * See image/README.md for the store layout and what unpacking refuses.  */
#ifndef SBX_IMAGE_H
#define SBX_IMAGE_H

#include "common/common.h"

typedef struct img_store img_store_t;

/* The reference that names the embedded default image (POSIX shell, python3).  */
#define IMG_DEFAULT_REF "sandboxd/default:latest"

typedef struct img_config {
    const char *store_dir;        /* blobs/, rootfs/, refs/ live here */
    const char *default_layout;   /* OCI layout dir holding the default image; may be NULL */
    const char *ca_file;          /* extra CA for registries; may be NULL */
    bool allow_insecure_registry; /* plain http for loopback registries, tests only */
    /* Connect to registries at loopback, private, link-local and other
     * non-public addresses too (image/README.md lists them).  */
    bool allow_private_registries;
    uint64_t max_unpacked_bytes; /* file data one image may unpack to; 0: 16 GiB */
    uint64_t max_layer_bytes;    /* one pulled layer, compressed and unpacked; 0: 4 GiB */
    uint64_t max_store_bytes;    /* the whole store; 0: half its file system */
} img_config_t;

/* Open (creating it when needed) the store; with default_layout, imports
 * that layout's image under IMG_DEFAULT_REF (and unpacks it) unless the
 * store already holds that very image.  */
img_store_t *img_store_open(const img_config_t *cfg, sbx_error_t *err);
void img_store_close(img_store_t *s);

/* Make sure the image named by `ref` is unpacked and return its rootfs
 * directory and manifest digest (both owned by the caller).  Pulls it when
 * it is not in the store.  Concurrent calls for the same image unpack once.  */
int img_resolve(img_store_t *s, const char *ref, char **rootfs_dir, char **digest,
                sbx_error_t *err);

/* Import (and unpack) every image of an OCI image layout directory
 * (oci-layout, index.json, blobs/sha256/...).  Each image is filed under its
 * org.opencontainers.image.ref.name annotation ("repo:tag", or a bare tag
 * joined to the repository of `ref`); `ref` (may be NULL) names the image
 * when the layout gives no name.  */
int img_import_layout(img_store_t *s, const char *layout_dir, const char *ref, sbx_error_t *err);

/* The "config" object of an unpacked image's configuration (Env, Cmd,
 * Entrypoint, WorkingDir, User; an empty object when the image has none),
 * by manifest digest as img_resolve returns it.  *config is owned.  */
int img_image_config(img_store_t *s, const char *digest, json_t **config, sbx_error_t *err);

/* Parse "registry/repo:tag" or "repo@sha256:..." into parts (owned).
 * *registry is NULL for a local name; *tag_or_digest is "latest" when the
 * reference names neither.  */
int img_ref_parse(const char *ref, char **registry, char **repository, char **tag_or_digest,
                  sbx_error_t *err);

#endif
