/* conntrack.c -- open connections follow a changed policy: the sandbox's
 * conntrack entries (ctnetlink, through libmnl) are deleted, so the next
 * packet of each of its flows is new to the firewall again and meets the
 * new rules.  A flow still allowed is taken up again as it was (TCP is
 * tracked loosely from mid-stream by default); one no longer allowed gets
 * a reset or an ICMP error.  IPv4 and IPv6 alike.  Flows redirected to the agent (proxy,
 * resolver, identity endpoint) are left alone: the proxy re-checks its own
 * connections (proxy.c).  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <string.h>
#include <sys/time.h>

#define MAX_FLOWS 65536

typedef struct flows {
    const eg_addrs_t *src;
    unsigned char **tuples; /* each a copy of a CTA_TUPLE_ORIG attribute */
    uint8_t *family;        /* of each tuple */
    size_t n, cap;
} flows_t;

/* The family of the tuple whose original source is one of the sandbox's
 * addresses, or 0.  */
static int orig_src_is(const struct nlattr *tuple, const eg_addrs_t *src)
{
    const struct nlattr *t, *ip;
    mnl_attr_for_each_nested(t, tuple)
    {
        if ((mnl_attr_get_type(t) & NLA_TYPE_MASK) != CTA_TUPLE_IP)
            continue;
        mnl_attr_for_each_nested(ip, t)
        {
            uint16_t type = mnl_attr_get_type(ip) & NLA_TYPE_MASK;
            if (type == CTA_IP_V4_SRC && mnl_attr_get_payload_len(ip) == 4 &&
                memcmp(mnl_attr_get_payload(ip), &src->v4, 4) == 0)
                return AF_INET;
            if (type == CTA_IP_V6_SRC && src->has_v6 && mnl_attr_get_payload_len(ip) == 16 &&
                memcmp(mnl_attr_get_payload(ip), &src->v6, 16) == 0)
                return AF_INET6;
        }
    }
    return 0;
}

static int flow_cb(const struct nlmsghdr *nlh, void *data)
{
    flows_t *f = data;
    const struct nlattr *a, *tuple = NULL;
    uint32_t status = 0;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg))
    {
        uint16_t type = mnl_attr_get_type(a) & NLA_TYPE_MASK;
        if (type == CTA_TUPLE_ORIG)
            tuple = a;
        else if (type == CTA_STATUS && mnl_attr_get_payload_len(a) == 4)
            status = ntohl(mnl_attr_get_u32(a));
    }
    int family = tuple ? orig_src_is(tuple, f->src) : 0;
    if (!family || (status & IPS_DST_NAT) || f->n >= MAX_FLOWS)
        return MNL_CB_OK;
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->tuples = xrealloc(f->tuples, f->cap * sizeof *f->tuples);
        f->family = xrealloc(f->family, f->cap);
    }
    f->family[f->n] = (uint8_t)family;
    f->tuples[f->n] = xmalloc(tuple->nla_len);
    memcpy(f->tuples[f->n++], tuple, tuple->nla_len);
    return MNL_CB_OK;
}

static struct nlmsghdr *ct_msg(char *buf, uint16_t type, uint16_t flags, uint32_t seq,
                               uint8_t family)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | type);
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = seq;
    struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof *g);
    g->nfgen_family = family;
    g->version = NFNETLINK_V0;
    g->res_id = 0;
    return nlh;
}

static int talk(struct mnl_socket *nl, struct nlmsghdr *nlh, char *buf, flows_t *f)
{
    uint32_t seq = nlh->nlmsg_seq, portid = mnl_socket_get_portid(nl);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        return -1;
    int rc = MNL_CB_OK;
    while (rc == MNL_CB_OK) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, MNL_SOCKET_BUFFER_SIZE);
        if (n < 0)
            return -1;
        rc = mnl_cb_run(buf, (size_t)n, seq, portid, f ? flow_cb : NULL, f);
    }
    return rc < 0 ? -1 : 0;
}

int eg_conntrack_flush(const eg_addrs_t *src, size_t *cut, sbx_error_t *err)
{
    *cut = 0;
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        if (nl)
            mnl_socket_close(nl);
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "conntrack: netlink socket");
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char *buf = xmalloc(MNL_SOCKET_BUFFER_SIZE);
    flows_t f = {.src = src};
    uint32_t seq = (uint32_t)sbx_now_ms();
    /* AF_UNSPEC: every family's flows in one dump */
    int rc = talk(nl, ct_msg(buf, IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq++, AF_UNSPEC),
                  buf, &f);
    if (rc < 0)
        sbx_error_errno(err, SBX_ERR_INTERNAL, "conntrack: listing flows");
    for (size_t i = 0; i < f.n; i++) {
        if (rc == 0) {
            struct nlmsghdr *nlh =
                ct_msg(buf, IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq++, f.family[i]);
            const struct nlattr *t = (const struct nlattr *)f.tuples[i];
            void *dst = mnl_nlmsg_put_extra_header(nlh, MNL_ALIGN(t->nla_len));
            memcpy(dst, t, t->nla_len);
            /* a flow that ended meanwhile (ENOENT) is no failure */
            if (talk(nl, nlh, buf, NULL) == 0)
                (*cut)++;
            else if (errno != ENOENT)
                rc = sbx_error_errno(err, SBX_ERR_INTERNAL, "conntrack: deleting a flow");
        }
        free(f.tuples[i]);
    }
    free(f.tuples);
    free(f.family);
    free(buf);
    mnl_socket_close(nl);
    return rc;
}
