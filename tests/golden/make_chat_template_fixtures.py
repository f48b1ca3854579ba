"""Expected renderings of chat templates, made with transformers and jinja2.

Run from the repository root:  python tests/golden/make_chat_template_fixtures.py
Writes tests/golden/chat_templates/cases.json. The real tokenizers (Qwen3, Llama 3,
Gemma 3) are read from ../shared/tokenizers and rendered with
tokenizer.apply_chat_template(..., tokenize=False); the other templates are the
well-known ones their models ship with, rendered through transformers'
render_jinja_template with the special tokens those models use.
"""

import copy
import gzip
import json
import os
import shutil
import tempfile

import jinja2
import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "tokenizers")
OUT = os.path.join(ROOT, "tests", "golden", "chat_templates", "cases.json")

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

MISTRAL = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# Not a model's template: it exercises the language (macros, call blocks, loop
# variables, filters, tests, documents, tojson options) against jinja2 itself.
LANGUAGE = """{#- a template that uses much of the Jinja subset -#}
{%- macro render_doc(doc, index=0) -%}
[{{ index }}] {{ doc.title | default('untitled') | title }}: {{ doc.text | trim | truncate_words }}
{%- endmacro -%}
{%- macro box(kind) -%}<{{ kind }}>{{ caller() }}</{{ kind }}>{%- endmacro -%}
{%- set ns = namespace(users=0, chars=0, roles=[]) -%}
{%- for m in messages if m.content is string -%}
  {%- set ns.chars = ns.chars + m.content | length -%}
  {%- if m.role == 'user' %}{% set ns.users = ns.users + 1 %}{% endif -%}
  {%- set ns.roles = ns.roles + [m.role] -%}
{%- endfor -%}
stats: users={{ ns.users }} chars={{ ns.chars }} roles={{ ns.roles | unique | join(',') }} distinct={{ ns.roles | unique | list | length }}
{% if documents %}
{%- for doc in documents %}
{{ render_doc(doc, loop.index) }}
{%- endfor %}
{% endif -%}
{%- for m in messages -%}
{% call box(m.role | upper) %}{{ loop.index }}/{{ loop.length }}{{ ' first' if loop.first }}{{ ' last' if loop.last }} prev={{ loop.previtem.role if loop.previtem is defined else '-' }} {{ m.content if m.content is string else m.content | tojson }}{% endcall %}
{% if m.tool_calls is defined -%}
  {%- for call in m.tool_calls -%}
    call {{ call.function.name }}({% for k, v in call.function.arguments | dictsort %}{{ k }}={{ v | tojson }}{{ ', ' if not loop.last }}{% endfor %})
{% endfor -%}
{%- endif -%}
{%- endfor -%}
{%- if tools is not none -%}
tools: {{ tools | map(attribute='function.name') | join(', ') }}
{{ tools[0] | tojson(indent=2) }}
{{ tools | selectattr('type', 'equalto', 'function') | list | length }} {{ tools[0].function.parameters.required | default([]) | tojson(separators=(',', ':')) }}
{% endif -%}
{%- set last = messages[-1] -%}
last: {{ last.role }} {{ (last.content if last.content is string else '')[:12] }}|{{ (last.content if last.content is string else '')[::-1][:5] }}|{{ last['content'] is defined }}
{{ 7 // 2 }} {{ -7 % 3 }} {{ 2 ** 8 }} {{ 10 / 4 }} {{ 1.5 * 2 }} {{ 'ab' ~ 3 ~ none }} {{ [1, 2] + [3] }} {{ 'x' * 3 }} {{ (1, 'a') }}
{{ 'Hello World'.split() }} {{ 'a,b,,c'.split(',') }} {{ '  pad  '.strip() }}|{{ 'xxhixx'.strip('x') }} {{ 'abc'.startswith(('x', 'a')) }} {{ 'MiXed'.lower() }}{{ 'MiXed'.upper() }} {{ 'hello world'.title() }} {{ 'a-b'.replace('-', '+') }}
{{ [3, 1, 2] | sort | list }} {{ ['b', 'A', 'c'] | sort(reverse=true) | join }} {{ {'b': 1, 'a': 2} | dictsort }} {{ {'k': 'v'} | items | list }} {{ [1, 2, 3] | first }}{{ [1, 2, 3] | last }} {{ 3.14159 | round(2) }} {{ -4 | abs }} {{ '42' | int + 1 }} {{ '2.5' | float }} {{ 7 | string ~ '!' }}
{{ undefined_thing | default('dflt') }} {{ '' | default('empty', true) }} {{ none is none }} {{ 1 is number }} {{ 'a' is string }} {{ {} is mapping }} {{ 3 is odd }} {{ 4 is even }} {{ 2 in [1, 2] }} {{ 'b' not in 'abc' }} {{ x is undefined }} {{ 9 is divisibleby 3 }}
{{ "line1\\nline2" | indent(2) }} {{ "a\\nb" | indent(4, true) }} {{ [1, 2, 3][1:] }} {{ [1, 2, 3][-1] }} {{ 'q' if false else 'r' }} {{ not true or false and true }} {{ 1 < 2 < 3 }}
{%- for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}{% for i in range(10) %}{% if i > 2 %}{% break %}{% endif %}{{ i }}{% else %}none{% endfor %}{% for i in [] %}x{% else %} empty{% endfor %}
{% set greeting %}Hi {{ messages[0].role }}{% endset %}{{ greeting | upper }} {{ dict(a=1, b='two') | tojson }} {{ {'nested': {'x': [1, 2.5, none, true]}} | tojson(sort_keys=true) }} {{ "é\\"\\\\" | tojson }}
{% filter upper %}shout {{ messages | length }}{% endfilter %} {% raw %}{{ not rendered }}{% endraw %}
  {%+ if true %}kept indent{% endif %}
{% if add_generation_prompt %}GEN{% endif %}
"""
LANGUAGE = LANGUAGE.replace(" | truncate_words", "")  # keep to filters both sides know

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, e.g. Zürich"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
            },
        },
    },
]

DOCUMENTS = [
    {"title": "ft manual", "text": "  ft fine-tunes models.  "},
    {"title": "mlx notes", "text": "MLX arrays are lazy."},
]

CONVERSATIONS = {
    "system_multi_turn": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 is 4."},
        {"role": "user", "content": "And 3+3?"},
    ],
    "no_system": [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "  Hi there, how can I help?  "},
        {"role": "user", "content": "Tell me a joke.\n"},
    ],
    "single_user": [{"role": "user", "content": "One question only."}],
    "non_ascii": [
        {"role": "system", "content": "Réponds en français. 日本語も可。"},
        {"role": "user", "content": "Grüße, 世界! 🙂 مرحبا \"quoted\" \\ back"},
        {"role": "assistant", "content": "Ça va très bien — merci! 👍"},
    ],
    "tool_calls": [
        {"role": "user", "content": "What's the weather in Zürich, and what is 2+3?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call00001", "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}},
                {"id": "call00002", "type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3.5}}},
            ],
        },
        {"role": "tool", "tool_call_id": "call00001", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"},
        {"role": "tool", "tool_call_id": "call00002", "content": "5.5"},
        {"role": "assistant", "content": "It is 21 °C and clear in Zürich; 2+3.5 is 5.5."},
        {"role": "user", "content": "Thanks!"},
    ],
    "reasoning": [
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "content": "Yes, 17 is prime.", "reasoning_content": "17 has no divisors but 1 and itself."},
        {"role": "user", "content": "And 21?"},
        {"role": "assistant", "content": "<think>\n21 = 3 * 7.\n</think>\n\nNo, 21 = 3 × 7."},
    ],
    "null_fields": [
        {"role": "user", "content": "Hi", "name": None},
        {"role": "assistant", "content": "Hello.", "tool_calls": None},
        {"role": "user", "content": "Bye"},
    ],
    "bad_alternation": [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ],
}


def drop_nulls(messages):
    return [{k: v for k, v in m.items() if v is not None} for m in messages]


def render_real(tok, messages, add_generation_prompt, tools, documents, kwargs):
    return tok.apply_chat_template(
        copy.deepcopy(messages), tokenize=False, add_generation_prompt=add_generation_prompt,
        tools=tools, documents=documents, **kwargs)


def render_string(source, variables, messages, add_generation_prompt, tools, documents, kwargs):
    rendered, _ = render_jinja_template(
        conversations=[drop_nulls(copy.deepcopy(messages))], tools=tools, documents=documents,
        chat_template=source, add_generation_prompt=add_generation_prompt, **{**variables, **kwargs})
    return rendered[0]


def main():
    tmp = tempfile.mkdtemp()
    templates = {}
    renderers = {}
    for name in ("qwen3", "llama3", "gemma3"):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        shutil.copy(os.path.join(SHARED, name, "tokenizer_config.json"), d)
        with gzip.open(os.path.join(SHARED, name, "tokenizer.json.gz"), "rb") as f, \
                open(os.path.join(d, "tokenizer.json"), "wb") as g:
            g.write(f.read())
        tok = AutoTokenizer.from_pretrained(d)
        templates[name] = {"dir": name, "special_tokens_map": tok.special_tokens_map}
        renderers[name] = (lambda tok: lambda *a: render_real(tok, *a))(tok)
    strings = {
        "chatml": (CHATML, {"eos_token": "<|im_end|>"}),
        "llama2": (LLAMA2, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
        "mistral": (MISTRAL, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
        "phi3": (PHI3, {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>",
                        "pad_token": "<|endoftext|>"}),
        "language": (LANGUAGE, {"bos_token": "<s>", "eos_token": "</s>"}),
    }
    for name, (source, variables) in strings.items():
        templates[name] = {"source": source, "variables": variables}
        renderers[name] = (lambda s, v: lambda *a: render_string(s, v, *a))(source, variables)

    cases = []
    for template in templates:
        for conv_name, messages in CONVERSATIONS.items():
            variants = [(False, None, None, {}), (True, None, None, {})]
            if conv_name in ("tool_calls", "single_user"):
                variants.append((True, TOOLS, None, {}))
            if conv_name in ("system_multi_turn", "single_user"):
                variants.append((True, None, DOCUMENTS, {}))
            if conv_name in ("reasoning", "single_user", "system_multi_turn"):
                variants.append((True, None, None, {"enable_thinking": False}))
                variants.append((True, None, None, {"enable_thinking": True}))
            for add_gen, tools, documents, kwargs in variants:
                case = {"template": template, "conversation": conv_name, "messages": messages,
                        "add_generation_prompt": add_gen, "tools": tools, "documents": documents,
                        "kwargs": kwargs}
                try:
                    case["expected"] = renderers[template](messages, add_gen, tools, documents, kwargs)
                except jinja2.exceptions.UndefinedError as e:
                    case["error"] = None  # an error whose text is Jinja's own
                    case["error_kind"] = "undefined"
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)  # raise_exception(message)
                    case["error_kind"] = "raise_exception"
                except TypeError as e:
                    case["error"] = None
                    case["error_kind"] = "type"
                cases.append(case)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "jinja2": jinja2.__version__,
                   "templates": templates, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
