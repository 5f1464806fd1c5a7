/* sandbox_init.c -- pid 1 of every process-driver sandbox: holds the
 * sandbox's namespaces open and reaps the orphans reparented to it.
 *
 * Built static and without sanitizers, embedded in the runtime library and
 * started from a sealed memfd, so no file of it needs to exist inside the
 * image.  It starts already confined (namespaces, no capabilities, seccomp)
 * and takes no input, so it has nothing to trust.  */
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int main(void)
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
