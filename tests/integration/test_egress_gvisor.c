/* test_egress_gvisor.c -- egress for gVisor sandboxes: the link goes into
 * the sandbox's network namespace before runsc boots it (the runtime's net
 * hook, as the agent sets it), gVisor's own network stack carries the
 * traffic, and the same nft rules, proxy and resolver decide as for
 * `process`.  Test servers run in a network namespace the test makes (see
 * egress_fixture.h); a static client inside (tests/probe/netprobe.c) tries
 * what the policy allows and what it must not.  Skipped (with a message)
 * where health says gvisor does not work.  */
#include <arpa/inet.h>
#include <net/if.h>
#include <sys/stat.h>

#define POOL_SECOND_OCTET 238
/* the upper half of the other egress tests' /24: the longer prefix wins */
#define SRV_ADDR "203.0.113.130"
#define SRV_ADDR2 "203.0.113.131"
#define HOST_ADDR "203.0.113.129"
#define SRV_PREFIX "/25"
#define SRV6_ADDR "2001:db8:113:1::2"
#define SRV6_ADDR2 "2001:db8:113:1::3"
#define HOST6_ADDR "2001:db8:113:1::1"
#define SRV_ULA "fd00:77:0:1::3"
#define HOST_ULA "fd00:77:0:1::1"
#include "tests/integration/egress_fixture.h"
#include "tests/integration/test_runtime_fixture.h"
#include "tests/integration/egress_probe.h"

/* What the agent's hook does (agent_egress_boot).  */
static int boot_hook(void *arg, const char *id, int netns_fd, sbx_error_t *err)
{
    return egress_boot_link(arg, id, netns_fd, err);
}

static void egress_start(void)
{
    eg_start(NULL);
    rt_set_net_hook(fx_rt, boot_hook, eg);
}

static void setup(void)
{
    fx_setup();
    netprobe_install();
    egress_start();
}

static void teardown(void)
{
    if (eg && fx_rt)
        rt_set_net_hook(fx_rt, NULL, NULL);
    eg_stop();
    fx_teardown();
}

static void apply(const char *id, const char *text)
{
    _cleanup_json_ json_t *p = text ? policy(text) : NULL;
    sbx_error_t err = {0};
    ck_assert_msg(egress_apply(eg, id, -1, p, &err) == 0, "egress_apply: %s", err.msg);
}

/* A running gVisor sandbox with the policy (NULL: none), recorded before
 * the create as the agent records it.  */
static void sandbox(const char *id, const char *pol)
{
    apply(id, pol);
    rt_spec_t spec = {.driver = "gvisor"};
    int64_t t0 = sbx_monotonic_ms();
    fx_create(id, &spec);
    fprintf(stderr, "gvisor create with its egress link: %lld ms\n",
            (long long)(sbx_monotonic_ms() - t0));
}

static const char *const web_policy =
    "{\"defaultAction\":\"Deny\",\"rules\":["
    "{\"name\":\"web\",\"action\":\"Allow\",\"fqdns\":[\"ok.test\"],\"ports\":[80]},"
    "{\"name\":\"echo\",\"action\":\"Allow\",\"cidrs\":[\"" SRV_ADDR2 "/32\"],\"ports\":[7000]}]}";

static const char *const echo_policy =
    "{\"rules\":[{\"name\":\"echo\",\"action\":\"Allow\",\"cidrs\":[\"" SRV_ADDR2 "/32\"],"
    "\"ports\":[7000]}]}";

static const char *const nothing_policy = "{\"defaultAction\":\"Deny\",\"rules\":[]}";

START_TEST(gvisor_allowed_and_denied)
{
    if (!fx_driver_available("gvisor"))
        return;
    sandbox("egv-a", web_policy);
    char sb[64], gw[64];
    ck_assert_int_eq(egress_addresses(eg, "egv-a", sb, gw, 64), 1);

    /* gVisor's stack holds the link's address; the host's kernel no longer
     * answers for it inside the namespace (runsc took it) */
    json_t *info = fx_probe("egv-a", "info", NULL, NULL);
    _cleanup_free_ char *dump = json_dumps(json_object_get(info, "ifaces"), JSON_COMPACT);
    ck_assert_msg(strstr(dump, "eth0") && strstr(dump, "lo"), "interfaces: %s", dump);
    json_decref(info);

    /* allowed: a name over HTTP (through the proxy), a CIDR and port, and
     * DNS over UDP to the gateway's resolver */
    EXPECT("egv-a", true, "http", SRV_ADDR, "80", "ok.test");
    EXPECT("egv-a", true, "tcp", SRV_ADDR2, "7000", NULL);
    EXPECT("egv-a", true, "dns", gw, "ok.test", NULL);

    /* denied, each within a second */
    EXPECT("egv-a", false, "tcp", SRV_ADDR2, "8080", NULL);       /* another port */
    EXPECT("egv-a", false, "http", SRV_ADDR, "80", "other.test"); /* another name */
    EXPECT("egv-a", false, "http", SRV_ADDR, "80", SRV_ADDR);     /* an IP literal */
    EXPECT("egv-a", false, "tcp", "169.254.169.254", "80", NULL); /* metadata */
    EXPECT("egv-a", false, "dns", gw, "other.test", NULL);        /* a name no rule allows */
    EXPECT("egv-a", false, "raw", NULL, NULL, NULL);              /* runsc without --net-raw */
    EXPECT("egv-a", false, "packet", NULL, NULL, NULL);

    /* the host: a service on it (as the agent's API is), through the
     * gateway and through the host's other address */
    char port[16];
    int lfd = host_listener(AF_INET, port, sizeof port);
    EXPECT("egv-a", false, "tcp", gw, port, NULL);
    EXPECT("egv-a", false, "tcp", HOST_ADDR, port, NULL);
    close(lfd);

    sbx_error_t err = {0};
    _cleanup_json_ json_t *d = egress_decisions(eg, "egv-a", &err);
    ck_assert_msg(d, "%s", err.msg);
    ck_assert_int_ge(json_integer_value(json_object_get(d, "denied")), 3);
}
END_TEST

/* The link is there from the boot on, policy or not, so a live change
 * applies both ways; it comes back after a restore from a checkpoint,
 * stays through the freezer, comes back after a stop and start, and after
 * an agent restart; destroy leaves nothing.  */
START_TEST(gvisor_live_updates_and_lifecycle)
{
    if (!fx_driver_available("gvisor"))
        return;
    sandbox("egv-l", NULL);
    char sb[64], gw[64];
    ck_assert_int_eq(egress_addresses(eg, "egv-l", sb, gw, 64), 1);

    /* a link that has carried nothing yet: a checkpoint, and the restore
     * boots with a new link (runsc copies the namespace again) */
    sbx_error_t err = {0};
    ck_assert_msg(rt_suspend(fx_rt, "egv-l", &err) == 0, "%s", err.msg);
    _cleanup_free_ char *img = xasprintf("%s/sandboxes/egv-l/checkpoint/checkpoint.img", fx_state);
    ck_assert_msg(access(img, F_OK) == 0, "suspended without a checkpoint");
    ck_assert_msg(rt_resume(fx_rt, "egv-l", &err) == 0, "%s", err.msg);
    EXPECT("egv-l", false, "tcp", SRV_ADDR2, "7000", NULL);

    apply("egv-l", echo_policy);
    fprintf(stderr, "a policy allowing it reached the sandbox in %lld ms\n",
            (long long)UNTIL("egv-l", true, 2000, "tcp", SRV_ADDR2, "7000"));
    apply("egv-l", nothing_policy);
    fprintf(stderr, "a policy allowing nothing reached it in %lld ms\n",
            (long long)UNTIL("egv-l", false, 2000, "tcp", SRV_ADDR2, "7000"));
    ck_assert_int_eq(egress_addresses(eg, "egv-l", sb, gw, 64), 1); /* the link stays */
    apply("egv-l", echo_policy);
    UNTIL("egv-l", true, 2000, "tcp", SRV_ADDR2, "7000");

    /* suspended after the link carried traffic: the freezer (runsc cannot
     * save such a sandbox's TCP state), and the link stays */
    ck_assert_msg(rt_suspend(fx_rt, "egv-l", &err) == 0, "%s", err.msg);
    ck_assert_int_ne(access(img, F_OK), 0);
    ck_assert_msg(rt_resume(fx_rt, "egv-l", &err) == 0, "%s", err.msg);
    EXPECT("egv-l", true, "tcp", SRV_ADDR2, "7000", NULL);

    /* stop (the agent drops the link) and start (a new one) */
    ck_assert_msg(rt_stop(fx_rt, "egv-l", &err) == 0, "%s", err.msg);
    egress_release(eg, "egv-l", false);
    _cleanup_free_ char *nsfile = xasprintf("%s/sandboxes/egv-l/netns", fx_state);
    ck_assert_int_ne(access(nsfile, F_OK), 0);
    ck_assert_msg(rt_start(fx_rt, "egv-l", &err) == 0, "%s", err.msg);
    EXPECT("egv-l", true, "tcp", SRV_ADDR2, "7000", NULL);

    /* an agent restart: the new egress state takes the link back as it is */
    rt_set_net_hook(fx_rt, NULL, NULL);
    egress_close(eg);
    egress_start();
    ck_assert_int_eq(sh("nft list table inet sandboxd_%s | grep -q ' : jump '", tag), 1);
    apply("egv-l", echo_policy);
    ck_assert_int_eq(egress_addresses(eg, "egv-l", sb, gw, 64), 1);
    EXPECT("egv-l", true, "tcp", SRV_ADDR2, "7000", NULL);
    EXPECT("egv-l", false, "tcp", SRV_ADDR2, "8080", NULL);

    /* destroy: no namespace, link, map element or record */
    struct stat st;
    ck_assert_int_eq(stat(nsfile, &st), 0);
    ck_assert_msg(rt_destroy(fx_rt, "egv-l", &err) == 0, "%s", err.msg);
    egress_release(eg, "egv-l", true);
    ck_assert_int_ne(access(nsfile, F_OK), 0);
    ck_assert_int_eq(sh("ip -o link | grep -q ' sx%s-'", tag), 1);
    ck_assert_int_eq(sh("nft list table inet sandboxd_%s | grep -q ' : jump '", tag), 1);
    ck_assert_ptr_null(egress_decisions(eg, "egv-l", &err));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("egress_gvisor");
    TCase *tc = tcase_create("egress_gvisor");
    tcase_add_unchecked_fixture(tc, servers_start, servers_stop);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_unchecked_fixture(tc, NULL, fx_sweep);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, gvisor_allowed_and_denied);
    tcase_add_test(tc, gvisor_live_updates_and_lifecycle);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
