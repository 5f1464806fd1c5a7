/* egress.c -- the sandboxes' egress state on one host: which policy each
 * has, its link (number, addresses, interface), its decision log; and the
 * glue that keeps links and nft elements in step with it.  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* A denial goes to the agent's log at most this often per sandbox.  */
#define DENY_LOG_INTERVAL_MS 1000

struct eg_sandbox {
    char id[64];
    int refs;            /* under eg->mu */
    eg_policy_t *policy; /* NULL: none */
    bool identity;       /* may reach the identity endpoint (a link even without a policy) */
    bool boot_link;      /* linked when it boots only (egress_boot_link) */
    unsigned index;      /* link number, 0: none yet */
    bool linked;
    int ifindex;
    char ifname[IFNAMSIZ];
    struct in_addr host_addr, sb_addr;
    struct in6_addr host6, sb6;
    bool v6; /* the link has its IPv6 addresses */
    uint64_t allowed, denied;
    eg_decision_t recent[2][EGRESS_LOG_KEEP]; /* [0] denied, [1] allowed; rings */
    size_t head[2], count[2];
    int64_t last_log_ms;
    unsigned suppressed;
};

struct egress {
    pthread_mutex_t mu;       /* the registry and the logs */
    pthread_mutex_t apply_mu; /* one change of links and rules at a time */
    char *tag, *table, *state_dir;
    uint32_t group;
    uint32_t pool_base; /* host order */
    unsigned pool_bits;
    unsigned next_index, max_index;
    bool v6;           /* sandboxes get IPv6 */
    uint8_t pool6[16]; /* the /64 */
    eg_sandbox_t **sbs;
    size_t n_sbs, cap_sbs;
    eg_resolver_t resolver;
    eg_nft_t *nft;
    eg_proxy_t *proxy;
    eg_dns_t *dns;
    eg_nflog_t *nflog;
    int64_t last_link_us, last_rules_us;
    int tag_claim;
};

static int64_t mono_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

void egress_last_link_us(egress_t *eg, int64_t *link_us, int64_t *rules_us)
{
    pthread_mutex_lock(&eg->mu);
    *link_us = eg->last_link_us;
    *rules_us = eg->last_rules_us;
    pthread_mutex_unlock(&eg->mu);
}

/* ---- registry ---- */

static eg_sandbox_t *find_locked(egress_t *eg, const char *id)
{
    for (size_t i = 0; i < eg->n_sbs; i++)
        if (strcmp(eg->sbs[i]->id, id) == 0)
            return eg->sbs[i];
    return NULL;
}

static eg_sandbox_t *add_locked(egress_t *eg, const char *id)
{
    if (eg->n_sbs == eg->cap_sbs) {
        eg->cap_sbs = eg->cap_sbs ? eg->cap_sbs * 2 : 16;
        eg->sbs = xrealloc(eg->sbs, eg->cap_sbs * sizeof(*eg->sbs));
    }
    eg_sandbox_t *sb = xcalloc(1, sizeof *sb);
    snprintf(sb->id, sizeof sb->id, "%s", id);
    sb->refs = 1;
    eg->sbs[eg->n_sbs++] = sb;
    return sb;
}

/* The sandbox's entry, made if new; under eg->mu.  */
static eg_sandbox_t *find_or_add_locked(egress_t *eg, const char *id)
{
    eg_sandbox_t *sb = find_locked(eg, id);
    return sb ? sb : add_locked(eg, id);
}

/* Drop n references (the registry's and a caller's are dropped together,
 * so nothing touches sb after it may be freed).  */
static void put_locked(eg_sandbox_t *sb, int n)
{
    sb->refs -= n;
    if (sb->refs == 0) {
        eg_policy_unref(sb->policy);
        free(sb);
    }
}

/* Out of the registry; the caller drops the registry's reference.  */
static void unregister_locked(egress_t *eg, eg_sandbox_t *sb)
{
    for (size_t i = 0; i < eg->n_sbs; i++) {
        if (eg->sbs[i] == sb) {
            eg->sbs[i] = eg->sbs[--eg->n_sbs];
            return;
        }
    }
}

static bool index_used_locked(egress_t *eg, unsigned index)
{
    for (size_t i = 0; i < eg->n_sbs; i++)
        if (eg->sbs[i]->index == index)
            return true;
    return false;
}

/* Round robin rather than lowest free, so an address comes back into use
 * as late as possible (conntrack entries of its last owner expire).  */
static unsigned index_take_locked(egress_t *eg)
{
    for (unsigned tries = 0; tries < eg->max_index; tries++) {
        unsigned i = eg->next_index;
        eg->next_index = eg->next_index >= eg->max_index ? 1 : eg->next_index + 1;
        if (!index_used_locked(eg, i))
            return i;
    }
    return 0;
}

/* The /127 of link `index` in the /64: even for the host end.  */
static void address6(const egress_t *eg, unsigned index, unsigned odd, struct in6_addr *out)
{
    memcpy(out->s6_addr, eg->pool6, 8);
    uint64_t low = 2 * (uint64_t)index + odd;
    for (int i = 0; i < 8; i++)
        out->s6_addr[15 - i] = (uint8_t)(low >> (8 * i));
}

static void addresses_of(egress_t *eg, eg_sandbox_t *sb)
{
    sb->host_addr.s_addr = htonl(eg->pool_base + 2 * sb->index);
    sb->sb_addr.s_addr = htonl(eg->pool_base + 2 * sb->index + 1);
    address6(eg, sb->index, 0, &sb->host6);
    address6(eg, sb->index, 1, &sb->sb6);
    snprintf(sb->ifname, sizeof sb->ifname, "sx%s-%x", eg->tag, sb->index);
}

/* Another linked sandbox uses the policy with this hash.  */
static bool hash_in_use_locked(egress_t *eg, const eg_sandbox_t *except, const char *hash)
{
    for (size_t i = 0; i < eg->n_sbs; i++) {
        const eg_sandbox_t *o = eg->sbs[i];
        if (o != except && o->linked && o->policy && strcmp(o->policy->hash, hash) == 0)
            return true;
    }
    return false;
}

/* ---- records on disk ---- */

static char *record_path(egress_t *eg, const char *id)
{
    return xasprintf("%s/%s.json", eg->state_dir, id);
}

/* Replaced atomically but not fsynced: the record matters across agent
 * restarts (the page cache keeps it), not host crashes (after which no
 * sandbox runs), and an fsync would cost the create path milliseconds.  */
static int write_replace(const char *path, const char *text, sbx_error_t *err)
{
    _cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || rename(tmp, path) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "%s", path);
        (void)unlink(tmp);
        return -1;
    }
    return 0;
}

static void record_save(egress_t *eg, const eg_sandbox_t *sb)
{
    _cleanup_json_ json_t *j = json_pack("{s:I,s:O,s:b,s:b}", "index", (json_int_t)sb->index,
                                         "policy", sb->policy ? sb->policy->json : json_null(),
                                         "identity", sb->identity, "bootLink", sb->boot_link);
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    _cleanup_free_ char *path = record_path(eg, sb->id);
    sbx_error_t err = {0};
    if (!text || write_replace(path, text, &err) < 0)
        sbx_log(SBX_LOG_WARN, MODULE, "sandbox %s: cannot save its egress record: %s", sb->id,
                err.msg);
}

static void record_remove(egress_t *eg, const char *id)
{
    _cleanup_free_ char *path = record_path(eg, id);
    if (unlink(path) < 0 && errno != ENOENT)
        sbx_log(SBX_LOG_WARN, MODULE, "cannot remove %s: %m", path);
}

static void records_load(egress_t *eg)
{
    DIR *d = opendir(eg->state_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || n > 63 + 5 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        char id[64];
        snprintf(id, sizeof id, "%.*s", (int)(n - 5), de->d_name);
        _cleanup_free_ char *path = record_path(eg, id);
        json_error_t jerr;
        _cleanup_json_ json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        json_t *index = json_object_get(j, "index"), *pj = json_object_get(j, "policy");
        if (!json_is_integer(index) || json_integer_value(index) < 0 ||
            json_integer_value(index) > eg->max_index)
            continue;
        sbx_error_t err = {0};
        eg_policy_t *p = json_is_object(pj) ? eg_policy_parse(pj, &err) : NULL;
        if (json_is_object(pj) && !p)
            continue;
        eg_sandbox_t *sb = add_locked(eg, id);
        sb->policy = p;
        sb->identity = json_is_true(json_object_get(j, "identity"));
        sb->boot_link = json_is_true(json_object_get(j, "bootLink"));
        sb->index = (unsigned)json_integer_value(index);
        if (sb->index)
            addresses_of(eg, sb);
    }
    closedir(d);
}

/* ---- open and close ---- */

static int pool_parse(egress_t *eg, const char *pool, sbx_error_t *err)
{
    char addr[32];
    unsigned bits;
    struct in_addr a;
    if (!pool || sscanf(pool, "%31[0-9.]/%u", addr, &bits) != 2 ||
        inet_pton(AF_INET, addr, &a) != 1 || bits < 16 || bits > 28)
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "the egress pool must be an IPv4 CIDR block of /16 to /28, not '%s'",
                             pool ? pool : "");
    eg->pool_bits = bits;
    eg->pool_base = ntohl(a.s_addr) & (~0u << (32 - bits));
    eg->max_index = (1u << (32 - bits)) / 2 - 1;
    eg->next_index = 1;
    return 0;
}

/* The /64 of fd5b:d0::/32 the tag names, or the one configured; none
 * ("off", or a host without IPv6).  */
static int pool6_parse(egress_t *eg, const egress_config_t *cfg, sbx_error_t *err)
{
    if (cfg->pool6 && strcmp(cfg->pool6, "off") == 0)
        return 0;
    if (access("/proc/sys/net/ipv6/conf/all/forwarding", F_OK) < 0) {
        sbx_log(SBX_LOG_INFO, MODULE, "the host has no IPv6: sandbox links get IPv4 only");
        return 0;
    }
    char addr[64];
    unsigned bits;
    struct in6_addr a;
    if (cfg->pool6) {
        if (sscanf(cfg->pool6, "%63[0-9a-fA-F:]/%u", addr, &bits) != 2 ||
            inet_pton(AF_INET6, addr, &a) != 1 || bits != 64)
            return sbx_error_set(err, SBX_ERR_INVALID,
                                 "the egress IPv6 pool must be a /64 or off, not '%s'", cfg->pool6);
    } else {
        uint32_t h = 2166136261u;
        for (const char *p = cfg->tag; *p; p++)
            h = (h ^ (uint8_t)*p) * 16777619u;
        inet_pton(AF_INET6, EG_POOL6_SPACE_BASE, &a);
        for (int i = 0; i < 4; i++)
            a.s6_addr[4 + i] = (uint8_t)(h >> (24 - 8 * i));
    }
    memcpy(eg->pool6, a.s6_addr, 8);
    memset(eg->pool6 + 8, 0, 8);
    if (eg_ipv6_forwarding_on(err) < 0)
        return -1;
    eg->v6 = true;
    return 0;
}

static bool tag_valid(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > 6)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9')))
            return false;
    return true;
}

/* Forwarding must be on for sandboxes' packets to leave the host (as for
 * any container network).  */
static int forwarding_on(sbx_error_t *err)
{
    const char *path = "/proc/sys/net/ipv4/ip_forward";
    _cleanup_free_ char *cur = NULL;
    size_t len;
    if (sbx_read_file(path, &cur, &len, err) < 0)
        return -1;
    if (cur[0] == '1')
        return 0;
    sbx_log(SBX_LOG_INFO, MODULE, "turning IPv4 forwarding on for sandbox links");
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1\n", 2) != 2)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "cannot turn IPv4 forwarding on");
    return 0;
}

static int start(egress_t *eg, const egress_config_t *cfg, sbx_error_t *err)
{
    uint16_t proxy_port[2] = {0}, dns_port[2] = {0}, dns_tcp_port[2] = {0};
    if (pool_parse(eg, cfg->pool, err) < 0 || forwarding_on(err) < 0 ||
        pool6_parse(eg, cfg, err) < 0 || eg_resolver_init(&eg->resolver, cfg->resolver, err) < 0)
        return -1;
    eg->proxy = eg_proxy_start(eg, &eg->resolver, proxy_port, err);
    if (!eg->proxy)
        return -1;
    eg->dns = eg_dns_start(eg, &eg->resolver, dns_port, dns_tcp_port, err);
    if (!eg->dns)
        return -1;
    if (!proxy_port[1] || !dns_port[1] || !dns_tcp_port[1])
        eg->v6 = false; /* no IPv6 sockets: IPv6 is off on this host */
    if (!eg->v6)
        proxy_port[1] = dns_port[1] = dns_tcp_port[1] = 0;
    char pool[40], pool6[64];
    struct in_addr base = {htonl(eg->pool_base)};
    snprintf(pool, sizeof pool, "%s/%u", inet_ntoa(base), eg->pool_bits);
    inet_ntop(AF_INET6, eg->pool6, pool6, sizeof pool6);
    strcat(pool6, "/64");
    /* an NFLOG group of this agent's own, from its tag */
    uint16_t log_group = (uint16_t)(1000 + (eg->group & 0xffffff) % 60000);
    eg->nflog = eg_nflog_start(eg, log_group, err);
    if (!eg->nflog)
        return -1;
    eg_nft_config_t nc = {.table = eg->table,
                          .group = eg->group,
                          .pool = pool,
                          .pool6 = eg->v6 ? pool6 : NULL,
                          .proxy_port = {proxy_port[0], proxy_port[1]},
                          .dns_port = {dns_port[0], dns_port[1]},
                          .dns_tcp_port = {dns_tcp_port[0], dns_tcp_port[1]},
                          .log_group = log_group,
                          .imds_port = cfg->imds_port};
    eg->nft = eg_nft_open(&nc, err);
    return eg->nft ? 0 : -1;
}

egress_t *egress_open(const egress_config_t *cfg, sbx_error_t *err)
{
    if (!tag_valid(cfg->tag))
        return sbx_error_set(err, SBX_ERR_INVALID, "the egress tag must be 1-6 of [a-z0-9]"), NULL;
    if (!cfg->state_dir || sbx_mkdir_p(cfg->state_dir, 0700, err) < 0)
        return sbx_error_set(err, SBX_ERR_INVALID, "the egress state dir is missing"), NULL;
    egress_t *eg = xcalloc(1, sizeof *eg);
    pthread_mutex_init(&eg->mu, NULL);
    pthread_mutex_init(&eg->apply_mu, NULL);
    eg->tag = xstrdup(cfg->tag);
    eg->table = xasprintf("sandboxd_%s", cfg->tag);
    eg->state_dir = xstrdup(cfg->state_dir);
    uint32_t h = 2166136261u;
    for (const char *p = cfg->tag; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    eg->group = 0x5b000000u | (h & 0xffffffu);
    eg->tag_claim = eg_tag_claim(cfg->tag, err);
    if (eg->tag_claim < 0) {
        egress_close(eg);
        return NULL;
    }
    eg_sweep_stale_tables(cfg->tag);
    if (start(eg, cfg, err) < 0) {
        egress_close(eg);
        return NULL;
    }
    records_load(eg);
    return eg;
}

void egress_close(egress_t *eg)
{
    if (!eg)
        return;
    eg_proxy_stop(eg->proxy);
    eg_dns_stop(eg->dns);
    eg_nflog_stop(eg->nflog);
    bool linked = false;
    for (size_t i = 0; i < eg->n_sbs; i++)
        linked |= eg->sbs[i]->linked;
    eg_nft_close(eg->nft, !linked);
    while (eg->n_sbs) {
        eg_sandbox_t *sb = eg->sbs[eg->n_sbs - 1];
        eg->n_sbs--;
        put_locked(sb, 1);
    }
    free(eg->sbs);
    pthread_mutex_destroy(&eg->mu);
    pthread_mutex_destroy(&eg->apply_mu);
    free(eg->tag);
    free(eg->table);
    free(eg->state_dir);
    if (eg->tag_claim >= 0)
        close(eg->tag_claim);
    free(eg);
}

/* ---- attach, update, release ---- */

int egress_policy_check(const json_t *policy, sbx_error_t *err)
{
    if (!policy || json_is_null(policy))
        return 0;
    eg_policy_t *p = eg_policy_parse(policy, err);
    eg_policy_unref(p);
    return p ? 0 : -1;
}

static eg_addrs_t sb_addrs(const eg_sandbox_t *sb)
{
    return (eg_addrs_t){.v4 = sb->sb_addr, .v6 = sb->sb6, .has_v6 = sb->v6};
}

bool eg_ss_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

void eg_addrs_to_ss(const eg_addrs_t *a, int family, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    out->ss_family = (sa_family_t)family;
    if (family == AF_INET)
        ((struct sockaddr_in *)out)->sin_addr = a->v4;
    else
        ((struct sockaddr_in6 *)out)->sin6_addr = a->v6;
}

static void unlink_sandbox(egress_t *eg, eg_sandbox_t *sb)
{
    if (!sb->linked)
        return;
    pthread_mutex_lock(&eg->mu);
    bool unused = sb->policy && !hash_in_use_locked(eg, sb, sb->policy->hash);
    sb->linked = false;
    pthread_mutex_unlock(&eg->mu);
    sbx_error_t err = {0};
    eg_addrs_t a = sb_addrs(sb);
    if (sb->policy &&
        eg_nft_bind(eg->nft, sb->ifindex, &a, sb->policy, unused, NULL, false, &err) < 0)
        sbx_log(SBX_LOG_WARN, MODULE, "sandbox %s: %s", sb->id, err.msg);
    if (sb->identity && eg_nft_imds(eg->nft, sb->ifindex, sb->sb_addr, false, &err) < 0)
        sbx_log(SBX_LOG_WARN, MODULE, "sandbox %s: %s", sb->id, err.msg);
    eg_link_delete(sb->ifname);
}

static bool link_alive(const eg_sandbox_t *sb)
{
    return sb->linked && (int)if_nametoindex(sb->ifname) == sb->ifindex;
}

static int link_sandbox(egress_t *eg, eg_sandbox_t *sb, int netns_fd, eg_policy_t *p,
                        sbx_error_t *err)
{
    if (!sb->index) {
        pthread_mutex_lock(&eg->mu);
        sb->index = index_take_locked(eg);
        pthread_mutex_unlock(&eg->mu);
        if (!sb->index)
            return sbx_error_arm(err, SBX_ERR_UNAVAILABLE, "EgressPoolExhausted",
                                 "no address is left in this host's egress pool");
        addresses_of(eg, sb);
    }
    int ifindex;
    int64_t t0 = mono_us();
    /* A boot link is gVisor's: this runsc drops IPv6 addresses, and the
     * kernel's own reports for one would count as the sandbox's traffic
     * (which decides between checkpoint and freezer).  */
    sb->v6 = eg->v6 && !sb->boot_link;
    eg_addrs_t host = {.v4 = sb->host_addr, .v6 = sb->host6, .has_v6 = sb->v6};
    eg_addrs_t a = sb_addrs(sb);
    if (eg_link_create(sb->ifname, eg->group, netns_fd, &host, &a, &ifindex, err) < 0)
        return -1;
    int64_t t1 = mono_us();
    pthread_mutex_lock(&eg->mu);
    bool exists = p && hash_in_use_locked(eg, sb, p->hash);
    pthread_mutex_unlock(&eg->mu);
    if ((p && eg_nft_bind(eg->nft, ifindex, &a, NULL, false, p, exists, err) < 0) ||
        (sb->identity && eg_nft_imds(eg->nft, ifindex, sb->sb_addr, true, err) < 0)) {
        if (p)
            eg_nft_bind(eg->nft, ifindex, &a, p, !exists, NULL, false, NULL);
        eg_link_delete(sb->ifname);
        return -1;
    }
    pthread_mutex_lock(&eg->mu);
    eg->last_link_us = t1 - t0;
    eg->last_rules_us = mono_us() - t1;
    pthread_mutex_unlock(&eg->mu);
    sb->ifindex = ifindex;
    return 0;
}

/* A sandbox linked at its boot by an earlier agent: its link is still
 * there, in a namespace that cannot take a new one; bind its rules to it
 * again.  *adopted stays false when there is none (it is not running).  */
static int link_adopt(egress_t *eg, eg_sandbox_t *sb, eg_policy_t *p, bool *adopted,
                      sbx_error_t *err)
{
    int ifindex = sb->index ? (int)if_nametoindex(sb->ifname) : 0;
    if (ifindex <= 0)
        return 0;
    pthread_mutex_lock(&eg->mu);
    bool exists = p && hash_in_use_locked(eg, sb, p->hash);
    pthread_mutex_unlock(&eg->mu);
    sb->v6 = false; /* boot links are IPv4 only, see link_sandbox */
    eg_addrs_t a = sb_addrs(sb);
    if ((p && eg_nft_bind(eg->nft, ifindex, &a, NULL, false, p, exists, err) < 0) ||
        (sb->identity && eg_nft_imds(eg->nft, ifindex, sb->sb_addr, true, err) < 0))
        return -1;
    sb->ifindex = ifindex;
    *adopted = true;
    return 0;
}

/* A running sandbox's policy changed: its open connections meet the new
 * one (conntrack.c for direct flows, the proxy for its own).  Under
 * apply_mu, so sb->policy stays.  */
static void cut_open_flows(egress_t *eg, eg_sandbox_t *sb)
{
    size_t flows = 0;
    sbx_error_t err = {0};
    eg_addrs_t a = sb_addrs(sb);
    if (eg_conntrack_flush(&a, &flows, &err) < 0)
        sbx_log(SBX_LOG_WARN, MODULE, "sandbox %s: open connections not re-checked: %s", sb->id,
                err.msg);
    size_t proxied = eg_proxy_recheck(eg->proxy, &a, sb->policy);
    sbx_log(SBX_LOG_INFO, MODULE,
            "sandbox %s: policy changed; %zu direct flows re-checked, %zu proxied connections "
            "closed",
            sb->id, flows, proxied);
}

int egress_apply(egress_t *eg, const char *id, int netns_fd, const json_t *policy, sbx_error_t *err)
{
    eg_policy_t *p = NULL;
    if (policy && !json_is_null(policy) && !(p = eg_policy_parse(policy, err)))
        return -1;
    pthread_mutex_lock(&eg->apply_mu);
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_or_add_locked(eg, id);
    sb->refs++;
    pthread_mutex_unlock(&eg->mu);

    int rc = 0;
    bool adopted = false;
    /* a sandbox with an identity keeps a link for the identity endpoint,
     * even when its policy allows nothing; one linked at boot keeps it */
    bool wanted = eg_policy_allows_any(p) || sb->identity || sb->boot_link;
    if (!wanted || (sb->linked && !link_alive(sb)))
        unlink_sandbox(eg, sb);
    if (wanted && sb->linked && (sb->policy || p)) {
        pthread_mutex_lock(&eg->mu);
        bool unused = sb->policy && !hash_in_use_locked(eg, sb, sb->policy->hash);
        bool exists = p && hash_in_use_locked(eg, sb, p->hash);
        pthread_mutex_unlock(&eg->mu);
        eg_addrs_t a = sb_addrs(sb);
        rc = eg_nft_bind(eg->nft, sb->ifindex, &a, sb->policy, unused, p, exists, err);
    } else if (wanted && !sb->linked && netns_fd >= 0) {
        rc = link_sandbox(eg, sb, netns_fd, p, err);
    } else if (wanted && !sb->linked && sb->boot_link) {
        rc = link_adopt(eg, sb, p, &adopted, err);
    }
    pthread_mutex_lock(&eg->mu);
    bool was_linked = sb->linked;
    if (rc == 0) {
        eg_policy_t *old = sb->policy;
        sb->policy = p;
        p = old;
        if (wanted && (netns_fd >= 0 || adopted))
            sb->linked = true;
    }
    if (rc == 0)
        record_save(eg, sb);
    bool changed = rc == 0 && was_linked && sb->linked &&
                   (!p != !sb->policy || (p && strcmp(p->hash, sb->policy->hash) != 0));
    pthread_mutex_unlock(&eg->mu);
    if (changed)
        cut_open_flows(eg, sb);
    pthread_mutex_lock(&eg->mu);
    put_locked(sb, 1);
    pthread_mutex_unlock(&eg->mu);
    pthread_mutex_unlock(&eg->apply_mu);
    eg_policy_unref(p);
    return rc;
}

int egress_boot_link(egress_t *eg, const char *id, int netns_fd, sbx_error_t *err)
{
    pthread_mutex_lock(&eg->apply_mu);
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_or_add_locked(eg, id);
    sb->refs++;
    sb->boot_link = true;
    pthread_mutex_unlock(&eg->mu);
    /* the last boot's link is dead (its namespace went) or no longer
     * seen by the sandbox (runsc took its addresses) */
    unlink_sandbox(eg, sb);
    int rc = link_sandbox(eg, sb, netns_fd, sb->policy, err);
    pthread_mutex_lock(&eg->mu);
    if (rc == 0)
        sb->linked = true;
    record_save(eg, sb);
    put_locked(sb, 1);
    pthread_mutex_unlock(&eg->mu);
    pthread_mutex_unlock(&eg->apply_mu);
    return rc;
}

void egress_release(egress_t *eg, const char *id, bool forget)
{
    pthread_mutex_lock(&eg->apply_mu);
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_locked(eg, id);
    if (sb)
        sb->refs++;
    pthread_mutex_unlock(&eg->mu);
    if (sb) {
        unlink_sandbox(eg, sb);
        pthread_mutex_lock(&eg->mu);
        if (forget)
            unregister_locked(eg, sb);
        put_locked(sb, forget ? 2 : 1);
        pthread_mutex_unlock(&eg->mu);
        if (forget)
            record_remove(eg, id);
    }
    pthread_mutex_unlock(&eg->apply_mu);
}

void egress_set_identity(egress_t *eg, const char *id, bool identity)
{
    pthread_mutex_lock(&eg->apply_mu);
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_or_add_locked(eg, id);
    sb->identity = identity;
    pthread_mutex_unlock(&eg->mu);
    pthread_mutex_unlock(&eg->apply_mu);
}

bool egress_has_identity(egress_t *eg, const char *id)
{
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_locked(eg, id);
    bool yes = sb && sb->identity;
    pthread_mutex_unlock(&eg->mu);
    return yes;
}

int egress_identity_of(egress_t *eg, struct in_addr peer, struct in_addr local, char *id,
                       size_t len)
{
    int found = 0;
    pthread_mutex_lock(&eg->mu);
    for (size_t i = 0; i < eg->n_sbs && !found; i++) {
        const eg_sandbox_t *sb = eg->sbs[i];
        if (sb->linked && sb->identity && sb->sb_addr.s_addr == peer.s_addr &&
            sb->host_addr.s_addr == local.s_addr) {
            snprintf(id, len, "%s", sb->id);
            found = 1;
        }
    }
    pthread_mutex_unlock(&eg->mu);
    return found;
}

json_t *egress_policy_of(egress_t *eg, const char *id)
{
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_locked(eg, id);
    json_t *j = sb && sb->policy ? json_incref(sb->policy->json) : NULL;
    pthread_mutex_unlock(&eg->mu);
    return j;
}

json_t *egress_ids(egress_t *eg)
{
    json_t *a = json_array();
    pthread_mutex_lock(&eg->mu);
    for (size_t i = 0; i < eg->n_sbs; i++)
        json_array_append_new(a, json_string(eg->sbs[i]->id));
    pthread_mutex_unlock(&eg->mu);
    return a;
}

int egress_addresses(egress_t *eg, const char *id, char *sandbox, char *host, size_t len)
{
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_locked(eg, id);
    int rc = sb && sb->linked ? 1 : 0;
    if (rc) {
        inet_ntop(AF_INET, &sb->sb_addr, sandbox, (socklen_t)len);
        inet_ntop(AF_INET, &sb->host_addr, host, (socklen_t)len);
    }
    pthread_mutex_unlock(&eg->mu);
    return rc;
}

int egress_addresses6(egress_t *eg, const char *id, char *sandbox, char *host, size_t len)
{
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_locked(eg, id);
    int rc = sb && sb->linked && sb->v6 ? 1 : 0;
    if (rc) {
        inet_ntop(AF_INET6, &sb->sb6, sandbox, (socklen_t)len);
        inet_ntop(AF_INET6, &sb->host6, host, (socklen_t)len);
    }
    pthread_mutex_unlock(&eg->mu);
    return rc;
}

/* ---- what the proxy and the resolver ask ---- */

static bool has_addr(const eg_sandbox_t *sb, const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return sb->sb_addr.s_addr == ((const struct sockaddr_in *)a)->sin_addr.s_addr;
    return a->ss_family == AF_INET6 && sb->v6 &&
           memcmp(&sb->sb6, &((const struct sockaddr_in6 *)a)->sin6_addr, 16) == 0;
}

bool eg_lookup(egress_t *eg, const struct sockaddr_storage *addr, eg_lookup_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&eg->mu);
    for (size_t i = 0; i < eg->n_sbs; i++) {
        eg_sandbox_t *sb = eg->sbs[i];
        if (sb->linked && sb->policy && has_addr(sb, addr)) {
            sb->refs++;
            out->sb = sb;
            out->policy = eg_policy_ref(sb->policy);
            out->id = sb->id;
            break;
        }
    }
    pthread_mutex_unlock(&eg->mu);
    return out->sb != NULL;
}

void eg_lookup_done(egress_t *eg, eg_lookup_t *l)
{
    if (!l->sb)
        return;
    eg_policy_unref(l->policy);
    pthread_mutex_lock(&eg->mu);
    put_locked(l->sb, 1);
    pthread_mutex_unlock(&eg->mu);
    memset(l, 0, sizeof *l);
}

void eg_decision_log(egress_t *eg, eg_sandbox_t *sb, const eg_decision_t *d)
{
    pthread_mutex_lock(&eg->mu);
    int k = d->allow ? 1 : 0;
    sb->recent[k][sb->head[k]] = *d;
    sb->head[k] = (sb->head[k] + 1) % EGRESS_LOG_KEEP;
    if (sb->count[k] < EGRESS_LOG_KEEP)
        sb->count[k]++;
    if (d->allow)
        sb->allowed++;
    else
        sb->denied++;
    bool say = false;
    unsigned suppressed = 0;
    if (!d->allow) {
        if (d->ms - sb->last_log_ms >= DENY_LOG_INTERVAL_MS) {
            say = true;
            suppressed = sb->suppressed;
            sb->suppressed = 0;
            sb->last_log_ms = d->ms;
        } else {
            sb->suppressed++;
        }
    }
    char id[64];
    snprintf(id, sizeof id, "%s", sb->id);
    pthread_mutex_unlock(&eg->mu);
    if (say)
        sbx_log(SBX_LOG_INFO, MODULE,
                "sandbox %s: denied %s %s%s%s port %u (%s%s) [%u more denials not logged]", id,
                d->protocol, d->name[0] ? d->name : "", d->name[0] ? " " : "", d->address, d->port,
                d->rule[0] ? "rule " : "default action", d->rule, suppressed);
}

static json_t *decision_json(const eg_decision_t *d)
{
    char t[40];
    sbx_time_format(d->ms, t, sizeof t);
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:i,s:s,s:s,s:s}", "time", t, "destination", d->name, "address",
                  d->address, "port", (int)d->port, "protocol", d->protocol, "action",
                  d->allow ? "Allow" : "Deny", "reason", d->reason ? d->reason : "");
    json_object_set_new(j, "rule", d->rule[0] ? json_string(d->rule) : json_null());
    return j;
}

json_t *egress_decisions(egress_t *eg, const char *id, sbx_error_t *err)
{
    pthread_mutex_lock(&eg->mu);
    eg_sandbox_t *sb = find_locked(eg, id);
    if (!sb) {
        pthread_mutex_unlock(&eg->mu);
        return sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s has no egress record", id), NULL;
    }
    json_t *lists[2];
    for (int k = 0; k < 2; k++) {
        lists[k] = json_array();
        for (size_t i = 0; i < sb->count[k]; i++) {
            size_t at = (sb->head[k] + EGRESS_LOG_KEEP - 1 - i) % EGRESS_LOG_KEEP;
            json_array_append_new(lists[k], decision_json(&sb->recent[k][at]));
        }
    }
    json_t *j =
        json_pack("{s:I,s:I,s:o,s:o}", "allowed", (json_int_t)sb->allowed, "denied",
                  (json_int_t)sb->denied, "recentAllowed", lists[1], "recentDenied", lists[0]);
    json_object_set(j, "policy", sb->policy ? sb->policy->json : json_null());
    pthread_mutex_unlock(&eg->mu);
    return j;
}

/* The kernel answers in O(1): binding to an address works only when it is
 * one of the host's (or loopback).  getifaddrs() would list every sandbox's
 * link as well, milliseconds at 500 of them, on every proxied connection.  */
bool eg_addr_is_host(const struct sockaddr_storage *addr)
{
    if (addr->ss_family != AF_INET && addr->ss_family != AF_INET6)
        return true;
    _cleanup_close_ int fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true;
    struct sockaddr_storage a = *addr;
    socklen_t len = sizeof(struct sockaddr_in);
    if (a.ss_family == AF_INET) {
        ((struct sockaddr_in *)&a)->sin_port = 0;
    } else {
        ((struct sockaddr_in6 *)&a)->sin6_port = 0;
        len = sizeof(struct sockaddr_in6);
    }
    return bind(fd, (struct sockaddr *)&a, len) == 0 || errno != EADDRNOTAVAIL;
}
