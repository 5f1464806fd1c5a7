/* test_runtime_exec.c -- exec into process-driver sandboxes: arguments,
 * environment, cwd, stdin, separate capped output, exit codes and signals,
 * timeouts that kill forking trees, background processes, concurrency; and
 * no way for an exec to reach the agent's fds, binary or cwd.  */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>

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

/* A process (rt_proc) that has ended leaves its background children
 * running, even when let go of before its helper has exited.  */
START_TEST(test_runtime_exec_proc_background_survives)
{
    fx_create("exec7", NULL);
    for (int i = 1; i <= 5; i++) {
        char *argv[] = {"sh", "-c", "sleep 100 >/dev/null 2>&1 & exit 0", NULL};
        rt_proc_request_t req = {.argv = argv};
        rt_proc_t *p = NULL;
        sbx_error_t err = {0};
        ck_assert_msg(rt_proc_start(fx_rt, "exec7", &req, &p, &err) == 0, "%s", err.msg);
        rt_proc_close_stdin(p);
        int status = -1;
        int64_t deadline = sbx_monotonic_ms() + 10000;
        while (!rt_proc_poll(p, &status)) {
            ck_assert_msg(sbx_monotonic_ms() < deadline, "the process did not end");
            struct pollfd pfd = {.fd = rt_proc_fd(p, RT_PROC_EVENTS), .events = POLLIN};
            (void)poll(&pfd, 1, pfd.fd < 0 ? 20 : 200);
        }
        ck_assert_int_eq(status, 0);
        rt_proc_free(p, true); /* right away: its helper may still be exiting */
        rt_exec_result_t r = fx_sh("exec7", "ps -o comm | grep -c sleep");
        char want[8];
        snprintf(want, sizeof want, "%d\n", i);
        ck_assert_str_eq(r.out, want);
        rt_exec_result_done(&r);
    }
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

/* Nothing of the host in a command's output: no marker file of the host,
 * no host path, no agent binary talking.  */
static void assert_no_host(const char *what, const rt_exec_result_t *r)
{
    const char *bad[] = {
        "HOST-SECRET", fx_dir, "cgroup", "memfd:", "shared libraries", "libmicrohttpd", "libcheck"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        ck_assert_msg(!strstr(r->out, bad[i]) && !strstr(r->err, bad[i]),
                      "%s reached the host (%s): out '%s' err '%s'", what, bad[i], r->out, r->err);
    }
}

/* A host directory anyone may read, holding a marker, open in this
 * process (the agent) at many fd numbers; returns how many fds were
 * opened.  */
static int hold_host_dirs(int *fds, int n)
{
    _cleanup_free_ char *dir = xasprintf("%s/host-dir", fx_dir);
    _cleanup_free_ char *marker = xasprintf("%s/host-marker", dir);
    sbx_error_t err = {0};
    ck_assert(mkdir(dir, 0755) == 0 || errno == EEXIST);
    ck_assert_int_eq(chmod(dir, 0755), 0);
    ck_assert(sbx_write_file_atomic(marker, "HOST-SECRET\n", 12, 0644, &err) == 0);
    ck_assert_int_eq(chmod(marker, 0644), 0);
    for (int i = 0; i < n; i++) {
        fds[i] = open(dir, O_RDONLY | O_DIRECTORY);
        ck_assert_int_ge(fds[i], 0);
    }
    return n;
}

/* The host's dynamic loader inside the sandbox: a host binary run there
 * would get as far as looking for its libraries.  */
static void add_host_loader(const char *id)
{
    const char *ld = "/lib64/ld-linux-x86-64.so.2";
    _cleanup_free_ char *data = NULL;
    size_t len;
    if (sbx_read_file(ld, &data, &len, NULL) < 0)
        return;
    sbx_error_t err = {0};
    ck_assert_msg(rt_file_write(fx_rt, id, ld, data, len, &err) == 0, "%s", err.msg);
    rt_exec_result_t r = fx_sh(id, "chmod 755 /lib64/ld-linux-x86-64.so.2 && echo ok");
    ck_assert_str_eq(r.out, "ok\n");
    rt_exec_result_done(&r);
}

START_TEST(test_runtime_exec_proc_self_exe)
{
    fx_create("esc-exe", NULL);
    add_host_loader("esc-exe");
    /* The helper's and the init's binary are the sandbox's own static
     * program; the agent's never shows, whatever the magic link.  */
    const char *cmds[] = {"/proc/self/exe", "/proc/thread-self/exe", "/proc/1/exe"};
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
        char *argv[] = {(char *)cmds[i], "--version", NULL};
        rt_exec_result_t r = fx_execv("esc-exe", argv, 10000);
        assert_no_host(cmds[i], &r);
        ck_assert_msg(r.exit_code == 126 || r.exit_code == 127, "%s: exit %d, err '%s'", cmds[i],
                      r.exit_code, r.err);
        ck_assert_str_eq(r.out, "");
        rt_exec_result_done(&r);
    }
    /* Found through PATH, or through a link the sandbox planted.  */
    char *exe[] = {"exe", NULL};
    char *env[] = {"PATH=/proc/self", NULL};
    rt_exec_request_t req = {.argv = exe, .env = env};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(fx_rt, "esc-exe", &req, &r, &err) == 0, "%s", err.msg);
    assert_no_host("PATH=/proc/self", &r);
    ck_assert(r.exit_code == 126 || r.exit_code == 127);
    rt_exec_result_done(&r);
    r = fx_sh("esc-exe", "ln -s /proc/self/exe /bin/agent && echo planted");
    ck_assert_str_eq(r.out, "planted\n");
    rt_exec_result_done(&r);
    char *agent[] = {"agent", NULL};
    r = fx_execv("esc-exe", agent, 10000);
    assert_no_host("planted /bin/agent", &r);
    ck_assert(r.exit_code == 126 || r.exit_code == 127);
    rt_exec_result_done(&r);
    /* A script's interpreter is resolved by the kernel, magic links
     * included, while the command's process still runs the helper's
     * binary: that binary then does nothing (it used to sit there as a
     * second sandbox init, deaf to every signal but SIGKILL).  */
    r = fx_sh("esc-exe", "printf '#!/proc/self/exe\\n' > /bin/via-exe && chmod 755 /bin/via-exe");
    rt_exec_result_done(&r);
    char *script[] = {"via-exe", NULL};
    r = fx_execv("esc-exe", script, 5000);
    ck_assert_msg(!r.timed_out && r.exit_code == 126, "#!/proc/self/exe: exit %d signal %d%s",
                  r.exit_code, r.signal, r.timed_out ? ", timed out" : "");
    rt_exec_result_done(&r);
}
END_TEST

/* Run `cat host-marker; probe fds` with cwd; it must be refused as a bad
 * cwd or land inside the sandbox.  */
static void exec_in_cwd(const char *id, const char *cwd)
{
    char *argv[] = {"sh", "-c", "cat host-marker 2>&1; /bin/probe fds", NULL};
    rt_exec_request_t req = {.argv = argv, .cwd = cwd, .timeout_ms = 10000};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    if (rt_exec(fx_rt, id, &req, &r, &err) < 0) {
        ck_assert_msg(err.code == SBX_ERR_INVALID, "cwd %s: %s", cwd, err.msg);
        return;
    }
    assert_no_host(cwd, &r);
    rt_exec_result_done(&r);
}

START_TEST(test_runtime_exec_cwd_agent_fds)
{
    fx_create("esc-cwd", NULL);
    int held[24];
    int n = hold_host_dirs(held, ARRAY_SIZE(held));
    for (int fd = 0; fd <= held[n - 1] + 2; fd++) {
        char cwd[64];
        snprintf(cwd, sizeof cwd, "/proc/self/fd/%d", fd);
        exec_in_cwd("esc-cwd", cwd);
    }
    exec_in_cwd("esc-cwd", "/proc/self/cwd");
    exec_in_cwd("esc-cwd", "/proc/1/cwd/../../..");
    for (int i = 0; i < n; i++)
        close(held[i]);
    /* Plain paths still work, `..` stays inside.  */
    char *argv[] = {"pwd", NULL};
    rt_exec_request_t req = {.argv = argv, .cwd = "/../../tmp"};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(fx_rt, "esc-cwd", &req, &r, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(r.out, "/tmp\n");
    rt_exec_result_done(&r);
}
END_TEST

START_TEST(test_runtime_exec_planted_symlink)
{
    fx_create("esc-link", NULL);
    int held[24];
    int n = hold_host_dirs(held, ARRAY_SIZE(held));
    /* Sandbox code alone plants links to the magic links of whoever
     * resolves them, then asks for an innocent cwd.  */
    _cleanup_free_ char *script = xasprintf(
        "for n in $(seq 0 %d); do ln -s /proc/self/fd/$n /w$n; done; ln -s /proc/self/cwd /wcwd; "
        "mkdir -p /deep/a && ln -s /proc/self/fd /deep/a/fd && ln -s /tmp /wtmp; echo ok",
        held[n - 1] + 2);
    rt_exec_result_t r = fx_sh("esc-link", script);
    ck_assert_str_eq(r.out, "ok\n");
    rt_exec_result_done(&r);
    for (int fd = 0; fd <= held[n - 1] + 2; fd++) {
        char cwd[64];
        snprintf(cwd, sizeof cwd, "/w%d", fd);
        exec_in_cwd("esc-link", cwd);
        snprintf(cwd, sizeof cwd, "/deep/a/fd/%d", fd);
        exec_in_cwd("esc-link", cwd);
    }
    exec_in_cwd("esc-link", "/wcwd");
    for (int i = 0; i < n; i++)
        close(held[i]);
    /* An ordinary symlink is followed, inside.  */
    char *argv[] = {"sh", "-c", "cd -P . && pwd", NULL};
    rt_exec_request_t req = {.argv = argv, .cwd = "/wtmp"};
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(fx_rt, "esc-link", &req, &r, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(r.out, "/tmp\n");
    rt_exec_result_done(&r);
}
END_TEST

/* Execs into B with cwd /proc/self/fd/N while A is stopped and started
 * over and over (stopping makes the agent hold directory fds of A's
 * cgroups for a moment).  */
struct race {
    atomic_bool stop;
    atomic_int next, refused, ran;
};

enum { RACE_TRIES = 2000, RACE_THREADS = 4 };

static void *race_stop_start(void *p)
{
    struct race *rc = p;
    while (!atomic_load(&rc->stop)) {
        sbx_error_t err = {0};
        ck_assert_msg(rt_stop(fx_rt, "race-a", &err) == 0, "stop: %s", err.msg);
        ck_assert_msg(rt_start(fx_rt, "race-a", &err) == 0, "start: %s", err.msg);
    }
    return NULL;
}

static void *race_exec(void *p)
{
    struct race *rc = p;
    for (int i; (i = atomic_fetch_add(&rc->next, 1)) < RACE_TRIES;) {
        char cwd[64];
        snprintf(cwd, sizeof cwd, "/proc/self/fd/%d", 3 + i % 30);
        char *argv[] = {"/bin/probe", "fds", NULL};
        rt_exec_request_t req = {.argv = argv, .cwd = cwd, .timeout_ms = 10000};
        rt_exec_result_t r;
        sbx_error_t err = {0};
        if (rt_exec(fx_rt, "race-b", &req, &r, &err) < 0) {
            ck_assert_msg(err.code == SBX_ERR_INVALID, "cwd %s: %s", cwd, err.msg);
            atomic_fetch_add(&rc->refused, 1);
            continue;
        }
        assert_no_host(cwd, &r);
        atomic_fetch_add(&rc->ran, 1);
        rt_exec_result_done(&r);
    }
    return NULL;
}

START_TEST(test_runtime_exec_stop_race)
{
    fx_create("race-a", NULL);
    fx_create("race-b", NULL);
    struct race rc = {0};
    pthread_t stopper, th[RACE_THREADS];
    ck_assert_int_eq(pthread_create(&stopper, NULL, race_stop_start, &rc), 0);
    for (int i = 0; i < RACE_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, race_exec, &rc), 0);
    for (int i = 0; i < RACE_THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&rc.stop, true);
    pthread_join(stopper, NULL);
    ck_assert_int_eq(atomic_load(&rc.refused) + atomic_load(&rc.ran), RACE_TRIES);
}
END_TEST

static int64_t cpu_us(void)
{
    struct rusage ru;
    ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 + ru.ru_utime.tv_usec +
           ru.ru_stime.tv_usec;
}

START_TEST(test_runtime_exec_output_cap_cpu)
{
    fx_create("exec-cpu", NULL);
    /* Two writers that never stop on their own: past the cap the agent
     * must not keep reading (and paying for) what it throws away.  */
    char *argv[] = {"sh", "-c",
                    "cat /dev/zero & a=$!; cat /dev/zero >&2 & b=$!; sleep 2; "
                    "kill $a $b 2>/dev/null; exit 0",
                    NULL};
    rt_exec_request_t req = {.argv = argv, .output_cap = 1000, .timeout_ms = 20000};
    rt_exec_result_t r;
    sbx_error_t err = {0};
    int64_t cpu0 = cpu_us(), t0 = sbx_monotonic_ms();
    ck_assert_msg(rt_exec(fx_rt, "exec-cpu", &req, &r, &err) == 0, "%s", err.msg);
    int64_t wall_ms = sbx_monotonic_ms() - t0, cpu_ms = (cpu_us() - cpu0) / 1000;
    ck_assert_uint_eq(r.out_len, 1000);
    ck_assert_uint_eq(r.err_len, 1000);
    ck_assert(r.out_truncated && r.err_truncated);
    ck_assert_int_eq(r.exit_code, 0);
    ck_assert_msg(wall_ms >= 1900, "took %lld ms", (long long)wall_ms);
    ck_assert_msg(cpu_ms * 4 < wall_ms, "the agent spent %lld ms of CPU in a %lld ms exec",
                  (long long)cpu_ms, (long long)wall_ms);
    rt_exec_result_done(&r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("runtime_exec");
    TCase *tc = tcase_create("exec");
    tcase_add_checked_fixture(tc, fx_setup, fx_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_runtime_exec_basic);
    tcase_add_test(tc, test_runtime_exec_bad_requests);
    tcase_add_test(tc, test_runtime_exec_output_cap);
    tcase_add_test(tc, test_runtime_exec_timeout_kills_tree);
    tcase_add_test(tc, test_runtime_exec_background_survives);
    tcase_add_test(tc, test_runtime_exec_proc_background_survives);
    tcase_add_test(tc, test_runtime_exec_concurrent);
    tcase_add_test(tc, test_runtime_exec_proc_self_exe);
    tcase_add_test(tc, test_runtime_exec_cwd_agent_fds);
    tcase_add_test(tc, test_runtime_exec_planted_symlink);
    tcase_add_test(tc, test_runtime_exec_stop_race);
    tcase_add_test(tc, test_runtime_exec_output_cap_cpu);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
