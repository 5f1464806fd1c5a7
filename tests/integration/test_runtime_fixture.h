/* test_runtime_fixture.h -- shared by the runtime tests: a tiny image
 * rootfs (static busybox plus the probe), a runtime on a fresh state dir
 * with its own cgroup parent, and exec helpers.  Header-only: each test
 * program includes it once.  */
#ifndef SBX_TEST_RUNTIME_FIXTURE_H
#define SBX_TEST_RUNTIME_FIXTURE_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/runtime.h"
#include "tests/testutil.h"

static char *fx_dir, *fx_rootfs, *fx_state, *fx_cgroot;
static rt_runtime_t *fx_rt;

static const char *const fx_applets[] = {
    "sh",    "cat", "echo",   "sleep",    "ls",       "mkdir", "rm",   "ps",    "kill",  "true",
    "false", "env", "id",     "hostname", "head",     "wc",    "dd",   "ln",    "touch", "test",
    "pwd",   "yes", "printf", "stat",     "readlink", "seq",   "grep", "uname", "mv",    "mkfifo",
};

static void fx_copy(const char *from, const char *to, mode_t mode)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    sbx_error_t err = {0};
    ck_assert_msg(sbx_read_file(from, &data, &len, &err) == 0, "%s", err.msg);
    ck_assert_msg(sbx_write_file_atomic(to, data, len, mode, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(chmod(to, mode), 0);
}

static char *fx_path(const char *rel)
{
    return xasprintf("%s/%s", fx_rootfs, rel);
}

/* The image: /bin/busybox with applet links, /bin/probe, a little /etc.  */
static void fx_build_rootfs(void)
{
    const char *dirs[] = {"bin", "etc", "root", "tmp", "usr", "usr/bin", "var"};
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        _cleanup_free_ char *p = fx_path(dirs[i]);
        ck_assert_int_eq(mkdir(p, 0755), 0);
    }
    _cleanup_free_ char *tmp = fx_path("tmp");
    chmod(tmp, 01777);
    _cleanup_free_ char *root = fx_path("root");
    chmod(root, 0700);
    _cleanup_free_ char *bb = fx_path("bin/busybox");
    fx_copy("/usr/bin/busybox", bb, 0755);
    for (size_t i = 0; i < ARRAY_SIZE(fx_applets); i++) {
        _cleanup_free_ char *l = xasprintf("%s/bin/%s", fx_rootfs, fx_applets[i]);
        ck_assert_int_eq(symlink("busybox", l), 0);
    }
    _cleanup_free_ char *probe_src = tu_bin("sbx-probe");
    _cleanup_free_ char *probe = fx_path("bin/probe");
    fx_copy(probe_src, probe, 0755);
    sbx_error_t err = {0};
    _cleanup_free_ char *passwd = fx_path("etc/passwd");
    const char *pw = "root:x:0:0:root:/root:/bin/sh\n";
    ck_assert(sbx_write_file_atomic(passwd, pw, strlen(pw), 0644, &err) == 0);
    _cleanup_free_ char *hn = fx_path("etc/image-marker");
    ck_assert(sbx_write_file_atomic(hn, "image\n", 6, 0644, &err) == 0);
    _cleanup_free_ char *secret = fx_path("root/secret");
    ck_assert(sbx_write_file_atomic(secret, "root only\n", 10, 0600, &err) == 0);
}

static void fx_open(void)
{
    sbx_error_t err = {0};
    rt_config_t cfg = {.state_dir = fx_state, .cgroup_root = fx_cgroot};
    fx_rt = rt_open(&cfg, &err);
    ck_assert_msg(fx_rt != NULL, "rt_open: %s", err.msg);
}

static void fx_teardown(void);

/* Each test runs in a child of the test program (Check's fork mode), and
 * a failed check ends that child with _exit: neither the checked teardown
 * nor atexit runs, and its sandboxes would outlive the run.  So every test
 * notes its state dir in a registry named for the parent, and the parent
 * (an unchecked teardown, fx_sweep) destroys whatever a test left.  */
static char *fx_registry(bool in_test)
{
    const char *fork_mode = getenv("CK_FORK");
    bool forked = !fork_mode || strcmp(fork_mode, "no") != 0;
    return xasprintf("/tmp/sbx-fx-%d", (int)(forked && in_test ? getppid() : getpid()));
}

static void fx_register(void)
{
    _cleanup_free_ char *reg = fx_registry(true);
    (void)mkdir(reg, 0700);
    _cleanup_free_ char *entry = xasprintf("%s/%s", reg, fx_cgroot);
    _cleanup_free_ char *line = xasprintf("%s\n%s\n", fx_dir, fx_cgroot);
    sbx_error_t err = {0};
    ck_assert_msg(sbx_write_file_atomic(entry, line, strlen(line), 0600, &err) == 0, "%s", err.msg);
}

static void fx_unregister(void)
{
    _cleanup_free_ char *reg = fx_registry(true);
    _cleanup_free_ char *entry = xasprintf("%s/%s", reg, fx_cgroot);
    (void)unlink(entry);
}

/* Destroy every sandbox of one left-behind test: the runtime itself
 * reopened on its state dir does it (thaw, kill, unmount, cgroups).  */
static void fx_sweep_one(const char *dir, const char *cgroot)
{
    _cleanup_free_ char *state = xasprintf("%s/state", dir);
    rt_config_t cfg = {.state_dir = state, .cgroup_root = cgroot};
    sbx_error_t err = {0};
    rt_runtime_t *rt = rt_open(&cfg, &err);
    if (rt) {
        rt_info_t *list = NULL;
        size_t n = 0;
        if (rt_list(rt, &list, &n, NULL) == 0)
            for (size_t i = 0; i < n; i++)
                rt_destroy(rt, list[i].id, NULL);
        free(list);
        rt_close(rt);
    } else {
        fprintf(stderr, "fx_sweep: %s: %s\n", dir, err.msg);
    }
    tu_rmdir(dir);
}

static __attribute__((unused)) void fx_sweep(void)
{
    _cleanup_free_ char *reg = fx_registry(false);
    DIR *d = opendir(reg);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        _cleanup_free_ char *entry = xasprintf("%s/%s", reg, de->d_name);
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (sbx_read_file(entry, &text, &len, NULL) == 0) {
            char *nl = strchr(text, '\n');
            char *nl2 = nl ? strchr(nl + 1, '\n') : NULL;
            if (nl && nl2) {
                *nl = *nl2 = '\0';
                fprintf(stderr, "fx_sweep: destroying what a failed test left in %s\n", text);
                fx_sweep_one(text, nl + 1);
            }
        }
        (void)unlink(entry);
    }
    closedir(d);
    (void)rmdir(reg);
}

static void fx_setup(void)
{
    /* A failed check exits the test's process without the checked
     * teardown: clean up from exit as well.  */
    static bool registered;
    if (!registered) {
        atexit(fx_teardown);
        registered = true;
    }
    fx_dir = tu_tmpdir("sbx-rt");
    ck_assert(fx_dir);
    fx_rootfs = xasprintf("%s/image", fx_dir);
    fx_state = xasprintf("%s/state", fx_dir);
    fx_cgroot = xasprintf("sbxtest-%d", (int)getpid());
    ck_assert_int_eq(mkdir(fx_rootfs, 0755), 0);
    fx_register();
    fx_build_rootfs();
    fx_open();
}

static void fx_teardown(void)
{
    if (!fx_dir)
        return;
    if (fx_rt) {
        rt_info_t *list = NULL;
        size_t n = 0;
        if (rt_list(fx_rt, &list, &n, NULL) == 0) {
            for (size_t i = 0; i < n; i++)
                rt_destroy(fx_rt, list[i].id, NULL);
        }
        free(list);
        rt_close(fx_rt);
        fx_rt = NULL;
    }
    /* The cgroup parent the runtime made for this test.  */
    const char *ctrls[] = {"cpu", "cpuacct", "memory", "pids", "freezer", "unified", ""};
    for (size_t i = 0; i < ARRAY_SIZE(ctrls); i++) {
        _cleanup_free_ char *p =
            xasprintf("/sys/fs/cgroup/%s%s%s", ctrls[i], *ctrls[i] ? "/" : "", fx_cgroot);
        (void)rmdir(p);
    }
    tu_rmdir(fx_dir);
    fx_unregister();
    free(fx_dir);
    free(fx_rootfs);
    free(fx_state);
    free(fx_cgroot);
    fx_dir = fx_rootfs = fx_state = fx_cgroot = NULL;
}

static void fx_create(const char *id, const rt_spec_t *tmpl)
{
    rt_spec_t spec = tmpl ? *tmpl : (rt_spec_t){0};
    spec.id = id;
    spec.rootfs = fx_rootfs;
    rt_info_t info;
    sbx_error_t err = {0};
    ck_assert_msg(rt_create(fx_rt, &spec, &info, &err) == 0, "rt_create %s: %s", id, err.msg);
    ck_assert_int_eq(info.state, RT_STATE_RUNNING);
}

/* Run argv (NULL-terminated) in sandbox id; the call itself must work.  */
static rt_exec_result_t fx_execv(const char *id, char **argv, int timeout_ms)
{
    rt_exec_request_t req = {.argv = argv, .timeout_ms = timeout_ms};
    rt_exec_result_t res;
    sbx_error_t err = {0};
    ck_assert_msg(rt_exec(fx_rt, id, &req, &res, &err) == 0, "rt_exec %s %s: %s", id, argv[0],
                  err.msg);
    return res;
}

static __attribute__((unused)) rt_exec_result_t fx_sh(const char *id, const char *script)
{
    char *argv[] = {"sh", "-c", (char *)script, NULL};
    return fx_execv(id, argv, 20000);
}

/* Run the probe and parse its JSON answer.  */
static __attribute__((unused)) json_t *fx_probe(const char *id, const char *a1, const char *a2,
                                                const char *a3)
{
    char *argv[] = {"/bin/probe", (char *)a1, (char *)a2, (char *)a3, NULL};
    rt_exec_result_t r = fx_execv(id, argv, 30000);
    json_error_t jerr;
    json_t *j = json_loads(r.out, 0, &jerr);
    ck_assert_msg(j != NULL, "probe %s: bad output '%s' (stderr '%s', exit %d signal %d)", a1,
                  r.out, r.err, r.exit_code, r.signal);
    rt_exec_result_done(&r);
    return j;
}

/* Whether the fixture's runtime has driver `name`; where it has not, why
 * is said on stderr, and the test that asked skips itself.  */
static __attribute__((unused)) bool fx_driver_available(const char *name)
{
    rt_health_t h;
    sbx_error_t err = {0};
    ck_assert_msg(rt_health(fx_rt, &h, &err) == 0, "rt_health: %s", err.msg);
    for (size_t i = 0; i < ARRAY_SIZE(h.drivers) && h.drivers[i]; i++)
        if (strcmp(h.drivers[i], name) == 0)
            return true;
    for (size_t i = 0; i < ARRAY_SIZE(h.unavailable) && h.unavailable[i].name; i++)
        if (strcmp(h.unavailable[i].name, name) == 0)
            fprintf(stderr, "%s unavailable, test skipped: %s\n", name, h.unavailable[i].why);
    return false;
}

/* A zombie (a dead init of a sandbox this process started) is dead.  */
static __attribute__((unused)) bool fx_pid_alive(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

#endif
