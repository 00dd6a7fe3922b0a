#!/usr/bin/env bash
# One-time setup of a Google Cloud project for duo-telephony, before the first build.
# Idempotent: every resource is looked up first and created only when missing, every role is
# bound only when not bound yet, so a re-run changes nothing. See --help and docs/deploy.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/bootstrap.sh [--dry-run] [--lifecycle-days N] [--keep-images N] [--budget-usd N]
                           [--kms-key KEY] [--repin-base-image] [--sources-file FILE]
                           [--msp-parent FILE] [--help]

Sets up what cloudbuild.yaml expects in the project: the APIs, the alerts' notification
channel, the pipeline's own Firestore database (native mode, point-in-time recovery, delete
protection), the Artifact Registry repository, a remote repository of Docker Hub through
which the image's base (python:VERSION-slim, VERSION from .python-version) is pinned by digest,
the bucket the SecOps feed reads (and the build's staging bucket), the Duo secret's container
(never its value), the topics and subscriptions, the service accounts and each one's
least-privilege roles. Run it as a project owner with gcloud logged in. Re-running it changes
nothing. It ends with the build command, which names the notification channel and the pinned
base (_BASE_IMAGE).

  --dry-run           print the commands it would run on an empty project, in order, and
                      run none (needs no gcloud login and no settings)
  --lifecycle-days N  give the bucket a lifecycle rule that deletes objects N days old
                      (only this; an existing bucket's rule is brought to N days)
  --keep-images N     the Artifact Registry cleanup policy keeps the newest N images (10),
                      for rollbacks, and deletes the others once 30 days old (set once: an
                      existing policy is left as it is)
  --budget-usd N      a budget of N US dollars a month on the project's billing account for
                      this project, alerting the notification channel at 50, 90 and 100 %
                      (needs billing.budgets.create on the account; made once)
  --kms-key KEY       encrypt with this Cloud KMS key (projects/P/locations/L/keyRings/R/
                      cryptoKeys/K, in REGION's location) what the bootstrap creates: the
                      buckets, the Firestore database, the topics and the image
                      repositories; their service agents get cryptoKeyEncrypterDecrypter on
                      it. Only at creation: existing resources keep their encryption
  --repin-base-image  resolve python:VERSION-slim's digest again, moving the pin to what
                      Docker Hub has today (without it an existing pin is kept, unless
                      .python-version names another VERSION)
  --sources-file FILE  a fleet's sources file (deploy/sources.json, the one the build bakes
                      into the image): each source's secret is made if missing, empty, and
                      only the fetcher may read it (docs/deploy.md, "Deploying a fleet")
  --msp-parent FILE   DUO_MSP_PARENT's JSON (deploy/msp-parent.json, the one the build
                      passes): its secret is made if missing, and only the planner (which
                      lists the children) and the fetcher (which reads them) may read it
  --help              this text

Settings, from the environment:
  PROJECT_ID          the project (required, except for --dry-run)
  NOTIFICATION_EMAIL  who the alerts e-mail (required, unless NOTIFICATION_CHANNEL): an e-mail
                      notification channel to it is found or created
  NOTIFICATION_CHANNEL  an existing channel to notify instead,
                      projects/PROJECT_ID/notificationChannels/ID
  REGION              us-central1: Cloud Run, Artifact Registry, the buckets, the secret's
                      replica (user-managed replication in this region only)
  FIRESTORE_DATABASE  duo-telephony: the pipeline's own Firestore database
  FIRESTORE_LOCATION  REGION: that database's location
  BUCKET              PROJECT_ID-duo-telephony: the bucket the SecOps feed reads
  SECRET              duo-skey: the Secret Manager secret for the Duo secret key
EOF
}

here="$(dirname "${BASH_SOURCE[0]}")"
source "$here/options.sh"
DRY_RUN=false
LIFECYCLE_DAYS=""
KEEP_IMAGES=10
BUDGET_USD=""
KMS_KEY=""
REPIN_BASE_IMAGE=false
# Options that take a whole number: OPTION -> the variable it sets.
declare -A NUMBER_OPTIONS=([--lifecycle-days]=LIFECYCLE_DAYS [--keep-images]=KEEP_IMAGES
  [--budget-usd]=BUDGET_USD)
while [ $# -gt 0 ]; do
  option="${1%%=*}"
  if [ "$option" = --kms-key ]; then
    if [ "$1" = --kms-key ]; then
      KMS_KEY="${2:-}"
      shift
    else
      KMS_KEY="${1#*=}"
    fi
    if ! [[ "$KMS_KEY" =~ ^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$ ]]; then
      echo "--kms-key takes projects/P/locations/L/keyRings/R/cryptoKeys/K, not '$KMS_KEY'" >&2
      exit 2
    fi
  elif [ -n "${NUMBER_OPTIONS[$option]:-}${FILE_OPTIONS[$option]:-}" ]; then
    take_value "$@"
    shift $((TAKEN - 1))
    if [ -n "${FILE_OPTIONS[$option]:-}" ]; then
      file_option "$option" "$VALUE"
    elif ! [[ "$VALUE" =~ ^[1-9][0-9]*$ ]]; then
      echo "$option takes a whole number, not '$VALUE'" >&2
      exit 2
    else
      printf -v "${NUMBER_OPTIONS[$option]}" '%s' "$VALUE"
    fi
  elif [ "$1" = --repin-base-image ]; then
    REPIN_BASE_IMAGE=true
  else
    shared_option "$1"
  fi
  shift
done

source "$here/plan.sh"
source "$here/names.sh"
settle_project "$DRY_RUN"
project=(--project="$PROJECT_ID")
# Alerts that notify nobody are not alerts: a channel is required (on a dry run, a placeholder).
NOTIFICATION_CHANNEL="${NOTIFICATION_CHANNEL:-}"
NOTIFICATION_EMAIL="${NOTIFICATION_EMAIL:-}"
# The fleet's secrets (ORIGIN<TAB>NAME lines), read before any call: a bad file stops the
# bootstrap with its one-line error.
fleet_names="$(fleet_secret_names)" || exit 2
if [ -z "$NOTIFICATION_CHANNEL$NOTIFICATION_EMAIL" ]; then
  if ! dry; then
    echo "NOTIFICATION_EMAIL is not set: the alerts would notify nobody. export" \
      "NOTIFICATION_EMAIL=oncall@example.com (or NOTIFICATION_CHANNEL=projects/$PROJECT_ID/notificationChannels/ID)" >&2
    exit 2
  fi
  NOTIFICATION_EMAIL=NOTIFICATION_EMAIL
fi

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
number=PROJECT_NUMBER
dry || number="$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')"
pubsub_agent="serviceAccount:service-$number@gcp-sa-pubsub.iam.gserviceaccount.com"

# The alerts' channel (Cloud Monitoring channels are in gcloud's alpha and beta tracks only).
email_channel() { # EMAIL: the name of an e-mail channel to it, if there is one
  dry && return 0
  gcloud beta monitoring channels list "${project[@]}" \
    --format='value(name,labels.email_address)' | while IFS=$'\t' read -r name address; do
    if [ "$address" = "$1" ]; then echo "$name"; fi
  done | head -n 1
}
if [ -n "$NOTIFICATION_CHANNEL" ]; then
  if ! dry && ! gcloud beta monitoring channels describe "$NOTIFICATION_CHANNEL" \
    "${project[@]}" >/dev/null; then
    echo "NOTIFICATION_CHANNEL $NOTIFICATION_CHANNEL is not a channel of $PROJECT_ID" >&2
    exit 2
  fi
  channel="$NOTIFICATION_CHANNEL"
else
  channel="$(email_channel "$NOTIFICATION_EMAIL")"
  if [ -z "$channel" ]; then
    run gcloud beta monitoring channels create --type=email \
      --display-name="duo-telephony: $NOTIFICATION_EMAIL" \
      --channel-labels=email_address="$NOTIFICATION_EMAIL" "${project[@]}"
    channel="$(email_channel "$NOTIFICATION_EMAIL")"
  fi
  channel="${channel:-projects/$PROJECT_ID/notificationChannels/CHANNEL_ID}"
fi

# An optional monthly budget for the project, told to the same channel. Budgets live on the
# billing account, found by display name.
if [ -n "$BUDGET_USD" ]; then
  account=BILLING_ACCOUNT_ID budgets=""
  if ! dry; then
    account="$(gcloud billing projects describe "$PROJECT_ID" --format='value(billingAccountName)')"
    account="${account#billingAccounts/}"
    budgets="$(gcloud billing budgets list --billing-account="$account" --format='value(displayName)')"
  fi
  grep -qxF "duo-telephony $PROJECT_ID" <<<"$budgets" ||
    run gcloud billing budgets create --billing-account="$account" \
      --display-name="duo-telephony $PROJECT_ID" --budget-amount="${BUDGET_USD}USD" \
      --filter-projects="projects/$PROJECT_ID" --threshold-rule=percent=0.5 \
      --threshold-rule=percent=0.9 --threshold-rule=percent=1.0 \
      --notifications-rule-monitoring-notification-channels="$channel"
fi

# CMEK, when asked: each service agent may use the key before anything is created with it.
# Each resource gets the flag its create command takes.
cmek_firestore=() cmek_repository=() cmek_bucket=() cmek_topic=()
if [ -n "$KMS_KEY" ]; then
  for service in artifactregistry.googleapis.com firestore.googleapis.com; do
    run gcloud beta services identity create --service="$service" "${project[@]}"
  done
  for agent in "$pubsub_agent" "serviceAccount:service-$number@gcp-sa-artifactregistry.iam.gserviceaccount.com" \
    "serviceAccount:service-$number@gcp-sa-firestore.iam.gserviceaccount.com"; do
    grant key "$KMS_KEY" "$agent" roles/cloudkms.cryptoKeyEncrypterDecrypter
  done
  # Makes the Cloud Storage service agent if need be and grants it the same role on the key.
  run gcloud storage service-agent --authorize-cmek="$KMS_KEY" "${project[@]}"
  cmek_firestore=(--kms-key-name="$KMS_KEY")
  cmek_repository=(--kms-key="$KMS_KEY")
  cmek_bucket=(--default-encryption-key="$KMS_KEY")
  cmek_topic=(--topic-encryption-key="$KMS_KEY")
fi

# Firestore, native mode: a database of the pipeline's own, so that its TTL policies, its
# grants and a teardown's deletes touch nothing else in the project. Point-in-time recovery
# keeps 7 days of versions to read or restore from; delete protection refuses a deletion
# until it is turned off.
database=(--database="$FIRESTORE_DATABASE")
if exists gcloud firestore databases describe "${database[@]}" "${project[@]}"; then
  read -r type pitr protection < <(gcloud firestore databases describe "${database[@]}" \
    "${project[@]}" --format='value(type,pointInTimeRecoveryEnablement,deleteProtectionState)')
  if [ "$type" != FIRESTORE_NATIVE ]; then
    echo "the Firestore database $FIRESTORE_DATABASE is $type; the pipeline needs native mode: set FIRESTORE_DATABASE to another name" >&2
    exit 1
  fi
  if [ "$pitr" != POINT_IN_TIME_RECOVERY_ENABLED ] || [ "$protection" != DELETE_PROTECTION_ENABLED ]; then
    run gcloud firestore databases update "${database[@]}" --enable-pitr --delete-protection \
      "${project[@]}"
  fi
else
  run gcloud firestore databases create "${database[@]}" --location="$FIRESTORE_LOCATION" \
    --type=firestore-native --enable-pitr --delete-protection "${cmek_firestore[@]}" "${project[@]}"
fi

# Files handed to gcloud (lifecycle rules, the cleanup policy), printed on a dry run.
files="$(mktemp -d)"
trap 'rm -rf "$files"' EXIT
file() { # NAME CONTENT: a file of CONTENT; prints its path
  printf '%s\n' "$2" >"$files/$1"
  echo "$files/$1"
}

exists gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" "${project[@]}" ||
  run gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker \
    --location="$REGION" --description="duo-telephony images" "${cmek_repository[@]}" "${project[@]}"
# Docker Hub, cached in the project: the build pulls the image's base from here by digest.
exists gcloud artifacts repositories describe "$BASE_REPOSITORY" --location="$REGION" "${project[@]}" ||
  run gcloud artifacts repositories create "$BASE_REPOSITORY" --repository-format=docker \
    --mode=remote-repository --remote-docker-repo=docker-hub --location="$REGION" \
    --description="Docker Hub cache for the duo-telephony base image" "${cmek_repository[@]}" \
    "${project[@]}"
# A build pushes an image each time: keep the newest KEEP_IMAGES (a rollback needs the earlier
# ones) and delete the others once they are 30 days old (a Keep policy wins over a Delete).
cleanup=""
dry || cleanup="$(gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" \
  "${project[@]}" --format='value(cleanupPolicies)')"
if [ -z "$cleanup" ]; then
  policy="$(file cleanup.json "[{\"name\": \"keep-newest\", \"action\": {\"type\": \"Keep\"}, \"mostRecentVersions\": {\"keepCount\": $KEEP_IMAGES}}, {\"name\": \"delete-older\", \"action\": {\"type\": \"Delete\"}, \"condition\": {\"tagState\": \"any\", \"olderThan\": \"30d\"}}]")"
  dry && echo "# $policy: $(cat "$policy")"
  run gcloud artifacts repositories set-cleanup-policies "$REPOSITORY" --location="$REGION" \
    --policy="$policy" "${project[@]}"
fi

# The buckets: uniform access, never public. The feed's bucket gets a lifecycle rule only
# when asked (docs/deploy.md, section 2: delete only, long after the feed has read them); the
# staging bucket, which holds only past builds' uploaded sources, keeps them 30 days.
bucket_flags=(--location="$REGION" --uniform-bucket-level-access --public-access-prevention
  "${cmek_bucket[@]}")
bucket() { # BUCKET DAYS: made, with a rule deleting objects DAYS old (none when empty)
  local lifecycle=() age
  if [ -n "$2" ]; then
    lifecycle=(--lifecycle-file="$(file "lifecycle-$2.json" \
      "{\"rule\": [{\"action\": {\"type\": \"Delete\"}, \"condition\": {\"age\": $2}}]}")")
    dry && echo "# ${lifecycle[0]#*=}: $(cat "${lifecycle[0]#*=}")"
  fi
  if exists gcloud storage buckets describe "gs://$1" "${project[@]}"; then
    if [ -n "$2" ]; then
      age="$(gcloud storage buckets describe "gs://$1" "${project[@]}" \
        --format='value(lifecycle_config.rule[0].condition.age)')"
      [ "$age" = "$2" ] || run gcloud storage buckets update "gs://$1" "${lifecycle[@]}" "${project[@]}"
    fi
  else
    run gcloud storage buckets create "gs://$1" "${bucket_flags[@]}" "${lifecycle[@]}" "${project[@]}"
  fi
}
bucket "$BUCKET" "$LIFECYCLE_DAYS"
bucket "$STAGING_BUCKET" 30

# The secret's container only: its value is added by hand from standard input (the guide's
# next step), so the Duo secret key never passes through this script. Replicated in REGION
# only, which a resource-locations organization policy allows where it allows the rest.
secret() { # NAME: the secret's container, made if missing
  exists gcloud secrets describe "$1" "${project[@]}" ||
    run gcloud secrets create "$1" --replication-policy=user-managed --locations="$REGION" \
      "${project[@]}"
}
secret "$SECRET"
# A fleet's secrets, made here in this project, empty like the one above.
while IFS=$'\t' read -r _ name; do
  [ -z "$name" ] || secret "$name"
done <<<"$fleet_names"

# Topics and bare subscriptions. The build configures the subscriptions (push endpoint, OIDC,
# dead letters); creating them here lets the build's account hold Pub/Sub rights on these eight
# resources alone instead of roles/pubsub.admin on the project, and keeps the first window
# tasks even if the scheduler's first call comes before the build reaches the subscriptions.
for topic in "${TOPICS[@]}"; do
  exists gcloud pubsub topics describe "$topic" "${project[@]}" ||
    run gcloud pubsub topics create "$topic" "${cmek_topic[@]}" "${project[@]}"
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
  for role in "${RUNTIME_DATABASE_ROLES[@]}"; do
    grant database "$PROJECT_ID" "serviceAccount:$(sa "$name")" "$role"
  done
done
# The planner publishes window tasks, and its scheduled run the slices it hands out.
for topic in "$WINDOW_TOPIC" "$PLAN_TOPIC"; do
  grant topic "$topic" "serviceAccount:$(sa planner)" roles/pubsub.publisher
done
# The fetcher publishes batches, and hands the rest of a window on to the windows topic.
for topic in "$WINDOW_TOPIC" "$BATCH_TOPIC"; do
  grant topic "$topic" "serviceAccount:$(sa fetcher)" roles/pubsub.publisher
done
grant secret "$SECRET" "serviceAccount:$(sa fetcher)" roles/secretmanager.secretAccessor
# A fleet's secrets: the fetcher reads every source's; the planner reads the MSP parent's only,
# to list its children.
while IFS=$'\t' read -r origin name; do
  [ -n "$name" ] || continue
  grant secret "$name" "serviceAccount:$(sa fetcher)" roles/secretmanager.secretAccessor
  [ "$origin" != parent ] ||
    grant secret "$name" "serviceAccount:$(sa planner)" roles/secretmanager.secretAccessor
done <<<"$fleet_names"
for role in "${WRITER_BUCKET_ROLES[@]}"; do
  grant bucket "gs://$BUCKET" "serviceAccount:$(sa writer)" "$role"
done
for role in "${PLANNER_BUCKET_ROLES[@]}"; do
  grant bucket "gs://$BUCKET" "serviceAccount:$(sa planner)" "$role"
done
# The push and scheduler accounts get run.invoker on their services from the build, once the
# services exist. The Pub/Sub service agent mints the push account's OIDC tokens: projects made
# since April 2021 let it by default, older ones need this, and a re-run changes nothing.
grant account "$(sa push)" "$pubsub_agent" roles/iam.serviceAccountTokenCreator

# The log-based metrics' custom role. A role deleted by the teardown stays for 7 days, under its
# id, and comes back with undelete.
if exists gcloud iam roles describe "$LOG_METRICS_ROLE_ID" "${project[@]}"; then
  deleted="$(gcloud iam roles describe "$LOG_METRICS_ROLE_ID" "${project[@]}" \
    --format='value(deleted)')"
  if [ "$deleted" = True ]; then
    run gcloud iam roles undelete "$LOG_METRICS_ROLE_ID" "${project[@]}"
  fi
else
  run gcloud iam roles create "$LOG_METRICS_ROLE_ID" "${project[@]}" \
    --title="duo-telephony log-based metrics" --permissions="$LOG_METRICS_PERMISSIONS"
fi

# The build's account.
deployer="serviceAccount:$(sa deployer)"
for role in "${DEPLOYER_PROJECT_ROLES[@]}" "$LOG_METRICS_ROLE"; do
  grant project "$PROJECT_ID" "$deployer" "$role"
done
for role in "${DEPLOYER_DATABASE_ROLES[@]}"; do
  grant database "$PROJECT_ID" "$deployer" "$role"
done
# The build's first step checks that the secret has an enabled version: its metadata only,
# never its value.
grant secret "$SECRET" "$deployer" roles/secretmanager.viewer
while IFS=$'\t' read -r _origin name; do
  [ -z "$name" ] || grant secret "$name" "$deployer" roles/secretmanager.viewer
done <<<"$fleet_names"
grant repository "$REPOSITORY" "$deployer" roles/artifactregistry.writer
grant repository "$BASE_REPOSITORY" "$deployer" roles/artifactregistry.reader
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

# The image's base, pinned by digest: resolved once through the remote repository and kept in
# its description, so that every build starts from the same base until the operator moves it
# (--repin-base-image) or .python-version names another Python.
base_tag="python:$(cat "$here/../.python-version")-slim"
base_path="$REGION-docker.pkg.dev/$PROJECT_ID/$BASE_REPOSITORY/library"
pin_description() { echo "Docker Hub cache for the duo-telephony base image: $base_tag pinned as $1"; }
base_image="$base_path/python@sha256:DIGEST"
described=""
dry || described="$(gcloud artifacts repositories describe "$BASE_REPOSITORY" \
  --location="$REGION" "${project[@]}" --format='value(description)')"
pinned="$(grep -o "[^ ]*@sha256:[0-9a-f]\{64\}" <<<"$described" || true)"
if [ "$REPIN_BASE_IMAGE" = true ] || [ -z "$pinned" ] ||
  [ "$described" != "$(pin_description "$pinned")" ]; then
  if ! dry; then
    digest="$(gcloud artifacts docker images describe "$base_path/$base_tag" \
      --format='value(image_summary.digest)')" || true
    if ! [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
      echo "could not resolve $base_tag through $base_path (got '$digest'): is Docker Hub reachable from the remote repository $BASE_REPOSITORY?" >&2
      exit 1
    fi
    base_image="$base_path/python@$digest"
  fi
  run gcloud artifacts repositories update "$BASE_REPOSITORY" --location="$REGION" \
    --description="$(pin_description "$base_image")" "${project[@]}"
  dry || echo "pinned the image's base $base_tag to $base_image"
else
  base_image="$pinned"
fi

dry && exit 0
fleet_adds=""
while IFS=$'\t' read -r _origin name; do
  [ -z "$name" ] || fleet_adds+="  gcloud secrets versions add $name --data-file=- --project=$PROJECT_ID   # a fleet's, unless it has a version"$'\n'
done <<<"$fleet_names"
cat <<EOF

Project $PROJECT_ID is set up. Next (docs/deploy.md, sections 3 and 4):
  gcloud secrets versions add $SECRET --data-file=- --project=$PROJECT_ID   # paste the Duo secret key, then Ctrl-D
${fleet_adds}  gcloud beta builds submit --config=cloudbuild.yaml --project=$PROJECT_ID --region=$REGION \\
    --service-account=projects/$PROJECT_ID/serviceAccounts/$(sa deployer) \\
    --gcs-source-staging-dir=gs://$STAGING_BUCKET/source \\
    --substitutions=_REGION=$REGION,_BUCKET=$BUCKET,_DUO_SKEY_SECRET=$SECRET,_FIRESTORE_DATABASE=$FIRESTORE_DATABASE,_NOTIFICATION_CHANNEL=$channel,_BASE_IMAGE=$base_image,_DUO_API_HOST=api-xxxxxxxx.duosecurity.com,_DUO_IKEY=DIXXXXXXXXXXXXXXXXXX
EOF
