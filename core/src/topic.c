#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "session.h"

#define FY_TOPIC_MAX 128

/* A subscription: in its topic's array (at idx) and in its session's list. */
struct fy_sub {
    fy_topic *topic;
    ferry_session *s;
    size_t idx;
    fy_sub *next;
};

struct fy_topic {
    fy_map_node node;
    fy_sub **subs;
    size_t n, cap;
    char name[];
};

bool fy_topic_name_ok(const char *name)
{
    size_t len = 0;
    if (!name)
        return false;
    for (; name[len]; len++) {
        char c = name[len];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == ':' || c == '/' || c == '-';
        if (!ok || len >= FY_TOPIC_MAX)
            return false;
    }
    return len > 0;
}

fy_topic *fy_topic_find(ferry_hub *hub, const char *name)
{
    fy_map_node *n = fy_map_get(&hub->topics, name, strlen(name));
    return n ? fy_container_of(n, fy_topic, node) : NULL;
}

ferry_session *fy_topic_subscriber(const fy_topic *t, size_t i)
{
    return t->subs[i]->s;
}

size_t fy_topic_size(const fy_topic *t)
{
    return t->n;
}

int fy_topic_subscribe(ferry_hub *hub, ferry_session *s, const char *name)
{
    for (fy_sub *sub = s->subs; sub; sub = sub->next)
        if (strcmp(sub->topic->name, name) == 0)
            return 0;
    fy_sub *sub = malloc(sizeof *sub);
    fy_topic *t = fy_topic_find(hub, name);
    bool fresh = !t;
    if (sub && fresh) {
        size_t len = strlen(name);
        t = calloc(1, sizeof *t + len + 1);
        if (t) {
            memcpy(t->name, name, len + 1);
            t->node.key = t->name;
        }
    }
    if (sub && t && t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        fy_sub **subs = realloc(t->subs, cap * sizeof *subs);
        if (subs) {
            t->subs = subs;
            t->cap = cap;
        }
    }
    if (!sub || !t || t->n == t->cap) {
        free(sub);
        if (fresh && t) {
            free(t->subs);
            free(t);
        }
        return FERRY_ENOMEM;
    }
    if (fresh)
        fy_map_put(&hub->topics, &t->node);
    *sub = (fy_sub){.topic = t, .s = s, .idx = t->n, .next = s->subs};
    t->subs[t->n++] = sub;
    s->subs = sub;
    return 0;
}

static void drop(ferry_hub *hub, fy_sub *sub)
{
    fy_topic *t = sub->topic;
    fy_sub *last = t->subs[--t->n];
    t->subs[sub->idx] = last;
    last->idx = sub->idx;
    free(sub);
    if (t->n == 0) {
        fy_map_del(&hub->topics, &t->node);
        free(t->subs);
        free(t);
    }
}

void fy_topic_unsubscribe(ferry_hub *hub, ferry_session *s, const char *name)
{
    for (fy_sub **p = &s->subs; *p; p = &(*p)->next) {
        if (strcmp((*p)->topic->name, name) == 0) {
            fy_sub *sub = *p;
            *p = sub->next;
            drop(hub, sub);
            s->unsubs++;
            return;
        }
    }
}

void fy_topic_unsubscribe_all(ferry_hub *hub, ferry_session *s)
{
    while (s->subs) {
        fy_sub *sub = s->subs;
        s->subs = sub->next;
        drop(hub, sub);
        s->unsubs++;
    }
}

bool fy_topic_subscribed(const ferry_session *s, const char *name)
{
    for (const fy_sub *sub = s->subs; sub; sub = sub->next)
        if (strcmp(sub->topic->name, name) == 0)
            return true;
    return false;
}
