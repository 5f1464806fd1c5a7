/* e2b_front.c -- the listener of the E2B-compatible API: its own HTTP(S)
 * server, whose requests the e2b adapter turns into calls of the ARM
 * listener on loopback.  */
#include "server/e2b_front.h"

#include <string.h>

#include "e2b/e2b.h"
#include "http/http.h"

#define MODULE_NAME "server"

struct e2b_front {
    e2b_t *e2b;
    http_server_t *http;
};

static void handle(void *ctx, const http_request_t *req, http_response_t *res)
{
    e2b_handle(ctx, req, res);
}

static size_t body_limit(void *ctx, const char *method, const char *path)
{
    return e2b_body_limit(ctx, method, path);
}

static bool authenticated(void *ctx, const http_request_t *req)
{
    return e2b_has_credentials(ctx, req);
}

/* Every request with credentials, and /health, calls the ARM listener:
 * none of them runs on an event thread.  */
static bool run_apart(void *ctx, const http_request_t *req)
{
    return e2b_has_credentials(ctx, req) || strcmp(req->path, "/health") == 0;
}

/* The ARM listener as seen from this process: its host, or loopback for a
 * wildcard address.  */
static char *arm_url(const sbx_config_t *cfg, int port, bool tls)
{
    const char *l = cfg->listen;
    const char *colon = strrchr(l, ':');
    _cleanup_free_ char *host = xstrndup(l, colon ? (size_t)(colon - l) : strlen(l));
    const char *h = host;
    if (!*h || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "*") == 0)
        h = "127.0.0.1";
    else if (strcmp(h, "[::]") == 0 || strcmp(h, "::") == 0)
        h = "[::1]";
    return xasprintf("%s://%s:%d", tls ? "https" : "http", h, port);
}

e2b_front_t *e2b_front_start(const e2b_front_config_t *fc, sbx_error_t *err)
{
    const sbx_config_t *cfg = fc->cfg;
    e2b_front_t *f = xcalloc(1, sizeof(*f));
    _cleanup_free_ char *url = arm_url(cfg, fc->arm_port, fc->tls_cert != NULL);
    _cleanup_free_ char *state = xasprintf("%s/e2b", cfg->data_dir);
    e2b_config_t ec = {.arm_url = url,
                       .arm_token = fc->arm_token,
                       .group = cfg->e2b_group,
                       .templates = cfg->e2b_templates,
                       .secret_key = fc->secret_key,
                       .arm_insecure_tls = fc->tls_cert != NULL,
                       .max_body = cfg->max_body,
                       .state_dir = state};
    f->e2b = e2b_new(&ec, err);
    if (!f->e2b) {
        free(f);
        return NULL;
    }
    http_config_t hcfg = {
        .name = "sandboxd-e2b",
        .listen = cfg->e2b_listen,
        .tls_cert_pem = fc->tls_cert,
        .tls_key_pem = fc->tls_key,
        .max_body = cfg->max_body,
        .thread_pool = cfg->threads,
        .access_log = true,
        .body_limit = body_limit,
        .run_apart = run_apart,
        .max_in_flight = cfg->max_in_flight,
        .max_in_flight_per_client = cfg->max_in_flight_per_client,
        .max_connections = cfg->max_connections,
        .max_connections_per_address = cfg->max_connections_per_address,
        .header_timeout_ms = cfg->header_timeout * 1000,
        .authenticated = authenticated,
    };
    f->http = http_server_start(&hcfg, handle, f->e2b, err);
    if (!f->http) {
        e2b_free(f->e2b);
        free(f);
        return NULL;
    }
    sbx_log(SBX_LOG_INFO, MODULE_NAME, "E2B-compatible API on %s://%s (port %d), over %s",
            fc->tls_cert ? "https" : "http", cfg->e2b_listen, http_server_port(f->http), url);
    return f;
}

void e2b_front_shutdown_begin(e2b_front_t *f)
{
    if (f)
        e2b_shutdown_begin(f->e2b);
}

void e2b_front_stop(e2b_front_t *f)
{
    if (!f)
        return;
    http_server_stop(f->http);
    e2b_free(f->e2b);
    free(f);
}
