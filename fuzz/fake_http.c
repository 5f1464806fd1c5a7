/* fake_http.c -- in-memory implementations of http/http.h's request
 * accessors for the fuzz targets.  http.c is compiled into the fuzzer with
 * its own accessors renamed (see CMakeLists.txt), so the response builders
 * are the real ones and only the MHD lookups are replaced.  */
#include "fuzz/fake_http.h"

#include <string.h>
#include <strings.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX in place (and '+' as a space in query values); an invalid
 * escape stays as it is, like libmicrohttpd's decoder.  */
static void percent_decode(char *s, bool plus_is_space)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hex_value(p[1])) >= 0 && (lo = hex_value(p[2])) >= 0) {
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else if (*p == '+' && plus_is_space) {
            *o++ = ' ';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

static void parse_query(fake_request_t *f, const char *q)
{
    _cleanup_free_ char *copy = xstrdup(q);
    char *save = NULL;
    for (char *kv = strtok_r(copy, "&", &save); kv && f->n_query < FAKE_MAX_FIELDS;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq = '\0';
        fake_field_t *fld = &f->query[f->n_query++];
        fld->name = xstrdup(kv);
        fld->value = xstrdup(eq ? eq + 1 : "");
        percent_decode(fld->name, true);
        percent_decode(fld->value, true);
    }
}

void fake_request_init(fake_request_t *f, const char *method, const char *url, const char *body,
                       size_t body_len)
{
    memset(f, 0, sizeof(*f));
    f->method = xstrdup(method);
    f->raw_url = xstrdup(url);
    f->path = xstrdup(url);
    char *q = strchr(f->path, '?');
    if (q) {
        *q = '\0';
        parse_query(f, q + 1);
    }
    percent_decode(f->path, false);
    /* Bodies are NUL-terminated for the handlers, like http.c's.  */
    f->body = xmalloc(body_len + 1);
    if (body_len)
        memcpy(f->body, body, body_len);
    f->body[body_len] = '\0';
    f->scheme = "https";
    f->req.method = f->method;
    f->req.path = f->path;
    f->req.raw_url = f->raw_url;
    f->req.body = f->body;
    f->req.body_len = body_len;
    sbx_uuid(f->req.request_id);
}

void fake_request_header(fake_request_t *f, const char *name, const char *value)
{
    if (f->n_headers == FAKE_MAX_FIELDS)
        return;
    f->headers[f->n_headers].name = xstrdup(name);
    f->headers[f->n_headers].value = xstrdup(value);
    f->n_headers++;
}

void fake_request_done(fake_request_t *f)
{
    for (size_t i = 0; i < f->n_headers; i++) {
        free(f->headers[i].name);
        free(f->headers[i].value);
    }
    for (size_t i = 0; i < f->n_query; i++) {
        free(f->query[i].name);
        free(f->query[i].value);
    }
    free(f->method);
    free(f->path);
    free(f->raw_url);
    free(f->body);
    memset(f, 0, sizeof(*f));
}

void fake_response_done(http_response_t *res)
{
    free(res->body);
    for (size_t i = 0; i < res->n_headers; i++) {
        free(res->headers[i].name);
        free(res->headers[i].value);
    }
    memset(res, 0, sizeof(*res));
}

/* ---- http/http.h's accessors ---- */

const char *http_header(const http_request_t *req, const char *name)
{
    const fake_request_t *f = (const fake_request_t *)req;
    for (size_t i = 0; i < f->n_headers; i++)
        if (strcasecmp(f->headers[i].name, name) == 0)
            return f->headers[i].value;
    return NULL;
}

/* libmicrohttpd answers the first argument of a repeated name.  */
const char *http_query(const http_request_t *req, const char *name)
{
    const fake_request_t *f = (const fake_request_t *)req;
    for (size_t i = 0; i < f->n_query; i++)
        if (strcmp(f->query[i].name, name) == 0)
            return f->query[i].value;
    return NULL;
}

size_t http_query_each(const http_request_t *req,
                       void (*fn)(void *ud, const char *key, const char *value), void *ud)
{
    const fake_request_t *f = (const fake_request_t *)req;
    for (size_t i = 0; fn && i < f->n_query; i++)
        fn(ud, f->query[i].name, f->query[i].value);
    return f->n_query;
}

const char *http_scheme(const http_request_t *req)
{
    return ((const fake_request_t *)req)->scheme;
}
