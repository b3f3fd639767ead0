"""Secret scanning with detect-secrets: find files holding credentials, never keep the secret itself.

detect-secrets checks each line with every plugin in Python, which is slow over a whole repository
(about 10 MB/s here, slower than tokenizing). Its regex plugins can only report a secret where one of
their patterns matches, so all their patterns, loosened (lookarounds dropped, huge repeat bounds opened),
are joined into one RE2 automaton that scans a file in one linear pass (hundreds of MB/s). Only the
lines it matches are then scanned by detect-secrets itself (its plugins judge each line on its own), so
the answer is detect-secrets' own at a fraction of the cost.
RE2's digit and word classes are ASCII where Python's are Unicode; the secrets these plugins look for are
ASCII tokens, so the loosened automaton still finds every one they can.

Documentation and examples are full of credentials that are no secret: `postgresql://scott:tiger@localhost`,
`https://user:pass@host`, `password = "changeme"`. Each finding is judged by its value: an obvious
placeholder lets the file through (counted by type), anything else keeps it out.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

import re2
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.core.potential_secret import PotentialSecret
from detect_secrets.core.scan import scan_file
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.settings import transient_settings


@cache
def _plugin_classes() -> dict[str, type]:
    return {cls.__name__: cls for cls in get_mapping_from_secret_type_to_class().values()}


def available_plugins() -> set[str]:
    """Names of the detect-secrets plugins that can be configured."""
    return set(_plugin_classes())


class SecretScanner:
    """Finds which files hold credentials, by detect-secrets plugin name."""

    def __init__(self, plugins: Iterable[str]):
        self.plugins = sorted(set(plugins))
        classes = _plugin_classes()
        unknown = [p for p in self.plugins if p not in classes]
        if unknown:
            raise ValueError(f"unknown detect-secrets plugins {unknown}; choose from {sorted(classes)}")
        self._settings = {"plugins_used": [{"name": name} for name in self.plugins]}
        self._prefilter = _combined_denylist([classes[name] for name in self.plugins])

    def might_hold_secret(self, text: str) -> bool:
        """False only when no configured plugin could report anything in `text`."""
        return self._prefilter is None or self._prefilter.search(text) is not None

    def candidate_lines(self, text: str) -> str:
        """The lines of `text` on which some plugin could report a secret (all of them without a prefilter)."""
        if self._prefilter is None:
            return text
        starts = sorted({text.rfind("\n", 0, m.start()) + 1 for m in self._prefilter.finditer(text)})
        lines = []
        for start in starts:
            end = text.find("\n", start)
            lines.append(text[start : end if end != -1 else len(text)])
        return "\n".join(lines)

    def secret_types(self, path: str, text: str) -> list[str]:
        """The kinds of secret that keep the file out (e.g. 'AWS Access Key'); placeholders don't count.

        Never the secret values."""
        return list(self.scan(path, text).real)

    def detected_types(self, path: str, text: str) -> list[str]:
        """Every kind detect-secrets reports in the file, placeholders included (its own answer)."""
        return sorted({secret.type for secret in self._findings(path, text)})

    def scan(self, path: str, text: str) -> SecretScan:
        """The kinds of secret found in the file, split into real ones and obvious placeholders."""
        real, placeholders = set(), set()
        for secret in self._findings(path, text):
            (placeholders if is_placeholder(secret.type, secret.secret_value) else real).add(secret.type)
        return SecretScan(real=tuple(sorted(real)), placeholders=tuple(sorted(placeholders - real)))

    def _findings(self, path: str, text: str) -> list[PotentialSecret]:
        lines = self.candidate_lines(text)
        if not lines:
            return []
        # detect-secrets scans files by name; its filters look at the name (e.g. lockfiles), so keep it.
        with tempfile.TemporaryDirectory(prefix="fastapply-secrets-") as tmp:
            copy = Path(tmp) / PurePosixPath(path).name
            copy.write_text(lines + "\n", encoding="utf-8")
            with transient_settings(self._settings):
                return list(scan_file(str(copy)))


@dataclass(frozen=True)
class SecretScan:
    """What the scan found in one file, by secret type (never the values)."""

    real: tuple[str, ...] = ()  # types with at least one real-looking value: the file is excluded
    placeholders: tuple[str, ...] = ()  # types found only as obvious placeholders


# Kinds whose value a person chose (a password in a URL, `password = "..."`): these are the ones
# documentation fills with placeholders. The other plugins match a token's shape (AKIA..., ghp_...,
# a PEM header), and that shape is the evidence, so their values are judged only by the masked rule.
HUMAN_CHOSEN_TYPES = frozenset({"Basic Auth Credentials", "Secret Keyword"})

# Words that documentation uses for credentials: `scott:tiger` (Oracle's demo account), `user:pass`,
# `admin:changeme`, `mypassword`, `your-secret-here`. A value made only of these (and digits or
# separators) is a placeholder.
PLACEHOLDER_WORDS = frozenset(
    {
        *("pass", "password", "passwd", "passphrase", "passwort", "pwd", "pw", "pword", "secret", "secrets"),
        *("changeme", "changeit", "tiger", "scott", "example", "examples", "sample", "placeholder"),
        *("dummy", "fake", "test", "testing", "tester", "foo", "bar", "baz", "qux", "quux", "foobar"),
        *("my", "your", "our", "some", "the", "new", "old", "here", "db", "database", "user", "username"),
        *("usr", "login", "admin", "administrator", "root", "guest", "demo", "default", "dev", "local"),
        *("localhost", "app", "api", "key", "apikey", "token", "auth", "letmein", "hunter", "qwerty"),
        *("abc", "xyz", "s3cret", "s3cr3t", "secr3t", "p4ss", "p4ssw0rd", "passw0rd", "pa55word", "pa55w0rd"),
        *("postgres", "mysql", "redis", "mongo", "rabbit"),
    }
)
# Longest word first inside an atomic group: linear, and "password" is not read as "pass" + "word".
_WORDS_RE = re.compile(
    "(?>{}|[0-9_.\\-])+".format("|".join(sorted(PLACEHOLDER_WORDS, key=len, reverse=True))),
    re.IGNORECASE,
)
PLACEHOLDER_MAX_CHARS = 64  # longer values are never waved through as words
# `<password>`, `{password}`, `{{ password }}`, `${PASSWORD}`, `$PASSWORD`, `%(password)s`, `%s`,
# `[password]`, `...`: a slot in a template, not a value.
_TEMPLATE_RE = re.compile(
    r"<[^<>]*>|\{\{?[^{}]*\}\}?|\$\{[^}]*\}|\$\(?\w+\)?|%\(\w+\)[sdr]|%[sdr]|\[[^\[\]]*\]|\.{2,}|\u2026"
)
_REPEATED_RUN_RE = re.compile(r"(.)\1{3,}")


def is_placeholder(secret_type: str, value: str | None) -> bool:
    """Whether a detected credential is an obvious placeholder rather than something real.

    Any kind: a value mostly one repeated character (`AKIAXXXXXXXXXXXXXXXX`, `****`; detect-secrets
    reports some tokens by their prefix alone, `ghp`, and those stay real).
    Human-chosen kinds (HUMAN_CHOSEN_TYPES) also: a template slot (`<password>`, `${DB_PASS}`), at
    most 3 characters (`u:p@`), or only PLACEHOLDER_WORDS with digits and separators (`tiger`,
    `password123`, `my-secret`). Everything else is real, so recall stays that of detect-secrets for
    tokens, keys and any password that looks chosen (`S3cr3t!x9`, `tiger^5HHH`).
    """
    if not value:
        return False
    longest_run = max((len(m.group(0)) for m in _REPEATED_RUN_RE.finditer(value)), default=0)
    if longest_run * 2 >= len(value):
        return True
    if secret_type not in HUMAN_CHOSEN_TYPES:
        return False
    if len(value) <= 3 or _TEMPLATE_RE.fullmatch(value):
        return True
    return len(value) <= PLACEHOLDER_MAX_CHARS and _WORDS_RE.fullmatch(value) is not None


_LOOKAROUND_RE = re.compile(r"\(\?<?[=!](?:[^()]|\([^()]*\))*\)")
_NAMED_GROUP_RE = re.compile(r"\(\?P<[^>]+>")
_BIG_REPEAT_RE = re.compile(r"\{(\d+),(\d{4,})\}")


def loosen(pattern: re.Pattern[str]) -> str:
    """The pattern as RE2 syntax that matches wherever the original does (and maybe more)."""
    body = _LOOKAROUND_RE.sub("", pattern.pattern)  # an assertion removed only widens the match
    body = _NAMED_GROUP_RE.sub("(?:", body)
    body = _BIG_REPEAT_RE.sub(r"{\1,}", body)  # RE2 caps counted repeats at 1000
    flags = "".join(flag for flag, bit in (("i", re.I), ("m", re.M), ("s", re.S)) if pattern.flags & bit)
    return f"(?{flags}:{body})" if flags else f"(?:{body})"


class _PatternLoop:
    """Fallback prefilter: each pattern in Python's `re` (correct, slower)."""

    def __init__(self, patterns: list[re.Pattern[str]]):
        self.patterns = patterns

    def search(self, text: str) -> bool | None:
        return any(p.search(text) for p in self.patterns) or None

    def finditer(self, text: str):
        for pattern in self.patterns:
            yield from pattern.finditer(text)


def _combined_denylist(classes: list[type]) -> re2._Regexp | _PatternLoop | None:
    """One automaton matching wherever any plugin's pattern matches; None if a plugin has no patterns."""
    patterns: list[re.Pattern[str]] = []
    for cls in classes:
        if not issubclass(cls, RegexBasedDetector):
            return None  # entropy/keyword plugins look at every line: no cheap prefilter exists
        patterns.extend(cls().denylist)
    options = re2.Options()
    options.max_mem = 256 << 20
    options.log_errors = False
    options.never_capture = True
    try:
        return re2.compile("|".join(loosen(p) for p in patterns), options)
    except re2.error as err:
        warnings.warn(f"secret prefilter falls back to Python regexes (slower): {err}", stacklevel=2)
        return _PatternLoop(patterns)
