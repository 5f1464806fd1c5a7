/* manifest.c -- OCI and Docker v2 manifests and indexes: shape checks and
 * the choice of this host's platform in an index.  */
#include <string.h>

#include "image/image_internal.h"

#define MAX_LAYERS 500
#define MAX_INDEX_ENTRIES 1000

#if defined(__x86_64__)
#define HOST_ARCH "amd64"
#elif defined(__aarch64__)
#define HOST_ARCH "arm64"
#else
#error "unknown architecture: name it in OCI terms here"
#endif

static const char *const manifest_types[] = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
};
static const char *const index_types[] = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
};
static const char *const config_types[] = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
};
/* Layers are tars, plain or compressed with gzip or zstd; the unpacker
 * detects which, so the suffix only has to be one we know.  */
static const char *const layer_types[] = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* A Content-Type header may carry parameters ("; charset=utf-8").  */
static char *bare_media_type(const char *s)
{
    size_t n = strcspn(s, "; \t");
    return xstrndup(s, n);
}

int img_descriptor(json_t *desc, const char **digest, int64_t *size, sbx_error_t *err)
{
    json_t *d = json_object_get(desc, "digest"), *sz = json_object_get(desc, "size");
    if (!json_is_object(desc) || !json_is_string(d) || !json_is_integer(sz))
        return sbx_error_set(err, SBX_ERR_INVALID, "descriptor without digest and size");
    if (!img_digest_valid(json_string_value(d)))
        return sbx_error_set(err, SBX_ERR_INVALID, "unsupported digest '%.80s'",
                             json_string_value(d));
    if (json_integer_value(sz) < 0)
        return sbx_error_set(err, SBX_ERR_INVALID, "descriptor with a negative size");
    *digest = json_string_value(d);
    if (size)
        *size = json_integer_value(sz);
    return 0;
}

static int check_manifest(json_t *doc, sbx_error_t *err)
{
    const char *digest;
    json_t *config = json_object_get(doc, "config"), *layers = json_object_get(doc, "layers");
    if (img_descriptor(config, &digest, NULL, err) < 0) {
        sbx_error_wrap(err, "manifest config");
        return -1;
    }
    const char *ctype = json_string_value(json_object_get(config, "mediaType"));
    if (!in_list(ctype, config_types, ARRAY_SIZE(config_types)))
        return sbx_error_set(err, SBX_ERR_INVALID, "not a container image (config type '%.100s')",
                             ctype ? ctype : "");
    if (!json_is_array(layers))
        return sbx_error_set(err, SBX_ERR_INVALID, "manifest without layers");
    if (json_array_size(layers) > MAX_LAYERS)
        return sbx_error_set(err, SBX_ERR_INVALID, "manifest with more than %d layers", MAX_LAYERS);
    size_t i;
    json_t *layer;
    json_array_foreach(layers, i, layer)
    {
        if (img_descriptor(layer, &digest, NULL, err) < 0) {
            sbx_error_wrap(err, "layer %zu", i);
            return -1;
        }
        const char *ltype = json_string_value(json_object_get(layer, "mediaType"));
        if (!in_list(ltype, layer_types, ARRAY_SIZE(layer_types)))
            return sbx_error_set(err, SBX_ERR_INVALID, "unsupported layer type '%.100s'",
                                 ltype ? ltype : "");
    }
    return 0;
}

static int check_index(json_t *doc, sbx_error_t *err)
{
    json_t *manifests = json_object_get(doc, "manifests");
    if (!json_is_array(manifests))
        return sbx_error_set(err, SBX_ERR_INVALID, "index without manifests");
    if (json_array_size(manifests) > MAX_INDEX_ENTRIES)
        return sbx_error_set(err, SBX_ERR_INVALID, "index with more than %d entries",
                             MAX_INDEX_ENTRIES);
    size_t i;
    json_t *m;
    const char *digest;
    json_array_foreach(manifests, i, m)
    {
        if (img_descriptor(m, &digest, NULL, err) < 0) {
            sbx_error_wrap(err, "index entry %zu", i);
            return -1;
        }
    }
    return 0;
}

json_t *img_doc_parse(const char *data, size_t len, const char *media_type, img_doc_kind_t *kind,
                      sbx_error_t *err)
{
    json_error_t jerr;
    _cleanup_json_ json_t *doc = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(doc))
        return sbx_error_set(err, SBX_ERR_INVALID, "manifest is not a JSON object"), NULL;
    json_t *version = json_object_get(doc, "schemaVersion");
    if (!json_is_integer(version) || json_integer_value(version) != 2)
        return sbx_error_set(err, SBX_ERR_INVALID, "unsupported manifest schemaVersion"), NULL;

    const char *inner = json_string_value(json_object_get(doc, "mediaType"));
    _cleanup_free_ char *outer = media_type ? bare_media_type(media_type) : NULL;
    /* A generic Content-Type says nothing; the document's own field wins.  */
    if (outer && (!*outer || strcmp(outer, "application/json") == 0 ||
                  strcmp(outer, "application/octet-stream") == 0))
        outer = (free(outer), NULL);
    if (inner && outer && strcmp(inner, outer) != 0)
        return sbx_error_set(err, SBX_ERR_INVALID, "manifest media type '%.100s' is not '%.100s'",
                             inner, outer),
               NULL;
    const char *type = inner ? inner : outer;
    if (type && in_list(type, manifest_types, ARRAY_SIZE(manifest_types)))
        *kind = IMG_DOC_MANIFEST;
    else if (type && in_list(type, index_types, ARRAY_SIZE(index_types)))
        *kind = IMG_DOC_INDEX;
    else if (type)
        return sbx_error_set(err, SBX_ERR_INVALID, "unsupported manifest type '%.100s'", type),
               NULL;
    else if (json_object_get(doc, "manifests"))
        *kind = IMG_DOC_INDEX;
    else
        *kind = IMG_DOC_MANIFEST;

    if ((*kind == IMG_DOC_MANIFEST ? check_manifest : check_index)(doc, err) < 0)
        return NULL;
    return TAKE_PTR(doc);
}

bool img_platform_fits(json_t *platform)
{
    const char *os = json_string_value(json_object_get(platform, "os"));
    const char *arch = json_string_value(json_object_get(platform, "architecture"));
    return os && arch && strcmp(os, "linux") == 0 && strcmp(arch, HOST_ARCH) == 0;
}

json_t *img_index_pick(json_t *index, sbx_error_t *err)
{
    json_t *manifests = json_object_get(index, "manifests");
    size_t i;
    json_t *m;
    json_array_foreach(manifests, i, m)
    {
        const char *type = json_string_value(json_object_get(m, "mediaType"));
        bool known = !type || in_list(type, manifest_types, ARRAY_SIZE(manifest_types)) ||
                     in_list(type, index_types, ARRAY_SIZE(index_types));
        if (known && img_platform_fits(json_object_get(m, "platform")))
            return m;
    }
    /* An index of one image that states no platform (common in layouts).  */
    if (json_array_size(manifests) == 1 &&
        !json_object_get(json_array_get(manifests, 0), "platform"))
        return json_array_get(manifests, 0);
    sbx_error_set(err, SBX_ERR_NOT_FOUND, "the image index has no linux/%s image", HOST_ARCH);
    return NULL;
}
