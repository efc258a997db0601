#include "fyc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int fyc_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len) {
        ssize_t n = send(fd, c, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        c += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads more into buf, waiting until deadline. 1 read, 0 closed, -1 error, -2 timeout. */
static int read_more(int fd, char **buf, size_t *len, size_t *cap, long long deadline)
{
    if (*cap - *len < 4096) {
        size_t ncap = *cap ? *cap * 2 : 8192;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    long long left = deadline - now_ms();
    if (left < 0)
        left = 0; /* still look once: a zero timeout means "whatever is there now" */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, (int)left);
    if (r == 0)
        return -2;
    if (r < 0)
        return errno == EINTR ? 1 : -1;
    ssize_t n = recv(fd, *buf + *len, *cap - *len - 1, 0);
    if (n < 0)
        return errno == EINTR ? 1 : -1;
    if (n == 0)
        return 0;
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return 1;
}

const char *fyc_header(const fyc_resp *r, const char *name, char *buf, size_t size)
{
    size_t nl = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ')
                h++;
            const char *end = strstr(h, "\r\n");
            size_t vl = end ? (size_t)(end - h) : strlen(h);
            if (vl >= size)
                vl = size - 1;
            memcpy(buf, h, vl);
            buf[vl] = '\0';
            return buf;
        }
    }
    return NULL;
}

int fyc_http(int port, const char *method, const char *target, const char *headers,
             const char *body, size_t len, int timeout_ms, fyc_resp *out)
{
    memset(out, 0, sizeof *out);
    int fd = fyc_connect(port);
    if (fd < 0)
        return -1;
    char req[4096];
    bool own_conn = headers && strcasestr(headers, "Connection:");
    int rl = snprintf(req, sizeof req,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s"
                      "Content-Length: %zu\r\n%s\r\n",
                      method, target, port, own_conn ? "" : "Connection: close\r\n", len,
                      headers ? headers : "");
    if (rl < 0 || (size_t)rl >= sizeof req || write_all(fd, req, (size_t)rl) ||
        (len && write_all(fd, body, len))) {
        close(fd);
        return -1;
    }
    char *buf = NULL;
    size_t blen = 0, cap = 0;
    long long deadline = now_ms() + timeout_ms;
    char *end = NULL;
    long clen = -1;
    int rc = -1;
    for (;;) {
        if (!end && buf && (end = strstr(buf, "\r\n\r\n"))) {
            size_t hl = (size_t)(end - buf) + 2;
            if (hl >= sizeof out->head)
                break;
            memcpy(out->head, buf, hl);
            out->head[hl] = '\0';
            char v[32];
            /* A HEAD answer's Content-Length is the GET's: read to the close instead, so
             * that a body sent by mistake shows. */
            if (fyc_header(out, "Content-Length", v, sizeof v) && strcmp(method, "HEAD") != 0)
                clen = atol(v);
            sscanf(buf, "HTTP/1.%*d %d", &out->status);
        }
        if (end && clen >= 0 && blen - (size_t)(end + 4 - buf) >= (size_t)clen) {
            rc = 0;
            break;
        }
        int r = read_more(fd, &buf, &blen, &cap, deadline);
        if (r == 0 && end && clen < 0) {
            rc = 0; /* body ends at close */
            break;
        }
        if (r <= 0)
            break;
        if (end) /* buf may have moved */
            end = strstr(buf, "\r\n\r\n");
    }
    close(fd);
    if (rc == 0) {
        size_t off = (size_t)(end + 4 - buf);
        out->body_len = clen >= 0 ? (size_t)clen : blen - off;
        out->body = malloc(out->body_len + 1);
        memcpy(out->body, buf + off, out->body_len);
        out->body[out->body_len] = '\0';
    } else {
        out->status = 0;
    }
    free(buf);
    return rc;
}

void fyc_resp_free(fyc_resp *r)
{
    free(r->body);
    r->body = NULL;
}

static int ws_open(fyc_ws *ws, int port, const char *path, const char *headers,
                   const void *after, size_t after_len, int *status)
{
    memset(ws, 0, sizeof *ws);
    *status = 0;
    ws->fd = fyc_connect(port);
    if (ws->fd < 0)
        return -1;
    char req[8192];
    int rl = snprintf(req, sizeof req,
                      "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n%s\r\n",
                      path, port, headers ? headers : "");
    if (rl < 0 || (size_t)rl + after_len > sizeof req) {
        fyc_ws_drop(ws);
        return -1;
    }
    if (after_len)
        memcpy(req + rl, after, after_len);
    if (write_all(ws->fd, req, (size_t)rl + after_len)) {
        fyc_ws_drop(ws);
        return -1;
    }
    long long deadline = now_ms() + 5000;
    char *end;
    for (;;) {
        if (ws->buf && (end = strstr(ws->buf, "\r\n\r\n")))
            break;
        if (read_more(ws->fd, &ws->buf, &ws->len, &ws->cap, deadline) <= 0) {
            if (ws->buf)
                sscanf(ws->buf, "HTTP/1.%*d %d", status);
            fyc_ws_drop(ws);
            return -1;
        }
    }
    sscanf(ws->buf, "HTTP/1.%*d %d", status);
    size_t hl = (size_t)(end + 4 - ws->buf);
    memmove(ws->buf, ws->buf + hl, ws->len - hl);
    ws->len -= hl;
    if (*status != 101) {
        fyc_ws_drop(ws);
        return -1;
    }
    return 0;
}

int fyc_ws_open(fyc_ws *ws, int port, const char *path, const char *headers, int *status)
{
    return ws_open(ws, port, path, headers, NULL, 0, status);
}

int fyc_ws_open_pipelined(fyc_ws *ws, int port, const char *path, const void *after,
                          size_t len, int *status)
{
    return ws_open(ws, port, path, NULL, after, len, status);
}

int fyc_ws_raw(fyc_ws *ws, const void *p, size_t len)
{
    return write_all(ws->fd, p, len);
}

int fyc_ws_text_unmasked(fyc_ws *ws, const char *text)
{
    size_t n = strlen(text);
    unsigned char frame[2 + 125] = {0x81, (unsigned char)n};
    if (n > 125)
        return -1;
    memcpy(frame + 2, text, n);
    return write_all(ws->fd, frame, 2 + n);
}

static size_t put_header(unsigned char *h, int opcode, bool fin, unsigned long long len)
{
    size_t n = 2;
    h[0] = (unsigned char)((fin ? 0x80 : 0) | (opcode & 0xF));
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    } else if (len <= 0xFFFF) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        n = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        n = 10;
    }
    return n;
}

size_t fyc_ws_frame(unsigned char *f, int opcode, bool fin, const void *data, size_t len)
{
    size_t hl = put_header(f, opcode, fin, len);
    unsigned char mask[4];
    for (int i = 0; i < 4; i++)
        mask[i] = (unsigned char)rand();
    memcpy(f + hl, mask, 4);
    for (size_t i = 0; i < len; i++)
        f[hl + 4 + i] = ((const unsigned char *)data)[i] ^ mask[i & 3];
    return hl + 4 + len;
}

int fyc_ws_send(fyc_ws *ws, int opcode, bool fin, const void *data, size_t len)
{
    unsigned char *f = malloc(14 + len);
    if (!f)
        return -1;
    int rc = write_all(ws->fd, f, fyc_ws_frame(f, opcode, fin, data, len));
    free(f);
    return rc;
}

int fyc_ws_text(fyc_ws *ws, const char *text)
{
    return fyc_ws_send(ws, 1, true, text, strlen(text));
}

int fyc_ws_send_header(fyc_ws *ws, int opcode, unsigned long long len)
{
    unsigned char h[14];
    size_t hl = put_header(h, opcode, true, len);
    memset(h + hl, 0, 4);
    return write_all(ws->fd, h, hl + 4);
}

int fyc_ws_recv(fyc_ws *ws, int *op, char **data, size_t *len, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (ws->len >= 2) {
            const unsigned char *b = (const unsigned char *)ws->buf;
            size_t hl = 2;
            unsigned long long pl = b[1] & 0x7F;
            if (pl == 126) {
                hl = 4;
                if (ws->len >= hl)
                    pl = ((unsigned long long)b[2] << 8) | b[3];
            } else if (pl == 127) {
                hl = 10;
                if (ws->len >= hl) {
                    pl = 0;
                    for (int i = 0; i < 8; i++)
                        pl = (pl << 8) | b[2 + i];
                }
            }
            if (b[1] & 0x80)
                return -1; /* servers never mask */
            if (ws->len >= hl && ws->len - hl >= pl) {
                *op = b[0] & 0xF;
                *len = (size_t)pl;
                *data = malloc(pl + 1);
                memcpy(*data, ws->buf + hl, pl);
                (*data)[pl] = '\0';
                memmove(ws->buf, ws->buf + hl + pl, ws->len - hl - pl);
                ws->len -= hl + pl;
                return 0;
            }
        }
        if (ws->fd < 0)
            return -1;
        int r = read_more(ws->fd, &ws->buf, &ws->len, &ws->cap, deadline);
        if (r == -2)
            return -2;
        if (r <= 0)
            return -1;
    }
}

int fyc_ws_wait_close(fyc_ws *ws, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - now_ms();
        int op;
        char *data;
        size_t len;
        int r = fyc_ws_recv(ws, &op, &data, &len, left > 0 ? (int)left : 0);
        if (r == -2)
            return 0;
        if (r == -1)
            return -1;
        int code = op != 8 ? 0 : len >= 2 ? ((unsigned char)data[0] << 8) | (unsigned char)data[1] : 1005;
        free(data);
        if (code)
            return code;
    }
}

void fyc_ws_drop(fyc_ws *ws)
{
    if (ws->fd >= 0)
        close(ws->fd);
    ws->fd = -1;
    free(ws->buf);
    ws->buf = NULL;
    ws->len = ws->cap = 0;
}
