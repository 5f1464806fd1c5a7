/* addr.c -- which addresses are public: what a server that connects where
 * a client says (an image registry, an admission webhook) may reach
 * without an operator's leave.  */
#include "common/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

static bool v4_public(uint32_t a)
{
    static const struct {
        uint32_t net;
        int bits;
    } blocked[] = {
        {0x00000000, 8},  /* "this network", 0.0.0.0 */
        {0x0a000000, 8},  /* private */
        {0x64400000, 10}, /* shared (carrier NAT; some clouds' metadata) */
        {0x7f000000, 8},  /* loopback */
        {0xa9fe0000, 16}, /* link-local, 169.254.169.254 metadata */
        {0xac100000, 12}, /* private */
        {0xc0000000, 24}, /* IETF protocol assignments */
        {0xc0a80000, 16}, /* private */
        {0xc6120000, 15}, /* benchmarking */
        {0xe0000000, 4},  /* multicast */
        {0xf0000000, 4},  /* reserved, broadcast */
    };
    for (size_t i = 0; i < ARRAY_SIZE(blocked); i++)
        if ((a >> (32 - blocked[i].bits)) == (blocked[i].net >> (32 - blocked[i].bits)))
            return false;
    return true;
}

static uint32_t v4_at(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static bool v6_public(const struct in6_addr *a)
{
    const uint8_t *b = a->s6_addr;
    static const uint8_t zero[10] = {0};
    if (memcmp(b, zero, 10) == 0) {
        /* ::, ::1, IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d) */
        if ((b[10] == 0 && b[11] == 0) || (b[10] == 0xff && b[11] == 0xff))
            return v4_public(v4_at(b + 12)); /* :: and ::1 are in 0.0.0.0/8 */
        return false;
    }
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) /* NAT64 64:ff9b::/96 */
        return v4_public(v4_at(b + 12));
    if (b[0] == 0x20 && b[1] == 0x02) /* 6to4 2002:a.b.c.d::/48 */
        return v4_public(v4_at(b + 2));
    if (b[0] == 0x01 && b[1] == 0x00 && !memcmp(b + 2, zero, 6)) /* discard 100::/64 */
        return false;
    return !((b[0] & 0xfe) == 0xfc ||                   /* unique local, fd00:ec2::254 */
             (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || /* link-local */
             (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) || /* site-local (deprecated) */
             b[0] == 0xff);                             /* multicast */
}

bool sbx_addr_public(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_public(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6)
        return v6_public(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return false;
}
