/* policy.c -- an egress policy parsed from its JSON, and the decisions the
 * proxy and the resolver take with it (the nft rules take the same ones on
 * addresses, see nft.c).  */
#include "egress/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int invalid(sbx_error_t *err, const char *target, const char *what)
{
    sbx_error_arm(err, SBX_ERR_INVALID, "InvalidEgressPolicy", "'%s' %s", target, what);
    return sbx_error_target(err, target);
}

bool eg_name_normalise(const char *in, size_t len, char *out, size_t out_len)
{
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > 253 || len >= out_len)
        return false;
    size_t label = 0;
    bool alpha = false;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (isalnum((unsigned char)c) || c == '-' || c == '_') {
            if (++label > 63)
                return false;
            alpha |= !isdigit((unsigned char)c);
        } else {
            return false;
        }
        out[i] = (char)tolower((unsigned char)c);
    }
    out[len] = '\0';
    /* all digits and dots is an IPv4 literal (also "1.2.3"), not a name */
    return label > 0 && alpha;
}

/* "pypi.org" or "*.githubusercontent.com".  */
static bool pattern_parse(const char *s, char *out, size_t out_len)
{
    bool wild = strncmp(s, "*.", 2) == 0;
    const char *rest = wild ? s + 2 : s;
    char norm[256];
    if (!eg_name_normalise(rest, strlen(rest), norm, sizeof norm) || strchr(rest, '*'))
        return false;
    snprintf(out, out_len, "%s%s", wild ? "*." : "", norm);
    return true;
}

bool eg_name_matches(const char *pattern, const char *name)
{
    if (strncmp(pattern, "*.", 2) != 0)
        return strcmp(pattern, name) == 0;
    /* one label, not the bare suffix and not two labels */
    const char *dot = strchr(name, '.');
    return dot && dot != name && strcmp(dot + 1, pattern + 2) == 0;
}

static bool cidr_parse(const char *s, eg_cidr_t *c)
{
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof addr)
        return false;
    memcpy(addr, s, n);
    addr[n] = '\0';
    memset(c, 0, sizeof *c);
    unsigned max;
    if (inet_pton(AF_INET, addr, c->addr) == 1) {
        c->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
        c->family = AF_INET6;
        max = 128;
    } else {
        return false;
    }
    c->bits = max;
    if (slash) {
        char *end;
        long bits = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || bits < 0 || bits > (long)max || !isdigit((unsigned char)slash[1]))
            return false;
        c->bits = (unsigned)bits;
    }
    /* host bits cleared, so "10.0.0.1/8" means 10.0.0.0/8 as nft takes it */
    for (unsigned i = c->bits; i < max; i++)
        c->addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
    char text[INET6_ADDRSTRLEN];
    inet_ntop(c->family, c->addr, text, sizeof text);
    snprintf(c->text, sizeof c->text, "%s/%u", text, c->bits);
    return true;
}

static bool cidr_contains(const eg_cidr_t *c, const struct sockaddr_storage *ss)
{
    const uint8_t *a;
    if (ss->ss_family == AF_INET && c->family == AF_INET)
        a = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6 && c->family == AF_INET6)
        a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
    else
        return false;
    for (unsigned i = 0; i < c->bits; i++) {
        uint8_t m = (uint8_t)(0x80u >> (i % 8));
        if ((a[i / 8] & m) != (c->addr[i / 8] & m))
            return false;
    }
    return true;
}

static const json_t *list_of(const json_t *rule, const char *key, const char *t, size_t *n,
                             sbx_error_t *err)
{
    json_t *v = json_object_get(rule, key);
    *n = 0;
    if (!v || json_is_null(v))
        return NULL;
    char target[96];
    snprintf(target, sizeof target, "%s.%s", t, key);
    if (!json_is_array(v) || json_array_size(v) > EG_MAX_ITEMS) {
        invalid(err, target, "must be an array of at most 100 items.");
        return (const json_t *)-1;
    }
    *n = json_array_size(v);
    return v;
}

#define LIST_FAILED(p) ((p) == (const json_t *)-1)

static int rule_items(const json_t *r, eg_rule_t *out, const char *t, sbx_error_t *err)
{
    size_t nf, nc, np;
    const json_t *f = list_of(r, "fqdns", t, &nf, err);
    const json_t *c = LIST_FAILED(f) ? f : list_of(r, "cidrs", t, &nc, err);
    const json_t *p = LIST_FAILED(c) ? c : list_of(r, "ports", t, &np, err);
    if (LIST_FAILED(p))
        return -1;
    char target[128];
    out->fqdns = xcalloc(nf + 1, sizeof(char *));
    for (size_t i = 0; i < nf; i++) {
        json_t *v = json_array_get(f, i);
        char pat[260];
        snprintf(target, sizeof target, "%s.fqdns[%zu]", t, i);
        if (!json_is_string(v) || !pattern_parse(json_string_value(v), pat, sizeof pat))
            return invalid(err, target,
                           "must be a DNS name, or one with a single leading '*.' "
                           "label.");
        out->fqdns[out->n_fqdns++] = xstrdup(pat);
    }
    out->cidrs = xcalloc(nc + 1, sizeof(eg_cidr_t));
    for (size_t i = 0; i < nc; i++) {
        json_t *v = json_array_get(c, i);
        snprintf(target, sizeof target, "%s.cidrs[%zu]", t, i);
        if (!json_is_string(v) || !cidr_parse(json_string_value(v), &out->cidrs[out->n_cidrs]))
            return invalid(err, target, "must be an IPv4 or IPv6 address or CIDR block.");
        out->n_cidrs++;
    }
    out->ports = xcalloc(np + 1, sizeof(uint16_t));
    for (size_t i = 0; i < np; i++) {
        json_t *v = json_array_get(p, i);
        snprintf(target, sizeof target, "%s.ports[%zu]", t, i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
            return invalid(err, target, "must be a port number 1..65535.");
        out->ports[out->n_ports++] = (uint16_t)json_integer_value(v);
    }
    return 0;
}

static bool action_parse(const json_t *v, bool *allow)
{
    const char *s = json_string_value(v);
    if (!s || (strcmp(s, "Allow") != 0 && strcmp(s, "Deny") != 0))
        return false;
    *allow = strcmp(s, "Allow") == 0;
    return true;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

eg_policy_t *eg_policy_parse(const json_t *j, sbx_error_t *err)
{
    if (!json_is_object(j))
        return invalid(err, "egress", "must be an object."), NULL;
    eg_policy_t *p = xcalloc(1, sizeof *p);
    atomic_init(&p->refs, 1);
    json_t *d = json_object_get(j, "defaultAction");
    if (d && !json_is_null(d) && !action_parse(d, &p->default_allow)) {
        eg_policy_unref(p);
        return invalid(err, "defaultAction", "must be Allow or Deny."), NULL;
    }
    json_t *rules = json_object_get(j, "rules");
    if (rules && !json_is_null(rules) &&
        (!json_is_array(rules) || json_array_size(rules) > EG_MAX_RULES)) {
        eg_policy_unref(p);
        return invalid(err, "rules", "must be an array of at most 100 rules."), NULL;
    }
    size_t n = rules ? json_array_size(rules) : 0;
    p->rules = xcalloc(n + 1, sizeof(eg_rule_t));
    json_t *norm = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *r = json_array_get(rules, i);
        eg_rule_t *out = &p->rules[p->n_rules++];
        char t[32];
        snprintf(t, sizeof t, "rules[%zu]", i);
        json_t *name = json_object_get(r, "name");
        if (!json_is_object(r) || !json_is_string(name) || json_string_length(name) == 0 ||
            json_string_length(name) > 63 || strlen(json_string_value(name)) > 63 ||
            !action_parse(json_object_get(r, "action"), &out->allow)) {
            json_decref(norm);
            eg_policy_unref(p);
            return invalid(err, t, "must be an object with a name and an action Allow or Deny."),
                   NULL;
        }
        out->name = xstrdup(json_string_value(name));
        if (rule_items(r, out, t, err) < 0) {
            json_decref(norm);
            eg_policy_unref(p);
            return NULL;
        }
        json_t *k =
            json_pack("{s:s,s:s}", "name", out->name, "action", out->allow ? "Allow" : "Deny");
        const char *keys[] = {"fqdns", "cidrs", "ports"};
        for (size_t f = 0; f < ARRAY_SIZE(keys); f++)
            if (json_array_size(json_object_get(r, keys[f])))
                json_object_set(k, keys[f], json_object_get(r, keys[f]));
        json_array_append_new(norm, k);
    }
    p->json =
        json_pack("{s:s,s:o}", "defaultAction", p->default_allow ? "Allow" : "Deny", "rules", norm);
    _cleanup_free_ char *text = json_dumps(p->json, JSON_COMPACT | JSON_SORT_KEYS);
    snprintf(p->hash, sizeof p->hash, "%016llx", (unsigned long long)fnv1a(text));
    return p;
}

eg_policy_t *eg_policy_ref(eg_policy_t *p)
{
    if (p)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void eg_policy_unref(eg_policy_t *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    for (size_t i = 0; i < p->n_rules; i++) {
        eg_rule_t *r = &p->rules[i];
        for (size_t k = 0; k < r->n_fqdns; k++)
            free(r->fqdns[k]);
        free(r->fqdns);
        free(r->cidrs);
        free(r->ports);
        free(r->name);
    }
    free(p->rules);
    json_decref(p->json);
    free(p);
}

bool eg_policy_allows_any(const eg_policy_t *p)
{
    if (!p)
        return false;
    if (p->default_allow)
        return true;
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].allow)
            return true;
    return false;
}

static bool port_matches(const eg_rule_t *r, uint16_t port)
{
    if (r->n_ports == 0)
        return true;
    for (size_t i = 0; i < r->n_ports; i++)
        if (r->ports[i] == port)
            return true;
    return false;
}

static bool name_in(const eg_rule_t *r, const char *name)
{
    for (size_t i = 0; name && i < r->n_fqdns; i++)
        if (eg_name_matches(r->fqdns[i], name))
            return true;
    return false;
}

static bool cidr_in(const eg_rule_t *r, const struct sockaddr_storage *addr)
{
    for (size_t i = 0; addr && i < r->n_cidrs; i++)
        if (cidr_contains(&r->cidrs[i], addr))
            return true;
    return false;
}

bool eg_policy_decide(const eg_policy_t *p, const char *name, const struct sockaddr_storage *addr,
                      uint16_t port, const char **rule, bool *by_name)
{
    *rule = NULL;
    *by_name = false;
    bool ula = addr && eg_addr_ula(addr);
    for (size_t i = 0; i < p->n_rules; i++) {
        const eg_rule_t *r = &p->rules[i];
        if (!port_matches(r, port))
            continue;
        /* a rule without CIDRs allows no unique local IPv6 address (the
         * nft chains skip it the same way) */
        bool any = r->n_fqdns == 0 && r->n_cidrs == 0 && !(r->allow && ula);
        bool n = name_in(r, name);
        if (any || n || cidr_in(r, addr)) {
            *rule = r->name;
            *by_name = n;
            return r->allow;
        }
    }
    return p->default_allow && !ula;
}

bool eg_policy_name_allowed(const eg_policy_t *p, const char *name, const char **rule)
{
    *rule = NULL;
    for (size_t i = 0; i < p->n_rules; i++) {
        const eg_rule_t *r = &p->rules[i];
        if (name_in(r, name)) {
            *rule = r->name;
            return r->allow;
        }
    }
    return false;
}

bool eg_policy_cidr_allows(const eg_policy_t *p, const struct sockaddr_storage *addr)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].allow && cidr_in(&p->rules[i], addr))
            return true;
    return false;
}

static bool in4(uint32_t a, const char *net, unsigned bits)
{
    struct in_addr n;
    inet_pton(AF_INET, net, &n);
    uint32_t mask = bits ? ~0u << (32 - bits) : 0;
    return (a & mask) == (ntohl(n.s_addr) & mask);
}

/* 64:ff9b::/96 and 64:ff9b:1::/48: IPv4 behind a NAT64.  */
static bool nat64(const struct in6_addr *a)
{
    static const uint8_t wkp[12] = {0, 0x64, 0xff, 0x9b};
    static const uint8_t local[6] = {0, 0x64, 0xff, 0x9b, 0, 1};
    return memcmp(a->s6_addr, wkp, 12) == 0 || memcmp(a->s6_addr, local, 6) == 0;
}

static bool in6(const struct in6_addr *a, const char *net, unsigned bits)
{
    struct in6_addr n;
    inet_pton(AF_INET6, net, &n);
    for (unsigned i = 0; i < bits; i++) {
        uint8_t m = (uint8_t)(0x80u >> (i % 8));
        if ((a->s6_addr[i / 8] & m) != (n.s6_addr[i / 8] & m))
            return false;
    }
    return true;
}

bool eg_addr_ula(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 &&
           (((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr[0] & 0xfe) == 0xfc;
}

bool eg_addr_never(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
        return in4(a, "0.0.0.0", 8) || in4(a, "127.0.0.0", 8) || in4(a, "169.254.0.0", 16) ||
               in4(a, "224.0.0.0", 3) || in4(a, "100.100.100.200", 32);
    }
    if (ss->ss_family != AF_INET6)
        return true;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return in6(a, "::", 96) || in6(a, "::ffff:0:0", 96) || nat64(a) || in6(a, "fe80::", 10) ||
           in6(a, "fec0::", 10) || in6(a, "ff00::", 8) || in6(a, "fd00:ec2::254", 128) ||
           in6(a, "fd5b:d0::", 32);
}

bool eg_addr_private(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
        static const struct {
            const char *net;
            unsigned bits;
        } nets[] = {{"0.0.0.0", 8},    {"10.0.0.0", 8},     {"100.64.0.0", 10},
                    {"127.0.0.0", 8},  {"169.254.0.0", 16}, {"172.16.0.0", 12},
                    {"192.0.0.0", 24}, {"192.168.0.0", 16}, {"198.18.0.0", 15},
                    {"224.0.0.0", 3}};
        for (size_t i = 0; i < ARRAY_SIZE(nets); i++)
            if (in4(a, nets[i].net, nets[i].bits))
                return true;
        return false;
    }
    if (ss->ss_family != AF_INET6)
        return true;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a) || nat64(a)) {
        struct sockaddr_storage v4 = {.ss_family = AF_INET};
        memcpy(&((struct sockaddr_in *)&v4)->sin_addr, &a->s6_addr[12], 4);
        return eg_addr_private(&v4);
    }
    return IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
           IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || (a->s6_addr[0] & 0xfe) == 0xfc;
}
