"""Human coding in the browser: a validation sample coded blind by several coders, with
agreement as they go (see the docs, "Validate with human coders").

`open_annotation` loads a project (codebook, sample, store); `create_app` serves it;
`export_frame` writes the human codes as a table.
"""

from __future__ import annotations

from .agreement import majority, reliability
from .export import export_frame
from .project import Annotation, open_annotation
from .store import HumanStore, default_store_path

__all__ = [
    "Annotation",
    "HumanStore",
    "default_store_path",
    "export_frame",
    "majority",
    "open_annotation",
    "reliability",
]
