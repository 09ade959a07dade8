/**
 * @file config.h
 * The YAML configuration as a tree of nodes that remember where they came from (file:line),
 * and typed accessors that report errors at the node ("conf/server.yaml:14: in "calc.n": ...").
 *
 * Parsing is done with libyaml. Anchors and aliases are resolved (an alias yields a deep copy of the
 * anchored node); tags are ignored; merge keys ("<<") are not supported and are reported.
 * Construction of modules never sees this tree: each module's *_conf.c fills a settings struct.
 */
#ifndef WEIR_CONFIG_H
#define WEIR_CONFIG_H

#include <stddef.h>
#include <stdint.h>

/** Kinds of nodes. */
typedef enum en_weir_conf_type_t {
    WEIR_CONF_SCALAR,
    WEIR_CONF_SEQUENCE,
    WEIR_CONF_MAPPING,
} weir_conf_type_t;

typedef struct st_weir_conf_node_t weir_conf_node_t;

/** One key/value pair of a mapping. */
typedef struct st_weir_conf_pair_t {
    weir_conf_node_t *key;   /**< always a scalar */
    weir_conf_node_t *value; /**< any type */
} weir_conf_pair_t;

/** A node of the configuration tree. */
struct st_weir_conf_node_t {
    weir_conf_type_t type;
    const char *filename; /**< the file it was read from (shared by all nodes of a document) */
    unsigned line;        /**< 1-based line number of the node's start */
    /**
     * For a value inside a mapping, the text of its key ("calc.n"); sequence elements carry the key of their
     * sequence; NULL for the root and for keys themselves.
     */
    const char *key;
    union {
        struct {
            char *str;  /**< NUL-terminated */
            size_t len; /**< length without the NUL (the text may hold NULs in theory; accessors reject them) */
        } scalar;
        struct {
            weir_conf_node_t **elements;
            size_t size;
        } sequence;
        struct {
            weir_conf_pair_t *elements;
            size_t size;
        } mapping;
    } data;
};

/** Collected error messages, each "file:line: message". */
typedef struct st_weir_conf_errors_t {
    char **messages;
    size_t count;
} weir_conf_errors_t;

/** Initialises an empty error list. */
void weir_conf_errors_init(weir_conf_errors_t *errs);
/** Frees the messages. */
void weir_conf_errors_dispose(weir_conf_errors_t *errs);
/** Writes every message, one per line, to stderr. */
void weir_conf_errors_print(const weir_conf_errors_t *errs);

/**
 * Records an error at @p node: "FILE:LINE: in "KEY": MESSAGE" when the node has a key,
 * "FILE:LINE: MESSAGE" otherwise.
 * @p node may be NULL for errors with no place (then "MESSAGE" alone).
 */
void weir_conf_error(weir_conf_errors_t *errs, const weir_conf_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Reads and parses a YAML file. An empty file yields an empty mapping.
 * @return the root node, or NULL with an error recorded (cannot open: "FILE: cannot open: REASON";
 *         syntax: "FILE:LINE: YAML syntax error: PROBLEM"; more than one document; duplicate key in a mapping).
 */
weir_conf_node_t *weir_conf_load_file(const char *filename, weir_conf_errors_t *errs);
/** As weir_conf_load_file, from memory; @p filename names the text in messages. */
weir_conf_node_t *weir_conf_load_string(const char *filename, const char *text, size_t len, weir_conf_errors_t *errs);
/** Frees a tree returned by a loader (NULL is fine). */
void weir_conf_free(weir_conf_node_t *root);

/** The value for @p key in mapping @p map, or NULL if absent or @p map is not a mapping. */
const weir_conf_node_t *weir_conf_get(const weir_conf_node_t *map, const char *key);

/** The human name of a type, for messages: "a scalar", "a sequence", "a mapping". */
const char *weir_conf_type_name(weir_conf_type_t type);

/**
 * Checks the type of @p node; on mismatch records `expected WHAT, got a mapping` (what = "a mapping" etc.).
 * @return 0, or -1 with an error recorded.
 */
int weir_conf_expect_type(const weir_conf_node_t *node, weir_conf_type_t type, weir_conf_errors_t *errs);

/**
 * Converts a scalar to an integer in [min, max]. Accepts optional sign and decimal digits only
 * (no "0x", no spaces, no fraction). Errors: not a scalar, not an integer
 * (`expected an integer from MIN to MAX, got "TEXT"`), out of range (same message).
 * @return 0, or -1 with an error recorded.
 */
int weir_conf_to_int64(const weir_conf_node_t *node, int64_t min, int64_t max, int64_t *out, weir_conf_errors_t *errs);

/**
 * As weir_conf_to_int64 for sizes in bytes; also accepts the suffixes K, M, G (powers of 1024,
 * case-insensitive, optionally followed by "B"/"iB": "64M", "1GiB").
 * @return 0, or -1 with an error recorded.
 */
int weir_conf_to_size(const weir_conf_node_t *node, uint64_t min, uint64_t max, uint64_t *out, weir_conf_errors_t *errs);

/**
 * Converts a scalar to a boolean: ON/OFF, true/false, yes/no (case-insensitive), as h2o does.
 * @return 0, or -1 with an error recorded (`expected ON or OFF, got "TEXT"`).
 */
int weir_conf_to_bool(const weir_conf_node_t *node, int *out, weir_conf_errors_t *errs);

/**
 * Gets the text of a scalar (non-empty, no NUL bytes). @p out points into the tree (valid while it lives).
 * @return 0, or -1 with an error recorded (`expected a non-empty string, got a mapping`).
 */
int weir_conf_to_string(const weir_conf_node_t *node, const char **out, weir_conf_errors_t *errs);

/**
 * As weir_conf_to_string for a file name: relative names are resolved against the directory of the
 * config file the node came from; when @p must_exist, the file must be readable
 * (`cannot read file "PATH": REASON`). @p out is a newly allocated string (free it).
 * @return 0, or -1 with an error recorded.
 */
int weir_conf_to_path(const weir_conf_node_t *node, int must_exist, char **out, weir_conf_errors_t *errs);

#endif
