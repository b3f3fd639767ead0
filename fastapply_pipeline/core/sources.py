"""Source repositories: validating git locations before git ever sees them, and stable partition keys."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

# Partition keys are what users see in the UI and type on the command line: short, readable, stable.
PARTITION_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")

# `git@github.com:owner/repo.git` (scp-like ssh syntax). The host must not start with '-'.
_SCP_LIKE_RE = re.compile(
    r"^(?P<user>[A-Za-z0-9._-]+@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>[^/\\].*|/.+)$"
)
# git's "<transport>::<address>" remote-helper syntax (ext::, fd::, and any other helper).
_TRANSPORT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_ALLOWED_SCHEMES = {"https", "ssh", "file"}


class SourceLocationError(ValueError):
    """A source location that git must not be run on."""


def validate_git_url(url: str) -> str:
    """Return `url` unchanged if it is a safe https, ssh or file git URL; raise SourceLocationError if not.

    Rejected before git runs: options disguised as URLs (a leading '-'), remote-helper transports
    (`ext::`, `fd::`, ...), control characters and whitespace, plain http/git:// (unauthenticated),
    URLs without a host or repository path, and credentials in the URL: any user part of an https URL
    (`https://<token>@host/...`) and any password. The URL is stored and shown wherever the source goes,
    so a credential in it would be too. An ssh user (`git@host:o/r`, `ssh://git@host/o/r`) is no secret and
    stays allowed. Error messages never repeat a URL's user part.
    """
    if not isinstance(url, str) or not url.strip():
        raise SourceLocationError("the git URL is empty; give an https://, ssh:// or git@host:path URL")
    shown = _without_userinfo(url)
    if url.startswith("-"):
        raise SourceLocationError(
            f"git URL {shown!r} starts with '-', which git would read as an option; give a real URL"
        )
    if _TRANSPORT_RE.match(url):
        transport = url.split("::", 1)[0]
        raise SourceLocationError(
            f"git URL {shown!r} uses the '{transport}::' remote-helper transport, which can run commands; "
            "use an https:// or ssh:// URL"
        )
    if url != url.strip() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise SourceLocationError(f"git URL {shown!r} contains whitespace or control characters; remove them")
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _ALLOWED_SCHEMES:
            raise SourceLocationError(
                f"git URL {shown!r} uses the '{scheme}' scheme; use https:// or ssh:// "
                "(plain http:// and git:// are unauthenticated)"
            )
        if scheme == "file":
            if not parts.path or parts.path == "/":
                raise SourceLocationError(f"file URL {shown!r} has no path; give file:///abs/path/to/repo")
            return url
        host = parts.hostname or ""
        if parts.password is not None or (scheme == "https" and parts.username is not None):
            raise SourceLocationError(
                f"git URL for host {host or '?'!r} embeds a password or token in its user part (before '@'); "
                "remove it from the URL (it would be stored and shown in plain text with the source) and let "
                "git get it from a credential helper: `git config --global credential.helper store` with the "
                "token in ~/.git-credentials, or `gh auth setup-git` for GitHub"
            )
        if not host or host.startswith("-") or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", host):
            raise SourceLocationError(
                f"git URL {shown!r} has no valid host; expected e.g. https://github.com/o/r"
            )
        if parts.path.strip("/") == "":
            raise SourceLocationError(f"git URL {shown!r} names no repository path; expected host/owner/repo")
        return url
    match = _SCP_LIKE_RE.match(url)
    if match and "/" not in url.split(":", 1)[0]:
        if match.group("path").startswith("-"):
            raise SourceLocationError(
                f"git URL {shown!r} has a path starting with '-'; give a real repository"
            )
        return url
    raise SourceLocationError(
        f"git URL {shown!r} is not a URL git can clone safely; use https://host/owner/repo(.git), "
        "ssh://git@host/owner/repo.git, git@host:owner/repo.git, or `path:` for a local repository"
    )


# "<scheme>://<user info>@": everything up to the last '@' before the path.
_USERINFO_RE = re.compile(r"^(\s*[A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def _without_userinfo(url: str) -> str:
    """`url` for an error message: a user part (perhaps a token) replaced by '***'. Never raises."""
    return _USERINFO_RE.sub(r"\1***@", url)


def validate_local_path(path: str) -> str:
    """Reject local paths that git could mistake for options or transports."""
    if not path or not path.strip():
        raise SourceLocationError("the local path is empty; give the folder of a git repository")
    if path.startswith("-"):
        raise SourceLocationError(f"local path {path!r} starts with '-'; prefix it with ./")
    if _TRANSPORT_RE.match(path):
        raise SourceLocationError(
            f"local path {path!r} looks like a '::' transport; give a plain folder path"
        )
    if any(ord(ch) < 32 for ch in path):
        raise SourceLocationError(f"local path {path!r} contains control characters; remove them")
    return path


def default_partition_key(location: str) -> str:
    """Derive a readable partition key from a URL or path: the repository's last path component, slugged.

    >>> default_partition_key("https://github.com/vercel/next.js.git")
    'next.js'
    """
    tail = location.rstrip("/")
    if "://" not in tail and _SCP_LIKE_RE.match(tail) and not Path(tail).exists():
        tail = tail.split(":", 1)[1]
    tail = tail.replace("\\", "/").rsplit("/", 1)[-1]
    if tail.endswith(".git"):
        tail = tail[: -len(".git")]
    return slugify(tail)


def slugify(text: str) -> str:
    """Lowercase, keep [a-z0-9._-], collapse the rest into '-'."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug[:100] or "repo"


def redact_url(url: str) -> str:
    """The URL without any user name or password, for logs and metadata."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return parts._replace(netloc=host).geturl()
