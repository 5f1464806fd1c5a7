/* syscall.c -- a static program the runtime tests run inside sandboxes to
 * make one raw system call: `sbx-syscall NR [ARG...]` (numbers in C
 * notation, at most six arguments) prints {"ret": R, "errno": E}.  */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 8)
        return 2;
    long a[7] = {0};
    for (int i = 1; i < argc; i++)
        a[i - 1] = (long)strtoul(argv[i], NULL, 0);
    errno = 0;
    long r = syscall(a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    printf("{\"ret\":%ld,\"errno\":%d}\n", r, r < 0 ? errno : 0);
    return 0;
}
