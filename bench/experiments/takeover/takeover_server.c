/* Feasibility experiment: take a WebSocket's socket over from
 * civetweb 1.15 and serve it from one epoll thread.
 *
 *   takeover_server PORT THREADS MODE
 *     MODE = takeover : ready handler swaps the socket for a stand-in,
 *                       civetweb's worker returns, one epoll thread serves
 *     MODE = threaded : plain civetweb (the data handler echoes), baseline
 *
 * Prints one line per event worth knowing and a summary on SIGUSR1 / exit.
 * Echo protocol: a text frame is sent back as an unmasked text frame.
 */
#define _GNU_SOURCE
#include <civetweb.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FRAME 1024 /* spike: small frames; production grows on demand */
#define MARKER_LEN 24 /* random per connection */

struct tk {
	int real_fd;      /* ferry's own descriptor for the TCP socket */
	int civet_fd;     /* the number civetweb uses (now the stand-in) */
	int marker_seen;  /* civetweb delivered the marker: handoff clean */
	int junk;         /* civetweb completed a buffered partial frame with
	                     stand-in bytes: the stream is lost */
	unsigned char marker[MARKER_LEN];
	size_t rlen;
	unsigned char rbuf[MAX_FRAME + 14];
};

static int epfd = -1;
static int takeover_mode = 1;
static int force_scan; /* TAKEOVER_FIND=scan: only the /proc/self/fd scan */
static long conn_offset = -1;
static atomic_char owned[1 << 16]; /* descriptors ferry took */ /* offset of client.sock from request_info */

static atomic_long n_ready, n_found_by_offset, n_found_by_scan, n_not_found;
static atomic_long n_buffered_frames, n_handoff_ok, n_handoff_lost;
static atomic_long n_civet_close_handler, n_epoll_echo, n_epoll_closed;
static atomic_long n_threaded_echo, n_bad_frames;

/* ---- finding civetweb's descriptor for a connection ------------------ */

static int same_tuple(int fd, const struct mg_request_info *ri)
{
	struct sockaddr_storage peer, self;
	socklen_t pl = sizeof peer, sl = sizeof self;
	char addr[INET6_ADDRSTRLEN];
	int pport, sport;

	if (getpeername(fd, (struct sockaddr *)&peer, &pl) != 0)
		return 0;
	if (getsockname(fd, (struct sockaddr *)&self, &sl) != 0)
		return 0;
	if (peer.ss_family == AF_INET) {
		struct sockaddr_in *p = (struct sockaddr_in *)&peer;
		inet_ntop(AF_INET, &p->sin_addr, addr, sizeof addr);
		pport = ntohs(p->sin_port);
		sport = ntohs(((struct sockaddr_in *)&self)->sin_port);
	} else if (peer.ss_family == AF_INET6) {
		struct sockaddr_in6 *p = (struct sockaddr_in6 *)&peer;
		inet_ntop(AF_INET6, &p->sin6_addr, addr, sizeof addr);
		pport = ntohs(p->sin6_port);
		sport = ntohs(((struct sockaddr_in6 *)&self)->sin6_port);
	} else {
		return 0;
	}
	return pport == ri->remote_port && sport == ri->server_port
	       && strcmp(addr, ri->remote_addr) == 0;
}

/* Candidate 1: civetweb keeps `struct socket client` (an int descriptor
 * followed by the local sockaddr) a few words after request_info inside
 * struct mg_connection. mg_get_request_info() returns &conn->request_info,
 * so the descriptor sits at a fixed offset from that pointer for a given
 * build. The offset is learnt once (signature: int fd whose getsockname()
 * bytes follow it and whose 4-tuple matches request_info) and every later
 * use is verified by the 4-tuple, so a wrong layout can only make the lookup
 * fail, never pick the wrong socket. */
static int fd_by_signature(const struct mg_request_info *ri)
{
	const unsigned char *base =
	    (const unsigned char *)ri + sizeof(struct mg_request_info);
	long off;

	if (conn_offset >= 0) {
		int fd;
		memcpy(&fd, base + conn_offset, sizeof fd);
		if (fd > 2 && same_tuple(fd, ri))
			return fd;
		return -1;
	}
	for (off = 0; off < 2048; off += 4) {
		int fd;
		struct sockaddr_storage self;
		socklen_t sl = sizeof self;
		memcpy(&fd, base + off, sizeof fd);
		if (fd <= 2 || fd > 1 << 20)
			continue;
		if (getsockname(fd, (struct sockaddr *)&self, &sl) != 0)
			continue;
		if (memcmp(base + off + 4, &self, sl) != 0)
			continue;
		if (!same_tuple(fd, ri))
			continue;
		conn_offset = off;
		fprintf(stderr, "learnt client.sock offset: request_info+%zu+%ld\n",
		        sizeof(struct mg_request_info), off);
		return fd;
	}
	return -1;
}

/* Candidate 2 (fallback): scan /proc/self/fd for the one socket whose
 * 4-tuple matches. O(descriptors) per connection. Sockets ferry already
 * took over share a 4-tuple with nobody else, so the match is unique as
 * long as ferry's own duplicates are skipped. */
static int fd_by_scan(const struct mg_request_info *ri)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int found = -1;
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (fd <= 2 || fd == dirfd(d))
			continue;
		if (fd < (int)sizeof owned && atomic_load(&owned[fd]))
			continue; /* ferry's own duplicate */
		if (same_tuple(fd, ri)) {
			found = fd;
			break;
		}
	}
	closedir(d);
	return found;
}

/* ---- ferry's own frame reader/writer (spike-grade) ------------------- */

static int send_frame(int fd, int opcode, const void *p, size_t n)
{
	unsigned char h[10];
	size_t hl;
	h[0] = (unsigned char)(0x80 | opcode);
	if (n < 126) {
		h[1] = (unsigned char)n;
		hl = 2;
	} else {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	}
	unsigned char out[MAX_FRAME + 10];
	memcpy(out, h, hl);
	memcpy(out + hl, p, n);
	ssize_t w = send(fd, out, hl + n, MSG_NOSIGNAL);
	return w == (ssize_t)(hl + n) ? 0 : -1; /* spike: no partial writes */
}

static void tk_close(struct tk *t)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, t->real_fd, NULL);
	if (t->real_fd < (int)sizeof owned)
		atomic_store(&owned[t->real_fd], 0);
	close(t->real_fd);
	free(t);
	atomic_fetch_add(&n_epoll_closed, 1);
}

/* returns -1 when the connection must go */
static int tk_parse(struct tk *t)
{
	for (;;) {
		unsigned char *b = t->rbuf;
		size_t hl, n;
		if (t->rlen < 2)
			return 0;
		if (!(b[1] & 0x80)) {
			atomic_fetch_add(&n_bad_frames, 1);
			return -1; /* unmasked client frame: 1002 in production */
		}
		n = b[1] & 0x7f;
		hl = 2;
		if (n == 126) {
			if (t->rlen < 4)
				return 0;
			n = ((size_t)b[2] << 8) | b[3];
			hl = 4;
		} else if (n == 127) {
			atomic_fetch_add(&n_bad_frames, 1);
			return -1; /* over the spike's cap, refused at the header */
		}
		if (n > MAX_FRAME)
			return -1;
		if (t->rlen < hl + 4 + n)
			return 0;
		unsigned char *mask = b + hl, *p = b + hl + 4;
		for (size_t i = 0; i < n; i++)
			p[i] ^= mask[i & 3];
		int op = b[0] & 0x0f;
		if (op == 1 || op == 2) {
			if (send_frame(t->real_fd, op, p, n) != 0)
				return -1;
			atomic_fetch_add(&n_epoll_echo, 1);
		} else if (op == 9) {
			send_frame(t->real_fd, 10, p, n);
		} else if (op == 8) {
			send_frame(t->real_fd, 8, p, n < 2 ? n : 2);
			return -1;
		}
		memmove(b, b + hl + 4 + n, t->rlen - (hl + 4 + n));
		t->rlen -= hl + 4 + n;
	}
}

static void *epoll_thread(void *arg)
{
	struct epoll_event ev[256];
	(void)arg;
	for (;;) {
		int n = epoll_wait(epfd, ev, 256, -1);
		for (int i = 0; i < n; i++) {
			struct tk *t = ev[i].data.ptr;
			for (;;) {
				ssize_t r = recv(t->real_fd, t->rbuf + t->rlen,
				                 sizeof t->rbuf - t->rlen, 0);
				if (r > 0) {
					t->rlen += (size_t)r;
					if (tk_parse(t) < 0) {
						tk_close(t);
						break;
					}
					continue;
				}
				if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
					tk_close(t);
				}
				break;
			}
		}
	}
	return NULL;
}

/* ---- civetweb handlers ------------------------------------------------ */

static void ready_handler(struct mg_connection *conn, void *cb)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	int sv[2], fd, real;
	unsigned char marker[2 + MARKER_LEN];
	(void)cb;

	atomic_fetch_add(&n_ready, 1);
	if (!takeover_mode)
		return;
	if (ri->is_ssl)
		return; /* TLS state cannot move: stay on the threaded path */

	fd = force_scan ? -1 : fd_by_signature(ri);
	if (fd >= 0) {
		atomic_fetch_add(&n_found_by_offset, 1);
	} else {
		fd = fd_by_scan(ri);
		if (fd < 0) {
			atomic_fetch_add(&n_not_found, 1);
			return; /* stays threaded */
		}
		atomic_fetch_add(&n_found_by_scan, 1);
	}

	/* We run on the worker thread between the handshake and the read
	 * loop: nobody is in recv() on fd. */
	real = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (real < 0)
		return;
	if (real < (int)sizeof owned)
		atomic_store(&owned[real], 1);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		close(real);
		return;
	}
	/* Marker: an unmasked close frame with a known payload, written to
	 * the stand-in before it replaces the socket, then EOF. civetweb first
	 * delivers the complete frames it had already buffered past the
	 * handshake, then the marker; if a partial frame was buffered, the
	 * marker is swallowed into it and the loop ends on EOF without it. */
	struct tk *t = calloc(1, sizeof *t);
	getrandom(t->marker, MARKER_LEN, 0);
	marker[0] = 0x88;
	marker[1] = MARKER_LEN;
	memcpy(marker + 2, t->marker, MARKER_LEN);
	if (write(sv[1], marker, sizeof marker) != (ssize_t)sizeof marker) {
		close(real);
		close(sv[0]);
		close(sv[1]);
		free(t);
		return;
	}
	close(sv[1]);
	if (dup2(sv[0], fd) < 0) { /* atomic swap under the same number */
		close(real);
		close(sv[0]);
		free(t);
		return;
	}
	close(sv[0]);

	t->real_fd = real;
	t->civet_fd = fd;
	mg_set_user_connection_data(conn, t);
}

static int data_handler(struct mg_connection *conn, int bits, char *data,
                        size_t len, void *cb)
{
	struct tk *t = mg_get_user_connection_data(conn);
	int op = bits & 0x0f;
	(void)cb;

	if (!t) { /* threaded path (baseline or not taken over) */
		if (op == 1 || op == 2) {
			mg_websocket_write(conn, op, data, len);
			atomic_fetch_add(&n_threaded_echo, 1);
		}
		return op != 8;
	}
	/* How much of the stand-in civetweb has read tells where this frame
	 * came from: nothing read = entirely from civetweb's buffer. */
	int unread = -1;
	ioctl(t->civet_fd, FIONREAD, &unread);
	if (unread == 0 && op == 8 && len == MARKER_LEN
	    && !memcmp(data, t->marker, len)) {
		/* Everything civetweb had buffered has been delivered. Hand the
		 * real socket to the epoll thread now, so its first recv() comes
		 * after those frames. */
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
		                         .data.ptr = t};
		t->marker_seen = 1;
		mg_set_user_connection_data(conn, NULL);
		atomic_fetch_add(&n_handoff_ok, 1);
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, t->real_fd, &ev) != 0)
			tk_close(t);
		return 0; /* end civetweb's read loop */
	}
	if (unread != 2 + MARKER_LEN) {
		/* civetweb completed a partial frame it had buffered with bytes
		 * of the stand-in: junk, never to be delivered. */
		t->junk = 1;
		return 0;
	}
	/* A frame civetweb had buffered past the handshake (pipelined by the
	 * client): it belongs to ferry's connection, in order, before any
	 * byte the epoll thread will read. */
	atomic_fetch_add(&n_buffered_frames, 1);
	if (op == 1 || op == 2)
		send_frame(t->real_fd, op, data, len);
	return 1;
}

static void close_handler(const struct mg_connection *conn, void *cb)
{
	struct tk *t = mg_get_user_connection_data(conn);
	(void)cb;
	atomic_fetch_add(&n_civet_close_handler, 1);
	if (t && !t->marker_seen) {
		/* Partial frame buffered: marker lost. The byte stream cannot be
		 * resynchronised; production would close with 1011 and let the
		 * client resume. */
		atomic_fetch_add(&n_handoff_lost, 1);
		if (t->real_fd < (int)sizeof owned)
			atomic_store(&owned[t->real_fd], 0);
		close(t->real_fd);
		free(t);
		mg_set_user_connection_data((struct mg_connection *)conn, NULL);
	}
}

static void summary(int sig)
{
	char b[1024];
	(void)sig;
	int n = snprintf(
	    b, sizeof b,
	    "stats ready=%ld by_offset=%ld by_scan=%ld not_found=%ld "
	    "buffered_frames=%ld handoff_ok=%ld handoff_lost=%ld "
	    "civet_close_handler=%ld epoll_echo=%ld epoll_closed=%ld "
	    "threaded_echo=%ld bad_frames=%ld\n",
	    atomic_load(&n_ready), atomic_load(&n_found_by_offset),
	    atomic_load(&n_found_by_scan), atomic_load(&n_not_found),
	    atomic_load(&n_buffered_frames), atomic_load(&n_handoff_ok),
	    atomic_load(&n_handoff_lost), atomic_load(&n_civet_close_handler),
	    atomic_load(&n_epoll_echo), atomic_load(&n_epoll_closed),
	    atomic_load(&n_threaded_echo), atomic_load(&n_bad_frames));
	write(2, b, (size_t)n);
}

int main(int argc, char **argv)
{
	char ports[64];
	const char *threads = argc > 2 ? argv[2] : "4";
	pthread_t th;
	int mode_off = (argc > 3 && strcmp(argv[3], "threaded") == 0);

	snprintf(ports, sizeof ports, "127.0.0.1:%s", argc > 1 ? argv[1] : "18716");
	takeover_mode = !mode_off;
	const char *opts[] = {"listening_ports", ports, "num_threads", threads,
	                      "websocket_timeout_ms", "3600000", NULL};

	force_scan = getenv("TAKEOVER_FIND") && !strcmp(getenv("TAKEOVER_FIND"), "scan");
	signal(SIGUSR1, summary);
	signal(SIGPIPE, SIG_IGN);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	pthread_create(&th, NULL, epoll_thread, NULL);

	mg_init_library(0);
	struct mg_callbacks cbs;
	memset(&cbs, 0, sizeof cbs);
	struct mg_context *ctx = mg_start(&cbs, NULL, opts);
	if (!ctx) {
		fprintf(stderr, "mg_start failed\n");
		return 1;
	}
	mg_set_websocket_handler(ctx, "/ws", NULL, ready_handler, data_handler,
	                         close_handler, NULL);
	fprintf(stderr, "listening on %s, %s threads, mode %s, pid %d\n", ports,
	        threads, takeover_mode ? "takeover" : "threaded", getpid());
	for (;;)
		pause();
}
