/* nft.c -- the agent's nftables table: fixed chains that deny what no
 * policy may allow, one filter and one nat chain per distinct policy, and
 * two maps from (interface, sandbox address) to those chains, so a packet
 * costs one map lookup plus its own policy's rules however many sandboxes
 * the host runs.  Through libnftables, in process: an element costs about
 * 0.2 ms, a fork of `nft` 30 ms.  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnftnl/set.h>
#include <libnftnl/batch.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

struct eg_nft {
    pthread_mutex_t mu; /* a nft_ctx is not thread-safe */
    struct nft_ctx *ctx;
    char *table;
    uint16_t proxy_port[2], log_group;
};

/* Where sandboxes with an identity reach the agent's identity endpoint.  */
#define IMDS_ADDR "169.254.169.254"

/* Addresses no policy reaches (IPv4): "this network", loopback,
 * link-local (the cloud metadata service 169.254.169.254 among them),
 * multicast and reserved, broadcast, Alibaba's metadata address, and the
 * pool of sandbox links (added at open).  */
static const char *const deny4 =
    "0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3, 100.100.100.200";
/* And IPv6: unspecified, loopback and IPv4-compatible (::/96), IPv4-mapped
 * and NAT64 (IPv4 only ever goes by the IPv4 rules), link-local and the
 * old site-local, multicast, AWS's metadata address, and every agent's
 * sandbox pool (and this agent's, when configured outside that space).
 * Keep eg_addr_never (policy.c) in step.  */
static const char *const deny6 = "::/96, ::ffff:0:0/96, 64:ff9b::/96, 64:ff9b:1::/48, fe80::/10, "
                                 "fec0::/10, ff00::/8, fd00:ec2::254, " EG_POOL6_SPACE;
/* Unique local IPv6: only a CIDR rule that names it reaches it.  */
#define ULA "fc00::/7"

static int run(eg_nft_t *n, const char *cmd, sbx_error_t *err)
{
    pthread_mutex_lock(&n->mu);
    int rc = nft_run_cmd_from_buffer(n->ctx, cmd);
    const char *msg = nft_ctx_get_error_buffer(n->ctx);
    if (rc != 0) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "nftables: %.400s", msg && *msg ? msg : "failed");
        sbx_log(SBX_LOG_DEBUG, MODULE, "nft failed: %s", cmd);
    }
    pthread_mutex_unlock(&n->mu);
    return rc == 0 ? 0 : -1;
}

typedef struct buf {
    char *s;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (b->s && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
        if (b->len == 0)
            b->s[0] = '\0';
    }
}

static char *base_ruleset(const eg_nft_config_t *c)
{
    /* Sandboxes in the imds set reach the identity endpoint: their TCP to
     * 169.254.169.254:80 goes to the agent's listener, which nothing else
     * reaches (the host side included).  */
    _cleanup_free_ char *imds_nat =
        c->imds_port ? xasprintf("    ip daddr " IMDS_ADDR " tcp dport 80 meta iif . ip saddr "
                                 "@imds redirect to :%u\n",
                                 c->imds_port)
                     : xstrdup("");
    _cleanup_free_ char *imds_drop =
        c->imds_port ? xasprintf("    ct direction original tcp dport %u drop\n", c->imds_port)
                     : xstrdup("");
    _cleanup_free_ char *imds_in =
        c->imds_port ? xasprintf("    ct status dnat ct original ip daddr " IMDS_ADDR
                                 " tcp dport %u accept\n",
                                 c->imds_port)
                     : xstrdup("");
    /* the resolver (UDP and TCP) and the proxy, on each family */
    buf_t dns = {0}, drops = {0}, accepts = {0};
    put(&dns, "%s", "");
    put(&drops, "%s", "");
    put(&accepts, "%s", "");
    static const char *const fam[2] = {"ipv4", "ipv6"};
    for (int f = 0; f < 2; f++) {
        if (c->dns_port[f])
            put(&dns, "    meta nfproto %s fib daddr type local udp dport 53 redirect to :%u\n",
                fam[f], c->dns_port[f]);
        if (c->dns_tcp_port[f])
            put(&dns, "    meta nfproto %s fib daddr type local tcp dport 53 redirect to :%u\n",
                fam[f], c->dns_tcp_port[f]);
        const struct {
            const char *proto;
            uint16_t port;
        } l[3] = {{"tcp", c->proxy_port[f]}, {"udp", c->dns_port[f]}, {"tcp", c->dns_tcp_port[f]}};
        for (int i = 0; i < 3; i++) {
            if (!l[i].port)
                continue;
            put(&drops, "    ct direction original %s dport %u drop\n", l[i].proto, l[i].port);
            put(&accepts, "    ct status dnat %s dport %u accept\n", l[i].proto, l[i].port);
        }
    }
    _cleanup_free_ char *v6_nat_out =
        c->pool6 ? xasprintf("    ip6 saddr %s oifgroup != %u masquerade\n", c->pool6, c->group)
                 : xstrdup("");
    /* Delete-then-create: a table left by an earlier run of this agent is
     * replaced whole (its sandboxes are bound again as they are found).
     * host_in closes the listeners' ports to flows started from anywhere
     * but a sandbox's redirect; only the original direction, so a reply to
     * a host client whose own port has the same number still gets through.
     * IPv6 has no rp_filter: rpf drops what a link sends from an address
     * not routed back through it, and refuses link-local destinations at
     * once (the kernel's own "no route" answer can be rate-limited).
     * Neighbour discovery (untracked by conntrack) between a sandbox and
     * its host end is let through.  */
    char *r = xasprintf(
        "table inet %1$s\n"
        "delete table inet %1$s\n"
        "table inet %1$s {\n"
        "  set deny4 { type ipv4_addr; flags interval; auto-merge; elements = { %2$s, %3$s } }\n"
        "  set deny6 { type ipv6_addr; flags interval; auto-merge; elements = { %10$s%14$s%15$s } "
        "}\n"
        "  map nat_policy { type iface_index . ipv4_addr : verdict; }\n"
        "  map filter_policy { type iface_index . ipv4_addr : verdict; }\n"
        "  map nat_policy6 { type iface_index . ipv6_addr : verdict; }\n"
        "  map filter_policy6 { type iface_index . ipv6_addr : verdict; }\n"
        "  set imds { type iface_index . ipv4_addr; }\n"
        "  chain deny {\n"
        "    meta l4proto tcp reject with tcp reset\n"
        "    reject with icmpx admin-prohibited\n"
        "  }\n"
        "  chain deny_fixed {\n"
        "    limit rate 100/second burst 100 packets log prefix \"sbx:fixed\" group %5$u\n"
        "    jump deny\n"
        "  }\n"
        "  chain deny_host {\n"
        "    limit rate 100/second burst 100 packets log prefix \"sbx:host\" group %5$u\n"
        "    jump deny\n"
        "  }\n"
        "  chain rpf { type filter hook prerouting priority raw; policy accept;\n"
        "    iifgroup %4$u meta nfproto ipv6 fib saddr . iif oif missing drop\n"
        "    iifgroup %4$u ip6 daddr fe80::/10 jump deny_fixed\n"
        "  }\n"
        "  chain nat_in { type nat hook prerouting priority dstnat; policy accept;\n"
        "    iifgroup %4$u jump sandbox_nat\n"
        "  }\n"
        "  chain sandbox_nat {\n"
        "%6$s"
        "%11$s"
        "    fib daddr type local return\n"
        "    ip daddr @deny4 return\n"
        "    ip6 daddr @deny6 return\n"
        "    meta iif . ip saddr vmap @nat_policy\n"
        "    meta iif . ip6 saddr vmap @nat_policy6\n"
        "  }\n"
        "  chain host_in { type filter hook input priority filter; policy accept;\n"
        "    iifgroup %4$u jump sandbox_in\n"
        "%12$s"
        "%7$s"
        "  }\n"
        "  chain sandbox_in {\n"
        "    ct state established,related accept\n"
        "%13$s"
        "%8$s"
        "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept\n"
        "    jump deny_host\n"
        "  }\n"
        "  chain forward_in { type filter hook forward priority filter; policy accept;\n"
        "    iifgroup %4$u jump sandbox_out\n"
        "    oifgroup %4$u ct state established,related accept\n"
        "    oifgroup %4$u jump deny\n"
        "  }\n"
        "  chain sandbox_out {\n"
        "    ct state established,related accept\n"
        "    ip daddr @deny4 jump deny_fixed\n"
        "    ip6 daddr @deny6 jump deny_fixed\n"
        "    meta iif . ip saddr vmap @filter_policy\n"
        "    meta iif . ip6 saddr vmap @filter_policy6\n"
        "    jump deny_fixed\n"
        "  }\n"
        "  chain nat_out { type nat hook postrouting priority srcnat; policy accept;\n"
        "    ip saddr %3$s oifgroup != %4$u masquerade\n"
        "%9$s"
        "  }\n"
        "}\n",
        c->table, deny4, c->pool, c->group, c->log_group, imds_nat, imds_drop, imds_in, v6_nat_out,
        deny6, dns.s, drops.s, accepts.s, c->pool6 ? ", " : "", c->pool6 ? c->pool6 : "");
    free(dns.s);
    free(drops.s);
    free(accepts.s);
    return r;
}

eg_nft_t *eg_nft_open(const eg_nft_config_t *cfg, sbx_error_t *err)
{
    eg_nft_t *n = xcalloc(1, sizeof *n);
    pthread_mutex_init(&n->mu, NULL);
    n->ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    n->table = xstrdup(cfg->table);
    n->proxy_port[0] = cfg->proxy_port[0];
    n->proxy_port[1] = cfg->proxy_port[1];
    n->log_group = cfg->log_group;
    if (!n->ctx) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "nftables: no context");
        eg_nft_close(n, false);
        return NULL;
    }
    nft_ctx_buffer_output(n->ctx);
    nft_ctx_buffer_error(n->ctx);
    _cleanup_free_ char *rules = base_ruleset(cfg);
    if (run(n, rules, err) < 0) {
        eg_nft_close(n, false);
        return NULL;
    }
    return n;
}

void eg_nft_close(eg_nft_t *n, bool remove_table)
{
    if (!n)
        return;
    if (remove_table && n->ctx) {
        _cleanup_free_ char *cmd = xasprintf("delete table inet %s", n->table);
        sbx_error_t err = {0};
        if (run(n, cmd, &err) < 0)
            sbx_log(SBX_LOG_WARN, MODULE, "%s", err.msg);
    }
    if (n->ctx)
        nft_ctx_free(n->ctx);
    pthread_mutex_destroy(&n->mu);
    free(n->table);
    free(n);
}

/* ---- a policy's chains ---- */

static void put_ports(buf_t *b, const eg_rule_t *r, bool tcp_only)
{
    if (r->n_ports == 0) {
        if (tcp_only)
            put(b, " meta l4proto tcp");
        return;
    }
    put(b, tcp_only ? " tcp dport {" : " meta l4proto { tcp, udp } th dport {");
    for (size_t i = 0; i < r->n_ports; i++)
        put(b, "%s %u", i ? "," : "", r->ports[i]);
    put(b, " }");
}

/* The rule's CIDRs of one family as " ip daddr { ... }" (" ip6 daddr"
 * for AF_INET6); false when it names none of that family.  */
static bool put_cidrs(buf_t *b, const eg_rule_t *r, int family)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n_cidrs; i++) {
        if (r->cidrs[i].family != family)
            continue;
        const char *open = family == AF_INET ? " ip daddr {" : " ip6 daddr {";
        put(b, "%s%s", k++ ? ", " : open, r->cidrs[i].text);
    }
    if (k)
        put(b, " }");
    return k > 0;
}

/* Filter chain: rules in order on addresses and ports; FQDN rules do not
 * appear (their TCP went to the proxy in the nat chain).  Nat chain: the
 * same order up to the first FQDN rule whose ports match, whose TCP is
 * redirected to the proxy, which then decides on the name with the whole
 * policy.  */
/* A deny of rule i (or the default, i == n_rules) goes through a chain
 * that logs it for the decision log, at most 100 a second, then rejects;
 * a packet over the limit skips the log rule only, never the reject.  */
static void put_deny_chain(buf_t *b, const char *table, const eg_policy_t *p, size_t i,
                           uint16_t group)
{
    char idx[24];
    if (i == p->n_rules)
        snprintf(idx, sizeof idx, "default");
    else
        snprintf(idx, sizeof idx, "%zu", i);
    put(b, "add chain inet %s pd_%s_%s\nflush chain inet %s pd_%s_%s\n", table, p->hash, idx, table,
        p->hash, idx);
    put(b,
        "add rule inet %s pd_%s_%s limit rate 100/second burst 100 packets log prefix "
        "\"sbx:%s:%s\" group %u\n",
        table, p->hash, idx, p->hash, idx, group);
    put(b, "add rule inet %s pd_%s_%s jump deny\n", table, p->hash, idx);
}

static bool denies(const eg_policy_t *p, size_t i)
{
    return i == p->n_rules ? !p->default_allow : !p->rules[i].allow;
}

static void put_policy_chains(buf_t *b, const char *table, const eg_policy_t *p,
                              const uint16_t proxy_port[2], uint16_t group)
{
    for (size_t i = 0; i <= p->n_rules; i++)
        if (denies(p, i))
            put_deny_chain(b, table, p, i, group);
    put(b, "add chain inet %s pf_%s\nflush chain inet %s pf_%s\n", table, p->hash, table, p->hash);
    put(b, "add chain inet %s pn_%s\nflush chain inet %s pn_%s\n", table, p->hash, table, p->hash);
    for (size_t i = 0; i < p->n_rules; i++) {
        const eg_rule_t *r = &p->rules[i];
        char verdict[64];
        if (r->allow)
            snprintf(verdict, sizeof verdict, "accept");
        else
            snprintf(verdict, sizeof verdict, "jump pd_%s_%zu", p->hash, i);
        bool any = r->n_fqdns == 0 && r->n_cidrs == 0;
        /* the addresses the rule matches, one nft rule per family: any
         * (an Allow without CIDRs reaches no unique local IPv6), or its
         * CIDRs of each family */
        const char *all[2] = {"", ""};
        if (any && r->allow)
            all[0] = " meta nfproto ipv4", all[1] = " ip6 daddr != " ULA;
        for (int f = 0; f < (any && r->allow ? 2 : any ? 1 : 2); f++) {
            buf_t m = {0};
            put(&m, "%s", any ? all[f] : "");
            if (any || put_cidrs(&m, r, f == 0 ? AF_INET : AF_INET6)) {
                put(b, "add rule inet %s pf_%s%s", table, p->hash, m.s);
                put_ports(b, r, false);
                put(b, " %s\n", verdict);
                put(b, "add rule inet %s pn_%s%s", table, p->hash, m.s);
                put_ports(b, r, false);
                put(b, " accept\n");
            }
            free(m.s);
        }
        for (int f = 0; f < 2 && r->n_fqdns > 0; f++) {
            if (!proxy_port[f])
                continue;
            put(b, "add rule inet %s pn_%s meta nfproto %s", table, p->hash,
                f == 0 ? "ipv4" : "ipv6");
            put_ports(b, r, true);
            put(b, " redirect to :%u\n", proxy_port[f]);
        }
    }
    if (p->default_allow)
        put(b,
            "add rule inet %s pf_%s ip6 daddr " ULA
            " jump deny_fixed\nadd rule inet %s pf_%s accept\n",
            table, p->hash, table, p->hash);
    else
        put(b, "add rule inet %s pf_%s jump pd_%s_default\n", table, p->hash, p->hash);
}

static void put_elements(buf_t *b, const char *op, const char *table, int ifindex,
                         const eg_addrs_t *addr, const char *hash)
{
    char a[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr->v4, a, sizeof a);
    put(b, "%s element inet %s nat_policy { %d . %s : jump pn_%s }\n", op, table, ifindex, a, hash);
    put(b, "%s element inet %s filter_policy { %d . %s : jump pf_%s }\n", op, table, ifindex, a,
        hash);
    if (!addr->has_v6)
        return;
    inet_ntop(AF_INET6, &addr->v6, a, sizeof a);
    put(b, "%s element inet %s nat_policy6 { %d . %s : jump pn_%s }\n", op, table, ifindex, a,
        hash);
    put(b, "%s element inet %s filter_policy6 { %d . %s : jump pf_%s }\n", op, table, ifindex, a,
        hash);
}

/* ---- map elements alone, straight over nfnetlink ----
 *
 * Binding a sandbox to chains that exist changes two map elements.
 * libnftables refetches its cache (every set's elements among it) before
 * each command, which costs tens of milliseconds with hundreds of
 * sandboxes; one batch built with libnftnl costs a round trip.  */

static void elem_msg(struct mnl_nlmsg_batch *b, const char *table, const char *map, int ifindex,
                     const void *addr, size_t addr_len, const char *chain, bool add, uint32_t *seq)
{
    struct nftnl_set *s = nftnl_set_alloc();
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table);
    nftnl_set_set_str(s, NFTNL_SET_NAME, map);
    struct nftnl_set_elem *e = nftnl_set_elem_alloc();
    /* iface_index . ipv4_addr (or ipv6_addr): a host-order u32, then the
     * address as is */
    uint8_t key[4 + 16];
    uint32_t idx = (uint32_t)ifindex;
    memcpy(key, &idx, 4);
    memcpy(key + 4, addr, addr_len);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, 4 + addr_len);
    if (chain) {
        nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, (uint32_t)NFT_JUMP);
        nftnl_set_elem_set_str(e, NFTNL_SET_ELEM_CHAIN, chain);
    }
    nftnl_set_elem_add(s, e);
    struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(
        mnl_nlmsg_batch_current(b), add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, NFPROTO_INET,
        (uint16_t)(NLM_F_ACK | (add ? NLM_F_CREATE : 0)), (*seq)++);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
    mnl_nlmsg_batch_next(b);
}

/* Read one acknowledgement per message; the first error wins.  */
static int batch_acks(struct mnl_socket *nl, unsigned want, sbx_error_t *err)
{
    char buf[MNL_SOCKET_BUFFER_SIZE];
    int failed = 0;
    while (want > 0) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
        if (n < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "nftables: no answer");
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; mnl_nlmsg_ok(h, (int)n);
             h = mnl_nlmsg_next(h, (int *)&n)) {
            if (h->nlmsg_type != NLMSG_ERROR)
                continue;
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
            if (e->error && !failed)
                failed = -e->error;
            want--;
        }
    }
    if (failed) {
        errno = failed;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "nftables: map element");
    }
    return 0;
}

/* Map elements changed in one libnftnl batch on a socket of its own.  */
typedef struct elements {
    struct mnl_socket *nl;
    char *buf;
    struct mnl_nlmsg_batch *b;
    uint32_t seq;
    unsigned msgs;
} elements_t;

static int elements_begin(elements_t *e, size_t size, sbx_error_t *err)
{
    memset(e, 0, sizeof *e);
    e->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (!e->nl || mnl_socket_bind(e->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        if (e->nl)
            mnl_socket_close(e->nl);
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "nftables: netlink socket");
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(mnl_socket_get_fd(e->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    e->buf = xmalloc(size);
    e->b = mnl_nlmsg_batch_start(e->buf, size);
    e->seq = (uint32_t)sbx_now_ms();
    nftnl_batch_begin(mnl_nlmsg_batch_current(e->b), e->seq++);
    mnl_nlmsg_batch_next(e->b);
    return 0;
}

static void elements_put(elements_t *e, const char *table, const char *map, int ifindex,
                         const void *addr, size_t addr_len, const char *chain, bool add)
{
    elem_msg(e->b, table, map, ifindex, addr, addr_len, chain, add, &e->seq);
    e->msgs++;
}

/* Send the batch, wait for its answers, and free it.  */
static int elements_commit(eg_nft_t *n, elements_t *e, sbx_error_t *err)
{
    nftnl_batch_end(mnl_nlmsg_batch_current(e->b), e->seq++);
    mnl_nlmsg_batch_next(e->b);
    int rc;
    pthread_mutex_lock(&n->mu);
    if (mnl_socket_sendto(e->nl, mnl_nlmsg_batch_head(e->b), mnl_nlmsg_batch_size(e->b)) < 0)
        rc = sbx_error_errno(err, SBX_ERR_INTERNAL, "nftables: send");
    else
        rc = batch_acks(e->nl, e->msgs, err);
    pthread_mutex_unlock(&n->mu);
    mnl_nlmsg_batch_stop(e->b);
    free(e->buf);
    mnl_socket_close(e->nl);
    return rc;
}

static int elements_only(eg_nft_t *n, int ifindex, const eg_addrs_t *addr, const char *old_hash,
                         const char *new_hash, sbx_error_t *err)
{
    elements_t e;
    if (elements_begin(&e, MNL_SOCKET_BUFFER_SIZE * 2, err) < 0)
        return -1;
    char chain[40];
    static const char *const maps[][2] = {{"nat_policy", "pn"},
                                          {"filter_policy", "pf"},
                                          {"nat_policy6", "pn"},
                                          {"filter_policy6", "pf"}};
    for (size_t m = 0; m < (addr->has_v6 ? 4 : 2); m++) {
        const void *a = m < 2 ? (const void *)&addr->v4 : (const void *)&addr->v6;
        size_t alen = m < 2 ? 4 : 16;
        if (old_hash)
            elements_put(&e, n->table, maps[m][0], ifindex, a, alen, NULL, false);
        if (new_hash) {
            snprintf(chain, sizeof chain, "%s_%s", maps[m][1], new_hash);
            elements_put(&e, n->table, maps[m][0], ifindex, a, alen, chain, true);
        }
    }
    return elements_commit(n, &e, err);
}

int eg_nft_bind(eg_nft_t *n, int ifindex, const eg_addrs_t *addr, const eg_policy_t *old_p,
                bool old_unused, const eg_policy_t *p, bool p_exists, sbx_error_t *err)
{
    bool same = old_p && p && strcmp(old_p->hash, p->hash) == 0;
    bool new_chains = p && !p_exists && !same;
    bool drop_chains = old_p && old_unused && !same;
    if (!new_chains && !drop_chains && (old_p || p))
        return elements_only(n, ifindex, addr, old_p ? old_p->hash : NULL, p ? p->hash : NULL, err);
    const eg_addrs_t *a = addr;
    buf_t b = {0};
    put(&b, "%s", "");
    if (old_p)
        put_elements(&b, "delete", n->table, ifindex, a, old_p->hash);
    if (p && !p_exists && (!old_p || strcmp(old_p->hash, p->hash) != 0))
        put_policy_chains(&b, n->table, p, n->proxy_port, n->log_group);
    if (p)
        put_elements(&b, "add", n->table, ifindex, a, p->hash);
    if (old_p && old_unused && (!p || strcmp(old_p->hash, p->hash) != 0)) {
        put(&b, "delete chain inet %s pf_%s\ndelete chain inet %s pn_%s\n", n->table, old_p->hash,
            n->table, old_p->hash);
        for (size_t i = 0; i <= old_p->n_rules; i++) {
            if (!denies(old_p, i))
                continue;
            if (i == old_p->n_rules)
                put(&b, "delete chain inet %s pd_%s_default\n", n->table, old_p->hash);
            else
                put(&b, "delete chain inet %s pd_%s_%zu\n", n->table, old_p->hash, i);
        }
    }
    int rc = run(n, b.s, err);
    free(b.s);
    return rc;
}

int eg_nft_imds(eg_nft_t *n, int ifindex, struct in_addr addr, bool on, sbx_error_t *err)
{
    elements_t e;
    if (elements_begin(&e, MNL_SOCKET_BUFFER_SIZE, err) < 0)
        return -1;
    elements_put(&e, n->table, "imds", ifindex, &addr, 4, NULL, on);
    return elements_commit(n, &e, err);
}
