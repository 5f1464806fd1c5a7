/* egress_fixture.h -- the egress tests' outside world: a network namespace
 * with test servers (tests/integration/egress_servers.py: HTTP, HTTPS with a
 * self-signed certificate, TCP and UDP echo, DNS) linked to the host by a
 * veth, so no test traffic leaves the machine.  Header-only.  */
#ifndef SBX_TEST_EGRESS_FIXTURE_H
#define SBX_TEST_EGRESS_FIXTURE_H

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/testutil.h"

/* A test may name a network of its own (all four), so egress tests that
 * run side by side on one host do not route to each other's servers.  */
#ifndef SRV_ADDR
#define SRV_ADDR "203.0.113.2"  /* HTTP, HTTPS, DNS */
#define SRV_ADDR2 "203.0.113.3" /* TCP and UDP echo, HTTP on 8080 */
#define HOST_ADDR "203.0.113.1"
#define SRV_PREFIX "/24"
#endif
#ifndef SRV6_ADDR
/* the same servers on IPv6 (documentation prefix, reached through NAT66) */
#define SRV6_ADDR "2001:db8:113::2"
#define SRV6_ADDR2 "2001:db8:113::3"
#define HOST6_ADDR "2001:db8:113::1"
/* and on a unique local address (reached only by a CIDR rule naming it) */
#define SRV_ULA "fd00:77::3"
#define HOST_ULA "fd00:77::1"
#endif

static char netns[32], host_if[16], tag[8], pool[32];
static pid_t servers;
static char *cert_dir;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static int sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *cmd = NULL;
    ck_assert(vasprintf(&cmd, fmt, ap) >= 0);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The servers' namespace, its link to the host, and the servers.  */
static void servers_start(void)
{
    int id = (int)getpid() % 100000;
    snprintf(netns, sizeof netns, "sbxeg-%d", id);
    snprintf(host_if, sizeof host_if, "sbxeg%d", id);
    snprintf(tag, sizeof tag, "t%05x", id & 0xfffff);
    snprintf(pool, sizeof pool, "10.%d.%d.0/24", POOL_SECOND_OCTET, id % 256);
    cert_dir = tu_tmpdir("sbx-eg-cert");
    ck_assert_int_eq(sh("ip netns add %s && ip link add %s type veth peer name eth0 netns %s && "
                        "ip addr add " HOST_ADDR SRV_PREFIX " dev %s && ip link set %s up && "
                        "ip -n %s addr add " SRV_ADDR SRV_PREFIX " dev eth0 && "
                        "ip -n %s addr add " SRV_ADDR2 SRV_PREFIX " dev eth0 && "
                        "ip -n %s link set eth0 up && ip -n %s link set lo up && "
                        "ip -n %s route add default via " HOST_ADDR " && "
                        "ip addr add " HOST6_ADDR "/64 dev %s nodad && "
                        "ip -n %s addr add " SRV6_ADDR "/64 dev eth0 nodad && "
                        "ip -n %s addr add " SRV6_ADDR2 "/64 dev eth0 nodad && "
                        "ip -n %s route add default via " HOST6_ADDR " && "
                        "ip addr add " HOST_ULA "/64 dev %s nodad && "
                        "ip -n %s addr add " SRV_ULA "/64 dev eth0 nodad",
                        netns, host_if, netns, host_if, host_if, netns, netns, netns, netns, netns,
                        host_if, netns, netns, netns, host_if, netns),
                     0);
    ck_assert_int_eq(sh("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ok.test "
                        "-keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1",
                        cert_dir, cert_dir),
                     0);
    int out[2];
    ck_assert_int_eq(pipe(out), 0);
    servers = fork();
    ck_assert_int_ge(servers, 0);
    if (servers == 0) {
        int in[2];
        if (pipe(in) < 0)
            _exit(1);
        dup2(in[0], 0); /* stdin never ends: the servers run until killed */
        dup2(out[1], 1);
        _cleanup_free_ char *script = tu_src("tests/integration/egress_servers.py");
        _cleanup_free_ char *cert = xasprintf("%s/cert.pem", cert_dir);
        _cleanup_free_ char *key = xasprintf("%s/key.pem", cert_dir);
        execlp("ip", "ip", "netns", "exec", netns, "python3", script, cert, key, SRV_ADDR2,
               SRV6_ADDR2, "ok.test=" SRV_ADDR, "ok.test=" SRV6_ADDR, "a.wild.test=" SRV_ADDR,
               "other.test=" SRV_ADDR, "other.test=" SRV6_ADDR, "private.test=10.77.0.2",
               "loop.test=127.0.0.1", "v6only.test=" SRV6_ADDR, "private6.test=fd00:77::2",
               "mapped6.test=::ffff:" SRV_ADDR2, "loop6.test=::1", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char buf[16] = "";
    ssize_t n = read(out[0], buf, sizeof buf - 1);
    close(out[0]);
    ck_assert_msg(n > 0 && strncmp(buf, "ready", 5) == 0, "test servers did not start");
}

static void servers_stop(void)
{
    if (servers > 0) {
        kill(servers, SIGKILL);
        waitpid(servers, NULL, 0);
        servers = 0;
    }
    if (netns[0]) {
        sh("ip netns pids %s 2>/dev/null | xargs -r kill -9; ip link del %s 2>/dev/null; "
           "ip netns del %s 2>/dev/null; nft delete table inet sandboxd_%s 2>/dev/null",
           netns, host_if, netns, tag);
        netns[0] = '\0';
    }
    if (cert_dir) {
        tu_rmdir(cert_dir);
        free(cert_dir);
        cert_dir = NULL;
    }
}

#endif
