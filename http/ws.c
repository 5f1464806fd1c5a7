/* ws.c -- WebSocket (RFC 6455) for the HTTP front end: the opening
 * handshake, and frames over a connection libmicrohttpd has handed over
 * (http.c does the handing over): client frames must be masked, messages
 * are bounded, pings are answered, and any protocol error ends in a close
 * frame with the matching status code.  */
#include "http/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* Once a frame has begun, the rest of it must arrive within this.  */
#define FRAME_MS 10000

struct http_ws {
    int sock;
    pthread_mutex_t send_mu;
    bool close_sent, failed;
    unsigned close_code; /* the client's, once its close frame came */
    char *rbuf;
    size_t rpos, rlen, rcap;
    char *msg;
    size_t msg_len, max_message;
    int msg_op;      /* opcode of the message being put together */
    bool assembling; /* inside a fragmented message */
    int64_t last_heard_ms;
};

/* ---- the handshake ---- */

/* Whether the comma-separated header value lists token (any case).  */
static bool header_has_token(const char *v, const char *token)
{
    size_t n = strlen(token);
    while (v && *v) {
        v += strspn(v, " \t,");
        size_t len = strcspn(v, ",");
        size_t end = len;
        while (end > 0 && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end == n && strncasecmp(v, token, n) == 0)
            return true;
        v += len;
    }
    return false;
}

bool http_ws_requested(const http_request_t *req)
{
    return header_has_token(http_header(req, "Upgrade"), "websocket");
}

static void base64_encode(const unsigned char *d, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) |
                     (i + 2 < n ? d[i + 2] : 0);
        *out++ = tab[v >> 18 & 63];
        *out++ = tab[v >> 12 & 63];
        *out++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *out++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *out = '\0';
}

/* A key is the base64 of 16 bytes: 22 characters and "==".  */
static bool key_valid(const char *k)
{
    if (!k || strlen(k) != 24 || strcmp(k + 22, "==") != 0)
        return false;
    for (int i = 0; i < 22; i++) {
        char c = k[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    return true;
}

bool http_ws_handshake_ok(const http_request_t *req, http_response_t *res)
{
    if (strcmp(req->method, "GET") != 0) {
        http_reply_error(res, 400, "InvalidWebSocketRequest", "a WebSocket opens with a GET");
        return false;
    }
    if (!header_has_token(http_header(req, "Connection"), "upgrade")) {
        http_reply_error(res, 400, "InvalidWebSocketRequest",
                         "a WebSocket request needs Connection: Upgrade");
        return false;
    }
    const char *version = http_header(req, "Sec-WebSocket-Version");
    if (!version || strcmp(version, "13") != 0) {
        http_reply_error(res, 426, "UnsupportedWebSocketVersion",
                         "only WebSocket version 13 (RFC 6455) is spoken here");
        http_add_header(res, "Sec-WebSocket-Version", "13");
        return false;
    }
    if (!key_valid(http_header(req, "Sec-WebSocket-Key"))) {
        http_reply_error(res, 400, "InvalidWebSocketRequest",
                         "Sec-WebSocket-Key must be the base64 of 16 bytes");
        return false;
    }
    return true;
}

void http_reply_websocket(const http_request_t *req, http_response_t *res,
                          http_ws_session_fn session, void (*free_fn)(void *ud), void *ud)
{
    const char *key = http_header(req, "Sec-WebSocket-Key");
    assert(key_valid(key));
    char joined[64];
    unsigned char digest[20];
    snprintf(joined, sizeof(joined), "%s%s", key, WS_GUID);
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, joined, strlen(joined), digest) < 0) {
        if (free_fn)
            free_fn(ud);
        return http_reply_error(res, 500, "InternalServerError", "cannot hash the key");
    }
    http_reply_empty(res, 101);
    http_ws_offer_t *o = xcalloc(1, sizeof(*o));
    o->session = session;
    o->free_fn = free_fn;
    o->ud = ud;
    base64_encode(digest, sizeof(digest), o->accept);
    ws_offer_free(res->ws);
    res->ws = o;
}

void ws_offer_free(http_ws_offer_t *o)
{
    if (!o)
        return;
    if (o->free_fn)
        o->free_fn(o->ud);
    free(o);
}

/* ---- the connection ---- */

http_ws_t *ws_new(int sock, const char *extra, size_t extra_len, size_t max_message)
{
    http_ws_t *ws = xcalloc(1, sizeof(*ws));
    ws->sock = sock;
    pthread_mutex_init(&ws->send_mu, NULL);
    ws->max_message = max_message;
    ws->rcap = 4096 > extra_len ? 4096 : extra_len;
    ws->rbuf = xmalloc(ws->rcap);
    memcpy(ws->rbuf, extra, extra_len);
    ws->rlen = extra_len;
    ws->last_heard_ms = sbx_monotonic_ms();
    /* Sends block while the client is behind: that is the back-pressure.  */
    int fl = fcntl(sock, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK))
        fcntl(sock, F_SETFL, fl & ~O_NONBLOCK);
    return ws;
}

void ws_free(http_ws_t *ws)
{
    if (!ws)
        return;
    pthread_mutex_destroy(&ws->send_mu);
    free(ws->rbuf);
    free(ws->msg);
    free(ws);
}

void http_ws_cut(http_ws_t *ws)
{
    shutdown(ws->sock, SHUT_RDWR);
}

int64_t http_ws_last_heard_ms(const http_ws_t *ws)
{
    return ws->last_heard_ms;
}

unsigned http_ws_close_code(const http_ws_t *ws)
{
    return ws->close_code;
}

/* ---- sending ---- */

static int send_all(int sock, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t k = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

/* One unfragmented frame of a then b; under send_mu.  */
static int send_frame(http_ws_t *ws, int op, const void *a, size_t na, const void *b, size_t nb)
{
    unsigned char h[10];
    size_t hl = 2;
    uint64_t n = na + nb;
    h[0] = (unsigned char)(0x80 | op);
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)(n >> (56 - 8 * i));
        hl = 10;
    }
    struct iovec iov[3] = {{h, hl}, {(void *)a, na}, {(void *)b, nb}};
    return send_all(ws->sock, iov, 3);
}

int http_ws_send(http_ws_t *ws, int opcode, const void *a, size_t na, const void *b, size_t nb)
{
    pthread_mutex_lock(&ws->send_mu);
    int rc = ws->close_sent ? -1 : send_frame(ws, opcode, a, na, b, nb);
    pthread_mutex_unlock(&ws->send_mu);
    return rc;
}

void http_ws_close(http_ws_t *ws, unsigned code, const char *reason)
{
    unsigned char payload[125];
    size_t rn = reason ? strlen(reason) : 0;
    if (rn > sizeof(payload) - 2)
        rn = sizeof(payload) - 2;
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason ? reason : "", rn);
    pthread_mutex_lock(&ws->send_mu);
    if (!ws->close_sent) {
        ws->close_sent = true;
        (void)send_frame(ws, HTTP_WS_CLOSE, payload, code ? rn + 2 : 0, NULL, 0);
    }
    pthread_mutex_unlock(&ws->send_mu);
}

/* ---- receiving ---- */

static bool utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (i + k >= n)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            c = c << 6 | (s[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

/* A protocol error: say why in a close frame, and stop reading.  */
static int fail(http_ws_t *ws, unsigned code, const char *why)
{
    ws->failed = true;
    http_ws_close(ws, code, why);
    shutdown(ws->sock, SHUT_RD);
    return -1;
}

static int remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - sbx_monotonic_ms();
    return left > 0 ? (int)left : 0;
}

/* Until n unread bytes are buffered: 1, 0 when the deadline passed, -1
 * when the connection ended.  */
static int fill(http_ws_t *ws, size_t n, int64_t deadline)
{
    if (ws->rlen - ws->rpos >= n)
        return 1;
    if (ws->rpos) {
        memmove(ws->rbuf, ws->rbuf + ws->rpos, ws->rlen - ws->rpos);
        ws->rlen -= ws->rpos;
        ws->rpos = 0;
    }
    if (n > ws->rcap) {
        ws->rcap = n > 2 * ws->rcap ? n : 2 * ws->rcap;
        ws->rbuf = xrealloc(ws->rbuf, ws->rcap);
    }
    while (ws->rlen < n) {
        struct pollfd pfd = {.fd = ws->sock, .events = POLLIN};
        int r = poll(&pfd, 1, remaining(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return 0;
        if (r < 0)
            return -1;
        ssize_t k = recv(ws->sock, ws->rbuf + ws->rlen, ws->rcap - ws->rlen, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k <= 0)
            return -1;
        ws->rlen += (size_t)k;
    }
    return 1;
}

static bool close_code_valid(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
}

/* The client's close frame: answered with its code, and the end.  */
static int on_close(http_ws_t *ws, const unsigned char *p, size_t n)
{
    if (n == 1)
        return fail(ws, 1002, "a close frame's payload is a code of two bytes and a reason");
    unsigned code = n >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
    if (n >= 2 && !close_code_valid(code))
        return fail(ws, 1002, "invalid close code");
    if (n > 2 && !utf8_valid(p + 2, n - 2))
        return fail(ws, 1007, "a close reason must be UTF-8");
    ws->close_code = code;
    http_ws_close(ws, code == 1005 ? 1000 : code, NULL);
    return -1;
}

/* One frame's header is buffered at rpos: its lengths, or -1 after a
 * protocol error.  */
static int frame_head(http_ws_t *ws, size_t *head, uint64_t *len)
{
    const unsigned char *b = (const unsigned char *)ws->rbuf + ws->rpos;
    int op = b[0] & 0x0f;
    if (b[0] & 0x70)
        return fail(ws, 1002, "reserved bits set (no extension was agreed)");
    if (!(b[1] & 0x80))
        return fail(ws, 1002, "frames from a client must be masked");
    if (op > 10 || (op > 2 && op < 8))
        return fail(ws, 1002, "unknown opcode");
    unsigned l7 = b[1] & 0x7f;
    *head = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
    if (fill(ws, *head, sbx_monotonic_ms() + FRAME_MS) <= 0)
        return fail(ws, 1002, "incomplete frame");
    b = (const unsigned char *)ws->rbuf + ws->rpos;
    uint64_t n = l7;
    if (l7 == 126)
        n = (uint64_t)b[2] << 8 | b[3];
    else if (l7 == 127)
        for (int i = 0; i < 8; i++)
            n = (i ? n << 8 : 0) | b[2 + i];
    if (l7 == 127 && (b[2] & 0x80))
        return fail(ws, 1002, "frame length out of range");
    if (op >= 8 && (n > 125 || !(b[0] & 0x80)))
        return fail(ws, 1002, "control frames must be whole and at most 125 bytes");
    if (op < 8 && n > ws->max_message - ws->msg_len)
        return fail(ws, 1009, "message too large");
    if (op == 0 && !ws->assembling)
        return fail(ws, 1002, "a continuation frame without a message");
    if ((op == 1 || op == 2) && ws->assembling)
        return fail(ws, 1002, "a new message inside a fragmented one");
    *len = n;
    return 0;
}

int http_ws_recv(http_ws_t *ws, const char **data, size_t *len, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : sbx_monotonic_ms() + timeout_ms;
    if (!ws->assembling)
        ws->msg_len = 0;
    for (;;) {
        if (ws->failed || ws->close_code)
            return -1;
        int r = fill(ws, 2, deadline);
        if (r <= 0)
            return r;
        size_t head;
        uint64_t n;
        if (frame_head(ws, &head, &n) < 0)
            return -1;
        if (fill(ws, head + (size_t)n, sbx_monotonic_ms() + FRAME_MS) <= 0)
            return fail(ws, 1002, "incomplete frame");
        unsigned char *b = (unsigned char *)ws->rbuf + ws->rpos;
        unsigned char *payload = b + head, *mask = b + head - 4;
        for (size_t i = 0; i < n; i++)
            payload[i] ^= mask[i & 3];
        int op = b[0] & 0x0f;
        bool fin = b[0] & 0x80;
        ws->rpos += head + (size_t)n;
        ws->last_heard_ms = sbx_monotonic_ms();
        if (op == HTTP_WS_CLOSE)
            return on_close(ws, payload, (size_t)n);
        if (op == HTTP_WS_PING) {
            (void)http_ws_send(ws, HTTP_WS_PONG, payload, (size_t)n, NULL, 0);
            continue;
        }
        if (op == HTTP_WS_PONG)
            continue;
        if (op != 0)
            ws->msg_op = op;
        ws->msg = xrealloc(ws->msg, ws->msg_len + (size_t)n + 1);
        memcpy(ws->msg + ws->msg_len, payload, (size_t)n);
        ws->msg_len += (size_t)n;
        ws->msg[ws->msg_len] = '\0';
        ws->assembling = !fin;
        if (!fin)
            continue;
        if (ws->msg_op == HTTP_WS_TEXT && !utf8_valid((const unsigned char *)ws->msg, ws->msg_len))
            return fail(ws, 1007, "a text message must be UTF-8");
        *data = ws->msg;
        *len = ws->msg_len;
        return ws->msg_op;
    }
}
