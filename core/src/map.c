#include "map.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "ferry.h"

static uint64_t hash_key(const fy_map *m, const char *key, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, (const unsigned char *)key, len, m->seed);
    memcpy(&h, out, sizeof h);
    return h;
}

int fy_map_init(fy_map *m)
{
    memset(m, 0, sizeof *m);
    m->nslots = 64;
    m->slots = calloc(m->nslots, sizeof *m->slots);
    if (!m->slots)
        return FERRY_ENOMEM;
    randombytes_buf(m->seed, sizeof m->seed);
    return 0;
}

void fy_map_destroy(fy_map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->nslots = m->count = 0;
}

fy_map_node *fy_map_get(const fy_map *m, const char *key, size_t len)
{
    uint64_t h = hash_key(m, key, len);
    for (fy_map_node *n = m->slots[h & (m->nslots - 1)]; n; n = n->next)
        if (n->hash == h && strncmp(n->key, key, len) == 0 && n->key[len] == '\0')
            return n;
    return NULL;
}

static void resize(fy_map *m)
{
    size_t nslots = m->nslots * 2;
    fy_map_node **slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return; /* keep the longer chains; still correct */
    for (size_t i = 0; i < m->nslots; i++) {
        fy_map_node *n = m->slots[i];
        while (n) {
            fy_map_node *next = n->next;
            fy_map_node **slot = &slots[n->hash & (nslots - 1)];
            n->next = *slot;
            *slot = n;
            n = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = nslots;
}

void fy_map_put(fy_map *m, fy_map_node *n)
{
    if (m->count >= m->nslots)
        resize(m);
    n->hash = hash_key(m, n->key, strlen(n->key));
    fy_map_node **slot = &m->slots[n->hash & (m->nslots - 1)];
    n->next = *slot;
    *slot = n;
    m->count++;
}

void fy_map_del(fy_map *m, fy_map_node *n)
{
    for (fy_map_node **p = &m->slots[n->hash & (m->nslots - 1)]; *p; p = &(*p)->next) {
        if (*p == n) {
            *p = n->next;
            m->count--;
            return;
        }
    }
}

void fy_map_each(fy_map *m, void (*fn)(fy_map_node *n, void *ud), void *ud)
{
    for (size_t i = 0; i < m->nslots; i++) {
        fy_map_node *n = m->slots[i];
        while (n) {
            fy_map_node *next = n->next;
            fn(n, ud);
            n = next;
        }
    }
}
