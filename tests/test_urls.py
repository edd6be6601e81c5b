"""urls.redact_text: every URL in a tool's message loses its credentials, however quoted."""

from __future__ import annotations

import pytest

from canon.urls import redact_text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("fatal: 'https://user:tok3n@github.com/x.git/' not found",
         "fatal: 'https://***@github.com/x.git/' not found"),
        ("url=https://u:p@h/x and (https://a:b@c/d)", "url=https://***@h/x and (https://***@c/d)"),
        ("https://a:b@c/d,https://e:f@g/h", "https://***@c/d,https://***@g/h"),
        ('Looking in indexes: "https://bob:s3cr3t@pypi.example/simple"',
         'Looking in indexes: "https://***@pypi.example/simple"'),
        ("no URL here: just/a/path", "no URL here: just/a/path"),
    ],
)
def test_urls_in_text_are_redacted(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert "tok3n" not in redact_text(text) and "s3cr3t" not in redact_text(text)
