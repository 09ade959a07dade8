/*
 * The HTTP/1 request-stream validator (see http1_guard.h). One state machine over bytes: heads, chunk framing and
 * trailers are read a byte at a time (they are short), Content-Length bodies and chunk data are skipped in bulk.
 */
#include <string.h>
#include <strings.h>
#include "weir/http1_guard.h"
#include "weir/text.h"

enum {
    S_REQ_START, /* at a request boundary (also matching the HTTP/2 preface) */
    S_LEADING_LF,
    S_METHOD,
    S_TARGET,
    S_VERSION,
    S_FIELD_START,
    S_FIELD_NAME,
    S_FIELD_OWS,
    S_FIELD_VALUE,
    S_FIELD_LF,
    S_HEAD_LF,
    S_BODY,
    S_CHUNK_SIZE,
    S_CHUNK_BWS,
    S_CHUNK_EXT,
    S_CHUNK_SIZE_LF,
    S_CHUNK_DATA,
    S_CHUNK_DATA_CR,
    S_CHUNK_DATA_LF,
    S_DONE, /* passed or failed: nothing more is read */
};

enum {
    FIELD_OTHER,
    FIELD_CONTENT_LENGTH,
    FIELD_TRANSFER_ENCODING,
    FIELD_HOST,
};

static const char PREFACE[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof(PREFACE) - 1)
static const char VERSION[] = "HTTP/1.";
#define MAX_CHUNK_EXT 1024

/* RFC 9110 tchar */
static int is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && memchr(extra, c, sizeof(extra) - 1));
}

/* field-content: VCHAR, obs-text, SP, HTAB */
static int is_value_char(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

static void begin_request(weir_http1_guard_t *g);

void weir_http1_guard_init(weir_http1_guard_t *g, uint64_t max_body)
{
    memset(g, 0, sizeof(*g));
    g->max_body = max_body;
    begin_request(g);
}

const char *weir_http1_guard_reason(int status)
{
    switch (status) {
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Bad Request";
    }
}

static int fail(weir_http1_guard_t *g, int status, const char *error)
{
    g->status = WEIR_HTTP1_GUARD_ERROR;
    g->error_status = status;
    g->error = error;
    g->state = S_DONE;
    return -1;
}

static void begin_request(weir_http1_guard_t *g)
{
    g->request_start = g->offset;
    g->state = S_REQ_START;
    g->leading_crlf = 0;
    g->num_fields = 0;
    g->host_count = 0;
    g->cl_count = 0;
    g->te_count = 0;
    g->te_chunked = 0;
    g->in_trailer = 0;
    g->head_len = 0;
    g->line_len = 0;
    g->version_pos = 0;
    g->body_total = 0;
}

/* The request ends with the byte just read (g->offset is past it). */
static void request_done(weir_http1_guard_t *g)
{
    g->released = g->offset;
    ++g->requests;
    begin_request(g);
}

/* The end of a field line: applies what the field means for framing. */
static int end_field(weir_http1_guard_t *g)
{
    size_t vlen = g->value_trimmed_len;
    const char *v = g->value;

    if (++g->num_fields > WEIR_HTTP1_MAX_FIELDS)
        return fail(g, 431, "too many header fields");
    if (g->in_trailer) {
        /* framing and routing cannot be changed after the body */
        if (g->field_kind != FIELD_OTHER)
            return fail(g, 400, "Content-Length, Transfer-Encoding or Host in a trailer");
        return 0;
    }
    switch (g->field_kind) {
    case FIELD_CONTENT_LENGTH: {
        uint64_t n = 0;
        if (++g->cl_count > 1)
            return fail(g, 400, "more than one Content-Length header");
        if (vlen == 0 || g->value_len > sizeof(g->value))
            return fail(g, 400, "invalid Content-Length");
        for (size_t i = 0; i < vlen; ++i) {
            unsigned d = (unsigned char)v[i] - '0';
            if (d > 9)
                return fail(g, 400, "invalid Content-Length");
            if (n > (UINT64_MAX - d) / 10)
                return fail(g, 413, "request body too large");
            n = n * 10 + d;
        }
        g->content_length = n;
    } break;
    case FIELD_TRANSFER_ENCODING:
        if (++g->te_count > 1)
            return fail(g, 400, "more than one Transfer-Encoding header");
        /* h2o understands chunked only; anything else ("gzip, chunked", "identity", "xchunked") is refused here rather
         * than left to be read one way by weir and another way by a proxy in front */
        if (g->value_len > sizeof(g->value) || vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
            return fail(g, 400, "unsupported Transfer-Encoding (only \"chunked\" is accepted)");
        g->te_chunked = 1;
        break;
    case FIELD_HOST:
        if (++g->host_count > 1)
            return fail(g, 400, "more than one Host header");
        break;
    }
    return 0;
}

/* The end of the header section: decides how the body is framed. */
static int end_head(weir_http1_guard_t *g)
{
    if (g->in_trailer) {
        request_done(g);
        return 0;
    }
    if (g->host_count == 0 && g->minor_version == 1)
        return fail(g, 400, "missing Host header");
    if (g->te_count != 0) {
        if (g->cl_count != 0)
            return fail(g, 400, "both Transfer-Encoding and Content-Length");
        if (g->minor_version == 0)
            return fail(g, 400, "Transfer-Encoding in an HTTP/1.0 request");
        /* the whole chunked message is held back until it has ended */
        g->chunk_digits = 0;
        g->remaining = 0;
        g->state = S_CHUNK_SIZE;
        return 0;
    }
    if (g->cl_count != 0 && g->content_length != 0) {
        if (g->content_length > g->max_body)
            return fail(g, 413, "request body too large");
        /* the head and then the body as it comes: a Content-Length body has no framing inside */
        g->released = g->offset;
        g->remaining = g->content_length;
        g->state = S_BODY;
        return 0;
    }
    request_done(g);
    return 0;
}

/* One byte of a head, a chunk-size line, chunk delimiters or trailers; g->offset is already past it.
 * @return 0, or -1 after fail(). */
static int step(weir_http1_guard_t *g, unsigned char c)
{
    switch (g->state) {
    case S_LEADING_LF:
        if (c != '\n')
            return fail(g, 400, "malformed request line");
        g->request_start = g->offset;
        g->state = S_REQ_START;
        return 0;
    case S_REQ_START:
        if (c == '\r' && g->leading_crlf == 0) {
            /* one empty line before a request is tolerated (RFC 9112 2.2), as h2o's parser does */
            g->leading_crlf = 1;
            g->state = S_LEADING_LF;
            return 0;
        }
        g->state = S_METHOD;
        /* fall through */
    case S_METHOD:
        if (++g->line_len > WEIR_HTTP1_MAX_REQUEST_LINE)
            return fail(g, 414, "request line too long");
        if (c == ' ') {
            if (g->line_len == 1)
                return fail(g, 400, "malformed request line");
            g->name_len = 0; /* counts the target's bytes */
            g->state = S_TARGET;
            return 0;
        }
        if (!is_tchar(c))
            return fail(g, 400, "malformed request line");
        return 0;
    case S_TARGET:
        if (++g->line_len > WEIR_HTTP1_MAX_REQUEST_LINE)
            return fail(g, 414, "request line too long");
        if (c == ' ') {
            if (g->name_len == 0)
                return fail(g, 400, "malformed request line");
            g->state = S_VERSION;
            g->version_pos = 0;
            return 0;
        }
        if (c <= 0x20 || c >= 0x7f)
            return fail(g, 400, "invalid character in the request target");
        ++g->name_len;
        return 0;
    case S_VERSION:
        if (++g->line_len > WEIR_HTTP1_MAX_REQUEST_LINE)
            return fail(g, 414, "request line too long");
        if (g->version_pos < sizeof(VERSION) - 1) {
            if (c != (unsigned char)VERSION[g->version_pos])
                return fail(g, 400, "unsupported HTTP version");
        } else if (g->version_pos == sizeof(VERSION) - 1) {
            if (c != '0' && c != '1')
                return fail(g, 400, "unsupported HTTP version");
            g->minor_version = c - '0';
        } else if (g->version_pos == sizeof(VERSION)) {
            if (c != '\r')
                return fail(g, 400, c == '\n' ? "bare LF in the request line" : "malformed request line");
        } else {
            if (c != '\n')
                return fail(g, 400, "bare CR in the request line");
            g->name_len = 0;
            g->line_len = 0;
            g->state = S_FIELD_START;
            return 0;
        }
        ++g->version_pos;
        return 0;
    case S_FIELD_START:
        if (c == '\r') {
            g->state = S_HEAD_LF;
            return 0;
        }
        if (c == ' ' || c == '\t')
            return fail(g, 400, "obsolete line folding in a header field");
        if (!is_tchar(c))
            return fail(g, 400, c == '\n' ? "bare LF in the header section" : "malformed header field name");
        g->state = S_FIELD_NAME;
        g->name_len = 0;
        /* fall through */
    case S_FIELD_NAME:
        if (c == ':') {
            g->field_kind = FIELD_OTHER;
            if (g->name_len == 14 && strncasecmp(g->name, "content-length", 14) == 0)
                g->field_kind = FIELD_CONTENT_LENGTH;
            else if (g->name_len == 17 && strncasecmp(g->name, "transfer-encoding", 17) == 0)
                g->field_kind = FIELD_TRANSFER_ENCODING;
            else if (g->name_len == 4 && strncasecmp(g->name, "host", 4) == 0)
                g->field_kind = FIELD_HOST;
            g->value_len = 0;
            g->value_trimmed_len = 0;
            g->state = S_FIELD_OWS;
            return 0;
        }
        if (!is_tchar(c))
            return fail(g, 400,
                        c == ' ' || c == '\t' ? "white space before the colon of a header field" : "malformed header field name");
        if (g->name_len < sizeof(g->name))
            g->name[g->name_len] = (char)c;
        ++g->name_len;
        return 0;
    case S_FIELD_OWS:
        if (c == ' ' || c == '\t')
            return 0;
        g->state = S_FIELD_VALUE;
        /* fall through */
    case S_FIELD_VALUE:
        if (c == '\r') {
            g->state = S_FIELD_LF;
            return 0;
        }
        if (!is_value_char(c))
            return fail(g, 400, c == '\n' ? "bare LF in the header section" : "invalid character in a header field value");
        if (g->field_kind != FIELD_OTHER) {
            if (g->value_len < sizeof(g->value))
                g->value[g->value_len] = (char)c;
            ++g->value_len;
            if (c != ' ' && c != '\t')
                g->value_trimmed_len = g->value_len;
        }
        return 0;
    case S_FIELD_LF:
        if (c != '\n')
            return fail(g, 400, "bare CR in the header section");
        g->line_len = 0;
        g->state = S_FIELD_START;
        return end_field(g);
    case S_HEAD_LF:
        if (c != '\n')
            return fail(g, 400, "bare CR in the header section");
        return end_head(g);
    case S_CHUNK_SIZE: {
        int v = weir_hex_digit(c);
        if (v >= 0) {
            if (++g->chunk_digits > 16)
                return fail(g, 413, "request body too large");
            g->remaining = g->remaining << 4 | (unsigned)v;
            return 0;
        }
        if (g->chunk_digits == 0)
            return fail(g, 400, "malformed chunk size");
        if (c == '\r') {
            g->state = S_CHUNK_SIZE_LF;
        } else if (c == ';') {
            g->ext_len = 0;
            g->state = S_CHUNK_EXT;
        } else if (c == ' ' || c == '\t') {
            g->state = S_CHUNK_BWS;
        } else {
            return fail(g, 400, "malformed chunk size");
        }
        return 0;
    }
    case S_CHUNK_BWS:
        if (c == ' ' || c == '\t')
            return 0;
        if (c != ';')
            return fail(g, 400, "malformed chunk size");
        g->ext_len = 0;
        g->state = S_CHUNK_EXT;
        return 0;
    case S_CHUNK_EXT:
        if (c == '\r') {
            g->state = S_CHUNK_SIZE_LF;
            return 0;
        }
        if (!is_value_char(c) || ++g->ext_len > MAX_CHUNK_EXT)
            return fail(g, 400, "malformed chunk extension");
        return 0;
    case S_CHUNK_SIZE_LF:
        if (c != '\n')
            return fail(g, 400, "malformed chunk size");
        if (g->remaining == 0) {
            /* the last chunk: trailers (if any) end the message */
            g->in_trailer = 1;
            g->num_fields = 0;
            g->head_len = 0;
            g->line_len = 0;
            g->state = S_FIELD_START;
            return 0;
        }
        if (g->remaining > g->max_body || g->body_total + g->remaining > g->max_body)
            return fail(g, 413, "request body too large");
        g->body_total += g->remaining;
        g->state = S_CHUNK_DATA;
        return 0;
    case S_CHUNK_DATA_CR:
        if (c != '\r')
            return fail(g, 400, "malformed chunk");
        g->state = S_CHUNK_DATA_LF;
        return 0;
    case S_CHUNK_DATA_LF:
        if (c != '\n')
            return fail(g, 400, "malformed chunk");
        g->chunk_digits = 0;
        g->remaining = 0;
        g->state = S_CHUNK_SIZE;
        return 0;
    default:
        return -1;
    }
}

/* The limits of a header section (and of a trailer section), counted over @p n more bytes of it. */
static int count_head(weir_http1_guard_t *g, size_t n)
{
    if (g->state >= S_FIELD_START && (g->line_len += n) > WEIR_HTTP1_MAX_FIELD_LINE)
        return fail(g, 431, "header field too long");
    if ((g->head_len += n) > WEIR_HTTP1_MAX_HEAD)
        return fail(g, 431, "header section too large");
    return 0;
}

/* One byte through the state machine, counted against the head's limits when it belongs to a head. */
static int feed_byte(weir_http1_guard_t *g, unsigned char c)
{
    if (g->state <= S_HEAD_LF && count_head(g, 1) != 0)
        return -1;
    ++g->offset;
    return step(g, c);
}

weir_http1_guard_status_t weir_http1_guard_feed(weir_http1_guard_t *g, const char *p, size_t len)
{
    const unsigned char *s = (const unsigned char *)p, *end = s + len;

    if (g->state == S_DONE)
        return g->status;
    while (s < end) {
        if (g->state == S_BODY || g->state == S_CHUNK_DATA) {
            size_t n = (size_t)(end - s) < g->remaining ? (size_t)(end - s) : (size_t)g->remaining;
            s += n;
            g->offset += n;
            g->remaining -= n;
            if (g->state == S_BODY) {
                g->released = g->offset;
                if (g->remaining == 0)
                    request_done(g);
            } else if (g->remaining == 0) {
                g->state = S_CHUNK_DATA_CR;
            }
            continue;
        }
        if (g->state == S_REQ_START && (g->preface_matched != 0 || *s == 'P')) {
            /* Possibly the HTTP/2 connection preface: match it, and replay what matched if it is not. */
            if (*s == (unsigned char)PREFACE[g->preface_matched]) {
                ++s;
                ++g->offset;
                if (++g->preface_matched == PREFACE_LEN) {
                    g->pass_at = g->offset - PREFACE_LEN;
                    g->released = g->offset;
                    g->status = WEIR_HTTP1_GUARD_PASS;
                    g->state = S_DONE;
                    return WEIR_HTTP1_GUARD_PASS;
                }
                continue;
            }
            unsigned matched = g->preface_matched;
            g->preface_matched = 0;
            g->offset -= matched;
            for (unsigned i = 0; i < matched; ++i)
                if (feed_byte(g, (unsigned char)PREFACE[i]) != 0)
                    return WEIR_HTTP1_GUARD_ERROR;
            continue; /* the current byte is read next, in the state the replay left */
        }
        if (feed_byte(g, *s++) != 0)
            return WEIR_HTTP1_GUARD_ERROR;
        if (g->state == S_FIELD_VALUE && g->field_kind == FIELD_OTHER) {
            /* a run of plain value bytes is skipped without the state machine */
            const unsigned char *run = s;
            while (s < end && *s != '\r' && is_value_char(*s))
                ++s;
            if (s != run && count_head(g, (size_t)(s - run)) != 0)
                return WEIR_HTTP1_GUARD_ERROR;
            g->offset += (uint64_t)(s - run);
        }
    }
    return WEIR_HTTP1_GUARD_OK;
}
