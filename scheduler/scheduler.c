/* scheduler.c -- the scheduler's life cycle: threads, wake-ups, and the
 * supervised local agent of the embedded default.  */
#include "scheduler/internal.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define LOCAL_HOST "local"
#define LOCAL_READY_MS 15000

struct local_agent {
    sched_local_agent_config_t cfg;
    char *bin, *data_dir, *pki_dir, *default_image, *egress_pool;
    char *identity_url, *identity_ca, *token_file;
    int64_t token_renew; /* wall-clock seconds */
    pthread_t thread;
    pid_t pid;
    int port;
    bool ready;
};

sched_t *sched_new(const sched_config_t *cfg, st_db_t *db, sbx_error_t *err)
{
    sched_t *s = xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    if (!s->cfg.workers)
        s->cfg.workers = 4;
    if (!s->cfg.health_interval_ms)
        s->cfg.health_interval_ms = 1000;
    if (!s->cfg.host_down_ms)
        s->cfg.host_down_ms = 5000;
    if (!s->cfg.reconcile_interval_ms)
        s->cfg.reconcile_interval_ms = 1000;
    if (!s->cfg.max_attempts)
        s->cfg.max_attempts = 5;
    if (!s->cfg.agent_timeout_ms)
        s->cfg.agent_timeout_ms = 60000;
    if (!(s->cfg.overcommit_cpu > 0))
        s->cfg.overcommit_cpu = 4.0;
    if (!(s->cfg.overcommit_memory > 0))
        s->cfg.overcommit_memory = 1.0;
    if (!(s->cfg.overcommit_disk > 0))
        s->cfg.overcommit_disk = 4.0;
    if (!(s->cfg.overcommit_pids > 0))
        s->cfg.overcommit_pids = 1.0;
    if (s->cfg.placement_wait_ms <= 0)
        s->cfg.placement_wait_ms = 600000;
    s->db = db;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->place_lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_cond_init(&s->rwake, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sched_place_rebuild(s);
    return s;
}

int sched_start(sched_t *s, sbx_error_t *err)
{
    s->workers = xcalloc(s->cfg.workers, sizeof(pthread_t));
    for (unsigned i = 0; i < s->cfg.workers; i++) {
        if (pthread_create(&s->workers[i], NULL, sched_worker_main, s) != 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "start worker");
        s->n_workers++;
    }
    if (pthread_create(&s->reconciler, NULL, sched_reconciler_main, s) != 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "start reconciler");
    s->started = true;
    return 0;
}

void sched_notify(sched_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->pending_wakeups++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

static void local_agent_stop(sched_t *s);

void sched_shutdown_begin(sched_t *s, int grace_ms)
{
    if (s)
        __atomic_store_n(&s->calls_end_ms, sbx_monotonic_ms() + grace_ms, __ATOMIC_RELAXED);
}

void sched_free(sched_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->wake);
    pthread_cond_broadcast(&s->rwake);
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    if (s->started)
        pthread_join(s->reconciler, NULL);
    local_agent_stop(s);
    /* Downloads see their client gone once the HTTP server stopped, and
     * their transfer aborts at its next progress check.  */
    pthread_mutex_lock(&s->lock);
    while (s->downloads > 0) {
        pthread_mutex_unlock(&s->lock);
        usleep(5000);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < s->n_curl; i++)
        curl_easy_cleanup(s->curl_pool[i]);
    free(s->curl_pool);
    free(s->workers);
    free(s->busy);
    free(s->loads);
    free(s->slots);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->place_lock);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->rwake);
    curl_global_cleanup();
    free(s);
}

/* ---- the local agent ---- */

static char *sibling_binary(const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return xstrdup(name);
    self[n] = '\0';
    return xasprintf("%s/%s", dirname(self), name);
}

static pid_t spawn_agent(local_agent_t *la)
{
    _cleanup_free_ char *listen = xasprintf("127.0.0.1:%d", la->port);
    _cleanup_free_ char *ca = xasprintf("%s/ca.pem", la->pki_dir);
    _cleanup_free_ char *cert = xasprintf("%s/agent.pem", la->pki_dir);
    _cleanup_free_ char *key = xasprintf("%s/agent.key", la->pki_dir);
    char *argv[28];
    size_t n = 0;
    argv[n++] = la->bin;
    argv[n++] = "--listen";
    argv[n++] = listen;
    argv[n++] = "--data-dir";
    argv[n++] = la->data_dir;
    argv[n++] = "--ca";
    argv[n++] = ca;
    argv[n++] = "--cert";
    argv[n++] = cert;
    argv[n++] = "--key";
    argv[n++] = key;
    if (la->default_image) {
        argv[n++] = "--default-image";
        argv[n++] = la->default_image;
    }
    if (la->cfg.microvm_emulation)
        argv[n++] = "--microvm-emulation";
    if (la->cfg.allow_private_registries)
        argv[n++] = "--allow-private-registries";
    if (la->egress_pool) {
        argv[n++] = "--egress-pool";
        argv[n++] = la->egress_pool;
    }
    if (la->identity_url) {
        argv[n++] = "--identity-url";
        argv[n++] = la->identity_url;
        argv[n++] = "--identity-token-file";
        argv[n++] = la->token_file;
        if (la->identity_ca) {
            argv[n++] = "--identity-ca";
            argv[n++] = la->identity_ca;
        }
    }
    argv[n] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* The agent stops (cleanly, sandboxes kept) when sandboxd dies, even
         * by SIGKILL, so a restarted sandboxd never finds two agents.  */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static bool wait_ready(sched_t *s, local_agent_t *la, pid_t pid)
{
    _cleanup_free_ char *url = xasprintf("https://127.0.0.1:%d", la->port);
    int64_t deadline = sbx_monotonic_ms() + LOCAL_READY_MS;
    while (sbx_monotonic_ms() < deadline) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return false;
        sched_reply_t r;
        bool ok = sched_call(s, url, "GET", "/v1/health", NULL, NULL, NULL, 0, 1000, &r) == 0 &&
                  r.status == 200;
        sched_reply_done(&r);
        if (ok)
            return sched_host_register(s, LOCAL_HOST, url, "default", NULL) == 0;
        usleep(20000);
    }
    return false;
}

/* The agent's host token for the identity endpoint, in a file it reads
 * at each request: written before it starts, renewed at half its life.  */
static void token_renew(local_agent_t *la)
{
    if (!la->identity_url || time(NULL) < la->token_renew)
        return;
    int64_t expires = 0;
    char *tok = la->cfg.host_token(la->cfg.host_token_ctx, LOCAL_HOST, &expires);
    sbx_error_t err = {0};
    if (!tok || sbx_mkdir_p(la->data_dir, 0700, &err) < 0 ||
        sbx_write_file_atomic(la->token_file, tok, strlen(tok), 0600, &err) < 0) {
        sbx_log(SBX_LOG_WARN, MODULE_NAME, "the local agent's identity token: %s",
                tok ? err.msg : "not minted");
        la->token_renew = time(NULL) + 10;
    } else {
        int64_t now = time(NULL);
        la->token_renew = now + (expires - now) / 2;
    }
    if (tok)
        OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
}

/* Wait for the agent to exit, renewing its token meanwhile.  */
static void wait_exit(local_agent_t *la, int *status)
{
    for (;;) {
        pid_t w = waitpid(la->pid, status, la->identity_url ? WNOHANG : 0);
        if (w == la->pid || (w < 0 && errno != EINTR))
            return;
        if (w == 0) {
            token_renew(la);
            usleep(250000);
        }
    }
}

static void *local_agent_main(void *arg)
{
    sched_t *s = arg;
    local_agent_t *la = s->local;
    int failures = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool stop = s->stopping;
        if (!stop) {
            token_renew(la);
            la->port = free_port();
            la->pid = spawn_agent(la);
        }
        pthread_mutex_unlock(&s->lock);
        if (stop || la->pid < 0)
            break;
        bool ok = wait_ready(s, la, la->pid);
        pthread_mutex_lock(&s->lock);
        la->ready = la->ready || ok;
        pthread_cond_broadcast(&s->rwake);
        pthread_mutex_unlock(&s->lock);
        if (!ok)
            sbx_log(SBX_LOG_ERROR, MODULE_NAME, "local sandbox-agent %s did not become ready",
                    la->bin);
        int status = 0;
        wait_exit(la, &status);
        pthread_mutex_lock(&s->lock);
        stop = s->stopping;
        la->pid = 0;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        failures = ok ? 0 : failures + 1;
        sbx_log(SBX_LOG_WARN, MODULE_NAME, "local sandbox-agent exited (status %d); restarting",
                status);
        usleep((useconds_t)(failures < 5 ? 200000 * (failures + 1) : 2000000));
    }
    return NULL;
}

int sched_local_agent_start(sched_t *s, const sched_local_agent_config_t *cfg, sbx_error_t *err)
{
    local_agent_t *la = xcalloc(1, sizeof(*la));
    la->cfg = *cfg;
    la->bin = cfg->agent_bin ? xstrdup(cfg->agent_bin) : sibling_binary("sandbox-agent");
    la->data_dir = xstrdup(cfg->data_dir);
    la->pki_dir = xstrdup(cfg->pki_dir);
    la->default_image = cfg->default_image ? xstrdup(cfg->default_image) : NULL;
    la->egress_pool =
        cfg->egress_pool && strcmp(cfg->egress_pool, "off") != 0 ? xstrdup(cfg->egress_pool) : NULL;
    la->cfg.egress_pool = NULL; /* not kept: la->egress_pool is the copy */
    if (cfg->identity_url && cfg->host_token) {
        la->identity_url = xstrdup(cfg->identity_url);
        la->identity_ca = cfg->identity_ca ? xstrdup(cfg->identity_ca) : NULL;
        la->token_file = xasprintf("%s/identity-token", la->data_dir);
    }
    la->cfg.identity_url = la->cfg.identity_ca = NULL;
    if (!la->default_image) {
        /* The build puts the embedded default image beside the binaries.  */
        char *dir = sibling_binary("default-image");
        _cleanup_free_ char *index = xasprintf("%s/index.json", dir);
        if (access(index, R_OK) == 0)
            la->default_image = dir;
        else
            free(dir);
    }
    s->local = la;
    if (access(la->bin, X_OK) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "local agent '%s'", la->bin);
    if (pthread_create(&la->thread, NULL, local_agent_main, s) != 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "start local agent supervisor");
    pthread_mutex_lock(&s->lock);
    int64_t deadline = sbx_monotonic_ms() + LOCAL_READY_MS + 1000;
    while (!la->ready && sbx_monotonic_ms() < deadline) {
        struct timespec ts = sbx_deadline_in(100);
        pthread_cond_timedwait(&s->rwake, &s->lock, &ts);
    }
    bool ready = la->ready;
    pthread_mutex_unlock(&s->lock);
    if (!ready)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                             "the local sandbox-agent did not become ready; see its log lines");
    return 0;
}

static void local_agent_stop(sched_t *s)
{
    local_agent_t *la = s->local;
    if (!la)
        return;
    pthread_mutex_lock(&s->lock);
    pid_t pid = la->pid;
    pthread_mutex_unlock(&s->lock);
    if (pid > 0)
        kill(pid, SIGTERM);
    if (la->thread)
        pthread_join(la->thread, NULL);
    free(la->bin);
    free(la->data_dir);
    free(la->pki_dir);
    free(la->default_image);
    free(la->egress_pool);
    free(la->identity_url);
    free(la->identity_ca);
    free(la->token_file);
    free(la);
    s->local = NULL;
}
