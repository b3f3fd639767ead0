"""Source locations are validated before git ever runs, and partition keys are stable and readable."""

import pytest

from fastapply_pipeline.core.sources import (
    SourceLocationError,
    default_partition_key,
    redact_url,
    validate_git_url,
    validate_local_path,
)

GOOD_URLS = [
    "https://github.com/vercel/next.js",
    "https://github.com/vercel/next.js.git",
    "https://gitlab.example.com:8443/group/sub/repo.git",
    "ssh://git@github.com/shadcn-ui/ui.git",
    "git@github.com:vercel/commerce.git",
    "file:///srv/git/repo.git",
]

HOSTILE_URLS = {
    "--upload-pack=touch /tmp/pwned": "starts with '-'",
    "-oProxyCommand=calc": "starts with '-'",
    "ext::sh -c touch% /tmp/pwned": "remote-helper transport",
    "ext::sh": "'ext::'",
    "fd::17": "'fd::'",
    "https::evil": "'https::'",
    "http://example.com/repo.git": "'http' scheme",
    "git://example.com/repo.git": "'git' scheme",
    "ftp://example.com/repo.git": "'ftp' scheme",
    "https://": "no valid host",
    "https://-oProxyCommand=x/repo": "no valid host",
    "https://github.com": "no repository path",
    "https://github.com/": "no repository path",
    "https://user:ghp_secret@github.com/o/r.git": "embeds a password",
    "https://ghp_secret@github.com/o/r.git": "embeds a password or token",
    "https://user@github.com/o/r.git": "embeds a password or token",
    "https://x-access-token:abc@github.com/o/r.git": "embeds a password or token",
    "not a url": "whitespace",
    "justaword": "not a URL git can clone",
    "https://github.com/o/r\n--upload-pack=x": "control characters",
    "": "empty",
    " https://github.com/o/r": "whitespace",
}


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_urls_pass_unchanged(url):
    assert validate_git_url(url) == url


@pytest.mark.parametrize(("url", "why"), HOSTILE_URLS.items())
def test_hostile_urls_are_rejected_with_a_reason(url, why):
    with pytest.raises(SourceLocationError) as err:
        validate_git_url(url)
    assert why in str(err.value)


# A token in a URL's user part ends up in plain text wherever the URL goes (cloned_repo's output,
# `sources list`, logs): refused like a password, and never echoed back in the error.
URLS_WITH_CREDENTIALS = [
    "https://ghp_s3cr3tT0k3n@github.com/o/r.git",
    "https://x-access-token:ghp_s3cr3tT0k3n@github.com/o/r.git",
    "https://ghp_s3cr3tT0k3n@github.com",  # also no repository path: the credential is still not shown
    "http://ghp_s3cr3tT0k3n@example.com/o/r.git",  # also the wrong scheme
    " https://ghp_s3cr3tT0k3n@github.com/o/r.git",  # also whitespace
    "ssh://git:ghp_s3cr3tT0k3n@github.com/o/r.git",  # a password, even over ssh
]


@pytest.mark.parametrize("url", URLS_WITH_CREDENTIALS)
def test_credentials_in_a_url_are_refused_without_echoing_them(url):
    with pytest.raises(SourceLocationError) as err:
        validate_git_url(url)
    assert "s3cr3t" not in str(err.value)


def test_a_url_user_part_is_refused_pointing_at_credential_helpers():
    with pytest.raises(SourceLocationError) as err:
        validate_git_url("https://ghp_s3cr3tT0k3n@github.com/o/r.git")
    assert "credential.helper" in str(err.value)
    assert "github.com" in str(err.value) and "s3cr3t" not in str(err.value)


@pytest.mark.parametrize("path", ["-rf", "ext::sh", "fd::3", "a\x00b", ""])
def test_hostile_local_paths_are_rejected(path):
    with pytest.raises(SourceLocationError):
        validate_local_path(path)


@pytest.mark.parametrize(
    ("location", "key"),
    [
        ("https://github.com/vercel/next.js", "next.js"),
        ("https://github.com/vercel/next.js.git", "next.js"),
        ("git@github.com:shadcn-ui/UI.git", "ui"),
        ("ssh://git@host/group/My Repo.git/", "my-repo"),
        ("/srv/code/fastapply-pipeline", "fastapply-pipeline"),
        (".", "repo"),
    ],
)
def test_partition_keys_are_readable(location, key):
    assert default_partition_key(location) == key


def test_redact_url_drops_user_info():
    assert redact_url("https://user@github.com/o/r.git") == "https://github.com/o/r.git"
    assert redact_url("https://github.com/o/r.git") == "https://github.com/o/r.git"
    assert redact_url("git@github.com:o/r.git") == "git@github.com:o/r.git"
