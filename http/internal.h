/* internal.h -- what http.c and ws.c share: a WebSocket offered in a
 * reply, and the connection it becomes once libmicrohttpd hands it over.  */
#ifndef SBX_HTTP_INTERNAL_H
#define SBX_HTTP_INTERNAL_H

#include <assert.h>
#include <pthread.h>

#include "http/http.h"

struct http_ws_offer {
    http_ws_session_fn session;
    void (*free_fn)(void *ud);
    void *ud;
    char accept[32]; /* Sec-WebSocket-Accept */
};

/* Frees o, and its ud with free_fn (the session never ran).  */
void ws_offer_free(http_ws_offer_t *o);
/* The connection on sock, with extra bytes the client sent early.  */
http_ws_t *ws_new(int sock, const char *extra, size_t extra_len, size_t max_message);
void ws_free(http_ws_t *ws);

#endif
