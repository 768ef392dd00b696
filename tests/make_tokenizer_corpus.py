#!/usr/bin/env python3
"""Writes the generated and hand-written files of tests/data/tokenizer-corpus.

The prose (kjv-*.txt, jargon.txt) and code files come from elsewhere; see the
corpus README.md. Output is deterministic (fixed seeds), so rerunning this
script leaves git clean. Usage: make_tokenizer_corpus.py [OUT_DIR]
"""

import os
import random
import sys
import unicodedata

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data", "tokenizer-corpus")

CJK = """\
中文段落：今天天气很好，我们去公园散步吧。春天来了，花都开了，小鸟在树上唱歌。
床前明月光，疑是地上霜。举头望明月，低头思故乡。——李白《静夜思》
春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。
机器学习（Machine Learning）是人工智能的一个分支。2024年，大型语言模型的参数量已经超过1000亿。
请把文件保存为“报告_最终版_v3.docx”，然后发送到 test@example.com。价格：￥1,299.00元。
繁體中文：這是一個測試句子，用來檢查分詞器是否正確處理繁體字與標點符號。
文言：學而時習之，不亦說乎？有朋自遠方來，不亦樂乎？人不知而不慍，不亦君子乎？

한국어 문단: 안녕하세요! 오늘은 날씨가 정말 좋네요. 우리 같이 산책하러 갈까요?
토크나이저는 텍스트를 토큰으로 나누는 프로그램입니다. 바이트 단위 BPE는 모든 입력을 처리할 수 있습니다.
서울특별시 종로구 세종대로 175, 전화 02-1234-5678. 가격은 12,500원입니다.
한글은 1443년에 세종대왕이 창제하였으며, 자음 14개와 모음 10개로 이루어져 있습니다.
ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎ ㅏㅑㅓㅕㅗㅛㅜㅠㅡㅣ ㅋㅋㅋㅋㅋ ㅠㅠ

日本語の段落：吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。
カタカナ：コンピューター、プログラミング、トークナイザー。ひらがな：これはてすとです。
半角ｶﾀｶﾅ ｱｲｳｴｵ と全角ＡＢＣ１２３、記号「」『』【】〈〉《》・…
Mixed: 東京Tokyo서울Seoul北京Beijing 2024年3月15日 午後3時30分
"""

EMOJI = """\
Simple: 😀 😃 😄 😁 😆 😅 🤣 😂 🙂 🙃 😉 😊 😇 🥰 😍 🤩 😘
Hearts: ❤️ 🧡 💛 💚 💙 💜 🖤 🤍 🤎 💔 ❣️ 💕 ❤ (without VS16) ♥
Skin tones: 👍 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿 👋🏿 🤝🏽 💪🏾 🙏🏼 ✌🏻 🧑🏽‍🦱
ZWJ families: 👨‍👩‍👧‍👦 👩‍👩‍👦 👨‍👨‍👧‍👧 👩‍❤️‍👨 👩‍❤️‍💋‍👨 👨🏽‍👩🏽‍👧🏽
ZWJ jobs: 🧑‍💻 👩🏾‍💻 👨‍🚀 👩‍🔬 🧑🏻‍🍳 👮‍♀️ 🏃‍♂️ 🤷🏽‍♀️
Flags: 🇫🇷 🇯🇵 🇰🇷 🇨🇳 🇺🇸 🇩🇪 🇧🇷 🏳️‍🌈 🏳️‍⚧️ 🏴‍☠️ 🏴󠁧󠁢󠁳󠁣󠁴󠁿 🏴󠁧󠁢󠁷󠁬󠁳󠁿
Keycaps: 0️⃣ 1️⃣ 2️⃣ #️⃣ *️⃣ 🔟
Glued to words: hi😀there, end.🎉 "quoted😂" (parens🙂) 100💯 C++🚀 #tag🔥
Runs: 😀😀😀😀😀😀😀😀😀😀 🔥🔥🔥 🇫🇷🇫🇷🇫🇷 👍🏽👍🏽👍🏽
Newer: 🫠 🫡 🫶 🥹 🪿 🫎 (may be unknown to older tables)
Symbols: ☀ ☁ ☂ ☃ ★ ☆ ✓ ✔ ✗ ✘ ⌘ ⌥ ⏎ ⚠️ ♻️ ™ © ®
"""

COMBINING = """\
Precomposed vs decomposed: café / cafe\u0301, naïve / nai\u0308ve, Å / A\u030a, ñ / n\u0303
Vietnamese: Tiếng Việt có nhiều dấu: ả ã ạ ằ ẳ ẵ ặ ế ề ể ễ ệ ố ồ ổ ỗ ộ ướ ừ ử ữ ự
Stacked: a\u0301\u0302\u0303\u0304 e\u0300\u0300\u0300 o\u0328\u0304
Zalgo: Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319a\u0360\u0317\u0316l\u0301\u0317g\u036do\u0344\u0308\u0300
Combining on digits and spaces: 1\u20e3 2\u20dd  \u0301 \u0301x \u20d7v x\u0305\u0305
At line start:
\u0301leading mark
\u0308\u0308two leading marks
Devanagari: हिन्दी भाषा में संयुक्ताक्षर: क्ष त्र ज्ञ श्र, अनुस्वार: हिंदी, चन्द्रबिन्दु: हँसना
Tamil: தமிழ் மொழி; Bengali: বাংলা ভাষা; Telugu: తెలుగు
Thai: ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ น้ำ ก็ ที่ ผู้
Arabic: اَلْعَرَبِيَّةُ لُغَةٌ جَمِيلَةٌ. السلام عليكم ٣ ٤٥ ٦٧٨
Hebrew: שָׁלוֹם עוֹלָם, עברית בלי ניקוד
Hangul jamo (decomposed): \u1112\u1161\u11ab\u1100\u1173\u11af vs 한글
Greek: Ἀρχὴ ἡμίσυ παντός. ᾯ ῷ; Cyrillic: Съешь же ещё этих мягких французских булок, да выпей чаю. й / и\u0306
Variation selectors: 葛\U000e0100 ︀a\ufe00 ≩\ufe00
"""

SPECIALS = """\
<|begin_of_text|>A document that starts with a special token string.
<|start_header_id|>system<|end_header_id|>

You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>

What is <|endoftext|>?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

GPT-2 separates documents with <|endoftext|>, Llama 3 ends them with <|end_of_text|>.
Adjacent: <|endoftext|><|endoftext|><|begin_of_text|><|begin_of_text|>
Spaced: x <|endoftext|> y  <|eot_id|>  z\t<|python_tag|>\t
Partial: <|end <|endoftext <|endoftext| endoftext|> |endoftext|> <|begin_of_text| <|eot_id <|
Nested: <|<|endoftext|>|> <<|begin_of_text|>> <|<|eot_id|>
Reserved: <|reserved_special_token_0|> <|reserved_special_token_3|> <|reserved_special_token_247|>
Not special: <|reserved_special_token_248|> <|reserved_special_token_250|> <|eom|> <|EOT_ID|> < |eot_id| >
Llama 3.1 names: <|finetune_right_pad_id|> <|eom_id|> <|python_tag|> <|step_id|> <|image|>
Inside words: foo<|endoftext|>bar 123<|eot_id|>456 ü<|begin_of_text|>ß
Code: if tok == "<|endoftext|>": break  # sentinel
<|end_of_text|>"""

EDGE = (
    "\ufeffA byte order mark opens this line.\n"
    "Contractions: it's IT'S it'S we're WE'RE they've I'm I'M you'll YOU'LL he'd HE'D 'tis 'TWAS o'clock\n"
    "Long s and friends: it'\u017f '\u017ft '\u017fT 'K '\u0130x '\ufb05x rock'n'roll 's's's\n"
    "Apostrophes: it\u2019s don\u2019t \u2018quoted\u2019 \u201cdouble\u201d \u02bcokina\n"
    "NEL and separators: a\x85b !\x85 x\x85\x85y line\u2028sep para\u2029sep\n"
    "Info separators (not White_Space): a\x1c\x1db !\x1c !\x1f \x1e\x1f\n"
    "Mongolian vowel separator (not space since Unicode 6.3): a\u180eb !\u180e \u180e\u180e x\u180e \n"
    "  where PCRE2's \\s would split differently: a \u180eb Hi \u180e! 1 \u180e2\n"
    "Spaces: nbsp[\xa0] [\xa0\xa0] a\xa0b !\xa0 ogham[\u1680] en[\u2002] em[\u2003] thin[\u2009] hair[\u200a]"
    " nnbsp[\u202f] mmsp[\u205f] ideographic[\u3000\u3000] zwsp[\u200b] zwj[\u200d] wj[\u2060]\n"
    "Controls: vt[\x0b] ff[\x0c] bell[\x07] esc[\x1b[0m] del[\x7f] c1[\x80\x9f] nul[\x00] two nuls[\x00\x00]\n"
    "Lone CR:\rafter CR\r\rtwo CRs \r \n"
    "Numbers: \u00b2 \u00b3 \u00b9 \u00bd \u2153 \u2160\u2161\u2162 \u216b \u0663\u0664\u0665 \u0967\u0968\u0969 \uff11\uff12\uff13\uff14"
    " \U0001d7ce\U0001d7cf \u2460\u2461 \u3007 \u4e00\u4e8c\u4e09\n"
    "Math letters (4-byte UTF-8): \U0001d400\U0001d401\U0001d402 \U0001d552\U0001d553 \U00010400\U00010428\n"
    "Letters that are marks' neighbours: \u02b0\u02b1 \u3005 \u3031 \u309d \u16ee\n"
    "Private use and noncharacters: \ue000\uf8ff \U000f0000 \ufdd0 \ufffe \uffff \U0010fffd\n"
    "Replacement char: \ufffd\ufffd and an object replacement \ufffc\n"
    "Bidi: \u202eevil\u202c \u200fRLM\u200e LRM \u2066iso\u2069\n"
    "Punctuation runs: ...!!!??? ---- ==== ~~~~ ``` *** ### @@@ $$$ %%% ^^^ &&& |||| \\\\\\\\ //// ;;;; ::::\n"
    "Punctuation then newlines: end.\n\n\nnext!\r\n\r\nafter?\n \n \nx\n"
    "Trailing spaces before newline:   \n\t\t\n \t \n"
    "Ends without a newline"
)


def whitespace_digits(rng):
    out = ["Runs of white space and digits, generated with a fixed seed.\n"]
    for n in [1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 255, 256, 257, 1000]:
        out.append(f"spaces {n}:" + " " * n + "x\n")
        out.append(f"tabs {n}:" + "\t" * n + "x\n")
        out.append(f"newlines {n}:" + "\n" * n + "x\n")
        out.append(f"crlf {n}:" + "\r\n" * n + "x\n")
        out.append(f"mixed {n}:" + "".join(rng.choice(" \t\n\r\x0b\x0c") for _ in range(n)) + "x\n")
        out.append(f"trailing {n}:" + " " * n + "\n")
    out.append("very long space run:" + " " * 5000 + "end\n")
    out.append("very long newline run:" + "\n" * 3000 + "end\n")
    out.append("very long tab run:" + "\t" * 2000 + "\n")
    for n in [1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13, 20, 33, 64, 100, 1000]:
        out.append(f"digits {n}: " + "".join(rng.choice("0123456789") for _ in range(n)) + "\n")
    out.append("ten thousand digits: " + "".join(rng.choice("0123456789") for _ in range(10000)) + "\n")
    out.append("numbers: 0 00 007 3.14159 2.718e-10 -42 +17 1,234,567.89 1.234.567,89 1_000_000 0xDEADBEEF 0b1011 "
               "1e100 6.022E23 50% 3/4 12:34:56 2024-03-15T08:30:00Z +1 (555) 010-9999 v1.2.3-rc.4 IPv4 192.168.0.1\n")
    out.append("digits and letters: abc123def 123abc abc123 a1b2c3d4 x86_64 utf8 mp3 3D 4K 1st 2nd 3rd 24th H2O CO2\n")
    out.append("unicode digits: \u0660\u0661\u0662\u0663\u0664\u0665 \u0966\u0967\u0968\u0969 \uff10\uff11\uff12\uff13\uff14"
               " \u09e6\u09e7\u09e8 \u0e50\u0e51\u0e52 \u00b2\u00b3 12\u00b3 \u2155\u2156 x\u2082\n")
    for _ in range(300):
        k = rng.randint(1, 12)
        out.append("".join(rng.choice(["12", "345", "6", " ", "  ", "\t", "\n", ".", ",", "a", "Z", "-", "\r\n"])
                           for _ in range(k)))
    out.append("\n")
    return "".join(out)


def random_unicode(rng, n_chars):
    """Random characters from many blocks; only those assigned in this Python's
    Unicode tables (the regex engines may know newer ones differently)."""
    blocks = [(0x20, 0x7E, 30), (0x09, 0x0D, 4), (0xA0, 0x24F, 6), (0x300, 0x36F, 3), (0x370, 0x4FF, 4),
              (0x590, 0x6FF, 3), (0x900, 0x97F, 2), (0xE00, 0xE7F, 2), (0x1100, 0x11FF, 1), (0x1E00, 0x1FFF, 2),
              (0x2000, 0x206F, 3), (0x2070, 0x2BFF, 3), (0x3000, 0x30FF, 4), (0x4E00, 0x9FFF, 6), (0xAC00, 0xD7A3, 5),
              (0xFF00, 0xFFEF, 2), (0x1F300, 0x1FAFF, 5), (0x1D400, 0x1D7FF, 1), (0x10000, 0x10FFF, 1), (0x80, 0x9F, 1)]
    weights = [w for _, _, w in blocks]
    out = []
    while len(out) < n_chars:
        lo, hi, _ = rng.choices(blocks, weights)[0]
        c = chr(rng.randint(lo, hi))
        if unicodedata.category(c) in ("Cn", "Cs"):
            continue
        out.append(c)
        if rng.random() < 0.03:
            out.append("\n")
    return "".join(out) + "\n"


def write(name, text):
    with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="") as f:
        f.write(text)


def main():
    os.makedirs(OUT, exist_ok=True)
    write("cjk.txt", CJK)
    write("emoji.txt", EMOJI)
    write("combining.txt", COMBINING)
    write("specials.txt", SPECIALS)
    write("unicode-edge.txt", EDGE)
    write("whitespace-digits.txt", whitespace_digits(random.Random(20240315)))
    write("random-unicode.txt", random_unicode(random.Random(7), 60000))


if __name__ == "__main__":
    main()
