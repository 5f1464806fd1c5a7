/* arm.c -- the adapter's client of sandboxd's ARM API: one HTTP call a
 * request, made with libcurl like any other client's.  */
#include <curl/curl.h>
#include <string.h>

#include "e2b/internal.h"

/* Replies larger than this are refused: file downloads are the largest.  */
#define ARM_MAX_REPLY ((size_t)E2B_FILES_MAX_BODY + (1u << 20))
#define ARM_LIST_PAGES 100

void arm_reply_done(arm_reply_t *r)
{
    free(r->body);
    r->body = NULL;
    r->len = 0;
}

json_t *arm_reply_json(const arm_reply_t *r)
{
    return r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
}

const char *arm_reply_message(const arm_reply_t *r, char *buf, size_t size)
{
    if (r->status == 0) {
        snprintf(buf, size, "sandboxd did not answer: %s", r->error);
        return buf;
    }
    json_t *j = arm_reply_json(r);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    snprintf(buf, size, "%s", m ? m : "request failed");
    json_decref(j);
    return buf;
}

bool arm_reply_sandbox_gone(const arm_reply_t *r)
{
    if (r->status != 404 && r->status != 409)
        return false;
    json_t *j = arm_reply_json(r);
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    bool gone =
        code &&
        (strcmp(code, "ResourceNotFound") == 0 || strcmp(code, "ParentResourceNotFound") == 0 ||
         strcmp(code, "SandboxNotFound") == 0 || strcmp(code, "SandboxDeleting") == 0);
    json_decref(j);
    return gone;
}

char *arm_escape(const char *s)
{
    char *c = curl_easy_escape(NULL, s, (int)strlen(s));
    char *out = xstrdup(c ? c : "");
    curl_free(c);
    return out;
}

typedef struct sink {
    arm_reply_t *r;
    size_t cap;
    bool too_big;
    CURL *curl;
    const arm_req_t *rq;
} sink_t;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    sink_t *s = ud;
    size_t k = sz * n;
    if (s->rq->on_body) {
        long status = 0;
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status == 200)
            return s->rq->on_body(s->rq->tick_ud, p, k) ? k : 0;
    }
    if (s->r->len + k > ARM_MAX_REPLY) {
        s->too_big = true;
        return 0;
    }
    if (s->r->len + k + 1 > s->cap) {
        s->cap = (s->r->len + k + 1) * 2;
        s->r->body = xrealloc(s->r->body, s->cap);
    }
    memcpy(s->r->body + s->r->len, p, k);
    s->r->len += k;
    s->r->body[s->r->len] = '\0';
    return k;
}

typedef struct progress {
    e2b_t *e;
    const arm_req_t *rq;
} progress_t;

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    progress_t *p = ud;
    pthread_mutex_lock(&p->e->lock);
    bool stop = p->e->stopping;
    pthread_mutex_unlock(&p->e->lock);
    if (!stop && p->rq->tick)
        stop = !p->rq->tick(p->rq->tick_ud);
    return stop ? 1 : 0;
}

void e2b_thread_enter(e2b_t *e)
{
    pthread_mutex_lock(&e->lock);
    e->threads++;
    pthread_mutex_unlock(&e->lock);
}

void e2b_thread_leave(e2b_t *e)
{
    pthread_mutex_lock(&e->lock);
    if (--e->threads == 0)
        pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->lock);
}

static void call_url(e2b_t *e, const char *method, const char *url, const arm_req_t *rq,
                     arm_reply_t *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(r->error, sizeof(r->error), "no curl handle");
        return;
    }
    struct curl_slist *h = NULL;
    _cleanup_free_ char *auth =
        rq->bearer ? xasprintf("Authorization: Bearer %s", rq->bearer) : NULL;
    _cleanup_free_ char *ct =
        xasprintf("Content-Type: %s", rq->content_type ? rq->content_type : "application/json");
    _cleanup_free_ char *im = rq->if_match ? xasprintf("If-Match: %s", rq->if_match) : NULL;
    if (rq->on_body)
        h = curl_slist_append(h, "Accept: text/event-stream");
    if (auth)
        h = curl_slist_append(h, auth);
    if (rq->body)
        h = curl_slist_append(h, ct);
    if (im)
        h = curl_slist_append(h, im);
    h = curl_slist_append(h, "Expect:");
    sink_t s = {.r = r, .curl = c, .rq = rq};
    progress_t prog = {.e = e, .rq = rq};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &prog);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     rq->timeout_ms > 0   ? rq->timeout_ms
                     : rq->timeout_ms < 0 ? 0L
                                          : 60000L);
    if (e->insecure_tls) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (rq->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else {
        snprintf(r->error, sizeof(r->error), "%s",
                 s.too_big ? "reply too large" : curl_easy_strerror(rc));
        arm_reply_done(r);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

void arm_call(e2b_t *e, const arm_req_t *rq, arm_reply_t *r)
{
    _cleanup_free_ char *enc = rq->sandbox ? arm_escape(rq->sandbox) : NULL;
    _cleanup_free_ char *url =
        xasprintf("%s%s%s%s%s?api-version=%s%s%s", e->arm_url, e->group_path,
                  enc ? "/sandboxes/" : "", enc ? enc : "", rq->suffix ? rq->suffix : "",
                  E2B_API_VERSION, rq->query ? "&" : "", rq->query ? rq->query : "");
    call_url(e, rq->method, url, rq, r);
}

json_t *arm_list_sandboxes(e2b_t *e, const char *bearer, arm_reply_t *r)
{
    json_t *all = json_array();
    arm_req_t rq = {.method = "GET", .bearer = bearer};
    _cleanup_free_ char *next =
        xasprintf("%s%s/sandboxes?api-version=%s", e->arm_url, e->group_path, E2B_API_VERSION);
    for (int page = 0; next && page < ARM_LIST_PAGES; page++) {
        call_url(e, "GET", next, &rq, r);
        if (r->status != 200) {
            json_decref(all);
            return NULL;
        }
        json_t *j = arm_reply_json(r);
        json_array_extend(all, json_object_get(j, "value"));
        const char *link = json_string_value(json_object_get(j, "nextLink"));
        free(next);
        next = NULL;
        /* nextLink is absolute, with the host the request named; only its
         * path and query are ours to follow.  */
        const char *p = link ? strstr(link, "/subscriptions/") : NULL;
        if (p)
            next = xasprintf("%s%s", e->arm_url, p);
        json_decref(j);
        arm_reply_done(r);
    }
    return all;
}
