/* internal.h -- shared inside the e2b module: the adapter's state, its ARM
 * client, E2B and Connect error replies, and the handlers of each file.  */
#ifndef SBX_E2B_INTERNAL_H
#define SBX_E2B_INTERNAL_H

#include <pthread.h>

#include "e2b/e2b.h"

#define E2B_ENVD_VERSION "0.5.7"
#define E2B_API_VERSION "2026-07-01"

struct e2b {
    char *arm_url, *arm_token, *group_path;
    char *state_dir;   /* store.c's files */
    json_t *templates; /* alias -> image */
    unsigned char key[E2B_SECRET_KEY_LEN];
    bool insecure_tls;
    size_t max_body;
    pthread_mutex_t lock; /* guards what follows */
    bool group_ready;
    bool stopping;
    json_t *cpu_seen;    /* sandbox id -> [ms, cpu us]: metrics.c's last readings */
    unsigned threads;    /* stream threads running */
    pthread_cond_t idle; /* threads fell to 0 */
};

/* ---- the ARM client (arm.c) ---- */

typedef struct arm_reply {
    long status; /* 0: no answer */
    char *body;
    size_t len;
    char error[256]; /* why there was no answer */
} arm_reply_t;
void arm_reply_done(arm_reply_t *r);
/* The reply's body as JSON (new reference) or NULL.  */
json_t *arm_reply_json(const arm_reply_t *r);
/* The ARM error message of a reply, or a description of the failure.  */
const char *arm_reply_message(const arm_reply_t *r, char *buf, size_t size);

typedef struct arm_req {
    const char *method;
    const char *sandbox; /* NULL: the group itself */
    const char *suffix;  /* "/exec", "/files", "" */
    const char *query;   /* extra query, already encoded; may be NULL */
    const char *bearer;  /* NULL: no Authorization */
    const char *body;
    size_t len;
    const char *content_type;
    const char *if_match;
    long timeout_ms; /* 0: 60 s; < 0: none */
    /* Called about once a second while the call runs; false cuts it.  */
    bool (*tick)(void *ud);
    void *tick_ud;
    /* A 200 reply's body goes here as it arrives (with tick_ud), not into
     * the reply; false cuts the call.  Asks for text/event-stream.  */
    bool (*on_body)(void *ud, const char *data, size_t n);
} arm_req_t;
void arm_call(e2b_t *e, const arm_req_t *rq, arm_reply_t *r);
/* The group's sandboxes (followed nextLink) as a JSON array, or NULL with
 * the failing reply in r.  */
json_t *arm_list_sandboxes(e2b_t *e, const char *bearer, arm_reply_t *r);
/* Whether an ARM failure says the sandbox itself is not there (or is
 * being deleted): E2B's proxy answers those 502, which its SDKs take for a
 * sandbox past its timeout.  */
bool arm_reply_sandbox_gone(const arm_reply_t *r);
/* Percent-encodes s for a query value (new string).  */
char *arm_escape(const char *s);

/* ---- what ARM does not keep (store.c) ---- */

/* {"template","metadata","autoPause","autoResume"} of a sandbox.  */
int e2b_meta_put(e2b_t *e, const char *id, const json_t *meta, sbx_error_t *err);
json_t *e2b_meta_get(const e2b_t *e, const char *id); /* new reference or NULL */
void e2b_meta_delete(const e2b_t *e, const char *id);
void e2b_meta_prune(const e2b_t *e, const json_t *live);

/* ---- replies ---- */

/* E2B REST error: {"code":status,"message":...}.  */
void e2b_reply_error(http_response_t *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An ARM failure as an E2B REST error with the same status.  */
void e2b_reply_arm_error(http_response_t *res, const arm_reply_t *r);

/* Connect unary error: HTTP status from the code, {"code","message"}.  */
void connect_reply_error(http_response_t *res, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The Connect code for an ARM failure.  */
const char *connect_code_for(const arm_reply_t *r);
/* One enveloped message (flags 0, or 2 for the end of the stream).  */
char *connect_envelope(unsigned flags, const json_t *msg, size_t *len);
/* Write msg (stolen) to a streamed reply as one envelope; -1 when the
 * client has gone.  */
int connect_send(http_pipe_t *pipe, unsigned flags, json_t *msg);
/* The request message: JSON for unary calls, the first envelope for
 * streaming ones (Content-Type application/connect+json).  New reference or
 * NULL.  */
json_t *connect_request_json(const http_request_t *req, bool *streaming);

/* ---- the sandbox an envd request names ---- */

typedef struct envd_ctx {
    e2b_t *e;
    const char *sandbox; /* E2b-Sandbox-Id */
    char user[64];       /* the account asked for ("": the sandbox's default) */
    char home[256];      /* the user's home, for relative paths */
} envd_ctx_t;
/* An absolute path for p (relative ones against the home), or NULL when p
 * is empty or too long.  New string.  */
char *envd_path(const envd_ctx_t *c, const char *p);
/* Run argv in the sandbox through ARM exec; the parsed reply in *out.  */
int envd_exec(const envd_ctx_t *c, json_t *argv, int timeout_s, json_t **out, arm_reply_t *r);

/* ---- handlers ---- */

void e2b_rest_handle(e2b_t *e, const http_request_t *req, http_response_t *res);
/* GET /sandboxes/{id}/metrics with the caller's API key.  */
void e2b_metrics_handle(e2b_t *e, const char *key, const char *id, const http_request_t *req,
                        http_response_t *res);
void e2b_files_handle(const envd_ctx_t *c, const http_request_t *req, http_response_t *res);
void e2b_fs_handle(const envd_ctx_t *c, const char *method, const http_request_t *req,
                   http_response_t *res);
void e2b_process_handle(const envd_ctx_t *c, const char *method, const http_request_t *req,
                        http_response_t *res);
/* filesystem.Filesystem/WatchDir (watch.c).  */
void e2b_watch_handle(const envd_ctx_t *c, const http_request_t *req, http_response_t *res);

/* ---- relays of the host's event streams (relay.c) ---- */

typedef struct e2b_relay e2b_relay_t;
/* One whole event of the host's stream (event NULL: its keep-alive);
 * -1 when the client has gone.  Sets r->ended at the stream's last.  */
typedef int (*e2b_relay_event_fn)(e2b_relay_t *r, const char *event, const char *data);
struct e2b_relay {
    e2b_t *e;
    char *sandbox, *suffix, *query; /* the ARM stream: .../sandboxes/{s}{suffix}?{query} */
    const char *ended_early;        /* the message when it ends before its last event */
    size_t max_line;
    e2b_relay_event_fn on_event;
    http_pipe_t *pipe;
    bool ended;
    /* private */
    http_sse_reader_t sse;
    bool client_gone;
};
/* A new relay, with its pipe to the client; first (stolen, may be NULL) is
 * the message sent before the host's.  */
e2b_relay_t *e2b_relay_new(const envd_ctx_t *c, size_t pipe_cap, json_t *first);
/* Relay on a thread of its own and answer res with the stream; takes r. */
void e2b_relay_start(e2b_relay_t *r, http_response_t *res);
/* A streamed call's error as its only message.  */
void e2b_stream_error(http_response_t *res, const char *code, const char *msg);

/* A stream thread starts or ends (e2b_free waits for them).  */
void e2b_thread_enter(e2b_t *e);
void e2b_thread_leave(e2b_t *e);

/* The envd access token of a sandbox: hex HMAC-SHA256 of its id.  */
void e2b_access_token(const e2b_t *e, const char *sandbox, char out[65]);
/* Whether a sandbox id is well formed (also a valid ARM name).  */
bool e2b_id_valid(const char *id);

#endif
