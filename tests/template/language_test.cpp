// The Jinja subset, construct by construct. Expected texts are what jinja2 3.1
// renders for the same source with transformers' settings (trim_blocks,
// lstrip_blocks, loopcontrols), worked out by hand from Jinja's documented rules.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/template/ast.h"
#include "ft/template/interpreter.h"

namespace {

using json = nlohmann::ordered_json;

std::string render(const std::string& source, const json& vars = json::object()) {
  ft::jinja::Body body = ft::jinja::parse(source);
  ft::jinja::Interpreter interpreter;
  return interpreter.render(body, ft::jinja::Value::from_json(vars));
}

// The fact of the ft::Error that rendering throws ("" when none is thrown).
std::string error_of(const std::string& source, const json& vars = json::object()) {
  try {
    render(source, vars);
  } catch (const ft::Error& e) {
    return e.fact();
  }
  return "";
}

TEST(JinjaLanguage, OutputAndLiterals) {
  EXPECT_EQ(render("a{{ 1 }}b{{ 'x' }}{{ \"y\" }}{# gone #}c"), "a1bxyc");
  EXPECT_EQ(render("{{ true }} {{ none }} {{ 1.0 }} {{ 1e-5 }} {{ 2.5e20 }} {{ undefined_name }}|"),
            "True None 1.0 1e-05 2.5e+20 |");
  EXPECT_EQ(render("{{ [1, 'a', none, {'k': \"it's\"}] }} {{ (1,) }}"),
            "[1, 'a', None, {'k': \"it's\"}] (1,)");
  EXPECT_EQ(render("{{ 'a\\n\\t\\u00e9\\x41' }}"),
            "a\n\t\xc3\xa9"
            "A");
  EXPECT_EQ(render("{{ 'ab' 'cd' }}"), "abcd");
}

TEST(JinjaLanguage, WhitespaceControl) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(render("  {% if true %}\n  a\n  {% endif %}\nb\n"), "  a\nb");
  EXPECT_EQ(render("x  {% if true %}\nyes{% endif %}"), "x  yes");
  EXPECT_EQ(render("a  {%- if true -%}  \n b {%- endif %}"), "ab");
  EXPECT_EQ(render("{% if true %}  x  {%+ if true %}y{% endif %}{% endif %}"), "  x  y");
  EXPECT_EQ(render("{{ 'a' }}\n{{ 'b' }}\n"), "a\nb");  // one final newline is dropped
  EXPECT_EQ(render("  {# c #}\nz"), "z");
  EXPECT_EQ(render("a\r\nb"), "a\nb");
  EXPECT_EQ(render("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
}

TEST(JinjaLanguage, Operators) {
  EXPECT_EQ(render("{{ 1/2 }} {{ 4/2 }} {{ 7//2 }} {{ -7 % 3 }} {{ 2**10 }} {{ 0.1+0.2 }}"),
            "0.5 2.0 3 2 1024 0.30000000000000004");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ -3 | abs }}"),
            "a1None abab [1, 2] 3");
  EXPECT_EQ(render("{{ 1 < 2 < 3 }} {{ 'b' in 'abc' }} {{ 2 not in [1] }} {{ 'k' in {'k': 1} }}"),
            "True True True True");
  EXPECT_EQ(render("{{ 0 or 'x' }} {{ 1 and 0 }} {{ not 1 }} {{ 1 == 1.0 }} {{ true == 1 }}"),
            "x 0 False True True");
  EXPECT_EQ(render("{{ 'y' if 0 else 'n' }}|{{ 'y' if 0 }}|"), "n||");
  EXPECT_EQ(error_of("{{ 1 + 'a' }}"),
            "line 1, column 6: unsupported operand type(s) for +: 'int' and 'str'");
}

TEST(JinjaLanguage, AccessAndSlicing) {
  json vars = {{"d", {{"a", {{"b", 1}}}, {"items", 5}}}, {"l", {1, 2, 3}}, {"s", "h\xc3\xa9llo"}};
  EXPECT_EQ(
      render("{{ d.a.b }}{{ d['a']['b'] }}{{ d.missing }}|{{ l[-1] }}{{ l[5] }}|{{ l.0 }}", vars),
      "11|3|1");
  EXPECT_EQ(
      render("{{ l[1:] }} {{ l[::-1] }} {{ l[:-1] }} {{ s[1] }} {{ s[::-1] }} {{ s | length }}",
             vars),
      "[2, 3] [3, 2, 1] [1, 2] \xc3\xa9 oll\xc3\xa9h 5");
  EXPECT_EQ(render("{{ d['items'] }} {{ d.get('zz', 7) }} {{ d.get('zz') }}", vars), "5 7 None");
  EXPECT_EQ(error_of("{{ d.missing.x }}", vars),
            "line 1, column 13: 'dict object' has no attribute 'missing'");
  EXPECT_EQ(error_of("{{ nothing.x }}"), "line 1, column 11: 'nothing' is undefined");
  EXPECT_EQ(error_of("{{ l.append(4) }}", vars),
            "line 1, column 5: access to attribute 'append' of 'list' object is unsafe.");
}

TEST(JinjaLanguage, IfAndFor) {
  EXPECT_EQ(render("{% if 0 %}a{% elif 1 %}b{% else %}c{% endif %}"), "b");
  EXPECT_EQ(render("{% for x in [1,2,3,4] if x is odd %}{{loop.index}}/{{loop.length}}{{ "
                   "loop.previtem }};{% endfor %}"),
            "1/2;2/21;");
  EXPECT_EQ(
      render(
          "{% for x in 'ab' %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}"
          "{{ loop.nextitem }}{{ loop.cycle('o', 'e') }} {% endfor %}"),
      "02TrueFalsebo 11FalseTruee ");
  EXPECT_EQ(render("{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "b=1;a=2;");
  EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 "
                   "%}{% break %}"
                   "{% endif %}{{ i }}{% endfor %}"),
            "02");
  // A set inside a loop body lasts one iteration; namespaces carry state out.
  EXPECT_EQ(
      render("{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}"),
      "12121");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% "
                   "endfor %}{{ ns.n }}"),
            "6");
}

TEST(JinjaLanguage, SetMacroCallFilterBlocks) {
  EXPECT_EQ(render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(render("{% set y %}abc{% endset %}{{ y | upper }}"), "ABC");
  EXPECT_EQ(
      render("{% macro m(a, b='d') %}[{{ a }}{{ b }}]{% endmacro %}{{ m(1) }}{{ m(2, b='x') }}"),
      "[1d][2x]");
  EXPECT_EQ(render("{% set x = 1 %}{% macro m() %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}"),
            "2");
  EXPECT_EQ(
      render("{% macro box() %}<{{ caller() }}>{% endmacro %}{% call box() %}in{% endcall %}"),
      "<in>");
  EXPECT_EQ(render("{% filter upper %}ab{{ 'c' }}{% endfilter %}"), "ABC");
  EXPECT_EQ(render("{% generation %}kept{% endgeneration %}"), "kept");
}

TEST(JinjaLanguage, Filters) {
  json vars = {{"x", {{{"a", 1}, {"n", "p"}}, {{"a", 2}, {"n", "q"}}}}};
  EXPECT_EQ(
      render(
          "{{ x | map(attribute='a') | join(',') }} {{ x | selectattr('a', 'equalto', 1) | list }}"
          " {{ x | rejectattr('a', 'eq', 1) | map(attribute='n') | first }}",
          vars),
      "1,2 [{'a': 1, 'n': 'p'}] q");
  EXPECT_EQ(render("{{ {'a': [1, 2.0, none, true, 'é\n\"<']} | tojson }}"),
            "{\"a\": [1, 2.0, null, true, \"é\\n\\\"<\"]}");
  EXPECT_EQ(render("{{ {'a': [1], 'b': {}} | tojson(indent=2) }}"),
            "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
  EXPECT_EQ(render("{{ [3, 1, 2] | sort | list }}{{ [1, 2] | reverse | list }}{{ ['a', 'A', 'b'] | "
                   "unique | list }}"),
            "[1, 2, 3][2, 1]['a', 'b']");
  EXPECT_EQ(render("{{ 3.7 | int }} {{ '3' | int + 1 }} {{ 'x' | int }} {{ 2.567 | round(1) }} {{ "
                   "2.5 | round }}"),
            "3 4 0 2.6 2.0");
  EXPECT_EQ(render("{{ 'abc' | indent(2) }}|{{ 'a\nb\n\nc' | indent(2, true) }}"),
            "abc|  a\n  b\n\n  c");
  EXPECT_EQ(render("{{ '  t  ' | trim }}|{{ none | trim }}|{{ u | length }}|{{ u | default('d') "
                   "}}|{{ '' | d('e', true) }}"),
            "t|None|0|d|e");
  EXPECT_EQ(render("{{ 'hello-wORLD foo' | title }} {{ 'aBC' | capitalize }} {{ 'a-b' | "
                   "replace('-', '+') }}"),
            "Hello-World Foo Abc a+b");
  EXPECT_EQ(render("{% for k, v in {'b': 1, 'a': 2} | dictsort %}{{ k }}{{ v }}{% endfor %} {{ "
                   "{'k': 1} | items | list }}"),
            "a2b1 [('k', 1)]");
}

TEST(JinjaLanguage, TestsAndMethods) {
  EXPECT_EQ(render("{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ 1 is number }}{{ "
                   "true is boolean }}"
                   "{{ {} is mapping }}{{ [] is iterable }}{{ 3 is odd }}{{ 9 is divisibleby 3 "
                   "}}{{ 1 is not string }}"),
            "FalseTrueTrueTrueTrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(render("{{ 'a b  c'.split() }}{{ 'a,b'.split(',') }}{{ 'xxhixx'.strip('x') }}{{ ' a "
                   "'.lstrip() }}|"),
            "['a', 'b', 'c']['a', 'b']hia |");
  EXPECT_EQ(
      render(
          "{{ 'abc'.startswith(('x', 'a')) }}{{ 'abc'.endswith('bc') }}{{ 'hello world'.title() }}"
          "{{ 'a {} {x}'.format(1, x=2) }}"),
      "TrueTrueHello Worlda 1 2");
  EXPECT_EQ(render("{{ {'a': 1}.keys() | list }}{{ {'a': 1}.values() | list }}{{ dict(a=1) }}"),
            "['a'][1]{'a': 1}");
}

TEST(JinjaLanguage, SyntaxErrorsNameLineAndColumn) {
  EXPECT_EQ(error_of("a\n  {{ x | nofilter }}"), "line 2, column 10: no filter named 'nofilter'");
  EXPECT_EQ(error_of("{{ x is nosuchtest }}"), "line 1, column 9: no test named 'nosuchtest'");
  EXPECT_EQ(error_of("{% if x %}\nabc"),
            "line 2, column 4: unexpected end of template, expected 'endif'");
  EXPECT_EQ(error_of("ok\n\n   {% frobnicate %}"), "line 3, column 7: unknown tag 'frobnicate'");
  EXPECT_EQ(error_of("{{ 1 + }}"), "line 1, column 8: unexpected '}}'");
  EXPECT_EQ(error_of("{{ 'open }}"), "line 1, column 4: unterminated string");
  EXPECT_EQ(error_of("{{ a ! b }}"), "line 1, column 6: unexpected character '!'");
  EXPECT_EQ(error_of("{% for x in y recursive %}{% endfor %}"),
            "line 1, column 15: recursive for loops are not supported");
}

TEST(JinjaLanguage, RaiseExceptionCarriesTheMessage) {
  EXPECT_EQ(error_of("{{ raise_exception('Roles must alternate') }}"), "Roles must alternate");
}

}  // namespace
