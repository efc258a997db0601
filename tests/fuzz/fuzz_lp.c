/* libFuzzer target: the long-poll request parsers. The input is a query string and an
 * Authorization value separated by a newline. Whatever they hold, an accepted ack is in
 * range and accepted credentials are a short sid and a secret inside the header. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mount.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    char *nl = strchr(in, '\n');
    const char *auth = "";
    if (nl) {
        *nl = '\0';
        auth = nl + 1;
    }
    uint64_t ack = 0;
    if (fy_lp_parse_ack(in, &ack) && ack > 9007199254740991ull)
        abort();
    char sid[32];
    const char *secret = NULL;
    if (fy_lp_credentials(auth, sid, &secret)) {
        if (strlen(sid) >= 32 || !secret || secret < auth || secret > auth + strlen(auth))
            abort();
    }
    free(in);
    return 0;
}
