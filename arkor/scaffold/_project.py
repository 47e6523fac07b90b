"""Write a new Arkor project from a template, never overwriting what is already there.

Every path is reported as ``created``, ``kept`` (it existed and was left alone) or
``patched`` (a managed part of it was added or updated: the ``.arkor/`` line of
``.gitignore``, the Arkor block of ``AGENTS.md``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from arkor._fs import atomic_write_text
from arkor._resources import templates_dir
from arkor.errors import UsageError

Status = Literal["created", "kept", "patched"]
ConfigFormat = Literal["toml", "yaml"]

DEFAULT_TEMPLATE = "triage"
AGENTS_BEGIN = "<!-- arkor:begin -->"
AGENTS_END = "<!-- arkor:end -->"
_SHARED = "_shared"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$|^[a-z]$")
_CONFIG_CANDIDATES = ("arkor.toml", "arkor.yaml", "arkor.yml")


@dataclass(frozen=True)
class Template:
    """A starter project: its id, what it is for, and its settings."""

    id: str
    description: str
    hf_dataset: str
    max_steps: int
    save_steps: int
    learning_rate: str
    lora_alpha: int
    eval_metrics: tuple[str, ...]
    eval_max_new_tokens: int
    sample_prompt: str
    folder: Path


@dataclass(frozen=True)
class WrittenPath:
    """What happened to one path."""

    path: Path
    status: Status
    note: str = ""


def list_templates() -> list[Template]:
    """Every template shipped with Arkor, in a stable order (the default first)."""
    root = templates_dir()
    templates = [
        _read_template(folder)
        for folder in sorted(root.iterdir())
        if (folder / "template.toml").is_file()
    ]
    return sorted(templates, key=lambda t: (t.id != DEFAULT_TEMPLATE, t.id))


def get_template(template_id: str) -> Template:
    """The template called ``template_id``; a :class:`UsageError` listing the choices otherwise."""
    templates = {template.id: template for template in list_templates()}
    if template_id not in templates:
        raise UsageError(
            f"Unknown template `{template_id}`. Choose one of: {', '.join(templates)} "
            "(e.g. `arkor init --template triage`). Nothing was written."
        )
    return templates[template_id]


def project_name_from(folder: Path) -> str:
    """A valid project name derived from a folder name: lowercase, dashes, starts with a letter."""
    slug = re.sub(r"[^a-z0-9]+", "-", folder.name.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"arkor-{slug}".strip("-")
    return slug[:64].rstrip("-")


def check_project_name(name: str) -> str:
    """Return ``name`` if it can name both a run and a Python package; else a :class:`UsageError`."""
    if not _NAME.match(name):
        raise UsageError(
            f"Invalid project name `{name}`: use lowercase letters, digits and dashes, starting "
            "with a letter (e.g. `support-bot`). It also names the project's Python package "
            "(dashes become underscores). Nothing was written."
        )
    return name


def package_name(name: str) -> str:
    """The Python package that holds a project's callbacks."""
    return name.replace("-", "_")


def scaffold(
    folder: Path,
    *,
    template: Template,
    name: str,
    config_format: ConfigFormat = "toml",
    agents_md: bool = True,
) -> list[WrittenPath]:
    """Write a project into ``folder``; return what happened to each path."""
    package = package_name(check_project_name(name))
    values = {
        "name": name,
        "package": package,
        "description": template.description,
        "hf_dataset": template.hf_dataset,
        "max_steps": str(template.max_steps),
        "save_steps": str(template.save_steps),
        "learning_rate": template.learning_rate,
        "lora_alpha": str(template.lora_alpha),
        "eval_metrics": "[" + ", ".join(f'"{metric}"' for metric in template.eval_metrics) + "]",
        "eval_max_new_tokens": str(template.eval_max_new_tokens),
        "sample_prompt": repr(template.sample_prompt),
        "schema_url": _schema_reference(),
    }
    shared = templates_dir() / _SHARED
    results = [_write_config(folder, config_format, shared, values)]
    results.append(_create(folder / package / "__init__.py", f'"""The {name} Arkor project."""\n'))
    results.append(
        _create(folder / package / "callbacks.py", _render(shared / "callbacks.py.tmpl", values))
    )
    results.append(_copy(template.folder / "data" / "train.jsonl", folder / "data" / "train.jsonl"))
    results.append(_patch_gitignore(folder / ".gitignore"))
    if agents_md:
        results.append(
            _patch_agents_md(folder / "AGENTS.md", _render(shared / "AGENTS.md.tmpl", values))
        )
    return results


def git_init(folder: Path) -> WrittenPath:
    """``git init`` in ``folder`` unless it is already inside a repository."""
    git = shutil.which("git")
    if git is None:
        return WrittenPath(folder / ".git", "kept", "git is not installed; skipped `git init`")
    inside = subprocess.run(
        [git, "rev-parse", "--is-inside-work-tree"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.returncode == 0:
        return WrittenPath(folder / ".git", "kept", "already inside a git repository")
    subprocess.run([git, "init", "--quiet"], cwd=folder, check=True, capture_output=True)
    return WrittenPath(folder / ".git", "created")


def _read_template(folder: Path) -> Template:
    meta = tomllib.loads((folder / "template.toml").read_text(encoding="utf-8"))
    return Template(
        id=folder.name,
        description=meta["description"],
        hf_dataset=meta["hf_dataset"],
        max_steps=int(meta["max_steps"]),
        save_steps=int(meta["save_steps"]),
        learning_rate=str(meta["learning_rate"]),
        lora_alpha=int(meta["lora_alpha"]),
        eval_metrics=tuple(meta["eval_metrics"]),
        eval_max_new_tokens=int(meta["eval_max_new_tokens"]),
        sample_prompt=meta["sample_prompt"],
        folder=folder,
    )


def _schema_reference() -> str:
    from arkor.config import SCHEMA_URL

    return SCHEMA_URL


def _write_config(
    folder: Path, config_format: ConfigFormat, shared: Path, values: dict[str, str]
) -> WrittenPath:
    """Create the config unless one exists already (in any format: two would conflict)."""
    for existing in _CONFIG_CANDIDATES:
        if (folder / existing).is_file():
            return WrittenPath(folder / existing, "kept")
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file() and re.search(
        r"^\[tool\.arkor[.\]]", pyproject.read_text(encoding="utf-8"), re.M
    ):
        return WrittenPath(pyproject, "kept", "it already has [tool.arkor]")
    name = "arkor.toml" if config_format == "toml" else "arkor.yaml"
    return _create(folder / name, _render(shared / f"{name}.tmpl", values))


def _render(template: Path, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        return values[match[1]]

    return _PLACEHOLDER.sub(fill, template.read_text(encoding="utf-8"))


def _create(path: Path, text: str) -> WrittenPath:
    if path.exists():
        return WrittenPath(path, "kept")
    atomic_write_text(path, text)
    return WrittenPath(path, "created")


def _copy(source: Path, target: Path) -> WrittenPath:
    if target.exists():
        return WrittenPath(target, "kept")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, source.read_text(encoding="utf-8"))
    return WrittenPath(target, "created")


def _patch_gitignore(path: Path) -> WrittenPath:
    """Make sure ``.arkor/`` (local state and build output) is ignored."""
    if not path.exists():
        atomic_write_text(path, ".arkor/\n__pycache__/\n")
        return WrittenPath(path, "created")
    text = path.read_text(encoding="utf-8")
    if any(
        line.strip() in (".arkor", ".arkor/", "/.arkor", "/.arkor/") for line in text.splitlines()
    ):
        return WrittenPath(path, "kept")
    separator = "" if not text or text.endswith("\n") else "\n"
    atomic_write_text(path, f"{text}{separator}.arkor/\n")
    return WrittenPath(path, "patched", "added .arkor/")


def _patch_agents_md(path: Path, block_body: str) -> WrittenPath:
    """Create ``AGENTS.md`` or update only the part between the Arkor markers."""
    block = f"{AGENTS_BEGIN}\n{block_body.strip()}\n{AGENTS_END}"
    if not path.exists():
        atomic_write_text(path, f"{block}\n")
        return WrittenPath(path, "created")
    text = path.read_text(encoding="utf-8")
    begin, end = text.find(AGENTS_BEGIN), text.find(AGENTS_END)
    if begin >= 0 and end > begin:
        updated = text[:begin] + block + text[end + len(AGENTS_END) :]
    else:
        separator = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        updated = f"{text}{separator}{block}\n"
    if updated == text:
        return WrittenPath(path, "kept")
    atomic_write_text(path, updated)
    return WrittenPath(path, "patched", "updated the Arkor block")
