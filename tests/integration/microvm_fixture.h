/* microvm_fixture.h -- shared by the microvm driver's tests: the fixture's
 * runtime reopened with software emulation allowed (this machine's KVM
 * cannot boot a guest), and the QEMU of a sandbox.  Header-only; include it
 * after test_runtime_fixture.h.  */
#ifndef SBX_TEST_MICROVM_FIXTURE_H
#define SBX_TEST_MICROVM_FIXTURE_H

/* Reopen the fixture's runtime with emulation allowed: whether the microvm
 * driver works (where not, the test skips itself).  */
static bool mv_open(void)
{
    rt_close(fx_rt);
    rt_config_t cfg = {
        .state_dir = fx_state, .cgroup_root = fx_cgroot, .allow_microvm_emulation = true};
    sbx_error_t err = {0};
    fx_rt = rt_open(&cfg, &err);
    ck_assert_msg(fx_rt != NULL, "rt_open: %s", err.msg);
    return fx_driver_available("microvm");
}

/* Host pid of a live QEMU whose command line names the sandbox, or 0.  */
static pid_t qemu_of(const char *id)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = 0;
    _cleanup_free_ char *needle = xasprintf("sbx.hostname=%s", id);
    while (d && !found && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        _cleanup_free_ char *p = xasprintf("/proc/%s/cmdline", de->d_name);
        char buf[8192];
        FILE *f = fopen(p, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        if (!strstr(buf, "qemu-system"))
            continue;
        for (size_t i = 0; i + 1 < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        char *at = strstr(buf, needle);
        size_t l = strlen(needle);
        if (at && (at[l] == 0 || at[l] == ' ') && fx_pid_alive(atoi(de->d_name)))
            found = atoi(de->d_name);
    }
    if (d)
        closedir(d);
    return found;
}

#endif
