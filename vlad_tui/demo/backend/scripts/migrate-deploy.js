'use strict';
// Stand-in for `prisma migrate deploy` (and `prisma migrate status` with the argument `status`)
// in the backend-vlad sample: the real command needs an engine binary downloaded at run time.
//
// It follows Prisma's `_prisma_migrations` protocol: the table is created with Prisma's DDL; a
// failed migration (finished_at and rolled_back_at null) blocks everything (P3009); each pending
// folder of prisma/migrations, in name order, gets its row first (sha256 of migration.sql as
// checksum, started_at), then runs in one transaction, then gets finished_at and
// applied_steps_count; a failure writes the error to `logs`, leaves finished_at null and exits 1.
// Like Prisma it holds advisory lock 72707369 while it works.
//
// DATABASE_URL comes from the environment, else from .env (cwd, then the app folder). `?schema=`
// is honoured through search_path (the schema is created if missing). psql does the work (PSQL
// overrides its path); the password reaches it as PGPASSWORD in its environment, never argv.
// No npm dependencies.
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { spawn, spawnSync } = require('child_process');

const APP_DIR = path.resolve(__dirname, '..');
const MIGRATIONS_DIR = path.join(APP_DIR, 'prisma', 'migrations');
const PSQL = process.env.PSQL || 'psql';
const LOCK_ID = 72707369; // Prisma's advisory lock key
const LOCK_TIMEOUT_MS = 10000;
const RESOLVE_URL = 'https://pris.ly/d/migrate-resolve';

const PRISMA_MIGRATIONS_DDL = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
);`;

class PrismaError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function loadDotenv() {
  for (const file of [path.join(process.cwd(), '.env'), path.join(APP_DIR, '.env')]) {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      continue;
    }
    for (const line of text.split(/\r?\n/)) {
      const m = line.match(/^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/);
      if (!m || m[1] in process.env) continue; // the environment wins, as with Prisma
      let value = m[2];
      if (/^".*"$/.test(value)) value = value.slice(1, -1).replace(/\\(["\\])/g, '$1');
      else if (/^'.*'$/.test(value)) value = value.slice(1, -1);
      process.env[m[1]] = value;
    }
    return;
  }
}

function parseDatabaseUrl(raw) {
  const invalid = new PrismaError(
    'P1013',
    'The provided database string is invalid. DATABASE_URL must be postgresql://USER:PASSWORD@HOST:PORT/DATABASE',
  );
  if (!raw || !/^postgres(ql)?:\/\//i.test(raw.trim())) throw invalid;
  let url;
  try {
    url = new URL(raw.trim());
  } catch (err) {
    throw invalid;
  }
  const params = url.searchParams;
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!database) throw invalid;
  return {
    host: params.get('host') || url.hostname.replace(/^\[(.*)\]$/, '$1') || 'localhost',
    port: url.port || '5432',
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database,
    schema: params.get('schema') || 'public',
    sslmode: params.get('sslmode'),
  };
}

function ident(name) {
  return '"' + name.replace(/"/g, '""') + '"';
}

function literal(value) {
  if (value === null || value === undefined) return 'NULL';
  return "'" + String(value).replace(/\0/g, '').replace(/'/g, "''") + "'";
}

function childEnv(conn) {
  const env = { ...process.env };
  delete env.DATABASE_URL;
  Object.assign(env, {
    PGHOST: conn.host,
    PGPORT: String(conn.port),
    PGUSER: conn.user,
    PGDATABASE: conn.database,
    PGAPPNAME: 'migrate-deploy',
    // search_path for ?schema=; spaces and backslashes are escaped for PGOPTIONS.
    PGOPTIONS: `-c search_path=${ident(conn.schema).replace(/([\\ ])/g, '\\$1')}`,
  });
  if (conn.password) env.PGPASSWORD = conn.password;
  else delete env.PGPASSWORD;
  if (conn.sslmode) env.PGSSLMODE = conn.sslmode;
  return env;
}

const PSQL_FLAGS = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose'];

function runPsql(conn, args, input) {
  const res = spawnSync(PSQL, [...PSQL_FLAGS, ...args], {
    env: childEnv(conn),
    input: input === undefined ? '' : input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.error) {
    throw new PrismaError('P1001', `cannot run ${PSQL}: ${res.error.message} (set PSQL to its path)`);
  }
  return res;
}

function connectionError(conn, stderr) {
  const where = `${conn.host}:${conn.port}`;
  if (/password authentication failed|no password supplied/.test(stderr)) {
    return new PrismaError(
      'P1000',
      `Authentication failed against database server at \`${where}\`, the provided database credentials for \`${conn.user}\` are not valid.`,
    );
  }
  if (/database ".*" does not exist/.test(stderr)) {
    return new PrismaError(
      'P1003',
      `Database \`${conn.database}\` does not exist on the database server at \`${where}\`.`,
    );
  }
  const last = stderr.trim().split('\n').pop() || 'no answer';
  return new PrismaError('P1001', `Can't reach database server at \`${where}\`: ${last}`);
}

/** Run SQL (from stdin) and return its stdout; an error becomes a PrismaError. */
function sql(conn, text) {
  const res = runPsql(conn, ['-A', '-t', '-f', '-'], text);
  if (res.status === 2) throw connectionError(conn, res.stderr || '');
  if (res.status !== 0) {
    throw new PrismaError('P3006', `psql failed (exit ${res.status}): ${(res.stderr || '').trim()}`);
  }
  return res.stdout;
}

function readRows(conn) {
  const out = sql(
    conn,
    `SELECT coalesce(json_agg(r ORDER BY r.started_at, r.migration_name), '[]') FROM (
       SELECT id, checksum, migration_name, started_at, finished_at, rolled_back_at
       FROM "_prisma_migrations") r;`,
  ).trim();
  return out ? JSON.parse(out) : [];
}

function tableExists(conn) {
  return sql(conn, "SELECT to_regclass('_prisma_migrations') IS NOT NULL;").trim() === 't';
}

function localMigrations() {
  let names;
  try {
    names = fs.readdirSync(MIGRATIONS_DIR).sort();
  } catch (err) {
    throw new PrismaError('P3015', `Could not find the migrations folder ${MIGRATIONS_DIR}`);
  }
  const found = [];
  for (const name of names) {
    const file = path.join(MIGRATIONS_DIR, name, 'migration.sql');
    let data;
    try {
      if (!fs.statSync(path.join(MIGRATIONS_DIR, name)).isDirectory()) continue;
      data = fs.readFileSync(file);
    } catch (err) {
      continue; // migration_lock.toml, or a folder without migration.sql
    }
    found.push({ name, file, data, checksum: sha256(data) });
  }
  return found;
}

function sha256(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Prisma accepts a checksum of the same script with other line endings. */
function checksumMatches(migration, checksum) {
  if (checksum === migration.checksum) return true;
  const lf = migration.data.toString('utf8').replace(/\r\n/g, '\n');
  return [lf, lf.replace(/\n/g, '\r\n')].some((text) => sha256(Buffer.from(text)) === checksum);
}

function checkLockFile() {
  let text;
  try {
    text = fs.readFileSync(path.join(MIGRATIONS_DIR, 'migration_lock.toml'), 'utf8');
  } catch (err) {
    return;
  }
  const m = text.match(/^\s*provider\s*=\s*"([^"]*)"/m);
  if (m && m[1] !== 'postgresql') {
    throw new PrismaError(
      'P3019',
      `The datasource provider \`postgresql\` does not match \`${m[1]}\` in migration_lock.toml.`,
    );
  }
}

function header(conn, count) {
  console.log('Prisma schema loaded from prisma/schema.prisma');
  console.log(
    `Datasource "db": PostgreSQL database "${conn.database}", schema "${conn.schema}" at "${conn.host}:${conn.port}"`,
  );
  console.log('');
  console.log(`${count} migration${count === 1 ? '' : 's'} found in prisma/migrations`);
  console.log('');
}

/** Classify like Prisma: live rows are those not rolled back. */
function classify(local, rows) {
  const live = rows.filter((r) => r.rolled_back_at === null);
  const failed = live.filter((r) => r.finished_at === null);
  const applied = live.filter((r) => r.finished_at !== null);
  const liveNames = new Set(live.map((r) => r.migration_name));
  const byName = new Map(local.map((m) => [m.name, m]));
  const pending = local.filter((m) => !liveNames.has(m.name));
  const modified = applied.filter(
    (r) => byName.has(r.migration_name) && !checksumMatches(byName.get(r.migration_name), r.checksum),
  );
  const missing = applied.filter((r) => !byName.has(r.migration_name));
  return { failed, pending, modified, missing };
}

function failedMessage(failed) {
  const lines = failed.map(
    (r) => `The \`${r.migration_name}\` migration started at ${r.started_at} failed`,
  );
  return (
    'migrate found failed migrations in the target database, new migrations will not be applied. ' +
    `Read more about how to resolve migration issues in a production database: ${RESOLVE_URL}\n` +
    lines.join('\n')
  );
}

/** Hold Prisma's advisory lock in a psql session of its own until release() is called. */
function acquireLock(conn) {
  return new Promise((resolve, reject) => {
    const child = spawn(PSQL, [...PSQL_FLAGS, '-A', '-t', '-f', '-'], {
      env: childEnv(conn),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let done = false;
    child.on('error', (e) => {
      if (!done) {
        done = true;
        reject(new PrismaError('P1001', `cannot run ${PSQL}: ${e.message}`));
      }
    });
    child.stdout.on('data', (chunk) => {
      out += chunk;
      if (!done && out.includes('locked')) {
        done = true;
        resolve(() => {
          child.stdin.end();
          return new Promise((res) => child.on('close', res));
        });
      }
    });
    child.stderr.on('data', (chunk) => {
      err += chunk;
    });
    child.on('close', (status) => {
      if (done) return;
      done = true;
      if (status === 2) reject(connectionError(conn, err));
      else if (/lock timeout/.test(err)) {
        reject(
          new PrismaError(
            'P1002',
            `Timed out trying to acquire a postgres advisory lock (SELECT pg_advisory_lock(${LOCK_ID})). Timeout: ${LOCK_TIMEOUT_MS}ms.`,
          ),
        );
      } else reject(new PrismaError('P1001', `psql failed: ${err.trim()}`));
    });
    child.stdin.write(
      `SET lock_timeout = ${LOCK_TIMEOUT_MS};\nSELECT pg_advisory_lock(${LOCK_ID});\n` +
        "SET lock_timeout = 0;\nSELECT 'locked';\n",
    );
  });
}

function applyOne(conn, migration) {
  const id = crypto.randomUUID();
  sql(
    conn,
    'INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name", "started_at", ' +
      `"applied_steps_count") VALUES (${literal(id)}, ${literal(migration.checksum)}, ` +
      `${literal(migration.name)}, now(), 0);`,
  );
  const res = runPsql(conn, ['--single-transaction', '-f', migration.file]);
  if (res.stdout) process.stdout.write(res.stdout);
  if (res.status === 0) {
    if (res.stderr) process.stderr.write(res.stderr); // NOTICEs
    sql(
      conn,
      'UPDATE "_prisma_migrations" SET "finished_at" = now(), ' +
        `"applied_steps_count" = "applied_steps_count" + 1 WHERE "id" = ${literal(id)};`,
    );
    return;
  }
  const stderr = (res.stderr || '').trim();
  const m = stderr.match(/ERROR:\s+([0-9A-Z]{5}):\s*(.*)/);
  const code = m ? m[1] : 'unknown';
  const message = m ? `ERROR: ${m[2]}` : stderr.split('\n')[0] || `psql exit status ${res.status}`;
  const logs =
    `Migration name: ${migration.name}\n\nDatabase error code: ${code}\n\n` +
    `Database error:\n${message}\n\n${stderr}\n`;
  sql(conn, `UPDATE "_prisma_migrations" SET "logs" = ${literal(logs)} WHERE "id" = ${literal(id)};`);
  throw new PrismaError(
    'P3018',
    'A migration failed to apply. New migrations cannot be applied before the error is recovered ' +
      `from. Read more about how to resolve migration issues in a production database: ${RESOLVE_URL}\n\n` +
      `Migration name: ${migration.name}\n\nDatabase error code: ${code}\n\nDatabase error:\n${message}`,
  );
}

async function deploy(conn) {
  checkLockFile();
  const local = localMigrations();
  header(conn, local.length);
  if (conn.schema !== 'public') sql(conn, `CREATE SCHEMA IF NOT EXISTS ${ident(conn.schema)};`);
  const release = await acquireLock(conn);
  try {
    sql(conn, PRISMA_MIGRATIONS_DDL);
    const state = classify(local, readRows(conn));
    if (state.failed.length) throw new PrismaError('P3009', failedMessage(state.failed));
    for (const r of state.modified) {
      console.error(`WARNING The migration \`${r.migration_name}\` was modified after it was applied.`);
    }
    if (state.missing.length) {
      console.error(
        'WARNING The following migrations are applied to the database but missing from the local ' +
          `migrations directory: ${state.missing.map((r) => r.migration_name).join(', ')}`,
      );
    }
    if (!state.pending.length) {
      console.log('No pending migrations to apply.');
      return 0;
    }
    for (const migration of state.pending) {
      console.log(`Applying migration \`${migration.name}\``);
      applyOne(conn, migration);
    }
    console.log('');
    console.log('The following migration(s) have been applied:');
    console.log('');
    console.log('migrations/');
    for (const migration of state.pending) {
      console.log(`  └─ ${migration.name}/`);
      console.log('    └─ migration.sql');
    }
    console.log('');
    console.log('All migrations have been successfully applied.');
    return 0;
  } finally {
    await release();
  }
}

function status(conn) {
  const local = localMigrations();
  header(conn, local.length);
  const rows = tableExists(conn) ? readRows(conn) : [];
  const state = classify(local, rows);
  let code = 0;
  if (state.failed.length) {
    console.log('Following migration have failed:');
    for (const r of state.failed) console.log(r.migration_name);
    console.log('');
    console.log(`Read more about how to resolve migration issues: ${RESOLVE_URL}`);
    code = 1;
  }
  if (state.modified.length) {
    console.log('The following migrations were modified after they were applied:');
    for (const r of state.modified) console.log(r.migration_name);
    code = 1;
  }
  if (state.missing.length) {
    console.log(
      'The following migrations are applied to the database but missing from the local migrations directory:',
    );
    for (const r of state.missing) console.log(r.migration_name);
    code = 1;
  }
  if (state.pending.length) {
    console.log('Following migrations have not yet been applied:');
    for (const m of state.pending) console.log(m.name);
    console.log('');
    console.log('To apply migrations in production run prisma migrate deploy.');
    code = 1;
  }
  if (code === 0) console.log('Database schema is up to date!');
  return code;
}

async function main() {
  loadDotenv();
  const mode = process.argv[2] || 'deploy';
  if (mode !== 'deploy' && mode !== 'status') {
    console.error('usage: migrate-deploy.js [deploy|status]');
    return 2;
  }
  if (!process.env.DATABASE_URL) {
    throw new PrismaError('P1012', 'Environment variable not found: DATABASE_URL.');
  }
  const conn = parseDatabaseUrl(process.env.DATABASE_URL);
  return mode === 'status' ? status(conn) : deploy(conn);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (err instanceof PrismaError) console.error(`Error: ${err.code}\n\n${err.message}`);
    else console.error(`Error: ${err && err.message ? err.message : err}`);
    process.exitCode = 1;
  },
);
