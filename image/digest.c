/* digest.c -- sha256 digests in the "sha256:<hex>" spelling of OCI.  */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "image/image_internal.h"

struct img_hasher {
    EVP_MD_CTX *ctx;
};

bool img_digest_valid(const char *digest)
{
    if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
        return false;
    for (const char *p = digest + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static void format_digest(const unsigned char *md, char out[IMG_DIGEST_LEN])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 15];
    }
    out[71] = '\0';
}

void img_sha256_digest(const void *data, size_t len, char out[IMG_DIGEST_LEN])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32)
        abort(); /* only fails when OpenSSL cannot allocate */
    format_digest(md, out);
}

img_hasher_t *img_hasher_new(void)
{
    img_hasher_t *h = xcalloc(1, sizeof(*h));
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL))
        abort();
    return h;
}

void img_hasher_update(img_hasher_t *h, const void *data, size_t len)
{
    if (!EVP_DigestUpdate(h->ctx, data, len))
        abort();
}

void img_hasher_final(img_hasher_t *h, char out[IMG_DIGEST_LEN])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_DigestFinal_ex(h->ctx, md, &n) || n != 32 ||
        !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL))
        abort();
    format_digest(md, out);
}

void img_hasher_free(img_hasher_t *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}
