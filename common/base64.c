/* base64.c -- standard base64 with padding, decoded strictly: the
 * encoding output of processes, files and guest replies travels in.  */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/common.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *sbx_base64_encode(const void *data, size_t n)
{
    const unsigned char *in = data;
    char *out = xmalloc(4 * ((n + 2) / 3) + 1), *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = 0;
    return out;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

char *sbx_base64_decode(const char *in, size_t in_len, size_t max, size_t *len)
{
    /* Up to two bytes of the last quartet may be padding.  */
    size_t most = in_len / 4 * 3;
    if (in_len % 4 || (most > max && most - max > 2))
        return NULL;
    char *out = xmalloc(in_len / 4 * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; i < in_len; i += 4) {
        bool last = i + 4 == in_len;
        int pad = last && in[i + 3] == '=' ? (in[i + 2] == '=' ? 2 : 1) : 0;
        int v[4];
        for (int j = 0; j < 4; j++)
            v[j] = j >= 4 - pad ? 0 : b64_val((unsigned char)in[i + j]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) {
            free(out);
            return NULL;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[k++] = (char)(w >> 16);
        if (pad < 2)
            out[k++] = (char)(w >> 8);
        if (pad < 1)
            out[k++] = (char)w;
    }
    if (k > max) {
        free(out);
        return NULL;
    }
    out[k] = 0;
    *len = k;
    return out;
}
