"""Photo folders -> persistent workspace: scan, decode, pixel cache, thumbnails, SQLite catalog."""

from crlc_engine.library.catalog import SCHEMA_VERSION, Catalog, ImageRecord
from crlc_engine.library.library import Folders, ImageLibrary, resolve_roots, scan_folders
from crlc_engine.library.registry import (
    LibraryInfo,
    forget_library,
    library_roots,
    list_libraries,
    relink_root,
)
from crlc_engine.library.scan import ScanSummary, SkippedFile
from crlc_engine.library.walk import ScanOptions

__all__ = [
    "SCHEMA_VERSION",
    "Catalog",
    "Folders",
    "ImageLibrary",
    "ImageRecord",
    "LibraryInfo",
    "ScanOptions",
    "ScanSummary",
    "SkippedFile",
    "forget_library",
    "library_roots",
    "list_libraries",
    "relink_root",
    "resolve_roots",
    "scan_folders",
]
