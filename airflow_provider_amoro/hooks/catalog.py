"""``AmoroCatalogHook``: an Airflow connection of type ``amoro`` → a pyiceberg catalog.

Connection fields (declared in provider info, so the Airflow UI renders them):

- ``catalog_type``: ``sql``, ``rest``, ``hive``, ``glue`` or ``embedded`` (pyiceberg's own key
  ``type`` is accepted too, so a connection can be written like a ``.pyiceberg.yaml`` entry).
- ``catalog_name``: the catalog's name. A SQL catalog stores its tables under this name (pyiceberg's
  own configuration usually calls it ``default``); it defaults to the connection id.
- ``uri``: catalog URI (SQLAlchemy URL for ``sql``, HTTP(S) endpoint for ``rest``, thrift URI for
  ``hive``); the connection's *host* is used when this is empty.
- ``warehouse``: warehouse location (``file:///…``, ``s3://bucket/prefix``).
- ``credential_refresh``: REST catalogs vending storage credentials: seconds between renewals of a
  loaded table's credentials (default 900; pyiceberg itself never renews them).
- ``properties``: further pyiceberg catalog properties as a JSON object (``s3.endpoint``, …). Any
  other extra key that is a pyiceberg property (``s3.endpoint``, ``credential``, …) is passed on too.
- *login* / *password*: the credential. ``rest``: ``login:password`` becomes the OAuth2 client
  ``credential`` (pyiceberg fetches a token and fetches a new one when it expires); a password
  alone of the form ``id:secret`` too; any other password alone is a static bearer ``token``.
  ``glue``: AWS access key id / secret. ``sql``: merged into the URI, escaped.

Timeouts: every catalog gets connect and read timeouts (``timeout`` property, seconds, default
:data:`DEFAULT_TIMEOUT_S`): REST requests, PostgreSQL/MySQL ``connect_timeout``, S3 connect and
request timeouts. A catalog that accepts connections and never answers fails within it.

The embedded lakehouse (a SQL catalog on SQLite under ``$AIRFLOW_HOME/amoro``) is used only when a
connection says ``catalog_type: embedded`` (the demo defines ``amoro_default`` so); a connection
that does not exist is an error naming it, never a silent fallback.
Secrets are registered with Airflow's secrets masker and redacted from error messages.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import re
import threading
import time
import weakref
from typing import Any
from urllib.parse import quote, quote_plus

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import Table
from requests import Response, Session

from airflow_provider_amoro.embedded import EMBEDDED_CATALOG_NAME, embedded_catalog_properties, embedded_root
from airflow_provider_amoro.properties import DEFAULT_CONN_ID

try:  # Airflow 3: the Task SDK base hook
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
except ImportError:  # pragma: no cover - Airflow 2 is not supported, keep the error readable
    raise ImportError("airflow-provider-amoro needs Apache Airflow 3.3 or newer") from None

log = logging.getLogger(__name__)

CATALOG_TYPES = ("sql", "rest", "hive", "glue", "embedded")
CONN_TYPE = "amoro"

DEFAULT_TIMEOUT_S = 30.0
"""Connect and read timeout of catalog and storage calls, in seconds (connection extra ``timeout``)."""

#: Extra keys the hook reads itself; every other extra key is passed on as a pyiceberg property.
_OWN_KEYS = frozenset(
    {
        "catalog_type",
        "type",
        "catalog_name",
        "uri",
        "warehouse",
        "properties",
        "timeout",
        "credential_refresh",
    }
)
_SECRET_WORDS = ("secret", "password", "token", "credential", "access-key", "session-key")
_SCHEME = re.compile(r"\b(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<rest>[^\s'\"<>]+)")
_QUERY_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|credential)=)(?P<value>[^&\s'\"<>]+)", re.I
)
_SQL_CONNECT_TIMEOUT_DRIVERS = ("postgresql", "postgres", "mysql", "mariadb")


class AmoroCatalogError(Exception):
    """A problem with the catalog connection: bad configuration or an unreachable catalog."""


class NamespaceNotFoundError(AmoroCatalogError, NoSuchNamespaceError):
    """The namespace of a table identifier does not exist in the catalog."""


class TableNotFoundError(AmoroCatalogError, NoSuchTableError):
    """The table does not exist in the catalog (its namespace does)."""


def _redact_url(match: re.Match[str]) -> str:
    rest = match["rest"]
    # The user info ends at the LAST '@' of the token: an unescaped password may hold '@', ':' or '/'.
    at = rest.rfind("@")
    if at < 0:
        return match[0]
    user, sep, _ = rest[:at].partition(":")
    if not sep:
        return match[0]
    return f"{match['scheme']}{user}:***@{rest[at + 1 :]}"


def redact_uri(text: str, secrets: Any = ()) -> str:
    """Mask credentials in ``text``: URL passwords, ``password=`` query values and known secrets.

    A URL's user info is taken up to the last ``@`` of the URL, so a password holding ``@``, ``:``,
    ``/`` or ``%`` (escaped or not) is masked whole; this may mask a little more than the password,
    never less.

    Args:
        text: the message.
        secrets: further strings to mask wherever they appear (the connection's password, …).
    """
    out = _SCHEME.sub(_redact_url, text)
    out = _QUERY_SECRET.sub(lambda m: f"{m['key']}***", out)
    for secret in sorted({str(s) for s in secrets if s and len(str(s)) >= 3}, key=len, reverse=True):
        out = out.replace(secret, "***")
    return out


def _secret_forms(secret: str) -> set[str]:
    """A secret as it may appear in a message: raw, percent-escaped (both ways), JSON-escaped."""
    if not secret:
        return set()
    return {secret, quote(secret, safe=""), quote_plus(secret, safe=""), json.dumps(secret)[1:-1]}


def _mask(secret: str | None) -> None:
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret

        for form in _secret_forms(secret):
            mask_secret(form)
    except Exception:  # noqa: BLE001 - masking is best effort outside a task
        log.debug("secrets masker not available")


def split_identifier(identifier: str | tuple[str, ...]) -> tuple[str, str]:
    """Split ``namespace.table`` (the namespace may itself contain dots) into its two parts."""
    if isinstance(identifier, tuple):
        if len(identifier) < 2:
            raise ValueError(f"table identifier needs a namespace and a name, got {identifier!r}")
        return ".".join(identifier[:-1]), identifier[-1]
    ident = identifier.strip()
    if "." not in ident or ident.startswith(".") or ident.endswith("."):
        raise ValueError(f"table identifier must look like 'namespace.table', got {identifier!r}")
    namespace, _, name = ident.rpartition(".")
    return namespace, name


def with_sql_credentials(uri: str, login: str, password: str) -> str:
    """Put ``login``/``password`` into a SQLAlchemy URL that has none, escaping ``@ : / %``."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and others
        raise AmoroCatalogError(f"not a SQLAlchemy URL: {redact_uri(uri)!r} ({type(exc).__name__})") from None
    if url.username is not None or url.password is not None:
        return uri
    url = url.set(username=login or None, password=password or None)
    return str(url.render_as_string(hide_password=False))


def with_sql_timeout(uri: str, timeout_s: float) -> str:
    """Add ``connect_timeout`` (and MySQL's ``read_timeout``) to a PostgreSQL/MySQL URL without one."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(uri)
    except Exception:  # noqa: BLE001 - pyiceberg reports a bad URL itself
        return uri
    backend = url.get_backend_name()
    if backend not in _SQL_CONNECT_TIMEOUT_DRIVERS:
        return uri
    seconds = str(max(1, math.ceil(timeout_s)))
    query = dict(url.query)
    query.setdefault("connect_timeout", seconds)
    if backend in ("mysql", "mariadb") and (url.get_driver_name() or "") in ("pymysql", "mysqldb", ""):
        query.setdefault("read_timeout", seconds)
        query.setdefault("write_timeout", seconds)
    return str(url.set(query=query).render_as_string(hide_password=False))


def _timeout_of(raw: Any, conn_id: str, key: str = "timeout") -> float:
    if raw is None or raw == "":
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0 or value > 86400:
        raise AmoroCatalogError(
            f"connection {conn_id!r}: {key!r} must be a number of seconds between 0 and 86400, got {raw!r}"
        )
    return value


def _extra_of(conn: Any) -> dict[str, Any]:
    extra: dict[str, Any] = dict(conn.extra_dejson or {})
    # Accept both plain keys and the UI's prefixed form (extra__amoro__<field>).
    for key in list(extra):
        if key.startswith(f"extra__{CONN_TYPE}__"):
            value = extra.pop(key)
            if value not in (None, ""):
                extra.setdefault(key[len(f"extra__{CONN_TYPE}__") :], value)
    return extra


def catalog_properties_from_connection(conn: Any) -> tuple[str, dict[str, str]]:
    """Translate an Airflow connection into a pyiceberg catalog name and properties.

    Args:
        conn: an Airflow ``Connection`` (type ``amoro``).

    Returns:
        ``(catalog_name, properties)`` ready for :func:`pyiceberg.catalog.load_catalog`; the
        properties carry the connect/read timeouts (``timeout`` is the hook's own, in seconds).

    Raises:
        AmoroCatalogError: unknown catalog type, or ``properties`` that are not a JSON object.
    """
    extra = _extra_of(conn)
    conn_id = conn.conn_id or DEFAULT_CONN_ID
    catalog_type = str(extra.get("catalog_type") or extra.get("type") or "").strip().lower()
    if not catalog_type:
        raise AmoroCatalogError(
            f"connection {conn_id!r}: 'catalog_type' is missing; expected one of {', '.join(CATALOG_TYPES)}"
        )
    if catalog_type not in CATALOG_TYPES:
        raise AmoroCatalogError(
            f"connection {conn_id!r}: unknown catalog type {catalog_type!r}; "
            f"expected one of {', '.join(CATALOG_TYPES)}"
        )
    timeout = _timeout_of(extra.get("timeout"), conn_id)
    if catalog_type == "embedded":
        (embedded_root() / "warehouse").mkdir(parents=True, exist_ok=True)
        props = embedded_catalog_properties()
        props["timeout"] = f"{timeout:g}"
        return str(extra.get("catalog_name") or EMBEDDED_CATALOG_NAME), props
    props = {"type": catalog_type}
    uri = str(extra.get("uri") or conn.host or "").strip()
    if uri:
        props["uri"] = uri
    if extra.get("warehouse"):
        props["warehouse"] = str(extra["warehouse"]).strip()
    login, password = conn.login or "", conn.password or ""
    _mask(password)
    if catalog_type == "rest" and password:
        if login:
            props["credential"] = f"{login}:{password}"
        elif ":" in password:  # client_id:client_secret, as pyiceberg's own `credential`
            props["credential"] = password
        else:
            props["token"] = password
    elif catalog_type == "glue" and (login or password):
        props["glue.access-key-id"] = login
        props["glue.secret-access-key"] = password
    elif catalog_type == "sql" and uri and (login or password):
        props["uri"] = with_sql_credentials(uri, login, password)
    passthrough = {k: v for k, v in extra.items() if k not in _OWN_KEYS and v is not None}
    raw = extra.get("properties")
    if raw:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise AmoroCatalogError(
                    f"connection {conn_id!r}: 'properties' must be a JSON object: {exc.msg}"
                ) from None
        if not isinstance(raw, dict):
            raise AmoroCatalogError(
                f"connection {conn_id!r}: 'properties' must be a JSON object, got {type(raw).__name__}"
            )
        passthrough.update(raw)
    for key, value in passthrough.items():
        props[str(key)] = value if isinstance(value, str) else json.dumps(value)
        if any(s in str(key).lower() for s in _SECRET_WORDS):
            _mask(props[str(key)])
    if catalog_type in ("sql", "rest", "hive") and "uri" not in props:
        raise AmoroCatalogError(f"connection {conn_id!r}: a {catalog_type} catalog needs 'uri'")
    if catalog_type == "sql":
        props["uri"] = with_sql_timeout(props["uri"], timeout)
    if extra.get("credential_refresh") not in (None, ""):
        refresh = _timeout_of(extra["credential_refresh"], conn_id, "credential_refresh")
        props["credential_refresh"] = f"{refresh:g}"
    props.setdefault("s3.connect-timeout", f"{timeout:g}")
    props.setdefault("s3.request-timeout", f"{timeout:g}")
    props["timeout"] = f"{timeout:g}"
    name = str(extra.get("catalog_name") or conn_id)
    return name, props


DEFAULT_CREDENTIAL_REFRESH_S = 900.0
"""How often vended storage credentials are renewed while a table object lives (connection extra
``credential_refresh``, seconds)."""

_CREDENTIAL_KEYS = ("access-key", "secret", "session-token", "sas-token", "token", "credential")


def vended_credentials(catalog: Catalog, table: Table) -> bool:
    """Whether a REST catalog vended storage credentials with ``table`` (not in the connection)."""
    if not isinstance(catalog, RestCatalog):
        return False
    own = catalog.properties
    return any(
        any(k in key for k in _CREDENTIAL_KEYS) and own.get(key) != value
        for key, value in table.io.properties.items()
        if "." in key
    )


class _TimeoutRestCatalog(RestCatalog):
    """pyiceberg's REST catalog with a (connect, read) timeout on every HTTP request it makes.

    pyiceberg 0.12 sends its requests (configuration, OAuth2 tokens, every catalog call) without a
    timeout, so a server that accepts connections and never answers would hang the caller forever.
    """

    def __init__(self, name: str, *, timeout_s: float, **properties: str) -> None:
        self._amoro_timeout_s = timeout_s
        super().__init__(name, **properties)

    def _create_session(self) -> Session:
        session = super()._create_session()
        request = session.request
        timeout_s = self._amoro_timeout_s

        def request_with_timeout(method: str, url: str, *args: Any, **kwargs: Any) -> Response:
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = (timeout_s, timeout_s)
            return request(method, url, *args, **kwargs)

        session.request = request_with_timeout  # type: ignore[method-assign,assignment]
        return session


class AmoroCatalogHook(BaseHook):
    """Connects Airflow to an Apache Iceberg catalog through pyiceberg.

    Args:
        amoro_conn_id: id of a connection of type ``amoro``. A connection that does not exist is an
            error naming it (``catalog_type: embedded`` selects the local demo lakehouse).
    """

    conn_name_attr = "amoro_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Apache Iceberg catalog (Amoro)"

    def __init__(self, amoro_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.amoro_conn_id = amoro_conn_id
        self._catalog: Catalog | None = None
        self._config: tuple[str, dict[str, str]] | None = None
        self._secrets: set[str] = set()

    def _missing_connection(self) -> AmoroCatalogError:
        conn_id = self.amoro_conn_id
        how = (
            "add it in the Airflow UI (Admin > Connections, type 'amoro'), with `airflow connections "
            f"add {conn_id} --conn-type amoro --conn-extra '{{\"catalog_type\": ...}}'`, "
            f"or as the environment variable AIRFLOW_CONN_{conn_id.upper()}"
        )
        if not _in_task():
            how += (
                ". Outside a task (a script, `python -m airflow_provider_amoro.dag_factory sync`) only "
                "environment variables and the configured secrets backend are visible unless Airflow's "
                "metadata database is reachable from this process (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)"
            )
        if conn_id == DEFAULT_CONN_ID:
            how += (
                "; for the local demo lakehouse under $AIRFLOW_HOME/amoro set "
                f'AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "amoro", '
                '"extra": {"catalog_type": "embedded"}}\''
            )
        return AmoroCatalogError(f"connection {conn_id!r} is not defined; {how}")

    def catalog_config(self) -> tuple[str, dict[str, str]]:
        """Return the catalog name and pyiceberg properties this hook connects with.

        Raises:
            AmoroCatalogError: the connection does not exist or its settings are invalid.
        """
        if self._config is not None:
            return self._config
        conn = _get_connection(self.amoro_conn_id)
        if conn is None:
            raise self._missing_connection()
        for secret in (
            conn.password,
            conn.login if (conn.extra_dejson or {}).get("catalog_type") == "glue" else None,
        ):
            if secret:
                self._secrets |= _secret_forms(str(secret))
        name, props = catalog_properties_from_connection(conn)
        for key, value in props.items():
            if any(w in key.lower() for w in _SECRET_WORDS):
                self._secrets |= _secret_forms(value)
        self._config = (name, props)
        return self._config

    def redact(self, text: str) -> str:
        """``text`` with URL passwords and this connection's secrets masked."""
        return redact_uri(text, self._secrets)

    @property
    def timeout_s(self) -> float:
        """The connect/read timeout of this connection's catalog and storage calls, in seconds."""
        return float(self.catalog_config()[1].get("timeout", DEFAULT_TIMEOUT_S))

    def get_catalog(self) -> Catalog:
        """Load (once per hook) and return the pyiceberg catalog.

        Raises:
            AmoroCatalogError: bad connection settings or a catalog that cannot be reached.
        """
        if self._catalog is None:
            name, config = self.catalog_config()
            props = dict(config)
            timeout_s = float(props.pop("timeout", DEFAULT_TIMEOUT_S))
            props.pop("credential_refresh", None)
            where = self.redact(props.get("uri", props.get("warehouse", "")))
            try:
                if props["type"] == "rest":
                    props.pop("type")
                    self._catalog = _TimeoutRestCatalog(name, timeout_s=timeout_s, **props)
                else:
                    self._catalog = load_catalog(name, **props)
            except AmoroCatalogError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised without the driver's exception (it may show the password)
                raise AmoroCatalogError(
                    f"cannot connect to {config['type']} catalog {name!r} at {where} "
                    f"(timeout {timeout_s:g} s): {self.redact(str(exc)) or type(exc).__name__}"
                ) from None
        return self._catalog

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (NoSuchNamespaceError, NoSuchTableError, AmoroCatalogError):
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised without the driver's exception (it may show the password)
            name, props = self.catalog_config()
            where = self.redact(props.get("uri", props.get("warehouse", "")))
            raise AmoroCatalogError(
                f"catalog {name!r} at {where} is unreachable or failed while {what}: "
                f"{self.redact(str(exc)) or type(exc).__name__}"
            ) from None

    def other_catalog_names(self) -> list[str]:
        """For a SQL catalog: the other catalog names its database holds tables or namespaces under.

        A SQL catalog is scoped by its name (``catalog_name``, default the connection id); tables
        written by pyiceberg under another name (often ``default``) are invisible under this one.
        Empty for other catalog types or when the database cannot be read.
        """
        catalog = self.get_catalog()
        engine = getattr(catalog, "engine", None)
        if engine is None:
            return []
        from sqlalchemy import text

        names: set[str] = set()
        for table in ("iceberg_tables", "iceberg_namespace_properties"):
            try:
                with engine.connect() as connection:
                    rows = connection.execute(text(f"SELECT DISTINCT catalog_name FROM {table}"))
                    names.update(str(r[0]) for r in rows)
            except Exception:  # noqa: BLE001 - a hint only
                continue
        names.discard(catalog.name)
        return sorted(names)

    def empty_catalog_hint(self) -> str | None:
        """A sentence saying which catalog names hold tables when this catalog name holds none."""
        others = self.other_catalog_names()
        if not others:
            return None
        name = self.get_catalog().name
        shown = ", ".join(repr(o) for o in others[:10]) + (
            f" and {len(others) - 10} more" if len(others) > 10 else ""
        )
        return (
            f"catalog name {name!r} holds no namespace in this database while {shown} do; set "
            f"'catalog_name' on connection {self.amoro_conn_id!r} to the name your tables were written under"
        )

    def _namespace_exists(self, namespace: str) -> bool:
        catalog = self.get_catalog()
        try:
            self._call("loading a namespace", catalog.load_namespace_properties, namespace)
        except NoSuchNamespaceError:
            return False
        return True

    def load_table(self, identifier: str) -> Table:
        """Load a table by ``namespace.table``.

        Raises:
            NamespaceNotFoundError: the namespace does not exist.
            TableNotFoundError: the namespace exists but the table does not.
            AmoroCatalogError: the catalog cannot be reached.
        """
        namespace, name = split_identifier(identifier)
        catalog = self.get_catalog()
        try:
            table: Table = self._call(
                f"loading table {identifier!r}", catalog.load_table, f"{namespace}.{name}"
            )
        except (NoSuchTableError, NoSuchNamespaceError):
            if not self._namespace_exists(namespace):
                raise NamespaceNotFoundError(
                    f"namespace {namespace!r} does not exist in catalog {catalog.name!r} "
                    f"(connection {self.amoro_conn_id!r})"
                ) from None
            raise TableNotFoundError(
                f"table {name!r} does not exist in namespace {namespace!r} of catalog {catalog.name!r} "
                f"(connection {self.amoro_conn_id!r})"
            ) from None
        if vended_credentials(catalog, table):
            self._keep_credentials_fresh(catalog, table, f"{namespace}.{name}")
        return table

    def metadata_location(self, identifier: str) -> str:
        """The table's current metadata location, read as cheaply as the catalog allows.

        A SQL catalog answers from one row of its ``iceberg_tables`` table: no metadata file is
        read, so a watcher polling an unchanged table costs one indexed query. Other catalogs load
        the table (a REST catalog's ``loadTable`` is its only way to tell).

        Raises:
            NamespaceNotFoundError, TableNotFoundError, AmoroCatalogError: as :meth:`load_table`.
        """
        namespace, name = split_identifier(identifier)
        catalog = self.get_catalog()
        engine = getattr(catalog, "engine", None)
        if engine is not None and type(catalog).__name__ == "SqlCatalog":
            from pyiceberg.catalog.sql import IcebergTables
            from sqlalchemy import select
            from sqlalchemy.orm import Session

            def read() -> str | None:
                with Session(engine) as session:
                    return session.execute(
                        select(IcebergTables.metadata_location).where(
                            IcebergTables.catalog_name == catalog.name,
                            IcebergTables.table_namespace == namespace,
                            IcebergTables.table_name == name,
                        )
                    ).scalar_one_or_none()

            location = self._call(f"reading the metadata location of {identifier!r}", read)
            if location:
                return str(location)
        # not found (load_table raises the precise error) or another catalog type
        return str(self.load_table(identifier).metadata_location)

    def _keep_credentials_fresh(self, catalog: Catalog, table: Table, identifier: str) -> None:
        """Swap in the catalog's fresh storage credentials every ``credential_refresh`` seconds.

        pyiceberg loads the storage credentials a REST catalog vends with the table and never
        renews them; a long task would then fail once they expire. A daemon thread reloads the table
        from the catalog and replaces only its ``io`` (the metadata the task works on is unchanged);
        it ends with the table object or the process.
        """
        interval = float(self.catalog_config()[1].get("credential_refresh", DEFAULT_CREDENTIAL_REFRESH_S))
        ref = weakref.ref(table)
        redact = self.redact

        def refresh() -> None:
            while True:
                time.sleep(interval)
                current = ref()
                if current is None:
                    return
                try:
                    current.io = catalog.load_table(identifier).io
                    log.info("refreshed the vended storage credentials of %s", identifier)
                except Exception as exc:  # noqa: BLE001 - keep the old ones; the next round retries
                    log.warning(
                        "cannot refresh the storage credentials of %s: %s", identifier, redact(str(exc))
                    )
                del current

        threading.Thread(target=refresh, name=f"amoro-credentials-{identifier}", daemon=True).start()

    def table_exists(self, identifier: str) -> bool:
        """Whether ``namespace.table`` exists (False also when its namespace does not)."""
        namespace, name = split_identifier(identifier)
        catalog = self.get_catalog()
        try:
            return bool(self._call("checking a table", catalog.table_exists, f"{namespace}.{name}"))
        except NoSuchNamespaceError:
            return False

    def list_namespaces(self) -> list[str]:
        """All namespaces, nested ones included, as dotted strings, sorted."""
        catalog = self.get_catalog()
        found: list[str] = []
        stack: list[tuple[str, ...]] = [()]
        seen: set[tuple[str, ...]] = set()
        while stack:
            parent = stack.pop()
            for ns in self._call("listing namespaces", catalog.list_namespaces, parent):
                ns_t = tuple(ns)
                # only children of the parent; a catalog that ignores `parent` must not loop forever
                if not ns_t or ns_t in seen or len(ns_t) <= len(parent) or ns_t[: len(parent)] != parent:
                    continue
                seen.add(ns_t)
                found.append(".".join(ns_t))
                if len(ns_t) < 8:  # nested namespaces; catalogs without nesting return nothing more
                    try:
                        children = self._call("listing namespaces", catalog.list_namespaces, ns_t)
                    except (NoSuchNamespaceError, NotImplementedError):
                        children = []
                    if any(tuple(c) != ns_t for c in children):
                        stack.append(ns_t)
        return sorted(set(found))

    def list_tables(self, pattern: str | None = "*") -> list[str]:
        """List ``namespace.table`` identifiers matching a glob, sorted.

        Args:
            pattern: a shell-style glob over ``namespace.table`` (``sales.*``, ``*.events_*``);
                a pattern without a dot matches table names in every namespace. ``None`` or ``*``
                lists every table.
        """
        pattern = (pattern or "*").strip()
        catalog = self.get_catalog()
        ns_pattern = pattern.rpartition(".")[0] if "." in pattern else "*"
        result: list[str] = []
        for namespace in self.list_namespaces():
            if not fnmatch.fnmatchcase(namespace, ns_pattern):
                continue
            for ident in self._call("listing tables", catalog.list_tables, namespace):
                full = ".".join(ident)
                target = full if "." in pattern else ident[-1]
                if fnmatch.fnmatchcase(target, pattern):
                    result.append(full)
        return sorted(result)

    def test_connection(self) -> tuple[bool, str]:
        """Connect and list namespaces; used by the Test button of Airflow's connection form.

        A SQL catalog whose name holds nothing while its database holds other names fails, naming
        them: "connected" would hide that every table is invisible under this name.
        """
        try:
            namespaces = self.list_namespaces()
            name, props = self.catalog_config()
            if not namespaces:
                hint = self.empty_catalog_hint()
                if hint:
                    return False, f"Connected to {props['type']} catalog {name!r}, but {hint}"
        except Exception as exc:  # noqa: BLE001 - the UI shows the message
            return False, self.redact(str(exc))
        return True, f"Connected to {props['type']} catalog {name!r}: {len(namespaces)} namespace(s)"


def _in_task() -> bool:
    """Whether this process runs a task (the Task SDK's supervisor serves connections to it)."""
    try:
        from airflow.sdk.execution_time import task_runner

        return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None
    except Exception:  # noqa: BLE001 - any doubt: not in a task
        return False


def _get_connection(conn_id: str) -> Any:
    """The Airflow connection ``conn_id``, or None when it is not defined anywhere this process sees.

    Inside a task the Task SDK asks the supervisor. Outside one (scripts, the api-server, the DAG
    factory's ``sync`` command) environment variables and secrets backends are asked first, then
    Airflow's metadata database when this process can reach it.
    """
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        pass
    except Exception as exc:  # noqa: BLE001 - outside a task the SDK may fail differently
        log.debug("Task SDK connection lookup of %r failed: %s", conn_id, exc)
    if _in_task():
        return None
    try:
        from airflow.models.connection import Connection as DbConnection
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            found = session.scalar(select(DbConnection).where(DbConnection.conn_id == conn_id))
            if found is not None:
                session.expunge(found)
            return found
    except Exception as exc:  # noqa: BLE001 - no metadata DB here
        log.debug("metadata DB connection lookup of %r failed: %s", conn_id, exc)
        return None
