/* fake_http.h -- requests built in memory for the fuzz targets: the request
 * accessors of http/http.h (headers, query, scheme) answered from plain
 * arrays instead of a libmicrohttpd connection.  */
#ifndef SBX_FUZZ_FAKE_HTTP_H
#define SBX_FUZZ_FAKE_HTTP_H

#include "http/http.h"

#define FAKE_MAX_FIELDS 16

typedef struct fake_field {
    char *name, *value;
} fake_field_t;

/* http_request_t comes first so the accessors can find the rest from the
 * pointer they are given, as http.c does with its own request state.  */
typedef struct fake_request {
    http_request_t req;
    char *method, *path, *raw_url, *body;
    fake_field_t headers[FAKE_MAX_FIELDS];
    size_t n_headers;
    fake_field_t query[FAKE_MAX_FIELDS];
    size_t n_query;
    const char *scheme;
} fake_request_t;

/* url: "/path?query" as received; the path and the query values are
 * percent-decoded the way libmicrohttpd does it.  body may hold NULs.  */
void fake_request_init(fake_request_t *f, const char *method, const char *url, const char *body,
                       size_t body_len);
void fake_request_header(fake_request_t *f, const char *name, const char *value);
void fake_request_done(fake_request_t *f);
/* Frees what a handler put in the response.  */
void fake_response_done(http_response_t *res);

#endif
