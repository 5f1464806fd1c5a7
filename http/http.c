/* http.c -- libmicrohttpd front end: request collection, body caps, TLS with
 * optional client-certificate verification, request ids and access logs,
 * admission of slow requests, and the connection limits and header deadline
 * that keep slow or idle clients from crowding out the rest.  */
#include "http/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_MAX_IN_FLIGHT 1024
#define DEFAULT_MAX_IN_FLIGHT_PER_CLIENT 256
#define DEFAULT_MAX_CONNECTIONS 4096
#define DEFAULT_HEADER_TIMEOUT_MS 10000
/* Seconds a client told 429 or 503 waits before trying again.  */
#define RETRY_AFTER_S 1
#define CLIENT_BUCKETS 256

/* A client's admitted requests (see admit).  */
typedef struct client_slot {
    struct client_slot *next;
    unsigned n;
    char key[];
} client_slot_t;

/* A connection, from accept to close.  While it waits for a request head
 * it is in the server's list of such connections, oldest first.  */
typedef struct conn_state {
    struct conn_state *prev, *next;
    struct conn_state *all_prev, *all_next; /* every open connection */
    bool waiting;
    bool stream;      /* a streamed body or response is under way */
    int64_t since_us; /* accepted, or its previous response sent */
    MHD_socket fd;
} conn_state_t;

struct http_server {
    struct MHD_Daemon *daemon;
    pthread_mutex_t apart_lock;
    pthread_cond_t apart_done;
    unsigned apart_running; /* requests run apart and not yet completed */
    bool stopping;          /* no more of them: http_server_stop waits for the last */
    /* Admission, under apart_lock: requests admitted and not completed, in
     * all and per client.  */
    unsigned in_flight;
    client_slot_t *clients[CLIENT_BUCKETS];
    /* Connections, under conn_lock: how many are open, and those waiting
     * for a request head, oldest first; the sweeper closes those past the
     * header deadline.  */
    pthread_mutex_t conn_lock;
    pthread_cond_t conn_wake;
    unsigned n_conns, shed_at;
    conn_state_t *heads_first, *heads_last;
    conn_state_t *conns; /* all of them */
    bool streams_cut;    /* stopping: streams are closed, new ones at once */
    pthread_t sweeper;
    bool sweeper_running, sweeper_stop;
    http_config_t cfg;
    char *tls_cert, *tls_key, *client_ca;
    http_handler_fn handler;
    void *ctx;
    int port;
    struct http_pipe *pipes; /* response pipes being sent and streamed request
                              * bodies, under apart_lock */
    bool pipes_stopping;     /* http_server_stop cut them all */
    struct ws_run *wss;      /* WebSocket sessions running, under apart_lock */
    unsigned ws_running;
};

/* A WebSocket session: its connection, from the upgrade to the close.  */
typedef struct ws_run {
    http_server_t *server;
    http_ws_offer_t *offer;
    http_ws_t *ws;
    struct MHD_UpgradeResponseHandle *urh;
    struct ws_run *next, *prev;
} ws_run_t;

/* A bounded ring between a thread and a connection.  For a response the
 * thread produces and the connection consumes; for a streamed request body
 * the connection produces and the handler's thread consumes.  The
 * connection's side never blocks an event thread: it suspends the
 * connection and the other side resumes it (with one thread per
 * connection, it waits on cv instead).  */
struct http_pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t cap, head, used;
    bool eof;     /* the producer has no more */
    int error;    /* an errno once either side gave up */
    bool started; /* a request body: the handler asked for it */
    int refs;
    struct MHD_Connection *conn;
    bool pool;             /* event threads: suspend rather than wait */
    bool suspended;        /* conn is suspended waiting for the other side */
    int sock;              /* a request body: conn's socket, valid while !error && !eof */
    http_server_t *server; /* a response pipe: listed in server->pipes */
    bool listed;           /* in server->pipes */
    struct http_pipe *next, *prev;
};

/* Per-request state, from the first call of the access handler to the
 * completion callback.  */
typedef struct request_state {
    http_request_t req;
    char *body;
    size_t len, cap, limit;
    bool too_large;
    size_t discarded; /* bytes of a refused body read and dropped */
    int64_t start_us;
    char *cert_subject;
    const char *scheme;
    http_server_t *server;
    bool apart;      /* handed to a thread of its own */
    bool apart_done; /* that thread filled res and resumed the connection */
    http_response_t res;
    conn_state_t *conn;  /* its connection's state */
    client_slot_t *slot; /* admitted: counted against this client */
    /* stream_body requests: the connection and the handler's thread each
     * hold a reference; the body goes through body_pipe.  */
    atomic_int refs;
    bool streaming;
    bool body_phase;   /* past the call for the headers (repeated after a resume) */
    bool handler_done; /* under body_pipe->mu */
    bool sent;
    uint64_t received;
    size_t body_pos;     /* http_body_read of a collected body */
    char *method, *path; /* streamed: copies that outlive the connection */
    struct http_pipe *body_pipe;
    http_ws_offer_t *ws_offer; /* a 101 sent, until libmicrohttpd hands the socket over */
    bool upgraded;
} request_state_t;

/* ---- request accessors ---- */

const char *http_header(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_request_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct query_iter {
    void (*fn)(void *ud, const char *key, const char *value);
    void *ud;
} query_iter_t;

static enum MHD_Result on_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    query_iter_t *it = cls;
    if (it->fn)
        it->fn(it->ud, key, value ? value : "");
    return MHD_YES;
}

size_t http_query_each(const http_request_t *req,
                       void (*fn)(void *ud, const char *key, const char *value), void *ud)
{
    query_iter_t it = {fn, ud};
    int n = MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, on_query_arg, &it);
    return n < 0 ? 0 : (size_t)n;
}

const char *http_scheme(const http_request_t *req)
{
    const request_state_t *st = (const request_state_t *)req;
    return st->scheme;
}

/* ---- response builders ---- */

static void stream_release(http_response_t *res);

static void response_reset(http_response_t *res)
{
    stream_release(res);
    ws_offer_free(res->ws);
    res->ws = NULL;
    free(res->body);
    res->body = NULL;
    res->body_len = 0;
}

void http_reply_bytes(http_response_t *res, int status, const char *content_type, char *data,
                      size_t len)
{
    response_reset(res);
    res->status = status;
    res->content_type = content_type;
    res->body = data;
    res->body_len = len;
}

void http_reply_json(http_response_t *res, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s) {
        http_reply_error(res, 500, "InternalServerError", "reply could not be encoded");
        return;
    }
    http_reply_bytes(res, status, "application/json; charset=utf-8", s, strlen(s));
}

void http_reply_empty(http_response_t *res, int status)
{
    response_reset(res);
    res->status = status;
    res->content_type = NULL;
}

void http_reply_error(http_response_t *res, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* A message built from hostile input may not be valid UTF-8; jansson
     * refuses such strings, so fall back to a fixed text.  */
    json_t *m = json_string(msg);
    if (!m)
        m = json_string("the request could not be processed");
    http_reply_json(res, status, json_pack("{s:{s:s,s:o}}", "error", "code", code, "message", m));
}

void http_reply_sbx_error(http_response_t *res, const sbx_error_t *err)
{
    const char *code = err->arm_code[0] ? err->arm_code : sbx_code_arm_name(err->code);
    json_t *msg = json_string(err->msg);
    if (!msg)
        msg = json_string("the request could not be processed");
    json_t *e = json_pack("{s:s,s:o}", "code", code, "message", msg);
    json_t *target = err->target[0] ? json_string(err->target) : NULL;
    if (target)
        json_object_set_new(e, "target", target);
    http_reply_json(res, sbx_code_http_status(err->code), json_pack("{s:o}", "error", e));
}

void http_add_header(http_response_t *res, const char *name, const char *fmt, ...)
{
    if (res->n_headers >= ARRAY_SIZE(res->headers))
        return;
    char *value;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&value, fmt, ap) < 0)
        abort();
    va_end(ap);
    res->headers[res->n_headers].name = xstrdup(name);
    res->headers[res->n_headers].value = value;
    res->n_headers++;
}

static void response_done(http_response_t *res)
{
    stream_release(res);
    ws_offer_free(res->ws);
    res->ws = NULL;
    free(res->body);
    for (size_t i = 0; i < res->n_headers; i++) {
        free(res->headers[i].name);
        free(res->headers[i].value);
    }
}

/* ---- the MHD callbacks ---- */

/* Escape s for a JSON string into out (always terminated; cut short when
 * out is full).  Bytes that are not printable ASCII are written as \u00XX,
 * so a hostile path cannot break the line or its encoding.  */
static void json_escape(const char *s, char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 7 < len; p++) {
        if (*p == '"' || *p == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*p;
        } else if (*p < 0x20 || *p >= 0x7f) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[*p >> 4];
            out[o + 5] = hex[*p & 15];
            o += 6;
        } else {
            out[o++] = (char)*p;
        }
    }
    out[o] = '\0';
}

static void access_log(const http_server_t *s, const request_state_t *st, int status)
{
    /* Access lines are info lines: a log level above info silences them.  */
    if (!s->cfg.access_log || sbx_log_get_level() > SBX_LOG_INFO)
        return;
    if (status < 300 && strcmp(st->req.method, "GET") == 0)
        for (const char *const *q = s->cfg.quiet_paths; q && *q; q++)
            if (strcmp(st->req.path, *q) == 0)
                return;
    char when[32], path[1024], method[32];
    sbx_time_format(sbx_now_ms(), when, sizeof(when));
    double ms = (double)(sbx_monotonic_us() - st->start_us) / 1000.0;
    json_escape(st->req.path, path, sizeof(path));
    json_escape(st->req.method, method, sizeof(method));
    /* One line, one write(2): below PIPE_BUF lines from many threads never
     * interleave, and no lock or JSON tree is needed on the hot path.  */
    char line[1536];
    int n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"level\":\"info\",\"module\":\"access\","
                     "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"durationMs\":%.3f,"
                     "\"requestId\":\"%s\",\"bytesIn\":%zu}\n",
                     when, method, path, status, ms, st->req.request_id, st->len);
    if (n > 0 && (size_t)n < sizeof(line)) {
        ssize_t w = write(STDERR_FILENO, line, (size_t)n);
        (void)w;
    }
}

static struct MHD_Response *stream_response(http_server_t *s, request_state_t *st,
                                            http_response_t *res);
static void conn_stream_begins(http_server_t *s, conn_state_t *c);

/* 429 and 503 tell the client to come back later: say when, whoever
 * answered (a handler, or a host whose answer is passed on).  */
static void retry_after_default(http_response_t *res)
{
    if (res->status != 429 && res->status != 503)
        return;
    for (size_t i = 0; i < res->n_headers; i++)
        if (strcasecmp(res->headers[i].name, "Retry-After") == 0)
            return;
    http_add_header(res, "Retry-After", "%d", RETRY_AFTER_S);
}

static enum MHD_Result send_upgrade(http_server_t *s, request_state_t *st, http_response_t *res);

static enum MHD_Result send_response(http_server_t *s, request_state_t *st, http_response_t *res)
{
    retry_after_default(res);
    st->sent = true;
    if (res->ws)
        return send_upgrade(s, st, res);
    if (res->stream_read)
        conn_stream_begins(s, st->conn);
    struct MHD_Response *r =
        res->stream_read
            ? stream_response(s, st, res)
            : MHD_create_response_from_buffer(res->body_len, res->body, MHD_RESPMEM_MUST_FREE);
    if (!r)
        return MHD_NO;
    res->body = NULL; /* MHD frees it now */
    if (res->content_type)
        MHD_add_response_header(r, "Content-Type", res->content_type);
    for (size_t i = 0; i < res->n_headers; i++)
        MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
    MHD_add_response_header(r, "x-ms-request-id", st->req.request_id);
    const char *client_id = http_header(&st->req, "x-ms-client-request-id");
    if (client_id && strlen(client_id) <= 256)
        MHD_add_response_header(r, "x-ms-client-request-id", client_id);
    const char *corr = http_header(&st->req, "x-ms-correlation-request-id");
    MHD_add_response_header(r, "x-ms-correlation-request-id",
                            corr && strlen(corr) <= 256 ? corr : st->req.request_id);
    int status = res->status ? res->status : 500;
    enum MHD_Result ret = MHD_queue_response(st->req.conn, (unsigned)status, r);
    MHD_destroy_response(r);
    access_log(s, st, status);
    return ret;
}

static enum MHD_Result reply_error_now(http_server_t *s, request_state_t *st, int status,
                                       const char *code, const char *msg)
{
    http_response_t res = {0};
    http_reply_error(&res, status, code, "%s", msg);
    enum MHD_Result r = send_response(s, st, &res);
    response_done(&res);
    return r;
}

/* An error the client should retry later (429, 503): with Retry-After, and
 * when the server is going away, on a new connection.  */
static enum MHD_Result reply_retry_later(http_server_t *s, request_state_t *st, int status,
                                         const char *code, const char *msg, bool close)
{
    http_response_t res = {0};
    http_reply_error(&res, status, code, "%s", msg);
    http_add_header(&res, "Retry-After", "%d", RETRY_AFTER_S);
    if (close)
        http_add_header(&res, "Connection", "close");
    enum MHD_Result r = send_response(s, st, &res);
    response_done(&res);
    return r;
}

/* An error after which the connection is closed: what else the client sent
 * on it cannot be trusted to start where we think it does.  */
static enum MHD_Result reply_and_close(http_server_t *s, request_state_t *st, int status,
                                       const char *code, const char *msg)
{
    http_response_t res = {0};
    http_reply_error(&res, status, code, "%s", msg);
    http_add_header(&res, "Connection", "close");
    enum MHD_Result r = send_response(s, st, &res);
    response_done(&res);
    return r;
}

/* With a client CA configured, only peers whose certificate chains to it
 * get an answer; everyone else gets 403 before any handler runs.  */
static int verify_client_cert(request_state_t *st)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(st->req.conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return -1;
    gnutls_session_t session = (gnutls_session_t)ci->tls_session;
    /* The certificate must be meant for clients: a server certificate from
     * the same CA (another host's agent) must not pass as a caller.  */
    unsigned status = 0;
    gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
                                     (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
    if (gnutls_certificate_verify_peers(session, &purpose, 1, &status) < 0 || status != 0)
        return -1;
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    if (!certs || n == 0)
        return -1;
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return -1;
    char dn[512];
    size_t dn_len = sizeof(dn);
    int ok = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >= 0 &&
             gnutls_x509_crt_get_dn(crt, dn, &dn_len) >= 0;
    gnutls_x509_crt_deinit(crt);
    if (!ok)
        return -1;
    st->cert_subject = xstrdup(dn);
    st->req.client_cert_subject = st->cert_subject;
    return 0;
}

static enum MHD_Result find_nul_escape(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    bool *found = cls;
    if ((key && strstr(key, "%00")) || (value && strstr(value, "%00")))
        *found = true;
    return MHD_YES;
}

/* The unescape callback leaves "%00" literal; a URL that carries one is
 * refused as a whole, so no handler ever sees a name or path cut short.  */
static bool url_has_nul_escape(struct MHD_Connection *conn, const char *path)
{
    bool found = strstr(path, "%00") != NULL;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, find_nul_escape, &found);
    return found;
}

typedef struct framing {
    unsigned content_length, transfer_encoding;
    const char *te;
    bool bad_name;
} framing_t;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    framing_t *f = cls;
    if (strpbrk(key, " \t"))
        f->bad_name = true;
    else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        f->content_length++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding++;
        f->te = value;
    }
    return MHD_YES;
}

/* Whether the body's length could be read two ways: Content-Length and
 * Transfer-Encoding together, either twice, a transfer coding other than
 * plain "chunked" (libmicrohttpd would read such a body to the end of the
 * connection), Transfer-Encoding before HTTP/1.1, or whitespace in a header
 * name ("Transfer-Encoding : chunked" is not the header to us, and may be
 * to a proxy).  A proxy in front that reads the other length than we do
 * would take the rest of the body for a request of its own (request
 * smuggling), so such requests are refused, as RFC 9112 section 6.1 asks.  */
static bool framing_ambiguous(struct MHD_Connection *conn, const char *version)
{
    framing_t f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.bad_name || f.content_length > 1 || f.transfer_encoding > 1)
        return true;
    if (f.transfer_encoding == 0)
        return false;
    return f.content_length > 0 || !f.te || strcasecmp(f.te, "chunked") != 0 ||
           strcmp(version, MHD_HTTP_VERSION_1_1) != 0;
}

/* ---- connections: the header deadline and shedding ---- */

static void heads_remove(http_server_t *s, conn_state_t *c)
{
    if (!c->waiting)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->heads_first = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        s->heads_last = c->prev;
    c->prev = c->next = NULL;
    c->waiting = false;
}

/* The connection starts waiting for a request head now.  */
static void heads_append(http_server_t *s, conn_state_t *c)
{
    heads_remove(s, c);
    c->since_us = sbx_monotonic_us();
    c->prev = s->heads_last;
    if (s->heads_last)
        s->heads_last->next = c;
    else {
        s->heads_first = c;
        pthread_cond_signal(&s->conn_wake); /* the sweeper may sleep unbounded */
    }
    s->heads_last = c;
    c->waiting = true;
}

/* Make libmicrohttpd close a connection: after shutdown its next read sees
 * the end and it closes the connection on its own thread.  The fd is still
 * the connection's: libmicrohttpd closes it only after NOTIFY_CLOSED, which
 * takes the connection out of the list under conn_lock, held here.  */
static void heads_cut(http_server_t *s, conn_state_t *c)
{
    heads_remove(s, c);
    if (c->fd != MHD_INVALID_SOCKET)
        shutdown(c->fd, SHUT_RDWR);
}

/* libmicrohttpd's own timeout is for idleness: a client sending a header
 * line every few seconds would hold its connection for ever.  This closes
 * connections whose request head is not complete by the deadline.  */
static void *sweeper_main(void *arg)
{
    http_server_t *s = arg;
    int64_t limit_us = (int64_t)s->cfg.header_timeout_ms * 1000;
    pthread_mutex_lock(&s->conn_lock);
    while (!s->sweeper_stop) {
        int64_t now = sbx_monotonic_us();
        while (s->heads_first && now - s->heads_first->since_us >= limit_us)
            heads_cut(s, s->heads_first);
        if (s->heads_first) {
            int64_t wait_ms = (s->heads_first->since_us + limit_us - now) / 1000 + 1;
            struct timespec until = sbx_deadline_in(wait_ms);
            pthread_cond_timedwait(&s->conn_wake, &s->conn_lock, &until);
        } else {
            pthread_cond_wait(&s->conn_wake, &s->conn_lock);
        }
    }
    pthread_mutex_unlock(&s->conn_lock);
    return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    http_server_t *s = cls;
    conn_state_t *c = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        c = xcalloc(1, sizeof(*c));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : MHD_INVALID_SOCKET;
        *socket_context = c;
        pthread_mutex_lock(&s->conn_lock);
        s->n_conns++;
        c->all_next = s->conns;
        if (s->conns)
            s->conns->all_prev = c;
        s->conns = c;
        /* Near the limit, the connection that has waited longest for a
         * request head makes room: a client that sends its request at
         * once always gets in, however many others only trickle.  */
        if (s->n_conns > s->shed_at && s->heads_first)
            heads_cut(s, s->heads_first);
        heads_append(s, c);
        pthread_mutex_unlock(&s->conn_lock);
        return;
    }
    if (!c)
        return;
    pthread_mutex_lock(&s->conn_lock);
    heads_remove(s, c);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        s->conns = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    s->n_conns--;
    pthread_mutex_unlock(&s->conn_lock);
    free(c);
    *socket_context = NULL;
}

static conn_state_t *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The request head (with an unauthenticated request, its body too) is in:
 * the connection no longer waits for the header deadline.  */
static void head_complete(http_server_t *s, conn_state_t *c)
{
    if (c) {
        pthread_mutex_lock(&s->conn_lock);
        heads_remove(s, c);
        pthread_mutex_unlock(&s->conn_lock);
    }
}

/* The connection carries a stream now: one a stopping server closes, since
 * a client that reads or sends a byte now and then would otherwise hold
 * the stop for as long as it likes.  */
static void conn_stream_begins(http_server_t *s, conn_state_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&s->conn_lock);
    c->stream = true;
    if (s->streams_cut && c->fd != MHD_INVALID_SOCKET)
        shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->conn_lock);
}

/* Close every connection carrying a stream, and those that start one
 * from now on; libmicrohttpd sees the end and finishes them.  */
static void streams_close(http_server_t *s)
{
    pthread_mutex_lock(&s->conn_lock);
    s->streams_cut = true;
    for (conn_state_t *c = s->conns; c; c = c->all_next)
        if (c->stream && c->fd != MHD_INVALID_SOCKET)
            shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->conn_lock);
}

/* ---- admission of slow requests ---- */

static void client_address(struct MHD_Connection *conn, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    out[0] = '\0';
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)size);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)size);
}

static unsigned key_hash(const char *key)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % CLIENT_BUCKETS;
}

typedef enum { ADMITTED, SERVER_BUSY, CLIENT_BUSY } admission_t;

/* Count a slow request against the server's and its client's bound, or
 * say which one it is over.  Released in on_completed.  */
static admission_t admit(http_server_t *s, request_state_t *st)
{
    char key[160];
    if (!s->cfg.client_key || !s->cfg.client_key(s->ctx, &st->req, key, sizeof(key) - 1)) {
        memcpy(key, "address ", 8);
        client_address(st->req.conn, key + 8, sizeof(key) - 8);
    }
    key[sizeof(key) - 1] = '\0';
    client_slot_t **bucket = &s->clients[key_hash(key)];
    admission_t verdict = SERVER_BUSY;
    pthread_mutex_lock(&s->apart_lock);
    if (s->in_flight < s->cfg.max_in_flight) {
        client_slot_t *c = *bucket;
        while (c && strcmp(c->key, key) != 0)
            c = c->next;
        if (!c) {
            size_t n = strlen(key) + 1;
            c = xcalloc(1, sizeof(*c) + n);
            memcpy(c->key, key, n);
            c->next = *bucket;
            *bucket = c;
        }
        verdict = CLIENT_BUSY;
        if (c->n < s->cfg.max_in_flight_per_client) {
            c->n++;
            s->in_flight++;
            st->slot = c;
            verdict = ADMITTED;
        }
    }
    pthread_mutex_unlock(&s->apart_lock);
    return verdict;
}

/* Under apart_lock.  */
/* The 429 for a request admit() refused; `close` when its body was not
 * read.  */
static enum MHD_Result reply_not_admitted(http_server_t *s, request_state_t *st, admission_t a,
                                          bool close)
{
    return reply_retry_later(s, st, 429, "TooManyRequests",
                             a == CLIENT_BUSY ? "too many requests of this client are in progress"
                                              : "too many requests are in progress",
                             close);
}

static void release(http_server_t *s, client_slot_t *slot)
{
    s->in_flight--;
    if (--slot->n > 0)
        return;
    for (client_slot_t **pp = &s->clients[key_hash(slot->key)]; *pp; pp = &(*pp)->next)
        if (*pp == slot) {
            *pp = slot->next;
            break;
        }
    free(slot);
}

static request_state_t *request_begin(http_server_t *s, struct MHD_Connection *conn,
                                      const char *url, const char *method)
{
    request_state_t *st = xcalloc(1, sizeof(*st));
    st->server = s;
    st->conn = conn_of(conn);
    atomic_init(&st->refs, 1);
    st->start_us = sbx_monotonic_us();
    st->req.conn = conn;
    st->req.method = method;
    st->req.path = url;
    st->req.raw_url = url; /* libmicrohttpd hands over the decoded path only */
    st->scheme = s->cfg.tls_cert_pem ? "https" : "http";
    sbx_uuid(st->req.request_id);
    st->limit = s->cfg.body_limit ? s->cfg.body_limit(s->ctx, method, url) : 0;
    if (st->limit == 0)
        st->limit = s->cfg.max_body;
    return st;
}

/* A refused body up to this size is still read (and dropped) before the
 * 413 goes out: answering while the client is still sending and then
 * closing makes the kernel reset the connection, and the client sees a
 * broken connection instead of the answer.  Larger ones are cut off.  */
#define DISCARD_MAX (8u << 20)

typedef enum {
    BODY_FITS,
    BODY_DRAIN,  /* too large: read and drop it, then answer 413 */
    BODY_REFUSE, /* too large: answer 413 now */
} body_verdict_t;

static body_verdict_t content_length_verdict(const request_state_t *st)
{
    const char *cl = http_header(&st->req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return BODY_FITS;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    if (errno != 0 || *end != '\0')
        return BODY_REFUSE;
    if (n <= st->limit)
        return BODY_FITS;
    /* A client waiting for "100 Continue" has not sent the body yet.  */
    const char *expect = http_header(&st->req, MHD_HTTP_HEADER_EXPECT);
    if (expect && strcasecmp(expect, "100-continue") == 0)
        return BODY_REFUSE;
    return n <= DISCARD_MAX ? BODY_DRAIN : BODY_REFUSE;
}

static void body_append(request_state_t *st, const char *data, size_t n)
{
    if (st->too_large || n > st->limit - st->len) {
        st->too_large = true;
        st->discarded += n;
        return;
    }
    if (st->len + n + 1 > st->cap) {
        st->cap = (st->len + n + 1) * 2;
        if (st->cap > st->limit + 1)
            st->cap = st->limit + 1;
        st->body = xrealloc(st->body, st->cap);
    }
    memcpy(st->body + st->len, data, n);
    st->len += n;
}

static void *apart_main(void *arg)
{
    request_state_t *st = arg;
    http_server_t *s = st->server;
    s->handler(s->ctx, &st->req, &st->res);
    pthread_mutex_lock(&s->apart_lock);
    st->apart_done = true;
    MHD_resume_connection(st->req.conn);
    pthread_mutex_unlock(&s->apart_lock);
    return NULL;
}

/* Suspend the connection and run the handler on a thread of its own; the
 * connection is resumed, and on_access called again, when it is done.
 * Admission bounds how many such threads there are.  */
static int run_apart(http_server_t *s, request_state_t *st)
{
    pthread_attr_t attr;
    pthread_t t;
    pthread_mutex_lock(&s->apart_lock);
    /* Once stopping, a thread of its own started now would outlive the
     * server, and its suspended connection would be one MHD_stop_daemon
     * refuses to find: such a request is refused (503).  */
    if (s->stopping) {
        pthread_mutex_unlock(&s->apart_lock);
        return -1;
    }
    st->apart = true;
    MHD_suspend_connection(st->req.conn);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, apart_main, st);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        s->apart_running++;
    else {
        MHD_resume_connection(st->req.conn);
        st->apart = false;
    }
    pthread_mutex_unlock(&s->apart_lock);
    return rc == 0 ? 0 : -1;
}

/* ---- streaming: pipes, streamed responses, streamed request bodies ---- */

/* A streamed request body goes through a buffer this large.  */
#define BODY_PIPE_CAP (256u << 10)

http_pipe_t *http_pipe_new(size_t capacity)
{
    http_pipe_t *p = xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->cap = capacity ? capacity : BODY_PIPE_CAP;
    p->buf = xmalloc(p->cap);
    p->refs = 2;
    p->sock = -1;
    return p;
}

static void pipe_unref(http_pipe_t *p)
{
    pthread_mutex_lock(&p->mu);
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->buf);
    free(p);
}

/* Copy into the ring what fits; under mu.  */
static size_t pipe_put(http_pipe_t *p, const char *data, size_t n)
{
    size_t done = 0;
    while (done < n && p->used < p->cap) {
        size_t tail = (p->head + p->used) % p->cap;
        size_t room = p->cap - p->used;
        size_t chunk = p->cap - tail < room ? p->cap - tail : room;
        if (chunk > n - done)
            chunk = n - done;
        memcpy(p->buf + tail, data + done, chunk);
        p->used += chunk;
        done += chunk;
    }
    if (done)
        pthread_cond_broadcast(&p->cv);
    return done;
}

static size_t pipe_take(http_pipe_t *p, char *out, size_t n)
{
    size_t done = 0;
    while (done < n && p->used > 0) {
        size_t chunk = p->cap - p->head < p->used ? p->cap - p->head : p->used;
        if (chunk > n - done)
            chunk = n - done;
        memcpy(out + done, p->buf + p->head, chunk);
        p->head = (p->head + chunk) % p->cap;
        p->used -= chunk;
        done += chunk;
    }
    if (done)
        pthread_cond_broadcast(&p->cv);
    return done;
}

/* The connection's side waits for the other: suspend it (event threads)
 * or return false so the caller waits on cv (a thread per connection).
 * Under mu, which is also held by whoever resumes, so no wake-up is lost.  */
static bool pipe_suspend(http_pipe_t *p)
{
    if (!p->pool)
        return false;
    p->suspended = true;
    MHD_suspend_connection(p->conn);
    return true;
}

/* The other side made progress: let the connection go on.  Under mu.  A
 * suspended connection cannot have been closed, so conn is still valid.  */
static void pipe_wake_conn(http_pipe_t *p)
{
    pthread_cond_broadcast(&p->cv);
    if (p->suspended) {
        p->suspended = false;
        MHD_resume_connection(p->conn);
    }
}

int http_pipe_write(http_pipe_t *p, const void *data, size_t n)
{
    const char *d = data;
    pthread_mutex_lock(&p->mu);
    while (n > 0) {
        if (p->error) {
            pthread_mutex_unlock(&p->mu);
            return -1;
        }
        size_t k = pipe_put(p, d, n);
        d += k;
        n -= k;
        if (k)
            pipe_wake_conn(p);
        else
            pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void http_pipe_close(http_pipe_t *p, bool complete)
{
    pthread_mutex_lock(&p->mu);
    p->eof = true;
    if (!complete && !p->error)
        p->error = EIO;
    pipe_wake_conn(p);
    pthread_mutex_unlock(&p->mu);
    pipe_unref(p);
}

/* The response's side is gone: a producer still writing gets -1.  */
void http_pipe_abandon(http_pipe_t *p)
{
    pthread_mutex_lock(&p->mu);
    if (!p->error)
        p->error = ECONNABORTED;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pipe_unref(p);
}

/* Under s->apart_lock.  */
static void pipes_link(http_server_t *s, http_pipe_t *p)
{
    p->prev = NULL;
    p->next = s->pipes;
    if (s->pipes)
        s->pipes->prev = p;
    s->pipes = p;
    p->listed = true;
}

static void pipes_unlink(http_server_t *s, http_pipe_t *p)
{
    if (!p->listed)
        return;
    if (p->prev)
        p->prev->next = p->next;
    else
        s->pipes = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->listed = false;
}

static ssize_t pipe_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    http_pipe_t *p = cls;
    (void)pos;
    ssize_t ret;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->error) {
            ret = MHD_CONTENT_READER_END_WITH_ERROR;
        } else if (p->used) {
            ret = (ssize_t)pipe_take(p, buf, max);
        } else if (p->eof) {
            ret = MHD_CONTENT_READER_END_OF_STREAM;
        } else if (pipe_suspend(p)) {
            ret = 0; /* called again once resumed */
        } else {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        break;
    }
    pthread_mutex_unlock(&p->mu);
    return ret;
}

static void pipe_reader_free(void *cls)
{
    http_pipe_t *p = cls;
    http_server_t *s = p->server;
    if (s) {
        pthread_mutex_lock(&s->apart_lock);
        pipes_unlink(s, p);
        pthread_mutex_unlock(&s->apart_lock);
    }
    http_pipe_abandon(p);
}

void http_reply_stream(http_response_t *res, int status, const char *content_type, uint64_t size,
                       ssize_t (*read)(void *ud, uint64_t pos, char *buf, size_t max),
                       void (*free_fn)(void *ud), void *ud)
{
    response_reset(res);
    res->status = status;
    res->content_type = content_type;
    res->stream_read = read;
    res->stream_free = free_fn;
    res->stream_ud = ud;
    res->stream_size = size;
}

void http_reply_pipe(http_response_t *res, int status, const char *content_type, uint64_t size,
                     http_pipe_t *p)
{
    http_reply_stream(res, status, content_type, size, pipe_reader, pipe_reader_free, p);
    res->pipe = p;
}

/* A stream never handed to libmicrohttpd is released here.  */
static void stream_release(http_response_t *res)
{
    if (res->stream_read && res->stream_free)
        res->stream_free(res->stream_ud);
    res->stream_read = NULL;
    res->stream_free = NULL;
    res->stream_ud = NULL;
    res->pipe = NULL;
}

static struct MHD_Response *stream_response(http_server_t *s, request_state_t *st,
                                            http_response_t *res)
{
    http_pipe_t *p = res->pipe;
    if (p) {
        /* Listed, so http_server_stop can cut it: a connection suspended
         * for it would make MHD_stop_daemon abort.  */
        pthread_mutex_lock(&s->apart_lock);
        pthread_mutex_lock(&p->mu);
        p->conn = st->req.conn;
        p->pool = s->cfg.thread_pool != 0;
        p->server = s;
        if (s->pipes_stopping && !p->error)
            p->error = ECONNABORTED;
        pthread_mutex_unlock(&p->mu);
        pipes_link(s, p);
        pthread_mutex_unlock(&s->apart_lock);
    }
    uint64_t size = res->stream_size == HTTP_SIZE_UNKNOWN ? MHD_SIZE_UNKNOWN : res->stream_size;
    struct MHD_Response *r = MHD_create_response_from_callback(size, 64 * 1024, res->stream_read,
                                                               res->stream_ud, res->stream_free);
    if (r) { /* MHD calls stream_free from now on */
        res->stream_read = NULL;
        res->stream_free = NULL;
        res->pipe = NULL;
    }
    return r;
}

/* Cut every response pipe still being sent, so no connection stays
 * suspended waiting for a producer, and every streamed request body, so
 * its handler stops waiting for the client.  */
static void pipes_stop(http_server_t *s)
{
    pthread_mutex_lock(&s->apart_lock);
    s->pipes_stopping = true;
    for (ws_run_t *w = s->wss; w; w = w->next)
        http_ws_cut(w->ws);
    for (http_pipe_t *p = s->pipes; p; p = p->next) {
        pthread_mutex_lock(&p->mu);
        if (!p->error)
            p->error = ECONNABORTED;
        pipe_wake_conn(p);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&s->apart_lock);
}

ssize_t http_pipe_read(http_pipe_t *p, void *buf, size_t n, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (timeout_ms >= 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
    }
    ssize_t ret;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->used) {
            ret = (ssize_t)pipe_take(p, buf, n);
        } else if (p->error || p->eof) {
            errno = p->error;
            ret = -1;
        } else if (timeout_ms < 0) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        } else if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT) {
            ret = 0;
        } else {
            continue;
        }
        break;
    }
    pthread_mutex_unlock(&p->mu);
    return ret;
}

/* ---- WebSocket sessions ---- */

static void *ws_main(void *arg)
{
    ws_run_t *w = arg;
    http_server_t *s = w->server;
    w->offer->session(w->offer->ud, w->ws);
    w->offer->free_fn = NULL; /* ud was the session's */
    pthread_mutex_lock(&s->apart_lock);
    if (w->prev)
        w->prev->next = w->next;
    else
        s->wss = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&s->apart_lock);
    MHD_upgrade_action(w->urh, MHD_UPGRADE_ACTION_CLOSE);
    ws_free(w->ws);
    ws_offer_free(w->offer);
    free(w);
    pthread_mutex_lock(&s->apart_lock);
    s->ws_running--;
    pthread_cond_broadcast(&s->apart_done);
    pthread_mutex_unlock(&s->apart_lock);
    return NULL;
}

/* libmicrohttpd sent the 101 and hands the connection over: the session
 * gets a thread of its own (counted, so stopping waits for it).  */
static void on_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra,
                       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    http_server_t *s = cls;
    request_state_t *st = con_cls;
    (void)conn;
    ws_run_t *w = xcalloc(1, sizeof(*w));
    w->server = s;
    w->offer = st->ws_offer;
    st->ws_offer = NULL;
    w->urh = urh;
    w->ws = ws_new(sock, extra, extra_len, HTTP_WS_MAX_MESSAGE);
    pthread_attr_t attr;
    pthread_t t;
    pthread_mutex_lock(&s->apart_lock);
    int rc = -1;
    if (!s->stopping && w->offer) {
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&t, &attr, ws_main, w);
        pthread_attr_destroy(&attr);
    }
    if (rc == 0) {
        s->ws_running++;
        w->next = s->wss;
        if (s->wss)
            s->wss->prev = w;
        s->wss = w;
    }
    pthread_mutex_unlock(&s->apart_lock);
    if (rc != 0) {
        MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
        ws_free(w->ws);
        ws_offer_free(w->offer);
        free(w);
    }
}

static enum MHD_Result send_upgrade(http_server_t *s, request_state_t *st, http_response_t *res)
{
    conn_stream_begins(s, st->conn);
    ws_offer_free(st->ws_offer);
    st->ws_offer = res->ws;
    res->ws = NULL;
    st->upgraded = true;
    struct MHD_Response *r = MHD_create_response_for_upgrade(on_upgrade, s);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Upgrade", "websocket");
    MHD_add_response_header(r, "Sec-WebSocket-Accept", st->ws_offer->accept);
    for (size_t i = 0; i < res->n_headers; i++)
        MHD_add_response_header(r, res->headers[i].name, res->headers[i].value);
    MHD_add_response_header(r, "x-ms-request-id", st->req.request_id);
    enum MHD_Result ret = MHD_queue_response(st->req.conn, MHD_HTTP_SWITCHING_PROTOCOLS, r);
    MHD_destroy_response(r);
    access_log(s, st, 101);
    return ret;
}

ssize_t http_body_reader(void *req, void *buf, size_t n)
{
    return http_body_read(req, buf, n);
}

uint64_t http_body_size(const http_request_t *req)
{
    const char *cl = http_header(req, "Content-Length");
    if (!cl || !*cl)
        return HTTP_SIZE_UNKNOWN;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return !errno && !*end ? n : HTTP_SIZE_UNKNOWN;
}

/* Whether the client has closed its side (it will send nothing more).  */
static bool peer_closed(int sock)
{
    struct pollfd pfd = {.fd = sock, .events = POLLRDHUP};
    return sock >= 0 && poll(&pfd, 1, 0) == 1 &&
           (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

typedef struct body_watch {
    uint64_t received; /* st->received when last seen to move */
    int idle_checks;   /* checks since, with the client closed */
} body_watch_t;

/* Wait for the connection to put more body in the pipe.  Under p->mu.
 * libmicrohttpd's edge-triggered epoll now and then loses a client's close
 * that arrives while its connection is suspended (the pipe was full): the
 * connection, resumed, waits for an event that never comes, and the reader
 * for the 30 s idle timeout.  So a reader that waits checks every second:
 * the client has closed, the connection is not suspended, and no byte came
 * for two checks in a row means no byte ever will: the body is cut.  */
static void body_wait(request_state_t *st, http_pipe_t *p, body_watch_t *w)
{
    if (!p->pool) {
        pthread_cond_wait(&p->cv, &p->mu);
        return;
    }
    struct timespec until = sbx_deadline_in(1000);
    if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
        return;
    if (st->received != w->received || p->suspended || !peer_closed(p->sock)) {
        w->received = st->received;
        w->idle_checks = 0;
    } else if (++w->idle_checks >= 2) {
        p->error = ECONNABORTED;
    }
}

ssize_t http_body_read(const http_request_t *req, void *buf, size_t n)
{
    request_state_t *st = (request_state_t *)req;
    if (!st->streaming) {
        size_t left = req->body_len - st->body_pos;
        size_t k = left < n ? left : n;
        memcpy(buf, req->body + st->body_pos, k);
        st->body_pos += k;
        return (ssize_t)k;
    }
    http_pipe_t *p = st->body_pipe;
    ssize_t ret;
    body_watch_t watch = {.received = st->received};
    pthread_mutex_lock(&p->mu);
    p->started = true;
    for (;;) {
        if (p->used) {
            ret = (ssize_t)pipe_take(p, buf, n);
        } else if (p->error) {
            errno = p->error;
            ret = -1;
        } else if (p->eof) {
            ret = 0;
        } else {
            pipe_wake_conn(p);
            body_wait(st, p, &watch);
            continue;
        }
        break;
    }
    pipe_wake_conn(p); /* room again */
    pthread_mutex_unlock(&p->mu);
    return ret;
}

static void request_free(request_state_t *st);

static void request_unref(request_state_t *st)
{
    if (atomic_fetch_sub(&st->refs, 1) == 1)
        request_free(st);
}

static void *stream_main(void *arg)
{
    request_state_t *st = arg;
    http_server_t *s = st->server;
    s->handler(s->ctx, &st->req, &st->res);
    http_pipe_t *p = st->body_pipe;
    pthread_mutex_lock(&p->mu);
    st->handler_done = true;
    pipe_wake_conn(p);
    pthread_mutex_unlock(&p->mu);
    request_unref(st);
    return NULL;
}

/* The connection reads no body until the handler asks for it.  A call
 * for the headers that suspends the connection is made again, with no
 * data, once it is resumed: only one that returns moves on to the body.  */
static enum MHD_Result stream_wait_start(request_state_t *st)
{
    http_pipe_t *p = st->body_pipe;
    pthread_mutex_lock(&p->mu);
    while (!p->started && !st->handler_done) {
        if (pipe_suspend(p)) {
            pthread_mutex_unlock(&p->mu);
            return MHD_YES;
        }
        pthread_cond_wait(&p->cv, &p->mu);
    }
    st->body_phase = true;
    pthread_mutex_unlock(&p->mu);
    return MHD_YES;
}

/* First call of a stream_body request: the handler starts on a thread of
 * its own, and the connection waits until it asks for the body.  */
static enum MHD_Result stream_start(http_server_t *s, request_state_t *st)
{
    pthread_attr_t attr;
    pthread_t t;
    st->req.method = st->method = xstrdup(st->req.method);
    st->req.path = st->req.raw_url = st->path = xstrdup(st->req.path);
    st->body_pipe = http_pipe_new(BODY_PIPE_CAP);
    st->body_pipe->refs = 1; /* st's alone */
    st->body_pipe->conn = st->req.conn;
    st->body_pipe->pool = s->cfg.thread_pool != 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(st->req.conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    st->body_pipe->sock = ci ? ci->connect_fd : -1;
    /* Admitted like every request run apart: a client uploading to many
     * files at once is bounded as one running many execs is.  */
    admission_t a = admit(s, st);
    if (a != ADMITTED)
        return reply_not_admitted(s, st, a, true);
    pthread_mutex_lock(&s->apart_lock);
    int rc = -1;
    if (!s->stopping) {
        st->streaming = st->apart = true;
        atomic_store(&st->refs, 2);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&t, &attr, stream_main, st);
        pthread_attr_destroy(&attr);
        if (rc == 0) {
            s->apart_running++;
            pipes_link(s, st->body_pipe);
        } else {
            st->streaming = st->apart = false;
            atomic_store(&st->refs, 1);
        }
    }
    pthread_mutex_unlock(&s->apart_lock);
    if (rc != 0)
        return reply_retry_later(s, st, 503, "ServiceUnavailable",
                                 "the server is stopping or out of threads", true);
    conn_stream_begins(s, st->conn);
    return stream_wait_start(st);
}

/* Later calls: body bytes go into the pipe while there is room; the rest
 * waits in libmicrohttpd's buffer, the connection suspended.  Once the
 * body is in and the handler done, its response goes out.  */
static enum MHD_Result stream_access(http_server_t *s, request_state_t *st, const char *upload_data,
                                     size_t *upload_data_size)
{
    if (!st->body_phase && *upload_data_size == 0)
        return stream_wait_start(st);
    http_pipe_t *p = st->body_pipe;
    pthread_mutex_lock(&p->mu);
    if (st->sent) {
        *upload_data_size = 0;
        pthread_mutex_unlock(&p->mu);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        for (;;) {
            if (st->handler_done || p->error) {
                st->discarded += *upload_data_size;
                *upload_data_size = 0;
                break;
            }
            if (*upload_data_size > st->limit - st->received) {
                p->error = EFBIG;
                pthread_cond_broadcast(&p->cv);
                continue;
            }
            size_t k = pipe_put(p, upload_data, *upload_data_size);
            st->received += k;
            upload_data += k;
            *upload_data_size -= k;
            if (*upload_data_size == 0)
                break;
            if (pipe_suspend(p)) {
                pthread_mutex_unlock(&p->mu);
                return MHD_YES; /* the rest is offered again once resumed */
            }
            pthread_cond_wait(&p->cv, &p->mu);
        }
        /* A body the handler did not take is read and dropped, so the
         * client, still sending, gets the answer instead of a reset; but
         * not past the body limit by more than DISCARD_MAX.  */
        bool now = st->handler_done && st->received + st->discarded > st->limit + DISCARD_MAX;
        pthread_mutex_unlock(&p->mu);
        return now ? send_response(s, st, &st->res) : MHD_YES;
    }
    if (!p->eof) {
        p->eof = true;
        pthread_cond_broadcast(&p->cv);
    }
    while (!st->handler_done) {
        if (pipe_suspend(p)) {
            pthread_mutex_unlock(&p->mu);
            return MHD_YES;
        }
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    st->len = st->received;
    return send_response(s, st, &st->res);
}

/* The connection is finished (answered, or the client went away): the
 * handler, if still reading, gets ECONNABORTED.  */
static void stream_completed(request_state_t *st)
{
    http_pipe_t *p = st->body_pipe;
    pthread_mutex_lock(&p->mu);
    if (!p->eof && !p->error)
        p->error = ECONNABORTED;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    http_server_t *s = cls;
    request_state_t *st = *con_cls;
    if (!st) {
        st = request_begin(s, conn, url, method);
        *con_cls = st;
        if (!s->cfg.authenticated || s->cfg.authenticated(s->ctx, &st->req))
            head_complete(s, st->conn);
        else if (st->limit > s->cfg.max_body)
            st->limit = s->cfg.max_body; /* a route's larger limit is for known clients */
        if (s->client_ca && verify_client_cert(st) < 0)
            return reply_error_now(s, st, 403, "ClientCertificateRequired",
                                   "a client certificate signed by the trusted CA is required");
        if (framing_ambiguous(conn, version))
            return reply_and_close(s, st, 400, "InvalidRequest",
                                   "the request's length is ambiguous: Content-Length with "
                                   "Transfer-Encoding, either twice, a Transfer-Encoding other "
                                   "than chunked, or whitespace in a header name");
        if (url_has_nul_escape(conn, url))
            return reply_error_now(s, st, 400, "InvalidUrl",
                                   "NUL characters (%00) are not allowed in URLs");
        body_verdict_t v = content_length_verdict(st);
        if (v == BODY_REFUSE)
            return reply_error_now(s, st, 413, "RequestEntityTooLarge",
                                   "the request body is larger than allowed");
        st->too_large = v == BODY_DRAIN; /* answered once the body is in */
        if (v == BODY_FITS && s->cfg.stream_body && s->cfg.stream_body(s->ctx, &st->req))
            return stream_start(s, st);
        return MHD_YES;
    }
    if (st->streaming)
        return stream_access(s, st, upload_data, upload_data_size);
    if (*upload_data_size > 0) {
        body_append(st, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (st->too_large && st->discarded > DISCARD_MAX)
            return reply_error_now(s, st, 413, "RequestEntityTooLarge",
                                   "the request body is larger than allowed");
        return MHD_YES;
    }
    head_complete(s, st->conn);
    if (st->too_large)
        return reply_error_now(s, st, 413, "RequestEntityTooLarge",
                               "the request body is larger than allowed");
    if (st->apart) /* resumed: the thread has filled st->res */
        return send_response(s, st, &st->res);
    if (!st->body)
        st->body = xcalloc(1, 1);
    st->body[st->len] = '\0';
    st->req.body = st->body;
    st->req.body_len = st->len;
    if (s->cfg.run_apart && s->cfg.run_apart(s->ctx, &st->req)) {
        /* A slow request never runs on an event thread, where it would
         * hold up every connection that thread serves.  */
        admission_t a = admit(s, st);
        if (a != ADMITTED)
            return reply_not_admitted(s, st, a, false);
        if (s->cfg.thread_pool && run_apart(s, st) < 0)
            return reply_retry_later(s, st, 503, "ServiceUnavailable",
                                     "the server is stopping or out of threads", true);
        if (s->cfg.thread_pool)
            return MHD_YES;
        /* A thread per connection: this is the connection's own.  */
    }

    http_response_t res = {0};
    s->handler(s->ctx, &st->req, &res);
    enum MHD_Result r = send_response(s, st, &res);
    response_done(&res);
    return r;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    request_state_t *st = *con_cls;
    if (!st)
        return;
    *con_cls = NULL;
    http_server_t *s = cls;
    /* A connection kept alive waits for its next request head now (its
     * state is the connection's: done with here, whoever frees st).  */
    if (st->conn) {
        pthread_mutex_lock(&s->conn_lock);
        st->conn->stream = false;
        if (!st->upgraded) /* an upgraded connection never has another request */
            heads_append(s, st->conn);
        pthread_mutex_unlock(&s->conn_lock);
        st->conn = NULL;
    }
    if (st->streaming)
        stream_completed(st);
    request_unref(st);
}

static void request_free(request_state_t *st)
{
    /* A request run apart counts until libmicrohttpd has taken its
     * connection back and finished it (and, streamed, until its handler's
     * thread is done too): stopping the daemon while one is still
     * suspended (or only marked for resumption) aborts.  Its admission
     * lasts as long.  */
    http_server_t *s = st->server;
    if (st->apart || st->slot) {
        pthread_mutex_lock(&s->apart_lock);
        if (st->body_pipe)
            pipes_unlink(s, st->body_pipe);
        if (st->apart) {
            s->apart_running--;
            pthread_cond_broadcast(&s->apart_done);
        }
        if (st->slot)
            release(s, st->slot);
        pthread_mutex_unlock(&s->apart_lock);
    }
    response_done(&st->res);
    ws_offer_free(st->ws_offer);
    if (st->body_pipe)
        pipe_unref(st->body_pipe);
    free(st->body);
    free(st->method);
    free(st->path);
    free(st->cert_subject);
    free(st);
}

/* ---- daemon ---- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss, sbx_error_t *err)
{
    _cleanup_free_ char *copy = xstrdup(listen);
    char *colon = strrchr(copy, ':');
    if (!colon)
        return sbx_error_set(err, SBX_ERR_INVALID, "listen address '%s' is not host:port", listen);
    *colon = '\0';
    const char *host = copy, *port = colon + 1;
    if (host[0] == '[') { /* [::1]:8080 */
        host++;
        char *close_br = strchr(copy, ']');
        if (close_br)
            *close_br = '\0';
    }
    /* getaddrinfo takes "99999" and wraps it to a 16-bit port silently.  */
    char *end;
    errno = 0;
    unsigned long pnum = strtoul(port, &end, 10);
    if (!*port || *end || errno || pnum > 65535 || !(*port >= '0' && *port <= '9'))
        return sbx_error_set(err, SBX_ERR_INVALID, "listen address '%s': bad port", listen);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
    if (rc != 0 || !ai)
        return sbx_error_set(err, SBX_ERR_INVALID, "listen address '%s': %s", listen,
                             gai_strerror(rc));
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return 0;
}

bool http_host_is_loopback(const char *host)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        if (n - 2 >= sizeof(buf))
            return false;
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    /* inet_pton takes only the dotted quad: "127.1", "0x7f.0.0.1" and
     * "127.0.0.1.evil.com" are names, not addresses.  */
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

bool http_listen_is_loopback(const char *listen)
{
    _cleanup_free_ char *host = xstrdup(listen);
    char *colon = strrchr(host, ':');
    if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return false;
    *colon = '\0';
    /* An IPv6 address needs its brackets here, or its last group would
     * have been taken for the port.  */
    if (host[0] != '[' && strchr(host, ':'))
        return false;
    if (host[0] == '[' && host[strlen(host) - 1] != ']')
        return false;
    return http_host_is_loopback(host);
}

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

/* Percent-decoding of paths and query values, as MHD's own except that
 * "%00" stays as it is: decoded, the NUL would silently cut the string, so
 * ".../sandboxGroups/a%00b" would act on "a".  Left literal, it makes the
 * name invalid instead.  */
static size_t unescape_keep_nul(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        int hi, lo;
        if (r[0] == '%' && (hi = hex_value(r[1])) >= 0 && (lo = hex_value(r[2])) >= 0 &&
            (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    sbx_log(SBX_LOG_DEBUG, "http", "%s", msg);
}

/* Every connection is a file descriptor: the soft limit goes up to the
 * hard one, and the connection limit down to what that leaves after room
 * for the process's other files (each request in flight may hold a socket
 * of its own to a host, and a file or two).  */
static void limits_init(http_server_t *s)
{
    http_config_t *c = &s->cfg;
    if (!c->max_in_flight)
        c->max_in_flight = DEFAULT_MAX_IN_FLIGHT;
    if (!c->max_in_flight_per_client)
        c->max_in_flight_per_client = DEFAULT_MAX_IN_FLIGHT_PER_CLIENT;
    if (!c->max_connections)
        c->max_connections = DEFAULT_MAX_CONNECTIONS;
    if (!c->header_timeout_ms)
        c->header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        rlim_t reserve = 256 + (c->run_apart ? 2 * (rlim_t)c->max_in_flight : 0);
        rlim_t room = rl.rlim_cur > 2 * reserve ? rl.rlim_cur - reserve : rl.rlim_cur / 2;
        if (rl.rlim_cur != RLIM_INFINITY && c->max_connections > room) {
            sbx_log(SBX_LOG_WARN, "http",
                    "%s: %u connections need more files than RLIMIT_NOFILE (%llu) allows; "
                    "serving at most %llu",
                    c->name ? c->name : "http", c->max_connections, (unsigned long long)rl.rlim_cur,
                    (unsigned long long)room);
            c->max_connections = (unsigned)room;
        }
    }
    /* Shedding starts a sixteenth below the limit, so there is room to
     * accept the connection that makes it happen.  */
    s->shed_at = c->max_connections - c->max_connections / 16;
}

http_server_t *http_server_start(const http_config_t *cfg, http_handler_fn handler, void *ctx,
                                 sbx_error_t *err)
{
    struct sockaddr_storage ss = {0};
    if (parse_listen(cfg->listen, &ss, err) < 0)
        return NULL;
    http_server_t *s = xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    if (!s->cfg.max_body)
        s->cfg.max_body = DEFAULT_MAX_BODY;
    s->handler = handler;
    s->ctx = ctx;
    limits_init(s);

    pthread_mutex_init(&s->apart_lock, NULL);
    pthread_cond_init(&s->apart_done, NULL);
    pthread_mutex_init(&s->conn_lock, NULL);
    pthread_cond_init(&s->conn_wake, NULL);
    if (pthread_create(&s->sweeper, NULL, sweeper_main, s) != 0) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "cannot start a thread");
        http_server_stop(s);
        return NULL;
    }
    s->sweeper_running = true;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
    if (cfg->thread_pool)
        flags |= MHD_ALLOW_SUSPEND_RESUME; /* run apart, and streams */
    flags |= cfg->thread_pool ? MHD_USE_EPOLL : (MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL);
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[20];
    size_t n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
    /* An idle connection (a slow client before its request is in) is closed
     * after 30 s; a request being handled is not idle.  */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 30, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s};
    if (cfg->max_connections_per_address)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                            cfg->max_connections_per_address, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_UNESCAPE_CALLBACK, (intptr_t)unescape_keep_nul, NULL};
    if (cfg->thread_pool)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, cfg->thread_pool, NULL};
    if (cfg->tls_cert_pem) {
        flags |= MHD_USE_TLS;
        s->tls_cert = xstrdup(cfg->tls_cert_pem);
        s->tls_key = xstrdup(cfg->tls_key_pem ? cfg->tls_key_pem : "");
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
        if (cfg->client_ca_pem) {
            s->client_ca = xstrdup(cfg->client_ca_pem);
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, s->client_ca};
        }
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, s, MHD_OPTION_ARRAY, opts,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "cannot listen on %s", cfg->listen);
        http_server_stop(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : 0;
    return s;
}

int http_server_port(const http_server_t *s)
{
    return s->port;
}

void http_server_stop(http_server_t *s)
{
    if (!s)
        return;
    if (s->daemon) {
        /* Quiescing hands the listening socket over to us: closed only
         * after MHD_stop_daemon (its threads may still look at it), and
         * closed, or the port stays bound with connections queueing that
         * nobody will ever answer.  */
        MHD_socket listen_fd = MHD_quiesce_daemon(s->daemon);
        /* Requests on threads of their own finish and are answered first.  */
        pthread_mutex_lock(&s->apart_lock);
        s->stopping = true;
        pthread_mutex_unlock(&s->apart_lock);
        /* Streams are cut rather than waited for: their pace is their
         * client's, which may never finish.  */
        pipes_stop(s);
        streams_close(s);
        pthread_mutex_lock(&s->apart_lock);
        while (s->apart_running > 0 || s->ws_running > 0)
            pthread_cond_wait(&s->apart_done, &s->apart_lock);
        pthread_mutex_unlock(&s->apart_lock);
        MHD_stop_daemon(s->daemon);
        if (listen_fd != MHD_INVALID_SOCKET)
            close(listen_fd);
    }
    if (s->sweeper_running) {
        pthread_mutex_lock(&s->conn_lock);
        s->sweeper_stop = true;
        pthread_cond_signal(&s->conn_wake);
        pthread_mutex_unlock(&s->conn_lock);
        pthread_join(s->sweeper, NULL);
    }
    pthread_mutex_destroy(&s->apart_lock);
    pthread_cond_destroy(&s->apart_done);
    pthread_mutex_destroy(&s->conn_lock);
    pthread_cond_destroy(&s->conn_wake);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->client_ca);
    free(s);
}
