/* test_runtime_microvm_net.c -- the microvm driver's network and isolation,
 * under software emulation: egress rules reach a microVM's guest exactly as
 * they reach a process sandbox (through the agent's own hooks,
 * agent_egress_apply and agent_egress_after, on a runtime and an egress
 * module of this test), the link comes and goes with the policy and
 * survives a suspend and resume, and destroy leaves no QEMU, veth, nft
 * element or namespace; and the isolation probe, run inside a guest, sees a
 * machine of its own.  One boot per test.  Skipped (with a message) where
 * QEMU or the guest kernel is missing.  */
#include <arpa/inet.h>
#include <signal.h>
#include <sys/utsname.h>

#include "agent/agent.h"
#define POOL_SECOND_OCTET 236
/* a network of its own: egress tests run side by side */
#define SRV_ADDR "203.0.113.34"
#define SRV_ADDR2 "203.0.113.35"
#define HOST_ADDR "203.0.113.33"
#define SRV_PREFIX "/27"
#define SRV6_ADDR "2001:db8:113:3::2"
#define SRV6_ADDR2 "2001:db8:113:3::3"
#define HOST6_ADDR "2001:db8:113:3::1"
#define SRV_ULA "fd00:77:0:3::3"
#define HOST_ULA "fd00:77:0:3::1"
#include "tests/integration/egress_fixture.h"
#include "tests/integration/test_runtime_fixture.h"
#include "tests/integration/microvm_fixture.h"
/* a guest under emulation answers slower than a process sandbox */
#define PROBE_OK_MS 5000
#include "tests/integration/egress_probe.h"

static void mv_create(const char *id, int64_t *ms)
{
    rt_spec_t spec = {.driver = "microvm", .memory_mib = 256, .disk_mib = 64};
    int64_t t0 = sbx_monotonic_ms();
    fx_create(id, &spec);
    rt_exec_result_t r = fx_sh(id, "true");
    ck_assert_int_eq(r.exit_code, 0);
    rt_exec_result_done(&r);
    *ms = sbx_monotonic_ms() - t0;
}

/* ---- egress ---- */

static void eg_teardown(void);

static void eg_setup(void)
{
    /* A failed check exits the test's process without the checked
     * teardown: the servers' namespace and veth go from exit as well.  */
    static bool registered;
    if (!registered) {
        atexit(eg_teardown);
        registered = true;
    }
    fx_setup();
    servers_start();
    netprobe_install();
    eg_start(NULL);
}

static void eg_teardown(void)
{
    /* the VMs first (their namespaces hold the veths' other ends) */
    fx_teardown();
    eg_stop();
    servers_stop();
}

static void apply(const char *id, const char *text, int64_t *ms)
{
    _cleanup_json_ json_t *p = text ? policy(text) : NULL;
    sbx_error_t err = {0};
    int64_t t0 = sbx_monotonic_ms();
    ck_assert_msg(agent_egress_apply(eg, fx_rt, id, p, &err) == 0, "apply: %s", err.msg);
    if (ms)
        *ms = sbx_monotonic_ms() - t0;
}

/* The MAC of eth0 in the VM's namespace, as the host sees it.  */
static void ns_mac(const char *id, char *out, size_t len)
{
    _cleanup_free_ char *cmd =
        xasprintf("nsenter --net=%s/sandboxes/%s/netns ip -o link show eth0 | "
                  "sed -n 's/.*link\\/ether \\([0-9a-f:]*\\).*/\\1/p'",
                  fx_state, id);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    out[0] = 0;
    if (!fgets(out, (int)len, f))
        out[0] = 0;
    pclose(f);
    out[strcspn(out, "\n")] = 0;
}

static bool mounted(const char *needle)
{
    _cleanup_free_ char *mi = NULL;
    size_t n;
    ck_assert(sbx_read_file("/proc/self/mountinfo", &mi, &n, NULL) == 0);
    return strstr(mi, needle) != NULL;
}

/* Whether some process is in the network namespace of inode ino.  */
static bool netns_in_use(ino_t ino)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    bool used = false;
    while (d && !used && (de = readdir(d))) {
        struct stat st;
        _cleanup_free_ char *p = xasprintf("/proc/%s/ns/net", de->d_name);
        used =
            de->d_name[0] >= '0' && de->d_name[0] <= '9' && stat(p, &st) == 0 && st.st_ino == ino;
    }
    if (d)
        closedir(d);
    return used;
}

static const char *const echo_policy =
    "{\"defaultAction\":\"Deny\",\"rules\":[{\"name\":\"echo\",\"action\":\"Allow\","
    "\"cidrs\":[\"" SRV_ADDR2 "/32\"],\"ports\":[7000]}]}";

START_TEST(test_microvm_egress)
{
    if (!mv_open())
        return;
    const char *id = "mvn-eg";
    int64_t boot_ms, link_ms, relink_ms;
    mv_create(id, &boot_ms);
    _cleanup_free_ char *ns = xasprintf("%s/sandboxes/%s/netns", fx_state, id);
    /* no policy: no link, the guest's card has no driver loaded */
    rt_exec_result_t r = fx_sh(id, "ls /sys/class/net");
    ck_assert_str_eq(r.out, "lo\n");
    rt_exec_result_done(&r);

    apply(id, echo_policy, &link_ms);
    char sb[64], gw[64];
    ck_assert_int_eq(egress_addresses(eg, id, sb, gw, sizeof sb), 1);
    /* the guest has the link's address, MAC and route, and the gateway
     * as its resolver */
    r = fx_sh(id, "cat /sys/class/net/eth0/address /etc/resolv.conf");
    char mac[32];
    ns_mac(id, mac, sizeof mac);
    ck_assert_msg(mac[0] && strncmp(r.out, mac, strlen(mac)) == 0, "guest MAC %s, link's %s", r.out,
                  mac);
    _cleanup_free_ char *ns_line = xasprintf("nameserver %s", gw);
    ck_assert_msg(strstr(r.out, ns_line), "resolv.conf: %s", r.out);
    rt_exec_result_done(&r);

    /* what the policy allows, and nothing else, each denial fast */
    EXPECT(id, true, "tcp", SRV_ADDR2, "7000", NULL);
    EXPECT(id, false, "tcp", SRV_ADDR2, "8080", NULL); /* another port */
    EXPECT(id, false, "tcp", SRV_ADDR, "80", NULL);    /* another address */
    EXPECT(id, false, "udp", SRV_ADDR2, "7001", NULL); /* another port, UDP */
    char port[16];
    int lfd = host_listener(AF_INET, port, sizeof port);
    EXPECT(id, false, "tcp", gw, port, NULL); /* the host: a service on every address */
    EXPECT(id, false, "tcp", HOST_ADDR, port, NULL);
    EXPECT(id, false, "tcp", "127.0.0.1", port,
           NULL); /* the guest's own loopback, not the host's */
    close(lfd);
    EXPECT(id, false, "tcp", "169.254.169.254", "80", NULL);

    /* new rules on the same link: the host's business alone, the guest
     * is not asked */
    int64_t rules_ms;
    apply(id,
          "{\"rules\":[{\"name\":\"echo\",\"action\":\"Allow\",\"cidrs\":[\"" SRV_ADDR2
          "/32\"],\"ports\":[7000,7001]}]}",
          &rules_ms);
    ck_assert_msg(probe_until(id, true, 2000, "udp", SRV_ADDR2, "7001") >= 0,
                  "the new rule did not apply: %s", probe_last);

    /* a policy that allows nothing takes the link away; a later one
     * brings it back */
    apply(id, NULL, NULL);
    ck_assert_int_eq(egress_addresses(eg, id, sb, gw, sizeof sb), 0);
    EXPECT(id, false, "tcp", SRV_ADDR2, "7000", NULL);
    apply(id, echo_policy, &relink_ms);
    ck_assert_msg(probe_until(id, true, 2000, "tcp", SRV_ADDR2, "7000") >= 0,
                  "the link did not come back: %s", probe_last);

    /* a suspend and resume (QEMU ends and starts again): the namespace,
     * its link and the guest's address stay */
    sbx_error_t err = {0};
    int64_t t0 = sbx_monotonic_ms();
    ck_assert_msg(rt_suspend(fx_rt, id, &err) == 0, "suspend: %s", err.msg);
    ck_assert_int_eq(qemu_of(id), 0);
    ck_assert_msg(rt_resume(fx_rt, id, &err) == 0, "resume: %s", err.msg);
    int64_t cycle_ms = sbx_monotonic_ms() - t0;
    ck_assert_msg(probe_until(id, true, 2000, "tcp", SRV_ADDR2, "7000") >= 0,
                  "no link after resume: %s", probe_last);
    EXPECT(id, false, "tcp", SRV_ADDR2, "8080", NULL);
    fprintf(stderr,
            "microvm egress: create-to-first-exec %lld ms; link to a running guest %lld ms, "
            "again %lld ms; new rules %lld ms; suspend+resume %lld ms\n",
            (long long)boot_ms, (long long)link_ms, (long long)relink_ms, (long long)rules_ms,
            (long long)cycle_ms);

    /* destroy: no QEMU, veth, nft element or namespace is left */
    pid_t q = qemu_of(id);
    ck_assert_int_gt(q, 0);
    ck_assert(mounted(ns));
    struct stat nst;
    ck_assert_int_eq(stat(ns, &nst), 0);
    ck_assert(netns_in_use(nst.st_ino)); /* QEMU's */
    ck_assert_int_eq(rt_destroy(fx_rt, id, &err), 0);
    agent_egress_after(eg, fx_rt, id, "delete");
    ck_assert_int_eq(qemu_of(id), 0);
    ck_assert(!mounted(ns));
    /* nothing holds the namespace: it is gone, and its tap with it */
    ck_assert(!netns_in_use(nst.st_ino));
    ck_assert_int_ne(sh("ip -o link show | grep -q 'sx%s-'", tag), 0);
    ck_assert_int_ne(sh("nft list table inet sandboxd_%s 2>/dev/null | grep -q '%s'", tag, sb), 0);
    ck_assert_int_ne(sh("ls %s/sandboxes/%s >/dev/null 2>&1", fx_state, id), 0);
}
END_TEST

/* ---- the isolation probe inside a guest ---- */

static void iso_setup(void)
{
    fx_setup();
}

static void iso_teardown(void)
{
    fx_teardown();
}

/* What a guest sees, with the probe of the process driver's suite; where a
 * VM differs (see runtime/README.md) the expectation says why.  */
START_TEST(test_microvm_isolation_probe)
{
    if (!mv_open())
        return;
    const char *id = "mvn-iso";
    _cleanup_free_ char *marker = xasprintf("%s/host-only", fx_dir);
    sbx_error_t err = {0};
    ck_assert(sbx_write_file_atomic(marker, "host\n", 5, 0644, &err) == 0);
    int64_t boot_ms;
    mv_create(id, &boot_ms);
    pid_t qemu = qemu_of(id);
    ck_assert_int_gt(qemu, 0);

    /* its own machine: pids of its own (not the host's, not QEMU's), its
     * hostname, loopback only, its own kernel */
    json_t *j = fx_probe(id, "info", NULL, NULL);
    json_t *pids = json_object_get(j, "pids");
    size_t i;
    json_t *v;
    json_array_foreach(pids, i, v)
    {
        ck_assert_int_ne(json_integer_value(v), qemu);
        ck_assert_int_ne(json_integer_value(v), getpid());
    }
    ck_assert_int_eq(json_integer_value(json_array_get(pids, 0)), 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "hostname")), id);
    json_t *ifaces = json_object_get(j, "ifaces");
    ck_assert_int_eq(json_array_size(ifaces), 1);
    ck_assert_str_eq(json_string_value(json_array_get(ifaces, 0)), "lo");
    json_decref(j);
    struct utsname u;
    uname(&u);
    rt_exec_result_t r = fx_sh(id, "uname -r");
    ck_assert_msg(strncmp(r.out, u.release, strlen(u.release)) != 0, "the host's kernel: %s",
                  r.out);
    rt_exec_result_done(&r);

    /* the host's processes: not there to signal or trace */
    _cleanup_free_ char *self = xasprintf("%d", (int)getpid());
    _cleanup_free_ char *qp = xasprintf("%d", (int)qemu);
    j = fx_probe(id, "kill", self, "0");
    ck_assert(!json_is_true(json_object_get(j, "ok")));
    json_decref(j);
    j = fx_probe(id, "ptrace", qp, NULL);
    ck_assert(!json_is_true(json_object_get(j, "ok")));
    json_decref(j);

    /* the host's files, devices and kernel command line: absent */
    const char *const absent[] = {marker, "/dev/kvm", "/dev/net/tun", fx_state};
    for (i = 0; i < ARRAY_SIZE(absent); i++) {
        j = fx_probe(id, "read", absent[i], NULL);
        ck_assert_msg(!json_is_true(json_object_get(j, "ok")), "the guest reads %s", absent[i]);
        json_decref(j);
    }
    _cleanup_free_ char *host_cmdline = NULL;
    size_t n;
    ck_assert(sbx_read_file("/proc/cmdline", &host_cmdline, &n, NULL) == 0);
    j = fx_probe(id, "read", "/proc/cmdline", NULL);
    const char *gcmd = json_string_value(json_object_get(j, "data"));
    ck_assert_msg(gcmd && strstr(gcmd, "sbx.hostname=") && strcmp(gcmd, host_cmdline) != 0,
                  "guest cmdline %s", gcmd ? gcmd : "(none)");
    json_decref(j);
    /* the image's files are the guest's own copy: a change stays in its
     * disk */
    r = fx_sh(id, "echo changed > /etc/image-marker && cat /etc/image-marker");
    ck_assert_str_eq(r.out, "changed\n");
    rt_exec_result_done(&r);
    _cleanup_free_ char *img_marker = fx_path("etc/image-marker");
    _cleanup_free_ char *img = NULL;
    ck_assert(sbx_read_file(img_marker, &img, &n, NULL) == 0);
    ck_assert_str_eq(img, "image\n");

    /* memory: bounded by the VM's size; the guest's kernel ends the hog
     * and the guest goes on */
    char *argv[] = {"/bin/probe", "memhog", "1024", NULL};
    r = fx_execv(id, argv, 60000);
    ck_assert_msg(r.signal == SIGKILL, "memhog: exit %d signal %d out '%s'", r.exit_code, r.signal,
                  r.out);
    rt_exec_result_done(&r);
    r = fx_sh(id, "echo recovered");
    ck_assert_str_eq(r.out, "recovered\n");
    rt_exec_result_done(&r);
    ck_assert_int_eq(qemu_of(id), qemu);
    fprintf(stderr, "microvm isolation: create-to-first-exec %lld ms\n", (long long)boot_ms);
    ck_assert_int_eq(rt_destroy(fx_rt, id, &err), 0);
    ck_assert_int_eq(qemu_of(id), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("runtime_microvm_net");
    TCase *tc = tcase_create("egress");
    tcase_add_checked_fixture(tc, eg_setup, eg_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_microvm_egress);
    suite_add_tcase(s, tc);
    tc = tcase_create("isolation");
    tcase_add_checked_fixture(tc, iso_setup, iso_teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_microvm_isolation_probe);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "needs root, skipped\n");
        return 0;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
