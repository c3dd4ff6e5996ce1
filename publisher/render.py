"""Jinja2 templates -> text. The only module that imports jinja2.

Operators override any template by pointing `templates_dir` at their own folder;
what it lacks falls back to the built-in templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from publisher.config import Settings

__all__ = ["builtin_templates", "render", "template_environment"]


def builtin_templates() -> Path:
    """templates/ of the source tree, or its copy inside an installed wheel."""
    packaged = Path(__file__).parent / "_templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


def template_environment(settings: Settings) -> Environment:
    folders = [settings.templates_dir] if settings.templates_dir else []
    loader = ChoiceLoader([FileSystemLoader(str(f)) for f in [*folders, builtin_templates()]])
    environment = Environment(
        loader=loader,
        # HTML and XML escape by default (article text may hold <script>); plain-text
        # parts must not, or readers would see &amp; in their mail
        autoescape=select_autoescape(
            enabled_extensions=("html", "xml", "html.j2", "xml.j2"),
            disabled_extensions=("txt", "txt.j2"),
            default=True,
            default_for_string=True,
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.globals["site"] = settings.site
    environment.globals["base_url"] = settings.base_url.rstrip("/") + "/"
    return environment


def render(environment: Environment, name: str, **context: Any) -> str:
    return environment.get_template(name).render(**context)
