"""ImageNet weights for the ResNet backbones, downloaded once into the user cache.

:func:`ensure_weights` returns ``<user cache>/weights/<file>`` (``platformdirs.user_cache_dir
("crlc-organizer")``), downloading it first when needed:

* The download streams into ``<file>.part`` next to the final file with urllib (stdlib only),
  reporting bytes and bytes/s through a :class:`~crlc_engine.core.events.Reporter`. A ``.part``
  left by an interrupted or cancelled download is resumed with an HTTP ``Range`` request;
  a server that ignores ``Range`` (answers 200) makes the download start over.
* The SHA-256 of the bytes is checked before ``os.replace`` moves the ``.part`` into place,
  so the final name only ever holds a verified file. A mismatch deletes the ``.part`` and
  raises :class:`WeightsChecksumError`.
* After success a ``<file>.verified.json`` sidecar records digest, size and modification
  time, so later runs trust the file without hashing 45-100 MB again. A file without (or
  with a stale) sidecar, e.g. one the user placed by hand, is hashed once.
* ``<file>.lock`` (an OS advisory lock, released when the process dies) serialises processes
  (CLI, app, scan workers) that want the same file: the second waits, then finds the file.
* ``$CRLC_WEIGHTS_URL_BASE`` points at a mirror folder (``https://...`` or ``file:///...``)
  holding the files under their usual names, for sites without direct internet access.

Offline or on a server error, :class:`WeightsUnavailableError` says which URL failed, the
exact path where a file downloaded elsewhere can be placed, and the fallbacks (the
``efficientnet_lite0`` backbone, whose weights come with the ``pretrained`` pip extra, or
training without ``--pretrained``).

Digests: torchvision names its files ``<arch>-<first 8 hex digits of the SHA-256>.pth`` and
checks only that prefix. The full digests and sizes in :data:`WEIGHTS` are not published by
PyTorch; they were taken from several independent public records that agree with each other
and with the file-name prefix. They could not be re-measured here (no network), so if one
were ever wrong every download of that file would fail the check; :attr:`WeightsSpec.sha256`
also accepts a prefix, so falling back to torchvision's own 8-digit check is a one-line change.

Torch is imported only inside :func:`load_state_dict_file`, so this package stays light.

Modules: :mod:`.registry` (the known files, paths, URLs, errors), :mod:`.download` (one
download with progress and resume), :mod:`.cache` (:func:`ensure_weights`, the lock, the
sidecar, loading).
"""

from __future__ import annotations

from crlc_engine.models.weights.cache import (
    ensure_weights,
    load_resnet_state_dict,
    load_state_dict_file,
    weights_cached,
)
from crlc_engine.models.weights.download import DEFAULT_TIMEOUT_S
from crlc_engine.models.weights.registry import (
    FALLBACK_HINT,
    MIRROR_ENV,
    WEIGHTS,
    InvalidWeightsFileError,
    WeightsChecksumError,
    WeightsDownloadCancelledError,
    WeightsError,
    WeightsSpec,
    WeightsUnavailableError,
    weights_dir,
    weights_path,
    weights_spec,
    weights_url,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FALLBACK_HINT",
    "MIRROR_ENV",
    "WEIGHTS",
    "InvalidWeightsFileError",
    "WeightsChecksumError",
    "WeightsDownloadCancelledError",
    "WeightsError",
    "WeightsSpec",
    "WeightsUnavailableError",
    "ensure_weights",
    "load_resnet_state_dict",
    "load_state_dict_file",
    "weights_cached",
    "weights_dir",
    "weights_path",
    "weights_spec",
    "weights_url",
]
