/* Stand-ins for ferry_hub_health and ferry_hub_node (declared in ferry.h), until the
 * cluster layer implements them: a hub without a cluster is always healthy and has no
 * node name. Removed when the implementation lands. */
#include "ferry.h"

int ferry_hub_health(ferry_hub *hub)
{
    return hub ? FERRY_OK : FERRY_EINVAL;
}

const char *ferry_hub_node(ferry_hub *hub)
{
    return hub ? "" : NULL;
}
