/* agent_exec_bench.c -- exec round trip through a running sandbox-agent over
 * HTTPS with a client certificate: creates a sandbox from the default image,
 * times N `POST /exec` of `true` on one kept-alive connection, prints the
 * median and p90, deletes the sandbox.
 *
 *   agent_exec_bench https://127.0.0.1:9443 CERT_DIR [N]
 *
 * CERT_DIR holds ca.pem, client.pem and client.key (scripts/dev-certs.sh).  */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static long request(CURL *c, const char *method, const char *url, const char *body)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
    long status = 0;
    if (curl_easy_perform(c) != CURLE_OK)
        return -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s AGENT_URL CERT_DIR [N]\n", argv[0]);
        return 2;
    }
    const char *base = argv[1], *dir = argv[2];
    int n = argc > 3 ? atoi(argv[3]) : 200;
    if (n < 1)
        n = 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    _cleanup_free_ char *ca = xasprintf("%s/ca.pem", dir);
    _cleanup_free_ char *cert = xasprintf("%s/client.pem", dir);
    _cleanup_free_ char *key = xasprintf("%s/client.key", dir);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);

    _cleanup_free_ char *sandbox = xasprintf("%s/v1/sandboxes/bench-%d", base, (int)getpid());
    _cleanup_free_ char *exec = xasprintf("%s/exec", sandbox);
    int64_t t0 = sbx_monotonic_us();
    long st = request(c, "PUT", sandbox, "{\"memoryMiB\":128}");
    if (st != 201 && st != 200) {
        fprintf(stderr, "create: status %ld\n", st);
        return 1;
    }
    printf("create: %.1f ms\n", (double)(sbx_monotonic_us() - t0) / 1000.0);

    int64_t *us = xcalloc((size_t)n, sizeof(*us));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        int64_t s = sbx_monotonic_us();
        st = request(c, "POST", exec, "{\"command\":[\"true\"]}");
        us[i] = sbx_monotonic_us() - s;
        if (st != 200) {
            fprintf(stderr, "exec %d: status %ld\n", i, st);
            rc = 1;
            break;
        }
    }
    if (rc == 0) {
        qsort(us, (size_t)n, sizeof(*us), cmp_i64);
        printf("exec round trip over HTTPS (%d runs): median %.2f ms, p90 %.2f ms, min %.2f ms\n",
               n, (double)us[n / 2] / 1000.0, (double)us[n * 9 / 10] / 1000.0,
               (double)us[0] / 1000.0);
    }
    request(c, "DELETE", sandbox, NULL);
    free(us);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    curl_global_cleanup();
    return rc;
}
