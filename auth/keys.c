/* keys.c -- sandboxd's own issuer: its signing keys in DIR/oidc/keys.json
 * (0600, private keys as PEM, never served), generated at the first start,
 * rotated with an overlap, and the development token signed with them.  */
#include "auth/internal.h"

#include <errno.h>
#include <openssl/pem.h>
#include <string.h>
#include <sys/stat.h>

static char *keys_path(const auth_t *a)
{
    return xasprintf("%s/oidc/keys.json", a->data_dir);
}

static char *pem_of(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        out = xstrndup(data, (size_t)n);
    }
    BIO_free(bio);
    return out;
}

static EVP_PKEY *pem_read(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return key;
}

static int keys_save_locked(auth_t *a, sbx_error_t *err)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < a->own.n; i++) {
        const auth_key_t *k = &a->own.keys[i];
        char *pem = pem_of(k->pkey);
        if (!pem) {
            json_decref(arr);
            return sbx_error_set(err, SBX_ERR_INTERNAL, "cannot write a signing key");
        }
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "kid", k->kid, "alg",
                                             k->alg, "pem", pem, "created", (json_int_t)k->created,
                                             "signUntil", (json_int_t)k->sign_until, "verifyUntil",
                                             (json_int_t)k->verify_until));
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    json_t *doc = json_pack("{s:s,s:o}", "issuer", a->issuer, "keys", arr);
    char *text = json_dumps(doc, JSON_INDENT(1));
    json_decref(doc);
    _cleanup_free_ char *path = keys_path(a);
    int r = sbx_write_file_atomic(path, text, strlen(text), 0600, err);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    return r;
}

static int add_key_locked(auth_t *a, int64_t now, sbx_error_t *err)
{
    EVP_PKEY *pkey = jwt_key_generate(a->signing_alg);
    char *kid = NULL;
    json_t *jwk = pkey ? jwt_jwk_public(pkey, &kid) : NULL;
    json_decref(jwk);
    if (!pkey || !kid) {
        EVP_PKEY_free(pkey);
        free(kid);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "cannot generate a signing key");
    }
    /* The key before stops signing now; it verifies on for its overlap.  */
    for (size_t i = 0; i < a->own.n; i++)
        if (a->own.keys[i].sign_until > now) {
            a->own.keys[i].sign_until = now;
            a->own.keys[i].verify_until = now + a->rotation_s;
        }
    a->own.keys = xrealloc(a->own.keys, (a->own.n + 1) * sizeof(*a->own.keys));
    a->own.keys[a->own.n++] = (auth_key_t){
        .kid = kid,
        .alg = strcmp(a->signing_alg, "ES256") == 0 ? "ES256" : "RS256",
        .pkey = pkey,
        .created = now,
        .sign_until = now + a->rotation_s,
        .verify_until = now + 2 * a->rotation_s,
    };
    sbx_log(SBX_LOG_INFO, MODULE_NAME, "new signing key %s (%s)", kid,
            a->own.keys[a->own.n - 1].alg);
    return 0;
}

int keys_maintain_locked(auth_t *a, bool force, sbx_error_t *err)
{
    int64_t now = time(NULL);
    size_t kept = 0;
    bool changed = false;
    for (size_t i = 0; i < a->own.n; i++) {
        if (a->own.keys[i].verify_until > now) {
            a->own.keys[kept++] = a->own.keys[i];
            continue;
        }
        EVP_PKEY_free(a->own.keys[i].pkey);
        free(a->own.keys[i].kid);
        changed = true;
    }
    a->own.n = kept;
    bool signing = a->own.n > 0 && a->own.keys[a->own.n - 1].sign_until > now;
    if (force || !signing) {
        if (add_key_locked(a, now, err) < 0)
            return -1;
        changed = a->rotated = true;
    }
    return changed ? keys_save_locked(a, err) : 0;
}

static int load_one(auth_t *a, const json_t *k, sbx_error_t *err)
{
    const char *kid = json_string_value(json_object_get(k, "kid"));
    const char *pem = json_string_value(json_object_get(k, "pem"));
    EVP_PKEY *pkey = pem ? pem_read(pem) : NULL;
    char *real_kid = NULL;
    json_t *jwk = pkey ? jwt_jwk_public(pkey, &real_kid) : NULL;
    json_decref(jwk);
    if (!kid || !real_kid || strcmp(kid, real_kid) != 0) {
        EVP_PKEY_free(pkey);
        free(real_kid);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "a key in %s/oidc/keys.json is damaged",
                             a->data_dir);
    }
    a->own.keys = xrealloc(a->own.keys, (a->own.n + 1) * sizeof(*a->own.keys));
    a->own.keys[a->own.n++] = (auth_key_t){
        .kid = real_kid,
        .alg = EVP_PKEY_is_a(pkey, "EC") ? "ES256" : "RS256",
        .pkey = pkey,
        .created = json_integer_value(json_object_get(k, "created")),
        .sign_until = json_integer_value(json_object_get(k, "signUntil")),
        .verify_until = json_integer_value(json_object_get(k, "verifyUntil")),
    };
    return 0;
}

/* Keys are never silently replaced: a damaged file stops the start, as
 * new keys would refuse every token issued so far.  */
int keys_load(auth_t *a, sbx_error_t *err)
{
    _cleanup_free_ char *dir = xasprintf("%s/oidc", a->data_dir);
    if (sbx_mkdir_p(dir, 0700, err) < 0)
        return -1;
    _cleanup_free_ char *path = keys_path(a);
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    struct stat st;
    if (lstat(path, &st) == 0 && (!S_ISREG(st.st_mode) || (st.st_mode & 077)))
        return sbx_error_set(err, SBX_ERR_INTERNAL, "%s must be a regular file of mode 0600", path);
    pthread_mutex_lock(&a->lock);
    int r = 0;
    if (sbx_read_file(path, &text, &len, NULL) == 0) {
        json_t *doc = json_loadb(text, len, 0, NULL);
        OPENSSL_cleanse(text, len);
        json_t *keys = json_object_get(doc, "keys");
        const char *iss = json_string_value(json_object_get(doc, "issuer"));
        if (!json_is_array(keys) || !iss)
            r = sbx_error_set(err, SBX_ERR_INTERNAL,
                              "%s is damaged; restore it or move it "
                              "away (every token issued so far is then refused)",
                              path);
        size_t i;
        json_t *k;
        json_array_foreach(keys, i, k)
        {
            if (r == 0 && load_one(a, k, err) < 0)
                r = -1;
        }
        if (r == 0 && !a->cfg.issuer_url) {
            free(a->issuer);
            a->issuer = xstrdup(iss);
        }
        json_decref(doc);
    } else if (errno != ENOENT) {
        r = sbx_error_errno(err, SBX_ERR_INTERNAL, "read %s", path);
    }
    if (r == 0)
        r = keys_maintain_locked(a, false, err);
    /* The issuer given on the command line is kept for the next start.  */
    if (r == 0 && a->cfg.issuer_url)
        r = keys_save_locked(a, err);
    pthread_mutex_unlock(&a->lock);
    return r;
}

char *keys_sign(auth_t *a, const json_t *claims, sbx_error_t *err)
{
    pthread_mutex_lock(&a->lock);
    char *tok = NULL;
    if (keys_maintain_locked(a, false, err) == 0) {
        const auth_key_t *k = &a->own.keys[a->own.n - 1];
        tok = jwt_sign(k->pkey, k->kid, claims, err);
    }
    pthread_mutex_unlock(&a->lock);
    return tok;
}

json_t *keys_jwks(auth_t *a)
{
    json_t *keys = json_array();
    pthread_mutex_lock(&a->lock);
    keys_maintain_locked(a, false, NULL);
    for (size_t i = a->own.n; i-- > 0;)
        json_array_append_new(keys, jwt_jwk_public(a->own.keys[i].pkey, NULL));
    pthread_mutex_unlock(&a->lock);
    return json_pack("{s:o}", "keys", keys);
}

/* A dev token there is kept while it verifies and has a quarter of the
 * rotation period left, so scripts that read it once keep working.  */
static bool dev_token_fresh(auth_t *a, const char *path)
{
    _cleanup_free_ char *tok = NULL;
    size_t len = 0;
    if (sbx_read_file(path, &tok, &len, NULL) < 0)
        return false;
    while (len > 0 && (tok[len - 1] == '\n' || tok[len - 1] == '\r'))
        tok[--len] = '\0';
    const char *auds[] = {a->audiences[0], NULL};
    auth_principal_t p = {0};
    if (verify_token(a, tok, auds, &p, NULL) < 0)
        return false;
    bool ok =
        p.subject && strcmp(p.subject, AUTH_DEV_SUBJECT) == 0 && strcmp(p.issuer, a->issuer) == 0;
    auth_principal_done(&p);
    jwt_t j;
    if (!ok || jwt_parse(tok, &j, NULL) < 0)
        return false;
    json_int_t exp = json_integer_value(json_object_get(j.claims, "exp"));
    jwt_done(&j);
    return exp - (json_int_t)time(NULL) > a->rotation_s / 4;
}

int keys_dev_token(auth_t *a, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/dev-token", a->data_dir);
    if (dev_token_fresh(a, path))
        return 0;
    int64_t now = time(NULL);
    char jti[37];
    sbx_uuid(jti);
    json_t *claims = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:s,s:s}", "iss", a->issuer, "sub",
                               AUTH_DEV_SUBJECT, "aud", a->audiences[0], "tid", a->tenant_id, "iat",
                               (json_int_t)now, "nbf", (json_int_t)now, "exp",
                               (json_int_t)(now + a->rotation_s), "jti", jti, "name", "dev-token");
    char *tok = keys_sign(a, claims, err);
    if (tok)
        audit_token(a, "dev", claims, "sandboxd");
    json_decref(claims);
    if (!tok)
        return -1;
    _cleanup_free_ char *line = xasprintf("%s\n", tok);
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    return sbx_write_file_atomic(path, line, strlen(line), 0600, err);
}

void auth_keyset_done(auth_keyset_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        EVP_PKEY_free(s->keys[i].pkey);
        free(s->keys[i].kid);
    }
    free(s->keys);
    memset(s, 0, sizeof(*s));
}

const auth_key_t *auth_keyset_find(const auth_keyset_t *s, const char *kid)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i].kid, kid) == 0)
            return &s->keys[i];
    return NULL;
}
