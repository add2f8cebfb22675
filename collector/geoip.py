"""GeoIP/ASN enrichment of hosts: ``--geoip-city``, ``--geoip-asn`` and ``--locations``.

For each new host the collector decides, in this order:

1. an operator's ``--locations`` prefix (the longest match) wins over everything, the
   private-range rule included: ``geo_source = "locations"``, with its ``site``, ``city``,
   ``country_code``, ``lat`` and ``lon``;
2. an address that is not globally routable (private, loopback, link-local, CGNAT, ULA,
   documentation) is not looked up: ``geo_source = "private"``;
3. the city database (by default the GeoLite2 City database shipped by ``maxminddb-geolite2``)
   gives ``country_code``, ``country``, ``city``, ``lat``, ``lon``; the ASN database, only when
   ``--geoip-asn`` names one, gives ``asn`` and ``as_org``: ``geo_source = "geoip"``, or
   ``"none"`` when neither knows the address.

Every enriched host carries ``geo_rev``, the identity of the databases that enriched it. A
lookup is an in-memory read of a memory-mapped file (microseconds); it runs with the batch's host
rows, so the properties land in the same write and acks wait for nothing else. The files are
watched: when one changes it is reopened (in a worker thread, then swapped in), and
:func:`reenrich` rewrites the hosts whose ``geo_rev`` is not the current one, in pages, outside
the ingest path. A database that cannot be opened keeps the previous one in service and is
logged.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from net_gazer.errors import ConfigError
from net_gazer.netaddr import IPNetwork

log = logging.getLogger(__name__)

GEOLITE_ATTRIBUTION = (
    "This product includes GeoLite2 data created by MaxMind, available from "
    "https://www.maxmind.com."
)
#: The Meta node whose revision moves whenever hosts are re-enriched (see web/rows.py).
META_ID = "enrichment"
GEO_PROPS = ("country_code", "country", "city", "lat", "lon", "asn", "as_org", "site")


def default_city_database() -> Path | None:
    """The GeoLite2 City database that ``maxminddb-geolite2`` ships (built July 2018)."""
    try:
        from _maxminddb_geolite2 import geolite2_database  # type: ignore[import-untyped]
    except ImportError:
        return None
    path = Path(geolite2_database())
    return path if path.is_file() else None


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class Database:
    """One open MaxMind database file and what the API shows about it."""

    path: Path
    kind: str  # "city" or "asn"
    reader: Any
    stamp: tuple[int, int, int]
    database_type: str
    build_epoch: int
    default: bool = False

    @classmethod
    def open(cls, path: Path, kind: str, default: bool = False) -> Database:
        import geoip2.database
        import maxminddb

        try:
            stamp = _stamp(path)
            reader = geoip2.database.Reader(str(path))
        except FileNotFoundError:
            raise ConfigError(f"the GeoIP {kind} database {path} does not exist") from None
        except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
            raise ConfigError(
                f"{path} is not a MaxMind database (.mmdb) the {kind} lookup can read: {exc}"
            ) from None
        meta = reader.metadata()
        db_type = str(meta.database_type)
        wanted = "ASN" if kind == "asn" else "City"
        if wanted not in db_type and not (kind == "city" and "Country" in db_type):
            reader.close()
            raise ConfigError(
                f"{path} is a {db_type} database; --geoip-{kind} needs "
                + ("an ASN database" if kind == "asn" else "a City or Country database")
            )
        return cls(path, kind, reader, stamp, db_type, int(meta.build_epoch), default)

    def changed(self) -> bool:
        try:
            return _stamp(self.path) != self.stamp
        except OSError:
            return False  # gone for a moment (a replace in progress): keep the open one

    @property
    def revision(self) -> str:
        return (
            f"{self.kind}:{self.database_type}:{self.build_epoch}:{self.stamp[1]}:{self.stamp[2]}"
        )

    def describe(self) -> dict[str, Any]:
        built = datetime.datetime.fromtimestamp(self.build_epoch, datetime.UTC)
        out: dict[str, Any] = {
            "path": str(self.path),
            "type": self.database_type,
            "build_date": built.date().isoformat(),
            "default": self.default,
        }
        if "GeoLite2" in self.database_type:
            out["attribution"] = GEOLITE_ATTRIBUTION
        if self.default:
            out["note"] = (
                f"the GeoLite2 City database shipped with the maxminddb-geolite2 package, built "
                f"{built.date().isoformat()}; give --geoip-city FILE.mmdb for a current one"
            )
        return out


@dataclass
class Location:
    network: IPNetwork
    props: dict[str, Any]


def load_locations(path: Path) -> list[Location]:
    """The ``[[location]]`` entries of a ``--locations`` file; ConfigError with the entry."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read the locations file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the locations file {path} is not valid TOML: {exc}") from None
    entries = data.get("location", [])
    if not isinstance(entries, list) or set(data) - {"location"}:
        raise ConfigError(f"{path}: expected only [[location]] tables")
    out = []
    for n, entry in enumerate(entries, 1):
        where = f"{path}: location {n}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} is not a table")
        unknown = set(entry) - {"prefix", "site", "city", "country_code", "country", "lat", "lon"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            net = ipaddress.ip_network(str(entry.get("prefix", "")), strict=False)
        except ValueError:
            raise ConfigError(f"{where}: prefix {entry.get('prefix')!r} is not a CIDR") from None
        props: dict[str, Any] = {}
        for key in ("site", "city", "country"):
            if key in entry:
                props[key] = str(entry[key])
        if "country_code" in entry:
            code = str(entry["country_code"])
            if len(code) != 2 or not code.isalpha():
                raise ConfigError(f"{where}: country_code must be two letters, like DE")
            props["country_code"] = code.upper()
        for key, bound in (("lat", 90), ("lon", 180)):
            if key in entry:
                value = entry[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{where}: {key} must be a number")
                if not -bound <= value <= bound:
                    raise ConfigError(f"{where}: {key} must be between -{bound} and {bound}")
                props[key] = float(value)
        out.append(Location(net, props))
    out.sort(key=lambda loc: loc.network.prefixlen, reverse=True)
    return out


@dataclass
class GeoEnricher:
    """The enrichment state: databases, overrides, and the revision hosts are stamped with."""

    city: Database | None = None
    asn: Database | None = None
    locations_path: Path | None = None
    locations: list[Location] = field(default_factory=list)
    locations_stamp: tuple[int, int, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_paths(
        cls, city: Path | None, asn: Path | None, locations: Path | None, *, default_city: bool
    ) -> GeoEnricher:
        geo = cls()
        if city is not None:
            geo.city = Database.open(city, "city")
        elif default_city:
            path = default_city_database()
            if path is not None:
                geo.city = Database.open(path, "city", default=True)
        if asn is not None:
            geo.asn = Database.open(asn, "asn")
        if locations is not None:
            geo.locations_path = locations
            geo.locations = load_locations(locations)
            geo.locations_stamp = _stamp(locations)
        return geo

    @property
    def revision(self) -> str:
        parts = [self.city.revision if self.city else "city:-",
                 self.asn.revision if self.asn else "asn:-",
                 f"loc:{self.locations_stamp}" if self.locations_path else "loc:-"]  # fmt: skip
        return "|".join(parts)

    def describe(self) -> dict[str, Any]:
        return {
            "city": self.city.describe() if self.city else None,
            "asn": self.asn.describe() if self.asn else None,
            "locations": (
                {"path": str(self.locations_path), "entries": len(self.locations)}
                if self.locations_path
                else None
            ),
            "revision": self.revision,
        }

    def lookup(self, ip: str) -> dict[str, Any]:
        """The geo properties of one address (see the module docstring)."""
        import geoip2.errors
        import maxminddb

        bad = (geoip2.errors.AddressNotFoundError, ValueError, maxminddb.InvalidDatabaseError)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return {}
        with self._lock:
            city, asn, locations, rev = self.city, self.asn, self.locations, self.revision
        props: dict[str, Any] = dict.fromkeys(GEO_PROPS)
        props["geo_rev"] = rev
        for loc in locations:
            if loc.network.version == addr.version and addr in loc.network:
                props.update(loc.props, geo_source="locations")
                return props
        if not addr.is_global:
            props["geo_source"] = "private"
            return props
        found = False
        if city is not None:
            try:
                r = (
                    city.reader.city(ip)
                    if "City" in city.database_type
                    else city.reader.country(ip)
                )
            except bad:  # a file overwritten in place reads as corrupt: replace files, by rename
                r = None
            if r is not None:
                found = True
                props["country_code"] = r.country.iso_code
                props["country"] = r.country.name
                if hasattr(r, "city"):
                    props["city"] = r.city.name
                    props["lat"] = r.location.latitude
                    props["lon"] = r.location.longitude
        if asn is not None:
            try:
                a = asn.reader.asn(ip)
            except bad:
                a = None
            if a is not None:
                found = True
                props["asn"] = a.autonomous_system_number
                props["as_org"] = a.autonomous_system_organization
        props["geo_source"] = "geoip" if found else "none"
        return props

    def enrich(self, ip: str, scope: str, props: dict[str, Any]) -> None:
        """The store's enrichment callback (``Enricher``): geo properties first, so that a
        plugin's ``ng_enrich_host`` can still change them."""
        for k, v in self.lookup(ip).items():
            if v is not None:
                props[k] = v
            else:
                props.setdefault(k, None)

    def reload_if_changed(self) -> bool:
        """Reopen what changed on disk; True when the revision moved. A file that cannot be
        read keeps the old one in service."""
        changed = False
        for kind in ("city", "asn"):
            db: Database | None = getattr(self, kind)
            if db is None or not db.changed():
                continue
            try:
                new = Database.open(db.path, kind, default=db.default)
            except ConfigError as exc:
                log.error("GeoIP %s database not reloaded, the previous one stays: %s", kind, exc)
                continue
            with self._lock:
                setattr(self, kind, new)
            db.reader.close()
            log.info("GeoIP %s database %s reloaded (%s)", kind, db.path, new.database_type)
            changed = True
        if self.locations_path is not None:
            stamp: tuple[int, int, int] | None
            try:
                stamp = _stamp(self.locations_path)
            except OSError:
                stamp = self.locations_stamp
            if stamp != self.locations_stamp:
                try:
                    locations = load_locations(self.locations_path)
                except ConfigError as exc:
                    log.error("locations not reloaded, the previous ones stay: %s", exc)
                    self.locations_stamp = stamp
                else:
                    with self._lock:
                        self.locations, self.locations_stamp = locations, stamp
                    log.info("locations %s reloaded", self.locations_path)
                    changed = True
        return changed

    def close(self) -> None:
        for db in (self.city, self.asn):
            if db is not None:
                db.reader.close()


REENRICH_READ = (
    "MATCH (h:Host) WHERE h.geo_rev IS NULL OR h.geo_rev <> $rev RETURN h.scope, h.ip LIMIT $page"
)
REENRICH_WRITE = """
UNWIND $rows AS r
MATCH (h:Host {scope: r.scope, ip: r.ip})
SET h += r.props
"""
META_BUMP = "MERGE (m:Meta {id: $id}) SET m.revision = coalesce(m.revision, 0) + 1"


async def reenrich(graph: Any, geo: GeoEnricher, page: int = 2000) -> int:
    """Enrich every host not stamped with the current revision (new databases, hosts written
    before enrichment was configured, hosts another writer made); return how many."""
    import asyncio

    from net_gazer.collector.cypher import with_params

    total = 0
    rev = geo.revision
    while True:
        res = await graph.ro_query(with_params(REENRICH_READ, {"rev": rev, "page": page}))
        found = res.result_set
        if not found:
            break
        rows = []
        for scope, ip in found:
            props = geo.lookup(str(ip))
            if not props:
                props = {"geo_rev": rev, "geo_source": "none"}
            rows.append({"scope": scope, "ip": ip, "props": props})
        await graph.query(with_params(REENRICH_WRITE, {"rows": rows}))
        total += len(rows)
        await asyncio.sleep(0)  # let ingest run between pages
        if len(found) < page:
            break
    if total:
        await graph.query(with_params(META_BUMP, {"id": META_ID}))
        log.info("enriched %d hosts with GeoIP revision %s", total, rev)
    return total
