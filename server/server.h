/* server.h -- the sandboxd process: configuration from flags and the
 * environment, and the run loop that wires storage, the ARM layer, the
 * scheduler and the HTTP(S) front end together.  */
#ifndef SBX_SERVER_H
#define SBX_SERVER_H

#include "common/common.h"

typedef struct sbx_config {
    char *listen; /* host:port */
    char *data_dir;
    char *tls_cert, *tls_key; /* paths; both or neither */
    char *auth_token;         /* a fixed bearer token also accepted; NULL: JWTs only */
    /* Identity (auth module): sandboxd's own issuer URL, the algorithm of
     * its new keys, their rotation period; trusted issuers ("ISSUER" or
     * "ISSUER=JWKS") and API audiences (NULL-terminated, may be NULL).  */
    char *issuer_url;
    char *signing_alg;
    unsigned key_rotation_s;
    char **oidc_issuers;
    size_t n_oidc_issuers;
    char **oidc_audiences;
    size_t n_oidc_audiences;
    bool no_auth; /* accept every request (loopback only) */
    bool no_local_agent;
    bool microvm_emulation;
    bool sync_full; /* fsync every commit */
    size_t max_body;
    unsigned threads; /* event threads; 0: a thread per connection */
    /* Admission and connection limits (see http_config_t).  */
    unsigned max_in_flight, max_in_flight_per_client;
    unsigned max_connections, max_connections_per_address;
    unsigned header_timeout; /* seconds */
    char *agent_bin;         /* sandbox-agent to start locally; default: beside sandboxd */
    char *log_level;
    char *admin_token;   /* for the host admin API; NULL: written to data-dir */
    char *default_image; /* OCI layout of the embedded default image */
    /* admission (docs/scheduler.md); 0: the scheduler's defaults */
    double overcommit_cpu, overcommit_memory, overcommit_disk, overcommit_pids;
    unsigned placement_timeout_s;  /* a create waits this long for room */
    unsigned max_disk_mib;         /* largest diskMiB the API accepts */
    bool allow_private_registries; /* passed to the local agent */
    bool exec_webhook_allow_private;
    char *egress_pool; /* the local agent's: a CIDR, "auto" (NULL) or "off" */
    /* The E2B-compatible API (e2b/e2b.h): its listen address (NULL: off),
     * the group its sandboxes belong to, and template aliases.  */
    char *e2b_listen, *e2b_group, *e2b_templates;
} sbx_config_t;

/* Parse argv and SANDBOXD_* variables (flags win).  Returns 0 to run, 1 when
 * --help or --version was answered, -1 on a bad argument (message in err).  */
int sbx_config_parse(sbx_config_t *cfg, int argc, char **argv, sbx_error_t *err);
void sbx_config_done(sbx_config_t *cfg);

/* Run until SIGTERM/SIGINT; returns the process exit code.  */
int sbx_server_run(const sbx_config_t *cfg);

#endif
