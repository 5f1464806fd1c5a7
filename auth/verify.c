/* verify.c -- bearer tokens checked: the fixed tokens compared in constant
 * time, JWTs by signature (RS256 or ES256 only: never "none" nor HMAC),
 * issuer, audience, expiry and not-before with AUTH_SKEW_S of skew; and a
 * small cache so the several looks one request takes verify once.  */
#include "auth/internal.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

static char *claim_str(const json_t *claims, const char *name)
{
    const char *v = json_string_value(json_object_get(claims, name));
    return v && *v && strlen(v) < 1024 ? xstrdup(v) : NULL;
}

void auth_principal_done(auth_principal_t *p)
{
    if (!p)
        return;
    free(p->subject);
    free(p->issuer);
    free(p->object_id);
    free(p->app_id);
    free(p->host);
    free(p->name);
    json_decref(p->groups);
    memset(p, 0, sizeof(*p));
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

void principal_copy(auth_principal_t *dst, const auth_principal_t *src)
{
    *dst = (auth_principal_t){
        .kind = src->kind,
        .subject = dup_or_null(src->subject),
        .issuer = dup_or_null(src->issuer),
        .object_id = dup_or_null(src->object_id),
        .app_id = dup_or_null(src->app_id),
        .host = dup_or_null(src->host),
        .name = dup_or_null(src->name),
        .groups = src->groups ? json_deep_copy(src->groups) : NULL,
    };
}

static bool audience_eq(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    /* "https://management.azure.com" and ".../" name the same audience.  */
    if (na && a[na - 1] == '/')
        na--;
    if (nb && b[nb - 1] == '/')
        nb--;
    return na == nb && strncmp(a, b, na) == 0;
}

static bool audience_ok(const json_t *aud, const char *const *want)
{
    for (const char *const *w = want; *w; w++) {
        if (json_is_string(aud) && audience_eq(json_string_value(aud), *w))
            return true;
        size_t i;
        json_t *v;
        json_array_foreach(aud, i, v)
        {
            if (json_is_string(v) && audience_eq(json_string_value(v), *w))
                return true;
        }
    }
    return false;
}

static int time_claims(const json_t *claims, sbx_error_t *err)
{
    json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
    double now = (double)time(NULL);
    if (!json_is_number(exp))
        return sbx_error_set(err, SBX_ERR_INVALID, "the token has no expiry (exp)");
    if (json_number_value(exp) + AUTH_SKEW_S <= now)
        return sbx_error_set(err, SBX_ERR_INVALID, "the token has expired");
    if (nbf && !json_is_number(nbf))
        return sbx_error_set(err, SBX_ERR_INVALID, "the token's nbf is not a number");
    if (nbf && json_number_value(nbf) - AUTH_SKEW_S > now)
        return sbx_error_set(err, SBX_ERR_INVALID, "the token is not valid yet (nbf)");
    return 0;
}

/* The key for (iss, kid): own keys or a trusted issuer's; a new reference.  */
static EVP_PKEY *key_for(auth_t *a, const char *iss, const char *kid, const char **alg,
                         sbx_error_t *err)
{
    EVP_PKEY *key = NULL;
    pthread_mutex_lock(&a->lock);
    if (strcmp(iss, a->issuer) == 0) {
        const auth_key_t *k = auth_keyset_find(&a->own, kid);
        if (k && k->verify_until > time(NULL)) {
            *alg = k->alg;
            key = k->pkey;
            EVP_PKEY_up_ref(key);
        } else {
            sbx_error_set(err, SBX_ERR_INVALID, "the signing key '%.64s' is unknown", kid);
        }
    } else {
        key = issuers_key_locked(a, iss, kid, alg, err);
    }
    pthread_mutex_unlock(&a->lock);
    return key;
}

static void principal_from(const json_t *claims, bool is_host, auth_principal_t *out)
{
    out->kind = AUTH_JWT;
    out->subject = claim_str(claims, "sub");
    out->issuer = claim_str(claims, "iss");
    out->object_id = claim_str(claims, "oid");
    out->app_id = claim_str(claims, "appid");
    if (!out->app_id)
        out->app_id = claim_str(claims, "azp");
    /* Only sandboxd's own host tokens name a host: another issuer's claim
     * of that name means nothing here.  */
    if (is_host)
        out->host = claim_str(claims, "sbx_host");
    const char *names[] = {"preferred_username", "upn", "unique_name", "email"};
    for (size_t i = 0; i < ARRAY_SIZE(names) && !out->name; i++)
        out->name = claim_str(claims, names[i]);
    if (!out->name)
        out->name = xstrdup(out->subject);
    json_t *g = json_object_get(claims, "groups");
    if (json_is_array(g) && json_array_size(g) <= 1000)
        out->groups = json_deep_copy(g);
}

int verify_token(auth_t *a, const char *token, const char *const *audiences, auth_principal_t *out,
                 sbx_error_t *err)
{
    memset(out, 0, sizeof(*out));
    jwt_t j;
    if (jwt_parse(token, &j, err) < 0)
        return -1;
    const char *alg = json_string_value(json_object_get(j.header, "alg"));
    const char *kid = json_string_value(json_object_get(j.header, "kid"));
    const char *iss = json_string_value(json_object_get(j.claims, "iss"));
    const char *sub = json_string_value(json_object_get(j.claims, "sub"));
    const char *key_alg = NULL;
    EVP_PKEY *key = NULL;
    int r = -1;
    if (!alg || (strcmp(alg, "RS256") != 0 && strcmp(alg, "ES256") != 0))
        sbx_error_set(err, SBX_ERR_INVALID, "the algorithm '%.16s' is not accepted",
                      alg ? alg : "");
    else if (json_object_get(j.header, "crit"))
        /* RFC 7515: extensions a verifier does not know must fail it.  */
        sbx_error_set(err, SBX_ERR_INVALID, "the token has critical header extensions");
    else if (!kid || strlen(kid) > 255)
        sbx_error_set(err, SBX_ERR_INVALID, "the token names no signing key (kid)");
    else if (!iss || (strcmp(iss, a->issuer) != 0 && !issuers_known(a, iss)))
        sbx_error_set(err, SBX_ERR_INVALID, "the issuer is not trusted");
    else if (!(key = key_for(a, iss, kid, &key_alg, err)))
        ;
    else if (strcmp(key_alg, alg) != 0 ||
             !jwt_verify_sig(key, alg, token, j.signed_len, j.sig, j.sig_len))
        sbx_error_set(err, SBX_ERR_INVALID, "the signature is invalid");
    else if (time_claims(j.claims, err) < 0)
        ;
    else if (!audience_ok(json_object_get(j.claims, "aud"), audiences))
        sbx_error_set(err, SBX_ERR_INVALID, "the audience is invalid");
    else if (!sub || !*sub || strlen(sub) >= 1024)
        sbx_error_set(err, SBX_ERR_INVALID, "the token has no subject");
    else
        r = 0;
    if (r == 0) {
        const char *hosts[] = {a->host_audience, NULL};
        bool is_host =
            strcmp(iss, a->issuer) == 0 && audience_ok(json_object_get(j.claims, "aud"), hosts);
        principal_from(j.claims, is_host, out);
    }
    EVP_PKEY_free(key);
    jwt_done(&j);
    return r;
}

static const char *bearer(const char *h)
{
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h && strlen(h) <= AUTH_MAX_TOKEN ? h : NULL;
}

static bool fixed_matches(const char *got, const char *expected)
{
    size_t n = expected ? strlen(expected) : 0;
    return n && strlen(got) == n && CRYPTO_memcmp(got, expected, n) == 0;
}

static void fixed_principal(auth_principal_t *out, auth_kind_t kind, const char *name)
{
    *out = (auth_principal_t){.kind = kind, .subject = xstrdup(name), .name = xstrdup(name)};
}

static bool cache_get(auth_t *a, const unsigned char hash[32], auth_principal_t *out)
{
    auth_cache_slot_t *s = &a->cache[hash[0] % AUTH_CACHE_SLOTS];
    pthread_mutex_lock(&a->cache_lock);
    bool hit = s->until_ms > sbx_monotonic_ms() && memcmp(s->hash, hash, 32) == 0;
    if (hit && out)
        principal_copy(out, &s->p);
    pthread_mutex_unlock(&a->cache_lock);
    return hit;
}

static void cache_put(auth_t *a, const unsigned char hash[32], const auth_principal_t *p,
                      const char *token)
{
    /* Held no longer than the token is valid, nor than a minute (a key
     * dropped from a JWKS stops its tokens soon after).  */
    int64_t ttl = AUTH_CACHE_TTL_MS;
    jwt_t j;
    if (jwt_parse(token, &j, NULL) == 0) {
        double exp = json_number_value(json_object_get(j.claims, "exp"));
        double left = (exp - (double)time(NULL)) * 1000;
        if (left < ttl)
            ttl = left > 0 ? (int64_t)left : 0;
        jwt_done(&j);
    }
    if (ttl <= 0)
        return;
    auth_cache_slot_t *s = &a->cache[hash[0] % AUTH_CACHE_SLOTS];
    pthread_mutex_lock(&a->cache_lock);
    auth_principal_done(&s->p);
    memcpy(s->hash, hash, 32);
    principal_copy(&s->p, p);
    s->until_ms = sbx_monotonic_ms() + ttl;
    pthread_mutex_unlock(&a->cache_lock);
}

int auth_authenticate(auth_t *a, const char *authorization, auth_principal_t *out, sbx_error_t *err)
{
    memset(out, 0, sizeof(*out));
    const char *tok = bearer(authorization);
    if (tok && fixed_matches(tok, a->admin_token)) {
        fixed_principal(out, AUTH_ADMIN, "admin-token");
        return 0;
    }
    if (a->cfg.no_auth) {
        /* A token sandboxd issued still says who holds it: a host asking
         * for its sandboxes' identity tokens is a host, not anonymous.  */
        if (tok && verify_token(a, tok, (const char *const *)a->audiences, out, NULL) == 0 &&
            out->host)
            return 0;
        auth_principal_done(out);
        memset(out, 0, sizeof(*out));
        fixed_principal(out, AUTH_ANON, "anonymous");
        return 0;
    }
    if (!authorization)
        return sbx_error_arm(err, SBX_ERR_INVALID, "AuthenticationFailed",
                             "Authentication failed. The 'Authorization' header is missing.");
    if (!tok)
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidAuthenticationToken",
                             "The access token is invalid: expected 'Bearer <token>'.");
    if (fixed_matches(tok, a->static_token)) {
        fixed_principal(out, AUTH_STATIC, "token");
        return 0;
    }
    unsigned char hash[32];
    SHA256((const unsigned char *)tok, strlen(tok), hash);
    if (cache_get(a, hash, out))
        return 0;
    sbx_error_t why = {0};
    if (verify_token(a, tok, (const char *const *)a->audiences, out, &why) < 0)
        return sbx_error_arm(err, SBX_ERR_INVALID, "InvalidAuthenticationToken",
                             "The access token is invalid: %s.", why.msg);
    cache_put(a, hash, out, tok);
    return 0;
}

bool auth_accepts(auth_t *a, const char *authorization)
{
    auth_principal_t p;
    bool ok = auth_authenticate(a, authorization, &p, NULL) == 0;
    auth_principal_done(&p);
    return ok;
}

bool auth_client_key(auth_t *a, const char *authorization, char *key, size_t size)
{
    auth_principal_t p;
    if (a->cfg.no_auth || auth_authenticate(a, authorization, &p, NULL) < 0)
        return false;
    snprintf(key, size, "%s|%s", p.issuer ? p.issuer : "", p.subject);
    auth_principal_done(&p);
    return true;
}

void auth_reply_unauthenticated(auth_t *a, const http_request_t *req, const sbx_error_t *err,
                                http_response_t *res)
{
    bool missing = strcmp(err->arm_code, "AuthenticationFailed") == 0;
    if (missing)
        http_add_header(res, "WWW-Authenticate",
                        "Bearer realm=\"sandboxd\", authorization_uri=\"%s\", "
                        "resource_id=\"%s\"",
                        a->issuer, a->audiences[0]);
    else
        http_add_header(res, "WWW-Authenticate",
                        "Bearer realm=\"sandboxd\", authorization_uri=\"%s\", "
                        "resource_id=\"%s\", error=\"invalid_token\"",
                        a->issuer, a->audiences[0]);
    http_reply_error(res, 401, err->arm_code[0] ? err->arm_code : "InvalidAuthenticationToken",
                     "%s", err->msg);
}
