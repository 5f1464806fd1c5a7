/* test_image_registry.c -- pulling images: from a real registry (Debian's
 * docker-registry, filled over the distribution API by the test), and from
 * a small in-test registry that demands bearer tokens and can lie.  */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "tests/fixtures/image_layout.h"
#include "tests/testutil.h"

#define REGISTRY_BIN "/usr/bin/docker-registry"

static char *tmp;

static void setup(void)
{
    tmp = tu_tmpdir("sbx-imgreg");
    ck_assert_ptr_nonnull(tmp);
}

static void teardown(void)
{
    tu_rmdir(tmp);
    free(tmp);
}

static img_store_t *open_store_cfg(const char *name, img_config_t cfg)
{
    _cleanup_free_ char *dir = xasprintf("%s/%s", tmp, name);
    cfg.store_dir = dir;
    sbx_error_t err = {0};
    img_store_t *s = img_store_open(&cfg, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

/* The registries of these tests are on loopback: allowed by the flag.  */
static img_store_t *open_store(const char *name, bool insecure)
{
    img_config_t cfg = {.allow_insecure_registry = insecure, .allow_private_registries = true};
    return open_store_cfg(name, cfg);
}

static char *slurp(const char *dir, const char *rel)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
    char *data = NULL;
    size_t len;
    sbx_error_t err = {0};
    ck_assert_msg(sbx_read_file(p, &data, &len, &err) == 0, "%s", err.msg);
    return data;
}

/* Bytes of a blob of a test layout.  */
static char *layout_blob(const char *layout, const char *digest, size_t *len)
{
    _cleanup_free_ char *p = xasprintf("%s/blobs/sha256/%s", layout, digest + 7);
    char *data = NULL;
    ck_assert_int_eq(sbx_read_file(p, &data, len, NULL), 0);
    return data;
}

/* ---- the real registry ---- */

typedef struct registry {
    pid_t pid;
    int port;
    char *base, *data_dir;
} registry_t;

static void registry_start(registry_t *r)
{
    ck_assert_msg(access(REGISTRY_BIN, X_OK) == 0, "%s missing (scripts/install-deps.sh --test)",
                  REGISTRY_BIN);
    r->port = tu_free_port();
    r->data_dir = xasprintf("%s/registry-data", tmp);
    r->base = xasprintf("http://127.0.0.1:%d", r->port);
    _cleanup_free_ char *config = xasprintf("%s/registry.yml", tmp);
    _cleanup_free_ char *yaml = xasprintf("version: 0.1\n"
                                          "log:\n  level: warn\n"
                                          "storage:\n  filesystem:\n    rootdirectory: %s\n"
                                          "http:\n  addr: 127.0.0.1:%d\n",
                                          r->data_dir, r->port);
    tl_write(config, yaml, strlen(yaml));
    _cleanup_free_ char *log = xasprintf("%s/registry.log", tmp);
    char *argv[] = {REGISTRY_BIN, "serve", config, NULL};
    r->pid = tu_spawn(argv, NULL, log);
    ck_assert_msg(tu_wait_port(r->port, 15000), "registry did not start");
}

static void registry_stop(registry_t *r)
{
    tu_stop(r->pid, 5000);
    free(r->base);
    free(r->data_dir);
}

static void push_blob(registry_t *r, const char *repo, const char *layout, const char *digest)
{
    size_t len;
    _cleanup_free_ char *data = layout_blob(layout, digest, &len);
    _cleanup_free_ char *url = xasprintf("%s/v2/%s/blobs/uploads/", r->base, repo);
    tu_response_t res;
    ck_assert_int_eq(tu_http("POST", url, NULL, &res), 0);
    ck_assert_int_eq(res.status, 202);
    _cleanup_free_ char *location = tu_header(&res, "Location");
    tu_response_free(&res);
    ck_assert_ptr_nonnull(location);
    _cleanup_free_ char *put = xasprintf("%s%s%sdigest=%s", location[0] == '/' ? r->base : "",
                                         location, strchr(location, '?') ? "&" : "?", digest);
    tu_request_opts_t o = {
        .body = data, .body_len = len, .content_type = "application/octet-stream"};
    ck_assert_int_eq(tu_http("PUT", put, &o, &res), 0);
    ck_assert_msg(res.status == 201, "blob push: %ld %s", res.status, res.body);
    tu_response_free(&res);
}

static void push_manifest(registry_t *r, const char *repo, const char *ref, const char *layout,
                          json_t *desc)
{
    const char *digest = json_string_value(json_object_get(desc, "digest"));
    size_t len;
    _cleanup_free_ char *data = layout_blob(layout, digest, &len);
    _cleanup_free_ char *url = xasprintf("%s/v2/%s/manifests/%s", r->base, repo, ref);
    tu_request_opts_t o = {.body = data,
                           .body_len = len,
                           .content_type = json_string_value(json_object_get(desc, "mediaType"))};
    tu_response_t res;
    ck_assert_int_eq(tu_http("PUT", url, &o, &res), 0);
    ck_assert_msg(res.status == 201, "manifest push: %ld %s", res.status, res.body);
    tu_response_free(&res);
}

/* Push the config and layers of a manifest, then the manifest.  */
static void push_image(registry_t *r, const char *repo, const char *ref, const char *layout,
                       json_t *mdesc)
{
    size_t len;
    _cleanup_free_ char *text =
        layout_blob(layout, json_string_value(json_object_get(mdesc, "digest")), &len);
    _cleanup_json_ json_t *m = json_loadb(text, len, 0, NULL);
    push_blob(r, repo, layout,
              json_string_value(json_object_get(json_object_get(m, "config"), "digest")));
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(m, "layers"), i, l)
        push_blob(r, repo, layout, json_string_value(json_object_get(l, "digest")));
    push_manifest(r, repo, ref, layout, mdesc);
}

static json_t *one_file_image(const char *layout, const char *path, const char *content,
                              tl_filter_t filter)
{
    const tl_entry_t e[] = {{'d', "etc", NULL, 0}, {'f', path, content, 0}};
    return tl_manifest(layout, json_pack("[o]", tl_layer(layout, e, 2, filter)));
}

START_TEST(test_pull_from_registry)
{
    registry_t r;
    registry_start(&r);
    _cleanup_free_ char *layout = xasprintf("%s/layout", tmp);
    tl_init(layout);
    json_t *m = one_file_image(layout, "etc/greeting", "pulled over http\n", TL_GZIP);
    push_image(&r, "test/img", "v1", layout, m);

    img_store_t *s = open_store("store", true);
    _cleanup_free_ char *ref = xasprintf("127.0.0.1:%d/test/img:v1", r.port);
    sbx_error_t err = {0};
    char *root = NULL, *digest = NULL;
    ck_assert_msg(img_resolve(s, ref, &root, &digest, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(digest, json_string_value(json_object_get(m, "digest")));
    _cleanup_free_ char *greeting = slurp(root, "etc/greeting");
    ck_assert_str_eq(greeting, "pulled over http\n");
    ck_assert_uint_eq(img_store_unpack_count(s), 1);

    /* By digest: the same image, nothing new unpacked.  */
    _cleanup_free_ char *by_digest = xasprintf("127.0.0.1:%d/test/img@%s", r.port, digest);
    char *root2 = NULL, *digest2 = NULL;
    ck_assert_msg(img_resolve(s, by_digest, &root2, &digest2, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(root2, root);
    ck_assert_uint_eq(img_store_unpack_count(s), 1);
    free(root), free(digest), free(root2), free(digest2);

    /* A multi-platform index: this host's image is the one pulled.  */
    json_t *arm = tl_platform(one_file_image(layout, "etc/arch", "arm64", TL_ZSTD), "arm64");
    json_t *amd = tl_platform(one_file_image(layout, "etc/arch", "amd64", TL_ZSTD), "amd64");
    push_image(&r, "test/multi", json_string_value(json_object_get(arm, "digest")), layout, arm);
    push_image(&r, "test/multi", json_string_value(json_object_get(amd, "digest")), layout, amd);
    json_t *index =
        tl_json_blob(layout, "application/vnd.oci.image.index.v1+json",
                     json_pack("{s:i,s:s,s:[O,O]}", "schemaVersion", 2, "mediaType",
                               "application/vnd.oci.image.index.v1+json", "manifests", arm, amd));
    push_manifest(&r, "test/multi", "latest", layout, index);
    _cleanup_free_ char *multi = xasprintf("127.0.0.1:%d/test/multi", r.port);
    ck_assert_msg(img_resolve(s, multi, &root, &digest, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(digest, json_string_value(json_object_get(amd, "digest")));
    _cleanup_free_ char *arch = slurp(root, "etc/arch");
    ck_assert_str_eq(arch, "amd64");
    free(root), free(digest);

    /* Unknown tag and unknown repository.  */
    _cleanup_free_ char *missing = xasprintf("127.0.0.1:%d/test/img:nope", r.port);
    ck_assert_int_eq(img_resolve(s, missing, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_NOT_FOUND, "%d %s", err.code, err.msg);
    _cleanup_free_ char *norepo = xasprintf("127.0.0.1:%d/no/such:v1", r.port);
    ck_assert_int_eq(img_resolve(s, norepo, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_NOT_FOUND, "%d %s", err.code, err.msg);
    img_store_close(s);

    /* Without allow_insecure_registry the store speaks HTTPS only.  */
    img_store_t *strict = open_store("strict", false);
    ck_assert_int_eq(img_resolve(strict, ref, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_UNAVAILABLE, "%d %s", err.code, err.msg);
    img_store_close(strict);

    /* A registry that serves bytes other than the ones pushed: the layer
     * on its disk is altered, and a fresh store refuses it.  */
    img_store_t *fresh = open_store("fresh", true);
    size_t mlen;
    _cleanup_free_ char *mtext =
        layout_blob(layout, json_string_value(json_object_get(m, "digest")), &mlen);
    _cleanup_json_ json_t *mdoc = json_loadb(mtext, mlen, 0, NULL);
    const char *ldigest = json_string_value(
        json_object_get(json_array_get(json_object_get(mdoc, "layers"), 0), "digest"));
    _cleanup_free_ char *on_disk = xasprintf("%s/docker/registry/v2/blobs/sha256/%.2s/%s/data",
                                             r.data_dir, ldigest + 7, ldigest + 7);
    size_t blen;
    _cleanup_free_ char *bytes = NULL;
    ck_assert_int_eq(sbx_read_file(on_disk, &bytes, &blen, NULL), 0);
    bytes[blen / 2] ^= 0x55;
    tl_write(on_disk, bytes, blen);
    ck_assert_int_eq(img_resolve(fresh, ref, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_INVALID && strstr(err.msg, "digest mismatch"), "%d %s",
                  err.code, err.msg);
    img_store_close(fresh);

    json_decref(m);
    json_decref(arm);
    json_decref(amd);
    json_decref(index);
    registry_stop(&r);
}
END_TEST

/* ---- a registry that wants bearer tokens ---- */

#define FAKE_TOKEN "tok-3f9a"

typedef struct route {
    char *path, *type, *body;
    size_t len;
} route_t;

typedef struct fake {
    int fd, port;
    pthread_t thread;
    volatile bool stop;
    char *realm;      /* what the challenge names */
    int token_status; /* what the token service answers */
    route_t routes[16];
    size_t nroutes;
    pthread_mutex_t lock;
    int token_requests, unauthorized, manifest_hits;
    char last_token_query[1024];
} fake_t;

static void fake_route(fake_t *f, const char *path, const char *type, const char *body, size_t len)
{
    ck_assert_uint_lt(f->nroutes, ARRAY_SIZE(f->routes));
    route_t *r = &f->routes[f->nroutes++];
    r->path = xstrdup(path);
    r->type = xstrdup(type);
    r->body = xmalloc(len + 1);
    memcpy(r->body, body, len);
    r->len = len;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        data += n, len -= (size_t)n;
    }
}

static void reply(int fd, int status, const char *extra, const char *type, const char *body,
                  size_t len)
{
    _cleanup_free_ char *head =
        xasprintf("HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                  "Connection: close\r\n\r\n",
                  status, type, len, extra ? extra : "");
    send_all(fd, head, strlen(head));
    send_all(fd, body, len);
}

static void serve_one(fake_t *f, int fd)
{
    char req[16384] = "";
    size_t n = 0;
    while (n < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t r = recv(fd, req + n, sizeof(req) - 1 - n, 0);
        if (r <= 0)
            return;
        n += (size_t)r;
        req[n] = '\0';
    }
    char method[8], target[2048];
    if (sscanf(req, "%7s %2047s", method, target) != 2)
        return;
    bool authorized = strcasestr(req, "\r\nAuthorization: Bearer " FAKE_TOKEN "\r\n") != NULL;
    pthread_mutex_lock(&f->lock);
    if (sbx_str_has_prefix(target, "/token")) {
        f->token_requests++;
        snprintf(f->last_token_query, sizeof(f->last_token_query), "%s", target);
        pthread_mutex_unlock(&f->lock);
        const char *ok = "{\"token\":\"" FAKE_TOKEN "\",\"expires_in\":300}";
        if (f->token_status == 200)
            reply(fd, 200, NULL, "application/json", ok, strlen(ok));
        else
            reply(fd, f->token_status, NULL, "application/json", "{}", 2);
        return;
    }
    if (!authorized) {
        f->unauthorized++;
        pthread_mutex_unlock(&f->lock);
        _cleanup_free_ char *challenge =
            xasprintf("WWW-Authenticate: Bearer realm=\"%s\",service=\"fake-registry\","
                      "scope=\"repository:auth/img:pull\"\r\n",
                      f->realm);
        const char *body = "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}";
        reply(fd, 401, challenge, "application/json", body, strlen(body));
        return;
    }
    if (strstr(target, "/manifests/"))
        f->manifest_hits++;
    pthread_mutex_unlock(&f->lock);
    for (size_t i = 0; i < f->nroutes; i++) {
        if (strcmp(f->routes[i].path, target) == 0) {
            reply(fd, 200, NULL, f->routes[i].type, f->routes[i].body, f->routes[i].len);
            return;
        }
    }
    reply(fd, 404, NULL, "application/json", "{\"errors\":[]}", 13);
}

static void *fake_main(void *arg)
{
    fake_t *f = arg;
    while (!f->stop) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept4(f->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve_one(f, c);
        close(c);
    }
    return NULL;
}

static void fake_start(fake_t *f)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    f->token_status = 200;
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    ck_assert_int_eq(bind(f->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(f->fd, 16), 0);
    ck_assert_int_eq(getsockname(f->fd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    f->realm = xasprintf("http://127.0.0.1:%d/token", f->port);
    pthread_create(&f->thread, NULL, fake_main, f);
}

static void fake_stop(fake_t *f)
{
    f->stop = true;
    pthread_join(f->thread, NULL);
    close(f->fd);
    for (size_t i = 0; i < f->nroutes; i++) {
        free(f->routes[i].path);
        free(f->routes[i].type);
        free(f->routes[i].body);
    }
    free(f->realm);
    pthread_mutex_destroy(&f->lock);
}

/* Serve a layout's image under /v2/<repo>/: manifest by tag and digest,
 * config and layers.  */
static void fake_serve_image(fake_t *f, const char *repo, const char *tag, const char *layout,
                             json_t *mdesc)
{
    const char *md = json_string_value(json_object_get(mdesc, "digest"));
    size_t len;
    _cleanup_free_ char *text = layout_blob(layout, md, &len);
    const char *type = json_string_value(json_object_get(mdesc, "mediaType"));
    _cleanup_free_ char *by_tag = xasprintf("/v2/%s/manifests/%s", repo, tag);
    _cleanup_free_ char *by_digest = xasprintf("/v2/%s/manifests/%s", repo, md);
    fake_route(f, by_tag, type, text, len);
    fake_route(f, by_digest, type, text, len);
    _cleanup_json_ json_t *m = json_loadb(text, len, 0, NULL);
    json_t *blobs = json_array();
    json_array_append(blobs, json_object_get(m, "config"));
    json_array_extend(blobs, json_object_get(m, "layers"));
    size_t i;
    json_t *b;
    json_array_foreach(blobs, i, b)
    {
        const char *d = json_string_value(json_object_get(b, "digest"));
        size_t blen;
        _cleanup_free_ char *bytes = layout_blob(layout, d, &blen);
        _cleanup_free_ char *path = xasprintf("/v2/%s/blobs/%s", repo, d);
        fake_route(f, path, "application/octet-stream", bytes, blen);
    }
    json_decref(blobs);
}

typedef struct racer {
    img_store_t *s;
    const char *ref;
    char *root;
    int ret;
    sbx_error_t err;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    char *digest = NULL;
    r->ret = img_resolve(r->s, r->ref, &r->root, &digest, &r->err);
    free(digest);
    return NULL;
}

START_TEST(test_pull_with_bearer_token)
{
    fake_t f;
    fake_start(&f);
    _cleanup_free_ char *layout = xasprintf("%s/layout", tmp);
    tl_init(layout);
    json_t *m = one_file_image(layout, "etc/secret", "behind a token\n", TL_GZIP);
    fake_serve_image(&f, "auth/img", "v1", layout, m);

    img_store_t *s = open_store("store", true);
    _cleanup_free_ char *ref = xasprintf("127.0.0.1:%d/auth/img:v1", f.port);
    sbx_error_t err = {0};
    char *root = NULL, *digest = NULL;
    ck_assert_msg(img_resolve(s, ref, &root, &digest, &err) == 0, "%s", err.msg);
    _cleanup_free_ char *secret = slurp(root, "etc/secret");
    ck_assert_str_eq(secret, "behind a token\n");
    free(root), free(digest);
    /* One token for the whole pull, asked for with the challenge's terms.  */
    ck_assert_int_eq(f.token_requests, 1);
    ck_assert_int_eq(f.unauthorized, 1);
    ck_assert_msg(strstr(f.last_token_query, "service=fake-registry"), "%s", f.last_token_query);
    ck_assert_msg(strstr(f.last_token_query, "scope=repository%3Aauth%2Fimg%3Apull"), "%s",
                  f.last_token_query);
    img_store_close(s);

    /* Callers racing for an image that is not there yet: one pull, one
     * unpack, the same tree for all.  */
    s = open_store("race", true);
    f.manifest_hits = 0;
    racer_t racers[5];
    pthread_t threads[5];
    for (int i = 0; i < 5; i++) {
        racers[i] = (racer_t){.s = s, .ref = ref};
        pthread_create(&threads[i], NULL, race, &racers[i]);
    }
    for (int i = 0; i < 5; i++) {
        pthread_join(threads[i], NULL);
        ck_assert_msg(racers[i].ret == 0, "%s", racers[i].err.msg);
        ck_assert_str_eq(racers[i].root, racers[0].root);
    }
    for (int i = 0; i < 5; i++)
        free(racers[i].root);
    ck_assert_int_eq(f.manifest_hits, 1);
    ck_assert_uint_eq(img_store_unpack_count(s), 1);
    img_store_close(s);

    /* The token service says no.  */
    f.token_status = 401;
    s = open_store("denied", true);
    ck_assert_int_eq(img_resolve(s, ref, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_FORBIDDEN, "%d %s", err.code, err.msg);
    img_store_close(s);
    f.token_status = 200;

    /* A challenge that sends us over plain HTTP to another host.  */
    free(f.realm);
    f.realm = xstrdup("http://token.example.com/token");
    s = open_store("realm", true);
    ck_assert_int_eq(img_resolve(s, ref, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_FORBIDDEN && strstr(err.msg, "untrusted"), "%d %s", err.code,
                  err.msg);
    img_store_close(s);
    free(f.realm);
    f.realm = xasprintf("http://127.0.0.1:%d/token", f.port);

    /* A registry that answers a digest with other bytes.  */
    json_t *other = one_file_image(layout, "etc/other", "other\n", TL_PLAIN);
    size_t len;
    _cleanup_free_ char *other_text =
        layout_blob(layout, json_string_value(json_object_get(other, "digest")), &len);
    _cleanup_free_ char *lie = xasprintf("/v2/auth/img/manifests/sha256:%064d", 7);
    fake_route(&f, lie, "application/vnd.oci.image.manifest.v1+json", other_text, len);
    _cleanup_free_ char *lie_ref = xasprintf("127.0.0.1:%d/auth/img@sha256:%064d", f.port, 7);
    s = open_store("lie", true);
    ck_assert_int_eq(img_resolve(s, lie_ref, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_INVALID && strstr(err.msg, "digest mismatch"), "%d %s",
                  err.code, err.msg);

    /* And a layer whose bytes are not the ones the manifest names.  */
    json_t *bad = one_file_image(layout, "etc/bad", "bad\n", TL_GZIP);
    fake_serve_image(&f, "auth/bad", "v1", layout, bad);
    for (size_t i = 0; i < f.nroutes; i++)
        if (strstr(f.routes[i].path, "/v2/auth/bad/blobs/") && f.routes[i].len > 100)
            f.routes[i].body[f.routes[i].len - 30] ^= 1;
    _cleanup_free_ char *bad_ref = xasprintf("127.0.0.1:%d/auth/bad:v1", f.port);
    ck_assert_int_eq(img_resolve(s, bad_ref, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_INVALID, "%d %s", err.code, err.msg);
    img_store_close(s);

    json_decref(m);
    json_decref(other);
    json_decref(bad);
    fake_stop(&f);
}
END_TEST

/* ---- address policy and bounds ---- */

/* A registry at a loopback (or any non-public) address is refused before
 * a byte is sent, unless the store allows private registries.  */
START_TEST(test_private_registry_refused)
{
    fake_t f;
    fake_start(&f);
    _cleanup_free_ char *layout = xasprintf("%s/layout", tmp);
    tl_init(layout);
    json_t *m = one_file_image(layout, "etc/x", "x\n", TL_GZIP);
    fake_serve_image(&f, "auth/img", "v1", layout, m);
    img_config_t cfg = {.allow_insecure_registry = true};
    img_store_t *s = open_store_cfg("policy", cfg);
    const char *names[] = {"127.0.0.1", "localhost", "[::ffff:127.0.0.1]"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        _cleanup_free_ char *ref = xasprintf("%s:%d/auth/img:v1", names[i], f.port);
        _cleanup_free_ char *want =
            xasprintf("image pull from %s:%d failed: " IMG_UNREACHABLE, names[i], f.port);
        sbx_error_t err = {0};
        char *root = NULL, *digest = NULL;
        ck_assert_int_eq(img_resolve(s, ref, &root, &digest, &err), -1);
        ck_assert_msg(err.code == SBX_ERR_UNAVAILABLE && !strcmp(err.msg, want), "%s: %d %s", ref,
                      err.code, err.msg);
    }
    pthread_mutex_lock(&f.lock);
    ck_assert_int_eq(f.unauthorized + f.token_requests + f.manifest_hits, 0);
    pthread_mutex_unlock(&f.lock);
    img_store_close(s);

    /* The same registry with the flag; a proxy in the environment is not
     * used (it would connect where the address check cannot see).  */
    s = open_store("allowed", true);
    _cleanup_free_ char *ref = xasprintf("127.0.0.1:%d/auth/img:v1", f.port);
    sbx_error_t err = {0};
    char *root = NULL, *digest = NULL;
    const char *proxies[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"};
    for (size_t i = 0; i < ARRAY_SIZE(proxies); i++)
        setenv(proxies[i], "http://127.0.0.2:1", 1);
    int rc = img_resolve(s, ref, &root, &digest, &err);
    for (size_t i = 0; i < ARRAY_SIZE(proxies); i++)
        unsetenv(proxies[i]);
    ck_assert_msg(rc == 0, "%s", err.msg);
    free(root), free(digest);
    img_store_close(s);
    json_decref(m);
    fake_stop(&f);
}
END_TEST

/* A TCP listener that accepts, says `greeting` (or nothing) and hangs up.  */
typedef struct rude {
    int fd, port;
    const char *greeting;
    pthread_t thread;
} rude_t;

static void *rude_main(void *arg)
{
    rude_t *r = arg;
    for (;;) {
        int c = accept4(r->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            return NULL;
        if (r->greeting)
            send_all(c, r->greeting, strlen(r->greeting));
        close(c);
    }
}

static void rude_start(rude_t *r, const char *greeting)
{
    r->greeting = greeting;
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    ck_assert_int_eq(bind(r->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(r->fd, 16), 0);
    ck_assert_int_eq(getsockname(r->fd, (struct sockaddr *)&a, &alen), 0);
    r->port = ntohs(a.sin_port);
    pthread_create(&r->thread, NULL, rude_main, r);
}

static void rude_stop(rude_t *r)
{
    shutdown(r->fd, SHUT_RDWR);
    close(r->fd);
    pthread_join(r->thread, NULL);
}

/* A closed port, a port that hangs up, a port that answers but not with
 * TLS, and a TLS server that is no registry of ours all read the same to
 * the client, so a pull cannot tell them apart, with the flag or without.  */
START_TEST(test_unreachable_messages_identical)
{
    rude_t hangup, babble, http;
    rude_start(&hangup, NULL);
    rude_start(&babble, "SSH-2.0-OpenSSH_9.6\r\n");
    rude_start(&http, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot here\n");
    /* And a real TLS server (openssl s_server, its own certificate).  */
    _cleanup_free_ char *key = xasprintf("%s/tls.key", tmp), *cert = xasprintf("%s/tls.pem", tmp);
    _cleanup_free_ char *mk = xasprintf("openssl req -x509 -newkey ec -pkeyopt "
                                        "ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=x "
                                        "-keyout '%s' -out '%s' >/dev/null 2>&1",
                                        key, cert);
    ck_assert_int_eq(system(mk), 0);
    int tls_port = tu_free_port();
    char accept_arg[32];
    snprintf(accept_arg, sizeof(accept_arg), "127.0.0.1:%d", tls_port);
    char *argv[] = {"/usr/bin/openssl",
                    "s_server",
                    "-quiet",
                    "-www",
                    "-accept",
                    accept_arg,
                    "-cert",
                    cert,
                    "-key",
                    key,
                    NULL};
    pid_t tls = tu_spawn(argv, NULL, NULL);
    ck_assert_msg(tu_wait_port(tls_port, 10000), "openssl s_server did not start");
    int ports[] = {tu_free_port(), hangup.port, babble.port, http.port, tls_port};
    char bad[640] = ""; /* the first difference; asserted once the servers are gone */
    for (int allow = 0; allow < 2; allow++) {
        img_config_t cfg = {.allow_private_registries = allow};
        img_store_t *s = open_store_cfg(allow ? "tls-allow" : "tls-strict", cfg);
        for (size_t i = 0; i < ARRAY_SIZE(ports) && !bad[0]; i++) {
            _cleanup_free_ char *ref = xasprintf("127.0.0.1:%d/some/img:v1", ports[i]);
            _cleanup_free_ char *want =
                xasprintf("image pull from 127.0.0.1:%d failed: " IMG_UNREACHABLE, ports[i]);
            sbx_error_t err = {0};
            char *root = NULL, *digest = NULL;
            int r = img_resolve(s, ref, &root, &digest, &err);
            if (r == 0 || err.code != SBX_ERR_UNAVAILABLE || strcmp(err.msg, want) != 0)
                snprintf(bad, sizeof(bad), "allow=%d port %zu: %d %d %s", allow, i, r, err.code,
                         err.msg);
            if (r == 0)
                free(root), free(digest);
        }
        img_store_close(s);
    }
    tu_stop(tls, 5000);
    rude_stop(&hangup);
    rude_stop(&babble);
    rude_stop(&http);
    ck_assert_msg(!bad[0], "%s", bad);
}
END_TEST

/* A layer past the layer bound, and an image past the store's bound, are
 * refused before they are fetched.  */
START_TEST(test_pull_bounds)
{
    fake_t f;
    fake_start(&f);
    _cleanup_free_ char *layout = xasprintf("%s/layout", tmp);
    tl_init(layout);
    _cleanup_free_ char *noise = xmalloc(8193);
    for (size_t i = 0; i < 8192; i++)
        noise[i] = (char)('!' + (i * 7919 + i / 13) % 90);
    noise[8192] = '\0';
    json_t *m = one_file_image(layout, "etc/noise", noise, TL_PLAIN);
    fake_serve_image(&f, "auth/img", "v1", layout, m);
    _cleanup_free_ char *ref = xasprintf("127.0.0.1:%d/auth/img:v1", f.port);
    img_config_t cfg = {
        .allow_insecure_registry = true, .allow_private_registries = true, .max_layer_bytes = 4096};
    img_store_t *s = open_store_cfg("layer-cap", cfg);
    sbx_error_t err = {0};
    char *root = NULL, *digest = NULL;
    ck_assert_int_eq(img_resolve(s, ref, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_TOO_LARGE && strstr(err.msg, "max-layer-size"), "%d %s",
                  err.code, err.msg);
    img_store_close(s);

    img_config_t full = {
        .allow_insecure_registry = true, .allow_private_registries = true, .max_store_bytes = 4096};
    s = open_store_cfg("store-cap", full);
    ck_assert_int_eq(img_resolve(s, ref, &root, &digest, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_TOO_LARGE && strstr(err.msg, "max-image-store-size"), "%d %s",
                  err.code, err.msg);
    img_store_close(s);
    /* Nothing of the layer was fetched.  */
    s = open_store("fits", true);
    ck_assert_msg(img_resolve(s, ref, &root, &digest, &err) == 0, "%s", err.msg);
    free(root), free(digest);
    img_store_close(s);
    json_decref(m);
    fake_stop(&f);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("image_registry");
    TCase *tc = tcase_create("registry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_pull_from_registry);
    tcase_add_test(tc, test_pull_with_bearer_token);
    tcase_add_test(tc, test_private_registry_refused);
    tcase_add_test(tc, test_unreachable_messages_identical);
    tcase_add_test(tc, test_pull_bounds);
    suite_add_tcase(suite, tc);
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
