/* metrics.c -- E2B's GET /sandboxes/{id}/metrics from the ARM API's
 * .../sandboxes/{s}/metrics: one sample of now, its CPU percentage taken
 * from two readings of the sandbox's CPU time (the last one this adapter
 * saw of it, else a second one a moment later).  */
#include <string.h>
#include <unistd.h>

#include "e2b/internal.h"

#define RATE_MIN_MS 100   /* readings closer than this make no rate */
#define RATE_MAX_MS 60000 /* nor do readings further apart */
#define SEEN_MAX 4096     /* sandboxes whose last reading is kept */

typedef struct reading {
    json_t *m; /* the ARM reply */
    int64_t at_ms;
    int64_t cpu_us;
} reading_t;

/* An ARM failure as E2B's: a sandbox gone or going is not found.  */
static void reply_failure(http_response_t *res, const char *id, const arm_reply_t *ar)
{
    if (arm_reply_sandbox_gone(ar))
        e2b_reply_error(res, 404, "sandbox \"%s\" not found", id);
    else
        e2b_reply_arm_error(res, ar);
}

static int take(e2b_t *e, const char *key, const char *id, reading_t *out, arm_reply_t *ar)
{
    arm_req_t rq = {.method = "GET", .sandbox = id, .suffix = "/metrics", .bearer = key};
    arm_call(e, &rq, ar);
    out->m = ar->status == 200 ? arm_reply_json(ar) : NULL;
    out->at_ms = sbx_monotonic_ms();
    json_t *c = json_object_get(out->m, "cpuUsedMicroseconds");
    out->cpu_us = json_is_integer(c) ? json_integer_value(c) : 0;
    return json_is_object(out->m) ? 0 : -1;
}

/* The reading this adapter last saw of the sandbox, swapped for now's:
 * 0 when there was one of a usable age.  */
static int swap_seen(e2b_t *e, const char *id, const reading_t *now, reading_t *before)
{
    pthread_mutex_lock(&e->lock);
    if (!e->cpu_seen || json_object_size(e->cpu_seen) >= SEEN_MAX) {
        json_decref(e->cpu_seen);
        e->cpu_seen = json_object();
    }
    json_t *was = json_object_get(e->cpu_seen, id);
    int ret = -1;
    if (json_is_array(was)) {
        before->at_ms = json_integer_value(json_array_get(was, 0));
        before->cpu_us = json_integer_value(json_array_get(was, 1));
        int64_t age = now->at_ms - before->at_ms;
        ret = age >= RATE_MIN_MS && age <= RATE_MAX_MS && now->cpu_us >= before->cpu_us ? 0 : -1;
    }
    json_object_set_new(e->cpu_seen, id, json_pack("[I,I]", now->at_ms, now->cpu_us));
    pthread_mutex_unlock(&e->lock);
    return ret;
}

static json_int_t count(const json_t *m, const char *key)
{
    json_t *v = json_object_get(m, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

/* E2B's SandboxMetric for a reading and the CPU percentage.  */
static json_t *metric_json(const json_t *m, double pct)
{
    double cores = json_number_value(json_object_get(m, "cpu"));
    const char *ts = json_string_value(json_object_get(m, "timestamp"));
    int64_t now = sbx_now_ms();
    char when[40];
    sbx_time_format(now, when, sizeof(when));
    return json_pack("{s:s,s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:I}", "timestamp", ts ? ts : when,
                     "timestampUnix", (json_int_t)(now / 1000), "cpuCount",
                     (json_int_t)(cores > 0 ? cores + 0.999 : 1), "cpuUsedPct",
                     (double)(long long)(pct * 100 + 0.5) / 100, "memUsed",
                     count(m, "memoryUsedBytes"), "memTotal", count(m, "memoryLimitBytes"),
                     "memCache", (json_int_t)0, "diskUsed", count(m, "diskUsedBytes"), "diskTotal",
                     count(m, "diskLimitBytes"));
}

/* Whether ?start= and ?end= (Unix seconds), when given, take in now.  */
static bool now_in_range(const http_request_t *req)
{
    const char *s = http_query(req, "start"), *e = http_query(req, "end");
    long long now = sbx_now_ms() / 1000;
    if (s && *s && strtoll(s, NULL, 10) > now + 5)
        return false;
    return !(e && *e && strtoll(e, NULL, 10) < now - 5);
}

void e2b_metrics_handle(e2b_t *e, const char *key, const char *id, const http_request_t *req,
                        http_response_t *res)
{
    if (!e2b_id_valid(id)) {
        e2b_reply_error(res, 404, "sandbox \"%.64s\" not found", id);
        return;
    }
    arm_reply_t ar;
    reading_t now = {0}, before = {0};
    if (take(e, key, id, &now, &ar) < 0) {
        reply_failure(res, id, &ar);
        arm_reply_done(&ar);
        json_decref(now.m);
        return;
    }
    arm_reply_done(&ar);
    if (swap_seen(e, id, &now, &before) < 0) {
        /* No usable earlier reading: a second one shortly.  */
        before = now;
        before.m = NULL;
        usleep(RATE_MIN_MS * 1000);
        json_decref(now.m);
        now.m = NULL;
        int rc = take(e, key, id, &now, &ar);
        if (rc < 0)
            reply_failure(res, id, &ar);
        arm_reply_done(&ar);
        if (rc < 0) {
            json_decref(now.m);
            return;
        }
        swap_seen(e, id, &now, &(reading_t){0});
    }
    double cores = json_number_value(json_object_get(now.m, "cpu"));
    int64_t dt_us = (now.at_ms - before.at_ms) * 1000;
    double pct =
        dt_us > 0 && now.cpu_us >= before.cpu_us
            ? 100.0 * (double)(now.cpu_us - before.cpu_us) / (double)dt_us / (cores > 0 ? cores : 1)
            : 0;
    json_t *out = json_array();
    if (now_in_range(req))
        json_array_append_new(out, metric_json(now.m, pct > 100 ? 100 : pct));
    json_decref(now.m);
    http_reply_json(res, 200, out);
}
