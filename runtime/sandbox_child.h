/* sandbox_child.h -- the last steps before a sandbox process's execve,
 * shared by the agent's init child (process.c) and the static exec helper
 * (sandbox_init.c): become root of the sandbox's user namespace, reset
 * signals, drop every privilege.  Raw system calls only: in the agent they
 * run in a child of a multithreaded process, where glibc's set*id would
 * wait for threads that do not exist there.  */
#ifndef SBX_RUNTIME_SANDBOX_CHILD_H
#define SBX_RUNTIME_SANDBOX_CHILD_H

#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/sandbox_proto.h"

/* Root of the sandbox's user namespace; 0, or the step that failed.  */
static inline int child_become_root(void)
{
    if (syscall(SYS_setgroups, 0, NULL) < 0)
        return RT_STEP_SETGROUPS;
    if (syscall(SYS_setresgid, 0, 0, 0) < 0)
        return RT_STEP_SETGID;
    if (syscall(SYS_setresuid, 0, 0, 0) < 0)
        return RT_STEP_SETUID;
    return 0;
}

static inline void child_reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &dfl, NULL);
}

/* Drop every capability, bounding set included, and lock root's
 * privileges away, so an execve cannot bring any back.
 *
 * Two limits go to 0, hard limit included (raising one back needs
 * CAP_SYS_RESOURCE in the host's user namespace): a core dump hands the
 * process's memory to the host's core_pattern handler, typically a
 * host-root program (systemd-coredump, apport) storing it on the host's
 * disk, outside the sandbox's limits; handlers skip the core when the
 * limit is 0.  And a real-time priority escapes the CPU quota, which
 * only bounds normal tasks.  Both were the agent's, often unlimited.  */
static inline int child_lock_privileges(int cap_last)
{
    const struct rlimit zero = {0, 0};
    if (setrlimit(RLIMIT_CORE, &zero) < 0 || setrlimit(RLIMIT_RTPRIO, &zero) < 0)
        return -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    for (int c = 0; c <= cap_last; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            return -1;
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (prctl(PR_SET_SECUREBITS,
              SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                  SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
              0, 0, 0) < 0)
        return -1;
    return 0;
}

/* The capabilities themselves, last: a switch to another user (which
 * needs CAP_SETUID and CAP_SETGID) goes between the two.  */
static inline int child_clear_caps(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    return (int)syscall(SYS_capset, &hdr, data);
}

static inline int child_drop_privileges(int cap_last)
{
    return child_lock_privileges(cap_last) < 0 ? -1 : child_clear_caps();
}

#endif
