/* libFuzzer target: the frame decoder on arbitrary bytes. Whatever it is given, it must
 * either decode frames whose fields have the promised types and ranges, or fail with a wire
 * error and a message, without leaking or reading out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const fy_limits lim = {.max_bytes = 4096, .max_depth = 8, .max_batch = 16, .max_elements = 256};
    json_t *root;
    fy_frame *fs;
    size_t n;
    fy_err err;
    int rc = fy_frame_decode((const char *)data, size, &lim, &root, &fs, &n, &err);
    if (rc) {
        if (rc >= 0 || strlen(err.text) == 0 || err.code != rc)
            abort();
        ferry_buf b = {0};
        if (fy_enc_error(&b, rc, err.text) != 0) /* the peer's error frame must encode */
            abort();
        ferry_buf_release(&b);
        return 0;
    }
    if (n == 0 || n > lim.max_batch)
        abort();
    for (size_t i = 0; i < n; i++) {
        const fy_frame *f = &fs[i];
        if ((f->type == FY_F_MSG && (f->seq == 0 || f->seq > FY_SEQ_MAX || !f->data)) ||
            (f->type == FY_F_RESUME && (!f->sid || !f->secret)) ||
            ((f->type == FY_F_SUB || f->type == FY_F_UNSUB) && !f->topic))
            abort();
    }
    free(fs);
    json_decref(root);
    return 0;
}
