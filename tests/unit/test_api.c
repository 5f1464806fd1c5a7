/* test_api.c -- the ARM layer's pure parts: name and resource-group rules,
 * route matching, ARM ids, tags, locations, identities, the envelope, typed
 * getters, and finishing an operation against a real database.  */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "api/internal.h"
#include "tests/testutil.h"

#define SUB "0b4f8a3e-2c1d-4e5f-8a9b-0c1d2e3f4a5b"

static char *repeat(char c, size_t n)
{
    char *s = xmalloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- names ---- */

START_TEST(name_rules)
{
    static const char *const ok[] = {"a",        "A",     "0",      "g1",
                                     "my-group", "a-b-c", "9lives", "UPPER-lower-123"};
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
        ck_assert_msg(api_name_valid(ok[i]), "%s should be valid", ok[i]);
    static const char *const bad[] = {"",     "-a",          "a_b",  "a.b",  "a b", "a/b",
                                      "a\\b", "caf\xc3\xa9", "a\tb", "a%20", "*",   "a\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        ck_assert_msg(!api_name_valid(bad[i]), "'%s' should be invalid", bad[i]);
    _cleanup_free_ char *n63 = repeat('x', 63), *n64 = repeat('x', 64);
    ck_assert(api_name_valid(n63));
    ck_assert(!api_name_valid(n64));
    /* A trailing hyphen is allowed here (Azure allows it for this type).  */
    ck_assert(api_name_valid("a-"));
}
END_TEST

START_TEST(resource_group_rules)
{
    static const char *const ok[] = {"rg", "RG-1", "my_rg", "my.rg", "rg(1)", "-rg", "_", "("};
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
        ck_assert_msg(api_resource_group_valid(ok[i]), "%s should be valid", ok[i]);
    static const char *const bad[] = {"",    "rg.", "r g",         "rg/x",   "rg;",
                                      "rg?", "rg#", "caf\xc3\xa9", "rg\x01", "."};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        ck_assert_msg(!api_resource_group_valid(bad[i]), "'%s' should be invalid", bad[i]);
    _cleanup_free_ char *r90 = repeat('r', 90), *r91 = repeat('r', 91);
    ck_assert(api_resource_group_valid(r90));
    ck_assert(!api_resource_group_valid(r91));
}
END_TEST

/* ---- routes ---- */

START_TEST(route_matching)
{
    route_t rt;
    const char *g =
        "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g1";
    ck_assert_int_eq(api_route_parse(g, &rt), 0);
    ck_assert_int_eq(rt.kind, R_GROUP);
    ck_assert_str_eq(rt.sub, SUB);
    ck_assert_str_eq(rt.rg, "rg");
    ck_assert_str_eq(rt.group, "g1");
    api_route_done(&rt);

    /* Case, doubled leading slash, one trailing slash.  */
    const char *variants[] = {
        "//subscriptions/" SUB "/resourceGroups/RG/providers/Microsoft.App/sandboxGroups/G1",
        "/SUBSCRIPTIONS/" SUB "/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.APP/SANDBOXGROUPS/G1",
        "/subscriptions/" SUB "/resourcegroups/RG/providers/microsoft.app/sandboxgroups/G1/",
    };
    for (size_t i = 0; i < ARRAY_SIZE(variants); i++) {
        ck_assert_msg(api_route_parse(variants[i], &rt) == 0, "%s", variants[i]);
        ck_assert_int_eq(rt.kind, R_GROUP);
        ck_assert_str_eq(rt.group, "G1"); /* the name as sent */
        ck_assert_str_eq(rt.rg, "RG");
        api_route_done(&rt);
    }

    /* Repeated slashes anywhere collapse, as at ARM's front door.  */
    const char *slashes[] = {
        "/subscriptions/" SUB "//resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g",
        "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g//",
        "///subscriptions//" SUB "/resourceGroups///rg/providers/Microsoft.App/sandboxGroups/g",
    };
    for (size_t i = 0; i < ARRAY_SIZE(slashes); i++) {
        ck_assert_msg(api_route_parse(slashes[i], &rt) == 0, "%s", slashes[i]);
        ck_assert_int_eq(rt.kind, R_GROUP);
        ck_assert_str_eq(rt.rg, "rg");
        ck_assert_str_eq(rt.group, "g");
        api_route_done(&rt);
    }

    static const struct {
        const char *path;
        route_kind_t kind;
    } table[] = {
        {"/openapi.json", R_OPENAPI},
        {"/providers/Microsoft.App/operations", R_OPERATIONS_LIST},
        {"/subscriptions/" SUB "/providers/Microsoft.App/sandboxGroups", R_GROUPS_BY_SUB},
        {"/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups",
         R_GROUPS_BY_RG},
        {"/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g/"
         "vnetConnections",
         R_CHILD_LIST},
        {"/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g/"
         "egressPolicies/e",
         R_CHILD},
        {"/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g/"
         "sandboxes/s/exec",
         R_CHILD_ACTION},
        {"/subscriptions/" SUB "/providers/Microsoft.App/locations/westeurope/operationStatuses/x",
         R_OP_STATUS},
        {"/subscriptions/" SUB "/providers/Microsoft.App/locations/westeurope/operationResults/x",
         R_OP_RESULT},
    };
    for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
        ck_assert_msg(api_route_parse(table[i].path, &rt) == 0, "%s", table[i].path);
        ck_assert_msg(rt.kind == table[i].kind, "%s: kind %d", table[i].path, rt.kind);
        api_route_done(&rt);
    }
    ck_assert_int_eq(api_route_parse(table[5].path, &rt), 0);
    ck_assert_ptr_eq(rt.child, &api_kind_egress);
    ck_assert_str_eq(rt.child_name, "e");
    api_route_done(&rt);
    ck_assert_int_eq(api_route_parse(table[7].path, &rt), 0);
    ck_assert_str_eq(rt.loc, "westeurope");
    ck_assert_str_eq(rt.op_id, "x");
    api_route_done(&rt);

    static const char *const none[] = {
        NULL,
        "",
        "relative/path",
        "/",
        "//",
        "/subscriptions",
        "/subscriptions/" SUB,
        "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.Web/sandboxGroups/g",
        "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g/nope",
        /* vnetConnections have no actions */
        "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g/"
        "vnetConnections/v/exec",
        "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g/"
        "sandboxes/s/exec/more",
        "/providers/Microsoft.App/operations/extra",
        "/subscriptions/" SUB "/providers/Microsoft.App/locations/l/operationThings/x",
        "/openapi.json/x",
        /* more segments than a route can have */
        "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z",
    };
    for (size_t i = 0; i < ARRAY_SIZE(none); i++) {
        ck_assert_msg(api_route_parse(none[i], &rt) < 0, "%s matched", none[i] ? none[i] : "NULL");
        api_route_done(&rt);
    }
}
END_TEST

/* ---- ARM helpers ---- */

START_TEST(api_versions)
{
    ck_assert(api_version_supported("2026-07-01"));
    ck_assert(api_version_supported("2026-01-01"));
    ck_assert(!api_version_supported("2026-07-01 "));
    ck_assert(!api_version_supported("2026-07-01-preview"));
    ck_assert(!api_version_supported(""));
    ck_assert(!api_version_supported("2025-01-01"));
}
END_TEST

START_TEST(arm_ids)
{
    static const char *const ok[] = {
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/x",
        "/SUBSCRIPTIONS/s/RESOURCEGROUPS/r/PROVIDERS/Microsoft.Network/virtualNetworks/v/SUBNETS/x",
    };
    for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
        ck_assert_msg(api_arm_id_valid(ok[i], "subnets"), "%s", ok[i]);
        ck_assert(api_arm_id_valid(ok[i], NULL));
    }
    ck_assert(!api_arm_id_valid(ok[0], "virtualNetworks"));
    static const char *const bad[] = {
        NULL,
        "",
        "subscriptions/s/resourceGroups/r/providers/p/t/n",
        "/subscriptions/s/resourceGroups/r/providers/p/t", /* odd */
        "/subscriptions/s/resourceGroups/r/providers/p",   /* too short */
        "/subscriptions/s/groups/r/providers/p/t/n",       /* not resourceGroups */
        "/subscriptions/s/resourceGroups/r/prov/p/t/n",    /* not providers */
        "/subscriptions/s/resourceGroups/r/providers/p/t/n?x",
        "/subscriptions/s/resourceGroups/r/providers/p/t/n#x",
        "/subscriptions/s/resourceGroups/r/providers/p/t/n\"",
        "/subscriptions/s/resourceGroups/r/providers/p/t/a\\b",
        "/subscriptions/s/resourceGroups/r/providers/p/t/a\nb",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        ck_assert_msg(!api_arm_id_valid(bad[i], NULL), "'%s' accepted", bad[i] ? bad[i] : "NULL");
    _cleanup_free_ char *pad = repeat('p', 1020);
    _cleanup_free_ char *too_long =
        xasprintf("/subscriptions/s/resourceGroups/r/providers/p/t/%s", pad);
    ck_assert(!api_arm_id_valid(too_long, NULL));

    /* Up to 32 segments are understood; past that an id is refused rather
     * than judged by a type segment in its middle.  */
    char id[1024] = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network";
    for (int i = 0; i < 13; i++)
        strcat(id, "/subnets/x");
    ck_assert(api_arm_id_valid(id, "subnets")); /* 32 segments */
    strcat(id, "/virtualMachines/vm");
    ck_assert_msg(!api_arm_id_valid(id, "subnets"), "a long id took a middle type");
    ck_assert(!api_arm_id_valid(id, NULL));
}
END_TEST

START_TEST(tags)
{
    sbx_error_t err = {0};
    ck_assert_int_eq(api_validate_tags(NULL, &err), 0);
    json_t *null = json_null();
    ck_assert_int_eq(api_validate_tags(null, &err), 0);
    json_decref(null);
    json_t *t = json_object();
    for (int i = 0; i < MAX_TAGS; i++) {
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        json_object_set_new(t, k, json_string("v"));
    }
    ck_assert_int_eq(api_validate_tags(t, &err), 0);
    json_object_set_new(t, "one-more", json_string("v"));
    ck_assert_int_eq(api_validate_tags(t, &err), -1);
    ck_assert_str_eq(err.arm_code, "InvalidTags");
    json_decref(t);

    _cleanup_free_ char *k512 = repeat('k', MAX_TAG_KEY), *k513 = repeat('k', MAX_TAG_KEY + 1);
    _cleanup_free_ char *v256 = repeat('v', MAX_TAG_VALUE), *v257 = repeat('v', MAX_TAG_VALUE + 1);
    t = json_pack("{s:s}", k512, v256);
    ck_assert_int_eq(api_validate_tags(t, &err), 0);
    json_decref(t);
    json_t *bad[] = {
        json_pack("{s:s}", k513, "v"),  json_pack("{s:s}", "k", v257),
        json_pack("{s:i}", "k", 1),     json_pack("{s:n}", "k"),
        json_pack("{s:s}", "", "v"),    json_pack("{s:s}", "a<b", "v"),
        json_pack("{s:s}", "a?b", "v"), json_pack("{s:s}", "a%b", "v"),
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        sbx_error_clear(&err);
        ck_assert_msg(api_validate_tags(bad[i], &err) == -1, "case %zu", i);
        ck_assert_str_eq(err.arm_code, "InvalidTags");
        ck_assert_int_eq(err.code, SBX_ERR_INVALID);
        json_decref(bad[i]);
    }
    json_t *arr = json_array();
    ck_assert_int_eq(api_validate_tags(arr, &err), -1);
    ck_assert_str_eq(err.target, "tags");
    json_decref(arr);

    /* Limits count characters: 256 two-byte characters fit, 257 do not.  */
    char wide[2 * (MAX_TAG_VALUE + 1) + 1] = "";
    for (int i = 0; i < MAX_TAG_VALUE; i++)
        strcat(wide, "\xc3\xa9");
    t = json_pack("{s:s}", "k", wide);
    ck_assert_int_eq(api_validate_tags(t, &err), 0);
    json_decref(t);
    strcat(wide, "\xc3\xa9");
    t = json_pack("{s:s}", "k", wide);
    ck_assert_int_eq(api_validate_tags(t, &err), -1);
    json_decref(t);
}
END_TEST

START_TEST(locations_and_urls)
{
    _cleanup_free_ char *a = api_normalize_location("West Europe");
    ck_assert_str_eq(a, "westeurope");
    _cleanup_free_ char *b = api_normalize_location("  EAST US 2 ");
    ck_assert_str_eq(b, "eastus2");
    _cleanup_free_ char *c = api_normalize_location("");
    ck_assert_str_eq(c, "");
    _cleanup_free_ char *e = api_url_encode("a b/c?d=e&f~g.h_i-j\xc3\xa9");
    ck_assert_str_eq(e, "a%20b%2Fc%3Fd%3De%26f~g.h_i-j%C3%A9");
    _cleanup_free_ char *empty = api_url_encode("");
    ck_assert_str_eq(empty, "");
}
END_TEST

START_TEST(system_data)
{
    json_t *sd = api_system_data(NULL, "alice", 0);
    ck_assert_str_eq(json_string_value(json_object_get(sd, "createdBy")), "alice");
    ck_assert_str_eq(json_string_value(json_object_get(sd, "createdAt")),
                     "1970-01-01T00:00:00.000Z");
    ck_assert_str_eq(json_string_value(json_object_get(sd, "lastModifiedAt")),
                     "1970-01-01T00:00:00.000Z");
    ck_assert_str_eq(json_string_value(json_object_get(sd, "createdByType")), "User");
    json_t *later = api_system_data(sd, "bob", 1000);
    ck_assert_str_eq(json_string_value(json_object_get(later, "createdBy")), "alice");
    ck_assert_str_eq(json_string_value(json_object_get(later, "createdAt")),
                     "1970-01-01T00:00:00.000Z");
    ck_assert_str_eq(json_string_value(json_object_get(later, "lastModifiedBy")), "bob");
    ck_assert_str_eq(json_string_value(json_object_get(later, "lastModifiedAt")),
                     "1970-01-01T00:00:01.000Z");
    /* Junk in the old one is not carried over.  */
    json_t *junk = json_pack("{s:i,s:[]}", "createdAt", 5, "createdBy");
    json_t *fixed = api_system_data(junk, "carol", 2000);
    ck_assert_str_eq(json_string_value(json_object_get(fixed, "createdBy")), "carol");
    ck_assert_str_eq(json_string_value(json_object_get(fixed, "createdAt")),
                     "1970-01-01T00:00:02.000Z");
    json_decref(sd);
    json_decref(later);
    json_decref(junk);
    json_decref(fixed);
}
END_TEST

START_TEST(envelope)
{
    st_resource_t r = {
        .id = "/subscriptions/s/resourceGroups/r/providers/Microsoft.App/sandboxGroups/G",
        .name = "G"};
    r.body = json_pack("{s:s,s:s,s:{s:s},s:s}", "type", "Microsoft.App/sandboxGroups", "location",
                       "westeurope", "properties", "provisioningState", "Succeeded", "_internal",
                       "secret");
    json_t *e = api_envelope(&r);
    ck_assert_str_eq(json_string_value(json_object_get(e, "id")), r.id);
    ck_assert_str_eq(json_string_value(json_object_get(e, "name")), "G");
    ck_assert_str_eq(json_string_value(json_object_get(e, "type")), "Microsoft.App/sandboxGroups");
    ck_assert_str_eq(json_string_value(json_object_get(e, "location")), "westeurope");
    ck_assert_ptr_null(json_object_get(e, "_internal"));
    json_decref(e);
    json_decref(r.body);
    /* A body without a type still makes an envelope (and leaks nothing).  */
    r.body = json_object();
    e = api_envelope(&r);
    ck_assert_str_eq(json_string_value(json_object_get(e, "type")), "");
    json_decref(e);
    json_decref(r.body);
}
END_TEST

START_TEST(typed_getters)
{
    json_t *o = json_pack("{s:i,s:f,s:f,s:s,s:b,s:n,s:f,s:s}", "i", 5, "whole", 6.0, "frac", 6.5,
                          "s", "str", "b", 1, "null", "huge", 1e300, "s2", "abc");
    json_object_set_new(o, "nul", json_stringn("a\0b", 3));
    sbx_error_t err = {0};
    bool present;
    json_int_t n = 0;
    double d = 0;
    const char *s = NULL;
    ck_assert_int_eq(api_get_int(o, "i", "t.i", 0, 10, &present, &n, &err), 0);
    ck_assert(present);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(api_get_int(o, "whole", "t.whole", 0, 10, &present, &n, &err), 0);
    ck_assert_int_eq(n, 6);
    ck_assert_int_eq(api_get_int(o, "absent", "t.absent", 0, 10, &present, &n, &err), 0);
    ck_assert(!present);
    ck_assert_int_eq(api_get_int(o, "null", "t.null", 0, 10, &present, &n, &err), 0);
    ck_assert(!present);
    const char *not_int[] = {"frac", "s", "b", "huge"};
    for (size_t i = 0; i < ARRAY_SIZE(not_int); i++) {
        sbx_error_clear(&err);
        ck_assert_msg(api_get_int(o, not_int[i], "t.x", 0, 10, &present, &n, &err) == -1, "%s",
                      not_int[i]);
        ck_assert_str_eq(err.target, "t.x");
        ck_assert_str_eq(err.arm_code, "InvalidRequestContent");
    }
    ck_assert_int_eq(api_get_int(o, "i", "t.i", 6, 10, &present, &n, &err), -1);
    ck_assert_int_eq(api_get_int(o, "i", "t.i", 0, 4, &present, &n, &err), -1);

    ck_assert_int_eq(api_get_number(o, "frac", "t.f", 0, 10, &present, &d, &err), 0);
    ck_assert(d == 6.5);
    ck_assert_int_eq(api_get_number(o, "i", "t.i", 0, 10, &present, &d, &err), 0);
    ck_assert(d == 5.0);
    ck_assert_int_eq(api_get_number(o, "huge", "t.h", 0, 10, &present, &d, &err), -1);
    ck_assert_int_eq(api_get_number(o, "s", "t.s", 0, 10, &present, &d, &err), -1);

    ck_assert_int_eq(api_get_string(o, "s", "t.s", 3, &present, &s, &err), 0);
    ck_assert_str_eq(s, "str");
    ck_assert_int_eq(api_get_string(o, "s", "t.s", 2, &present, &s, &err), -1);
    ck_assert_int_eq(api_get_string(o, "i", "t.i", 10, &present, &s, &err), -1);
    ck_assert_int_eq(api_get_string(o, "nul", "t.nul", 10, &present, &s, &err), -1);
    json_decref(o);
}
END_TEST

START_TEST(env_and_images)
{
    sbx_error_t err = {0};
    json_t *ok = json_pack("{s:s,s:s,s:s}", "PATH", "/bin", "_x", "", "A1_b", "v");
    ck_assert_int_eq(api_validate_env(ok, "env", &err), 0);
    json_decref(ok);
    json_t *bad[] = {
        json_pack("{s:s}", "1A", "v"),  json_pack("{s:s}", "A-B", "v"), json_pack("{s:s}", "", "v"),
        json_pack("{s:s}", "A=B", "v"), json_pack("{s:i}", "A", 1),     json_pack("[s]", "A"),
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ck_assert_msg(api_validate_env(bad[i], "env", &err) == -1, "case %zu", i);
        json_decref(bad[i]);
    }
    json_t *nul = json_object();
    json_object_set_new(nul, "A", json_stringn("a\0b", 3));
    ck_assert_int_eq(api_validate_env(nul, "env", &err), -1);
    json_decref(nul);

    static const char *const images[] = {"python:3.12", "docker.io/library/alpine",
                                         "ghcr.io/o/r@sha256:abc", "localhost:5000/x/y:tag", "a+b"};
    for (size_t i = 0; i < ARRAY_SIZE(images); i++)
        ck_assert_msg(api_image_ref_valid(images[i]), "%s", images[i]);
    static const char *const bad_images[] = {"",    "/abs", "-opt", ".hidden", "a/../b",
                                             "a b", "a\nb", "a;b",  "a$b",     "caf\xc3\xa9"};
    for (size_t i = 0; i < ARRAY_SIZE(bad_images); i++)
        ck_assert_msg(!api_image_ref_valid(bad_images[i]), "%s", bad_images[i]);
    _cleanup_free_ char *long_ref = repeat('a', 513);
    ck_assert(!api_image_ref_valid(long_ref));
}
END_TEST

/* ---- with a database ---- */

static char *tmp;
static st_db_t *db;
static api_t *api;

static void db_setup(void)
{
    tmp = tu_tmpdir("sbx-api");
    ck_assert_ptr_nonnull(tmp);
    _cleanup_free_ char *path = xasprintf("%s/api.db", tmp);
    sbx_error_t err = {0};
    db = st_open(path, NULL, &err);
    ck_assert_msg(db != NULL, "%s", err.msg);
    api = api_new(NULL, db, NULL);
    ck_assert_ptr_nonnull(api);
}

static void db_teardown(void)
{
    api_free(api);
    st_close(db);
    tu_rmdir(tmp);
    free(tmp);
}

START_TEST(tenant_id_stable)
{
    ck_assert_uint_eq(strlen(api->tenant_id), 36);
    _cleanup_free_ char *first = xstrdup(api->tenant_id);
    api_free(api);
    api = api_new(NULL, db, NULL);
    ck_assert_str_eq(api->tenant_id, first);
}
END_TEST

START_TEST(identities)
{
    sbx_error_t err = {0};
    json_t *out = NULL;
    json_t *in = json_pack("{s:s}", "type", "SystemAssigned");
    ck_assert_int_eq(api_validate_identity(api, in, NULL, &out, &err), 0);
    ck_assert_str_eq(json_string_value(json_object_get(out, "type")), "SystemAssigned");
    ck_assert_str_eq(json_string_value(json_object_get(out, "tenantId")), api->tenant_id);
    const char *pid = json_string_value(json_object_get(out, "principalId"));
    ck_assert_uint_eq(strlen(pid), 36);
    /* Kept when the old identity had one.  */
    json_t *again = NULL;
    ck_assert_int_eq(api_validate_identity(api, in, out, &again, &err), 0);
    ck_assert_str_eq(json_string_value(json_object_get(again, "principalId")), pid);
    json_decref(again);
    /* Absent input keeps the old one (PATCH).  */
    ck_assert_int_eq(api_validate_identity(api, NULL, out, &again, &err), 0);
    ck_assert(json_equal(again, out));
    json_decref(again);
    ck_assert_int_eq(api_validate_identity(api, NULL, NULL, &again, &err), 0);
    ck_assert_ptr_null(again);
    json_decref(in);

    const char *uai = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/"
                      "userAssignedIdentities/u";
    in = json_pack("{s:s,s:{s:{}}}", "type", "UserAssigned", "userAssignedIdentities", uai);
    json_t *u = NULL;
    ck_assert_int_eq(api_validate_identity(api, in, NULL, &u, &err), 0);
    json_t *entry = json_object_get(json_object_get(u, "userAssignedIdentities"), uai);
    ck_assert(json_is_string(json_object_get(entry, "principalId")));
    ck_assert(json_is_string(json_object_get(entry, "clientId")));
    ck_assert_ptr_null(json_object_get(u, "tenantId"));
    json_t *u2 = NULL;
    ck_assert_int_eq(api_validate_identity(api, in, u, &u2, &err), 0);
    ck_assert(json_equal(json_object_get(u2, "userAssignedIdentities"),
                         json_object_get(u, "userAssignedIdentities")));
    json_decref(u2);
    json_decref(u);
    json_decref(in);
    json_decref(out);

    json_t *bad[] = {
        json_string("SystemAssigned"),
        json_object(),
        json_pack("{s:s}", "type", "Everything"),
        json_pack("{s:s}", "type", "UserAssigned"),
        json_pack("{s:s,s:{s:{}}}", "type", "UserAssigned", "userAssignedIdentities", "nope"),
        json_pack("{s:s,s:{s:i}}", "type", "UserAssigned", "userAssignedIdentities", uai, 1),
        json_pack("{s:s,s:{s:{}}}", "type", "None", "userAssignedIdentities", uai),
        json_pack("{s:s,s:i}", "type", "UserAssigned", "userAssignedIdentities", 3),
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        sbx_error_clear(&err);
        json_t *o = NULL;
        ck_assert_msg(api_validate_identity(api, bad[i], NULL, &o, &err) == -1, "case %zu", i);
        ck_assert_ptr_null(o);
        ck_assert_int_eq(err.code, SBX_ERR_INVALID);
        ck_assert_msg(sbx_str_has_prefix(err.target, "identity"), "target %s", err.target);
        json_decref(bad[i]);
    }
}
END_TEST

static void put_resource(const char *id, const char *parent, json_t *props)
{
    sbx_error_t err = {0};
    st_tx_t *tx = st_begin(db, &err);
    ck_assert_ptr_nonnull(tx);
    st_resource_t r = {.id = (char *)id,
                       .type = parent ? "microsoft.app/sandboxgroups/sandboxes"
                                      : "microsoft.app/sandboxgroups",
                       .name = "n",
                       .subscription = SUB,
                       .resource_group = "rg",
                       .parent_id = (char *)parent};
    r.body = json_pack("{s:o}", "properties", props);
    ck_assert_int_eq(st_tx_resource_put(tx, &r, &err), 0);
    json_decref(r.body);
    ck_assert_int_eq(st_commit(tx, &err), 0);
}

static void put_operation(const char *op_id, const char *resource_id, const char *kind)
{
    sbx_error_t err = {0};
    st_tx_t *tx = st_begin(db, &err);
    st_operation_t op = {.resource_id = (char *)resource_id,
                         .kind = (char *)kind,
                         .status = "InProgress",
                         .location = "westeurope",
                         .subscription = SUB,
                         .start_ms = sbx_now_ms()};
    snprintf(op.id, sizeof(op.id), "%s", op_id);
    ck_assert_int_eq(st_tx_operation_put(tx, &op, &err), 0);
    ck_assert_int_eq(st_commit(tx, &err), 0);
}

static json_t *props_of(const char *id)
{
    st_resource_t r = {0};
    sbx_error_t err = {0};
    if (st_resource_get(db, id, &r, &err) < 0)
        return NULL;
    json_t *p = json_incref(json_object_get(r.body, "properties"));
    st_resource_done(&r);
    return p;
}

START_TEST(operation_finish)
{
    const char *g =
        "/subscriptions/" SUB "/resourceGroups/rg/providers/Microsoft.App/sandboxGroups/g";
    _cleanup_free_ char *s = xasprintf("%s/sandboxes/s", g);
    put_resource(g, NULL, json_pack("{s:s}", "provisioningState", "InProgress"));
    put_resource(s, g,
                 json_pack("{s:s,s:s}", "provisioningState", "InProgress", "state", "Pending"));
    put_operation("op-create", s, "create");
    sbx_error_t err = {0};

    /* Success: Succeeded, patch merged, end time set.  */
    json_t *patch = json_pack("{s:s,s:s}", "state", "Running", "host", "h1");
    ck_assert_msg(api_operation_finish(db, "op-create", true, NULL, NULL, patch, &err) == 0, "%s",
                  err.msg);
    json_decref(patch);
    json_t *p = props_of(s);
    ck_assert_str_eq(json_string_value(json_object_get(p, "provisioningState")), "Succeeded");
    ck_assert_str_eq(json_string_value(json_object_get(p, "state")), "Running");
    ck_assert_str_eq(json_string_value(json_object_get(p, "host")), "h1");
    json_decref(p);
    st_operation_t op = {0};
    ck_assert_int_eq(st_operation_get(db, "op-create", &op, &err), 0);
    ck_assert_str_eq(op.status, "Succeeded");
    ck_assert_int_ge(op.end_ms, op.start_ms);
    ck_assert_ptr_null(op.error);
    st_operation_done(&op);

    /* Finishing twice changes nothing.  */
    ck_assert_int_eq(api_operation_finish(db, "op-create", false, "Late", "late", NULL, &err), 0);
    ck_assert_int_eq(st_operation_get(db, "op-create", &op, &err), 0);
    ck_assert_str_eq(op.status, "Succeeded");
    st_operation_done(&op);

    /* Failure: Failed with the code and message.  */
    put_operation("op-update", s, "update");
    ck_assert_int_eq(
        api_operation_finish(db, "op-update", false, "HostDown", "no host", NULL, &err), 0);
    p = props_of(s);
    ck_assert_str_eq(json_string_value(json_object_get(p, "provisioningState")), "Failed");
    json_decref(p);
    ck_assert_int_eq(st_operation_get(db, "op-update", &op, &err), 0);
    ck_assert_str_eq(op.status, "Failed");
    ck_assert_str_eq(json_string_value(json_object_get(op.error, "code")), "HostDown");
    ck_assert_str_eq(json_string_value(json_object_get(op.error, "message")), "no host");
    st_operation_done(&op);
    put_operation("op-fail-default", s, "update");
    ck_assert_int_eq(api_operation_finish(db, "op-fail-default", false, NULL, NULL, NULL, &err), 0);
    ck_assert_int_eq(st_operation_get(db, "op-fail-default", &op, &err), 0);
    ck_assert_str_eq(json_string_value(json_object_get(op.error, "code")), "OperationFailed");
    st_operation_done(&op);

    /* A successful delete of the group removes it and its children.  */
    put_operation("op-delete", g, "delete");
    ck_assert_int_eq(api_operation_finish(db, "op-delete", true, NULL, NULL, NULL, &err), 0);
    ck_assert_ptr_null(props_of(g));
    ck_assert_ptr_null(props_of(s));
    ck_assert_int_eq(st_operation_get(db, "op-delete", &op, &err), 0);
    ck_assert_str_eq(op.status, "Succeeded");
    st_operation_done(&op);

    /* The resource is already gone: the operation still finishes.  */
    put_operation("op-orphan", s, "update");
    ck_assert_int_eq(api_operation_finish(db, "op-orphan", true, NULL, NULL, NULL, &err), 0);
    ck_assert_int_eq(st_operation_get(db, "op-orphan", &op, &err), 0);
    ck_assert_str_eq(op.status, "Succeeded");
    st_operation_done(&op);

    /* An unknown operation is an error.  */
    sbx_error_clear(&err);
    ck_assert_int_eq(api_operation_finish(db, "no-such-op", true, NULL, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
}
END_TEST

/* secureEnv sealing: a round trip, no plain text in the sealed form, a
 * fresh nonce each time, and nothing opens with another key or after a
 * change of any byte.  */
START_TEST(secret_sealing)
{
    unsigned char key[API_SECRET_KEY_LEN], other[API_SECRET_KEY_LEN];
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (unsigned char)i;
        other[i] = (unsigned char)(i + 1);
    }
    _cleanup_json_ json_t *in = json_pack("{s:s,s:s}", "TOKEN", "plain-secret-123", "B", "");
    sbx_error_t err = {0};
    _cleanup_free_ char *a = api_secret_seal(key, in, &err);
    _cleanup_free_ char *b = api_secret_seal(key, in, &err);
    ck_assert_msg(a && b, "%s", err.msg);
    ck_assert(sbx_str_has_prefix(a, "v1:"));
    ck_assert_ptr_null(strstr(a, "plain-secret"));
    ck_assert_ptr_null(strstr(a, "TOKEN"));
    ck_assert_str_ne(a, b);
    json_t *out = api_secret_open(key, a, &err);
    ck_assert_msg(out != NULL, "%s", err.msg);
    ck_assert(json_equal(out, in));
    json_decref(out);
    ck_assert_ptr_null(api_secret_open(other, a, &err));
    for (size_t i = 3; a[i]; i++) {
        char saved = a[i];
        a[i] = saved == 'A' ? 'B' : 'A';
        ck_assert_msg(api_secret_open(key, a, &err) == NULL, "changed byte %zu opened", i);
        a[i] = saved;
    }
    const char *bad[] = {"", "v1:", "v2:AAAA", "v1:!!!!", "v1:AAAA", "plain", "v1:AAA"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        ck_assert_msg(api_secret_open(key, bad[i], &err) == NULL, "'%s' opened", bad[i]);
    ck_assert_ptr_null(api_secret_open(key, NULL, &err));
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *pure = tcase_create("pure");
    tcase_add_test(pure, name_rules);
    tcase_add_test(pure, resource_group_rules);
    tcase_add_test(pure, route_matching);
    tcase_add_test(pure, api_versions);
    tcase_add_test(pure, arm_ids);
    tcase_add_test(pure, tags);
    tcase_add_test(pure, locations_and_urls);
    tcase_add_test(pure, system_data);
    tcase_add_test(pure, envelope);
    tcase_add_test(pure, typed_getters);
    tcase_add_test(pure, env_and_images);
    tcase_add_test(pure, secret_sealing);
    suite_add_tcase(s, pure);
    TCase *withdb = tcase_create("db");
    tcase_add_checked_fixture(withdb, db_setup, db_teardown);
    tcase_add_test(withdb, tenant_id_stable);
    tcase_add_test(withdb, identities);
    tcase_add_test(withdb, operation_finish);
    suite_add_tcase(s, withdb);
    return s;
}

int main(void)
{
    return tu_run(api_suite());
}
