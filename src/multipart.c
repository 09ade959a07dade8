#include <errno.h>
#include <string.h>
#include "weir/multipart.h"

#define CRLF_ONLY "multipart line endings must be CRLF"
#define NO_FINAL "multipart body has no final boundary"

/* A read position in a header value. */
typedef struct st_cursor_t {
    const char *p, *end;
} cursor_t;

static int is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 2046 bchars (space included; it may not be last) */
static int is_bchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("'()+_,-./:=? ", c) != NULL);
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int iequals(h2o_iovec_t s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return 0;
    for (size_t i = 0; i != n; ++i)
        if (lower((unsigned char)s.base[i]) != lit[i])
            return 0;
    return 1;
}

static void skip_ows(cursor_t *c)
{
    while (c->p != c->end && (*c->p == ' ' || *c->p == '\t'))
        ++c->p;
}

static h2o_iovec_t take_token(cursor_t *c)
{
    const char *start = c->p;
    while (c->p != c->end && is_tchar((unsigned char)*c->p))
        ++c->p;
    return h2o_iovec_init(start, (size_t)(c->p - start));
}

/* A quoted-string at c->p (which is '"'). \" and \\ are escapes, any other backslash is itself (see multipart.h).
 * Without escapes the value points into the input; with them it is unescaped onto @p pool, and refused when @p pool
 * is NULL. The caller has checked that the line holds no control character but HTAB. */
static int take_quoted(cursor_t *c, h2o_mem_pool_t *pool, h2o_iovec_t *out)
{
    const char *start = ++c->p;
    size_t escapes = 0;

    for (;; ++c->p) {
        if (c->p == c->end)
            return -1;
        if (*c->p == '"')
            break;
        if (*c->p == '\\' && c->end - c->p >= 2 && (c->p[1] == '"' || c->p[1] == '\\'))
            ++c->p, ++escapes;
    }
    size_t raw_len = (size_t)(c->p - start);
    ++c->p;
    if (escapes == 0) {
        *out = h2o_iovec_init(start, raw_len);
        return 0;
    }
    if (pool == NULL)
        return -1;
    char *dst = h2o_mem_alloc_pool(pool, raw_len - escapes);
    size_t n = 0;
    for (size_t i = 0; i != raw_len; ++i) {
        if (start[i] == '\\' && i + 1 != raw_len && (start[i + 1] == '"' || start[i + 1] == '\\'))
            ++i;
        dst[n++] = start[i];
    }
    *out = h2o_iovec_init(dst, n);
    return 0;
}

/* The next parameter of a header value after its main value: *( OWS ";" OWS [ name OWS "=" OWS value ] ) OWS.
 * @return 1 with a parameter, 0 at the end, -1 when malformed. */
static int next_param(cursor_t *c, h2o_mem_pool_t *pool, h2o_iovec_t *name, h2o_iovec_t *value)
{
    for (;;) {
        skip_ows(c);
        if (c->p == c->end)
            return 0;
        if (*c->p++ != ';')
            return -1;
        skip_ows(c);
        if (c->p == c->end)
            return 0;
        if (*c->p != ';')
            break; /* (an empty parameter, ";;", is allowed: RFC 9110) */
    }
    if ((*name = take_token(c)).len == 0)
        return -1;
    skip_ows(c);
    if (c->p == c->end || *c->p++ != '=')
        return -1;
    skip_ows(c);
    if (c->p != c->end && *c->p == '"')
        return take_quoted(c, pool, value) == 0 ? 1 : -1;
    return (*value = take_token(c)).len != 0 ? 1 : -1;
}

/* The media type of a Content-Type value; c is left after it. */
static int take_media_type(cursor_t *c, h2o_iovec_t *type, h2o_iovec_t *subtype)
{
    skip_ows(c);
    if ((*type = take_token(c)).len == 0 || c->p == c->end || *c->p++ != '/')
        return -1;
    return (*subtype = take_token(c)).len != 0 ? 0 : -1;
}

int weir_multipart_is_form_data(const char *content_type, size_t len)
{
    cursor_t c = {content_type, content_type + len};
    h2o_iovec_t type, subtype;
    return take_media_type(&c, &type, &subtype) == 0 && iequals(type, "multipart") && iequals(subtype, "form-data");
}

static int fail(weir_multipart_t *mp, int error, const char *reason)
{
    mp->error = error;
    mp->reason = reason;
    return error;
}

/* After "--boundary" at q: the final boundary ("--", padding, then the end or CRLF and an epilogue) or a boundary
 * line (padding, CRLF). @return 1 for the final one, 0 for a line (mp->pos is then the next part), or the error. */
static int read_delimiter_tail(weir_multipart_t *mp, const char *q)
{
    const char *end = mp->end;
    int final = end - q >= 2 && q[0] == '-' && q[1] == '-';

    if (final)
        q += 2;
    while (q != end && (*q == ' ' || *q == '\t'))
        ++q;
    if (end - q >= 2 && q[0] == '\r' && q[1] == '\n') {
        mp->pos = q + 2;
        return final;
    }
    if (q != end && *q == '\n')
        return fail(mp, -EINVAL, CRLF_ONLY);
    if (final)
        return q == end ? 1 : fail(mp, -EINVAL, "unexpected bytes after the final multipart boundary");
    if (q == end || (end - q == 1 && *q == '\r'))
        return fail(mp, -EINVAL, NO_FINAL);
    return fail(mp, -EINVAL, "multipart boundary followed by unexpected bytes");
}

int weir_multipart_init(weir_multipart_t *mp, const char *content_type, size_t ct_len, const char *body, size_t body_len)
{
    cursor_t c = {content_type, content_type + ct_len};
    h2o_iovec_t type, subtype, name, value, boundary = {NULL, 0};
    const char *first;
    int ret;

    memset(mp, 0, sizeof(*mp));
    mp->pos = body;
    mp->end = body + body_len;

    if (take_media_type(&c, &type, &subtype) != 0)
        return fail(mp, -EINVAL, "malformed Content-Type");
    if (!iequals(type, "multipart") || !iequals(subtype, "form-data"))
        return fail(mp, -EINVAL, "Content-Type is not multipart/form-data");
    while ((ret = next_param(&c, NULL, &name, &value)) == 1) {
        if (!iequals(name, "boundary"))
            continue;
        if (boundary.base != NULL)
            return fail(mp, -EINVAL, "multipart boundary given twice");
        boundary = value;
    }
    if (ret != 0)
        return fail(mp, -EINVAL, "malformed Content-Type");
    if (boundary.base == NULL)
        return fail(mp, -EINVAL, "Content-Type has no multipart boundary");
    if (boundary.len == 0 || boundary.len > WEIR_MULTIPART_MAX_BOUNDARY || boundary.base[boundary.len - 1] == ' ')
        return fail(mp, -EINVAL, "multipart boundary is not 1 to 70 valid characters");
    for (size_t i = 0; i != boundary.len; ++i)
        if (!is_bchar((unsigned char)boundary.base[i]))
            return fail(mp, -EINVAL, "multipart boundary is not 1 to 70 valid characters");
    memcpy(mp->delim, "\r\n--", 4);
    memcpy(mp->delim + 4, boundary.base, boundary.len);
    mp->delim_len = 4 + boundary.len;

    /* The first boundary line starts the body, or follows a preamble and a CRLF. */
    if (body_len == 0)
        return fail(mp, -EINVAL, "multipart body has no boundary line");
    if (body_len >= mp->delim_len - 2 && memcmp(body, mp->delim + 2, mp->delim_len - 2) == 0) {
        first = body + mp->delim_len - 2;
    } else if ((first = memmem(body, body_len, mp->delim, mp->delim_len)) != NULL) {
        first += mp->delim_len;
    } else {
        /* the same with bare LFs, to say what is wrong */
        if (memmem(body, body_len, mp->delim + 1, mp->delim_len - 1) != NULL)
            return fail(mp, -EINVAL, CRLF_ONLY);
        return fail(mp, -EINVAL, "multipart body has no boundary line");
    }
    if ((ret = read_delimiter_tail(mp, first)) < 0)
        return ret;
    if (ret == 1)
        return fail(mp, -EINVAL, "multipart body has no parts");
    return 0;
}

/* Content-Disposition: form-data; name="..."[; filename="..."] */
static int parse_disposition(weir_multipart_t *mp, h2o_mem_pool_t *pool, cursor_t *c, weir_multipart_part_t *part)
{
    h2o_iovec_t type = take_token(c), name, value;
    int ret, has_name = 0;

    if (type.len == 0)
        return fail(mp, -EINVAL, "malformed multipart Content-Disposition");
    if (!iequals(type, "form-data"))
        return fail(mp, -EINVAL, "multipart Content-Disposition is not form-data");
    while ((ret = next_param(c, pool, &name, &value)) == 1) {
        if (iequals(name, "name")) {
            if (has_name)
                return fail(mp, -EINVAL, "multipart Content-Disposition parameter given twice");
            part->name = value;
            has_name = 1;
        } else if (iequals(name, "filename")) {
            if (part->filename.base != NULL)
                return fail(mp, -EINVAL, "multipart Content-Disposition parameter given twice");
            part->filename = value;
        }
    }
    if (ret != 0)
        return fail(mp, -EINVAL, "malformed multipart Content-Disposition");
    if (!has_name)
        return fail(mp, -EINVAL, "multipart part has no name");
    return 0;
}

/* One header line [line, eol) of a part. */
static int parse_header(weir_multipart_t *mp, h2o_mem_pool_t *pool, const char *line, const char *eol, weir_multipart_part_t *part,
                        int *seen)
{
    cursor_t c = {line, eol};
    h2o_iovec_t name;

    if (*line == ' ' || *line == '\t')
        return fail(mp, -EINVAL, "folded multipart part headers are not supported");
    if ((name = take_token(&c)).len == 0 || c.p == eol || *c.p++ != ':')
        return fail(mp, -EINVAL, "malformed multipart part header");
    for (const char *p = c.p; p != eol; ++p) {
        unsigned char ch = (unsigned char)*p;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return fail(mp, -EINVAL, "malformed multipart part header");
    }
    skip_ows(&c);
    while (c.end != c.p && (c.end[-1] == ' ' || c.end[-1] == '\t'))
        --c.end;

    int which = iequals(name, "content-disposition")         ? 1
                : iequals(name, "content-type")              ? 2
                : iequals(name, "content-transfer-encoding") ? 4
                                                             : 0;
    if (which == 0)
        return 0;
    if ((*seen & which) != 0)
        return fail(mp, -EINVAL, "multipart part header given twice");
    *seen |= which;
    switch (which) {
    case 1:
        return parse_disposition(mp, pool, &c, part);
    case 2:
        if (c.p == c.end)
            return fail(mp, -EINVAL, "empty multipart part Content-Type");
        part->content_type = h2o_iovec_init(c.p, (size_t)(c.end - c.p));
        return 0;
    default: {
        h2o_iovec_t cte = h2o_iovec_init(c.p, (size_t)(c.end - c.p));
        if (!iequals(cte, "binary") && !iequals(cte, "8bit") && !iequals(cte, "7bit"))
            return fail(mp, -EINVAL, "unsupported multipart Content-Transfer-Encoding");
        return 0;
    }
    }
}

int weir_multipart_next(weir_multipart_t *mp, h2o_mem_pool_t *pool, weir_multipart_part_t *part)
{
    const char *p = mp->pos, *end = mp->end, *limit, *found;
    size_t num_headers = 0;
    int seen = 0, ret;

    if (mp->error != 0)
        return mp->error == 1 ? 0 : mp->error;
    if (mp->num_parts == WEIR_MULTIPART_MAX_PARTS)
        return fail(mp, -E2BIG, "multipart body has too many parts");
    memset(part, 0, sizeof(*part));

    /* Headers, up to the empty line, within WEIR_MULTIPART_MAX_HEADER_BYTES. */
    limit = (size_t)(end - p) > WEIR_MULTIPART_MAX_HEADER_BYTES ? p + WEIR_MULTIPART_MAX_HEADER_BYTES : end;
    for (;;) {
        const char *eol = p;
        while (eol != limit && *eol != '\r' && *eol != '\n')
            ++eol;
        if (eol != limit && *eol == '\n')
            return fail(mp, -EINVAL, CRLF_ONLY);
        if (eol == limit || eol + 1 == limit)
            return limit == end ? fail(mp, -EINVAL, NO_FINAL) : fail(mp, -E2BIG, "multipart part headers are too large");
        if (eol[1] != '\n')
            return fail(mp, -EINVAL, CRLF_ONLY);
        if (eol == p) {
            p += 2;
            break;
        }
        /* (checked before the line is parsed, so that a folded header is reported as such) */
        if (limit - eol > 2 && (eol[2] == ' ' || eol[2] == '\t'))
            return fail(mp, -EINVAL, "folded multipart part headers are not supported");
        if (++num_headers > WEIR_MULTIPART_MAX_HEADERS)
            return fail(mp, -E2BIG, "multipart part has too many headers");
        if ((ret = parse_header(mp, pool, p, eol, part, &seen)) != 0)
            return ret;
        p = eol + 2;
    }
    if ((seen & 1) == 0)
        return fail(mp, -EINVAL, "multipart part has no Content-Disposition");

    /* The content, up to the next CRLF--boundary. */
    if ((found = memmem(p, (size_t)(end - p), mp->delim, mp->delim_len)) == NULL)
        return fail(mp, -EINVAL, NO_FINAL);
    part->body = h2o_iovec_init(p, (size_t)(found - p));
    if ((ret = read_delimiter_tail(mp, found + mp->delim_len)) < 0)
        return ret;
    if (ret == 1)
        mp->error = 1; /* the final boundary: the next call says so */
    ++mp->num_parts;
    return 1;
}

int weir_multipart_find(h2o_mem_pool_t *pool, const char *content_type, size_t ct_len, const char *body, size_t body_len,
                        const char *name, weir_multipart_part_t *part, const char **reason)
{
    weir_multipart_t mp;
    weir_multipart_part_t p;
    size_t name_len = strlen(name);
    int found = 0, ret;

    if ((ret = weir_multipart_init(&mp, content_type, ct_len, body, body_len)) != 0)
        goto Error;
    while ((ret = weir_multipart_next(&mp, pool, &p)) == 1) {
        if (p.name.len != name_len || memcmp(p.name.base, name, name_len) != 0)
            continue;
        if (found) {
            ret = fail(&mp, -EEXIST, "multipart field given more than once");
            goto Error;
        }
        *part = p;
        found = 1;
    }
    if (ret < 0)
        goto Error;
    if (!found) {
        ret = fail(&mp, -ENOENT, "multipart body has no part with the expected name");
        goto Error;
    }
    return 0;

Error:
    if (reason != NULL)
        *reason = mp.reason;
    return ret;
}
