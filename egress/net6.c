/* net6.c -- IPv6 forwarding on the host, for sandbox links that carry
 * IPv6 (net.c gives each end its /127 of the agent's ULA pool).  */
#include "egress/internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static bool sysctl_is(const char *path, char want)
{
    _cleanup_free_ char *cur = NULL;
    size_t len;
    return sbx_read_file(path, &cur, &len, NULL) == 0 && len > 0 && cur[0] == want;
}

static int sysctl_set(const char *path, const char *value)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(value);
    return fd >= 0 && write(fd, value, n) == (ssize_t)n ? 0 : -1;
}

/* With forwarding on, an interface with accept_ra 1 ignores router
 * advertisements, and a host that takes its IPv6 route from them would
 * lose it; 2 keeps taking them (as Docker advises).  */
static void keep_router_advertisements(void)
{
    DIR *d = opendir("/proc/sys/net/ipv6/conf");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, "all") == 0)
            continue;
        _cleanup_free_ char *path = xasprintf("/proc/sys/net/ipv6/conf/%s/accept_ra", de->d_name);
        if (sysctl_is(path, '1') && sysctl_set(path, "2\n") < 0)
            sbx_log(SBX_LOG_WARN, MODULE, "cannot keep router advertisements on %s", de->d_name);
    }
    closedir(d);
}

int eg_ipv6_forwarding_on(sbx_error_t *err)
{
    const char *path = "/proc/sys/net/ipv6/conf/all/forwarding";
    if (sysctl_is(path, '1'))
        return 0;
    sbx_log(SBX_LOG_INFO, MODULE, "turning IPv6 forwarding on for sandbox links");
    keep_router_advertisements();
    if (sysctl_set(path, "1\n") < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "cannot turn IPv6 forwarding on");
    return 0;
}
