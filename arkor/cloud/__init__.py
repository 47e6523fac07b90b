"""The client side of the Arkor cloud API, and the wire models both sides share."""

from arkor.cloud._models import (
    BlobDatasetSource,
    DatasetSource,
    FileDatasetSource,
    HuggingfaceDatasetSource,
    JobConfig,
    JobCreate,
    WireModel,
)

__all__ = [
    "BlobDatasetSource",
    "DatasetSource",
    "FileDatasetSource",
    "HuggingfaceDatasetSource",
    "JobConfig",
    "JobCreate",
    "WireModel",
]
