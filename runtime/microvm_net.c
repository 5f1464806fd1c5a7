/* microvm_net.c -- a microVM's network: a network namespace the driver keeps
 * per sandbox, a tap device in it for the guest's virtio-net card, and the
 * agent's egress link joined to that tap at L2.
 *
 * The namespace is bind-mounted at <dir>/netns, so it outlives QEMU: a
 * suspend, resume, stop or start replaces the QEMU process but keeps the
 * namespace, its link and its rules.  In it, "tap0" is persistent (owned by
 * the sandbox's uid); the driver opens it as root and hands the fd to QEMU
 * (-netdev tap,fd=N), so QEMU, unprivileged, needs neither /dev/net/tun
 * nor CAP_NET_ADMIN.  When the agent links the sandbox (egress/: a veth end
 * "eth0" in the namespace with the sandbox's address), tc mirred redirects
 * every frame arriving on eth0 to tap0 and back, as firecracker's
 * tc-redirect-tap and Kata do, and the guest agent takes eth0's MAC, its
 * address, prefix and default route.  eth0 keeps its address in the
 * namespace, but its frames never reach the namespace's stack (ingress is
 * redirected first), and nothing else runs there but QEMU.  The link
 * record, <dir>/net.json, is what a guest gets again after a boot or a
 * resume.  */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/microvm.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif
#define NETNS_FILE "netns"
#define NET_RECORD "net.json"
#define TAP_IF "tap0"
#define TC_TIMEOUT_MS 5000
/* The first net request loads the guest's virtio-net modules: slow under
 * emulation.  */
#define GUEST_NET_TIMEOUT_MS 30000

static bool is_netns(int fd)
{
    struct statfs s;
    return fd >= 0 && fstatfs(fd, &s) == 0 && s.f_type == NSFS_MAGIC;
}

int mv_netns_open(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt;
    _cleanup_free_ char *path = xasprintf("%s/" NETNS_FILE, sb->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (is_netns(fd))
        return fd;
    if (fd >= 0)
        close(fd);
    return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s has not booted", sb->id);
}

/* ---- work done inside the namespace, on a thread of its own ---- */

typedef struct inside {
    int nsfd;       /* setns into it; -1: unshare a new one */
    const char *mp; /* with nsfd -1: bind-mount the new namespace here */
    uid_t uid;
    int tap_fd;   /* out: tap0, attached */
    char mac[18]; /* out: eth0's MAC and index, when asked for */
    int ifindex;
    bool want_mac;
    sbx_error_t err;
    int rc;
} inside_t;

static int ifflags_up(int s, const char *name, sbx_error_t *err)
{
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "microvm: %s flags", name);
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "microvm: bring %s up", name);
    return 0;
}

/* tap0, made persistent and owned by the sandbox's uid on first use.  */
static int tap_open(inside_t *in)
{
    in->tap_fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (in->tap_fd < 0)
        return sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "microvm: open /dev/net/tun");
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, TAP_IF);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(in->tap_fd, TUNSETIFF, &ifr) < 0 ||
        ioctl(in->tap_fd, TUNSETOWNER, (unsigned long)in->uid) < 0 ||
        ioctl(in->tap_fd, TUNSETPERSIST, 1UL) < 0)
        return sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "microvm: make %s", TAP_IF);
    _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "microvm: socket");
    return ifflags_up(s, TAP_IF, &in->err);
}

static int mac_read(inside_t *in)
{
    _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "eth0");
    if (s < 0 || ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
        return sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "microvm: the link's MAC");
    const unsigned char *m = (const unsigned char *)ifr.ifr_hwaddr.sa_data;
    snprintf(in->mac, sizeof in->mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
             m[5]);
    if (ioctl(s, SIOCGIFINDEX, &ifr) < 0)
        return sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "microvm: the link's index");
    in->ifindex = ifr.ifr_ifindex;
    return 0;
}

static void *inside_run(void *arg)
{
    inside_t *in = arg;
    in->rc = -1;
    if (in->nsfd >= 0) {
        if (setns(in->nsfd, CLONE_NEWNET) < 0) {
            sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "microvm: enter the VM's namespace");
            return NULL;
        }
    } else {
        _cleanup_close_ int fd = open(in->mp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || unshare(CLONE_NEWNET) < 0 ||
            mount("/proc/thread-self/ns/net", in->mp, NULL, MS_BIND, NULL) < 0) {
            sbx_error_errno(&in->err, SBX_ERR_INTERNAL, "microvm: a network namespace at %s",
                            in->mp);
            return NULL;
        }
    }
    if (in->want_mac)
        in->rc = mac_read(in);
    else
        in->rc = tap_open(in);
    return NULL;
}

static int inside(inside_t *in, sbx_error_t *err)
{
    in->tap_fd = -1;
    pthread_t t;
    if (pthread_create(&t, NULL, inside_run, in) != 0)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "microvm: cannot start a thread");
    pthread_join(t, NULL);
    if (in->rc < 0) {
        *err = in->err;
        if (in->tap_fd >= 0)
            close(in->tap_fd);
        in->tap_fd = -1;
    }
    return in->rc;
}

int mv_net_prepare(rt_sandbox_t *sb, int *nsfd, int *tap_fd, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/" NETNS_FILE, sb->dir);
    *nsfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (!is_netns(*nsfd)) {
        if (*nsfd >= 0)
            close(*nsfd);
        (void)umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
        (void)unlink(path);
        inside_t mk = {.nsfd = -1, .mp = path, .uid = sb->host_uid};
        if (inside(&mk, err) < 0)
            return -1;
        *tap_fd = mk.tap_fd;
        *nsfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (is_netns(*nsfd))
            return 0;
        close(*tap_fd);
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "microvm: open %s", path);
    }
    inside_t in = {.nsfd = *nsfd, .uid = sb->host_uid};
    if (inside(&in, err) < 0) {
        close(*nsfd);
        return -1;
    }
    *tap_fd = in.tap_fd;
    return 0;
}

void mv_net_remove(rt_sandbox_t *sb)
{
    _cleanup_free_ char *path = xasprintf("%s/" NETNS_FILE, sb->dir);
    /* The namespace goes with its last reference: the tap, and the veth
     * pair whose end is in it.  */
    (void)umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
    (void)unlink(path);
}

/* ---- joining the link and the tap ---- */

/* tc, in the namespace, fed `script` (a -batch); with `must`, a failure
 * is an error.  */
static int tc_batch(int nsfd, const char *script, bool must, sbx_error_t *err)
{
    int in[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "pipe");
    int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    char *argv[] = {"tc", must ? "-batch" : "-force", must ? "-" : "-batch", must ? NULL : "-",
                    NULL};
    pid_t pid = fork();
    if (pid == 0) {
        /* Only system calls: the agent has other threads.  */
        if (syscall(SYS_setns, nsfd, CLONE_NEWNET) < 0 || dup2(in[0], 0) < 0 ||
            dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0)
            _exit(126);
        execve("/usr/sbin/tc", argv, envp);
        execve("/sbin/tc", argv, envp);
        _exit(127);
    }
    close(in[0]);
    if (null_fd >= 0)
        close(null_fd);
    if (pid < 0) {
        close(in[1]);
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "fork");
    }
    size_t len = strlen(script);
    bool wrote = write(in[1], script, len) == (ssize_t)len;
    close(in[1]);
    int status = 0;
    int64_t deadline = sbx_monotonic_ms() + TC_TIMEOUT_MS;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && sbx_monotonic_ms() < deadline)
        usleep(1000);
    if (r == 0) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
    }
    if (!must)
        return 0;
    if (r == pid && wrote && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    return sbx_error_set(
        err, SBX_ERR_INTERNAL, "microvm: tc could not join the link to the VM's tap (%s)",
        r == 0                                            ? "timed out"
        : WIFEXITED(status) && WEXITSTATUS(status) == 127 ? "tc not found: install iproute2"
                                                          : "failed");
}

/* Every frame eth0 receives leaves through tap0 to the guest, and every
 * frame the guest sends leaves through eth0: L2, both ways.  Done again
 * for each link (a new veth is a new eth0) and each update, from empty.  */
static int redirect(int nsfd, sbx_error_t *err)
{
    static const char clear[] = "qdisc del dev eth0 ingress\n"
                                "qdisc del dev " TAP_IF " ingress\n";
    static const char join[] =
        "qdisc add dev eth0 ingress\n"
        "filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 "
        "action mirred egress redirect dev " TAP_IF "\n"
        "qdisc add dev " TAP_IF " ingress\n"
        "filter add dev " TAP_IF " parent ffff: protocol all u32 match u32 0 0 "
        "action mirred egress redirect dev eth0\n";
    (void)tc_batch(nsfd, clear, false, NULL);
    return tc_batch(nsfd, join, true, err);
}

static json_t *guest_request(const rt_net_link_t *l, const char *mac)
{
    if (!l || !l->present)
        return json_pack("{s:s,s:b}", "op", "net", "up", 0);
    return json_pack("{s:s,s:b,s:s,s:s,s:i,s:s}", "op", "net", "up", 1, "mac", mac, "address",
                     l->address, "prefix", (int)l->prefix, "gateway", l->gateway);
}

static bool vm_running(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    struct pollfd p = {.fd = sb->init_pidfd, .events = POLLIN};
    return sb->init_pidfd >= 0 && poll(&p, 1, 0) == 0 && !rt_cg_is_frozen(&rt->cg, sb->id);
}

/* Tell the running guest what its link is: 1 told, 0 not running (it is
 * told at its next boot or resume).  The guest agent answers one request
 * at a time: behind a long exec, this waits for it.  */
static int guest_tell(rt_runtime_t *rt, rt_sandbox_t *sb, json_t *req, sbx_error_t *err)
{
    if (!vm_running(rt, sb))
        return 0;
    _cleanup_close_ int dirfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", sb->dir);
    json_t *reply = NULL;
    if (mv_agent_call(dirfd, req, 4096, sbx_monotonic_ms() + GUEST_NET_TIMEOUT_MS, &reply, err) < 0)
        return -1;
    int rc =
        json_is_true(json_object_get(reply, "ok")) ? 1 : mv_agent_error(reply, "net", "eth0", err);
    json_decref(reply);
    return rc;
}

/* <dir>/net.json: {"req": what the guest is to have, "ifindex": eth0's
 * in the namespace when the redirect was made, "told": the guest has it}.  */
static json_t *record_load(rt_sandbox_t *sb)
{
    _cleanup_free_ char *path = xasprintf("%s/" NET_RECORD, sb->dir);
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    if (sbx_read_file(path, &text, &len, NULL) < 0)
        return NULL;
    json_t *j = json_loadb(text, len, 0, NULL);
    if (!json_is_object(json_object_get(j, "req"))) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int record_save(rt_sandbox_t *sb, json_t *req, int ifindex, bool told, sbx_error_t *err)
{
    json_t *j = json_pack("{s:O,s:i,s:b}", "req", req, "ifindex", ifindex, "told", told);
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    _cleanup_free_ char *path = xasprintf("%s/" NET_RECORD, sb->dir);
    return text ? sbx_write_file_atomic(path, text, strlen(text), 0600, err) : -1;
}

/* Only a new link, a changed one or one gone needs the redirect and the
 * guest: a change of rules alone (egress/, on the host) costs nothing
 * here.  */
int mv_net_changed(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_net_link_t *link, sbx_error_t *err)
{
    bool up = link && link->present;
    if (up && (link->prefix > 32 || strspn(link->address, "0123456789.") != strlen(link->address) ||
               strspn(link->gateway, "0123456789.") != strlen(link->gateway)))
        return sbx_error_set(err, SBX_ERR_INVALID, "microvm: a bad link address");
    inside_t in = {.want_mac = true};
    _cleanup_close_ int nsfd = -1;
    if (up) {
        nsfd = mv_netns_open(rt, sb, err);
        in.nsfd = nsfd;
        if (nsfd < 0 || inside(&in, err) < 0)
            return -1;
    }
    json_t *req = guest_request(link, in.mac);
    json_t *old = record_load(sb);
    bool same = old && json_equal(json_object_get(old, "req"), req) &&
                json_integer_value(json_object_get(old, "ifindex")) == in.ifindex &&
                json_is_true(json_object_get(old, "told"));
    json_decref(old);
    int rc = 0;
    if (!same && up)
        rc = redirect(nsfd, err);
    int told = rc == 0 && !same ? guest_tell(rt, sb, req, err) : 1;
    if (rc == 0 && !same)
        rc = record_save(sb, req, in.ifindex, told == 1, err) < 0 || told < 0 ? -1 : 0;
    json_decref(req);
    return rc;
}

void mv_net_boot(rt_runtime_t *rt, rt_sandbox_t *sb, bool fresh)
{
    json_t *rec = record_load(sb);
    if (!rec)
        return;
    json_t *req = json_object_get(rec, "req");
    bool up = json_is_true(json_object_get(req, "up"));
    int ifindex = (int)json_integer_value(json_object_get(rec, "ifindex"));
    sbx_error_t err = {0};
    /* A new guest knows nothing, and without a link needs no word (its
     * card stays without a driver); a restored one knows what it was told
     * before its snapshot.  */
    if (fresh && !up) {
        (void)record_save(sb, req, ifindex, true, &err);
    } else if (fresh || !json_is_true(json_object_get(rec, "told"))) {
        int told = guest_tell(rt, sb, req, &err);
        if (told < 0)
            sbx_log(SBX_LOG_WARN, "runtime", "sandbox %s: its guest did not take its link: %s",
                    sb->id, err.msg);
        (void)record_save(sb, req, ifindex, told == 1, &err);
    }
    json_decref(rec);
}
