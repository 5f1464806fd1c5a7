/* net6.c -- IPv6 on a sandbox's link: a /127 of the agent's ULA pool on
 * each end and a default route in the sandbox, over rtnetlink; and IPv6
 * forwarding on the host.  Kept apart from net.c's link making, which
 * needs no change for it.  */
#include "egress/internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <string.h>

#define SANDBOX_IF "eth0"

static int talk(struct mnl_socket *nl, struct nlmsghdr *nlh, const char *what, sbx_error_t *err)
{
    static _Atomic unsigned seq_counter = 1;
    nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = seq_counter++;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink %s", what);
    char buf[MNL_SOCKET_BUFFER_SIZE];
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
        if (n < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink %s", what);
        int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, mnl_socket_get_portid(nl), NULL, NULL);
        if (r < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "%s", what);
        if (r == MNL_CB_STOP)
            return 0;
    }
}

static struct mnl_socket *nl_open(sbx_error_t *err)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0)
        return nl;
    sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink socket");
    if (nl)
        mnl_socket_close(nl);
    return NULL;
}

/* No duplicate address detection: a tentative address could not be used
 * for a second or more, and nothing else is on a /127.  */
static int addr6_add(struct mnl_socket *nl, int index, const struct in6_addr *a, sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWADDR;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
    ifa->ifa_family = AF_INET6;
    ifa->ifa_prefixlen = 127;
    ifa->ifa_flags = IFA_F_NODAD;
    ifa->ifa_index = (unsigned)index;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    mnl_attr_put(nlh, IFA_LOCAL, 16, a);
    mnl_attr_put(nlh, IFA_ADDRESS, 16, a);
    mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
    return talk(nl, nlh, "add the link's IPv6 address", err);
}

static int route6_default(struct mnl_socket *nl, int index, const struct in6_addr *gw,
                          sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWROUTE;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
    rtm->rtm_family = AF_INET6;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    mnl_attr_put(nlh, RTA_GATEWAY, 16, gw);
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
    return talk(nl, nlh, "add the IPv6 default route", err);
}

/* The sandbox's end: its index from the namespace's own socket
 * (SIOCGIFINDEX asks the namespace the socket belongs to), no thread (see
 * net.c's nl_open_in: a thread of its own cost milliseconds to schedule on
 * a busy host).  */
static int configure_inside(int netns_fd, const struct in6_addr *host6, const struct in6_addr *sb6,
                            sbx_error_t *err)
{
    struct mnl_socket *nl = eg_nl_open_in(netns_fd, err);
    if (!nl)
        return -1;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", SANDBOX_IF);
    int rc = ioctl(mnl_socket_get_fd(nl), SIOCGIFINDEX, &ifr);
    if (rc < 0)
        sbx_error_errno(err, SBX_ERR_INTERNAL, "the sandbox's %s", SANDBOX_IF);
    else if (addr6_add(nl, ifr.ifr_ifindex, sb6, err) < 0 ||
             route6_default(nl, ifr.ifr_ifindex, host6, err) < 0)
        rc = -1;
    mnl_socket_close(nl);
    return rc;
}

int eg_link_ipv6(int ifindex, int netns_fd, const struct in6_addr *host6,
                 const struct in6_addr *sb6, sbx_error_t *err)
{
    struct mnl_socket *nl = nl_open(err);
    if (!nl)
        return -1;
    int rc = addr6_add(nl, ifindex, host6, err);
    mnl_socket_close(nl);
    return rc < 0 ? -1 : configure_inside(netns_fd, host6, sb6, err);
}

static bool sysctl_is(const char *path, char want)
{
    _cleanup_free_ char *cur = NULL;
    size_t len;
    return sbx_read_file(path, &cur, &len, NULL) == 0 && len > 0 && cur[0] == want;
}

static int sysctl_set(const char *path, const char *value)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(value);
    return fd >= 0 && write(fd, value, n) == (ssize_t)n ? 0 : -1;
}

/* With forwarding on, an interface with accept_ra 1 ignores router
 * advertisements, and a host that takes its IPv6 route from them would
 * lose it; 2 keeps taking them (as Docker advises).  */
static void keep_router_advertisements(void)
{
    DIR *d = opendir("/proc/sys/net/ipv6/conf");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "all") == 0)
            continue;
        _cleanup_free_ char *path = xasprintf("/proc/sys/net/ipv6/conf/%s/accept_ra", de->d_name);
        if (sysctl_is(path, '1') && sysctl_set(path, "2\n") < 0)
            sbx_log(SBX_LOG_WARN, MODULE, "cannot keep router advertisements on %s", de->d_name);
    }
    closedir(d);
}

int eg_ipv6_forwarding_on(sbx_error_t *err)
{
    const char *path = "/proc/sys/net/ipv6/conf/all/forwarding";
    if (sysctl_is(path, '1'))
        return 0;
    sbx_log(SBX_LOG_INFO, MODULE, "turning IPv6 forwarding on for sandbox links");
    keep_router_advertisements();
    if (sysctl_set(path, "1\n") < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "cannot turn IPv6 forwarding on");
    return 0;
}
