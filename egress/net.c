/* net.c -- a sandbox's veth link, made with rtnetlink (libmnl) rather than
 * `ip`, so it costs well under a millisecond instead of several forks.  */
#include "egress/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SANDBOX_IF "eth0"

/* Send one request and wait for its acknowledgement.  */
static int nl_talk(struct mnl_socket *nl, struct nlmsghdr *nlh, const char *what, sbx_error_t *err)
{
    static _Atomic unsigned seq_counter = 1;
    nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = seq_counter++;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink %s", what);
    char buf[MNL_SOCKET_BUFFER_SIZE];
    unsigned portid = mnl_socket_get_portid(nl);
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
        if (n < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink %s", what);
        int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, NULL, NULL);
        if (r < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "%s", what);
        if (r == MNL_CB_STOP)
            return 0;
    }
}

static struct nlmsghdr *link_msg(char *buf, uint16_t type, uint16_t flags, int index)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
    ifm->ifi_family = AF_UNSPEC;
    ifm->ifi_index = index;
    return nlh;
}

/* No IPv6 address (not even link-local) on the link: the sandbox's
 * IPv6 fails at once instead of reaching the host's fe80:: address.  */
static int link_no_ipv6(struct mnl_socket *nl, int index, sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, index);
    struct nlattr *spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    struct nlattr *in6 = mnl_attr_nest_start(nlh, AF_INET6);
    mnl_attr_put_u8(nlh, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
    mnl_attr_nest_end(nlh, in6);
    mnl_attr_nest_end(nlh, spec);
    return nl_talk(nl, nlh, "set the link's IPv6 address mode", err);
}

static int link_up(struct mnl_socket *nl, int index, sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, index);
    struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    return nl_talk(nl, nlh, "bring the link up", err);
}

static int addr_add(struct mnl_socket *nl, int index, struct in_addr local, struct in_addr peer,
                    sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWADDR;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = 31;
    ifa->ifa_index = (unsigned)index;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    mnl_attr_put(nlh, IFA_LOCAL, 4, &local);
    mnl_attr_put(nlh, IFA_ADDRESS, 4, &local);
    (void)peer;
    return nl_talk(nl, nlh, "add the link's address", err);
}

static int default_route(struct mnl_socket *nl, int index, struct in_addr gw, sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_NEWROUTE;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
    rtm->rtm_family = AF_INET;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    mnl_attr_put(nlh, RTA_GATEWAY, 4, &gw);
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
    return nl_talk(nl, nlh, "add the default route", err);
}

static struct mnl_socket *nl_open(sbx_error_t *err)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink socket");
        return NULL;
    }
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink bind");
        mnl_socket_close(nl);
        return NULL;
    }
    return nl;
}

/* The sandbox's end is configured from a thread that entered its network
 * namespace: a netlink socket belongs to the namespace it was made in, and
 * only this short-lived thread ever leaves the host's.  */
typedef struct inside {
    int netns_fd;
    struct in_addr host_addr, sb_addr;
    sbx_error_t err;
    int rc;
} inside_t;

static void *configure_inside(void *arg)
{
    inside_t *in = arg;
    in->rc = -1;
    if (setns(in->netns_fd, CLONE_NEWNET) < 0) {
        sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "enter the sandbox's network namespace");
        return NULL;
    }
    struct mnl_socket *nl = nl_open(&in->err);
    if (!nl)
        return NULL;
    int index = (int)if_nametoindex(SANDBOX_IF);
    if (index <= 0)
        sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "the sandbox's %s", SANDBOX_IF);
    else if (link_no_ipv6(nl, index, &in->err) == 0 &&
             addr_add(nl, index, in->sb_addr, in->host_addr, &in->err) == 0 &&
             link_up(nl, index, &in->err) == 0 &&
             default_route(nl, index, in->host_addr, &in->err) == 0)
        in->rc = 0;
    mnl_socket_close(nl);
    return NULL;
}

static int veth_new(struct mnl_socket *nl, const char *host_if, uint32_t group, int netns_fd,
                    sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, host_if);
    mnl_attr_put_u32(nlh, IFLA_GROUP, group);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof *pifm);
    memset(pifm, 0, sizeof *pifm);
    pifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, SANDBOX_IF);
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
    mnl_attr_nest_end(nlh, peer);
    mnl_attr_nest_end(nlh, data);
    mnl_attr_nest_end(nlh, info);
    return nl_talk(nl, nlh, "create the veth pair", err);
}

void eg_link_delete(const char *host_if)
{
    sbx_error_t err = {0};
    struct mnl_socket *nl = nl_open(&err);
    if (!nl)
        return;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_DELLINK, 0, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, host_if);
    if (nl_talk(nl, nlh, "delete the link", &err) < 0 && errno != ENODEV)
        sbx_log(SBX_LOG_WARN, MODULE, "%s: %s", host_if, err.msg);
    mnl_socket_close(nl);
}

/* Strict reverse-path filtering on the host end: a packet whose source is
 * not the sandbox's own address is dropped before routing, so it can ask
 * neither the resolver nor the proxy as another sandbox.  (An unprivileged
 * sandbox cannot send one anyway; this is the second line.)  */
static int rp_filter_strict(const char *host_if, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("/proc/sys/net/ipv4/conf/%s/rp_filter", host_if);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1\n", 2) != 2)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "%s", path);
    return 0;
}

int eg_link_create(const char *host_if, uint32_t group, int netns_fd, struct in_addr host_addr,
                   struct in_addr sb_addr, int *ifindex, sbx_error_t *err)
{
    struct mnl_socket *nl = nl_open(err);
    if (!nl)
        return -1;
    int rc = veth_new(nl, host_if, group, netns_fd, err);
    if (rc < 0 && errno == EEXIST) {
        /* left by an agent that stopped, or the sandbox's earlier run */
        eg_link_delete(host_if);
        sbx_error_clear(err);
        rc = veth_new(nl, host_if, group, netns_fd, err);
    }
    int index = rc == 0 ? (int)if_nametoindex(host_if) : 0;
    if (rc == 0 && index <= 0)
        rc = sbx_error_errno(err, SBX_ERR_INTERNAL, "the new link %s", host_if);
    if (rc == 0)
        rc = link_no_ipv6(nl, index, err);
    if (rc == 0)
        rc = rp_filter_strict(host_if, err);
    if (rc == 0)
        rc = addr_add(nl, index, host_addr, sb_addr, err);
    if (rc == 0)
        rc = link_up(nl, index, err);
    mnl_socket_close(nl);
    if (rc == 0) {
        inside_t in = {.netns_fd = netns_fd, .host_addr = host_addr, .sb_addr = sb_addr};
        pthread_t t;
        if (pthread_create(&t, NULL, configure_inside, &in) != 0) {
            rc = sbx_error_set(err, SBX_ERR_INTERNAL, "cannot start a thread");
        } else {
            pthread_join(t, NULL);
            rc = in.rc;
            if (rc < 0)
                *err = in.err;
        }
    }
    if (rc < 0) {
        eg_link_delete(host_if);
        return -1;
    }
    *ifindex = index;
    return 0;
}
