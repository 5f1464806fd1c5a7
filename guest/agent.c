/* agent.c -- the guest agent of a microVM sandbox: pid 1 of the guest, started
 * from the initramfs.  It loads the few virtio modules the guest kernel has as
 * modules, mounts the image disk (read-only ext4) under the sandbox's own disk
 * (ext4, the overlay's upper layer) at /newroot, and answers the host agent
 * over the virtio-serial port "sbx.agent": frames of a 4-byte big-endian
 * length and a JSON object, one request and one reply at a time (health,
 * exec, read, write, list, stat, delete, sync, net).  Commands run chrooted in
 * /newroot; file paths resolve inside it (openat2 RESOLVE_IN_ROOT).
 *
 * The host trusts nothing this program says (the guest's root can replace
 * it); this program trusts the host.  Static, so the initramfs holds only it
 * and the modules.  */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/openat2.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROOT "/newroot"
#define PORT_NAME "sbx.agent"
#define FRAME_MAX (48u << 20)
#define FILE_MAX (32u << 20)
#define OUT_CAP_MAX (16u << 20)
#define LIST_MAX 100000
#define DEVICE_WAIT_MS 30000
#define GRACE_AFTER_EXIT_MS 200

extern char **environ;
static int root_fd = -1;

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    fprintf(stderr, "sbx-guest [%lld ms]: ", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- base64 ------------------------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const unsigned char *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    if (!out)
        return NULL;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64chars[v >> 18];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = b64chars[(v >> 6) & 63];
        *o++ = b64chars[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = b64chars[v >> 18];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = 0;
    return out;
}

static int b64_val(char c)
{
    const char *p = c ? strchr(b64chars, c) : NULL;
    return p ? (int)(p - b64chars) : -1;
}

/* NULL on bad input.  */
static unsigned char *b64_decode(const char *in, size_t *len)
{
    size_t n = strlen(in);
    if (n % 4)
        return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; out && i < n; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++)
            v[j] = in[i + j] == '=' && i + 4 == n && j >= 2 ? 0 : b64_val(in[i + j]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0 ||
            (in[i + 2] == '=' && in[i + 3] != '=')) {
            free(out);
            return NULL;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[k++] = (unsigned char)(w >> 16);
        if (in[i + 2] != '=')
            out[k++] = (unsigned char)(w >> 8);
        if (in[i + 3] != '=')
            out[k++] = (unsigned char)w;
    }
    *len = k;
    return out;
}

/* ---- boot: modules, devices, mounts -------------------------------------- */

/* virtio_mmio.device=... and the like: the kernel keeps module parameters
 * of its command line for modprobe, which we do not have.  */
static char *module_params(const char *mod)
{
    static char cmdline[4096];
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof cmdline - 1) : -1;
    if (fd >= 0)
        close(fd);
    cmdline[n > 0 ? n : 0] = 0;
    char *out = calloc(1, sizeof cmdline), *save = NULL;
    size_t len = strlen(mod), k = 0;
    char copy[sizeof cmdline];
    strcpy(copy, cmdline);
    for (char *t = strtok_r(copy, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
        if (strncmp(t, mod, len) == 0 && t[len] == '.')
            k += (size_t)snprintf(out + k, sizeof cmdline - k, "%s%s", k ? " " : "", t + len + 1);
    return out;
}

static void modules_load(const char *list)
{
    FILE *f = fopen(list, "re");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0])
            continue;
        char path[300], mod[256];
        snprintf(path, sizeof path, "/lib/modules/%s", line);
        snprintf(mod, sizeof mod, "%s", line);
        char *dot = strstr(mod, ".ko");
        if (dot)
            *dot = 0;
        char *params = module_params(mod);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || syscall(SYS_finit_module, fd, params ? params : "", 0) < 0)
            if (errno != EEXIST)
                say("module %s: %s", line, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(params);
    }
    if (f)
        fclose(f);
}

static bool read_line(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return false;
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    return true;
}

/* /dev/<name> of the device in sysfs class dir `cls` whose attribute `attr`
 * says `want`.  */
static bool find_dev(const char *cls, const char *attr, const char *want, char *out, size_t len)
{
    DIR *d = opendir(cls);
    struct dirent *de;
    bool found = false;
    while (d && !found && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char p[512], v[128];
        snprintf(p, sizeof p, "%s/%s/%s", cls, de->d_name, attr);
        if (read_line(p, v, sizeof v) && strcmp(v, want) == 0) {
            snprintf(out, len, "/dev/%s", de->d_name);
            found = access(out, F_OK) == 0;
        }
    }
    if (d)
        closedir(d);
    return found;
}

static bool wait_dev(const char *cls, const char *attr, const char *want, char *out, size_t len,
                     int64_t deadline)
{
    while (!find_dev(cls, attr, want, out, len)) {
        if (now_ms() > deadline)
            return false;
        sleep_ms(10);
    }
    return true;
}

static void mkdirs(const char *path)
{
    char p[512];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            (void)mkdir(p, 0755);
            *s = '/';
        }
    (void)mkdir(p, 0755);
}

static void mount_or_say(const char *src, const char *dst, const char *type, unsigned long flags,
                         const char *data)
{
    mkdirs(dst);
    if (mount(src, dst, type, flags, data) < 0)
        say("mount %s on %s: %s", type, dst, strerror(errno));
}

static void loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        (void)ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    if (s >= 0)
        close(s);
}

static void hostname_set(void)
{
    char *h = module_params("sbx");
    char *p = h ? strstr(h, "hostname=") : NULL;
    if (p) {
        p += 9;
        p[strcspn(p, " ")] = 0;
        (void)sethostname(p, strlen(p));
    }
    free(h);
}

/* Returns the port's fd, or -1 (then the guest powers off).  */
static int boot(void)
{
    mount_or_say("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_or_say("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_or_say("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL);
    modules_load("/modules.list");
    say("modules loaded");
    int64_t deadline = now_ms() + DEVICE_WAIT_MS;
    char rootdev[300], diskdev[300], port[300];
    if (!wait_dev("/sys/class/virtio-ports", "name", PORT_NAME, port, sizeof port, deadline)) {
        say("no virtio port %s", PORT_NAME);
        return -1;
    }
    if (!wait_dev("/sys/block", "serial", "sbxroot", rootdev, sizeof rootdev, deadline)) {
        say("no root disk");
        return -1;
    }
    mount_or_say(rootdev, "/lower", "ext4", MS_RDONLY, "noload");
    if (wait_dev("/sys/block", "serial", "sbxdisk", diskdev, sizeof diskdev, now_ms() + 1000))
        /* No background zeroing of inode tables: CPU an emulated guest
         * lacks at boot.  */
        mount_or_say(diskdev, "/upper", "ext4", MS_NOSUID | MS_NODEV, "noinit_itable");
    else
        mount_or_say("tmpfs", "/upper", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    mkdirs("/upper/upper");
    mkdirs("/upper/work");
    mkdirs(ROOT);
    if (mount("overlay", ROOT, "overlay", 0,
              "lowerdir=/lower,upperdir=/upper/upper,workdir=/upper/work") < 0) {
        say("overlay: %s", strerror(errno));
        return -1;
    }
    mount_or_say("proc", ROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_or_say("sysfs", ROOT "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
    mount_or_say("devtmpfs", ROOT "/dev", "devtmpfs", MS_NOSUID, NULL);
    mount_or_say("devpts", ROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666");
    mount_or_say("tmpfs", ROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    root_fd = open(ROOT, O_PATH | O_DIRECTORY | O_CLOEXEC);
    loopback_up();
    hostname_set();
    return open(port, O_RDWR | O_CLOEXEC);
}

/* ---- frames -------------------------------------------------------------- */

static bool read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno != EAGAIN)
            return false;
        if (r <= 0) {
            /* The host is not connected (the host agent connects for each
             * request).  A port without its host reads 0 and polls
             * readable (virtio_console), so nothing can wait for the
             * connection: look again shortly.  Idle, that is 50 cheap
             * wakeups a second; a request waits at most 20 ms more.  */
            sleep_ms(20);
            continue;
        }
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static void write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void reply(int port, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text)
        return;
    size_t n = strlen(text);
    unsigned char hdr[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    write_full(port, hdr, 4);
    write_full(port, text, n);
    free(text);
}

static json_t *fail(int err, const char *what)
{
    return json_pack("{s:b,s:i,s:s}", "ok", 0, "errno", err, "error", what);
}

/* ---- files ----------------------------------------------------------------- */

static int resolve(const char *path, int flags, mode_t mode)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & O_CREAT) ? mode : 0,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    for (int tries = 0; tries < 16; tries++) {
        int fd = (int)syscall(SYS_openat2, root_fd, path, &how, sizeof how);
        if (fd >= 0 || errno != EAGAIN)
            return fd;
    }
    return -1;
}

static json_t *entry(const char *name, const struct stat *st)
{
    const char *type = S_ISREG(st->st_mode)   ? "file"
                       : S_ISDIR(st->st_mode) ? "dir"
                       : S_ISLNK(st->st_mode) ? "symlink"
                                              : "other";
    return json_pack("{s:s,s:s,s:I,s:i,s:I}", "name", name, "type", type, "size",
                     (json_int_t)st->st_size, "mode", (int)(st->st_mode & 07777), "mtime_ms",
                     (json_int_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000);
}

static json_t *op_read(json_t *req)
{
    const char *path = json_string_value(json_object_get(req, "path"));
    json_int_t max = json_integer_value(json_object_get(req, "max"));
    if (!path)
        return fail(EINVAL, "no path");
    if (max <= 0 || max > FILE_MAX)
        max = FILE_MAX;
    int fd = resolve(path, O_RDONLY | O_NONBLOCK, 0);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(e, "open");
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "not a regular file");
    }
    if (st.st_size > max) {
        close(fd);
        return fail(EFBIG, "too large");
    }
    unsigned char *buf = malloc((size_t)max + 1);
    size_t n = 0;
    ssize_t r;
    while (buf && n <= (size_t)max && (r = read(fd, buf + n, (size_t)max + 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    if (n > (size_t)max) {
        free(buf);
        return fail(EFBIG, "too large");
    }
    char *b = buf ? b64_encode(buf, n) : NULL;
    free(buf);
    json_t *out = json_pack("{s:b,s:s}", "ok", 1, "data", b ? b : "");
    free(b);
    return out;
}

/* The directory of path (created with its parents when missing), and the
 * last component in *base.  */
static int parent_open(const char *path, char *base, size_t blen)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/')
        p[--len] = 0;
    char *slash = strrchr(p, '/');
    const char *b = slash ? slash + 1 : p;
    if (!*b || strcmp(b, ".") == 0 || strcmp(b, "..") == 0) {
        errno = EINVAL;
        return -1;
    }
    snprintf(base, blen, "%s", b);
    if (slash)
        *slash = 0;
    else
        p[0] = 0;
    int dfd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
    char *save = NULL;
    for (char *c = strtok_r(p, "/", &save); c && dfd >= 0; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        /* Resolved from the root each time, so .. and symlinks stay inside.  */
        int next = (int)syscall(SYS_openat2, dfd, c, &how, sizeof how);
        if (next < 0 && errno == ENOENT && mkdirat(dfd, c, 0755) == 0)
            next = (int)syscall(SYS_openat2, dfd, c, &how, sizeof how);
        close(dfd);
        dfd = next;
    }
    return dfd;
}

static json_t *op_write(json_t *req)
{
    const char *path = json_string_value(json_object_get(req, "path"));
    const char *data = json_string_value(json_object_get(req, "data"));
    if (!path || !data)
        return fail(EINVAL, "no path or data");
    size_t n;
    unsigned char *bytes = b64_decode(data, &n);
    if (!bytes)
        return fail(EINVAL, "bad base64");
    char base[4096];
    int dfd = parent_open(path, base, sizeof base);
    if (dfd < 0) {
        int e = errno;
        free(bytes);
        return fail(e, "parent");
    }
    char tmp[64];
    snprintf(tmp, sizeof tmp, ".sbx-upload-%d-%lld", (int)getpid(), (long long)now_ms());
    struct stat old;
    mode_t mode = fstatat(dfd, base, &old, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(old.st_mode)
                      ? old.st_mode & 0777
                      : 0644;
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    int e = 0;
    size_t done = 0;
    while (fd >= 0 && done < n) {
        ssize_t w = write(fd, bytes + done, n - done);
        if (w <= 0) {
            e = w < 0 ? errno : ENOSPC;
            break;
        }
        done += (size_t)w;
    }
    if (fd < 0)
        e = errno;
    else if (!e && fchmod(fd, mode) < 0)
        e = errno;
    if (fd >= 0)
        close(fd);
    if (!e && renameat(dfd, tmp, dfd, base) < 0)
        e = errno;
    if (e)
        (void)unlinkat(dfd, tmp, 0);
    close(dfd);
    free(bytes);
    return e ? fail(e, "write") : json_pack("{s:b,s:I}", "ok", 1, "written", (json_int_t)n);
}

static json_t *op_list(json_t *req)
{
    const char *path = json_string_value(json_object_get(req, "path"));
    if (!path)
        return fail(EINVAL, "no path");
    int fd = resolve(path, O_RDONLY | O_DIRECTORY | O_NONBLOCK, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(e, "list");
    }
    json_t *arr = json_array();
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (json_array_size(arr) >= LIST_MAX) {
            closedir(d);
            json_decref(arr);
            return fail(E2BIG, "too many entries");
        }
        json_array_append_new(arr, entry(de->d_name, &st));
    }
    closedir(d);
    return json_pack("{s:b,s:o}", "ok", 1, "entries", arr);
}

static json_t *op_stat(json_t *req)
{
    const char *path = json_string_value(json_object_get(req, "path"));
    int fd = path ? resolve(path, O_PATH | O_NOFOLLOW, 0) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = path ? errno : EINVAL;
        if (fd >= 0)
            close(fd);
        return fail(e, "stat");
    }
    close(fd);
    const char *slash = strrchr(path, '/');
    return json_pack("{s:b,s:o}", "ok", 1, "entry", entry(slash ? slash + 1 : path, &st));
}

static int remove_at(int at, const char *name, int depth)
{
    if (unlinkat(at, name, 0) == 0)
        return 0;
    if ((errno != EISDIR && errno != EPERM) || depth > 256)
        return -1;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
            remove_at(dirfd(d), de->d_name, depth + 1) < 0 && errno != ENOENT)
            break;
    closedir(d);
    return unlinkat(at, name, AT_REMOVEDIR);
}

static json_t *op_delete(json_t *req)
{
    const char *path = json_string_value(json_object_get(req, "path"));
    if (!path)
        return fail(EINVAL, "no path");
    char p[4096], base[4096];
    snprintf(p, sizeof p, "%s", path);
    char *slash = strrchr(p, '/');
    snprintf(base, sizeof base, "%s", slash ? slash + 1 : p);
    if (slash)
        slash == p ? (void)(p[1] = 0) : (void)(*slash = 0);
    else
        strcpy(p, "/");
    if (!base[0] || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return fail(EINVAL, "names no file");
    int dfd = resolve(p, O_PATH | O_DIRECTORY, 0);
    if (dfd < 0 || remove_at(dfd, base, 0) < 0) {
        int e = errno;
        if (dfd >= 0)
            close(dfd);
        return fail(e, "delete");
    }
    close(dfd);
    return json_pack("{s:b}", "ok", 1);
}

/* ---- exec ------------------------------------------------------------------ */

struct stream {
    int fd;
    unsigned char *data;
    size_t len, cap;
    bool truncated;
};

static void stream_read(struct stream *s)
{
    unsigned char tmp[65536];
    ssize_t n = read(s->fd, tmp, sizeof tmp);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            close(s->fd);
            s->fd = -1;
        }
        return;
    }
    size_t take = (size_t)n < s->cap - s->len ? (size_t)n : s->cap - s->len;
    if (take < (size_t)n)
        s->truncated = true;
    memcpy(s->data + s->len, tmp, take);
    s->len += take;
}

static char **strv(json_t *arr, size_t max)
{
    if (!json_is_array(arr) || json_array_size(arr) > max)
        return NULL;
    char **v = calloc(json_array_size(arr) + 1, sizeof *v);
    for (size_t i = 0; v && i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s) {
            free(v);
            return NULL;
        }
        v[i] = (char *)s;
    }
    return v;
}

/* Who the command runs as: the request's "user" (uid, gid, groups), or
 * root when there is none.  */
typedef struct who {
    bool set;
    uid_t uid;
    gid_t gid;
    gid_t groups[32];
    size_t n_groups;
} who_t;

static bool who_parse(json_t *u, who_t *w)
{
    memset(w, 0, sizeof *w);
    if (!u)
        return true;
    json_t *uid = json_object_get(u, "uid"), *gid = json_object_get(u, "gid");
    json_t *groups = json_object_get(u, "groups");
    if (!json_is_integer(uid) || !json_is_integer(gid) || json_integer_value(uid) < 0 ||
        json_integer_value(gid) < 0 || json_integer_value(uid) > 65535 ||
        json_integer_value(gid) > 65535 || (groups && !json_is_array(groups)) ||
        json_array_size(groups) > 32)
        return false;
    w->set = true;
    w->uid = (uid_t)json_integer_value(uid);
    w->gid = (gid_t)json_integer_value(gid);
    for (size_t i = 0; i < json_array_size(groups); i++) {
        json_int_t g = json_integer_value(json_array_get(groups, i));
        if (g < 0 || g > 65535)
            return false;
        w->groups[w->n_groups++] = (gid_t)g;
    }
    return true;
}

/* In the child: never returns.  Failures go to `report` as {tag, errno}.  */
static void exec_child(int in, int out, int errp, int report, char **argv, char **env,
                       const char *cwd, const who_t *who)
{
    setsid();
    dup2(in, 0);
    dup2(out, 1);
    dup2(errp, 2);
    for (int fd = 3; fd < 1024; fd++)
        if (fd != report)
            close(fd);
    int msg[2] = {'c', 0};
    if (chdir(ROOT) < 0 || chroot(".") < 0 || chdir(cwd) < 0) {
        msg[1] = errno;
        write_full(report, msg, sizeof msg);
        _exit(127);
    }
    if (who->set &&
        (setgroups(who->n_groups, who->groups) < 0 || setresgid(who->gid, who->gid, who->gid) < 0 ||
         setresuid(who->uid, who->uid, who->uid) < 0)) {
        msg[0] = 'e';
        msg[1] = errno;
        write_full(report, msg, sizeof msg);
        _exit(126);
    }
    signal(SIGPIPE, SIG_DFL);
    environ = env;
    execvp(argv[0], argv);
    msg[0] = 'e';
    msg[1] = errno;
    write_full(report, msg, sizeof msg);
    _exit(127);
}

static json_t *exec_reply(struct stream *o, struct stream *e, int status, bool timed_out)
{
    char *ob = b64_encode(o->data, o->len), *eb = b64_encode(e->data, e->len);
    json_t *r = json_pack("{s:b,s:i,s:i,s:b,s:s,s:s,s:b,s:b}", "ok", 1, "exit",
                          WIFEXITED(status) ? WEXITSTATUS(status) : -1, "signal",
                          WIFSIGNALED(status) ? WTERMSIG(status) : 0, "timed_out", timed_out,
                          "stdout", ob ? ob : "", "stderr", eb ? eb : "", "stdout_truncated",
                          o->truncated, "stderr_truncated", e->truncated);
    free(ob);
    free(eb);
    return r;
}

static json_t *op_exec(json_t *req)
{
    char **argv = strv(json_object_get(req, "argv"), 65536);
    char **env = strv(json_object_get(req, "env"), 65536);
    const char *cwd = json_string_value(json_object_get(req, "cwd"));
    const char *in_b64 = json_string_value(json_object_get(req, "stdin"));
    json_int_t timeout = json_integer_value(json_object_get(req, "timeout_ms"));
    json_int_t cap = json_integer_value(json_object_get(req, "cap"));
    size_t in_len = 0;
    unsigned char *in_data = in_b64 ? b64_decode(in_b64, &in_len) : NULL;
    who_t who;
    bool who_ok = who_parse(json_object_get(req, "user"), &who);
    if (!argv || !argv[0] || !env || (in_b64 && !in_data) || !who_ok) {
        free(argv);
        free(env);
        free(in_data);
        return fail(EINVAL, "bad exec request");
    }
    if (cap <= 0 || cap > OUT_CAP_MAX)
        cap = OUT_CAP_MAX;
    if (timeout <= 0)
        timeout = 30000;
    int pin[2], pout[2], perr[2], rep[2];
    if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 ||
        pipe2(rep, O_CLOEXEC) < 0) {
        free(argv);
        free(env);
        free(in_data);
        return fail(errno, "pipe");
    }
    int64_t t0 = now_ms();
    pid_t pid = fork();
    if (pid == 0)
        exec_child(pin[0], pout[1], perr[1], rep[1], argv, env, cwd ? cwd : "/", &who);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    close(rep[1]);
    free(argv);
    free(env);
    int msg[2] = {0, 0};
    ssize_t got = read(rep[0], msg, sizeof msg);
    close(rep[0]);
    if (got == (ssize_t)sizeof msg && msg[0] == 'c') {
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        waitpid(pid, NULL, 0);
        free(in_data);
        return json_pack("{s:b,s:i,s:s,s:b}", "ok", 0, "errno", msg[1], "error", "cwd", "bad_cwd",
                         1);
    }
    struct stream o = {.fd = pout[0], .data = malloc((size_t)cap), .cap = (size_t)cap};
    struct stream e = {.fd = perr[0], .data = malloc((size_t)cap), .cap = (size_t)cap};
    if (got == (ssize_t)sizeof msg && msg[0] == 'e') {
        const char *m = msg[1] == ENOENT ? "No such file or directory" : strerror(msg[1]);
        int len = snprintf((char *)e.data, (size_t)cap, "sandbox: %s\n", m);
        e.len = len > 0 && len < cap ? (size_t)len : 0;
    }
    int in_w = pin[1];
    size_t in_off = 0;
    fcntl(o.fd, F_SETFL, O_NONBLOCK);
    fcntl(e.fd, F_SETFL, O_NONBLOCK);
    fcntl(in_w, F_SETFL, O_NONBLOCK);
    if (!in_data || in_len == 0) {
        close(in_w);
        in_w = -1;
    }
    int status = 0;
    bool ended = false, timed_out = false;
    int64_t ended_at = 0, deadline = t0 + timeout;
    for (;;) {
        int64_t now = now_ms();
        if (!ended && waitpid(pid, &status, WNOHANG) == pid) {
            ended = true;
            ended_at = now;
        }
        if (ended && ((o.fd < 0 && e.fd < 0) || now > ended_at + GRACE_AFTER_EXIT_MS))
            break;
        if (!ended && !timed_out && now >= deadline) {
            timed_out = true;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        struct pollfd pf[3];
        int np = 0, io = -1, ie = -1, ii = -1;
        if (o.fd >= 0) {
            io = np;
            pf[np++] = (struct pollfd){.fd = o.fd, .events = POLLIN};
        }
        if (e.fd >= 0) {
            ie = np;
            pf[np++] = (struct pollfd){.fd = e.fd, .events = POLLIN};
        }
        if (in_w >= 0) {
            ii = np;
            pf[np++] = (struct pollfd){.fd = in_w, .events = POLLOUT};
        }
        (void)poll(pf, (nfds_t)np, 20);
        if (io >= 0 && pf[io].revents)
            stream_read(&o);
        if (ie >= 0 && pf[ie].revents)
            stream_read(&e);
        if (ii >= 0 && pf[ii].revents) {
            ssize_t w = write(in_w, in_data + in_off, in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if ((w < 0 && errno != EAGAIN) || in_off == in_len) {
                close(in_w);
                in_w = -1;
            }
        }
    }
    if (in_w >= 0)
        close(in_w);
    if (o.fd >= 0)
        close(o.fd);
    if (e.fd >= 0)
        close(e.fd);
    free(in_data);
    if (got == (ssize_t)sizeof msg && msg[0] == 'e')
        status = (msg[1] == ENOENT ? 127 : 126) << 8;
    json_t *r = exec_reply(&o, &e, status, timed_out);
    free(o.data);
    free(e.data);
    return r;
}

/* ---- the network card ------------------------------------------------------ */

#define NET_IF "eth0"
#define NET_WAIT_MS 20000

static bool parse_ipv4(const char *s, struct sockaddr *out)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    memset(out, 0, sizeof *out);
    sin->sin_family = AF_INET;
    return s && inet_pton(AF_INET, s, &sin->sin_addr) == 1;
}

static bool parse_mac(const char *s, unsigned char mac[6])
{
    unsigned v[6];
    char end;
    if (!s ||
        sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6)
        return false;
    for (int i = 0; i < 6; i++)
        mac[i] = (unsigned char)v[i];
    return !(mac[0] & 1); /* not multicast */
}

/* The card's driver, loaded on the first request: a boot without a link
 * does not pay for it.  */
static bool net_loaded;

static bool net_card(int64_t deadline)
{
    if (!net_loaded) {
        modules_load("/modules-net.list");
        net_loaded = true;
    }
    while (access("/sys/class/net/" NET_IF, F_OK) != 0) {
        if (now_ms() > deadline)
            return false;
        sleep_ms(10);
    }
    return true;
}

static int ifreq_call(int s, unsigned long req, struct ifreq *ifr)
{
    snprintf(ifr->ifr_name, sizeof ifr->ifr_name, NET_IF);
    return ioctl(s, req, ifr);
}

/* {"up":false}: the card goes down without an address.  {"up":true,
 * "mac","address","prefix","gateway"}: the card takes the host link's MAC
 * and address, with a default route through the gateway; no IPv6 (the
 * host's end has none either).  */
static json_t *op_net(json_t *req)
{
    bool up = json_is_true(json_object_get(req, "up"));
    struct sockaddr addr, gw, mask;
    unsigned char mac[6];
    json_int_t prefix = json_integer_value(json_object_get(req, "prefix"));
    if (up && (!parse_ipv4(json_string_value(json_object_get(req, "address")), &addr) ||
               !parse_ipv4(json_string_value(json_object_get(req, "gateway")), &gw) ||
               !parse_mac(json_string_value(json_object_get(req, "mac")), mac) || prefix < 1 ||
               prefix > 32))
        return fail(EINVAL, "bad link");
    if (!up && !net_loaded) /* a card without a driver is down */
        return json_pack("{s:b}", "ok", 1);
    if (!net_card(now_ms() + NET_WAIT_MS))
        return fail(ENODEV, "no network card");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return fail(errno, "socket");
    int fd = open("/proc/sys/net/ipv6/conf/" NET_IF "/disable_ipv6", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, "1\n", 2);
        close(fd);
    }
    struct ifreq ifr = {0};
    int e = 0;
    /* Down first: its routes go with it.  */
    if (ifreq_call(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags &= ~IFF_UP;
        if (ifreq_call(s, SIOCSIFFLAGS, &ifr) < 0)
            e = errno;
    } else {
        e = errno;
    }
    struct ifreq a = {0};
    a.ifr_addr.sa_family = AF_INET; /* 0.0.0.0: no address */
    if (!e && !up && ifreq_call(s, SIOCSIFADDR, &a) < 0 && errno != EADDRNOTAVAIL)
        e = errno;
    if (!e && up) {
        struct ifreq m = {0};
        m.ifr_hwaddr.sa_family = ARPHRD_ETHER;
        memcpy(m.ifr_hwaddr.sa_data, mac, 6);
        struct sockaddr_in *msk = (struct sockaddr_in *)&mask;
        memset(&mask, 0, sizeof mask);
        msk->sin_family = AF_INET;
        msk->sin_addr.s_addr = htonl(prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix));
        struct ifreq ad = {0}, nm = {0};
        ad.ifr_addr = addr;
        nm.ifr_netmask = mask;
        if (ifreq_call(s, SIOCSIFHWADDR, &m) < 0 || ifreq_call(s, SIOCSIFADDR, &ad) < 0 ||
            ifreq_call(s, SIOCSIFNETMASK, &nm) < 0)
            e = errno;
        ifr.ifr_flags |= IFF_UP;
        if (!e && ifreq_call(s, SIOCSIFFLAGS, &ifr) < 0)
            e = errno;
        struct rtentry rt = {0};
        struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst;
        struct sockaddr_in *gm = (struct sockaddr_in *)&rt.rt_genmask;
        dst->sin_family = AF_INET;
        gm->sin_family = AF_INET;
        rt.rt_gateway = gw;
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        rt.rt_dev = NET_IF;
        if (!e && ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST)
            e = errno;
    }
    close(s);
    if (e)
        return fail(e, "configure " NET_IF);
    say("network %s", up ? "up" : "down");
    return json_pack("{s:b}", "ok", 1);
}

/* ---- the loop ----------------------------------------------------------------- */

static json_t *dispatch(json_t *req)
{
    const char *op = json_string_value(json_object_get(req, "op"));
    if (!op)
        return fail(EINVAL, "no op");
    if (strcmp(op, "health") == 0) {
        char rel[128] = "";
        read_line("/proc/sys/kernel/osrelease", rel, sizeof rel);
        return json_pack("{s:b,s:s}", "ok", 1, "kernel", rel);
    }
    if (strcmp(op, "exec") == 0)
        return op_exec(req);
    if (strcmp(op, "read") == 0)
        return op_read(req);
    if (strcmp(op, "write") == 0)
        return op_write(req);
    if (strcmp(op, "list") == 0)
        return op_list(req);
    if (strcmp(op, "stat") == 0)
        return op_stat(req);
    if (strcmp(op, "delete") == 0)
        return op_delete(req);
    if (strcmp(op, "net") == 0)
        return op_net(req);
    if (strcmp(op, "sync") == 0) {
        sync();
        return json_pack("{s:b}", "ok", 1);
    }
    return fail(EINVAL, "unknown op");
}

static void serve(int port)
{
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) /* orphans come to pid 1 */
            ;
        unsigned char hdr[4];
        if (!read_full(port, hdr, 4))
            return;
        uint32_t n =
            (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (n > FRAME_MAX)
            return;
        char *buf = malloc((size_t)n + 1);
        if (!buf || !read_full(port, buf, n))
            return;
        buf[n] = 0;
        json_t *req = json_loadb(buf, n, 0, NULL);
        free(buf);
        json_t *out = req ? dispatch(req) : fail(EINVAL, "bad json");
        /* The host matches replies to requests by their id.  */
        json_t *id = json_object_get(req, "id");
        if (out && id)
            json_object_set(out, "id", id);
        json_decref(req);
        reply(port, out ? out : fail(ENOMEM, "reply"));
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int port = boot();
    if (port >= 0) {
        say("ready");
        serve(port);
    }
    say("stopping");
    sync();
    reboot(RB_AUTOBOOT); /* QEMU runs with -no-reboot: it exits */
    return 1;
}
