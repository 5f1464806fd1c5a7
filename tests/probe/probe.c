/* probe.c -- a static program the runtime tests run inside sandboxes; each
 * subcommand tries something and prints what it saw as one JSON object.
 *
 *   info                 pids, hostname, ids, capabilities, seccomp,
 *                        no_new_privs, network interfaces, cgroup
 *   syscalls             tries each dangerous call; {"name": errno, ...}
 *   read PATH            can it read PATH (and what)
 *   write PATH           can it create/write PATH
 *   kill PID SIG         kill(PID, SIG)
 *   ptrace PID           PTRACE_ATTACH to PID
 *   memhog MIB           allocate and touch MIB MiB, 1 MiB at a time
 *   forkbomb SECONDS     fork as fast as it can; children sleep forever
 *   spin SECONDS         burn CPU
 *   touchmany DIR N      create N empty files f0..f<N-1> in DIR
 *   ptys                 open /dev/ptmx until it fails; how many it got
 *   abi                  x32 and i386 (int 0x80) system calls: the
 *                        signal that ended a child trying each
 *   fds                  where its cwd, root and every open fd lead
 *   mounts               /proc/self/mountinfo, /proc/mounts, /proc/cmdline
 *                        and /proc/kcore, whole
 *   fill PATH MIB        write MIB MiB of zeros to PATH, 1 MiB at a time,
 *                        until done or an error
 *
 * Exit status 0 unless the arguments are wrong.  */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void status_field(const char *name, char *out, size_t len)
{
    out[0] = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    char line[256];
    size_t nl = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
            char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(out, len, "%s", v);
            break;
        }
    }
    fclose(f);
}

static int cmd_info(void)
{
    printf("{\"pid\":%d,\"pids\":[", (int)getpid());
    DIR *d = opendir("/proc");
    int first = 1;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        printf("%s%s", first ? "" : ",", de->d_name);
        first = 0;
    }
    if (d)
        closedir(d);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    printf("],\"hostname\":");
    json_str(host);
    printf(",\"uid\":%d,\"euid\":%d,\"gid\":%d", (int)getuid(), (int)geteuid(), (int)getgid());
    const char *fields[] = {"CapEff", "CapPrm",     "CapBnd",  "CapInh",
                            "CapAmb", "NoNewPrivs", "Seccomp", "Groups"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        char v[128];
        status_field(fields[i], v, sizeof v);
        printf(",\"%s\":", fields[i]);
        json_str(v);
    }
    printf(",\"ifaces\":[");
    struct if_nameindex *ifs = if_nameindex();
    for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
        printf("%s", i == ifs ? "" : ",");
        json_str(i->if_name);
    }
    if (ifs)
        if_freenameindex(ifs);
    printf("],\"lo_up\":%s", (if_nametoindex("lo") ? "true" : "false"));
    char cg[512] = "";
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        size_t n = fread(cg, 1, sizeof cg - 1, f);
        cg[n] = 0;
        fclose(f);
    }
    printf(",\"cgroup\":");
    json_str(cg);
    printf("}\n");
    return 0;
}

#define TRY(name, call)                                                                            \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long)(call);                                                                    \
        printf("%s\"%s\":%d", first ? "" : ",", name, r_ < 0 ? errno : 0);                         \
        first = 0;                                                                                 \
    } while (0)

static int cmd_syscalls(void)
{
    int first = 1;
    mkdir("/tmp/probe-mnt", 0755);
    printf("{");
    TRY("mount", mount("none", "/tmp/probe-mnt", "tmpfs", 0, NULL));
    TRY("mount_proc", mount("proc", "/tmp/probe-mnt", "proc", 0, NULL));
    TRY("umount", umount2("/proc", MNT_DETACH));
    TRY("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp/probe-mnt"));
    TRY("chroot", chroot("/tmp"));
    TRY("ptrace_pid1", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
    TRY("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    TRY("init_module", syscall(SYS_init_module, "", 0, ""));
    TRY("finit_module", syscall(SYS_finit_module, 0, "", 0));
    TRY("delete_module", syscall(SYS_delete_module, "ext4", 0));
    TRY("bpf", syscall(SYS_bpf, 0, NULL, 0));
    TRY("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, -1, 0));
    TRY("add_key", syscall(SYS_add_key, "user", "x", "y", 1, -1));
    TRY("unshare_user", unshare(CLONE_NEWUSER));
    TRY("unshare_net", unshare(CLONE_NEWNET));
    TRY("clone_newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, 0));
    TRY("setns", setns(0, 0));
    TRY("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    TRY("userfaultfd", syscall(SYS_userfaultfd, 0));
    TRY("open_by_handle_at", syscall(SYS_open_by_handle_at, 0, NULL, 0));
    TRY("swapon", swapon("/tmp/x", 0));
    TRY("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    TRY("acct", acct("/tmp/x"));
    TRY("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    TRY("sethostname_ns", sethostname("x", 1));
    TRY("mknod", mknod("/tmp/probe-null", S_IFCHR | 0666, makedev(1, 3)));
    TRY("socket_vsock", socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
    /* The kernel reads an int: high bits must not get past the filter.  */
    TRY("socket_vsock_high", syscall(SYS_socket, (long)AF_VSOCK | (1L << 32), SOCK_STREAM, 0));
    TRY("setuid_host_root", setuid(65534) < 0 ? -1 : setuid(0));
    printf("}\n");
    return 0;
}

static int cmd_read(const char *path)
{
    char buf[4096];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("{\"ok\":false,\"errno\":%d}\n", errno);
        return 0;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) {
        printf("{\"ok\":false,\"errno\":%d}\n", errno);
        return 0;
    }
    buf[n] = 0;
    printf("{\"ok\":true,\"data\":");
    json_str(buf);
    printf("}\n");
    return 0;
}

static int cmd_write(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "probe\n", 6) != 6) {
        printf("{\"ok\":false,\"errno\":%d}\n", errno);
        return 0;
    }
    close(fd);
    printf("{\"ok\":true}\n");
    return 0;
}

static int cmd_kill(pid_t pid, int sig)
{
    int r = kill(pid, sig);
    printf("{\"ok\":%s,\"errno\":%d}\n", r == 0 ? "true" : "false", r == 0 ? 0 : errno);
    return 0;
}

static int cmd_ptrace(pid_t pid)
{
    long r = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
    printf("{\"ok\":%s,\"errno\":%d}\n", r == 0 ? "true" : "false", r == 0 ? 0 : errno);
    return 0;
}

static int cmd_memhog(long mib)
{
    long got = 0;
    for (; got < mib; got++) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        memset(p, 1, 1 << 20);
    }
    printf("{\"allocated_mib\":%ld}\n", got);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmd_forkbomb(double seconds)
{
    double end = now_s() + seconds;
    long forks = 0, failures = 0;
    int last_errno = 0;
    while (now_s() < end) {
        pid_t p = fork();
        if (p == 0) {
            for (;;)
                pause();
        }
        if (p < 0) {
            failures++;
            last_errno = errno;
        } else {
            forks++;
        }
    }
    printf("{\"forks\":%ld,\"failures\":%ld,\"errno\":%d}\n", forks, failures, last_errno);
    fflush(stdout);
    return 0;
}

static int cmd_touchmany(const char *dir, long n)
{
    long made = 0;
    char name[64];
    for (; made < n; made++) {
        snprintf(name, sizeof name, "%s/f%ld", dir, made);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            break;
        close(fd);
    }
    printf("{\"made\":%ld}\n", made);
    return 0;
}

static int cmd_ptys(void)
{
    long n = 0;
    int fd;
    while (n < 100000 && (fd = open("/dev/ptmx", O_RDWR | O_NOCTTY)) >= 0)
        n++;
    printf("{\"opened\":%ld,\"errno\":%d}\n", n, errno);
    return 0;
}

static int cmd_spin(double seconds)
{
    double end = now_s() + seconds;
    volatile unsigned long x = 0;
    while (now_s() < end)
        x++;
    printf("{\"spun\":true}\n");
    return 0;
}

/* Run one system call of another ABI in a child; the signal it died of
 * (0 when it survived).  */
static int other_abi(int which)
{
    pid_t p = fork();
    if (p == 0) {
        long r;
        if (which == 0) {
            r = syscall(0x40000000L | SYS_getpid);
        } else {
            __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
        }
        _exit(r < 0 ? 1 : 0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static int cmd_abi(void)
{
    printf("{\"x32\":%d,\"i386\":%d}\n", other_abi(0), other_abi(1));
    return 0;
}

static void link_field(const char *name, const char *path)
{
    char target[4096];
    ssize_t n = readlink(path, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = 0;
    printf("\"%s\":", name);
    json_str(n < 0 ? "?" : target);
}

static int cmd_fds(void)
{
    printf("{");
    link_field("cwd", "/proc/self/cwd");
    printf(",");
    link_field("root", "/proc/self/root");
    printf(",\"fds\":{");
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int first = 1;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
        printf("%s", first ? "" : ",");
        first = 0;
        link_field(de->d_name, path);
    }
    if (d)
        closedir(d);
    printf("}}\n");
    return 0;
}

static void file_field(const char *name, const char *path)
{
    static char buf[1 << 20];
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    while (fd >= 0 && len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = 0;
    printf("\"%s\":", name);
    json_str(buf);
    printf(",\"%s_errno\":%d", name, fd < 0 || n < 0 ? errno : 0);
    if (fd >= 0)
        close(fd);
}

static int cmd_mounts(void)
{
    printf("{");
    file_field("mountinfo", "/proc/self/mountinfo");
    printf(",");
    file_field("mounts", "/proc/mounts");
    printf(",");
    file_field("cmdline", "/proc/cmdline");
    printf(",");
    file_field("kcore", "/proc/kcore");
    printf("}\n");
    return 0;
}

static int cmd_fill(const char *path, long mib)
{
    static char chunk[1 << 20];
    long done = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    while (fd >= 0 && done < mib && write(fd, chunk, sizeof chunk) == (ssize_t)sizeof chunk)
        done++;
    printf("{\"written_mib\":%ld,\"errno\":%d}\n", done, done < mib ? errno : 0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *c = argv[1];
    if (!strcmp(c, "info"))
        return cmd_info();
    if (!strcmp(c, "syscalls"))
        return cmd_syscalls();
    if (!strcmp(c, "read") && argc == 3)
        return cmd_read(argv[2]);
    if (!strcmp(c, "write") && argc == 3)
        return cmd_write(argv[2]);
    if (!strcmp(c, "kill") && argc == 4)
        return cmd_kill((pid_t)atoi(argv[2]), atoi(argv[3]));
    if (!strcmp(c, "ptrace") && argc == 3)
        return cmd_ptrace((pid_t)atoi(argv[2]));
    if (!strcmp(c, "memhog") && argc == 3)
        return cmd_memhog(atol(argv[2]));
    if (!strcmp(c, "forkbomb") && argc == 3)
        return cmd_forkbomb(atof(argv[2]));
    if (!strcmp(c, "abi"))
        return cmd_abi();
    if (!strcmp(c, "touchmany") && argc == 4)
        return cmd_touchmany(argv[2], atol(argv[3]));
    if (!strcmp(c, "ptys"))
        return cmd_ptys();
    if (!strcmp(c, "spin") && argc == 3)
        return cmd_spin(atof(argv[2]));
    if (!strcmp(c, "fds"))
        return cmd_fds();
    if (!strcmp(c, "mounts"))
        return cmd_mounts();
    if (!strcmp(c, "fill") && argc == 4)
        return cmd_fill(argv[2], atol(argv[3]));
    fprintf(stderr, "probe: unknown command\n");
    return 2;
}
