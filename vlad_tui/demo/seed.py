"""Seed data for a sample ``peludosclick`` database (demo and test rig).

The schema comes from the sample backend's real migration files
(``backend/prisma/migrations/*/migration.sql``). Only the *applied history*
(:data:`APPLIED_MIGRATIONS`) is run and recorded in ``_prisma_migrations`` the way Prisma does
(sha256 of the file as checksum); the newer folders (:data:`PENDING_MIGRATIONS`) stay pending, so
a migration status check shows the realistic situation of a deploy: applied history, two pending
migrations, one of them breaking. The data is deterministic for a given ``seed``: Spanish names
with accents, some NULLs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlad_tui.demo import BACKEND_DIR

MIGRATIONS_DIR = BACKEND_DIR / "prisma" / "migrations"
CRITICAL_TABLES = ("users", "medals", "virgin_medals", "partners", "medal_fronts")

#: The migrations the seeded database has applied, in order (the production history).
APPLIED_MIGRATIONS = (
    "20240115093000_init",
    "20240302120000_medals",
    "20240518101500_medal_fronts",
    "20240610084500_partner_city",
)
#: Newer folders of the sample backend, left pending by the seed: a harmless one (a nullable
#: column and a new table) and a breaking one (backfill, then ``SET NOT NULL``).
PENDING_MIGRATIONS = (
    "20240905110000_medal_scans",
    "20241002093000_medal_description_required",
)

#: Rows per table inserted by :func:`seed_sql`.
COUNTS = {
    "users": 120,
    "partners": 12,
    "medal_fronts": 20,
    "virgin_medals": 300,
    "medals": 180,
}

#: Prisma's own DDL for its bookkeeping table.
PRISMA_MIGRATIONS_DDL = """\
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
);
"""

FIRST_NAMES = (
    "José",
    "María",
    "Begoña",
    "Íñigo",
    "Ramón",
    "Lucía",
    "Sofía",
    "Martín",
    "Andrés",
    "Inés",
    "Raúl",
    "Álvaro",
    "Ángela",
    "Nuria",
    "Pilar",
    "Jesús",
    "Héctor",
    "Óscar",
    "Noemí",
    "Adrián",
    "Mónica",
    "Joaquín",
    "Rocío",
    "Tomás",
    "Elena",
    "Sebastián",
    "Belén",
    "Iván",
    "Araceli",
)
LAST_NAMES = (
    "García",
    "Fernández",
    "López",
    "Martínez",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Jiménez",
    "Ruiz",
    "Hernández",
    "Díaz",
    "Moreno",
    "Muñoz",
    "Álvarez",
    "Romero",
    "Gutiérrez",
    "Navarro",
    "Domínguez",
    "Vázquez",
    "Ramírez",
    "Serrano",
    "Castillo",
    "Peña",
    "Núñez",
    "Ibáñez",
    "Cortés",
    "Durán",
    "Fuentes",
    "León",
    "Córdoba",
)
PET_NAMES = (
    "Toby",
    "Luna",
    "Canela",
    "Coco",
    "Rocky",
    "Nala",
    "Bimba",
    "Lola",
    "Thor",
    "Kira",
    "Chispa",
    "Pancho",
    "Duquesa",
    "Gofio",
    "Trufa",
    "Café",
    "Peluchín",
    "Ñoña",
    "Simón",
    "Pícaro",
    "Chocolate",
    "Mía",
    "Tizón",
    "Copito",
    "Bruno",
)
CITIES = (
    "Madrid",
    "Córdoba",
    "Málaga",
    "A Coruña",
    "Cádiz",
    "León",
    "Logroño",
    "Ávila",
    "Almería",
    "San Sebastián",
    "Alcalá de Henares",
    "Cáceres",
)
PARTNER_KINDS = ("Clínica Veterinaria", "Peluquería Canina", "Tienda de Mascotas", "Refugio")
COLORS = ("#ffffff", "#f4d03f", "#1abc9c", "#e74c3c", "#34495e", "#8e44ad")
DESCRIPTIONS = (
    "Muy cariñoso, responde a su nombre.",
    "Tiene miedo a los petardos; si lo encuentras, llámanos por favor.",
    "Necesita medicación diaria (epilepsia).",
    "Sociable con niños y otros perros.",
    "Castrado, microchip nº en el dorso de la chapa.",
)


@dataclass(frozen=True)
class Migration:
    """One migration folder of the sample backend."""

    name: str
    sql: str
    checksum: str  # sha256 hex of migration.sql, as Prisma computes it


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Migrations in name (timestamp) order."""
    found = []
    for path in sorted(directory.glob("*/migration.sql")):
        data = path.read_bytes()
        found.append(
            Migration(path.parent.name, data.decode("utf-8"), hashlib.sha256(data).hexdigest())
        )
    return found


def applied_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The applied history (:data:`APPLIED_MIGRATIONS`), read from ``directory``."""
    by_name = {m.name: m for m in migrations(directory)}
    absent = [name for name in APPLIED_MIGRATIONS if name not in by_name]
    if absent:
        raise FileNotFoundError(f"migration folder(s) missing in {directory}: {', '.join(absent)}")
    return [by_name[name] for name in APPLIED_MIGRATIONS]


def literal(value: Any) -> str:
    """A SQL literal (standard_conforming_strings)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"'{value.isoformat(sep=' ')}'"
    return "'" + str(value).replace("'", "''") + "'"


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in plain.lower() if c.isalnum() or c == ".")


def _insert(table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    values = ",\n".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
    return (
        f'INSERT INTO "{table}" ({cols}) VALUES\n{values};\n'
        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
        f'(SELECT max("id") FROM "{table}"));\n'
    )


def data_sql(seed: int = 7) -> str:
    """INSERTs for the five critical tables (deterministic for ``seed``)."""
    rng = random.Random(seed)
    base = dt.datetime(2024, 1, 20, 9, 0, 0)

    def when(max_days: int = 300) -> dt.datetime:
        return base + dt.timedelta(minutes=rng.randrange(max_days * 24 * 60))

    def token(n: int = 10) -> str:
        return "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(n))

    users = []
    for i in range(1, COUNTS["users"] + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        created = when()
        users.append(
            (
                i,
                f"{_ascii(first)}.{_ascii(last)}{i}@example.es",
                f"{_ascii(first)}{i}" if rng.random() < 0.6 else None,
                first,
                f"{last} {rng.choice(LAST_NAMES)}",
                f"+34 6{rng.randrange(10**7, 10**8)}" if rng.random() < 0.7 else None,
                "ADMIN" if i <= 2 else ("PARTNER" if rng.random() < 0.05 else "VISITOR"),
                created,
                created + dt.timedelta(days=rng.randrange(30)),
            )
        )
    partners = []
    for i in range(1, COUNTS["partners"] + 1):
        city = rng.choice(CITIES)
        name = f"{rng.choice(PARTNER_KINDS)} {rng.choice(LAST_NAMES)}"
        partners.append(
            (
                i,
                name,
                f"contacto@{_ascii(name.replace(' ', ''))}.es" if rng.random() < 0.75 else None,
                f"+34 9{rng.randrange(10**7, 10**8)}" if rng.random() < 0.6 else None,
                f"Calle {rng.choice(LAST_NAMES)} {rng.randrange(1, 120)}"
                if rng.random() < 0.8
                else None,
                city if rng.random() < 0.9 else None,
                when(),
            )
        )
    fronts = []
    for i in range(1, COUNTS["medal_fronts"] + 1):
        partner = rng.randrange(1, COUNTS["partners"] + 1) if rng.random() < 0.7 else None
        fronts.append(
            (
                i,
                partner,
                f"Frente {rng.choice(PET_NAMES)} {i}",
                rng.choice(COLORS),
                f"https://cdn.peludosclick.example/fronts/{i}.png" if rng.random() < 0.5 else None,
                when(),
            )
        )
    virgin = []
    for i in range(1, COUNTS["virgin_medals"] + 1):
        status = "ENABLED" if i <= COUNTS["medals"] else "VIRGIN"
        virgin.append((i, status, token(), token(16), when(60)))
    medals = []
    for i in range(1, COUNTS["medals"] + 1):
        _, _, medal_string, register_hash, created = virgin[i - 1]
        created = created + dt.timedelta(days=rng.randrange(1, 200))
        medals.append(
            (
                i,
                rng.choice(("ENABLED",) * 8 + ("REGISTER_PROCESS", "DISABLED")),
                register_hash,
                medal_string,
                rng.choice(PET_NAMES),
                rng.randrange(1, COUNTS["users"] + 1),
                f"https://cdn.peludosclick.example/pets/{i}.jpg" if rng.random() < 0.4 else None,
                rng.choice(DESCRIPTIONS) if rng.random() < 0.5 else None,
                rng.randrange(1, COUNTS["medal_fronts"] + 1) if rng.random() < 0.6 else None,
                created,
                created + dt.timedelta(hours=rng.randrange(1, 500)),
            )
        )
    return "".join(
        (
            _insert(
                "users",
                (
                    "id",
                    "email",
                    "username",
                    "first_name",
                    "last_name",
                    "phonenumber",
                    "role",
                    "created_at",
                    "updated_at",
                ),
                users,
            ),
            _insert(
                "partners",
                ("id", "name", "email", "phone", "address", "city", "created_at"),
                partners,
            ),
            _insert(
                "medal_fronts",
                ("id", "partner_id", "name", "background_color", "logo_url", "created_at"),
                fronts,
            ),
            _insert(
                "virgin_medals",
                ("id", "status", "medal_string", "register_hash", "created_at"),
                virgin,
            ),
            _insert(
                "medals",
                (
                    "id",
                    "status",
                    "register_hash",
                    "medal_string",
                    "pet_name",
                    "owner_id",
                    "image",
                    "description",
                    "medal_front_id",
                    "created_at",
                    "updated_at",
                ),
                medals,
            ),
        )
    )


def migrations_sql(applied: list[Migration], seed: int = 7) -> str:
    """Each migration's SQL followed by its ``_prisma_migrations`` row, as Prisma records it."""
    rng = random.Random(seed)
    parts = [PRISMA_MIGRATIONS_DDL]
    for m in applied:
        started = dt.datetime.strptime(m.name[:14], "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        finished = started + dt.timedelta(milliseconds=rng.randrange(40, 900))
        row = (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            m.checksum,
            finished,
            m.name,
            None,
            None,
            started,
            1,
        )
        parts.append(m.sql.rstrip() + "\n")
        parts.append(
            'INSERT INTO "_prisma_migrations" ("id", "checksum", "finished_at", '
            '"migration_name", "logs", "rolled_back_at", "started_at", "applied_steps_count") '
            "VALUES (" + ", ".join(literal(v) for v in row) + ");\n"
        )
    return "".join(parts)


def seed_sql(seed: int = 7) -> str:
    """The whole database: the applied history (recorded in ``_prisma_migrations``), then data.

    :data:`PENDING_MIGRATIONS` are not run: they are what the next deploy applies.
    """
    return migrations_sql(applied_migrations(), seed) + data_sql(seed)


async def seed_database(conn: Any, seed: int = 7) -> dict[str, int]:
    """Run :func:`seed_sql` on an asyncpg connection in one transaction; return row counts."""
    async with conn.transaction():
        await conn.execute(seed_sql(seed))
    return dict(COUNTS)
