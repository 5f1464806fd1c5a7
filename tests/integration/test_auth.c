/* test_auth.c -- authentication, roles and identity tokens against a real
 * sandboxd: tokens of a trusted external issuer (keys made here, JWKS in a
 * file) and of sandboxd's own issuer, the refusals a verifier must make,
 * role assignments at every scope, identity tokens checked with the
 * openssl command, key rotation with overlap, keys kept across a restart,
 * and the audit log.  */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "auth/internal.h"
#include "tests/testutil.h"

#define SUB "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e"
#define SUB2 "7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f"
#define API "api-version=2026-07-01"
#define EXT_ISS "https://idp.example.test/tenant"
#define EXT_AUD "api://sandboxd"
#define UAI_ID                                                                                     \
    "/subscriptions/" SUB "/resourceGroups/ids/providers/Microsoft.ManagedIdentity/"               \
    "userAssignedIdentities/builder"

static tu_server_t srv;
static char *tmp, *data, *jwks_path;
static EVP_PKEY *ext_rsa, *ext_ec, *stranger;
static char *rsa_kid, *ec_kid;

static void dump_log(void)
{
    _cleanup_free_ char *log = NULL;
    size_t len;
    if (srv.log && sbx_read_file(srv.log, &log, &len, NULL) == 0) {
        size_t from = len > 8000 ? len - 8000 : 0;
        fprintf(stderr, "---- sandboxd log (tail) ----\n%s\n----\n", log + from);
    }
}

/* The external issuer: an RSA and a P-256 key, published in a JWKS file.  */
static void external_issuer(void)
{
    ext_rsa = jwt_key_generate("RS256");
    ext_ec = jwt_key_generate("ES256");
    stranger = jwt_key_generate("RS256");
    ck_assert(ext_rsa && ext_ec && stranger);
    json_t *keys = json_pack("{s:[o,o]}", "keys", jwt_jwk_public(ext_rsa, &rsa_kid),
                             jwt_jwk_public(ext_ec, &ec_kid));
    jwks_path = xasprintf("%s/idp-jwks.json", tmp);
    ck_assert_int_eq(json_dump_file(keys, jwks_path, 0), 0);
    json_decref(keys);
}

static void start(const char *const *extra)
{
    if (tu_server_start(&srv, data, extra) < 0)
        dump_log();
    ck_assert_msg(srv.pid > 0, "sandboxd did not start");
}

static char *issuer_arg;
static const char *std_args[] = {"--oidc-issuer",
                                 NULL,
                                 "--oidc-audience",
                                 EXT_AUD,
                                 "--oidc-audience",
                                 "https://management.azure.com/",
                                 NULL};

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    tmp = tu_tmpdir("sbx-auth");
    ck_assert_ptr_nonnull(tmp);
    data = xasprintf("%s/data", tmp);
    external_issuer();
    issuer_arg = xasprintf(EXT_ISS "=%s", jwks_path);
    std_args[1] = issuer_arg;
    start(std_args);
    ck_assert_ptr_nonnull(srv.token);
}

static void teardown(void)
{
    if (srv.pid > 0) {
        int status = tu_server_stop(&srv);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            dump_log();
    }
    tu_server_done(&srv);
    EVP_PKEY_free(ext_rsa);
    EVP_PKEY_free(ext_ec);
    EVP_PKEY_free(stranger);
    free(rsa_kid);
    free(ec_kid);
    free(jwks_path);
    free(issuer_arg);
    tu_rmdir(tmp);
    free(tmp);
    free(data);
    curl_global_cleanup();
}

/* One call with a bearer token (NULL: none); the reply's JSON in *out and
 * its WWW-Authenticate in *www when asked.  */
static long call(const char *method, const char *path, const char *token, const char *body,
                 json_t **out, char **www)
{
    _cleanup_free_ char *url = xasprintf(
        "%s%s%s", srv.base, path,
        strchr(path, '?') || !strncmp(path, "/admin", 6) || !strncmp(path, "/.well", 6) ? ""
                                                                                        : "?" API);
    _cleanup_free_ char *auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
    const char *hdrs[] = {auth, NULL};
    tu_request_opts_t o = {.body = body, .headers = hdrs, .timeout_ms = 20000};
    tu_response_t r;
    ck_assert_int_eq(tu_http(method, url, &o, &r), 0);
    long status = r.status;
    if (out)
        *out = tu_json(&r);
    if (www)
        *www = tu_header(&r, "WWW-Authenticate");
    tu_response_free(&r);
    return status;
}

static const char *err_code(const json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

static void want_code(const char *method, const char *path, const char *token, const char *body,
                      long status, const char *code)
{
    json_t *j = NULL;
    long got = call(method, path, token, body, &j, NULL);
    ck_assert_msg(got == status && (!code || (err_code(j) && !strcmp(err_code(j), code))),
                  "%s %s: %ld %s, wanted %ld %s", method, path, got, err_code(j) ? err_code(j) : "",
                  status, code ? code : "");
    json_decref(j);
}

static char *gpath(const char *sub, const char *rg, const char *g)
{
    return xasprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/"
                     "sandboxGroups/%s",
                     sub, rg, g);
}

/* A token of the external issuer: `claims` (stolen) gets iss, aud, sub,
 * exp and nbf unless it has them.  */
static char *ext_token(EVP_PKEY *key, const char *kid, json_t *claims)
{
    int64_t now = time(NULL);
    const char *defaults[] = {"iss", "aud", "sub"};
    const char *values[] = {EXT_ISS, EXT_AUD, "alice"};
    for (size_t i = 0; i < ARRAY_SIZE(defaults); i++)
        if (!json_object_get(claims, defaults[i]))
            json_object_set_new(claims, defaults[i], json_string(values[i]));
    if (!json_object_get(claims, "exp"))
        json_object_set_new(claims, "exp", json_integer(now + 600));
    if (!json_object_get(claims, "nbf"))
        json_object_set_new(claims, "nbf", json_integer(now - 10));
    char *tok = jwt_sign(key, kid, claims, NULL);
    json_decref(claims);
    ck_assert_ptr_nonnull(tok);
    return tok;
}

/* header.claims. with no signature: what "alg": "none" looks like.  */
static char *unsigned_token(const char *alg)
{
    _cleanup_free_ char *h =
        xasprintf("{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JWT\"}", alg, rsa_kid);
    _cleanup_free_ char *c = xasprintf("{\"iss\":\"" EXT_ISS "\",\"aud\":\"" EXT_AUD
                                       "\",\"sub\":\"alice\",\"exp\":%lld}",
                                       (long long)time(NULL) + 600);
    _cleanup_free_ char *hb = jwt_b64url_encode((const unsigned char *)h, strlen(h));
    _cleanup_free_ char *cb = jwt_b64url_encode((const unsigned char *)c, strlen(c));
    return xasprintf("%s.%s.", hb, cb);
}

/* A well-signed token whose header has "crit": ["exp"].  */
static char *crit_token(void)
{
    _cleanup_free_ char *h =
        xasprintf("{\"alg\":\"RS256\",\"kid\":\"%s\",\"crit\":[\"exp\"],\"exp\":1}", rsa_kid);
    _cleanup_free_ char *c = xasprintf("{\"iss\":\"" EXT_ISS "\",\"aud\":\"" EXT_AUD
                                       "\",\"sub\":\"alice\",\"exp\":%lld}",
                                       (long long)time(NULL) + 600);
    _cleanup_free_ char *hb = jwt_b64url_encode((const unsigned char *)h, strlen(h));
    _cleanup_free_ char *cb = jwt_b64url_encode((const unsigned char *)c, strlen(c));
    _cleanup_free_ char *input = xasprintf("%s.%s", hb, cb);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[512];
    size_t len = sizeof(sig);
    ck_assert(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, ext_rsa) == 1 &&
              EVP_DigestSign(md, sig, &len, (const unsigned char *)input, strlen(input)) == 1);
    EVP_MD_CTX_free(md);
    _cleanup_free_ char *sb = jwt_b64url_encode(sig, len);
    return xasprintf("%s.%s", input, sb);
}

static char *own_issuer(void)
{
    json_t *d = NULL;
    ck_assert_int_eq(call("GET", "/.well-known/openid-configuration", NULL, NULL, &d, NULL), 200);
    char *iss = xstrdup(json_string_value(json_object_get(d, "issuer")));
    json_decref(d);
    return iss;
}

static void want_refused(const char *what, const char *token)
{
    _cleanup_free_ char *p =
        xasprintf("/subscriptions/%s/providers/Microsoft.App/sandboxGroups", SUB);
    json_t *j = NULL;
    _cleanup_free_ char *www = NULL;
    long status = call("GET", p, token, NULL, &j, &www);
    ck_assert_msg(status == 401, "%s: %ld", what, status);
    ck_assert_str_eq(err_code(j), "InvalidAuthenticationToken");
    ck_assert_msg(www && sbx_str_has_prefix(www, "Bearer ") && strstr(www, "invalid_token"),
                  "%s: WWW-Authenticate %s", what, www);
    json_decref(j);
}

START_TEST(external_tokens_refused_unless_valid)
{
    _cleanup_free_ char *list = xasprintf("/subscriptions/%s/providers/Microsoft.App/"
                                          "sandboxGroups",
                                          SUB);
    ck_assert_int_eq(tu_assign_role(&srv, "alice-reader", "alice", "Reader", "/subscriptions/" SUB),
                     201);
    /* Good tokens, RS256 and ES256, an audience among several.  */
    _cleanup_free_ char *good = ext_token(ext_rsa, rsa_kid, json_object());
    ck_assert_int_eq(call("GET", list, good, NULL, NULL, NULL), 200);
    _cleanup_free_ char *good_ec =
        ext_token(ext_ec, ec_kid, json_pack("{s:[s,s]}", "aud", "https://other.example", EXT_AUD));
    ck_assert_int_eq(call("GET", list, good_ec, NULL, NULL, NULL), 200);

    /* No header at all.  */
    json_t *j = NULL;
    _cleanup_free_ char *www = NULL;
    ck_assert_int_eq(call("GET", list, NULL, NULL, &j, &www), 401);
    ck_assert_str_eq(err_code(j), "AuthenticationFailed");
    ck_assert_msg(www && sbx_str_has_prefix(www, "Bearer realm="), "%s", www);
    json_decref(j);

    int64_t now = time(NULL);
    struct {
        const char *what;
        char *tok;
    } bad[] = {
        {"expired", ext_token(ext_rsa, rsa_kid, json_pack("{s:I}", "exp", (json_int_t)now - 600))},
        {"not yet valid",
         ext_token(ext_rsa, rsa_kid, json_pack("{s:I}", "nbf", (json_int_t)now + 600))},
        {"no exp", NULL},
        {"wrongly signed", ext_token(stranger, rsa_kid, json_object())},
        {"ES256 key claimed as RS256", NULL},
        {"alg none", unsigned_token("none")},
        {"alg HS256", unsigned_token("HS256")},
        {"wrong audience", ext_token(ext_rsa, rsa_kid, json_pack("{s:s}", "aud", "api://other"))},
        {"unknown kid", ext_token(ext_rsa, "no-such-kid", json_object())},
        {"wrong issuer",
         ext_token(ext_rsa, rsa_kid, json_pack("{s:s}", "iss", "https://evil.example.test"))},
        {"own issuer, foreign key", NULL},
        {"not a JWT", xstrdup("abc.def")},
        {"critical extension", NULL},
    };
    /* A token without exp: built by hand, ext_token would add one.  */
    json_t *noexp = json_pack("{s:s,s:s,s:s}", "iss", EXT_ISS, "aud", EXT_AUD, "sub", "alice");
    bad[2].tok = jwt_sign(ext_rsa, rsa_kid, noexp, NULL);
    json_decref(noexp);
    bad[4].tok = ext_token(ext_ec, rsa_kid, json_object());
    _cleanup_free_ char *own = own_issuer();
    bad[10].tok = ext_token(ext_rsa, rsa_kid, json_pack("{s:s}", "iss", own));
    bad[12].tok = crit_token();
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        want_refused(bad[i].what, bad[i].tok);
        free(bad[i].tok);
    }
    /* A valid token whose subject holds no role: authenticated, not allowed.  */
    _cleanup_free_ char *bob = ext_token(ext_rsa, rsa_kid, json_pack("{s:s}", "sub", "bob"));
    want_code("GET", list, bob, NULL, 403, "AuthorizationFailed");
    /* Roles may name a group of the token, and be held to its issuer.  */
    _cleanup_free_ char *carol = ext_token(
        ext_rsa, rsa_kid, json_pack("{s:s,s:[s]}", "sub", "carol", "groups", "readers-group"));
    want_code("GET", list, carol, NULL, 403, "AuthorizationFailed");
    ck_assert_int_eq(tu_assign_role(&srv, "g-reader", "readers-group", "Reader", "/"), 201);
    ck_assert_int_eq(call("GET", list, carol, NULL, NULL, NULL), 200);
}
END_TEST

static char *sbpath(const char *rg, const char *g, const char *s)
{
    _cleanup_free_ char *gp = gpath(SUB, rg, g);
    return xasprintf("%s/sandboxes/%s", gp, s);
}

START_TEST(roles_limit_what_tokens_do)
{
    _cleanup_free_ char *g1 = gpath(SUB, "rg1", "g1"), *g2 = gpath(SUB, "rg2", "g2");
    _cleanup_free_ char *g_other = gpath(SUB2, "rg1", "g1");
    const char *loc = "{\"location\":\"westeurope\"}";
    /* The dev token is Contributor on every subscription.  */
    want_code("PUT", g1, srv.token, loc, 201, NULL);
    want_code("PUT", g2, srv.token, loc, 201, NULL);
    want_code("PUT", g_other, srv.token, loc, 201, NULL);
    _cleanup_free_ char *s1 = sbpath("rg1", "g1", "s1");
    want_code("PUT", s1, srv.token, "{\"properties\":{}}", 201, NULL);

    _cleanup_free_ char *reader = tu_mint_token(&srv, "reader");
    _cleanup_free_ char *contrib = tu_mint_token(&srv, "contrib");
    _cleanup_free_ char *exec = tu_mint_token(&srv, "executor");
    _cleanup_free_ char *owner = tu_mint_token(&srv, "rg-owner");
    ck_assert(reader && contrib && exec && owner);
    ck_assert_int_eq(tu_assign_role(&srv, "r1", "reader", "Reader", "/subscriptions/" SUB), 201);
    ck_assert_int_eq(tu_assign_role(&srv, "c1", "contrib", "Contributor",
                                    "/subscriptions/" SUB "/resourceGroups/rg1"),
                     201);
    _cleanup_free_ char *g1_scope = gpath(SUB, "rg1", "g1");
    ck_assert_int_eq(tu_assign_role(&srv, "e1", "executor", "Sandbox Executor", g1_scope), 201);
    ck_assert_int_eq(tu_assign_role(&srv, "o1", "rg-owner", "Owner",
                                    "/subscriptions/" SUB "/resourceGroups/rg2"),
                     201);
    /* Bad assignments.  */
    ck_assert_int_eq(tu_assign_role(&srv, "x1", "someone", "Superuser", "/"), 400);
    ck_assert_int_eq(tu_assign_role(&srv, "x2", "someone", "Reader", "/subscriptions"), 400);
    ck_assert_int_eq(tu_assign_role(&srv, "bad*name", "someone", "Reader", "/"), 400);

    /* Reader: reads, never writes.  */
    want_code("GET", g1, reader, NULL, 200, NULL);
    want_code("GET", g2, reader, NULL, 200, NULL);
    want_code("PUT", g1, reader, loc, 403, "AuthorizationFailed");
    want_code("DELETE", g2, reader, NULL, 403, "AuthorizationFailed");
    want_code("GET", g_other, reader, NULL, 403, "AuthorizationFailed");
    _cleanup_free_ char *exec_path = xasprintf("%s/exec", s1);
    want_code("POST", exec_path, reader, "{\"command\":[\"true\"]}", 403, "AuthorizationFailed");

    /* Contributor on rg1: everything there, nothing in rg2.  */
    _cleanup_free_ char *g3 = gpath(SUB, "rg1", "g3");
    json_t *j = NULL;
    ck_assert_int_eq(call("PUT", g3, contrib, loc, &j, NULL), 201);
    /* systemData names the token's subject.  */
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "systemData"), "createdBy")),
        "contrib");
    json_decref(j);
    want_code("GET", g2, contrib, NULL, 403, "AuthorizationFailed");
    want_code("PUT", g2, contrib, loc, 403, "AuthorizationFailed");
    want_code("DELETE", g2, contrib, NULL, 403, "AuthorizationFailed");
    _cleanup_free_ char *g4 = gpath(SUB, "rg2", "g4");
    want_code("PUT", g4, contrib, loc, 403, "AuthorizationFailed");

    /* Sandbox Executor on g1: exec (which reaches the sandbox: no host runs
     * it here, so not 403) and files, but no deletes or creates.  */
    j = NULL;
    long st = call("POST", exec_path, exec, "{\"command\":[\"true\"]}", &j, NULL);
    ck_assert_msg(st != 403 && st != 401, "exec: %ld", st);
    json_decref(j);
    _cleanup_free_ char *files = xasprintf("%s/files?path=/tmp&" API, s1);
    st = call("GET", files, exec, NULL, NULL, NULL);
    ck_assert_msg(st != 403 && st != 401, "files: %ld", st);
    want_code("DELETE", s1, exec, NULL, 403, "AuthorizationFailed");
    _cleanup_free_ char *s2 = sbpath("rg1", "g1", "s2");
    want_code("PUT", s2, exec, "{\"properties\":{}}", 403, "AuthorizationFailed");
    _cleanup_free_ char *stop = xasprintf("%s/stop", s1);
    want_code("POST", stop, exec, NULL, 403, "AuthorizationFailed");
    want_code("GET", g2, exec, NULL, 403, "AuthorizationFailed");

    /* The admin API: Owner where the assignment goes, or the admin token.  */
    json_t *body =
        json_pack("{s:{s:s,s:s,s:s}}", "properties", "principalId", "dave", "roleDefinitionName",
                  "Reader", "scope", "/subscriptions/" SUB "/resourceGroups/rg2");
    _cleanup_free_ char *as = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    want_code("PUT", "/admin/roleAssignments/d1", reader, as, 403, "AuthorizationFailed");
    want_code("PUT", "/admin/roleAssignments/d1", contrib, as, 403, "AuthorizationFailed");
    want_code("PUT", "/admin/roleAssignments/d1", owner, as, 201, NULL);
    body = json_pack("{s:{s:s,s:s,s:s}}", "properties", "principalId", "dave", "roleDefinitionName",
                     "Owner", "scope", "/subscriptions/" SUB);
    _cleanup_free_ char *wider = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    want_code("PUT", "/admin/roleAssignments/d2", owner, wider, 403, "AuthorizationFailed");
    /* It sees what it owns, and no more.  */
    j = NULL;
    ck_assert_int_eq(call("GET", "/admin/roleAssignments", owner, NULL, &j, NULL), 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "value")), 2); /* o1, d1 */
    json_decref(j);
    want_code("GET", "/admin/hosts", owner, NULL, 403, "AuthorizationFailed");
    want_code("POST", "/admin/tokens", owner, "{\"subject\":\"x\"}", 403, "AuthorizationFailed");
    want_code("DELETE", "/admin/roleAssignments/d1", owner, NULL, 200, NULL);
    want_code("DELETE", "/admin/roleAssignments/c1", owner, NULL, 403, "AuthorizationFailed");
    /* Removing the assignment takes the rights away at once.  */
    _cleanup_free_ char *admin = tu_server_admin_token(&srv);
    want_code("DELETE", "/admin/roleAssignments/r1", admin, NULL, 200, NULL);
    want_code("GET", g1, reader, NULL, 403, "AuthorizationFailed");
}
END_TEST

#define AUTHZ "/providers/Microsoft.Authorization"
#define READER_ID "acdd72a7-3385-48ef-bd42-f606fba81ae7"

static char *arm_assignment(const char *role_guid, const char *principal)
{
    json_t *body = json_pack("{s:{s:s,s:s,s:s}}", "properties", "roleDefinitionId", role_guid,
                             "principalId", principal, "principalType", "User");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return text;
}

/* roleAssignments and roleDefinitions in ARM's shape, over the same
 * assignments the admin API keeps.  */
START_TEST(arm_role_assignments)
{
    const char *rg2 = "/subscriptions/" SUB "/resourceGroups/rg2";
    _cleanup_free_ char *g2 = gpath(SUB, "rg2", "g2");
    want_code("PUT", g2, srv.token, "{\"location\":\"westeurope\"}", 201, NULL);
    _cleanup_free_ char *owner = tu_mint_token(&srv, "rg-owner");
    _cleanup_free_ char *erin = tu_mint_token(&srv, "erin");
    ck_assert_int_eq(tu_assign_role(&srv, "o1", "rg-owner", "Owner", rg2), 201);

    /* The built-in definitions, found by name the way clients do.  */
    json_t *j = NULL;
    _cleanup_free_ char *defs = xasprintf("/subscriptions/" SUB AUTHZ "/roleDefinitions?$filter="
                                          "roleName%%20eq%%20%%27Reader%%27&" API);
    ck_assert_int_eq(call("GET", defs, erin, NULL, &j, NULL), 200);
    json_t *list = json_object_get(j, "value");
    ck_assert_int_eq(json_array_size(list), 1);
    const char *def_id = json_string_value(json_object_get(json_array_get(list, 0), "id"));
    ck_assert_str_eq(def_id, "/subscriptions/" SUB AUTHZ "/roleDefinitions/" READER_ID);
    _cleanup_free_ char *reader_def = xstrdup(def_id);
    json_decref(j);
    _cleanup_free_ char *all_defs = xasprintf("%s" AUTHZ "/roleDefinitions", rg2);
    ck_assert_int_eq(call("GET", all_defs, erin, NULL, &j, NULL), 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "value")), 4);
    json_decref(j);
    _cleanup_free_ char *one_def = xasprintf("%s/" READER_ID, all_defs);
    want_code("GET", one_def, erin, NULL, 200, NULL);
    _cleanup_free_ char *no_def = xasprintf("%s/00000000-0000-0000-0000-000000000000", all_defs);
    want_code("GET", no_def, erin, NULL, 404, "RoleDefinitionDoesNotExist");
    want_code("DELETE", one_def, srv.token, NULL, 405, "MethodNotAllowed");

    /* Erin gets Reader on rg2 from its Owner, and may read there at once.  */
    want_code("GET", g2, erin, NULL, 403, "AuthorizationFailed");
    const char *name = "3f2c8a4e-1b7d-4e9a-8c5f-6d0b2a9e7c13";
    _cleanup_free_ char *as_path = xasprintf("%s" AUTHZ "/roleAssignments/%s", rg2, name);
    _cleanup_free_ char *body = arm_assignment(reader_def, "erin");
    ck_assert_int_eq(call("PUT", as_path, owner, body, &j, NULL), 201);
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), as_path);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")),
                     "Microsoft.Authorization/roleAssignments");
    json_t *props = json_object_get(j, "properties");
    ck_assert_str_eq(json_string_value(json_object_get(props, "roleDefinitionId")), reader_def);
    ck_assert_str_eq(json_string_value(json_object_get(props, "scope")), rg2);
    ck_assert_str_eq(json_string_value(json_object_get(props, "principalId")), "erin");
    json_decref(j);
    want_code("GET", g2, erin, NULL, 200, NULL);
    want_code("PUT", g2, erin, "{\"location\":\"westeurope\"}", 403, "AuthorizationFailed");
    want_code("GET", as_path, erin, NULL, 200, NULL);
    /* The admin API sees the same assignment.  */
    _cleanup_free_ char *admin = tu_server_admin_token(&srv);
    _cleanup_free_ char *admin_path = xasprintf("/admin/roleAssignments/%s", name);
    want_code("GET", admin_path, admin, NULL, 200, NULL);

    /* Same again is fine; a change or a second name for it is not.  */
    want_code("PUT", as_path, owner, body, 201, NULL);
    _cleanup_free_ char *contrib = arm_assignment(
        "/subscriptions/" SUB AUTHZ "/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c",
        "erin");
    want_code("PUT", as_path, owner, contrib, 409, "RoleAssignmentUpdateNotPermitted");
    _cleanup_free_ char *twin =
        xasprintf("%s" AUTHZ "/roleAssignments/9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", rg2);
    want_code("PUT", twin, owner, body, 409, "RoleAssignmentExists");
    /* Bad input.  */
    _cleanup_free_ char *bad_name = xasprintf("%s" AUTHZ "/roleAssignments/not-a-guid", rg2);
    want_code("PUT", bad_name, owner, body, 400, "InvalidRoleAssignmentId");
    _cleanup_free_ char *bad_role = arm_assignment("/providers/x/roleDefinitions/nope", "erin");
    want_code("PUT", twin, owner, bad_role, 400, "RoleDefinitionDoesNotExist");
    _cleanup_free_ char *short_role = arm_assignment("/x", "erin");
    want_code("PUT", twin, owner, short_role, 400, "RoleDefinitionDoesNotExist");
    want_code("PUT", twin, owner, "{\"properties\":[]}", 400, "InvalidRequestContent");
    want_code("PUT", twin, owner, "not json", 400, "InvalidRequestContent");
    _cleanup_free_ char *no_version = xasprintf("%s?x=1", twin);
    want_code("PUT", no_version, owner, body, 400, "MissingApiVersionParameter");
    _cleanup_free_ char *bad_scope =
        xasprintf("/subscriptions/" SUB "/resourceGroups" AUTHZ "/roleAssignments/%s", name);
    want_code("GET", bad_scope, owner, NULL, 400, "InvalidScope");
    want_code("GET", as_path, NULL, NULL, 401, NULL);
    /* Owner of rg2 only: not over the subscription.  */
    _cleanup_free_ char *wide = xasprintf("/subscriptions/" SUB AUTHZ "/roleAssignments/%s", name);
    want_code("PUT", wide, owner, body, 403, "AuthorizationFailed");
    want_code("PUT", twin, erin, contrib, 403, "AuthorizationFailed");
    /* The same name at another scope is not there.  */
    want_code("GET", wide, srv.token, NULL, 404, "RoleAssignmentNotFound");

    /* Lists: at and above the scope (the Owner's, at rg2), and filters.  */
    _cleanup_free_ char *list_path = xasprintf("%s" AUTHZ "/roleAssignments", rg2);
    ck_assert_int_eq(call("GET", list_path, erin, NULL, &j, NULL), 200);
    ck_assert_int_ge(json_array_size(json_object_get(j, "value")), 2);
    json_decref(j);
    _cleanup_free_ char *mine =
        xasprintf("%s?$filter=principalId%%20eq%%20%%27erin%%27&" API, list_path);
    ck_assert_int_eq(call("GET", mine, erin, NULL, &j, NULL), 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "value")), 1);
    json_decref(j);
    _cleanup_free_ char *odd = xasprintf("%s?$filter=whatever&" API, list_path);
    want_code("GET", odd, erin, NULL, 400, "InvalidFilter");
    _cleanup_free_ char *other_rg =
        xasprintf("/subscriptions/" SUB "/resourceGroups/rg1" AUTHZ "/roleAssignments");
    want_code("GET", other_rg, erin, NULL, 403, "AuthorizationFailed");

    /* Delete: by the Owner only; then the rights are gone; again is 204.  */
    want_code("DELETE", as_path, erin, NULL, 403, "AuthorizationFailed");
    want_code("DELETE", as_path, owner, NULL, 200, NULL);
    want_code("GET", g2, erin, NULL, 403, "AuthorizationFailed");
    want_code("DELETE", as_path, owner, NULL, 204, NULL);
}
END_TEST

static json_t *claims_of(const char *tok)
{
    jwt_t j;
    ck_assert_int_eq(jwt_parse(tok, &j, NULL), 0);
    json_t *c = json_incref(j.claims);
    jwt_done(&j);
    return c;
}

/* Whether the openssl command verifies tok against sandboxd's JWKS.  */
static bool openssl_verifies(const char *tok)
{
    json_t *jwks = NULL;
    ck_assert_int_eq(call("GET", "/.well-known/jwks.json", NULL, NULL, &jwks, NULL), 200);
    _cleanup_free_ char *jwks_file = xasprintf("%s/jwks.json", tmp);
    _cleanup_free_ char *tok_file = xasprintf("%s/token", tmp);
    ck_assert_int_eq(json_dump_file(jwks, jwks_file, 0), 0);
    json_decref(jwks);
    ck_assert_int_eq(sbx_write_file_atomic(tok_file, tok, strlen(tok), 0600, NULL), 0);
    _cleanup_free_ char *script = tu_src("tests/fixtures/jwt-openssl-verify.sh");
    _cleanup_free_ char *cmd =
        xasprintf("'%s' '%s' '%s' >/dev/null 2>&1", script, tok_file, jwks_file);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

static char *identity_token(const char *token, const char *sandbox_id, const char *resource,
                            long want)
{
    json_t *b = json_pack("{s:s,s:s}", "sandboxId", sandbox_id, "resource", resource);
    _cleanup_free_ char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    json_t *j = NULL;
    long st = call("POST", "/admin/identityTokens", token, body, &j, NULL);
    ck_assert_msg(st == want, "identity token for %s: %ld %s", sandbox_id, st,
                  err_code(j) ? err_code(j) : "");
    const char *t = json_string_value(json_object_get(j, "access_token"));
    char *out = t ? xstrdup(t) : NULL;
    if (want == 200)
        ck_assert_str_eq(json_string_value(json_object_get(j, "token_type")), "Bearer");
    json_decref(j);
    return out;
}

START_TEST(identity_tokens)
{
    _cleanup_free_ char *g = gpath(SUB, "ids", "g1");
    _cleanup_free_ char *gbody = xasprintf(
        "{\"location\":\"westeurope\",\"identity\":{\"type\":\"SystemAssigned,UserAssigned\","
        "\"userAssignedIdentities\":{\"%s\":{}}}}",
        UAI_ID);
    json_t *gj = NULL;
    ck_assert_int_eq(call("PUT", g, srv.token, gbody, &gj, NULL), 201);
    const char *sys_pid =
        json_string_value(json_object_get(json_object_get(gj, "identity"), "principalId"));
    json_t *uai = json_object_get(
        json_object_get(json_object_get(gj, "identity"), "userAssignedIdentities"), UAI_ID);
    const char *uai_pid = json_string_value(json_object_get(uai, "principalId"));
    const char *uai_cid = json_string_value(json_object_get(uai, "clientId"));
    ck_assert(sys_pid && uai_pid && uai_cid);

    _cleanup_free_ char *s1 = sbpath("ids", "g1", "s1"), *s2 = sbpath("ids", "g1", "s2");
    _cleanup_free_ char *s3 = sbpath("ids", "g1", "s3"), *s4 = sbpath("ids", "g1", "s4");
    want_code("PUT", s1, srv.token, "{\"properties\":{\"identity\":\"system\"}}", 201, NULL);
    _cleanup_free_ char *s2body = xasprintf("{\"properties\":{\"identity\":\"%s\"}}", UAI_ID);
    want_code("PUT", s2, srv.token, s2body, 201, NULL);
    want_code("PUT", s3, srv.token, "{\"properties\":{}}", 201, NULL);
    /* Only an identity of the group.  */
    want_code("PUT", s4, srv.token,
              "{\"properties\":{\"identity\":\"/subscriptions/" SUB "/resourceGroups/x/providers/"
              "Microsoft.ManagedIdentity/userAssignedIdentities/other\"}}",
              400, "InvalidRequestContent");

    _cleanup_free_ char *admin = tu_server_admin_token(&srv);
    _cleanup_free_ char *t1 = identity_token(admin, s1, "api://AzureADTokenExchange", 200);
    ck_assert_msg(openssl_verifies(t1), "openssl does not verify the identity token");
    json_t *c = claims_of(t1);
    _cleanup_free_ char *want_sub = xasprintf("%s/identities/system", s1);
    ck_assert_str_eq(json_string_value(json_object_get(c, "sub")), want_sub);
    ck_assert_str_eq(json_string_value(json_object_get(c, "aud")), "api://AzureADTokenExchange");
    ck_assert_str_eq(json_string_value(json_object_get(c, "oid")), sys_pid);
    _cleanup_free_ char *iss = own_issuer();
    ck_assert_str_eq(json_string_value(json_object_get(c, "iss")), iss);
    json_int_t ttl = json_integer_value(json_object_get(c, "exp")) - (json_int_t)time(NULL);
    ck_assert_msg(ttl > 0 && ttl <= 3600, "ttl %lld", (long long)ttl);
    json_decref(c);
    /* A forged copy fails the same independent check.  */
    _cleanup_free_ char *forged = xstrdup(t1);
    forged[strlen(forged) - 5] = forged[strlen(forged) - 5] == 'A' ? 'B' : 'A';
    ck_assert(!openssl_verifies(forged));

    _cleanup_free_ char *t2 = identity_token(admin, s2, "https://vault.azure.net", 200);
    c = claims_of(t2);
    ck_assert_str_eq(json_string_value(json_object_get(c, "oid")), uai_pid);
    ck_assert_str_eq(json_string_value(json_object_get(c, "appid")), uai_cid);
    ck_assert_str_eq(json_string_value(json_object_get(c, "xms_mirid")), UAI_ID);
    json_decref(c);
    /* A sandbox gets its own identity, never another's.  */
    json_t *b =
        json_pack("{s:s,s:s,s:s}", "sandboxId", s1, "resource", "api://x", "clientId", uai_cid);
    _cleanup_free_ char *other = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    want_code("POST", "/admin/identityTokens", admin, other, 400, "IdentityNotFound");
    free(identity_token(admin, s3, "api://x", 400));

    /* A host gets tokens for the sandboxes it runs only; its token is no
     * API token.  */
    json_t *hj = NULL;
    ck_assert_int_eq(call("POST", "/admin/tokens", admin, "{\"host\":\"h1\"}", &hj, NULL), 200);
    _cleanup_free_ char *host_tok = xstrdup(json_string_value(json_object_get(hj, "token")));
    json_decref(hj);
    free(identity_token(host_tok, s1, "api://x", 403));
    want_code("GET", g, host_tok, NULL, 403, "AuthorizationFailed");
    want_code("GET", "/admin/roleAssignments", host_tok, NULL, 403, "AuthorizationFailed");
    /* Users do not get identity tokens, nor does another issuer's token
     * that claims to be a host.  */
    free(identity_token(srv.token, s1, "api://x", 403));
    _cleanup_free_ char *fake_host =
        ext_token(ext_rsa, rsa_kid, json_pack("{s:s,s:s}", "sbx_host", "h1", "sub", "host:h1"));
    free(identity_token(fake_host, s1, "api://x", 403));

    /* Bad input: a clear 4xx each.  */
    want_code("POST", "/admin/identityTokens", admin, NULL, 400, "InvalidRequestContent");
    want_code("POST", "/admin/identityTokens", admin, "[1]", 400, "InvalidRequestContent");
    free(identity_token(admin, s1, "has space", 400));
    free(identity_token(admin, s1, "", 400));
    _cleanup_free_ char *huge_res = xmalloc(4097);
    memset(huge_res, 'a', 4096);
    huge_res[4096] = '\0';
    free(identity_token(admin, s1, huge_res, 400));
    free(identity_token(admin, "/subscriptions/" SUB "/nothing", "api://x", 404));
    free(identity_token(admin, g, "api://x", 404)); /* a group is no sandbox */
    want_code("GET", "/admin/identityTokens", admin, NULL, 405, "MethodNotAllowed");

    /* An identity token for the API's audience acts as that identity: no
     * role, no entry; Reader on the group, reads.  */
    _cleanup_free_ char *t3 = identity_token(admin, s1, "https://management.azure.com/", 200);
    want_code("GET", g, t3, NULL, 403, "AuthorizationFailed");
    ck_assert_int_eq(tu_assign_role(&srv, "s1-reader", sys_pid, "Reader", g), 201);
    want_code("GET", g, t3, NULL, 200, NULL);
    want_code("DELETE", s1, t3, NULL, 403, "AuthorizationFailed");
    json_decref(gj);
}
END_TEST

static json_t *kids(void)
{
    json_t *jwks = NULL, *out = json_array();
    ck_assert_int_eq(call("GET", "/.well-known/jwks.json", NULL, NULL, &jwks, NULL), 200);
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(jwks, "keys"), i, k)
    {
        ck_assert_ptr_null(json_object_get(k, "d")); /* never a private part */
        json_array_append(out, json_object_get(k, "kid"));
    }
    json_decref(jwks);
    return out;
}

static char *kid_of(const char *tok)
{
    jwt_t j;
    ck_assert_int_eq(jwt_parse(tok, &j, NULL), 0);
    char *kid = xstrdup(json_string_value(json_object_get(j.header, "kid")));
    jwt_done(&j);
    return kid;
}

static bool has_kid(const json_t *list, const char *kid)
{
    size_t i;
    json_t *k;
    json_array_foreach(list, i, k)
    {
        if (strcmp(json_string_value(k), kid) == 0)
            return true;
    }
    return false;
}

/* Keys and tokens survive a restart; the key file is the owner's only.  */
START_TEST(keys_survive_restart)
{
    _cleanup_free_ char *minted = tu_mint_token(&srv, "carol");
    ck_assert_int_eq(tu_assign_role(&srv, "carol", "carol", "Reader", "/"), 201);
    _cleanup_free_ char *dev = xstrdup(srv.token);
    json_t *before = kids();
    _cleanup_free_ char *iss = own_issuer();
    ck_assert_int_eq(tu_server_stop(&srv), 0);
    _cleanup_free_ char *keys = xasprintf("%s/oidc/keys.json", data);
    struct stat st;
    ck_assert_int_eq(stat(keys, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    start(std_args); /* another port: the issuer kept from the first start stands */
    ck_assert_str_eq(srv.token, dev);
    json_t *after = kids();
    ck_assert(json_equal(before, after));
    _cleanup_free_ char *iss2 = own_issuer();
    ck_assert_str_eq(iss, iss2);
    _cleanup_free_ char *list = xasprintf("/subscriptions/%s/providers/Microsoft.App/"
                                          "sandboxGroups",
                                          SUB);
    ck_assert_int_eq(call("GET", list, minted, NULL, NULL, NULL), 200);
    ck_assert_int_eq(call("GET", list, srv.token, NULL, NULL, NULL), 200);
    json_decref(before);
    json_decref(after);
    /* A damaged key file stops the start rather than being replaced.  */
    ck_assert_int_eq(tu_server_stop(&srv), 0);
    ck_assert_int_eq(sbx_write_file_atomic(keys, "{}", 2, 0600, NULL), 0);
    ck_assert_int_ne(tu_server_start(&srv, data, std_args), 0);
}
END_TEST

/* A key signs for the rotation period, then verifies for one more: tokens
 * it signed are accepted until then, refused after.  */
START_TEST(keys_rotate_with_overlap)
{
    ck_assert_int_eq(tu_server_stop(&srv), 0);
    tu_rmdir(data);
    /* P-256 keys: generating one takes no time, even under a sanitizer.  */
    const char *args[] = {"--key-rotation", "4", "--signing-alg", "ES256", NULL};
    start(args);
    _cleanup_free_ char *first = xstrdup(srv.token), *first_kid = kid_of(first);
    _cleanup_free_ char *list = xasprintf("/subscriptions/%s/providers/Microsoft.App/"
                                          "sandboxGroups",
                                          SUB);
    /* The next key comes when the first is 4 s old; the first stays.  */
    bool rotated = false, overlap_ok = true;
    int64_t until = sbx_monotonic_ms() + 10000;
    while (!rotated && sbx_monotonic_ms() < until) {
        json_t *k = kids();
        rotated = json_array_size(k) == 2 && has_kid(k, first_kid);
        json_decref(k);
        if (!rotated)
            usleep(200000);
    }
    ck_assert_msg(rotated, "no second key within 10 s");
    overlap_ok = call("GET", list, first, NULL, NULL, NULL) == 200;
    ck_assert_msg(overlap_ok, "a token of the previous key was refused during the overlap");
    /* The dev token follows the new key.  */
    _cleanup_free_ char *path = xasprintf("%s/dev-token", data), *now_tok = NULL;
    size_t len = 0;
    ck_assert_int_eq(sbx_read_file(path, &now_tok, &len, NULL), 0);
    now_tok[strcspn(now_tok, "\n")] = '\0';
    _cleanup_free_ char *new_kid = kid_of(now_tok);
    ck_assert_str_ne(new_kid, first_kid);
    ck_assert_int_eq(call("GET", list, now_tok, NULL, NULL, NULL), 200);
    /* After the overlap the old key is gone, and its tokens with it.  */
    bool refused = false;
    until = sbx_monotonic_ms() + 12000;
    while (!refused && sbx_monotonic_ms() < until) {
        refused = call("GET", list, first, NULL, NULL, NULL) == 401;
        if (!refused)
            usleep(200000);
    }
    ck_assert_msg(refused, "the old key's token was still accepted 12 s after rotation");
    json_t *k = kids();
    ck_assert(!has_kid(k, first_kid));
    json_decref(k);
}
END_TEST

/* Every mutating request and every token issued is one JSON line.  */
START_TEST(audit_log_lines)
{
    _cleanup_free_ char *g = gpath(SUB, "audit", "g1");
    want_code("PUT", g, srv.token, "{\"location\":\"westeurope\"}", 201, NULL);
    _cleanup_free_ char *reader = tu_mint_token(&srv, "auditor");
    want_code("DELETE", g, reader, NULL, 403, "AuthorizationFailed");
    want_code("DELETE", g, NULL, NULL, 401, "AuthenticationFailed");
    want_code("GET", g, srv.token, NULL, 200, NULL);
    _cleanup_free_ char *path = xasprintf("%s/audit.log", data), *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(sbx_read_file(path, &text, &len, NULL), 0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    int put_ok = 0, forbidden = 0, unauth = 0, minted = 0, gets = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_msg(json_is_object(j), "not JSON: %s", line);
        ck_assert(json_is_string(json_object_get(j, "time")));
        const char *ev = json_string_value(json_object_get(j, "event"));
        const char *out = json_string_value(json_object_get(j, "outcome"));
        const char *m = json_string_value(json_object_get(j, "method"));
        const char *sub =
            json_string_value(json_object_get(json_object_get(j, "principal"), "sub"));
        if (ev && !strcmp(ev, "token.issued") &&
            !strcmp(json_string_value(json_object_get(j, "sub")), "auditor"))
            minted++;
        if (m && !strcmp(m, "GET"))
            gets++;
        if (m && !strcmp(m, "PUT") && out && !strcmp(out, "succeeded") && sub &&
            !strcmp(sub, "dev"))
            put_ok++;
        if (m && !strcmp(m, "DELETE") && out && !strcmp(out, "forbidden") && sub &&
            !strcmp(sub, "auditor"))
            forbidden++;
        if (m && !strcmp(m, "DELETE") && out && !strcmp(out, "unauthenticated"))
            unauth++;
        json_decref(j);
    }
    ck_assert_int_eq(put_ok, 1);
    ck_assert_int_eq(forbidden, 1);
    ck_assert_int_eq(unauth, 1);
    ck_assert_int_eq(minted, 1);
    ck_assert_int_eq(gets, 0);
}
END_TEST

static int count_jwks_fetches(const tu_server_t *s)
{
    _cleanup_free_ char *log = NULL;
    size_t len = 0;
    if (sbx_read_file(s->log, &log, &len, NULL) < 0)
        return -1;
    int n = 0;
    for (const char *p = log; (p = strstr(p, "\"path\":\"/.well-known/jwks.json\"")); p++)
        n++;
    return n;
}

/* Another sandboxd as a trusted issuer, found through its discovery
 * document: its tokens are accepted, a kid it starts using later is
 * fetched once, and unknown kids do not make the verifier fetch again and
 * again.  */
START_TEST(sandboxd_trusts_another_issuer)
{
    tu_server_t idp = {0};
    _cleanup_free_ char *idp_data = xasprintf("%s/idp", tmp);
    const char *idp_args[] = {"--key-rotation", "4", "--signing-alg", "ES256", NULL};
    ck_assert_int_eq(tu_server_start(&idp, idp_data, idp_args), 0);
    json_t *d = NULL;
    _cleanup_free_ char *disc = xasprintf("%s/.well-known/openid-configuration", idp.base);
    tu_response_t r;
    ck_assert_int_eq(tu_http("GET", disc, NULL, &r), 0);
    d = tu_json(&r);
    tu_response_free(&r);
    _cleanup_free_ char *idp_iss = xstrdup(json_string_value(json_object_get(d, "issuer")));
    json_decref(d);

    ck_assert_int_eq(tu_server_stop(&srv), 0);
    const char *args[] = {"--oidc-issuer", idp_iss, NULL};
    start(args);
    _cleanup_free_ char *list = xasprintf("/subscriptions/%s/providers/Microsoft.App/"
                                          "sandboxGroups",
                                          SUB);
    json_t *as =
        json_pack("{s:{s:s,s:s,s:s,s:s}}", "properties", "principalId", "erin", "principalIssuer",
                  idp_iss, "roleDefinitionName", "Reader", "scope", "/");
    _cleanup_free_ char *asb = json_dumps(as, JSON_COMPACT);
    json_decref(as);
    _cleanup_free_ char *admin = tu_server_admin_token(&srv);
    want_code("PUT", "/admin/roleAssignments/erin", admin, asb, 201, NULL);

    _cleanup_free_ char *t1 = tu_mint_token(&idp, "erin");
    ck_assert_ptr_nonnull(t1);
    ck_assert_int_eq(call("GET", list, t1, NULL, NULL, NULL), 200);
    /* The same subject from sandboxd's own issuer is someone else.  */
    _cleanup_free_ char *own_erin = tu_mint_token(&srv, "erin");
    want_code("GET", list, own_erin, NULL, 403, "AuthorizationFailed");

    /* The issuer rotates; its next key reaches the verifier on first use.  */
    _cleanup_free_ char *k1 = kid_of(t1);
    char *t2 = NULL;
    int64_t until = sbx_monotonic_ms() + 15000;
    while (sbx_monotonic_ms() < until) {
        t2 = tu_mint_token(&idp, "erin");
        _cleanup_free_ char *k2 = t2 ? kid_of(t2) : NULL;
        if (k2 && strcmp(k1, k2) != 0)
            break;
        free(t2);
        t2 = NULL;
        usleep(300000);
    }
    ck_assert_msg(t2, "the issuer did not rotate in 15 s");
    ck_assert_int_eq(call("GET", list, t2, NULL, NULL, NULL), 200);
    free(t2);

    /* Unknown kids: refused, and at most one fetch for all of them.  */
    int before = count_jwks_fetches(&idp);
    for (int i = 0; i < 5; i++) {
        json_t *c =
            json_pack("{s:s,s:s,s:s,s:I}", "iss", idp_iss, "aud", "https://management.azure.com/",
                      "sub", "erin", "exp", (json_int_t)time(NULL) + 600);
        char kid[32];
        snprintf(kid, sizeof(kid), "made-up-%d", i);
        char *bad = jwt_sign(ext_ec, kid, c, NULL);
        json_decref(c);
        want_refused("unknown kid of a trusted issuer", bad);
        free(bad);
    }
    int after = count_jwks_fetches(&idp);
    ck_assert_msg(after - before <= 1, "%d fetches for 5 unknown kids", after - before);
    tu_server_stop(&idp);
    tu_server_done(&idp);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, external_tokens_refused_unless_valid);
    tcase_add_test(tc, roles_limit_what_tokens_do);
    tcase_add_test(tc, arm_role_assignments);
    tcase_add_test(tc, identity_tokens);
    tcase_add_test(tc, keys_survive_restart);
    tcase_add_test(tc, keys_rotate_with_overlap);
    tcase_add_test(tc, audit_log_lines);
    tcase_add_test(tc, sandboxd_trusts_another_issuer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(auth_suite());
}
