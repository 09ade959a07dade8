#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "unit.h"
#include "weir/config.h"

/* Parses @p text as "t.yaml". */
static weir_conf_node_t *load(const char *text, weir_conf_errors_t *errs)
{
    return weir_conf_load_string("t.yaml", text, strlen(text), errs);
}

/* Asserts that loading @p text fails with the one error @p expected. */
static void assert_load_error(const char *text, const char *expected)
{
    weir_conf_errors_t errs;

    weir_conf_errors_init(&errs);
    assert_null(load(text, &errs));
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.messages[0], expected);
    weir_conf_errors_dispose(&errs);
}

static const weir_conf_node_t *scalar_at(const weir_conf_node_t *node, const char *key, const char *text, unsigned line)
{
    const weir_conf_node_t *v = weir_conf_get(node, key);
    assert_non_null(v);
    assert_int_equal(v->type, WEIR_CONF_SCALAR);
    assert_string_equal(v->data.scalar.str, text);
    assert_int_equal(v->data.scalar.len, strlen(text));
    assert_int_equal(v->line, line);
    assert_string_equal(v->key, key);
    return v;
}

static void test_scalar_document(void **state)
{
    weir_conf_errors_t errs;
    weir_conf_node_t *root;

    weir_conf_errors_init(&errs);
    root = load("# comment\nhello\n", &errs);
    assert_non_null(root);
    assert_int_equal(errs.count, 0);
    assert_int_equal(root->type, WEIR_CONF_SCALAR);
    assert_string_equal(root->data.scalar.str, "hello");
    assert_int_equal(root->line, 2);
    assert_null(root->key);
    assert_string_equal(root->filename, "t.yaml");
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
}

static void test_mapping_lines_and_keys(void **state)
{
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    const weir_conf_node_t *outer, *inner;

    weir_conf_errors_init(&errs);
    root = load("a: 1\n"
                "outer:\n"
                "  # comment\n"
                "  inner:\n"
                "    x: \"quoted\"\n"
                "  y: 'single'\n"
                "empty:\n",
                &errs);
    assert_non_null(root);
    assert_int_equal(root->type, WEIR_CONF_MAPPING);
    assert_int_equal(root->line, 1);
    assert_null(root->key);
    assert_int_equal(root->data.mapping.size, 3);
    assert_null(root->data.mapping.elements[0].key->key);
    assert_int_equal(root->data.mapping.elements[1].key->line, 2);
    scalar_at(root, "a", "1", 1);
    outer = weir_conf_get(root, "outer");
    assert_non_null(outer);
    assert_int_equal(outer->type, WEIR_CONF_MAPPING);
    assert_int_equal(outer->line, 4);
    assert_string_equal(outer->key, "outer");
    inner = weir_conf_get(outer, "inner");
    assert_non_null(inner);
    assert_int_equal(inner->type, WEIR_CONF_MAPPING);
    assert_int_equal(inner->line, 5);
    assert_string_equal(inner->key, "inner");
    scalar_at(inner, "x", "quoted", 5);
    scalar_at(outer, "y", "single", 6);
    scalar_at(root, "empty", "", 7);
    assert_null(weir_conf_get(root, "absent"));
    assert_null(weir_conf_get(weir_conf_get(root, "a"), "a"));
    assert_null(weir_conf_get(NULL, "a"));
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
}

static void test_sequence_lines_and_keys(void **state)
{
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    const weir_conf_node_t *list, *flow, *e;

    weir_conf_errors_init(&errs);
    root = load("list:\n"
                "  - one\n"
                "  - port: 80\n"
                "    host: h\n"
                "  -\n"
                "    - nested\n"
                "flow: [1, 2]\n",
                &errs);
    assert_non_null(root);
    list = weir_conf_get(root, "list");
    assert_non_null(list);
    assert_int_equal(list->type, WEIR_CONF_SEQUENCE);
    assert_int_equal(list->line, 2);
    assert_int_equal(list->data.sequence.size, 3);
    e = list->data.sequence.elements[0];
    assert_int_equal(e->type, WEIR_CONF_SCALAR);
    assert_string_equal(e->data.scalar.str, "one");
    assert_int_equal(e->line, 2);
    assert_string_equal(e->key, "list");
    e = list->data.sequence.elements[1];
    assert_int_equal(e->type, WEIR_CONF_MAPPING);
    assert_int_equal(e->line, 3);
    assert_string_equal(e->key, "list");
    scalar_at(e, "port", "80", 3);
    scalar_at(e, "host", "h", 4);
    e = list->data.sequence.elements[2];
    assert_int_equal(e->type, WEIR_CONF_SEQUENCE);
    assert_int_equal(e->line, 6);
    assert_string_equal(e->data.sequence.elements[0]->key, "list");
    flow = weir_conf_get(root, "flow");
    assert_int_equal(flow->type, WEIR_CONF_SEQUENCE);
    assert_int_equal(flow->line, 7);
    assert_int_equal(flow->data.sequence.size, 2);
    assert_string_equal(flow->data.sequence.elements[1]->data.scalar.str, "2");
    assert_string_equal(flow->data.sequence.elements[1]->key, "flow");
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
}

static void test_anchors_and_aliases(void **state)
{
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    const weir_conf_node_t *base, *copy, *name;

    weir_conf_errors_init(&errs);
    root = load("base: &b\n"
                "  x: 1\n"
                "  list: [a, b]\n"
                "name: &n hello\n"
                "copy: *b\n"
                "again: *n\n"
                "base2: &b\n"
                "  y: 2\n"
                "copy2: *b\n",
                &errs);
    assert_non_null(root);
    assert_int_equal(errs.count, 0);
    base = weir_conf_get(root, "base");
    copy = weir_conf_get(root, "copy");
    assert_non_null(copy);
    assert_ptr_not_equal(copy, base);
    assert_int_equal(copy->type, WEIR_CONF_MAPPING);
    assert_int_equal(copy->line, 5);
    assert_string_equal(copy->key, "copy");
    scalar_at(copy, "x", "1", 2);
    assert_string_equal(weir_conf_get(copy, "list")->data.sequence.elements[1]->data.scalar.str, "b");
    assert_string_equal(weir_conf_get(copy, "list")->data.sequence.elements[1]->key, "list");
    name = weir_conf_get(root, "again");
    assert_string_equal(name->data.scalar.str, "hello");
    assert_string_equal(name->key, "again");
    assert_int_equal(name->line, 6);
    /* A redefined anchor: the latest definition wins. */
    scalar_at(weir_conf_get(root, "copy2"), "y", "2", 8);
    assert_null(weir_conf_get(weir_conf_get(root, "copy2"), "x"));
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
}

static void test_alias_errors(void **state)
{
    assert_load_error("a: 1\nb: *nope\n", "t.yaml:2: unknown alias \"*nope\"");
    assert_load_error("a: &x\n  - 1\n  - *x\n", "t.yaml:3: alias \"*x\" refers to a node that contains it");
    assert_load_error("a: &x {b: 1}\nc:\n  <<: *x\n", "t.yaml:3: merge keys (\"<<\") are not supported");
}

static void test_alias_bomb(void **state)
{
    assert_load_error("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                      "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
                      "t.yaml:6: too many nodes (more than 1000000, counting copies made for aliases)");
}

static void test_nesting_too_deep(void **state)
{
    char text[1024];

    memset(text, '[', 300);
    memset(text + 300, ']', 300);
    text[600] = '\0';
    assert_load_error(text, "t.yaml:1: nesting deeper than 256 levels");
}

static void test_empty_file(void **state)
{
    static const char *const texts[] = {"", "\n\n", "# only a comment\n"};
    weir_conf_errors_t errs;

    weir_conf_errors_init(&errs);
    for (size_t i = 0; i != sizeof(texts) / sizeof(texts[0]); ++i) {
        weir_conf_node_t *root = load(texts[i], &errs);
        assert_non_null(root);
        assert_int_equal(root->type, WEIR_CONF_MAPPING);
        assert_int_equal(root->data.mapping.size, 0);
        assert_int_equal(root->line, 1);
        assert_string_equal(root->filename, "t.yaml");
        weir_conf_free(root);
    }
    assert_int_equal(errs.count, 0);
    weir_conf_errors_dispose(&errs);
}

static void test_syntax_error(void **state)
{
    weir_conf_errors_t errs;

    assert_load_error("a: 1\nb: c: d\n", "t.yaml:2: YAML syntax error: mapping values are not allowed in this context");
    assert_load_error("a: 1\nb: [1, 2\nc: 3\n",
                      "t.yaml:3: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at line 2)");
    /* libyaml's wording for a tab in the indentation changed in 0.2.5; the place did not. */
    weir_conf_errors_init(&errs);
    assert_null(load("a: 1\n\tb: 2\n", &errs));
    assert_int_equal(errs.count, 1);
    assert_true(strncmp(errs.messages[0], "t.yaml:2: YAML syntax error: ", 29) == 0);
    weir_conf_errors_dispose(&errs);
}

static void test_invalid_utf8(void **state)
{
    assert_load_error("a: 1\nb: \xff\n", "t.yaml:2: YAML syntax error: invalid leading UTF-8 octet");
}

static void test_duplicate_keys(void **state)
{
    weir_conf_errors_t errs;

    weir_conf_errors_init(&errs);
    assert_null(load("a: 1\nb:\n  x: 1\n  x: 2\na: 3\n", &errs));
    assert_int_equal(errs.count, 2);
    assert_string_equal(errs.messages[0], "t.yaml:4: duplicate key \"x\" (first at line 3)");
    assert_string_equal(errs.messages[1], "t.yaml:5: duplicate key \"a\" (first at line 1)");
    weir_conf_errors_dispose(&errs);
}

static void test_non_scalar_key(void **state)
{
    assert_load_error("? [a]\n: 1\n", "t.yaml:1: mapping keys must be scalars, got a sequence");
}

static void test_several_documents(void **state)
{
    assert_load_error("a: 1\n---\nb: 2\n", "t.yaml:2: more than one document");
}

static void test_missing_file(void **state)
{
    weir_conf_errors_t errs;

    weir_conf_errors_init(&errs);
    assert_null(weir_conf_load_file("/nonexistent-dir/x.yaml", &errs));
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.messages[0], "/nonexistent-dir/x.yaml: cannot open: No such file or directory");
    weir_conf_errors_dispose(&errs);
}

static void test_load_file(void **state)
{
    char dir[256], path[300];
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    FILE *fp;

    weir_unit_temp_dir(dir, sizeof(dir), "weir-test-config");
    snprintf(path, sizeof(path), "%s/c.yaml", dir);
    assert_non_null(fp = fopen(path, "w"));
    fputs("a: 1\n\nb: two\n", fp);
    fclose(fp);

    weir_conf_errors_init(&errs);
    root = weir_conf_load_file(path, &errs);
    assert_non_null(root);
    assert_int_equal(errs.count, 0);
    assert_string_equal(root->filename, path);
    scalar_at(root, "b", "two", 3);
    assert_string_equal(weir_conf_get(root, "b")->filename, path);
    weir_conf_free(root);

    /* A directory opens but does not read. */
    assert_null(weir_conf_load_file(dir, &errs));
    assert_int_equal(errs.count, 1);
    assert_true(strstr(errs.messages[0], ": cannot read: Is a directory") != NULL);
    weir_conf_errors_dispose(&errs);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_error_format(void **state)
{
    weir_conf_errors_t errs;
    weir_conf_node_t *root;

    weir_conf_errors_init(&errs);
    root = load("a:\n  b: 1\n", &errs);
    assert_non_null(root);
    weir_conf_error(&errs, NULL, "no place %d", 1);
    weir_conf_error(&errs, root, "at the root");
    weir_conf_error(&errs, weir_conf_get(root, "a"), "in a");
    weir_conf_error(&errs, root->data.mapping.elements[0].key, "unknown key \"%s\"", "a");
    weir_conf_error(&errs, weir_conf_get(weir_conf_get(root, "a"), "b"), "in b");
    assert_int_equal(errs.count, 5);
    assert_string_equal(errs.messages[0], "no place 1");
    assert_string_equal(errs.messages[1], "t.yaml:1: at the root");
    assert_string_equal(errs.messages[2], "t.yaml:2: in \"a\": in a");
    assert_string_equal(errs.messages[3], "t.yaml:1: unknown key \"a\"");
    assert_string_equal(errs.messages[4], "t.yaml:2: in \"b\": in b");
    weir_conf_errors_print(&errs);
    weir_conf_errors_dispose(&errs);
    assert_int_equal(errs.count, 0);
    assert_null(errs.messages);
    weir_conf_free(root);
}

static void test_expect_type(void **state)
{
    weir_conf_errors_t errs;
    weir_conf_node_t *root;

    weir_conf_errors_init(&errs);
    root = load("m: {a: 1}\ns: [1]\nv: x\n", &errs);
    assert_non_null(root);
    assert_int_equal(weir_conf_expect_type(weir_conf_get(root, "m"), WEIR_CONF_MAPPING, &errs), 0);
    assert_int_equal(weir_conf_expect_type(weir_conf_get(root, "s"), WEIR_CONF_SEQUENCE, &errs), 0);
    assert_int_equal(weir_conf_expect_type(weir_conf_get(root, "v"), WEIR_CONF_SCALAR, &errs), 0);
    assert_int_equal(errs.count, 0);
    assert_int_equal(weir_conf_expect_type(weir_conf_get(root, "m"), WEIR_CONF_SEQUENCE, &errs), -1);
    assert_int_equal(weir_conf_expect_type(weir_conf_get(root, "s"), WEIR_CONF_SCALAR, &errs), -1);
    assert_int_equal(weir_conf_expect_type(weir_conf_get(root, "v"), WEIR_CONF_MAPPING, &errs), -1);
    assert_int_equal(errs.count, 3);
    assert_string_equal(errs.messages[0], "t.yaml:1: in \"m\": expected a sequence, got a mapping");
    assert_string_equal(errs.messages[1], "t.yaml:2: in \"s\": expected a scalar, got a sequence");
    assert_string_equal(errs.messages[2], "t.yaml:3: in \"v\": expected a mapping, got a scalar");
    assert_string_equal(weir_conf_type_name(WEIR_CONF_MAPPING), "a mapping");
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
}

/* Converts the value of "v" in the one-line document "v: TEXT" with weir_conf_to_int64; on error, *message is set. */
static int to_int64(const char *text, int64_t min, int64_t max, int64_t *out, char **message)
{
    char doc[256];
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    int ret;

    snprintf(doc, sizeof(doc), "v: %s\n", text);
    weir_conf_errors_init(&errs);
    root = load(doc, &errs);
    assert_non_null(root);
    ret = weir_conf_to_int64(weir_conf_get(root, "v"), min, max, out, &errs);
    assert_int_equal(errs.count, ret == 0 ? 0 : 1);
    *message = ret == 0 ? NULL : strdup(errs.messages[0]);
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
    return ret;
}

static void assert_int64_ok(const char *text, int64_t min, int64_t max, int64_t expected)
{
    int64_t v = -12345;
    char *msg;

    assert_int_equal(to_int64(text, min, max, &v, &msg), 0);
    assert_true(v == expected);
}

static void assert_int64_error(const char *text, int64_t min, int64_t max, const char *expected)
{
    int64_t v = -12345;
    char *msg;

    assert_int_equal(to_int64(text, min, max, &v, &msg), -1);
    assert_true(v == -12345);
    assert_string_equal(msg, expected);
    free(msg);
}

static void test_to_int64(void **state)
{
    assert_int64_ok("42", 1, 100, 42);
    assert_int64_ok("\"42\"", 1, 100, 42);
    assert_int64_ok("-5", -10, 10, -5);
    assert_int64_ok("+7", -10, 10, 7);
    assert_int64_ok("0", 0, 0, 0);
    assert_int64_ok("-9223372036854775808", INT64_MIN, INT64_MAX, INT64_MIN);
    assert_int64_ok("9223372036854775807", INT64_MIN, INT64_MAX, INT64_MAX);
    assert_int64_error("five", 1, 1000000, "t.yaml:1: in \"v\": expected an integer from 1 to 1000000, got \"five\"");
    assert_int64_error("0", 1, 1000000, "t.yaml:1: in \"v\": expected an integer from 1 to 1000000, got \"0\"");
    assert_int64_error("1000001", 1, 1000000, "t.yaml:1: in \"v\": expected an integer from 1 to 1000000, got \"1000001\"");
    assert_int64_error("-1", 0, 10, "t.yaml:1: in \"v\": expected an integer from 0 to 10, got \"-1\"");
    assert_int64_error("1.5", 0, 10, "t.yaml:1: in \"v\": expected an integer from 0 to 10, got \"1.5\"");
    assert_int64_error("0x10", 0, 100, "t.yaml:1: in \"v\": expected an integer from 0 to 100, got \"0x10\"");
    assert_int64_error("\" 1\"", 0, 10, "t.yaml:1: in \"v\": expected an integer from 0 to 10, got \" 1\"");
    assert_int64_error("\"1 \"", 0, 10, "t.yaml:1: in \"v\": expected an integer from 0 to 10, got \"1 \"");
    assert_int64_error("\"-\"", 0, 10, "t.yaml:1: in \"v\": expected an integer from 0 to 10, got \"-\"");
    assert_int64_error("", 0, 10, "t.yaml:1: in \"v\": expected an integer from 0 to 10, got \"\"");
    assert_int64_error("99999999999999999999", 0, 10,
                       "t.yaml:1: in \"v\": expected an integer from 0 to 10, got \"99999999999999999999\"");
    assert_int64_error("9223372036854775808", INT64_MIN, INT64_MAX,
                       "t.yaml:1: in \"v\": expected an integer from -9223372036854775808 to 9223372036854775807, got "
                       "\"9223372036854775808\"");
    assert_int64_error("\"1\\x002\"", 0, 100, "t.yaml:1: in \"v\": expected an integer from 0 to 100, got \"1\"");
    assert_int64_error("{a: 1}", 0, 10, "t.yaml:1: in \"v\": expected an integer from 0 to 10, got a mapping");
    assert_int64_error("[1]", 0, 10, "t.yaml:1: in \"v\": expected an integer from 0 to 10, got a sequence");
}

static int to_size(const char *text, uint64_t min, uint64_t max, uint64_t *out, char **message)
{
    char doc[256];
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    int ret;

    snprintf(doc, sizeof(doc), "size: %s\n", text);
    weir_conf_errors_init(&errs);
    root = load(doc, &errs);
    assert_non_null(root);
    ret = weir_conf_to_size(weir_conf_get(root, "size"), min, max, out, &errs);
    assert_int_equal(errs.count, ret == 0 ? 0 : 1);
    *message = ret == 0 ? NULL : strdup(errs.messages[0]);
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
    return ret;
}

static void assert_size_ok(const char *text, uint64_t expected)
{
    uint64_t v = 12345;
    char *msg;

    assert_int_equal(to_size(text, 0, UINT64_MAX, &v, &msg), 0);
    assert_true(v == expected);
}

static void assert_size_error(const char *text, uint64_t min, uint64_t max, const char *expected)
{
    uint64_t v = 12345;
    char *msg;

    assert_int_equal(to_size(text, min, max, &v, &msg), -1);
    assert_true(v == 12345);
    assert_string_equal(msg, expected);
    free(msg);
}

static void test_to_size(void **state)
{
    assert_size_ok("0", 0);
    assert_size_ok("10485760", 10485760);
    assert_size_ok("1k", 1024);
    assert_size_ok("2K", 2048);
    assert_size_ok("64M", UINT64_C(64) << 20);
    assert_size_ok("3mb", UINT64_C(3) << 20);
    assert_size_ok("1GiB", UINT64_C(1) << 30);
    assert_size_ok("4gib", UINT64_C(4) << 30);
    assert_size_ok("5KB", 5120);
    assert_size_ok("+1K", 1024);
    assert_size_ok("18446744073709551615", UINT64_MAX);
    assert_size_error("5G", 1, UINT64_C(4) << 30,
                      "t.yaml:1: in \"size\": expected a size in bytes from 1 to 4294967296 (suffixes K, M, G allowed), got "
                      "\"5G\"");
    assert_size_error("0", 1, 100,
                      "t.yaml:1: in \"size\": expected a size in bytes from 1 to 100 (suffixes K, M, G allowed), got \"0\"");
    assert_size_error("1T", 1, 100,
                      "t.yaml:1: in \"size\": expected a size in bytes from 1 to 100 (suffixes K, M, G allowed), got \"1T\"");
    assert_size_error("K", 1, 100,
                      "t.yaml:1: in \"size\": expected a size in bytes from 1 to 100 (suffixes K, M, G allowed), got \"K\"");
    assert_size_error("1KX", 1, 100,
                      "t.yaml:1: in \"size\": expected a size in bytes from 1 to 100 (suffixes K, M, G allowed), got \"1KX\"");
    assert_size_error("1Bi", 1, 100,
                      "t.yaml:1: in \"size\": expected a size in bytes from 1 to 100 (suffixes K, M, G allowed), got \"1Bi\"");
    assert_size_error("-1", 0, 100,
                      "t.yaml:1: in \"size\": expected a size in bytes from 0 to 100 (suffixes K, M, G allowed), got \"-1\"");
    assert_size_error("1.5M", 0, 100,
                      "t.yaml:1: in \"size\": expected a size in bytes from 0 to 100 (suffixes K, M, G allowed), got \"1.5M\"");
    assert_size_error("20000000000G", 0, UINT64_MAX,
                      "t.yaml:1: in \"size\": expected a size in bytes from 0 to 18446744073709551615 (suffixes K, M, G "
                      "allowed), got \"20000000000G\"");
    assert_size_error("[1]", 0, 100,
                      "t.yaml:1: in \"size\": expected a size in bytes from 0 to 100 (suffixes K, M, G allowed), got a sequence");
}

static void test_to_bool(void **state)
{
    static const struct {
        const char *text;
        int value;
    } ok[] = {{"ON", 1}, {"on", 1}, {"true", 1}, {"Yes", 1}, {"OFF", 0}, {"off", 0}, {"False", 0}, {"no", 0}};
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    int v;

    weir_conf_errors_init(&errs);
    for (size_t i = 0; i != sizeof(ok) / sizeof(ok[0]); ++i) {
        weir_conf_node_t *node = load(ok[i].text, &errs);
        assert_non_null(node);
        v = -1;
        assert_int_equal(weir_conf_to_bool(node, &v, &errs), 0);
        assert_int_equal(v, ok[i].value);
        weir_conf_free(node);
    }
    assert_int_equal(errs.count, 0);
    root = load("a: maybe\nb: {}\n", &errs);
    v = -1;
    assert_int_equal(weir_conf_to_bool(weir_conf_get(root, "a"), &v, &errs), -1);
    assert_int_equal(weir_conf_to_bool(weir_conf_get(root, "b"), &v, &errs), -1);
    assert_int_equal(v, -1);
    assert_int_equal(errs.count, 2);
    assert_string_equal(errs.messages[0], "t.yaml:1: in \"a\": expected ON or OFF, got \"maybe\"");
    assert_string_equal(errs.messages[1], "t.yaml:2: in \"b\": expected ON or OFF, got a mapping");
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
}

static void test_to_string(void **state)
{
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    const char *s = NULL;

    weir_conf_errors_init(&errs);
    root = load("a: hello world\nb: ''\nc: [x]\nd: \"x\\0y\"\ne:\n", &errs);
    assert_non_null(root);
    assert_int_equal(weir_conf_to_string(weir_conf_get(root, "a"), &s, &errs), 0);
    assert_string_equal(s, "hello world");
    assert_ptr_equal(s, weir_conf_get(root, "a")->data.scalar.str);
    s = NULL;
    assert_int_equal(weir_conf_to_string(weir_conf_get(root, "b"), &s, &errs), -1);
    assert_int_equal(weir_conf_to_string(weir_conf_get(root, "c"), &s, &errs), -1);
    assert_int_equal(weir_conf_to_string(weir_conf_get(root, "d"), &s, &errs), -1);
    assert_int_equal(weir_conf_to_string(weir_conf_get(root, "e"), &s, &errs), -1);
    assert_null(s);
    assert_int_equal(errs.count, 4);
    assert_string_equal(errs.messages[0], "t.yaml:2: in \"b\": expected a non-empty string, got \"\"");
    assert_string_equal(errs.messages[1], "t.yaml:3: in \"c\": expected a non-empty string, got a sequence");
    assert_string_equal(errs.messages[2], "t.yaml:4: in \"d\": expected a string without NUL bytes");
    assert_string_equal(errs.messages[3], "t.yaml:5: in \"e\": expected a non-empty string, got \"\"");
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);
}

static void test_to_path(void **state)
{
    static const char text[] = "abs: /etc/x\nrel: present.txt\nsub: logs/a.log\nmissing: none.txt\nbad: [1]\n";
    char dir[256], conf[300], file[300], expected[1024];
    weir_conf_errors_t errs;
    weir_conf_node_t *root;
    char *path = NULL;
    FILE *fp;

    weir_unit_temp_dir(dir, sizeof(dir), "weir-test-config");
    snprintf(conf, sizeof(conf), "%s/server.yaml", dir);
    snprintf(file, sizeof(file), "%s/present.txt", dir);
    assert_non_null(fp = fopen(file, "w"));
    fclose(fp);

    weir_conf_errors_init(&errs);
    root = weir_conf_load_string(conf, text, strlen(text), &errs);
    assert_non_null(root);

    assert_int_equal(weir_conf_to_path(weir_conf_get(root, "abs"), 0, &path, &errs), 0);
    assert_string_equal(path, "/etc/x");
    free(path);
    assert_int_equal(weir_conf_to_path(weir_conf_get(root, "rel"), 1, &path, &errs), 0);
    assert_string_equal(path, file);
    free(path);
    assert_int_equal(weir_conf_to_path(weir_conf_get(root, "sub"), 0, &path, &errs), 0);
    snprintf(expected, sizeof(expected), "%s/logs/a.log", dir);
    assert_string_equal(path, expected);
    free(path);
    assert_int_equal(errs.count, 0);

    path = NULL;
    assert_int_equal(weir_conf_to_path(weir_conf_get(root, "missing"), 1, &path, &errs), -1);
    assert_int_equal(weir_conf_to_path(weir_conf_get(root, "bad"), 0, &path, &errs), -1);
    assert_null(path);
    assert_int_equal(errs.count, 2);
    snprintf(expected, sizeof(expected), "%s:4: in \"missing\": cannot read file \"%s/none.txt\": No such file or directory", conf,
             dir);
    assert_string_equal(errs.messages[0], expected);
    snprintf(expected, sizeof(expected), "%s:5: in \"bad\": expected a non-empty string, got a sequence", conf);
    assert_string_equal(errs.messages[1], expected);
    weir_conf_free(root);

    /* A config named without a directory: relative names stay relative (to the working directory). */
    root = load("rel: a/b.txt\n", &errs);
    assert_int_equal(weir_conf_to_path(weir_conf_get(root, "rel"), 0, &path, &errs), 0);
    assert_string_equal(path, "a/b.txt");
    free(path);
    weir_conf_free(root);
    weir_conf_errors_dispose(&errs);

    assert_int_equal(unlink(file), 0);
    assert_int_equal(rmdir(dir), 0);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_scalar_document), cmocka_unit_test(test_mapping_lines_and_keys),
                cmocka_unit_test(test_sequence_lines_and_keys), cmocka_unit_test(test_anchors_and_aliases),
                cmocka_unit_test(test_alias_errors), cmocka_unit_test(test_alias_bomb), cmocka_unit_test(test_nesting_too_deep),
                cmocka_unit_test(test_empty_file), cmocka_unit_test(test_syntax_error), cmocka_unit_test(test_invalid_utf8),
                cmocka_unit_test(test_duplicate_keys), cmocka_unit_test(test_non_scalar_key),
                cmocka_unit_test(test_several_documents), cmocka_unit_test(test_missing_file), cmocka_unit_test(test_load_file),
                cmocka_unit_test(test_error_format), cmocka_unit_test(test_expect_type), cmocka_unit_test(test_to_int64),
                cmocka_unit_test(test_to_size), cmocka_unit_test(test_to_bool), cmocka_unit_test(test_to_string),
                cmocka_unit_test(test_to_path))
