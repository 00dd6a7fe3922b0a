#!/usr/bin/env bash
# Removes what deploy/bootstrap.sh and cloudbuild.yaml created, except the bucket the SecOps
# feed reads and its objects (unless --delete-bucket) and the Firestore data (unless
# --delete-firestore-data). Safe to re-run: what is already gone is skipped. See --help.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/teardown.sh [--dry-run] [--delete-bucket] [--delete-firestore-data]
                          [--sources-file FILE] [--msp-parent FILE] [--help]

Deletes the scheduler job, the three Cloud Run services, the subscriptions and topics, the
monitoring the build applied (log-based metrics named duo_telephony_*, alert policies whose
display name starts with duo-telephony, the duo-telephony dashboard), the secret and a
fleet's (each secret the sources file and the MSP parent name), the service accounts and their project-level roles, the log-based metrics' custom role, the
Artifact Registry repositories (the images', and the remote one of Docker Hub that holds the
pinned base) and the build's staging bucket. Already deleted resources are skipped.

Kept unless asked, because they are the data:
  the bucket the SecOps feed reads, with every object (--delete-bucket deletes both; without
    it the writer's roles on the bucket are removed)
  the Firestore documents: cursors, windows, batch markers, the rate limit
    (--delete-firestore-data deletes them, in the pipeline's database only, with gcloud
    firestore bulk-delete)
Never deleted: the pipeline's Firestore database itself (delete protection is on: see
docs/deploy.md), the notification channel, and the enabled APIs, which other things in the
project may use.

  --dry-run            print the commands it would run, in order, and run none (needs no
                       gcloud login)
  --sources-file FILE  the fleet's sources file the bootstrap was given (deploy/sources.json)
  --msp-parent FILE    the MSP parent's file the bootstrap was given (deploy/msp-parent.json)
  --help               this text

Settings, from the environment, as for deploy/bootstrap.sh:
  PROJECT_ID (required, except for --dry-run), REGION (us-central1), SCHEDULER_REGION
  (REGION), BUCKET (PROJECT_ID-duo-telephony), SECRET (duo-skey), FIRESTORE_DATABASE
  (duo-telephony)
EOF
}

here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/options.sh"
DRY_RUN=false
DELETE_BUCKET=false
DELETE_FIRESTORE_DATA=false
while [ $# -gt 0 ]; do
  case "$1" in
    --delete-bucket) DELETE_BUCKET=true ;;
    --delete-firestore-data) DELETE_FIRESTORE_DATA=true ;;
    *)
      if [ -n "${FILE_OPTIONS[${1%%=*}]:-}" ]; then
        take_value "$@"
        file_option "${1%%=*}" "$VALUE"
        shift $((TAKEN - 1))
      else
        shared_option "$1"
      fi
      ;;
  esac
  shift
done

source "$here/plan.sh"
source "$here/names.sh"
settle_project "$DRY_RUN"
project=(--project="$PROJECT_ID")
# The fleet's secrets, read before any call: a bad file stops the teardown with its error.
fleet_names="$(fleet_secret_names)" || exit 2

# Deletes a resource if describing it finds it: DESCRIBE_ARGS... -- DELETE_ARGS...
remove() {
  local -a check=()
  while [ "$1" != -- ]; do
    check+=("$1")
    shift
  done
  shift
  if dry || exists "${check[@]}"; then run "$@"; fi
}

# Names from a list command, NAME<TAB>DISPLAY_NAME per line, whose display name (or name)
# matches a shell pattern; on a dry run, the pattern itself stands for them.
matching() { # PATTERN LIST_COMMAND...
  local pattern="$1" name label
  shift
  if dry; then
    echo "$pattern"
    return
  fi
  "$@" | while IFS=$'\t' read -r name label; do
    # shellcheck disable=SC2254 # the pattern is meant to match
    case "${label:-$name}" in $pattern) echo "$name" ;; esac
  done
}

# First what calls or feeds the services, then the services, so nothing is sent to what is
# already gone.
remove gcloud scheduler jobs describe "$SCHEDULER_JOB" --location="$SCHEDULER_REGION" "${project[@]}" -- \
  gcloud scheduler jobs delete "$SCHEDULER_JOB" --location="$SCHEDULER_REGION" --quiet "${project[@]}"
for pair in "${SUBSCRIPTIONS[@]}"; do
  remove gcloud pubsub subscriptions describe "${pair%%:*}" "${project[@]}" -- \
    gcloud pubsub subscriptions delete "${pair%%:*}" --quiet "${project[@]}"
done
for topic in "${TOPICS[@]}"; do
  remove gcloud pubsub topics describe "$topic" "${project[@]}" -- \
    gcloud pubsub topics delete "$topic" --quiet "${project[@]}"
done
for service in "${SERVICES[@]}"; do
  remove gcloud run services describe "$service" --region="$REGION" "${project[@]}" -- \
    gcloud run services delete "$service" --region="$REGION" --quiet "${project[@]}"
done

# Monitoring, found by name (Cloud Monitoring policies are only in gcloud's alpha track). A
# listing that fails stops the teardown rather than skip what it could not see.
metrics="$(matching 'duo_telephony_*' \
  gcloud logging metrics list "${project[@]}" --format='value(name)')"
policies="$(matching 'duo-telephony*' \
  gcloud alpha monitoring policies list "${project[@]}" --format='value(name,displayName)')"
dashboards="$(matching duo-telephony \
  gcloud monitoring dashboards list "${project[@]}" --format='value(name,displayName)')"
while read -r metric; do
  if [ -n "$metric" ]; then run gcloud logging metrics delete "$metric" --quiet "${project[@]}"; fi
done <<<"$metrics"
while read -r policy; do
  if [ -n "$policy" ]; then
    run gcloud alpha monitoring policies delete "$policy" --quiet "${project[@]}"
  fi
done <<<"$policies"
while read -r dashboard; do
  if [ -n "$dashboard" ]; then
    run gcloud monitoring dashboards delete "$dashboard" --quiet "${project[@]}"
  fi
done <<<"$dashboards"

# The single account's secret and a fleet's.
secret_names=("$SECRET")
while IFS=$'\t' read -r _ name; do
  [ -z "$name" ] || secret_names+=("$name")
done <<<"$fleet_names"
for name in "${secret_names[@]}"; do
  remove gcloud secrets describe "$name" "${project[@]}" -- \
    gcloud secrets delete "$name" --quiet "${project[@]}"
done

# Project-level roles go before their accounts: a deleted account's bindings would otherwise
# linger in the project's policy as deleted:serviceAccount:... members.
for name in planner fetcher writer; do
  for role in "${RUNTIME_DATABASE_ROLES[@]}"; do
    revoke database "$PROJECT_ID" "serviceAccount:$(sa "$name")" "$role"
  done
done
for role in "${DEPLOYER_PROJECT_ROLES[@]}" "$LOG_METRICS_ROLE"; do
  revoke project "$PROJECT_ID" "serviceAccount:$(sa deployer)" "$role"
done
for role in "${DEPLOYER_DATABASE_ROLES[@]}"; do
  revoke database "$PROJECT_ID" "serviceAccount:$(sa deployer)" "$role"
done
remove gcloud iam roles describe "$LOG_METRICS_ROLE_ID" "${project[@]}" -- \
  gcloud iam roles delete "$LOG_METRICS_ROLE_ID" --quiet "${project[@]}"

remove gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" "${project[@]}" -- \
  gcloud artifacts repositories delete "$REPOSITORY" --location="$REGION" --quiet "${project[@]}"
remove gcloud artifacts repositories describe "$BASE_REPOSITORY" --location="$REGION" "${project[@]}" -- \
  gcloud artifacts repositories delete "$BASE_REPOSITORY" --location="$REGION" --quiet "${project[@]}"
# The staging bucket holds only the uploaded sources of past builds.
remove gcloud storage buckets describe "gs://$STAGING_BUCKET" "${project[@]}" -- \
  gcloud storage rm --recursive "gs://$STAGING_BUCKET" "${project[@]}"

if [ "$DELETE_BUCKET" = true ]; then
  remove gcloud storage buckets describe "gs://$BUCKET" "${project[@]}" -- \
    gcloud storage rm --recursive "gs://$BUCKET" "${project[@]}"
elif dry || exists gcloud storage buckets describe "gs://$BUCKET" "${project[@]}"; then
  for role in "${WRITER_BUCKET_ROLES[@]}"; do
    revoke bucket "gs://$BUCKET" "serviceAccount:$(sa writer)" "$role"
  done
  for role in "${PLANNER_BUCKET_ROLES[@]}"; do
    revoke bucket "gs://$BUCKET" "serviceAccount:$(sa planner)" "$role"
  done
fi

for name in "${ACCOUNTS[@]}"; do
  remove gcloud iam service-accounts describe "$(sa "$name")" "${project[@]}" -- \
    gcloud iam service-accounts delete "$(sa "$name")" --quiet "${project[@]}"
done

if [ "$DELETE_FIRESTORE_DATA" = true ]; then
  run gcloud firestore bulk-delete --database="$FIRESTORE_DATABASE" \
    --collection-ids="$FIRESTORE_COLLECTIONS" --quiet "${project[@]}"
elif ! dry; then
  cat <<EOF
Kept the Firestore documents (database $FIRESTORE_DATABASE, collections $FIRESTORE_COLLECTIONS); to delete them:
  deploy/teardown.sh --delete-firestore-data
EOF
fi
if [ "$DELETE_BUCKET" != true ] && ! dry; then
  echo "Kept gs://$BUCKET and its objects; deploy/teardown.sh --delete-bucket deletes them."
fi
