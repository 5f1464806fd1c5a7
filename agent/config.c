/* config.c -- sandbox-agent's command line and SANDBOX_AGENT_* environment.  */
#include "agent/agent.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_LISTEN "127.0.0.1:9443"
#define DEFAULT_DATA_DIR "/var/lib/sandbox-agent"
#define DEFAULT_ENVIRONMENT "default"
#define MAX_SANDBOXES_LIMIT 100000

enum {
    OPT_LISTEN = 256,
    OPT_DATA_DIR,
    OPT_CA,
    OPT_CERT,
    OPT_KEY,
    OPT_ENVIRONMENT,
    OPT_INSECURE_HTTP,
    OPT_MICROVM_EMULATION,
    OPT_DEFAULT_IMAGE,
    OPT_MAX_SANDBOXES,
    OPT_CAPACITY_CPU,
    OPT_CAPACITY_MEMORY,
    OPT_CAPACITY_DISK,
    OPT_CAPACITY_PIDS,
    OPT_CGROUP_PARENT,
    OPT_UID_RANGE,
    OPT_LOG_LEVEL,
    OPT_ALLOW_PRIVATE_REGISTRIES,
    OPT_MAX_LAYER_SIZE,
    OPT_MAX_IMAGE_STORE_SIZE,
    OPT_EGRESS_POOL,
    OPT_EGRESS_RESOLVER,
    OPT_EGRESS_POOL6,
    OPT_IDENTITY_URL,
    OPT_IDENTITY_TOKEN_FILE,
    OPT_IDENTITY_CA,
    OPT_HELP,
    OPT_VERSION,
};

/* Every flag with the environment variable that also sets it.  */
static const struct flag {
    struct option opt;
    const char *env;
    const char *arg;
    const char *help;
} flags[] = {
    {{"listen", required_argument, NULL, OPT_LISTEN},
     "SANDBOX_AGENT_LISTEN",
     "HOST:PORT",
     "address to serve the API on (default " DEFAULT_LISTEN ")"},
    {{"data-dir", required_argument, NULL, OPT_DATA_DIR},
     "SANDBOX_AGENT_DATA_DIR",
     "DIR",
     "state: sandboxes, images (default " DEFAULT_DATA_DIR ")"},
    {{"ca", required_argument, NULL, OPT_CA},
     "SANDBOX_AGENT_CA",
     "FILE",
     "CA (PEM) that must have signed callers' client certificates"},
    {{"cert", required_argument, NULL, OPT_CERT},
     "SANDBOX_AGENT_CERT",
     "FILE",
     "server certificate (PEM)"},
    {{"key", required_argument, NULL, OPT_KEY},
     "SANDBOX_AGENT_KEY",
     "FILE",
     "server private key (PEM)"},
    {{"environment", required_argument, NULL, OPT_ENVIRONMENT},
     "SANDBOX_AGENT_ENVIRONMENT",
     "LABEL",
     "host pool this agent serves (default " DEFAULT_ENVIRONMENT ")"},
    {{"insecure-http", no_argument, NULL, OPT_INSECURE_HTTP},
     "SANDBOX_AGENT_INSECURE_HTTP",
     NULL,
     "serve plain HTTP without client certificates (loopback only)"},
    {{"microvm-emulation", no_argument, NULL, OPT_MICROVM_EMULATION},
     "SANDBOX_AGENT_MICROVM_EMULATION",
     NULL,
     "allow the microvm driver without working KVM"},
    {{"default-image", required_argument, NULL, OPT_DEFAULT_IMAGE},
     "SANDBOX_AGENT_DEFAULT_IMAGE",
     "DIR",
     "OCI layout of the default image (default DATA_DIR/../default-image)"},
    {{"max-sandboxes", required_argument, NULL, OPT_MAX_SANDBOXES},
     "SANDBOX_AGENT_MAX_SANDBOXES",
     "N",
     "sandbox slots (default: derived from memory)"},
    {{"capacity-cpu", required_argument, NULL, OPT_CAPACITY_CPU},
     "SANDBOX_AGENT_CAPACITY_CPU",
     "CORES",
     "report at most this many cores (keep the rest for the host)"},
    {{"capacity-memory-mib", required_argument, NULL, OPT_CAPACITY_MEMORY},
     "SANDBOX_AGENT_CAPACITY_MEMORY_MIB",
     "MIB",
     "report at most this much memory"},
    {{"capacity-disk-mib", required_argument, NULL, OPT_CAPACITY_DISK},
     "SANDBOX_AGENT_CAPACITY_DISK_MIB",
     "MIB",
     "report at most this much for writable layers (tmpfs: RAM)"},
    {{"capacity-pids", required_argument, NULL, OPT_CAPACITY_PIDS},
     "SANDBOX_AGENT_CAPACITY_PIDS",
     "N",
     "report at most this many pids for all sandboxes (default 3/4 of pid_max)"},
    {{"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},
     "SANDBOX_AGENT_CGROUP_PARENT",
     "NAME",
     "parent cgroup of the sandboxes (default sandboxd-<hash of the data dir>); one per "
     "agent on a host"},
    {{"uid-range", required_argument, NULL, OPT_UID_RANGE},
     "SANDBOX_AGENT_UID_RANGE",
     "START:COUNT",
     "host uids for the sandboxes, COUNT a multiple of 65536 (default: a free "
     "range of this host, kept across restarts)"},
    {{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
     "SANDBOX_AGENT_LOG_LEVEL",
     "LEVEL",
     "debug, info, warn or error (default info)"},
    {{"allow-private-registries", no_argument, NULL, OPT_ALLOW_PRIVATE_REGISTRIES},
     "SANDBOX_AGENT_ALLOW_PRIVATE_REGISTRIES",
     NULL,
     "pull from registries at loopback, private and link-local addresses too"},
    {{"max-layer-size", required_argument, NULL, OPT_MAX_LAYER_SIZE},
     "SANDBOX_AGENT_MAX_LAYER_SIZE",
     "BYTES",
     "largest image layer pulled, compressed or unpacked (default 4G)"},
    {{"max-image-store-size", required_argument, NULL, OPT_MAX_IMAGE_STORE_SIZE},
     "SANDBOX_AGENT_MAX_IMAGE_STORE_SIZE",
     "BYTES",
     "most the image store may hold (default: half its file system)"},
    {{"egress-pool", required_argument, NULL, OPT_EGRESS_POOL},
     "SANDBOX_AGENT_EGRESS_POOL",
     "CIDR|auto",
     "IPv4 block (/16../28) for sandboxes' egress links, or auto (a free /20 of "
     "100.64.0.0/10, checked against the host's routes); without it egress policies are not "
     "enforced and every sandbox reaches nothing (one block per agent on a host)"},
    {{"egress-resolver", required_argument, NULL, OPT_EGRESS_RESOLVER},
     "SANDBOX_AGENT_EGRESS_RESOLVER",
     "ADDR[:PORT]",
     "DNS server the egress proxy and the sandboxes' resolver ask (default: the host's)"},
    {{"egress-pool6", required_argument, NULL, OPT_EGRESS_POOL6},
     "SANDBOX_AGENT_EGRESS_POOL6",
     "CIDR|off",
     "IPv6 /64 for sandboxes' egress links, or off (default: a /64 of fd5b:d0::/32 from the "
     "agent's tag; none on a host without IPv6)"},
    {{"identity-url", required_argument, NULL, OPT_IDENTITY_URL},
     "SANDBOX_AGENT_IDENTITY_URL",
     "URL",
     "sandboxd's URL: sandboxes with a managed identity get tokens at 169.254.169.254 "
     "(needs egress and --identity-token-file)"},
    {{"identity-token-file", required_argument, NULL, OPT_IDENTITY_TOKEN_FILE},
     "SANDBOX_AGENT_IDENTITY_TOKEN_FILE",
     "FILE",
     "this host's token for sandboxd (POST /admin/tokens {\"host\": NAME}), read at each "
     "identity request"},
    {{"identity-ca", required_argument, NULL, OPT_IDENTITY_CA},
     "SANDBOX_AGENT_IDENTITY_CA",
     "FILE",
     "CA certificates for an https --identity-url (default: the system's)"},
    {{"help", no_argument, NULL, OPT_HELP}, NULL, NULL, "show this help and exit"},
    {{"version", no_argument, NULL, OPT_VERSION}, NULL, NULL, "show the version and exit"},
};

static void print_help(FILE *out)
{
    fprintf(out, "Usage: sandbox-agent --listen HOST:PORT --data-dir DIR --ca FILE --cert FILE "
                 "--key FILE [OPTION]...\n"
                 "Runs sandboxes on this host for sandboxd, behind an HTTPS API that answers "
                 "only\ncallers with a client certificate signed by the CA.\n\n");
    for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", flags[i].opt.name, flags[i].arg ? " " : "",
                 flags[i].arg ? flags[i].arg : "");
        fprintf(out, "  %-28s %s\n", left, flags[i].help);
        if (flags[i].env)
            fprintf(out, "  %-28s (env %s%s)\n", "", flags[i].env, flags[i].arg ? "" : "=1");
    }
    fprintf(out, "\nSANDBOXD_MICROVM_EMULATION=1 is accepted too.  Exits 0 on SIGTERM or SIGINT "
                 "after a clean\nshutdown; running sandboxes keep running.\n");
}

static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

static int parse_bool(const char *name, const char *v, bool *out, sbx_error_t *err)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
        if (strcasecmp(v, yes[i]) == 0)
            return *out = true, 0;
    for (size_t i = 0; i < ARRAY_SIZE(no); i++)
        if (strcasecmp(v, no[i]) == 0)
            return *out = false, 0;
    return sbx_error_set(err, SBX_ERR_INVALID, "%s: '%s' is not a boolean", name, v);
}

static int parse_max_sandboxes(const char *v, unsigned *out, sbx_error_t *err)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end || errno || n > MAX_SANDBOXES_LIMIT)
        return sbx_error_set(err, SBX_ERR_INVALID, "max-sandboxes: '%s' is not a number 0..%d", v,
                             MAX_SANDBOXES_LIMIT);
    *out = (unsigned)n;
    return 0;
}

/* "START:COUNT", both decimal; the runtime checks the range itself.  */
static int parse_uid_range(const char *v, uint32_t *start, uint32_t *count, sbx_error_t *err)
{
    char *colon, *end;
    unsigned long s = 0, c = 0;
    bool ok = isdigit((unsigned char)v[0]);
    if (ok) {
        errno = 0;
        s = strtoul(v, &colon, 10);
        ok = !errno && *colon == ':' && isdigit((unsigned char)colon[1]) && s <= UINT32_MAX;
    }
    if (ok) {
        c = strtoul(colon + 1, &end, 10);
        ok = !errno && !*end && c <= UINT32_MAX;
    }
    if (!ok)
        return sbx_error_set(err, SBX_ERR_INVALID, "uid-range: '%s' is not START:COUNT", v);
    if (rt_uid_range_check((uint32_t)s, (uint32_t)c, err) < 0)
        return sbx_error_wrap(err, "uid-range"), -1;
    *start = (uint32_t)s;
    *count = (uint32_t)c;
    return 0;
}

/* A capacity cap: a positive number (cores may be fractional).  */
static int parse_capacity(const char *name, const char *v, bool fraction, double *out,
                          sbx_error_t *err)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (!isdigit((unsigned char)v[0]) || *end || errno || !(d > 0 && d <= 1e12) ||
        (!fraction && d != (double)(uint64_t)d))
        return sbx_error_set(err, SBX_ERR_INVALID, "%s: '%s' is not a positive %s", name, v,
                             fraction ? "number" : "integer");
    *out = d;
    return 0;
}

static int parse_capacity_u64(const char *name, const char *v, uint64_t *out, sbx_error_t *err)
{
    double d;
    if (parse_capacity(name, v, false, &d, err) < 0)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

/* A size in bytes, with an optional K, M, G or T (powers of 1024, "iB"
 * allowed): "4G", "512MiB", "1048576".  */
static int parse_bytes(const char *name, const char *v, uint64_t *out, sbx_error_t *err)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    int shift = 0;
    const char *units = "KMGT";
    const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (u) {
        shift = 10 * (int)(u - units + 1);
        end++;
        if (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0)
            end += strlen(end);
    }
    if (!isdigit((unsigned char)v[0]) || *end || errno || n == 0 || (n << shift) >> shift != n)
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "%s: '%s' is not a size in bytes (a number, K, M, G or T after it)",
                             name, v);
    *out = (uint64_t)n << shift;
    return 0;
}

static int parse_log_level(const char *v, sbx_log_level_t *out, sbx_error_t *err)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strcasecmp(v, names[i]) == 0)
            return *out = (sbx_log_level_t)i, 0;
    return sbx_error_set(err, SBX_ERR_INVALID, "log-level: '%s' is not debug|info|warn|error", v);
}

static void set_str(char **field, const char *v)
{
    free(*field);
    *field = xstrdup(v);
}

/* Apply one setting, from a flag or from the environment.  */
static int apply(agent_config_t *cfg, int opt, const char *name, const char *v, sbx_error_t *err)
{
    switch (opt) {
    case OPT_LISTEN: set_str(&cfg->listen, v); return 0;
    case OPT_DATA_DIR: set_str(&cfg->data_dir, v); return 0;
    case OPT_CA: set_str(&cfg->ca_file, v); return 0;
    case OPT_CERT: set_str(&cfg->cert_file, v); return 0;
    case OPT_KEY: set_str(&cfg->key_file, v); return 0;
    case OPT_ENVIRONMENT: set_str(&cfg->environment, v); return 0;
    case OPT_DEFAULT_IMAGE: set_str(&cfg->default_image, v); return 0;
    case OPT_CGROUP_PARENT: set_str(&cfg->cgroup_parent, v); return 0;
    case OPT_INSECURE_HTTP: return parse_bool(name, v ? v : "1", &cfg->insecure_http, err);
    case OPT_MICROVM_EMULATION: return parse_bool(name, v ? v : "1", &cfg->microvm_emulation, err);
    case OPT_MAX_SANDBOXES: return parse_max_sandboxes(v, &cfg->max_sandboxes, err);
    case OPT_UID_RANGE: return parse_uid_range(v, &cfg->uid_start, &cfg->uid_count, err);
    case OPT_CAPACITY_CPU: return parse_capacity(name, v, true, &cfg->capacity_cpu, err);
    case OPT_CAPACITY_MEMORY: return parse_capacity_u64(name, v, &cfg->capacity_memory_mib, err);
    case OPT_CAPACITY_DISK: return parse_capacity_u64(name, v, &cfg->capacity_disk_mib, err);
    case OPT_CAPACITY_PIDS: return parse_capacity_u64(name, v, &cfg->capacity_pids, err);
    case OPT_LOG_LEVEL: return parse_log_level(v, &cfg->log_level, err);
    case OPT_ALLOW_PRIVATE_REGISTRIES:
        return parse_bool(name, v ? v : "1", &cfg->allow_private_registries, err);
    case OPT_MAX_LAYER_SIZE: return parse_bytes(name, v, &cfg->max_layer_bytes, err);
    case OPT_MAX_IMAGE_STORE_SIZE: return parse_bytes(name, v, &cfg->max_image_store_bytes, err);
    case OPT_EGRESS_POOL: set_str(&cfg->egress_pool, v); return 0;
    case OPT_EGRESS_RESOLVER: set_str(&cfg->egress_resolver, v); return 0;
    case OPT_EGRESS_POOL6: set_str(&cfg->egress_pool6, v); return 0;
    case OPT_IDENTITY_URL: set_str(&cfg->identity_url, v); return 0;
    case OPT_IDENTITY_TOKEN_FILE: set_str(&cfg->identity_token_file, v); return 0;
    case OPT_IDENTITY_CA: set_str(&cfg->identity_ca, v); return 0;
    }
    return sbx_error_set(err, SBX_ERR_INTERNAL, "unhandled option %d", opt);
}

bool agent_listen_is_loopback(const char *listen)
{
    _cleanup_free_ char *host = xstrdup(listen);
    char *colon = strrchr(host, ':');
    if (!colon)
        return false;
    *colon = '\0';
    char *h = host;
    if (h[0] == '[') {
        size_t n = strlen(h);
        if (n < 2 || h[n - 1] != ']')
            return false;
        h[n - 1] = '\0';
        h++;
    }
    if (strcasecmp(h, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static bool label_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The default image's layout when none was named: beside the data
 * directory, else where the build put it.  */
static char *find_default_image(const char *data_dir)
{
    char *beside = xasprintf("%s/../default-image", data_dir);
    if (is_dir(beside))
        return beside;
    free(beside);
#ifdef SBX_DEFAULT_IMAGE_DIR
    if (is_dir(SBX_DEFAULT_IMAGE_DIR))
        return xstrdup(SBX_DEFAULT_IMAGE_DIR);
#endif
    return NULL;
}

static int validate(agent_config_t *cfg, sbx_error_t *err)
{
    if (!cfg->listen[0] || !strchr(cfg->listen, ':'))
        return sbx_error_set(err, SBX_ERR_INVALID, "listen: '%s' is not HOST:PORT", cfg->listen);
    if (!cfg->data_dir[0])
        return sbx_error_set(err, SBX_ERR_INVALID, "data-dir must not be empty");
    if (!label_valid(cfg->environment))
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "environment: '%s' is not a label ([A-Za-z0-9][A-Za-z0-9._-]{0,62})",
                             cfg->environment);
    if (cfg->cgroup_parent && !label_valid(cfg->cgroup_parent))
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "cgroup-parent: '%s' is not a name ([A-Za-z0-9][A-Za-z0-9._-]{0,62})",
                             cfg->cgroup_parent);
    if (cfg->insecure_http) {
        /* Without TLS nobody is authenticated: only this host may call.  */
        if (!agent_listen_is_loopback(cfg->listen))
            return sbx_error_set(err, SBX_ERR_INVALID,
                                 "insecure-http: '%s' is not a loopback address", cfg->listen);
    } else if (!cfg->ca_file || !cfg->cert_file || !cfg->key_file) {
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "--ca, --cert and --key are required (or --insecure-http on "
                             "loopback)");
    }
    if (cfg->identity_url &&
        (!cfg->identity_token_file || (strncmp(cfg->identity_url, "http://", 7) != 0 &&
                                       strncmp(cfg->identity_url, "https://", 8) != 0)))
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "identity-url must be an http(s) URL and comes with "
                             "--identity-token-file");
    if (!cfg->default_image)
        cfg->default_image = find_default_image(cfg->data_dir);
    return 0;
}

static void apply_defaults(agent_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = xstrdup(DEFAULT_LISTEN);
    cfg->data_dir = xstrdup(DEFAULT_DATA_DIR);
    cfg->environment = xstrdup(DEFAULT_ENVIRONMENT);
    cfg->log_level = SBX_LOG_INFO;
}

static int apply_env(agent_config_t *cfg, char **envp, sbx_error_t *err)
{
    const char *v = env_get(envp, "SANDBOXD_MICROVM_EMULATION");
    if (v && parse_bool("SANDBOXD_MICROVM_EMULATION", v, &cfg->microvm_emulation, err) < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(flags); i++) {
        if (!flags[i].env || !(v = env_get(envp, flags[i].env)))
            continue;
        if (apply(cfg, flags[i].opt.val, flags[i].env, v, err) < 0)
            return -1;
    }
    return 0;
}

static int apply_argv(agent_config_t *cfg, int argc, char **argv, FILE *out,
                      agent_config_action_t *action, sbx_error_t *err)
{
    struct option longopts[ARRAY_SIZE(flags) + 1];
    for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
        longopts[i] = flags[i].opt;
    longopts[ARRAY_SIZE(flags)] = (struct option){0};

    /* optind 0 makes getopt start afresh, so this can run more than once.  */
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
        if (c == OPT_HELP) {
            print_help(out);
            *action = AGENT_CONFIG_EXIT;
            return 0;
        }
        if (c == OPT_VERSION) {
            fprintf(out, "sandbox-agent %s\n", SBX_VERSION);
            *action = AGENT_CONFIG_EXIT;
            return 0;
        }
        if (c == '?' || c == ':')
            return sbx_error_set(err, SBX_ERR_INVALID, "unknown option or missing argument: %s",
                                 argv[optind > 0 && optind <= argc ? optind - 1 : 0]);
        const char *name = "option";
        for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
            if (flags[i].opt.val == c)
                name = flags[i].opt.name;
        if (apply(cfg, c, name, optarg, err) < 0)
            return -1;
    }
    if (optind < argc)
        return sbx_error_set(err, SBX_ERR_INVALID, "unexpected argument: %s", argv[optind]);
    return 0;
}

int agent_config_parse(agent_config_t *cfg, int argc, char **argv, char **envp, FILE *out,
                       agent_config_action_t *action, sbx_error_t *err)
{
    apply_defaults(cfg);
    *action = AGENT_CONFIG_RUN;
    if (apply_env(cfg, envp, err) < 0 || apply_argv(cfg, argc, argv, out, action, err) < 0)
        return -1;
    if (*action == AGENT_CONFIG_EXIT)
        return 0;
    return validate(cfg, err);
}

void agent_config_done(agent_config_t *cfg)
{
    free(cfg->listen);
    free(cfg->data_dir);
    free(cfg->ca_file);
    free(cfg->cert_file);
    free(cfg->key_file);
    free(cfg->environment);
    free(cfg->default_image);
    free(cfg->cgroup_parent);
    free(cfg->egress_pool);
    free(cfg->egress_resolver);
    free(cfg->egress_pool6);
    free(cfg->identity_url);
    free(cfg->identity_token_file);
    free(cfg->identity_ca);
    memset(cfg, 0, sizeof(*cfg));
}
