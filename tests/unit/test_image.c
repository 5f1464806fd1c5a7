/* test_image.c -- the image store: references, layouts unpacked with
 * whiteouts, hostile layers, digest checks, concurrency, the default image.  */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fixtures/image_layout.h"
#include "tests/testutil.h"

static char *tmp;   /* per test */
static char *store; /* tmp/store */

static void setup(void)
{
    tmp = tu_tmpdir("sbx-image");
    ck_assert_ptr_nonnull(tmp);
    store = xasprintf("%s/store", tmp);
}

static void teardown(void)
{
    tu_rmdir(tmp);
    free(tmp);
    free(store);
}

static img_store_t *open_store(const char *default_layout)
{
    img_config_t cfg = {.store_dir = store, .default_layout = default_layout};
    sbx_error_t err = {0};
    img_store_t *s = img_store_open(&cfg, &err);
    ck_assert_msg(s != NULL, "open: %s", err.msg);
    return s;
}

static char *path_in(const char *dir, const char *rel)
{
    return xasprintf("%s/%s", dir, rel);
}

static bool exists(const char *dir, const char *rel)
{
    _cleanup_free_ char *p = path_in(dir, rel);
    struct stat st;
    return lstat(p, &st) == 0;
}

static char *slurp(const char *dir, const char *rel)
{
    _cleanup_free_ char *p = path_in(dir, rel);
    char *data = NULL;
    size_t len;
    sbx_error_t err = {0};
    ck_assert_msg(sbx_read_file(p, &data, &len, &err) == 0, "%s", err.msg);
    return data;
}

static char *layout_dir(const char *name)
{
    return xasprintf("%s/%s", tmp, name);
}

/* Import a layout and resolve it; returns the rootfs (owned).  */
static char *import_and_resolve(img_store_t *s, const char *layout, const char *ref)
{
    sbx_error_t err = {0};
    ck_assert_msg(img_import_layout(s, layout, ref, &err) == 0, "import: %s", err.msg);
    char *rootfs = NULL, *digest = NULL;
    ck_assert_msg(img_resolve(s, ref, &rootfs, &digest, &err) == 0, "resolve: %s", err.msg);
    free(digest);
    return rootfs;
}

/* Import that must fail with `code`; returns the message.  */
static void import_fails(img_store_t *s, const char *layout, sbx_code_t code, const char *needle)
{
    sbx_error_t err = {0};
    ck_assert_int_eq(img_import_layout(s, layout, "test/hostile:1", &err), -1);
    ck_assert_msg(err.code == code, "code %d (%s)", err.code, err.msg);
    if (needle)
        ck_assert_msg(strstr(err.msg, needle), "message: %s", err.msg);
}

/* ---- references ---- */

START_TEST(test_ref_parse)
{
    struct {
        const char *in, *registry, *repo, *tag;
    } ok[] = {
        {"python", NULL, "python", "latest"},
        {"python:3.12-slim", NULL, "python", "3.12-slim"},
        {"sandboxd/default:latest", NULL, "sandboxd/default", "latest"},
        {"localhost/foo", "localhost", "foo", "latest"},
        {"127.0.0.1:5000/test/img:v1", "127.0.0.1:5000", "test/img", "v1"},
        {"Registry.Example.com/a/b__c/d-e:T_1", "registry.example.com", "a/b__c/d-e", "T_1"},
        {"[::1]:5000/x", "[::1]:5000", "x", "latest"},
        {"ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "ghcr.io", "o/r",
         "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
        {"r.io/x:tag@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
         "r.io", "x", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        char *reg = NULL, *repo = NULL, *tag = NULL;
        sbx_error_t err = {0};
        ck_assert_msg(img_ref_parse(ok[i].in, &reg, &repo, &tag, &err) == 0, "%s: %s", ok[i].in,
                      err.msg);
        if (ok[i].registry)
            ck_assert_str_eq(reg, ok[i].registry);
        else
            ck_assert_ptr_null(reg);
        ck_assert_str_eq(repo, ok[i].repo);
        ck_assert_str_eq(tag, ok[i].tag);
        free(reg), free(repo), free(tag);
    }
    const char *bad[] = {
        "",
        "UPPER",
        "a//b",
        "/abs",
        "a/",
        "-a",
        "a-",
        "a..b",
        "a___b",
        "host:/x",
        "r.io:99999/x",
        "x:",
        "x:-tag",
        "x@sha256:abc",
        "x@md5:0123456789abcdef0123456789abcdef",
        "x y",
        "x\n",
        "r.io/x:../../etc",
        "bad-.host/x",
        "x:tag\x7f",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *reg = NULL, *repo = NULL, *tag = NULL;
        sbx_error_t err = {0};
        ck_assert_msg(img_ref_parse(bad[i], &reg, &repo, &tag, &err) == -1, "accepted '%s'",
                      bad[i]);
        ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    }
    char long_ref[600];
    memset(long_ref, 'a', sizeof(long_ref) - 1);
    long_ref[sizeof(long_ref) - 1] = '\0';
    char *reg, *repo, *tag;
    ck_assert_int_eq(img_ref_parse(long_ref, &reg, &repo, &tag, NULL), -1);
}
END_TEST

START_TEST(test_challenge_parse)
{
    img_challenge_t c;
    sbx_error_t err = {0};
    ck_assert_int_eq(img_challenge_parse("Bearer realm=\"https://auth.example.com/token\","
                                         "service=\"registry.example.com\","
                                         "scope=\"repository:a/b:pull,push\"",
                                         &c, &err),
                     0);
    ck_assert_str_eq(c.realm, "https://auth.example.com/token");
    ck_assert_str_eq(c.service, "registry.example.com");
    ck_assert_str_eq(c.scope, "repository:a/b:pull,push");
    img_challenge_done(&c);

    /* Case, spacing, unquoted values, escapes, unknown parameters.  */
    ck_assert_int_eq(img_challenge_parse("  bearer  Realm = https://a/t , foo=\"x,y\", "
                                         "service=\"s\\\"q\"",
                                         &c, &err),
                     0);
    ck_assert_str_eq(c.realm, "https://a/t");
    ck_assert_str_eq(c.service, "s\"q");
    ck_assert_ptr_null(c.scope);
    img_challenge_done(&c);

    /* A second challenge after the Bearer one does not leak into it.  */
    ck_assert_int_eq(
        img_challenge_parse("Bearer realm=\"https://a/t\", Basic realm=\"other\"", &c, &err), 0);
    ck_assert_str_eq(c.realm, "https://a/t");
    img_challenge_done(&c);

    const char *bad[] = {
        "Basic realm=\"x\"", "Bearer", "Bearer service=\"s\"", "Bearer realm=\"unterminated",
        "Bearerrealm=\"x\"", "",       "Bearer realm=\"\"",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        ck_assert_msg(img_challenge_parse(bad[i], &c, &err) == -1, "accepted '%s'", bad[i]);
    char huge[5000] = "Bearer realm=\"";
    memset(huge + 14, 'a', 4000);
    huge[4014] = '"';
    huge[4015] = '\0';
    ck_assert_int_eq(img_challenge_parse(huge, &c, &err), -1);
    ck_assert_int_eq(img_challenge_parse(NULL, &c, &err), -1);
}
END_TEST

/* ---- unpacking ---- */

START_TEST(test_unpack_layers_and_whiteouts)
{
    _cleanup_free_ char *layout = layout_dir("layout");
    tl_init(layout);
    const tl_entry_t l1[] = {
        {'d', "./", NULL, 0755},
        {'d', "etc", NULL, 0755},
        {'f', "etc/hello", "hello world\n", 0644},
        {'l', "etc/link", "hello", 0},
        {'l', "etc/abs", "/etc/hello", 0},
        {'h', "etc/hard", "etc/hello", 0},
        {'f', "bin/tool", "#!/bin/sh\n", 04755}, /* parent implied, setuid */
        {'d', "shared", NULL, 02775},
        {'c', "dev/null", NULL, 0666},
        {'p', "run/fifo", NULL, 0600},
        {'f', "gone.txt", "bye", 0},
        {'d', "a", NULL, 0},
        {'f', "a/x", "x", 0},
        {'f', "a/y", "y", 0},
        {'d', "b", NULL, 0},
        {'f', "b/keep", "keep", 0},
        {'d', "opq", NULL, 0},
        {'f', "opq/old1", "old", 0},
        {'d', "opq/sub", NULL, 0},
        {'f', "opq/sub/old2", "old", 0},
        {'d', "ro", NULL, 0555},
        {'f', "ro/file", "in a read-only dir", 0444},
    };
    /* The opaque marker comes after an entry of its own layer on purpose:
     * whiteouts hide lower layers only, whatever the order.  */
    const tl_entry_t l2[] = {
        {'f', ".wh.gone.txt", "", 0},
        {'f', "a/.wh.x", "", 0},
        {'d', "opq", NULL, 0},
        {'f', "opq/new", "new", 0},
        {'f', "opq/.wh..wh..opq", "", 0},
        {'f', "b/newfile", "n", 0},
        {'f', "etc/hello", "replaced\n", 0600},
        {'f', "ro/more", "added below a 0555 dir", 0},
    };
    const tl_entry_t l3[] = {
        {'f', "b/.wh.keep", "", 0},
        {'d', "a", NULL, 0},
        {'f', "a/.wh..wh..opq", "", 0},
    };
    json_t *layers = json_pack("[o,o,o]", tl_layer(layout, l1, ARRAY_SIZE(l1), TL_GZIP),
                               tl_layer(layout, l2, ARRAY_SIZE(l2), TL_ZSTD),
                               tl_layer(layout, l3, ARRAY_SIZE(l3), TL_PLAIN));
    _cleanup_free_ char *digest = tl_simple(layout, layers, "test/basic:1");

    img_store_t *s = open_store(NULL);
    _cleanup_free_ char *root = import_and_resolve(s, layout, "test/basic:1");
    _cleanup_free_ char *want_root = xasprintf("%s/rootfs/%s", store, digest + 7);
    char real[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(want_root, real));
    ck_assert_str_eq(root, real);

    _cleanup_free_ char *hello = slurp(root, "etc/hello");
    ck_assert_str_eq(hello, "replaced\n");
    _cleanup_free_ char *via_link = slurp(root, "etc/link");
    ck_assert_str_eq(via_link, "replaced\n");
    char target[64] = {0};
    _cleanup_free_ char *abs = path_in(root, "etc/abs");
    ck_assert_int_gt(readlink(abs, target, sizeof(target) - 1), 0);
    ck_assert_str_eq(target, "/etc/hello");

    /* The hardlink shares the first layer's inode; the second layer
     * replaced etc/hello with a new file.  */
    _cleanup_free_ char *hard = slurp(root, "etc/hard");
    ck_assert_str_eq(hard, "hello world\n");

    struct stat st;
    _cleanup_free_ char *tool = path_in(root, "bin/tool");
    ck_assert_int_eq(lstat(tool, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0755); /* setuid dropped */
    _cleanup_free_ char *shared = path_in(root, "shared");
    ck_assert_int_eq(lstat(shared, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 02775); /* setgid kept on directories */
    _cleanup_free_ char *ro = path_in(root, "ro");
    ck_assert_int_eq(lstat(ro, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0555);
    ck_assert_int_eq(lstat(shared, &st), 0);
    ck_assert_int_eq(st.st_mtime, 1700000000); /* directory times survive their entries */
    ck_assert(exists(root, "ro/more"));
    _cleanup_free_ char *fifo = path_in(root, "run/fifo");
    ck_assert_int_eq(lstat(fifo, &st), 0);
    ck_assert(S_ISFIFO(st.st_mode));

    ck_assert(!exists(root, "dev/null")); /* device nodes skipped */
    ck_assert(!exists(root, "gone.txt"));
    ck_assert(!exists(root, ".wh.gone.txt"));
    ck_assert(!exists(root, "a/x"));
    ck_assert(!exists(root, "a/y")); /* layer 3 made a opaque */
    ck_assert(exists(root, "a"));
    ck_assert(!exists(root, "opq/old1"));
    ck_assert(!exists(root, "opq/sub"));
    ck_assert(exists(root, "opq/new"));
    ck_assert(!exists(root, "opq/.wh..wh..opq"));
    ck_assert(!exists(root, "b/keep"));
    ck_assert(exists(root, "b/newfile"));

    json_t *config = NULL;
    sbx_error_t err = {0};
    ck_assert_int_eq(img_image_config(s, digest, &config, &err), 0);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(config, "Env"), 0)),
                     "PATH=/usr/bin:/bin");
    json_decref(config);

    /* Resolving again, and by digest, is served from the store.  */
    unsigned before = img_store_unpack_count(s);
    char *r2 = NULL, *d2 = NULL;
    ck_assert_int_eq(img_resolve(s, digest, &r2, &d2, &err), 0);
    ck_assert_str_eq(r2, root);
    ck_assert_str_eq(d2, digest);
    ck_assert_uint_eq(img_store_unpack_count(s), before);
    free(r2), free(d2);
    img_store_close(s);
}
END_TEST

/* Things outside every rootfs that hostile layers aim at.  */
static char *outside_dir(void)
{
    char *dir = xasprintf("%s/outside", tmp);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    _cleanup_free_ char *victim = path_in(dir, "victim");
    tl_write(victim, "precious", 8);
    return dir;
}

static void hostile_case(img_store_t *s, const char *name, const tl_entry_t *l1, size_t n1,
                         const tl_entry_t *l2, size_t n2, bool must_fail)
{
    _cleanup_free_ char *layout = layout_dir(name);
    tl_init(layout);
    json_t *layers = json_array();
    json_array_append_new(layers, tl_layer(layout, l1, n1, TL_GZIP));
    if (l2)
        json_array_append_new(layers, tl_layer(layout, l2, n2, TL_PLAIN));
    free(tl_simple(layout, layers, NULL));
    if (must_fail) {
        import_fails(s, layout, SBX_ERR_INVALID, NULL);
    } else {
        sbx_error_t err = {0};
        ck_assert_msg(img_import_layout(s, layout, "test/hostile:ok", &err) == 0, "%s: %s", name,
                      err.msg);
    }
}

START_TEST(test_hostile_layers)
{
    _cleanup_free_ char *outside = outside_dir();
    _cleanup_free_ char *victim = path_in(outside, "victim");
    _cleanup_free_ char *escape_sym = xasprintf("%s", outside);
    _cleanup_free_ char *rel_escape = xasprintf("../../../../../../../../..%s", outside);
    img_store_t *s = open_store(NULL);

    const tl_entry_t dotdot[] = {{'f', "../../../escape", "x", 0}};
    hostile_case(s, "dotdot", dotdot, 1, NULL, 0, true);
    const tl_entry_t inner_dotdot[] = {{'d', "a", NULL, 0}, {'f', "a/../../escape2", "x", 0}};
    hostile_case(s, "inner", inner_dotdot, 2, NULL, 0, true);
    const tl_entry_t absolute[] = {{'f', "/tmp/abs-escape", "x", 0}};
    hostile_case(s, "absolute", absolute, 1, NULL, 0, true);

    /* A symlink to a directory outside, then a file through it: the link is
     * followed inside the root, where that directory does not exist.  */
    const tl_entry_t through[] = {{'l', "evil", escape_sym, 0}, {'f', "evil/pwned", "x", 0}};
    hostile_case(s, "through", through, 2, NULL, 0, true);
    const tl_entry_t through_rel[] = {{'l', "evil", rel_escape, 0}, {'f', "evil/pwned2", "x", 0}};
    hostile_case(s, "through-rel", through_rel, 2, NULL, 0, true);
    /* The same across layers.  */
    const tl_entry_t plant[] = {{'l', "evil", escape_sym, 0}};
    const tl_entry_t use[] = {{'f', "evil/pwned3", "x", 0}, {'f', "evil/victim", "gotcha", 0}};
    hostile_case(s, "across", plant, 1, use, 2, true);

    /* Hardlinks out of the root, directly or through a symlink.  */
    _cleanup_free_ char *abs_victim = xasprintf("%s/victim", outside);
    const tl_entry_t hl_abs[] = {{'h', "hl", abs_victim, 0}};
    hostile_case(s, "hl-abs", hl_abs, 1, NULL, 0, true);
    const tl_entry_t hl_dotdot[] = {{'h', "hl", "../../../../../../etc/passwd", 0}};
    hostile_case(s, "hl-dotdot", hl_dotdot, 1, NULL, 0, true);
    const tl_entry_t hl_sym[] = {{'l', "out", escape_sym, 0}, {'h', "hl", "out/victim", 0}};
    hostile_case(s, "hl-sym", hl_sym, 2, NULL, 0, true);

    /* Whiteouts through a symlink only ever touch the root.  */
    const tl_entry_t wh1[] = {{'l', "out", escape_sym, 0}};
    const tl_entry_t wh2[] = {{'f', "out/.wh.victim", "", 0}, {'f', "out/.wh..wh..opq", "", 0}};
    hostile_case(s, "whiteout-sym", wh1, 1, wh2, 2, false);
    const tl_entry_t wh_dots[] = {{'f', ".wh...", "", 0}};
    hostile_case(s, "whiteout-dots", wh_dots, 1, NULL, 0, true);

    /* Symlinks may point anywhere: inside the sandbox they mean the root.
     * A file written through an absolute symlink lands inside.  */
    _cleanup_free_ char *layout = layout_dir("contained");
    tl_init(layout);
    const tl_entry_t contained[] = {
        {'d', "etc", NULL, 0},
        {'l', "etcl", "/etc", 0},
        {'f', "etcl/sbx-test-marker", "inside", 0},
        {'l', "up", "../../../../../../etc", 0},
        {'f', "up/sbx-test-marker2", "inside", 0},
        {'c', "dev/evil", NULL, 0666},
    };
    free(tl_simple(layout,
                   json_pack("[o]", tl_layer(layout, contained, ARRAY_SIZE(contained), TL_GZIP)),
                   "test/contained:1"));
    _cleanup_free_ char *root = import_and_resolve(s, layout, "test/contained:1");
    ck_assert(exists(root, "etc/sbx-test-marker"));
    ck_assert(exists(root, "etc/sbx-test-marker2"));
    ck_assert(!exists("/etc", "sbx-test-marker"));
    ck_assert(!exists("/etc", "sbx-test-marker2"));
    ck_assert(!exists(root, "dev/evil"));

    /* Nothing escaped: the victim is intact and alone, no stray files
     * next to the store, no half-unpacked trees left behind.  */
    _cleanup_free_ char *v = slurp(outside, "victim");
    ck_assert_str_eq(v, "precious");
    struct stat st;
    ck_assert_int_eq(stat(victim, &st), 0);
    ck_assert_int_eq(st.st_nlink, 1);
    const char *stray[] = {"pwned", "pwned2", "pwned3"};
    for (size_t i = 0; i < ARRAY_SIZE(stray); i++)
        ck_assert(!exists(outside, stray[i]));
    ck_assert(!exists(tmp, "escape"));
    ck_assert(!exists(store, "escape"));
    ck_assert(!exists(store, "rootfs/escape"));
    ck_assert(!exists(store, "escape2"));
    ck_assert(!exists("/tmp", "abs-escape"));
    _cleanup_free_ char *rootfs_dir = path_in(store, "rootfs");
    DIR *d = opendir(rootfs_dir);
    struct dirent *de;
    int count = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            count++;
            ck_assert_int_eq(strlen(de->d_name), 64);
        } else {
            ck_assert(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0);
        }
    closedir(d);
    ck_assert_int_eq(count, 2); /* whiteout-sym and contained */
    img_store_close(s);
}
END_TEST

START_TEST(test_digest_mismatch)
{
    img_store_t *s = open_store(NULL);
    const tl_entry_t files[] = {{'f', "file", "content", 0}};

    /* A layer blob whose bytes changed after the manifest was written.  */
    _cleanup_free_ char *l1 = layout_dir("tampered");
    tl_init(l1);
    json_t *layer = tl_layer(l1, files, 1, TL_GZIP);
    _cleanup_free_ char *blob = xasprintf("%s/blobs/sha256/%s", l1,
                                          json_string_value(json_object_get(layer, "digest")) + 7);
    free(tl_simple(l1, json_pack("[o]", layer), "test/tampered:1"));
    int fd = open(blob, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, "X", 1, 20), 1);
    close(fd);
    import_fails(s, l1, SBX_ERR_INVALID, "digest mismatch");

    /* A descriptor that lies about the size.  */
    _cleanup_free_ char *l2 = layout_dir("size");
    tl_init(l2);
    layer = tl_layer(l2, files, 1, TL_GZIP);
    json_object_set_new(layer, "size",
                        json_integer(json_integer_value(json_object_get(layer, "size")) - 1));
    free(tl_simple(l2, json_pack("[o]", layer), "test/size:1"));
    import_fails(s, l2, SBX_ERR_INVALID, "larger than");

    /* index.json naming a manifest by a digest its bytes do not have.  */
    _cleanup_free_ char *l3 = layout_dir("manifest");
    tl_init(l3);
    json_t *m = tl_manifest(l3, json_pack("[o]", tl_layer(l3, files, 1, TL_PLAIN)));
    const char *md = json_string_value(json_object_get(m, "digest"));
    _cleanup_free_ char *mpath = xasprintf("%s/blobs/sha256/%s", l3, md + 7);
    char *text = NULL;
    size_t len;
    ck_assert_int_eq(sbx_read_file(mpath, &text, &len, NULL), 0);
    text[len - 1] = ' '; /* same size, other bytes */
    tl_write(mpath, text, len);
    free(text);
    tl_index(l3, json_pack("[o]", m), "test/manifest:1");
    import_fails(s, l3, SBX_ERR_INVALID, "digest mismatch");

    /* Nothing of those reached the store under a name.  */
    sbx_error_t err = {0};
    char *root = NULL, *digest = NULL;
    ck_assert_int_eq(img_resolve(s, "test/tampered:1", &root, &digest, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);

    /* Not a layout at all, and a layer that is not a tar.  */
    import_fails(s, tmp, SBX_ERR_NOT_FOUND, "layout");
    _cleanup_free_ char *l4 = layout_dir("nottar");
    tl_init(l4);
    json_t *junk = tl_blob(l4, "application/vnd.oci.image.layer.v1.tar+gzip", "junk junk", 9);
    free(tl_simple(l4, json_pack("[o]", junk), "test/junk:1"));
    import_fails(s, l4, SBX_ERR_INVALID, NULL);
    img_store_close(s);
}
END_TEST

START_TEST(test_resolve_errors)
{
    img_store_t *s = open_store(NULL);
    sbx_error_t err = {0};
    char *root = NULL, *digest = NULL;
    ck_assert_int_eq(img_resolve(s, "python:3.12", &root, &digest, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(img_resolve(s, "Not A Ref", &root, &digest, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(img_resolve(s, "sha256:1234", &root, &digest, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(
        img_resolve(s, "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    &root, &digest, &err),
        -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    /* Plain HTTP is refused unless allowed, so this tries HTTPS on a port
     * nobody listens on.  */
    _cleanup_free_ char *ref = xasprintf("127.0.0.1:%d/x/y:1", tu_free_port());
    ck_assert_int_eq(img_resolve(s, ref, &root, &digest, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_UNAVAILABLE);
    img_store_close(s);
}
END_TEST

/* An index whose entries are a multi-platform index: this host's entry is
 * chosen, the other architecture is never unpacked.  */
START_TEST(test_platform_choice)
{
    _cleanup_free_ char *layout = layout_dir("multi");
    tl_init(layout);
    const tl_entry_t amd[] = {{'f', "arch", "amd64", 0}};
    const tl_entry_t arm[] = {{'f', "arch", "arm64", 0}};
    json_t *m_arm = tl_platform(
        tl_manifest(layout, json_pack("[o]", tl_layer(layout, arm, 1, TL_GZIP))), "arm64");
    json_t *m_amd = tl_platform(
        tl_manifest(layout, json_pack("[o]", tl_layer(layout, amd, 1, TL_GZIP))), "amd64");
    json_t *inner = json_pack("{s:i,s:s,s:[o,o]}", "schemaVersion", 2, "mediaType",
                              "application/vnd.oci.image.index.v1+json", "manifests", m_arm, m_amd);
    json_t *inner_desc = tl_json_blob(layout, "application/vnd.oci.image.index.v1+json", inner);
    tl_index(layout, json_pack("[o]", inner_desc), "latest"); /* a bare tag */

    img_store_t *s = open_store(NULL);
    _cleanup_free_ char *root = import_and_resolve(s, layout, "test/multi:latest");
    _cleanup_free_ char *arch = slurp(root, "arch");
    ck_assert_str_eq(arch, "amd64");
    ck_assert_uint_eq(img_store_unpack_count(s), 1);
    img_store_close(s);
}
END_TEST

typedef struct resolver {
    img_store_t *s;
    char *root;
    int ret;
} resolver_t;

static void *resolve_thread(void *arg)
{
    resolver_t *r = arg;
    char *digest = NULL;
    sbx_error_t err = {0};
    r->ret = img_resolve(r->s, "test/conc:1", &r->root, &digest, &err);
    free(digest);
    return NULL;
}

START_TEST(test_concurrent_resolve_unpacks_once)
{
    _cleanup_free_ char *layout = layout_dir("conc");
    tl_init(layout);
    /* Enough entries that the unpack takes a while.  */
    enum { N = 400 };
    tl_entry_t entries[N];
    char names[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "d%d/f%d", i % 20, i);
        entries[i] = (tl_entry_t){'f', names[i], "some bytes of data", 0};
    }
    _cleanup_free_ char *digest =
        tl_simple(layout, json_pack("[o]", tl_layer(layout, entries, N, TL_GZIP)), "test/conc:1");

    img_store_t *s = open_store(NULL);
    sbx_error_t err = {0};
    ck_assert_msg(img_import_layout(s, layout, NULL, &err) == 0, "%s", err.msg);
    img_store_close(s);
    /* As if the rootfs was lost (and a crash left a half unpack behind):
     * the store finds the image by name and unpacks it again, once.  */
    _cleanup_free_ char *root = xasprintf("%s/rootfs/%s", store, digest + 7);
    _cleanup_free_ char *half = xasprintf("%s/rootfs/.tmp-%s", store, digest + 7);
    ck_assert_int_eq(rename(root, half), 0);
    s = open_store(NULL);
    ck_assert(!exists(half, ""));

    resolver_t r[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        r[i] = (resolver_t){.s = s};
        pthread_create(&th[i], NULL, resolve_thread, &r[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(r[i].ret, 0);
        ck_assert_str_eq(r[i].root, r[0].root);
    }
    for (int i = 0; i < 6; i++)
        free(r[i].root);
    ck_assert_uint_eq(img_store_unpack_count(s), 1);
    ck_assert(exists(root, "d7/f399") == false);
    ck_assert(exists(root, "d19/f399"));
    img_store_close(s);
}
END_TEST

START_TEST(test_default_layout)
{
    _cleanup_free_ char *layout = layout_dir("default");
    tl_init(layout);
    const tl_entry_t files[] = {{'f', "bin/sh", "#!", 0755}};
    /* The layout names it otherwise: it is still the default.  */
    _cleanup_free_ char *digest =
        tl_simple(layout, json_pack("[o]", tl_layer(layout, files, 1, TL_GZIP)), "other/name:2");

    img_store_t *s = open_store(layout);
    ck_assert_uint_eq(img_store_unpack_count(s), 1);
    sbx_error_t err = {0};
    char *root = NULL, *d = NULL;
    ck_assert_msg(img_resolve(s, IMG_DEFAULT_REF, &root, &d, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(d, digest);
    ck_assert(exists(root, "bin/sh"));
    free(root), free(d);
    ck_assert_int_eq(img_resolve(s, "other/name:2", &root, &d, &err), 0);
    free(root), free(d);
    img_store_close(s);

    /* Opening again finds it there: nothing is unpacked.  */
    s = open_store(layout);
    ck_assert_uint_eq(img_store_unpack_count(s), 0);
    img_store_close(s);

    /* A default layout that is missing fails the open.  */
    _cleanup_free_ char *missing = layout_dir("missing");
    img_config_t cfg = {.store_dir = store, .default_layout = missing};
    ck_assert_ptr_null(img_store_open(&cfg, &err));
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
}
END_TEST

/* ---- registry addresses and store bounds ---- */

static bool addr_public(const char *text)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1)
        v4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1)
        v6->sin6_family = AF_INET6;
    else
        ck_abort_msg("bad test address %s", text);
    return img_addr_public((struct sockaddr *)&ss);
}

START_TEST(test_registry_addresses)
{
    static const char *const refused[] = {"127.0.0.1",
                                          "127.255.0.9",
                                          "0.0.0.0",
                                          "0.1.2.3",
                                          "10.0.0.1",
                                          "172.16.0.1",
                                          "172.31.255.255",
                                          "192.168.1.1",
                                          "169.254.169.254",
                                          "169.254.0.1",
                                          "100.64.0.1",
                                          "100.100.100.200",
                                          "224.0.0.1",
                                          "239.1.2.3",
                                          "255.255.255.255",
                                          "240.0.0.1",
                                          "192.0.0.170",
                                          "198.18.0.1",
                                          "::",
                                          "::1",
                                          "fe80::1",
                                          "febf::1",
                                          "fec0::1",
                                          "fc00::1",
                                          "fd00:ec2::254",
                                          "ff02::1",
                                          "::ffff:127.0.0.1",
                                          "::ffff:10.1.2.3",
                                          "::ffff:169.254.169.254",
                                          "::127.0.0.1",
                                          "64:ff9b::a9fe:a9fe",
                                          "2002:7f00:1::1",
                                          "2002:a9fe:a9fe::1",
                                          "100::1"};
    for (size_t i = 0; i < ARRAY_SIZE(refused); i++)
        ck_assert_msg(!addr_public(refused[i]), "%s passed", refused[i]);
    static const char *const allowed[] = {
        "1.1.1.1",         "8.8.8.8",        "172.15.255.255",
        "172.32.0.1",      "100.63.255.255", "100.128.0.1",
        "169.253.1.1",     "192.169.0.1",    "2001:4860:4860::8888",
        "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
        "2002:808:808::1"};
    for (size_t i = 0; i < ARRAY_SIZE(allowed); i++)
        ck_assert_msg(addr_public(allowed[i]), "%s refused", allowed[i]);
    struct sockaddr unix_addr = {.sa_family = AF_UNIX};
    ck_assert(!img_addr_public(&unix_addr));
}
END_TEST

/* A layer whose file data passes the layer bound is refused while it
 * unpacks, however small it is compressed; so is an image past the store's
 * bound.  */
START_TEST(test_layer_and_store_bounds)
{
    _cleanup_free_ char *layout = layout_dir("big");
    tl_init(layout);
    _cleanup_free_ char *big = xmalloc((1u << 20) + 1);
    memset(big, 'z', 1u << 20);
    big[1u << 20] = '\0';
    const tl_entry_t files[] = {{'f', "big", big, 0}};
    free(tl_simple(layout, json_pack("[o]", tl_layer(layout, files, 1, TL_GZIP)), "t/big:1"));
    img_config_t cfg = {.store_dir = store, .max_layer_bytes = 64 * 1024};
    sbx_error_t err = {0};
    img_store_t *s = img_store_open(&cfg, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    import_fails(s, layout, SBX_ERR_TOO_LARGE, "layer unpacks to more than 65536 bytes");
    img_store_close(s);

    _cleanup_free_ char *other = xasprintf("%s2", store);
    img_config_t small = {.store_dir = other, .max_store_bytes = 512 * 1024};
    s = img_store_open(&small, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    import_fails(s, layout, SBX_ERR_TOO_LARGE, "more than");
    ck_assert_int_eq(img_store_reserve(s, 1024, &err), 0);
    ck_assert_int_eq(img_store_reserve(s, 1024 * 1024, &err), -1);
    ck_assert_msg(err.code == SBX_ERR_TOO_LARGE && strstr(err.msg, "max-image-store-size"), "%s",
                  err.msg);
    img_store_close(s);
}
END_TEST

/* The layout scripts/build-default-image.sh made, named by
 * $SBX_DEFAULT_IMAGE (scripts/test.sh builds it; skipped without it).  */
START_TEST(test_built_default_image)
{
    const char *layout = getenv("SBX_DEFAULT_IMAGE");
    _cleanup_free_ char *index = layout ? xasprintf("%s/index.json", layout) : NULL;
    if (!index || access(index, R_OK) != 0)
        return;
    int64_t start = sbx_monotonic_ms();
    img_store_t *s = open_store(layout);
    fprintf(stderr, "default image imported and unpacked in %lld ms\n",
            (long long)(sbx_monotonic_ms() - start));
    char *root = NULL, *d = NULL;
    sbx_error_t err = {0};
    ck_assert_msg(img_resolve(s, IMG_DEFAULT_REF, &root, &d, &err) == 0, "%s", err.msg);
    ck_assert(exists(root, "bin/sh"));
    ck_assert(exists(root, "usr/bin/python3"));
    /* The unpacked tree runs: python3 inside it, chrooted.  */
    _cleanup_free_ char *cmd = xasprintf("chroot '%s' /usr/bin/python3 -c 'print(6*7)'", root);
    FILE *p = popen(cmd, "r");
    char out[32] = {0};
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(fgets(out, sizeof(out), p));
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_str_eq(out, "42\n");
    free(root), free(d);
    img_store_close(s);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("image");
    TCase *tc = tcase_create("image");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_ref_parse);
    tcase_add_test(tc, test_challenge_parse);
    tcase_add_test(tc, test_unpack_layers_and_whiteouts);
    tcase_add_test(tc, test_hostile_layers);
    tcase_add_test(tc, test_digest_mismatch);
    tcase_add_test(tc, test_resolve_errors);
    tcase_add_test(tc, test_platform_choice);
    tcase_add_test(tc, test_concurrent_resolve_unpacks_once);
    tcase_add_test(tc, test_default_layout);
    tcase_add_test(tc, test_registry_addresses);
    tcase_add_test(tc, test_layer_and_store_bounds);
    tcase_add_test(tc, test_built_default_image);
    suite_add_tcase(suite, tc);
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
