/* config.c -- sandboxd's command line and environment.  */
#include "server/server.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "Usage: sandboxd [OPTIONS]\n"
    "Serves Microsoft.App/sandboxGroups over the Azure Resource Manager protocol.\n"
    "\n"
    "  --listen HOST:PORT     address to serve (SANDBOXD_LISTEN; default 127.0.0.1:8080)\n"
    "  --data-dir DIR         state directory, created if missing (SANDBOXD_DATA_DIR;\n"
    "                         default ./sandboxd-data)\n"
    "  --tls-cert FILE        serve HTTPS with this certificate (SANDBOXD_TLS_CERT)\n"
    "  --tls-key FILE         and this key (SANDBOXD_TLS_KEY)\n"
    "  --auth-token TOKEN     a fixed bearer token accepted besides JWTs, Contributor\n"
    "                         everywhere (SANDBOXD_AUTH_TOKEN); without it a JWT of\n"
    "                         sandboxd's own issuer is written to DIR/dev-token\n"
    "  --issuer-url URL       sandboxd's own OIDC issuer (iss of the tokens it signs;\n"
    "                         its discovery document is served under it)\n"
    "                         (SANDBOXD_ISSUER_URL; default: kept from the first start,\n"
    "                         then http(s)://LISTEN)\n"
    "  --oidc-issuer ISSUER[=JWKS]\n"
    "                         trust tokens from ISSUER, keys from JWKS (a file or URL;\n"
    "                         default: its discovery document); repeatable\n"
    "                         (SANDBOXD_OIDC_ISSUERS, space-separated)\n"
    "  --oidc-audience AUD    audience API tokens must carry; repeatable\n"
    "                         (SANDBOXD_OIDC_AUDIENCES, space-separated; default\n"
    "                         https://management.azure.com/ and .core.windows.net/)\n"
    "  --signing-alg ALG      RS256 (default) or ES256 for new signing keys\n"
    "                         (SANDBOXD_SIGNING_ALG)\n"
    "  --key-rotation S       a signing key signs for S seconds and verifies for S more\n"
    "                         (SANDBOXD_KEY_ROTATION; default 2592000, 30 days)\n"
    "  --no-auth              accept requests without a token; loopback only\n"
    "                         (SANDBOXD_NO_AUTH=1)\n"
    "  --admin-token TOKEN    token for the host admin API (SANDBOXD_ADMIN_TOKEN);\n"
    "                         default: a random token written to DIR/admin-token\n"
    "  --no-local-agent       use registered hosts only (SANDBOXD_NO_LOCAL_AGENT=1)\n"
    "  --agent-bin FILE       sandbox-agent binary for the local host (SANDBOXD_AGENT_BIN)\n"
    "  --default-image DIR    OCI layout of the default image (SANDBOXD_DEFAULT_IMAGE)\n"
    "  --microvm-emulation    allow the microvm driver without KVM\n"
    "                         (SANDBOXD_MICROVM_EMULATION=1)\n"
    "  --sync-full            fsync every commit (SANDBOXD_SYNC_FULL=1)\n"
    "  --max-body BYTES       largest JSON request body (SANDBOXD_MAX_BODY; 1048576)\n"
    "  --threads N            HTTP event threads (epoll) for reads; writes and sandbox\n"
    "                         actions run on threads of their own; 0 = a thread per\n"
    "                         connection (SANDBOXD_THREADS; default 1)\n"
    "  --overcommit-cpu R     admit sandboxes while the sum of their cpu limits on a\n"
    "                         host is at most R times its cores (SANDBOXD_OVERCOMMIT_CPU;\n"
    "                         default 4)\n"
    "  --overcommit-memory R  the same for memoryMiB against its RAM\n"
    "                         (SANDBOXD_OVERCOMMIT_MEMORY; default 1)\n"
    "  --overcommit-disk R    the same for diskMiB (tmpfs) against its RAM\n"
    "                         (SANDBOXD_OVERCOMMIT_DISK; default 4)\n"
    "  --overcommit-pids R    the same for pids against its pid budget\n"
    "                         (SANDBOXD_OVERCOMMIT_PIDS; default 1)\n"
    "  --placement-timeout S  a create waits S seconds for a host with room, then\n"
    "                         fails (SANDBOXD_PLACEMENT_TIMEOUT; default 600)\n"
    "  --max-disk-mib MIB     largest diskMiB a sandbox may ask for\n"
    "                         (SANDBOXD_MAX_DISK_MIB; default 16384)\n"
    "  --max-in-flight N      writes and sandbox actions in progress at once; more are\n"
    "                         answered 429 with Retry-After (SANDBOXD_MAX_IN_FLIGHT;\n"
    "                         default 1024)\n"
    "  --max-in-flight-per-client N\n"
    "                         of those, per bearer token (per client address without\n"
    "                         one) (SANDBOXD_MAX_IN_FLIGHT_PER_CLIENT; default 256)\n"
    "  --max-connections N    open connections (SANDBOXD_MAX_CONNECTIONS; default\n"
    "                         16384, lowered to what RLIMIT_NOFILE allows)\n"
    "  --max-connections-per-address N\n"
    "                         open connections from one client address; 0: no cap,\n"
    "                         for use behind a proxy (SANDBOXD_MAX_CONNECTIONS_PER_ADDRESS;\n"
    "                         default 256)\n"
    "  --header-timeout SECONDS\n"
    "                         a request's line and headers must arrive within this of\n"
    "                         connecting (or of the previous response), or the\n"
    "                         connection is closed (SANDBOXD_HEADER_TIMEOUT; default 10)\n"
    "  --log-level LEVEL      debug, info, warn or error (SANDBOXD_LOG_LEVEL)\n"
    "  --exec-webhook-allow-private\n"
    "                         admission webhooks may be at loopback, private or\n"
    "                         link-local addresses (cloud metadata among them)\n"
    "                         (SANDBOXD_EXEC_WEBHOOK_ALLOW_PRIVATE=1)\n"
    "  --allow-private-registries\n"
    "                         the local agent may pull images from registries at\n"
    "                         loopback, private and link-local addresses\n"
    "                         (SANDBOXD_ALLOW_PRIVATE_REGISTRIES=1)\n"
    "  --egress-pool CIDR|auto|off\n"
    "                         the local agent's pool for sandboxes' egress links\n"
    "                         (SANDBOXD_EGRESS_POOL; default auto: a free /20 of\n"
    "                         100.64.0.0/10; off: every sandbox stays loopback-only)\n"
    "  --e2b-listen HOST:PORT serve the E2B-compatible API (REST and in-sandbox) here\n"
    "                         (SANDBOXD_E2B_LISTEN; default off)\n"
    "  --e2b-group SUB/RG/GROUP\n"
    "                         the sandbox group E2B sandboxes belong to, created when\n"
    "                         missing (SANDBOXD_E2B_GROUP; default\n"
    "                         00000000-0000-0000-0000-000000000000/e2b/e2b)\n"
    "  --e2b-templates A=IMAGE,...\n"
    "                         E2B template names for images; 'base' is the default\n"
    "                         image (SANDBOXD_E2B_TEMPLATES)\n"
    "  --help, --version\n";

enum {
    O_LISTEN = 256,
    O_DATA_DIR,
    O_TLS_CERT,
    O_TLS_KEY,
    O_AUTH_TOKEN,
    O_NO_AUTH,
    O_ADMIN_TOKEN,
    O_NO_LOCAL_AGENT,
    O_AGENT_BIN,
    O_DEFAULT_IMAGE,
    O_MICROVM,
    O_SYNC_FULL,
    O_MAX_BODY,
    O_THREADS,
    O_LOG_LEVEL,
    O_HELP,
    O_VERSION,
    O_OC_CPU,
    O_OC_MEMORY,
    O_OC_DISK,
    O_OC_PIDS,
    O_PLACEMENT_TIMEOUT,
    O_MAX_DISK,
    O_MAX_IN_FLIGHT,
    O_MAX_IN_FLIGHT_PER_CLIENT,
    O_MAX_CONNECTIONS,
    O_MAX_CONNECTIONS_PER_ADDRESS,
    O_HEADER_TIMEOUT,
    O_ALLOW_PRIVATE_REGISTRIES,
    O_EXEC_WEBHOOK_ALLOW_PRIVATE,
    O_EGRESS_POOL,
    O_ISSUER_URL,
    O_OIDC_ISSUER,
    O_OIDC_AUDIENCE,
    O_SIGNING_ALG,
    O_KEY_ROTATION,
    O_E2B_LISTEN,
    O_E2B_GROUP,
    O_E2B_TEMPLATES,
};

static const struct option options[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"data-dir", required_argument, NULL, O_DATA_DIR},
    {"tls-cert", required_argument, NULL, O_TLS_CERT},
    {"tls-key", required_argument, NULL, O_TLS_KEY},
    {"auth-token", required_argument, NULL, O_AUTH_TOKEN},
    {"no-auth", no_argument, NULL, O_NO_AUTH},
    {"admin-token", required_argument, NULL, O_ADMIN_TOKEN},
    {"no-local-agent", no_argument, NULL, O_NO_LOCAL_AGENT},
    {"agent-bin", required_argument, NULL, O_AGENT_BIN},
    {"default-image", required_argument, NULL, O_DEFAULT_IMAGE},
    {"microvm-emulation", no_argument, NULL, O_MICROVM},
    {"sync-full", no_argument, NULL, O_SYNC_FULL},
    {"max-body", required_argument, NULL, O_MAX_BODY},
    {"threads", required_argument, NULL, O_THREADS},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"overcommit-cpu", required_argument, NULL, O_OC_CPU},
    {"overcommit-memory", required_argument, NULL, O_OC_MEMORY},
    {"overcommit-disk", required_argument, NULL, O_OC_DISK},
    {"overcommit-pids", required_argument, NULL, O_OC_PIDS},
    {"placement-timeout", required_argument, NULL, O_PLACEMENT_TIMEOUT},
    {"max-disk-mib", required_argument, NULL, O_MAX_DISK},
    {"max-in-flight", required_argument, NULL, O_MAX_IN_FLIGHT},
    {"max-in-flight-per-client", required_argument, NULL, O_MAX_IN_FLIGHT_PER_CLIENT},
    {"max-connections", required_argument, NULL, O_MAX_CONNECTIONS},
    {"max-connections-per-address", required_argument, NULL, O_MAX_CONNECTIONS_PER_ADDRESS},
    {"header-timeout", required_argument, NULL, O_HEADER_TIMEOUT},
    {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},
    {"allow-private-registries", no_argument, NULL, O_ALLOW_PRIVATE_REGISTRIES},
    {"exec-webhook-allow-private", no_argument, NULL, O_EXEC_WEBHOOK_ALLOW_PRIVATE},
    {"egress-pool", required_argument, NULL, O_EGRESS_POOL},
    {"issuer-url", required_argument, NULL, O_ISSUER_URL},
    {"oidc-issuer", required_argument, NULL, O_OIDC_ISSUER},
    {"oidc-audience", required_argument, NULL, O_OIDC_AUDIENCE},
    {"signing-alg", required_argument, NULL, O_SIGNING_ALG},
    {"key-rotation", required_argument, NULL, O_KEY_ROTATION},
    {"e2b-listen", required_argument, NULL, O_E2B_LISTEN},
    {"e2b-group", required_argument, NULL, O_E2B_GROUP},
    {"e2b-templates", required_argument, NULL, O_E2B_TEMPLATES},
    {NULL, 0, NULL, 0},
};

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v ? xstrdup(v) : NULL;
}

static bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0);
}

static int parse_size(const char *s, const char *what, size_t min, size_t max, size_t *out,
                      sbx_error_t *err)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || v < min || v > max)
        return sbx_error_set(err, SBX_ERR_INVALID, "%s must be a number from %zu to %zu", what, min,
                             max);
    *out = (size_t)v;
    return 0;
}

/* An overcommit ratio: how many times its capacity a host may promise.  */
static int parse_ratio(const char *s, const char *what, double *out, sbx_error_t *err)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= 0.1 && v <= 100))
        return sbx_error_set(err, SBX_ERR_INVALID, "%s must be a number from 0.1 to 100", what);
    *out = v;
    return 0;
}

#define PLACEMENT_TIMEOUT_MAX (7 * 86400)
#define MAX_DISK_MIB_LIMIT 65536 /* the OpenAPI maximum */

/* The numeric settings: flag, variable, range and field, an unsigned or
 * (ratio) an overcommit ratio, a double from 0.1 to 100.  */
static const struct num_flag {
    int opt;
    const char *flag, *var;
    size_t min, max;
    size_t off;
    bool ratio;
} num_flags[] = {
    {O_OC_CPU, "--overcommit-cpu", "SANDBOXD_OVERCOMMIT_CPU", 0, 0,
     offsetof(sbx_config_t, overcommit_cpu), true},
    {O_OC_MEMORY, "--overcommit-memory", "SANDBOXD_OVERCOMMIT_MEMORY", 0, 0,
     offsetof(sbx_config_t, overcommit_memory), true},
    {O_OC_DISK, "--overcommit-disk", "SANDBOXD_OVERCOMMIT_DISK", 0, 0,
     offsetof(sbx_config_t, overcommit_disk), true},
    {O_OC_PIDS, "--overcommit-pids", "SANDBOXD_OVERCOMMIT_PIDS", 0, 0,
     offsetof(sbx_config_t, overcommit_pids), true},
    {O_PLACEMENT_TIMEOUT, "--placement-timeout", "SANDBOXD_PLACEMENT_TIMEOUT", 1,
     PLACEMENT_TIMEOUT_MAX, offsetof(sbx_config_t, placement_timeout_s), false},
    {O_MAX_DISK, "--max-disk-mib", "SANDBOXD_MAX_DISK_MIB", 16, MAX_DISK_MIB_LIMIT,
     offsetof(sbx_config_t, max_disk_mib), false},
    {O_MAX_IN_FLIGHT, "--max-in-flight", "SANDBOXD_MAX_IN_FLIGHT", 1, 65536,
     offsetof(sbx_config_t, max_in_flight), false},
    {O_MAX_IN_FLIGHT_PER_CLIENT, "--max-in-flight-per-client", "SANDBOXD_MAX_IN_FLIGHT_PER_CLIENT",
     1, 65536, offsetof(sbx_config_t, max_in_flight_per_client), false},
    {O_MAX_CONNECTIONS, "--max-connections", "SANDBOXD_MAX_CONNECTIONS", 16, 1 << 20,
     offsetof(sbx_config_t, max_connections), false},
    {O_MAX_CONNECTIONS_PER_ADDRESS, "--max-connections-per-address",
     "SANDBOXD_MAX_CONNECTIONS_PER_ADDRESS", 0, 1 << 20,
     offsetof(sbx_config_t, max_connections_per_address), false},
    {O_HEADER_TIMEOUT, "--header-timeout", "SANDBOXD_HEADER_TIMEOUT", 1, 3600,
     offsetof(sbx_config_t, header_timeout), false},
    {O_KEY_ROTATION, "--key-rotation", "SANDBOXD_KEY_ROTATION", 2, 366 * 86400,
     offsetof(sbx_config_t, key_rotation_s), false},
};

/* Append to a NULL-terminated list.  */
static void list_add(char ***list, size_t *n, const char *v)
{
    *list = xrealloc(*list, (*n + 2) * sizeof(**list));
    (*list)[(*n)++] = xstrdup(v);
    (*list)[*n] = NULL;
}

static void list_add_words(char ***list, size_t *n, const char *v)
{
    _cleanup_free_ char *copy = xstrdup(v);
    char *save = NULL;
    for (char *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
        list_add(list, n, w);
}

static void list_free(char ***list, size_t *n)
{
    for (size_t i = 0; *list && i < *n; i++)
        free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

/* An issuer is an https URL (http on loopback for tests), optionally with
 * "=JWKS"; an audience any short printable string.  */
static int check_identity(const sbx_config_t *cfg, sbx_error_t *err)
{
    for (size_t i = 0; i < cfg->n_oidc_issuers; i++) {
        const char *v = cfg->oidc_issuers[i];
        if (!sbx_str_has_prefix(v, "https://") && !sbx_str_has_prefix(v, "http://"))
            return sbx_error_set(err, SBX_ERR_INVALID,
                                 "--oidc-issuer '%s' is not an http(s) "
                                 "URL",
                                 v);
    }
    for (size_t i = 0; i < cfg->n_oidc_audiences; i++)
        if (!*cfg->oidc_audiences[i] || strlen(cfg->oidc_audiences[i]) > 512)
            return sbx_error_set(err, SBX_ERR_INVALID,
                                 "--oidc-audience must be 1 to 512 "
                                 "characters");
    if (cfg->issuer_url && !sbx_str_has_prefix(cfg->issuer_url, "https://") &&
        !sbx_str_has_prefix(cfg->issuer_url, "http://"))
        return sbx_error_set(err, SBX_ERR_INVALID, "--issuer-url must be an http(s) URL");
    if (cfg->signing_alg && strcmp(cfg->signing_alg, "RS256") && strcmp(cfg->signing_alg, "ES256"))
        return sbx_error_set(err, SBX_ERR_INVALID, "--signing-alg must be RS256 or ES256");
    return 0;
}

/* Set l's field from v; `what` names the flag or variable in errors.  */
static int set_num(sbx_config_t *cfg, const struct num_flag *l, const char *what, const char *v,
                   sbx_error_t *err)
{
    void *field = (char *)cfg + l->off;
    if (l->ratio)
        return parse_ratio(v, what, field, err);
    size_t n = 0;
    if (parse_size(v, what, l->min, l->max, &n, err) < 0)
        return -1;
    *(unsigned *)field = (unsigned)n;
    return 0;
}

static void from_env(sbx_config_t *cfg)
{
    static const struct {
        const char *var;
        size_t off;
    } strs[] = {
        {"SANDBOXD_LISTEN", offsetof(sbx_config_t, listen)},
        {"SANDBOXD_DATA_DIR", offsetof(sbx_config_t, data_dir)},
        {"SANDBOXD_TLS_CERT", offsetof(sbx_config_t, tls_cert)},
        {"SANDBOXD_TLS_KEY", offsetof(sbx_config_t, tls_key)},
        {"SANDBOXD_AUTH_TOKEN", offsetof(sbx_config_t, auth_token)},
        {"SANDBOXD_ADMIN_TOKEN", offsetof(sbx_config_t, admin_token)},
        {"SANDBOXD_AGENT_BIN", offsetof(sbx_config_t, agent_bin)},
        {"SANDBOXD_DEFAULT_IMAGE", offsetof(sbx_config_t, default_image)},
        {"SANDBOXD_LOG_LEVEL", offsetof(sbx_config_t, log_level)},
        {"SANDBOXD_ISSUER_URL", offsetof(sbx_config_t, issuer_url)},
        {"SANDBOXD_SIGNING_ALG", offsetof(sbx_config_t, signing_alg)},
        {"SANDBOXD_E2B_LISTEN", offsetof(sbx_config_t, e2b_listen)},
        {"SANDBOXD_E2B_GROUP", offsetof(sbx_config_t, e2b_group)},
        {"SANDBOXD_E2B_TEMPLATES", offsetof(sbx_config_t, e2b_templates)},
        {"SANDBOXD_EGRESS_POOL", offsetof(sbx_config_t, egress_pool)},
    };
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
        const char *v = getenv(strs[i].var);
        if (v && *v)
            set_str((char **)((char *)cfg + strs[i].off), v);
    }
    cfg->no_auth = env_flag("SANDBOXD_NO_AUTH");
    cfg->no_local_agent = env_flag("SANDBOXD_NO_LOCAL_AGENT");
    cfg->microvm_emulation = env_flag("SANDBOXD_MICROVM_EMULATION");
    cfg->sync_full = env_flag("SANDBOXD_SYNC_FULL");
    cfg->allow_private_registries = env_flag("SANDBOXD_ALLOW_PRIVATE_REGISTRIES");
    cfg->exec_webhook_allow_private = env_flag("SANDBOXD_EXEC_WEBHOOK_ALLOW_PRIVATE");
    const char *v = getenv("SANDBOXD_OIDC_ISSUERS");
    if (v)
        list_add_words(&cfg->oidc_issuers, &cfg->n_oidc_issuers, v);
    if ((v = getenv("SANDBOXD_OIDC_AUDIENCES")))
        list_add_words(&cfg->oidc_audiences, &cfg->n_oidc_audiences, v);
}

static int check(sbx_config_t *cfg, sbx_error_t *err)
{
    const char *v;
    if ((v = getenv("SANDBOXD_MAX_BODY")) && *v &&
        parse_size(v, "SANDBOXD_MAX_BODY", 1024, 64 << 20, &cfg->max_body, err) < 0)
        return -1;
    size_t threads = 0;
    if ((v = getenv("SANDBOXD_THREADS")) && *v) {
        if (parse_size(v, "SANDBOXD_THREADS", 0, 256, &threads, err) < 0)
            return -1;
        cfg->threads = (unsigned)threads;
    }
    for (size_t i = 0; i < ARRAY_SIZE(num_flags); i++)
        if ((v = getenv(num_flags[i].var)) && *v &&
            set_num(cfg, &num_flags[i], num_flags[i].var, v, err) < 0)
            return -1;
    return 0;
}

int sbx_config_parse(sbx_config_t *cfg, int argc, char **argv, sbx_error_t *err)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = xstrdup("127.0.0.1:8080");
    cfg->data_dir = xstrdup("sandboxd-data");
    cfg->max_body = 1024 * 1024;
    cfg->threads = 1;
    cfg->max_in_flight = 1024;
    cfg->max_in_flight_per_client = 256;
    cfg->max_connections = 16384;
    cfg->max_connections_per_address = 256;
    cfg->header_timeout = 10;
    from_env(cfg);
    if (check(cfg, err) < 0)
        return -1;
    optind = 1;
    opterr = 0;
    int c;
    size_t n = 0;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case O_LISTEN: set_str(&cfg->listen, optarg); break;
        case O_DATA_DIR: set_str(&cfg->data_dir, optarg); break;
        case O_TLS_CERT: set_str(&cfg->tls_cert, optarg); break;
        case O_TLS_KEY: set_str(&cfg->tls_key, optarg); break;
        case O_AUTH_TOKEN: set_str(&cfg->auth_token, optarg); break;
        case O_ADMIN_TOKEN: set_str(&cfg->admin_token, optarg); break;
        case O_NO_AUTH: cfg->no_auth = true; break;
        case O_NO_LOCAL_AGENT: cfg->no_local_agent = true; break;
        case O_AGENT_BIN: set_str(&cfg->agent_bin, optarg); break;
        case O_DEFAULT_IMAGE: set_str(&cfg->default_image, optarg); break;
        case O_MICROVM: cfg->microvm_emulation = true; break;
        case O_SYNC_FULL: cfg->sync_full = true; break;
        case O_LOG_LEVEL: set_str(&cfg->log_level, optarg); break;
        case O_ALLOW_PRIVATE_REGISTRIES: cfg->allow_private_registries = true; break;
        case O_EXEC_WEBHOOK_ALLOW_PRIVATE: cfg->exec_webhook_allow_private = true; break;
        case O_ISSUER_URL: set_str(&cfg->issuer_url, optarg); break;
        case O_SIGNING_ALG: set_str(&cfg->signing_alg, optarg); break;
        case O_OIDC_ISSUER: list_add(&cfg->oidc_issuers, &cfg->n_oidc_issuers, optarg); break;
        case O_OIDC_AUDIENCE: list_add(&cfg->oidc_audiences, &cfg->n_oidc_audiences, optarg); break;
        case O_E2B_LISTEN: set_str(&cfg->e2b_listen, optarg); break;
        case O_EGRESS_POOL: set_str(&cfg->egress_pool, optarg); break;
        case O_E2B_GROUP: set_str(&cfg->e2b_group, optarg); break;
        case O_E2B_TEMPLATES: set_str(&cfg->e2b_templates, optarg); break;
        case O_MAX_BODY:
            if (parse_size(optarg, "--max-body", 1024, 64 << 20, &cfg->max_body, err) < 0)
                return -1;
            break;
        case O_THREADS:
            if (parse_size(optarg, "--threads", 0, 256, &n, err) < 0)
                return -1;
            cfg->threads = (unsigned)n;
            break;
        case O_OC_CPU:
        case O_OC_MEMORY:
        case O_OC_DISK:
        case O_OC_PIDS:
        case O_PLACEMENT_TIMEOUT:
        case O_MAX_DISK:
        case O_MAX_IN_FLIGHT:
        case O_MAX_IN_FLIGHT_PER_CLIENT:
        case O_MAX_CONNECTIONS:
        case O_MAX_CONNECTIONS_PER_ADDRESS:
        case O_HEADER_TIMEOUT:
        case O_KEY_ROTATION:
            for (size_t i = 0; i < ARRAY_SIZE(num_flags); i++)
                if (num_flags[i].opt == c &&
                    set_num(cfg, &num_flags[i], num_flags[i].flag, optarg, err) < 0)
                    return -1;
            break;
        case O_HELP: fputs(usage, stdout); return 1;
        case O_VERSION: printf("sandboxd %s\n", SBX_VERSION); return 1;
        default:
            return sbx_error_set(err, SBX_ERR_INVALID,
                                 "unknown or incomplete option '%s' "
                                 "(see --help)",
                                 argv[optind - 1]);
        }
    }
    if (optind < argc)
        return sbx_error_set(err, SBX_ERR_INVALID, "unexpected argument '%s'", argv[optind]);
    /* An empty token would let "Authorization: Bearer " in.  */
    if ((cfg->auth_token && !*cfg->auth_token) || (cfg->admin_token && !*cfg->admin_token))
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "--auth-token and --admin-token must not be "
                             "empty");
    if (check_identity(cfg, err) < 0)
        return -1;
    if (!cfg->tls_cert != !cfg->tls_key)
        return sbx_error_set(err, SBX_ERR_INVALID, "--tls-cert and --tls-key go together");
    if (cfg->log_level && strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
        strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error"))
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "--log-level must be debug, info, warn or "
                             "error");
    return 0;
}

void sbx_config_done(sbx_config_t *cfg)
{
    char **strs[] = {&cfg->listen,        &cfg->data_dir,      &cfg->tls_cert,    &cfg->tls_key,
                     &cfg->auth_token,    &cfg->agent_bin,     &cfg->log_level,   &cfg->admin_token,
                     &cfg->default_image, &cfg->issuer_url,    &cfg->signing_alg, &cfg->e2b_listen,
                     &cfg->e2b_group,     &cfg->e2b_templates, &cfg->egress_pool};
    for (size_t i = 0; i < ARRAY_SIZE(strs); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    list_free(&cfg->oidc_issuers, &cfg->n_oidc_issuers);
    list_free(&cfg->oidc_audiences, &cfg->n_oidc_audiences);
}
