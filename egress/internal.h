/* internal.h -- shared inside the egress module: the parsed policy, the
 * link (netlink), the nft ruleset, the proxy and the resolver.  */
#ifndef SBX_EGRESS_INTERNAL_H
#define SBX_EGRESS_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#include "egress/egress.h"

#define MODULE "egress"
#define EG_MAX_RULES 100
#define EG_MAX_ITEMS 100

/* ---- policy.c ---- */

typedef struct eg_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned bits;
    char text[64]; /* canonical, with the prefix length */
} eg_cidr_t;

typedef struct eg_rule {
    char *name;
    bool allow;
    char **fqdns; /* lower case, without a trailing dot */
    size_t n_fqdns;
    eg_cidr_t *cidrs;
    size_t n_cidrs;
    uint16_t *ports; /* none: every port */
    size_t n_ports;
} eg_rule_t;

typedef struct eg_policy {
    bool default_allow;
    eg_rule_t *rules;
    size_t n_rules;
    char hash[17]; /* of the canonical JSON: names the policy's nft chains */
    json_t *json;  /* as given, normalised */
    _Atomic int refs;
} eg_policy_t;

eg_policy_t *eg_policy_parse(const json_t *j, sbx_error_t *err);
eg_policy_t *eg_policy_ref(eg_policy_t *p);
void eg_policy_unref(eg_policy_t *p);
bool eg_policy_allows_any(const eg_policy_t *p);
/* The first rule that matches a TCP connection to `name` (NULL or an IP
 * literal: none) at `addr`:`port` decides; NULL rule: the default.
 * *by_name says whether the rule matched on the name.  */
bool eg_policy_decide(const eg_policy_t *p, const char *name, const struct sockaddr_storage *addr,
                      uint16_t port, const char **rule, bool *by_name);
/* Some Allow rule names `name` (the resolver answers only those).  */
bool eg_policy_name_allowed(const eg_policy_t *p, const char *name, const char **rule);
/* Some Allow rule's CIDR holds addr (a private resolution it permits).  */
bool eg_policy_cidr_allows(const eg_policy_t *p, const struct sockaddr_storage *addr);
bool eg_name_matches(const char *pattern, const char *name);
/* A name as the policy compares it: lower case, no trailing dot; false
 * for anything that is not a DNS name (IP literals included).  */
bool eg_name_normalise(const char *in, size_t len, char *out, size_t out_len);
/* Loopback, unspecified, link-local, private (RFC 1918, CGNAT, ULA),
 * multicast, broadcast, documentation-reserved metadata: addresses a name
 * from outside must not resolve to (DNS rebinding).  */
bool eg_addr_private(const struct sockaddr_storage *addr);
/* What no policy reaches, as the nft sets deny4 and deny6 hold them:
 * "this network", loopback, link-local, multicast, metadata, IPv4-mapped
 * and NAT64 IPv6, and every agent's IPv6 sandbox pool.  */
bool eg_addr_never(const struct sockaddr_storage *addr);
/* Unique local IPv6 (fc00::/7): reached only through a CIDR rule that
 * names it, never by a rule without CIDRs or the default action.  */
bool eg_addr_ula(const struct sockaddr_storage *addr);

/* ---- the sandbox's addresses ---- */

/* Every agent's IPv6 pool is a /64 inside this /32 (the rest of the /64
 * from a hash of its tag); the whole /32 is in deny6, so no sandbox
 * reaches another's, whatever agent made it.  */
#define EG_POOL6_SPACE "fd5b:d0::/32"
#define EG_POOL6_SPACE_BASE "fd5b:d0::"

/* A sandbox's (or its host end's) addresses on its link.  */
typedef struct eg_addrs {
    struct in_addr v4;
    struct in6_addr v6;
    bool has_v6; /* the host has IPv6 and the link got an address */
} eg_addrs_t;
void eg_addrs_to_ss(const eg_addrs_t *a, int family, struct sockaddr_storage *out);
/* The same IPv4 or IPv6 address (ports aside).  */
bool eg_ss_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* ---- net.c (rtnetlink) ---- */

/* A veth pair: `host_if` on the host (group, host's addresses, up) and
 * eth0 in the namespace (sb's addresses, up, default routes via the
 * host's); IPv4 /31s and, where has_v6, IPv6 /127s, and no other IPv6
 * address (not even link-local) on either.  Replaces a link of that name. */
int eg_link_create(const char *host_if, uint32_t group, int netns_fd, const eg_addrs_t *host,
                   const eg_addrs_t *sb, int *ifindex, sbx_error_t *err);
void eg_link_delete(const char *host_if);
/* net6.c: IPv6 forwarding on (the host's interfaces that accept router
 * advertisements keep doing so: accept_ra 1 becomes 2).  */
int eg_ipv6_forwarding_on(sbx_error_t *err);

/* ---- listen.c ---- */

/* An IPv4 and an IPv6 (IPV6_V6ONLY) socket of `type` on ephemeral ports,
 * listening when SOCK_STREAM; no port number of one is bound in the other
 * family (so a number means one listener).  fds[1] is -1 without IPv6.  */
int eg_listen_pair(int type, int fds[2], uint16_t ports[2], sbx_error_t *err);

/* ---- sweep.c ---- */

/* Bind the abstract socket `name`: a claim held while the fd is open,
 * released by the kernel however the process ends, nothing on disk;
 * -1 with errno EADDRINUSE while another holds it.  */
int eg_claim_name(const char *name);

/* The agent's claim on its tag (an fd to keep open while it runs); waits
 * a few seconds for an agent of the same tag on its way out.  */
int eg_tag_claim(const char *tag, sbx_error_t *err);
/* Delete the tables of other tags whose agent is gone and who have no
 * sandbox link left.  */
void eg_sweep_stale_tables(const char *own_tag);

/* ---- nft.c (libnftables) ---- */

typedef struct eg_nft eg_nft_t;
typedef struct eg_nft_config {
    const char *table;
    uint32_t group;
    const char *pool;  /* CIDR text */
    const char *pool6; /* CIDR text, NULL: no IPv6 */
    /* the agent's listeners, [0] IPv4 and [1] IPv6 (0: none) */
    uint16_t proxy_port[2], dns_port[2], dns_tcp_port[2];
    uint16_t log_group; /* NFLOG group of the denials (nflog.c) */
    uint16_t imds_port; /* the agent's identity endpoint (egress_config_t) */
} eg_nft_config_t;

eg_nft_t *eg_nft_open(const eg_nft_config_t *cfg, sbx_error_t *err);
void eg_nft_close(eg_nft_t *n, bool remove_table);
/* Point (ifindex, addr) at policy p's chains (NULL: remove the elements),
 * replacing old_p's, creating p's chains unless `p_exists` (another
 * sandbox uses them: then only the map elements change, which is cheap)
 * and dropping old_p's when `old_unused`; one transaction.  */
int eg_nft_bind(eg_nft_t *n, int ifindex, const eg_addrs_t *addr, const eg_policy_t *old_p,
                bool old_unused, const eg_policy_t *p, bool p_exists, sbx_error_t *err);
/* (ifindex, addr) may reach the identity endpoint at 169.254.169.254:80
 * (on) or no longer (off); one libnftnl batch.  */
int eg_nft_imds(eg_nft_t *n, int ifindex, struct in_addr addr, bool on, sbx_error_t *err);

/* ---- egress.c: what the proxy and the resolver ask ---- */

/* The sandbox whose link has address `addr`, with its current policy;
 * both referenced until eg_lookup_done.  false when there is none.  */
typedef struct eg_sandbox eg_sandbox_t;
typedef struct eg_lookup {
    eg_sandbox_t *sb;
    eg_policy_t *policy;
    const char *id;
} eg_lookup_t;
bool eg_lookup(egress_t *eg, const struct sockaddr_storage *addr, eg_lookup_t *out);
void eg_lookup_done(egress_t *eg, eg_lookup_t *l);

typedef struct eg_decision {
    int64_t ms;
    char name[256];   /* empty when none was seen */
    char address[64]; /* empty when none */
    uint16_t port;
    const char *protocol; /* "tcp", "udp", "dns" */
    char rule[64];        /* empty: the default action, or none applied */
    bool allow;
    const char *reason;
} eg_decision_t;
void eg_decision_log(egress_t *eg, eg_sandbox_t *sb, const eg_decision_t *d);
/* The proxy's and resolver's view of the host: is addr one of its own?  */
bool eg_addr_is_host(const struct sockaddr_storage *addr);

/* ---- resolve.c: the upstream resolver ---- */

typedef struct eg_resolver {
    struct sockaddr_storage server;
    socklen_t server_len;
} eg_resolver_t;
int eg_resolver_init(eg_resolver_t *r, const char *spec, sbx_error_t *err);
/* Up to `max` addresses of name of one family (AF_INET: A records,
 * AF_INET6: AAAA), port 0, within `timeout_ms`.  0 addresses: NXDOMAIN
 * or no record of that type.  */
int eg_resolve(const eg_resolver_t *r, const char *name, int family, struct sockaddr_storage *out,
               size_t max, size_t *n, int timeout_ms, sbx_error_t *err);

/* ---- proxy.c, dns.c ---- */

typedef struct eg_proxy eg_proxy_t;
/* ports[0] IPv4, ports[1] IPv6 (0: none).  */
eg_proxy_t *eg_proxy_start(egress_t *eg, const eg_resolver_t *r, uint16_t ports[2],
                           sbx_error_t *err);
void eg_proxy_stop(eg_proxy_t *p);
/* Close the sandbox's spliced connections the policy (NULL: none) no
 * longer allows; how many.  */
size_t eg_proxy_recheck(eg_proxy_t *p, const eg_addrs_t *sandbox, const eg_policy_t *policy);

/* ---- conntrack.c ---- */

/* Delete the conntrack entries of flows from `src` (either address) that
 * were not redirected to the agent, so their next packets meet the rules
 * anew; *cut says how many.  */
int eg_conntrack_flush(const eg_addrs_t *src, size_t *cut, sbx_error_t *err);
typedef struct eg_dns eg_dns_t;
/* UDP and TCP, each on IPv4 and IPv6: udp[0..1], tcp[0..1] (0: none).  */
eg_dns_t *eg_dns_start(egress_t *eg, const eg_resolver_t *r, uint16_t udp[2], uint16_t tcp[2],
                       sbx_error_t *err);
void eg_dns_stop(eg_dns_t *d);
typedef struct eg_nflog eg_nflog_t;
eg_nflog_t *eg_nflog_start(egress_t *eg, uint16_t group, sbx_error_t *err);
void eg_nflog_stop(eg_nflog_t *f);

#endif
