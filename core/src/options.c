/* The hub's options: defaults, the sized-struct rule (ferry.h, "Sized structs"), and the
 * checks that say which option is wrong and why. */
#include <string.h>

#include "ferry_transport.h"
#include "hub.h"
#include "log.h"

int fy_size_check(size_t size, size_t known, const char *caller, const char *type)
{
    if (size == 0) {
        fy_log(FERRY_LOG_ERROR, "%s: %s.size is 0: fill the struct with its init function, or "
               "set .size = sizeof(%s)", caller, type, type);
        return FERRY_EINVAL;
    }
    if (size < sizeof(size_t) || size > known) {
        fy_log(FERRY_LOG_ERROR, "%s: %s.size is %zu, but this library (ferry %s) knows %zu "
               "bytes of it: the application was built against a newer ferry.h, or did not "
               "set size", caller, type, size, FERRY_VERSION_STRING, known);
        return FERRY_EINVAL;
    }
    return FERRY_OK;
}

int ferry_sized_copy(void *dst, size_t dst_size, const void *src, const char *caller,
                     const char *type)
{
    if (!dst || dst_size < sizeof(size_t) || !src || !caller || !type)
        return FERRY_EINVAL;
    size_t size;
    memcpy(&size, src, sizeof size);
    if (fy_size_check(size, dst_size, caller, type))
        return FERRY_EINVAL;
    memcpy(dst, src, size);
    memcpy(dst, &dst_size, sizeof dst_size);
    return FERRY_OK;
}

int fy_options_load(ferry_options *dst, const ferry_options *src, const char *caller)
{
    ferry_options_init(dst);
    return src ? ferry_sized_copy(dst, sizeof *dst, src, caller, "ferry_options") : FERRY_OK;
}

void ferry_callbacks_init(ferry_callbacks *cb)
{
    if (cb)
        *cb = (ferry_callbacks){.size = sizeof *cb};
}

void ferry_options_init(ferry_options *o)
{
    if (!o)
        return;
    *o = (ferry_options){
        .size = sizeof *o,
        .max_frame_bytes = 64 * 1024,
        .max_message_bytes = 60 * 1024,
        .max_depth = 16,
        .max_elements = 4096,
        .max_batch = 128,
        .max_batch_bytes = 64 * 1024,
        .ack_window_bytes = 64 * 1024,
        .outbox_max_msgs = 1024,
        .outbox_max_bytes = 1024 * 1024,
        .max_sessions = 100000,
        .max_sessions_per_identity = 100,
        .outbox_budget_bytes = (size_t)512 * 1024 * 1024,
        .heartbeat_ms = 25000,
        .heartbeat_timeout_ms = 60000,
        .stall_timeout_ms = 10000,
        .resume_window_ms = 120000,
        .tombstone_ms = 120000,
        .resume_burst = 20,
        .resume_rate = 5,
    };
}

int fy_options_check(const ferry_options *o, const char *caller, const char *prefix)
{
    const struct {
        const char *name;
        unsigned long long value;
    } nonzero[] = {
        {"max_frame_bytes", o->max_frame_bytes},
        {"max_message_bytes", o->max_message_bytes},
        {"max_depth", o->max_depth},
        {"max_elements", o->max_elements},
        {"max_batch", o->max_batch},
        {"max_batch_bytes", o->max_batch_bytes},
        {"ack_window_bytes", o->ack_window_bytes},
        {"outbox_max_msgs", o->outbox_max_msgs},
        {"outbox_max_bytes", o->outbox_max_bytes},
        {"max_sessions", o->max_sessions},
        {"outbox_budget_bytes", o->outbox_budget_bytes},
        {"heartbeat_ms", o->heartbeat_ms},
        {"stall_timeout_ms", o->stall_timeout_ms},
        {"resume_window_ms", o->resume_window_ms},
    };
    for (size_t i = 0; i < sizeof nonzero / sizeof nonzero[0]; i++) {
        if (!nonzero[i].value) {
            fy_log(FERRY_LOG_ERROR, "%s: %s%s must be at least 1", caller, prefix,
                   nonzero[i].name);
            return FERRY_EINVAL;
        }
    }
    if (o->heartbeat_timeout_ms <= o->heartbeat_ms) {
        fy_log(FERRY_LOG_ERROR, "%s: %sheartbeat_timeout_ms (%u) must be above %sheartbeat_ms (%u)",
               caller, prefix, (unsigned)o->heartbeat_timeout_ms, prefix,
               (unsigned)o->heartbeat_ms);
        return FERRY_EINVAL;
    }
    if (o->resume_rate && !o->resume_burst) {
        fy_log(FERRY_LOG_ERROR,
               "%s: %sresume_burst must be at least 1 while %sresume_rate is set (%u); "
               "set %sresume_rate to 0 to turn the limit off",
               caller, prefix, prefix, o->resume_rate, prefix);
        return FERRY_EINVAL;
    }
    return FERRY_OK;
}
