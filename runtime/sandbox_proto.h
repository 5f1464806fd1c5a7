/* sandbox_proto.h -- what the agent (process.c) and the static sandbox
 * binary (sandbox_init.c, in its "sandbox-exec" role) agree on: the fds an
 * exec helper starts with, its arguments, and the reports it sends back.
 * Plain C, no project headers: the static binary includes it too.  */
#ifndef SBX_RUNTIME_SANDBOX_PROTO_H
#define SBX_RUNTIME_SANDBOX_PROTO_H

/* argv[0] selecting the exec role of the sandbox binary.  */
#define RT_EXEC_ARGV0 "sandbox-exec"

/* The exec helper's fds; every other fd is closed before it starts.
 * 0, 1, 2 are the command's stdin, stdout, stderr.  */
enum {
    RT_EXEC_FD_REPORT = 3,  /* write end of the report pipe to the agent */
    RT_EXEC_FD_INIT = 4,    /* pidfd of the sandbox's init */
    RT_EXEC_FD_SECCOMP = 5, /* sealed memfd: the struct sock_filter array */
    RT_EXEC_FD_PARAMS = 6,  /* memfd: the strings below */
    RT_EXEC_FD_CONTROL = 7, /* read end of the agent's control pipe: signals (an int each) */
    RT_EXEC_FD_FORK_CG = 8, /* cgroup.procs the helper joins before forking (optional) */
    /* then the cgroup.procs files the command joins, RT_EXEC_FD_FORK_CG
     * when there is no fork cgroup, RT_EXEC_FD_FORK_CG + 1 otherwise */
};

/* argv: RT_EXEC_ARGV0, number of command cgroup fds, "1" when there is a
 * fork cgroup fd and "0" otherwise, the last capability number, the flags
 * (RT_EXEC_F_* as a number), NULL.
 * The params memfd holds NUL-terminated strings: the user ("" for the
 * sandbox's root, else "uid:gid[:group...]", at most RT_EXEC_MAX_GROUPS
 * groups), the cwd, the number of
 * candidate paths, the candidates, the number of arguments, the
 * arguments, then the environment up to the end.  The environment is not
 * the helper's own: glibc would parse (GLIBC_TUNABLES...) what a client
 * wrote in a process that is still host root.  */
#define RT_EXEC_MAX_CG_FDS 8
#define RT_EXEC_MAX_GROUPS 32
/* stdin is a terminal (a pty the agent opened in the sandbox's devpts):
 * the command makes it its controlling terminal.  */
#define RT_EXEC_F_PTY 1

/* Start-up steps; a report names the step that failed and its errno.  */
enum rt_step {
    RT_STEP_NONE,
    RT_STEP_GO,
    RT_STEP_SETGROUPS,
    RT_STEP_SETGID,
    RT_STEP_SETUID,
    RT_STEP_CGROUPNS,
    RT_STEP_MOUNTNS,
    RT_STEP_PRIVATE,
    RT_STEP_HOSTNAME,
    RT_STEP_LOOPBACK,
    RT_STEP_ROOT,
    RT_STEP_PROC,
    RT_STEP_DEV,
    RT_STEP_PIVOT,
    RT_STEP_OLDROOT,
    RT_STEP_STDIO,
    RT_STEP_CAPS,
    RT_STEP_NNP,
    RT_STEP_SECCOMP,
    RT_STEP_EXEC,
    RT_STEP_CGROUP,
    RT_STEP_SETNS,
    RT_STEP_FORK,
    RT_STEP_CWD,
    RT_STEP_SETSID,
    RT_STEP_MASK,
    RT_STEP_ARGS,
    RT_STEP_SPAWN,
    RT_STEP_N,
    /* Not failures: progress of an exec helper.  */
    RT_REPORT_FORKED = 100,  /* the command's process exists in the sandbox */
    RT_REPORT_STARTED,       /* the command's execve succeeded; err is its pid in the sandbox */
    RT_REPORT_START_TIMEOUT, /* it did not get there in time and was killed */
    RT_REPORT_LOST,          /* it died before execve without saying why (killed) */
    RT_REPORT_DONE,          /* the command ended; err is its wait status */
};

struct rt_report {
    int step;
    int err;
};

/* How long the helper gives the command between its fork and a successful
 * execve (a sandbox out of memory can stall it in the kernel).  */
#define RT_EXEC_START_TIMEOUT_MS 4000

#endif
