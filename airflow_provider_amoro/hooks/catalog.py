"""``AmoroCatalogHook``: an Airflow connection of type ``amoro`` → a pyiceberg catalog.

Connection fields (declared in provider info, so the Airflow UI renders them):

- ``catalog_type``: ``sql``, ``rest``, ``hive`` or ``glue``.
- ``uri``: catalog URI (SQLAlchemy URL for ``sql``, HTTP(S) endpoint for ``rest``, thrift URI for
  ``hive``); the connection's *host* is used when this is empty.
- ``warehouse``: warehouse location (``file:///…``, ``s3://bucket/prefix``).
- ``properties``: further pyiceberg catalog properties as a JSON object (``s3.endpoint``, …).
- *login* / *password*: the credential. ``rest``: ``login:password`` becomes the OAuth2
  ``credential``, a password alone is a bearer ``token``. ``glue``: AWS access key id / secret.
  ``sql``: put credentials in the URI (or in *login*/*password*, merged into the URI).

When no connection ``amoro_default`` exists, the hook uses the embedded default lakehouse (a SQL
catalog on SQLite under ``$AIRFLOW_HOME/amoro``), so the demo works with no configuration.
Secrets are registered with Airflow's secrets masker and redacted from error messages.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from typing import Any

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import Table

from airflow_provider_amoro.embedded import embedded_catalog_properties, embedded_root
from airflow_provider_amoro.properties import DEFAULT_CONN_ID

try:  # Airflow 3: the Task SDK base hook
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
except ImportError:  # pragma: no cover - Airflow 2 is not supported, keep the error readable
    raise ImportError("airflow-provider-amoro needs Apache Airflow 3.3 or newer") from None

log = logging.getLogger(__name__)

CATALOG_TYPES = ("sql", "rest", "hive", "glue")
CONN_TYPE = "amoro"

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")


class AmoroCatalogError(Exception):
    """A problem with the catalog connection: bad configuration or an unreachable catalog."""


class NamespaceNotFoundError(AmoroCatalogError, NoSuchNamespaceError):
    """The namespace of a table identifier does not exist in the catalog."""


class TableNotFoundError(AmoroCatalogError, NoSuchTableError):
    """The table does not exist in the catalog (its namespace does)."""


def redact_uri(text: str) -> str:
    """Replace passwords embedded in URLs (``scheme://user:password@host``) by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def _mask(secret: str | None) -> None:
    if not secret:
        return
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
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


def catalog_properties_from_connection(conn: Any) -> tuple[str, dict[str, str]]:
    """Translate an Airflow connection into a pyiceberg catalog name and properties.

    Args:
        conn: an Airflow ``Connection`` (type ``amoro``).

    Returns:
        ``(catalog_name, properties)`` ready for :func:`pyiceberg.catalog.load_catalog`.

    Raises:
        AmoroCatalogError: unknown catalog type, or ``properties`` that are not a JSON object.
    """
    extra: dict[str, Any] = dict(conn.extra_dejson or {})
    # Accept both plain keys and the UI's prefixed form (extra__amoro__<field>).
    for key in list(extra):
        if key.startswith(f"extra__{CONN_TYPE}__"):
            extra.setdefault(key[len(f"extra__{CONN_TYPE}__") :], extra.pop(key))
    catalog_type = str(extra.get("catalog_type") or "").strip().lower()
    conn_id = conn.conn_id or DEFAULT_CONN_ID
    if not catalog_type:
        raise AmoroCatalogError(
            f"connection {conn_id!r}: 'catalog_type' is missing; expected one of {', '.join(CATALOG_TYPES)}"
        )
    if catalog_type not in CATALOG_TYPES:
        raise AmoroCatalogError(
            f"connection {conn_id!r}: unknown catalog type {catalog_type!r}; "
            f"expected one of {', '.join(CATALOG_TYPES)}"
        )
    props: dict[str, str] = {"type": catalog_type}
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
        else:
            props["token"] = password
    elif catalog_type == "glue" and (login or password):
        props["glue.access-key-id"] = login
        props["glue.secret-access-key"] = password
    elif catalog_type == "sql" and uri and (login or password) and "@" not in uri.split("://", 1)[-1]:
        scheme, _, rest = uri.partition("://")
        props["uri"] = f"{scheme}://{login}:{password}@{rest}" if password else f"{scheme}://{login}@{rest}"
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
        for key, value in raw.items():
            props[str(key)] = value if isinstance(value, str) else json.dumps(value)
            if any(s in key.lower() for s in ("secret", "password", "token", "credential")):
                _mask(props[str(key)])
    if catalog_type in ("sql", "rest", "hive") and "uri" not in props:
        raise AmoroCatalogError(f"connection {conn_id!r}: a {catalog_type} catalog needs 'uri'")
    name = str(extra.get("catalog_name") or conn_id)
    return name, props


class AmoroCatalogHook(BaseHook):
    """Connects Airflow to an Apache Iceberg catalog through pyiceberg.

    Args:
        amoro_conn_id: id of a connection of type ``amoro``. When it is ``amoro_default`` and no
            such connection exists, the embedded default lakehouse is used.
    """

    conn_name_attr = "amoro_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Apache Iceberg catalog (Amoro)"

    def __init__(self, amoro_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.amoro_conn_id = amoro_conn_id
        self._catalog: Catalog | None = None

    def catalog_config(self) -> tuple[str, dict[str, str]]:
        """Return the catalog name and pyiceberg properties this hook connects with."""
        try:
            conn = self.get_connection(self.amoro_conn_id)
        except AirflowNotFoundException:
            if self.amoro_conn_id != DEFAULT_CONN_ID:
                raise AmoroCatalogError(
                    f"connection {self.amoro_conn_id!r} is not defined; add it in the Airflow UI, "
                    f"with `airflow connections add`, or as AIRFLOW_CONN_{self.amoro_conn_id.upper()}"
                ) from None
            self.log.info(
                "No %r connection: using the embedded lakehouse under %s", DEFAULT_CONN_ID, embedded_root()
            )
            (embedded_root() / "warehouse").mkdir(parents=True, exist_ok=True)
            return "default", embedded_catalog_properties()
        return catalog_properties_from_connection(conn)

    def get_catalog(self) -> Catalog:
        """Load (once per hook) and return the pyiceberg catalog.

        Raises:
            AmoroCatalogError: bad connection settings or a catalog that cannot be reached.
        """
        if self._catalog is None:
            name, props = self.catalog_config()
            where = redact_uri(props.get("uri", props.get("warehouse", "")))
            try:
                self._catalog = load_catalog(name, **props)
            except AmoroCatalogError:
                raise
            except Exception as exc:
                raise AmoroCatalogError(
                    f"cannot connect to {props['type']} catalog {name!r} at {where}: "
                    f"{redact_uri(str(exc)) or type(exc).__name__}"
                ) from exc
        return self._catalog

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (NoSuchNamespaceError, NoSuchTableError, AmoroCatalogError):
            raise
        except Exception as exc:
            name, props = self.catalog_config()
            where = redact_uri(props.get("uri", props.get("warehouse", "")))
            raise AmoroCatalogError(
                f"catalog {name!r} at {where} is unreachable or failed while {what}: "
                f"{redact_uri(str(exc)) or type(exc).__name__}"
            ) from exc

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
        return table

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
        while stack:
            parent = stack.pop()
            for ns in self._call("listing namespaces", catalog.list_namespaces, parent):
                ns_t = tuple(ns)
                if ns_t == parent or not ns_t:
                    continue
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
        """Connect and list namespaces; used by the Test button of Airflow's connection form."""
        try:
            namespaces = self.list_namespaces()
        except Exception as exc:  # noqa: BLE001 - the UI shows the message
            return False, redact_uri(str(exc))
        name, props = self.catalog_config()
        return True, f"Connected to {props['type']} catalog {name!r}: {len(namespaces)} namespace(s)"
