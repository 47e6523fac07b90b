"""The config language: models, file loading with positions, the schema, located errors.

This room imports nothing else of Arkor but the error base, so every other room can
build on it.
"""

from arkor.config._errors import ConfigError, ConfigIssue, KeyPath, Location, format_key_path
from arkor.config._load import (
    CONFIG_FILENAMES,
    Origin,
    RawConfig,
    SourceFile,
    discover_config,
    has_arkor_table,
    load_raw,
    resolve_env,
)
from arkor.config._models import (
    BUILTIN_METRICS,
    CALLBACK_PATTERN,
    ENV_REFERENCE_PATTERN,
    SECRET_FIELDS,
    ArkorConfig,
    BlobDataset,
    Callbacks,
    ChatFormat,
    Cloud,
    Eval,
    FileDataset,
    HuggingfaceDataset,
    Lora,
    PromptCompletionFormat,
    Resources,
    TextFormat,
    Trainer,
    memory_bytes,
)
from arkor.config._schema import (
    SCHEMA_FILENAME,
    SCHEMA_URL,
    generate_schema,
    load_shipped_schema,
    render_schema,
    shipped_schema_path,
)
from arkor.config._validate import LoadedConfig, load_config, schema_issues

__all__ = [
    "BUILTIN_METRICS",
    "CALLBACK_PATTERN",
    "CONFIG_FILENAMES",
    "ENV_REFERENCE_PATTERN",
    "SCHEMA_FILENAME",
    "SCHEMA_URL",
    "SECRET_FIELDS",
    "ArkorConfig",
    "BlobDataset",
    "Callbacks",
    "ChatFormat",
    "Cloud",
    "ConfigError",
    "ConfigIssue",
    "Eval",
    "FileDataset",
    "HuggingfaceDataset",
    "KeyPath",
    "LoadedConfig",
    "Location",
    "Lora",
    "Origin",
    "PromptCompletionFormat",
    "RawConfig",
    "Resources",
    "SourceFile",
    "TextFormat",
    "Trainer",
    "discover_config",
    "format_key_path",
    "generate_schema",
    "has_arkor_table",
    "load_config",
    "load_raw",
    "load_shipped_schema",
    "memory_bytes",
    "render_schema",
    "resolve_env",
    "schema_issues",
    "shipped_schema_path",
]
