/* test_scheduler_pki.c -- the embedded default's private CA: made once,
 * kept across starts, certificates renewed when they near their end.  */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>

#include "scheduler/scheduler.h"
#include "tests/testutil.h"

static char *dir;

static void setup(void)
{
    dir = tu_tmpdir("sbx-pki");
    ck_assert_ptr_nonnull(dir);
}

static void teardown(void)
{
    tu_rmdir(dir);
    free(dir);
}

static char *slurp(const char *name)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    char *data = NULL;
    size_t n = 0;
    ck_assert_int_eq(sbx_read_file(path, &data, &n, NULL), 0);
    return data;
}

/* Days until the certificate in name expires.  */
static int days_left(const char *name)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_ptr_nonnull(c);
    int days = 0, secs = 0;
    ck_assert(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(c)));
    X509_free(c);
    return days;
}

START_TEST(test_scheduler_pki_made_and_kept)
{
    sbx_error_t err = {0};
    ck_assert_msg(sched_pki_ensure(dir, &err) == 0, "%s", err.msg);
    const char *files[] = {"ca.pem",    "ca.key",     "agent.pem",
                           "agent.key", "client.pem", "client.key"};
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, files[i]);
        ck_assert_msg(access(p, R_OK) == 0, "%s missing", files[i]);
    }
    _cleanup_free_ char *agent = slurp("agent.pem"), *ca = slurp("ca.pem");
    ck_assert_int_eq(sched_pki_ensure(dir, &err), 0);
    _cleanup_free_ char *agent2 = slurp("agent.pem"), *ca2 = slurp("ca.pem");
    ck_assert_str_eq(agent, agent2);
    ck_assert_str_eq(ca, ca2);
    ck_assert_int_gt(days_left("ca.pem"), 3000);
    ck_assert_int_gt(days_left("agent.pem"), 800);
}
END_TEST

START_TEST(test_scheduler_pki_renews_what_expires)
{
    sbx_error_t err = {0};
    ck_assert_int_eq(sched_pki_ensure(dir, &err), 0);
    _cleanup_free_ char *ca = slurp("ca.pem");
    /* A client certificate that ends tomorrow, signed by the same CA.  */
    _cleanup_free_ char *cmd = xasprintf(
        "cd '%s' && openssl req -new -key client.key -subj /CN=old -out old.csr 2>/dev/null && "
        "openssl x509 -req -in old.csr -CA ca.pem -CAkey ca.key -days 1 -set_serial 7 "
        "-out client.pem 2>/dev/null",
        dir);
    int st = system(cmd);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert_int_le(days_left("client.pem"), 1);
    ck_assert_int_eq(sched_pki_ensure(dir, &err), 0);
    ck_assert_int_gt(days_left("client.pem"), 800);
    _cleanup_free_ char *ca2 = slurp("ca.pem");
    ck_assert_str_eq(ca, ca2); /* the CA itself had years left */
}
END_TEST

static Suite *pki_suite(void)
{
    Suite *s = suite_create("scheduler_pki");
    TCase *tc = tcase_create("pki");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_scheduler_pki_made_and_kept);
    tcase_add_test(tc, test_scheduler_pki_renews_what_expires);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(pki_suite());
}
