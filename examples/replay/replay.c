/* A session that loses its connection mid-stream and resumes without losing or repeating
 * anything, shown frame by frame. The "transport" here is an in-process loop: what a real
 * one does with sockets, this does with two ferry_link calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"
#include "ferry_transport.h"

/* Prints a frame with its resume secret masked: secrets stay out of logs, even here. */
static void print_frame(const char *dir, const char *text, size_t len)
{
    const char *key = "\"secret\":\"";
    const char *at = strstr(text, key);
    if (!at || (size_t)(at - text) >= len) {
        printf("  %s  %.*s\n", dir, (int)len, text);
        return;
    }
    const char *val = at + strlen(key), *end = strchr(val, '"');
    printf("  %s  %.*s<%d chars>%.*s\n", dir, (int)(val - text), text, (int)(end - val),
           (int)(len - (size_t)(end - text)), end);
}

static void on_open(ferry_session *s, void *ud)
{
    (void)ud;
    ferry_session_subscribe(s, "match/1");
    printf("app   session %s opened, subscribed to match/1\n", ferry_session_id(s));
}

static void on_message(ferry_session *s, json_t *data, void *ud)
{
    (void)s;
    (void)ud;
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    printf("app   got %s\n", text);
    free(text);
}

static void wake(void *ud)
{
    (void)ud;
}

static const ferry_link_ops ops = {sizeof ops, wake, NULL};

static void client_sends(ferry_link *l, const char *frame)
{
    print_frame("->", frame, strlen(frame));
    int rc = ferry_link_recv(l, frame, strlen(frame));
    if (rc)
        printf("      (%s)\n", ferry_strerror(rc));
}

/* Pulls and prints what the server would write; returns it for the client to read. */
static json_t *server_writes(ferry_link *l)
{
    ferry_buf b = {0};
    json_t *all = json_array();
    while (ferry_link_pull(l, &b, FERRY_PULL_ARRAY) > 0) {
        if (ferry_buf_reserve(&b, 1) == 0)
            b.data[b.len] = '\0';
        print_frame("<-", b.data, b.len);
        json_array_extend(all, json_loadb(b.data, b.len, 0, NULL));
        b.len = 0;
    }
    ferry_buf_release(&b);
    return all;
}

static void publish(ferry_hub *hub, int minute, const char *event)
{
    char text[128];
    snprintf(text, sizeof text, "{\"minute\":%d,\"event\":\"%s\"}", minute, event);
    ferry_hub_publish(hub, "match/1", text, strlen(text), NULL);
    printf("app   publish %s\n", text);
}

int main(void)
{
    ferry_hub *hub;
    ferry_callbacks cb = {.size = sizeof cb, .on_open = on_open, .on_message = on_message};
    if (ferry_hub_new(&hub, NULL, &cb, NULL))
        return 1;

    puts("== a client connects");
    ferry_link *a;
    ferry_link_new(&a, hub, &ops, NULL);
    client_sends(a, "{\"t\":\"hello\",\"v\":1}");
    json_t *got = server_writes(a);
    json_t *welcome = json_array_get(got, 0);
    char sid[32], secret[64];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(welcome, "sid")));
    snprintf(secret, sizeof secret, "%s", json_string_value(json_object_get(welcome, "secret")));
    json_decref(got);

    publish(hub, 12, "kick-off");
    publish(hub, 23, "goal home");
    json_decref(server_writes(a));
    client_sends(a, "{\"t\":\"msg\",\"seq\":1,\"data\":{\"cheer\":\"yes!\"}}");
    publish(hub, 31, "yellow card away");
    puts("== the connection drops before msg 3 reaches the client");
    ferry_link_free(a);
    publish(hub, 38, "goal away");
    publish(hub, 45, "half time");

    puts("== the client reconnects and resumes: it has seen seq 2, its own msg 1 was not acked");
    ferry_link *b;
    ferry_link_new(&b, hub, &ops, NULL);
    char resume[256];
    snprintf(resume, sizeof resume,
             "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":2}", sid, secret);
    client_sends(b, resume);
    json_decref(server_writes(b));
    puts("== it resends its msg 1 anyway: acked again, not delivered twice");
    client_sends(b, "{\"t\":\"msg\",\"seq\":1,\"data\":{\"cheer\":\"yes!\"}}");
    json_decref(server_writes(b));
    puts("== someone presents the secret the client has since replaced: a copy exists,");
    puts("   so the session ends (forked); the presenter gets what any stranger gets");
    ferry_link *c;
    ferry_link_new(&c, hub, &ops, NULL);
    snprintf(resume, sizeof resume,
             "{\"t\":\"resume\",\"v\":1,\"sid\":\"%s\",\"secret\":\"%s\",\"ack\":0}", sid, secret);
    client_sends(c, resume);
    json_decref(server_writes(c));
    puts("== and the client's own connection:");
    json_decref(server_writes(b));
    ferry_link_free(c);
    ferry_link_free(b);
    ferry_hub_free(hub);
    return 0;
}
