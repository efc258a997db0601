/* Client for the takeover spike: opens N WebSockets to 127.0.0.1:PORT/ws,
 * pipelines a text frame right behind the upgrade request on every
 * PIPE-th connection (same write() as the request), checks every echo,
 * then sends one more frame on every connection and checks those echoes.
 * Reports the server's Threads and VmRSS (from /proc/PID/status) before,
 * with N held, and after all are closed.
 *
 * Every SPLIT-th connection (offset 1) sends only the first 3 bytes of a
 * frame behind the upgrade request and the rest after the 101: the server
 * must notice that civetweb buffered a partial frame and close it.
 *
 *   takeover_client PORT SERVER_PID N PIPE [SPLIT]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int server_pid;

static void server_status(const char *when)
{
	char path[64], line[256];
	long threads = -1, rss = -1;
	snprintf(path, sizeof path, "/proc/%d/status", server_pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "Threads:", 8))
			threads = atol(line + 8);
		if (!strncmp(line, "VmRSS:", 6))
			rss = atol(line + 6);
	}
	fclose(f);
	printf("server %-22s Threads=%ld VmRSS=%ld kB\n", when, threads, rss);
	fflush(stdout);
}

/* server CPU (user+system) in clock ticks */
static long server_ticks(void)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", server_pid);
	FILE *f = fopen(path, "r");
	if (!f || !fgets(buf, sizeof buf, f)) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	char *p = strrchr(buf, ')');
	long ut = 0, st = 0;
	/* fields after ')': state is 3rd field; utime 14th, stime 15th */
	sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &ut,
	       &st);
	return ut + st;
}

static size_t mk_frame(unsigned char *out, int op, const char *msg, int close)
{
	size_t n = strlen(msg), i;
	unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
	out[0] = (unsigned char)(0x80 | op);
	out[1] = (unsigned char)(0x80 | n); /* spike: n < 126 */
	memcpy(out + 2, mask, 4);
	for (i = 0; i < n; i++)
		out[6 + i] = (unsigned char)msg[i] ^ mask[i & 3];
	(void)close;
	return 6 + n;
}

static int read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 5000) <= 0)
			return -1;
		ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

/* read one unmasked server text frame and compare its payload */
static int expect_echo(int fd, const char *msg)
{
	unsigned char h[2];
	char p[200];
	size_t n = strlen(msg);
	if (read_full(fd, h, 2) != 0)
		return -1;
	if (h[0] != 0x81 || (h[1] & 0x80) || (h[1] & 0x7f) != n)
		return -2;
	if (read_full(fd, p, n) != 0 || memcmp(p, msg, n) != 0)
		return -3;
	return 0;
}

static int read_headers(int fd)
{
	char c, last[4] = {0};
	int n = 0;
	for (;;) {
		if (read_full(fd, &c, 1) != 0)
			return -1;
		memmove(last, last + 1, 3);
		last[3] = c;
		if (++n > 4096)
			return -1;
		if (!memcmp(last, "\r\n\r\n", 4))
			return 0;
	}
}

int main(int argc, char **argv)
{
	int port = atoi(argv[1]);
	server_pid = atoi(argv[2]);
	int N = argc > 3 ? atoi(argv[3]) : 1000;
	int PIPE = argc > 4 ? atoi(argv[4]) : 3;
	int SPLIT = argc > 5 ? atoi(argv[5]) : 0;
	int split_closed = 0, split_n = 0;
	int *fds = calloc((size_t)N, sizeof *fds);
	int ok_pipe = 0, bad = 0, ok_second = 0, extra = 0, ok_open = 0;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	struct timespec t0, t1;

	server_status("before");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < N; i++) {
		char req[1024], msg[64];
		unsigned char buf[1200];
		int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
			perror("connect");
			return 1;
		}
		int rl = snprintf(req, sizeof req,
		                  "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
		                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		                  "Sec-WebSocket-Version: 13\r\n\r\n",
		                  port);
		memcpy(buf, req, (size_t)rl);
		size_t len = (size_t)rl;
		snprintf(msg, sizeof msg, "pipelined-%d", i);
		int pipelined = PIPE > 0 && i % PIPE == 0;
		int split = !pipelined && SPLIT > 0 && i % SPLIT == 1;
		unsigned char tail[100];
		size_t tail_len = 0;
		if (pipelined) /* the frame goes out in the same segment */
			len += mk_frame(buf + len, 1, msg, 0);
		else if (split) {
			tail_len = mk_frame(tail, 1, msg, 0) - 3;
			memcpy(buf + len, tail, 3);
			memmove(tail, tail + 3, tail_len);
			len += 3;
		}
		if (send(fd, buf, len, 0) != (ssize_t)len) {
			perror("send");
			return 1;
		}
		if (read_headers(fd) != 0) {
			fprintf(stderr, "conn %d: no 101\n", i);
			bad++;
			close(fd);
			fds[i] = -1;
			continue;
		}
		ok_open++;
		if (split) {
			char c;
			split_n++;
			usleep(20000); /* the 101 came first: the server swapped */
			send(fd, tail, tail_len, MSG_NOSIGNAL);
			struct pollfd p = {.fd = fd, .events = POLLIN};
			if (poll(&p, 1, 5000) > 0 && recv(fd, &c, 1, 0) <= 0)
				split_closed++;
			else
				bad++;
			close(fd);
			fds[i] = -1;
			ok_open--;
			continue;
		}
		if (pipelined) {
			int r = expect_echo(fd, msg);
			if (r == 0)
				ok_pipe++;
			else {
				fprintf(stderr, "conn %d: pipelined echo %d\n", i, r);
				bad++;
			}
		}
		fds[i] = fd;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (SPLIT > 0)
		printf("split-frame connections closed by the server: %d/%d\n",
		       split_closed, split_n);
	printf("held %d/%d in %.2f s, pipelined echoes ok %d\n", ok_open, N,
	       (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
	       ok_pipe);
	sleep(2); /* let the workers go back to their pool */
	server_status("holding N");
	if (getenv("HOLD_S")) { /* idle CPU while holding N */
		int hs = atoi(getenv("HOLD_S"));
		long c0 = server_ticks();
		sleep((unsigned)hs);
		long c1 = server_ticks();
		printf("server idle CPU over %d s holding %d: %.2f %% of one core\n",
		       hs, ok_open, 100.0 * (double)(c1 - c0) / (double)sysconf(_SC_CLK_TCK) / hs);
	}

	/* second round: every connection, served by whoever owns it now */
	for (int i = 0; i < N; i++) {
		char msg[64];
		unsigned char buf[200];
		if (fds[i] < 0)
			continue;
		snprintf(msg, sizeof msg, "second-%d", i);
		size_t len = mk_frame(buf, 1, msg, 0);
		send(fds[i], buf, len, 0);
	}
	for (int i = 0; i < N; i++) {
		char msg[64];
		if (fds[i] < 0)
			continue;
		snprintf(msg, sizeof msg, "second-%d", i);
		int r = expect_echo(fds[i], msg);
		if (r == 0)
			ok_second++;
		else {
			fprintf(stderr, "conn %d: second echo %d\n", i, r);
			bad++;
		}
	}
	/* nothing else may arrive: no close frame, no FIN from civetweb */
	for (int i = 0; i < N; i++) {
		struct pollfd p = {.fd = fds[i], .events = POLLIN};
		if (fds[i] >= 0 && poll(&p, 1, 0) > 0)
			extra++;
	}
	printf("second-round echoes ok %d/%d, connections with unexpected "
	       "bytes/FIN %d, errors %d\n",
	       ok_second, ok_open, extra, bad);
	server_status("after second round");

	for (int i = 0; i < N; i++) {
		unsigned char buf[16];
		if (fds[i] < 0)
			continue;
		size_t len = mk_frame(buf, 8, "", 1);
		send(fds[i], buf, len, 0);
		close(fds[i]);
	}
	sleep(2);
	server_status("after closing all");
	return bad ? 1 : 0;
}
