/* egress.h -- a sandbox's way out: a veth link from its network namespace
 * to the host, nftables rules that allow exactly what its egress policy
 * says, a transparent proxy for FQDN rules (TLS SNI, HTTP Host), a DNS
 * resolver that answers only allowed names, and a log of the decisions.
 *
 * A policy is the JSON the ARM API stores as an egress policy's properties:
 * {"defaultAction":"Allow"|"Deny","rules":[{"name","action","fqdns",
 * "cidrs","ports"}]}.  A sandbox whose policy allows nothing has no link at
 * all (loopback only).  Whatever a policy says, the host itself, other
 * sandboxes, link-local and cloud metadata addresses stay unreachable.
 * The link carries IPv4 and, where the host has it, IPv6 (NAT66 out).
 * Thread-safe.  */
#ifndef SBX_EGRESS_H
#define SBX_EGRESS_H

#include <netinet/in.h>

#include "common/common.h"

typedef struct egress egress_t;

typedef struct egress_config {
    /* IPv4 pool the links' addresses come from (a /31 per sandbox), a
     * prefix of /16 to /28 that nothing else on the host uses.  */
    const char *pool;
    /* Names this agent's nft table ("sandboxd_<tag>"), its interfaces
     * ("sx<tag>-<n>") and their group: [a-z0-9]{1,6}, unique on the host.  */
    const char *tag;
    /* Upstream DNS server "ADDR" or "ADDR:PORT" the proxy and the
     * sandboxes' resolver ask; NULL: the host's (/etc/resolv.conf).  */
    const char *resolver;
    /* Directory for each sandbox's record (policy, link number), so a
     * restarted agent finds its links again.  */
    const char *state_dir;
    /* TCP port of the agent's identity endpoint on every address (0:
     * none): sandboxes given an identity reach it at 169.254.169.254:80,
     * nothing else does (the table drops it from anywhere else).  */
    uint16_t imds_port;
    /* IPv6 pool of the links (a /64: a /127 per sandbox; NULL: the /64 of
     * fd5b:d0::/32 named by a hash of the tag), or "off": no IPv6.  A host
     * without IPv6 gives its sandboxes none either.  */
    const char *pool6;
} egress_config_t;

/* "--egress-pool auto": a /20 of 100.64.0.0/10 that overlaps no route of
 * the host (any table; routes through this agent's own links "sx<tag>-*"
 * aside) and that no other agent on the host holds, the one saved in
 * state_dir/pool first.  The claim lasts as long as *claim_fd is open.
 * SBX_ERR_UNAVAILABLE when none is free.  */
int egress_pool_pick(const char *tag, const char *state_dir, char *out, size_t len, int *claim_fd,
                     sbx_error_t *err);

/* Sets up the nft table and starts the proxy and the resolver.  */
egress_t *egress_open(const egress_config_t *cfg, sbx_error_t *err);
/* Stops the proxy and resolver.  Links and rules of sandboxes that are
 * still attached stay (direct CIDR traffic goes on; a restarted agent takes
 * them back); the table goes when no sandbox is attached.  */
void egress_close(egress_t *eg);

/* Check a policy as the agent receives it; SBX_ERR_INVALID with the
 * offending field as target.  NULL is no policy (nothing allowed).  */
int egress_policy_check(const json_t *policy, sbx_error_t *err);

/* Give sandbox `id` the policy (NULL: none) and, when netns_fd >= 0 (its
 * running network namespace), the link and rules it needs; a policy that
 * allows nothing removes the link.  Idempotent; used on create, start and
 * for live updates (new connections follow the new policy at once).  */
int egress_apply(egress_t *eg, const char *id, int netns_fd, const json_t *policy,
                 sbx_error_t *err);
/* Give sandbox `id` a new link into netns_fd, the network namespace it is
 * about to boot in, with the policy egress_apply last gave it, replacing
 * any link it had (same addresses).  For sandboxes whose network is fixed
 * when they boot (gVisor copies its namespace's interfaces at start and
 * never looks again): such a sandbox has a link whatever its policy allows
 * (nothing allowed: every packet is denied), so a later policy applies
 * live; egress_apply changes only its rules, and after an agent restart
 * takes its link back as it is instead of making a new one.  */
int egress_boot_link(egress_t *eg, const char *id, int netns_fd, sbx_error_t *err);
/* Whether sandbox `id` may reach the identity endpoint; set before its
 * egress_apply (kept in its record).  Such a sandbox gets a link even when
 * its policy allows nothing.  */
void egress_set_identity(egress_t *eg, const char *id, bool identity);
bool egress_has_identity(egress_t *eg, const char *id);
/* The id of the linked sandbox with an identity whose address is `peer`
 * and whose host end is `local` (the two ends of a connection that reached
 * the identity endpoint through its own link): 1, or 0 for none.  */
int egress_identity_of(egress_t *eg, struct in_addr peer, struct in_addr local, char *id,
                       size_t len);

/* The sandbox's link and rules go (it stopped, or is destroyed: `forget`
 * also drops its policy and decision log).  */
void egress_release(egress_t *eg, const char *id, bool forget);
/* The policy a sandbox has (a new reference), or NULL.  */
json_t *egress_policy_of(egress_t *eg, const char *id);
/* Ids of the sandboxes that have a record (agent recovery).  */
json_t *egress_ids(egress_t *eg);

/* {"allowed":n,"denied":n,"recentAllowed":[...],"recentDenied":[...]}:
 * counters and the last EGRESS_LOG_KEEP decisions of each kind, newest
 * first, each {time, destination, address, port, protocol, rule, action,
 * reason}.  SBX_ERR_NOT_FOUND for a sandbox without a record.  */
#define EGRESS_LOG_KEEP 50
json_t *egress_decisions(egress_t *eg, const char *id, sbx_error_t *err);

/* How long the last link took to make, and its rules to bind, in
 * microseconds (for the bench).  */
void egress_last_link_us(egress_t *eg, int64_t *link_us, int64_t *rules_us);

/* The sandbox's addresses (for tests and logs); 0 when it has no link.  */
int egress_addresses(egress_t *eg, const char *id, char *sandbox, char *host, size_t len);
/* The same for IPv6; 0 also when its link has no IPv6.  */
int egress_addresses6(egress_t *eg, const char *id, char *sandbox, char *host, size_t len);

#endif
