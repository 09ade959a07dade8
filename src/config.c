#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>
#include "weir/common.h"
#include "weir/config.h"
#include "weir/text.h"

/* Bounds that keep a hostile file from exhausting memory ("billion laughs" aliases) or the stack (the tree is
 * walked recursively, so its depth is bounded). */
#define MAX_DEPTH 256
#define MAX_NODES 1000000

/* One anchor seen so far; a collection is incomplete until its end event (an alias to it before then is a cycle). */
typedef struct st_anchor_t {
    char *name;
    weir_conf_node_t *node;
    int complete;
} anchor_t;

typedef struct st_builder_t {
    const char *filename;
    weir_conf_errors_t *errs;
    weir_conf_node_t *root;
    weir_conf_node_t *stack[MAX_DEPTH];
    size_t depth;
    anchor_t *anchors;
    size_t num_anchors;
    size_t num_nodes;
    int failed;
} builder_t;

void weir_conf_errors_init(weir_conf_errors_t *errs)
{
    errs->messages = NULL;
    errs->count = 0;
}

void weir_conf_errors_dispose(weir_conf_errors_t *errs)
{
    for (size_t i = 0; i != errs->count; ++i)
        free(errs->messages[i]);
    free(errs->messages);
    weir_conf_errors_init(errs);
}

void weir_conf_errors_print(const weir_conf_errors_t *errs)
{
    for (size_t i = 0; i != errs->count; ++i)
        fprintf(stderr, "%s\n", errs->messages[i]);
}

static void add_message(weir_conf_errors_t *errs, const char *prefix, const char *fmt, va_list args)
{
    va_list copy;
    size_t prefix_len = strlen(prefix);
    int len;
    char *msg;

    va_copy(copy, args);
    len = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (len < 0)
        len = 0;
    msg = weir_malloc(prefix_len + (size_t)len + 1);
    memcpy(msg, prefix, prefix_len);
    vsnprintf(msg + prefix_len, (size_t)len + 1, fmt, args);
    errs->messages = weir_realloc(errs->messages, sizeof(errs->messages[0]) * (errs->count + 1));
    errs->messages[errs->count++] = msg;
}

static void add_error_at(weir_conf_errors_t *errs, const char *filename, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error_at(weir_conf_errors_t *errs, const char *filename, unsigned line, const char *fmt, ...)
{
    char prefix[4096];
    va_list args;

    if (line != 0)
        snprintf(prefix, sizeof(prefix), "%s:%u: ", filename, line);
    else
        snprintf(prefix, sizeof(prefix), "%s: ", filename);
    va_start(args, fmt);
    add_message(errs, prefix, fmt, args);
    va_end(args);
}

void weir_conf_error(weir_conf_errors_t *errs, const weir_conf_node_t *node, const char *fmt, ...)
{
    char prefix[4096] = "";
    va_list args;

    if (node != NULL && node->key != NULL)
        snprintf(prefix, sizeof(prefix), "%s:%u: in \"%s\": ", node->filename, node->line, node->key);
    else if (node != NULL)
        snprintf(prefix, sizeof(prefix), "%s:%u: ", node->filename, node->line);
    va_start(args, fmt);
    add_message(errs, prefix, fmt, args);
    va_end(args);
}

/* Frees a node and its children, but not the filename they share. */
static void free_node(weir_conf_node_t *node)
{
    if (node == NULL)
        return;
    switch (node->type) {
    case WEIR_CONF_SCALAR:
        free(node->data.scalar.str);
        break;
    case WEIR_CONF_SEQUENCE:
        for (size_t i = 0; i != node->data.sequence.size; ++i)
            free_node(node->data.sequence.elements[i]);
        free(node->data.sequence.elements);
        break;
    case WEIR_CONF_MAPPING:
        for (size_t i = 0; i != node->data.mapping.size; ++i) {
            free_node(node->data.mapping.elements[i].key);
            free_node(node->data.mapping.elements[i].value);
        }
        free(node->data.mapping.elements);
        break;
    }
    free(node);
}

void weir_conf_free(weir_conf_node_t *root)
{
    const char *filename;

    if (root == NULL)
        return;
    filename = root->filename;
    free_node(root);
    free((char *)filename);
}

static weir_conf_node_t *new_node(weir_conf_type_t type, const char *filename, unsigned line)
{
    weir_conf_node_t *node = weir_calloc(1, sizeof(*node));
    node->type = type;
    node->filename = filename;
    node->line = line;
    return node;
}

static size_t count_nodes(const weir_conf_node_t *node)
{
    size_t n = 1;

    if (node->type == WEIR_CONF_SEQUENCE) {
        for (size_t i = 0; i != node->data.sequence.size; ++i)
            n += count_nodes(node->data.sequence.elements[i]);
    } else if (node->type == WEIR_CONF_MAPPING) {
        for (size_t i = 0; i != node->data.mapping.size; ++i)
            n += count_nodes(node->data.mapping.elements[i].key) + count_nodes(node->data.mapping.elements[i].value);
    }
    return n;
}

/* An alias yields a deep copy, so that every node has one parent and one key, and the tree is freed simply. */
static weir_conf_node_t *copy_node(const weir_conf_node_t *src)
{
    weir_conf_node_t *dst = new_node(src->type, src->filename, src->line);

    switch (src->type) {
    case WEIR_CONF_SCALAR:
        dst->data.scalar.str = weir_malloc(src->data.scalar.len + 1);
        memcpy(dst->data.scalar.str, src->data.scalar.str, src->data.scalar.len + 1);
        dst->data.scalar.len = src->data.scalar.len;
        break;
    case WEIR_CONF_SEQUENCE:
        dst->data.sequence.elements = weir_calloc(src->data.sequence.size, sizeof(dst->data.sequence.elements[0]));
        for (size_t i = 0; i != src->data.sequence.size; ++i)
            dst->data.sequence.elements[i] = copy_node(src->data.sequence.elements[i]);
        dst->data.sequence.size = src->data.sequence.size;
        break;
    case WEIR_CONF_MAPPING:
        dst->data.mapping.elements = weir_calloc(src->data.mapping.size, sizeof(dst->data.mapping.elements[0]));
        for (size_t i = 0; i != src->data.mapping.size; ++i) {
            dst->data.mapping.elements[i].key = copy_node(src->data.mapping.elements[i].key);
            dst->data.mapping.elements[i].value = copy_node(src->data.mapping.elements[i].value);
        }
        dst->data.mapping.size = src->data.mapping.size;
        break;
    }
    return dst;
}

/* Keys are assigned once the tree is complete, so that copies made for aliases take the key of their new place. */
static void assign_keys(weir_conf_node_t *node, const char *key)
{
    node->key = key;
    if (node->type == WEIR_CONF_SEQUENCE) {
        for (size_t i = 0; i != node->data.sequence.size; ++i)
            assign_keys(node->data.sequence.elements[i], key);
    } else if (node->type == WEIR_CONF_MAPPING) {
        for (size_t i = 0; i != node->data.mapping.size; ++i) {
            weir_conf_pair_t *pair = node->data.mapping.elements + i;
            assign_keys(pair->key, NULL);
            if (pair->value != NULL)
                assign_keys(pair->value, pair->key->type == WEIR_CONF_SCALAR ? pair->key->data.scalar.str : NULL);
        }
    }
}

static void builder_error(builder_t *b, unsigned line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void builder_error(builder_t *b, unsigned line, const char *fmt, ...)
{
    char prefix[4096];
    va_list args;

    snprintf(prefix, sizeof(prefix), "%s:%u: ", b->filename, line);
    va_start(args, fmt);
    add_message(b->errs, prefix, fmt, args);
    va_end(args);
    b->failed = 1;
}

/* Attaches a finished (or, for collections, just started) node to the open collection on top of the stack. */
static void attach(builder_t *b, weir_conf_node_t *node, int is_plain)
{
    weir_conf_node_t *parent;

    if (b->depth == 0) {
        assert(b->root == NULL); /* a second document stops parsing at its start */
        b->root = node;
        return;
    }
    parent = b->stack[b->depth - 1];
    if (parent->type == WEIR_CONF_SEQUENCE) {
        parent->data.sequence.elements = weir_realloc(parent->data.sequence.elements,
                                                      sizeof(parent->data.sequence.elements[0]) * (parent->data.sequence.size + 1));
        parent->data.sequence.elements[parent->data.sequence.size++] = node;
        return;
    }
    assert(parent->type == WEIR_CONF_MAPPING);
    if (parent->data.mapping.size != 0 && parent->data.mapping.elements[parent->data.mapping.size - 1].value == NULL) {
        parent->data.mapping.elements[parent->data.mapping.size - 1].value = node;
        return;
    }
    /* A new key. */
    if (node->type != WEIR_CONF_SCALAR) {
        builder_error(b, node->line, "mapping keys must be scalars, got %s", weir_conf_type_name(node->type));
    } else if (is_plain && strcmp(node->data.scalar.str, "<<") == 0) {
        builder_error(b, node->line, "merge keys (\"<<\") are not supported");
    } else {
        for (size_t i = 0; i != parent->data.mapping.size; ++i) {
            const weir_conf_node_t *other = parent->data.mapping.elements[i].key;
            if (other->type == WEIR_CONF_SCALAR && other->data.scalar.len == node->data.scalar.len &&
                memcmp(other->data.scalar.str, node->data.scalar.str, node->data.scalar.len) == 0) {
                builder_error(b, node->line, "duplicate key \"%s\" (first at line %u)", node->data.scalar.str, other->line);
                break;
            }
        }
    }
    parent->data.mapping.elements =
        weir_realloc(parent->data.mapping.elements, sizeof(parent->data.mapping.elements[0]) * (parent->data.mapping.size + 1));
    parent->data.mapping.elements[parent->data.mapping.size].key = node;
    parent->data.mapping.elements[parent->data.mapping.size].value = NULL;
    ++parent->data.mapping.size;
}

static void add_anchor(builder_t *b, const yaml_char_t *name, weir_conf_node_t *node, int complete)
{
    if (name == NULL)
        return;
    b->anchors = weir_realloc(b->anchors, sizeof(b->anchors[0]) * (b->num_anchors + 1));
    b->anchors[b->num_anchors].name = weir_strdup((const char *)name);
    b->anchors[b->num_anchors].node = node;
    b->anchors[b->num_anchors].complete = complete;
    ++b->num_anchors;
}

/* The latest definition of an anchor wins, as YAML says. */
static anchor_t *find_anchor(builder_t *b, const char *name)
{
    for (size_t i = b->num_anchors; i != 0; --i)
        if (strcmp(b->anchors[i - 1].name, name) == 0)
            return b->anchors + i - 1;
    return NULL;
}

static int count_node(builder_t *b, unsigned line, size_t n)
{
    if (b->num_nodes + n > MAX_NODES) {
        builder_error(b, line, "too many nodes (more than %d, counting copies made for aliases)", MAX_NODES);
        return -1;
    }
    b->num_nodes += n;
    return 0;
}

static void start_collection(builder_t *b, weir_conf_type_t type, const yaml_event_t *event, const yaml_char_t *anchor)
{
    unsigned line = (unsigned)event->start_mark.line + 1;
    weir_conf_node_t *node;

    if (b->depth == MAX_DEPTH) {
        builder_error(b, line, "nesting deeper than %d levels", MAX_DEPTH);
        return;
    }
    if (count_node(b, line, 1) != 0)
        return;
    node = new_node(type, b->filename, line);
    attach(b, node, 0);
    add_anchor(b, anchor, node, 0);
    b->stack[b->depth++] = node;
}

static void end_collection(builder_t *b)
{
    /* libyaml's events are balanced, and a collection that could not be started stops the parse (see on_event) */
    assert(b->depth != 0);
    weir_conf_node_t *node = b->stack[--b->depth];

    for (size_t i = 0; i != b->num_anchors; ++i)
        if (b->anchors[i].node == node)
            b->anchors[i].complete = 1;
}

/* @return 0 to go on, -1 to stop parsing (the builder failed in a way that leaves no consistent tree). */
static int on_event(builder_t *b, const yaml_event_t *event)
{
    unsigned line = (unsigned)event->start_mark.line + 1;

    switch (event->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (b->root != NULL) {
            builder_error(b, line, "more than one document");
            return -1;
        }
        break;
    case YAML_SCALAR_EVENT: {
        weir_conf_node_t *node;
        if (count_node(b, line, 1) != 0)
            return -1;
        node = new_node(WEIR_CONF_SCALAR, b->filename, line);
        node->data.scalar.str = weir_strndup((const char *)event->data.scalar.value, event->data.scalar.length);
        node->data.scalar.len = event->data.scalar.length;
        attach(b, node, event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
        add_anchor(b, event->data.scalar.anchor, node, 1);
    } break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        size_t depth = b->depth;
        start_collection(b, event->type == YAML_SEQUENCE_START_EVENT ? WEIR_CONF_SEQUENCE : WEIR_CONF_MAPPING, event,
                         event->type == YAML_SEQUENCE_START_EVENT ? event->data.sequence_start.anchor
                                                                  : event->data.mapping_start.anchor);
        if (b->depth == depth)
            return -1;
    } break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        end_collection(b);
        break;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)event->data.alias.anchor;
        anchor_t *anchor = find_anchor(b, name);
        if (anchor == NULL) {
            builder_error(b, line, "unknown alias \"*%s\"", name);
            return -1;
        }
        if (!anchor->complete) {
            builder_error(b, line, "alias \"*%s\" refers to a node that contains it", name);
            return -1;
        }
        if (count_node(b, line, count_nodes(anchor->node)) != 0)
            return -1;
        weir_conf_node_t *copy = copy_node(anchor->node);
        copy->line = line;
        attach(b, copy, 0);
    } break;
    default:
        break;
    }
    return 0;
}

/* The line (1-based) of byte @p offset of @p text. */
static unsigned line_of_offset(const char *text, size_t len, size_t offset)
{
    unsigned line = 1;

    for (size_t i = 0; i < offset && i < len; ++i)
        if (text[i] == '\n')
            ++line;
    return line;
}

weir_conf_node_t *weir_conf_load_string(const char *filename, const char *text, size_t len, weir_conf_errors_t *errs)
{
    yaml_parser_t parser;
    yaml_event_t event;
    builder_t b = {.root = NULL};
    int done = 0;

    b.filename = weir_strdup(filename);
    b.errs = errs;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &event)) {
            const char *problem = parser.problem != NULL ? parser.problem : "unknown error";
            unsigned line = parser.error == YAML_READER_ERROR ? line_of_offset(text, len, parser.problem_offset)
                                                              : (unsigned)parser.problem_mark.line + 1;
            if (parser.context != NULL)
                builder_error(&b, line, "YAML syntax error: %s (%s at line %u)", problem, parser.context,
                              (unsigned)parser.context_mark.line + 1);
            else
                builder_error(&b, line, "YAML syntax error: %s", problem);
            break;
        }
        done = event.type == YAML_STREAM_END_EVENT;
        if (on_event(&b, &event) != 0)
            done = 1;
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);

    for (size_t i = 0; i != b.num_anchors; ++i)
        free(b.anchors[i].name);
    free(b.anchors);

    if (b.failed) {
        free_node(b.root);
        free((char *)b.filename);
        return NULL;
    }
    if (b.root == NULL) /* no document at all: an empty (or comments-only) file */
        b.root = new_node(WEIR_CONF_MAPPING, b.filename, 1);
    assign_keys(b.root, NULL);
    return b.root;
}

weir_conf_node_t *weir_conf_load_file(const char *filename, weir_conf_errors_t *errs)
{
    weir_conf_node_t *root = NULL;
    char *text = NULL;
    size_t len = 0, cap = 0;
    FILE *fp;

    if ((fp = fopen(filename, "rb")) == NULL) {
        add_error_at(errs, filename, 0, "cannot open: %s", strerror(errno));
        goto Exit;
    }
    for (;;) {
        size_t n;
        if (cap - len < 4096) {
            cap = cap == 0 ? 8192 : cap * 2;
            text = weir_realloc(text, cap);
        }
        n = fread(text + len, 1, cap - len, fp);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(fp)) {
        add_error_at(errs, filename, 0, "cannot read: %s", strerror(errno));
        goto Exit;
    }
    root = weir_conf_load_string(filename, text, len, errs);

Exit:
    if (fp != NULL)
        fclose(fp);
    free(text);
    return root;
}

const weir_conf_node_t *weir_conf_get(const weir_conf_node_t *map, const char *key)
{
    if (map == NULL || map->type != WEIR_CONF_MAPPING)
        return NULL;
    for (size_t i = 0; i != map->data.mapping.size; ++i) {
        const weir_conf_node_t *k = map->data.mapping.elements[i].key;
        if (k->type == WEIR_CONF_SCALAR && strcmp(k->data.scalar.str, key) == 0)
            return map->data.mapping.elements[i].value;
    }
    return NULL;
}

const char *weir_conf_type_name(weir_conf_type_t type)
{
    switch (type) {
    case WEIR_CONF_SCALAR:
        return "a scalar";
    case WEIR_CONF_SEQUENCE:
        return "a sequence";
    case WEIR_CONF_MAPPING:
        return "a mapping";
    }
    return "an unknown node";
}

int weir_conf_expect_type(const weir_conf_node_t *node, weir_conf_type_t type, weir_conf_errors_t *errs)
{
    if (node->type == type)
        return 0;
    weir_conf_error(errs, node, "expected %s, got %s", weir_conf_type_name(type), weir_conf_type_name(node->type));
    return -1;
}

/* Reports @p what against @p node: `expected WHAT, got "TEXT"` for a scalar, `got a mapping` otherwise. */
static int expected(const weir_conf_node_t *node, const char *what, weir_conf_errors_t *errs)
{
    if (node->type == WEIR_CONF_SCALAR)
        weir_conf_error(errs, node, "expected %s, got \"%s\"", what, node->data.scalar.str);
    else
        weir_conf_error(errs, node, "expected %s, got %s", what, weir_conf_type_name(node->type));
    return -1;
}

int weir_conf_to_int64(const weir_conf_node_t *node, int64_t min, int64_t max, int64_t *out, weir_conf_errors_t *errs)
{
    char what[96];
    const char *s, *end;
    int negative = 0;
    ssize_t n;
    uint64_t mag;
    int64_t v;

    snprintf(what, sizeof(what), "an integer from %" PRId64 " to %" PRId64, min, max);
    if (node->type != WEIR_CONF_SCALAR)
        return expected(node, what, errs);
    s = node->data.scalar.str;
    end = s + node->data.scalar.len;
    if (*s == '-' || *s == '+')
        negative = *s++ == '-';
    if ((n = weir_parse_decimal_prefix(s, end - s, UINT64_MAX, &mag)) <= 0 || s + n != end)
        return expected(node, what, errs);
    if (negative) {
        if (mag > (uint64_t)INT64_MAX + 1)
            return expected(node, what, errs);
        v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX)
            return expected(node, what, errs);
        v = (int64_t)mag;
    }
    if (v < min || v > max)
        return expected(node, what, errs);
    *out = v;
    return 0;
}

int weir_conf_to_size(const weir_conf_node_t *node, uint64_t min, uint64_t max, uint64_t *out, weir_conf_errors_t *errs)
{
    char what[128];
    const char *s, *end;
    uint64_t v;
    unsigned shift = 0;
    ssize_t n;

    snprintf(what, sizeof(what), "a size in bytes from %" PRIu64 " to %" PRIu64 " (suffixes K, M, G allowed)", min, max);
    if (node->type != WEIR_CONF_SCALAR)
        return expected(node, what, errs);
    s = node->data.scalar.str;
    end = s + node->data.scalar.len;
    if (*s == '+')
        ++s;
    if ((n = weir_parse_decimal_prefix(s, end - s, UINT64_MAX, &v)) <= 0)
        return expected(node, what, errs);
    s += n;
    if (s != end) {
        switch (*s) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return expected(node, what, errs);
        }
        ++s;
        if (strcasecmp(s, "") != 0 && strcasecmp(s, "b") != 0 && strcasecmp(s, "ib") != 0)
            return expected(node, what, errs);
        if ((size_t)(end - s) != strlen(s)) /* a NUL inside the text */
            return expected(node, what, errs);
    }
    if (v > (UINT64_MAX >> shift))
        return expected(node, what, errs);
    v <<= shift;
    if (v < min || v > max)
        return expected(node, what, errs);
    *out = v;
    return 0;
}

int weir_conf_to_bool(const weir_conf_node_t *node, int *out, weir_conf_errors_t *errs)
{
    static const char *const yes[] = {"on", "true", "yes"}, *const no[] = {"off", "false", "no"};

    if (node->type == WEIR_CONF_SCALAR && strlen(node->data.scalar.str) == node->data.scalar.len) {
        for (size_t i = 0; i != WEIR_ARRAY_SIZE(yes); ++i) {
            if (strcasecmp(node->data.scalar.str, yes[i]) == 0) {
                *out = 1;
                return 0;
            }
            if (strcasecmp(node->data.scalar.str, no[i]) == 0) {
                *out = 0;
                return 0;
            }
        }
    }
    return expected(node, "ON or OFF", errs);
}

int weir_conf_to_string(const weir_conf_node_t *node, const char **out, weir_conf_errors_t *errs)
{
    if (node->type != WEIR_CONF_SCALAR || node->data.scalar.len == 0)
        return expected(node, "a non-empty string", errs);
    if (strlen(node->data.scalar.str) != node->data.scalar.len) {
        weir_conf_error(errs, node, "expected a string without NUL bytes");
        return -1;
    }
    *out = node->data.scalar.str;
    return 0;
}

int weir_conf_to_path(const weir_conf_node_t *node, int must_exist, char **out, weir_conf_errors_t *errs)
{
    const char *name, *slash;
    char *path;

    if (weir_conf_to_string(node, &name, errs) != 0)
        return -1;
    if (name[0] != '/' && (slash = strrchr(node->filename, '/')) != NULL) {
        size_t dirlen = (size_t)(slash - node->filename) + 1, namelen = strlen(name);
        path = weir_malloc(dirlen + namelen + 1);
        memcpy(path, node->filename, dirlen);
        memcpy(path + dirlen, name, namelen + 1);
    } else {
        path = weir_strdup(name);
    }
    if (must_exist && access(path, R_OK) != 0) {
        weir_conf_error(errs, node, "cannot read file \"%s\": %s", path, strerror(errno));
        free(path);
        return -1;
    }
    *out = path;
    return 0;
}
