"""The package's own error types for files it reads (so callers catch one thing)."""

from __future__ import annotations


class FileFormatError(ValueError):
    """A file is not what it should be (truncated, corrupt, wrong kind, wrong shapes).

    The message names the file and what is wrong; readers raise this and nothing else for bad
    content, whatever the bytes."""
