/* issuers.c -- trusted external OIDC issuers (Entra ID, Keycloak, Dex...):
 * their key sets from a file or URL (or the issuer's discovery document),
 * read again every AUTH_JWKS_REFRESH_S, and once more, rate limited, when a
 * token names a kid they do not have.  */
#include "auth/internal.h"

#include <curl/curl.h>
#include <string.h>

#define FETCH_MAX (1 << 20)
#define FETCH_TIMEOUT_S 5

static json_t *fetch_json(const char *where, sbx_error_t *err)
{
    bool url = sbx_str_has_prefix(where, "https://") || sbx_str_has_prefix(where, "http://");
    sbx_sink_t b = {.max = FETCH_MAX};
    if (!url) {
        if (sbx_read_file(where, &b.data, &b.len, err) < 0)
            return NULL;
    } else {
        CURL *c = curl_easy_init();
        long status = 0;
        if (!c)
            return sbx_error_set(err, SBX_ERR_INTERNAL, "no curl handle"), NULL;
        curl_easy_setopt(c, CURLOPT_URL, where);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sbx_sink_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)FETCH_TIMEOUT_S);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_PROXY, "");
        CURLcode rc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        if (rc != CURLE_OK || status != 200) {
            free(b.data);
            return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "fetching %.200s: %s (HTTP %ld)", where,
                                 curl_easy_strerror(rc), status),
                   NULL;
        }
    }
    json_t *j = b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
    free(b.data);
    if (!json_is_object(j)) {
        json_decref(j);
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "%.200s is not a JSON object", where), NULL;
    }
    return j;
}

/* Keys a JWKS names that serve RS256 or ES256; others are skipped.  */
static void keyset_from_jwks(const json_t *jwks, auth_keyset_t *out)
{
    size_t i;
    json_t *jwk;
    json_array_foreach(json_object_get(jwks, "keys"), i, jwk)
    {
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        const char *alg = NULL;
        EVP_PKEY *key = kid && strlen(kid) < 256 ? jwt_jwk_import(jwk, &alg) : NULL;
        if (!key)
            continue;
        out->keys = xrealloc(out->keys, (out->n + 1) * sizeof(*out->keys));
        out->keys[out->n++] = (auth_key_t){.kid = xstrdup(kid), .alg = alg, .pkey = key};
    }
}

static int refresh(auth_issuer_t *is, sbx_error_t *err)
{
    is->tried_ms = sbx_monotonic_ms();
    _cleanup_free_ char *where = is->jwks ? xstrdup(is->jwks) : NULL;
    if (!where) {
        size_t n = strlen(is->issuer);
        bool slash = n > 0 && is->issuer[n - 1] == '/';
        _cleanup_free_ char *disc =
            xasprintf("%s%s.well-known/openid-configuration", is->issuer, slash ? "" : "/");
        json_t *d = fetch_json(disc, err);
        const char *u = json_string_value(json_object_get(d, "jwks_uri"));
        where = u ? xstrdup(u) : NULL;
        json_decref(d);
        if (!where)
            return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "no jwks_uri for issuer %.200s",
                                 is->issuer);
    }
    json_t *jwks = fetch_json(where, err);
    if (!jwks)
        return -1;
    auth_keyset_t fresh = {0};
    keyset_from_jwks(jwks, &fresh);
    json_decref(jwks);
    auth_keyset_done(&is->keys);
    is->keys = fresh;
    is->fetched_ms = is->tried_ms;
    return 0;
}

void issuers_init(auth_t *a)
{
    a->n_issuers = a->cfg.n_issuers;
    a->issuers = xcalloc(a->n_issuers + 1, sizeof(*a->issuers));
    for (size_t i = 0; i < a->n_issuers; i++) {
        a->issuers[i].issuer = xstrdup(a->cfg.issuers[i].issuer);
        a->issuers[i].jwks = a->cfg.issuers[i].jwks ? xstrdup(a->cfg.issuers[i].jwks) : NULL;
        sbx_error_t err = {0};
        /* A provider that is down at start is tried again at the first
         * token it signed.  */
        if (refresh(&a->issuers[i], &err) < 0)
            sbx_log(SBX_LOG_WARN, MODULE_NAME, "issuer %s: %s", a->issuers[i].issuer, err.msg);
        /* The rate limit is for fetches that tokens cause: the first token
         * with a kid newer than the start may fetch at once.  */
        a->issuers[i].tried_ms = 0;
    }
}

void issuers_done(auth_t *a)
{
    for (size_t i = 0; i < a->n_issuers; i++) {
        free(a->issuers[i].issuer);
        free(a->issuers[i].jwks);
        auth_keyset_done(&a->issuers[i].keys);
    }
    free(a->issuers);
    a->issuers = NULL;
    a->n_issuers = 0;
}

bool issuers_known(const auth_t *a, const char *iss)
{
    for (size_t i = 0; i < a->n_issuers; i++)
        if (strcmp(a->issuers[i].issuer, iss) == 0)
            return true;
    return false;
}

EVP_PKEY *issuers_key_locked(auth_t *a, const char *iss, const char *kid, const char **alg,
                             sbx_error_t *err)
{
    auth_issuer_t *is = NULL;
    for (size_t i = 0; i < a->n_issuers && !is; i++)
        if (strcmp(a->issuers[i].issuer, iss) == 0)
            is = &a->issuers[i];
    if (!is)
        return sbx_error_set(err, SBX_ERR_INVALID, "the issuer is not trusted"), NULL;
    int64_t now = sbx_monotonic_ms();
    const auth_key_t *k = auth_keyset_find(&is->keys, kid);
    bool stale = now - is->fetched_ms > AUTH_JWKS_REFRESH_S * 1000;
    bool may_retry = is->tried_ms == 0 || now - is->tried_ms > AUTH_JWKS_REFETCH_S * 1000;
    if ((!k || stale) && may_retry) {
        sbx_error_t ferr = {0};
        if (refresh(is, &ferr) < 0)
            sbx_log(SBX_LOG_WARN, MODULE_NAME, "issuer %s: %s", is->issuer, ferr.msg);
        k = auth_keyset_find(&is->keys, kid);
    }
    if (!k)
        return sbx_error_set(err, SBX_ERR_INVALID, "the signing key '%.64s' is unknown", kid), NULL;
    *alg = k->alg;
    EVP_PKEY_up_ref(k->pkey);
    return k->pkey;
}
