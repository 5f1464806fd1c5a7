/* imds_server.c -- the identity endpoint's listener: sandboxes given an
 * identity reach it at 169.254.169.254:80 through their own link (the
 * agent's nft table redirects them here and drops everything else bound
 * for its port).  A request is known by the two ends of its connection,
 * never by anything the sandbox sends: the peer must be a sandbox's
 * address and the local end that same sandbox's host end.  imds.c then
 * checks the request and asks sandboxd for the token.  */
#include "agent/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define MODULE "imds"
#define MAX_HEAD 8192
#define MAX_CONNS 64
#define READ_TIMEOUT_S 5
#define KEY_LEN 32

struct agent_imds_server {
    agent_imds_server_config_t cfg;
    char *url, *token_file, *ca_file;
    unsigned char key[KEY_LEN]; /* IDENTITY_HEADER = HMAC(key, sandbox id) */
    egress_t *egress;
    int fd, stop_pipe[2];
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    unsigned conns;
};

typedef struct conn {
    agent_imds_server_t *srv;
    int fd;
} conn_t;

/* The key of the IDENTITY_HEADER values, made once, 0600 in the data dir:
 * a sandbox's header stays the same across agent restarts.  */
static int key_load(agent_imds_server_t *s, const char *data_dir, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/imds.key", data_dir), *text = NULL;
    size_t len = 0;
    if (sbx_read_file(path, &text, &len, NULL) == 0 && len == KEY_LEN) {
        memcpy(s->key, text, KEY_LEN);
        OPENSSL_cleanse(text, len);
        return 0;
    }
    if (RAND_bytes(s->key, KEY_LEN) != 1)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "no random bytes for %s", path);
    return sbx_write_file_atomic(path, (const char *)s->key, KEY_LEN, 0600, err);
}

void agent_imds_server_header(const agent_imds_server_t *s, const char *id, char out[33])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    HMAC(EVP_sha256(), s->key, KEY_LEN, (const unsigned char *)id, strlen(id), mac, &n);
    for (unsigned i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static void reply(int fd, int status, const char *body)
{
    const char *reason = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 401 ? "Unauthorized"
                         : status == 403 ? "Forbidden"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 431 ? "Request Header Fields Too Large"
                                         : "Service Unavailable";
    _cleanup_free_ char *msg = xasprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json; "
                                         "charset=utf-8\r\nContent-Length: %zu\r\nConnection: "
                                         "close\r\n\r\n%s",
                                         status, reason, strlen(body), body);
    size_t off = 0, len = strlen(msg);
    while (off < len) {
        ssize_t w = send(fd, msg + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    OPENSSL_cleanse(msg, len);
}

static void reply_error(int fd, int status, const char *desc)
{
    json_t *j =
        json_pack("{s:s,s:s}", "error", status == 503 ? "service_unavailable" : "invalid_request",
                  "error_description", desc);
    _cleanup_free_ char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    reply(fd, status, body);
}

/* The request head, up to its blank line: its length, 0 when the peer
 * closed or stalled, -1 when it is longer than MAX_HEAD.  */
static ssize_t read_head(int fd, char *buf)
{
    size_t n = 0;
    while (n < MAX_HEAD) {
        ssize_t r = recv(fd, buf + n, MAX_HEAD - n, 0);
        if (r <= 0)
            return 0;
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            return (ssize_t)n;
    }
    return -1;
}

/* A header's value (first occurrence, spaces trimmed) in place, or NULL.  */
static const char *header(char *lines, const char *name)
{
    size_t nl = strlen(name);
    for (char *l = lines; l && *l;) {
        char *end = strstr(l, "\r\n");
        if (end == l)
            break; /* the blank line: the head ends */
        if (end)
            *end = '\0';
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            char *v = l + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t vl = strlen(v);
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                v[--vl] = '\0';
            if (end)
                *end = '\r';
            return v;
        }
        if (end)
            *end = '\r';
        l = end ? end + 2 : NULL;
    }
    return NULL;
}

static char *header_dup(const char *lines, const char *name)
{
    _cleanup_free_ char *copy = xstrdup(lines);
    const char *v = header(copy, name);
    if (!v)
        return NULL;
    size_t n = strcspn(v, "\r");
    return xstrndup(v, n);
}

/* Which sandbox asked: the connection's two ends, nothing it sent.  */
static bool who(agent_imds_server_t *s, int fd, char *id, size_t len)
{
    struct sockaddr_in peer, local;
    socklen_t pl = sizeof peer, ll = sizeof local;
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 ||
        getsockname(fd, (struct sockaddr *)&local, &ll) < 0 || peer.sin_family != AF_INET ||
        local.sin_family != AF_INET)
        return false;
    pthread_mutex_lock(&s->mu);
    egress_t *eg = s->egress;
    pthread_mutex_unlock(&s->mu);
    return eg && egress_identity_of(eg, peer.sin_addr, local.sin_addr, id, len) == 1;
}

static void serve(agent_imds_server_t *s, int fd)
{
    char id[64];
    if (!who(s, fd, id, sizeof id))
        return reply_error(fd, 403, "This address has no identity here.");
    char *buf = xmalloc(MAX_HEAD + 1);
    ssize_t n = read_head(fd, buf);
    if (n <= 0) {
        if (n < 0) {
            reply_error(fd, 431, "The request line and headers are longer than 8 KiB.");
            /* read on a little, so closing with unread bytes does not reset
             * the connection before the client reads the answer */
            shutdown(fd, SHUT_WR);
            struct timeval tv = {.tv_sec = 1};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            for (size_t drained = 0; drained < (1u << 20);) {
                ssize_t r = recv(fd, buf, MAX_HEAD, 0);
                if (r <= 0)
                    break;
                drained += (size_t)r;
            }
        }
        free(buf);
        return;
    }
    char *eol = strstr(buf, "\r\n");
    *eol = '\0';
    char method[16], target[MAX_HEAD], version[16];
    bool ok = sscanf(buf, "%15s %8191s %15s", method, target, version) == 3 &&
              strncmp(version, "HTTP/1.", 7) == 0;
    char *lines = eol + 2;
    if (!ok) {
        free(buf);
        return reply_error(fd, 400, "The request line is not HTTP/1.x.");
    }
    char *q = strchr(target, '?');
    if (q)
        *q++ = '\0';
    _cleanup_free_ char *metadata = header_dup(lines, "Metadata");
    _cleanup_free_ char *ih = header_dup(lines, "X-IDENTITY-HEADER");
    free(buf);
    _cleanup_free_ char *token = NULL;
    size_t tl = 0;
    if (sbx_read_file(s->token_file, &token, &tl, NULL) < 0)
        return reply_error(fd, 503, "The agent has no credentials for sandboxd.");
    token[strcspn(token, "\r\n")] = '\0';
    agent_imds_t m = {.sandboxd_url = s->url, .host_token = token, .ca_file = s->ca_file};
    agent_imds_request_t rq = {
        .method = method, .path = target, .query = q, .metadata = metadata, .identity_header = ih};
    char secret[33];
    agent_imds_server_header(s, id, secret);
    char *body = NULL;
    int st = agent_imds_answer(&m, id, secret, &rq, &body);
    OPENSSL_cleanse(token, tl);
    OPENSSL_cleanse(secret, sizeof secret);
    if (st != 200)
        sbx_log(SBX_LOG_INFO, MODULE, "sandbox %s: identity request %s %s: %d", id, method, target,
                st);
    reply(fd, st, body ? body : "{}");
    if (body)
        OPENSSL_cleanse(body, strlen(body));
    free(body);
}

static void *conn_main(void *arg)
{
    conn_t *c = arg;
    agent_imds_server_t *s = c->srv;
    struct timeval tv = {.tv_sec = READ_TIMEOUT_S};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    serve(s, c->fd);
    close(c->fd);
    free(c);
    pthread_mutex_lock(&s->mu);
    if (--s->conns == 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void *accept_main(void *arg)
{
    agent_imds_server_t *s = arg;
    struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
                          {.fd = s->stop_pipe[0], .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&s->mu);
        bool room = s->conns < MAX_CONNS;
        if (room)
            s->conns++;
        pthread_mutex_unlock(&s->mu);
        if (!room) {
            reply_error(fd, 503, "Too many identity requests at once; try again.");
            close(fd);
            continue;
        }
        conn_t *c = xcalloc(1, sizeof *c);
        *c = (conn_t){s, fd};
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        pthread_t t;
        if (pthread_create(&t, &at, conn_main, c) != 0) {
            close(fd);
            free(c);
            pthread_mutex_lock(&s->mu);
            s->conns--;
            pthread_mutex_unlock(&s->mu);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

static int listen_any(agent_imds_server_t *s, uint16_t *port, sbx_error_t *err)
{
    /* every IPv4 address: the redirect lands on whichever host end the
     * sandbox's link has; the nft table drops this port from anywhere
     * else */
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t len = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(s->fd, 128) < 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &len) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "identity endpoint listener");
    *port = ntohs(a.sin_port);
    return 0;
}

agent_imds_server_t *agent_imds_server_start(const agent_imds_server_config_t *cfg, uint16_t *port,
                                             sbx_error_t *err)
{
    agent_imds_server_t *s = xcalloc(1, sizeof *s);
    s->fd = s->stop_pipe[0] = s->stop_pipe[1] = -1;
    s->url = xstrdup(cfg->sandboxd_url);
    s->token_file = xstrdup(cfg->token_file);
    s->ca_file = cfg->ca_file ? xstrdup(cfg->ca_file) : NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    if (key_load(s, cfg->data_dir, err) < 0 || listen_any(s, port, err) < 0 ||
        pipe2(s->stop_pipe, O_CLOEXEC) < 0 ||
        pthread_create(&s->thread, NULL, accept_main, s) != 0) {
        if (!err || !err->msg[0])
            sbx_error_errno(err, SBX_ERR_INTERNAL, "identity endpoint");
        agent_imds_server_stop(s);
        return NULL;
    }
    s->started = true;
    return s;
}

void agent_imds_server_set_egress(agent_imds_server_t *s, egress_t *eg)
{
    pthread_mutex_lock(&s->mu);
    s->egress = eg;
    pthread_mutex_unlock(&s->mu);
}

void agent_imds_server_stop(agent_imds_server_t *s)
{
    if (!s)
        return;
    if (s->started) {
        (void)!write(s->stop_pipe[1], "x", 1);
        pthread_join(s->thread, NULL);
    }
    /* requests under way end within their sandboxd timeout */
    pthread_mutex_lock(&s->mu);
    while (s->conns > 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < 2; i++)
        if (s->stop_pipe[i] >= 0)
            close(s->stop_pipe[i]);
    if (s->fd >= 0)
        close(s->fd);
    OPENSSL_cleanse(s->key, sizeof s->key);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->idle);
    free(s->url);
    free(s->token_file);
    free(s->ca_file);
    free(s);
}
