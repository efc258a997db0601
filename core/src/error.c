/* Names for codes, reasons and limits, and the library's version. */
#include "ferry.h"

const char *ferry_strerror(int err)
{
    switch (err) {
    case FERRY_OK: return "success";
    case FERRY_ENOMEM: return "out of memory";
    case FERRY_EINVAL: return "invalid argument";
    case FERRY_ETOOBIG: return "frame, message or batch too big";
    case FERRY_EJSON: return "malformed JSON";
    case FERRY_EDEPTH: return "JSON nested too deeply";
    case FERRY_EDUPKEY: return "duplicate key in a JSON object";
    case FERRY_EFIELD: return "missing, mistyped or out-of-range field";
    case FERRY_EFRAMETYPE: return "unknown frame type";
    case FERRY_EVERSION: return "unsupported protocol version";
    case FERRY_EHANDSHAKE: return "frame out of place for the handshake";
    case FERRY_EACK: return "ack for a message never sent";
    case FERRY_ESEQ: return "message sequence skips ahead";
    case FERRY_ECAPACITY: return "session capacity reached";
    case FERRY_ECLOSED: return "session or link closed";
    case FERRY_ENOTFOUND: return "no such session";
    case FERRY_EFULL: return "outbox overflowed; session reset";
    case FERRY_EFORBIDDEN: return "subscription refused";
    case FERRY_EAUTH: return "credentials refused";
    case FERRY_ERATE: return "too many resume attempts";
    case FERRY_ESTORE: return "session store failed";
    case FERRY_EINTERNAL: return "a library ferry depends on failed to start";
    case FERRY_ELISTEN: return "the server could not start listening";
    case FERRY_ETIMEDOUT: return "the deadline passed first";
    default: return "unknown error";
    }
}

const char *ferry_limit_name(ferry_limit l)
{
    static const char *names[FERRY_LIMIT_COUNT] = {
        "frame_size", "depth", "elements", "batch", "outbox", "sessions", "connections",
        "stall", "heartbeat", "handshake_time", "control_rate", "resume_rate", "polls",
        "origin", "auth", "identity", "memory",
    };
    return (unsigned)l < FERRY_LIMIT_COUNT ? names[l] : "unknown";
}

const char *ferry_reason_str(ferry_reason r)
{
    switch (r) {
    case FERRY_REASON_UNKNOWN: return "unknown";
    case FERRY_REASON_EXPIRED: return "expired";
    case FERRY_REASON_OVERFLOW: return "overflow";
    case FERRY_REASON_CLOSED: return "closed";
    case FERRY_REASON_SERVER: return "server";
    case FERRY_REASON_SHUTDOWN: return "shutdown";
    case FERRY_REASON_FORKED: return "forked";
    default: return "none";
    }
}

unsigned long ferry_version(void)
{
    return FERRY_VERSION_NUMBER;
}

const char *ferry_version_string(void)
{
    return FERRY_VERSION_STRING;
}
