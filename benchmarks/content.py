"""Speed of ``sendq.content.check_content`` on realistic messages and on hostile 10 kB inputs.

``run()`` returns the figures; ``benchmarks/run.py`` prints and reports them. Targets: a realistic 1-3 segment
message with links well under 1 ms, any 10 kB hostile input under 10 ms (worst case).
"""

import random
import statistics
import time

from sendq.content import DEFAULT_RESTRICTED_TERMS, ContentRules, check_content

#: the realistic texts enable acme.com and link to it and to a shortener that is not enabled
RULES = ContentRules(
    restricted_terms=frozenset(DEFAULT_RESTRICTED_TERMS),
    allowed_terms=frozenset(),
    allowed_domains=frozenset({"acme.com"}),
)
HOSTILE_TARGET_MS = 10.0

_NAMES = ["Anna", "Jean-Luc", "Zoë", "Mohammed", "Łukasz", "Siobhán", "Ngozi", "Hiroshi", "María José", "Olu"]
_OPENERS = [
    "Hi {name}, your order {code} has shipped.",
    "Dear {name}, your appointment is confirmed for {day} at {time}.",
    "{name}, your table for {n} is booked at {time} on {day}.",
    "Your verification code is {otp}. It expires in 10 minutes.",
    "Hello {name}! Your payment of ${amount} was received, thank you.",
    "Reminder: your delivery {code} arrives {day} between {time} and 6pm.",
]
_MIDDLES = [
    "Track it at https://track.acme.com/o/{code}?ref=sms&utm_source=sms.",
    "Manage your booking: https://www.acme.com/b/{code}",
    "Details: acme.com/help/{n}, or reply HELP.",
    "Questions? Write to help@acme.com or call 020 7946 0958.",
    "Our new app v2.{n}.1 is out, with 3.5x faster check-in.",
    "Prices from £{amount} incl. VAT, e.g. the 1.5kg family pack.",
]
_LINKS = ["Short link: bit.ly/{code}", "More: https://tinyurl.com/{code}", "See t.co/{code} for photos."]
_CLOSERS = ["Reply STOP to opt out.", "Thank you for shopping with ACME!", "See you soon 😊", "Kind regards, ACME."]
_FILLER = [
    "Opening hours are 9am to 5.30pm, Mon. to Sat.",
    "Free returns within 30 days, no questions asked.",
    "Please bring your ID, i.e. passport or driving licence.",
    "Parking is available at St. John's car park, level 2.",
    "Votre colis arrive demain entre 8h et 12h.",
    "Ваш заказ готов к выдаче.",
]


def realistic_texts(count: int, seed: int = 7) -> list[str]:
    """``count`` varied 1-3 segment messages (up to ~450 characters), each with one enabled and one other link."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        fields = {
            "name": rng.choice(_NAMES),
            "code": "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=rng.randint(6, 10))),
            "day": rng.choice(["Mon. 3 June", "12.03.2025", "tomorrow", "Friday"]),
            "time": rng.choice(["10.30", "9:15am", "14:00", "7pm"]),
            "n": rng.randint(1, 12),
            "otp": rng.randint(100000, 999999),
            "amount": f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}",
        }
        parts = [rng.choice(_OPENERS), rng.choice(_MIDDLES[:3]), rng.choice(_LINKS)]
        parts += rng.sample(_MIDDLES[3:] + _FILLER, k=rng.randint(0, 4))
        parts.append(rng.choice(_CLOSERS))
        text = " ".join(parts).format(**fields)
        texts.append(text[:450])
    return texts


def hostile_texts() -> dict[str, str]:
    """10 kB inputs built to hurt: long runs for backtracking, many candidates, mixed format characters."""
    texts = {
        "a. repeated": "a." * 5000,
        "dots": "." * 10_000,
        "nested brackets": "[(" * 2500 + ".)]" * 1700,
        "fake urls": " ".join(f"http://x{i}.com/" for i in range(1000)),
        "format chars": "e\u200bv\u00adi\u202el.\ufeffc\u2060om " * 800,
        "one long host": "a.com." * 1700,
        "whitespace then dot": "a" + " " * 10_000 + ".b",
        "newlines then dot": "a" + "\n" * 10_000 + ".",
        "dot words": "x dot " * 1700,
        "leetspeak": " ".join(f"a{i}b{i % 7}c" for i in range(1500)),
        "single letters": "a b " * 2500,
        "zalgo": "c\u0332\u0301" * 3400,
        "long scheme": "a" * 9990 + "://x",
        "mixed script": "\u0430b" * 5000,
        "hyphens": "a-" * 5000,
        "ip addresses": "1.2.3.4 " * 1250,
        "spaced dots": "a . " * 2500,
        "cjk and full stops": "例子。中国 " * 1400,
        "emoji": "🎰a.b " * 1700,
        "russian and latin": "привет hello " * 800,
    }
    return {name: text[:10_000] for name, text in texts.items()}


def _time_ms(text: str) -> float:
    start = time.perf_counter_ns()
    check_content(text, RULES)
    return (time.perf_counter_ns() - start) / 1e6


def run(quick: bool = False) -> dict[str, float]:
    """Checks per second, p50/p99 latency on realistic texts, and the worst time over hostile 10 kB inputs."""
    texts = realistic_texts(200 if quick else 1000)
    for text in texts[:50]:  # warm the caches (suffix list, character tables, host verdicts)
        check_content(text, RULES)
    rounds = 1 if quick else 3
    latencies = [_time_ms(text) for _ in range(rounds) for text in texts]
    hostile = hostile_texts()
    repeats = 2 if quick else 5
    hostile_ms = {name: max(_time_ms(text) for _ in range(repeats)) for name, text in hostile.items()}
    latencies.sort()
    return {
        "texts": float(len(texts)),
        "checks_per_s": len(latencies) / (sum(latencies) / 1000),
        "realistic_mean_ms": statistics.fmean(latencies),
        "realistic_p50_ms": latencies[len(latencies) // 2],
        "realistic_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "realistic_max_chars": float(max(len(t) for t in texts)),
        "hostile_inputs": float(len(hostile)),
        "hostile_worst_ms": max(hostile_ms.values()),
    }
