/* http.h -- the HTTP(S) front end shared by sandboxd and sandbox-agent: a
 * libmicrohttpd daemon that collects each request (headers, body up to a
 * cap), calls one handler, sends its response, stamps request-id headers and
 * writes one JSON access-log line per request.  */
#ifndef SBX_HTTP_H
#define SBX_HTTP_H

#include <sys/types.h>

#include "common/common.h"

typedef struct http_server http_server_t;

typedef struct http_request {
    const char *method;
    const char *path;    /* percent-decoded path, without the query */
    const char *raw_url; /* same as path: libmicrohttpd keeps no undecoded copy */
    const char *body;    /* NUL-terminated; may contain NULs */
    size_t body_len;
    char request_id[37];
    const char *client_cert_subject; /* verified client certificate's DN, or NULL */
    struct MHD_Connection *conn;
} http_request_t;

typedef struct http_ws_offer http_ws_offer_t;

typedef struct http_header {
    char *name, *value;
} http_header_t;

typedef struct http_response {
    int status;
    char *body; /* owned */
    size_t body_len;
    const char *content_type;
    http_header_t headers[16];
    size_t n_headers;
    /* A body produced while it is sent (http_reply_stream, http_reply_pipe)
     * instead of `body`; owned until sent.  */
    ssize_t (*stream_read)(void *ud, uint64_t pos, char *buf, size_t max);
    void (*stream_free)(void *ud);
    void *stream_ud;
    uint64_t stream_size;
    struct http_pipe *pipe;
    http_ws_offer_t *ws; /* a WebSocket accepted (http_reply_websocket) */
} http_response_t;

/* A header of the request (case-insensitive) or NULL.  */
const char *http_header(const http_request_t *req, const char *name);
/* A query argument (percent-decoded, case-sensitive name) or NULL.  */
const char *http_query(const http_request_t *req, const char *name);
/* Calls fn for every query argument; returns the number seen.  */
size_t http_query_each(const http_request_t *req,
                       void (*fn)(void *ud, const char *key, const char *value), void *ud);
/* "http" or "https" and the Host header, for absolute URLs in replies.  */
const char *http_scheme(const http_request_t *req);

/* Response builders.  */
void http_reply_json(http_response_t *res, int status, json_t *body); /* steals body */
void http_reply_bytes(http_response_t *res, int status, const char *content_type, char *data,
                      size_t len); /* steals data */
void http_reply_empty(http_response_t *res, int status);
/* ARM error body {"error":{"code","message"}} with the given status.  */
void http_reply_error(http_response_t *res, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* ARM error from an sbx_error_t: status from its code, code from arm_code
 * (or the generic name for its sbx_code_t).  */
void http_reply_sbx_error(http_response_t *res, const sbx_error_t *err);
void http_add_header(http_response_t *res, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- streaming ---- */

/* Up to n bytes of the request body (> 0), 0 at its end, or -1 with errno
 * EFBIG (past the body limit) or ECONNABORTED (the client went away or the
 * server stops).  Blocks until bytes arrive.  Works for collected bodies
 * too.  With stream_body, once it has been called the handler must not use
 * req's header or query accessors: the connection may be gone.  */
ssize_t http_body_read(const http_request_t *req, void *buf, size_t n);
/* http_body_read for callers that take a reader of (void *ud, buf, n),
 * with the request as ud.  */
ssize_t http_body_reader(void *req, void *buf, size_t n);

#define HTTP_STREAM_END (-1)   /* the body is complete */
#define HTTP_STREAM_ERROR (-2) /* cut the connection: the client sees a short body */
#define HTTP_SIZE_UNKNOWN UINT64_MAX
/* The body's Content-Length, or HTTP_SIZE_UNKNOWN (chunked, or no number). */
uint64_t http_body_size(const http_request_t *req);
/* A body produced while it is sent: read(ud, pos, buf, max) returns up to
 * max bytes at offset pos, HTTP_STREAM_END or HTTP_STREAM_ERROR; it runs on
 * the thread serving the connection and must not block for long.  free_fn
 * (may be NULL) is called once when the response is gone, sent or not.
 * size is the Content-Length or HTTP_SIZE_UNKNOWN (chunked).  */
void http_reply_stream(http_response_t *res, int status, const char *content_type, uint64_t size,
                       ssize_t (*read)(void *ud, uint64_t pos, char *buf, size_t max),
                       void (*free_fn)(void *ud), void *ud);

/* A bounded byte pipe from a producer thread into a response body, with
 * back-pressure both ways: the producer blocks while it is full, the
 * connection waits (suspended, not holding an event thread) while it is
 * empty.  Made with two references, the producer's and the response's.  */
typedef struct http_pipe http_pipe_t;
http_pipe_t *http_pipe_new(size_t capacity);
/* All n bytes, or -1 once the response is gone (client away, server
 * stopping): stop producing then.  */
int http_pipe_write(http_pipe_t *p, const void *data, size_t n);
/* The producer is done: complete false cuts the response short.  Drops the
 * producer's reference.  */
void http_pipe_close(http_pipe_t *p, bool complete);
/* The response's side: reply with the pipe's bytes (takes its reference),
 * or give it up without replying from it.  */
void http_reply_pipe(http_response_t *res, int status, const char *content_type, uint64_t size,
                     http_pipe_t *p);
void http_pipe_abandon(http_pipe_t *p);

/* A bounded blocking read of a pipe nobody replies from (the producer's
 * other end kept by a WebSocket session, say): up to n bytes, 0 when
 * nothing came within timeout_ms (-1: no limit), -1 at its end with errno
 * 0 (complete) or EIO (cut short), or once abandoned.  */
ssize_t http_pipe_read(http_pipe_t *p, void *buf, size_t n, int timeout_ms);

/* ---- WebSocket (RFC 6455, ws.c) ---- */

typedef struct http_ws http_ws_t;
typedef void (*http_ws_session_fn)(void *ud, http_ws_t *ws);
enum {
    HTTP_WS_TEXT = 1,
    HTTP_WS_BINARY = 2,
    HTTP_WS_CLOSE = 8,
    HTTP_WS_PING = 9,
    HTTP_WS_PONG = 10,
};
/* Largest message a client may send; bigger ones are closed with 1009.  */
#define HTTP_WS_MAX_MESSAGE (256u << 10)

/* Whether the request asks for a WebSocket (Upgrade: websocket).  */
bool http_ws_requested(const http_request_t *req);
/* Whether its opening handshake is well formed; if not, replies 400 (or
 * 426 for a version other than 13) and returns false.  */
bool http_ws_handshake_ok(const http_request_t *req, http_response_t *res);
/* Reply 101 to a handshake http_ws_handshake_ok passed.  Once it is sent,
 * session(ud, ws) runs on a thread of its own with the connection; when it
 * returns the connection is closed (ws is then gone).  When the upgrade
 * never happens (the client left first), free_fn(ud) instead.  The server
 * stopping cuts the connection (http_ws_recv returns -1).  */
void http_reply_websocket(const http_request_t *req, http_response_t *res,
                          http_ws_session_fn session, void (*free_fn)(void *ud), void *ud);
/* The client's next whole data message (fragments joined, pings answered,
 * pongs noted): returns HTTP_WS_TEXT or HTTP_WS_BINARY with *data valid
 * until the next call (NUL-terminated, text is valid UTF-8), 0 when
 * nothing came within timeout_ms (-1: no limit), or -1 when the
 * connection is over: the client closed (answered; see
 * http_ws_close_code), left, or broke the protocol (a close frame with
 * 1002, 1007 or 1009 was sent).  One thread only.  */
int http_ws_recv(http_ws_t *ws, const char **data, size_t *len, int timeout_ms);
/* One frame of a then b (either may be empty); blocks while the client is
 * behind.  -1 once closed or cut.  Any thread.  */
int http_ws_send(http_ws_t *ws, int opcode, const void *a, size_t na, const void *b, size_t nb);
/* Send the close frame (once; code 0: without a code).  */
void http_ws_close(http_ws_t *ws, unsigned code, const char *reason);
/* Cut the connection: blocked sends and receives return -1.  */
void http_ws_cut(http_ws_t *ws);
/* When the last frame came from the client (sbx_monotonic_ms).  */
int64_t http_ws_last_heard_ms(const http_ws_t *ws);
/* The code of the client's close frame (1005: it had none), or 0.  */
unsigned http_ws_close_code(const http_ws_t *ws);

typedef void (*http_handler_fn)(void *ctx, const http_request_t *req, http_response_t *res);
/* Largest body accepted for this request; the default is cfg->max_body.  */
typedef size_t (*http_body_limit_fn)(void *ctx, const char *method, const char *path);

typedef struct http_config {
    const char *name;         /* for logs: "sandboxd", "sandbox-agent" */
    const char *listen;       /* "host:port"; port 0 picks a free one */
    const char *tls_cert_pem; /* contents, not paths; NULL: plain HTTP */
    const char *tls_key_pem;
    const char *client_ca_pem; /* require client certificates signed by this CA */
    size_t max_body;           /* default 1 MiB */
    unsigned thread_pool;      /* 0: one thread per connection */
    bool access_log;
    /* Successful GETs of these exact paths are not access-logged (health
     * checks and polls that would drown the log); NULL-terminated.  */
    const char *const *quiet_paths;
    http_body_limit_fn body_limit;
    /* With a thread pool: requests for which this returns true run on a
     * thread of their own while their connection is suspended, so a slow
     * one (an exec, a write waiting for SQLite) never holds up the event
     * threads that serve everyone else.  NULL: none.  */
    bool (*run_apart)(void *ctx, const http_request_t *req);

    /* Admission of the requests run_apart picks (in either threading
     * mode): at most max_in_flight of them at once, at most
     * max_in_flight_per_client of those for one client.  Beyond either, the
     * request is answered 429 TooManyRequests with Retry-After at once,
     * without running.  0: 1024 and 256.  */
    unsigned max_in_flight;
    unsigned max_in_flight_per_client;
    /* Names the client a request is counted against (e.g. which bearer
     * token it carries): writes a NUL-terminated name into key and returns
     * true, or returns false to count it against the client's address.
     * NULL: always the address.  */
    bool (*client_key)(void *ctx, const http_request_t *req, char *key, size_t size);

    /* Connections: at most max_connections open (0: 4096; lowered to what
     * RLIMIT_NOFILE allows), at most max_connections_per_address from one
     * client address (0: no cap).  A request head (TLS handshake, request
     * line and headers) must be complete within header_timeout_ms of the
     * connection being accepted or of the previous response (0: 10 s), or
     * the connection is closed; near max_connections the connections that
     * have waited longest for a request head are closed first, so a client
     * that sends its request promptly is always served.  */
    unsigned max_connections;
    unsigned max_connections_per_address;
    unsigned header_timeout_ms;
    /* Requests for which this returns true (asked once the headers are in)
     * do not have their body collected: the handler starts at once on a
     * thread of its own and reads the body with http_body_read while it
     * arrives, through a bounded buffer.  The body limit still holds.
     * NULL: none.  */
    bool (*stream_body)(void *ctx, const http_request_t *req);
    /* Whether a request comes from a known client (asked once the headers
     * are in).  The body of one that does not is held to the header
     * deadline too, and its connection is shed first like one still
     * sending its head: otherwise anyone could hold connections for ever
     * by sending a head and trickling a body.  Nor does it get a larger
     * body limit than max_body, whatever body_limit says: its body is
     * held in memory only to be answered 401.  NULL: every request.  */
    bool (*authenticated)(void *ctx, const http_request_t *req);
} http_config_t;

/* Whether host (a name or an address literal, IPv6 with or without
 * brackets) is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.x.y.z
 * parsed as an address, or exactly "localhost" (any case).  No other name
 * counts: it would be resolved later, and could resolve anywhere.  */
bool http_host_is_loopback(const char *host);
/* The same for "host:port" ("[v6]:port"); false when it is not of that
 * form.  */
bool http_listen_is_loopback(const char *listen);

http_server_t *http_server_start(const http_config_t *cfg, http_handler_fn handler, void *ctx,
                                 sbx_error_t *err);
int http_server_port(const http_server_t *s);
/* Stops accepting, lets in-flight requests finish, frees everything.  */
void http_server_stop(http_server_t *s);

/* ---- reading an event stream (sse.c) ---- */

/* Called per event at its blank line (data "" when it had none), and with
 * event and data NULL per comment line (keep-alives).  Nonzero stops the
 * feed and is what http_sse_feed returns.  */
typedef int (*http_sse_event_fn)(void *ud, const char *event, const char *data, size_t len);

typedef struct http_sse_reader {
    size_t max_line; /* the caller's bound on a line and on an event's data */
    bool overflow;   /* set when a line or event went past it */
    char *line, *data;
    size_t line_len, data_len;
    char event[32];
} http_sse_reader_t;

/* Feed bytes as they come; -1 with overflow set past max_line.  */
int http_sse_feed(http_sse_reader_t *r, const char *p, size_t n, http_sse_event_fn fn, void *ud);
void http_sse_reader_done(http_sse_reader_t *r);

#endif
