/* nflog.c -- packet-level denials into the decision log.  The nft deny
 * chains log (rate-limited in the kernel) to an NFLOG group with a prefix
 * naming the policy and rule; this thread reads the first bytes of each
 * denied packet and records who tried what.  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

struct eg_nflog {
    egress_t *eg;
    struct mnl_socket *nl;
    uint16_t group;
    int stop_pipe[2];
    pthread_t thread;
    bool started;
};

static int config(struct mnl_socket *nl, uint16_t group, uint8_t cmd, bool mode)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof *nfg);
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(group);
    if (mode) {
        /* the first 64 bytes (IP and L4 headers), each packet sent at once */
        struct nfulnl_msg_config_mode m = {.copy_range = htonl(64),
                                           .copy_mode = NFULNL_COPY_PACKET};
        mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof m, &m);
        mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(1));
        mnl_attr_put_u32(nlh, NFULA_CFG_TIMEOUT, htonl(1));
    } else {
        struct nfulnl_msg_config_cmd c = {.command = cmd};
        mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof c, &c);
    }
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return -1;
    char rbuf[MNL_SOCKET_BUFFER_SIZE];
    ssize_t n = mnl_socket_recvfrom(nl, rbuf, sizeof rbuf);
    return n < 0 ? -1 : mnl_cb_run(rbuf, (size_t)n, 0, 0, NULL, NULL) < 0 ? -1 : 0;
}

typedef struct pkt {
    const char *prefix;
    const unsigned char *payload;
    size_t len;
} pkt_t;

static int attr_cb(const struct nlattr *a, void *data)
{
    pkt_t *p = data;
    if (mnl_attr_get_type(a) == NFULA_PREFIX && mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
        p->prefix = mnl_attr_get_str(a);
    else if (mnl_attr_get_type(a) == NFULA_PAYLOAD) {
        p->payload = mnl_attr_get_payload(a);
        p->len = mnl_attr_get_payload_len(a);
    }
    return MNL_CB_OK;
}

/* prefix "sbx:<hash>:<rule index>", "sbx:<hash>:default", "sbx:fixed"
 * (no policy may allow it) or "sbx:host" (the host itself).  */
/* Source, destination, protocol and header length of an IPv4 or IPv6
 * packet (IPv6: the first header after the fixed one, extension headers
 * not followed).  */
static bool headers(const pkt_t *p, struct sockaddr_storage *src, char *dst, size_t dst_len,
                    int *proto, size_t *hl)
{
    memset(src, 0, sizeof *src);
    if (p->len >= sizeof(struct iphdr) && (p->payload[0] >> 4) == 4) {
        const struct iphdr *ip = (const struct iphdr *)p->payload;
        *hl = (size_t)ip->ihl * 4;
        if (*hl < sizeof *ip || *hl > p->len)
            return false;
        src->ss_family = AF_INET;
        ((struct sockaddr_in *)src)->sin_addr.s_addr = ip->saddr;
        inet_ntop(AF_INET, &ip->daddr, dst, (socklen_t)dst_len);
        *proto = ip->protocol;
        return true;
    }
    if (p->len >= sizeof(struct ip6_hdr) && (p->payload[0] >> 4) == 6) {
        const struct ip6_hdr *ip6 = (const struct ip6_hdr *)p->payload;
        *hl = sizeof *ip6;
        src->ss_family = AF_INET6;
        ((struct sockaddr_in6 *)src)->sin6_addr = ip6->ip6_src;
        inet_ntop(AF_INET6, &ip6->ip6_dst, dst, (socklen_t)dst_len);
        *proto = ip6->ip6_nxt;
        return true;
    }
    return false;
}

static void record(egress_t *eg, const pkt_t *p)
{
    if (!p->prefix || strncmp(p->prefix, "sbx:", 4) != 0)
        return;
    eg_decision_t d = {.ms = sbx_now_ms(), .allow = false};
    struct sockaddr_storage src;
    int proto;
    size_t ihl;
    if (!headers(p, &src, d.address, sizeof d.address, &proto, &ihl))
        return;
    eg_lookup_t l;
    if (!eg_lookup(eg, &src, &l))
        return;
    d.protocol = proto == IPPROTO_TCP      ? "tcp"
                 : proto == IPPROTO_UDP    ? "udp"
                 : proto == IPPROTO_ICMP   ? "icmp"
                 : proto == IPPROTO_ICMPV6 ? "icmpv6"
                                           : "ip";
    if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP) && p->len >= ihl + 4)
        d.port = (uint16_t)((p->payload[ihl + 2] << 8) | p->payload[ihl + 3]);
    const char *rest = p->prefix + 4;
    if (strcmp(rest, "fixed") == 0) {
        d.reason = "no policy reaches this address (loopback, link-local, metadata, "
                   "multicast or another sandbox)";
    } else if (strcmp(rest, "host") == 0) {
        d.reason = "no policy reaches the host itself";
    } else {
        const char *colon = strchr(rest, ':');
        d.reason = "the default action";
        if (colon && (size_t)(colon - rest) == 16 && strncmp(rest, l.policy->hash, 16) == 0 &&
            strcmp(colon + 1, "default") != 0) {
            unsigned long i = strtoul(colon + 1, NULL, 10);
            if (i < l.policy->n_rules)
                snprintf(d.rule, sizeof d.rule, "%s", l.policy->rules[i].name);
            d.reason = "a Deny rule";
        }
    }
    eg_decision_log(eg, l.sb, &d);
    eg_lookup_done(eg, &l);
}

static int msg_cb(const struct nlmsghdr *nlh, void *data)
{
    pkt_t p = {0};
    mnl_attr_parse(nlh, sizeof(struct nfgenmsg), attr_cb, &p);
    record(data, &p);
    return MNL_CB_OK;
}

static void *serve(void *arg)
{
    eg_nflog_t *f = arg;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    for (;;) {
        struct pollfd p[2] = {{.fd = mnl_socket_get_fd(f->nl), .events = POLLIN},
                              {.fd = f->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        ssize_t n = recv(mnl_socket_get_fd(f->nl), buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            mnl_cb_run(buf, (size_t)n, 0, 0, msg_cb, f->eg);
        /* ENOBUFS: the kernel dropped some under load; the log is a sample */
    }
    return NULL;
}

eg_nflog_t *eg_nflog_start(egress_t *eg, uint16_t group, sbx_error_t *err)
{
    eg_nflog_t *f = xcalloc(1, sizeof *f);
    f->eg = eg;
    f->group = group;
    f->stop_pipe[0] = f->stop_pipe[1] = -1;
    f->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!f->nl || mnl_socket_bind(f->nl, 0, MNL_SOCKET_AUTOPID) < 0 ||
        config(f->nl, group, NFULNL_CFG_CMD_BIND, false) < 0 || config(f->nl, group, 0, true) < 0 ||
        pipe2(f->stop_pipe, O_CLOEXEC) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "the NFLOG group %u for the decision log", group);
        eg_nflog_stop(f);
        return NULL;
    }
    if (pthread_create(&f->thread, NULL, serve, f) != 0) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "cannot start the decision log thread");
        eg_nflog_stop(f);
        return NULL;
    }
    f->started = true;
    return f;
}

void eg_nflog_stop(eg_nflog_t *f)
{
    if (!f)
        return;
    if (f->started) {
        (void)!write(f->stop_pipe[1], "x", 1);
        pthread_join(f->thread, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (f->stop_pipe[i] >= 0)
            close(f->stop_pipe[i]);
    if (f->nl)
        mnl_socket_close(f->nl);
    free(f);
}
