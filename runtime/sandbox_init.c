/* sandbox_init.c -- the static program of every process-driver sandbox,
 * in two roles chosen by argv[0]: "sandbox-init", pid 1 of a sandbox,
 * which holds its namespaces open and reaps the orphans reparented to it;
 * and "sandbox-exec", the helper that starts one exec's command inside a
 * running sandbox.
 *
 * Built static and without sanitizers, embedded in the runtime library and
 * started from a sealed memfd, so no file of it needs to exist inside the
 * image.  The init starts already confined (namespaces, no capabilities,
 * seccomp) and takes no input, so it has nothing to trust.
 *
 * The exec helper is what enters a sandbox in place of a copy of the
 * agent: it starts with nothing but the fds listed in sandbox_proto.h (the
 * agent really closed every other one), so whatever the command or the
 * sandbox does, no host fd, host binary or host cwd is within reach.  It
 * runs as host root until the command drops to the sandbox's root.  */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/sandbox_child.h"
#include "runtime/sandbox_proto.h"

static _Noreturn void init_main(void)
{
    /* Not dumpable: processes of the sandbox (same uid) cannot open our
     * /proc/1/mem or attach to us.  */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* Started from a memfd, our name would be its fd number.  */
    prctl(PR_SET_NAME, "sandbox-init", 0, 0, 0);
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        /* Blocked signals stay pending; only SIGCHLD wakes us.  The host
         * ends the sandbox with SIGKILL, which needs no handler.  */
        (void)sigwaitinfo(&chld, NULL);
    }
}

/* ---- the exec helper ------------------------------------------------------ */

struct exec_params {
    int ncg, first_cg, cap_last, flags;
    bool as_user; /* else the sandbox's root */
    uid_t uid;
    gid_t gid;
    size_t ngroups;
    gid_t groups[RT_EXEC_MAX_GROUPS + 1];
    const char *cwd;
    char **cands; /* absolute paths to try for argv[0], NULL-terminated */
    char **argv, **envp;
    struct sock_fprog prog;
};

static struct sock_filter filter[BPF_MAXINSNS];

static void report_to(int fd, int step, int err)
{
    struct rt_report r = {step, err};
    (void)!write(fd, &r, sizeof r);
}

static _Noreturn void fail_to(int fd, int step)
{
    report_to(fd, step, errno);
    _exit(127);
}

static long parse_count(const char *s, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max)
        return -1;
    return v;
}

/* The whole of a (small) memfd, NUL-terminated after its end.  */
static char *read_all(int fd, size_t max, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    if (st.st_size < 0 || (size_t)st.st_size > max) {
        errno = E2BIG;
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return NULL;
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
        if (n <= 0) {
            free(buf);
            errno = n == 0 ? EIO : errno;
            return NULL;
        }
        got += (size_t)n;
    }
    buf[got] = 0;
    *len = got;
    return buf;
}

/* "uid:gid[:group...]" (or "": root) into p.  */
static int parse_user(struct exec_params *p, const char *s)
{
    if (!*s)
        return 0;
    long v[RT_EXEC_MAX_GROUPS + 2];
    size_t n = 0;
    char num[16];
    for (const char *c = s;;) {
        size_t k = strcspn(c, ":");
        if (n == RT_EXEC_MAX_GROUPS + 2 || k == 0 || k >= sizeof num)
            return -1;
        memcpy(num, c, k);
        num[k] = 0;
        if ((v[n++] = parse_count(num, 65535)) < 0)
            return -1;
        if (!c[k])
            break;
        c += k + 1;
    }
    if (n < 2)
        return -1;
    p->as_user = true;
    p->uid = (uid_t)v[0];
    p->gid = (gid_t)v[1];
    /* The primary group is one of the groups too, as login(1) has it.  */
    p->groups[p->ngroups++] = p->gid;
    for (size_t i = 2; i < n; i++)
        p->groups[p->ngroups++] = (gid_t)v[i];
    return 0;
}

/* Cut the params memfd into user, cwd, candidates, argv and environment.  */
static int read_params(struct exec_params *p)
{
    size_t len;
    char *buf = read_all(RT_EXEC_FD_PARAMS, 256u << 20, &len);
    if (!buf)
        return -1;
    if (len == 0 || buf[len - 1] != 0) {
        errno = EINVAL;
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += buf[i] == 0;
    char **strs = calloc(n + 1, sizeof *strs);
    if (!strs)
        return -1;
    for (size_t i = 0, k = 0; i < len; i += strlen(buf + i) + 1)
        strs[k++] = buf + i;
    /* user, then cwd, count, candidates, count, argv, environment...  */
    size_t at = 0;
    long nc, na;
    errno = EINVAL;
    if (n < 4 || parse_user(p, strs[0]) < 0)
        return -1;
    char **s = strs + 1;
    n--;
    if ((nc = parse_count(s[1], (long)n)) < 0 || (size_t)nc + 3 > n)
        return -1;
    p->cwd = s[0];
    at = 2 + (size_t)nc;
    if ((na = parse_count(s[at], (long)n)) < 1 || at + 1 + (size_t)na > n)
        return -1;
    /* Each list gets its NULL by moving the next list one slot on: the
     * count strings in between are no longer needed.  */
    char **all = calloc(n + 3, sizeof *all);
    if (!all)
        return -1;
    size_t k = 0;
    p->cands = all + k;
    for (long i = 0; i < nc; i++)
        all[k++] = s[2 + i];
    all[k++] = NULL;
    p->argv = all + k;
    for (long i = 0; i < na; i++)
        all[k++] = s[at + 1 + i];
    all[k++] = NULL;
    p->envp = all + k;
    for (size_t i = at + 1 + (size_t)na; i < n; i++)
        all[k++] = s[i];
    all[k] = NULL;
    free(strs);
    return 0;
}

static int read_seccomp(struct exec_params *p)
{
    size_t len;
    char *buf = read_all(RT_EXEC_FD_SECCOMP, sizeof filter, &len);
    if (!buf)
        return -1;
    if (len == 0 || len % sizeof *filter) {
        free(buf);
        errno = EINVAL;
        return -1;
    }
    memcpy(filter, buf, len);
    free(buf);
    p->prog.len = (unsigned short)(len / sizeof *filter);
    p->prog.filter = filter;
    return 0;
}

/* Resolve a path of the sandbox from its root, which setns made ours: `..`
 * and absolute symlinks stay inside, and no magic link (/proc/self/fd/N,
 * /proc/self/exe, /proc/N/cwd) is followed.  */
static int open_in_root(int root, const char *path, int flags)
{
    struct open_how how = {
        .flags = (unsigned long long)(flags | O_CLOEXEC),
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

/* The first candidate that is a regular file, as an O_PATH fd; *path
 * names it.  */
static int resolve_command(int root, char **cands, const char **path)
{
    int saved = ENOENT;
    for (char **c = cands; *c; c++) {
        int fd = open_in_root(root, *c, O_PATH);
        if (fd < 0) {
            if (errno != ENOENT && errno != ENOTDIR)
                saved = errno;
            continue;
        }
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            *path = *c;
            return fd;
        }
        saved = EACCES;
        close(fd);
    }
    errno = saved;
    return -1;
}

/* How far the command's process got, in memory shared with the helper:
 * written without allocating, so a sandbox out of memory cannot lose it
 * (a pipe write needs a page charged to the sandbox).  */
struct start_record {
    volatile int failed, err; /* the step that failed and its errno */
    volatile int exec_called;
    volatile int pid; /* the command's pid in the sandbox's pid namespace */
};

static struct start_record *rec;

static _Noreturn void child_fail(int step)
{
    rec->err = errno;
    rec->failed = step;
    _exit(127);
}

/* The command's process, in the sandbox's namespaces; sync is the
 * close-on-exec pipe whose end-of-file tells the helper execve worked or
 * the process died.  */
static _Noreturn void exec_command(const struct exec_params *p, int sync)
{
    /* The command must not hold the agent's report pipe (it could forge
     * an exit status) nor any cgroup file.  */
    close(RT_EXEC_FD_REPORT);
    rec->pid = getpid();
    for (int i = 0; i < p->ncg; i++)
        if (write(p->first_cg + i, "0", 1) != 1)
            child_fail(RT_STEP_CGROUP);
    if (dup3(sync, RT_EXEC_FD_REPORT, O_CLOEXEC) < 0)
        child_fail(RT_STEP_STDIO);
    if (syscall(SYS_close_range, RT_EXEC_FD_REPORT + 1, ~0U, 0) < 0)
        child_fail(RT_STEP_STDIO);
    if (setsid() < 0)
        child_fail(RT_STEP_SETSID);
    /* A terminal: ours, so ^C and job control reach this session.  */
    if ((p->flags & RT_EXEC_F_PTY) && ioctl(0, TIOCSCTTY, 0) < 0)
        child_fail(RT_STEP_SETSID);
    child_reset_signals();
    int step = child_become_root();
    if (step)
        child_fail(step);
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        child_fail(RT_STEP_CWD);
    int cwd = open_in_root(root, p->cwd, O_PATH | O_DIRECTORY);
    if (cwd < 0 || fchdir(cwd) < 0)
        child_fail(RT_STEP_CWD);
    close(cwd);
    if (child_lock_privileges(p->cap_last) < 0)
        child_fail(RT_STEP_CAPS);
    if (p->as_user && syscall(SYS_setgroups, p->ngroups, p->groups) < 0)
        child_fail(RT_STEP_SETGROUPS);
    if (p->as_user && syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
        child_fail(RT_STEP_SETGID);
    if (p->as_user && syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
        child_fail(RT_STEP_SETUID);
    if (child_clear_caps() < 0)
        child_fail(RT_STEP_CAPS);
    const char *path = NULL;
    int fd = resolve_command(root, p->cands, &path);
    if (fd < 0)
        child_fail(RT_STEP_EXEC);
    close(root);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &p->prog, 0, 0) < 0)
        child_fail(RT_STEP_SECCOMP);
    rec->exec_called = 1;
    syscall(SYS_execveat, fd, "", p->argv, p->envp, AT_EMPTY_PATH);
    /* A #! script cannot be run from a close-on-exec fd (the interpreter
     * would need /dev/fd/N); nor can anything when the filter refuses
     * execveat.  Run the path resolved above: this process holds nothing
     * of the host, so even a symlink swapped in meanwhile only reaches
     * the sandbox's own files.  */
    if (errno == ENOENT || errno == EPERM || errno == ENOSYS)
        execve(path, p->argv, p->envp);
    child_fail(RT_STEP_EXEC);
}

/* Wait for the command's execve or death (end-of-file on sync) or the
 * start deadline, and report which.  */
static void await_start(int sync, pid_t pid)
{
    struct pollfd pfd = {.fd = sync, .events = POLLIN};
    if (poll(&pfd, 1, RT_EXEC_START_TIMEOUT_MS) <= 0) {
        kill(pid, SIGKILL);
        report_to(RT_EXEC_FD_REPORT, RT_REPORT_START_TIMEOUT, 0);
    } else if (rec->failed) {
        report_to(RT_EXEC_FD_REPORT, rec->failed, rec->err);
    } else if (rec->exec_called) {
        report_to(RT_EXEC_FD_REPORT, RT_REPORT_STARTED, rec->pid);
    } else {
        report_to(RT_EXEC_FD_REPORT, RT_REPORT_LOST, 0);
    }
}

/* Until the command ends, send it the signals the agent writes to the
 * control pipe: to its process group (it is a session leader), which
 * cannot be another's while we have not reaped the leader.  */
static void relay_signals(int child, pid_t pid)
{
    int ctl = RT_EXEC_FD_CONTROL;
    if (child < 0) {
        close(ctl);
        return;
    }
    for (;;) {
        struct pollfd pfd[2] = {{.fd = child, .events = POLLIN}, {.fd = ctl, .events = POLLIN}};
        if (poll(pfd, ctl >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[0].revents)
            break;
        if (ctl >= 0 && pfd[1].revents) {
            int sig;
            ssize_t n = read(ctl, &sig, sizeof sig);
            if (n <= 0 && (n == 0 || errno != EINTR)) {
                close(ctl); /* the agent is gone or done: no more signals */
                ctl = -1;
            } else if (n == (ssize_t)sizeof sig && sig > 0 && sig < 65) {
                if (kill(-pid, sig) < 0)
                    (void)syscall(SYS_pidfd_send_signal, child, sig, NULL, 0);
            }
        }
    }
    if (ctl >= 0)
        close(ctl);
    close(child);
}

static _Noreturn void exec_main(int argc, char **argv)
{
    /* Host root in the host's namespaces until setns: not dumpable, so
     * nothing but host root can look into us.  */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_NAME, RT_EXEC_ARGV0, 0, 0, 0);
    /* Nothing to handle; SIGPIPE stays blocked so a report to an agent
     * that is gone fails with EPIPE instead of killing us.  */
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    struct exec_params p;
    memset(&p, 0, sizeof p);
    const int rep = RT_EXEC_FD_REPORT;
    long ncg = argc == 5 ? parse_count(argv[1], RT_EXEC_MAX_CG_FDS) : -1;
    long fork_cg = argc == 5 ? parse_count(argv[2], 1) : -1;
    long cap_last = argc == 5 ? parse_count(argv[3], 255) : -1;
    long flags = argc == 5 ? parse_count(argv[4], RT_EXEC_F_PTY) : -1;
    errno = EINVAL;
    if (ncg < 0 || fork_cg < 0 || cap_last < 0 || flags < 0)
        fail_to(rep, RT_STEP_ARGS);
    p.flags = (int)flags;
    p.ncg = (int)ncg;
    p.first_cg = RT_EXEC_FD_FORK_CG + (int)fork_cg;
    p.cap_last = (int)cap_last;
    /* Counted against the sandbox's process limit from here, so the fork
     * below fails once the sandbox is at it.  No memory cgroup: a sandbox
     * that filled its memory cannot stall or OOM-kill the helper, which
     * must outlive its command to reap it.  */
    if (fork_cg) {
        if (write(RT_EXEC_FD_FORK_CG, "0", 1) != 1)
            fail_to(rep, RT_STEP_CGROUP);
        close(RT_EXEC_FD_FORK_CG);
    }
    if (setns(RT_EXEC_FD_INIT, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
                                   CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP) < 0)
        fail_to(rep, RT_STEP_SETNS);
    close(RT_EXEC_FD_INIT);
    if (read_seccomp(&p) < 0 || read_params(&p) < 0)
        fail_to(rep, RT_STEP_ARGS);
    close(RT_EXEC_FD_SECCOMP);
    close(RT_EXEC_FD_PARAMS);
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) < 0)
        fail_to(rep, RT_STEP_FORK);
    rec = mmap(NULL, sizeof *rec, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rec == MAP_FAILED)
        fail_to(rep, RT_STEP_FORK);
    memset((void *)rec, 0, sizeof *rec);
    /* The command is our child, not the agent's: we reap it.  It is born
     * in the sandbox's pid namespace, so when the sandbox's init dies the
     * kernel kills it too.  */
    pid_t pid = fork();
    if (pid < 0)
        fail_to(rep, RT_STEP_FORK);
    if (pid == 0) {
        close(sync[0]);
        exec_command(&p, sync[1]);
    }
    close(sync[1]);
    for (int i = 0; i < p.ncg; i++)
        close(p.first_cg + i);
    /* Not reaped before we wait below, so the pid stays the command's.  */
    int child = (int)syscall(SYS_pidfd_open, pid, 0);
    report_to(rep, RT_REPORT_FORKED, 0);
    await_start(sync[0], pid);
    close(sync[0]);
    relay_signals(child, pid);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    report_to(rep, RT_REPORT_DONE, status);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], RT_EXEC_ARGV0) == 0)
        exec_main(argc, argv);
    /* The kernel resolves a "#!" line's interpreter itself, magic links
     * included, while the command's process still runs this binary: a
     * script starting "#!/proc/self/exe" starts us as a command.  Only
     * the agent makes us a pid 1; anything else gets nothing from us
     * (the exec role fails at setns without privileges).  */
    if (getpid() != 1)
        return 126;
    init_main();
}
