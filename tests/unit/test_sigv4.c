/* SigV4: cases of the published SigV4 test suite (aws-c-auth's tests/aws-signing-test-suite/v4, the ones whose
 * result is what S3 computes: unnormalized paths, or paths that normalisation leaves alone), the S3 documentation's
 * own examples ("Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk"),
 * hash and HMAC vectors, the key-encoding edge cases, and every input the signer refuses. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "unit.h"
#include "weir/common.h"
#include "weir/sigv4.h"

static h2o_mem_pool_t pool;

static int setup(void **state)
{
    h2o_mem_init_pool(&pool);
    return 0;
}

static int teardown(void **state)
{
    h2o_mem_clear_pool(&pool);
    return 0;
}

#define S(lit) h2o_iovec_init((lit), strlen(lit))

/* The suite's credentials. */
#define CRED ((weir_sigv4_credentials_t){S("AKIDEXAMPLE"), S("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), {NULL, 0}})

static h2o_iovec_t str(const char *s)
{
    return s != NULL ? h2o_iovec_init(s, strlen(s)) : h2o_iovec_init(NULL, 0);
}

static void assert_iov_equal(h2o_iovec_t got, const char *expected, const char *what, const char *name)
{
    if (got.len != strlen(expected) || memcmp(got.base, expected, got.len) != 0) {
        print_error("%s: %s differs\n--- got:\n%.*s\n--- expected:\n%s\n", name, what, (int)got.len, got.base, expected);
        fail();
    }
    assert_int_equal(got.base[got.len], '\0');
}

/* One case of the suite. Inputs are as the request would be written on the wire before encoding: paths and query
 * parameters NOT encoded (the suite's request.txt holds the raw path; its %-escaped query names are decoded here),
 * header values as they follow the colon. All cases use the suite's context: AKIDEXAMPLE, region us-east-1, service
 * "service", 2015-08-30T12:36:00Z, and sign_body false (payload hash of the empty body, no x-amz-content-sha256)
 * except where a body is given (then the header is added and signed). */
typedef struct st_suite_case_t {
    const char *name, *method, *path;
    const char *headers[6][2];
    const char *query[4][2];
    const char *body, *token;
    const char *canonical_request, *string_to_sign, *signature;
} suite_case_t;

static const suite_case_t SUITE[] = {
    {"get-vanilla",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-vanilla-query-order-key-case",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{"Param2", "value2"}, {"Param1", "value1"}},
     NULL,
     NULL,
     "GET\n/"
     "\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-order-encoded",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{"Param-3", "Value3"}, {"Param", "Value2"}, {"\xe1\x88\xb4", "Value1"}},
     NULL,
     NULL,
     "GET\n/"
     "\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n868294f5c38bd141c4972a373a76654f1418a8e4fc18b2e7903ae45e8ae0ec71",
     "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
    {"get-vanilla-query-unreserved",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
       "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}},
     NULL,
     NULL,
     "GET\n/"
     "\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~"
     "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\nhost:example.amazonaws.com\nx-amz-date:"
     "20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\nc30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
     "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-utf8-query",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{"\xe1\x88\xb4", "bar"}},
     NULL,
     NULL,
     "GET\n/"
     "\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\neb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-vanilla-empty-query-key",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{"Param1", "value1"}},
     NULL,
     NULL,
     "GET\n/"
     "\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
     "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
    {"get-header-value-trim",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}, {"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b "
     "c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\na726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"get-header-key-duplicate",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}, {"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/"
     "\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\ndc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
     "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-order",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"},
      {"My-Header1", "value4"},
      {"My-Header1", "value1"},
      {"My-Header1", "value3"},
      {"My-Header1", "value2"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/"
     "\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
     "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"get-header-value-multiline",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}, {"My-Header1", "value1   value2      value3"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1 value2 "
     "value3\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\ne99419459a677bc11de234014be3c4e72c1ea5b454ceb58b613061f5d7a162e8",
     "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd"},
    {"get-space-unnormalized",
     "GET",
     "/example space/",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/example%20space/"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-slash-unnormalized",
     "GET",
     "//",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n//"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n80cb39203d058af815de2b79250ff56e1b73eb9b4718c86556cdc6f150c5d209",
     "c88bcd3d312d75078c0cd961d6deae3f4c754924b01669efcfcb439fd5e5b76e"},
    {"get-slashes-unnormalized",
     "GET",
     "//example//",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n//example//"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n528ec3105ee1f34ab014bb0a1a45da0ed2742a4fea3555149e5b4d5d201eb240",
     "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5"},
    {"get-slash-dot-slash-unnormalized",
     "GET",
     "/./",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/./"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\nd67825e2268bd77a97c7688b8d72c31a3c1855b309808505ba0a9747d2465aa7",
     "68714168e6557f8f2de0ef956fc24dc2593a4bd2961f8df51898d8a134695145"},
    {"get-slash-pointless-dot-unnormalized",
     "GET",
     "/./example",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/./"
     "example\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n73895e0e829507e28e39fd24669aedc2434a8e179e547e3c075b42921f952cdb",
     "beb03f223f7deae4146464f06e29eebbee9c8afbe15c290cf07aa8b119e14cff"},
    {"get-relative-unnormalized",
     "GET",
     "/example/..",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/example/"
     "..\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n0511f456aa502b456d135fcb9d749374a55228f9dbeedda1eacf659e05b0615b",
     "eca7ead57bb5aa5c8e28007acd4ff04e1ff9a0ff3b237ec1554a184887ff9282"},
    {"get-relative-relative-unnormalized",
     "GET",
     "/example1/example2/../..",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/example1/example2/../"
     "..\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n76115030c0f3ff06c20fdff5ceb6d5e0b835a1743e00b94fea7c7f381269437b",
     "dc33e0856fd4baca4d7aa2146c38958283844764f38c74252a333df5e613003b"},
    {"get-unreserved",
     "GET",
     "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/"
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\nhost:example.amazonaws.com\nx-amz-date:"
     "20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-utf8",
     "GET",
     "/\xe1\x88\xb4",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "GET\n/"
     "%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
    {"get-vanilla-with-session-token",
     "GET",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
     "GET\n/"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:"
     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n\nhost;x-amz-date;x-amz-security-"
     "token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
     "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"},
    {"post-vanilla",
     "POST",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "POST\n/"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-vanilla-query",
     "POST",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{"Param1", "value1"}},
     NULL,
     NULL,
     "POST\n/"
     "\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-header-key-case",
     "POST",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "POST\n/"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-header-key-sort",
     "POST",
     "/",
     {{"Host", "example.amazonaws.com"}, {"My-Header1", "value1"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "POST\n/"
     "\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\n9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
     "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
    {"post-header-value-case",
     "POST",
     "/",
     {{"Host", "example.amazonaws.com"}, {"My-Header1", "VALUE1"}},
     {{NULL, NULL}},
     NULL,
     NULL,
     "POST\n/"
     "\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-"
     "date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\nd51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
     "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
    {"post-sts-header-before",
     "POST",
     "/",
     {{"Host", "example.amazonaws.com"}},
     {{NULL, NULL}},
     NULL,
     "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/"
     "qkPpKPi/"
     "kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+"
     "xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==",
     "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:AQoDYXdzEPT//////////"
     "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/"
     "kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+"
     "xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/"
     "oLxBA==\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\nc237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
     "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"},
    {"post-x-www-form-urlencoded",
     "POST",
     "/",
     {{"Content-Type", "application/x-www-form-urlencoded"}, {"Host", "example.amazonaws.com"}, {"Content-Length", "13"}},
     {{NULL, NULL}},
     "Param1=value1",
     NULL,
     "POST\n/\n\ncontent-length:13\ncontent-type:application/"
     "x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-content-sha256:"
     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;"
     "host;x-amz-content-sha256;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\nb1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
     "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"},
    {"post-x-www-form-urlencoded-parameters",
     "POST",
     "/",
     {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
      {"Host", "example.amazonaws.com"},
      {"Content-Length", "13"}},
     {{NULL, NULL}},
     "Param1=value1",
     NULL,
     "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded; "
     "charset=utf-8\nhost:example.amazonaws.com\nx-amz-content-sha256:"
     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;"
     "host;x-amz-content-sha256;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/"
     "aws4_request\na89f1a5b53e37702ee6363ce1da3ce8f54386f3c8f352ae652153c2982a0bc4d",
     "328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422"},
};

static size_t fill_pairs(const char *const (*src)[2], size_t max, weir_sigv4_pair_t *dst)
{
    size_t n = 0;
    for (; n != max && src[n][0] != NULL; ++n)
        dst[n] = (weir_sigv4_pair_t){str(src[n][0]), str(src[n][1])};
    return n;
}

static void test_suite_cases(void **state)
{
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(SUITE); ++i) {
        const suite_case_t *c = SUITE + i;
        weir_sigv4_pair_t headers[6], query[4];
        char hash[WEIR_SIGV4_HEX_LEN + 1];
        weir_sigv4_credentials_t cred = {S("AKIDEXAMPLE"), S("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), str(c->token)};
        weir_sigv4_request_t r = {.method = str(c->method),
                                  .path = str(c->path),
                                  .headers = headers,
                                  .num_headers = fill_pairs(c->headers, 6, headers),
                                  .query = query,
                                  .num_query = fill_pairs(c->query, 4, query),
                                  .payload_hash = S(WEIR_SIGV4_EMPTY_SHA256),
                                  .region = S("us-east-1"),
                                  .service = S("service"),
                                  .amz_date = S("20150830T123600Z")};
        weir_sigv4_signed_t out;
        if (c->body != NULL) {
            assert_int_equal(weir_sigv4_sha256_hex(c->body, strlen(c->body), hash), 0);
            r.payload_hash = h2o_iovec_init(hash, WEIR_SIGV4_HEX_LEN);
            r.flags = WEIR_SIGV4_ADD_CONTENT_SHA256;
        }
        int ret = weir_sigv4_sign(&pool, &r, &cred, &out);
        if (ret != 0) {
            print_error("%s: weir_sigv4_sign returned %d\n", c->name, ret);
            fail();
        }
        assert_iov_equal(out.canonical_request, c->canonical_request, "canonical request", c->name);
        assert_iov_equal(out.string_to_sign, c->string_to_sign, "string to sign", c->name);
        assert_iov_equal(h2o_iovec_init(out.signature, strlen(out.signature)), c->signature, "signature", c->name);
        /* the Authorization value, with the signed headers taken from the canonical request's second-to-last line */
        const char *end = strrchr(c->canonical_request, '\n'), *start = end;
        while (start[-1] != '\n')
            --start;
        char expected[1024];
        snprintf(expected, sizeof(expected),
                 "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=%.*s, "
                 "Signature=%s",
                 (int)(end - start), start, c->signature);
        assert_iov_equal(out.authorization, expected, "authorization", c->name);
    }
}

/* get-header-value-multiline: a folded header (obs-fold) is refused as such; unfolded (the line breaks replaced by
 * spaces, RFC 7230 3.2.4), it signs as the suite says (the case above). */
static void test_suite_multiline_refused_folded(void **state)
{
    const char *folded[] = {"value1\n  value2\n     value3", "value1\r\n  value2\r\n     value3"};
    for (size_t i = 0; i != 2; ++i) {
        weir_sigv4_pair_t headers[] = {{S("Host"), S("example.amazonaws.com")}, {S("My-Header1"), S(folded[i])}};
        weir_sigv4_credentials_t cred = CRED;
        weir_sigv4_request_t r = {.method = S("GET"),
                                  .path = S("/"),
                                  .headers = headers,
                                  .num_headers = 2,
                                  .payload_hash = S(WEIR_SIGV4_EMPTY_SHA256),
                                  .region = S("us-east-1"),
                                  .service = S("service"),
                                  .amz_date = S("20150830T123600Z")};
        weir_sigv4_signed_t out;
        assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), -EINVAL);
    }
}

/* The S3 documentation's examples (examplebucket, AKIAIOSFODNN7EXAMPLE, 2013-05-24). */
#define S3_DOC_CRED                                                                                                                \
    ((weir_sigv4_credentials_t){S("AKIAIOSFODNN7EXAMPLE"), S("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), {NULL, 0}})

static weir_sigv4_request_t s3_doc_request(const char *method, const char *path, const weir_sigv4_pair_t *headers, size_t n)
{
    return (weir_sigv4_request_t){.method = S(method),
                                  .path = S(path),
                                  .headers = headers,
                                  .num_headers = n,
                                  .payload_hash = S(WEIR_SIGV4_EMPTY_SHA256),
                                  .region = S("us-east-1"),
                                  .service = S("s3"),
                                  .amz_date = S("20130524T000000Z"),
                                  .flags = WEIR_SIGV4_ADD_CONTENT_SHA256};
}

static void test_s3_doc_put_object(void **state)
{
    static const char body[] = "Welcome to Amazon S3.";
    char hash[WEIR_SIGV4_HEX_LEN + 1];
    weir_sigv4_pair_t headers[] = {{S("Host"), S("examplebucket.s3.amazonaws.com")},
                                   {S("Date"), S("Fri, 24 May 2013 00:00:00 GMT")},
                                   {S("x-amz-storage-class"), S("REDUCED_REDUNDANCY")}};
    weir_sigv4_request_t r = s3_doc_request("PUT", "/test$file.text", headers, 3);
    weir_sigv4_signed_t out;

    assert_int_equal(weir_sigv4_sha256_hex(body, sizeof(body) - 1, hash), 0);
    assert_string_equal(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    r.payload_hash = h2o_iovec_init(hash, WEIR_SIGV4_HEX_LEN);
    assert_int_equal(weir_sigv4_sign(&pool, &r, &S3_DOC_CRED, &out), 0);
    assert_iov_equal(out.canonical_uri, "/test%24file.text", "canonical URI", "PUT object");
    assert_iov_equal(out.canonical_request,
                     "PUT\n/test%24file.text\n\n"
                     "date:Fri, 24 May 2013 00:00:00 GMT\n"
                     "host:examplebucket.s3.amazonaws.com\n"
                     "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
                     "x-amz-date:20130524T000000Z\n"
                     "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
                     "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
                     "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                     "canonical request", "PUT object");
    assert_iov_equal(out.string_to_sign,
                     "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                     "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
                     "string to sign", "PUT object");
    assert_string_equal(out.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
    assert_iov_equal(out.authorization,
                     "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                     "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
                     "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
                     "authorization", "PUT object");
}

static void test_s3_doc_get_object(void **state)
{
    weir_sigv4_pair_t headers[] = {{S("Host"), S("examplebucket.s3.amazonaws.com")}, {S("Range"), S("bytes=0-9")}};
    weir_sigv4_request_t r = s3_doc_request("GET", "/test.txt", headers, 2);
    weir_sigv4_signed_t out;

    assert_int_equal(weir_sigv4_sign(&pool, &r, &S3_DOC_CRED, &out), 0);
    assert_iov_equal(out.canonical_request,
                     "GET\n/test.txt\n\n"
                     "host:examplebucket.s3.amazonaws.com\n"
                     "range:bytes=0-9\n"
                     "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                     "x-amz-date:20130524T000000Z\n\n"
                     "host;range;x-amz-content-sha256;x-amz-date\n"
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                     "canonical request", "GET object");
    assert_iov_equal(out.string_to_sign,
                     "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                     "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
                     "string to sign", "GET object");
    assert_string_equal(out.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_s3_doc_get_bucket_lifecycle_and_list(void **state)
{
    weir_sigv4_pair_t headers[] = {{S("Host"), S("examplebucket.s3.amazonaws.com")}};
    weir_sigv4_pair_t lifecycle[] = {{S("lifecycle"), S("")}};
    weir_sigv4_pair_t list[] = {{S("prefix"), S("J")}, {S("max-keys"), S("2")}}; /* out of order: the signer sorts */
    weir_sigv4_request_t r = s3_doc_request("GET", "/", headers, 1);
    weir_sigv4_signed_t out;

    r.query = lifecycle, r.num_query = 1;
    assert_int_equal(weir_sigv4_sign(&pool, &r, &S3_DOC_CRED, &out), 0);
    assert_iov_equal(out.canonical_query, "lifecycle=", "canonical query", "GET lifecycle");
    assert_string_equal(out.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");

    r.query = list, r.num_query = 2;
    assert_int_equal(weir_sigv4_sign(&pool, &r, &S3_DOC_CRED, &out), 0);
    assert_iov_equal(out.canonical_query, "max-keys=2&prefix=J", "canonical query", "GET bucket");
    assert_string_equal(out.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_sha256_vectors(void **state)
{
    char hex[WEIR_SIGV4_HEX_LEN + 1];
    static const char zeros[1000] = {0};

    assert_int_equal(weir_sigv4_sha256_hex("", 0, hex), 0);
    assert_string_equal(hex, WEIR_SIGV4_EMPTY_SHA256);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(weir_sigv4_sha256_hex(NULL, 0, hex), 0);
    assert_string_equal(hex, WEIR_SIGV4_EMPTY_SHA256);
    /* FIPS 180-2's "abc" and the two-block message */
    assert_int_equal(weir_sigv4_sha256_hex("abc", 3, hex), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(weir_sigv4_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex), 0);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* bytes, not strings: NULs count */
    assert_int_equal(weir_sigv4_sha256_hex(zeros, sizeof(zeros), hex), 0);
    assert_string_equal(hex, "541b3e9daa09b20bf85fa273e5cbd3e80185aa4ec298e765db87742b70138a53");
}

static void test_hmac_rfc4231(void **state)
{
    unsigned char key[20], mac[32];
    char hex[65];

    memset(key, 0x0b, sizeof(key));
    assert_int_equal(weir_sigv4_hmac_sha256(key, sizeof(key), "Hi There", 8, mac), 0);
    for (int i = 0; i != 32; ++i)
        sprintf(hex + 2 * i, "%02x", mac[i]);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_int_equal(weir_sigv4_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac), 0);
    for (int i = 0; i != 32; ++i)
        sprintf(hex + 2 * i, "%02x", mac[i]);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* "Examples of how to derive a signing key for Signature Version 4" (20150830, us-east-1, iam). */
static void test_derive_key(void **state)
{
    unsigned char key[32];
    char hex[65];

    assert_int_equal(
        weir_sigv4_derive_key(S("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), S("20150830"), S("us-east-1"), S("iam"), key), 0);
    for (int i = 0; i != 32; ++i)
        sprintf(hex + 2 * i, "%02x", key[i]);
    assert_string_equal(hex, "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");

    assert_int_equal(weir_sigv4_derive_key(S(""), S("20150830"), S("us-east-1"), S("iam"), key), -EINVAL);
    assert_int_equal(weir_sigv4_derive_key(S("k"), S("2015083"), S("us-east-1"), S("iam"), key), -EINVAL);
    assert_int_equal(weir_sigv4_derive_key(S("k"), S("2015083x"), S("us-east-1"), S("iam"), key), -EINVAL);
    assert_int_equal(weir_sigv4_derive_key(S("k"), S("20150830"), S(""), S("iam"), key), -EINVAL);
    assert_int_equal(weir_sigv4_derive_key(S("k"), S("20150830"), S("us/east"), S("iam"), key), -EINVAL);
    assert_int_equal(weir_sigv4_derive_key(S("k"), S("20150830"), S("us-east-1"), S("i m"), key), -EINVAL);
}

static void test_format_date(void **state)
{
    char d[WEIR_SIGV4_DATE_LEN + 1];

    assert_int_equal(weir_sigv4_format_date(1440938160, d), 0);
    assert_string_equal(d, "20150830T123600Z");
    assert_int_equal(weir_sigv4_format_date(1369353600, d), 0);
    assert_string_equal(d, "20130524T000000Z");
    assert_int_equal(weir_sigv4_format_date(0, d), 0);
    assert_string_equal(d, "19700101T000000Z");
    assert_int_equal(weir_sigv4_format_date(-1, d), 0);
    assert_string_equal(d, "19691231T235959Z");
    assert_int_equal(weir_sigv4_format_date(253402300799, d), 0); /* the last second of 9999 */
    assert_string_equal(d, "99991231T235959Z");
    assert_int_equal(weir_sigv4_format_date(253402300800, d), -ERANGE);
}

static void assert_encoded(const char *in, size_t len, int keep_slash, const char *expected)
{
    h2o_iovec_t got = weir_sigv4_uri_encode(&pool, in, len, keep_slash);
    assert_iov_equal(got, expected, "encoding", in);
}

/* The object-key encoding: unreserved bytes kept, '/' kept in paths, everything else %XX with upper-case hex. */
static void test_uri_encode_edge_cases(void **state)
{
    assert_encoded("", 0, 1, "");
    assert_encoded("a b", 3, 1, "a%20b");
    assert_encoded("a+b", 3, 1, "a%2Bb");
    assert_encoded("~user", 5, 1, "~user");
    assert_encoded("-._~", 4, 0, "-._~");
    assert_encoded("a/b/c", 5, 1, "a/b/c");
    assert_encoded("a/b/c", 5, 0, "a%2Fb%2Fc");
    assert_encoded("100%", 4, 1, "100%25");
    assert_encoded("%20", 3, 1, "%2520"); /* encoded once: an escape in a key is the key's own bytes */
    assert_encoded("caf\xc3\xa9", 5, 1, "caf%C3%A9");
    assert_encoded("\xe6\x97\xa5\xe6\x9c\xac/\xf0\x9f\x90\x88.jpg", 15, 1, "%E6%97%A5%E6%9C%AC/%F0%9F%90%88.jpg");
    assert_encoded("\xff\xfe", 2, 1, "%FF%FE"); /* not UTF-8: still bytes, still encoded */
    assert_encoded("a\0b", 3, 1, "a%00b");
    assert_encoded("//a//b//", 8, 1, "//a//b//"); /* empty segments kept */
    assert_encoded("./../.", 6, 1, "./../.");     /* no normalisation */
    assert_encoded("!'()*", 5, 1, "%21%27%28%29%2A");
    assert_encoded("=&?#$,;:@", 9, 1, "%3D%26%3F%23%24%2C%3B%3A%40");
    assert_encoded("\\\"<>[]{}|^`", 11, 1, "%5C%22%3C%3E%5B%5D%7B%7D%7C%5E%60");
    assert_encoded("\t\r\n\x7f", 4, 1, "%09%0D%0A%7F");

    /* every byte, against the rule written out */
    for (int keep = 0; keep != 2; ++keep) {
        for (int c = 0; c != 256; ++c) {
            char in = (char)c, expected[4];
            int kept = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                       c == '_' || c == '~' || (keep && c == '/');
            if (kept)
                snprintf(expected, sizeof(expected), "%c", c);
            else
                snprintf(expected, sizeof(expected), "%%%02X", c);
            assert_encoded(&in, 1, keep, expected);
        }
    }
}

static weir_sigv4_request_t put_request(const char *path, const weir_sigv4_pair_t *headers, size_t n)
{
    return (weir_sigv4_request_t){.method = S("PUT"),
                                  .path = S(path),
                                  .headers = headers,
                                  .num_headers = n,
                                  .payload_hash = S(WEIR_SIGV4_EMPTY_SHA256),
                                  .region = S("us-east-1"),
                                  .service = S("s3"),
                                  .amz_date = S("20150830T123600Z"),
                                  .flags = WEIR_SIGV4_ADD_CONTENT_SHA256};
}

/* A path-style PUT of a key with every kind of awkward byte: the path is encoded once, the same in the request
 * target and in the canonical request. */
static void test_s3_put_key_encoding(void **state)
{
    weir_sigv4_pair_t headers[] = {{S("host"), S("127.0.0.1:4569")}};
    weir_sigv4_request_t r = put_request("/images/uploads/a b+c~d%e/caf\xc3\xa9//x", headers, 1);
    weir_sigv4_signed_t out;

    assert_int_equal(weir_sigv4_sign(&pool, &r, &CRED, &out), 0);
    assert_iov_equal(out.canonical_uri, "/images/uploads/a%20b%2Bc~d%25e/caf%C3%A9//x", "canonical URI", "key");
    static const char start[] = "PUT\n/images/uploads/a%20b%2Bc~d%25e/caf%C3%A9//x\n\nhost:127.0.0.1:4569\n";
    assert_memory_equal(out.canonical_request.base, start, sizeof(start) - 1);
    assert_iov_equal(out.canonical_query, "", "canonical query", "key");
}

static void test_extra_headers_and_token(void **state)
{
    weir_sigv4_pair_t headers[] = {{S("Host"), S("s3.example")}, {S("Content-Type"), S("image/jpeg")}};
    weir_sigv4_credentials_t cred = CRED;
    weir_sigv4_request_t r = put_request("/b/k", headers, 2);
    weir_sigv4_signed_t out;

    /* with x-amz-content-sha256 and a token: all three added, sorted, and signed */
    cred.session_token = S("TOKEN/+=abc");
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), 0);
    assert_int_equal(out.num_extra_headers, 3);
    assert_iov_equal(out.extra_headers[0].name, "x-amz-content-sha256", "extra name", "token");
    assert_iov_equal(out.extra_headers[0].value, WEIR_SIGV4_EMPTY_SHA256, "extra value", "token");
    assert_int_equal(out.extra_headers[1].name.len, 10);
    assert_memory_equal(out.extra_headers[1].name.base, "x-amz-date", 10);
    assert_memory_equal(out.extra_headers[1].value.base, "20150830T123600Z", 16);
    assert_memory_equal(out.extra_headers[2].name.base, "x-amz-security-token", 20);
    assert_memory_equal(out.extra_headers[2].value.base, "TOKEN/+=abc", 11);
    assert_iov_equal(out.canonical_request,
                     "PUT\n/b/k\n\ncontent-type:image/jpeg\nhost:s3.example\n"
                     "x-amz-content-sha256:" WEIR_SIGV4_EMPTY_SHA256 "\nx-amz-date:20150830T123600Z\n"
                     "x-amz-security-token:TOKEN/+=abc\n\n"
                     "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token\n" WEIR_SIGV4_EMPTY_SHA256,
                     "canonical request", "token");
    assert_iov_equal(out.credential_scope, "20150830/us-east-1/s3/aws4_request", "scope", "token");
    assert_iov_equal(out.signed_headers, "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token", "signed headers",
                     "token");
    char expected[512];
    snprintf(expected, sizeof(expected),
             "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, "
             "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=%s",
             out.signature);
    assert_iov_equal(out.authorization, expected, "authorization", "token");
    char with_token[WEIR_SIGV4_HEX_LEN + 1];
    memcpy(with_token, out.signature, sizeof(with_token));

    /* without them: x-amz-date only, and another signature */
    r.flags = 0;
    cred.session_token = h2o_iovec_init(NULL, 0);
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), 0);
    assert_int_equal(out.num_extra_headers, 1);
    assert_memory_equal(out.extra_headers[0].name.base, "x-amz-date", 10);
    assert_iov_equal(out.signed_headers, "content-type;host;x-amz-date", "signed headers", "no token");
    assert_string_not_equal(out.signature, with_token);
    /* without the flag, a caller may sign x-amz-content-sha256 itself */
    weir_sigv4_pair_t own[] = {{S("Host"), S("s3.example")}, {S("X-Amz-Content-SHA256"), S(WEIR_SIGV4_UNSIGNED_PAYLOAD)}};
    r.headers = own;
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), 0);
    assert_iov_equal(out.signed_headers, "host;x-amz-content-sha256;x-amz-date", "signed headers", "own sha");
}

static void test_unsigned_payload(void **state)
{
    weir_sigv4_pair_t headers[] = {{S("Host"), S("s3.example")}};
    weir_sigv4_request_t r = put_request("/b/k", headers, 1);
    weir_sigv4_signed_t out;
    char signed_body[WEIR_SIGV4_HEX_LEN + 1];

    assert_int_equal(weir_sigv4_sign(&pool, &r, &CRED, &out), 0);
    memcpy(signed_body, out.signature, sizeof(signed_body));
    r.payload_hash = S(WEIR_SIGV4_UNSIGNED_PAYLOAD);
    assert_int_equal(weir_sigv4_sign(&pool, &r, &CRED, &out), 0);
    assert_iov_equal(out.canonical_request,
                     "PUT\n/b/k\n\nhost:s3.example\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:20150830T123600Z\n\n"
                     "host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD",
                     "canonical request", "unsigned");
    assert_iov_equal(out.extra_headers[0].value, "UNSIGNED-PAYLOAD", "x-amz-content-sha256", "unsigned");
    assert_string_not_equal(out.signature, signed_body);
}

/* Trimall: SP and HTAB trimmed at both ends, inner runs folded to one space; other bytes as they are. */
static void test_header_value_whitespace(void **state)
{
    weir_sigv4_pair_t headers[] = {{S("Host"), S("  s3.example\t")},
                                   {S("X-A"), S(" \t a \t\t b  \t")},
                                   {S("x-empty"), S("")},
                                   {S("x-blank"), S(" \t  ")},
                                   {S("x-obs"), S("caf\xc3\xa9  \"q\"")}};
    weir_sigv4_request_t r = put_request("/b/k", headers, 5);
    weir_sigv4_signed_t out;

    r.flags = 0;
    assert_int_equal(weir_sigv4_sign(&pool, &r, &CRED, &out), 0);
    assert_iov_equal(out.canonical_request,
                     "PUT\n/b/k\n\nhost:s3.example\nx-a:a b\nx-amz-date:20150830T123600Z\nx-blank:\nx-empty:\n"
                     "x-obs:caf\xc3\xa9 \"q\"\n\nhost;x-a;x-amz-date;x-blank;x-empty;x-obs\n" WEIR_SIGV4_EMPTY_SHA256,
                     "canonical request", "whitespace");
}

/* Names are compared lower-cased; a repeated name is one header, its values joined in the order given; sorting is by
 * bytes (so "x-a" < "x-a-b" < "x-ab"). */
static void test_duplicate_headers_and_sorting(void **state)
{
    weir_sigv4_pair_t headers[] = {{S("X-A"), S("1")},   {S("x-ab"), S("4")}, {S("x-a"), S("2")},
                                   {S("x-a-b"), S("5")}, {S("Host"), S("h")}, {S("X-a"), S(" 3 ")}};
    weir_sigv4_request_t r = put_request("/", headers, 6);
    weir_sigv4_signed_t out;

    r.flags = 0;
    assert_int_equal(weir_sigv4_sign(&pool, &r, &CRED, &out), 0);
    assert_iov_equal(out.canonical_request,
                     "PUT\n/\n\nhost:h\nx-a:1,2,3\nx-a-b:5\nx-ab:4\nx-amz-date:20150830T123600Z\n\n"
                     "host;x-a;x-a-b;x-ab;x-amz-date\n" WEIR_SIGV4_EMPTY_SHA256,
                     "canonical request", "duplicates");
}

/* Query: names and values encoded (with '/' as %2F, '+' as %2B, a space as %20), sorted by encoded name, then value. */
static void test_query_encoding_and_sorting(void **state)
{
    weir_sigv4_pair_t headers[] = {{S("Host"), S("h")}};
    weir_sigv4_pair_t query[] = {{S("b"), S("2")},  {S("a"), S("x y")},      {S("a"), S("+")},
                                 {S("c"), S("")},   {S("prefix"), S("a/b")}, {S("a b"), S("1")},
                                 {S("a~"), S("~")}, {S(""), S("e")},         {S("a+b"), S("\xc3\xa9")}};
    weir_sigv4_request_t r = put_request("/", headers, 1);
    weir_sigv4_signed_t out;

    r.query = query, r.num_query = WEIR_ARRAY_SIZE(query);
    assert_int_equal(weir_sigv4_sign(&pool, &r, &CRED, &out), 0);
    assert_iov_equal(out.canonical_query, "=e&a=%2B&a=x%20y&a%20b=1&a%2Bb=%C3%A9&a~=~&b=2&c=&prefix=a%2Fb", "canonical query",
                     "query");
}

static int sign_ret(const weir_sigv4_request_t *r, const weir_sigv4_credentials_t *cred)
{
    weir_sigv4_signed_t out;
    return weir_sigv4_sign(&pool, r, cred, &out);
}

static void test_rejects_bad_input(void **state)
{
    weir_sigv4_pair_t headers[2] = {{S("Host"), S("h")}};
    weir_sigv4_request_t good = put_request("/b/k", headers, 1), r;
    weir_sigv4_credentials_t cred;

    assert_int_equal(sign_ret(&good, &CRED), 0);

#define EXPECT(ret, field, value)                                                                                                  \
    do {                                                                                                                           \
        r = good;                                                                                                                  \
        r.field = value;                                                                                                           \
        assert_int_equal(sign_ret(&r, &CRED), ret);                                                                                \
    } while (0)
    EXPECT(-EINVAL, method, S(""));
    EXPECT(-EINVAL, method, S("P T"));
    EXPECT(-EINVAL, method, S("PUT\n"));
    EXPECT(-EINVAL, path, S(""));
    EXPECT(-EINVAL, path, S("b/k"));
    EXPECT(-EINVAL, path, h2o_iovec_init(NULL, 3));
    EXPECT(-EINVAL, region, S(""));
    EXPECT(-EINVAL, region, S("us/east"));
    EXPECT(-EINVAL, region, S("us east"));
    EXPECT(-EINVAL, service, S("s3~"));
    EXPECT(-EINVAL, amz_date, S(""));
    EXPECT(-EINVAL, amz_date, S("20150830T123600"));
    EXPECT(-EINVAL, amz_date, S("20150830T123600z"));
    EXPECT(-EINVAL, amz_date, S("20150830 123600Z"));
    EXPECT(-EINVAL, amz_date, S("2015083OT123600Z"));
    EXPECT(-EINVAL, amz_date, S("20150830T123600ZZ"));
    EXPECT(-EINVAL, payload_hash, S(""));
    EXPECT(-EINVAL, payload_hash, S("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
    EXPECT(-EINVAL, payload_hash, S("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"));
    EXPECT(-EINVAL, payload_hash, S("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555"));
    EXPECT(-EINVAL, payload_hash, S("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    EXPECT(-EINVAL, payload_hash, S("unsigned-payload"));
    EXPECT(-EINVAL, num_headers, 0); /* no host */
    EXPECT(-EINVAL, headers, NULL);
    EXPECT(0, query, NULL); /* with no parameters */
    good.query = NULL;
    EXPECT(-EINVAL, num_query, 1);
#undef EXPECT

    /* headers: names are tokens, values have no control characters but HTAB, the signer's own are refused */
    static const char *const bad_names[] = {"", "a b", "a:b", "a\"b", "a\xc3\xa9", "a\nb", "(x)"};
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(bad_names); ++i) {
        r = good;
        headers[1] = (weir_sigv4_pair_t){S(bad_names[i]), S("v")};
        r.num_headers = 2;
        assert_int_equal(sign_ret(&r, &CRED), -EINVAL);
    }
    static const char bad_values[][4] = {"a\rb", "a\nb", "\x01", "\x7f", "\x1f"};
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(bad_values); ++i) {
        r = good;
        headers[1] = (weir_sigv4_pair_t){S("x-v"), S(bad_values[i])};
        r.num_headers = 2;
        assert_int_equal(sign_ret(&r, &CRED), -EINVAL);
    }
    r = good;
    headers[1] = (weir_sigv4_pair_t){S("x-v"), h2o_iovec_init("a\0b", 3)};
    r.num_headers = 2;
    assert_int_equal(sign_ret(&r, &CRED), -EINVAL);
    static const char *const own[] = {"Authorization", "X-Amz-Date", "x-amz-content-sha256"};
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(own); ++i) {
        r = good;
        headers[1] = (weir_sigv4_pair_t){S(own[i]), S("v")};
        r.num_headers = 2;
        assert_int_equal(sign_ret(&r, &CRED), -EINVAL);
    }
    /* x-amz-security-token is the signer's only when it has a token */
    r = good;
    headers[1] = (weir_sigv4_pair_t){S("X-Amz-Security-Token"), S("t")};
    r.num_headers = 2;
    assert_int_equal(sign_ret(&r, &CRED), 0);
    cred = CRED;
    cred.session_token = S("t");
    assert_int_equal(sign_ret(&r, &cred), -EINVAL);

    /* credentials */
    static const char *const bad_ids[] = {"", "AK/ID", "AK,ID", "AK ID", "AK\xc3\xa9"};
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(bad_ids); ++i) {
        cred = CRED;
        cred.access_key_id = S(bad_ids[i]);
        assert_int_equal(sign_ret(&good, &cred), -EINVAL);
    }
    cred = CRED;
    cred.secret_access_key = S("");
    assert_int_equal(sign_ret(&good, &cred), -EINVAL);
    cred.secret_access_key = h2o_iovec_init("\0\xff secret", 9); /* any bytes */
    assert_int_equal(sign_ret(&good, &cred), 0);
    static const char *const bad_tokens[] = {"a b", "a\nb", "a\tb", "\xc3\xa9"};
    for (size_t i = 0; i != WEIR_ARRAY_SIZE(bad_tokens); ++i) {
        cred = CRED;
        cred.session_token = S(bad_tokens[i]);
        assert_int_equal(sign_ret(&good, &cred), -EINVAL);
    }
}

/* Bounded work: at most WEIR_SIGV4_MAX_FIELD bytes per field and WEIR_SIGV4_MAX_PAIRS headers or parameters. */
static void test_limits(void **state)
{
    static char big[WEIR_SIGV4_MAX_FIELD + 1];
    weir_sigv4_pair_t headers[WEIR_SIGV4_MAX_PAIRS + 1] = {{S("Host"), S("h")}}, query[WEIR_SIGV4_MAX_PAIRS + 1];
    weir_sigv4_request_t r = put_request("/b/k", headers, 1);
    weir_sigv4_credentials_t cred = CRED;
    weir_sigv4_signed_t out;

    memset(big, 'a', sizeof(big));
    big[0] = '/';
    for (size_t i = 1; i != WEIR_ARRAY_SIZE(headers); ++i) {
        char *name = h2o_mem_alloc_pool(&pool, 16);
        snprintf(name, 16, "x-h%zu", i);
        headers[i] = (weir_sigv4_pair_t){S(name), h2o_iovec_init(big, WEIR_SIGV4_MAX_FIELD)};
        query[i] = (weir_sigv4_pair_t){S(name), h2o_iovec_init(big, WEIR_SIGV4_MAX_FIELD)};
    }
    query[0] = query[1];

    /* at the limits: signed (each header value is the longest allowed, the path too, a path of 'a's after the '/') */
    r.num_headers = WEIR_SIGV4_MAX_PAIRS;
    r.query = query, r.num_query = WEIR_SIGV4_MAX_PAIRS;
    r.path = h2o_iovec_init(big, WEIR_SIGV4_MAX_FIELD);
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), 0);
    assert_true(out.canonical_request.len > (size_t)WEIR_SIGV4_MAX_PAIRS * WEIR_SIGV4_MAX_FIELD);
    assert_int_equal(out.canonical_query.len, strlen(out.canonical_query.base)); /* fully built, no stray NUL */

    /* one over */
    r.num_headers = WEIR_SIGV4_MAX_PAIRS + 1;
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), -E2BIG);
    r.num_headers = 1;
    r.num_query = WEIR_SIGV4_MAX_PAIRS + 1;
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), -E2BIG);
    r.num_query = 0;
    r.path = h2o_iovec_init(big, WEIR_SIGV4_MAX_FIELD + 1);
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), -E2BIG);
    r.path = S("/");
    headers[1].value = h2o_iovec_init(big, WEIR_SIGV4_MAX_FIELD + 1);
    r.num_headers = 2;
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), -E2BIG);
    r.num_headers = 1;
    cred.secret_access_key = h2o_iovec_init(big, WEIR_SIGV4_MAX_FIELD + 1);
    assert_int_equal(weir_sigv4_sign(&pool, &r, &cred, &out), -E2BIG);
}

WEIR_UNIT_TESTS(cmocka_unit_test_setup_teardown(test_suite_cases, setup, teardown),
                cmocka_unit_test_setup_teardown(test_suite_multiline_refused_folded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_s3_doc_put_object, setup, teardown),
                cmocka_unit_test_setup_teardown(test_s3_doc_get_object, setup, teardown),
                cmocka_unit_test_setup_teardown(test_s3_doc_get_bucket_lifecycle_and_list, setup, teardown),
                cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_hmac_rfc4231), cmocka_unit_test(test_derive_key),
                cmocka_unit_test(test_format_date), cmocka_unit_test_setup_teardown(test_uri_encode_edge_cases, setup, teardown),
                cmocka_unit_test_setup_teardown(test_s3_put_key_encoding, setup, teardown),
                cmocka_unit_test_setup_teardown(test_extra_headers_and_token, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unsigned_payload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_header_value_whitespace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_headers_and_sorting, setup, teardown),
                cmocka_unit_test_setup_teardown(test_query_encoding_and_sorting, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rejects_bad_input, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits, setup, teardown))
