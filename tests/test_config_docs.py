"""docs/configuration.md lists every setting, and is what the Settings dataclasses say now."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from publisher.config import ENVIRONMENT, Settings, TlsMode
from publisher.config_docs import REGENERATE, render, setting_docs

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_docs_configuration_md_is_current() -> None:
    assert DOC.is_file(), f"docs/configuration.md is missing: run `{REGENERATE}`"
    assert DOC.read_text(encoding="utf-8") == render(), (
        f"docs/configuration.md is stale: run `{REGENERATE}` and commit it"
    )


def test_every_setting_is_in_the_docs_with_its_variable() -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    sections: dict[str, str] = {}
    for part in text.split("\n## ")[1:]:
        heading, _, body = part.partition("\n")
        sections[heading.strip("`[] ").replace("Top level", "")] = body
    missing = [
        doc.dotted
        for doc in setting_docs()
        if f"| `{doc.name}` |" not in sections.get(doc.section, "")
    ]
    assert missing == [], f"not in docs/configuration.md: {missing}; run `{REGENERATE}`"
    for variable in ENVIRONMENT:
        assert f"`{variable}`" in text, variable


def test_every_setting_has_a_meaning() -> None:
    unexplained = [doc.dotted for doc in setting_docs() if not doc.meaning]
    assert unexplained == [], (
        f"settings without a meaning: {unexplained}; write a comment above the field "
        f"(or after it on its line) in publisher/config.py, then run `{REGENERATE}`"
    )


@dataclass(frozen=True)
class _Signing:
    # the DNS label under _domainkey
    selector: str = "pub"
    key_file: Path | None = None  # PEM, mode 0600
    tls: TlsMode = TlsMode.STARTTLS


@dataclass(frozen=True)
class _Root:
    # where the site is
    base_url: str = "https://example.org/"
    signing: _Signing = field(default_factory=_Signing)


def test_a_new_section_is_documented_without_touching_the_generator() -> None:
    docs = {doc.dotted: doc for doc in setting_docs(_Root)}
    assert set(docs) == {"base_url", "signing.selector", "signing.key_file", "signing.tls"}
    assert docs["signing.selector"].meaning == "the DNS label under _domainkey"
    assert docs["signing.key_file"].meaning == "PEM, mode 0600"
    assert docs["signing.key_file"].kind == "path, optional"
    assert docs["signing.key_file"].default == "unset"
    assert docs["signing.tls"].default == '`"starttls"`'
    text = render(_Root)
    assert "## `[signing]`" in text
    assert '| `selector` | string | `"pub"` |  | the DNS label under _domainkey |' in text


def test_the_real_settings_show_types_defaults_and_variables() -> None:
    docs = {doc.dotted: doc for doc in setting_docs(Settings)}
    assert docs["smtp.password"].secret and docs["smtp.password"].environment == (
        "PUBLISHER_SMTP_PASSWORD"
    )
    assert docs["smtp.tls"].kind == '`"none"` \\| `"starttls"` \\| `"tls"`'
    assert docs["inbound.imap.poll_seconds"].default == "`60.0`"
    assert docs["digest.subject"].default == '`"{site} {frequency} — {lead}{more}"`'
    assert "config_file" not in docs and "notices" not in docs


def test_the_relays_array_of_tables_is_documented_as_one() -> None:
    docs = {doc.dotted: doc for doc in setting_docs(Settings)}
    assert "smtp.relays" not in docs  # not a value: a [[smtp.relays]] table per relay
    assert docs["smtp.relays.host"].kind == "string"
    assert docs["smtp.relays.password"].secret
    assert "environment variable" in docs["smtp.relays.password_env"].meaning
    assert "## `[[smtp.relays]]`" in render()
