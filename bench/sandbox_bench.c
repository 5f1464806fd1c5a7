/* sandbox_bench.c -- sandboxes through the ARM API of a real sandboxd with
 * its local agent: PUT-to-Running (cold, and from a warm pool), and exec
 * round trips through sandboxd against the same exec sent straight to the
 * agent (the baseline).  Prints medians and p99s.
 *
 *   sandbox_bench [-n N] [-e EXECS] BUILD_DIR DEFAULT_IMAGE_LAYOUT  */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "common/common.h"

#define SUB "00000000-0000-0000-0000-00000000be0c"
#define TOKEN "bench-token"
#define API "?api-version=2026-07-01"

static char g_base[64];
static CURL *g_curl;

typedef struct buf {
    char *data;
    size_t len;
} buf_t;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    buf_t *b = ud;
    b->data = xrealloc(b->data, b->len + size * n + 1);
    memcpy(b->data + b->len, p, size * n);
    b->len += size * n;
    b->data[b->len] = '\0';
    return size * n;
}

/* One call on a kept-alive connection; returns the status, body in *out.  */
static const char *g_bearer = "Authorization: Bearer " TOKEN;

static long call(CURL *c, const char *method, const char *url, const char *body, json_t **out,
                 const char *cert_dir)
{
    buf_t b = {0};
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, g_bearer);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (cert_dir) {
        char ca[512], cert[512], key[512];
        snprintf(ca, sizeof(ca), "%s/ca.pem", cert_dir);
        snprintf(cert, sizeof(cert), "%s/client.pem", cert_dir);
        snprintf(key, sizeof(key), "%s/client.key", cert_dir);
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
        curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    }
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    if (out)
        *out = b.data ? json_loads(b.data, 0, NULL) : NULL;
    free(b.data);
    return status;
}

static char *url_of(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *url_of(const char *fmt, ...)
{
    char path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return xasprintf("%s/subscriptions/" SUB "/resourceGroups/bench/providers/Microsoft.App/"
                     "sandboxGroups/%s" API,
                     g_base, path);
}

static const char *prop(json_t *j, const char *k)
{
    return json_string_value(json_object_get(json_object_get(j, "properties"), k));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    printf("%-44s n=%-4zu median %8.2f ms   p99 %8.2f ms\n", what, n, v[n / 2],
           v[(size_t)((double)(n - 1) * 0.99)]);
}

static bool wait_running(const char *url, int timeout_ms)
{
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    while (sbx_monotonic_ms() < deadline) {
        json_t *j = NULL;
        call(g_curl, "GET", url, NULL, &j, NULL);
        const char *st = prop(j, "state");
        bool ok = st && strcmp(st, "Running") == 0;
        json_decref(j);
        if (ok)
            return true;
        usleep(1000);
    }
    return false;
}

static void bench_cold(int n)
{
    char *g = url_of("cold");
    call(g_curl, "PUT", g, "{\"location\":\"local\"}", NULL, NULL);
    double *t = xcalloc((size_t)n, sizeof(double));
    for (int i = 0; i < n; i++) {
        char *u = url_of("cold/sandboxes/s%d", i);
        int64_t t0 = sbx_monotonic_us();
        if (call(g_curl, "PUT", u, "{\"properties\":{}}", NULL, NULL) != 201 ||
            !wait_running(u, 30000)) {
            fprintf(stderr, "cold create %d failed\n", i);
            exit(1);
        }
        t[i] = (double)(sbx_monotonic_us() - t0) / 1000.0;
        free(u);
    }
    report("PUT to Running, cold (image cached)", t, (size_t)n);
    free(t);
    call(g_curl, "DELETE", g, NULL, NULL, NULL);
    free(g);
}

static void bench_warm(int n)
{
    char *g = url_of("warm");
    char body[128];
    snprintf(body, sizeof(body),
             "{\"location\":\"local\",\"properties\":{\"scale\":{\"readySandboxes\":%d,"
             "\"maxSandboxes\":%d}}}",
             n, n + 10);
    call(g_curl, "PUT", g, body, NULL, NULL);
    /* the pool fills at 4 a second */
    sleep((unsigned)(n / 4 + 3));
    double *t = xcalloc((size_t)n, sizeof(double));
    int warm = 0;
    for (int i = 0; i < n; i++) {
        char *u = url_of("warm/sandboxes/w%d", i);
        json_t *j = NULL;
        int64_t t0 = sbx_monotonic_us();
        long st = call(g_curl, "PUT", u, "{\"properties\":{}}", &j, NULL);
        double ms = (double)(sbx_monotonic_us() - t0) / 1000.0;
        const char *state = prop(j, "state");
        if (st == 201 && state && strcmp(state, "Running") == 0)
            t[warm++] = ms;
        json_decref(j);
        free(u);
    }
    if (warm > 0)
        report("PUT to Running, warm pool", t, (size_t)warm);
    printf("  (%d of %d creates were served by the pool)\n", warm, n);
    free(t);
    call(g_curl, "DELETE", g, NULL, NULL, NULL);
    free(g);
}

static void bench_exec(int n, const char *pki)
{
    char *g = url_of("exec");
    call(g_curl, "PUT", g, "{\"location\":\"local\"}", NULL, NULL);
    char *s = url_of("exec/sandboxes/e1");
    call(g_curl, "PUT", s, "{\"properties\":{}}", NULL, NULL);
    if (!wait_running(s, 30000)) {
        fprintf(stderr, "exec sandbox did not start\n");
        exit(1);
    }
    json_t *sb = NULL;
    call(g_curl, "GET", s, NULL, &sb, NULL);
    char *e = url_of("exec/sandboxes/e1/exec");
    const char *body = "{\"command\":[\"true\"]}";
    double *via = xcalloc((size_t)n, sizeof(double)), *direct = xcalloc((size_t)n, sizeof(double));
    for (int i = 0; i < n; i++) {
        int64_t t0 = sbx_monotonic_us();
        if (call(g_curl, "POST", e, body, NULL, NULL) != 200) {
            fprintf(stderr, "exec failed\n");
            exit(1);
        }
        via[i] = (double)(sbx_monotonic_us() - t0) / 1000.0;
    }
    report("exec round trip through sandboxd", via, (size_t)n);
    /* The same exec straight to the agent (mutual TLS, kept alive): the
     * baseline for what sandboxd adds.  Run first, so e1 is the agent's
     * only sandbox.  */
    char *admin_tok = NULL;
    char *tok_path = xasprintf("%s/../admin-token", pki);
    size_t len = 0;
    if (sbx_read_file(tok_path, &admin_tok, &len, NULL) == 0) {
        while (len > 0 && admin_tok[len - 1] == '\n')
            admin_tok[--len] = '\0';
        char *bearer = xasprintf("Authorization: Bearer %s", admin_tok);
        g_bearer = bearer;
        char *admin = xasprintf("%s/admin/hosts/local", g_base);
        json_t *h = NULL;
        call(g_curl, "GET", admin, NULL, &h, NULL);
        g_bearer = "Authorization: Bearer " TOKEN;
        const char *agent = json_string_value(json_object_get(h, "url"));
        CURL *c = curl_easy_init();
        char *list = xasprintf("%s/v1/sandboxes", agent ? agent : "");
        json_t *l = NULL;
        call(c, "GET", list, NULL, &l, pki);
        const char *id = json_string_value(
            json_object_get(json_array_get(json_object_get(l, "value"), 0), "id"));
        char *ex = xasprintf("%s/v1/sandboxes/%s/exec", agent ? agent : "", id ? id : "none");
        int ok = 0;
        for (int i = 0; i < n; i++) {
            int64_t t0 = sbx_monotonic_us();
            if (call(c, "POST", ex, body, NULL, pki) == 200)
                direct[ok++] = (double)(sbx_monotonic_us() - t0) / 1000.0;
        }
        if (ok > 0) {
            report("exec round trip straight to the agent", direct, (size_t)ok);
            printf("  sandboxd adds %.2f ms to the median exec\n", via[n / 2] - direct[ok / 2]);
        }
        free(ex);
        free(list);
        json_decref(l);
        json_decref(h);
        free(admin);
        free(bearer);
        curl_easy_cleanup(c);
    }
    free(tok_path);
    free(admin_tok);
    free(via);
    free(direct);
    json_decref(sb);
    call(g_curl, "DELETE", g, NULL, NULL, NULL);
    free(e);
    free(s);
    free(g);
}

int main(int argc, char **argv)
{
    int n = 30, execs = 300;
    int opt;
    while ((opt = getopt(argc, argv, "n:e:")) != -1) {
        if (opt == 'n')
            n = atoi(optarg);
        else if (opt == 'e')
            execs = atoi(optarg);
    }
    if (argc - optind != 2 || n < 1 || execs < 1) {
        fprintf(stderr, "usage: sandbox_bench [-n N] [-e EXECS] BUILD_DIR DEFAULT_IMAGE\n");
        return 2;
    }
    const char *build = argv[optind], *image = argv[optind + 1];
    char dir[] = "/tmp/sbx-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    int port = 20000 + (int)(getpid() % 20000);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(g_base, sizeof(g_base), "http://%s", listen);
    char *bin = xasprintf("%s/sandboxd", build);
    char *data = xasprintf("%s/data", dir);
    char *log = xasprintf("%s/sandboxd.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        freopen(log, "w", stderr);
        /* -n sandboxes at once on one machine: past what admission
         * allows by default on a small one (2 cores, pid_max 32768).  */
        execl(bin, bin, "--listen", listen, "--data-dir", data, "--auth-token", TOKEN,
              "--default-image", image, "--log-level", "warn", "--overcommit-cpu", "64",
              "--overcommit-pids", "8", (char *)NULL);
        _exit(127);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_curl = curl_easy_init();
    char *health = xasprintf("%s/admin/hosts", g_base);
    int64_t deadline = sbx_monotonic_ms() + 30000;
    while (sbx_monotonic_ms() < deadline && call(g_curl, "GET", g_base, NULL, NULL, NULL) == 0)
        usleep(50000);
    free(health);
    sleep(1);
    printf("sandboxd %s, image %s\n", bin, image);
    char *pki = xasprintf("%s/pki", data);
    bench_exec(execs, pki);
    free(pki);
    bench_cold(n);
    bench_warm(n);
    curl_easy_cleanup(g_curl);
    curl_global_cleanup();
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    char *rm = xasprintf("rm -rf %s", dir);
    if (system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(rm);
    free(bin);
    free(data);
    free(log);
    return 0;
}
