"""Paths and URLs: the one place that tells an fsspec URL (``s3://bucket/key``) from a local
path (``file://`` URLs are local paths)."""

from __future__ import annotations


def is_url(text: str) -> bool:
    """A ``scheme://`` URL, ``file://`` included."""
    return "://" in text


def is_remote(text: str) -> bool:
    """A URL that is not a local ``file://`` path."""
    return is_url(text) and not text.startswith("file://")


def scheme(url: str) -> str:
    return url.split("://", 1)[0]


def without_scheme(url: str) -> str:
    """``s3://bucket/key`` → ``bucket/key``; a plain path is returned as it is."""
    return url.split("://", 1)[-1]
