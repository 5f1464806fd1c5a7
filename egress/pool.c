/* pool.c -- an egress pool picked for the agent ("--egress-pool auto"): a
 * /20 of the shared address space 100.64.0.0/10 that no route of the host
 * (any table) overlaps and no other agent on the host holds.  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define AUTO_BASE 0x64400000u /* 100.64.0.0 */
#define AUTO_SPACE_BITS 10
#define AUTO_BITS 20
#define AUTO_BLOCKS (1u << (AUTO_BITS - AUTO_SPACE_BITS))
/* 100.100.96.0/20 holds addresses others already use: Alibaba's metadata
 * service (100.100.100.200) and Tailscale's resolver (100.100.100.100).  */
#define AUTO_SKIP 0x64646000u

typedef struct route_span {
    uint32_t lo, hi; /* host order, inclusive */
} route_span_t;

typedef struct routes {
    route_span_t *v;
    size_t n, cap;
    const char *own_prefix; /* interfaces named so are this agent's links */
} routes_t;

static int route_cb(const struct nlmsghdr *nlh, void *data)
{
    routes_t *rs = data;
    const struct rtmsg *rm = mnl_nlmsg_get_payload(nlh);
    /* default routes overlap everything and say nothing about the pool */
    if (rm->rtm_family != AF_INET || rm->rtm_dst_len == 0)
        return MNL_CB_OK;
    uint32_t dst = 0;
    int oif = 0;
    const struct nlattr *a;
    mnl_attr_for_each(a, nlh, sizeof *rm)
    {
        if (mnl_attr_get_type(a) == RTA_DST && mnl_attr_get_payload_len(a) == 4)
            memcpy(&dst, mnl_attr_get_payload(a), 4);
        else if (mnl_attr_get_type(a) == RTA_OIF && mnl_attr_get_payload_len(a) == 4)
            oif = (int)mnl_attr_get_u32(a);
    }
    char name[IF_NAMESIZE] = "";
    if (oif > 0 && if_indextoname((unsigned)oif, name) &&
        strncmp(name, rs->own_prefix, strlen(rs->own_prefix)) == 0)
        return MNL_CB_OK;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 64;
        rs->v = xrealloc(rs->v, rs->cap * sizeof *rs->v);
    }
    uint32_t lo = ntohl(dst) & (rm->rtm_dst_len >= 32 ? ~0u : ~(~0u >> rm->rtm_dst_len));
    uint32_t hi = rm->rtm_dst_len >= 32 ? lo : lo | (~0u >> rm->rtm_dst_len);
    rs->v[rs->n++] = (route_span_t){lo, hi};
    return MNL_CB_OK;
}

/* Every IPv4 route of every table, but those through this agent's own
 * links (a restarted agent finds its earlier links still up).  */
static int routes_dump(routes_t *rs, sbx_error_t *err)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        if (nl)
            mnl_socket_close(nl);
        return sbx_error_errno(err, SBX_ERR_UNAVAILABLE, "netlink route socket");
    }
    char *buf = xmalloc(MNL_SOCKET_BUFFER_SIZE);
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = RTM_GETROUTE;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = (uint32_t)sbx_now_ms();
    struct rtmsg *rm = mnl_nlmsg_put_extra_header(nlh, sizeof *rm);
    rm->rtm_family = AF_INET;
    rm->rtm_table = RT_TABLE_UNSPEC;
    uint32_t seq = nlh->nlmsg_seq, portid = mnl_socket_get_portid(nl);
    int rc = mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0 ? -1 : MNL_CB_OK;
    while (rc == MNL_CB_OK) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, MNL_SOCKET_BUFFER_SIZE);
        rc = n < 0 ? -1 : mnl_cb_run(buf, (size_t)n, seq, portid, route_cb, rs);
    }
    free(buf);
    mnl_socket_close(nl);
    return rc < 0 ? sbx_error_errno(err, SBX_ERR_UNAVAILABLE, "listing the host's routes") : 0;
}

static bool overlaps(const routes_t *rs, uint32_t lo, uint32_t hi)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].lo <= hi && lo <= rs->v[i].hi)
            return true;
    return false;
}

/* An abstract socket named after the pool is the claim: one agent per
 * pool per network namespace, released by the kernel when the agent
 * exits however it exits, and nothing left on disk.  */
static int claim(uint32_t base)
{
    char name[64];
    struct in_addr in = {htonl(base)};
    snprintf(name, sizeof name, "sandboxd-egress-pool-%s", inet_ntoa(in));
    return eg_claim_name(name);
}

static uint32_t saved_base(const char *state_dir)
{
    _cleanup_free_ char *path = xasprintf("%s/pool", state_dir), *text = NULL;
    size_t len;
    struct in_addr a;
    char addr[32];
    unsigned bits;
    if (sbx_read_file(path, &text, &len, NULL) < 0 ||
        sscanf(text, "%31[0-9.]/%u", addr, &bits) != 2 || bits != AUTO_BITS ||
        inet_pton(AF_INET, addr, &a) != 1)
        return 0;
    uint32_t b = ntohl(a.s_addr);
    bool inside = (b >> (32 - AUTO_SPACE_BITS)) == (AUTO_BASE >> (32 - AUTO_SPACE_BITS));
    return inside && (b & ((1u << (32 - AUTO_BITS)) - 1)) == 0 ? b : 0;
}

int egress_pool_pick(const char *tag, const char *state_dir, char *out, size_t len, int *claim_fd,
                     sbx_error_t *err)
{
    *claim_fd = -1;
    char own[IF_NAMESIZE];
    snprintf(own, sizeof own, "sx%s-", tag ? tag : "");
    routes_t rs = {.own_prefix = own};
    if (routes_dump(&rs, err) < 0) {
        free(rs.v);
        return -1;
    }
    uint32_t h = 2166136261u;
    for (const char *p = tag ? tag : ""; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    /* the pool this agent had before comes first: its records' addresses
     * are in it */
    uint32_t first = saved_base(state_dir);
    for (unsigned i = 0; i <= AUTO_BLOCKS && *claim_fd < 0; i++) {
        uint32_t base = i == 0 ? first : AUTO_BASE + (((h + i) % AUTO_BLOCKS) << (32 - AUTO_BITS));
        uint32_t top = base | ((1u << (32 - AUTO_BITS)) - 1);
        if (!base || base == AUTO_SKIP || overlaps(&rs, base, top))
            continue;
        *claim_fd = claim(base);
        if (*claim_fd >= 0) {
            struct in_addr a = {htonl(base)};
            snprintf(out, len, "%s/%d", inet_ntoa(a), AUTO_BITS);
        }
    }
    free(rs.v);
    if (*claim_fd < 0)
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                             "no /%d of 100.64.0.0/10 is free of the host's routes and other "
                             "agents; give --egress-pool a block",
                             AUTO_BITS);
    if (state_dir) {
        _cleanup_free_ char *path = xasprintf("%s/pool", state_dir);
        if (sbx_mkdir_p(state_dir, 0700, NULL) < 0 ||
            sbx_write_file_atomic(path, out, strlen(out), 0600, NULL) < 0)
            sbx_log(SBX_LOG_WARN, MODULE, "cannot save the egress pool in %s", path);
    }
    return 0;
}
