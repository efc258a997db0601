#include "handles.h"

#include "session.h"

int fy_handles_init(fy_handles *h)
{
    if (fy_map_init(&h->map))
        return FERRY_ENOMEM;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&h->lock, &a);
    pthread_mutexattr_destroy(&a);
    return 0;
}

static void drop_node(fy_map_node *n, void *ud)
{
    fy_map_del(ud, n);
    ferry_session_unref(fy_container_of(n, ferry_session, node));
}

void fy_handles_destroy(fy_handles *h)
{
    fy_map_each(&h->map, drop_node, &h->map);
    fy_map_destroy(&h->map);
    pthread_mutex_destroy(&h->lock);
}

void fy_handles_put(fy_handles *h, ferry_session *s)
{
    s->node.key = s->id;
    ferry_session_ref(s);
    pthread_mutex_lock(&h->lock);
    fy_map_put(&h->map, &s->node);
    pthread_mutex_unlock(&h->lock);
}

ferry_session *fy_handles_find(fy_handles *h, const char *id, size_t len,
                               ferry_session *(*make)(void *ud), void *ud)
{
    pthread_mutex_lock(&h->lock);
    fy_map_node *n = fy_map_get(&h->map, id, len);
    ferry_session *s = n ? fy_container_of(n, ferry_session, node) : NULL;
    if (!s && make && (s = make(ud))) {
        s->node.key = s->id;
        fy_map_put(&h->map, &s->node); /* make's reference is the one held */
    }
    if (s)
        ferry_session_ref(s);
    pthread_mutex_unlock(&h->lock);
    return s;
}

void fy_handles_del(fy_handles *h, ferry_session *s)
{
    pthread_mutex_lock(&h->lock);
    fy_map_del(&h->map, &s->node);
    pthread_mutex_unlock(&h->lock);
    ferry_session_unref(s);
}

struct each_ctx {
    void (*fn)(ferry_session *s, void *ud);
    void *ud;
};

static void each_node(fy_map_node *n, void *ud)
{
    struct each_ctx *c = ud;
    c->fn(fy_container_of(n, ferry_session, node), c->ud);
}

void fy_handles_each(fy_handles *h, void (*fn)(ferry_session *s, void *ud), void *ud)
{
    struct each_ctx c = {fn, ud};
    pthread_mutex_lock(&h->lock);
    fy_map_each(&h->map, each_node, &c);
    pthread_mutex_unlock(&h->lock);
}

size_t fy_handles_count(fy_handles *h)
{
    pthread_mutex_lock(&h->lock);
    size_t n = h->map.count;
    pthread_mutex_unlock(&h->lock);
    return n;
}
