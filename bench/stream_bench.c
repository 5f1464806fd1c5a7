/* stream_bench.c -- streamed process output through the ARM API of a real
 * sandboxd with its local agent: first-byte latency from a process's write
 * to the client (median, p99), streaming throughput against the one-shot
 * exec (the baseline), and the memory of sandboxd and the agent while many
 * clients stream 10 MB each.
 *
 *   stream_bench [-n LINES] [-c CLIENTS] [-m MB] BUILD_DIR DEFAULT_IMAGE_LAYOUT  */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "common/common.h"

#define SUB "00000000-0000-0000-0000-00000000be0d"
#define TOKEN "bench-token"
#define API "?api-version=2026-07-01"

static char g_base[64];

static char *url_of(const char *suffix)
{
    return xasprintf("%s/subscriptions/" SUB "/resourceGroups/bench/providers/Microsoft.App/"
                     "sandboxGroups/streams%s" API,
                     g_base, suffix);
}

typedef struct sink {
    char *data;
    size_t len;
    /* streamed: lines of stdout events are timestamps to compare with */
    bool stream;
    char line[1 << 17];
    size_t line_len;
    uint64_t bytes; /* base64 characters of output events seen */
    double *lat;
    size_t n_lat, cap_lat;
} sink_t;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t unb64(const char *s, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    unsigned v = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = s[i] ? strchr(tab, s[i]) : NULL;
        if (!p)
            continue;
        v = v << 6 | (unsigned)(p - tab);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(v >> bits & 255);
        }
    }
    return o;
}

/* A data line of an output event: count it, and when the bench asked for
 * latencies, every decoded line is a write time in ns.  */
static void on_line(sink_t *s, const char *l, size_t n)
{
    const char *key = "data: {\"data\":\"";
    size_t kl = strlen(key);
    if (n < kl || memcmp(l, key, kl) != 0)
        return;
    s->bytes += n - kl - 2;
    if (!s->lat)
        return;
    int64_t at = now_ns();
    char *dec = xmalloc(n);
    size_t m = unb64(l + kl, n - kl - 2, dec);
    dec[m] = 0;
    for (char *p = dec; *p;) {
        long long t = strtoll(p, &p, 10);
        if (t > 0) {
            if (s->n_lat == s->cap_lat)
                s->lat = xrealloc(s->lat, (s->cap_lat *= 2) * sizeof(double));
            s->lat[s->n_lat++] = (double)(at - t) / 1e6;
        }
        while (*p == '\n')
            p++;
    }
    free(dec);
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    sink_t *s = ud;
    size_t k = size * n;
    if (!s->stream) {
        s->data = xrealloc(s->data, s->len + k + 1);
        memcpy(s->data + s->len, p, k);
        s->len += k;
        s->data[s->len] = 0;
        return k;
    }
    for (size_t i = 0; i < k; i++) {
        if (p[i] == '\n') {
            on_line(s, s->line, s->line_len);
            s->line_len = 0;
        } else if (s->line_len < sizeof(s->line)) {
            s->line[s->line_len++] = p[i];
        }
    }
    return k;
}

static long call(const char *method, const char *url, const char *body, bool events, sink_t *s)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    h = curl_slist_append(h, "Content-Type: application/json");
    if (events)
        h = curl_slist_append(h, "Accept: text/event-stream");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, size_t n)
{
    if (!n) {
        printf("%-52s no samples\n", what);
        return;
    }
    qsort(v, n, sizeof(*v), cmp_double);
    printf("%-52s n=%-5zu median %8.3f ms   p99 %8.3f ms\n", what, n, v[n / 2],
           v[(size_t)((double)(n - 1) * 0.99)]);
}

static double seconds(int64_t t0)
{
    return (double)(sbx_monotonic_ms() - t0) / 1000.0;
}

/* Lines written every 10 ms, each its write time: latency to the client.  */
static void bench_latency(int lines)
{
    _cleanup_free_ char *exec = url_of("/sandboxes/s1/exec");
    _cleanup_free_ char *body = xasprintf(
        "{\"command\":[\"python3\",\"-c\",\"import time\\nfor i in range(%d):\\n "
        "print(time.time_ns(), flush=True)\\n time.sleep(0.01)\"],\"timeoutSeconds\":600}",
        lines);
    sink_t s = {.stream = true, .cap_lat = 64};
    s.lat = xcalloc(s.cap_lat, sizeof(double));
    long st = call("POST", exec, body, true, &s);
    if (st != 200)
        printf("  (streamed exec: %ld)\n", st);
    report("first byte: process write -> client (SSE)", s.lat, s.n_lat);
    free(s.lat);
}

static double stream_mbps(int mb)
{
    _cleanup_free_ char *exec = url_of("/sandboxes/s1/exec");
    _cleanup_free_ char *body = xasprintf(
        "{\"command\":[\"sh\",\"-c\",\"head -c %d /dev/zero | tr '\\\\000' a\"]}", mb << 20);
    sink_t s = {.stream = true};
    int64_t t0 = sbx_monotonic_ms();
    call("POST", exec, body, true, &s);
    double secs = seconds(t0);
    double got = (double)s.bytes * 3 / 4 / (1 << 20);
    if (got + 1 < mb)
        printf("  (streamed only %.1f of %d MiB)\n", got, mb);
    return got / secs;
}

static double oneshot_mbps(int n)
{
    _cleanup_free_ char *exec = url_of("/sandboxes/s1/exec");
    const char *body =
        "{\"command\":[\"sh\",\"-c\",\"head -c 1000000 /dev/zero | tr '\\\\000' a\"]}";
    int64_t t0 = sbx_monotonic_ms();
    for (int i = 0; i < n; i++) {
        sink_t s = {0};
        call("POST", exec, body, false, &s);
        free(s.data);
    }
    return (double)n * 1000000 / (1 << 20) / seconds(t0);
}

static uint64_t hwm_kib(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    uint64_t v = 0;
    while (f && fgets(buf, sizeof(buf), f))
        if (sscanf(buf, "VmHWM: %lu", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static void hwm_reset(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

typedef struct client {
    pthread_t t;
    int mb;
    const char *sandbox;
    sink_t s;
} client_t;

static void *client_main(void *arg)
{
    client_t *c = arg;
    _cleanup_free_ char *suffix = xasprintf("/sandboxes/%s/exec", c->sandbox);
    _cleanup_free_ char *exec = url_of(suffix);
    _cleanup_free_ char *body =
        xasprintf("{\"command\":[\"head\",\"-c\",\"%d\",\"/dev/zero\"],\"timeoutSeconds\":600}",
                  c->mb * 1000000);
    c->s.stream = true;
    call("POST", exec, body, true, &c->s);
    return NULL;
}

static pid_t agent_pid(pid_t sandboxd)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "pgrep -P %d -f sandbox-agent", (int)sandboxd);
    FILE *p = popen(cmd, "r");
    int pid = 0;
    if (p && fscanf(p, "%d", &pid) != 1)
        pid = 0;
    if (p)
        pclose(p);
    return pid;
}

static void bench_memory(pid_t sd, int clients, int mb)
{
    pid_t ag = agent_pid(sd);
    uint64_t sd0, ag0;
    hwm_reset(sd);
    hwm_reset(ag);
    sd0 = hwm_kib(sd);
    ag0 = hwm_kib(ag);
    client_t *cs = xcalloc((size_t)clients, sizeof(*cs));
    int64_t t0 = sbx_monotonic_ms();
    for (int i = 0; i < clients; i++) {
        cs[i].mb = mb;
        /* A sandbox runs at most 64 processes at once: spread them.  */
        cs[i].sandbox = i % 2 ? "s2" : "s1";
        pthread_create(&cs[i].t, NULL, client_main, &cs[i]);
    }
    uint64_t total = 0;
    int complete = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(cs[i].t, NULL);
        uint64_t got = cs[i].s.bytes * 3 / 4;
        total += got;
        complete += got + 4 >= (uint64_t)mb * 1000000;
    }
    double secs = seconds(t0);
    printf("%d clients x %d MB streamed at once: %d complete, %.1f MB in %.1f s (%.1f MB/s)\n",
           clients, mb, complete, (double)total / 1e6, secs, (double)total / 1e6 / secs);
    printf("  peak RSS growth: sandboxd %+.1f MiB (from %.1f), agent %+.1f MiB (from %.1f)\n",
           (double)(hwm_kib(sd) - sd0) / 1024, (double)sd0 / 1024,
           (double)(hwm_kib(ag) - ag0) / 1024, (double)ag0 / 1024);
    free(cs);
}

int main(int argc, char **argv)
{
    int lines = 500, clients = 100, mb = 10, opt;
    while ((opt = getopt(argc, argv, "n:c:m:")) != -1) {
        if (opt == 'n')
            lines = atoi(optarg);
        else if (opt == 'c')
            clients = atoi(optarg);
        else if (opt == 'm')
            mb = atoi(optarg);
    }
    if (argc - optind != 2 || lines < 1 || clients < 1 || mb < 1) {
        fprintf(stderr, "usage: stream_bench [-n LINES] [-c CLIENTS] [-m MB] BUILD_DIR IMAGE\n");
        return 2;
    }
    const char *build = argv[optind], *image = argv[optind + 1];
    char dir[] = "/tmp/sbx-stream-bench-XXXXXX";
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
        if (!freopen(log, "w", stderr))
            _exit(127);
        execl(bin, bin, "--listen", listen, "--data-dir", data, "--auth-token", TOKEN,
              "--default-image", image, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int64_t deadline = sbx_monotonic_ms() + 30000;
    _cleanup_free_ char *group = url_of("");
    while (sbx_monotonic_ms() < deadline &&
           call("PUT", group, "{\"location\":\"local\"}", false, &(sink_t){0}) / 100 != 2)
        usleep(100000);
    _cleanup_free_ char *sb = url_of("/sandboxes/s1");
    _cleanup_free_ char *sb2 = url_of("/sandboxes/s2");
    const char *sbs[] = {sb, sb2};
    for (int i = 0; i < 2; i++) {
        call("PUT", sbs[i], "{\"properties\":{}}", false, &(sink_t){0});
        deadline = sbx_monotonic_ms() + 60000; /* the first unpacks the image */
        for (;;) {
            sink_t s = {0};
            call("GET", sbs[i], NULL, false, &s);
            bool running = s.data && strstr(s.data, "\"state\":\"Running\"");
            free(s.data);
            if (running || sbx_monotonic_ms() > deadline)
                break;
            usleep(20000);
        }
    }
    printf("sandboxd %s, image %s\n", bin, image);
    bench_latency(lines);
    double st = stream_mbps(200), os = oneshot_mbps(20);
    printf("throughput: streamed (SSE, 200 MiB) %.1f MiB/s, one-shot exec (1 MB x 20) %.1f "
           "MiB/s: %.2fx\n",
           st, os, st / os);
    bench_memory(pid, clients, mb);
    /* Sandboxes outlive sandboxd: delete them (the group's delete does). */
    call("DELETE", group, NULL, false, &(sink_t){0});
    for (deadline = sbx_monotonic_ms() + 60000; sbx_monotonic_ms() < deadline;) {
        sink_t s = {0};
        long status = call("GET", group, NULL, false, &s);
        free(s.data);
        if (status == 404)
            break;
        usleep(100000);
    }
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
