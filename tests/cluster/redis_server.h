/* A real redis-server for the tests, on 127.0.0.1 and a free port, with no persistence
 * (--save '' --appendonly no) and its directory under build/cluster-tmp/. It is killed
 * when the thread that started it exits (PR_SET_PDEATHSIG), so a test process that
 * crashes or is killed leaves no server behind; a test stops its own in a teardown too. */
#ifndef TEST_REDIS_SERVER_H
#define TEST_REDIS_SERVER_H

#include <sys/types.h>

typedef struct rsrv {
    pid_t pid;           /* 0: not running */
    int port;            /* chosen on the first start, kept on a restart */
    char dir[256];
    char sock[300];      /* its unix socket, if asked for */
    char addr[32];       /* "127.0.0.1:port" */
    const char *password; /* --requirepass, or NULL */
    int unix_socket;     /* also listen on dir/redis.sock */
} rsrv;

/* Starts it and waits until it accepts connections. 0, or -1 (logged to stderr). */
int rsrv_start(rsrv *r);

/* Kills it (SIGKILL: as abrupt as a crash) and waits for it; its data goes with it. */
void rsrv_stop(rsrv *r);

/* Removes its directory (after rsrv_stop). */
void rsrv_cleanup(rsrv *r);

#endif
