#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void exec_server(rsrv *r, pid_t parent)
{
    /* Dies with the thread that started it, even one that crashed. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    char port[16], log[300];
    snprintf(port, sizeof port, "%d", r->port);
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    const char *argv[24] = {"redis-server", "--port", port, "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no", "--dir", r->dir,
                            "--logfile", log, "--daemonize", "no"};
    int n = 15;
    if (r->password) {
        argv[n++] = "--requirepass";
        argv[n++] = r->password;
    }
    if (r->unix_socket) {
        argv[n++] = "--unixsocket";
        argv[n++] = r->sock;
        argv[n++] = "--unixsocketperm";
        argv[n++] = "700";
    }
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    execvp("redis-server", (char **)argv);
    _exit(127);
}

int rsrv_start(rsrv *r)
{
    if (!r->port && (r->port = free_port()) < 0)
        return -1;
    snprintf(r->addr, sizeof r->addr, "127.0.0.1:%d", r->port);
    mkdir("build", 0755);
    mkdir("build/cluster-tmp", 0755);
    char cwd[200];
    if (!getcwd(cwd, sizeof cwd))
        return -1;
    snprintf(r->dir, sizeof r->dir, "%s/build/cluster-tmp/redis-%d", cwd, r->port);
    mkdir(r->dir, 0700);
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    pid_t parent = getpid();
    r->pid = fork();
    if (r->pid < 0)
        return -1;
    if (r->pid == 0)
        exec_server(r, parent);
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        if (accepts(r->port) && (!r->unix_socket || access(r->sock, F_OK) == 0))
            return 0;
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            fprintf(stderr, "redis-server exited at start (see %s/redis.log)\n", r->dir);
            r->pid = 0;
            return -1;
        }
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    fprintf(stderr, "redis-server did not start on port %d\n", r->port);
    rsrv_stop(r);
    return -1;
}

void rsrv_stop(rsrv *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGKILL);
    while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    r->pid = 0;
}

void rsrv_cleanup(rsrv *r)
{
    char p[400];
    const char *files[] = {"redis.log", "redis.sock", "dump.rdb"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", r->dir, files[i]);
        unlink(p);
    }
    rmdir(r->dir);
}
