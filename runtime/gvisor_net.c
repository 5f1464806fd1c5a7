/* gvisor_net.c -- the gvisor driver's network namespaces: each sandbox
 * boots (runsc --network=sandbox) in a namespace of its own that the driver
 * makes and binds at <dir>/netns, so it outlives runsc itself (a
 * checkpoint) and the agent; runsc copies the interfaces it finds there
 * into gVisor's network stack as the sandbox boots, and the runtime's net
 * hook (rt_set_net_hook) puts the egress link in just before that.  */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "runtime/driver.h"

void rt_set_net_hook(rt_runtime_t *rt, rt_net_hook_t hook, void *arg)
{
    rt->net_hook = hook;
    rt->net_hook_arg = arg;
}

static char *netns_path(const rt_sandbox_t *sb)
{
    return xasprintf("%s/netns", sb->dir);
}

static bool is_netns(int fd)
{
    struct statfs st;
    return fstatfs(fd, &st) == 0 && st.f_type == NSFS_MAGIC;
}

bool rt_gv_netns_exists(const rt_sandbox_t *sb)
{
    _cleanup_free_ char *path = netns_path(sb);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd >= 0 && is_netns(fd);
}

struct netns_new {
    int fd, err;
};

/* On a thread of its own: only that thread enters the new namespace, and
 * it ends right after.  runsc skips interfaces that are down, loopback
 * included, and a new namespace's loopback is.  */
static void *netns_new_main(void *arg)
{
    struct netns_new *n = arg;
    if (unshare(CLONE_NEWNET) < 0) {
        n->err = errno;
        return NULL;
    }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {.ifr_name = "lo"};
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        n->err = errno ? errno : EIO;
    ifr.ifr_flags |= IFF_UP;
    if (!n->err && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        n->err = errno;
    if (s >= 0)
        close(s);
    if (!n->err && (n->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
        n->err = errno;
    return NULL;
}

int rt_gv_netns_make(rt_sandbox_t *sb, sbx_error_t *err)
{
    if (rt_gv_netns_exists(sb))
        return 0;
    _cleanup_free_ char *path = netns_path(sb);
    /* A file left by a half-made namespace goes first.  */
    (void)umount2(path, MNT_DETACH);
    (void)unlink(path);
    struct netns_new n = {.fd = -1};
    pthread_t t;
    int rc = pthread_create(&t, NULL, netns_new_main, &n);
    if (rc != 0) {
        errno = rc;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "network namespace thread");
    }
    pthread_join(t, NULL);
    if (n.err) {
        errno = n.err;
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "new network namespace");
    }
    _cleanup_close_ int fd = n.fd;
    _cleanup_close_ int file = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    char src[64];
    snprintf(src, sizeof src, "/proc/self/fd/%d", fd);
    if (file < 0 || mount(src, path, NULL, MS_BIND, NULL) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "bind network namespace at %s", path);
        (void)unlink(path);
        return -1;
    }
    return 0;
}

void rt_gv_netns_remove(rt_sandbox_t *sb)
{
    _cleanup_free_ char *path = netns_path(sb);
    while (umount2(path, MNT_DETACH) == 0)
        ;
    if (unlink(path) < 0 && errno != ENOENT)
        sbx_log(SBX_LOG_WARN, "runtime", "sandbox %s: cannot remove %s: %m", sb->id, path);
}

int rt_gv_netns_boot(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    if (!rt->net_hook)
        return 0;
    _cleanup_free_ char *path = netns_path(sb);
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || !is_netns(fd))
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", path);
    if (rt->net_hook(rt->net_hook_arg, sb->id, fd, err) < 0) {
        sbx_error_wrap(err, "the sandbox's network");
        return -1;
    }
    return 0;
}

/* What the host sends (router solicitations at link-up) does not count:
 * a TCP connection of the sandbox's starts with a packet it sends.  */
bool rt_gv_netns_used(const rt_sandbox_t *sb)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/net/dev", (int)sb->init_pid);
    FILE *f = sb->init_pid > 0 ? fopen(path, "re") : NULL;
    if (!f)
        return true;
    char line[512];
    bool used = false;
    for (int n = 0; !used && fgets(line, sizeof line, f); n++) {
        char *colon = strchr(line, ':');
        unsigned long long tx = 0;
        if (n < 2 || !colon)
            continue;
        *colon = '\0';
        const char *name = line + strspn(line, " ");
        if (strcmp(name, "lo") == 0)
            continue;
        used = sscanf(colon + 1, "%*u %*u %*u %*u %*u %*u %*u %*u %*u %llu", &tx) != 1 || tx > 0;
    }
    fclose(f);
    return used;
}
