/* A small blocking client for tests and tools: TCP on 127.0.0.1, HTTP/1.1 requests, and
 * WebSocket (handshake, masked frames, reading frames). No dependencies beyond libc. */
#ifndef FYC_H
#define FYC_H

#include <stdbool.h>
#include <stddef.h>

/* Connects to 127.0.0.1:port; returns the fd or -1. */
int fyc_connect(int port);

typedef struct fyc_resp {
    int status;
    char head[4096];   /* status line and headers, NUL-terminated */
    char *body;        /* malloc'd, NUL-terminated */
    size_t body_len;
} fyc_resp;

/* One request on its own connection. `headers` are extra lines ending in \r\n (or NULL).
 * Waits at most timeout_ms for the whole response. Returns 0, or -1 on a network error
 * or timeout (then out->status is 0). A HEAD answer's body is whatever came before the
 * server closed the connection (nothing, from a correct server). */
int fyc_http(int port, const char *method, const char *target, const char *headers,
             const char *body, size_t len, int timeout_ms, fyc_resp *out);
/* A header's value (case-insensitive name) copied into buf, or NULL. */
const char *fyc_header(const fyc_resp *r, const char *name, char *buf, size_t size);
void fyc_resp_free(fyc_resp *r);

typedef struct fyc_ws {
    int fd;
    char *buf;         /* bytes read but not yet returned */
    size_t len, cap;
} fyc_ws;

/* Opens a WebSocket to `path`. `headers` are extra request lines (e.g. an Origin) or NULL.
 * Returns 0 on 101; otherwise -1 with *status set to the HTTP status (0 on network error). */
int fyc_ws_open(fyc_ws *ws, int port, const char *path, const char *headers, int *status);
/* Like fyc_ws_open, but sends `after` (`len` bytes: frames, or part of one) in the same
 * write as the upgrade request, as a client that does not wait for the 101 would. */
int fyc_ws_open_pipelined(fyc_ws *ws, int port, const char *path, const void *after,
                          size_t len, int *status);
/* A masked frame into `out` (room for len + 14 bytes); returns its size. */
size_t fyc_ws_frame(unsigned char *out, int opcode, bool fin, const void *data, size_t len);
/* Sends `text` as one unmasked text frame (under 126 bytes), which a client must not. */
int fyc_ws_text_unmasked(fyc_ws *ws, const char *text);
/* Writes raw bytes to the connection. Returns 0 or -1. */
int fyc_ws_raw(fyc_ws *ws, const void *p, size_t len);
/* Sends one masked frame. Returns 0 or -1. */
int fyc_ws_send(fyc_ws *ws, int opcode, bool fin, const void *data, size_t len);
int fyc_ws_text(fyc_ws *ws, const char *text);
/* Sends only a frame header claiming `len` payload bytes (for limit tests). */
int fyc_ws_send_header(fyc_ws *ws, int opcode, unsigned long long len);
/* Receives one frame: 0 with *op, *data (malloc'd, NUL-terminated) and *len; -1 when the
 * connection closed or failed; -2 after timeout_ms with nothing. */
int fyc_ws_recv(fyc_ws *ws, int *op, char **data, size_t *len, int timeout_ms);
/* Reads frames until the server's close frame and returns its code (1005 if it has none);
 * -1 if the connection ended without one, 0 after timeout_ms. Other frames are discarded. */
int fyc_ws_wait_close(fyc_ws *ws, int timeout_ms);

/* Closes the TCP connection at once, without a close frame. */
void fyc_ws_drop(fyc_ws *ws);

#endif
