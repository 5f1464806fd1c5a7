/* ref.c -- image references: "host[:port]/repo[:tag][@sha256:hex]" parsed
 * and checked with the grammar of the distribution project.  */
#include <string.h>

#include "image/image_internal.h"

#define MAX_REF_LEN 512
#define MAX_NAME_LEN 255
#define MAX_TAG_LEN 128

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* path-component := [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*  */
static bool path_component_valid(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return false;
    while (i < n) {
        if (is_lower_alnum(s[i])) {
            i++;
            continue;
        }
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i >= n || !is_lower_alnum(s[i]))
            return false;
    }
    return true;
}

static bool repository_valid(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > MAX_NAME_LEN)
        return false;
    const char *p = s;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (!path_component_valid(p, n))
            return false;
        if (!slash)
            return true;
        p = slash + 1;
    }
}

/* host := label ('.' label)*, label := [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?,
 * or a bracketed IPv6 address; then an optional ":port".  */
static bool host_valid(const char *s)
{
    const char *p = s, *port = NULL;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (!end || end == p + 1)
            return false;
        for (const char *q = p + 1; q < end; q++)
            if (!strchr("0123456789abcdefABCDEF:.", *q))
                return false;
        if (end[1] != '\0' && end[1] != ':')
            return false;
        port = end[1] == ':' ? end + 2 : NULL;
        if (end[1] == ':' && !*port)
            return false;
    } else {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if (n == 0)
            return false;
        size_t label = 0;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (c == '.') {
                if (label == 0 || p[i - 1] == '-')
                    return false;
                label = 0;
            } else if (is_alnum(c) || (c == '-' && label > 0)) {
                label++;
            } else {
                return false;
            }
        }
        if (label == 0 || p[n - 1] == '-')
            return false;
        if (colon) {
            port = colon + 1;
            if (!*port)
                return false;
        }
    }
    if (port) {
        if (strlen(port) > 5)
            return false;
        for (const char *q = port; *q; q++)
            if (*q < '0' || *q > '9')
                return false;
        if (atoi(port) < 1 || atoi(port) > 65535)
            return false;
    }
    return true;
}

/* tag := [\w][\w.-]{0,127}  */
static bool tag_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_TAG_LEN || !(is_alnum(s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(is_alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

/* The first component names a registry when it could not be a repository
 * path component: it has a dot or a port, is "localhost", or has capitals.  */
static bool looks_like_host(const char *s, size_t n)
{
    if (n == 9 && strncmp(s, "localhost", 9) == 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '.' || s[i] == ':' || s[i] == '[' || (s[i] >= 'A' && s[i] <= 'Z'))
            return true;
    return false;
}

void img_ref_done(img_ref_t *r)
{
    free(r->registry);
    free(r->repository);
    free(r->tag);
    free(r->digest);
    free(r->key);
    memset(r, 0, sizeof(*r));
}

int img_ref_parse_full(const char *ref, img_ref_t *out, sbx_error_t *err)
{
    memset(out, 0, sizeof(*out));
    if (!ref || !*ref)
        return sbx_error_set(err, SBX_ERR_INVALID, "empty image reference");
    if (strlen(ref) > MAX_REF_LEN)
        return sbx_error_set(err, SBX_ERR_INVALID, "image reference longer than %d bytes",
                             MAX_REF_LEN);
    for (const char *p = ref; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return sbx_error_set(err, SBX_ERR_INVALID, "image reference has a bad character");

    _cleanup_free_ char *rest = xstrdup(ref);
    char *last_slash, *colon, *slash;
    const char *repo;
    char *at = strchr(rest, '@');
    if (at) {
        *at = '\0';
        if (!img_digest_valid(at + 1))
            goto bad;
        out->digest = xstrdup(at + 1);
    }
    last_slash = strrchr(rest, '/');
    colon = strrchr(rest, ':');
    if (colon && (!last_slash || colon > last_slash)) {
        *colon = '\0';
        if (!tag_valid(colon + 1))
            goto bad;
        if (!out->digest) /* with both, the digest is what counts */
            out->tag = xstrdup(colon + 1);
    }
    if (!out->digest && !out->tag)
        out->tag = xstrdup("latest");

    slash = strchr(rest, '/');
    repo = rest;
    if (slash && looks_like_host(rest, (size_t)(slash - rest))) {
        *slash = '\0';
        if (!host_valid(rest))
            goto bad;
        out->registry = xstrdup(rest);
        sbx_str_lower(out->registry);
        repo = slash + 1;
    }
    if (!repository_valid(repo))
        goto bad;
    out->repository = xstrdup(repo);

    out->key =
        xasprintf("%s%s%s%s%s", out->registry ? out->registry : "", out->registry ? "/" : "",
                  out->repository, out->digest ? "@" : ":", out->digest ? out->digest : out->tag);
    return 0;
bad:
    img_ref_done(out);
    return sbx_error_set(err, SBX_ERR_INVALID, "invalid image reference '%s'", ref);
}

int img_ref_parse(const char *ref, char **registry, char **repository, char **tag_or_digest,
                  sbx_error_t *err)
{
    img_ref_t r;
    if (img_ref_parse_full(ref, &r, err) < 0)
        return -1;
    *registry = TAKE_PTR(r.registry);
    *repository = TAKE_PTR(r.repository);
    *tag_or_digest = r.digest ? TAKE_PTR(r.digest) : TAKE_PTR(r.tag);
    img_ref_done(&r);
    return 0;
}
