"""``arkor init``'s engine: templates, project files, ``.gitignore`` and ``AGENTS.md`` upkeep."""

from arkor.scaffold._project import (
    AGENTS_BEGIN,
    AGENTS_END,
    DEFAULT_TEMPLATE,
    ConfigFormat,
    Template,
    WrittenPath,
    check_project_name,
    get_template,
    git_init,
    list_templates,
    package_name,
    project_name_from,
    scaffold,
)

__all__ = [
    "AGENTS_BEGIN",
    "AGENTS_END",
    "DEFAULT_TEMPLATE",
    "ConfigFormat",
    "Template",
    "WrittenPath",
    "check_project_name",
    "get_template",
    "git_init",
    "list_templates",
    "package_name",
    "project_name_from",
    "scaffold",
]
