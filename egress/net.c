/* net.c -- a sandbox's veth link, made with rtnetlink (libmnl) rather than
 * `ip`, so it costs well under a millisecond instead of several forks.  */
#include "egress/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/ip.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define SANDBOX_IF "eth0"

/* Send the `n` requests laid end to end in buf[0..len) in one sendmsg and
 * wait for all their acknowledgements: the kernel handles them in order,
 * and one round trip instead of n keeps the create path short on a busy
 * host.  what[i] names request i in an error; the first failure wins (errno
 * is its error).  */
static int nl_talk_batch(struct mnl_socket *nl, char *buf, size_t len, unsigned n,
                         const char *const *what, sbx_error_t *err)
{
    static _Atomic unsigned seq_counter = 1;
    unsigned first = atomic_fetch_add(&seq_counter, n);
    size_t off = 0;
    for (unsigned i = 0; i < n; i++) {
        struct nlmsghdr *nlh = (struct nlmsghdr *)(buf + off);
        nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
        nlh->nlmsg_seq = first + i;
        off += NLMSG_ALIGN(nlh->nlmsg_len);
    }
    if (mnl_socket_sendto(nl, buf, len) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink %s", what[0]);
    char rbuf[MNL_SOCKET_BUFFER_SIZE];
    unsigned portid = mnl_socket_get_portid(nl), acked = 0;
    int rc = 0, saved = 0;
    while (acked < n) {
        ssize_t got = mnl_socket_recvfrom(nl, rbuf, sizeof rbuf);
        if (got < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink %s", what[acked]);
        int left = (int)got;
        for (const struct nlmsghdr *h = (const void *)rbuf; mnl_nlmsg_ok(h, left);
             h = mnl_nlmsg_next(h, &left)) {
            if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_pid != portid || h->nlmsg_seq - first >= n)
                continue;
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
            if (h->nlmsg_len < mnl_nlmsg_size(sizeof *e))
                return sbx_error_set(err, SBX_ERR_INTERNAL, "netlink %s: short answer",
                                     what[h->nlmsg_seq - first]);
            acked++;
            if (e->error < 0 && rc == 0) {
                saved = -e->error;
                errno = saved;
                rc = sbx_error_errno(err, SBX_ERR_INTERNAL, "%s", what[h->nlmsg_seq - first]);
            }
        }
    }
    if (rc < 0)
        errno = saved;
    return rc;
}

/* Send one request and wait for its acknowledgement.  */
static int nl_talk(struct mnl_socket *nl, struct nlmsghdr *nlh, const char *what, sbx_error_t *err)
{
    return nl_talk_batch(nl, (char *)nlh, nlh->nlmsg_len, 1, &what, err);
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

/* Requests are built one after the other into a batch buffer.  */
typedef struct nl_batch {
    char buf[2048]; /* six short requests at most */
    size_t len;
    unsigned n;
    const char *what[8];
} nl_batch_t;

static char *batch_next(nl_batch_t *b, const char *what)
{
    b->what[b->n++] = what;
    return b->buf + b->len;
}

static void batch_done(nl_batch_t *b, const struct nlmsghdr *nlh)
{
    b->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

/* No IPv6 address (not even link-local) on the link: the sandbox's
 * IPv6 fails at once instead of reaching the host's fe80:: address.  On
 * the host end also strict reverse-path filtering: a packet whose source
 * is not the sandbox's own address is dropped before routing, so it can
 * ask neither the resolver nor the proxy as another sandbox.  (An
 * unprivileged sandbox cannot send one anyway; this is the second line.)
 * Set over netlink with the rest rather than through /proc/sys, and before
 * the link goes up, so no link-local address is ever made.  */
static void put_link_conf(nl_batch_t *b, int index, bool rp_strict)
{
    struct nlmsghdr *nlh =
        link_msg(batch_next(b, "set the link's address modes"), RTM_NEWLINK, 0, index);
    struct nlattr *spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
    if (rp_strict) {
        struct nlattr *in4 = mnl_attr_nest_start(nlh, AF_INET);
        struct nlattr *conf = mnl_attr_nest_start(nlh, IFLA_INET_CONF);
        mnl_attr_put_u32(nlh, IPV4_DEVCONF_RP_FILTER, 1);
        mnl_attr_nest_end(nlh, conf);
        mnl_attr_nest_end(nlh, in4);
    }
    struct nlattr *in6 = mnl_attr_nest_start(nlh, AF_INET6);
    mnl_attr_put_u8(nlh, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
    mnl_attr_nest_end(nlh, in6);
    mnl_attr_nest_end(nlh, spec);
    batch_done(b, nlh);
}

static void put_link_up(nl_batch_t *b, int index)
{
    struct nlmsghdr *nlh = link_msg(batch_next(b, "bring the link up"), RTM_NEWLINK, 0, index);
    struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
    ifm->ifi_flags = IFF_UP;
    ifm->ifi_change = IFF_UP;
    batch_done(b, nlh);
}

/* An IPv4 /31 or an IPv6 /127; the IPv6 one without duplicate address
 * detection (a tentative address could not be used for a second or more,
 * and nothing else is on a /127).  */
static void put_addr(nl_batch_t *b, int index, int family, const void *local)
{
    bool v6 = family == AF_INET6;
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(
        batch_next(b, v6 ? "add the link's IPv6 address" : "add the link's address"));
    nlh->nlmsg_type = RTM_NEWADDR;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
    ifa->ifa_family = (uint8_t)family;
    ifa->ifa_prefixlen = v6 ? 127 : 31;
    ifa->ifa_flags = v6 ? IFA_F_NODAD : 0;
    ifa->ifa_index = (unsigned)index;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    mnl_attr_put(nlh, IFA_LOCAL, v6 ? 16 : 4, local);
    mnl_attr_put(nlh, IFA_ADDRESS, v6 ? 16 : 4, local);
    if (v6)
        mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
    batch_done(b, nlh);
}

static void put_default_route(nl_batch_t *b, int index, int family, const void *gw)
{
    bool v6 = family == AF_INET6;
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(
        batch_next(b, v6 ? "add the IPv6 default route" : "add the default route"));
    nlh->nlmsg_type = RTM_NEWROUTE;
    nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
    rtm->rtm_family = (uint8_t)family;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    mnl_attr_put(nlh, RTA_GATEWAY, v6 ? 16 : 4, gw);
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)index);
    batch_done(b, nlh);
}

/* One end's configuration, in one round trip: address modes, addresses,
 * up (and for the sandbox's end, its default routes via the host end's
 * addresses, gw).  */
static int configure_end(struct mnl_socket *nl, int index, bool host_end, const eg_addrs_t *local,
                         const eg_addrs_t *gw, sbx_error_t *err)
{
    nl_batch_t b;
    b.len = 0;
    b.n = 0;
    put_link_conf(&b, index, host_end);
    put_addr(&b, index, AF_INET, &local->v4);
    if (local->has_v6)
        put_addr(&b, index, AF_INET6, &local->v6);
    put_link_up(&b, index);
    if (!host_end)
        put_default_route(&b, index, AF_INET, &gw->v4);
    if (!host_end && local->has_v6)
        put_default_route(&b, index, AF_INET6, &gw->v6);
    return nl_talk_batch(nl, b.buf, b.len, b.n, b.what, err);
}

/* nl bound, or NULL (and nl closed).  */
static struct mnl_socket *nl_bind(struct mnl_socket *nl, sbx_error_t *err)
{
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0)
        return nl;
    sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink bind");
    mnl_socket_close(nl);
    return NULL;
}

static struct mnl_socket *nl_open(sbx_error_t *err)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink socket");
        return NULL;
    }
    return nl_bind(nl, err);
}

/* A netlink socket in the sandbox's network namespace (a socket belongs
 * to the namespace it was made in): this thread enters the namespace only
 * for the socket() call and comes straight back.  A short-lived thread
 * would keep the agent's own threads out of sandbox namespaces as well,
 * but on a busy host waiting for it to be scheduled cost milliseconds of
 * the create path.  A thread that cannot come back aborts the agent
 * rather than go on serving from the sandbox's namespace.  */
static struct mnl_socket *nl_open_in(int netns_fd, sbx_error_t *err)
{
    _cleanup_close_ int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "the agent's network namespace");
        return NULL;
    }
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "enter the sandbox's network namespace");
        return NULL;
    }
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    int saved = errno;
    if (setns(home, CLONE_NEWNET) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE, "cannot return to the agent's network namespace: %m");
        abort();
    }
    if (!nl) {
        errno = saved;
        sbx_error_errno(err, SBX_ERR_INTERNAL, "netlink socket in the sandbox's namespace");
        return NULL;
    }
    return nl_bind(nl, err);
}

/* One queue each way on both ends: the kernel makes a veth with a queue
 * per possible CPU and, unless told the number, cuts it down to one right
 * after registering it, which waits for an expedited RCU grace period per
 * end with the RTNL held -- milliseconds on a loaded host, for every
 * other link change on the host too.  */
static void put_one_queue(struct nlmsghdr *nlh)
{
    mnl_attr_put_u32(nlh, IFLA_NUM_TX_QUEUES, 1);
    mnl_attr_put_u32(nlh, IFLA_NUM_RX_QUEUES, 1);
}

static int veth_new(struct mnl_socket *nl, const char *host_if, uint32_t group, int netns_fd,
                    sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, host_if);
    mnl_attr_put_u32(nlh, IFLA_GROUP, group);
    put_one_queue(nlh);
    struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    struct nlattr *peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof *pifm);
    memset(pifm, 0, sizeof *pifm);
    pifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, SANDBOX_IF);
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
    put_one_queue(nlh);
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

/* eth0 inside: its index comes from the namespace's own netlink socket
 * (SIOCGIFINDEX on it asks that namespace), then one batch.  */
static int configure_sandbox_end(int netns_fd, const eg_addrs_t *host, const eg_addrs_t *sb,
                                 sbx_error_t *err)
{
    struct mnl_socket *nl = nl_open_in(netns_fd, err);
    if (!nl)
        return -1;
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", SANDBOX_IF);
    int rc = ioctl(mnl_socket_get_fd(nl), SIOCGIFINDEX, &ifr);
    if (rc < 0)
        sbx_error_errno(err, SBX_ERR_INTERNAL, "the sandbox's %s", SANDBOX_IF);
    else
        rc = configure_end(nl, ifr.ifr_ifindex, false, sb, host, err);
    mnl_socket_close(nl);
    return rc;
}

int eg_link_create(const char *host_if, uint32_t group, int netns_fd, const eg_addrs_t *host,
                   const eg_addrs_t *sb, int *ifindex, sbx_error_t *err)
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
        rc = configure_end(nl, index, true, host, sb, err);
    mnl_socket_close(nl);
    if (rc == 0)
        rc = configure_sandbox_end(netns_fd, host, sb, err);
    if (rc < 0) {
        eg_link_delete(host_if);
        return -1;
    }
    *ifindex = index;
    return 0;
}
