/* listen.c -- the agent's listeners for sandboxes (proxy, resolver): one
 * IPv4 and one IPv6-only socket per service, on ephemeral ports, with no
 * port number bound in both families, so the nft rules that close a
 * listener's port to everything but its redirect never meet another
 * service's socket of the other family on that number.  */
#include "egress/internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#define TRIES 32

static int bound(int family, int type, uint16_t port, uint16_t *got)
{
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss = {.ss_family = (sa_family_t)family};
    socklen_t len = sizeof(struct sockaddr_in);
    if (family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
        len = sizeof(struct sockaddr_in6);
    } else {
        ((struct sockaddr_in *)&ss)->sin_port = htons(port);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    *got = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                    : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

/* A socket of `family` on an ephemeral port whose number nothing of the
 * other family holds.  */
static int unshared(int family, int type, uint16_t *port)
{
    int other = family == AF_INET ? AF_INET6 : AF_INET;
    for (int i = 0; i < TRIES; i++) {
        int fd = bound(family, type, 0, port);
        if (fd < 0)
            return -1;
        uint16_t p;
        int probe = bound(other, type, *port, &p);
        if (probe >= 0 || errno == EAFNOSUPPORT) {
            if (probe >= 0)
                close(probe);
            return fd;
        }
        close(fd);
    }
    errno = EADDRINUSE;
    return -1;
}

int eg_listen_pair(int type, int fds[2], uint16_t ports[2], sbx_error_t *err)
{
    static const int families[2] = {AF_INET, AF_INET6};
    fds[0] = fds[1] = -1;
    ports[0] = ports[1] = 0;
    for (int i = 0; i < 2; i++) {
        fds[i] = unshared(families[i], type, &ports[i]);
        if (fds[i] < 0 && i == 1 && errno == EAFNOSUPPORT)
            break; /* a host without IPv6 */
        if (fds[i] < 0 || (type == SOCK_STREAM && listen(fds[i], 1024) < 0)) {
            sbx_error_errno(err, SBX_ERR_INTERNAL, "a listener for sandboxes");
            for (int k = 0; k <= i; k++)
                if (fds[k] >= 0)
                    close(fds[k]);
            fds[0] = fds[1] = -1;
            return -1;
        }
    }
    return 0;
}
