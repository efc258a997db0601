/* <prefix>/health: whether a load balancer should send this node new clients. */
#include <stdlib.h>
#include <string.h>

#include "mount.h"

const char *fy_health_of(bool draining, int store_rc, int *status)
{
    *status = 503;
    if (draining)
        return "draining";
    if (store_rc != FERRY_OK)
        return "store_unavailable";
    *status = 200;
    return "ready";
}

const char *fy_health(ferry_mount *m, int *status, bool *store_up)
{
    int store_rc = ferry_hub_health(m->hub);
    *store_up = store_rc == FERRY_OK;
    bool draining = atomic_load(&m->draining) || atomic_load(&m->drain_started);
    return fy_health_of(draining, store_rc, status);
}

int fy_health_handler(struct mg_connection *conn, void *cbdata)
{
    ferry_mount *m = fy_mount_enter(cbdata);
    bool head, store_up;
    int status = 405;
    if (fy_http_get_or_head(conn, m, &head)) {
        const char *what = fy_health(m, &status, &store_up);
        json_t *o = json_pack("{ssss}", "status", what, "node", ferry_hub_node(m->hub));
        char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!body)
            status = 503; /* out of memory: not ready either */
        size_t len = body ? strlen(body) : 0;
        fy_http_reply(conn, m, status, NULL, "application/json", head ? NULL : body ? body : "",
                      len);
        free(body);
    }
    fy_mount_leave(m);
    return status;
}
