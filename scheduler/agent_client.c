/* agent_client.c -- HTTPS calls to host agents with our client certificate,
 * over a small pool of libcurl handles so connections stay open between
 * calls; file uploads and downloads stream through without being held.  */
#include "scheduler/internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>

#define MAX_REPLY (80u << 20)

static CURL *handle_get(sched_t *s)
{
    pthread_mutex_lock(&s->lock);
    CURL *c = s->n_curl ? s->curl_pool[--s->n_curl] : NULL;
    pthread_mutex_unlock(&s->lock);
    return c ? c : curl_easy_init();
}

static void handle_put(sched_t *s, CURL *c)
{
    curl_easy_reset(c);
    pthread_mutex_lock(&s->lock);
    if (s->n_curl == s->cap_curl)
        s->curl_pool = xrealloc(s->curl_pool,
                                (s->cap_curl = s->cap_curl ? s->cap_curl * 2 : 8) * sizeof(void *));
    s->curl_pool[s->n_curl++] = c;
    pthread_mutex_unlock(&s->lock);
}

void sched_reply_done(sched_reply_t *r)
{
    free(r->body);
    free(r->content_type);
    memset(r, 0, sizeof(*r));
}

json_t *sched_reply_json(const sched_reply_t *r)
{
    return r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
}

/* Whether shutdown has cut off calls still running.  */
static bool calls_cut(sched_t *s)
{
    int64_t end = __atomic_load_n(&s->calls_end_ms, __ATOMIC_RELAXED);
    return end && sbx_monotonic_ms() >= end;
}

/* libcurl asks about once a second, also while a reply is awaited.  */
static int on_call_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow)
{
    return calls_cut(ud) ? 1 : 0;
}

/* The options every call shares.  */
static void call_setup(sched_t *s, CURL *c, const char *url, const char *method,
                       struct curl_slist *hdrs)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_call_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
    if (s->cfg.ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, s->cfg.ca_file);
    if (s->cfg.cert_file)
        curl_easy_setopt(c, CURLOPT_SSLCERT, s->cfg.cert_file);
    if (s->cfg.key_file)
        curl_easy_setopt(c, CURLOPT_SSLKEY, s->cfg.key_file);
}

static char *call_url(const char *base_url, const char *path, const char *query)
{
    return query && *query ? xasprintf("%s%s?%s", base_url, path, query)
                           : xasprintf("%s%s", base_url, path);
}

/* Status and content type of a finished call into out; the body from sink.  */
static int call_finish(sched_t *s, CURL *c, CURLcode rc, sbx_sink_t *sink, sched_reply_t *out)
{
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        char *ctype = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
        out->content_type = ctype ? xstrdup(ctype) : NULL;
    } else if (rc == CURLE_ABORTED_BY_CALLBACK && calls_cut(s)) {
        out->shutdown = true;
        snprintf(out->error, sizeof(out->error), "sandboxd is shutting down");
    } else {
        snprintf(out->error, sizeof(out->error), "%s",
                 sink->overflow ? "reply too large" : curl_easy_strerror(rc));
    }
    out->body = sink->data ? sink->data : xstrdup("");
    out->body_len = sink->len;
    if (rc == CURLE_OK)
        handle_put(s, c);
    else
        curl_easy_cleanup(c); /* its connection may be broken */
    return rc == CURLE_OK ? 0 : -1;
}

static int curl_call(void *ctx, const char *base_url, const char *method, const char *path,
                     const char *query, const char *content_type, const char *body, size_t body_len,
                     int timeout_ms, sched_reply_t *out)
{
    sched_t *s = ctx;
    memset(out, 0, sizeof(*out));
    CURL *c = handle_get(s);
    if (!c) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        return -1;
    }
    _cleanup_free_ char *url = call_url(base_url, path, query);
    sbx_sink_t sink = {.max = MAX_REPLY};
    struct curl_slist *hdrs = NULL;
    char ct[128];
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (body) {
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 content_type ? content_type : "application/json");
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    call_setup(s, c, url, method, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sbx_sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 60000));
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    return call_finish(s, c, rc, &sink, out);
}

/* ---- streamed calls (file uploads and downloads) ---- */

/* A streamed transfer goes at its client's pace, so there is no overall
 * deadline; an agent that sends or takes nothing for this long is cut off
 * (a client that stops is cut off by the HTTP server's idle timeout).  */
#define STREAM_STALL_S 60L
/* An error reply of a streamed call is read whole, up to this.  */
#define STREAM_ERROR_MAX (1u << 20)

typedef struct upload_src {
    ssize_t (*read)(void *ud, void *buf, size_t n);
    void *ud;
    int read_errno;
} upload_src_t;

static size_t on_upload_read(char *buf, size_t size, size_t n, void *ud)
{
    upload_src_t *u = ud;
    ssize_t k = u->read(u->ud, buf, size * n);
    if (k < 0) {
        u->read_errno = errno ? errno : EIO;
        return CURL_READFUNC_ABORT;
    }
    return (size_t)k;
}

static void stream_setup(CURL *c)
{
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, STREAM_STALL_S);
}

static int curl_call_upload(void *ctx, const char *base_url, const char *method, const char *path,
                            const char *query, uint64_t size,
                            ssize_t (*read_fn)(void *ud, void *buf, size_t n), void *ud,
                            int *read_errno, sched_reply_t *out)
{
    sched_t *s = ctx;
    memset(out, 0, sizeof(*out));
    *read_errno = 0;
    CURL *c = handle_get(s);
    if (!c) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        return -1;
    }
    _cleanup_free_ char *url = call_url(base_url, path, query);
    sbx_sink_t sink = {.max = STREAM_ERROR_MAX};
    upload_src_t src = {read_fn, ud, 0};
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    call_setup(s, c, url, method, hdrs);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_upload_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    if (size != UINT64_MAX)
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sbx_sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    stream_setup(c);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    *read_errno = src.read_errno;
    return call_finish(s, c, rc, &sink, out);
}

/* A download, shared by the thread running the transfer and the caller
 * waiting for its status; the last one out frees it.  */
typedef struct download {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool headers; /* status, type and length are known */
    bool done;
    long status;
    char *content_type;
    curl_off_t length;
    CURLcode rc;
    sbx_sink_t error_body; /* a reply other than 2xx */
    http_pipe_t *pipe;
    sched_t *s;
    CURL *c;
    struct curl_slist *hdrs;
    char *url;
    char *body; /* a request body to send, or NULL */
    size_t body_len;
} download_t;

static void download_unref(download_t *d)
{
    pthread_mutex_lock(&d->mu);
    bool last = --d->refs == 0;
    pthread_mutex_unlock(&d->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d->content_type);
    free(d->error_body.data);
    curl_slist_free_all(d->hdrs);
    free(d->url);
    free(d->body);
    free(d);
}

static bool status_ok(long status)
{
    return status >= 200 && status < 300;
}

/* Under d->mu: the reply's head is in.  */
static void download_headers(download_t *d)
{
    if (d->headers)
        return;
    curl_easy_getinfo(d->c, CURLINFO_RESPONSE_CODE, &d->status);
    char *ct = NULL;
    curl_easy_getinfo(d->c, CURLINFO_CONTENT_TYPE, &ct);
    d->content_type = ct ? xstrdup(ct) : NULL;
    d->length = -1;
    curl_easy_getinfo(d->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &d->length);
    d->headers = true;
    pthread_cond_broadcast(&d->cv);
}

static size_t on_download_body(char *p, size_t size, size_t n, void *ud)
{
    download_t *d = ud;
    pthread_mutex_lock(&d->mu);
    download_headers(d);
    bool ok = status_ok(d->status);
    pthread_mutex_unlock(&d->mu);
    if (!ok)
        return sbx_sink_write(p, size, n, &d->error_body);
    /* Blocks while the pipe is full: the client's pace is the agent's.  */
    return http_pipe_write(d->pipe, p, size * n) == 0 ? size * n : 0;
}

static int on_download_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                                curl_off_t ulnow)
{
    download_t *d = ud;
    return __atomic_load_n(&d->s->stopping, __ATOMIC_RELAXED) || calls_cut(d->s) ? 1 : 0;
}

static void *download_main(void *arg)
{
    download_t *d = arg;
    CURLcode rc = curl_easy_perform(d->c);
    pthread_mutex_lock(&d->mu);
    if (rc == CURLE_OK)
        download_headers(d);
    d->rc = rc;
    d->done = true;
    bool complete = rc == CURLE_OK && status_ok(d->status);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    /* The connection of a cut transfer is not reused; nor is any handle,
     * since sched_free may be running by now.  */
    curl_easy_cleanup(d->c);
    http_pipe_close(d->pipe, complete);
    sched_t *s = d->s;
    download_unref(d);
    pthread_mutex_lock(&s->lock);
    s->downloads--;
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int curl_call_stream(void *ctx, const char *base_url, const sched_stream_call_t *call,
                            http_pipe_t *pipe, uint64_t *length, sched_reply_t *out)
{
    sched_t *s = ctx;
    memset(out, 0, sizeof(*out));
    *length = UINT64_MAX;
    download_t *d = xcalloc(1, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->refs = 2;
    d->pipe = pipe;
    d->s = s;
    d->error_body.max = STREAM_ERROR_MAX;
    d->url = call_url(base_url, call->path, call->query);
    d->hdrs = curl_slist_append(NULL, "Expect:");
    if (call->accept) {
        _cleanup_free_ char *h = xasprintf("Accept: %s", call->accept);
        d->hdrs = curl_slist_append(d->hdrs, h);
    }
    if (call->body) {
        d->hdrs = curl_slist_append(d->hdrs, "Content-Type: application/json");
        d->body = xmalloc(call->body_len + 1);
        memcpy(d->body, call->body, call->body_len);
        d->body_len = call->body_len;
    }
    d->c = curl_easy_init();
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = -1;
    if (d->c) {
        call_setup(s, d->c, d->url, call->method, d->hdrs);
        if (d->body) {
            curl_easy_setopt(d->c, CURLOPT_POSTFIELDS, d->body);
            curl_easy_setopt(d->c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body_len);
        }
        if (call->events) {
            curl_easy_setopt(d->c, CURLOPT_TCP_KEEPALIVE, 1L);
            /* Many clients attach at once (a fleet reconnecting): each is a
             * TLS handshake with the agent, which a loaded host may take
             * longer than 3 s to finish for all of them.  */
            curl_easy_setopt(d->c, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
        }
        curl_easy_setopt(d->c, CURLOPT_WRITEFUNCTION, on_download_body);
        curl_easy_setopt(d->c, CURLOPT_WRITEDATA, d);
        curl_easy_setopt(d->c, CURLOPT_XFERINFOFUNCTION, on_download_progress);
        curl_easy_setopt(d->c, CURLOPT_XFERINFODATA, d);
        stream_setup(d->c);
        pthread_mutex_lock(&s->lock);
        rc = s->stopping ? -1 : pthread_create(&t, &attr, download_main, d);
        if (rc == 0)
            s->downloads++;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        if (d->c)
            curl_easy_cleanup(d->c);
        http_pipe_close(pipe, false);
        snprintf(out->error, sizeof(out->error), "cannot start the transfer");
        d->refs = 1;
        download_unref(d);
        return -1;
    }
    pthread_mutex_lock(&d->mu);
    while (!d->headers && !d->done)
        pthread_cond_wait(&d->cv, &d->mu);
    if (d->headers && !status_ok(d->status)) {
        while (!d->done) /* a small error reply: wait for all of it */
            pthread_cond_wait(&d->cv, &d->mu);
    }
    int ret = 0;
    if (!d->headers) {
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(d->rc));
        ret = -1;
    } else if (!status_ok(d->status) && d->rc != CURLE_OK) {
        snprintf(out->error, sizeof(out->error), "%s",
                 d->error_body.overflow ? "reply too large" : curl_easy_strerror(d->rc));
        ret = -1;
    } else {
        out->status = d->status;
        out->content_type = d->content_type ? xstrdup(d->content_type) : NULL;
        if (status_ok(d->status)) {
            if (d->length >= 0)
                *length = (uint64_t)d->length;
            out->body = xstrdup("");
        } else {
            out->body = d->error_body.data ? TAKE_PTR(d->error_body.data) : xstrdup("");
            out->body_len = d->error_body.len;
        }
    }
    if (!out->body)
        out->body = xstrdup("");
    pthread_mutex_unlock(&d->mu);
    download_unref(d);
    return ret;
}

/* The default transport: HTTPS with our client certificate (ctx is the
 * scheduler).  */
static const sched_agent_ops_t curl_ops = {
    .call = curl_call,
    .call_upload = curl_call_upload,
    .call_stream = curl_call_stream,
};

static const sched_agent_ops_t *ops_of(sched_t *s, void **ctx)
{
    if (s->cfg.agent_ops) {
        *ctx = s->cfg.agent_ctx;
        return s->cfg.agent_ops;
    }
    *ctx = s;
    return &curl_ops;
}

int sched_call(sched_t *s, const char *base_url, const char *method, const char *path,
               const char *query, const char *content_type, const char *body, size_t body_len,
               int timeout_ms, sched_reply_t *out)
{
    void *ctx;
    const sched_agent_ops_t *ops = ops_of(s, &ctx);
    memset(out, 0, sizeof(*out));
    return ops->call(ctx, base_url, method, path, query, content_type, body, body_len, timeout_ms,
                     out);
}

int sched_call_upload(sched_t *s, const char *base_url, const char *method, const char *path,
                      const char *query, uint64_t size,
                      ssize_t (*read_fn)(void *ud, void *buf, size_t n), void *ud, int *read_errno,
                      sched_reply_t *out)
{
    void *ctx;
    const sched_agent_ops_t *ops = ops_of(s, &ctx);
    memset(out, 0, sizeof(*out));
    return ops->call_upload(ctx, base_url, method, path, query, size, read_fn, ud, read_errno, out);
}

int sched_call_stream(sched_t *s, const char *base_url, const sched_stream_call_t *call,
                      http_pipe_t *pipe, uint64_t *length, sched_reply_t *out)
{
    void *ctx;
    const sched_agent_ops_t *ops = ops_of(s, &ctx);
    memset(out, 0, sizeof(*out));
    return ops->call_stream(ctx, base_url, call, pipe, length, out);
}

int sched_call_download(sched_t *s, const char *base_url, const char *path, const char *query,
                        http_pipe_t *pipe, uint64_t *length, sched_reply_t *out)
{
    sched_stream_call_t call = {.method = "GET", .path = path, .query = query};
    return sched_call_stream(s, base_url, &call, pipe, length, out);
}
