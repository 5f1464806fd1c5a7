/* auth_bench.c -- what authentication costs a request: the fixed-token
 * comparison (baseline), a JWT found in the verified-token cache, a full
 * RS256 and ES256 verification, and a role check; medians of batches, in
 * microseconds, with ratios against the baseline.
 * Usage: auth_bench [-n BATCHES]  */
#include <stdio.h>
#include <string.h>

#include "auth/internal.h"

#define PER_BATCH 200

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef bool (*op_fn)(auth_t *a, const char *arg);

static bool op_authenticate(auth_t *a, const char *hdr)
{
    auth_principal_t p;
    bool ok = auth_authenticate(a, hdr, &p, NULL) == 0;
    auth_principal_done(&p);
    return ok;
}

static bool op_verify(auth_t *a, const char *tok)
{
    auth_principal_t p;
    bool ok = verify_token(a, tok, (const char *const *)a->audiences, &p, NULL) == 0;
    auth_principal_done(&p);
    return ok;
}

static bool op_authorize(auth_t *a, const char *tok)
{
    static auth_principal_t p;
    if (!p.subject)
        verify_token(a, tok, (const char *const *)a->audiences, &p, NULL);
    return auth_authorize(a, &p, "PUT",
                          "/subscriptions/6a8f2c1e-4b7d-4e3a-9c5f-2d1e8b7a6c40/resourceGroups/"
                          "rg/providers/Microsoft.App/sandboxGroups/g1",
                          NULL) == 0;
}

static double median_us(auth_t *a, op_fn op, const char *arg, int batches)
{
    double *t = xcalloc((size_t)batches, sizeof(*t));
    for (int b = 0; b < batches; b++) {
        int64_t t0 = sbx_monotonic_us();
        for (int i = 0; i < PER_BATCH; i++)
            if (!op(a, arg)) {
                fprintf(stderr, "auth_bench: the operation failed\n");
                exit(1);
            }
        t[b] = (double)(sbx_monotonic_us() - t0) / PER_BATCH;
    }
    qsort(t, (size_t)batches, sizeof(*t), cmp);
    double m = t[batches / 2];
    free(t);
    return m;
}

static auth_t *make(const char *dir, const char *alg, st_db_t **db)
{
    _cleanup_free_ char *db_path = xasprintf("%s/db", dir);
    sbx_error_t err = {0};
    *db = st_open(db_path, NULL, &err);
    auth_config_t cfg = {
        .data_dir = dir, .signing_alg = alg, .admin_token = "fixed-token-0123", .db = *db};
    auth_t *a = *db ? auth_new(&cfg, &err) : NULL;
    if (!a) {
        fprintf(stderr, "auth_bench: %s\n", err.msg);
        exit(1);
    }
    return a;
}

static char *dev_token(const char *dir)
{
    _cleanup_free_ char *path = xasprintf("%s/dev-token", dir);
    char *t = NULL;
    size_t n = 0;
    if (sbx_read_file(path, &t, &n, NULL) < 0)
        exit(1);
    t[strcspn(t, "\n")] = '\0';
    return t;
}

int main(int argc, char **argv)
{
    int batches = argc > 2 && !strcmp(argv[1], "-n") ? atoi(argv[2]) : 51;
    if (batches < 1)
        batches = 51;
    sbx_log_set_level(SBX_LOG_ERROR);
    char tmpl[] = "/tmp/auth-bench.XXXXXX";
    char *root = mkdtemp(tmpl);
    if (!root)
        return 1;
    _cleanup_free_ char *d1 = xasprintf("%s/rs", root), *d2 = xasprintf("%s/es", root);
    sbx_mkdir_p(d1, 0700, NULL);
    sbx_mkdir_p(d2, 0700, NULL);
    st_db_t *db1, *db2;
    auth_t *rs = make(d1, "RS256", &db1), *es = make(d2, "ES256", &db2);
    _cleanup_free_ char *rs_tok = dev_token(d1), *es_tok = dev_token(d2);
    _cleanup_free_ char *rs_hdr = xasprintf("Bearer %s", rs_tok);

    double base = median_us(rs, op_authenticate, "Bearer fixed-token-0123", batches);
    double cached = median_us(rs, op_authenticate, rs_hdr, batches);
    double rs_full = median_us(rs, op_verify, rs_tok, batches);
    double es_full = median_us(es, op_verify, es_tok, batches);
    double role = median_us(rs, op_authorize, rs_tok, batches);
    printf("%-42s %10s %8s\n", "per request (median of batches)", "us", "ratio");
    printf("%-42s %10.2f %8.1f\n", "fixed token (baseline)", base, 1.0);
    printf("%-42s %10.2f %8.1f\n", "JWT, verified-token cache hit", cached, cached / base);
    printf("%-42s %10.2f %8.1f\n", "JWT RS256, full verification", rs_full, rs_full / base);
    printf("%-42s %10.2f %8.1f\n", "JWT ES256, full verification", es_full, es_full / base);
    printf("%-42s %10.2f %8.1f\n", "role check (10 assignments or fewer)", role, role / base);
    auth_free(rs);
    auth_free(es);
    st_close(db1);
    st_close(db2);
    sbx_rm_rf(root, NULL);
    return 0;
}
