"""Read each manifest at most once per process: a bounded cache of live manifest entries.

Manifest files are immutable (a commit writes new ones, never rewrites one), so their parsed entries
can be shared by everything an optimizing process does on one table: :func:`scan.live_files` (used
by ``evaluate`` and ``plan``), the commit's validation of the head state, and the evaluation after
the commit. Only manifests that appeared since the last read are read again.

The cache is keyed by manifest path, holds the live entries (``ADDED`` and ``EXISTING``; ``DELETED``
entries are dropped) with sequence numbers already inherited, and is bounded by the number of entries
it holds (least recently used manifests are evicted first). The bound is
``AMORO_MANIFEST_CACHE_ENTRIES`` (default 200,000 entries, a few hundred MB at most with full
column statistics); 0 disables the cache. The manifest lists of the last few snapshots are kept too
(:meth:`ManifestCache.manifest_list`): a list is as immutable as a manifest.

Entries handed out are shared: callers must treat them as read-only.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, cast

from airflow_provider_amoro.iceberg_compat import read_manifest_entries
from airflow_provider_amoro.optimizing.locations import native_location

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from pyiceberg.manifest import ManifestEntry, ManifestFile
    from pyiceberg.table.snapshots import Snapshot

#: Environment variable bounding :data:`MANIFEST_CACHE` (entries); 0 disables caching.
CACHE_ENTRIES_ENV = "AMORO_MANIFEST_CACHE_ENTRIES"
DEFAULT_CACHE_ENTRIES = 200_000
#: Threads fetching manifest bytes: storage latency overlaps. Decoding (pure-Python Avro, which
#: holds the GIL) stays on the calling thread: 1,000 small manifests decode in 0.07 s on one thread
#: and took 0.19 s on eight, which mostly fought over the GIL.
READ_THREADS = 8
#: At most this many fetched manifests wait to be decoded (bounds the bytes held).
FETCH_AHEAD = 64
#: Manifest lists kept (each is read once while among the most recently used).
MANIFEST_LISTS_KEPT = 8
#: Manifests fetched on the calling thread first, to tell local from remote storage.
PROBE_FETCHES = 4
#: A mean fetch slower than this (seconds) makes the rest be fetched on threads.
SLOW_FETCH_S = 0.002


def _bound_from_env() -> int:
    raw = os.environ.get(CACHE_ENTRIES_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_CACHE_ENTRIES
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{CACHE_ENTRIES_ENV}={raw!r} is not an integer") from exc
    if value < 0:
        raise ValueError(f"{CACHE_ENTRIES_ENV}={raw!r} must be >= 0")
    return value


_gc_pauses = 0
_gc_was_enabled = True
_gc_lock = threading.Lock()


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while manifests are parsed.

    Parsing allocates millions of small objects and no reference cycles; with the collector on,
    its full collections rescan every entry already parsed, about half of the time of reading
    100,000 entries. Reference counting still frees everything; nested and concurrent pauses are
    counted, and the collector runs again when the last one ends (if it was on before).
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class ManifestCache:
    """Live entries of manifests by path, least recently used evicted beyond ``max_entries`` entries.

    Thread-safe. A manifest with more entries than the bound is read but not kept.
    """

    def __init__(self, max_entries: int | None = None) -> None:
        """Create an empty cache.

        Args:
            max_entries: the bound in manifest entries (None: from ``AMORO_MANIFEST_CACHE_ENTRIES``).
        """
        self.max_entries = _bound_from_env() if max_entries is None else max_entries
        self._entries: OrderedDict[str, list[ManifestEntry]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.reads = 0
        """Manifests read from storage since the cache was created (or :meth:`clear`)."""
        self._lists: OrderedDict[str, tuple[ManifestFile, ...]] = OrderedDict()

    def __len__(self) -> int:
        """Number of manifests held."""
        return len(self._entries)

    @property
    def size(self) -> int:
        """Number of entries held, over all manifests."""
        return self._size

    def clear(self) -> None:
        """Forget every manifest (and reset :attr:`reads`)."""
        with self._lock:
            self._entries.clear()
            self._lists.clear()
            self._size = 0
            self.reads = 0

    def manifest_list(self, io: FileIO, snapshot: Snapshot) -> list[ManifestFile]:
        """The manifests of ``snapshot`` (its manifest list is read once while it stays among the
        :data:`MANIFEST_LISTS_KEPT` most recently used: evaluating, planning, validating the commit
        and evaluating again all start from the same head)."""
        path = snapshot.manifest_list
        if self.max_entries == 0:
            return list(snapshot.manifests(io))
        with self._lock:
            hit = self._lists.get(path)
            if hit is not None:
                self._lists.move_to_end(path)
                return list(hit)
        read = tuple(snapshot.manifests(io))
        with self._lock:
            self._lists[path] = read
            while len(self._lists) > MANIFEST_LISTS_KEPT:
                self._lists.popitem(last=False)
        return list(read)

    def get(self, path: str) -> list[ManifestEntry] | None:
        """The cached live entries of the manifest at ``path``, or None."""
        with self._lock:
            hit = self._entries.get(path)
            if hit is not None:
                self._entries.move_to_end(path)
            return hit

    def put(self, path: str, entries: list[ManifestEntry]) -> None:
        """Keep ``entries`` as the live entries of ``path`` (evicting the least recently used)."""
        if len(entries) > self.max_entries:
            return
        with self._lock:
            old = self._entries.pop(path, None)
            if old is not None:
                self._size -= len(old)
            self._entries[path] = entries
            self._size += len(entries)
            while self._size > self.max_entries and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)

    def entries(self, io: FileIO, manifest: ManifestFile) -> list[ManifestEntry]:
        """Live entries of one manifest, read from storage only when not cached."""
        if _holds_no_live_file(manifest):
            return []
        hit = self.get(manifest.manifest_path)
        if hit is not None:
            return hit
        return self._decode(io, manifest, _fetch(io, manifest.manifest_path))

    def read_all(
        self, io: FileIO, manifests: Sequence[ManifestFile], threads: int = READ_THREADS
    ) -> list[list[ManifestEntry]]:
        """Live entries of every manifest, in order.

        The missing ones are decoded on the calling thread in order; from remote storage they are
        fetched on up to ``threads`` threads, at most :data:`FETCH_AHEAD` ahead.
        """
        out: list[list[ManifestEntry] | None] = [
            [] if _holds_no_live_file(m) else self.get(m.manifest_path) for m in manifests
        ]
        missing = [manifests[i] for i, hit in enumerate(out) if hit is None]
        with paused_gc():
            decoded = iter(self._read_missing(io, missing, threads))
        return [hit if hit is not None else next(decoded) for hit in out]

    def _read_missing(
        self, io: FileIO, manifests: Sequence[ManifestFile], threads: int
    ) -> list[list[ManifestEntry]]:
        """Live entries of ``manifests`` (read from storage, then cached), in order.

        The first :data:`PROBE_FETCHES` are fetched on this thread; when a fetch took longer than
        :data:`SLOW_FETCH_S` on average (remote storage), the rest are fetched on ``threads``
        threads. Local files are fetched faster than a thread hand-off, and fetch threads would
        compete with the decoding for the GIL (1,000 local manifests: 0.07 s serial, 0.15 s so).
        """
        out: list[list[ManifestEntry]] = []
        fetching = 0.0
        for manifest in manifests[:PROBE_FETCHES]:
            started = time.perf_counter()
            content = _fetch(io, manifest.manifest_path)
            fetching += time.perf_counter() - started
            out.append(self._decode(io, manifest, content))
        rest = manifests[len(out) :]
        slow = bool(out) and fetching / len(out) > SLOW_FETCH_S
        workers = max(1, min(threads, len(rest)))
        if not slow or workers == 1:
            out.extend(self._decode(io, m, _fetch(io, m.manifest_path)) for m in rest)
            return out
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="amoro-manifests") as pool:
            pending: deque[Future[bytes]] = deque()
            ahead = iter(rest)
            for manifest in rest:
                while len(pending) < FETCH_AHEAD:
                    nxt = next(ahead, None)
                    if nxt is None:
                        break
                    pending.append(pool.submit(_fetch, io, nxt.manifest_path))
                out.append(self._decode(io, manifest, pending.popleft().result()))
        return out

    def _decode(self, io: FileIO, manifest: ManifestFile, content: bytes) -> list[ManifestEntry]:
        """The live entries of one fetched manifest, kept in the cache."""
        read = read_manifest_entries(io, manifest, discard_deleted=True, content=content)
        with self._lock:
            self.reads += 1
        self.put(manifest.manifest_path, read)
        return read


def _holds_no_live_file(manifest: ManifestFile) -> bool:
    """The manifest list says the manifest has no ADDED or EXISTING entry (only DELETED ones, as the
    optimizer's own DELETED manifest): nothing live to read. Counts missing (allowed in v1): read it."""
    return manifest.added_files_count == 0 and manifest.existing_files_count == 0


def _fetch(io: FileIO, path: str) -> bytes:
    """The bytes of the file at ``path`` (FileNotFoundError when it does not exist)."""
    located = native_location(io, path)
    if located is None:
        with io.new_input(path).open() as f:
            return f.read()
    filesystem, native = located
    try:
        with filesystem.open_input_file(native) as f:
            return cast(bytes, f.read())
    except FileNotFoundError:
        raise
    except OSError as exc:  # as pyiceberg's PyArrowFile.open reports a missing object store file
        if exc.errno == 2 or "Path does not exist" in str(exc):
            raise FileNotFoundError(f"Cannot open file, does not exist: {path}") from exc
        raise


MANIFEST_CACHE = ManifestCache()
"""The process-wide cache shared by scanning, evaluation and commits."""
