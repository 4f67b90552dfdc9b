#!/usr/bin/env bash
# First start of deploy/compose: images, PostgreSQL and the control plane, the first admin
# token, the two agents' enrolments, then the agents. Safe to run again: it keeps .env's
# password and tokens and ./admin.token, and makes only what is missing.
#
# Usage: deploy/compose/bootstrap.sh   (needs Docker with the compose plugin, v2.24 or later)
set -euo pipefail
cd "$(dirname "$0")"
umask 077

compose() { docker compose "$@"; }
say() { printf '==> %s\n' "$*"; }

# set_env NAME VALUE: set NAME=VALUE in .env, replacing an existing line.
set_env() {
  local name=$1 value=$2 tmp
  tmp=$(mktemp .env.XXXXXX)
  grep -v "^${name}=" .env > "$tmp" || true
  printf '%s=%s\n' "$name" "$value" >> "$tmp"
  mv "$tmp" .env
}
get_env() { sed -n "s/^$1=//p" .env | tail -n 1; }

if [ ! -f .env ]; then
  cp .env.example .env
  say "made .env from .env.example"
fi
if [ -z "$(get_env POSTGRES_PASSWORD)" ]; then
  set_env POSTGRES_PASSWORD "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
  say "made a random POSTGRES_PASSWORD in .env"
fi

say "building the images (deploy/docker/Dockerfile, targets server and agent)"
compose build

say "starting PostgreSQL and the control plane"
compose up -d --wait legato-server

if [ ! -s admin.token ]; then
  # The first admin token is made on the database itself: nobody holds a token yet.
  # shellcheck disable=SC2016  # $LEGATO_SERVER_DB is expanded in the container, not here
  compose exec -T legato-server sh -ec \
    'exec legato tokens create bootstrap-admin --role admin --description "made by bootstrap.sh" --db "$LEGATO_SERVER_DB" -q' \
    > admin.token
  say "made the first admin token: ./admin.token (mode 0600)"
fi
LEGATO_TOKEN=$(cat admin.token)
export LEGATO_TOKEN

# enrol NAME VARIABLE LABELS CONNECTIONS: an enrolment token for agent NAME, into .env.
enrol() {
  local name=$1 variable=$2 labels=$3 connections=$4 token
  if [ -n "$(get_env "$variable")" ]; then
    return
  fi
  token=$(compose exec -T -e LEGATO_TOKEN legato-server legato agents token create \
    --name "$name" --labels "$labels" --connections "$connections" -q)
  set_env "$variable" "$token"
  say "enrolled agent $name ($labels; connections $connections): $variable in .env"
}
enrol eu-1 EU_1_AGENT_TOKEN region=eu warehouse
enrol us-1 US_1_AGENT_TOKEN region=us shop

say "starting the agents"
compose up -d --wait

compose exec -T -e LEGATO_TOKEN legato-server legato agents
cat <<DONE

Legato is up. The CLI runs in the server's container with the admin token:

  export LEGATO_TOKEN=\$(cat $(pwd)/admin.token)
  docker compose exec -e LEGATO_TOKEN legato-server legato ui      # a sign-in link for the web UI

Make yourself a personal admin token and revoke bootstrap-admin (docs/deploy.md).
DONE
