#!/usr/bin/env bash
# One-time setup of a Google Cloud project for duo-telephony, before the first build.
# Idempotent: every resource is looked up first and created only when missing, every role is
# bound only when not bound yet, so a re-run changes nothing. See --help and docs/deploy.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/bootstrap.sh [--dry-run] [--lifecycle-days N] [--help]

Sets up what cloudbuild.yaml expects in the project: the APIs, Firestore (native mode), the
Artifact Registry repository, the bucket the SecOps feed reads (and the build's staging
bucket), the Duo secret's container (never its value), the topics and subscriptions, the
service accounts and each one's least-privilege roles. Run it as a project owner with gcloud
logged in. Re-running it changes nothing.

  --dry-run           print the commands it would run on an empty project, in order, and
                      run none (needs no gcloud login and no settings)
  --lifecycle-days N  give the bucket a lifecycle rule that deletes objects N days old
                      (only this; an existing bucket's rule is brought to N days)
  --help              this text

Settings, from the environment:
  PROJECT_ID          the project (required, except for --dry-run)
  REGION              us-central1: Cloud Run, Artifact Registry, the buckets
  FIRESTORE_LOCATION  REGION: the (default) Firestore database's location
  BUCKET              PROJECT_ID-duo-telephony: the bucket the SecOps feed reads
  SECRET              duo-skey: the Secret Manager secret for the Duo secret key
EOF
}

here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/options.sh"
DRY_RUN=false
LIFECYCLE_DAYS=""
lifecycle_asked=false
while [ $# -gt 0 ]; do
  case "$1" in
    --lifecycle-days)
      lifecycle_asked=true
      LIFECYCLE_DAYS="${2:-}"
      shift
      ;;
    --lifecycle-days=*)
      lifecycle_asked=true
      LIFECYCLE_DAYS="${1#*=}"
      ;;
    *) shared_option "$1" ;;
  esac
  shift
done
if [ "$lifecycle_asked" = true ] && ! [[ "$LIFECYCLE_DAYS" =~ ^[1-9][0-9]*$ ]]; then
  echo "--lifecycle-days takes a whole number of days, not '$LIFECYCLE_DAYS'" >&2
  exit 2
fi

source "$here/plan.sh"
source "$here/names.sh"
settle_project "$DRY_RUN"
project=(--project="$PROJECT_ID")

# APIs: one call for the ones not enabled yet. Logging and Monitoring carry the build's
# log-based metrics, alert policies and dashboard.
apis=(run.googleapis.com pubsub.googleapis.com firestore.googleapis.com
  secretmanager.googleapis.com cloudscheduler.googleapis.com artifactregistry.googleapis.com
  cloudbuild.googleapis.com storage.googleapis.com iam.googleapis.com
  logging.googleapis.com monitoring.googleapis.com)
enabled=""
dry || enabled="$(gcloud services list --enabled "${project[@]}" --format='value(config.name)')"
missing=()
for api in "${apis[@]}"; do
  grep -qxF "$api" <<<"$enabled" || missing+=("$api")
done
[ ${#missing[@]} -eq 0 ] || run gcloud services enable "${missing[@]}" "${project[@]}"
# The Pub/Sub service agent signs push requests and forwards dead letters; this makes sure it
# exists (it returns the existing one, so it changes nothing on a re-run).
run gcloud beta services identity create --service=pubsub.googleapis.com "${project[@]}"

# Firestore, native mode, the (default) database the services use.
if exists gcloud firestore databases describe --database='(default)' "${project[@]}"; then
  type="$(gcloud firestore databases describe --database='(default)' "${project[@]}" \
    --format='value(type)')"
  if [ "$type" != FIRESTORE_NATIVE ]; then
    echo "the (default) Firestore database is $type; the pipeline needs native mode: use another project" >&2
    exit 1
  fi
else
  run gcloud firestore databases create --database='(default)' \
    --location="$FIRESTORE_LOCATION" --type=firestore-native "${project[@]}"
fi

exists gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" "${project[@]}" ||
  run gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker \
    --location="$REGION" --description="duo-telephony images" "${project[@]}"

# The buckets: uniform access, never public. The feed's bucket gets a lifecycle rule only
# when asked (docs/deploy.md, section 2: delete only, long after the feed has read them).
bucket_flags=(--location="$REGION" --uniform-bucket-level-access --public-access-prevention)
lifecycle=()
if [ -n "$LIFECYCLE_DAYS" ]; then
  lifecycle_file="$(mktemp)"
  trap 'rm -f "$lifecycle_file"' EXIT
  printf '{"rule": [{"action": {"type": "Delete"}, "condition": {"age": %d}}]}\n' \
    "$LIFECYCLE_DAYS" >"$lifecycle_file"
  dry && echo "# $lifecycle_file: $(cat "$lifecycle_file")"
  lifecycle=(--lifecycle-file="$lifecycle_file")
fi
if exists gcloud storage buckets describe "gs://$BUCKET" "${project[@]}"; then
  if [ -n "$LIFECYCLE_DAYS" ]; then
    age="$(gcloud storage buckets describe "gs://$BUCKET" "${project[@]}" \
      --format='value(lifecycle_config.rule[0].condition.age)')"
    [ "$age" = "$LIFECYCLE_DAYS" ] ||
      run gcloud storage buckets update "gs://$BUCKET" "${lifecycle[@]}" "${project[@]}"
  fi
else
  run gcloud storage buckets create "gs://$BUCKET" "${bucket_flags[@]}" "${lifecycle[@]}" \
    "${project[@]}"
fi
exists gcloud storage buckets describe "gs://$STAGING_BUCKET" "${project[@]}" ||
  run gcloud storage buckets create "gs://$STAGING_BUCKET" "${bucket_flags[@]}" "${project[@]}"

# The secret's container only: its value is added by hand from standard input (the guide's
# next step), so the Duo secret key never passes through this script.
exists gcloud secrets describe "$SECRET" "${project[@]}" ||
  run gcloud secrets create "$SECRET" --replication-policy=automatic "${project[@]}"

# Topics and bare subscriptions. The build configures the subscriptions (push endpoint, OIDC,
# dead letters); creating them here lets the build's account hold Pub/Sub rights on these six
# resources alone instead of roles/pubsub.admin on the project, and keeps the first window
# tasks even if the scheduler's first call comes before the build reaches the subscriptions.
for topic in "${TOPICS[@]}"; do
  exists gcloud pubsub topics describe "$topic" "${project[@]}" ||
    run gcloud pubsub topics create "$topic" "${project[@]}"
done
for pair in "${SUBSCRIPTIONS[@]}"; do
  exists gcloud pubsub subscriptions describe "${pair%%:*}" "${project[@]}" ||
    run gcloud pubsub subscriptions create "${pair%%:*}" --topic="${pair#*:}" \
      --expiration-period=never "${project[@]}"
done

for name in "${ACCOUNTS[@]}"; do
  exists gcloud iam service-accounts describe "$(sa "$name")" "${project[@]}" ||
    run gcloud iam service-accounts create "duo-telephony-$name" \
      --display-name="duo-telephony $name" "${project[@]}"
done

# Runtime accounts: each role on the one resource it is for.
for name in planner fetcher writer; do
  for role in "${RUNTIME_PROJECT_ROLES[@]}"; do
    grant project "$PROJECT_ID" "serviceAccount:$(sa "$name")" "$role"
  done
done
grant topic "$WINDOW_TOPIC" "serviceAccount:$(sa planner)" roles/pubsub.publisher
# The fetcher publishes batches, and hands the rest of a window on to the windows topic.
for topic in "$WINDOW_TOPIC" "$BATCH_TOPIC"; do
  grant topic "$topic" "serviceAccount:$(sa fetcher)" roles/pubsub.publisher
done
grant secret "$SECRET" "serviceAccount:$(sa fetcher)" roles/secretmanager.secretAccessor
for role in "${WRITER_BUCKET_ROLES[@]}"; do
  grant bucket "gs://$BUCKET" "serviceAccount:$(sa writer)" "$role"
done
for role in "${PLANNER_BUCKET_ROLES[@]}"; do
  grant bucket "gs://$BUCKET" "serviceAccount:$(sa planner)" "$role"
done
# The push and scheduler accounts get run.invoker on their services from the build, once the
# services exist.

# The build's account.
deployer="serviceAccount:$(sa deployer)"
for role in "${DEPLOYER_PROJECT_ROLES[@]}"; do
  grant project "$PROJECT_ID" "$deployer" "$role"
done
grant repository "$REPOSITORY" "$deployer" roles/artifactregistry.writer
grant bucket "gs://$STAGING_BUCKET" "$deployer" roles/storage.objectViewer
# Deploy each service as its account, and name the push and scheduler accounts as OIDC
# identities.
for name in planner fetcher writer push scheduler; do
  grant account "$(sa "$name")" "$deployer" roles/iam.serviceAccountUser
done
# Configure the topics and subscriptions, and bind the Pub/Sub service agent's dead-letter
# roles on them.
for topic in "${TOPICS[@]}"; do
  grant topic "$topic" "$deployer" roles/pubsub.admin
done
for pair in "${SUBSCRIPTIONS[@]}"; do
  grant subscription "${pair%%:*}" "$deployer" roles/pubsub.admin
done

dry && exit 0
cat <<EOF

Project $PROJECT_ID is set up. Next (docs/deploy.md, sections 3 and 4):
  gcloud secrets versions add $SECRET --data-file=- --project=$PROJECT_ID   # paste the Duo secret key, then Ctrl-D
  gcloud beta builds submit --config=cloudbuild.yaml --project=$PROJECT_ID \\
    --service-account=projects/$PROJECT_ID/serviceAccounts/$(sa deployer) \\
    --gcs-source-staging-dir=gs://$STAGING_BUCKET/source \\
    --substitutions=_REGION=$REGION,_BUCKET=$BUCKET,_DUO_SKEY_SECRET=$SECRET,_DUO_API_HOST=api-xxxxxxxx.duosecurity.com,_DUO_IKEY=DIXXXXXXXXXXXXXXXXXX
EOF
