/* An intrusive hash map with string keys, hashed with SipHash under a random key so that
 * peers cannot aim lookups at one chain. Not locked. */
#ifndef FY_MAP_H
#define FY_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fy_map_node {
    struct fy_map_node *next;
    uint64_t hash;
    const char *key; /* NUL-terminated, owned by the containing object */
} fy_map_node;

typedef struct fy_map {
    fy_map_node **slots;
    size_t nslots; /* a power of two */
    size_t count;
    unsigned char seed[16];
} fy_map;

int fy_map_init(fy_map *m);
void fy_map_destroy(fy_map *m); /* frees the slots, not the nodes */
fy_map_node *fy_map_get(const fy_map *m, const char *key, size_t len);
/* Inserts `n` (its key set, not already present). If growing the table fails the chains
 * just get longer. */
void fy_map_put(fy_map *m, fy_map_node *n);
void fy_map_del(fy_map *m, fy_map_node *n);
/* Calls fn on every node; fn may delete the node it is given. */
void fy_map_each(fy_map *m, void (*fn)(fy_map_node *n, void *ud), void *ud);

#define fy_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
