#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d):
# creates the role the cores log in as. Its password is the fifth field of the cores'
# pgpass secret, so the one file gives it to both sides. `vivified db upgrade --app-role`
# then grants it exactly what it needs (it must exist, own nothing and not be a superuser).
set -eu
password=$(cut -d: -f5 /run/secrets/pgpass_app)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=password="$password" <<'SQL'
CREATE ROLE vivified_app LOGIN PASSWORD :'password';
SQL
