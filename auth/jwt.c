/* jwt.c -- JSON Web Tokens and keys with OpenSSL: base64url, JWK import and
 * export (RSA and P-256), RS256/ES256 signatures, and the parse of a compact
 * token into its header, claims and signed part.  */
#include "auth/internal.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <string.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *jwt_b64url_encode(const unsigned char *in, size_t n)
{
    char *out = xmalloc(n / 3 * 4 + 5), *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64url[v >> 18];
        *o++ = b64url[(v >> 12) & 63];
        *o++ = b64url[(v >> 6) & 63];
        *o++ = b64url[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = b64url[v >> 18];
        *o++ = b64url[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = b64url[v >> 18];
        *o++ = b64url[(v >> 12) & 63];
        *o++ = b64url[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

static int b64url_value(char c)
{
    const char *p = c ? strchr(b64url, c) : NULL;
    return p ? (int)(p - b64url) : -1;
}

/* Strict: the unpadded alphabet only, and no length that cannot occur.  */
unsigned char *jwt_b64url_decode(const char *in, size_t n, size_t *out_len)
{
    if (n % 4 == 1)
        return NULL;
    unsigned char *out = xmalloc(n / 4 * 3 + 3), *o = out;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out_len = (size_t)(o - out);
    *o = 0;
    return out;
}

static char *bn_b64url(const BIGNUM *bn, size_t pad_to)
{
    size_t n = (size_t)BN_num_bytes(bn);
    if (n < pad_to)
        n = pad_to;
    _cleanup_free_ unsigned char *raw = xmalloc(n ? n : 1);
    BN_bn2binpad(bn, raw, (int)n);
    return jwt_b64url_encode(raw, n);
}

static BIGNUM *b64url_bn(const json_t *v, size_t max)
{
    const char *s = json_string_value(v);
    size_t n = 0;
    _cleanup_free_ unsigned char *raw = s ? jwt_b64url_decode(s, strlen(s), &n) : NULL;
    if (!raw || n == 0 || n > max)
        return NULL;
    return BN_bin2bn(raw, (int)n, NULL);
}

/* The public JWK of a key (kty, n/e or crv/x/y); no kid, use or alg.  */
static json_t *public_jwk(EVP_PKEY *key)
{
    BIGNUM *a = NULL, *b = NULL;
    json_t *jwk = NULL;
    if (EVP_PKEY_is_a(key, "RSA")) {
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &a) &&
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &b)) {
            _cleanup_free_ char *e = bn_b64url(b, 0), *n = bn_b64url(a, 0);
            jwk = json_pack("{s:s,s:s,s:s}", "e", e, "kty", "RSA", "n", n);
        }
    } else if (EVP_PKEY_is_a(key, "EC")) {
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &a) &&
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &b)) {
            _cleanup_free_ char *x = bn_b64url(a, 32), *y = bn_b64url(b, 32);
            jwk = json_pack("{s:s,s:s,s:s,s:s}", "crv", "P-256", "kty", "EC", "x", x, "y", y);
        }
    }
    BN_free(a);
    BN_free(b);
    return jwk;
}

/* RFC 7638: SHA-256 over the required members in lexical order.  */
static char *thumbprint(const json_t *jwk)
{
    _cleanup_free_ char *canon = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)canon, strlen(canon), md);
    return jwt_b64url_encode(md, sizeof(md));
}

json_t *jwt_jwk_public(EVP_PKEY *key, char **kid_out)
{
    json_t *jwk = public_jwk(key);
    if (!jwk)
        return NULL;
    char *kid = thumbprint(jwk);
    bool rsa = EVP_PKEY_is_a(key, "RSA");
    json_object_set_new(jwk, "kid", json_string(kid));
    json_object_set_new(jwk, "use", json_string("sig"));
    json_object_set_new(jwk, "alg", json_string(rsa ? "RS256" : "ES256"));
    if (kid_out)
        *kid_out = kid;
    else
        free(kid);
    return jwk;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *key = NULL;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return key;
}

static EVP_PKEY *rsa_from_jwk(const json_t *jwk)
{
    /* 512-byte moduli (4096 bits) at most, 2048 at least: smaller ones are
     * forgeable, larger ones only cost time.  */
    BIGNUM *n = b64url_bn(json_object_get(jwk, "n"), 1024);
    BIGNUM *e = b64url_bn(json_object_get(jwk, "e"), 8);
    EVP_PKEY *key = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (n && e && BN_num_bits(n) >= 2048 && BN_num_bits(n) <= 8192 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        key = from_params("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return key;
}

static EVP_PKEY *ec_from_jwk(const json_t *jwk)
{
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (!crv || strcmp(crv, "P-256") != 0)
        return NULL;
    const char *xs = json_string_value(json_object_get(jwk, "x"));
    const char *ys = json_string_value(json_object_get(jwk, "y"));
    size_t xn = 0, yn = 0;
    _cleanup_free_ unsigned char *x = xs ? jwt_b64url_decode(xs, strlen(xs), &xn) : NULL;
    _cleanup_free_ unsigned char *y = ys ? jwt_b64url_decode(ys, strlen(ys), &yn) : NULL;
    if (!x || !y || xn != 32 || yn != 32)
        return NULL;
    unsigned char pub[65] = {0x04};
    memcpy(pub + 1, x, 32);
    memcpy(pub + 33, y, 32);
    EVP_PKEY *key = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    /* fromdata checks that the point is on the curve.  */
    if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)))
        key = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return key;
}

EVP_PKEY *jwt_jwk_import(const json_t *jwk, const char **alg_out)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *use = json_string_value(json_object_get(jwk, "use"));
    const char *alg = json_string_value(json_object_get(jwk, "alg"));
    if (!kty || (use && strcmp(use, "sig") != 0))
        return NULL;
    if (strcmp(kty, "RSA") == 0 && (!alg || strcmp(alg, "RS256") == 0)) {
        *alg_out = "RS256";
        return rsa_from_jwk(jwk);
    }
    if (strcmp(kty, "EC") == 0 && (!alg || strcmp(alg, "ES256") == 0)) {
        *alg_out = "ES256";
        return ec_from_jwk(jwk);
    }
    return NULL;
}

EVP_PKEY *jwt_key_generate(const char *alg)
{
    if (strcmp(alg, "ES256") == 0)
        return EVP_EC_gen("P-256");
    return EVP_RSA_gen(2048);
}

/* JWS ES256 signatures are r||s, 32 bytes each; OpenSSL's are DER.  */
static unsigned char *ecdsa_der_to_raw(const unsigned char *der, size_t n, size_t *out_len)
{
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &der, (long)n);
    if (!sig)
        return NULL;
    unsigned char *raw = xmalloc(64);
    const BIGNUM *r = NULL, *s = NULL;
    ECDSA_SIG_get0(sig, &r, &s);
    BN_bn2binpad(r, raw, 32);
    BN_bn2binpad(s, raw + 32, 32);
    ECDSA_SIG_free(sig);
    *out_len = 64;
    return raw;
}

static unsigned char *ecdsa_raw_to_der(const unsigned char *raw, size_t n, size_t *out_len)
{
    if (n != 64)
        return NULL;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    if (!sig || !r || !s || !ECDSA_SIG_set0(sig, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(sig);
        return NULL;
    }
    unsigned char *der = NULL;
    int len = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    if (len <= 0)
        return NULL;
    unsigned char *out = xmalloc((size_t)len);
    memcpy(out, der, (size_t)len);
    OPENSSL_free(der);
    *out_len = (size_t)len;
    return out;
}

bool jwt_verify_sig(EVP_PKEY *key, const char *alg, const char *signed_part, size_t n,
                    const unsigned char *sig, size_t sig_len)
{
    bool ec = strcmp(alg, "ES256") == 0;
    if (ec != EVP_PKEY_is_a(key, "EC"))
        return false;
    size_t der_len = sig_len;
    _cleanup_free_ unsigned char *der = ec ? ecdsa_raw_to_der(sig, sig_len, &der_len) : NULL;
    if (ec && !der)
        return false;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok =
        md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestVerify(md, ec ? der : sig, der_len, (const unsigned char *)signed_part, n) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

char *jwt_sign(EVP_PKEY *key, const char *kid, const json_t *claims, sbx_error_t *err)
{
    bool ec = EVP_PKEY_is_a(key, "EC");
    json_t *hdr =
        json_pack("{s:s,s:s,s:s}", "alg", ec ? "ES256" : "RS256", "kid", kid, "typ", "JWT");
    _cleanup_free_ char *h = json_dumps(hdr, JSON_COMPACT);
    _cleanup_free_ char *c = json_dumps(claims, JSON_COMPACT);
    json_decref(hdr);
    _cleanup_free_ char *hb = jwt_b64url_encode((const unsigned char *)h, strlen(h));
    _cleanup_free_ char *cb = jwt_b64url_encode((const unsigned char *)c, strlen(c));
    _cleanup_free_ char *input = xasprintf("%s.%s", hb, cb);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t len = 0;
    _cleanup_free_ unsigned char *sig = NULL;
    bool ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestSign(md, NULL, &len, (const unsigned char *)input, strlen(input)) == 1;
    if (ok) {
        sig = xmalloc(len);
        ok = EVP_DigestSign(md, sig, &len, (const unsigned char *)input, strlen(input)) == 1;
    }
    EVP_MD_CTX_free(md);
    if (!ok)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "signing a token failed"), NULL;
    if (ec) {
        size_t raw_len = 0;
        unsigned char *raw = ecdsa_der_to_raw(sig, len, &raw_len);
        if (!raw)
            return sbx_error_set(err, SBX_ERR_INTERNAL, "signing a token failed"), NULL;
        free(sig);
        sig = raw;
        len = raw_len;
    }
    _cleanup_free_ char *sb = jwt_b64url_encode(sig, len);
    return xasprintf("%s.%s", input, sb);
}

static json_t *decode_part(const char *s, size_t n)
{
    size_t len = 0;
    _cleanup_free_ unsigned char *raw = jwt_b64url_decode(s, n, &len);
    if (!raw)
        return NULL;
    json_t *j = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int jwt_parse(const char *token, jwt_t *out, sbx_error_t *err)
{
    memset(out, 0, sizeof(*out));
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.'))
        return sbx_error_set(err, SBX_ERR_INVALID, "the token is not a JWT (three parts)");
    out->header = decode_part(token, (size_t)(d1 - token));
    out->claims = decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
    out->sig = jwt_b64url_decode(d2 + 1, strlen(d2 + 1), &out->sig_len);
    if (!out->header || !out->claims || !out->sig) {
        jwt_done(out);
        return sbx_error_set(err, SBX_ERR_INVALID, "the token is not well-formed");
    }
    out->signed_len = (size_t)(d2 - token);
    return 0;
}

void jwt_done(jwt_t *j)
{
    json_decref(j->header);
    json_decref(j->claims);
    free(j->sig);
    memset(j, 0, sizeof(*j));
}
