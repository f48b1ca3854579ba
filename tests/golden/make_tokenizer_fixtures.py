"""Expected token ids for ft's tokenizer tests, made with the Hugging Face `tokenizers` library.

Run from the repository root:  /path/to/python tests/golden/make_tokenizer_fixtures.py
Needs `tokenizers` (pip install tokenizers). Reads the real tokenizers from ../shared/tokenizers
(gunzipped into a temporary folder, never copied here), trains three small synthetic tokenizers
(Unigram, WordPiece, SentencePiece-style BPE with many components) and writes their
tokenizer.json next to the fixtures, then writes tests/golden/tokenizer/cases.json:
  {tokenizer name: [{"name", "text_hex", "ids", "ids_plain", "tokens", "decoded",
                     "decoded_skip"}]}
Texts may hold invalid UTF-8. The Rust library only takes valid strings, so each invalid
sequence is replaced by U+FFFD the way ft does it (Python's errors="replace", the maximal
subpart rule, the same as Rust's String::from_utf8_lossy) before encoding; ft is given the raw
bytes and must reach the same ids.
Training is not bit-for-bit repeatable across runs, so a new run may write different synthetic
tokenizers; the cases always match the files written with them. Commit both together.
"""
import gzip
import json
import os
import shutil
import tempfile

from tokenizers import (AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                        processors, trainers)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "..", "shared", "tokenizers")
OUT = os.path.join(ROOT, "tests", "golden", "tokenizer")

PROSE = ("The quick brown fox jumps over the lazy dog. It wasn't the dog's fault; they'd "
         "been told they'll never win, and I'm sure we've all heard it before. "
         "Mr. O'Neil said: \"Don't WORRY, it's FINE!\"")
CODE = ('def fib(n: int) -> int:\n    """Return the n-th number."""\n    if n < 2:\n'
        '        return n\n\treturn fib(n - 1) + fib(n - 2)  # recursion\n\n'
        'int main() { std::vector<int> v{1, 2, 3}; for (auto& x : v) x *= 2; return 0; }\n')

TEXTS = [
    ("empty", b""),
    ("single_space", b" "),
    ("prose", PROSE.encode()),
    ("code", CODE.encode()),
    ("emoji", "Smile 😀 family 👨‍👩‍👧‍👦 flag 🇫🇷 thumbs 👍🏽 heart ❤️ end".encode()),
    ("cjk", "日本語のテキストです。中文文本，还有한국어 텍스트도 있습니다。".encode()),
    ("arabic", "مرحبا بالعالم! هذا نص عربي مع أرقام ١٢٣ و 456.".encode()),
    ("whitespace", b"a    b\t\tc\n\n\nd   \n  \t e" + b" " * 40 + b"f\r\n\r\ng" + b"\n" * 12),
    ("leading_trailing_space", b"   leading and trailing   "),
    ("digits", b"Pi is 3.14159265358979 and 1234567890123 plus 2024-05-17, 1,000,000."),
    ("contractions", b"I'M you'RE he'S we'VE they'LL she'D it's can't won't y'all"),
    ("accents", "Café naïve résumé façade Ångström ﬁ ² Ⅻ ＡＢＣ".encode()),
    ("mixed_scripts", "Привет, мир! Γειά σου κόσμε. שלום עולם. नमस्ते दुनिया".encode()),
    ("punctuation", b"Wait... what?! (yes) [no] {maybe} <tag/> @user #hash $5 100% a&b ~ ` ^ | \\"),
    ("long_word", b"Supercalifragilisticexpialidocious" * 3 + b" antidisestablishmentarianism"),
    ("invalid_utf8", b"bad \xff\xfe bytes \xc3\x28 and \xe2\x82 cut \xf0\x9f\x98 end \x80"),
    ("control_chars", b"nul\x00 bell\x07 esc\x1b[0m del\x7f"),
]


def special_texts(names):
    """Texts with the tokenizer's own special tokens written inside them."""
    a, b = names[0], names[1 % len(names)]
    return [
        ("special_inside", f"Hello{a}world {b} again{a}{a} end {b}".encode()),
        ("special_spaces", f"  {a}  text  {b}\n{a}".encode()),
        ("special_only", f"{a}".encode()),
    ]


def case(tok, name, raw):
    text = raw.decode("utf-8", errors="replace")
    enc = tok.encode(text, add_special_tokens=True)
    plain = tok.encode(text, add_special_tokens=False)
    return {
        "name": name,
        "text_hex": raw.hex(),
        "ids": enc.ids,
        "ids_plain": plain.ids,
        "tokens": enc.tokens,
        "decoded": tok.decode(enc.ids, skip_special_tokens=False),
        "decoded_skip": tok.decode(enc.ids, skip_special_tokens=True),
    }


CORPUS = [PROSE, CODE, "The lazy dog sleeps. The quick fox runs away quickly.",
          "Tokenizers split text into pieces; pieces map to ids.",
          "unbelievable unhappiness rethinking preprocessing tokenization",
          "café naïve résumé 12345 67890"] * 20


def train_unigram(path):
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace("``", '"')])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                      unk_token="<unk>", shrinking_factor=0.75)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")),
                                              ("</s>", tok.token_to_id("</s>"))])
    tok.save(path)
    return tok


def train_wordpiece(path):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=20))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=True, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=400,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")),
                                                 ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.save(path)
    return tok


def train_sp_bpe(path):
    """SentencePiece-style BPE with byte fallback and the remaining components."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([
        normalizers.Strip(left=False, right=True), normalizers.Prepend("▁"),
        normalizers.Replace(" ", "▁"), normalizers.NFC()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior="isolated"),
        pre_tokenizers.Split(pattern="▁", behavior="merged_with_next"),
        pre_tokenizers.Digits(individual_digits=False)])
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(content=" ", left=1, right=0)])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"]
                                  + byte_tokens, limit_alphabet=60)
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False)])
    tok.add_tokens([AddedToken("[word]", single_word=True, normalized=False),
                    AddedToken("hello world", normalized=True),
                    AddedToken("<sep>", rstrip=True, normalized=False)])
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    tok.save(path)
    return tok


def train_byte_level(path):
    """GPT-2 style: ByteLevel with its own regex and a prefix space, lowercased NFKD text."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(path)
    return tok


def train_metaspace_first(path):
    """Unigram behind WhitespaceSplit and a Metaspace that marks only the text's first word."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(),
                                           normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    trainer = trainers.UnigramTrainer(vocab_size=250, special_tokens=["<unk>", "<s>"],
                                      unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(path)
    return tok


def main():
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.makedirs(OUT, exist_ok=True)
    out = {}
    tmp = tempfile.mkdtemp()
    try:
        for name in ["qwen3", "llama3", "gemma3"]:
            path = os.path.join(tmp, name + ".json")
            with gzip.open(os.path.join(SHARED, name, "tokenizer.json.gz"), "rb") as f, \
                    open(path, "wb") as g:
                shutil.copyfileobj(f, g)
            tok = Tokenizer.from_file(path)
            specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
            specials = sorted(specials, key=lambda s: tok.token_to_id(s))[:3][::-1]
            texts = TEXTS + special_texts(specials)
            out[name] = [case(tok, n, raw) for n, raw in texts]
    finally:
        shutil.rmtree(tmp)

    synthetic = {"unigram": train_unigram, "wordpiece": train_wordpiece, "sp_bpe": train_sp_bpe,
                 "byte_level": train_byte_level, "metaspace_first": train_metaspace_first}
    for name, make in synthetic.items():
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        tok = make(os.path.join(OUT, name, "tokenizer.json"))
        extra = [("added_tokens", b"say hello world [word] x[word] <mask> a  <mask>b<sep>   c"),
                 ("specials", b"<s>one</s> two <unk>"),
                 ("specials_first", b"<s>first word <|endoftext|> next")]
        out[name] = [case(tok, n, raw) for n, raw in TEXTS + extra]

    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(out, f, ensure_ascii=True, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
