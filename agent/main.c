/* main.c -- sandbox-agent: reads its configuration, opens the image store and
 * the runtime, serves the API until SIGTERM or SIGINT, then shuts down
 * cleanly.  Sandboxes keep running across a restart of the agent.  */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MODULE "agent"

extern char **environ;

/* The handler only writes a byte to a pipe the main thread waits on: no
 * signal mask is changed, so processes the runtime starts inherit none.  */
static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig)
{
    int saved = errno;
    char c = (char)sig;
    (void)!write(stop_pipe[1], &c, 1);
    errno = saved;
}

static int setup_signals(sbx_error_t *err)
{
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "sigaction");
    /* A peer that hangs up mid-reply must not kill the agent.  */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Block until a stop signal arrives; returns its number.  */
static int wait_for_stop_signal(void)
{
    for (;;) {
        struct pollfd p = {.fd = stop_pipe[0], .events = POLLIN};
        (void)poll(&p, 1, -1);
        char c = 0;
        ssize_t n = read(stop_pipe[0], &c, 1);
        if (n == 1)
            return c;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return 0;
    }
}

static int read_pem(const char *what, const char *path, char **out, sbx_error_t *err)
{
    size_t len;
    if (sbx_read_file(path, out, &len, err) < 0) {
        sbx_error_wrap(err, "%s", what);
        return -1;
    }
    if (strlen(*out) != len || !strstr(*out, "-----BEGIN "))
        return sbx_error_set(err, SBX_ERR_INVALID, "%s: %s is not a PEM file", what, path);
    return 0;
}

/* The data directory holds sandbox specs (their env, secrets included) and
 * state: 0700, made so when it existed with wider bits.  */
static int private_dir(const char *dir, sbx_error_t *err)
{
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INVALID, "data-dir '%s' is not a directory", dir);
    if ((st.st_mode & 07777) == 0700)
        return 0;
    sbx_log(SBX_LOG_WARN, MODULE, "data directory '%s' had mode %04o; setting 0700", dir,
            (unsigned)(st.st_mode & 07777));
    if (chmod(dir, 0700) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "chmod '%s'", dir);
    return 0;
}

#define AGENT_SHUTDOWN_GRACE_MS 5000

typedef struct agent {
    char *ca, *cert, *key;
    img_store_t *img;
    rt_runtime_t *rt;
    egress_t *egress;
    char egress_pool[40];
    char *egress_unavailable; /* why egress is off though asked for */
    int pool_claim;           /* holds an automatic pool (egress_pool_pick) */
    agent_imds_server_t *imds;
    agent_api_t *api;
    http_server_t *http;
} agent_t;

static void agent_done(agent_t *a)
{
    /* A long exec is given up on (the command goes on) after a grace, so
     * the stop never waits on a sandbox.  */
    rt_shutdown_begin(a->rt, AGENT_SHUTDOWN_GRACE_MS);
    http_server_stop(a->http); /* first: no request may still use the rest */
    agent_api_free(a->api);
    agent_imds_server_stop(a->imds);
    if (a->rt)
        rt_set_net_hook(a->rt, NULL, NULL);
    egress_close(a->egress);
    if (a->pool_claim > 0)
        close(a->pool_claim);
    free(a->egress_unavailable);
    rt_close(a->rt);
    img_store_close(a->img);
    free(a->ca);
    free(a->cert);
    free(a->key);
}

/* Egress with a tag (nft table, interface names) from the data dir, so
 * agents on one host never share one.  */
static int egress_start(agent_t *a, const agent_config_t *cfg, sbx_error_t *err)
{
    char real[4096];
    const char *dir = realpath(cfg->data_dir, real) ? real : cfg->data_dir;
    uint32_t h = 2166136261u;
    for (const char *p = dir; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    char tag[8];
    snprintf(tag, sizeof tag, "%06x", h & 0xffffff);
    _cleanup_free_ char *state = xasprintf("%s/egress", cfg->data_dir);
    snprintf(a->egress_pool, sizeof a->egress_pool, "%s", cfg->egress_pool);
    if (strcmp(cfg->egress_pool, "auto") == 0 &&
        egress_pool_pick(tag, state, a->egress_pool, sizeof a->egress_pool, &a->pool_claim, err) <
            0)
        return sbx_error_wrap(err, "egress"), -1;
    uint16_t imds_port = 0;
    if (cfg->identity_url) {
        agent_imds_server_config_t ic = {.sandboxd_url = cfg->identity_url,
                                         .token_file = cfg->identity_token_file,
                                         .ca_file = cfg->identity_ca,
                                         .data_dir = cfg->data_dir};
        if (!(a->imds = agent_imds_server_start(&ic, &imds_port, err)))
            return sbx_error_wrap(err, "identity endpoint"), -1;
    }
    egress_config_t ec = {.pool = a->egress_pool,
                          .tag = tag,
                          .resolver = cfg->egress_resolver,
                          .pool6 = cfg->egress_pool6,
                          .state_dir = state,
                          .imds_port = imds_port};
    if (!(a->egress = egress_open(&ec, err)))
        return sbx_error_wrap(err, "egress"), -1;
    if (a->imds)
        agent_imds_server_set_egress(a->imds, a->egress);
    rt_set_net_hook(a->rt, agent_egress_boot, a->egress);
    agent_egress_recover(a->egress, a->rt);
    sbx_log(SBX_LOG_INFO, MODULE, "egress: links from %s, nft table sandboxd_%s", a->egress_pool,
            tag);
    return 0;
}

/* An explicit pool that does not work stops the agent (its operator asked
 * for that block); "auto" (sandboxd's default for its local agent) does
 * not: the agent runs, says in its health why egress is off, and a
 * sandbox with a policy reaches nothing and says so.  */
static int egress_start_or_report(agent_t *a, const agent_config_t *cfg, sbx_error_t *err)
{
    sbx_error_t eerr = {0};
    if (egress_start(a, cfg, &eerr) == 0)
        return 0;
    if (strcmp(cfg->egress_pool, "auto") != 0) {
        *err = eerr;
        return -1;
    }
    if (a->pool_claim > 0)
        close(a->pool_claim);
    a->pool_claim = 0;
    agent_imds_server_stop(a->imds);
    a->imds = NULL;
    a->egress_pool[0] = '\0';
    a->egress_unavailable = xstrdup(eerr.msg);
    sbx_log(SBX_LOG_ERROR, MODULE,
            "egress is unavailable: %s; sandboxes with an egress policy reach nothing", eerr.msg);
    return 0;
}

static int agent_start(agent_t *a, const agent_config_t *cfg, sbx_error_t *err)
{
    if (!cfg->insecure_http && (read_pem("--ca", cfg->ca_file, &a->ca, err) < 0 ||
                                read_pem("--cert", cfg->cert_file, &a->cert, err) < 0 ||
                                read_pem("--key", cfg->key_file, &a->key, err) < 0))
        return -1;
    if (sbx_mkdir_p(cfg->data_dir, 0700, err) < 0 || private_dir(cfg->data_dir, err) < 0)
        return -1;
    if (cfg->default_image) {
        struct stat st;
        if (stat(cfg->default_image, &st) < 0 || !S_ISDIR(st.st_mode))
            return sbx_error_set(err, SBX_ERR_INVALID, "--default-image: %s is not a directory",
                                 cfg->default_image);
    } else {
        sbx_log(SBX_LOG_WARN, MODULE,
                "no default image layout found; sandboxes must name an image");
    }

    _cleanup_free_ char *images = xasprintf("%s/images", cfg->data_dir);
    img_config_t ic = {.store_dir = images,
                       .default_layout = cfg->default_image,
                       .allow_private_registries = cfg->allow_private_registries,
                       .max_layer_bytes = cfg->max_layer_bytes,
                       .max_store_bytes = cfg->max_image_store_bytes};
    if (!(a->img = img_store_open(&ic, err)))
        return sbx_error_wrap(err, "image store"), -1;

    _cleanup_free_ char *state = xasprintf("%s/runtime", cfg->data_dir);
    rt_config_t rc = {.state_dir = state,
                      .cgroup_root = cfg->cgroup_parent,
                      .max_sandboxes = cfg->max_sandboxes,
                      .uid_start = cfg->uid_start,
                      .uid_count = cfg->uid_count,
                      .capacity_cpu = cfg->capacity_cpu,
                      .capacity_memory_mib = cfg->capacity_memory_mib,
                      .capacity_disk_mib = cfg->capacity_disk_mib,
                      .capacity_pids = cfg->capacity_pids,
                      .allow_microvm_emulation = cfg->microvm_emulation};
    if (!(a->rt = rt_open(&rc, err)))
        return sbx_error_wrap(err, "runtime"), -1;
    rt_health_t h;
    if (rt_health(a->rt, &h, NULL) == 0)
        sbx_log(SBX_LOG_INFO, MODULE, "sandboxes use host uids %u+%u and cgroup parent %s",
                h.uid_start, h.uid_count, h.cgroup_parent);

    if (cfg->egress_pool && egress_start_or_report(a, cfg, err) < 0)
        return -1;

    agent_api_config_t ac = {.rt = a->rt,
                             .img = a->img,
                             .data_dir = cfg->data_dir,
                             .environment = cfg->environment,
                             .egress = a->egress,
                             .egress_pool = a->egress_pool[0] ? a->egress_pool : NULL,
                             .egress_unavailable = a->egress_unavailable,
                             .imds = a->imds};
    if (!(a->api = agent_api_new(&ac, err)))
        return -1;

    /* The scheduler polls these every second.  */
    static const char *const quiet[] = {"/v1/health", "/v1/sandboxes", NULL};
    http_config_t hc = {
        .name = "sandbox-agent",
        .quiet_paths = quiet,
        .listen = cfg->listen,
        .tls_cert_pem = a->cert,
        .tls_key_pem = a->key,
        .client_ca_pem = a->ca,
        .max_body = AGENT_MAX_JSON_BODY,
        .access_log = true,
        .body_limit = agent_api_body_limit,
        .stream_body = agent_api_stream_body,
    };
    if (!(a->http = http_server_start(&hc, agent_api_http_handler, a->api, err)))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    /* A fixed umask, not the caller's (sandboxd runs with 077): the agent
     * builds image trees and sandbox files whose modes must be the ones
     * images and clients ask for, and its own state is private by explicit
     * modes (0600 files, 0700 directories) under a 0700 data directory.  */
    umask(022);
    agent_config_t cfg;
    agent_config_action_t action;
    sbx_error_t err = {0};
    if (agent_config_parse(&cfg, argc, argv, environ, stdout, &action, &err) < 0) {
        fprintf(stderr, "sandbox-agent: %s\nTry 'sandbox-agent --help'.\n", err.msg);
        agent_config_done(&cfg);
        return 2;
    }
    if (action == AGENT_CONFIG_EXIT) {
        agent_config_done(&cfg);
        return 0;
    }
    sbx_log_set_level(cfg.log_level);

    agent_t a = {0};
    int status = 0;
    if (setup_signals(&err) < 0 || agent_start(&a, &cfg, &err) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE, "cannot start: %s", err.msg);
        status = 1;
    } else {
        sbx_log(SBX_LOG_INFO, MODULE,
                "sandbox-agent %s listening on %s (port %d, %s), environment %s, data %s",
                SBX_VERSION, cfg.listen, http_server_port(a.http),
                cfg.insecure_http ? "plain HTTP" : "HTTPS with client certificates",
                cfg.environment, cfg.data_dir);
        int sig = wait_for_stop_signal();
        sbx_log(SBX_LOG_INFO, MODULE, "signal %d: shutting down", sig);
    }
    agent_done(&a);
    if (status == 0)
        sbx_log(SBX_LOG_INFO, MODULE, "stopped");
    agent_config_done(&cfg);
    return status;
}
