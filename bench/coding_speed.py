"""Seconds per text for scoring `exact` against one chat completion per text, by codebook length.

    python bench/coding_speed.py                 # 100 texts, codebooks of ~60, 500, 2,000 tokens
    python bench/coding_speed.py --n 30 --threads 1

Three ways to code the same tweets with the same model file, thread count and context size:
(a) textcoder's `exact` scoring (the codebook prefix evaluated once, kept in the KV cache);
(b) the seed's way: one llama-cpp-python `create_chat_completion` per text with
`logprobs=True, top_logprobs=20, temperature=0` (which needs `logits_all=True`);
(c) llama.cpp's own server, run in process by the `xllamacpp` package (pip extra `bench`),
one chat completion per text with the same options; (h) `exact` over HTTP against a
`textcoder serve` on loopback (same threads and context): the prompt rendered by its
`/tokenize`, every label in one `/v1/completions` echo request. Each method codes one warm-up text with
the same codebook before it is timed, so whatever it caches of the prefix it has cached.
The codebooks are a tweet sentiment scheme whose instructions are padded with coding-rule
paragraphs; the printed prefix length is the rendered system message, counted by the model's
tokenizer. Speed figures only: nothing here checks that the answers are right.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from textcoder import Codebook, Coder
from textcoder.backends.llama import LocalBackend
from textcoder.prompt import build_messages, prefix_messages

TARGETS = (60, 500, 2000)
N_CTX = 4096
WARMUP_TEXT = "Just got back from the farmers market, bought way too many peaches."

TWEETS = [
    "I loved the new Batman movie!",
    "My flight got cancelled again. Third time this month. Unbelievable.",
    "The meeting is moved to 3pm tomorrow.",
    "Best coffee in town, hands down ☕",
    "Why does my phone battery die at 40%??",
    "Reading a book about the history of salt.",
    "Can't stop listening to this album, it's a masterpiece",
    "Customer service put me on hold for 2 hours and then hung up.",
    "It's raining in Seattle. Shocking, I know.",
    "Finally finished my thesis!!! 🎉",
    "The bus was late but the driver was really kind about it.",
    "New update broke everything. Thanks a lot.",
    "Lunch: salad and a sandwich.",
    "This is the worst pizza I've ever had, and I've had gas station pizza.",
    "Our team won the championship! So proud of these kids.",
    "Traffic on the I-5 is backed up to the bridge.",
    "I guess the concert was fine. Sound could've been better.",
    "Absolutely thrilled with my new bike, rides like a dream",
    "Lost my keys. Again.",
    "The library opens at 9 on Saturdays.",
    "Honestly the sequel was better than the original",
    "My landlord still hasn't fixed the heating and it's January.",
    "Watching the sunrise from the mountain top. Worth the hike.",
    "Prices at the grocery store are getting ridiculous",
    "Just adopted a puppy and my heart is full ❤️",
    "The report is due Friday at noon.",
    "That restaurant gave me food poisoning. Never again.",
    "Not sure how I feel about the new logo.",
    "Shoutout to the nurse who stayed late to help my mom. Heroes.",
    "Waited 45 minutes for a table and the food was cold.",
    "The museum has a new exhibit on ancient Egypt.",
    "Oh great, another Monday. Just what I needed.",
    "This app makes budgeting so easy, highly recommend",
    "My package was delivered to the wrong address and nobody will help.",
    "Walked 10k steps today.",
    "The kids' school play was adorable 😍",
    "Internet has been down since this morning. Working from a café.",
    "Tried the new vegan burger. It was okay.",
    "What a game last night! Overtime winner!",
    "Why is every printer in the world broken",
    "The store closes early on holidays.",
    "Got promoted today!! Hard work pays off.",
    "Another software update, another set of missing features.",
    "Weather forecast says sunny all week.",
    "The hotel room smelled like smoke and the AC didn't work.",
    "My grandma's apple pie recipe never fails 🥧",
    "The train is delayed by 20 minutes due to signal problems.",
    "I can't believe how rude the cashier was to that old man.",
    "Started learning Spanish on an app. Day 1.",
    "This podcast episode changed how I think about sleep. Brilliant.",
    "The new phone is fine I guess, nothing special.",
    "Stuck in a 3 hour meeting that could have been an email 🙄",
    "Volunteers cleaned up the whole beach this weekend. Amazing community.",
    "Power outage in the whole neighborhood.",
    "The dentist said no cavities! Small victories.",
    "My laptop fan sounds like a jet engine.",
    "Elections are on November 5th.",
    "Worst customer experience ever with this airline.",
    "The sunset tonight was unreal 🌅",
    "Bought a plant. Let's see how long it survives.",
    "This movie had no plot and way too many explosions.",
    "The city is adding new bike lanes downtown.",
    "So grateful for my friends who showed up today.",
    "Gym was packed, couldn't get on a single machine.",
    "I think the recipe needs more salt.",
    "Our flight was smooth and landed early, nice surprise",
    "They raised the rent by 15%. How is anyone supposed to live here?",
    "The cat knocked my coffee off the table. Again.",
    "Just finished a 5k in under 25 minutes, personal best!",
    "The conference keynote starts at 10.",
    "Honestly disappointed by the season finale.",
    "Fresh snow on the mountains this morning, gorgeous",
    "The pharmacy messed up my prescription for the second time.",
    "Trying a new route to work today.",
    "This hand cream is a lifesaver in winter.",
    "The referee completely ruined that match.",
    "Class is cancelled tomorrow because of the storm.",
    "Can we talk about how good this soup is",
    "My neighbor's dog barks all night and I haven't slept in days.",
    "Meh. The new café is just another café.",
    "Got my vaccine today, arm is a bit sore.",
    "Thank you to everyone who came to the fundraiser, we raised $10k!",
    "The elevator in my building is broken, 8 floors of stairs.",
    "Watching a documentary about octopuses.",
    "Their support team fixed my issue in five minutes. Impressed!",
    "I ordered a large and got a small. Typical.",
    "Tomorrow's high is 72 degrees.",
    "This song always makes me cry in the best way.",
    "Parking downtown is a nightmare.",
    "My daughter learned to ride a bike today!",
    "The update is available for download now.",
    "Three hours on the phone with the bank and nothing resolved.",
    "Homemade bread turned out perfect this time 🍞",
    "The museum was crowded but worth it.",
    "Not a fan of the new layout on this site.",
    "The farmers market is back on Sundays starting in May.",
    "Genuinely the kindest stranger helped me change my tire.",
    "Why do they schedule roadwork during rush hour",
    "First day at the new job. Nervous but excited.",
    "The battery lasts all day, couldn't be happier with it.",
]

RULES = [
    "Code the tweet as it stands, not the conversation it may belong to. Do not guess at "
    "replies, earlier tweets or linked articles; a tweet that only makes sense in a thread you "
    "cannot see is coded on its own words, and if those words carry no evaluation it is neutral.",
    "Sarcasm counts as what the author means, not what the words say. 'Oh great, another "
    "delay' is negative. Look for cues such as 'just what I needed', 'thanks a lot', eye-roll "
    "emojis, or praise attached to an obviously bad event. When sarcasm is only possible but "
    "not signalled, code the literal sentiment.",
    "Emojis are part of the text. A heart, a smiling face or a party popper supports positive; "
    "an angry face, a crying face used for sadness, or an eye-roll supports negative. An emoji "
    "alone does not override clear words: 'my flight got cancelled 😂' is still negative unless "
    "the author is plainly laughing it off.",
    "Hashtags are read as words. #blessed and #winning lean positive, #fail and #smh lean "
    "negative, and topical tags such as #election or #weather carry no sentiment by themselves. "
    "Split run-together hashtags into words before judging them, and ignore tags that only "
    "name an event, a place or a brand.",
    "Facts, announcements, schedules and questions asking for information are neutral, even "
    "when the topic is emotional for many people. 'Elections are on November 5th' is neutral; "
    "'I can't wait to vote them out' is negative about the incumbents. Do not infer the "
    "author's feelings from the topic alone.",
    "When a tweet mixes praise and complaint, code the overall stance: which part does the "
    "author put weight on, which comes last, which is longer? 'The food was great but the "
    "service ruined the evening' is negative. If the two really balance, and the author draws "
    "no conclusion, code neutral.",
    "Mild or hedged evaluations still count. 'It was okay', 'not bad', 'fine I guess' are "
    "neutral when they express indifference, but 'not bad at all, actually' is positive. "
    "Pay attention to intensifiers (really, so, absolutely) and to downtoners (kind of, a bit), "
    "which shift a tweet toward or away from the neutral category.",
    "Negation flips the sentiment of the phrase it governs, not of the whole tweet. 'Not a fan' "
    "is negative; 'can't complain' is mildly positive; 'never disappoints' is positive. Watch "
    "for double negatives and for negations that scope over a question, which often mark "
    "rhetorical complaints.",
    "Rhetorical questions are usually evaluations. 'Why is every printer broken' expresses "
    "frustration and is negative; 'who else loves this weather?' is positive. A question that "
    "genuinely asks for information, such as 'what time does the store open?', is neutral.",
    "Quoted or retweeted text is coded only as far as the author adopts it. If the author "
    "quotes someone to mock them, the tweet is negative toward that person. If the author "
    "simply passes on news without comment, the tweet is neutral, whatever the sentiment of "
    "the news itself.",
    "Links, mentions and URLs carry no sentiment. Ignore '@username' handles and shortened "
    "links when judging the tweet, except where the mention itself is the point, as in "
    "'thanks @airline for nothing', which is negative toward the airline.",
    "Target does not matter for this variable: code the sentiment the author expresses, "
    "whoever or whatever it is about. A tweet praising a rival team is positive; a tweet "
    "angry at the weather is negative. Other variables in the project record the target.",
    "Wishes, hopes and plans are coded by their tone. 'Hope tomorrow is better' after a bad "
    "day is negative overall; 'can't wait for the weekend trip!' is positive; 'planning to "
    "repaint the kitchen' with no evaluation is neutral.",
    "Personal news is coded by how the author presents it. A promotion, a birth or a finished "
    "project told with joy is positive; an illness, a loss or a cancelled plan told with "
    "regret is negative; the same events reported flatly, with no evaluative words, are "
    "neutral.",
    "Complaints about services, products and institutions are negative even when polite. "
    "'Still waiting on my refund, fourth email sent' is negative. Thanks for a fix after a "
    "problem is positive when the thanks is the point of the tweet, and negative when the "
    "thanks is sarcastic.",
    "Profanity is not itself negative: 'this burger is f***ing amazing' is positive. Judge "
    "what the swearing intensifies. Likewise, all-caps and repeated punctuation raise the "
    "intensity of whatever sentiment is there but do not decide its direction.",
    "Humour and self-deprecation need care. A joke at the author's own expense about a minor "
    "mishap ('bought a plant, let's see how long it survives') is usually neutral; a joke "
    "that vents real annoyance is negative. Do not code a tweet positive merely because it "
    "is funny.",
    "Comparisons are coded by the author's conclusion. 'The sequel was better than the "
    "original' is positive about the sequel; 'used to love this place, not anymore' is "
    "negative. A comparison that states no preference ('the blue one is bigger') is neutral.",
    "Tweets in more than one language, or with slang and misspellings, are coded on their "
    "meaning. Read 'gr8', 'luv' and 'smh' as the words they stand for; if you cannot tell "
    "what a word means, code from the rest of the tweet rather than guessing.",
    "Advertising and promotional tweets are coded like any other text: a brand praising its "
    "own product is positive. Spam that contains no evaluation (a list of links, a discount "
    "code) is neutral. Do not let your own view of advertising enter the code.",
    "News headlines shared without comment are neutral unless the headline itself is written "
    "as an evaluation ('Disastrous launch leaves thousands stranded' is negative). A headline "
    "followed by the author's reaction is coded on the reaction.",
    "Requests and commands are coded by the attitude they carry. 'Please fix the app' after "
    "a crash is negative; 'everyone go see this film!' is positive; 'remember to bring ID' "
    "is neutral. The grammatical form alone does not decide the category.",
    "Short tweets get no benefit of the doubt. 'Monday.' is neutral; 'Monday. Ugh.' is "
    "negative. A single word such as 'yes!!' or 'finally' is coded by its most likely reading "
    "as an exclamation, which is usually positive.",
    "Do not code the likely reaction of readers. A tweet about a tragedy that only states what "
    "happened is neutral; one that expresses grief, anger or sympathy is negative, since the "
    "author reports a bad state of affairs with feeling.",
    "When two coders disagree, the codebook's examples and these rules settle it, not "
    "intuition. Record hard cases in the memo column with the rule you applied, so that the "
    "rules can be sharpened in the next round of coding.",
]


def codebook(n_rules: int) -> Codebook:
    """A tweet sentiment codebook whose instructions carry the first `n_rules` coding rules."""
    intro = (
        "Act as a sentiment classification system. You will be provided with a tweet, and your "
        "task is to classify its sentiment as positive, neutral, or negative."
    )
    rules = [f"Rule {i + 1}. {RULES[i % len(RULES)]}" for i in range(n_rules)]
    if rules:
        intro += " Apply the following coding rules."
    else:  # the shortest codebook: about 60 tokens
        intro = "Classify the sentiment of the tweet."
    instructions = "\n\n".join([intro, *rules])
    cats = [
        {"label": "positive", "description": "the author likes, praises or is happy"},
        {"label": "negative", "description": "the author dislikes or criticises something"},
        {"label": "neutral", "description": "neither, or a plain statement of fact"},
    ]
    if not rules:
        cats = [
            {"label": "positive", "description": "likes or praises"},
            {"label": "negative", "description": "dislikes or criticises"},
            {"label": "neutral", "description": "neither"},
        ]
    return Codebook.from_dict(
        {
            "name": f"bench-sentiment-{n_rules}",
            "instructions": instructions,
            "variables": [{"name": "sentiment", "categories": cats}],
            "template": "Tweet: '''{text}'''",
        }
    )


def prefix_tokens(backend: LocalBackend, book: Codebook) -> int:
    """The shared prefix's length (system message as rendered) in the model's tokens."""
    scorer = backend.exact_scorer()
    return len(backend.engine.tokenize(scorer.prefix_text(prefix_messages(book))))


def books_near(backend: LocalBackend, targets: Sequence[int]) -> list[tuple[Codebook, int]]:
    """For each target, the codebook whose prefix length comes closest to it."""
    sizes: list[tuple[Codebook, int]] = []
    n_rules = 0
    while not sizes or sizes[-1][1] < max(targets) * 1.1:
        book = codebook(n_rules)
        sizes.append((book, prefix_tokens(backend, book)))
        n_rules += 1
    return [min(sizes, key=lambda bn: abs(bn[1] - t)) for t in targets]


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (llama.cpp's logs) while loading models."""
    fd = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(fd, 2)
            os.close(fd)


Method = Callable[[Codebook, Sequence[str]], None]


def method_exact(backend: LocalBackend) -> Method:
    """(a) textcoder's `exact` scoring through the public `Coder`."""

    def run(book: Codebook, texts: Sequence[str]) -> None:
        coder = Coder(book, backend=backend, scoring="exact")
        results = coder.code_texts(list(texts), progress=False)
        errors = [r for r in results if any(v.error for v in r.values())]
        if errors:
            raise RuntimeError(f"exact: {len(errors)} texts failed: {errors[0]}")

    return run


def method_llama_cpp_python(
    model_path: str, threads: int, max_tokens: int, cold: bool = False
) -> Method:
    """(b) the seed's way: one create_chat_completion with top_logprobs=20 per text; `cold`:
    the model's state is reset first, so nothing of the previous prompt is reused."""
    from llama_cpp import Llama

    with quiet_stderr():
        llm = Llama(
            model_path=model_path,
            n_ctx=N_CTX,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=512,
            logits_all=True,
            verbose=False,
        )

    def run(book: Codebook, texts: Sequence[str]) -> None:
        for text in texts:
            if cold:
                llm.reset()
            out: Any = llm.create_chat_completion(
                messages=build_messages(book, text),  # type: ignore[arg-type]
                logprobs=True,
                top_logprobs=20,
                max_tokens=max_tokens,
                temperature=0,
            )
            if "choices" not in out:
                raise RuntimeError(f"llama-cpp-python: unexpected answer {str(out)[:200]}")

    return run


def method_xllamacpp(model_path: str, threads: int, max_tokens: int, cold: bool = False) -> Method:
    """(c) llama.cpp's own server in process (xllamacpp), one chat completion per text;
    `cold`: with `cache_prompt: false`, so the server evaluates the whole prompt each time."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model_path
    params.n_ctx = N_CTX
    params.n_batch = 512
    params.n_ubatch = 512
    params.n_parallel = 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = -1
    with quiet_stderr():
        server = xllamacpp.Server(params)

    def run(book: Codebook, texts: Sequence[str]) -> None:
        for text in texts:
            out: Any = server.handle_chat_completions(
                {
                    "messages": build_messages(book, text),
                    "logprobs": True,
                    "top_logprobs": 20,
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "cache_prompt": not cold,
                }
            )
            if "error" in out or "choices" not in out:  # no logprobs when it ends at once
                raise RuntimeError(f"xllamacpp: unexpected answer {str(out)[:200]}")

    return run


def with_examples(book: Codebook, k: int, select: str) -> Codebook:
    """The codebook with `k` labelled VADER tweets as examples: the same `k` for every text
    (`fixed`, so they join the cached prefix) or drawn for each text (`random`, so they break
    it; `similar` breaks it the same way and adds the text's embedding)."""
    from pathlib import Path

    from textcoder.codebook import ExamplesFrom

    pool = Path(__file__).resolve().parent.parent / "examples" / "vader_pool.csv"
    spec = ExamplesFrom(file=str(pool), k=k, select=select)  # type: ignore[arg-type]
    return book.model_copy(update={"examples_from": spec})


@contextlib.contextmanager
def serve(threads: int) -> Iterator[str]:
    """A `textcoder serve` subprocess on a free loopback port; its /v1 URL once healthy."""
    import socket
    import subprocess

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["serve", "--port", str(port), "--threads", str(threads), "--n-ctx", str(N_CTX)]
    proc = subprocess.Popen([sys.executable, "-m", "textcoder", *args], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError("textcoder serve did not start")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait()


def method_exact_http(url: str) -> Method:
    """(h) `exact` over HTTP through the public `Coder`, against `textcoder serve`."""

    def run(book: Codebook, texts: Sequence[str]) -> None:
        coder = Coder(
            book,
            base_url=url,
            model="smollm2",
            api_key="none",
            scoring="exact",
            concurrency=1,
            timeout=600,
        )  # fmt: skip  (one text at a time, as (a): seconds per text, not throughput)
        results = coder.code_texts(list(texts), progress=False)
        errors = [r for r in results if any(v.error for v in r.values())]
        if errors:
            raise RuntimeError(f"exact over HTTP: {len(errors)} texts failed: {errors[0]}")

    return run


def timed(method: Method, book: Codebook, texts: Sequence[str]) -> tuple[float, float]:
    """(warm-up seconds for one text, seconds per text over `texts`)."""
    t0 = time.perf_counter()
    method(book, [WARMUP_TEXT])
    t1 = time.perf_counter()
    method(book, texts)
    t2 = time.perf_counter()
    return t1 - t0, (t2 - t1) / len(texts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=100, help="texts to code per method and codebook")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--max-tokens", type=int, default=1, help="max_tokens for (b) and (c) (default 1)"
    )
    ap.add_argument("--methods", default="abch", help="which of a, b, c, h to run (default abch)")
    ap.add_argument(
        "--cold",
        type=int,
        default=0,
        metavar="N",
        help="also time (b) and (c) on N texts with nothing of the previous prompt reused "
        "(the issue's own baseline figures were taken that way); default 0: skip",
    )
    ap.add_argument(
        "--examples",
        type=int,
        default=0,
        metavar="K",
        help="also time (a) with K examples from examples/vader_pool.csv, the same for every "
        "text (fixed) and drawn per text (random: the cached prefix breaks); default 0: skip",
    )
    args = ap.parse_args(argv)
    texts = [TWEETS[i % len(TWEETS)] for i in range(args.n)]

    from textcoder.models import resolve_model

    model_path = str(resolve_model(None).path)
    with quiet_stderr():
        backend = LocalBackend(None, n_ctx=N_CTX, n_threads=args.threads)
    books = books_near(backend, TARGETS)
    methods: dict[str, Method] = {}
    if "a" in args.methods:
        methods["a"] = method_exact(backend)
    if "b" in args.methods:
        methods["b"] = method_llama_cpp_python(model_path, args.threads, args.max_tokens)
    if "c" in args.methods:
        methods["c"] = method_xllamacpp(model_path, args.threads, args.max_tokens)
    if args.cold and "b" in args.methods:
        methods["b cold"] = method_llama_cpp_python(
            model_path, args.threads, args.max_tokens, cold=True
        )
    if args.cold and "c" in args.methods:
        methods["c cold"] = method_xllamacpp(model_path, args.threads, args.max_tokens, cold=True)

    with contextlib.ExitStack() as stack:
        if "h" in args.methods:
            methods["h"] = method_exact_http(stack.enter_context(serve(args.threads)))
        return run_all(args, model_path, books, methods, texts)


def run_all(
    args: argparse.Namespace,
    model_path: str,
    books: list[tuple[Codebook, int]],
    methods: dict[str, Method],
    texts: list[str],
) -> int:
    """Time every method on every codebook and print the table."""
    print(
        f"model {model_path}\n{args.n} texts per cell, {args.threads} threads, n_ctx {N_CTX}, "
        f"max_tokens {args.max_tokens} for (b) and (c); load {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    rows: list[tuple[int, dict[str, float], dict[str, float]]] = []
    for book, n_tok in books:
        per: dict[str, float] = {}
        warm: dict[str, float] = {}
        for key, method in methods.items():
            warm[key], per[key] = timed(
                method, book, texts[: args.cold] if "cold" in key else texts
            )
            print(f"  prefix {n_tok:5d} tok  ({key})  {per[key]:.4f} s/text", flush=True)
        if args.examples and "a" in methods:
            for select in ("fixed", "random"):
                key = f"a {select} {args.examples}"
                warm[key], per[key] = timed(
                    methods["a"], with_examples(book, args.examples, select), texts
                )
                print(f"  prefix {n_tok:5d} tok  ({key})  {per[key]:.4f} s/text", flush=True)
        rows.append((n_tok, per, warm))

    print(f"load {os.getloadavg()[0]:.2f} at end\n")
    print(table(rows))
    if args.examples:
        print(examples_table(rows, args.examples))
    return 0


def table(rows: list[tuple[int, dict[str, float], dict[str, float]]]) -> str:
    """The figures as one fixed-width table, with the targets' ratios below it."""

    def cell(d: dict[str, float], k: str, fmt: str = "{:.4f}") -> str:
        return fmt.format(d[k]) if k in d else "-"

    def ratio(d: dict[str, float], k: str) -> str:
        return f"{d[k] / d['a']:.1f}x" if k in d and "a" in d else "-"

    head = (
        f"{'prefix tokens':>13} | {'(a) exact':>10} | {'(b) llama-cpp-py':>16} | "
        f"{'(c) xllamacpp':>13} | {'(b)/(a)':>7} | {'(c)/(a)':>7} | {'(a) warm-up':>11}"
    )
    lines = ["seconds per text", head, "-" * len(head)]
    for n_tok, per, warm in rows:
        lines.append(
            f"{n_tok:>13} | {cell(per, 'a'):>10} | {cell(per, 'b'):>16} | "
            f"{cell(per, 'c'):>13} | {ratio(per, 'b'):>7} | {ratio(per, 'c'):>7} | "
            f"{cell(warm, 'a'):>11}"
        )
    first, last = rows[0], rows[-1]
    if "a" in first[1] and "a" in last[1]:
        growth = last[1]["a"] / first[1]["a"]
        lines.append(
            f"(a) at {last[0]} tokens / (a) at {first[0]} tokens: {growth:.2f}x   (target <= 2x)"
        )
    if "b" in last[1] and "a" in last[1]:
        lines.append(f"(b)/(a) at {last[0]} tokens: {ratio(last[1], 'b')}   (target >= 8x)")
    if "c" in last[1] and "a" in last[1]:
        lines.append(f"(c)/(a) at {last[0]} tokens: {ratio(last[1], 'c')}   (target >= 4x)")
    if any("h" in per for _, per, _ in rows):
        lines += ["", "exact over HTTP (textcoder serve on loopback), seconds per text"]
        head = f"{'prefix tokens':>13} | {'(a) exact':>10} | {'(h) over HTTP':>13} | {'(h)/(a)':>7}"
        lines += [head, "-" * len(head)]
        for n_tok, per, _ in rows:
            lines.append(
                f"{n_tok:>13} | {cell(per, 'a'):>10} | {cell(per, 'h'):>13} | {ratio(per, 'h'):>7}"
            )
    if any("b cold" in per or "c cold" in per for _, per, _ in rows):
        lines += ["", "baselines cold (nothing of the previous prompt reused), seconds per text"]
        head = (
            f"{'prefix tokens':>13} | {'(b) cold':>10} | {'(c) cold':>10} | "
            f"{'(b) cold/(a)':>12} | {'(c) cold/(a)':>12}"
        )
        lines += [head, "-" * len(head)]
        for n_tok, per, _ in rows:
            lines.append(
                f"{n_tok:>13} | {cell(per, 'b cold'):>10} | {cell(per, 'c cold'):>10} | "
                f"{ratio(per, 'b cold'):>12} | {ratio(per, 'c cold'):>12}"
            )
    return "\n".join(lines)


def examples_table(rows: list[tuple[int, dict[str, float], dict[str, float]]], k: int) -> str:
    """(a) with no examples, k fixed examples and k examples drawn per text, seconds per text."""
    head = (
        f"{'prefix tokens':>13} | {'(a) no examples':>15} | {f'(a) {k} fixed':>12} | "
        f"{f'(a) {k} per text':>15} | {'per text/fixed':>14}"
    )
    lines = ["exact with examples, seconds per text", head, "-" * len(head)]
    for n_tok, per, _ in rows:
        fixed, drawn = per.get(f"a fixed {k}"), per.get(f"a random {k}")
        ratio = f"{drawn / fixed:.1f}x" if fixed and drawn else "-"
        lines.append(
            f"{n_tok:>13} | {per.get('a', float('nan')):>15.4f} | {fixed or float('nan'):>12.4f} | "
            f"{drawn or float('nan'):>15.4f} | {ratio:>14}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
