/* secrets.c -- sealing write-only values (a sandbox's secureEnv) for storage
 * with AES-256-GCM under the installation's secrets key, so the database
 * file alone never shows them.  */
#include "api/internal.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#define SEAL_PREFIX "v1:"
#define NONCE_LEN 12
#define TAG_LEN 16
/* Bound on what a sealed value may hold: the largest secureEnv (256
 * values of 32 KiB and their names) fits with room to spare.  */
#define MAX_PLAIN (16u << 20)

/* Binds a sealed value to its purpose, so no other ciphertext under the
 * same key passes for one.  */
static const unsigned char aad[] = "sandboxd secureEnv v1";

static int crypt_gcm(bool seal, const unsigned char key[API_SECRET_KEY_LEN],
                     const unsigned char nonce[NONCE_LEN], const unsigned char *in, size_t len,
                     unsigned char *out, unsigned char tag[TAG_LEN])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c != NULL;
    ok = ok && (seal ? EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce)
                     : EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce));
    ok = ok && (seal ? EVP_EncryptUpdate(c, NULL, &n, aad, (int)sizeof(aad) - 1)
                     : EVP_DecryptUpdate(c, NULL, &n, aad, (int)sizeof(aad) - 1));
    ok = ok && (seal ? EVP_EncryptUpdate(c, out, &n, in, (int)len)
                     : EVP_DecryptUpdate(c, out, &n, in, (int)len));
    if (ok && !seal)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag);
    ok = ok && (seal ? EVP_EncryptFinal_ex(c, out + n, &n) : EVP_DecryptFinal_ex(c, out + n, &n));
    if (ok && seal)
        ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag);
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

char *api_secret_seal(const unsigned char key[API_SECRET_KEY_LEN], const json_t *obj,
                      sbx_error_t *err)
{
    _cleanup_free_ char *plain = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    size_t len = plain ? strlen(plain) : 0;
    if (!plain || len > MAX_PLAIN)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "cannot encode secrets"), NULL;
    size_t raw_len = NONCE_LEN + len + TAG_LEN;
    _cleanup_free_ unsigned char *raw = xmalloc(raw_len);
    if (RAND_bytes(raw, NONCE_LEN) != 1 || crypt_gcm(true, key, raw, (unsigned char *)plain, len,
                                                     raw + NONCE_LEN, raw + NONCE_LEN + len) < 0) {
        OPENSSL_cleanse(plain, len);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "cannot seal secrets"), NULL;
    }
    OPENSSL_cleanse(plain, len);
    size_t b64_len = 4 * ((raw_len + 2) / 3);
    char *out = xmalloc(sizeof(SEAL_PREFIX) + b64_len);
    memcpy(out, SEAL_PREFIX, sizeof(SEAL_PREFIX) - 1);
    EVP_EncodeBlock((unsigned char *)out + sizeof(SEAL_PREFIX) - 1, raw, (int)raw_len);
    return out;
}

json_t *api_secret_open(const unsigned char key[API_SECRET_KEY_LEN], const char *sealed,
                        sbx_error_t *err)
{
    size_t b64_len = sealed ? strlen(sealed) : 0;
    if (!sbx_str_has_prefix(sealed ? sealed : "", SEAL_PREFIX) || (b64_len -= 3) % 4 != 0 ||
        b64_len / 4 * 3 > MAX_PLAIN + NONCE_LEN + TAG_LEN + 3)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "stored secrets are malformed"), NULL;
    const char *b64 = sealed + 3;
    _cleanup_free_ unsigned char *raw = xmalloc(b64_len / 4 * 3 + 1);
    int n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64_len);
    if (n < 0)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "stored secrets are malformed"), NULL;
    /* DecodeBlock counts the padding as bytes.  */
    size_t raw_len = (size_t)n - (b64_len >= 1 && b64[b64_len - 1] == '=') -
                     (b64_len >= 2 && b64[b64_len - 2] == '=');
    if (raw_len < NONCE_LEN + TAG_LEN)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "stored secrets are malformed"), NULL;
    size_t len = raw_len - NONCE_LEN - TAG_LEN;
    _cleanup_free_ unsigned char *plain = xmalloc(len + 1);
    if (crypt_gcm(false, key, raw, raw + NONCE_LEN, len, plain, raw + NONCE_LEN + len) < 0)
        return sbx_error_set(err, SBX_ERR_INTERNAL,
                             "stored secrets do not open with this server's secrets key "
                             "(was secrets.key in the data directory replaced?)"),
               NULL;
    json_t *obj = json_loadb((const char *)plain, len, 0, NULL);
    OPENSSL_cleanse(plain, len);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "stored secrets are malformed"), NULL;
    }
    return obj;
}
