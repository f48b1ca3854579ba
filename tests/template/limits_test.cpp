// Templates that are broken or hostile: integer arithmetic at the ends of 64 bits,
// nesting past the limits, runaway loops and sizes. Each gets an ft::Error with the
// place, never a signal; the values that fit are Python's.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/template/ast.h"
#include "ft/template/interpreter.h"

namespace {

using json = nlohmann::ordered_json;

std::string render(const std::string& source, const json& vars = json::object(),
                   int64_t max_steps = ft::jinja::kMaxSteps) {
  ft::jinja::Body body = ft::jinja::parse(source);
  ft::jinja::Interpreter interpreter;
  return interpreter.render(body, ft::jinja::Value::from_json(vars), max_steps);
}

// The whole message of the ft::Error that rendering throws ("" when none is thrown).
std::string error_of(const std::string& source, const json& vars = json::object(),
                     int64_t max_steps = ft::jinja::kMaxSteps) {
  try {
    render(source, vars, max_steps);
  } catch (const ft::Error& e) {
    return e.what();
  }
  return "";
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

const std::string kMin = "(-9223372036854775807 - 1)";

}  // namespace

// INT64_MIN // -1 trapped (SIGFPE); the rest wrapped silently.
TEST(TemplateIntegers, OverflowIsAnErrorNotAWrap) {
  const std::string tail = " (template integers are 64-bit; Python would give a bigger integer)";
  EXPECT_EQ(error_of("{{ " + kMin + " // -1 }}"),
            "[template] line 1, column 31: integer overflow in -9223372036854775808 // -1" + tail);
  EXPECT_EQ(error_of("{{ 9223372036854775807 + 1 }}"),
            "[template] line 1, column 24: integer overflow in 9223372036854775807 + 1" + tail);
  EXPECT_EQ(error_of("{{ " + kMin + " - 1 }}"),
            "[template] line 1, column 31: integer overflow in -9223372036854775808 - 1" + tail);
  EXPECT_EQ(error_of("{{ 4294967296 * 4294967296 }}"),
            "[template] line 1, column 15: integer overflow in 4294967296 * 4294967296" + tail);
  EXPECT_EQ(error_of("{{ 2 ** 63 }}"),
            "[template] line 1, column 6: integer overflow in 2 ** 63" + tail);
  EXPECT_EQ(error_of("{{ -" + kMin + " }}"),
            "[template] line 1, column 4: integer overflow in -(-9223372036854775808) (template "
            "integers are 64-bit)");
  EXPECT_EQ(error_of("{{ " + kMin + " | abs }}"),
            "[template] line 1, column 33: integer overflow in abs(-9223372036854775808) "
            "(template integers are 64-bit)");
  EXPECT_EQ(error_of("{{ [9223372036854775807, 1] | sum }}"),
            "[template] line 1, column 31: integer overflow in 9223372036854775807 + 1" + tail);
  EXPECT_EQ(error_of("{{ 1e300 | int }}"),
            "[template] line 1, column 12: int(1e+300) does not fit in 64 bits, which template "
            "integers have");
  EXPECT_EQ(error_of("{{ n }}", {{"n", 18446744073709551615ull}}),
            "[template] the integer 18446744073709551615 does not fit in 64 bits, which template "
            "integers have");
}

TEST(TemplateIntegers, PythonResultsWhereTheyFit) {
  EXPECT_EQ(render("{{ " + kMin + " % -1 }}"), "0");
  EXPECT_EQ(render("{{ 7 // -2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ -7 % -3 }}"),
            "-4 -4 2 -2 -1");
  EXPECT_EQ(render("{{ (-2) ** 63 }} {{ 3 ** 39 }} {{ 2 ** 0 }}"),
            "-9223372036854775808 4052555153018976267 1");
  // Exponents far past 63 answer at once for the bases that stay small.
  EXPECT_EQ(render("{{ 1 ** 1000000000000 }} {{ (-1) ** 1000000000001 }} {{ 0 ** 1000000000000 }}"),
            "1 -1 0");
  EXPECT_EQ(render("{{ -(" + kMin + " + 1) }} {{ (" + kMin + " + 1) | abs }}"),
            "9223372036854775807 9223372036854775807");
  EXPECT_EQ(render("{{ range(9223372036854775806, 9223372036854775807, 1000) | list }}"),
            "[9223372036854775806]");
  EXPECT_EQ(render("{{ 'abc'[1:9223372036854775807:4611686018427387904] }}"), "b");
}

// Each of these used to overflow the stack while parsing, rendering or freeing.
TEST(TemplateNesting, DeepTemplatesAreRefused) {
  const std::string error = "nesting deeper than 512";
  EXPECT_EQ(error_of("{{ " + repeat("(", 10000) + "1" + repeat(")", 10000) + " }}"),
            "[template] line 1, column 516: " + error);
  EXPECT_EQ(error_of("{{ 1" + repeat(" + 1", 10000) + " }}"),
            "[template] line 1, column 2046: " + error);
  EXPECT_EQ(error_of(repeat("{% for x in [1] %}", 3000) + repeat("{% endfor %}", 3000)),
            "[template] line 1, column 9193: " + error);
  EXPECT_EQ(error_of(repeat("{% if true %}", 30000) + repeat("{% endif %}", 30000)),
            "[template] line 1, column 6650: " + error);
  EXPECT_EQ(error_of("{{ " + repeat("not ", 10000) + "1 }}"),
            "[template] line 1, column 2048: " + error);
  EXPECT_EQ(error_of("{{ " + repeat("-", 10000) + "1 }}"),
            "[template] line 1, column 515: " + error);
  EXPECT_EQ(error_of("{{ 1" + repeat(" | string", 10000) + " }}"),
            "[template] line 1, column 4598: " + error);
  EXPECT_EQ(error_of("{{ x" + repeat(".a", 10000) + " }}"),
            "[template] line 1, column 1025: " + error);
  EXPECT_EQ(error_of("{{ " + repeat("[", 10000) + repeat("]", 10000) + " }}"),
            "[template] line 1, column 516: " + error);
  // Below the limit, deep templates render.
  EXPECT_EQ(render("{{ " + repeat("(", 500) + "1" + repeat(")", 500) + " }}"), "1");
  EXPECT_EQ(render(repeat("{% if true %}", 500) + "x" + repeat("{% endif %}", 500)), "x");
}

TEST(TemplateNesting, MacrosRecursingPastTheLimits) {
  EXPECT_EQ(error_of("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"),
            "[template] line 1, column 21: macro 'f' called itself too deeply");
  // Each call nests 20 statements: 200 calls would nest 4,000 levels.
  const std::string deep_body =
      repeat("{% if true %}", 20) + "{{ f(n) }}" + repeat("{% endif %}", 20);
  EXPECT_EQ(error_of("{% macro f(n) %}" + deep_body + "{% endmacro %}{{ f(1) }}"),
            "[template] line 1, column 280: nesting deeper than 2048 while rendering (macros "
            "calling macros?)");
  // A value nested in a loop, and a namespace holding itself.
  EXPECT_EQ(error_of("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}"
                     "{% set ns.x = [ns.x] %}{% endfor %}"),
            "[template] line 1, column 71: a value nested deeper than 512 lists and dicts");
  EXPECT_EQ(error_of("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns }}"),
            "[template] line 1, column 30: a namespace attribute cannot hold a namespace");
}

TEST(TemplateLimits, RunawayLoopsAndSizes) {
  EXPECT_EQ(error_of("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}",
                     json::object(), 1000),
            "[template] line 1, column 29: the template ran more than 1000 steps (a runaway "
            "loop?)");
  EXPECT_EQ(error_of("{{ 'ab' * 100000000 }}"),
            "[template] line 1, column 9: a string repeated 100000000 times is larger than a "
            "template may build");
  EXPECT_EQ(error_of("{{ [1, 2] * 1000000 }}"),
            "[template] line 1, column 11: a list repeated 1000000 times is larger than a "
            "template may build");
  EXPECT_EQ(error_of("{% set s = 'a' * 16777216 %}{{ s ~ s }}"),
            "[template] line 1, column 34: text of 33554432 bytes is longer than a template may "
            "build (16777216)");
  EXPECT_EQ(error_of("{{ 'x' | center(1000000000000) }}"),
            "[template] line 1, column 10: text of 1000000000000 bytes is longer than a template "
            "may build (16777216)");
  EXPECT_EQ(error_of("{{ 'x' | indent(1000000000000) }}"),
            "[template] line 1, column 10: text of 1000000000000 bytes is longer than a template "
            "may build (16777216)");
  EXPECT_EQ(error_of("{{ [1] | tojson(indent=1000000000) }}"),
            "[template] line 1, column 10: tojson indent 1000000000 is wider than ft supports "
            "(4096)");
  EXPECT_EQ(render("{{ 'x' | indent(-3) }}"), "x");
  const std::string wide = "{{ ('a' * 1000000) | replace('', 'bbbbbbbbbbbbbbbbbbbb') }}";
  EXPECT_EQ(error_of(wide),
            "[template] line 1, column 22: text of 21000020 bytes is longer "
            "than a template may build (16777216)");
  EXPECT_EQ(error_of(std::string((size_t{1} << 20) + 1, 'x')),
            "[template] a template of 1048577 bytes is larger than ft reads (1048576)");
}
