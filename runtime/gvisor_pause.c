/* gvisor_pause.c -- pid 1 of a gVisor sandbox: holds the sandbox open and
 * reaps orphans, nothing else (execs are started by runsc beside it).  */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_child(int sig)
{
    (void)sig;
}

int main(void)
{
    /* Only pid 1 of a sandbox has a use for this loop.  */
    if (getpid() != 1)
        return 126;
    /* SIGCHLD blocked except inside sigsuspend, so an orphan that exits
     * between the reaping and the wait still wakes us.  */
    struct sigaction sa = {.sa_handler = on_child};
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t chld, none;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        sigsuspend(&none);
    }
}
