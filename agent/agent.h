/* agent.h -- the host agent (sandbox-agent): its configuration and the HTTPS
 * API the scheduler drives, on top of the runtime (runtime/) and the image
 * store (image/).  main.c is only the process around these.  */
#ifndef SBX_AGENT_H
#define SBX_AGENT_H

#include <stdio.h>

#include "common/common.h"
#include "egress/egress.h"
#include "http/http.h"
#include "image/image.h"
#include "runtime/runtime.h"

/* ---- configuration (config.c) ---- */

typedef struct agent_config {
    char *listen;   /* "host:port" */
    char *data_dir; /* runtime/, images/ and sandboxes/ live here */
    char *ca_file;  /* client certificates must chain to this CA */
    char *cert_file, *key_file;
    char *environment;   /* label of the host pool this agent serves */
    char *default_image; /* OCI layout of the embedded default image, or NULL */
    bool insecure_http;  /* plain HTTP, loopback only */
    bool microvm_emulation;
    char *cgroup_parent;           /* parent cgroup of every sandbox; NULL: the runtime's */
    unsigned max_sandboxes;        /* 0: the runtime derives it */
    uint32_t uid_start, uid_count; /* host uids for sandboxes; count 0: the runtime picks */
    /* capacity reported at most (0: the host's): resources kept back */
    double capacity_cpu;
    uint64_t capacity_memory_mib, capacity_disk_mib, capacity_pids;
    bool allow_private_registries;  /* pull from non-public addresses too */
    uint64_t max_layer_bytes;       /* 0: the image store's default */
    uint64_t max_image_store_bytes; /* 0: the image store's default */
    /* IPv4 pool of sandbox links, or "auto" (egress_pool_pick); NULL: no
     * egress (loopback only) */
    char *egress_pool;
    char *egress_resolver; /* upstream DNS "ADDR[:PORT]"; NULL: the host's */
    char *egress_pool6;    /* IPv6 /64 or "off"; NULL: from the tag */
    /* The identity endpoint (with egress only): sandboxd's URL, a file
     * holding this host's token for it (read at each request, so sandboxd
     * can renew it), and the CA of an https URL.  */
    char *identity_url, *identity_token_file, *identity_ca;
    sbx_log_level_t log_level;
} agent_config_t;

typedef enum {
    AGENT_CONFIG_RUN,  /* start the agent */
    AGENT_CONFIG_EXIT, /* --help or --version printed; exit 0 */
} agent_config_action_t;

/* Fill *cfg from the environment (SANDBOX_AGENT_*), then argv, which wins,
 * and validate the result.  `out` receives --help/--version text.  On
 * failure returns -1 with a one-line message in *err.  */
int agent_config_parse(agent_config_t *cfg, int argc, char **argv, char **envp, FILE *out,
                       agent_config_action_t *action, sbx_error_t *err);
void agent_config_done(agent_config_t *cfg);
/* True for a "host:port" whose host is a loopback address or "localhost".  */
bool agent_listen_is_loopback(const char *listen);

/* ---- the API (api.c) ---- */

typedef struct agent_api agent_api_t;
typedef struct agent_imds_server agent_imds_server_t;

typedef struct agent_api_config {
    rt_runtime_t *rt; /* borrowed */
    img_store_t *img; /* borrowed */
    const char *data_dir;
    const char *environment;
    egress_t *egress;        /* borrowed; NULL: policies are kept but not enforced */
    const char *egress_pool; /* the pool in use, for health */
    /* Why egress is off when it was asked for (health, and the message of
     * a sandbox whose policy it cannot enforce); NULL: not asked for.  */
    const char *egress_unavailable;
    agent_imds_server_t *imds; /* borrowed; NULL: no identity endpoint */
} agent_api_config_t;

agent_api_t *agent_api_new(const agent_api_config_t *cfg, sbx_error_t *err);
void agent_api_free(agent_api_t *api);

/* One API call, independent of the transport, so tests can make calls
 * without a socket.  Query values are percent-decoded; *_len say how long
 * they really are, so an embedded NUL is seen.  */
typedef struct agent_call {
    const char *method;
    const char *path;
    const char *query_path; /* ?path=, or NULL */
    size_t query_path_len;
    const char *query_list;      /* ?list=, or NULL */
    const char *query_offset;    /* ?offset=, or NULL (process streams) */
    const char *query_recursive; /* ?recursive=, or NULL (watches) */
    const char *accept;          /* the Accept header, or NULL */
    const char *last_event_id;   /* the Last-Event-ID header, or NULL */
    const char *body;
    size_t body_len;
    /* A file upload's body, read while it arrives (http_body_read); NULL:
     * body and body_len.  body_size is its announced size or UINT64_MAX.  */
    ssize_t (*body_read)(void *ud, void *buf, size_t n);
    void *body_ud;
    uint64_t body_size;
} agent_call_t;

void agent_api_call(agent_api_t *api, const agent_call_t *call, http_response_t *res);

/* http_handler_fn and http_body_limit_fn for http_server_start; ctx is the
 * agent_api_t.  */
void agent_api_http_handler(void *ctx, const http_request_t *req, http_response_t *res);
size_t agent_api_body_limit(void *ctx, const char *method, const char *path);
/* http_config_t.stream_body: file uploads are written while they arrive.  */
bool agent_api_stream_body(void *ctx, const http_request_t *req);

/* imds.c: managed identity tokens for code in a sandbox (Azure IMDS's
 * GET /metadata/identity/oauth2/token with "Metadata: true", and App
 * Service's GET /msi/token with "X-IDENTITY-HEADER").  The listener on a
 * sandbox's own network knows which sandbox asked and passes its runtime
 * id; tokens come from sandboxd's POST /admin/identityTokens, asked with
 * the host's token.  */
typedef struct agent_imds {
    const char *sandboxd_url; /* http(s)://host:port of sandboxd */
    const char *host_token;   /* from POST /admin/tokens {"host": NAME} */
    const char *ca_file;      /* for an https sandboxd; NULL: the system's */
} agent_imds_t;

typedef struct agent_imds_request {
    const char *method, *path;
    const char *query;           /* raw (percent-encoded), without '?'; may be NULL */
    const char *metadata;        /* the Metadata header or NULL */
    const char *identity_header; /* the X-IDENTITY-HEADER header or NULL */
} agent_imds_request_t;

/* Answer one request from the sandbox `runtime_id`, whose IDENTITY_HEADER
 * is `secret` (NULL: the App Service form is refused): returns the HTTP
 * status and in *body the JSON to send (IMDS's token reply, or
 * {"error", "error_description"}).  */
int agent_imds_answer(const agent_imds_t *m, const char *runtime_id, const char *secret,
                      const agent_imds_request_t *rq, char **body);

/* imds_server.c: the listener sandboxes with an identity reach at
 * 169.254.169.254:80 (the egress table redirects them to its port).  */
typedef struct agent_imds_server_config {
    const char *sandboxd_url, *token_file, *ca_file;
    const char *data_dir; /* imds.key: the key of the sandboxes' IDENTITY_HEADERs */
} agent_imds_server_config_t;
agent_imds_server_t *agent_imds_server_start(const agent_imds_server_config_t *cfg, uint16_t *port,
                                             sbx_error_t *err);
/* The egress state that says which sandbox has which address (set once,
 * before any sandbox is linked).  */
void agent_imds_server_set_egress(agent_imds_server_t *s, egress_t *eg);
void agent_imds_server_stop(agent_imds_server_t *s);
/* Sandbox id's IDENTITY_HEADER: 32 hex digits, the same across restarts.  */
void agent_imds_server_header(const agent_imds_server_t *s, const char *id, char out[33]);

/* ---- egress glue (egress_hooks.c): the sandbox lifecycle's calls into
 * egress/, so sandboxes.c only names the moments ---- */

/* The "egress" member of a create body: *policy NULL (none) or the policy
 * (a new reference), *present whether the body named it at all, and
 * *identity whether its "identity" is true (the sandbox may use a managed
 * identity); -1 after replying 400.  */
int agent_egress_parse(const agent_call_t *c, json_t **policy, bool *present, bool *identity,
                       http_response_t *res);
/* Give the sandbox its policy, with a link when it runs.  */
int agent_egress_apply(egress_t *eg, rt_runtime_t *rt, const char *id, const json_t *policy,
                       sbx_error_t *err);
/* The same right after the sandbox booted (create, start): its link is
 * new, so its /etc/resolv.conf names its gateway.  */
int agent_egress_booted(egress_t *eg, rt_runtime_t *rt, const char *id, const json_t *policy,
                        sbx_error_t *err);
/* Before rt_create: for a driver that links the sandbox as it boots
 * (gvisor), the policy recorded so the boot finds it there.  */
int agent_egress_record(egress_t *eg, const char *driver, const char *id, const json_t *policy,
                        sbx_error_t *err);
/* The runtime's net hook (rt_set_net_hook, arg the egress_t): the link of
 * a sandbox whose network is fixed when it boots (gvisor), made in the
 * namespace it is about to boot in.  */
int agent_egress_boot(void *eg, const char *id, int netns_fd, sbx_error_t *err);
/* After a successful stop, start or delete of the sandbox.  */
void agent_egress_after(egress_t *eg, rt_runtime_t *rt, const char *id, const char *action);
/* At start: links for the running sandboxes that have a policy, and
 * records of sandboxes that are gone dropped.  */
void agent_egress_recover(egress_t *eg, rt_runtime_t *rt);
/* GET|PUT /v1/sandboxes/{id}/egress: the sandbox's policy (JSON null:
 * none), replaced live.  */
void agent_egress_policy(egress_t *eg, rt_runtime_t *rt, const char *id, const agent_call_t *c,
                         http_response_t *res);
/* GET /v1/sandboxes/{id}/egressDecisions.  */
void agent_egress_decisions(egress_t *eg, rt_runtime_t *rt, const char *id, http_response_t *res);

/* Limits the API enforces; agent/README.md documents them.  */
#define AGENT_MAX_JSON_BODY (1024 * 1024)
#define AGENT_MAX_EXEC_BODY (8 * 1024 * 1024)
#define AGENT_MAX_FILE_BODY (64 * 1024 * 1024)
#define AGENT_EXEC_OUTPUT_CAP (1024 * 1024)

#endif
