"""Every difference between the SQL the services write and what PostgreSQL accepts, in one place.

Services and migrations are written once, in SQLite's syntax restricted to a portable subset
(`?` and `:name` placeholders, ON CONFLICT upserts, standard types). SQLite runs it as is;
for PostgreSQL, `to_postgresql` rewrites a statement once (cached) and `ddl_to_postgresql`
rewrites migration statements. What cannot be rewritten mechanically (SQLite trigger bodies)
is spelled out for PostgreSQL in `POSTGRESQL_TRIGGERS`, keyed by trigger name.

Invariants:
- Text inside single-quoted literals and double-quoted identifiers is never rewritten.
- A rewrite never changes what a statement means: placeholders keep their order, `%` is
  escaped for the driver, types widen (INTEGER -> BIGINT) but never narrow.
"""

from __future__ import annotations

import functools
import re

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


def _rewrite_outside_quotes(sql: str, rewrite) -> str:
    """Apply `rewrite(segment)` to the parts of `sql` outside quotes and `--` comments
    (comments are dropped: an apostrophe in one must not open a literal)."""
    out, i, start = [], 0, 0
    while i < len(sql):
        ch = sql[i]
        if sql.startswith("--", i):
            out.append(rewrite(sql[start:i]))
            end = sql.find("\n", i)
            i = start = len(sql) if end < 0 else end
            continue
        if ch in ("'", '"'):
            out.append(rewrite(sql[start:i]))
            end = i + 1
            while end < len(sql):
                if sql[end] == ch:
                    if end + 1 < len(sql) and sql[end + 1] == ch:   # doubled quote
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i:end + 1])
            i = start = end + 1
            continue
        i += 1
    out.append(rewrite(sql[start:]))
    return "".join(out)


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_INSERT_OR_IGNORE = re.compile(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)


def _placeholders(segment: str) -> str:
    segment = segment.replace("%", "%%").replace("?", "%s")
    return _NAMED.sub(r"%(\1)s", segment)


# unhex(column) (SQLite) is decode(column, 'hex') on PostgreSQL.
_UNHEX = re.compile(r"\bunhex\((\w+)\)", re.IGNORECASE)
# Migration 0013's functions (on SQLite those of gateway/store/columns.py):
# dedupe_fold(integration_id, dedupe_key), uuid_blob(column) (a UUID's 16 bytes) and
# iso_micros(column) (an RFC 3339 time as integer microseconds since the epoch).
_DEDUPE_FOLD = re.compile(r"\bdedupe_fold\((\w+),\s*(\w+)\)", re.IGNORECASE)
_UUID_BLOB = re.compile(r"\buuid_blob\((\w+)\)", re.IGNORECASE)
_ISO_MICROS = re.compile(r"\biso_micros\((\w+)\)", re.IGNORECASE)


def _functions(segment: str) -> str:
    segment = _DEDUPE_FOLD.sub(r"substr(sha256(convert_to(\1, 'UTF8') || \2), 1, 16)", segment)
    segment = _UUID_BLOB.sub(r"decode(replace(\1, '-', ''), 'hex')", segment)
    segment = _ISO_MICROS.sub(
        r"CAST(extract(epoch FROM CAST(\1 AS timestamptz)) * 1000000 AS BIGINT)", segment)
    return _UNHEX.sub(r"decode(\1, 'hex')", segment)


_CROSS_JOIN_ON = re.compile(r"\bCROSS\s+JOIN\s+(\w+(?:\s+(?!ON\b)\w+)?)\s+ON\b",
                            re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def to_postgresql(sql: str, for_update: bool = False) -> str:
    """A service statement in PostgreSQL's form (psycopg placeholders); `for_update` locks
    the rows it reads until the transaction ends."""
    ignore = bool(_INSERT_OR_IGNORE.search(sql))
    if ignore:
        sql = _INSERT_OR_IGNORE.sub("INSERT INTO", sql)
    # SQLite reads "CROSS JOIN t ON ..." as an inner join whose order the planner keeps;
    # PostgreSQL knows no ON after CROSS JOIN (and plans the order itself).
    sql = _CROSS_JOIN_ON.sub(r"JOIN \1 ON", sql)
    out = _rewrite_outside_quotes(sql, lambda segment: _placeholders(_functions(segment)))
    if ignore:
        out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    if for_update:
        out = out.rstrip().rstrip(";") + " FOR UPDATE"
    return out


_TYPES = [
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\)\s*WITHOUT\s+ROWID", re.IGNORECASE), ")"),
]
_TRIGGER_NAME = re.compile(r"^\s*CREATE\s+TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)",
                           re.IGNORECASE)


def _ddl_types(segment: str) -> str:
    for pattern, replacement in _TYPES:
        segment = pattern.sub(replacement, segment)
    return segment


def ddl_to_postgresql(statement: str) -> list[str]:
    """A migration statement as the PostgreSQL statements that do the same."""
    trigger = _TRIGGER_NAME.match(statement)
    if trigger:
        name = trigger.group(1)
        if name not in POSTGRESQL_TRIGGERS:
            raise ValueError(f"migration trigger {name} has no PostgreSQL form in dialect.py")
        return list(POSTGRESQL_TRIGGERS[name])
    return [to_postgresql(_rewrite_outside_quotes(statement, _ddl_types)).replace("%%", "%")]


def _append_only(table: str, what: str, suffix: str, event: str) -> list[str]:
    function = f"vgw_{table}_append_only"
    return [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN RAISE EXCEPTION '{what} are append-only'; END $$",
        f"CREATE TRIGGER {table}_append_only_{suffix} BEFORE {event} ON {table}"
        f" FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


# SQLite trigger name -> the PostgreSQL statements that behave the same.
POSTGRESQL_TRIGGERS: dict[str, tuple[str, ...]] = {
    **{f"{table}_append_only_{suffix}": tuple(_append_only(table, what, suffix, event))
       for table, what in (("audit_entries", "audit entries"), ("audit_nodes", "audit nodes"),
                           ("audit_checkpoints", "audit checkpoints"))
       for suffix, event in (("u", "UPDATE"), ("d", "DELETE"))},
    # Migration 0012 (audit retention): UPDATE may only empty an entry as it expires.
    "audit_entries_append_only_u": (
        "CREATE OR REPLACE FUNCTION vgw_audit_entries_expire_only() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN IF NOT (OLD.expired_at IS NULL AND NEW.expired_at IS"
        " NOT NULL AND length(NEW.entry) = 0 AND NEW.tenant_id = OLD.tenant_id AND NEW.seq ="
        " OLD.seq) THEN RAISE EXCEPTION 'audit entries are append-only (only expiry may"
        " empty one)'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER audit_entries_append_only_u BEFORE UPDATE ON audit_entries"
        " FOR EACH ROW EXECUTE FUNCTION vgw_audit_entries_expire_only()",
    ),
    "recordings_shred_on_delete": (
        "CREATE OR REPLACE FUNCTION vgw_recordings_shred() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN DELETE FROM blob_keys WHERE object_id = OLD.id;"
        " INSERT INTO blob_tombstones (object_id, tenant_id) VALUES (OLD.id, OLD.tenant_id)"
        " ON CONFLICT DO NOTHING; RETURN OLD; END $$",
        "CREATE TRIGGER recordings_shred_on_delete AFTER DELETE ON recordings"
        " FOR EACH ROW EXECUTE FUNCTION vgw_recordings_shred()",
    ),
}
