/* agent_client.c -- HTTPS calls to host agents with our client certificate,
 * over a small pool of libcurl handles so connections stay open between
 * calls.  */
#include "scheduler/internal.h"

#include <curl/curl.h>
#include <string.h>

#define MAX_REPLY (80u << 20)

typedef struct sink {
    char *data;
    size_t len;
    bool overflow;
} sink_t;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sink_t *s = ud;
    size_t add = size * n;
    if (s->len + add > MAX_REPLY) {
        s->overflow = true;
        return 0; /* an agent that floods us is cut off */
    }
    s->data = xrealloc(s->data, s->len + add + 1);
    memcpy(s->data + s->len, p, add);
    s->len += add;
    s->data[s->len] = '\0';
    return add;
}

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
        s->curl_pool = xrealloc(s->curl_pool, (s->cap_curl = s->cap_curl ? s->cap_curl * 2 : 8) *
                                                  sizeof(void *));
    s->curl_pool[s->n_curl++] = c;
    pthread_mutex_unlock(&s->lock);
}

void agent_reply_done(agent_reply_t *r)
{
    free(r->body);
    free(r->content_type);
    memset(r, 0, sizeof(*r));
}

json_t *agent_reply_json(const agent_reply_t *r)
{
    return r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
}

int agent_call(sched_t *s, const char *base_url, const char *method, const char *path,
               const char *query, const char *content_type, const char *body, size_t body_len,
               int timeout_ms, agent_reply_t *out)
{
    memset(out, 0, sizeof(*out));
    CURL *c = handle_get(s);
    if (!c) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        return -1;
    }
    _cleanup_free_ char *url = query && *query ? xasprintf("%s%s?%s", base_url, path, query)
                                               : xasprintf("%s%s", base_url, path);
    sink_t sink = {0};
    struct curl_slist *hdrs = NULL;
    char ct[128];
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (body) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", content_type ? content_type : "application/json");
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 60000));
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (s->cfg.ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, s->cfg.ca_file);
    if (s->cfg.cert_file)
        curl_easy_setopt(c, CURLOPT_SSLCERT, s->cfg.cert_file);
    if (s->cfg.key_file)
        curl_easy_setopt(c, CURLOPT_SSLKEY, s->cfg.key_file);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
        char *ctype = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
        out->content_type = ctype ? xstrdup(ctype) : NULL;
    } else {
        snprintf(out->error, sizeof(out->error), "%s",
                 sink.overflow ? "reply too large" : curl_easy_strerror(rc));
    }
    curl_slist_free_all(hdrs);
    out->body = sink.data ? sink.data : xstrdup("");
    out->body_len = sink.len;
    if (rc == CURLE_OK)
        handle_put(s, c);
    else
        curl_easy_cleanup(c); /* its connection may be broken */
    return rc == CURLE_OK ? 0 : -1;
}
