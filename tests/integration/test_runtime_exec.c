/* test_runtime_exec.c -- exec into process-driver sandboxes: arguments,
 * environment, cwd, stdin, separate capped output, exit codes and signals,
 * timeouts that kill forking trees, background processes, concurrency.  */
#include <pthread.h>
#include <signal.h>

#include "tests/integration/test_runtime_fixture.h"

START_TEST(test_runtime_exec_basic)
{
    json_t *env = json_pack("{s:s}", "SANDBOX_VAR", "from-spec");
    rt_spec_t spec = {.env = env};
    fx_create("exec1", &spec);
    json_decref(env);

    char *argv[] = {"sh", "-c", "echo out; echo err >&2; echo $SANDBOX_VAR $REQ_VAR; pwd; exit 3",
                    NULL};
    char *renv[] = {"REQ_VAR=from-request", NULL};
    rt_exec_request_t req = {.argv = argv, .env = renv, .cwd = "/tmp"};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(fx_rt, "exec1", &req, &r, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(r.out, "out\nfrom-spec from-request\n/tmp\n");
    ck_assert_str_eq(r.err, "err\n");
    ck_assert_int_eq(r.exit_code, 3);
    ck_assert_int_eq(r.signal, 0);
    ck_assert(!r.timed_out && !r.out_truncated && !r.err_truncated);
    ck_assert(r.duration_ms >= 0 && r.duration_ms < 5000);
    rt_exec_result_done(&r);

    /* stdin, binary-safe.  */
    char *cat[] = {"cat", NULL};
    const char in[] = "line1\nline\0two\n";
    rt_exec_request_t req2 = {.argv = cat, .stdin_data = in, .stdin_len = sizeof in - 1};
    ck_assert_msg(rt_exec(fx_rt, "exec1", &req2, &r, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(r.out_len, sizeof in - 1);
    ck_assert(memcmp(r.out, in, sizeof in - 1) == 0);
    rt_exec_result_done(&r);

    /* A large stdin the command never reads must not hang or kill us.  */
    size_t big = 4 << 20;
    char *junk = xcalloc(1, big);
    char *tru[] = {"true", NULL};
    rt_exec_request_t req3 = {.argv = tru, .stdin_data = junk, .stdin_len = big};
    ck_assert_msg(rt_exec(fx_rt, "exec1", &req3, &r, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(r.exit_code, 0);
    rt_exec_result_done(&r);
    free(junk);

    /* Killed by a signal.  */
    r = fx_sh("exec1", "kill -9 $$");
    ck_assert_int_eq(r.exit_code, -1);
    ck_assert_int_eq(r.signal, 9);
    rt_exec_result_done(&r);

    /* Unknown command: 127 and a message, like a shell.  */
    char *nope[] = {"no-such-command", NULL};
    r = fx_execv("exec1", nope, 5000);
    ck_assert_int_eq(r.exit_code, 127);
    ck_assert_ptr_nonnull(strstr(r.err, "no-such-command"));
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_exec_bad_requests)
{
    fx_create("exec2", NULL);
    rt_exec_result_t r;
    sbx_error_t err = {0};
    char *empty[] = {NULL};
    rt_exec_request_t req = {.argv = empty};
    ck_assert_int_eq(rt_exec(fx_rt, "exec2", &req, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    char *argv[] = {"true", NULL};
    rt_exec_request_t rel = {.argv = argv, .cwd = "tmp"};
    ck_assert_int_eq(rt_exec(fx_rt, "exec2", &rel, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    rt_exec_request_t missing = {.argv = argv, .cwd = "/does/not/exist"};
    ck_assert_int_eq(rt_exec(fx_rt, "exec2", &missing, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    char *badenv[] = {"NOEQUALS", NULL};
    rt_exec_request_t be = {.argv = argv, .env = badenv};
    ck_assert_int_eq(rt_exec(fx_rt, "exec2", &be, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(rt_exec(fx_rt, "nosuchbox", &(rt_exec_request_t){.argv = argv}, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_exec(fx_rt, "../etc", &(rt_exec_request_t){.argv = argv}, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    /* Still fine afterwards.  */
    r = fx_sh("exec2", "echo ok");
    ck_assert_str_eq(r.out, "ok\n");
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_exec_output_cap)
{
    fx_create("exec3", NULL);
    char *argv[] = {"sh", "-c", "yes 0123456789 | head -c 300000; yes e | head -c 10", NULL};
    rt_exec_request_t req = {.argv = argv, .output_cap = 1000};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(fx_rt, "exec3", &req, &r, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(r.out_len, 1000);
    ck_assert(r.out_truncated);
    ck_assert(!r.err_truncated);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert(strncmp(r.out, "0123456789\n0123456789\n", 22) == 0);
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_exec_timeout_kills_tree)
{
    fx_create("exec4", NULL);
    /* A tree that forks, and a grandchild that leaves the session.  */
    char *argv[] = {"sh", "-c",
                    "sleep 1000 & sh -c 'sleep 1001 & sleep 1002' & "
                    "(trap '' TERM; while :; do sleep 1; done) & echo started; wait",
                    NULL};
    int64_t t0 = sbx_monotonic_ms();
    rt_exec_result_t r = fx_execv("exec4", argv, 700);
    int64_t took = sbx_monotonic_ms() - t0;
    ck_assert(r.timed_out);
    ck_assert_int_eq(r.signal, 9);
    ck_assert_str_eq(r.out, "started\n");
    ck_assert_msg(took < 5000, "timeout took %lld ms", (long long)took);
    rt_exec_result_done(&r);
    /* Nothing of that tree is left: only pid 1 and our ps.  */
    r = fx_sh("exec4", "ps -o pid,comm | grep -c sleep");
    ck_assert_str_eq(r.out, "0\n");
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_exec_background_survives)
{
    fx_create("exec5", NULL);
    int64_t t0 = sbx_monotonic_ms();
    rt_exec_result_t r = fx_sh("exec5", "sleep 100 & echo bg");
    ck_assert_msg(sbx_monotonic_ms() - t0 < 2000, "exec waited for its background child");
    ck_assert_str_eq(r.out, "bg\n");
    ck_assert_int_eq(r.exit_code, 0);
    rt_exec_result_done(&r);
    r = fx_sh("exec5", "ps -o comm | grep -c sleep");
    ck_assert_str_eq(r.out, "1\n");
    rt_exec_result_done(&r);
    /* A detached process holding stdout open does not hold the exec.  */
    t0 = sbx_monotonic_ms();
    r = fx_sh("exec5", "(sleep 50; echo late) & echo now");
    ck_assert_msg(sbx_monotonic_ms() - t0 < 2000, "exec waited for a pipe holder");
    ck_assert_str_eq(r.out, "now\n");
    rt_exec_result_done(&r);
}
END_TEST

struct par_arg {
    int i;
    bool ok;
};

static void *par_exec(void *p)
{
    struct par_arg *a = p;
    char script[64];
    snprintf(script, sizeof script, "sleep 0.2; echo %d", a->i);
    char *argv[] = {"sh", "-c", script, NULL};
    rt_exec_request_t req = {.argv = argv};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    char want[16];
    snprintf(want, sizeof want, "%d\n", a->i);
    a->ok = rt_exec(fx_rt, "exec6", &req, &r, &err) == 0 && strcmp(r.out, want) == 0 &&
            r.exit_code == 0;
    rt_exec_result_done(&r);
    return NULL;
}

START_TEST(test_runtime_exec_concurrent)
{
    fx_create("exec6", NULL);
    enum { N = 12 };
    pthread_t th[N];
    struct par_arg args[N];
    int64_t t0 = sbx_monotonic_ms();
    for (int i = 0; i < N; i++) {
        args[i] = (struct par_arg){.i = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, par_exec, &args[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(args[i].ok, "exec %d failed", i);
    }
    /* They ran at the same time, not one after another.  */
    ck_assert_int_lt(sbx_monotonic_ms() - t0, N * 200);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("runtime_exec");
    TCase *tc = tcase_create("exec");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_exec_basic);
    tcase_add_test(tc, test_runtime_exec_bad_requests);
    tcase_add_test(tc, test_runtime_exec_output_cap);
    tcase_add_test(tc, test_runtime_exec_timeout_kills_tree);
    tcase_add_test(tc, test_runtime_exec_background_survives);
    tcase_add_test(tc, test_runtime_exec_concurrent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
