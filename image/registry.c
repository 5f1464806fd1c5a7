/* registry.c -- pulls images from an OCI registry with the distribution
 * API v2: manifests (OCI and Docker v2, indexes and manifest lists) and
 * blobs, anonymous bearer tokens, every byte checked against its digest.
 *
 * HTTPS always, except plain HTTP to a loopback registry when the store
 * allows insecure registries (tests).  Redirects (blob storage elsewhere)
 * are followed over HTTPS only; curl keeps our Authorization header to
 * the registry's own host.
 *
 * Every connection (registry, token realm, redirect, after any DNS answer)
 * is checked where it is made, in curl's open-socket callback: an address
 * that is not public is refused unless the store allows private
 * registries.  A client learns one thing of a pull that reached no
 * registry, IMG_UNREACHABLE, whether the address was refused, the port
 * closed or something else answered; the log has which.  */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "image/image_internal.h"

#define MAX_TOKEN_REPLY (64 * 1024)
#define MAX_TOKEN_LEN (16 * 1024)
#define MAX_ERROR_BODY 512
#define MAX_PARAM_LEN 2048

static const char MANIFEST_ACCEPT[] = "Accept: application/vnd.oci.image.index.v1+json, "
                                      "application/vnd.oci.image.manifest.v1+json, "
                                      "application/vnd.docker.distribution.manifest.list.v2+json, "
                                      "application/vnd.docker.distribution.manifest.v2+json";

typedef struct reg_ctx {
    img_store_t *s;
    const img_ref_t *ref;
    char *base; /* "https://host:port" */
    bool plain_http;
    char *token;
    CURL *curl;
    char refused[INET6_ADDRSTRLEN]; /* the last address refused, for the log */
} reg_ctx_t;

/* Where a response body goes: memory up to a bound, or a blob writer.
 * Bodies of other statuses than 200 are kept (a little) for messages.  */
typedef struct sink {
    CURL *curl;
    char *buf;
    size_t len, max;
    img_blob_writer_t *writer;
    bool failed;
    sbx_error_t err;
    char *www_auth, *content_type;
    char errbody[MAX_ERROR_BODY + 1];
    size_t errlen;
} sink_t;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- WWW-Authenticate ---- */

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

void img_challenge_done(img_challenge_t *c)
{
    free(c->realm);
    free(c->service);
    free(c->scope);
    memset(c, 0, sizeof(*c));
}

int img_challenge_parse(const char *header, img_challenge_t *out, sbx_error_t *err)
{
    memset(out, 0, sizeof(*out));
    const char *p = skip_space(header ? header : "");
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return sbx_error_set(err, SBX_ERR_INVALID, "not a Bearer challenge");
    p += 6;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *key = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
               *p == '_' || *p == '-')
            p++;
        size_t keylen = (size_t)(p - key);
        p = skip_space(p);
        if (keylen == 0 || *p != '=')
            break; /* the next challenge of a list starts here */
        p = skip_space(p + 1);
        char value[MAX_PARAM_LEN + 1];
        size_t n = 0;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (n == MAX_PARAM_LEN)
                    goto bad;
                value[n++] = *p;
            }
            if (*p != '"')
                goto bad;
            p++;
        } else {
            for (; *p && *p != ',' && *p != ' ' && *p != '\t'; p++) {
                if (n == MAX_PARAM_LEN)
                    goto bad;
                value[n++] = *p;
            }
        }
        value[n] = '\0';
        char **slot = keylen == 5 && strncasecmp(key, "realm", 5) == 0     ? &out->realm
                      : keylen == 7 && strncasecmp(key, "service", 7) == 0 ? &out->service
                      : keylen == 5 && strncasecmp(key, "scope", 5) == 0   ? &out->scope
                                                                           : NULL;
        if (slot && !*slot)
            *slot = xstrdup(value);
    }
    if (!out->realm || !*out->realm)
        goto bad;
    return 0;
bad:
    img_challenge_done(out);
    return sbx_error_set(err, SBX_ERR_INVALID, "malformed Bearer challenge");
}

/* ---- HTTP ---- */

static bool host_is_loopback(const char *host)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", host);
    size_t n = strlen(buf);
    if (buf[0] == '[' && n > 1 && buf[n - 1] == ']') {
        buf[n - 1] = '\0';
        memmove(buf, buf + 1, n - 1);
    }
    if (strcasecmp(buf, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, buf, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, buf, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* ---- addresses ---- */

bool img_addr_public(const struct sockaddr *sa)
{
    return sbx_addr_public(sa);
}

/* curl's open-socket callback: the one place every connection is made, so
 * redirects, token realms and a DNS answer that changes between lookups
 * are all checked against the address really used.  */
static curl_socket_t open_checked(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    reg_ctx_t *ctx = ud;
    (void)purpose;
    if (!ctx->s->allow_private_registries && !img_addr_public(&a->addr)) {
        const void *raw = a->family == AF_INET6
                              ? (const void *)&((struct sockaddr_in6 *)&a->addr)->sin6_addr
                              : (const void *)&((struct sockaddr_in *)&a->addr)->sin_addr;
        if (!inet_ntop(a->family, raw, ctx->refused, sizeof(ctx->refused)))
            snprintf(ctx->refused, sizeof(ctx->refused), "(family %d)", a->family);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* The host of "host", "host:port", "[v6]:port".  */
static char *registry_host(const char *registry)
{
    if (registry[0] == '[') {
        const char *end = strchr(registry, ']');
        return xstrndup(registry, end ? (size_t)(end - registry + 1) : strlen(registry));
    }
    return xstrndup(registry, strcspn(registry, ":"));
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    sink_t *k = ud;
    size_t len = size * n;
    _cleanup_free_ char *line = xstrndup(data, len);
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new response (after a redirect or 100) */
        k->www_auth = (free(k->www_auth), NULL);
        k->content_type = (free(k->content_type), NULL);
        k->errlen = 0;
        return len;
    }
    char *colon = strchr(line, ':');
    if (!colon)
        return len;
    *colon = '\0';
    const char *value = skip_space(colon + 1);
    if (strcasecmp(line, "WWW-Authenticate") == 0 &&
        (!k->www_auth || strncasecmp(value, "Bearer", 6) == 0)) {
        free(k->www_auth);
        k->www_auth = xstrdup(value);
    } else if (strcasecmp(line, "Content-Type") == 0) {
        free(k->content_type);
        k->content_type = xstrdup(value);
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    sink_t *k = ud;
    size_t len = size * n;
    long code = 0;
    curl_easy_getinfo(k->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        size_t room = MAX_ERROR_BODY - k->errlen, take = len < room ? len : room;
        memcpy(k->errbody + k->errlen, data, take);
        k->errlen += take;
        k->errbody[k->errlen] = '\0';
        return len;
    }
    if (k->writer) {
        if (img_blob_writer_write(k->writer, data, len, &k->err) < 0) {
            k->failed = true;
            return 0;
        }
        return len;
    }
    if (len > k->max - k->len) {
        sbx_error_set(&k->err, SBX_ERR_TOO_LARGE, "registry reply larger than %zu bytes", k->max);
        k->failed = true;
        return 0;
    }
    k->buf = xrealloc(k->buf, k->len + len + 1);
    memcpy(k->buf + k->len, data, len);
    k->len += len;
    k->buf[k->len] = '\0';
    return len;
}

static int sink_reset(sink_t *k, sbx_error_t *err)
{
    k->len = 0;
    k->failed = false;
    k->errlen = 0;
    return k->writer ? img_blob_writer_reset(k->writer, err) : 0;
}

static void sink_done(sink_t *k)
{
    free(k->buf);
    free(k->www_auth);
    free(k->content_type);
}

static CURLcode add_ca(CURL *curl, void *ssl_ctx, void *ca_file)
{
    X509_STORE *store = SSL_CTX_get_cert_store((SSL_CTX *)ssl_ctx);
    return X509_STORE_load_file(store, ca_file) == 1 ? CURLE_OK : CURLE_SSL_CACERT_BADFILE;
}

static void setup(reg_ctx_t *ctx, const char *url, sink_t *k, struct curl_slist *headers,
                  bool plain_http)
{
    CURL *c = ctx->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, plain_http ? "http" : "https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    /* A trickling registry must not hold a create open: slower than
     * 10 KB/s for 30 s ends a transfer, and none lasts past 30 minutes.  */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 10240L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 1800L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sandboxd/" SBX_VERSION);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, k);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, ctx);
    /* Never a proxy from the environment (http_proxy, ALL_PROXY...): the
     * address check would see the proxy, and the proxy would connect a
     * tenant's image reference to whatever private address it names.  */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    if (ctx->s->ca_file) {
        curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, add_ca);
        curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, ctx->s->ca_file);
    }
    k->curl = c;
}

/* One GET; 0 with *status set when any response arrived.  */
static int http_get(reg_ctx_t *ctx, const char *url, const char *accept, bool with_token,
                    bool plain_http, sink_t *k, long *status, sbx_error_t *err)
{
    struct curl_slist *headers = NULL;
    if (accept)
        headers = curl_slist_append(headers, accept);
    _cleanup_free_ char *auth = NULL;
    if (with_token && ctx->token) {
        auth = xasprintf("Authorization: Bearer %s", ctx->token);
        headers = curl_slist_append(headers, auth);
    }
    setup(ctx, url, k, headers, plain_http);
    ctx->refused[0] = '\0';
    CURLcode res = curl_easy_perform(ctx->curl);
    curl_slist_free_all(headers);
    if (k->failed) {
        *err = k->err;
        return -1;
    }
    if (res != CURLE_OK) {
        /* Refused, closed, filtered, not TLS, not trusted: all the same to
         * the client, or pulls would map the network behind the agent.  */
        if (ctx->refused[0])
            sbx_log(SBX_LOG_WARN, "image",
                    "pull of %s: refused to connect to %s, not a public address "
                    "(allow-private-registries allows it)",
                    ctx->ref->key, ctx->refused);
        else
            sbx_log(SBX_LOG_WARN, "image", "pull of %s: %s", ctx->ref->key,
                    curl_easy_strerror(res));
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                             "image pull from %s failed: " IMG_UNREACHABLE, ctx->ref->registry);
    }
    curl_easy_getinfo(ctx->curl, CURLINFO_RESPONSE_CODE, status);
    return 0;
}

/* A token must go into a header line: printable ASCII only.  */
static bool token_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > MAX_TOKEN_LEN)
        return false;
    for (; *t; t++)
        if (*t <= ' ' || *t >= 0x7f)
            return false;
    return true;
}

static bool realm_allowed(reg_ctx_t *ctx, const char *realm, bool *plain_http)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = false;
    if (curl_url_set(u, CURLUPART_URL, realm, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        *plain_http = strcmp(scheme, "http") == 0;
        ok = strcmp(scheme, "https") == 0 ||
             (*plain_http && ctx->s->allow_insecure_registry && host_is_loopback(host));
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

/* Answer a Bearer challenge: ask the realm for an anonymous token.  */
static int fetch_token(reg_ctx_t *ctx, const char *challenge, sbx_error_t *err)
{
    img_challenge_t ch;
    if (img_challenge_parse(challenge, &ch, err) < 0)
        return -1;
    int ret = -1;
    bool plain_http = false;
    _cleanup_free_ char *default_scope = xasprintf("repository:%s:pull", ctx->ref->repository);
    char *service = ch.service ? curl_easy_escape(ctx->curl, ch.service, 0) : NULL;
    char *scope = curl_easy_escape(ctx->curl, ch.scope ? ch.scope : default_scope, 0);
    _cleanup_free_ char *url =
        xasprintf("%s%s%s%s%sscope=%s", ch.realm, strchr(ch.realm, '?') ? "&" : "?",
                  service ? "service=" : "", service ? service : "", service ? "&" : "", scope);
    sink_t k = {.max = MAX_TOKEN_REPLY};
    long status = 0;
    json_t *j = NULL;
    const char *token = NULL;
    if (!realm_allowed(ctx, ch.realm, &plain_http)) {
        sbx_error_set(err, SBX_ERR_FORBIDDEN, "registry %s sends us to an untrusted token realm",
                      ctx->ref->registry);
        goto out;
    }
    if (http_get(ctx, url, NULL, false, plain_http, &k, &status, err) < 0)
        goto out;
    if (status != 200) {
        sbx_error_set(err, status == 401 || status == 403 ? SBX_ERR_FORBIDDEN : SBX_ERR_UNAVAILABLE,
                      "token service of %s answered %ld", ctx->ref->registry, status);
        goto out;
    }
    j = json_loadb(k.buf ? k.buf : "", k.len, 0, NULL);
    token = json_string_value(json_object_get(j, "token"));
    if (!token)
        token = json_string_value(json_object_get(j, "access_token"));
    if (!token || !token_valid(token)) {
        sbx_error_set(err, SBX_ERR_UNAVAILABLE, "token service of %s gave no usable token",
                      ctx->ref->registry);
        goto out;
    }
    free(ctx->token);
    ctx->token = xstrdup(token);
    ret = 0;
out:
    json_decref(j);
    sink_done(&k);
    curl_free(service);
    curl_free(scope);
    img_challenge_done(&ch);
    return ret;
}

static int status_error(reg_ctx_t *ctx, long status, const char *what, const sink_t *k,
                        sbx_error_t *err)
{
    sbx_code_t code = status == 404                    ? SBX_ERR_NOT_FOUND
                      : status == 401 || status == 403 ? SBX_ERR_FORBIDDEN
                      : status == 400                  ? SBX_ERR_INVALID
                                                       : SBX_ERR_UNAVAILABLE;
    /* Of the body only a distribution-API error code is passed on
     * ("MANIFEST_UNKNOWN"): whatever else answered keeps its words to the
     * agent's log.  */
    char detail[64] = "";
    _cleanup_json_ json_t *j = json_loadb(k->errbody, k->errlen, 0, NULL);
    const char *c =
        json_string_value(json_object_get(json_array_get(json_object_get(j, "errors"), 0), "code"));
    size_t n = c ? strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") : 0;
    if (c && n > 0 && n == strlen(c) && n < sizeof(detail))
        memcpy(detail, c, n + 1);
    if (!detail[0] && k->errlen)
        sbx_log(SBX_LOG_INFO, "image", "pull of %s: %s: HTTP %ld: %.*s", ctx->ref->key, what,
                status, (int)k->errlen, k->errbody);
    return sbx_error_set(err, code, "registry %s: %s: HTTP %ld%s%s", ctx->ref->registry, what,
                         status, detail[0] ? " " : "", detail);
}

/* GET a registry URL, answering one Bearer challenge on the way.  */
static int reg_get(reg_ctx_t *ctx, const char *path, const char *accept, sink_t *k,
                   const char *what, sbx_error_t *err)
{
    _cleanup_free_ char *url = xasprintf("%s/v2/%s", ctx->base, path);
    bool fetched_token = false;
    for (;;) {
        long status = 0;
        if (http_get(ctx, url, accept, true, ctx->plain_http, k, &status, err) < 0)
            return -1;
        if (status == 200)
            return 0;
        if (status == 401 && !fetched_token && k->www_auth &&
            strncasecmp(skip_space(k->www_auth), "Bearer", 6) == 0) {
            _cleanup_free_ char *challenge = xstrdup(k->www_auth);
            if (fetch_token(ctx, challenge, err) < 0 || sink_reset(k, err) < 0)
                return -1;
            fetched_token = true;
            continue;
        }
        return status_error(ctx, status, what, k, err);
    }
}

/* ---- pulling ---- */

/* GET a manifest or index; checks it against `expect` (a digest, when the
 * caller knows it) and files it in the store.  */
static json_t *fetch_manifest(reg_ctx_t *ctx, const char *reference, const char *expect,
                              char digest[IMG_DIGEST_LEN], img_doc_kind_t *kind, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/manifests/%s", ctx->ref->repository, reference);
    sink_t k = {.max = IMG_MAX_MANIFEST_BYTES};
    json_t *doc = NULL;
    if (reg_get(ctx, path, MANIFEST_ACCEPT, &k, "manifest", err) < 0)
        goto out;
    img_sha256_digest(k.buf ? k.buf : "", k.len, digest);
    if (expect && strcmp(expect, digest) != 0) {
        sbx_error_set(err, SBX_ERR_INVALID, "manifest digest mismatch: expected %s, got %s", expect,
                      digest);
        goto out;
    }
    doc = img_doc_parse(k.buf ? k.buf : "", k.len, k.content_type, kind, err);
    if (doc && img_blob_put_mem(ctx->s, digest, k.buf ? k.buf : "", k.len, err) < 0)
        doc = (json_decref(doc), NULL);
out:
    sink_done(&k);
    return doc;
}

static int fetch_blob(reg_ctx_t *ctx, json_t *desc, int64_t max, sbx_error_t *err)
{
    const char *digest;
    int64_t size;
    if (img_descriptor(desc, &digest, &size, err) < 0)
        return -1;
    if (img_blob_exists(ctx->s, digest))
        return 0;
    if (size > max)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "blob %s is larger than %lld bytes", digest,
                             (long long)max);
    img_blob_writer_t *w = img_blob_writer_new(ctx->s, digest, size, err);
    if (!w)
        return -1;
    _cleanup_free_ char *path = xasprintf("%s/blobs/%s", ctx->ref->repository, digest);
    sink_t k = {.writer = w};
    int ret = reg_get(ctx, path, NULL, &k, digest, err);
    if (ret == 0)
        ret = img_blob_writer_commit(w, err);
    sink_done(&k);
    img_blob_writer_free(w);
    return ret;
}

/* The blobs of a manifest the store lacks must fit in it, and no layer may
 * be past the layer bound, before a byte of them is fetched.  */
static int reserve_blobs(reg_ctx_t *ctx, json_t *manifest, sbx_error_t *err)
{
    uint64_t need = 0;
    json_t *layers = json_object_get(manifest, "layers");
    for (size_t i = 0; i <= json_array_size(layers); i++) {
        json_t *desc = i == 0 ? json_object_get(manifest, "config") : json_array_get(layers, i - 1);
        const char *digest;
        int64_t size;
        if (img_descriptor(desc, &digest, &size, err) < 0)
            return -1;
        if (i > 0 && (uint64_t)size > ctx->s->max_layer_bytes)
            return sbx_error_set(err, SBX_ERR_TOO_LARGE,
                                 "layer %s is %lld bytes, more than a layer may be (%llu, "
                                 "max-layer-size)",
                                 digest, (long long)size,
                                 (unsigned long long)ctx->s->max_layer_bytes);
        if (!img_blob_exists(ctx->s, digest))
            need += (uint64_t)size;
    }
    return img_store_reserve(ctx->s, need, err);
}

static int pull(reg_ctx_t *ctx, char **manifest_digest, sbx_error_t *err)
{
    const img_ref_t *ref = ctx->ref;
    char digest[IMG_DIGEST_LEN];
    img_doc_kind_t kind;
    _cleanup_json_ json_t *doc =
        fetch_manifest(ctx, ref->digest ? ref->digest : ref->tag, ref->digest, digest, &kind, err);
    if (!doc)
        return -1;
    if (kind == IMG_DOC_INDEX) {
        json_t *pick = img_index_pick(doc, err);
        const char *want;
        int64_t size;
        if (!pick || img_descriptor(pick, &want, &size, err) < 0)
            return -1;
        _cleanup_free_ char *want_copy = xstrdup(want);
        json_decref(doc);
        doc = fetch_manifest(ctx, want_copy, want_copy, digest, &kind, err);
        if (!doc)
            return -1;
        if (kind != IMG_DOC_MANIFEST)
            return sbx_error_set(err, SBX_ERR_INVALID, "nested image index in %s", ref->key);
    }
    if (reserve_blobs(ctx, doc, err) < 0 ||
        fetch_blob(ctx, json_object_get(doc, "config"), IMG_MAX_CONFIG_BYTES, err) < 0)
        return -1;
    size_t i;
    json_t *layer;
    int64_t max_layer =
        ctx->s->max_layer_bytes > INT64_MAX ? INT64_MAX : (int64_t)ctx->s->max_layer_bytes;
    json_array_foreach(json_object_get(doc, "layers"), i, layer)
    {
        if (fetch_blob(ctx, layer, max_layer, err) < 0)
            return -1;
    }
    *manifest_digest = xstrdup(digest);
    return 0;
}

int img_registry_pull(img_store_t *s, const img_ref_t *ref, char **manifest_digest,
                      sbx_error_t *err)
{
    if (!ref->registry)
        return sbx_error_set(err, SBX_ERR_INVALID, "'%s' names no registry", ref->key);
    pthread_once(&curl_once, curl_init_once);
    _cleanup_free_ char *host = registry_host(ref->registry);
    reg_ctx_t ctx = {.s = s, .ref = ref};
    ctx.plain_http = s->allow_insecure_registry && host_is_loopback(host);
    ctx.base = xasprintf("%s://%s", ctx.plain_http ? "http" : "https", ref->registry);
    ctx.curl = curl_easy_init();
    if (!ctx.curl)
        abort();
    int64_t start = sbx_monotonic_ms();
    int ret = pull(&ctx, manifest_digest, err);
    if (ret == 0)
        sbx_log(SBX_LOG_INFO, "image", "pulled %s (%s) in %lld ms", ref->key, *manifest_digest,
                (long long)(sbx_monotonic_ms() - start));
    curl_easy_cleanup(ctx.curl);
    free(ctx.base);
    free(ctx.token);
    return ret;
}
