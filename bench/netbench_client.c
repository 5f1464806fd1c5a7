/* netbench_client.c -- the client side of egress_bench, run inside a
 * sandbox (static, no libraries needed there):
 *
 *   netbench rr ADDR PORT HOST N      N fresh connections, each one HTTP
 *                                     request and its reply; prints the
 *                                     median and 90th percentile in us
 *   netbench get ADDR PORT HOST BYTES one download of BYTES; prints MB/s
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static int dial(const char *addr, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    inet_pton(AF_INET, addr, &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

static long long drain(int fd)
{
    static char buf[1 << 20];
    long long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        total += n;
    return total;
}

static int cmp(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    const char *addr = argv[2], *host = argv[4];
    int port = atoi(argv[3]);
    char req[512];
    if (strcmp(argv[1], "rr") == 0) {
        int n = atoi(argv[5]);
        long long *us = calloc((size_t)n, sizeof *us);
        int len = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host);
        for (int i = 0; i < n; i++) {
            long long t0 = now_us();
            int fd = dial(addr, port);
            if (write(fd, req, (size_t)len) != len || drain(fd) <= 0)
                return 1;
            close(fd);
            us[i] = now_us() - t0;
        }
        qsort(us, (size_t)n, sizeof *us, cmp);
        printf("median_us=%lld p90_us=%lld\n", us[n / 2], us[n * 9 / 10]);
        return 0;
    }
    if (strcmp(argv[1], "get") == 0) {
        int len = snprintf(req, sizeof req, "GET /big HTTP/1.1\r\nHost: %s\r\nX-Bytes: %s\r\n\r\n",
                           host, argv[5]);
        long long t0 = now_us();
        int fd = dial(addr, port);
        if (write(fd, req, (size_t)len) != len)
            return 1;
        long long got = drain(fd);
        long long dt = now_us() - t0;
        printf("bytes=%lld mbit_s=%.0f\n", got, got * 8.0 / (double)dt);
        return 0;
    }
    return 2;
}
